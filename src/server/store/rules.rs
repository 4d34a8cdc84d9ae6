//! What every storage backend decides the same way; only their SQL drivers differ. Name lookups
//! and clashes (the SQL is written with `$n` placeholders, which SQLite and PostgreSQL both
//! take), the refusals for acting in a conversation one is not in, leaving, moving a read
//! marker, a DM's key, who may act on which message (edits, deletes, reactions, replies) and
//! what an action changes; the queries of files and which messages carry them; who may
//! register and administer ([`access_sql`], [`admission`]).

use crate::names::Name;
use crate::protocol::{
    limits, Action, Attachment, ConvKind, ErrorCode, Message, Millis, Registration, Seq,
};

use super::{StoreError, UserId};

/// The columns a message is read from, users joined as `u` and messages as `m`: id, conv, seq,
/// sender, text, time, client_msg_id (0..=6), then reply_to, action, target, emoji (7..=10,
/// read by [`action_from_columns`]), edited_at, deleted (11, 12).
pub const MESSAGE_COLUMNS: &str = "m.id, m.conv_id, m.seq, u.username, m.text, m.time, \
     m.client_msg_id, m.reply_to, m.action, m.target, m.emoji, m.edited_at, \
     m.deleted_at IS NOT NULL";

/// Stores a new message or action: $1 conv, $2 seq, $3 sender, $4 text, $5 time,
/// $6 client_msg_id, $7 reply_to, $8 action, $9 target, $10 emoji (see [`action_columns`]).
pub const INSERT_MESSAGE: &str = "INSERT INTO messages (conv_id, seq, sender_id, text, time, \
     client_msg_id, reply_to, action, target, emoji) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// An upload's columns as the backends' `file_from_row` reads them (then any the query adds).
macro_rules! file_columns {
    () => {
        "f.id, f.name, f.media_type, f.size, f.width, f.height, f.thumb_blob, f.uploader_id, \
         f.blob, f.thumb_type"
    };
}

/// The number of [`file_columns`]: the index of the first column a query adds after them.
pub const FILE_COLUMN_COUNT: usize = 10;

/// Upload $1 if user $2 may read it: its uploader, or a member of a conversation where a
/// message carrying it was posted (the one rule for downloads; nobody else learns it exists).
pub const FILE_FOR_SQL: &str = concat!(
    "SELECT ",
    file_columns!(),
    " FROM files f WHERE f.id = $1 AND (f.uploader_id = $2 OR EXISTS (SELECT 1 \
     FROM message_files mf JOIN members mb ON mb.conv_id = mf.conv_id AND mb.user_id = $2 \
     WHERE mf.file_id = f.id))"
);

/// Upload $1 if user $2 uploaded it: the only files a user may attach to a message.
pub const OWN_FILE_SQL: &str = concat!(
    "SELECT ",
    file_columns!(),
    " FROM files f WHERE f.id = $1 AND f.uploader_id = $2"
);

/// The files of conversation $1's messages from seq $2 to $3, in seq then sent order, each
/// with its message's seq after the file's columns.
pub const MESSAGE_FILES_SQL: &str = concat!(
    "SELECT ",
    file_columns!(),
    ", mf.seq FROM message_files mf JOIN files f ON f.id = mf.file_id \
     WHERE mf.conv_id = $1 AND mf.seq >= $2 AND mf.seq <= $3 ORDER BY mf.seq, mf.position"
);

/// Attaches file $4 to the message at seq $2 of conversation $1, at position $3.
pub const INSERT_MESSAGE_FILE: &str =
    "INSERT INTO message_files (conv_id, seq, position, file_id) VALUES ($1, $2, $3, $4)";

/// A deleted message's files leave it: $1 conv, $2 seq. (The uploader keeps them; the other
/// members lose access unless another message still carries them.)
pub const UNATTACH_SQL: &str = "DELETE FROM message_files WHERE conv_id = $1 AND seq = $2";

/// Whether blob $1 is someone's current profile picture (the only blobs served as avatars).
pub const IS_AVATAR_SQL: &str = "SELECT 1 FROM users WHERE avatar_image = $1 LIMIT 1";

/// The refusal of an attachment the sender did not upload (or that does not exist).
pub fn not_your_file(id: &str) -> StoreError {
    StoreError::rejected(
        ErrorCode::InvalidAttachment,
        format!("no file {id} uploaded by you: upload it with POST /api/files first"),
    )
}

/// The seq span of a page of messages, to read their files in one query: None when the page
/// is empty.
pub fn seq_span(messages: &[Message]) -> Option<(Seq, Seq)> {
    Some((messages.first()?.seq, messages.last()?.seq))
}

/// Give each message of an ascending page its files, from (seq, file) rows in seq then sent
/// order ([`MESSAGE_FILES_SQL`]).
pub fn attach(messages: &mut [Message], files: Vec<(Seq, Attachment)>) {
    let mut files = files.into_iter().peekable();
    for message in messages {
        while let Some((seq, _)) = files.peek() {
            if *seq < message.seq {
                files.next();
            } else if *seq == message.seq {
                if let Some((_, file)) = files.next() {
                    message.attachments.push(file);
                }
            } else {
                break;
            }
        }
    }
}

/// Records an upload: $1 id, $2 uploader, $3 blob, $4 name, $5 media type, $6 size, $7 width,
/// $8 height, $9 thumbnail blob, $10 thumbnail type, $11 time.
pub const INSERT_FILE: &str = "INSERT INTO files (id, uploader_id, blob, name, media_type, size, \
     width, height, thumb_blob, thumb_type, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// What user $1's quota counts: the bytes of every upload recorded and of every upload under
/// way (reserved). (PostgreSQL sums BIGINTs as NUMERIC: the cast keeps it an integer both
/// backends read alike.)
pub const QUOTA_USED_SQL: &str = "SELECT CAST(\
     COALESCE((SELECT SUM(size) FROM files WHERE uploader_id = $1), 0) + \
     COALESCE((SELECT SUM(size) FROM upload_reservations WHERE uploader_id = $1), 0) AS BIGINT)";

/// Reserves an upload: $1 id, $2 uploader, $3 declared bytes, $4 time.
pub const INSERT_RESERVATION: &str = "INSERT INTO upload_reservations \
     (id, uploader_id, size, created_at) VALUES ($1, $2, $3, $4)";

/// Reservation $3 names the blobs its upload will use: $1 the bytes, $2 the thumbnail. (The
/// placeholders come in ascending order: SQLite numbers `$n` by first appearance.)
pub const HOLD_BLOBS_SQL: &str =
    "UPDATE upload_reservations SET blob = $1, thumb_blob = $2 WHERE id = $3";

/// Whether blob $1 (or $2) is on its way out of the blob store.
pub const DOOMED_SQL: &str = "SELECT 1 FROM doomed_blobs WHERE blob = $1 OR blob = $2 LIMIT 1";

/// Ends reservation $1 (its upload was recorded, or failed).
pub const END_RESERVATION: &str = "DELETE FROM upload_reservations WHERE id = $1";

/// Reservations made before $1: their uploads died with their node (or outlived the grace).
pub const EXPIRE_RESERVATIONS: &str = "DELETE FROM upload_reservations WHERE created_at < $1";

/// Uploads made before $1 that no message carries: id, blob, thumbnail blob; $2 of them at most.
/// (A profile picture is never an upload row, so never among them.)
pub const UNATTACHED_FILES_SQL: &str = "SELECT f.id, f.blob, f.thumb_blob FROM files f \
     WHERE f.created_at < $1 AND NOT EXISTS \
     (SELECT 1 FROM message_files mf WHERE mf.file_id = f.id) ORDER BY f.created_at LIMIT $2";

/// Removes upload $1 if still no message carries it (a send may have attached it meanwhile).
pub const DELETE_UNATTACHED_FILE: &str = "DELETE FROM files WHERE id = $1 AND NOT EXISTS \
     (SELECT 1 FROM message_files mf WHERE mf.file_id = files.id)";

/// Whether anything still names blob $1: an upload (its bytes or thumbnail), a profile picture,
/// or an upload under way. Only a blob nothing names leaves the blob store.
pub const BLOB_NAMED_SQL: &str = "SELECT \
     EXISTS (SELECT 1 FROM files WHERE blob = $1) \
     OR EXISTS (SELECT 1 FROM files WHERE thumb_blob = $1) \
     OR EXISTS (SELECT 1 FROM users WHERE avatar_image = $1) \
     OR EXISTS (SELECT 1 FROM upload_reservations WHERE blob = $1 OR thumb_blob = $1)";

/// Marks blob $1 for deletion from the blob store.
pub const DOOM_BLOB: &str = "INSERT INTO doomed_blobs (blob) VALUES ($1) ON CONFLICT DO NOTHING";

/// Every blob marked for deletion (a sweep's, and any a sweep that died left).
pub const DOOMED_BLOBS_SQL: &str = "SELECT blob FROM doomed_blobs ORDER BY blob LIMIT $1";

/// Blob $1 is gone from the blob store.
pub const FORGET_BLOB: &str = "DELETE FROM doomed_blobs WHERE blob = $1";

/// Most uploads one sweep write removes (a sweep repeats until fewer are left).
pub const SWEEP_BATCH: i64 = 500;

/// Refuse an upload of `declared` bytes when the user's uploads (recorded and under way) total
/// `used` and their quota is `quota` (0: none).
pub fn check_quota(quota: u64, used: u64, declared: u64) -> Result<(), StoreError> {
    if quota > 0 && used.saturating_add(declared) > quota {
        return Err(StoreError::rejected(
            ErrorCode::TooLong,
            format!(
                "your uploads may total {quota} bytes; {used} are used and this file needs \
                 {declared} more"
            ),
        ));
    }
    Ok(())
}

/// The refusal of holding a blob that a sweep is deleting: the upload waits and tries again.
pub fn blob_doomed() -> StoreError {
    StoreError::rejected(
        ErrorCode::Busy,
        "the same bytes are being removed from the blob store; try again",
    )
}

/// The refusal of recording an upload whose reservation is gone (the sweep removed it).
pub fn reservation_gone() -> StoreError {
    StoreError::rejected(
        ErrorCode::BadRequest,
        "the upload took longer than the server keeps an upload under way; upload it again",
    )
}
/// Whether $2 (a user) moderates $1 (a conversation): a room's creator, or an admin, in a
/// room (never a DM). The one definition of who moderates.
pub const MODERATES: &str = "EXISTS (SELECT 1 FROM conversations c WHERE c.id = $1 \
     AND c.kind = 'room' AND (c.created_by = $2 OR EXISTS (SELECT 1 FROM users u \
     WHERE u.id = $2 AND u.admin AND u.deleted_at IS NULL)))";

/// What an action, a reply or a message points at: its sender, whether it is itself an action,
/// whether it was deleted, and whether the acting user moderates the conversation
/// ([`MODERATES`]). $1 conv, $2 acting user, $3 seq.
pub fn target_sql() -> String {
    format!(
        "SELECT m.sender_id, m.action IS NOT NULL, m.deleted_at IS NOT NULL, {MODERATES} \
         FROM messages m WHERE m.conv_id = $1 AND m.seq = $3"
    )
}

/// An edit's effect: $1 new text, $2 time, $3 conv, $4 target seq. (Placeholders appear in
/// number order: SQLite numbers `$n` by first appearance.)
pub const EDIT_SQL: &str =
    "UPDATE messages SET text = $1, edited_at = $2 WHERE conv_id = $3 AND seq = $4";

/// A delete's effect: the target's text and the text of every edit of it are gone (not
/// hidden), marked deleted at $1. $2 conv, $3 target seq.
pub const DELETE_SQL: &str = "UPDATE messages SET text = '', deleted_at = $1 \
     WHERE conv_id = $2 AND (seq = $3 OR (action = 'edit' AND target = $3))";

/// How an action is stored: the `action` column's value, the target, the emoji.
pub fn action_columns(
    action: Option<&Action>,
) -> (Option<&'static str>, Option<Seq>, Option<&str>) {
    match action {
        None => (None, None, None),
        Some(Action::Edit { target }) => (Some("edit"), Some(*target), None),
        Some(Action::Delete { target }) => (Some("delete"), Some(*target), None),
        Some(Action::React { target, emoji, on }) => (
            Some(if *on { "react" } else { "unreact" }),
            Some(*target),
            Some(emoji.as_str()),
        ),
    }
}

/// The action stored as [`action_columns`] wrote it (None for a message, or for a value no
/// version wrote).
pub fn action_from_columns(
    kind: Option<&str>,
    target: Option<Seq>,
    emoji: Option<String>,
) -> Option<Action> {
    let target = target?;
    match kind? {
        "edit" => Some(Action::Edit { target }),
        "delete" => Some(Action::Delete { target }),
        "react" | "unreact" => Some(Action::React {
            target,
            emoji: emoji?,
            on: kind == Some("react"),
        }),
        _ => None,
    }
}

/// The message an action or reply points at, as [`TARGET_SQL`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct TargetRow {
    pub sender: UserId,
    pub is_action: bool,
    pub deleted: bool,
    /// The acting user moderates the conversation ([`MODERATES`]): may delete others' messages.
    pub by_moderator: bool,
}

/// Whether `user` may send `action` (None: a reply) about `target` (what [`target_sql`] found):
/// the target must be a message of that conversation, not an action; only its author edits it
/// and only its author (or a moderator of the room) deletes it; a deleted message cannot be edited,
/// deleted again or reacted to, but can be replied to (the reply shows it was deleted).
pub fn may_act(
    user: UserId,
    action: Option<&Action>,
    target: Option<TargetRow>,
) -> Result<(), StoreError> {
    let Some(target) = target else {
        return Err(StoreError::rejected(
            ErrorCode::NotFound,
            "no message with that seq in this conversation",
        ));
    };
    if target.is_action {
        return Err(StoreError::rejected(
            ErrorCode::InvalidTarget,
            "the target is an edit, delete or reaction, not a message",
        ));
    }
    let Some(action) = action else {
        return Ok(());
    };
    if target.deleted {
        return Err(StoreError::rejected(
            ErrorCode::InvalidTarget,
            "the message was deleted",
        ));
    }
    match action {
        Action::Edit { .. } if target.sender != user => Err(StoreError::rejected(
            ErrorCode::Forbidden,
            "only the author can edit a message",
        )),
        Action::Delete { .. } if target.sender != user && !target.by_moderator => {
            Err(StoreError::rejected(
                ErrorCode::Forbidden,
                "only the author or a moderator of the room can delete a message",
            ))
        }
        _ => Ok(()),
    }
}

/// The message a reply or action of `action` (None: a plain message or reply) points at.
pub fn target_of(reply_to: Option<Seq>, action: Option<&Action>) -> Option<Seq> {
    action.map(Action::target).or(reply_to)
}

/// What a committed action did to its target, for the statement that applies it: the edit's
/// new text and time, or the delete's time; nothing for a reaction (its event is the record).
pub enum Effect<'a> {
    Edit { text: &'a str, now: Millis },
    Delete { now: Millis },
}

/// The effect of `action` on its target (None for reactions and messages).
pub fn effect<'a>(action: Option<&Action>, text: &'a str, now: Millis) -> Option<Effect<'a>> {
    match action? {
        Action::Edit { .. } => Some(Effect::Edit { text, now }),
        Action::Delete { .. } => Some(Effect::Delete { now }),
        Action::React { .. } => None,
    }
}

/// The columns a user is read from: id, username, display name, avatar, deleted, profile
/// picture, admin.
pub const USER_COLUMNS: &str =
    "id, username, display_name, avatar, deleted_at IS NOT NULL, avatar_image, admin";

/// The display name a deleted account keeps, for clients that do not look at `deleted`.
pub const DELETED_DISPLAY_NAME: &str = "Deleted user";

/// Device tokens remembered per user; signing in on more devices forgets the oldest.
pub const MAX_DEVICES_PER_USER: i64 = 32;

/// The users or the rooms, for name lookups and uniqueness checks.
#[derive(Debug, Clone, Copy)]
pub enum Names {
    Users,
    Rooms,
}

impl Names {
    /// The id of the user or room with the key $1; $2 is the spelling as typed, which wins
    /// among rows from before the name rules that share a key; else the oldest.
    pub fn find_sql(self) -> &'static str {
        match self {
            Names::Users => {
                "SELECT id FROM users WHERE fold_key = $1 ORDER BY username = $2 DESC, id LIMIT 1"
            }
            Names::Rooms => {
                "SELECT id FROM conversations WHERE kind = 'room' AND fold_key = $1 \
                 ORDER BY name = $2 DESC, id LIMIT 1"
            }
        }
    }

    /// An existing name with the key $1 or the skeleton $2, and whether the key is equal.
    pub fn clash_sql(self) -> &'static str {
        match self {
            Names::Users => {
                "SELECT username, fold_key = $1 FROM users WHERE fold_key = $1 OR skeleton = $2 \
                 ORDER BY fold_key = $1 DESC LIMIT 1"
            }
            Names::Rooms => {
                "SELECT name, fold_key = $1 FROM conversations \
                 WHERE kind = 'room' AND (fold_key = $1 OR skeleton = $2) \
                 ORDER BY fold_key = $1 DESC LIMIT 1"
            }
        }
    }

    /// `conflict` when `clash` (what [`Names::clash_sql`] found for `name`) is an existing name
    /// or one that looks like it.
    pub fn refuse(self, name: &Name, clash: Option<(String, bool)>) -> Result<(), StoreError> {
        let message = match (self, clash) {
            (_, None) => return Ok(()),
            (Names::Users, Some((_, true))) => "username is taken".to_owned(),
            (Names::Rooms, Some((_, true))) => "a room with that name exists".to_owned(),
            (Names::Users, Some((other, false))) => format!(
                "\"{}\" looks the same as the existing user \"{other}\": choose another username",
                name.display
            ),
            (Names::Rooms, Some((other, false))) => format!(
                "\"{}\" looks the same as the existing room \"{other}\": choose another name",
                name.display
            ),
        };
        Err(StoreError::rejected(ErrorCode::Conflict, message))
    }
}

/// The error for acting in a conversation the user is not in. A DM that is not yours answers
/// exactly like one that does not exist, so nobody learns that two others talk.
pub fn not_member(kind: Option<ConvKind>) -> StoreError {
    match kind {
        Some(ConvKind::Room) => {
            StoreError::rejected(ErrorCode::Forbidden, "not a member of this room")
        }
        _ => StoreError::rejected(ErrorCode::NotFound, "no such conversation"),
    }
}

/// Whether a conversation (its kind and room key, if it exists) may be left by a user who is
/// (`member`) or is not in it. Leaving what one is not in is refused after the delete finds
/// nothing, with [`not_member`].
pub fn may_leave(conv: Option<&(ConvKind, String)>, member: bool) -> Result<(), StoreError> {
    match conv {
        None => Err(not_member(None)),
        Some((ConvKind::Dm, _)) if member => Err(StoreError::rejected(
            ErrorCode::Forbidden,
            "a direct message cannot be left",
        )),
        Some((ConvKind::Room, key)) if key == limits::DEFAULT_ROOM => Err(StoreError::rejected(
            ErrorCode::Forbidden,
            "the default room cannot be left",
        )),
        _ => Ok(()),
    }
}

/// Where a read marker at `last_read` goes when asked for `seq` in a conversation whose newest
/// message is `last_seq`: forward only, never past the newest. Returns the marker and whether
/// it moved.
pub fn read_marker(seq: Seq, last_read: Seq, last_seq: Seq) -> (Seq, bool) {
    let target = seq.clamp(0, last_seq);
    (target.max(last_read), target > last_read)
}

/// Attention settings (notification levels, do not disturb), in SQL both backends take. A
/// level other than `all` is a row; `all` is no row.
pub mod attention_sql {
    pub const LOAD_LEVELS: &str = "SELECT user_id, conv_id, level FROM notify_levels";
    pub const LOAD_DND: &str = "SELECT user_id, until FROM dnd";
    /// $1 user, $2 conversation, $3 level.
    pub const SET_LEVEL: &str = "INSERT INTO notify_levels (user_id, conv_id, level) \
        VALUES ($1, $2, $3) ON CONFLICT (user_id, conv_id) DO UPDATE SET level = excluded.level";
    /// $1 user, $2 conversation.
    pub const CLEAR_LEVEL: &str = "DELETE FROM notify_levels WHERE user_id = $1 AND conv_id = $2";
    /// $1 user, $2 until (null: until turned off).
    pub const SET_DND: &str = "INSERT INTO dnd (user_id, until) VALUES ($1, $2) \
        ON CONFLICT (user_id) DO UPDATE SET until = excluded.until";
    /// $1 user.
    pub const CLEAR_DND: &str = "DELETE FROM dnd WHERE user_id = $1";
}

/// A row when conversation $1 is a DM whose member other than $2 deleted their account. Only a
/// DM can match (deleting an account leaves its rooms), and the kind is tested on the one
/// conversation row first: a message to a room must not walk the room's members (the default
/// room holds every user, and this runs before every message is stored).
pub const DELETED_PEER_SQL: &str = "SELECT 1 FROM conversations c \
     JOIN members mb ON mb.conv_id = c.id JOIN users u ON u.id = mb.user_id \
     WHERE c.id = $1 AND c.kind = 'dm' AND mb.user_id <> $2 AND u.deleted_at IS NOT NULL";

/// The error for writing to a DM whose other member deleted their account.
pub fn peer_deleted() -> StoreError {
    StoreError::rejected(
        ErrorCode::Forbidden,
        "this user deleted their account: the conversation can be read, not written to",
    )
}

/// The error for acting as an account that was deleted.
pub fn account_deleted() -> StoreError {
    StoreError::rejected(ErrorCode::Unauthorized, "this account was deleted")
}

/// Run by its host (docs/protocol.md): the SQL both backends share. Flags are read and written
/// as `NOT x` and `true`, which SQLite's integers and PostgreSQL's booleans both take. SQLite
/// numbers `$n` by first appearance, so each statement first names `$1`, then `$2`, ...
pub mod access_sql {
    /// The live admins' ids, ascending.
    pub const ADMINS: &str = "SELECT id FROM users WHERE admin AND deleted_at IS NULL ORDER BY id";
    /// $1 user: (admin, pending, banned) of a live user; no row for a deleted or unknown one.
    pub const STANDING: &str =
        "SELECT admin, pending, banned FROM users WHERE id = $1 AND deleted_at IS NULL";
    /// $1 banned, $2 user: ban or unban an account that is no admin; no row when it is one.
    pub const SET_BANNED: &str =
        "UPDATE users SET banned = $1 WHERE id = $2 AND NOT admin RETURNING id";
    /// Whether the server has any account yet (pending and deleted ones count).
    pub const ANY_USER: &str = "SELECT EXISTS (SELECT 1 FROM users)";
    /// $1 now, $2 code hash: use up a live invite; returns its id, no row when it was none.
    pub const REDEEM_INVITE: &str = "UPDATE invites SET used_at = $1 WHERE hash = $2 \
        AND used_at IS NULL AND NOT revoked AND expires_at > $1 RETURNING id";
    /// $1 the user it made, $2 invite id.
    pub const INVITE_USED_BY: &str = "UPDATE invites SET used_by = $1 WHERE id = $2";
    /// $1 code hash, $2 admin, $3 now, $4 expires at; returns the id.
    pub const CREATE_INVITE: &str = "INSERT INTO invites (hash, created_by, created_at, \
        expires_at) VALUES ($1, $2, $3, $4) RETURNING id";
    /// $1 invite id, $2 now: revoke it while it is live.
    pub const REVOKE_INVITE: &str = "UPDATE invites SET revoked = true WHERE id = $1 \
        AND used_at IS NULL AND NOT revoked AND expires_at > $2";
    /// $1 now: the live invites, oldest first: id, maker, created, expires.
    pub const LIVE_INVITES: &str = "SELECT i.id, u.username, i.created_at, i.expires_at \
        FROM invites i JOIN users u ON u.id = i.created_by \
        WHERE i.used_at IS NULL AND NOT i.revoked AND i.expires_at > $1 ORDER BY i.id";
    /// The accounts waiting for approval, oldest first: username, display name, created.
    pub const PENDING_USERS: &str = "SELECT username, display_name, created_at FROM users \
        WHERE pending AND deleted_at IS NULL ORDER BY created_at, id";
    /// $1 user: approve a pending account.
    pub const APPROVE: &str = "UPDATE users SET pending = false WHERE id = $1 AND pending";
    /// $1 user: reject (delete) a pending account; it has no sessions, devices or members.
    pub const REJECT: &str = "DELETE FROM users WHERE id = $1 AND pending";
}

/// The refusal of a room a user may not see (a private room they are not in) or that does not
/// exist: the same answer for both.
pub fn no_such_room() -> StoreError {
    StoreError::rejected(ErrorCode::NotFound, "no such room")
}

/// $1 conversation: its kind, as someone outside it may know it: no row for a private room
/// (nor for one that does not exist), so [`not_member`] tells them "no such conversation".
pub const VISIBLE_KIND: &str = "SELECT kind FROM conversations WHERE id = $1 AND NOT private";

/// Whether a member may add someone to a conversation of `kind`: to rooms only.
pub fn may_add(kind: Option<ConvKind>) -> Result<(), StoreError> {
    match kind {
        Some(ConvKind::Room) => Ok(()),
        _ => Err(StoreError::rejected(
            ErrorCode::Forbidden,
            "people are added to rooms, not to direct messages",
        )),
    }
}

/// $1 conv, $2 user: whether the user is banned from the room.
pub const IS_BANNED: &str = "SELECT EXISTS (SELECT 1 FROM room_bans WHERE conv_id = $1 \
     AND user_id = $2)";

/// The refusal of joining (or being added to) a room one is banned from.
pub fn banned_from_room() -> StoreError {
    StoreError::rejected(ErrorCode::Forbidden, "banned from this room")
}

/// Whether a moderator may remove (`moderator`: the caller moderates the room) someone from a
/// room of `key` (its name key): not from `general`, which everyone is in.
pub fn may_remove(moderator: bool, key: &str) -> Result<(), StoreError> {
    if !moderator {
        return Err(StoreError::rejected(
            ErrorCode::Forbidden,
            "only a moderator of the room (its creator, or an admin) can remove people",
        ));
    }
    if key == limits::DEFAULT_ROOM {
        return Err(StoreError::rejected(
            ErrorCode::Forbidden,
            "nobody is removed from the default room (an admin bans from the server instead)",
        ));
    }
    Ok(())
}

/// How a new account joins a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The server's first account: its admin.
    Admin,
    /// A member at once.
    Member,
    /// Waiting for an admin's approval.
    Pending,
}

/// How an account registering on a server in `mode` joins it: the first account is the admin
/// (it needs no invite, there is nobody to make one); an invite (`invited`: redeemed already)
/// admits at once in any mode; otherwise `invite` mode refuses and `approval` mode makes the
/// account wait.
pub fn admission(mode: Registration, first: bool, invited: bool) -> Result<Admission, StoreError> {
    match (first, invited, mode) {
        (true, _, _) => Ok(Admission::Admin),
        (false, true, _) | (false, false, Registration::Open) => Ok(Admission::Member),
        (false, false, Registration::Approval) => Ok(Admission::Pending),
        (false, false, Registration::Invite) => Err(StoreError::rejected(
            ErrorCode::InviteRequired,
            "registration on this server needs an invite from an admin",
        )),
    }
}

/// The refusal of an invite code that is unknown, used, revoked or expired (one answer for all).
pub fn invalid_invite() -> StoreError {
    StoreError::rejected(
        ErrorCode::InvalidInvite,
        "this invite is not valid: unknown, already used, revoked or expired",
    )
}

/// Whether the caller may act as an admin, given its [`access_sql::STANDING`] (None: a deleted
/// or unknown account).
pub fn require_admin(admin: Option<bool>) -> Result<(), StoreError> {
    match admin {
        Some(true) => Ok(()),
        Some(false) => Err(StoreError::rejected(
            ErrorCode::Forbidden,
            "only an admin of this server may do this",
        )),
        None => Err(account_deleted()),
    }
}

/// The refusal of banning an admin (or oneself, who is one).
pub fn cannot_ban_admin() -> StoreError {
    StoreError::rejected(
        ErrorCode::Forbidden,
        "an admin cannot be banned: revoke the role first (natter-server admin revoke)",
    )
}

/// The refusal of signing in to a banned account.
pub fn banned_from_server() -> StoreError {
    StoreError::rejected(
        ErrorCode::Forbidden,
        "this account is banned from the server",
    )
}

/// The refusal of approving or rejecting a name that is no account waiting for approval.
pub fn not_pending() -> StoreError {
    StoreError::rejected(
        ErrorCode::NotFound,
        "no account of that name waits for approval",
    )
}

/// The refusal of revoking an invite that is not live.
pub fn no_such_invite() -> StoreError {
    StoreError::rejected(
        ErrorCode::NotFound,
        "no such invite (it may have been used, revoked or have expired)",
    )
}

/// The error for revoking a session that is not (or no longer) there.
pub fn no_such_session() -> StoreError {
    StoreError::rejected(
        ErrorCode::NotFound,
        "no such session (it may have expired or been revoked already)",
    )
}

/// A history page read with one row more than `limit` (ascending), cut to `limit` on the far
/// side: the end when paging forward (`after`), the start when paging back. Returns it and
/// whether more lie beyond it.
pub fn page(mut messages: Vec<Message>, limit: i64, forward: bool) -> (Vec<Message>, bool) {
    let has_more = messages.len() as i64 > limit;
    if has_more {
        if forward {
            messages.pop();
        } else {
            messages.remove(0);
        }
    }
    (messages, has_more)
}

/// A DM's members in order (lower id first) and its key, `"<low>:<high>"`.
pub fn dm_key(a: UserId, b: UserId) -> (UserId, UserId, String) {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    (lo, hi, format!("{lo}:{hi}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_to_their_messages_in_order() {
        let file = |id: &str| Attachment {
            id: id.into(),
            name: id.into(),
            media_type: "application/octet-stream".into(),
            size: 1,
            width: None,
            height: None,
            thumbnail: None,
        };
        let mut page: Vec<Message> = [3, 4, 7]
            .into_iter()
            .map(|seq| Message {
                seq,
                ..Message::default()
            })
            .collect();
        assert_eq!(seq_span(&page), Some((3, 7)));
        assert_eq!(seq_span(&[]), None);
        // Rows in seq then sent order; a row of a seq not on the page (2) is skipped.
        let rows = vec![
            (2, file("x")),
            (3, file("a")),
            (3, file("b")),
            (7, file("c")),
        ];
        attach(&mut page, rows);
        let ids: Vec<Vec<&str>> = page
            .iter()
            .map(|m| m.attachments.iter().map(|a| a.id.as_str()).collect())
            .collect();
        assert_eq!(ids, [vec!["a", "b"], vec![], vec!["c"]]);
    }

    #[test]
    fn read_markers_only_move_forward_and_stop_at_the_newest() {
        assert_eq!(read_marker(5, 2, 10), (5, true));
        assert_eq!(read_marker(1, 2, 10), (2, false));
        assert_eq!(read_marker(99, 2, 10), (10, true));
        assert_eq!(read_marker(-4, 0, 10), (0, false));
    }

    #[test]
    fn dm_keys_do_not_depend_on_who_starts() {
        assert_eq!(dm_key(7, 3), (3, 7, "3:7".into()));
        assert_eq!(dm_key(3, 7), dm_key(7, 3));
    }
}
