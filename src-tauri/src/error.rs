//! The one error type at the IPC edge. Every command returns `Result<T, CommandError>`, and the UI
//! receives `{ "code": ..., "message": ... }` (docs/ipc.md): a stable machine code it can
//! translate, and an English message it can show when it has no translation.

use serde::Serialize;
use ts_rs::TS;

/// The stable codes of docs/ipc.md. The UI switches on these, so they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
// The wire protocol has its own `ErrorCode`; this is the IPC one.
#[ts(export, rename = "CommandErrorCode")]
pub enum ErrorCode {
    /// The server cannot be reached (or we are not connected and the action needs it).
    Offline,
    /// Wrong credentials, or the session was revoked: sign in again.
    Unauthorized,
    /// The input was refused before or by the server (bad name, empty text, bad URL...).
    Invalid,
    NotFound,
    Forbidden,
    /// Already exists (a username or room name taken).
    Conflict,
    /// Too many attempts (failed sign-ins, frames): wait, then try again.
    RateLimited,
    /// The server answered with an error it did not classify.
    Server,
    /// A bug or a local failure (disk, store): not the user's fault.
    Internal,
    /// A disk is full (the server's, or this computer's): nothing was stored. Free space, retry.
    StorageFull,
    /// The local store is damaged: offer `repair_store` (Settings → Repair).
    StoreCorrupt,
    /// The server's certificate is not trusted yet: the message names its fingerprint, to
    /// compare with the host's before trusting it.
    UntrustedCertificate,
    /// The server presents another certificate than the one trusted for it: someone may be
    /// impersonating it. Nothing was sent.
    CertificateChanged,
    /// Registering on this server needs an invite code (docs/protocol.md, "Registration").
    InviteRequired,
    /// The invite code is unknown, already used, revoked or expired: ask for a new one.
    InvalidInvite,
    /// The account waits for an admin's approval.
    PendingApproval,
}

/// What a failed command rejects with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS, thiserror::Error)]
#[error("{code:?}: {message}")]
#[ts(export)]
pub struct CommandError {
    pub code: ErrorCode,
    pub message: String,
}

impl CommandError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// A command that needs a signed-in client was called before sign-in (or after sign-out).
    pub fn signed_out() -> Self {
        Self::new(ErrorCode::Unauthorized, "not signed in")
    }

    /// A command that needs a server was called before one was chosen.
    pub fn no_server() -> Self {
        Self::new(ErrorCode::Invalid, "no server chosen yet")
    }
}

impl From<std::io::Error> for CommandError {
    fn from(e: std::io::Error) -> Self {
        Self::internal(e.to_string())
    }
}

impl From<tauri::Error> for CommandError {
    fn from(e: tauri::Error) -> Self {
        Self::internal(e.to_string())
    }
}

/// Results of commands.
pub type CmdResult<T> = Result<T, CommandError>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serialises_to_code_and_message() {
        let e = CommandError::new(ErrorCode::NotFound, "no such room: x");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"code": "not_found", "message": "no such room: x"})
        );
        let all = [
            (ErrorCode::Offline, "offline"),
            (ErrorCode::Unauthorized, "unauthorized"),
            (ErrorCode::Invalid, "invalid"),
            (ErrorCode::NotFound, "not_found"),
            (ErrorCode::Forbidden, "forbidden"),
            (ErrorCode::Conflict, "conflict"),
            (ErrorCode::Server, "server"),
            (ErrorCode::Internal, "internal"),
            (ErrorCode::StorageFull, "storage_full"),
            (ErrorCode::StoreCorrupt, "store_corrupt"),
            (ErrorCode::UntrustedCertificate, "untrusted_certificate"),
            (ErrorCode::CertificateChanged, "certificate_changed"),
            (ErrorCode::InviteRequired, "invite_required"),
            (ErrorCode::InvalidInvite, "invalid_invite"),
            (ErrorCode::PendingApproval, "pending_approval"),
        ];
        for (code, text) in all {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(text));
        }
    }
}
