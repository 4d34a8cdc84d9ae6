//! The client's local SQLite store (one per server + user profile): conversations, message history
//! keyed by (conv, seq) with the actions on it applied (edits, deletes, reactions), the outbox,
//! read markers, unread and mention counts, and full-text search.
//!
//! [`Store`] is the blocking API (rusqlite behind a mutex); a running client never calls it from
//! async code but through [`StoreHandle`](crate::client::db::StoreHandle), which runs it on a
//! thread of its own. Tools with no runtime (the bench, repair) use it directly. WAL mode keeps
//! readers (a CLI next to the desktop app) from blocking the writer, and a killed process leaves
//! at worst its last uncommitted transaction behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::client::types::{
    ConversationSummary, LocalMessage, MessageState, PendingFile, Quote, Reaction, SearchHit,
};
use crate::dbfile::{self, Damage};
use crate::names;
use crate::protocol::{
    Action, ActionRequest, Attachment, Attention, ClientFrame, ConvId, ConvKind, ConvSeq,
    Conversation, Dnd, Message, Millis, NotifyLevel, Seq, Session, User,
};

/// Numbered migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_synced_seq.sql"),
    include_str!("migrations/0003_time_ordered_ids.sql"),
    include_str!("migrations/0004_search_index_upkeep.sql"),
    include_str!("migrations/0005_fts_insert_in_code.sql"),
    include_str!("migrations/0006_deleted_users.sql"),
    include_str!("migrations/0007_attention.sql"),
    include_str!("migrations/0008_message_actions.sql"),
    include_str!("migrations/0009_attachments.sql"),
    include_str!("migrations/0010_conversation_flags.sql"),
];

/// Bits of a message id below its millisecond: up to 256 messages per millisecond keep their
/// arrival order inside it. Must match migration 0003. Every bit here also widens the rowid deltas
/// in the FTS doclists (the bulk of the file): 16 bits made a 200,000-message store 88 MiB, 8 bits
/// 79 MiB, against 58 MiB with arrival-order ids.
const SLOT_BITS: u32 = 8;

/// The first id of the millisecond `time`. Ids follow message time so that the FTS index, whose
/// rowids they are, can be read newest first with the search limit pushed into it. Times outside
/// 0..=2^55-1 (before 1970, after the year 1,141,000) are clamped, so such messages sort among
/// themselves by arrival.
fn order_key(time: Millis) -> i64 {
    time.clamp(0, i64::MAX >> SLOT_BITS) << SLOT_BITS
}

/// The search index is merged into one segment (see [`Store::compact_search_index`]) once the
/// messages written since its last merge reach this many and also a quarter of what it held then.
///
/// Each write transaction adds an FTS5 segment, and FTS5's own leveled merging leaves about ten of
/// them in a 1,000,000-message store. A search opens every query trigram in every segment, so a
/// cold first search (file not in the OS page cache) did ~240 random page reads, ~150 of them in
/// the index; merged, ~40. A merge rewrites the whole index (about 1 s of CPU at 1,000,000
/// messages), so merging after a fixed share of growth keeps its cost per message constant (each
/// message is rewritten about five times over the store's life) while the unmerged tail stays
/// small.
const COMPACT_MIN_ROWS: i64 = 20_000;
const COMPACT_GROWTH_DIVISOR: i64 = 4;
/// Live messages arrive one per transaction, so their tail fragments far more than a sync's
/// batches: 15,000 of them left 19 segments. Such a tail is merged sooner, after a sixteenth of
/// the held messages, once it has this many segments.
const COMPACT_MAX_SEGMENTS: i64 = 16;
const COMPACT_FRAGMENTED_DIVISOR: i64 = 16;

/// Pages one step of a background merge of the search index writes (see [`Store::merge_step`]).
const MERGE_STEP_PAGES: u32 = 64;

/// A failure of the local store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("local store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("local store: {0}")]
    Io(#[from] std::io::Error),
    #[error("local store: corrupt session record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("local store schema version {0} is newer than this client knows")]
    TooNew(i64),
    /// The store's thread has stopped (the client was shut down).
    #[error("local store: closed (the client was stopped)")]
    Closed,
    /// The file failed its integrity check at open (or is not a database at all).
    #[error("the local store {path} is damaged ({damage})")]
    Corrupt { path: PathBuf, damage: Damage },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A message waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub local_id: String,
    pub conv: Option<ConvId>,
    pub to_user: Option<String>,
    pub sender: String,
    pub text: String,
    pub created: Millis,
    pub state: MessageState,
    pub error: Option<String>,
    /// A reply: the seq it answers.
    pub reply_to: Option<Seq>,
    /// An action on an earlier message (edit, delete, reaction) instead of a message; `text` is
    /// an edit's new text.
    pub action: Option<Action>,
    /// A message's files, in order: each is uploaded before the message is sent.
    pub files: Vec<OutboxFile>,
}

/// A file of an outbox message: the local path chosen, and once uploaded the server's record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxFile {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
}

impl OutboxFile {
    /// The file name of `path`, for showing (the server makes the name it keeps safe).
    pub fn name(&self) -> String {
        Path::new(&self.path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.clone())
    }
}

/// A message's attachments as `messages.attachments` keeps them: a JSON array, NULL for none.
fn attachments_json(attachments: &[Attachment]) -> Result<Option<String>> {
    if attachments.is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::to_string(attachments)?))
}

/// [`attachments_json`] read back; a column that does not parse (written by a newer client)
/// reads as no attachments rather than failing the whole page.
fn attachments_from(json: Option<String>) -> Vec<Attachment> {
    json.and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default()
}

impl OutboxItem {
    /// The entry as the UI shows a message being sent (not meaningful for an action, which is
    /// shown on its target when it is committed).
    pub fn to_local(&self) -> LocalMessage {
        LocalMessage {
            local_id: self.local_id.clone(),
            conv: self.conv,
            seq: None,
            sender: self.sender.clone(),
            text: self.text.clone(),
            time: self.created,
            state: self.state,
            error: self.error.clone(),
            reply_to: self.reply_to.map(unresolved_quote),
            edited: None,
            deleted: false,
            reactions: Vec::new(),
            attachments: self
                .files
                .iter()
                .filter_map(|f| f.attachment.clone())
                .collect(),
            uploads: self
                .files
                .iter()
                .filter(|f| f.attachment.is_none())
                .map(|f| PendingFile {
                    path: f.path.clone(),
                    name: f.name(),
                })
                .collect(),
        }
    }
}

/// A quote of message `seq` before [`decorate`] looks it up.
fn unresolved_quote(seq: Seq) -> Quote {
    Quote {
        seq,
        sender: None,
        snippet: String::new(),
        deleted: false,
    }
}

/// The session and server this profile belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedSession {
    pub server: String,
    pub session: Session,
}

/// The local store of one profile.
pub struct Store {
    conn: Mutex<Connection>,
    /// [`COMPACT_MIN_ROWS`], lowered by tests to exercise the merge on a small store.
    compact_min_rows: i64,
    /// [`COMPACT_MAX_SEGMENTS`], lowered by tests.
    compact_max_segments: i64,
    /// Set by the store thread: a due merge of the search index is only flagged
    /// ([`Store::take_merge_due`]) and then done in small steps ([`Store::merge_step`]) between
    /// other work, instead of inside the write that made it due.
    background_merge: AtomicBool,
    merge_due: AtomicBool,
    /// Pages one background merge step writes (a few milliseconds of work); lowered by tests.
    pub(crate) merge_step_pages: u32,
    /// Full conversation-list reads and single-summary reads, for tests and measurements.
    full_lists: AtomicU64,
    summaries: AtomicU64,
}

/// A message [`Store::insert_messages_tracked`] stored or changed, and whether it was shown
/// before: it settled an outbox entry (the user's own message, sent from this profile), or an
/// edit, delete or reaction changed a message already held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    pub message: LocalMessage,
    pub was_shown: bool,
}

/// A conversation's unread count, over `conversations c` with the user's name as `?1`: what the
/// server counted and we do not hold, plus others' held messages (not actions: edits, deletes
/// and reactions are never unread) after the read marker.
const UNREAD_SQL: &str = "c.unread_base + (SELECT count(*) FROM messages m WHERE m.conv = c.id
        AND m.seq > c.last_read AND m.sender != ?1 AND m.action IS NULL)";

/// A conversation's unread messages that mention the user, as [`UNREAD_SQL`] counts.
const MENTIONS_SQL: &str = "(SELECT count(*) FROM messages m WHERE m.conv = c.id
        AND m.seq > c.last_read AND m.sender != ?1 AND m.action IS NULL AND m.mentions_me = 1)";

fn clamp_unread(n: i64) -> u32 {
    n.clamp(0, u32::MAX as i64) as u32
}

const MESSAGE_COLS: &str =
    "conv, seq, sender, text, time, client_msg_id, reply_to, edited, deleted, attachments";

/// A held message as [`MESSAGE_COLS`] reads it, before [`decorate`] adds its quote and
/// reactions.
fn message_row(row: &Row<'_>) -> rusqlite::Result<LocalMessage> {
    Ok(LocalMessage {
        conv: Some(row.get(0)?),
        seq: Some(row.get(1)?),
        sender: row.get(2)?,
        text: row.get(3)?,
        time: row.get(4)?,
        local_id: row.get(5)?,
        state: MessageState::Sent,
        error: None,
        reply_to: row.get::<_, Option<Seq>>(6)?.map(unresolved_quote),
        edited: row.get(7)?,
        deleted: row.get(8)?,
        reactions: Vec::new(),
        attachments: attachments_from(row.get(9)?),
        uploads: Vec::new(),
    })
}

/// Fills in what other rows say of `messages`: the quoted message of each reply (when held)
/// and the reactions of each message (none for a deleted one).
fn decorate(conn: &Connection, messages: &mut [LocalMessage]) -> rusqlite::Result<()> {
    let mut quoted = conn.prepare_cached(
        "SELECT sender, text, deleted FROM messages
         WHERE conv = ?1 AND seq = ?2 AND action IS NULL",
    )?;
    let mut reactions = conn.prepare_cached(
        "SELECT emoji, sender FROM reactions
         WHERE conv = ?1 AND target = ?2 AND present = 1 ORDER BY seq",
    )?;
    for m in messages {
        let Some(conv) = m.conv else { continue };
        if let Some(quote) = &mut m.reply_to {
            let row = quoted
                .query_row(params![conv, quote.seq], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
                })
                .optional()?;
            if let Some((sender, text, deleted)) = row {
                quote.sender = Some(sender);
                quote.snippet = Quote::snippet_of(&text);
                quote.deleted = deleted;
            }
        }
        m.reactions.clear();
        let Some(seq) = m.seq.filter(|_| !m.deleted) else {
            continue;
        };
        let rows = reactions.query_map(params![conv, seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
        for row in rows {
            let (emoji, user): (String, String) = row?;
            match m.reactions.iter_mut().find(|r| r.emoji == emoji) {
                Some(r) => r.users.push(user),
                None => m.reactions.push(Reaction {
                    emoji,
                    users: vec![user],
                }),
            }
        }
    }
    Ok(())
}

/// The message held at (conv, seq), with its quote and reactions.
/// The seqs of the held messages (not actions) that reply to `target` in `conv`.
fn replies_to(conn: &Connection, conv: ConvId, target: Seq) -> rusqlite::Result<Vec<Seq>> {
    conn.prepare_cached(
        "SELECT seq FROM messages WHERE conv = ?1 AND reply_to = ?2 AND action IS NULL",
    )?
    .query_map(params![conv, target], |r| r.get(0))?
    .collect()
}

fn held_message(
    conn: &Connection,
    conv: ConvId,
    seq: Seq,
) -> rusqlite::Result<Option<LocalMessage>> {
    let message = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE conv = ?1 AND seq = ?2 AND action IS NULL"
        ))?
        .query_row(params![conv, seq], message_row)
        .optional()?;
    let mut held: Vec<LocalMessage> = message.into_iter().collect();
    decorate(conn, &mut held)?;
    Ok(held.pop())
}

/// How an action's kind is kept in `messages.action`.
fn action_kind(action: &Action) -> &'static str {
    match action {
        Action::Edit { .. } => "edit",
        Action::Delete { .. } => "delete",
        Action::React { .. } => "react",
    }
}

/// What a message held here looks like before an action changes it.
struct HeldTarget {
    row_id: i64,
    text: String,
    deleted: bool,
    edit_seq: Seq,
}

/// Search-index entries of one write: rows inserted in it are indexed at its end in one
/// statement (see [`Store::insert_messages_tracked`]); rows held before are changed in place.
/// Every row of `messages` has its entry (an action's or a tombstone's is empty), as FTS5's
/// external-content bookkeeping expects.
struct SearchIndexWrites {
    pending: Vec<(i64, String)>,
    /// An entry written before this write was replaced. FTS5 only marks the old one deleted;
    /// its tokens (trigrams of the old text) stay in their segment until the segments are
    /// merged, so the write asks for a merge: deleted and pre-edit text must be gone.
    replaced_old: bool,
}

impl SearchIndexWrites {
    /// Replace the indexed `old` text of `row_id` by `new` (empty for a deleted message).
    fn replace(
        &mut self,
        tx: &Connection,
        row_id: i64,
        old: &str,
        new: &str,
    ) -> rusqlite::Result<()> {
        if let Some(pending) = self.pending.iter_mut().find(|(id, _)| *id == row_id) {
            pending.1 = new.to_owned();
            return Ok(());
        }
        tx.prepare_cached(
            "INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', ?1, ?2)",
        )?
        .execute(params![row_id, old])?;
        self.replaced_old = true;
        tx.prepare_cached("INSERT INTO messages_fts (rowid, text) VALUES (?1, ?2)")?
            .execute(params![row_id, new])?;
        Ok(())
    }
}

/// The held message (not an action) at (conv, seq) that an action points at.
fn held_target(tx: &Connection, conv: ConvId, seq: Seq) -> rusqlite::Result<Option<HeldTarget>> {
    tx.prepare_cached(
        "SELECT id, text, deleted, edit_seq FROM messages
         WHERE conv = ?1 AND seq = ?2 AND action IS NULL",
    )?
    .query_row(params![conv, seq], |r| {
        Ok(HeldTarget {
            row_id: r.get(0)?,
            text: r.get(1)?,
            deleted: r.get(2)?,
            edit_seq: r.get(3)?,
        })
    })
    .optional()
}

/// Deletes the held message at (conv, seq): its text, search entry and reactions are gone; a
/// tombstone stays.
fn delete_held(
    tx: &Connection,
    conv: ConvId,
    seq: Seq,
    target: &HeldTarget,
    index: &mut SearchIndexWrites,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE messages SET text = '', deleted = 1, mentions_me = 0, attachments = NULL
         WHERE id = ?1",
    )?
    .execute([target.row_id])?;
    index.replace(tx, target.row_id, &target.text, "")?;
    tx.prepare_cached("DELETE FROM reactions WHERE conv = ?1 AND target = ?2")?
        .execute(params![conv, seq])?;
    Ok(())
}

/// Replaces the text of a held message (an edit, or the server's newer text).
fn edit_held(
    tx: &Connection,
    target: &HeldTarget,
    text: &str,
    edited: Millis,
    edit_seq: Seq,
    me: &str,
    index: &mut SearchIndexWrites,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE messages SET text = ?2, edited = ?3, edit_seq = ?4, mentions_me = ?5
         WHERE id = ?1",
    )?
    .execute(params![
        target.row_id,
        text,
        edited,
        edit_seq,
        mentions_me(text, me)
    ])?;
    index.replace(tx, target.row_id, &target.text, text)
}

/// Whether `text` mentions this profile's user `me` (unknown, empty: no).
fn mentions_me(text: &str, me: &str) -> bool {
    !me.is_empty() && names::mentions(text, me)
}

/// Applies a committed action event `m` to what it points at. Returns whether a held message
/// changed (its UI needs an `updated`). Out of order (history paged in after newer events), an
/// older edit or reaction does not undo a newer one: each keeps the seq that set it.
fn apply_action(
    tx: &Connection,
    m: &Message,
    action: &Action,
    me: &str,
    index: &mut SearchIndexWrites,
) -> rusqlite::Result<bool> {
    let target = held_target(tx, m.conv, action.target())?;
    match action {
        Action::Edit { .. } => match target {
            // An edit the server marks deleted belongs to a deleted message: its delete (or
            // the tombstone) comes too.
            Some(t) if !t.deleted && !m.deleted && m.seq > t.edit_seq => {
                edit_held(tx, &t, &m.text, m.time, m.seq, me, index)?;
                Ok(true)
            }
            _ => Ok(false),
        },
        Action::Delete { target: seq } => match target {
            Some(t) if !t.deleted => {
                delete_held(tx, m.conv, *seq, &t, index)?;
                Ok(true)
            }
            _ => Ok(false),
        },
        Action::React {
            target: seq,
            emoji,
            on,
        } => {
            if target.as_ref().is_some_and(|t| t.deleted) {
                return Ok(false);
            }
            let changed = tx
                .prepare_cached(
                    "INSERT INTO reactions (conv, target, sender, emoji, seq, present)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (conv, target, sender, emoji) DO UPDATE
                        SET seq = excluded.seq, present = excluded.present
                        WHERE excluded.seq > reactions.seq",
                )?
                .execute(params![m.conv, seq, m.sender, emoji, m.seq, on])?;
            Ok(changed > 0 && target.is_some())
        }
    }
}

/// A message `m` (not an action) from the server that is held already: take the server's
/// state if it is newer (an edit or delete this client did not see as an event, e.g. one older
/// than the history it had). Returns whether it changed.
fn refresh_held(
    tx: &Connection,
    m: &Message,
    me: &str,
    index: &mut SearchIndexWrites,
) -> rusqlite::Result<bool> {
    let Some(t) = held_target(tx, m.conv, m.seq)? else {
        return Ok(false);
    };
    if m.deleted && !t.deleted {
        delete_held(tx, m.conv, m.seq, &t, index)?;
        return Ok(true);
    }
    if !m.deleted && !t.deleted && m.edited.is_some() && m.text != t.text {
        let edited = m.edited.unwrap_or(m.time);
        edit_held(tx, &t, &m.text, edited, t.edit_seq, me, index)?;
        return Ok(true);
    }
    Ok(false)
}

const OUTBOX_COLS: &str =
    "local_id, conv, to_user, sender, text, created, state, error, reply_to, action, files";

impl OutboxItem {
    /// Where the message goes: its conversation once known, else the user of a first DM.
    pub fn target(&self) -> Option<crate::protocol::Target> {
        use crate::protocol::Target;
        self.conv
            .map(Target::Conv)
            .or_else(|| self.to_user.clone().map(Target::To))
    }

    /// The frame that sends this entry as request `id`: `send` for a message or reply, `edit`,
    /// `delete` or `react` for an action. None for a corrupt entry (an id that is no UUID, no
    /// recipient, an action without its conversation).
    pub fn frame(&self, id: u64) -> Option<ClientFrame> {
        let client_msg_id = self.local_id.parse().ok()?;
        Some(match &self.action {
            None => ClientFrame::Send {
                id,
                target: self.target()?,
                client_msg_id,
                text: self.text.clone(),
                reply_to: self.reply_to,
                attachments: self
                    .files
                    .iter()
                    .map(|f| f.attachment.as_ref().map(|a| a.id.clone()))
                    .collect::<Option<_>>()?,
            },
            Some(action) => ActionRequest {
                conv: self.conv?,
                client_msg_id,
                action: action.clone(),
                text: self.text.clone(),
            }
            .into_frame(id),
        })
    }
}

fn outbox_row(row: &Row<'_>) -> rusqlite::Result<OutboxItem> {
    let state: String = row.get(6)?;
    Ok(OutboxItem {
        local_id: row.get(0)?,
        conv: row.get(1)?,
        to_user: row.get(2)?,
        sender: row.get(3)?,
        text: row.get(4)?,
        created: row.get(5)?,
        state: if state == "failed" {
            MessageState::Failed
        } else {
            MessageState::Pending
        },
        error: row.get(7)?,
        reply_to: row.get(8)?,
        action: row
            .get::<_, Option<String>>(9)?
            .and_then(|json| serde_json::from_str(&json).ok()),
        files: row
            .get::<_, Option<String>>(10)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default(),
    })
}

fn kind_str(kind: ConvKind) -> &'static str {
    match kind {
        ConvKind::Room => "room",
        ConvKind::Dm => "dm",
    }
}

/// Escapes `%`, `_` and the escape character itself for a `LIKE ... ESCAPE '\'` pattern.
fn like_pattern(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 2);
    out.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// A short excerpt of `text` around the first occurrence of `term` (case-insensitive for ASCII).
fn snippet(text: &str, term: &str) -> String {
    const AROUND: usize = 30;
    let chars: Vec<char> = text.chars().collect();
    let needle: Vec<char> = term.chars().map(|c| c.to_ascii_lowercase()).collect();
    let pos = (0..chars.len())
        .find(|&i| {
            i + needle.len() <= chars.len()
                && chars[i..i + needle.len()]
                    .iter()
                    .zip(&needle)
                    .all(|(a, b)| a.to_ascii_lowercase() == *b)
        })
        .unwrap_or(0);
    let start = pos.saturating_sub(AROUND);
    let end = (pos + needle.len() + AROUND).min(chars.len());
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.extend(&chars[start..end]);
    if end < chars.len() {
        out.push('…');
    }
    out
}

/// Conversations up to this many messages are searched through their id list (see
/// [`search_sql`]): about 8 ms to read at 50,000 ids, against up to a row read per match for the
/// plain walk.
const SMALL_CONVERSATION: i64 = 50_000;

/// The search statement for non-empty `terms` and its arguments: message columns, then the
/// conversation title; newest first by id.
///
/// `conv_ids_first`: with a conversation filter, read that conversation's ids first (one pass of
/// its index) and test each match against them, before any row lookup. Walking matches newest
/// first and looking up each row's conversation costs a row read per match, which for a small
/// conversation and a common term is every match in the store; the id list makes that walk a
/// doclist scan. For a big conversation the list itself costs more than the walk it saves.
fn search_sql(
    terms: &[&str],
    conv: Option<ConvId>,
    conv_ids_first: bool,
    limit: u32,
) -> (String, Vec<rusqlite::types::Value>) {
    let long: Vec<String> = terms
        .iter()
        .filter(|t| t.chars().count() >= 3)
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    let cols = MESSAGE_COLS
        .split(", ")
        .map(|c| format!("messages.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let title = "(SELECT CASE WHEN c.kind = 'room' THEN '#' || c.name
                ELSE coalesce(u.display_name, c.name) END
             FROM conversations c LEFT JOIN users u ON u.username = c.peer
             WHERE c.id = messages.conv)";
    let mut args: Vec<rusqlite::types::Value> = vec![conv.into()];
    let (mut sql, order) = if long.is_empty() {
        (
            format!("SELECT {cols}, {title} FROM messages WHERE true"),
            "messages.id",
        )
    } else {
        args.push(long.join(" ").into());
        (
            // The FTS table drives the join so that its ORDER BY rowid DESC reaches FTS5.
            format!(
                "SELECT {cols}, {title} FROM messages_fts
                 JOIN messages ON messages.id = messages_fts.rowid
                 WHERE messages_fts MATCH ?2"
            ),
            "messages_fts.rowid",
        )
    };
    sql.push_str(" AND (?1 IS NULL OR messages.conv = ?1)");
    if conv.is_some() && conv_ids_first {
        // The unary + keeps SQLite from handing each id to the FTS table as a rowid lookup
        // (a doclist seek per id); the list is built once and probed per match.
        sql.push_str(&format!(
            " AND +{order} IN (SELECT id FROM messages WHERE conv = ?1)"
        ));
    }
    for t in terms.iter().filter(|t| t.chars().count() < 3) {
        args.push(like_pattern(t).into());
        sql.push_str(&format!(
            " AND messages.text LIKE ?{} ESCAPE '\\'",
            args.len()
        ));
    }
    args.push(i64::from(limit).into());
    sql.push_str(&format!(" ORDER BY {order} DESC LIMIT ?{}", args.len()));
    (sql, args)
}

fn segments(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(DISTINCT segid) FROM messages_fts_idx")?
        .query_row([], |r| r.get(0))?)
}

/// Records a finished merge of the search index: the counters that schedule the next one.
const MERGED: &str = "INSERT OR REPLACE INTO meta (key, value)
     VALUES ('fts_compacted_rows', (SELECT count(*) FROM messages)), ('fts_written', 0)";

/// FTS5 `optimize`, and the counters that schedule the next one, in one transaction.
fn compact(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO messages_fts (messages_fts) VALUES ('optimize')",
        [],
    )?;
    tx.execute(MERGED, [])?;
    tx.commit()?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the store at `path`, checks it (`quick_check`: a damaged file
    /// is [`StoreError::Corrupt`], never silently half-read) and brings its schema up to date.
    /// The profile directory and the store's files are private (0700/0600).
    pub fn open(path: &Path) -> Result<Store> {
        dbfile::prepare(path)?;
        let damaged = |damage| StoreError::Corrupt {
            path: path.to_path_buf(),
            damage,
        };
        let conn = match Self::connect(path) {
            Err(StoreError::Sqlite(e)) if dbfile::is_corrupt(&e) => {
                return Err(damaged(Damage(e.to_string())))
            }
            other => other?,
        };
        dbfile::quick_check(&conn)?.map_err(damaged)?;
        let store = Store {
            conn: Mutex::new(conn),
            compact_min_rows: COMPACT_MIN_ROWS,
            compact_max_segments: COMPACT_MAX_SEGMENTS,
            background_merge: AtomicBool::new(false),
            merge_due: AtomicBool::new(false),
            merge_step_pages: MERGE_STEP_PAGES,
            full_lists: AtomicU64::new(0),
            summaries: AtomicU64::new(0),
        };
        store.migrate()?;
        Ok(store)
    }

    fn connect(path: &Path) -> Result<Connection> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // A deleted message's text is overwritten in the file, not left in a free page.
        conn.pragma_update(None, "secure_delete", "ON")?;
        Ok(conn)
    }

    /// Closes the store's file now, checkpointing its write-ahead log into it (the `-wal` and
    /// `-shm` files are removed), even while other handles to this store are still alive: a
    /// task that ends a moment later must not keep the file open. The store is unusable
    /// afterwards (every query fails). After this, the file can be copied, checked or moved
    /// aside.
    pub fn close(&self) {
        let Ok(placeholder) = Connection::open_in_memory() else {
            return;
        };
        let conn = std::mem::replace(&mut *self.conn(), placeholder);
        if let Err((_, e)) = conn.close() {
            tracing::warn!("local store: closing it failed: {e}");
        }
    }

    /// The device token saved in a store at `path` that may be damaged (see [`Store::salvage`]):
    /// `None` when it cannot be read.
    pub fn salvage_device_token(path: &Path) -> Option<String> {
        let conn =
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        conn.query_row("SELECT value FROM meta WHERE key = 'device'", [], |r| {
            r.get::<_, String>(0)
        })
        .ok()
    }

    /// What can still be read from a damaged store at `path`: the session and the messages not
    /// yet sent. Best effort: a part that cannot be read is left out, never an error.
    pub fn salvage(path: &Path) -> (Option<SavedSession>, Vec<OutboxItem>) {
        let Ok(conn) =
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        else {
            return (None, Vec::new());
        };
        let session = conn
            .query_row("SELECT value FROM meta WHERE key = 'session'", [], |r| {
                r.get::<_, String>(0)
            })
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok());
        let outbox = conn
            .prepare(&format!("SELECT {OUTBOX_COLS} FROM outbox ORDER BY pos"))
            .and_then(|mut stmt| {
                stmt.query_map([], outbox_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap_or_default();
        (session, outbox)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll back),
        // so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.conn();
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew(version));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// `PRAGMA integrity_check`: "ok" when the database is sound.
    pub fn integrity_check(&self) -> Result<String> {
        Ok(self
            .conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    // ---- meta: session, own user --------------------------------------------------------------

    fn meta_get(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn session(&self) -> Result<Option<SavedSession>> {
        match self.meta_get("session")? {
            Some(s) => Ok(Some(serde_json::from_str(&s)?)),
            None => Ok(None),
        }
    }

    /// Saves the session. When the profile held another user's data, that data is wiped first:
    /// one profile never mixes two users' histories.
    pub fn save_session(&self, saved: &SavedSession) -> Result<()> {
        let owner = self.meta_get("owner")?;
        let owner_key = format!("{}\n{}", saved.server, saved.session.user.username);
        if owner.as_deref().is_some_and(|o| o != owner_key) {
            self.conn().execute_batch(
                "BEGIN;
                 DELETE FROM messages; DELETE FROM outbox; DELETE FROM conversations;
                 DELETE FROM users; DELETE FROM meta WHERE key <> 'revoke';
                 COMMIT;",
            )?;
        }
        self.meta_set("owner", &owner_key)?;
        self.meta_set("me", &saved.session.user.username)?;
        self.meta_set("session", &serde_json::to_string(saved)?)?;
        if let Some(device) = &saved.session.device_token {
            self.meta_set("device", device)?;
        }
        self.upsert_user(&saved.session.user)?;
        Ok(())
    }

    /// The device token the server gave this profile's user, kept across sign-outs (the
    /// session is saved under another key and cleared on sign-out).
    pub fn device_token(&self) -> Result<Option<String>> {
        self.meta_get("device")
    }

    /// Forgets the token (sign-out) but keeps history for the next sign-in of the same user.
    pub fn clear_session(&self) -> Result<()> {
        self.conn()
            .execute("DELETE FROM meta WHERE key = 'session'", [])?;
        Ok(())
    }

    /// Tokens of sessions signed out while the server could not be told, still live there.
    pub fn pending_revocations(&self) -> Result<Vec<String>> {
        match self.meta_get("revoke")? {
            Some(s) => Ok(serde_json::from_str(&s)?),
            None => Ok(Vec::new()),
        }
    }

    /// Remember `token` for revoking once the server can be reached.
    pub fn add_pending_revocation(&self, token: &str) -> Result<()> {
        let mut tokens = self.pending_revocations()?;
        if !tokens.iter().any(|t| t == token) {
            tokens.push(token.to_string());
        }
        self.meta_set("revoke", &serde_json::to_string(&tokens)?)
    }

    /// Forget `token`: the server revoked it (or no longer knows it).
    pub fn remove_pending_revocation(&self, token: &str) -> Result<()> {
        let mut tokens = self.pending_revocations()?;
        tokens.retain(|t| t != token);
        if tokens.is_empty() {
            self.conn()
                .execute("DELETE FROM meta WHERE key = 'revoke'", [])?;
            Ok(())
        } else {
            self.meta_set("revoke", &serde_json::to_string(&tokens)?)
        }
    }

    // ---- users and conversations -------------------------------------------------------------

    pub fn upsert_user(&self, user: &User) -> Result<()> {
        self.conn().execute(
            "INSERT INTO users (username, display_name, avatar, deleted, avatar_image)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (username) DO UPDATE
             SET display_name = excluded.display_name, avatar = excluded.avatar,
                 deleted = excluded.deleted, avatar_image = excluded.avatar_image",
            params![
                user.username,
                user.display_name,
                user.avatar,
                user.deleted,
                user.avatar_image
            ],
        )?;
        Ok(())
    }

    pub fn user(&self, username: &str) -> Result<Option<User>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT username, display_name, avatar, deleted, avatar_image FROM users
                 WHERE username = ?1",
                [username],
                |r| {
                    Ok(User {
                        username: r.get(0)?,
                        display_name: r.get(1)?,
                        avatar: r.get(2)?,
                        deleted: r.get(3)?,
                        avatar_image: r.get(4)?,
                        // The local store keeps no roles; the signed-in user's own comes with
                        // hello (`Client::user`).
                        admin: false,
                    })
                },
            )
            .optional()?)
    }

    /// Records a conversation the user is a member of, as the server describes it.
    pub fn upsert_conversation(&self, conv: &Conversation) -> Result<()> {
        if let Some(peer) = &conv.peer {
            self.upsert_user(peer)?;
        }
        self.conn().execute(
            "INSERT INTO conversations (id, kind, name, peer, member_count, last_seq, last_read,
                                        private, moderator, member)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1)
             ON CONFLICT (id) DO UPDATE SET
                kind = excluded.kind, name = excluded.name, peer = excluded.peer,
                member_count = excluded.member_count,
                private = excluded.private, moderator = excluded.moderator,
                last_seq = max(conversations.last_seq, excluded.last_seq),
                last_read = max(conversations.last_read, excluded.last_read),
                member = 1",
            params![
                conv.id,
                kind_str(conv.kind),
                conv.name,
                conv.peer.as_ref().map(|p| p.username.clone()),
                conv.member_count,
                conv.last_seq,
                conv.last_read,
                conv.private,
                conv.moderator
            ],
        )?;
        Ok(())
    }

    /// After a `hello`: conversations the server no longer lists are ones the user left.
    /// Returns the ones this ended membership of.
    pub fn retain_memberships(&self, convs: &[ConvId]) -> Result<Vec<ConvId>> {
        let conn = self.conn();
        let list = convs
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut stmt = conn.prepare(&format!(
            "UPDATE conversations SET member = 0 WHERE member = 1 AND id NOT IN ({list})
             RETURNING id"
        ))?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn remove_membership(&self, conv: ConvId) -> Result<()> {
        self.conn()
            .execute("UPDATE conversations SET member = 0 WHERE id = ?1", [conv])?;
        Ok(())
    }

    pub fn set_member_count(&self, conv: ConvId, delta: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE conversations SET member_count = max(0, member_count + ?2) WHERE id = ?1",
            params![conv, delta],
        )?;
        Ok(())
    }

    /// The id of the room called `name`, or of the DM with user `name`, among joined ones.
    /// The room or DM (by the peer's username) called `name` in any spelling of it
    /// ([`crate::names::key`]), the exact spelling first, as the server looks names up.
    pub fn find_conversation(&self, kind: ConvKind, name: &str) -> Result<Option<ConvId>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, name FROM conversations WHERE kind = ?1 AND member = 1 \
             ORDER BY name = ?2 DESC, id",
        )?;
        let rows = stmt.query_map(params![kind_str(kind), name], |r| {
            Ok((r.get::<_, ConvId>(0)?, r.get::<_, String>(1)?))
        })?;
        let key = crate::names::key(name);
        for row in rows {
            let (id, stored) = row?;
            if stored == name || crate::names::key(&stored) == key {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    pub fn is_member(&self, conv: ConvId) -> Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT member FROM conversations WHERE id = ?1",
                [conv],
                |r| r.get::<_, bool>(0),
            )
            .optional()?
            .unwrap_or(false))
    }

    /// The server's highest known seq for `conv` (0 when unknown).
    pub fn last_seq(&self, conv: ConvId) -> Result<Seq> {
        Ok(self.conn().query_row(
            "SELECT max(coalesce((SELECT last_seq FROM conversations WHERE id = ?1), 0),
                            coalesce((SELECT max(seq) FROM messages WHERE conv = ?1), 0))",
            [conv],
            |r| r.get(0),
        )?)
    }

    /// What to send in `sync`: for each joined conversation we hold messages of, the seq up to
    /// which we hold everything since the last finished resume (normally the highest seq held;
    /// lower when a resume was cut short and left a gap). Conversations without local messages
    /// are left out, so the server sends their last page only (older history is fetched on
    /// demand).
    pub fn sync_points(&self) -> Result<Vec<ConvSeq>> {
        let convs: Vec<(ConvId, Seq)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT c.id, c.synced_seq FROM conversations c
                 WHERE c.member = 1 AND EXISTS (SELECT 1 FROM messages m WHERE m.conv = c.id)
                 ORDER BY c.id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut out = Vec::with_capacity(convs.len());
        for (conv, synced) in convs {
            out.push(ConvSeq {
                conv,
                seq: self.contiguous_top(conv, synced)?,
            });
        }
        Ok(out)
    }

    /// The highest seq `s` such that every seq from `from` (or from the lowest held, when `from`
    /// is 0) up to `s` is held; `from` itself when the seq after it is missing.
    fn contiguous_top(&self, conv: ConvId, from: Seq) -> Result<Seq> {
        let conn = self.conn();
        if from > 0 {
            let next_held: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE conv = ?1 AND seq = ?2)",
                params![conv, from + 1],
                |r| r.get(0),
            )?;
            if !next_held {
                return Ok(from);
            }
        }
        Ok(conn.query_row(
            "SELECT coalesce(min(m.seq), ?2) FROM messages m
             WHERE m.conv = ?1 AND m.seq >= ?2 AND NOT EXISTS
                (SELECT 1 FROM messages n WHERE n.conv = m.conv AND n.seq = m.seq + 1)",
            params![conv, from],
            |r| r.get(0),
        )?)
    }

    /// A resume finished: everything from each conversation's sync point up to the highest seq
    /// held is now held, so the next resume can start from there.
    pub fn mark_synced(&self) -> Result<()> {
        for p in self.sync_points()? {
            self.conn().execute(
                "UPDATE conversations SET synced_seq = max(synced_seq, ?2) WHERE id = ?1",
                params![p.conv, p.seq],
            )?;
        }
        Ok(())
    }

    // ---- attention: notification levels, do not disturb (synced by the server) ------------

    /// Stores a conversation's level (from the server, or after it accepted ours).
    pub fn set_level(&self, conv: ConvId, level: NotifyLevel) -> Result<()> {
        self.conn().execute(
            "UPDATE conversations SET level = ?2 WHERE id = ?1",
            params![conv, level.as_str()],
        )?;
        Ok(())
    }

    /// Stores the attention settings a `hello` carried: the level of each of `member_convs`
    /// (`all` unless listed) and do not disturb. A conversation this device still has a
    /// pre-sync mute for ([`Store::legacy_mutes`]) keeps `nothing` until that is pushed.
    pub fn apply_attention(&self, member_convs: &[ConvId], attention: &Attention) -> Result<()> {
        for conv in member_convs {
            let level = attention
                .levels
                .iter()
                .find(|l| l.conv == *conv)
                .map_or(NotifyLevel::All, |l| l.level);
            self.conn().execute(
                "UPDATE conversations SET level = CASE WHEN muted = 1 THEN 'nothing' ELSE ?2 END
                 WHERE id = ?1",
                params![conv, level.as_str()],
            )?;
        }
        self.set_dnd(attention.dnd)
    }

    /// Conversations muted on this device before levels were synced, not yet pushed to the
    /// server as `nothing` (migration 6).
    pub fn legacy_mutes(&self) -> Result<Vec<ConvId>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id FROM conversations WHERE muted = 1 AND member = 1 ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The server has (or refused for good) this conversation's pre-sync mute: from now on its
    /// level is the server's.
    pub fn clear_legacy_mute(&self, conv: ConvId) -> Result<()> {
        self.conn().execute(
            "UPDATE conversations SET muted = 0 WHERE id = ?1",
            params![conv],
        )?;
        Ok(())
    }

    /// Do not disturb as last heard from the server (perhaps ended since).
    pub fn dnd(&self) -> Result<Option<Dnd>> {
        Ok(match self.meta_get("dnd")? {
            Some(json) => serde_json::from_str(&json)?,
            None => None,
        })
    }

    pub fn set_dnd(&self, dnd: Option<Dnd>) -> Result<()> {
        match dnd {
            Some(d) => self.meta_set("dnd", &serde_json::to_string(&d)?),
            None => {
                self.conn()
                    .execute("DELETE FROM meta WHERE key = 'dnd'", [])?;
                Ok(())
            }
        }
    }

    // ---- messages ------------------------------------------------------------------------------

    /// Stores committed messages and actions, ignoring ones already held (same conv and seq),
    /// applies the actions (and the newer state of messages already held) and removes the
    /// outbox entries they settle. Returns the messages that were new.
    ///
    /// Each row's id is the next free one in its millisecond (see [`order_key`]), so older
    /// history stored after newer messages still gets the smaller ids.
    pub fn insert_messages(&self, messages: &[Message]) -> Result<Vec<LocalMessage>> {
        Ok(self
            .insert_messages_tracked(messages)?
            .into_iter()
            .map(|i| i.message)
            .collect())
    }

    /// [`Store::insert_messages`], saying of each new message whether it settled an outbox
    /// entry, and adding each held message an action changed (once, as it is now).
    pub fn insert_messages_tracked(&self, messages: &[Message]) -> Result<Vec<Inserted>> {
        let mut conn = self.conn();
        // Immediate: the free id is read and used inside one write lock, so a second process on
        // the same file cannot take it in between.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut fresh = Vec::new();
        let mut written = 0i64;
        let mut index = SearchIndexWrites {
            pending: Vec::new(),
            replaced_old: false,
        };
        // Held messages that actions (or the server's newer state) changed, in order.
        let mut changed: Vec<(ConvId, Seq)> = Vec::new();
        let me: String = tx.query_row(
            "SELECT coalesce((SELECT value FROM meta WHERE key = 'me'), '')",
            [],
            |r| r.get(0),
        )?;
        {
            let mut last_in_ms =
                tx.prepare_cached("SELECT max(id) FROM messages WHERE id BETWEEN ?1 AND ?2")?;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO messages
                    (id, conv, seq, server_id, sender, text, time, client_msg_id,
                     reply_to, action, edited, deleted, mentions_me, attachments)
                 VALUES (?8, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            let mut settle = tx.prepare_cached("DELETE FROM outbox WHERE local_id = ?1")?;
            let mut bump = tx.prepare_cached(
                "UPDATE conversations SET last_seq = max(last_seq, ?2) WHERE id = ?1",
            )?;
            // A fetched message the server already counted as unread is now counted locally.
            let mut unbase = tx.prepare_cached(
                "UPDATE conversations SET unread_base = unread_base - 1
                 WHERE id = ?1 AND unread_base > 0 AND ?2 <= unread_base_seq AND ?2 > last_read
                    AND ?3 != coalesce((SELECT value FROM meta WHERE key = 'me'), '')",
            )?;
            for m in messages {
                let id = m.client_msg_id.to_string();
                let first = order_key(m.time);
                let last = first | ((1 << SLOT_BITS) - 1);
                let top: Option<i64> = last_in_ms.query_row([first, last], |r| r.get(0))?;
                let row_id = match top {
                    None => Some(first),
                    Some(top) if top < last => Some(top + 1),
                    // A full millisecond: SQLite picks max(id) + 1, after the newest held; only past 256
                    // messages in one millisecond does order fall back to arrival.
                    Some(_) => None::<i64>,
                };
                // An action's row keeps no text: an edit's text lives in its target only, so a
                // later delete leaves it nowhere.
                let text = if m.action.is_some() { "" } else { &m.text };
                let n = insert.execute(params![
                    m.conv,
                    m.seq,
                    m.id,
                    m.sender,
                    text,
                    m.time,
                    id,
                    row_id,
                    m.reply_to,
                    m.action.as_ref().map(action_kind),
                    m.edited,
                    m.deleted,
                    m.action.is_none() && mentions_me(text, &me),
                    attachments_json(&m.attachments)?,
                ])?;
                let settled = settle.execute([&id])?;
                bump.execute(params![m.conv, m.seq])?;
                if n == 1 {
                    index
                        .pending
                        .push((tx.last_insert_rowid(), text.to_owned()));
                }
                match (&m.action, n == 1) {
                    (Some(action), true) => {
                        if apply_action(&tx, m, action, &me, &mut index)? {
                            changed.push((m.conv, action.target()));
                            // Replies show their target's first line: an edit or a delete
                            // changes their quotes too.
                            if !matches!(action, Action::React { .. }) {
                                for reply in replies_to(&tx, m.conv, action.target())? {
                                    changed.push((m.conv, reply));
                                }
                            }
                        }
                    }
                    (Some(_), false) => {}
                    (None, true) => {
                        written += 1;
                        unbase.execute(params![m.conv, m.seq, m.sender])?;
                        fresh.push(Inserted {
                            message: LocalMessage {
                                local_id: id,
                                conv: Some(m.conv),
                                seq: Some(m.seq),
                                sender: m.sender.clone(),
                                text: m.text.clone(),
                                time: m.time,
                                state: MessageState::Sent,
                                error: None,
                                reply_to: m.reply_to.map(unresolved_quote),
                                edited: m.edited,
                                deleted: m.deleted,
                                reactions: Vec::new(),
                                attachments: m.attachments.clone(),
                                uploads: Vec::new(),
                            },
                            was_shown: settled > 0,
                        });
                    }
                    (None, false) => {
                        if refresh_held(&tx, m, &me, &mut index)? {
                            changed.push((m.conv, m.seq));
                        }
                    }
                }
            }
            // What the new messages look like after this write's actions, with quotes and
            // reactions; then each changed held message once, as it is now.
            let refetch = !changed.is_empty();
            for f in &mut fresh {
                let (Some(conv), Some(seq)) = (f.message.conv, f.message.seq) else {
                    continue;
                };
                if refetch {
                    if let Some(now) = held_message(&tx, conv, seq)? {
                        f.message = LocalMessage {
                            local_id: f.message.local_id.clone(),
                            ..now
                        };
                    }
                    changed.retain(|c| *c != (conv, seq));
                } else if f.message.reply_to.is_some() {
                    decorate(&tx, std::slice::from_mut(&mut f.message))?;
                }
            }
            let mut announced = Vec::new();
            for key in changed {
                if announced.contains(&key) {
                    continue;
                }
                announced.push(key);
                if let Some(message) = held_message(&tx, key.0, key.1)? {
                    fresh.push(Inserted {
                        message,
                        was_shown: true,
                    });
                }
            }
            let mut to_index = std::mem::take(&mut index.pending);
            if !to_index.is_empty() {
                // Every row inserted into messages is indexed here, in one statement and in
                // rowid order: FTS5 writes its pending terms out as a segment at each statement
                // savepoint (see migration 0005) and whenever a rowid is not above the last one.
                to_index.sort_unstable_by_key(|(id, _)| *id);
                tx.prepare_cached(
                    "INSERT INTO messages_fts (rowid, text)
                     SELECT value ->> 0, value ->> 1 FROM json_each(?1)",
                )?
                .execute([serde_json::to_string(&to_index)?])?;
                tx.prepare_cached(
                    "INSERT INTO meta (key, value) VALUES ('fts_written', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = CAST(meta.value AS INTEGER) + ?1",
                )?
                .execute([written])?;
            }
        }
        tx.commit()?;
        if index.replaced_old {
            // The merge is what removes the old text's tokens from the index.
            let merged = if self.background_merge.load(Ordering::Relaxed) {
                self.merge_due.store(true, Ordering::Relaxed);
                Ok(())
            } else {
                compact(&mut conn)
            };
            if let Err(e) = merged {
                tracing::warn!("local store: merging the search index failed: {e}");
            }
        } else if written > 0 {
            // The messages are committed: a failed merge only leaves the index as FTS5 left it,
            // and the next write tries again.
            if let Err(e) = self.compact_if_grown(&mut conn) {
                tracing::warn!("local store: merging the search index failed: {e}");
            }
        }
        Ok(fresh)
    }

    /// Merges the search index when enough was written since its last merge (see
    /// [`COMPACT_MIN_ROWS`]).
    fn compact_if_grown(&self, conn: &mut Connection) -> Result<()> {
        let (written, compacted): (i64, i64) = conn
            .prepare_cached(
                "SELECT (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fts_written'),
                    (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'fts_compacted_rows')",
            )?
            .query_row([], |r| {
                Ok((
                    r.get::<_, Option<i64>>(0)?.unwrap_or(0),
                    r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                ))
            })?;
        let grown = |divisor: i64| written >= self.compact_min_rows.max(compacted / divisor);
        // Counting segments reads the index's term index (a few thousand rows at a million
        // messages), so only once the cheaper test allows a merge.
        if grown(COMPACT_GROWTH_DIVISOR)
            || (grown(COMPACT_FRAGMENTED_DIVISOR) && segments(conn)? >= self.compact_max_segments)
        {
            if self.background_merge.load(Ordering::Relaxed) {
                self.merge_due.store(true, Ordering::Relaxed);
            } else {
                compact(conn)?;
            }
        }
        Ok(())
    }

    /// From now on a due merge of the search index is flagged for the caller (the store
    /// thread) to do in steps, see [`Store::merge_step`].
    pub(crate) fn set_background_merge(&self) {
        self.background_merge.store(true, Ordering::Relaxed);
    }

    /// Whether a write made a merge of the search index due since the last call.
    pub(crate) fn take_merge_due(&self) -> bool {
        self.merge_due.swap(false, Ordering::Relaxed)
    }

    /// One bounded step of merging the search index (FTS5 `merge` with a negative page count:
    /// about `pages` pages written, every level eligible). Returns whether more remains; when
    /// none does, the index is one segment and the merge counters are reset as
    /// [`Store::compact_search_index`] does. Each step is its own short write transaction, so
    /// sends and arriving messages queue behind one step (milliseconds), not behind the whole
    /// merge (about a second per million messages).
    pub fn merge_step(&self, pages: u32) -> Result<bool> {
        let conn = self.conn();
        let before = conn.total_changes();
        conn.execute(
            "INSERT INTO messages_fts (messages_fts, rank) VALUES ('merge', ?1)",
            [-i64::from(pages.max(2))],
        )?;
        // FTS5's documented test: fewer than two rows changed means there was nothing to merge.
        if conn.total_changes() - before >= 2 {
            return Ok(true);
        }
        conn.execute(MERGED, [])?;
        Ok(false)
    }

    /// How many full conversation lists and single conversation summaries were read (a
    /// measurement for tests: a burst of messages must not cost a list each).
    pub fn summary_reads(&self) -> (u64, u64) {
        (
            self.full_lists.load(Ordering::Relaxed),
            self.summaries.load(Ordering::Relaxed),
        )
    }

    /// Merges the full-text index into one segment now, so that a search after the next launch
    /// reads as few index pages as possible. Costs about a second per million messages held; the
    /// store does it by itself as the index grows (see [`COMPACT_MIN_ROWS`]), and an idle moment
    /// is a good time to call it too. Results of searches do not change.
    pub fn compact_search_index(&self) -> Result<()> {
        compact(&mut self.conn())
    }

    /// How many segments the full-text index has (1 after [`Store::compact_search_index`]).
    pub fn search_index_segments(&self) -> Result<i64> {
        segments(&self.conn())
    }

    /// The committed messages among the last `limit` events (messages and actions) of `conv`
    /// with seq < `before` (the newest when `None`), ascending by seq, with their quotes and
    /// reactions.
    pub fn page(&self, conv: ConvId, before: Option<Seq>, limit: u32) -> Result<Vec<LocalMessage>> {
        Ok(self.page_with_seqs(conv, before, limit)?.0)
    }

    /// [`Store::page`], and the seqs of every event it looked at (messages and actions), to
    /// tell whether the store holds that stretch without gaps.
    pub fn page_with_seqs(
        &self,
        conv: ConvId,
        before: Option<Seq>,
        limit: u32,
    ) -> Result<(Vec<LocalMessage>, Vec<Seq>)> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLS}, action IS NOT NULL FROM messages WHERE conv = ?1 AND seq < ?2
             ORDER BY seq DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![conv, before.unwrap_or(i64::MAX), limit], |r| {
            Ok((message_row(r)?, r.get::<_, bool>(10)?))
        })?;
        let mut seqs = Vec::new();
        let mut out = Vec::new();
        for row in rows {
            let (message, is_action) = row?;
            seqs.extend(message.seq);
            if !is_action {
                out.push(message);
            }
        }
        out.reverse();
        seqs.reverse();
        decorate(&conn, &mut out)?;
        Ok((out, seqs))
    }

    pub fn message_count(&self, conv: ConvId) -> Result<u64> {
        Ok(self.conn().query_row(
            "SELECT count(*) FROM messages WHERE conv = ?1 AND action IS NULL",
            [conv],
            |r| r.get(0),
        )?)
    }

    /// The committed message with this `client_msg_id`, if held.
    pub fn message_by_local_id(&self, local_id: &str) -> Result<Option<LocalMessage>> {
        let conn = self.conn();
        let message = conn
            .query_row(
                &format!(
                    "SELECT {MESSAGE_COLS} FROM messages
                     WHERE client_msg_id = ?1 AND action IS NULL"
                ),
                [local_id],
                message_row,
            )
            .optional()?;
        let mut held: Vec<LocalMessage> = message.into_iter().collect();
        decorate(&conn, &mut held)?;
        Ok(held.pop())
    }

    /// The newest committed message (not an action) of `conv`, for its preview.
    fn last_message(&self, conv: ConvId) -> Result<Option<LocalMessage>> {
        let conn = self.conn();
        let seq: Option<Seq> = conn
            .prepare_cached(
                "SELECT seq FROM messages WHERE conv = ?1 AND action IS NULL
                 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row([conv], |r| r.get(0))
            .optional()?;
        match seq {
            Some(seq) => Ok(held_message(&conn, conv, seq)?),
            None => Ok(None),
        }
    }

    /// The committed message at (conv, seq), if held, with its quote and reactions.
    pub fn message_at(&self, conv: ConvId, seq: Seq) -> Result<Option<LocalMessage>> {
        Ok(held_message(&self.conn(), conv, seq)?)
    }

    // ---- outbox --------------------------------------------------------------------------------

    pub fn enqueue(&self, item: &OutboxItem) -> Result<()> {
        self.conn().execute(
            "INSERT INTO outbox
                (local_id, conv, to_user, sender, text, created, state, reply_to, action, files)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9)",
            params![
                item.local_id,
                item.conv,
                item.to_user,
                item.sender,
                item.text,
                item.created,
                item.reply_to,
                item.action
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()?,
                (!item.files.is_empty())
                    .then(|| serde_json::to_string(&item.files))
                    .transpose()?,
            ],
        )?;
        Ok(())
    }

    /// The oldest pending outbox entry: the outbox drains strictly in the order written, which
    /// keeps each conversation's order.
    pub fn next_pending(&self) -> Result<Option<OutboxItem>> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {OUTBOX_COLS} FROM outbox WHERE state = 'pending' ORDER BY pos LIMIT 1"
                ),
                [],
                outbox_row,
            )
            .optional()?)
    }

    pub fn outbox_item(&self, local_id: &str) -> Result<Option<OutboxItem>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {OUTBOX_COLS} FROM outbox WHERE local_id = ?1"),
                [local_id],
                outbox_row,
            )
            .optional()?)
    }

    /// Pending and failed outbox messages (not actions) of `conv` (or all, when `None`),
    /// oldest first.
    pub fn outbox(&self, conv: Option<ConvId>) -> Result<Vec<OutboxItem>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {OUTBOX_COLS} FROM outbox WHERE (?1 IS NULL OR conv = ?1) AND action IS NULL
             ORDER BY pos"
        ))?;
        let rows = stmt.query_map([conv], outbox_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn pending_count(&self) -> Result<u64> {
        Ok(self.conn().query_row(
            "SELECT count(*) FROM outbox WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn mark_failed(&self, local_id: &str, reason: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE outbox SET state = 'failed', error = ?2 WHERE local_id = ?1",
            params![local_id, reason],
        )?;
        Ok(())
    }

    /// Records that file `index` of outbox entry `local_id` was uploaded as `attachment`, so
    /// it is not uploaded again (after a reconnect or a restart). Returns the entry as it is
    /// now; `None` when it is gone (cancelled meanwhile).
    pub fn set_outbox_attachment(
        &self,
        local_id: &str,
        index: usize,
        attachment: &Attachment,
    ) -> Result<Option<OutboxItem>> {
        let Some(mut item) = self.outbox_item(local_id)? else {
            return Ok(None);
        };
        let Some(file) = item.files.get_mut(index) else {
            return Ok(Some(item));
        };
        file.attachment = Some(attachment.clone());
        self.conn().execute(
            "UPDATE outbox SET files = ?2 WHERE local_id = ?1",
            params![local_id, serde_json::to_string(&item.files)?],
        )?;
        Ok(Some(item))
    }

    /// Removes an outbox entry (an action the server refused, a message the user cancelled).
    pub fn remove_outbox(&self, local_id: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM outbox WHERE local_id = ?1", [local_id])?;
        Ok(())
    }

    /// Puts a failed entry back in the queue, behind everything pending, with the same
    /// `client_msg_id` (so a retry of something the server did commit is not duplicated).
    pub fn requeue(&self, local_id: &str) -> Result<Option<OutboxItem>> {
        self.conn().execute(
            "UPDATE outbox SET state = 'pending', error = NULL,
                pos = (SELECT coalesce(max(pos), 0) + 1 FROM outbox)
             WHERE local_id = ?1 AND state = 'failed'",
            [local_id],
        )?;
        self.outbox_item(local_id)
    }

    /// After a DM's first message created the conversation, later queued messages to that user
    /// belong to it too.
    pub fn assign_dm_conversation(&self, to_user: &str, conv: ConvId) -> Result<()> {
        self.conn().execute(
            "UPDATE outbox SET conv = ?2 WHERE to_user = ?1 AND conv IS NULL",
            params![to_user, conv],
        )?;
        Ok(())
    }

    // ---- read markers and unread counts ------------------------------------------------------

    /// Moves the read marker of `conv` forward to `seq` (never back). `dirty` records that the
    /// server has not been told yet. Returns whether the marker moved.
    ///
    /// Unread messages we do not hold (`unread_base`, counted by the server) shrink by the
    /// number of seqs newly read that we do not hold: exact when the range is all others'
    /// messages, an upper bound otherwise, and 0 once the marker passes what the server counted.
    pub fn set_last_read(&self, conv: ConvId, seq: Seq, dirty: bool) -> Result<bool> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE conversations SET
                read_dirty = CASE WHEN ?3 THEN 1 ELSE read_dirty END,
                unread_base = CASE WHEN ?2 >= unread_base_seq THEN 0
                    ELSE max(0, unread_base - ((?2 - last_read) - (SELECT count(*) FROM messages m
                        WHERE m.conv = ?1 AND m.seq > conversations.last_read AND m.seq <= ?2)))
                    END,
                last_read = ?2
             WHERE id = ?1 AND last_read < ?2",
            params![conv, seq, dirty],
        )?;
        Ok(n > 0)
    }

    /// The server's unread count after a resume (everything up to the conversation's last seq).
    /// Whatever part of it we do not hold locally is kept as `unread_base`. A newer local marker
    /// (not yet synced) makes the server's count stale, so then only local messages count.
    pub fn set_server_unread(
        &self,
        conv: ConvId,
        count: u32,
        server_last_read: Seq,
        me: &str,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE conversations SET
                unread_base = CASE WHEN last_read > ?3 THEN 0
                    ELSE max(0, ?2 - (SELECT count(*) FROM messages m WHERE m.conv = ?1
                        AND m.seq > ?3 AND m.seq <= conversations.last_seq AND m.sender != ?4))
                    END,
                unread_base_seq = last_seq,
                last_read = max(last_read, ?3)
             WHERE id = ?1",
            params![conv, count, server_last_read, me],
        )?;
        Ok(())
    }

    /// Read markers not yet acknowledged by the server.
    pub fn dirty_reads(&self) -> Result<Vec<ConvSeq>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, last_read FROM conversations WHERE read_dirty = 1 AND member = 1",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ConvSeq {
                conv: r.get(0)?,
                seq: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn clear_dirty_read(&self, conv: ConvId, seq: Seq) -> Result<()> {
        self.conn().execute(
            "UPDATE conversations SET read_dirty = 0 WHERE id = ?1 AND last_read <= ?2",
            params![conv, seq],
        )?;
        Ok(())
    }

    pub fn last_read(&self, conv: ConvId) -> Result<Seq> {
        Ok(self
            .conn()
            .query_row(
                "SELECT last_read FROM conversations WHERE id = ?1",
                [conv],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    // ---- summaries and search ------------------------------------------------------------------

    /// Joined conversations, most recently active first, with unread counts and previews.
    pub fn conversations(&self, me: &str) -> Result<Vec<ConversationSummary>> {
        self.full_lists.fetch_add(1, Ordering::Relaxed);
        let mut out = self.summaries(me, None)?;
        out.sort_by(|a, b| {
            b.last_activity
                .cmp(&a.last_activity)
                .then_with(|| a.title.cmp(&b.title))
        });
        Ok(out)
    }

    /// The summary of one joined conversation (`None` when not a member): what a change
    /// event carries instead of the whole list.
    pub fn conversation_summary(
        &self,
        me: &str,
        conv: ConvId,
    ) -> Result<Option<ConversationSummary>> {
        self.summaries.fetch_add(1, Ordering::Relaxed);
        Ok(self.summaries(me, Some(conv))?.pop())
    }

    /// The unread count of a joined conversation (`None` when not a member).
    pub fn unread(&self, me: &str, conv: ConvId) -> Result<Option<u32>> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {UNREAD_SQL} FROM conversations c WHERE c.member = 1 AND c.id = ?2"
                ),
                params![me, conv],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(clamp_unread))
    }

    /// The summaries of joined conversations (only `conv`, when given), unsorted.
    fn summaries(&self, me: &str, conv: Option<ConvId>) -> Result<Vec<ConversationSummary>> {
        type Row = (
            ConvId,
            String,
            String,
            Option<String>,
            String,
            (i64, i64),
            (bool, bool),
        );
        let ids: Vec<Row> = {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT c.id, c.kind, c.name, c.peer, c.level, {UNREAD_SQL}, {MENTIONS_SQL},
                        c.private, c.moderator
                 FROM conversations c WHERE c.member = 1 AND (?2 IS NULL OR c.id = ?2)"
            ))?;
            let rows = stmt.query_map(params![me, conv], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    (r.get(5)?, r.get(6)?),
                    (r.get(7)?, r.get(8)?),
                ))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut out = Vec::with_capacity(ids.len());
        for (id, kind, name, peer, level, (unread, mentions), (private, moderator)) in ids {
            let kind = if kind == "dm" {
                ConvKind::Dm
            } else {
                ConvKind::Room
            };
            let peer = match peer {
                Some(p) => self.user(&p)?,
                None => None,
            };
            let last_sent = self.last_message(id)?;
            let last_queued = self.outbox(Some(id))?.pop().map(|o| o.to_local());
            let last_message = match (last_sent, last_queued) {
                (Some(a), Some(b)) => Some(if b.time >= a.time { b } else { a }),
                (a, b) => a.or(b),
            };
            let title = match (&kind, &peer) {
                (ConvKind::Room, _) => format!("#{name}"),
                (ConvKind::Dm, Some(p)) if !p.display_name.is_empty() => p.display_name.clone(),
                (ConvKind::Dm, _) => name.clone(),
            };
            out.push(ConversationSummary {
                id,
                kind,
                name,
                title,
                peer,
                unread: clamp_unread(unread),
                mentions: clamp_unread(mentions),
                last_activity: last_message.as_ref().map_or(0, |m| m.time),
                last_message,
                level: NotifyLevel::from_name(&level).unwrap_or_default(),
                private,
                moderator,
            });
        }
        Ok(out)
    }

    /// Messages containing every whitespace-separated term of `query` (substring match in any
    /// script, ASCII case-insensitive), newest first. Terms of three or more characters use the
    /// trigram index; shorter ones (two-character Chinese words are common) a LIKE scan.
    ///
    /// Message ids follow time (see [`order_key`]), so both paths walk ids downwards and stop at
    /// `limit`: the FTS path reads the index's doclist backwards (FTS5 serves `ORDER BY rowid
    /// DESC` itself), the LIKE path the table. Neither sorts the matches. With a `conv` filter the
    /// walk may pass other conversations' matches first, so a conversation with few matches of a
    /// common term costs up to one row lookup per match, as a full sort did before.
    pub fn search(&self, query: &str, conv: Option<ConvId>, limit: u32) -> Result<Vec<SearchHit>> {
        let terms: Vec<&str> = query.split_whitespace().collect();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn();
        let conv_ids_first = match conv {
            Some(c) => {
                conn.prepare_cached(
                    "SELECT count(*) FROM (SELECT 1 FROM messages WHERE conv = ?1 LIMIT ?2)",
                )?
                .query_row(params![c, SMALL_CONVERSATION + 1], |r| r.get::<_, i64>(0))?
                    <= SMALL_CONVERSATION
            }
            None => false,
        };
        let (sql, args) = search_sql(&terms, conv, conv_ids_first, limit);
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
            Ok((message_row(r)?, r.get::<_, Option<String>>(10)?))
        })?;
        let mut hits = Vec::new();
        for row in rows {
            let (message, title) = row?;
            let snippet = snippet(&message.text, terms[0]);
            hits.push(SearchHit {
                conv_title: title.unwrap_or_default(),
                snippet,
                message,
            });
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("natter.db")).unwrap();
        s.meta_set("me", "me").unwrap();
        (dir, s)
    }

    fn room(id: ConvId, name: &str) -> Conversation {
        Conversation {
            id,
            kind: ConvKind::Room,
            name: name.into(),
            peer: None,
            member_count: 2,
            last_seq: 0,
            last_read: 0,
            private: false,
            moderator: false,
        }
    }

    fn msg(conv: ConvId, seq: Seq, sender: &str, text: &str) -> Message {
        Message {
            id: conv * 100_000 + seq,
            conv,
            seq,
            sender: sender.into(),
            text: text.into(),
            time: 1_000 + seq,
            client_msg_id: Uuid::new_v4(),
            ..Default::default()
        }
    }

    fn queued(conv: Option<ConvId>, to: Option<&str>, text: &str) -> OutboxItem {
        OutboxItem {
            local_id: Uuid::new_v4().to_string(),
            conv,
            to_user: to.map(str::to_owned),
            sender: "me".into(),
            text: text.into(),
            created: 5_000,
            state: MessageState::Pending,
            error: None,
            reply_to: None,
            action: None,
            files: Vec::new(),
        }
    }

    fn attachment(id: &str, name: &str) -> Attachment {
        Attachment {
            id: id.into(),
            name: name.into(),
            media_type: "image/png".into(),
            size: 68,
            width: Some(1),
            height: Some(1),
            thumbnail: Some("ab".repeat(32)),
        }
    }

    #[test]
    fn attachments_and_avatars_are_kept_and_a_delete_drops_them() {
        let (_dir, s) = store();
        s.upsert_conversation(&room(1, "general")).unwrap();
        let files = vec![attachment("f1", "a.png"), attachment("f2", "b.png")];
        let m = Message {
            text: String::new(),
            attachments: files.clone(),
            ..msg(1, 1, "bob", "")
        };
        let fresh = s.insert_messages(&[m, msg(1, 2, "bob", "plain")]).unwrap();
        assert_eq!(fresh[0].attachments, files, "as announced");
        let page = s.page(1, None, 10).unwrap();
        assert_eq!(page[0].attachments, files, "as stored, in order");
        assert!(page[1].attachments.is_empty());
        assert_eq!(s.message_at(1, 1).unwrap().unwrap().attachments, files);

        let delete = Message {
            action: Some(Action::Delete { target: 1 }),
            ..msg(1, 3, "bob", "")
        };
        s.insert_messages(&[delete]).unwrap();
        let gone = s.message_at(1, 1).unwrap().unwrap();
        assert!(gone.deleted && gone.attachments.is_empty(), "{gone:?}");

        let mut bob = User {
            username: "bob".into(),
            display_name: "Bob".into(),
            avatar: "cat".into(),
            deleted: false,
            avatar_image: Some("cd".repeat(32)),
            admin: false,
        };
        s.upsert_user(&bob).unwrap();
        assert_eq!(s.user("bob").unwrap().unwrap(), bob);
        bob.avatar_image = None;
        s.upsert_user(&bob).unwrap();
        assert_eq!(
            s.user("bob").unwrap().unwrap().avatar_image,
            None,
            "removed"
        );
    }

    #[test]
    fn outbox_files_survive_and_only_uploaded_ones_are_sent() {
        let (_dir, s) = store();
        let mut item = queued(Some(1), None, "");
        item.files = vec![
            OutboxFile {
                path: "/tmp/a.png".into(),
                attachment: Some(attachment("f1", "a.png")),
            },
            OutboxFile {
                path: "/tmp/b.txt".into(),
                attachment: None,
            },
        ];
        s.enqueue(&item).unwrap();
        let back = s.next_pending().unwrap().unwrap();
        assert_eq!(back.files, item.files);
        assert!(back.frame(1).is_none(), "not sendable before every upload");
        let shown = back.to_local();
        assert_eq!(shown.attachments, vec![attachment("f1", "a.png")]);
        assert_eq!(shown.uploads.len(), 1);
        assert_eq!(shown.uploads[0].name, "b.txt");

        item.files[1].attachment = Some(attachment("f2", "b.txt"));
        match item.frame(7) {
            Some(ClientFrame::Send { attachments, .. }) => assert_eq!(attachments, ["f1", "f2"]),
            other => panic!("{other:?}"),
        }
        assert!(
            queued(Some(1), None, "x").frame(1).is_some(),
            "no files: sendable"
        );
    }

    #[test]
    fn reopening_keeps_data_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p/natter.db");
        {
            let s = Store::open(&path).unwrap();
            s.upsert_conversation(&room(1, "general")).unwrap();
            s.insert_messages(&[msg(1, 1, "bob", "hello")]).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.page(1, None, 10).unwrap().len(), 1);
        assert_eq!(s.integrity_check().unwrap(), "ok");
        let v: i64 = s
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let mode: String = s
            .conn()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn conversation_flags_follow_the_server_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("natter.db");
        let flags = |s: &Store| -> Vec<(String, bool, bool)> {
            let mut all: Vec<_> = s
                .conversations("me")
                .unwrap()
                .into_iter()
                .map(|c| (c.name, c.private, c.moderator))
                .collect();
            all.sort();
            all
        };
        {
            let s = Store::open(&path).unwrap();
            s.meta_set("me", "me").unwrap();
            s.upsert_conversation(&room(1, "general")).unwrap();
            s.upsert_conversation(&Conversation {
                private: true,
                moderator: true,
                ..room(2, "board")
            })
            .unwrap();
            s.upsert_conversation(&Conversation {
                moderator: true,
                ..room(3, "open")
            })
            .unwrap();
            // The server says otherwise later (made public, admin revoked): the store follows.
            s.upsert_conversation(&room(3, "open")).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(
            flags(&s),
            [
                ("board".to_string(), true, true),
                ("general".to_string(), false, false),
                ("open".to_string(), false, false),
            ]
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("natter.db");
        Store::open(&path)
            .unwrap()
            .conn()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::TooNew(99))));
    }

    #[test]
    fn the_same_message_twice_is_stored_once() {
        let (_d, s) = store();
        s.upsert_conversation(&room(1, "general")).unwrap();
        let m = msg(1, 1, "bob", "hi");
        assert_eq!(
            s.insert_messages(std::slice::from_ref(&m)).unwrap().len(),
            1
        );
        assert!(s.insert_messages(&[m.clone(), m]).unwrap().is_empty());
        assert_eq!(s.message_count(1).unwrap(), 1);
        assert_eq!(s.last_seq(1).unwrap(), 1);
    }

    #[test]
    fn a_resume_cut_short_restarts_from_the_gap() {
        let (_d, s) = store();
        s.upsert_conversation(&room(1, "general")).unwrap();
        s.upsert_conversation(&room(2, "empty")).unwrap();
        let batch = |r: std::ops::RangeInclusive<i64>| -> Vec<Message> {
            r.map(|i| msg(1, i, "bob", "x")).collect()
        };
        // A fresh profile got the last page (51..=100) and finished its resume.
        s.insert_messages(&batch(51..=100)).unwrap();
        assert_eq!(
            s.sync_points().unwrap(),
            vec![ConvSeq { conv: 1, seq: 100 }]
        );
        s.mark_synced().unwrap();
        // Older pages fetched on demand leave a gap below; it does not matter to the resume.
        s.insert_messages(&batch(1..=10)).unwrap();
        assert_eq!(s.sync_points().unwrap()[0].seq, 100);
        // Next connection: the replay got 101..=120, a live push 150 arrived, then it dropped.
        s.insert_messages(&batch(101..=120)).unwrap();
        s.insert_messages(&batch(150..=150)).unwrap();
        assert_eq!(
            s.sync_points().unwrap()[0].seq,
            120,
            "resume from the gap, not from 150"
        );
        // A live push right after the synced point, with the replay missing entirely.
        s.mark_synced().unwrap();
        s.insert_messages(&batch(122..=122)).unwrap();
        assert_eq!(s.sync_points().unwrap()[0].seq, 120);
        s.insert_messages(&batch(121..=121)).unwrap();
        s.insert_messages(&batch(123..=149)).unwrap();
        assert_eq!(s.sync_points().unwrap()[0].seq, 150);
    }

    #[test]
    fn pages_are_ascending_and_walk_backwards() {
        let (_d, s) = store();
        let all: Vec<_> = (1..=25)
            .map(|i| msg(1, i, "bob", &format!("m{i}")))
            .collect();
        s.insert_messages(&all).unwrap();
        let newest = s.page(1, None, 10).unwrap();
        assert_eq!(newest.first().unwrap().seq, Some(16));
        assert_eq!(newest.last().unwrap().seq, Some(25));
        let older = s.page(1, Some(16), 10).unwrap();
        assert_eq!(older.first().unwrap().seq, Some(6));
        let oldest = s.page(1, Some(6), 10).unwrap();
        assert_eq!(oldest.len(), 5);
        assert!(s.page(1, Some(1), 10).unwrap().is_empty());
    }

    #[test]
    fn the_outbox_drains_in_order_and_acks_settle_it() {
        let (_d, s) = store();
        let a = queued(Some(1), None, "a");
        let b = queued(Some(2), None, "b");
        let c = queued(Some(1), None, "c");
        for i in [&a, &b, &c] {
            s.enqueue(i).unwrap();
        }
        assert_eq!(s.next_pending().unwrap().unwrap().local_id, a.local_id);
        assert_eq!(s.pending_count().unwrap(), 3);
        let mut ack = msg(1, 1, "me", "a");
        ack.client_msg_id = a.local_id.parse().unwrap();
        s.insert_messages(&[ack]).unwrap();
        assert_eq!(s.next_pending().unwrap().unwrap().local_id, b.local_id);
        assert_eq!(
            s.message_by_local_id(&a.local_id).unwrap().unwrap().state,
            MessageState::Sent
        );
        s.mark_failed(&b.local_id, "forbidden: not a member")
            .unwrap();
        assert_eq!(s.next_pending().unwrap().unwrap().local_id, c.local_id);
        let failed = s.outbox_item(&b.local_id).unwrap().unwrap();
        assert_eq!(failed.state, MessageState::Failed);
        assert_eq!(failed.error.as_deref(), Some("forbidden: not a member"));
        // A retry goes to the back of the queue with the same id.
        let again = s.requeue(&b.local_id).unwrap().unwrap();
        assert_eq!(again.state, MessageState::Pending);
        assert_eq!(again.error, None);
        let order: Vec<_> = s
            .outbox(None)
            .unwrap()
            .into_iter()
            .map(|o| o.text)
            .collect();
        assert_eq!(order, ["c", "b"]);
        // Requeueing something pending is a no-op; new entries still go last.
        s.requeue(&c.local_id).unwrap();
        s.enqueue(&queued(Some(1), None, "d")).unwrap();
        let order: Vec<_> = s
            .outbox(None)
            .unwrap()
            .into_iter()
            .map(|o| o.text)
            .collect();
        assert_eq!(order, ["c", "b", "d"]);
    }

    #[test]
    fn a_dm_conversation_is_assigned_to_queued_messages() {
        let (_d, s) = store();
        let a = queued(None, Some("bob"), "a");
        s.enqueue(&a).unwrap();
        s.assign_dm_conversation("bob", 7).unwrap();
        assert_eq!(s.outbox(Some(7)).unwrap().len(), 1);
    }

    /// An action event from `sender` at `seq` in conversation 1.
    fn action(seq: Seq, sender: &str, action: Action, text: &str) -> Message {
        Message {
            action: Some(action),
            ..msg(1, seq, sender, text)
        }
    }

    fn texts(s: &Store, query: &str) -> Vec<String> {
        s.search(query, None, 10)
            .unwrap()
            .into_iter()
            .map(|h| h.message.text)
            .collect()
    }

    /// Edits replace the text and the search entry, deletes leave a tombstone with no text or
    /// search entry, reactions add up per emoji; each changed message is reported once, and
    /// action rows are no messages (pages, previews, unread counts).
    #[test]
    fn actions_change_their_targets_text_search_and_reactions() {
        let (_d, s) = store();
        s.meta_set("me", "me").unwrap();
        s.upsert_conversation(&room(1, "general")).unwrap();
        s.insert_messages(&[
            msg(1, 1, "bob", "teh first draft"),
            msg(1, 2, "bob", "secret plans"),
            Message {
                reply_to: Some(2),
                ..msg(1, 3, "me", "what plans?")
            },
        ])
        .unwrap();
        let changed = s
            .insert_messages_tracked(&[
                action(4, "bob", Action::Edit { target: 1 }, "the final text, @me"),
                action(5, "me", react(1, "👍", true), ""),
                action(6, "bob", react(1, "👍", true), ""),
                action(7, "bob", react(1, "🎉", true), ""),
                action(8, "bob", Action::Delete { target: 2 }, ""),
            ])
            .unwrap();
        let seqs: Vec<_> = changed
            .iter()
            .map(|i| (i.message.seq, i.was_shown))
            .collect();
        assert_eq!(
            seqs,
            [(Some(1), true), (Some(2), true), (Some(3), true)],
            "one update per message: the two targets, and the reply quoting the deleted one"
        );
        assert!(
            changed[2]
                .message
                .reply_to
                .as_ref()
                .is_some_and(|q| q.deleted),
            "the reply's quote is a tombstone now"
        );
        let first = &changed[0].message;
        assert_eq!(first.text, "the final text, @me");
        assert_eq!(first.edited, Some(1_004));
        let who = |r: &[Reaction]| -> Vec<(String, Vec<String>)> {
            r.iter()
                .map(|r| (r.emoji.clone(), r.users.clone()))
                .collect()
        };
        assert_eq!(
            who(&first.reactions),
            [
                ("👍".to_owned(), vec!["me".to_owned(), "bob".to_owned()]),
                ("🎉".to_owned(), vec!["bob".to_owned()])
            ]
        );
        let gone = &changed[1].message;
        assert!(gone.deleted && gone.text.is_empty());
        assert!(texts(&s, "draft").is_empty(), "pre-edit text is not found");
        assert_eq!(texts(&s, "final"), ["the final text, @me"]);
        assert!(texts(&s, "secret").is_empty() && texts(&s, "plans").len() == 1);
        let raw: i64 = s
            .conn()
            .query_row(
                "SELECT count(*) FROM messages WHERE text LIKE '%secret%' OR text LIKE '%draft%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(raw, 0, "deleted and pre-edit text is gone from the store");
        fts_integrity_check(&s);
        // Not only unfindable: FTS5 only marks a replaced entry deleted, in a new segment;
        // the write merged the index into one segment, which drops the old entries.
        assert_eq!(s.search_index_segments().unwrap(), 1);
        let page = s.page(1, None, 50).unwrap();
        let shown: Vec<_> = page.iter().map(|m| m.seq.unwrap()).collect();
        assert_eq!(shown, [1, 2, 3], "action rows are not messages");
        let reply = page[2].reply_to.as_ref().unwrap();
        assert_eq!(
            (reply.seq, reply.deleted, reply.snippet.as_str()),
            (2, true, "")
        );
        let summary = &s.conversations("me").unwrap()[0];
        assert_eq!(summary.unread, 2, "bob's two messages, not his actions");
        assert_eq!(summary.mentions, 1, "the edit made seq 1 mention me");
        assert_eq!(summary.last_message.as_ref().unwrap().seq, Some(3));
        // Taking a reaction back, then an older event paged in late, changes nothing more.
        s.insert_messages(&[action(9, "bob", react(1, "🎉", false), "")])
            .unwrap();
        let late = s
            .insert_messages_tracked(&[action(7, "bob", react(1, "🎉", true), "")])
            .unwrap();
        assert!(late.is_empty(), "seq 7 is held already");
        let again = s
            .insert_messages_tracked(&[Message {
                seq: 10,
                ..action(10, "bob", Action::Edit { target: 1 }, "newer")
            }])
            .unwrap();
        assert_eq!(again[0].message.text, "newer");
        assert_eq!(who(&again[0].message.reactions).len(), 1);
        assert_eq!(s.sync_points().unwrap(), vec![ConvSeq { conv: 1, seq: 10 }]);
    }

    /// A target held before its newer state arrived in a history page takes the server's
    /// state; an action whose target is not held waits (reactions) or is covered by the
    /// target's state when it comes (edits, deletes).
    #[test]
    fn history_brings_the_current_state_of_held_and_late_messages() {
        let (_d, s) = store();
        s.upsert_conversation(&room(1, "general")).unwrap();
        s.insert_messages(&[msg(1, 1, "bob", "old words")]).unwrap();
        let changed = s
            .insert_messages_tracked(&[Message {
                edited: Some(9),
                ..msg(1, 1, "bob", "new words")
            }])
            .unwrap();
        assert_eq!(changed[0].message.text, "new words");
        assert!(texts(&s, "old").is_empty());
        // Reactions and a delete of seq 2, before seq 2 itself is held.
        s.insert_messages(&[
            action(3, "bob", react(2, "👍", true), ""),
            action(4, "bob", Action::Delete { target: 2 }, ""),
        ])
        .unwrap();
        let fresh = s
            .insert_messages_tracked(&[Message {
                deleted: true,
                ..msg(1, 2, "bob", "")
            }])
            .unwrap();
        assert!(fresh[0].message.deleted);
        assert!(fresh[0].message.reactions.is_empty(), "none on a tombstone");
        fts_integrity_check(&s);
    }

    fn react(target: Seq, emoji: &str, on: bool) -> Action {
        Action::React {
            target,
            emoji: emoji.into(),
            on,
        }
    }

    #[test]
    fn unread_counts_follow_read_markers_and_server_counts() {
        let (_d, s) = store();
        s.upsert_conversation(&room(1, "general")).unwrap();
        s.insert_messages(&[
            msg(1, 1, "bob", "a"),
            msg(1, 2, "me", "b"),
            msg(1, 3, "bob", "c"),
        ])
        .unwrap();
        let unread = |s: &Store| s.conversations("me").unwrap()[0].unread;
        assert_eq!(unread(&s), 2);
        assert!(s.set_last_read(1, 2, true).unwrap());
        assert_eq!(unread(&s), 1);
        assert!(
            !s.set_last_read(1, 1, true).unwrap(),
            "markers never move back"
        );
        assert_eq!(s.dirty_reads().unwrap(), vec![ConvSeq { conv: 1, seq: 2 }]);
        s.clear_dirty_read(1, 2).unwrap();
        assert!(s.dirty_reads().unwrap().is_empty());
        // The server says 40 unread after seq 2, up to seq 100; we hold only seq 3 of those.
        let mut big = room(1, "general");
        big.last_seq = 100;
        big.last_read = 2;
        s.upsert_conversation(&big).unwrap();
        s.set_server_unread(1, 40, 2, "me").unwrap();
        assert_eq!(unread(&s), 40);
        // A live message after the count adds one; fetching a counted one changes nothing.
        s.insert_messages(&[msg(1, 101, "bob", "new")]).unwrap();
        assert_eq!(unread(&s), 41);
        s.insert_messages(&[msg(1, 50, "bob", "older")]).unwrap();
        assert_eq!(unread(&s), 41);
        // Reading up to 10: seqs 3..=10 are read: 3 is held (local count drops by one) and the
        // 7 unheld ones leave the server's count.
        s.set_last_read(1, 10, false).unwrap();
        assert_eq!(unread(&s), 33);
        s.set_last_read(1, 101, false).unwrap();
        assert_eq!(unread(&s), 0);
        // A newer local marker than the server's makes its count stale.
        s.insert_messages(&[msg(1, 102, "bob", "x")]).unwrap();
        s.set_last_read(1, 102, true).unwrap();
        s.set_server_unread(1, 5, 101, "me").unwrap();
        assert_eq!(unread(&s), 0);
    }

    #[test]
    fn summaries_have_titles_previews_and_sort_by_activity() {
        let (_d, s) = store();
        s.upsert_conversation(&room(1, "general")).unwrap();
        s.upsert_conversation(&Conversation {
            id: 2,
            kind: ConvKind::Dm,
            name: "bob".into(),
            peer: Some(User {
                username: "bob".into(),
                display_name: "Bob B".into(),
                avatar: "cat".into(),
                deleted: false,
                avatar_image: None,
                admin: false,
            }),
            member_count: 2,
            last_seq: 0,
            last_read: 0,
            private: false,
            moderator: false,
        })
        .unwrap();
        s.insert_messages(&[msg(1, 1, "bob", "old"), msg(2, 5, "bob", "newer")])
            .unwrap();
        let list = s.conversations("me").unwrap();
        assert_eq!(list[0].title, "Bob B");
        assert_eq!(list[0].last_message.as_ref().unwrap().text, "newer");
        assert_eq!(list[1].title, "#general");
        s.set_level(1, NotifyLevel::Mentions).unwrap();
        assert_eq!(
            s.conversations("me").unwrap()[1].level,
            NotifyLevel::Mentions
        );
        s.retain_memberships(&[2]).unwrap();
        assert_eq!(s.conversations("me").unwrap().len(), 1);
        assert_eq!(s.find_conversation(ConvKind::Dm, "bob").unwrap(), Some(2));
        assert_eq!(
            s.find_conversation(ConvKind::Room, "general").unwrap(),
            None
        );
    }

    #[test]
    fn search_finds_english_and_chinese_newest_first() {
        let (_d, s) = store();
        s.upsert_conversation(&room(1, "general")).unwrap();
        s.insert_messages(&[
            msg(1, 1, "bob", "The quick brown fox"),
            msg(1, 2, "bob", "你好世界"),
            msg(1, 3, "bob", "a QUICK reply, 50% off_sale"),
            msg(1, 4, "bob", "我们说你好"),
            msg(1, 5, "bob", "nothing here"),
        ])
        .unwrap();
        let texts = |q: &str| -> Vec<String> {
            s.search(q, None, 10)
                .unwrap()
                .into_iter()
                .map(|h| h.message.text)
                .collect()
        };
        assert_eq!(
            texts("quick"),
            ["a QUICK reply, 50% off_sale", "The quick brown fox"]
        );
        assert_eq!(texts("你好"), ["我们说你好", "你好世界"]);
        assert_eq!(texts("你好世界"), ["你好世界"]);
        assert_eq!(texts("世"), ["你好世界"]);
        assert_eq!(texts("quick fox"), ["The quick brown fox"]);
        assert_eq!(texts("%"), ["a QUICK reply, 50% off_sale"]);
        assert_eq!(texts("f_"), ["a QUICK reply, 50% off_sale"]);
        assert!(texts("zebra").is_empty());
        assert!(texts("   ").is_empty());
        // FTS syntax in the query is taken literally, never an error.
        assert!(texts("\"AND OR NOT * ( )").is_empty());
        assert!(s.search("quick", Some(2), 10).unwrap().is_empty());
        let hit = &s.search("brown", None, 10).unwrap()[0];
        assert_eq!(hit.conv_title, "#general");
        assert!(hit.snippet.contains("brown"));
    }

    fn at(conv: ConvId, seq: Seq, time: Millis, text: &str) -> Message {
        Message {
            time,
            ..msg(conv, seq, "bob", text)
        }
    }

    fn seqs(hits: Vec<SearchHit>) -> Vec<Seq> {
        hits.into_iter().map(|h| h.message.seq.unwrap()).collect()
    }

    /// The search statement run on a bare connection (a store of any schema version):
    /// (conv, seq) of each hit.
    fn raw_search(
        conn: &Connection,
        q: &str,
        conv: Option<ConvId>,
        ids_first: bool,
        limit: u32,
    ) -> Vec<(ConvId, Seq)> {
        let terms: Vec<&str> = q.split_whitespace().collect();
        let (sql, args) = search_sql(&terms, conv, ids_first, limit);
        // Only conv and seq are read: the columns migrations 8 and 9 added are left out, so the
        // query also runs on a store of an older schema.
        let sql = sql.replace(
            "messages.reply_to, messages.edited, messages.deleted, messages.attachments",
            "NULL, NULL, 0, NULL",
        );
        let mut stmt = conn.prepare(&sql).unwrap();
        stmt.query_map(rusqlite::params_from_iter(args), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    /// Queries covering both search paths (trigram, two-character LIKE, both at once), common
    /// and rare terms, with and without a conversation filter, cut short and complete.
    const UPKEEP_QUERIES: &[&str] = &[
        "meeting",
        "会议",
        "数据库",
        "kubernetes",
        "meeting 会议",
        "区块链技术",
        "ship it",
    ];

    /// Every [`UPKEEP_QUERIES`] result through `search`, newest first.
    fn all_results(s: &Store) -> Vec<Vec<(ConvId, Seq)>> {
        let mut out = Vec::new();
        for q in UPKEEP_QUERIES {
            for conv in [None, Some(1), Some(3)] {
                for limit in [5, 10_000] {
                    out.push(
                        s.search(q, conv, limit)
                            .unwrap()
                            .into_iter()
                            .map(|h| (h.message.conv.unwrap(), h.message.seq.unwrap()))
                            .collect(),
                    );
                }
            }
        }
        out
    }

    /// Message `i` of a mixed history: three conversations, English and Chinese, common and
    /// rare terms, times not in arrival order (every fifth message is older history).
    fn upkeep_message(i: i64) -> Message {
        const WORDS: &[&str] = &["meeting", "会议", "数据库", "ship", "it", "review", "今天"];
        let mut text = format!(
            "{} {}",
            WORDS[(i % 7) as usize],
            WORDS[(i / 7 % 7) as usize]
        );
        if i % 13 == 0 {
            text.push_str(" kubernetes");
        }
        if i % 17 == 0 {
            text.push_str("区块链技术");
        }
        let time = if i % 5 == 0 {
            1_000 + i
        } else {
            1_000_000 + i * 10
        };
        Message {
            time,
            ..msg(i % 3 + 1, i + 1, "bob", &text)
        }
    }

    fn fts_integrity_check(s: &Store) {
        s.conn()
            .execute(
                "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)",
                [],
            )
            .unwrap();
    }

    fn meta_int(s: &Store, key: &str) -> Option<i64> {
        s.meta_get(key).unwrap().map(|v| v.parse().unwrap())
    }

    #[test]
    fn merging_the_search_index_keeps_every_result() {
        let (_d, mut s) = store();
        s.compact_min_rows = i64::MAX;
        for c in 1..=3 {
            s.upsert_conversation(&room(c, "r")).unwrap();
        }
        // One transaction per batch, as a sync stores pages: one FTS segment each.
        for batch in 0..40 {
            let msgs: Vec<Message> = (batch * 15..batch * 15 + 15).map(upkeep_message).collect();
            s.insert_messages(&msgs).unwrap();
        }
        assert!(s.search_index_segments().unwrap() > 3);
        let before = all_results(&s);
        assert!(before.iter().all(|r| !r.is_empty()));
        // Complete lists hold exactly the messages with every term.
        let expected = (0..600)
            .filter(|i| {
                let t = upkeep_message(*i).text;
                t.contains("ship") && t.contains("it")
            })
            .count();
        assert!(expected > 5);
        assert_eq!(s.search("ship it", None, 10_000).unwrap().len(), expected);
        s.compact_search_index().unwrap();
        assert_eq!(s.search_index_segments().unwrap(), 1);
        assert_eq!(all_results(&s), before);
        fts_integrity_check(&s);
        // Writes after the merge are found with the rest, in time order.
        s.insert_messages(&[at(1, 10_000, 5_000_000, "meeting kubernetes")])
            .unwrap();
        assert_eq!(
            s.search("kubernetes", None, 1).unwrap()[0].message.seq,
            Some(10_000)
        );
    }

    #[test]
    fn a_merge_in_steps_ends_in_one_segment_with_the_same_results() {
        let (_d, mut s) = store();
        s.compact_min_rows = i64::MAX;
        s.upsert_conversation(&room(1, "r")).unwrap();
        for b in 0..30 {
            let msgs: Vec<Message> = (b * 20..b * 20 + 20).map(upkeep_message).collect();
            s.insert_messages(&msgs).unwrap();
        }
        let segments = s.search_index_segments().unwrap();
        assert!(segments > 2, "{segments} segments to merge");
        let before = seqs(s.search("kubernetes", None, 1000).unwrap());
        let mut steps = 0;
        while s.merge_step(2).unwrap() {
            steps += 1;
            assert!(steps < 10_000, "the merge ends");
        }
        assert!(
            steps > 1,
            "a small step size takes several steps, not one: {steps}"
        );
        assert_eq!(s.search_index_segments().unwrap(), 1);
        assert_eq!(seqs(s.search("kubernetes", None, 1000).unwrap()), before);
        assert_eq!(meta_int(&s, "fts_written"), Some(0));
        assert_eq!(meta_int(&s, "fts_compacted_rows"), Some(600));
    }

    /// On the store thread a due merge does not hold up the write that made it due, nor the
    /// next job: both run while the index still has its segments, and the merge finishes in
    /// steps in between.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_store_thread_serves_jobs_between_merge_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("natter.db");
        {
            let mut s = Store::open(&path).unwrap();
            s.compact_min_rows = i64::MAX;
            s.upsert_conversation(&room(1, "r")).unwrap();
            for b in 0..30 {
                let msgs: Vec<Message> = (b * 20..b * 20 + 20).map(upkeep_message).collect();
                s.insert_messages(&msgs).unwrap();
            }
            s.close();
        }
        let handle = crate::client::db::StoreHandle::open_tuned(&path, |s| {
            s.compact_min_rows = 10;
            s.merge_step_pages = 1;
        })
        .await
        .unwrap();
        let held = handle.call(|s| s.search_index_segments()).await.unwrap();
        assert!(held > 2, "{held}");
        // Queued together behind a short stall: a write that makes the merge due, then another
        // job (a send, say). Both are served before the merge is done.
        let msgs: Vec<Message> = (600..620).map(upkeep_message).collect();
        let (stalled, segments_after_write, during) = tokio::join!(
            handle.call(|_| {
                std::thread::sleep(std::time::Duration::from_millis(100));
                Ok(())
            }),
            handle.call(move |s| {
                s.insert_messages(&msgs)?;
                s.search_index_segments()
            }),
            handle.call(|s| s.search_index_segments()),
        );
        stalled.unwrap();
        assert!(segments_after_write.unwrap() > 1, "merged inside the write");
        assert!(
            during.unwrap() > 1,
            "the next job waited for the whole merge"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while handle.call(|s| s.search_index_segments()).await.unwrap() > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the merge never ended"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(handle.stats().merge_steps > 1, "{:?}", handle.stats());
        handle.close().await;
    }

    #[test]
    fn the_store_merges_its_index_as_it_grows() {
        let (_d, mut s) = store();
        s.compact_min_rows = 100;
        // The growth rule alone (the fragmentation rule has its own test).
        s.compact_max_segments = i64::MAX;
        for c in 1..=3 {
            s.upsert_conversation(&room(c, "r")).unwrap();
        }
        let batch = |s: &Store, from: i64| {
            let msgs: Vec<Message> = (from..from + 10).map(upkeep_message).collect();
            s.insert_messages(&msgs).unwrap();
        };
        for b in 0..9 {
            batch(&s, b * 10);
        }
        assert!(s.search_index_segments().unwrap() > 1);
        assert_eq!(meta_int(&s, "fts_written"), Some(90));
        // A replay of held messages writes nothing and merges nothing.
        batch(&s, 0);
        assert_eq!(meta_int(&s, "fts_written"), Some(90));
        // The 100th new message triggers the merge.
        batch(&s, 90);
        assert_eq!(s.search_index_segments().unwrap(), 1);
        assert_eq!(meta_int(&s, "fts_written"), Some(0));
        assert_eq!(meta_int(&s, "fts_compacted_rows"), Some(100));
        // Then every max(100, a quarter of what was held at the last merge) new messages.
        let mut merged_at = vec![100];
        for b in 10..100 {
            batch(&s, b * 10);
            let held = meta_int(&s, "fts_compacted_rows").unwrap();
            if merged_at.last() != Some(&held) {
                assert_eq!(s.search_index_segments().unwrap(), 1);
                merged_at.push(held);
            }
        }
        assert_eq!(merged_at, [100, 200, 300, 400, 500, 630, 790, 990]);
        fts_integrity_check(&s);
        let all = s.search("meeting", None, 10_000).unwrap();
        assert_eq!(
            all.len(),
            (0..1000)
                .filter(|i| upkeep_message(*i).text.contains("meeting"))
                .count()
        );
        let times: Vec<Millis> = all.iter().map(|h| h.message.time).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]));
    }

    #[test]
    fn a_batch_is_indexed_as_one_segment_even_out_of_time_order() {
        let (_d, mut s) = store();
        s.compact_min_rows = i64::MAX;
        // Each batch mixes live messages with older history (every fifth), so ids are not
        // ascending within it; before migration 0005 each message was a segment.
        for b in 0..3 {
            let msgs: Vec<Message> = (b * 100..b * 100 + 100).map(upkeep_message).collect();
            s.insert_messages(&msgs).unwrap();
            assert_eq!(s.search_index_segments().unwrap(), b + 1);
        }
        fts_integrity_check(&s);
        let found = s.search("kubernetes", None, 10_000).unwrap();
        assert_eq!(found.len(), (0..300).filter(|i| i % 13 == 0).count());
        let times: Vec<Millis> = found.iter().map(|h| h.message.time).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    }

    #[test]
    fn a_fragmented_tail_of_live_messages_is_merged_sooner() {
        let (_d, mut s) = store();
        s.compact_min_rows = 10;
        s.compact_max_segments = 8;
        for c in 1..=3 {
            s.upsert_conversation(&room(c, "r")).unwrap();
        }
        // 640 held and merged; from here the growth rule waits for 160 new messages, the
        // fragmentation rule for 40 and 8 segments.
        let msgs: Vec<Message> = (0..640).map(upkeep_message).collect();
        s.insert_messages(&msgs).unwrap();
        assert_eq!(meta_int(&s, "fts_compacted_rows"), Some(640));
        // Live messages, one transaction each.
        let mut i = 640;
        while meta_int(&s, "fts_compacted_rows") == Some(640) {
            s.insert_messages(&[upkeep_message(i)]).unwrap();
            i += 1;
            assert!(i < 800, "the fragmented tail was never merged");
        }
        assert!(i - 640 >= 40, "merged after {} messages", i - 640);
        assert_eq!(s.search_index_segments().unwrap(), 1);
        // The same tail in one transaction has one segment: only the growth rule merges it.
        let (_d2, mut s2) = store();
        s2.compact_min_rows = 10;
        s2.compact_max_segments = 8;
        s2.insert_messages(&msgs).unwrap();
        let tail: Vec<Message> = (640..790).map(upkeep_message).collect();
        s2.insert_messages(&tail).unwrap();
        assert_eq!(meta_int(&s2, "fts_compacted_rows"), Some(640));
        assert_eq!(s2.search_index_segments().unwrap(), 2);
    }

    /// A mute from before levels were synced becomes `nothing` at the upgrade and stays so,
    /// whatever a hello says, until it was pushed; then the server's level is the truth.
    #[test]
    fn a_pre_sync_mute_is_nothing_until_pushed_then_the_server_decides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("natter.db");
        {
            let s = Store::open(&path).unwrap();
            s.upsert_conversation(&room(1, "muted")).unwrap();
            s.upsert_conversation(&room(2, "loud")).unwrap();
            // Back to schema 6 (before levels) with conversation 1 muted, as a release before
            // synced levels left it.
            s.conn()
                .execute_batch(&format!(
                    "ALTER TABLE conversations DROP COLUMN level;
                         UPDATE conversations SET muted = 1 WHERE id = 1;
                         {}
                         {}
                         {}
                         PRAGMA user_version = 6;",
                    include_str!("../../tests/support/undo_client_0010.sql"),
                    include_str!("../../tests/support/undo_client_0009.sql"),
                    include_str!("../../tests/support/undo_client_0008.sql")
                ))
                .unwrap();
        }
        let s = Store::open(&path).unwrap();
        s.meta_set("me", "me").unwrap();
        let levels = |s: &Store| -> Vec<NotifyLevel> {
            let mut list = s.conversations("me").unwrap();
            list.sort_by_key(|c| c.id);
            list.iter().map(|c| c.level).collect()
        };
        assert_eq!(levels(&s), [NotifyLevel::Nothing, NotifyLevel::All]);
        assert_eq!(s.legacy_mutes().unwrap(), [1]);
        let from_server = Attention {
            dnd: Some(Dnd { until: None }),
            levels: vec![crate::protocol::ConvLevel {
                conv: 2,
                level: NotifyLevel::Mentions,
            }],
        };
        s.apply_attention(&[1, 2], &from_server).unwrap();
        assert_eq!(levels(&s), [NotifyLevel::Nothing, NotifyLevel::Mentions]);
        assert_eq!(s.dnd().unwrap(), Some(Dnd { until: None }));
        s.clear_legacy_mute(1).unwrap();
        assert!(s.legacy_mutes().unwrap().is_empty());
        s.apply_attention(&[1, 2], &Attention::default()).unwrap();
        assert_eq!(levels(&s), [NotifyLevel::All, NotifyLevel::All]);
        assert_eq!(s.dnd().unwrap(), None);
    }

    #[test]
    fn a_version_3_store_upgrades_to_a_merged_index_with_the_same_results() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("natter.db");
        let mut before = Vec::new();
        {
            // A store as the previous release left it: schema 3, one segment per transaction.
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            for sql in &MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
            for batch in 0..30 {
                conn.execute_batch("BEGIN").unwrap();
                for i in batch * 20..batch * 20 + 20 {
                    let m = upkeep_message(i);
                    conn.execute(
                        "INSERT INTO messages (id, conv, seq, server_id, sender, text, time,
                            client_msg_id) VALUES (?1, ?2, ?3, ?3, 'bob', ?4, ?5, ?6)",
                        params![
                            order_key(m.time),
                            m.conv,
                            m.seq,
                            m.text,
                            m.time,
                            m.client_msg_id.to_string()
                        ],
                    )
                    .unwrap();
                }
                conn.execute_batch("COMMIT").unwrap();
            }
            for q in UPKEEP_QUERIES {
                for conv in [None, Some(1), Some(3)] {
                    before.push(raw_search(&conn, q, conv, false, 10_000));
                }
            }
        }
        let s = Store::open(&path).unwrap();
        let version: i64 = s
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        assert_eq!(s.search_index_segments().unwrap(), 1);
        let time_index: i64 = s
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'messages_time'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(time_index, 0);
        assert_eq!(meta_int(&s, "fts_compacted_rows"), Some(600));
        let mut after = Vec::new();
        for q in UPKEEP_QUERIES {
            for conv in [None, Some(1), Some(3)] {
                after.push(
                    s.search(q, conv, 10_000)
                        .unwrap()
                        .into_iter()
                        .map(|h| (h.message.conv.unwrap(), h.message.seq.unwrap()))
                        .collect::<Vec<_>>(),
                );
            }
        }
        assert!(before.iter().all(|r| !r.is_empty()));
        assert_eq!(after, before);
        assert_eq!(s.integrity_check().unwrap(), "ok");
        fts_integrity_check(&s);
        // The triggers still index new messages.
        s.insert_messages(&[at(2, 9_999, 9_000_000, "区块链技术 again")])
            .unwrap();
        fts_integrity_check(&s);
        assert_eq!(
            s.search("区块链技术", Some(2), 1).unwrap()[0].message.seq,
            Some(9_999)
        );
    }

    #[test]
    fn older_history_stored_later_still_searches_newest_first() {
        let (_d, s) = store();
        s.upsert_conversation(&room(1, "general")).unwrap();
        s.upsert_conversation(&room(2, "random")).unwrap();
        // Live messages first, then a history page older than all of them, then one older still
        // in another conversation, then two in the same millisecond as a live one.
        s.insert_messages(&[
            at(1, 10, 10_000, "meeting 会议 ten"),
            at(1, 11, 11_000, "meeting 会议 eleven"),
        ])
        .unwrap();
        s.insert_messages(&[
            at(1, 1, 1_000, "meeting 会议 one"),
            at(1, 2, 2_000, "meeting 会议 two"),
        ])
        .unwrap();
        s.insert_messages(&[at(2, 1, 500, "meeting 会议 other")])
            .unwrap();
        s.insert_messages(&[
            at(2, 2, 10_000, "meeting 会议 same ms, first"),
            at(2, 3, 10_000, "meeting 会议 same ms, second"),
        ])
        .unwrap();
        let order = |q: &str, conv, limit| -> Vec<(ConvId, Seq)> {
            s.search(q, conv, limit)
                .unwrap()
                .into_iter()
                .map(|h| (h.message.conv.unwrap(), h.message.seq.unwrap()))
                .collect()
        };
        let all = [(1, 11), (2, 3), (2, 2), (1, 10), (1, 2), (1, 1), (2, 1)];
        // Trigram path, LIKE path, and both at once agree on time order.
        for q in ["meeting", "会议", "meeting 会议"] {
            assert_eq!(order(q, None, 10), all, "{q}");
            // The limit keeps the newest, not the latest stored.
            assert_eq!(order(q, None, 3), all[..3], "{q}");
            assert_eq!(order(q, Some(1), 3), [(1, 11), (1, 10), (1, 2)], "{q}");
            assert_eq!(order(q, Some(2), 10), [(2, 3), (2, 2), (2, 1)], "{q}");
            // Both ways of filtering by conversation (Store::search picks by its size).
            for ids_first in [false, true] {
                let got = raw_search(&s.conn(), q, Some(1), ids_first, 3);
                assert_eq!(got, [(1, 11), (1, 10), (1, 2)], "{q} {ids_first}");
            }
        }
        let times: Vec<Millis> = s
            .search("meeting", None, 10)
            .unwrap()
            .iter()
            .map(|h| h.message.time)
            .collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    }

    #[test]
    fn out_of_range_times_are_stored_and_searchable() {
        let (_d, s) = store();
        s.upsert_conversation(&room(1, "general")).unwrap();
        s.insert_messages(&[
            at(1, 1, i64::MIN, "edge early"),
            at(1, 2, -5, "edge negative"),
            at(1, 3, i64::MAX, "edge late"),
            at(1, 4, i64::MAX - 1, "edge late too"),
            at(1, 5, 7, "edge normal"),
        ])
        .unwrap();
        let hits = s.search("edge", None, 10).unwrap();
        assert_eq!(hits.len(), 5);
        // Clamped times sort among themselves by arrival.
        assert_eq!(seqs(hits), [4, 3, 5, 2, 1]);
        // A millisecond with more messages than slots still stores and finds every one.
        let bulk: Vec<Message> = (10..310).map(|seq| at(1, seq, 9, "bulk")).collect();
        assert_eq!(s.insert_messages(&bulk).unwrap().len(), 300);
        let found = seqs(s.search("bulk", None, 1000).unwrap());
        assert_eq!(found.len(), 300);
        assert_eq!(found[44..], (10..266).rev().collect::<Vec<_>>());
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn search_plans_read_ids_downwards_without_sorting() {
        let (_d, s) = store();
        let conn = s.conn();
        for terms in [
            &["meeting"][..],
            &["会议"],
            &["meeting", "会议"],
            &["meeting", "kubernetes"],
        ] {
            for (conv, ids_first) in [(None, false), (Some(3), false), (Some(3), true)] {
                let (sql, args) = search_sql(terms, conv, ids_first, 50);
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
                let plan: Vec<String> = stmt
                    .query_map(rusqlite::params_from_iter(args), |r| r.get(3))
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap();
                let plan = plan.join("\n");
                assert!(!plan.contains("TEMP B-TREE"), "{terms:?} {conv:?}:\n{plan}");
                // The FTS table drives (its rowid order serves the ORDER BY), and the only
                // list built is the conversation's ids.
                let long = terms.iter().any(|t| t.chars().count() >= 3);
                assert_eq!(
                    plan.starts_with("SCAN messages_fts VIRTUAL TABLE"),
                    long,
                    "{terms:?} {conv:?}:\n{plan}"
                );
                assert_eq!(
                    plan.matches("LIST SUBQUERY").count(),
                    usize::from(ids_first),
                    "{terms:?} {conv:?}:\n{plan}"
                );
            }
        }
    }

    #[test]
    fn migration_renumbers_arrival_ordered_ids_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("natter.db");
        {
            // A version-2 store whose ids follow arrival: history (older) stored after newer.
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..2] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 2).unwrap();
            let rows = [
                (1, 10, 10_000, "meeting ten"),
                (1, 11, 11_000, "meeting eleven"),
                (1, 1, 1_000, "meeting one"),
                (2, 1, 10_000, "meeting same ms"),
                (2, 2, -3, "meeting before 1970"),
            ];
            conn.execute_batch("BEGIN").unwrap();
            // More rows in one millisecond than an id has slots for.
            let bulk = (1..=300).map(|seq| (3, seq, 5_000, "bulk"));
            for (conv, seq, time, text) in rows.into_iter().chain(bulk) {
                conn.execute(
                    "INSERT INTO messages (conv, seq, server_id, sender, text, time,
                        client_msg_id) VALUES (?1, ?2, ?2, 'bob', ?3, ?4, ?5)",
                    params![conv, seq, text, time, Uuid::new_v4().to_string()],
                )
                .unwrap();
            }
            conn.execute_batch("COMMIT").unwrap();
        }
        let s = Store::open(&path).unwrap();
        let order = |conv| -> Vec<(ConvId, Seq)> {
            s.search("meeting", conv, 10)
                .unwrap()
                .into_iter()
                .map(|h| (h.message.conv.unwrap(), h.message.seq.unwrap()))
                .collect()
        };
        assert_eq!(order(None), [(1, 11), (2, 1), (1, 10), (1, 1), (2, 2)]);
        assert_eq!(order(Some(2)), [(2, 1), (2, 2)]);
        assert_eq!(s.search("会议", None, 10).unwrap().len(), 0);
        let bulk = s.search("bulk", None, 1000).unwrap();
        assert_eq!(bulk.len(), 300);
        // The first 256 keep their arrival order inside the millisecond, newest first.
        assert_eq!(seqs(bulk)[44..], (1..=256).rev().collect::<Vec<_>>());
        assert_eq!(s.integrity_check().unwrap(), "ok");
        // The FTS index matches its content table after the rebuild.
        s.conn()
            .execute(
                "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)",
                [],
            )
            .unwrap();
        // New messages, older and newer, slot in by time; the triggers are back.
        s.insert_messages(&[
            at(1, 2, 2_000, "meeting two"),
            at(1, 12, 12_000, "meeting twelve"),
        ])
        .unwrap();
        assert_eq!(order(Some(1)), [(1, 12), (1, 11), (1, 10), (1, 2), (1, 1)]);
        assert_eq!(s.page(1, None, 10).unwrap().len(), 5);
    }

    #[test]
    fn snippets_cut_long_text_around_the_match() {
        let text = format!("{}needle{}", "a".repeat(100), "b".repeat(100));
        let s = snippet(&text, "NEEDLE");
        assert!(s.starts_with('…') && s.ends_with('…') && s.contains("needle"));
        assert!(s.chars().count() < 80);
        assert_eq!(snippet("短", "短"), "短");
    }

    fn saved_session(name: &str, device: Option<&str>) -> SavedSession {
        SavedSession {
            server: "http://x".into(),
            session: Session {
                token: "t".into(),
                user: User {
                    username: name.into(),
                    display_name: name.into(),
                    avatar: "a".into(),
                    deleted: false,
                    avatar_image: None,
                    admin: false,
                },
                expires_at: 0,
                device_token: device.map(str::to_string),
            },
        }
    }

    #[test]
    fn a_session_for_another_user_wipes_the_profile() {
        let (_d, s) = store();
        let saved = |name: &str| saved_session(name, None);
        s.save_session(&saved("alice")).unwrap();
        s.insert_messages(&[msg(1, 1, "bob", "secret")]).unwrap();
        s.save_session(&saved("alice")).unwrap();
        assert_eq!(s.message_count(1).unwrap(), 1);
        s.save_session(&saved("carol")).unwrap();
        assert_eq!(s.message_count(1).unwrap(), 0);
        assert_eq!(s.session().unwrap().unwrap().session.user.username, "carol");
        s.clear_session().unwrap();
        assert!(s.session().unwrap().is_none());
    }

    /// The device token outlives sign-out (it is what lets this device sign in again when the
    /// server's sign-in limits hold strangers back); a session without one keeps the old one.
    #[test]
    fn the_device_token_survives_sign_out() {
        let (_d, s) = store();
        let saved = |device: Option<&str>| saved_session("alice", device);
        assert_eq!(s.device_token().unwrap(), None);
        s.save_session(&saved(Some("dev-1"))).unwrap();
        s.clear_session().unwrap();
        assert_eq!(s.device_token().unwrap().as_deref(), Some("dev-1"));
        s.save_session(&saved(None)).unwrap();
        assert_eq!(s.device_token().unwrap().as_deref(), Some("dev-1"));
    }
}
