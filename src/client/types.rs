//! Client-side view types shared with the desktop UI: what the local store holds and what the
//! client core reports. Exported to TypeScript (`ui/src/bindings`) by ts-rs when `cargo test`
//! runs; the shapes are the contract in `docs/ipc.md`, so change both together.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::protocol::{ConvId, ConvKind, Millis, NotifyLevel, Seq, User};

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
    pub last_message: Option<LocalMessage>,
    /// For sorting by recent activity (ms since the epoch).
    #[ts(type = "number")]
    pub last_activity: Millis,
    /// The notification level (synced through the server): `nothing` is muted.
    pub level: NotifyLevel,
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
        };
        assert_eq!(
            serde_json::to_value(m).unwrap(),
            json!({"local_id": "id", "conv": null, "seq": null, "sender": "a", "text": "t",
                   "time": 1, "state": "pending", "error": null})
        );
    }
}
