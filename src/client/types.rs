//! Client-side view types shared with the desktop UI: what the local store holds and what the
//! client core reports. Exported to TypeScript (`ui/src/bindings`) by ts-rs when `cargo test`
//! runs; the shapes are the contract in `docs/ipc.md`, so change both together.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::protocol::{Action, Attachment, ConvId, ConvKind, Millis, NotifyLevel, Seq, User};

/// Where a message stands from this client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum MessageState {
    /// Committed by the server: it has a `seq`.
    Sent,
    /// In the outbox, waiting for a connection or an ack.
    Pending,
    /// The server rejected it; `error` says why. `retry` puts it back in the outbox.
    Failed,
}

/// A message as the local store holds it. Outbox messages (pending/failed) have no seq yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct LocalMessage {
    /// The `client_msg_id` (UUID): a stable key from the moment the user presses send.
    pub local_id: String,
    /// `None` for a first direct message whose conversation the server has not created yet.
    #[ts(type = "number | null")]
    pub conv: Option<ConvId>,
    #[ts(type = "number | null")]
    pub seq: Option<Seq>,
    pub sender: String,
    pub text: String,
    /// Server time when sent, local time while pending or failed (ms since the epoch).
    #[ts(type = "number")]
    pub time: Millis,
    pub state: MessageState,
    /// The reason when `state` is failed.
    pub error: Option<String>,
    // Absent when they do not apply (not a reply, never edited, not deleted, no reactions),
    // so a plain message keeps the shape it had.
    /// A reply: the message it answers, as this client holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub reply_to: Option<Quote>,
    /// When the message was last edited (server time), if it was; `text` is the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "number")]
    pub edited: Option<Millis>,
    /// The message was deleted: `text` is empty; show a tombstone.
    #[serde(default, skip_serializing_if = "is_false")]
    #[ts(optional, as = "Option<bool>")]
    pub deleted: bool,
    /// Reactions, in the order they were first given; empty for a deleted message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[ts(optional, as = "Option<Vec<Reaction>>")]
    pub reactions: Vec<Reaction>,
    /// The files it carries, in the order sent (the server's records); absent when none. While
    /// pending, the files uploaded so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[ts(optional, as = "Option<Vec<Attachment>>")]
    pub attachments: Vec<Attachment>,
    /// While pending or failed: the local files still to upload before it is sent, in order,
    /// with how far each upload got; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[ts(optional, as = "Option<Vec<PendingFile>>")]
    pub uploads: Vec<PendingFile>,
}

/// A file of an outbox message not uploaded yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct PendingFile {
    /// The local path the user chose.
    pub path: String,
    /// Its file name, for showing.
    pub name: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The message a reply answers, for showing it quoted above the reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Quote {
    /// Its seq in the same conversation (to jump to it, loading older history if needed).
    #[ts(type = "number")]
    pub seq: Seq,
    /// Its sender; `None` while the message is not held here (older than the loaded history).
    pub sender: Option<String>,
    /// The start of its text: the first line, at most [`Quote::SNIPPET_CHARS`] characters.
    /// Empty when not held or deleted.
    pub snippet: String,
    /// The quoted message was deleted.
    pub deleted: bool,
}

impl Quote {
    /// Longest snippet, in characters.
    pub const SNIPPET_CHARS: usize = 120;

    /// The snippet of `text`: its first line, cut to [`Quote::SNIPPET_CHARS`] characters.
    pub fn snippet_of(text: &str) -> String {
        let line = text.lines().next().unwrap_or("");
        match line.char_indices().nth(Self::SNIPPET_CHARS) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => line.to_owned(),
        }
    }
}

/// An edit, delete or reaction of the user's that the server refused for good (not retried): the
/// outbox entry is gone, nothing changed. `error` says why, for the UI to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ActionFailure {
    /// The action's `client_msg_id`, as the method that queued it returned it.
    pub local_id: String,
    #[ts(type = "number")]
    pub conv: ConvId,
    pub action: Action,
    pub error: String,
}

/// One emoji given to a message, and by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Reaction {
    pub emoji: String,
    /// Usernames, in the order they reacted.
    pub users: Vec<String>,
}

/// How far the upload of one file of an outbox message got (sent while it runs, last when all
/// `total` bytes are sent; the message is `updated` once the file is on the server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct UploadProgress {
    /// The message's `local_id`.
    pub local_id: String,
    /// The file's local path, as in the message's `uploads`.
    pub path: String,
    #[ts(type = "number")]
    pub sent: u64,
    #[ts(type = "number")]
    pub total: u64,
}

/// How a message changed (docs/ipc.md, `natter://message`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum MessageChange {
    /// Not shown before: someone else's message, or the user's own just queued (pending).
    Added,
    /// Already shown, same `local_id`: pending -> sent or failed, failed -> pending (retry).
    Updated,
}

/// A message that was added or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct MessageEvent {
    pub change: MessageChange,
    pub message: LocalMessage,
}

impl MessageEvent {
    pub fn added(message: LocalMessage) -> MessageEvent {
        MessageEvent {
            change: MessageChange::Added,
            message,
        }
    }

    pub fn updated(message: LocalMessage) -> MessageEvent {
        MessageEvent {
            change: MessageChange::Updated,
            message,
        }
    }
}

/// A conversation's unread count changed (and nothing else of its summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct UnreadChange {
    #[ts(type = "number")]
    pub conv: ConvId,
    pub unread: u32,
}

/// The user is no longer a member of a conversation (left it, or was removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ConversationRemoved {
    #[ts(type = "number")]
    pub conv: ConvId,
}

/// One conversation in the sidebar: what to show and how many messages are unread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ConversationSummary {
    #[ts(type = "number")]
    pub id: ConvId,
    pub kind: ConvKind,
    /// The room name, or the peer's username for a DM.
    pub name: String,
    /// What to show: `#room` for a room, the peer's display name for a DM.
    pub title: String,
    pub peer: Option<User>,
    pub unread: u32,
    /// Unread messages that mention the user (the mention badge); absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[ts(optional, as = "Option<u32>")]
    pub mentions: u32,
    pub last_message: Option<LocalMessage>,
    /// For sorting by recent activity (ms since the epoch).
    #[ts(type = "number")]
    pub last_activity: Millis,
    /// The notification level (synced through the server): `nothing` is muted.
    pub level: NotifyLevel,
    /// A private room (invite only): the UI marks it with a lock.
    pub private: bool,
    /// The user may moderate it (created the room, or is an admin): the UI offers removing,
    /// banning and deleting others' messages.
    pub moderator: bool,
}

/// The state of the connection to the server, as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "state", rename_all = "snake_case")]
#[ts(export)]
pub enum ConnectionState {
    Connecting,
    Online,
    /// Disconnected; the next attempt is at `retry_at` (ms since the epoch) unless asked sooner.
    Offline {
        #[ts(type = "number")]
        retry_at: Millis,
        reason: String,
    },
    /// The token was refused (revoked or expired): the user must sign in again. No retries.
    SignedOut {
        reason: String,
    },
}

/// One search result: the message, where it was said, and a short excerpt around the match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct SearchHit {
    pub message: LocalMessage,
    pub conv_title: String,
    pub snippet: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn connection_state_is_tagged_by_state() {
        assert_eq!(
            serde_json::to_value(ConnectionState::Offline {
                retry_at: 5,
                reason: "refused".into()
            })
            .unwrap(),
            json!({"state": "offline", "retry_at": 5, "reason": "refused"})
        );
        assert_eq!(
            serde_json::to_value(ConnectionState::Connecting).unwrap(),
            json!({"state": "connecting"})
        );
        assert_eq!(
            serde_json::to_value(ConnectionState::SignedOut { reason: "x".into() }).unwrap(),
            json!({"state": "signed_out", "reason": "x"})
        );
    }

    #[test]
    fn local_message_uses_snake_case_fields() {
        let m = LocalMessage {
            local_id: "id".into(),
            conv: None,
            seq: None,
            sender: "a".into(),
            text: "t".into(),
            time: 1,
            state: MessageState::Pending,
            error: None,
            reply_to: Some(Quote {
                seq: 4,
                sender: None,
                snippet: String::new(),
                deleted: false,
            }),
            edited: None,
            deleted: false,
            reactions: vec![Reaction {
                emoji: "👍".into(),
                users: vec!["b".into()],
            }],
            attachments: Vec::new(),
            uploads: Vec::new(),
        };
        assert_eq!(
            serde_json::to_value(m).unwrap(),
            json!({"local_id": "id", "conv": null, "seq": null, "sender": "a", "text": "t",
                   "time": 1, "state": "pending", "error": null,
                   "reply_to": {"seq": 4, "sender": null, "snippet": "", "deleted": false},
                   "reactions": [{"emoji": "👍", "users": ["b"]}]})
        );
        assert_eq!(Quote::snippet_of("first line\nsecond"), "first line");
        let long = "字".repeat(Quote::SNIPPET_CHARS + 5);
        assert_eq!(
            Quote::snippet_of(&long).chars().count(),
            Quote::SNIPPET_CHARS + 1,
            "cut, with an ellipsis"
        );
    }
}
