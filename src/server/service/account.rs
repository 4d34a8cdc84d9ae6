//! Your account, for a signed-in user: change the display name, avatar and password, list and
//! revoke sessions, delete the account (docs/protocol.md, "Your account"). Every action checking
//! a password is charged to the same sign-in limits as `login` (per address and per account).

use super::limits::Budget;
use std::net::IpAddr;

use crate::names;
use crate::protocol::{
    DeleteAccountRequest, ErrorCode, PasswordRequest, ProfileRequest, SessionInfo, SessionList,
    User,
};

use super::super::auth;
use super::super::hasher::Busy;
use super::super::store::{UserId, WriteOp, WriteOutcome};
use super::super::Shared;
use super::accounts::{busy, check_avatar, check_password_rules, hash_password, limited, Authed};
use super::{write_for_call, ServiceError};

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::refused(ErrorCode::InvalidName, message)
}

fn unexpected(outcome: WriteOutcome) -> ServiceError {
    tracing::error!(
        ?outcome,
        "an account write answered with another write's outcome"
    );
    ServiceError::refused(ErrorCode::Internal, "internal server error")
}

/// Change the display name and/or the avatar; everyone sharing a conversation hears it
/// (`user_updated`). Returns the profile as it is now.
pub async fn set_profile(
    shared: &Shared,
    authed: &Authed,
    req: ProfileRequest,
) -> Result<User, ServiceError> {
    if req.display_name.is_none() && req.avatar.is_none() {
        return Err(ServiceError::refused(
            ErrorCode::BadRequest,
            "nothing to change: give `display_name`, `avatar` or both",
        ));
    }
    let display_name = req
        .display_name
        .as_deref()
        .map(|d| names::display_name(d).map_err(|e| invalid(e.to_string())))
        .transpose()?;
    let avatar = req.avatar.map(|a| a.trim().to_owned());
    if let Some(avatar) = &avatar {
        if avatar.is_empty() {
            return Err(invalid("an avatar cannot be empty"));
        }
        check_avatar(avatar)?;
    }
    let op = WriteOp::SetProfile {
        user: authed.user,
        display_name,
        avatar,
    };
    match write_for_call(shared, op).await? {
        WriteOutcome::UserUpdated(row) => Ok(row.user),
        other => Err(unexpected(other)),
    }
}

/// Check `password` for `user`, charged like a sign-in from `ip`: the address's failed sign-in
/// budget and the account's delay are taken when the check starts and given back if it succeeds.
async fn verify_password(
    shared: &Shared,
    ip: IpAddr,
    user: UserId,
    password: String,
) -> Result<(), ServiceError> {
    let started = shared.clock.instant();
    shared
        .limits
        .take_address(Budget::SignIn, ip, started)
        .map_err(|wait| limited("too many failed sign-ins from this address", wait))?;
    if let Err(wait) = shared.limits.take_account(user, started) {
        shared.limits.refund_address(Budget::SignIn, ip, started);
        return Err(limited("too many failed sign-ins for this account", wait));
    }
    let Some(hash) = shared.store.password_hash(user).await? else {
        return Err(ServiceError::refused(
            ErrorCode::Unauthorized,
            "this account was deleted",
        ));
    };
    match shared.hasher.run(move |w| w.verify(&password, &hash)).await {
        Ok(true) => {
            shared.limits.refund_address(Budget::SignIn, ip, started);
            shared.limits.account_succeeded(user);
            Ok(())
        }
        Ok(false) => {
            shared.limits.account_failed(user, shared.clock.instant());
            Err(ServiceError::refused(
                ErrorCode::Unauthorized,
                "wrong password",
            ))
        }
        Err(Busy) => {
            shared.limits.refund_address(Budget::SignIn, ip, started);
            shared.limits.refund_account(user);
            Err(busy())
        }
    }
}

/// Change the password (the current one is checked); with `sign_out_others`, every other
/// session of the account is revoked and its sockets close (4001).
pub async fn change_password(
    shared: &Shared,
    ip: IpAddr,
    authed: &Authed,
    req: PasswordRequest,
) -> Result<(), ServiceError> {
    check_password_rules(&req.new_password)?;
    verify_password(shared, ip, authed.user, req.current_password).await?;
    let password_hash = hash_password(shared, req.new_password)
        .await
        .map_err(|Busy| busy())??;
    let op = WriteOp::SetPassword {
        user: authed.user,
        password_hash,
        keep: req.sign_out_others.then_some(authed.token),
        now: shared.clock.now_ms(),
    };
    write_for_call(shared, op).await?;
    Ok(())
}

/// The account's live sessions, newest first, the caller's own marked `current`.
pub async fn sessions(shared: &Shared, authed: &Authed) -> Result<SessionList, ServiceError> {
    let rows = shared
        .store
        .sessions(authed.user, shared.clock.now_ms())
        .await?;
    let sessions = rows
        .into_iter()
        .map(|row| SessionInfo {
            id: auth::session_id(&row.token_hash),
            label: row.label,
            created_at: row.created_at,
            expires_at: row.expires_at,
            current: row.token_hash == authed.token,
        })
        .collect();
    Ok(SessionList { sessions })
}

/// Revoke one of the caller's own sessions by its id (`not_found` for any other id, also
/// another user's); its sockets close (4001).
pub async fn revoke_session(
    shared: &Shared,
    authed: &Authed,
    id: String,
) -> Result<(), ServiceError> {
    let op = WriteOp::RevokeSession {
        user: authed.user,
        id,
        now: shared.clock.now_ms(),
    };
    write_for_call(shared, op).await?;
    Ok(())
}

/// Delete the account (the password is checked): see docs/protocol.md, "Deleting an account".
pub async fn delete_account(
    shared: &Shared,
    ip: IpAddr,
    authed: &Authed,
    req: DeleteAccountRequest,
) -> Result<(), ServiceError> {
    verify_password(shared, ip, authed.user, req.password).await?;
    let op = WriteOp::DeleteAccount {
        user: authed.user,
        now: shared.clock.now_ms(),
    };
    write_for_call(shared, op).await?;
    // The profile picture went with the profile: its bytes too, unless someone else's.
    super::files::sweep_now(shared).await;
    Ok(())
}
