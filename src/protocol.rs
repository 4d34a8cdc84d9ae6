//! The wire protocol `natter.v1`: every frame and HTTP body a client and server exchange, the
//! limits both sides enforce and the close codes the server uses. No I/O lives here.
//!
//! This is the one place a frame's shape is defined; `docs/protocol.md` mirrors it for people
//! writing clients in other languages, and the types are exported to TypeScript (`ui/src/bindings`)
//! by ts-rs when `cargo test` runs, so the UI and Rust cannot drift.
//!
//! Frames are JSON text frames, internally tagged by `type` in snake_case. Every request a client
//! sends carries a client-chosen `id`; the server answers it with exactly one [`ServerFrame::Ok`]
//! or [`ServerFrame::Error`] bearing the same id. Everything else the server sends (messages,
//! presence, typing, read markers, conversation changes, replay batches) is a push without an id.

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use uuid::Uuid;

/// The WebSocket subprotocol (Sec-WebSocket-Protocol) naming this version of the protocol.
pub const SUBPROTOCOL: &str = "natter.v1";
/// Protocol version number carried in [`ServerFrame::Hello`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Limits shared by server and clients.
pub mod limits {
    /// Longest message text, in Unicode scalar values (chars).
    pub const MAX_TEXT_CHARS: usize = 4_000;
    /// Largest WebSocket frame or message the server accepts (close 1009 beyond it).
    pub const MAX_FRAME_BYTES: usize = 64 * 1024;
    /// Most messages in one history page or replay batch.
    pub const MAX_PAGE: u32 = 200;
    /// Largest HTTP request or response body of the API (`/api/*`), either way. The server
    /// answers 413 beyond it; the Rust client refuses a larger answer.
    pub const MAX_HTTP_BODY_BYTES: usize = 16 * 1024;
    /// Seconds a client has to send a whole HTTP request body once its head arrived (408 after).
    pub const HTTP_BODY_TIMEOUT_SECS: u64 = 10;
    /// Most JSON bytes one message takes besides its text and attachments: ids, seq and time
    /// as the longest i64s, a username of [`MAX_USERNAME_CHARS`] 4-byte letters, the uuid, the
    /// keys, and the optional fields of replies and actions (a reaction of
    /// [`MAX_REACTION_BYTES`]).
    const MESSAGE_FIELDS_JSON: usize = 640;
    /// Most JSON bytes one attachment takes: a name of [`MAX_FILE_NAME_CHARS`] 4-byte chars
    /// (a safe name has no control character, so nothing is escaped as `\uXXXX`), plus the id,
    /// the longest media type, size, width, height, the thumbnail and the keys.
    const ATTACHMENT_JSON: usize = MAX_FILE_NAME_CHARS * 4 + 256;
    /// Most JSON bytes one message takes besides its text.
    const MESSAGE_JSON_OVERHEAD: usize = MESSAGE_FIELDS_JSON + MAX_ATTACHMENTS * ATTACHMENT_JSON;
    /// Most JSON bytes a message text takes: every char escaped as `\uXXXX` (6 bytes; a
    /// control character) is the worst case, more than any 4-byte UTF-8 char sent raw.
    const TEXT_JSON_BYTES: usize = MAX_TEXT_CHARS * 6;
    /// Largest frame the server sends: its worst case is a full `history` page or replay
    /// `batch` of [`MAX_PAGE`] messages at [`MAX_TEXT_CHARS`] worst-case characters each, plus
    /// the frame around them. Clients may refuse anything larger (the Rust client closes the
    /// connection with 1009 and reconnects). Lists (`users`, `rooms`, `hello`) share this bound.
    pub const MAX_SERVER_FRAME_BYTES: usize =
        MAX_PAGE as usize * (TEXT_JSON_BYTES + MESSAGE_JSON_OVERHEAD) + 1024;
    /// Longest username, in chars of its NFKC form. The rules are in [`crate::names`].
    pub const MAX_USERNAME_CHARS: usize = 32;
    /// Shortest password, in chars.
    pub const MIN_PASSWORD_CHARS: usize = 8;
    /// Longest display name, in chars.
    pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
    /// Longest room name, in chars of its NFKC form (same rules as usernames).
    pub const MAX_ROOM_NAME_CHARS: usize = 32;
    /// Most messages `sync` replays of a conversation the client did not list (the newest ones).
    pub const SYNC_UNLISTED: i64 = 50;
    /// Seconds a socket that upgraded without a token has to send its `auth` frame.
    pub const AUTH_TIMEOUT_SECS: u64 = 5;
    /// Longest session label (`label` of login, or the `User-Agent`), in chars; longer ones are
    /// cut.
    pub const MAX_SESSION_LABEL_CHARS: usize = 64;
    /// The room every user is a member of.
    pub const DEFAULT_ROOM: &str = "general";
    /// Longest reaction, in UTF-8 bytes: room for the longest emoji ZWJ sequences and flag tag
    /// sequences (about 35 bytes), not for text. The rule is [`super::is_valid_reaction`].
    pub const MAX_REACTION_BYTES: usize = 64;
    /// Furthest ahead of the server's clock a do-not-disturb end may lie (366 days, in ms):
    /// longer is "until turned off" (`"until": null`).
    pub const MAX_DND_AHEAD_MS: i64 = 366 * 24 * 60 * 60 * 1000;
    /// Largest upload (`POST /api/files`) by default, in bytes (the server's `--max-upload`).
    pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 25 * 1024 * 1024;
    /// Most pixels (width x height) of an uploaded image; a larger one is refused before it is
    /// decoded (a decompression bomb declares billions in a few bytes).
    pub const MAX_IMAGE_PIXELS: u64 = 50_000_000;
    /// The square a thumbnail fits in, in pixels.
    pub const THUMBNAIL_BOX: u32 = 320;
    /// The side of a profile picture, in pixels (the uploaded image is cropped square to it).
    pub const AVATAR_SIZE: u32 = 256;
    /// Longest file name kept for an upload, in chars (a longer one is cut, keeping its
    /// extension). The rules are in [`crate::names::file_name`].
    pub const MAX_FILE_NAME_CHARS: usize = 200;
    /// Most files one message carries.
    pub const MAX_ATTACHMENTS: usize = 10;
    /// Most users one socket watches the presence of (`watch_presence`): more than a member list
    /// or a user picker shows at once, few enough that a watch set costs the server little.
    pub const MAX_WATCHED_USERS: usize = 1_000;
    /// How long an invite stays valid when `POST /api/invites` names no `expires_in` (7 days,
    /// in seconds).
    pub const INVITE_DEFAULT_SECS: u64 = 7 * 24 * 60 * 60;
    /// The range `expires_in` of `POST /api/invites` must lie in, in seconds (1 minute to 30
    /// days).
    pub const INVITE_SECS: std::ops::RangeInclusive<u64> = 60..=30 * 24 * 60 * 60;
}

/// WebSocket close codes the server uses. Standard codes (RFC 6455) where one fits; 4xxx
/// (application range) for Natter-specific reasons. A client reconnects after every code except
/// [`close::UNAUTHORIZED`] (and [`close::POLICY`] when it was about authentication).
pub mod close {
    /// Normal closure (the client asked to leave).
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down; reconnect later.
    pub const GOING_AWAY: u16 = 1001;
    /// A WebSocket protocol violation (e.g. an unmasked client frame).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A binary frame: Natter speaks JSON text frames only.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text frame that is not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation: no `auth` frame in time, or a first frame that was not `auth`.
    pub const POLICY: u16 = 1008;
    /// A frame larger than [`super::limits::MAX_FRAME_BYTES`].
    pub const TOO_BIG: u16 = 1009;
    /// The server hit an unexpected internal error.
    pub const INTERNAL: u16 = 1011;
    /// The client did not keep up with its outbound queue; reconnect and resume.
    pub const SLOW_CONSUMER: u16 = 4000;
    /// The session's token was revoked (logout) or expired: sign in again, do not reconnect.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The peer did not answer heartbeats in time.
    pub const HEARTBEAT_TIMEOUT: u16 = 4002;
    /// The client kept flooding far beyond the rate limit.
    pub const RATE_LIMITED: u16 = 4003;
    /// A socket that authenticated with an `auth` frame would exceed the cap on open sockets
    /// per user or per address (an upgrade with a token gets HTTP 429 instead). Reconnect
    /// later, with backoff: another socket of the user or address must close first.
    pub const TOO_MANY_SOCKETS: u16 = 4004;
    /// An admin banned the account from the server: do not reconnect, sign-in is refused.
    pub const BANNED: u16 = 4005;

    /// Every code above, for clients and tests that must handle each one.
    pub const ALL: &[u16] = &[
        NORMAL,
        GOING_AWAY,
        PROTOCOL_ERROR,
        UNSUPPORTED_DATA,
        INVALID_PAYLOAD,
        POLICY,
        TOO_BIG,
        INTERNAL,
        SLOW_CONSUMER,
        UNAUTHORIZED,
        HEARTBEAT_TIMEOUT,
        RATE_LIMITED,
        TOO_MANY_SOCKETS,
        BANNED,
    ];
}

/// A conversation id, assigned by the server. Rooms and direct messages share one id space.
pub type ConvId = i64;
/// A per-conversation sequence number: 1, 2, 3 ... with no gaps.
pub type Seq = i64;
/// Milliseconds since the Unix epoch (UTC).
pub type Millis = i64;

/// A user as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct User {
    pub username: String,
    pub display_name: String,
    /// An avatar choice: an emoji or a short preset name chosen at registration.
    pub avatar: String,
    /// The account was deleted: its messages stay, shown as from a deleted user; the username
    /// stays reserved. Absent (false) for every live user.
    #[serde(default, skip_serializing_if = "is_false")]
    #[ts(optional, as = "Option<bool>")]
    pub deleted: bool,
    /// A profile picture the user uploaded (`POST /api/account/avatar`): the SHA-256 of the
    /// square image, fetched at `GET /api/avatars/{avatar_image}`. Absent when there is none
    /// (then show `avatar`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub avatar_image: Option<String>,
    /// One of the server's admins (docs/protocol.md, "Run by its host"). Absent (false) for
    /// everyone else.
    #[serde(default, skip_serializing_if = "is_false")]
    #[ts(optional, as = "Option<bool>")]
    pub admin: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Whether a conversation is a group room or a direct message between exactly two users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum ConvKind {
    Room,
    Dm,
}

/// A conversation the receiving user is a member of, as seen by that user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Conversation {
    #[ts(type = "number")]
    pub id: ConvId,
    pub kind: ConvKind,
    /// The room's name, or for a DM the other user's username.
    pub name: String,
    /// For a DM, the other user.
    pub peer: Option<User>,
    pub member_count: u32,
    /// The highest seq in the conversation (0 when empty).
    #[ts(type = "number")]
    pub last_seq: Seq,
    /// The highest seq this user has marked read (0 when none).
    #[ts(type = "number")]
    pub last_read: Seq,
    /// A private room: invite only, invisible to non-members. False for a DM.
    #[serde(default)]
    pub private: bool,
    /// Whether the receiving user may moderate it (remove or ban members, delete others'
    /// messages): the room's creator, or an admin. False for a DM. Absent (false) from older
    /// servers.
    #[serde(default)]
    pub moderator: bool,
}

/// A room in the public room list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct RoomInfo {
    #[ts(type = "number")]
    pub id: ConvId,
    pub name: String,
    pub member_count: u32,
    /// Whether the asking user is a member.
    pub joined: bool,
}

/// A user in a member or user list, with presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Member {
    pub user: User,
    pub online: bool,
}

/// A committed event of a conversation: a message, or an [`Action`] on an earlier message (an
/// edit, a delete, a reaction). `seq` is its place in the conversation; actions take seqs like
/// messages, so resume and ordering hold for them alike (docs/protocol.md, "Message actions").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Message {
    /// Server-wide message id.
    #[ts(type = "number")]
    pub id: i64,
    #[ts(type = "number")]
    pub conv: ConvId,
    #[ts(type = "number")]
    pub seq: Seq,
    /// The sender's username (always the authenticated user who sent it).
    pub sender: String,
    pub text: String,
    /// Server time at commit, in ms since the epoch.
    #[ts(type = "number")]
    pub time: Millis,
    /// The sender's idempotency key, so a sender's devices can match their outbox.
    pub client_msg_id: Uuid,
    /// A reply: the seq of the message (in this conversation) it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "number")]
    pub reply_to: Option<Seq>,
    /// An action on an earlier message; absent for a message. Its `text` is the new text of an
    /// edit, and empty for a delete or a reaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub action: Option<Action>,
    /// The message was edited (its `text` is the newest), at this server time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "number")]
    pub edited: Option<Millis>,
    /// The message (or the edit of one) was deleted: its text is gone, `text` is empty.
    #[serde(default, skip_serializing_if = "is_false")]
    #[ts(optional, as = "Option<bool>")]
    pub deleted: bool,
    /// The files it carries, in the order sent; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[ts(optional, as = "Option<Vec<Attachment>>")]
    pub attachments: Vec<Attachment>,
}

/// An uploaded file as messages carry it and `POST /api/files` answers it (docs/protocol.md,
/// "Files"). Its bytes are at `GET /api/files/{id}`, its thumbnail (images only) at
/// `GET /api/files/{id}/thumbnail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Attachment {
    /// The upload's id (each upload has its own, even of the same bytes).
    pub id: String,
    /// The file name the uploader gave, made safe ([`crate::names::file_name`]).
    pub name: String,
    /// Sniffed from the bytes by the server: `image/png`, `image/jpeg`, `image/gif`,
    /// `image/webp`, `application/pdf` or `application/octet-stream`.
    pub media_type: String,
    /// In bytes.
    #[ts(type = "number")]
    pub size: u64,
    /// An image's width in pixels (before any EXIF rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub width: Option<u32>,
    /// An image's height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub height: Option<u32>,
    /// An image's thumbnail: the SHA-256 of its bytes (the same for the same image, so a
    /// client cache can share it); fetch it at `GET /api/files/{id}/thumbnail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub thumbnail: Option<String>,
}

/// What an action event does to its `target`, an earlier message (not an action) of the same
/// conversation, named by its seq. Tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[ts(export)]
pub enum Action {
    /// The author replaced the target's text with this event's `text`.
    Edit {
        #[ts(type = "number")]
        target: Seq,
    },
    /// The author (or a moderator) deleted the target: its text is gone everywhere.
    Delete {
        #[ts(type = "number")]
        target: Seq,
    },
    /// The sender added (`on`) or took back (`!on`) their reaction `emoji` to the target. A
    /// reaction is keyed (target, sender, emoji): adding it twice is still one reaction.
    React {
        #[ts(type = "number")]
        target: Seq,
        emoji: String,
        on: bool,
    },
}

impl Action {
    /// The seq of the message this action is about.
    pub fn target(&self) -> Seq {
        match self {
            Action::Edit { target } | Action::Delete { target } | Action::React { target, .. } => {
                *target
            }
        }
    }
}

/// The last seq a client holds for one conversation, sent in [`ClientFrame::Sync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ConvSeq {
    #[ts(type = "number")]
    pub conv: ConvId,
    #[ts(type = "number")]
    pub seq: Seq,
}

/// Unread state of one conversation for the receiving user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Unread {
    #[ts(type = "number")]
    pub conv: ConvId,
    /// Messages after `last_read` not sent by this user (replies count; edits, deletes and
    /// reactions do not).
    pub count: u32,
    #[ts(type = "number")]
    pub last_read: Seq,
}

// --- Attention: notification levels and do not disturb (issue 20) ---

/// How much one conversation may interrupt the user: every message, only messages that
/// mention them, or nothing. Per user and conversation, stored by the server and synced to the
/// user's devices; a conversation with no level set is `all`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum NotifyLevel {
    #[default]
    All,
    Mentions,
    Nothing,
}

impl NotifyLevel {
    pub const ALL: [NotifyLevel; 3] = [
        NotifyLevel::All,
        NotifyLevel::Mentions,
        NotifyLevel::Nothing,
    ];

    /// The wire name (`"all"`, `"mentions"`, `"nothing"`), also how stores keep it.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyLevel::All => "all",
            NotifyLevel::Mentions => "mentions",
            NotifyLevel::Nothing => "nothing",
        }
    }

    /// The level named `name` ([`NotifyLevel::as_str`]), if any.
    pub fn from_name(name: &str) -> Option<NotifyLevel> {
        Self::ALL.into_iter().find(|l| l.as_str() == name)
    }
}

/// Do not disturb is on: until `until` (ms since the epoch, UTC), or until turned off when
/// `until` is null. An end that has passed means it is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Dnd {
    #[ts(type = "number | null")]
    pub until: Option<Millis>,
}

impl Dnd {
    /// Whether this do-not-disturb is still on at `now`.
    pub fn is_on(&self, now: Millis) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// One conversation's notification level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ConvLevel {
    #[ts(type = "number")]
    pub conv: ConvId,
    pub level: NotifyLevel,
}

/// The user's attention settings as [`ServerFrame::Hello`] carries them: do not disturb
/// (null when off) and every conversation whose level is not `all`, sorted by conv.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Attention {
    pub dnd: Option<Dnd>,
    pub levels: Vec<ConvLevel>,
}

// --- end of attention ---

/// Where a message goes: a conversation the sender is in, or a user (a direct message, created
/// on its first message). On the wire it is one field of the `send` frame, `"conv": 5` or
/// `"to": "bob"`; a frame with both or neither is refused.
#[derive(Debug, Clone, PartialEq, Eq, TS)]
#[ts(export)]
pub enum Target {
    #[ts(rename = "conv")]
    Conv(#[ts(type = "number")] ConvId),
    #[ts(rename = "to")]
    To(String),
}

impl Target {
    /// The one rule for the two optional fields: exactly one of them.
    pub fn from_fields(conv: Option<ConvId>, to: Option<String>) -> Result<Target, &'static str> {
        match (conv, to) {
            (Some(conv), None) => Ok(Target::Conv(conv)),
            (None, Some(to)) => Ok(Target::To(to)),
            _ => Err("send needs exactly one of `conv` and `to`"),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            Target::Conv(conv) => map.serialize_entry("conv", conv)?,
            Target::To(to) => map.serialize_entry("to", to)?,
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Target;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`conv` or `to`")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Target, A::Error> {
                let (mut conv, mut to) = (None, None);
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match &*key {
                        "conv" => conv = map.next_value::<Option<ConvId>>()?,
                        "to" => to = map.next_value::<Option<String>>()?,
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Target::from_fields(conv, to).map_err(serde::de::Error::custom)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// Frames a client sends. Each carries a client-chosen `id` that the answer echoes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
#[ts(export)]
pub enum ClientFrame {
    /// Authenticate a socket that upgraded without an `Authorization` header. Must be the very
    /// first frame, within [`limits::AUTH_TIMEOUT_SECS`].
    Auth {
        #[ts(type = "number")]
        id: u64,
        token: String,
    },
    /// Resume: for each conversation the last seq the client holds. The server replays every
    /// later message as [`ServerFrame::Batch`] frames, then answers [`Reply::Synced`].
    /// Conversations not listed are replayed from their last [`limits::SYNC_UNLISTED`] messages.
    /// A later `sync` on the same socket cancels one still running (answered
    /// [`ErrorCode::Cancelled`]).
    Sync {
        #[ts(type = "number")]
        id: u64,
        since: Vec<ConvSeq>,
    },
    /// Send a message to a conversation (`conv`) or as a direct message to a user (`to`); exactly
    /// one of the two. A DM conversation is created on its first message.
    Send {
        #[ts(type = "number")]
        id: u64,
        /// Where it goes: `"conv": 5` or `"to": "bob"`, exactly one of the two.
        #[serde(flatten)]
        #[ts(flatten)]
        target: Target,
        /// Idempotency key: a retry with the same key returns the original ack.
        client_msg_id: Uuid,
        text: String,
        /// Makes it a reply to the message with this seq in the same conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional, type = "number")]
        reply_to: Option<Seq>,
        /// Files the sender uploaded (`POST /api/files`), by [`Attachment::id`], at most
        /// [`limits::MAX_ATTACHMENTS`]; with one, `text` may be empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[ts(optional, as = "Option<Vec<String>>")]
        attachments: Vec<String>,
    },
    /// Replace the text of your own message `target` in `conv`. Answered `sent` with the
    /// `edit` event; the target keeps its seq and gains `edited`.
    Edit {
        #[ts(type = "number")]
        id: u64,
        #[ts(type = "number")]
        conv: ConvId,
        #[ts(type = "number")]
        target: Seq,
        client_msg_id: Uuid,
        text: String,
    },
    /// Delete your own message `target` in `conv`: its text (and every edit's) is removed from
    /// the server. Answered `sent` with the `delete` event.
    Delete {
        #[ts(type = "number")]
        id: u64,
        #[ts(type = "number")]
        conv: ConvId,
        #[ts(type = "number")]
        target: Seq,
        client_msg_id: Uuid,
    },
    /// Add (`on: true`) or take back (`on: false`) your reaction `emoji` (one emoji, see
    /// [`is_valid_reaction`]) to message `target` in `conv`. Answered `sent` with the `react`
    /// event.
    React {
        #[ts(type = "number")]
        id: u64,
        #[ts(type = "number")]
        conv: ConvId,
        #[ts(type = "number")]
        target: Seq,
        client_msg_id: Uuid,
        emoji: String,
        on: bool,
    },
    /// A page of history: messages with seq < `before` (newest page when absent), or with
    /// seq > `after`. At most `limit` (≤ [`limits::MAX_PAGE`]) messages, ascending by seq.
    History {
        #[ts(type = "number")]
        id: u64,
        #[ts(type = "number")]
        conv: ConvId,
        #[serde(default)]
        #[ts(type = "number | null", optional)]
        before: Option<Seq>,
        #[serde(default)]
        #[ts(type = "number | null", optional)]
        after: Option<Seq>,
        limit: u32,
    },
    /// The public room list, with member counts.
    Rooms {
        #[ts(type = "number")]
        id: u64,
    },
    /// Create a room (the creator joins it).
    CreateRoom {
        #[ts(type = "number")]
        id: u64,
        name: String,
        /// A private room: invisible to non-members, who join only when a member adds them
        /// (`add_member`).
        #[serde(default, skip_serializing_if = "is_false")]
        #[ts(optional, as = "Option<bool>")]
        private: bool,
    },
    /// Remove `username` from room `conv` you moderate; with `ban`, they cannot come back.
    RemoveMember {
        #[ts(type = "number")]
        id: u64,
        #[ts(type = "number")]
        conv: ConvId,
        username: String,
        #[serde(default, skip_serializing_if = "is_false")]
        #[ts(optional, as = "Option<bool>")]
        ban: bool,
    },
    /// Add `username` to room `conv` you are a member of (the only way into a private room).
    AddMember {
        #[ts(type = "number")]
        id: u64,
        #[ts(type = "number")]
        conv: ConvId,
        username: String,
    },
    /// Join a room by name.
    Join {
        #[ts(type = "number")]
        id: u64,
        room: String,
    },
    /// Leave a room. The default room and DMs cannot be left.
    Leave {
        #[ts(type = "number")]
        id: u64,
        #[ts(type = "number")]
        conv: ConvId,
    },
    /// Members of a conversation the user belongs to, with presence.
    Members {
        #[ts(type = "number")]
        id: u64,
        #[ts(type = "number")]
        conv: ConvId,
    },
    /// Every registered user, with presence.
    Users {
        #[ts(type = "number")]
        id: u64,
    },
    /// Watch the presence of these users (at most [`limits::MAX_WATCHED_USERS`]), replacing the
    /// socket's previous watch set; answered [`Reply::Watching`], later changes come as
    /// [`ServerFrame::Presence`]. DM partners are always watched.
    WatchPresence {
        #[ts(type = "number")]
        id: u64,
        users: Vec<String>,
    },
    /// Mark everything up to `seq` read; synced to the user's other connections.
    Read {
        #[ts(type = "number")]
        id: u64,
        #[ts(type = "number")]
        conv: ConvId,
        #[ts(type = "number")]
        seq: Seq,
    },
    /// The user is typing in a conversation (not stored; forwarded to the other members).
    Typing {
        #[ts(type = "number")]
        id: u64,
        #[ts(type = "number")]
        conv: ConvId,
    },
    /// Set the user's notification level for a conversation they are in; synced to their
    /// other connections ([`ServerFrame::Level`]).
    SetLevel {
        #[ts(type = "number")]
        id: u64,
        #[ts(type = "number")]
        conv: ConvId,
        level: NotifyLevel,
    },
    /// Turn do not disturb on (until a time, or until turned off) or off (`dnd: null`, or
    /// absent); synced to the user's other connections ([`ServerFrame::Dnd`]).
    SetDnd {
        #[ts(type = "number")]
        id: u64,
        dnd: Option<Dnd>,
    },
}

/// What an `edit`, `delete` or `react` frame asks for, as one conversation event: where, its
/// idempotency key, the action, and the text (an edit's new text, else empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRequest {
    pub conv: ConvId,
    pub client_msg_id: Uuid,
    pub action: Action,
    pub text: String,
}

impl ActionRequest {
    /// The frame that sends it as request `id`.
    pub fn into_frame(self, id: u64) -> ClientFrame {
        let ActionRequest {
            conv,
            client_msg_id,
            action,
            text,
        } = self;
        match action {
            Action::Edit { target } => ClientFrame::Edit {
                id,
                conv,
                target,
                client_msg_id,
                text,
            },
            Action::Delete { target } => ClientFrame::Delete {
                id,
                conv,
                target,
                client_msg_id,
            },
            Action::React { target, emoji, on } => ClientFrame::React {
                id,
                conv,
                target,
                client_msg_id,
                emoji,
                on,
            },
        }
    }
}

/// Why a text frame is not a [`ClientFrame`], as the server answers it in an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// The frame's `id` when it could be read (a non-negative integer), so the answer matches.
    pub id: Option<u64>,
    /// [`ErrorCode::UnknownType`] for a `type` string that names no frame, else
    /// [`ErrorCode::BadRequest`].
    pub code: ErrorCode,
    /// What is wrong, for a person reading a log.
    pub message: String,
}

/// The kind of a JSON value, as error messages name it.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl ClientFrame {
    /// The frame types, in declaration order: serde's own list of the enum's variants, captured
    /// from the error it raises for an unknown one (so it cannot drift from the enum).
    pub fn types() -> &'static [&'static str] {
        use serde::de::value::MapDeserializer;
        #[derive(Debug)]
        struct Expected(&'static [&'static str]);
        impl std::fmt::Display for Expected {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("variants")
            }
        }
        impl std::error::Error for Expected {}
        impl serde::de::Error for Expected {
            fn custom<T: std::fmt::Display>(_: T) -> Self {
                Expected(&[])
            }
            fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
                Expected(expected)
            }
        }
        let probe = MapDeserializer::<_, Expected>::new(std::iter::once(("type", "")));
        match ClientFrame::deserialize(probe) {
            Err(Expected(types)) => types,
            Ok(_) => &[],
        }
    }

    /// Parse a text frame, or say precisely what is wrong with it: not JSON, not an object,
    /// `type` missing or not a string, a `type` naming no frame, or a field of a known frame
    /// missing or mistyped.
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        let bad = |id, message: String| FrameError {
            id,
            code: ErrorCode::BadRequest,
            message,
        };
        // The common case is a well-formed frame: one pass, no intermediate value.
        let first = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => return Ok(frame),
            Err(e) => e,
        };
        let value = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => v,
            Err(e) => return Err(bad(None, format!("malformed JSON: {e}"))),
        };
        let Some(object) = value.as_object() else {
            return Err(bad(
                None,
                format!("a frame must be a JSON object, not {}", json_kind(&value)),
            ));
        };
        let id = object.get("id").and_then(serde_json::Value::as_u64);
        let naming = "a string naming the frame, e.g. \"send\"";
        match object.get("type") {
            None => Err(bad(
                id,
                format!("missing `type`: every frame needs one, {naming}"),
            )),
            Some(serde_json::Value::String(t)) if !Self::types().contains(&t.as_str()) => {
                Err(FrameError {
                    id,
                    code: ErrorCode::UnknownType,
                    message: format!(
                        "unknown frame type `{t}`; the types are {}",
                        Self::types().join(", ")
                    ),
                })
            }
            Some(serde_json::Value::String(t)) => {
                Err(bad(id, format!("invalid `{t}` frame: {first}")))
            }
            Some(other) => Err(bad(
                id,
                format!("`type` must be {naming}, not {}", json_kind(other)),
            )),
        }
    }

    /// The action an `edit`, `delete` or `react` frame asks for; any other frame back as it was.
    pub fn into_action(self) -> Result<ActionRequest, ClientFrame> {
        let (conv, client_msg_id, action, text) = match self {
            ClientFrame::Edit {
                conv,
                target,
                client_msg_id,
                text,
                ..
            } => (conv, client_msg_id, Action::Edit { target }, text),
            ClientFrame::Delete {
                conv,
                target,
                client_msg_id,
                ..
            } => (
                conv,
                client_msg_id,
                Action::Delete { target },
                String::new(),
            ),
            ClientFrame::React {
                conv,
                target,
                client_msg_id,
                emoji,
                on,
                ..
            } => {
                let action = Action::React { target, emoji, on };
                (conv, client_msg_id, action, String::new())
            }
            other => return Err(other),
        };
        Ok(ActionRequest {
            conv,
            client_msg_id,
            action,
            text,
        })
    }

    /// The request id every client frame carries.
    pub fn id(&self) -> u64 {
        match self {
            ClientFrame::Auth { id, .. }
            | ClientFrame::Sync { id, .. }
            | ClientFrame::Send { id, .. }
            | ClientFrame::Edit { id, .. }
            | ClientFrame::Delete { id, .. }
            | ClientFrame::React { id, .. }
            | ClientFrame::History { id, .. }
            | ClientFrame::Rooms { id }
            | ClientFrame::CreateRoom { id, .. }
            | ClientFrame::AddMember { id, .. }
            | ClientFrame::RemoveMember { id, .. }
            | ClientFrame::Join { id, .. }
            | ClientFrame::Leave { id, .. }
            | ClientFrame::Members { id, .. }
            | ClientFrame::Users { id }
            | ClientFrame::WatchPresence { id, .. }
            | ClientFrame::Read { id, .. }
            | ClientFrame::Typing { id, .. }
            | ClientFrame::SetLevel { id, .. }
            | ClientFrame::SetDnd { id, .. } => *id,
        }
    }
}

/// The payload of a successful answer, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[ts(export)]
pub enum Reply {
    /// `auth` accepted; a [`ServerFrame::Hello`] follows.
    Authenticated,
    /// `sync` finished: every missed message has been sent. Unread counts after the replay.
    Synced {
        unread: Vec<Unread>,
    },
    /// `send`, `edit`, `delete` or `react` committed: the event as stored (the original one for a retried `client_msg_id`).
    Sent {
        message: Message,
    },
    /// A `history` page, ascending by seq. `has_more` tells whether older (for `before`) or newer
    /// (for `after`) messages exist beyond this page.
    History {
        #[ts(type = "number")]
        conv: ConvId,
        messages: Vec<Message>,
        has_more: bool,
    },
    Rooms {
        rooms: Vec<RoomInfo>,
    },
    /// `create_room` or `join`: the conversation now joined.
    Joined {
        conversation: Conversation,
    },
    Members {
        #[ts(type = "number")]
        conv: ConvId,
        members: Vec<Member>,
    },
    Users {
        users: Vec<Member>,
    },
    /// `watch_presence`: those of the watched users online now, sorted.
    Watching {
        online: Vec<String>,
    },
    /// `leave`, `read`, `typing`: done, nothing to return.
    Done,
}

/// Stable, machine-readable error codes carried by [`ServerFrame::Error`] and HTTP error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum ErrorCode {
    /// Not JSON, missing or mistyped fields.
    BadRequest,
    /// A frame whose `type` this server does not know.
    UnknownType,
    /// Wrong credentials or token.
    Unauthorized,
    /// Not allowed: not a member, cannot leave, etc.
    Forbidden,
    /// No such conversation, room or user.
    NotFound,
    /// Username or room name already taken.
    Conflict,
    /// Username, room name, password or display name fails the rules.
    InvalidName,
    /// Message text longer than [`limits::MAX_TEXT_CHARS`] (empty or blank text is
    /// [`ErrorCode::BadRequest`]).
    TooLong,
    /// Over a rate limit (frames per user, failed sign-ins or unauthenticated sockets per
    /// address); retry later.
    RateLimited,
    /// A `sync` replaced by a later `sync` on the same socket before it finished (WebSocket
    /// only): the later one replays everything, so there is nothing to retry.
    Cancelled,
    /// The target of an `edit`, `delete`, `react` or reply is an action (not a message), or
    /// (for `edit` and `react`) a deleted message.
    InvalidTarget,
    /// A reaction that is not a single emoji, or longer than [`limits::MAX_REACTION_BYTES`].
    InvalidReaction,
    /// A `send` naming a file that is not one the sender uploaded (or does not exist), the same
    /// file twice, or more than [`limits::MAX_ATTACHMENTS`] files; or attachments on an action.
    InvalidAttachment,
    /// Unexpected server failure; the request may be retried.
    Internal,
    /// The server is at capacity for this kind of work (password checks): HTTP 503 with
    /// `Retry-After`; try again after that many seconds.
    Busy,
    /// The server's disk is full: the write was not stored. Retry once space is freed.
    StorageFull,
    /// Registration on this server needs an invite (`--registration invite`) and none was
    /// given.
    InviteRequired,
    /// The invite is unknown, already used, revoked or expired.
    InvalidInvite,
    /// The account waits for an admin's approval (`--registration approval`): registration
    /// answers it (202) once the account is created, sign-in until an admin approved it.
    PendingApproval,
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
#[ts(export)]
pub enum ServerFrame {
    /// First frame after authentication: who you are and the state to start from.
    Hello {
        protocol: u32,
        /// The server's stable id: the same at every address and on every node of a cluster, so
        /// a client keys what it keeps about a server by it (empty from servers before it
        /// existed).
        #[serde(default)]
        server_id: String,
        user: User,
        #[ts(type = "number")]
        server_time: Millis,
        /// Interval of the server's pings, so a client can size its own liveness check.
        #[ts(type = "number")]
        heartbeat_ms: u64,
        conversations: Vec<Conversation>,
        /// Of this user and the users they share a direct message with, those online now,
        /// sorted. Anyone else's presence is asked for with [`ClientFrame::WatchPresence`].
        online: Vec<String>,
        unread: Vec<Unread>,
        /// Do not disturb and notification levels (absent from servers before they existed).
        #[serde(default)]
        attention: Attention,
    },
    /// The answer to request `id`.
    Ok {
        #[ts(type = "number")]
        id: u64,
        result: Reply,
    },
    /// A request failed (`id` is absent when the frame could not be parsed far enough to know it).
    Error {
        #[ts(type = "number | null")]
        id: Option<u64>,
        code: ErrorCode,
        message: String,
    },
    /// A new message in one of the user's conversations (including the user's own, from any
    /// device), or an action on one (an edit, delete or reaction: see [`Action`]).
    Message { message: Message },
    /// Replayed messages (and actions) of one conversation during a `sync`, ascending by seq.
    Batch {
        #[ts(type = "number")]
        conv: ConvId,
        messages: Vec<Message>,
    },
    /// Watched users (DM partners and the socket's [`ClientFrame::WatchPresence`]) who came
    /// online or went offline since the last presence frame, each named once by their latest
    /// state, sorted. Never names the receiving user.
    Presence {
        online: Vec<String>,
        offline: Vec<String>,
    },
    /// Someone is typing in a conversation.
    Typing {
        #[ts(type = "number")]
        conv: ConvId,
        username: String,
    },
    /// The user's read marker moved (from another of their devices).
    Read {
        #[ts(type = "number")]
        conv: ConvId,
        #[ts(type = "number")]
        seq: Seq,
    },
    /// The user's notification level for a conversation changed (on another device).
    Level {
        #[ts(type = "number")]
        conv: ConvId,
        level: NotifyLevel,
    },
    /// The user's do not disturb changed (on another device); null: turned off.
    Dnd { dnd: Option<Dnd> },
    /// The user became a member of a conversation (joined a room elsewhere, or a new DM).
    ConversationAdded { conversation: Conversation },
    /// Conversations the user is in whose description for them changed, whole and as of now:
    /// the rooms they moderate or no longer moderate after their admin role was granted or
    /// revoked (`natter-server admin`).
    ConversationsUpdated { conversations: Vec<Conversation> },
    /// The user is no longer a member of a conversation (left it, possibly on another device).
    ConversationRemoved {
        #[ts(type = "number")]
        conv: ConvId,
    },
    /// Someone joined or left a room the user is in.
    Membership {
        #[ts(type = "number")]
        conv: ConvId,
        username: String,
        joined: bool,
    },
    /// A user who shares a conversation with the receiving user (or the user themself) changed
    /// their display name or avatar, or deleted their account (`deleted`): their public
    /// profile as it is now.
    UserUpdated { user: User },
}

/// `POST /api/register` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct RegisterRequest {
    pub username: String,
    pub password: String,
    /// Defaults to the username when absent or empty.
    #[serde(default)]
    #[ts(optional)]
    pub display_name: Option<String>,
    /// Defaults to a preset chosen from the username when absent or empty.
    #[serde(default)]
    #[ts(optional)]
    pub avatar: Option<String>,
    /// An invite code an admin made (`POST /api/invites`): needed on a server whose
    /// registration is `invite`; on an `approval` server it spares the wait for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub invite: Option<String>,
}

/// `POST /api/login` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// The `device_token` an earlier successful sign-in of this user on this device returned:
    /// such a sign-in is exempt from the per-address and per-account sign-in limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub device_token: Option<String>,
    /// Names the device or client this session is on, for the session list (without it, the
    /// request's `User-Agent` names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub label: Option<String>,
}

/// Successful `register` or `login`: a bearer token for the `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Session {
    pub token: String,
    pub user: User,
    #[ts(type = "number")]
    pub expires_at: Millis,
    /// Marks this device as known to this user's account: keep it (also after signing out) and
    /// send it with later logins of the same user. Absent from servers before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub device_token: Option<String>,
}

// ---- your account (docs/protocol.md, "Your account") ----------------------------------------

/// `POST /api/account/profile` body: the fields to change (an absent field stays as it is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct ProfileRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub avatar: Option<String>,
}

/// `POST /api/account/password` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct PasswordRequest {
    pub current_password: String,
    pub new_password: String,
    /// Also revoke every other session of the account (their sockets close with 4001).
    #[serde(default)]
    #[ts(optional, as = "Option<bool>")]
    pub sign_out_others: bool,
}

/// `POST /api/account/delete` body: the password, once more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct DeleteAccountRequest {
    pub password: String,
}

/// One live session of the account, as `GET /api/account/sessions` lists it. The id is opaque
/// (it is not the token nor its hash) and names the session for `DELETE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct SessionInfo {
    pub id: String,
    /// The label the sign-in sent (`label`), else its `User-Agent`, if any.
    pub label: Option<String>,
    #[ts(type = "number")]
    pub created_at: Millis,
    #[ts(type = "number")]
    pub expires_at: Millis,
    /// The session this request was made with.
    pub current: bool,
}

/// `GET /api/account/sessions` body: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
}

// ---- run by its host (docs/protocol.md, "Run by its host") ----------------------------------

/// Who may create an account on a server (`natter-server --registration`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum Registration {
    /// Anyone who reaches the server.
    #[default]
    Open,
    /// Only with an invite code an admin made.
    Invite,
    /// Anyone, but a new account waits until an admin approves it (an invite spares the wait).
    Approval,
}

/// `POST /api/invites` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct InviteRequest {
    /// Seconds the invite stays valid, in [`limits::INVITE_SECS`]; default
    /// [`limits::INVITE_DEFAULT_SECS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "number")]
    pub expires_in: Option<u64>,
}

/// An invite, as `POST /api/invites` answers it (with its `code`, shown this once) and
/// `GET /api/invites` lists it (without).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Invite {
    /// Names the invite for `DELETE /api/invites/{id}`.
    #[ts(type = "number")]
    pub id: i64,
    /// The code to give the invited person; only the answer that made the invite carries it
    /// (the server keeps only its hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub code: Option<String>,
    /// The admin who made it.
    pub created_by: String,
    #[ts(type = "number")]
    pub created_at: Millis,
    #[ts(type = "number")]
    pub expires_at: Millis,
}

/// `GET /api/invites` body: the invites not yet used, revoked or expired, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct InviteList {
    pub invites: Vec<Invite>,
}

/// An account waiting for approval, as `GET /api/admin/pending` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct PendingUser {
    pub username: String,
    pub display_name: String,
    #[ts(type = "number")]
    pub created_at: Millis,
}

/// `GET /api/admin/pending` body: oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct PendingList {
    pub users: Vec<PendingUser>,
}

/// The body of the admin routes that name one account: `POST /api/admin/approve`, `reject`,
/// `ban` and `unban`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct UsernameRequest {
    pub username: String,
}

/// The body of every HTTP error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

/// `GET /api/health` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub protocol: u32,
    /// The server's stable id, as `hello` carries it (empty from servers before it existed).
    #[serde(default)]
    pub server_id: String,
    /// Only on a node of a cluster (`--bus`): how it stands on the bus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub cluster: Option<ClusterHealth>,
    /// Who may create an account here, so a client knows to ask for an invite. Absent from
    /// servers before it existed (they are `open`).
    #[serde(default)]
    #[ts(optional)]
    pub registration: Option<Registration>,
}

/// A cluster node's view of the bus between nodes, in `GET /api/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ClusterHealth {
    /// Whether the node hears the bus now (false while it reconnects).
    pub subscribed: bool,
    /// The other nodes it hears (each within its lease).
    pub nodes: u32,
}

/// Whether `text` is a sendable message: not blank (only Unicode White_Space, which is what
/// `str::trim` removes), at most [`limits::MAX_TEXT_CHARS`] chars.
pub fn is_valid_text(text: &str) -> bool {
    !text.trim().is_empty() && text.chars().count() <= limits::MAX_TEXT_CHARS
}

/// Whether `emoji` is a reaction: one grapheme cluster of at most
/// [`limits::MAX_REACTION_BYTES`] bytes, made only of emoji characters and the pieces emoji
/// sequences are built of (ZWJ, variation selectors, keycap, tags, skin tones), and shown as an
/// emoji: it has a character whose default presentation is emoji, or the emoji variation
/// selector U+FE0F, or is a flag. So "👍", "👍🏽", "👨‍👩‍👧", "❤️", "1️⃣" and "🇫🇷" are
/// reactions; "1", "#", "©" (text presentation), "ab" and "👍👍" are not.
pub fn is_valid_reaction(emoji: &str) -> bool {
    use unicode_properties::emoji::{self as props, EmojiStatus, UnicodeEmoji};
    use unicode_segmentation::UnicodeSegmentation;
    const KEYCAP: char = '\u{20E3}';
    if emoji.is_empty() || emoji.len() > limits::MAX_REACTION_BYTES {
        return false;
    }
    if emoji.graphemes(true).nth(1).is_some() {
        return false;
    }
    let pieces_ok = emoji.chars().all(|c| {
        c.is_emoji_char_or_emoji_component()
            || props::is_zwj(c)
            || props::is_emoji_presentation_selector(c)
            || props::is_tag_character(c)
            || c == KEYCAP
    });
    let shown_as_emoji = emoji.chars().any(|c| {
        props::is_emoji_presentation_selector(c)
            || props::is_regional_indicator(c)
            || matches!(
                c.emoji_status(),
                EmojiStatus::EmojiPresentation
                    | EmojiStatus::EmojiPresentationAndModifierBase
                    | EmojiStatus::EmojiPresentationAndEmojiComponent
                    | EmojiStatus::EmojiPresentationAndModifierAndEmojiComponent
            )
    });
    let has_emoji = emoji.chars().any(UnicodeEmoji::is_emoji_char);
    pieces_ok && has_emoji && shown_as_emoji
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_frames_parse_from_documented_json() {
        let send: ClientFrame = serde_json::from_value(json!({
            "type": "send", "id": 7, "conv": 1,
            "client_msg_id": "6f1c4a52-8f52-4a43-9b8e-0d4b1f7f6a10", "text": "hi"
        }))
        .unwrap();
        assert_eq!(send.id(), 7);
        assert!(matches!(
            send,
            ClientFrame::Send {
                target: Target::Conv(1),
                ..
            }
        ));

        let dm: ClientFrame = serde_json::from_value(json!({
            "type": "send", "id": 8, "to": "bob",
            "client_msg_id": "6f1c4a52-8f52-4a43-9b8e-0d4b1f7f6a10", "text": "hi"
        }))
        .unwrap();
        assert!(matches!(dm, ClientFrame::Send { target: Target::To(ref u), .. } if u == "bob"));

        let history: ClientFrame = serde_json::from_value(
            json!({"type": "history", "id": 9, "conv": 3, "before": 100, "limit": 50}),
        )
        .unwrap();
        assert!(matches!(
            history,
            ClientFrame::History {
                before: Some(100),
                after: None,
                ..
            }
        ));
    }

    #[test]
    fn a_conversation_from_an_older_server_is_neither_private_nor_moderated() {
        let old: Conversation = serde_json::from_value(json!({
            "id": 5, "kind": "room", "name": "Rust", "peer": null, "member_count": 1,
            "last_seq": 0, "last_read": 0
        }))
        .unwrap();
        assert!(!old.private && !old.moderator);
        let new: Conversation = serde_json::from_value(json!({
            "id": 5, "kind": "room", "name": "Rust", "peer": null, "member_count": 1,
            "last_seq": 0, "last_read": 0, "private": true, "moderator": true
        }))
        .unwrap();
        assert!(new.private && new.moderator);
    }

    #[test]
    fn bad_client_frames_are_rejected() {
        for bad in [
            json!({"type": "nope", "id": 1}),
            json!({"type": "send", "id": 1}),
            json!({"type": "send", "id": "x", "conv": 1, "client_msg_id": "not-a-uuid", "text": "a"}),
            json!({"id": 1}),
        ] {
            assert!(
                serde_json::from_value::<ClientFrame>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn server_frames_are_tagged_snake_case() {
        let ok = ServerFrame::Ok {
            id: 3,
            result: Reply::Done,
        };
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            json!({"type": "ok", "id": 3, "result": {"kind": "done"}})
        );
        let err = ServerFrame::Error {
            id: None,
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
        };
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"type": "error", "id": null, "code": "rate_limited", "message": "slow down"})
        );
        let added = ServerFrame::ConversationRemoved { conv: 4 };
        assert_eq!(
            serde_json::to_value(&added).unwrap(),
            json!({"type": "conversation_removed", "conv": 4})
        );
    }

    #[test]
    fn frame_errors_say_what_is_wrong() {
        let err = |text: &str| ClientFrame::parse(text).unwrap_err();
        let e = err(r#"{"type":5,"id":9}"#);
        assert_eq!((e.id, e.code), (Some(9), ErrorCode::BadRequest));
        assert!(e.message.contains("`type` must be a string") && e.message.contains("a number"));
        assert!(!e.message.contains("missing"), "{}", e.message);
        let e = err(r#"{"type":null,"id":1}"#);
        assert!(e.message.contains("not null"), "{}", e.message);
        let e = err(r#"{"type":["send"],"id":1}"#);
        assert!(e.message.contains("not an array"), "{}", e.message);
        let e = err(r#"{"id":2}"#);
        assert_eq!(e.id, Some(2));
        assert!(e.message.starts_with("missing `type`"), "{}", e.message);
        let e = err(r#"{"type":"zap","id":4}"#);
        assert_eq!((e.id, e.code), (Some(4), ErrorCode::UnknownType));
        assert!(e.message.contains("`zap`") && e.message.contains("create_room"));
        let e = err(r#"{"type":"send","id":5}"#);
        assert_eq!((e.id, e.code), (Some(5), ErrorCode::BadRequest));
        assert!(e.message.contains("invalid `send` frame") && e.message.contains("client_msg_id"));
        let e = err(r#"[1,2]"#);
        assert_eq!(e.message, "a frame must be a JSON object, not an array");
        assert!(err("{nope").message.starts_with("malformed JSON"));
        assert_eq!(err(r#"{"type":"rooms","id":"x"}"#).id, None);
    }

    /// `ClientFrame::types()` is the enum's own list (serde's), complete and in order: each
    /// listed type parses past the tag, and the count is the enum's.
    #[test]
    fn frame_types_are_the_enums_own() {
        let types = ClientFrame::types();
        assert_eq!(types.first(), Some(&"auth"));
        assert_eq!(types.last(), Some(&"set_dnd"));
        assert_eq!(types.len(), 20, "{types:?}");
        for t in types {
            let e = ClientFrame::parse(&format!(r#"{{"type":"{t}","id":1}}"#)).err();
            assert!(
                e.as_ref().is_none_or(|e| e.code != ErrorCode::UnknownType),
                "{t}: {e:?}"
            );
        }
    }

    /// A send names exactly one target; both or neither is a bad request, with the rule named.
    #[test]
    fn a_send_target_is_exactly_one_of_conv_and_to() {
        let cmid = "6b7e5f0a-1c2d-4e3f-8a9b-0c1d2e3f4a5b";
        let send = |fields: &str| {
            ClientFrame::parse(&format!(
                r#"{{"type":"send","id":7,"client_msg_id":"{cmid}","text":"hi"{fields}}}"#
            ))
        };
        let target = |frame: ClientFrame| match frame {
            ClientFrame::Send { target, .. } => target,
            other => panic!("{other:?}"),
        };
        assert_eq!(target(send(r#","conv":5"#).unwrap()), Target::Conv(5));
        assert_eq!(
            target(send(r#","to":"bob""#).unwrap()),
            Target::To("bob".into())
        );
        assert_eq!(
            target(send(r#","to":"bob","conv":null"#).unwrap()),
            Target::To("bob".into())
        );
        for bad in [
            r#","conv":5,"to":"bob""#,
            "",
            r#","conv":null"#,
            r#","conv":"5""#,
        ] {
            let e = send(bad).unwrap_err();
            assert_eq!((e.id, e.code), (Some(7), ErrorCode::BadRequest), "{bad}");
            if !bad.contains("\"5\"") {
                assert!(
                    e.message.contains("exactly one of `conv` and `to`"),
                    "{bad}: {e:?}"
                );
            }
        }
        let wire = serde_json::to_value(ClientFrame::Send {
            id: 1,
            target: Target::Conv(3),
            client_msg_id: cmid.parse().unwrap(),
            text: "x".into(),
            reply_to: None,
            attachments: Vec::new(),
        })
        .unwrap();
        assert_eq!(wire["conv"], 3);
        assert!(wire.get("to").is_none());
    }

    /// The largest server frame the limit allows for is a real worst case: a full history page
    /// of the longest texts of the widest escaping, with the longest names and numbers.
    #[test]
    fn the_worst_history_page_fits_the_server_frame_limit() {
        let message = Message {
            id: i64::MIN,
            conv: i64::MIN,
            seq: i64::MIN,
            sender: "\u{10400}".repeat(limits::MAX_USERNAME_CHARS),
            text: "\u{1}".repeat(limits::MAX_TEXT_CHARS),
            time: i64::MIN,
            client_msg_id: Uuid::nil(),
            // Every optional field at its longest (no one event has them all).
            reply_to: Some(i64::MIN),
            action: Some(Action::React {
                target: i64::MIN,
                emoji: "\u{10400}".repeat(limits::MAX_REACTION_BYTES / 4),
                on: false,
            }),
            edited: Some(i64::MIN),
            deleted: true,
            attachments: vec![
                Attachment {
                    id: "f".repeat(32),
                    name: "\u{10400}".repeat(limits::MAX_FILE_NAME_CHARS),
                    media_type: "application/octet-stream".into(),
                    size: u64::MAX,
                    width: Some(u32::MAX),
                    height: Some(u32::MAX),
                    thumbnail: Some("a".repeat(64)),
                };
                limits::MAX_ATTACHMENTS
            ],
        };
        let frame = ServerFrame::Ok {
            id: u64::MAX,
            result: Reply::History {
                conv: i64::MIN,
                messages: vec![message; limits::MAX_PAGE as usize],
                has_more: true,
            },
        };
        let len = serde_json::to_string(&frame).unwrap().len();
        assert!(
            len <= limits::MAX_SERVER_FRAME_BYTES,
            "{len} > {}",
            limits::MAX_SERVER_FRAME_BYTES
        );
        // Not wastefully loose either: within 2% of the real worst case.
        assert!(len * 50 >= limits::MAX_SERVER_FRAME_BYTES * 49, "{len}");
    }

    #[test]
    fn notify_level_names_are_the_wire_names() {
        for level in NotifyLevel::ALL {
            assert_eq!(serde_json::to_value(level).unwrap(), json!(level.as_str()));
            assert_eq!(NotifyLevel::from_name(level.as_str()), Some(level));
        }
        assert_eq!(NotifyLevel::from_name("loud"), None);
        let e = ClientFrame::parse(r#"{"type":"set_level","id":3,"conv":1,"level":"loud"}"#)
            .unwrap_err();
        assert_eq!((e.id, e.code), (Some(3), ErrorCode::BadRequest));
        assert!(e.message.contains("loud"), "{}", e.message);
    }

    /// An action request and its frame are one shape, both ways; other frames are no action.
    #[test]
    fn action_frames_round_trip_through_their_request() {
        let cmid = Uuid::from_u128(7);
        for action in [
            Action::Edit { target: 3 },
            Action::Delete { target: 4 },
            Action::React {
                target: 5,
                emoji: "👍".into(),
                on: false,
            },
        ] {
            let text = if matches!(action, Action::Edit { .. }) {
                "new"
            } else {
                ""
            };
            let request = ActionRequest {
                conv: 2,
                client_msg_id: cmid,
                action,
                text: text.into(),
            };
            let frame = request.clone().into_frame(9);
            assert_eq!(frame.id(), 9);
            assert_eq!(frame.into_action(), Ok(request));
        }
        let rooms = ClientFrame::Rooms { id: 1 };
        assert_eq!(rooms.clone().into_action(), Err(rooms));
    }

    #[test]
    fn reactions_are_single_emoji() {
        for good in [
            "👍",
            "👍🏽",
            "👨\u{200D}👩\u{200D}👧",
            "❤\u{FE0F}",
            "1\u{FE0F}\u{20E3}",
            "🇫🇷",
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
        ] {
            assert!(is_valid_reaction(good), "{good:?}");
        }
        let long = "👍".repeat(250);
        for bad in [
            "",
            "1",
            "#",
            "©",
            "a",
            "ab",
            "👍👍",
            " 👍",
            "<b>",
            long.as_str(),
            "\u{200D}",
            "\u{FE0F}",
        ] {
            assert!(!is_valid_reaction(bad), "{bad:?}");
        }
        assert_eq!(long.chars().count(), 250);
    }

    #[test]
    fn text_limits() {
        assert!(is_valid_text("你好世界"));
        assert!(!is_valid_text("   \n"));
        assert!(is_valid_text(&"字".repeat(4_000)));
        assert!(!is_valid_text(&"a".repeat(4_001)));
    }
}
