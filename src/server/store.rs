//! Server-side storage: one SQLite database (WAL) holding users, tokens, conversations, members
//! and messages.
//!
//! Writes go through a single writer thread that practises group commit: it takes every write
//! queued at that moment, runs each in its own savepoint inside one transaction, commits with
//! `synchronous=FULL` (so a commit survives a crash of the process or the machine), and only then
//! hands the outcomes, in commit order, to the hook the hub installed. That hook applies them to
//! memory and sends acks and pushes, which is why "ack means durable" and why every member sees
//! the same order: seq is assigned inside the transaction and fan-out happens on this one thread.
//!
//! Reads (history, replay, token checks, unread counts) use a small pool of separate read
//! connections, which WAL lets run alongside the writer.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::dbfile::{self, Damage};
use crate::names::Name;
use crate::protocol::{limits, ConvId, ConvKind, ErrorCode, Message, Millis, Seq, Unread, User};

use super::auth::TokenHash;

/// A user's row id.
pub type UserId = i64;

/// Numbered migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_unread_by_sender.sql"),
    include_str!("migrations/0003_name_keys.sql"),
    include_str!("migrations/0004_devices.sql"),
];

/// The migration that adds `fold_key` and `skeleton`, which [`fill_name_keys`] fills.
const NAME_KEYS_VERSION: usize = 3;
/// Written into the data directory once it holds a database: a later start that finds the
/// database missing or empty knows data was lost rather than never there.
const MARKER_FILE: &str = "natter.initialized";
const MARKER_TEXT: &str = "This directory holds a Natter server database (natter.db). \
natter-server refuses to start when that file is missing or empty while this marker exists, \
unless started with --init.\n";

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;

/// Errors from the store. `Rejected` carries a protocol error the client should see verbatim.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A SQLite failure, kept whole (shared, because one failed commit fails every write of its
    /// batch) so its code still says what went wrong: a full disk, a damaged file.
    #[error("database error: {0}")]
    Db(Arc<rusqlite::Error>),
    #[error("{1}")]
    Rejected(ErrorCode, String),
    #[error("the store is shut down")]
    Closed,
    #[error("cannot prepare data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error(
        "the database {path} is damaged ({damage}); refusing to start on it. Restore it from a \
         backup, or move it aside and start with --init to begin with an empty one"
    )]
    Corrupt { path: PathBuf, damage: Damage },
    #[error(
        "the database {path} is missing or empty, but {marker} shows this data directory held \
         one: refusing to start afresh over lost data. Restore the database from a backup, or \
         start with --init to begin with an empty one"
    )]
    Lost { path: PathBuf, marker: PathBuf },
    #[error("a blocking task failed: {0}")]
    Join(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(Arc::new(e))
    }
}

impl StoreError {
    fn rejected(code: ErrorCode, message: impl Into<String>) -> Self {
        StoreError::Rejected(code, message.into())
    }

    /// The protocol error code and message a client sees for this error.
    pub fn to_client(&self) -> (ErrorCode, String) {
        match self {
            StoreError::Rejected(code, message) => (*code, message.clone()),
            StoreError::Db(e) if dbfile::is_full(e) => {
                tracing::error!(error = %e, "storage full: a write was refused; free disk space");
                (
                    ErrorCode::StorageFull,
                    "the server's storage is full; nothing was stored, try again later".into(),
                )
            }
            other => {
                tracing::error!(error = %other, "store failure");
                (ErrorCode::Internal, "internal server error".into())
            }
        }
    }
}

/// A user as loaded into memory.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: UserId,
    pub user: User,
}

/// A conversation as loaded into memory.
#[derive(Debug, Clone)]
pub struct ConvRow {
    pub id: ConvId,
    pub kind: ConvKind,
    /// Room name; empty for a DM.
    pub name: String,
    pub last_seq: Seq,
    /// Members with their read markers.
    pub members: Vec<(UserId, Seq)>,
}

/// Everything the hub keeps in memory, read once at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub users: Vec<UserRow>,
    pub convs: Vec<ConvRow>,
}

/// A write request for the writer thread.
#[derive(Debug)]
pub enum WriteOp {
    Register {
        username: String,
        display_name: String,
        avatar: String,
        password_hash: String,
        token_hash: TokenHash,
        expires_at: Millis,
        /// The hash of the device token handed out with this first session.
        device_hash: TokenHash,
    },
    Login {
        user: UserId,
        token_hash: TokenHash,
        expires_at: Millis,
        /// A new device token's hash to remember (None when the device was already known).
        device_hash: Option<TokenHash>,
    },
    Logout {
        token_hash: TokenHash,
    },
    CreateRoom {
        user: UserId,
        name: String,
    },
    Join {
        user: UserId,
        room: String,
    },
    Leave {
        user: UserId,
        conv: ConvId,
    },
    Send {
        user: UserId,
        conv: Option<ConvId>,
        to: Option<String>,
        client_msg_id: Uuid,
        text: String,
    },
    Read {
        user: UserId,
        conv: ConvId,
        seq: Seq,
    },
}

/// What a committed write did.
#[derive(Debug, Clone)]
pub enum WriteOutcome {
    Registered(UserRow),
    LoggedIn,
    LoggedOut {
        token_hash: TokenHash,
    },
    RoomCreated {
        user: UserId,
        conv: ConvId,
        name: String,
    },
    Joined {
        user: UserId,
        conv: ConvId,
        newly: bool,
    },
    Left {
        user: UserId,
        conv: ConvId,
    },
    /// `fresh` is false when this was a retry that returned the original message.
    Sent {
        message: Message,
        fresh: bool,
        new_dm: Option<(ConvId, UserId, UserId)>,
    },
    ReadMoved {
        user: UserId,
        conv: ConvId,
        seq: Seq,
        moved: bool,
    },
}

/// Who is waiting for a write: an HTTP handler (through a oneshot) or a socket request, whose
/// answer the hub pushes into that connection's queue in commit order.
#[derive(Debug)]
pub enum Origin {
    Reply(oneshot::Sender<Result<WriteOutcome, StoreError>>),
    Socket { conn: u64, req: u64 },
}

/// Called on the writer thread after each commit with the outcomes, in commit order.
pub type CommitHook = Box<dyn FnMut(Vec<(Origin, Result<WriteOutcome, StoreError>)>) + Send>;

struct Job {
    op: WriteOp,
    origin: Origin,
}

/// The server store: a writer thread and a pool of read connections.
pub struct Store {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Current time in ms since the epoch.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

fn open_conn(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // FULL: in WAL mode NORMAL may lose the last commits on power loss, and an ack promises
    // the message is on disk.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
    )?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if i + 1 == NAME_KEYS_VERSION {
            fill_name_keys(&tx)?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied migration");
    }
    Ok(())
}

/// Computes `fold_key` and `skeleton` for the users and rooms stored before migration 3. Names
/// that now collide are all kept (their owners keep signing in: a lookup prefers the exact
/// spelling); the log names them.
fn fill_name_keys(tx: &Connection) -> Result<(), rusqlite::Error> {
    for (select, update) in [
        (
            "SELECT id, username FROM users",
            "UPDATE users SET fold_key = ?2, skeleton = ?3 WHERE id = ?1",
        ),
        (
            "SELECT id, name FROM conversations WHERE kind = 'room'",
            "UPDATE conversations SET fold_key = ?2, skeleton = ?3 WHERE id = ?1",
        ),
    ] {
        let rows: Vec<(i64, String)> = tx
            .prepare(select)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut update = tx.prepare(update)?;
        for (id, name) in rows {
            let keys = Name::of_stored(&name);
            update.execute(params![id, keys.key, keys.skeleton])?;
        }
    }
    let mut clashes = tx.prepare(
        "SELECT group_concat(username, ', ') FROM users GROUP BY fold_key HAVING count(*) > 1",
    )?;
    for names in clashes.query_map([], |r| r.get::<_, String>(0))? {
        tracing::warn!(
            users = %names?,
            "these accounts are one name under the Unicode name rules; all are kept, and signing \
             in with that name reaches the exact spelling, else the oldest"
        );
    }
    Ok(())
}

/// The users or the rooms, for name lookups and uniqueness checks.
#[derive(Debug, Clone, Copy)]
enum Names {
    Users,
    Rooms,
}

impl Names {
    /// ?1 the key, ?2 the spelling as typed, which wins among rows from before migration 3
    /// that share a key; else the oldest.
    fn find_sql(self) -> &'static str {
        match self {
            Names::Users => {
                "SELECT id FROM users WHERE fold_key = ?1 ORDER BY username = ?2 DESC, id LIMIT 1"
            }
            Names::Rooms => {
                "SELECT id FROM conversations WHERE kind = 'room' AND fold_key = ?1 \
                 ORDER BY name = ?2 DESC, id LIMIT 1"
            }
        }
    }

    /// An existing name with the key ?1 or the skeleton ?2, and whether the key is equal.
    fn clash_sql(self) -> &'static str {
        match self {
            Names::Users => {
                "SELECT username, fold_key = ?1 FROM users WHERE fold_key = ?1 OR skeleton = ?2 \
                 ORDER BY fold_key = ?1 DESC LIMIT 1"
            }
            Names::Rooms => {
                "SELECT name, fold_key = ?1 FROM conversations \
                 WHERE kind = 'room' AND (fold_key = ?1 OR skeleton = ?2) \
                 ORDER BY fold_key = ?1 DESC LIMIT 1"
            }
        }
    }
}

/// The id of the user or room called `raw` (any spelling: see [`crate::names::key`]).
fn find_name(conn: &Connection, names: Names, raw: &str) -> Result<Option<i64>, rusqlite::Error> {
    conn.query_row(
        names.find_sql(),
        params![crate::names::key(raw), raw],
        |r| r.get(0),
    )
    .optional()
}

/// `conflict` when `name` is an existing name or looks like one (same skeleton).
fn refuse_clash(tx: &Connection, names: Names, name: &Name) -> Result<(), StoreError> {
    let clash: Option<(String, bool)> = tx
        .query_row(names.clash_sql(), params![name.key, name.skeleton], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let message = match (names, clash) {
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

fn load_snapshot(conn: &Connection) -> Result<Snapshot, rusqlite::Error> {
    let mut users = Vec::new();
    let mut stmt = conn.prepare("SELECT id, username, display_name, avatar FROM users")?;
    let rows = stmt.query_map([], |r| {
        Ok(UserRow {
            id: r.get(0)?,
            user: User {
                username: r.get(1)?,
                display_name: r.get(2)?,
                avatar: r.get(3)?,
            },
        })
    })?;
    for row in rows {
        users.push(row?);
    }
    let mut convs = Vec::new();
    let mut stmt =
        conn.prepare("SELECT id, kind, coalesce(name, ''), last_seq FROM conversations")?;
    let rows = stmt.query_map([], |r| {
        let kind: String = r.get(1)?;
        Ok(ConvRow {
            id: r.get(0)?,
            kind: if kind == "dm" {
                ConvKind::Dm
            } else {
                ConvKind::Room
            },
            name: r.get(2)?,
            last_seq: r.get(3)?,
            members: Vec::new(),
        })
    })?;
    for row in rows {
        convs.push(row?);
    }
    let mut index: std::collections::HashMap<ConvId, usize> =
        convs.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
    let mut stmt = conn.prepare("SELECT conv_id, user_id, last_read FROM members")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?)))?;
    for row in rows {
        let (conv, user, read) = row?;
        if let Some(i) = index.get_mut(&conv) {
            convs[*i].members.push((user, read));
        }
    }
    Ok(Snapshot { users, convs })
}

impl Store {
    /// Open `data_dir/natter.db`, check it, run migrations and read the snapshot. A new data
    /// directory gets a new database; one whose marker shows a database existed gets one only when
    /// `init` is set. The directory and the database files are made private (0700/0600).
    pub fn open(data_dir: &Path, init: bool) -> Result<(Store, Snapshot), StoreError> {
        let dir_err = |e| StoreError::DataDir(data_dir.to_path_buf(), e);
        dbfile::private_dir(data_dir).map_err(dir_err)?;
        let path = data_dir.join("natter.db");
        let marker = data_dir.join(MARKER_FILE);
        let empty = std::fs::metadata(&path).map_or(true, |m| m.len() == 0);
        if empty && marker.exists() {
            if !init {
                return Err(StoreError::Lost { path, marker });
            }
            tracing::warn!(path = %path.display(), "--init: starting with an empty database");
        }
        dbfile::prepare(&path).map_err(dir_err)?;
        let damaged = |damage| StoreError::Corrupt {
            path: path.clone(),
            damage,
        };
        let mut conn = match open_conn(&path) {
            Err(e) if dbfile::is_corrupt(&e) => return Err(damaged(Damage(e.to_string()))),
            other => other?,
        };
        dbfile::quick_check(&conn)?.map_err(damaged)?;
        migrate(&mut conn)?;
        let snapshot = load_snapshot(&conn)?;
        if !marker.exists() {
            std::fs::write(&marker, MARKER_TEXT).map_err(dir_err)?;
        }
        let store = Store {
            path,
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(None),
            thread: Mutex::new(None),
        };
        Ok((store, snapshot))
    }

    /// Start the writer thread. `hook` sees every commit's outcomes in order. `max_pages` caps
    /// the database's size (SQLite `max_page_count`; see [`super::ServerConfig::max_db_pages`]).
    pub fn start_writer(
        &self,
        mut hook: CommitHook,
        max_pages: Option<u32>,
    ) -> Result<(), StoreError> {
        let mut conn = open_conn(&self.path)?;
        if let Some(pages) = max_pages {
            conn.pragma_update(None, "max_page_count", pages)?;
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("natter-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                    let results = run_batch(&mut conn, &jobs);
                    let batch = jobs.into_iter().map(|j| j.origin).zip(results).collect();
                    // A bug in the hook must not kill the only writer (every later write would
                    // fail); the batch is committed either way.
                    let applied =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(batch)));
                    if applied.is_err() {
                        tracing::error!("commit hook panicked; continuing");
                    }
                }
                tracing::debug!("writer thread finished");
            })
            .map_err(|e| StoreError::Join(e.to_string()))?;
        *self.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        Ok(())
    }

    /// Queue a write. Its outcome reaches the commit hook (and through it the origin).
    pub fn submit(&self, op: WriteOp, origin: Origin) -> Result<(), StoreError> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let sender = guard.as_ref().ok_or(StoreError::Closed)?;
        sender
            .send(Job { op, origin })
            .map_err(|_| StoreError::Closed)
    }

    /// Queue a write and wait for its outcome (for HTTP handlers).
    pub async fn write(&self, op: WriteOp) -> Result<WriteOutcome, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.submit(op, Origin::Reply(tx))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stop accepting writes, let the writer commit everything already queued, and wait for it.
    pub fn shutdown(&self) {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Run `f` on a pooled read connection on the blocking pool.
    pub async fn read<T, F>(self: &std::sync::Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = store
                .readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_conn(&store.path)?,
            };
            let result = f(&conn).map_err(StoreError::from);
            let mut pool = store.readers.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < 8 {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
    }
}

/// The user id and expiry of a live (unrevoked, unexpired) token.
pub fn token_user(
    conn: &Connection,
    hash: &TokenHash,
) -> Result<Option<(UserId, Millis)>, rusqlite::Error> {
    conn.query_row(
        "SELECT user_id, expires_at FROM tokens WHERE hash = ?1 AND revoked = 0 AND expires_at > ?2",
        params![&hash[..], now_ms()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Device tokens remembered per user; signing in on more devices forgets the oldest.
const MAX_DEVICES_PER_USER: i64 = 32;

/// Whether `hash` is a device token given to `user`.
pub fn is_known_device(
    conn: &Connection,
    user: UserId,
    hash: &TokenHash,
) -> Result<bool, rusqlite::Error> {
    conn.query_row(
        "SELECT 1 FROM devices WHERE hash = ?1 AND user_id = ?2",
        params![&hash[..], user],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
}

fn add_device(
    tx: &Connection,
    user: UserId,
    hash: &TokenHash,
    now: Millis,
) -> Result<(), rusqlite::Error> {
    tx.execute(
        "INSERT OR IGNORE INTO devices (hash, user_id, created_at) VALUES (?1, ?2, ?3)",
        params![&hash[..], user, now],
    )?;
    tx.execute(
        "DELETE FROM devices WHERE user_id = ?1 AND hash NOT IN \
         (SELECT hash FROM devices WHERE user_id = ?1 ORDER BY created_at DESC LIMIT ?2)",
        params![user, MAX_DEVICES_PER_USER],
    )?;
    Ok(())
}

/// The id and password hash of a user by name, in any spelling of it.
pub fn credentials(
    conn: &Connection,
    username: &str,
) -> Result<Option<(UserId, String)>, rusqlite::Error> {
    let Some(id) = find_name(conn, Names::Users, username)? else {
        return Ok(None);
    };
    conn.query_row(
        "SELECT id, password_hash FROM users WHERE id = ?1",
        params![id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

const MESSAGE_COLUMNS: &str = "m.id, m.conv_id, m.seq, u.username, m.text, m.time, m.client_msg_id";

fn message_from_row(r: &rusqlite::Row<'_>) -> Result<Message, rusqlite::Error> {
    let cmid: String = r.get(6)?;
    Ok(Message {
        id: r.get(0)?,
        conv: r.get(1)?,
        seq: r.get(2)?,
        sender: r.get(3)?,
        text: r.get(4)?,
        time: r.get(5)?,
        client_msg_id: Uuid::parse_str(&cmid).unwrap_or_default(),
    })
}

/// A page of history, ascending by seq, and whether more lie beyond it in the paging direction.
/// `after` pages forward; otherwise the page ends just before `before` (or at the newest).
pub fn history(
    conn: &Connection,
    conv: ConvId,
    before: Option<Seq>,
    after: Option<Seq>,
    limit: u32,
) -> Result<(Vec<Message>, bool), rusqlite::Error> {
    let limit = limit.clamp(1, limits::MAX_PAGE) as i64;
    let mut messages = if let Some(after) = after {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id \
             WHERE m.conv_id = ?1 AND m.seq > ?2 ORDER BY m.seq ASC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![conv, after, limit + 1], message_from_row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    } else {
        let before = before.unwrap_or(i64::MAX);
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id \
             WHERE m.conv_id = ?1 AND m.seq < ?2 ORDER BY m.seq DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![conv, before, limit + 1], message_from_row)?;
        let mut page = rows.collect::<Result<Vec<_>, _>>()?;
        page.reverse();
        page
    };
    let has_more = messages.len() as i64 > limit;
    if has_more {
        if after.is_some() {
            messages.pop();
        } else {
            messages.remove(0);
        }
    }
    Ok((messages, has_more))
}

/// Unread counts of every conversation `user` is a member of: messages after the read marker
/// that someone else sent. Seqs are gapless and messages are never deleted, so that is the
/// seqs after the marker less the user's own among them, which `messages_by_sender` counts
/// without reading anyone else's messages: a connect costs the same however far behind it is.
pub fn unread(conn: &Connection, user: UserId) -> Result<Vec<Unread>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT mb.conv_id, mb.last_read, \
           max(0, c.last_seq - mb.last_read) - \
           (SELECT count(*) FROM messages m WHERE m.conv_id = mb.conv_id \
              AND m.sender_id = mb.user_id AND m.seq > mb.last_read) \
         FROM members mb JOIN conversations c ON c.id = mb.conv_id \
         WHERE mb.user_id = ?1 ORDER BY mb.conv_id",
    )?;
    let rows = stmt.query_map(params![user], |r| {
        Ok(Unread {
            conv: r.get(0)?,
            last_read: r.get(1)?,
            count: r.get::<_, i64>(2)? as u32,
        })
    })?;
    rows.collect()
}

fn run_batch(conn: &mut Connection, jobs: &[Job]) -> Vec<Result<WriteOutcome, StoreError>> {
    let mut results = Vec::with_capacity(jobs.len());
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "cannot begin transaction");
            return fail_all(jobs, Arc::new(e));
        }
    };
    for job in jobs {
        let result = match tx.savepoint() {
            Ok(sp) => {
                let r = apply(&sp, &job.op);
                if r.is_ok() {
                    match sp.commit() {
                        Ok(()) => r,
                        Err(e) => Err(e.into()),
                    }
                } else {
                    // Dropping the savepoint rolls back only this write.
                    r
                }
            }
            Err(e) => Err(e.into()),
        };
        // On some errors (a full disk, I/O) SQLite rolls the whole transaction back by itself:
        // every write of the batch is undone, whatever it returned, and the cause is that error
        // (not the "no transaction is active" a commit would then report).
        if tx.is_autocommit() {
            let cause = match result {
                Err(StoreError::Db(e)) => e,
                other => Arc::new(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                    Some(format!("the transaction was rolled back ({other:?})")),
                )),
            };
            tracing::error!(error = %cause, "SQLite rolled the batch back; every write of it failed");
            return fail_all(jobs, cause);
        }
        results.push(result);
    }
    if let Err(e) = tx.commit() {
        tracing::error!(error = %e, "commit failed; the whole batch is reported as failed");
        return fail_all(jobs, Arc::new(e));
    }
    results
}

/// The same failure, kept whole, for every write of a batch.
fn fail_all(jobs: &[Job], e: Arc<rusqlite::Error>) -> Vec<Result<WriteOutcome, StoreError>> {
    jobs.iter()
        .map(|_| Err(StoreError::Db(e.clone())))
        .collect()
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// The kind of a conversation, or None when it does not exist.
fn conv_kind(tx: &Connection, conv: ConvId) -> Result<Option<(ConvKind, String)>, rusqlite::Error> {
    tx.query_row(
        "SELECT kind, coalesce(name_key, '') FROM conversations WHERE id = ?1",
        params![conv],
        |r| {
            let kind: String = r.get(0)?;
            Ok((
                if kind == "dm" {
                    ConvKind::Dm
                } else {
                    ConvKind::Room
                },
                r.get(1)?,
            ))
        },
    )
    .optional()
}

fn is_member(tx: &Connection, conv: ConvId, user: UserId) -> Result<bool, rusqlite::Error> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM members WHERE conv_id = ?1 AND user_id = ?2",
            params![conv, user],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The error for acting in a conversation the user is not in. A DM that is not yours answers
/// exactly like one that does not exist, so nobody learns that two others talk.
fn not_member(kind: Option<ConvKind>) -> StoreError {
    match kind {
        Some(ConvKind::Room) => {
            StoreError::rejected(ErrorCode::Forbidden, "not a member of this room")
        }
        _ => StoreError::rejected(ErrorCode::NotFound, "no such conversation"),
    }
}

fn apply(tx: &Connection, op: &WriteOp) -> Result<WriteOutcome, StoreError> {
    let now = now_ms();
    match op {
        WriteOp::Register {
            username,
            display_name,
            avatar,
            password_hash,
            token_hash,
            expires_at,
            device_hash,
        } => {
            let name = Name::of_stored(username);
            refuse_clash(tx, Names::Users, &name)?;
            let inserted = tx.execute(
                "INSERT INTO users (username, name_key, fold_key, skeleton, display_name, avatar, \
                 password_hash, created_at) VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    username,
                    name.key,
                    name.skeleton,
                    display_name,
                    avatar,
                    password_hash,
                    now
                ],
            );
            match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::rejected(
                        ErrorCode::Conflict,
                        "username is taken",
                    ))
                }
                other => other?,
            };
            let id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO members (conv_id, user_id) \
                 SELECT id, ?1 FROM conversations WHERE kind = 'room' AND name_key = ?2",
                params![id, limits::DEFAULT_ROOM],
            )?;
            tx.execute(
                "INSERT INTO tokens (hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![&token_hash[..], id, now, expires_at],
            )?;
            add_device(tx, id, device_hash, now)?;
            Ok(WriteOutcome::Registered(UserRow {
                id,
                user: User {
                    username: username.clone(),
                    display_name: display_name.clone(),
                    avatar: avatar.clone(),
                },
            }))
        }
        WriteOp::Login {
            user,
            token_hash,
            expires_at,
            device_hash,
        } => {
            tx.execute(
                "INSERT INTO tokens (hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![&token_hash[..], user, now, expires_at],
            )?;
            if let Some(device_hash) = device_hash {
                add_device(tx, *user, device_hash, now)?;
            }
            Ok(WriteOutcome::LoggedIn)
        }
        WriteOp::Logout { token_hash } => {
            tx.execute(
                "UPDATE tokens SET revoked = 1 WHERE hash = ?1",
                params![&token_hash[..]],
            )?;
            Ok(WriteOutcome::LoggedOut {
                token_hash: *token_hash,
            })
        }
        WriteOp::CreateRoom { user, name } => {
            let keys = Name::of_stored(name);
            refuse_clash(tx, Names::Rooms, &keys)?;
            let inserted = tx.execute(
                "INSERT INTO conversations (kind, name, name_key, fold_key, skeleton, created_at) \
                 VALUES ('room', ?1, ?2, ?2, ?3, ?4)",
                params![name, keys.key, keys.skeleton, now],
            );
            match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::rejected(
                        ErrorCode::Conflict,
                        "a room with that name exists",
                    ))
                }
                other => other?,
            };
            let conv = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO members (conv_id, user_id) VALUES (?1, ?2)",
                params![conv, user],
            )?;
            Ok(WriteOutcome::RoomCreated {
                user: *user,
                conv,
                name: name.clone(),
            })
        }
        WriteOp::Join { user, room } => {
            let conv = find_name(tx, Names::Rooms, room)?;
            let conv =
                conv.ok_or_else(|| StoreError::rejected(ErrorCode::NotFound, "no such room"))?;
            let n = tx.execute(
                "INSERT OR IGNORE INTO members (conv_id, user_id) VALUES (?1, ?2)",
                params![conv, user],
            )?;
            Ok(WriteOutcome::Joined {
                user: *user,
                conv,
                newly: n > 0,
            })
        }
        WriteOp::Leave { user, conv } => {
            let kind = conv_kind(tx, *conv)?;
            match &kind {
                None => return Err(not_member(None)),
                Some((ConvKind::Dm, _)) if is_member(tx, *conv, *user)? => {
                    return Err(StoreError::rejected(
                        ErrorCode::Forbidden,
                        "a direct message cannot be left",
                    ))
                }
                Some((ConvKind::Room, key)) if key == limits::DEFAULT_ROOM => {
                    return Err(StoreError::rejected(
                        ErrorCode::Forbidden,
                        "the default room cannot be left",
                    ))
                }
                _ => {}
            }
            let n = tx.execute(
                "DELETE FROM members WHERE conv_id = ?1 AND user_id = ?2",
                params![conv, user],
            )?;
            if n == 0 {
                return Err(not_member(kind.map(|k| k.0)));
            }
            Ok(WriteOutcome::Left {
                user: *user,
                conv: *conv,
            })
        }
        WriteOp::Send {
            user,
            conv,
            to,
            client_msg_id,
            text,
        } => {
            let cmid = client_msg_id.to_string();
            let existing = tx
                .query_row(
                    &format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id \
                         WHERE m.sender_id = ?1 AND m.client_msg_id = ?2"
                    ),
                    params![user, cmid],
                    message_from_row,
                )
                .optional()?;
            if let Some(message) = existing {
                return Ok(WriteOutcome::Sent {
                    message,
                    fresh: false,
                    new_dm: None,
                });
            }
            let mut new_dm = None;
            let conv = match (conv, to) {
                (Some(conv), None) => {
                    if !is_member(tx, *conv, *user)? {
                        return Err(not_member(conv_kind(tx, *conv)?.map(|k| k.0)));
                    }
                    *conv
                }
                (None, Some(to)) => {
                    let peer = find_name(tx, Names::Users, to)?;
                    let peer = peer
                        .ok_or_else(|| StoreError::rejected(ErrorCode::NotFound, "no such user"))?;
                    if peer == *user {
                        return Err(StoreError::rejected(
                            ErrorCode::BadRequest,
                            "cannot send a direct message to yourself",
                        ));
                    }
                    let (lo, hi) = if peer < *user {
                        (peer, *user)
                    } else {
                        (*user, peer)
                    };
                    let dm_key = format!("{lo}:{hi}");
                    let found: Option<ConvId> = tx
                        .query_row(
                            "SELECT id FROM conversations WHERE dm_key = ?1",
                            params![dm_key],
                            |r| r.get(0),
                        )
                        .optional()?;
                    match found {
                        Some(id) => id,
                        None => {
                            tx.execute(
                                "INSERT INTO conversations (kind, dm_key, created_at) VALUES ('dm', ?1, ?2)",
                                params![dm_key, now],
                            )?;
                            let id = tx.last_insert_rowid();
                            tx.execute(
                                "INSERT INTO members (conv_id, user_id) VALUES (?1, ?2), (?1, ?3)",
                                params![id, lo, hi],
                            )?;
                            new_dm = Some((id, lo, hi));
                            id
                        }
                    }
                }
                _ => {
                    return Err(StoreError::rejected(
                        ErrorCode::BadRequest,
                        "send needs exactly one of `conv` and `to`",
                    ))
                }
            };
            let seq: Seq = tx.query_row(
                "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
                params![conv],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO messages (conv_id, seq, sender_id, text, time, client_msg_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![conv, seq, user, text, now, cmid],
            )?;
            let message = Message {
                id: tx.last_insert_rowid(),
                conv,
                seq,
                sender: tx.query_row(
                    "SELECT username FROM users WHERE id = ?1",
                    params![user],
                    |r| r.get(0),
                )?,
                text: text.clone(),
                time: now,
                client_msg_id: *client_msg_id,
            };
            Ok(WriteOutcome::Sent {
                message,
                fresh: true,
                new_dm,
            })
        }
        WriteOp::Read { user, conv, seq } => {
            let row: Option<(Seq, Seq)> = tx
                .query_row(
                    "SELECT mb.last_read, c.last_seq FROM members mb JOIN conversations c ON c.id = mb.conv_id \
                     WHERE mb.conv_id = ?1 AND mb.user_id = ?2",
                    params![conv, user],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((last_read, last_seq)) = row else {
                return Err(not_member(conv_kind(tx, *conv)?.map(|k| k.0)));
            };
            // Markers only move forward and never past the newest message.
            let target = (*seq).clamp(0, last_seq);
            if target > last_read {
                tx.execute(
                    "UPDATE members SET last_read = ?1 WHERE conv_id = ?2 AND user_id = ?3",
                    params![target, conv, user],
                )?;
            }
            Ok(WriteOutcome::ReadMoved {
                user: *user,
                conv: *conv,
                seq: target.max(last_read),
                moved: target > last_read,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose hook only answers HTTP-style origins (no hub).
    fn open(dir: &Path) -> std::sync::Arc<Store> {
        let (store, _) = Store::open(dir, false).unwrap();
        store
            .start_writer(
                Box::new(|batch| {
                    for (origin, result) in batch {
                        if let Origin::Reply(tx) = origin {
                            let _ = tx.send(result);
                        }
                    }
                }),
                None,
            )
            .unwrap();
        std::sync::Arc::new(store)
    }

    async fn register(store: &Store, name: &str) -> UserId {
        let op = WriteOp::Register {
            username: name.into(),
            display_name: name.into(),
            avatar: "owl".into(),
            password_hash: "x".into(),
            token_hash: crate::server::auth::new_token().1,
            expires_at: now_ms() + 1_000,
            device_hash: crate::server::auth::new_token().1,
        };
        match store.write(op).await.unwrap() {
            WriteOutcome::Registered(row) => row.id,
            other => panic!("{other:?}"),
        }
    }

    fn send(user: UserId, conv: Option<ConvId>, to: Option<&str>, cmid: Uuid) -> WriteOp {
        WriteOp::Send {
            user,
            conv,
            to: to.map(str::to_string),
            client_msg_id: cmid,
            text: "t".into(),
        }
    }

    #[tokio::test]
    async fn seqs_are_gapless_and_retries_return_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let alice = register(&store, "alice").await;
        let general = 1;
        let mut seqs = Vec::new();
        for _ in 0..5 {
            match store
                .write(send(alice, Some(general), None, Uuid::new_v4()))
                .await
                .unwrap()
            {
                WriteOutcome::Sent {
                    message,
                    fresh: true,
                    ..
                } => seqs.push(message.seq),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        let cmid = Uuid::new_v4();
        let first = store
            .write(send(alice, Some(general), None, cmid))
            .await
            .unwrap();
        let again = store
            .write(send(alice, Some(general), None, cmid))
            .await
            .unwrap();
        let (
            WriteOutcome::Sent { message: a, .. },
            WriteOutcome::Sent {
                message: b, fresh, ..
            },
        ) = (first, again)
        else {
            panic!()
        };
        assert_eq!(a, b);
        assert!(!fresh);
        let (page, more) = store
            .read(move |c| history(c, general, None, None, 200))
            .await
            .unwrap();
        assert_eq!(page.len(), 6);
        assert!(!more);
    }

    /// Unread = messages after the marker that others sent, with the senders interleaved and
    /// the markers part way, in a room and in a DM; and the count reads only the member's own
    /// messages (the query plan uses `messages_by_sender`), whatever the backlog.
    #[tokio::test]
    async fn unread_counts_others_messages_after_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let alice = register(&store, "alice").await;
        let bob = register(&store, "bob").await;
        let general = 1;
        // seq 1 a, 2 b, 3 a, 4 b, 5 a, 6 a
        for who in [alice, bob, alice, bob, alice, alice] {
            store
                .write(send(who, Some(general), None, Uuid::new_v4()))
                .await
                .unwrap();
        }
        let dm = match store
            .write(send(bob, None, Some("alice"), Uuid::new_v4()))
            .await
            .unwrap()
        {
            WriteOutcome::Sent { message, .. } => message.conv,
            other => panic!("{other:?}"),
        };
        let counts = |user| {
            let store = store.clone();
            async move {
                let rows = store.read(move |c| unread(c, user)).await.unwrap();
                rows.into_iter()
                    .map(|u| (u.conv, u.count, u.last_read))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(counts(bob).await, [(general, 4, 0), (dm, 0, 0)]);
        assert_eq!(counts(alice).await, [(general, 2, 0), (dm, 1, 0)]);
        for (user, conv, seq) in [(bob, general, 3), (alice, general, 2), (alice, dm, 1)] {
            store
                .write(WriteOp::Read { user, conv, seq })
                .await
                .unwrap();
        }
        assert_eq!(counts(bob).await, [(general, 2, 3), (dm, 0, 0)]);
        assert_eq!(counts(alice).await, [(general, 1, 2), (dm, 0, 1)]);

        let plan: Vec<String> = store
            .read(move |c| {
                let mut stmt = c.prepare(
                    "EXPLAIN QUERY PLAN SELECT count(*) FROM messages m WHERE m.conv_id = 1 \
                       AND m.sender_id = 2 AND m.seq > 0",
                )?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(3))?;
                rows.collect()
            })
            .await
            .unwrap();
        assert!(
            plan.iter()
                .any(|d| d.contains("COVERING INDEX messages_by_sender")),
            "{plan:?}"
        );
    }

    #[tokio::test]
    async fn a_rejected_write_rolls_back_alone_in_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let alice = register(&store, "alice").await;
        // Queue several writes at once so they share a transaction; the middle one fails.
        let ok1 = store.write(send(alice, Some(1), None, Uuid::new_v4()));
        let bad = store.write(send(alice, Some(999), None, Uuid::new_v4()));
        let ok2 = store.write(send(alice, Some(1), None, Uuid::new_v4()));
        let (ok1, bad, ok2) = tokio::join!(ok1, bad, ok2);
        assert!(matches!(ok1, Ok(WriteOutcome::Sent { .. })));
        assert!(matches!(
            bad,
            Err(StoreError::Rejected(ErrorCode::NotFound, _))
        ));
        assert!(matches!(ok2, Ok(WriteOutcome::Sent { .. })));
        let (page, _) = store.read(|c| history(c, 1, None, None, 10)).await.unwrap();
        assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[tokio::test]
    async fn dms_are_created_once_and_rules_for_leaving_hold() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let alice = register(&store, "alice").await;
        let bob = register(&store, "Bob").await;
        let first = store
            .write(send(alice, None, Some("bob"), Uuid::new_v4()))
            .await
            .unwrap();
        let WriteOutcome::Sent {
            message,
            new_dm: Some((dm, lo, hi)),
            ..
        } = first
        else {
            panic!()
        };
        assert_eq!((message.conv, lo, hi), (dm, alice, bob));
        let reply = store
            .write(send(bob, None, Some("ALICE"), Uuid::new_v4()))
            .await
            .unwrap();
        assert!(
            matches!(reply, WriteOutcome::Sent { new_dm: None, ref message, .. } if message.conv == dm && message.seq == 2)
        );
        let leave_dm = store
            .write(WriteOp::Leave {
                user: bob,
                conv: dm,
            })
            .await;
        assert!(matches!(
            leave_dm,
            Err(StoreError::Rejected(ErrorCode::Forbidden, _))
        ));
        let leave_general = store.write(WriteOp::Leave { user: bob, conv: 1 }).await;
        assert!(matches!(
            leave_general,
            Err(StoreError::Rejected(ErrorCode::Forbidden, _))
        ));
        let carol = register(&store, "carol").await;
        let peek = store
            .write(WriteOp::Read {
                user: carol,
                conv: dm,
                seq: 1,
            })
            .await;
        assert!(matches!(
            peek,
            Err(StoreError::Rejected(ErrorCode::NotFound, _))
        ));
        store.shutdown();
        // Everything survives a reopen: the snapshot has the DM with both members.
        let (_, snapshot) = Store::open(dir.path(), false).unwrap();
        let dm_row = snapshot.convs.iter().find(|c| c.id == dm).unwrap();
        assert_eq!(dm_row.kind, ConvKind::Dm);
        assert_eq!(dm_row.last_seq, 2);
        assert_eq!(dm_row.members.len(), 2);
    }
}
