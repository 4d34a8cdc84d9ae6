//! The embedded SQLite backend of [`Storage`]: one database file (WAL) holding users, tokens,
//! conversations, members and messages. This is the only file of the server that knows SQL.
//!
//! Writes go through a single writer thread that practises group commit: it takes every write
//! queued at that moment, runs each in its own savepoint inside one transaction, commits with
//! `synchronous=FULL` (so a commit survives a crash of the process or the machine), and only then
//! runs each write's [`Completion`], in commit order. Seq is assigned inside the transaction, so
//! commit order is seq order.
//!
//! Reads (history, replay, token checks, unread counts) use a small pool of separate read
//! connections on Tokio's blocking pool, which WAL lets run alongside the writer.

use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use crate::dbfile::{self, Damage};
use crate::names::Name;
use crate::protocol::{
    limits, Attachment, ConvId, ConvKind, Dnd, ErrorCode, Invite, Message, Millis, NotifyLevel,
    PendingUser, Seq, Target, Unread, User,
};

use super::super::auth::TokenHash;
use super::super::bus::hold_deliveries;
use super::super::latency_trace::{self, Mark};
use super::rules::{
    self, access_sql, attention_sql, not_member, Admission, Names, DELETED_DISPLAY_NAME,
    MAX_DEVICES_PER_USER, MESSAGE_COLUMNS, USER_COLUMNS,
};
use super::{
    BackendError, Completion, ConvRow, FailureKind, FileRow, OpenOptions, SessionRow, Snapshot,
    Standing, Storage, StoreError, StoreFuture, UserId, UserRow, WriteOp, WriteOutcome,
};

/// The database's file name in a data directory.
pub const DB_FILE: &str = "natter.db";

/// Numbered migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_unread_by_sender.sql"),
    include_str!("migrations/0003_name_keys.sql"),
    include_str!("migrations/0004_devices.sql"),
    include_str!("migrations/0005_account.sql"),
    include_str!("migrations/0006_attention.sql"),
    include_str!("migrations/0007_message_actions.sql"),
    include_str!("migrations/0008_access.sql"),
    include_str!("migrations/0009_files.sql"),
    include_str!("migrations/0010_server_id.sql"),
    include_str!("migrations/0011_upload_reservations.sql"),
    include_str!("migrations/0012_admins_index.sql"),
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

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(backend(e))
    }
}

/// A SQLite error as the backend-neutral error, with its kind.
fn backend(e: rusqlite::Error) -> BackendError {
    let kind = if dbfile::is_full(&e) {
        FailureKind::Full
    } else if dbfile::is_corrupt(&e) {
        FailureKind::Corrupt
    } else {
        FailureKind::Other
    };
    BackendError::new(kind, e)
}

struct Job {
    op: WriteOp,
    done: Completion,
}

/// The SQLite store: a writer thread and a pool of read connections. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore(Arc<Inner>);

struct Inner {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Statements each connection keeps compiled (rusqlite's default is 16). The writer runs a few
/// dozen kinds of statement; parsing and planning one again costs more than its execution.
const STATEMENT_CACHE: usize = 128;

/// Every statement of the writer and of the read pool goes through the connection's statement
/// cache, by these three calls and no other spelling: the writer runs the same statements for
/// every message, and compiling each anew was a large part of its CPU per message (seen with
/// perf: the parser and planner beside the few btree steps); a reader's token check and history
/// page are as repetitive.
trait Cached {
    /// The first row, as rusqlite's `query_row`.
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
    /// Every row, in the statement's order.
    fn rows<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<Vec<T>>
    where
        P: rusqlite::Params,
        F: FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
    /// The rows changed, as rusqlite's `execute`.
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
}

impl Cached for Connection {
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    fn rows<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<Vec<T>>
    where
        P: rusqlite::Params,
        F: FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        let mut stmt = self.prepare_cached(sql)?;
        let rows = stmt.query_map(params, f)?;
        rows.collect()
    }

    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
}

fn open_conn(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // FULL: in WAL mode NORMAL may lose the last commits on power loss, and an ack promises
    // the message is on disk. secure_delete: a deleted message's text is overwritten in the
    // file, not left in a free page.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA secure_delete = ON;",
    )?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    let done: i64 = conn.row("PRAGMA user_version", [], |r| r.get(0))?;
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
        let rows: Vec<(i64, String)> = tx.rows(select, [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        for (id, name) in rows {
            let keys = Name::of_stored(&name);
            tx.exec(update, params![id, keys.key, keys.skeleton])?;
        }
    }
    let clashes = tx.rows(
        "SELECT group_concat(username, ', ') FROM users GROUP BY fold_key HAVING count(*) > 1",
        [],
        |r| r.get::<_, String>(0),
    )?;
    for names in clashes {
        tracing::warn!(
            users = %names,
            "these accounts are one name under the Unicode name rules; all are kept, and signing \
             in with that name reaches the exact spelling, else the oldest"
        );
    }
    Ok(())
}

/// The id of the user or room called `raw` (any spelling: see [`crate::names::key`]).
fn find_name(conn: &Connection, names: Names, raw: &str) -> Result<Option<i64>, rusqlite::Error> {
    conn.row(
        names.find_sql(),
        params![crate::names::key(raw), raw],
        |r| r.get(0),
    )
    .optional()
}

/// `conflict` when `name` is an existing name or looks like one (same skeleton).
fn refuse_clash(tx: &Connection, names: Names, name: &Name) -> Result<(), StoreError> {
    let clash: Option<(String, bool)> = tx
        .row(names.clash_sql(), params![name.key, name.skeleton], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    names.refuse(name, clash)
}

fn user_from_row(r: &rusqlite::Row<'_>) -> Result<UserRow, rusqlite::Error> {
    Ok(UserRow {
        id: r.get(0)?,
        user: User {
            username: r.get(1)?,
            display_name: r.get(2)?,
            avatar: r.get(3)?,
            deleted: r.get(4)?,
            avatar_image: r.get(5)?,
            admin: r.get(6)?,
        },
    })
}

fn load_snapshot(conn: &Connection) -> Result<Snapshot, rusqlite::Error> {
    // Accounts waiting for approval are nobody's business until approved.
    let users = conn.rows(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE NOT pending"),
        [],
        user_from_row,
    )?;
    let mut convs = conn.rows(
        "SELECT id, kind, coalesce(name, ''), last_seq, private, created_by FROM conversations",
        [],
        |r| {
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
                private: r.get(4)?,
                created_by: r.get(5)?,
                members: Vec::new(),
            })
        },
    )?;
    let mut index: std::collections::HashMap<ConvId, usize> =
        convs.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
    let members = conn.rows("SELECT conv_id, user_id, last_read FROM members", [], |r| {
        Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?))
    })?;
    for (conv, user, read) in members {
        if let Some(i) = index.get_mut(&conv) {
            convs[*i].members.push((user, read));
        }
    }
    let (levels, dnd) = load_attention(conn)?;
    let server_id = conn.row("SELECT id FROM server_identity", [], |r| r.get(0))?;
    Ok(Snapshot {
        server_id,
        users,
        convs,
        levels,
        dnd,
    })
}

// --- Attention (notification levels, do not disturb) ---

type AttentionRows = (Vec<(UserId, ConvId, NotifyLevel)>, Vec<(UserId, Dnd)>);

/// Every stored level and do not disturb, for the snapshot.
fn load_attention(conn: &Connection) -> Result<AttentionRows, rusqlite::Error> {
    let levels = conn.rows(attention_sql::LOAD_LEVELS, [], |r| {
        // The table's CHECK admits only `mentions` and `nothing`.
        let level = NotifyLevel::from_name(r.get_ref(2)?.as_str()?);
        Ok((r.get(0)?, r.get(1)?, level.unwrap_or(NotifyLevel::Nothing)))
    })?;
    let dnd = conn.rows(attention_sql::LOAD_DND, [], |r| {
        Ok((r.get(0)?, Dnd { until: r.get(1)? }))
    })?;
    Ok((levels, dnd))
}

/// Apply [`WriteOp::SetLevel`]: only a member sets a level, refused like every other
/// conversation frame otherwise.
fn set_level(
    tx: &Connection,
    user: UserId,
    conv: ConvId,
    level: NotifyLevel,
) -> Result<WriteOutcome, StoreError> {
    if !is_member(tx, conv, user)? {
        return Err(not_member(visible_kind(tx, conv)?));
    }
    // `all` is the default: no row.
    match level {
        NotifyLevel::Mentions | NotifyLevel::Nothing => tx.exec(
            attention_sql::SET_LEVEL,
            params![user, conv, level.as_str()],
        )?,
        NotifyLevel::All => tx.exec(attention_sql::CLEAR_LEVEL, params![user, conv])?,
    };
    Ok(WriteOutcome::LevelSet { user, conv, level })
}

/// Apply [`WriteOp::SetDnd`].
fn set_dnd(tx: &Connection, user: UserId, dnd: Option<Dnd>) -> Result<WriteOutcome, StoreError> {
    match dnd {
        Some(d) => tx.exec(attention_sql::SET_DND, params![user, d.until])?,
        None => tx.exec(attention_sql::CLEAR_DND, params![user])?,
    };
    Ok(WriteOutcome::DndSet { user, dnd })
}

// --- end of attention ---

impl SqliteStore {
    /// Open the database at `path`, check it, run migrations and start the writer. A new
    /// directory gets a new database; one whose marker shows a database existed gets one only
    /// when `options.init` is set. The directory and the database files are made private
    /// (0700/0600).
    pub fn open(path: &Path, options: OpenOptions) -> Result<(SqliteStore, Snapshot), StoreError> {
        let data_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir_err = |e| StoreError::DataDir(data_dir.clone(), e);
        dbfile::private_dir(&data_dir).map_err(dir_err)?;
        let path = path.to_path_buf();
        let marker = data_dir.join(MARKER_FILE);
        let empty = std::fs::metadata(&path).map_or(true, |m| m.len() == 0);
        if empty && marker.exists() {
            if !options.init {
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
        if let Some(pages) = options.max_db_pages {
            conn.pragma_update(None, "max_page_count", pages)?;
        }
        if latency_trace::now().is_some() {
            conn.wal_hook(Some(checkpoint_traced));
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("natter-writer".into())
            .spawn(move || write_loop(conn, rx))
            .map_err(|e| StoreError::Join(e.to_string()))?;
        let store = SqliteStore(Arc::new(Inner {
            path,
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        }));
        Ok((store, snapshot))
    }

    /// Run `f` on a pooled read connection on the blocking pool.
    fn read<T, F>(&self, f: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let inner = self.0.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let pooled = inner
                    .readers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop();
                let conn = match pooled {
                    Some(c) => c,
                    None => open_conn(&inner.path)?,
                };
                let result = f(&conn).map_err(StoreError::from);
                let mut pool = inner.readers.lock().unwrap_or_else(|e| e.into_inner());
                if pool.len() < 8 {
                    pool.push(conn);
                }
                result
            })
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
        })
    }
}

/// The writer thread: commit what is queued, in batches, then run each write's completion in
/// commit order. Ends when the store is shut down and the queue is empty.
fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let results = run_batch(&mut conn, &jobs);
        // What the completions publish leaves as one batch: the fan-out then writes each
        // connection its frames of this commit at once.
        hold_deliveries(|| {
            for (job, result) in jobs.into_iter().zip(results) {
                // A bug in a completion must not kill the only writer (every later write would
                // fail); the batch is committed either way.
                let done = job.done;
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(result))).is_err()
                {
                    tracing::error!("a write's completion panicked; continuing");
                }
            }
        });
    }
    tracing::debug!("writer thread finished");
}

impl Storage for SqliteStore {
    fn write(&self, op: WriteOp, done: Completion) -> Result<(), StoreError> {
        let guard = self.0.writer.lock().unwrap_or_else(|e| e.into_inner());
        let sender = guard.as_ref().ok_or(StoreError::Closed)?;
        sender
            .send(Job { op, done })
            .map_err(|_| StoreError::Closed)
    }

    fn token_user(&self, hash: TokenHash, now: Millis) -> StoreFuture<Option<(UserId, Millis)>> {
        self.read(move |c| token_user(c, &hash, now))
    }

    fn is_known_device(&self, user: UserId, hash: TokenHash) -> StoreFuture<bool> {
        self.read(move |c| is_known_device(c, user, &hash))
    }

    fn credentials(&self, username: String) -> StoreFuture<Option<(UserId, String)>> {
        self.read(move |c| credentials(c, &username))
    }

    fn history(
        &self,
        conv: ConvId,
        before: Option<Seq>,
        after: Option<Seq>,
        limit: u32,
    ) -> StoreFuture<(Vec<Message>, bool)> {
        self.read(move |c| history(c, conv, before, after, limit))
    }

    fn unread(&self, user: UserId) -> StoreFuture<Vec<Unread>> {
        self.read(move |c| unread(c, user))
    }

    fn snapshot(&self) -> StoreFuture<Snapshot> {
        self.read(load_snapshot)
    }

    fn sessions(&self, user: UserId, now: Millis) -> StoreFuture<Vec<SessionRow>> {
        self.read(move |c| sessions(c, user, now))
    }

    fn admins(&self) -> StoreFuture<Vec<UserId>> {
        self.read(|c| c.rows(access_sql::ADMINS, [], |r| r.get(0)))
    }

    fn standing(&self, user: UserId) -> StoreFuture<Option<Standing>> {
        self.read(move |c| {
            c.row(access_sql::STANDING, params![user], |r| {
                Ok(Standing {
                    admin: r.get(0)?,
                    pending: r.get(1)?,
                    banned: r.get(2)?,
                })
            })
            .optional()
        })
    }

    fn invites(&self, now: Millis) -> StoreFuture<Vec<Invite>> {
        self.read(move |c| {
            c.rows(access_sql::LIVE_INVITES, params![now], |r| {
                Ok(Invite {
                    id: r.get(0)?,
                    code: None,
                    created_by: r.get(1)?,
                    created_at: r.get(2)?,
                    expires_at: r.get(3)?,
                })
            })
        })
    }

    fn pending_users(&self) -> StoreFuture<Vec<PendingUser>> {
        self.read(|c| {
            c.rows(access_sql::PENDING_USERS, [], |r| {
                Ok(PendingUser {
                    username: r.get(0)?,
                    display_name: r.get(1)?,
                    created_at: r.get(2)?,
                })
            })
        })
    }

    fn password_hash(&self, user: UserId) -> StoreFuture<Option<String>> {
        self.read(move |c| {
            c.row(
                "SELECT password_hash FROM users WHERE id = ?1 AND deleted_at IS NULL",
                params![user],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn file_for(&self, id: String, user: UserId) -> StoreFuture<Option<FileRow>> {
        self.read(move |c| {
            c.row(rules::FILE_FOR_SQL, params![id, user], file_from_row)
                .optional()
        })
    }

    fn is_avatar(&self, blob: String) -> StoreFuture<bool> {
        self.read(move |c| {
            c.row(rules::IS_AVATAR_SQL, params![blob], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
        })
    }

    fn shutdown(&self) {
        self.0
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let thread = self
            .0
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// The user id and expiry of a live (unrevoked, unexpired) token.
fn token_user(
    conn: &Connection,
    hash: &TokenHash,
    now: Millis,
) -> Result<Option<(UserId, Millis)>, rusqlite::Error> {
    conn.row(
        "SELECT user_id, expires_at FROM tokens WHERE hash = ?1 AND revoked = 0 AND expires_at > ?2",
        params![&hash[..], now],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// The live sessions of `user`, newest first.
fn sessions(
    conn: &Connection,
    user: UserId,
    now: Millis,
) -> Result<Vec<SessionRow>, rusqlite::Error> {
    conn.rows(
        "SELECT hash, label, created_at, expires_at FROM tokens \
         WHERE user_id = ?1 AND revoked = 0 AND expires_at > ?2 ORDER BY created_at DESC",
        params![user, now],
        |r| {
            let hash: Vec<u8> = r.get(0)?;
            Ok(SessionRow {
                token_hash: hash.try_into().unwrap_or([0; 32]),
                label: r.get(1)?,
                created_at: r.get(2)?,
                expires_at: r.get(3)?,
            })
        },
    )
}

/// Revoke every live session of `user` but `keep`; the hashes revoked.
fn revoke_sessions(
    tx: &Connection,
    user: UserId,
    keep: Option<&TokenHash>,
    now: Millis,
) -> Result<Vec<TokenHash>, rusqlite::Error> {
    let revoked: Vec<TokenHash> = sessions(tx, user, now)?
        .into_iter()
        .map(|s| s.token_hash)
        .filter(|h| Some(h) != keep)
        .collect();
    for hash in &revoked {
        tx.exec(
            "UPDATE tokens SET revoked = 1 WHERE hash = ?1",
            params![&hash[..]],
        )?;
    }
    Ok(revoked)
}

fn user_row(tx: &Connection, user: UserId) -> Result<UserRow, StoreError> {
    tx.row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1 AND deleted_at IS NULL"),
        params![user],
        user_from_row,
    )
    .optional()?
    .ok_or_else(rules::account_deleted)
}

/// `forbidden` when the other member of DM `conv` deleted their account.
fn refuse_deleted_peer(tx: &Connection, conv: ConvId, user: UserId) -> Result<(), StoreError> {
    let deleted: bool = tx
        .row(rules::DELETED_PEER_SQL, params![conv, user], |_| Ok(()))
        .optional()?
        .is_some();
    if deleted {
        return Err(rules::peer_deleted());
    }
    Ok(())
}

/// Whether `hash` is a device token given to `user`.
fn is_known_device(
    conn: &Connection,
    user: UserId,
    hash: &TokenHash,
) -> Result<bool, rusqlite::Error> {
    conn.row(
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
    tx.exec(
        "INSERT OR IGNORE INTO devices (hash, user_id, created_at) VALUES (?1, ?2, ?3)",
        params![&hash[..], user, now],
    )?;
    tx.exec(
        "DELETE FROM devices WHERE user_id = ?1 AND hash NOT IN \
         (SELECT hash FROM devices WHERE user_id = ?1 ORDER BY created_at DESC LIMIT ?2)",
        params![user, MAX_DEVICES_PER_USER],
    )?;
    Ok(())
}

/// The id and password hash of a user by name, in any spelling of it.
fn credentials(
    conn: &Connection,
    username: &str,
) -> Result<Option<(UserId, String)>, rusqlite::Error> {
    let Some(id) = find_name(conn, Names::Users, username)? else {
        return Ok(None);
    };
    conn.row(
        "SELECT id, password_hash FROM users WHERE id = ?1 AND deleted_at IS NULL",
        params![id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

fn message_from_row(r: &rusqlite::Row<'_>) -> Result<Message, rusqlite::Error> {
    let cmid: String = r.get(6)?;
    let kind: Option<String> = r.get(8)?;
    Ok(Message {
        id: r.get(0)?,
        conv: r.get(1)?,
        seq: r.get(2)?,
        sender: r.get(3)?,
        text: r.get(4)?,
        time: r.get(5)?,
        client_msg_id: Uuid::parse_str(&cmid).unwrap_or_default(),
        reply_to: r.get(7)?,
        action: rules::action_from_columns(kind.as_deref(), r.get(9)?, r.get(10)?),
        edited: r.get(11)?,
        deleted: r.get(12)?,
        attachments: Vec::new(),
    })
}

/// A page of history, ascending by seq, and whether more lie beyond it in the paging direction.
/// `after` pages forward; otherwise the page ends just before `before` (or at the newest).
fn history(
    conn: &Connection,
    conv: ConvId,
    before: Option<Seq>,
    after: Option<Seq>,
    limit: u32,
) -> Result<(Vec<Message>, bool), rusqlite::Error> {
    let limit = limit.clamp(1, limits::MAX_PAGE) as i64;
    let messages = if let Some(after) = after {
        conn.rows(
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id \
                 WHERE m.conv_id = ?1 AND m.seq > ?2 ORDER BY m.seq ASC LIMIT ?3"
            ),
            params![conv, after, limit + 1],
            message_from_row,
        )?
    } else {
        let before = before.unwrap_or(i64::MAX);
        let mut page = conn.rows(
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id \
                 WHERE m.conv_id = ?1 AND m.seq < ?2 ORDER BY m.seq DESC LIMIT ?3"
            ),
            params![conv, before, limit + 1],
            message_from_row,
        )?;
        page.reverse();
        page
    };
    let (mut messages, more) = rules::page(messages, limit, after.is_some());
    with_files(conn, conv, &mut messages)?;
    Ok((messages, more))
}

/// Give an ascending page of `conv`'s messages the files they carry.
fn with_files(
    conn: &Connection,
    conv: ConvId,
    messages: &mut [Message],
) -> Result<(), rusqlite::Error> {
    let Some((first, last)) = rules::seq_span(messages) else {
        return Ok(());
    };
    let files = conn.rows(rules::MESSAGE_FILES_SQL, params![conv, first, last], |r| {
        Ok((
            r.get(rules::FILE_COLUMN_COUNT)?,
            file_from_row(r)?.attachment,
        ))
    })?;
    rules::attach(messages, files);
    Ok(())
}

/// Unread counts of every conversation `user` is a member of: messages after the read marker
/// that someone else sent. Seqs are gapless and rows are never removed, so that is the seqs
/// after the marker less the user's own among them and the actions (edits, deletes, reactions:
/// never unread), which `messages_by_sender` and `messages_actions` count without reading
/// anyone else's messages: a connect costs the same however far behind it is.
fn unread(conn: &Connection, user: UserId) -> Result<Vec<Unread>, rusqlite::Error> {
    conn.rows(
        "SELECT mb.conv_id, mb.last_read, \
           max(0, c.last_seq - mb.last_read) - \
           (SELECT count(*) FROM messages m WHERE m.conv_id = mb.conv_id \
              AND (m.sender_id = mb.user_id OR m.action IS NOT NULL) AND m.seq > mb.last_read) \
         FROM members mb JOIN conversations c ON c.id = mb.conv_id \
         WHERE mb.user_id = ?1 ORDER BY mb.conv_id",
        params![user],
        |r| {
            Ok(Unread {
                conv: r.get(0)?,
                last_read: r.get(1)?,
                count: r.get::<_, i64>(2)? as u32,
            })
        },
    )
}

fn run_batch(conn: &mut Connection, jobs: &[Job]) -> Vec<Result<WriteOutcome, StoreError>> {
    let mut results = Vec::with_capacity(jobs.len());
    let batch = jobs.len() as u64;
    latency_trace::record(Mark::CommitBegin, batch, 0);
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "cannot begin transaction");
            return fail_all(jobs, backend(e));
        }
    };
    // A write alone in its batch (every write at light load) needs no savepoint of its own:
    // when it fails, the whole transaction is rolled back, which undoes only it.
    if let [job] = jobs {
        let result = apply(&tx, &job.op);
        if result.is_err() {
            drop(tx);
            return vec![result];
        }
        results.push(result);
    } else {
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
                    Err(StoreError::Backend(e)) => e,
                    other => backend(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                        Some(format!("the transaction was rolled back ({other:?})")),
                    )),
                };
                tracing::error!(error = %cause, "SQLite rolled the batch back; every write of it failed");
                return fail_all(jobs, cause);
            }
            results.push(result);
        }
    }
    latency_trace::record(Mark::CommitCall, batch, 0);
    let committed = tx.commit();
    latency_trace::record(Mark::CommitDone, batch, 0);
    if let Err(e) = committed {
        tracing::error!(error = %e, "commit failed; the whole batch is reported as failed");
        return fail_all(jobs, backend(e));
    }
    results
}

/// SQLite's automatic checkpoint threshold (`wal_autocheckpoint`, which Natter leaves at its
/// default), in WAL frames.
const AUTOCHECKPOINT_FRAMES: c_int = 1000;

/// The writer's WAL hook while the latency trace is on: what SQLite's automatic checkpoint does
/// (a passive checkpoint once the WAL holds [`AUTOCHECKPOINT_FRAMES`], errors ignored, inside
/// the commit that crossed it), with the checkpoint's start, end and size in the trace.
/// Installing a hook replaces SQLite's own, so this one must do its work.
fn checkpoint_traced(wal: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    if frames < AUTOCHECKPOINT_FRAMES {
        return Ok(());
    }
    latency_trace::record(Mark::CheckpointBegin, frames as u64, 0);
    let (in_wal, copied) = wal
        .checkpoint_v2(rusqlite::hooks::CheckpointMode::PASSIVE)
        .unwrap_or((frames, -1));
    latency_trace::record(
        Mark::CheckpointEnd,
        in_wal.max(0) as u64,
        copied.max(0) as u64,
    );
    Ok(())
}

/// The same failure, kept whole, for every write of a batch.
fn fail_all(jobs: &[Job], e: BackendError) -> Vec<Result<WriteOutcome, StoreError>> {
    jobs.iter()
        .map(|_| Err(StoreError::Backend(e.clone())))
        .collect()
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// The kind of a conversation, or None when it does not exist.
fn conv_kind(tx: &Connection, conv: ConvId) -> Result<Option<(ConvKind, String)>, rusqlite::Error> {
    tx.row(
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

/// The kind of a conversation as someone outside it may know it ([`rules::VISIBLE_KIND`]).
fn visible_kind(tx: &Connection, conv: ConvId) -> Result<Option<ConvKind>, rusqlite::Error> {
    tx.row(rules::VISIBLE_KIND, params![conv], |r| {
        let kind: String = r.get(0)?;
        Ok(if kind == "dm" {
            ConvKind::Dm
        } else {
            ConvKind::Room
        })
    })
    .optional()
}

fn is_member(tx: &Connection, conv: ConvId, user: UserId) -> Result<bool, rusqlite::Error> {
    Ok(tx
        .row(
            "SELECT 1 FROM members WHERE conv_id = ?1 AND user_id = ?2",
            params![conv, user],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Make `user` a member of `general` (a new or newly approved account).
fn join_general(tx: &Connection, user: UserId) -> Result<(), rusqlite::Error> {
    tx.exec(
        "INSERT INTO members (conv_id, user_id) \
         SELECT id, ?1 FROM conversations WHERE kind = 'room' AND name_key = ?2",
        params![user, limits::DEFAULT_ROOM],
    )?;
    Ok(())
}

/// Refuse unless `user` is a live admin, as the store has it now.
fn require_admin(tx: &Connection, user: UserId) -> Result<(), StoreError> {
    let admin = tx
        .row(access_sql::STANDING, params![user], |r| r.get::<_, bool>(0))
        .optional()?;
    rules::require_admin(admin)
}

/// `user` enters room `conv` (joining, or added by a member): refused when banned from it;
/// true when they were not a member before.
fn enter_room(tx: &Connection, conv: ConvId, user: UserId) -> Result<bool, StoreError> {
    if tx.row(rules::IS_BANNED, params![conv, user], |r| r.get(0))? {
        return Err(rules::banned_from_room());
    }
    let n = tx.exec(
        "INSERT OR IGNORE INTO members (conv_id, user_id) VALUES (?1, ?2)",
        params![conv, user],
    )?;
    Ok(n > 0)
}

fn apply(tx: &Connection, op: &WriteOp) -> Result<WriteOutcome, StoreError> {
    match op {
        WriteOp::Register {
            mode,
            invite,
            username,
            display_name,
            avatar,
            password_hash,
            token_hash,
            now,
            expires_at,
            device_hash,
            label,
        } => {
            let now = *now;
            let name = Name::of_stored(username);
            refuse_clash(tx, Names::Users, &name)?;
            // This writer is the only one, so no other registration can come between the
            // check for a first account (or an invite's redemption) and the insert.
            let first = !tx.row(access_sql::ANY_USER, [], |r| r.get::<_, bool>(0))?;
            let invited: Option<i64> = match invite {
                Some(hash) if !first => Some(
                    tx.row(access_sql::REDEEM_INVITE, params![now, &hash[..]], |r| {
                        r.get(0)
                    })
                    .optional()?
                    .ok_or_else(rules::invalid_invite)?,
                ),
                _ => None,
            };
            let admission = rules::admission(*mode, first, invited.is_some())?;
            let admin = admission == Admission::Admin;
            let pending = admission == Admission::Pending;
            let inserted = tx.exec(
                "INSERT INTO users (username, name_key, fold_key, skeleton, display_name, avatar, \
                 password_hash, created_at, admin, pending) \
                 VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    username,
                    name.key,
                    name.skeleton,
                    display_name,
                    avatar,
                    password_hash,
                    now,
                    admin,
                    pending
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
            if let Some(invite) = invited {
                tx.exec(access_sql::INVITE_USED_BY, params![id, invite])?;
            }
            if pending {
                return Ok(WriteOutcome::RegisteredPending);
            }
            join_general(tx, id)?;
            tx.exec(
                "INSERT INTO tokens (hash, user_id, created_at, expires_at, label) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![&token_hash[..], id, now, expires_at, label],
            )?;
            add_device(tx, id, device_hash, now)?;
            Ok(WriteOutcome::Registered(UserRow {
                id,
                user: User {
                    username: username.clone(),
                    display_name: display_name.clone(),
                    avatar: avatar.clone(),
                    deleted: false,
                    avatar_image: None,
                    admin,
                },
            }))
        }
        WriteOp::SetAdmin { username, admin } => {
            let user = find_name(tx, Names::Users, username)?
                .ok_or_else(|| StoreError::rejected(ErrorCode::NotFound, "no such user"))?;
            let n = tx.exec(
                "UPDATE users SET admin = ?2 WHERE id = ?1 AND deleted_at IS NULL",
                params![user, admin],
            )?;
            if n == 0 {
                return Err(rules::account_deleted());
            }
            Ok(WriteOutcome::UserUpdated(tx.row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                params![user],
                user_from_row,
            )?))
        }
        WriteOp::CreateInvite {
            by,
            hash,
            now,
            expires_at,
        } => {
            require_admin(tx, *by)?;
            let id = tx.row(
                access_sql::CREATE_INVITE,
                params![&hash[..], by, now, expires_at],
                |r| r.get(0),
            )?;
            let created_by = tx.row(
                "SELECT username FROM users WHERE id = ?1",
                params![by],
                |r| r.get(0),
            )?;
            Ok(WriteOutcome::InviteCreated { id, created_by })
        }
        WriteOp::RevokeInvite { by, id, now } => {
            require_admin(tx, *by)?;
            if tx.exec(access_sql::REVOKE_INVITE, params![id, now])? == 0 {
                return Err(rules::no_such_invite());
            }
            Ok(WriteOutcome::InviteRevoked)
        }
        WriteOp::Approve { by, username } => {
            require_admin(tx, *by)?;
            let user = find_name(tx, Names::Users, username)?.ok_or_else(rules::not_pending)?;
            if tx.exec(access_sql::APPROVE, params![user])? == 0 {
                return Err(rules::not_pending());
            }
            join_general(tx, user)?;
            Ok(WriteOutcome::Registered(tx.row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                params![user],
                user_from_row,
            )?))
        }
        WriteOp::SetBanned {
            by,
            username,
            banned,
            now,
        } => {
            require_admin(tx, *by)?;
            let user = find_name(tx, Names::Users, username)?
                .ok_or_else(|| StoreError::rejected(ErrorCode::NotFound, "no such user"))?;
            tx.row(access_sql::SET_BANNED, params![banned, user], |_| Ok(()))
                .optional()?
                .ok_or_else(rules::cannot_ban_admin)?;
            let token_hashes = if *banned {
                revoke_sessions(tx, user, None, *now)?
            } else {
                Vec::new()
            };
            Ok(WriteOutcome::BanSet { token_hashes })
        }
        WriteOp::Reject { by, username } => {
            require_admin(tx, *by)?;
            let user = find_name(tx, Names::Users, username)?.ok_or_else(rules::not_pending)?;
            if tx.exec(access_sql::REJECT, params![user])? == 0 {
                return Err(rules::not_pending());
            }
            Ok(WriteOutcome::AccountRejected)
        }
        WriteOp::Login {
            user,
            token_hash,
            now,
            expires_at,
            device_hash,
            label,
        } => {
            let now = *now;
            tx.exec(
                "INSERT INTO tokens (hash, user_id, created_at, expires_at, label) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![&token_hash[..], user, now, expires_at, label],
            )?;
            if let Some(device_hash) = device_hash {
                add_device(tx, *user, device_hash, now)?;
            }
            Ok(WriteOutcome::LoggedIn)
        }
        WriteOp::Logout { token_hash } => {
            tx.exec(
                "UPDATE tokens SET revoked = 1 WHERE hash = ?1",
                params![&token_hash[..]],
            )?;
            Ok(WriteOutcome::LoggedOut {
                token_hash: *token_hash,
            })
        }
        WriteOp::CreateRoom {
            user,
            name,
            now,
            private,
        } => {
            let now = *now;
            let keys = Name::of_stored(name);
            refuse_clash(tx, Names::Rooms, &keys)?;
            let inserted = tx.exec(
                "INSERT INTO conversations (kind, name, name_key, fold_key, skeleton, created_at, \
                 private, created_by) VALUES ('room', ?1, ?2, ?2, ?3, ?4, ?5, ?6)",
                params![name, keys.key, keys.skeleton, now, private, user],
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
            tx.exec(
                "INSERT INTO members (conv_id, user_id) VALUES (?1, ?2)",
                params![conv, user],
            )?;
            Ok(WriteOutcome::RoomCreated {
                user: *user,
                conv,
                name: name.clone(),
                private: *private,
            })
        }
        WriteOp::AddMember { by, conv, username } => {
            if !is_member(tx, *conv, *by)? {
                return Err(not_member(visible_kind(tx, *conv)?));
            }
            rules::may_add(conv_kind(tx, *conv)?.map(|k| k.0))?;
            let user = find_name(tx, Names::Users, username)?;
            let user =
                user.ok_or_else(|| StoreError::rejected(ErrorCode::NotFound, "no such user"))?;
            let live: bool = tx.row(
                "SELECT deleted_at IS NULL AND NOT pending FROM users WHERE id = ?1",
                params![user],
                |r| r.get(0),
            )?;
            if !live {
                return Err(StoreError::rejected(ErrorCode::NotFound, "no such user"));
            }
            Ok(WriteOutcome::Added {
                by: *by,
                user,
                conv: *conv,
                newly: enter_room(tx, *conv, user)?,
            })
        }
        WriteOp::RemoveMember {
            by,
            conv,
            username,
            ban,
        } => {
            if !is_member(tx, *conv, *by)? {
                return Err(not_member(visible_kind(tx, *conv)?));
            }
            let moderator: bool = tx.row(
                &format!("SELECT {}", rules::MODERATES),
                params![conv, by],
                |r| r.get(0),
            )?;
            let key = conv_kind(tx, *conv)?.map(|k| k.1).unwrap_or_default();
            rules::may_remove(moderator, &key)?;
            let user = find_name(tx, Names::Users, username)?
                .ok_or_else(|| StoreError::rejected(ErrorCode::NotFound, "no such user"))?;
            if *ban {
                tx.exec(
                    "INSERT OR IGNORE INTO room_bans (conv_id, user_id) VALUES (?1, ?2)",
                    params![conv, user],
                )?;
            }
            let was_member = tx.exec(
                "DELETE FROM members WHERE conv_id = ?1 AND user_id = ?2",
                params![conv, user],
            )? > 0;
            if !was_member && !*ban {
                return Err(StoreError::rejected(
                    ErrorCode::NotFound,
                    "that user is not a member of this room",
                ));
            }
            Ok(WriteOutcome::Removed {
                user,
                conv: *conv,
                was_member,
            })
        }
        WriteOp::Join { user, room } => {
            let conv = find_name(tx, Names::Rooms, room)?;
            let conv = conv.ok_or_else(rules::no_such_room)?;
            let private: bool = tx.row(
                "SELECT private FROM conversations WHERE id = ?1",
                params![conv],
                |r| r.get(0),
            )?;
            if private && !is_member(tx, conv, *user)? {
                return Err(rules::no_such_room());
            }
            Ok(WriteOutcome::Joined {
                user: *user,
                conv,
                newly: enter_room(tx, conv, *user)?,
            })
        }
        WriteOp::Leave { user, conv } => {
            let kind = conv_kind(tx, *conv)?;
            rules::may_leave(kind.as_ref(), is_member(tx, *conv, *user)?)?;
            let n = tx.exec(
                "DELETE FROM members WHERE conv_id = ?1 AND user_id = ?2",
                params![conv, user],
            )?;
            if n == 0 {
                return Err(not_member(visible_kind(tx, *conv)?));
            }
            Ok(WriteOutcome::Left {
                user: *user,
                conv: *conv,
            })
        }
        WriteOp::Send {
            user,
            target,
            client_msg_id,
            text,
            now,
            reply_to,
            action,
            attachments,
        } => {
            let now = *now;
            let cmid = client_msg_id.to_string();
            let existing = tx
                .row(
                    &format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id \
                         WHERE m.sender_id = ?1 AND m.client_msg_id = ?2"
                    ),
                    params![user, cmid],
                    message_from_row,
                )
                .optional()?;
            if let Some(mut message) = existing {
                with_files(tx, message.conv, std::slice::from_mut(&mut message))?;
                return Ok(WriteOutcome::Sent {
                    message,
                    fresh: false,
                    new_dm: None,
                });
            }
            let mut new_dm = None;
            let conv = match target {
                Target::Conv(conv) => {
                    if !is_member(tx, *conv, *user)? {
                        return Err(not_member(visible_kind(tx, *conv)?));
                    }
                    refuse_deleted_peer(tx, *conv, *user)?;
                    *conv
                }
                Target::To(to) => {
                    let peer = find_name(tx, Names::Users, to)?;
                    let peer = peer
                        .ok_or_else(|| StoreError::rejected(ErrorCode::NotFound, "no such user"))?;
                    let (peer_deleted, peer_pending): (bool, bool) = tx.row(
                        "SELECT deleted_at IS NOT NULL, pending FROM users WHERE id = ?1",
                        params![peer],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    if peer_pending {
                        return Err(StoreError::rejected(ErrorCode::NotFound, "no such user"));
                    }
                    if peer_deleted {
                        return Err(rules::peer_deleted());
                    }
                    if peer == *user {
                        return Err(StoreError::rejected(
                            ErrorCode::BadRequest,
                            "cannot send a direct message to yourself",
                        ));
                    }
                    let (lo, hi, dm_key) = rules::dm_key(*user, peer);
                    let found: Option<ConvId> = tx
                        .row(
                            "SELECT id FROM conversations WHERE dm_key = ?1",
                            params![dm_key],
                            |r| r.get(0),
                        )
                        .optional()?;
                    match found {
                        Some(id) => {
                            refuse_deleted_peer(tx, id, *user)?;
                            id
                        }
                        None => {
                            tx.exec(
                                "INSERT INTO conversations (kind, dm_key, created_at) VALUES ('dm', ?1, ?2)",
                                params![dm_key, now],
                            )?;
                            let id = tx.last_insert_rowid();
                            tx.exec(
                                "INSERT INTO members (conv_id, user_id) VALUES (?1, ?2), (?1, ?3)",
                                params![id, lo, hi],
                            )?;
                            new_dm = Some((id, lo, hi));
                            id
                        }
                    }
                }
            };
            if let Some(target) = rules::target_of(*reply_to, action.as_ref()) {
                let found = tx
                    .row(&rules::target_sql(), params![conv, user, target], |r| {
                        Ok(rules::TargetRow {
                            sender: r.get(0)?,
                            is_action: r.get(1)?,
                            deleted: r.get(2)?,
                            by_moderator: r.get(3)?,
                        })
                    })
                    .optional()?;
                rules::may_act(*user, action.as_ref(), found)?;
            }
            let mut files = Vec::with_capacity(attachments.len());
            for id in attachments {
                let file = tx
                    .row(rules::OWN_FILE_SQL, params![id, user], file_from_row)
                    .optional()?;
                files.push(file.ok_or_else(|| rules::not_your_file(id))?.attachment);
            }
            let seq: Seq = tx.row(
                "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
                params![conv],
                |r| r.get(0),
            )?;
            let (kind, target_seq, emoji) = rules::action_columns(action.as_ref());
            tx.exec(
                rules::INSERT_MESSAGE,
                params![conv, seq, user, text, now, cmid, reply_to, kind, target_seq, emoji],
            )?;
            let id = tx.last_insert_rowid();
            for (position, file) in files.iter().enumerate() {
                tx.exec(
                    rules::INSERT_MESSAGE_FILE,
                    params![conv, seq, position as i64, file.id],
                )?;
            }
            match (rules::effect(action.as_ref(), text, now), target_seq) {
                (Some(rules::Effect::Edit { text, now }), Some(target)) => {
                    tx.exec(rules::EDIT_SQL, params![text, now, conv, target])?;
                }
                (Some(rules::Effect::Delete { now }), Some(target)) => {
                    tx.exec(rules::DELETE_SQL, params![now, conv, target])?;
                    tx.exec(rules::UNATTACH_SQL, params![conv, target])?;
                }
                _ => {}
            }
            let message = Message {
                id,
                conv,
                seq,
                sender: tx.row(
                    "SELECT username FROM users WHERE id = ?1",
                    params![user],
                    |r| r.get(0),
                )?,
                text: text.clone(),
                time: now,
                client_msg_id: *client_msg_id,
                reply_to: *reply_to,
                action: action.clone(),
                attachments: files,
                ..Message::default()
            };
            Ok(WriteOutcome::Sent {
                message,
                fresh: true,
                new_dm,
            })
        }
        WriteOp::Read { user, conv, seq } => {
            let row: Option<(Seq, Seq)> = tx
                .row(
                    "SELECT mb.last_read, c.last_seq FROM members mb JOIN conversations c ON c.id = mb.conv_id \
                     WHERE mb.conv_id = ?1 AND mb.user_id = ?2",
                    params![conv, user],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((last_read, last_seq)) = row else {
                return Err(not_member(visible_kind(tx, *conv)?));
            };
            let (marker, moved) = rules::read_marker(*seq, last_read, last_seq);
            if moved {
                tx.exec(
                    "UPDATE members SET last_read = ?1 WHERE conv_id = ?2 AND user_id = ?3",
                    params![marker, conv, user],
                )?;
            }
            Ok(WriteOutcome::ReadMoved {
                user: *user,
                conv: *conv,
                seq: marker,
                moved,
            })
        }
        // ---- your account ----
        WriteOp::SetProfile {
            user,
            display_name,
            avatar,
        } => {
            user_row(tx, *user)?;
            tx.exec(
                "UPDATE users SET display_name = coalesce(?2, display_name), \
                 avatar = coalesce(?3, avatar) WHERE id = ?1",
                params![user, display_name, avatar],
            )?;
            Ok(WriteOutcome::UserUpdated(user_row(tx, *user)?))
        }
        WriteOp::SetPassword {
            user,
            password_hash,
            keep,
            now,
        } => {
            user_row(tx, *user)?;
            tx.exec(
                "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                params![user, password_hash],
            )?;
            let token_hashes = match keep {
                Some(keep) => revoke_sessions(tx, *user, Some(keep), *now)?,
                None => Vec::new(),
            };
            Ok(WriteOutcome::SessionsRevoked { token_hashes })
        }
        WriteOp::RevokeSession { user, id, now } => {
            let found = sessions(tx, *user, *now)?
                .into_iter()
                .find(|s| super::super::auth::session_id(&s.token_hash) == *id);
            let Some(session) = found else {
                return Err(rules::no_such_session());
            };
            tx.exec(
                "UPDATE tokens SET revoked = 1 WHERE hash = ?1",
                params![&session.token_hash[..]],
            )?;
            Ok(WriteOutcome::LoggedOut {
                token_hash: session.token_hash,
            })
        }
        WriteOp::DeleteAccount { user, now } => {
            let picture = user_row(tx, *user)?.user.avatar_image;
            let token_hashes = revoke_sessions(tx, *user, None, *now)?;
            let left: Vec<ConvId> = tx.rows(
                "SELECT mb.conv_id FROM members mb JOIN conversations c ON c.id = mb.conv_id \
                 WHERE mb.user_id = ?1 AND c.kind = 'room' ORDER BY mb.conv_id",
                params![user],
                |r| r.get(0),
            )?;
            // Rooms are left; DMs keep both members, so the peer still reads the conversation.
            tx.exec(
                "DELETE FROM members WHERE user_id = ?1 AND conv_id IN \
                 (SELECT id FROM conversations WHERE kind = 'room')",
                params![user],
            )?;
            tx.exec("DELETE FROM devices WHERE user_id = ?1", params![user])?;
            // The row stays (messages keep their sender, the username stays reserved); what
            // described the person goes, and no password can match an empty hash.
            tx.exec(
                "UPDATE users SET display_name = ?2, avatar = '', avatar_image = NULL, password_hash = '', \
                 deleted_at = ?3, admin = 0 WHERE id = ?1",
                params![user, DELETED_DISPLAY_NAME, now],
            )?;
            if let Some(picture) = picture {
                doom_unnamed(tx, &picture)?;
            }
            let row = tx.row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                params![user],
                user_from_row,
            )?;
            Ok(WriteOutcome::AccountDeleted {
                row,
                left,
                token_hashes,
            })
        }
        WriteOp::SetLevel { user, conv, level } => set_level(tx, *user, *conv, *level),
        WriteOp::SetDnd { user, dnd } => set_dnd(tx, *user, *dnd),
        WriteOp::SetAvatarImage {
            user,
            image,
            reservation,
        } => {
            let previous = user_row(tx, *user)?.user.avatar_image;
            tx.exec(
                "UPDATE users SET avatar_image = ?2 WHERE id = ?1",
                params![user, image],
            )?;
            if let Some(reservation) = reservation {
                tx.exec(rules::END_RESERVATION, params![reservation])?;
            }
            if let Some(previous) = previous.filter(|p| Some(p) != image.as_ref()) {
                doom_unnamed(tx, &previous)?;
            }
            Ok(WriteOutcome::UserUpdated(user_row(tx, *user)?))
        }
        WriteOp::ReserveUpload {
            id,
            user,
            size,
            quota,
            now,
        } => {
            let used: i64 = tx.row(rules::QUOTA_USED_SQL, params![user], |r| r.get(0))?;
            rules::check_quota(*quota, used.max(0) as u64, *size)?;
            tx.exec(
                rules::INSERT_RESERVATION,
                params![id, user, *size as i64, now],
            )?;
            Ok(WriteOutcome::uploads_changed())
        }
        WriteOp::HoldBlobs {
            reservation,
            blob,
            thumbnail,
        } => {
            let doomed = tx
                .row(rules::DOOMED_SQL, params![blob, thumbnail], |_| Ok(()))
                .optional()?;
            if doomed.is_some() {
                return Err(rules::blob_doomed());
            }
            if tx.exec(rules::HOLD_BLOBS_SQL, params![blob, thumbnail, reservation])? == 0 {
                return Err(rules::reservation_gone());
            }
            Ok(WriteOutcome::uploads_changed())
        }
        WriteOp::EndReservation { reservation } => {
            tx.exec(rules::END_RESERVATION, params![reservation])?;
            Ok(WriteOutcome::uploads_changed())
        }
        WriteOp::SweepUploads { before } => {
            tx.exec(rules::EXPIRE_RESERVATIONS, params![before])?;
            let unattached = tx.rows(
                rules::UNATTACHED_FILES_SQL,
                params![before, rules::SWEEP_BATCH],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                },
            )?;
            let mut removed = 0;
            let mut freed = Vec::new();
            for (id, blob, thumbnail) in unattached {
                if tx.exec(rules::DELETE_UNATTACHED_FILE, params![id])? > 0 {
                    removed += 1;
                    freed.push(blob);
                    freed.extend(thumbnail);
                }
            }
            freed.sort_unstable();
            freed.dedup();
            for blob in freed {
                doom_unnamed(tx, &blob)?;
            }
            let doomed: Vec<String> =
                tx.rows(rules::DOOMED_BLOBS_SQL, params![rules::SWEEP_BATCH], |r| {
                    r.get(0)
                })?;
            Ok(WriteOutcome::Uploads { removed, doomed })
        }
        WriteOp::ForgetBlobs { blobs } => {
            for blob in blobs {
                tx.exec(rules::FORGET_BLOB, params![blob])?;
            }
            Ok(WriteOutcome::uploads_changed())
        }
        WriteOp::AddFile {
            file,
            reservation,
            now,
        } => {
            if tx.exec(rules::END_RESERVATION, params![reservation])? == 0 {
                return Err(rules::reservation_gone());
            }
            let a = &file.attachment;
            tx.exec(
                rules::INSERT_FILE,
                params![
                    a.id,
                    file.uploader,
                    file.blob,
                    a.name,
                    a.media_type,
                    a.size as i64,
                    a.width,
                    a.height,
                    a.thumbnail,
                    file.thumbnail_type,
                    now
                ],
            )?;
            Ok(WriteOutcome::FileAdded {
                uploader: file.uploader,
            })
        }
    }
}

/// Mark `blob` for deletion from the blob store when nothing names it any more (no upload,
/// profile picture or reservation: [`rules::BLOB_NAMED_SQL`]); the sweep deletes it.
fn doom_unnamed(tx: &Connection, blob: &str) -> Result<(), rusqlite::Error> {
    let named: bool = tx.row(rules::BLOB_NAMED_SQL, params![blob], |r| r.get(0))?;
    if !named {
        tx.exec(rules::DOOM_BLOB, params![blob])?;
    }
    Ok(())
}

/// A row of [`rules::FILE_FOR_SQL`].
fn file_from_row(r: &rusqlite::Row<'_>) -> Result<FileRow, rusqlite::Error> {
    Ok(FileRow {
        attachment: Attachment {
            id: r.get(0)?,
            name: r.get(1)?,
            media_type: r.get(2)?,
            size: r.get::<_, i64>(3)?.max(0) as u64,
            width: r.get(4)?,
            height: r.get(5)?,
            thumbnail: r.get(6)?,
        },
        uploader: r.get(7)?,
        blob: r.get(8)?,
        thumbnail_type: r.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> SqliteStore {
        SqliteStore::open(&dir.join(DB_FILE), OpenOptions::default())
            .unwrap()
            .0
    }

    /// Queue a write and wait for its outcome.
    fn commit(
        store: &SqliteStore,
        op: WriteOp,
    ) -> impl std::future::Future<Output = Result<WriteOutcome, StoreError>> {
        (store as &dyn Storage).write_then(op, |_| {})
    }

    async fn register(store: &SqliteStore, name: &str) -> UserId {
        let now = crate::server::clock::Clock::system().now_ms();
        let op = WriteOp::Register {
            mode: crate::protocol::Registration::Open,
            invite: None,
            username: name.into(),
            display_name: name.into(),
            avatar: "owl".into(),
            password_hash: "x".into(),
            token_hash: crate::server::auth::new_token().1,
            now,
            expires_at: now + 1_000,
            device_hash: crate::server::auth::new_token().1,
            label: None,
        };
        match commit(store, op).await.unwrap() {
            WriteOutcome::Registered(row) => row.id,
            other => panic!("{other:?}"),
        }
    }

    /// The steps SQLite plans for `sql` (`EXPLAIN QUERY PLAN`'s detail column), in order.
    fn query_plan<P: rusqlite::Params>(
        conn: &Connection,
        sql: &str,
        params: P,
    ) -> rusqlite::Result<Vec<String>> {
        conn.rows(&format!("EXPLAIN QUERY PLAN {sql}"), params, |r| r.get(3))
    }

    /// The deleted-peer check runs before every message is stored: SQLite must read the one
    /// conversation row first (its kind rules out rooms) rather than walk the members, which
    /// for the default room are every user.
    #[test]
    fn the_deleted_peer_check_reads_the_conversation_before_any_member() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let conn = open_conn(&dir.path().join(DB_FILE)).unwrap();
        let plan = query_plan(&conn, rules::DELETED_PEER_SQL, params![1, 2]).unwrap();
        assert!(
            plan.first()
                .is_some_and(|step| step.starts_with("SEARCH c USING INTEGER PRIMARY KEY")),
            "{plan:?}"
        );
    }

    /// Every node reads the admins every 2 s: SQLite must walk the partial index of admins
    /// (migration 0012), whose size is the number of admins, rather than scan every user.
    #[test]
    fn the_admin_poll_reads_the_admins_index_not_every_user() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let conn = open_conn(&dir.path().join(DB_FILE)).unwrap();
        let plan = query_plan(&conn, access_sql::ADMINS, []).unwrap();
        assert!(
            !plan.is_empty() && plan.iter().all(|step| step.contains("INDEX users_admins")),
            "{plan:?}"
        );
    }

    #[test]
    fn migrating_a_server_with_users_makes_its_oldest_live_account_admin() {
        /// The migrations before the one that adds admins (0008).
        const BEFORE_ADMINS: usize = 7;
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_conn(&dir.path().join(DB_FILE)).unwrap();
        for sql in &MIGRATIONS[..BEFORE_ADMINS] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", BEFORE_ADMINS as i64)
            .unwrap();
        // Inserted out of age order: age decides, not the id. The oldest is deleted.
        for (name, created_at, deleted_at) in
            [("bob", 5, None), ("alice", 2, None), ("gone", 1, Some(3))]
        {
            conn.exec(
                "INSERT INTO users (username, name_key, fold_key, skeleton, display_name, \
                 avatar, password_hash, created_at, deleted_at) \
                 VALUES (?1, ?1, ?1, ?1, ?1, '', '', ?2, ?3)",
                params![name, created_at, deleted_at],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let admins: Vec<String> = conn
            .rows("SELECT username FROM users WHERE admin = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(admins, ["alice"]);
    }

    fn send(user: UserId, target: Target, cmid: Uuid) -> WriteOp {
        WriteOp::Send {
            user,
            target,
            client_msg_id: cmid,
            text: "t".into(),
            now: 1,
            reply_to: None,
            action: None,
            attachments: Vec::new(),
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
            match commit(&store, send(alice, Target::Conv(general), Uuid::new_v4()))
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
        let first = commit(&store, send(alice, Target::Conv(general), cmid))
            .await
            .unwrap();
        let again = commit(&store, send(alice, Target::Conv(general), cmid))
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
            commit(&store, send(who, Target::Conv(general), Uuid::new_v4()))
                .await
                .unwrap();
        }
        let dm = match commit(
            &store,
            send(bob, Target::To("alice".into()), Uuid::new_v4()),
        )
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
            commit(&store, WriteOp::Read { user, conv, seq })
                .await
                .unwrap();
        }
        assert_eq!(counts(bob).await, [(general, 2, 3), (dm, 0, 0)]);
        assert_eq!(counts(alice).await, [(general, 1, 2), (dm, 0, 1)]);

        let plan: Vec<String> = store
            .read(move |c| {
                query_plan(
                    c,
                    "SELECT count(*) FROM messages m WHERE m.conv_id = 1 \
                     AND m.sender_id = 2 AND m.seq > 0",
                    [],
                )
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
        let ok1 = commit(&store, send(alice, Target::Conv(1), Uuid::new_v4()));
        let bad = commit(&store, send(alice, Target::Conv(999), Uuid::new_v4()));
        let ok2 = commit(&store, send(alice, Target::Conv(1), Uuid::new_v4()));
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

    /// A write alone in its batch runs without a savepoint: when it fails after writing (a
    /// first DM is created, then an attachment is refused), nothing of it stays.
    #[tokio::test]
    async fn a_rejected_write_alone_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let alice = register(&store, "alice").await;
        register(&store, "bob").await;
        let mut op = send(alice, Target::To("bob".into()), Uuid::new_v4());
        if let WriteOp::Send { attachments, .. } = &mut op {
            attachments.push("no-such-file".into());
        }
        let refused = commit(&store, op).await;
        assert!(
            matches!(refused, Err(StoreError::Rejected(..))),
            "{refused:?}"
        );
        let dms: i64 = store
            .read(|c| {
                c.row(
                    "SELECT count(*) FROM conversations WHERE kind = 'dm'",
                    [],
                    |r| r.get(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(dms, 0, "the DM made before the refusal was rolled back");
        // The writer goes on: the same DM without the attachment is made once.
        let sent = commit(
            &store,
            send(alice, Target::To("bob".into()), Uuid::new_v4()),
        )
        .await;
        assert!(
            matches!(
                sent,
                Ok(WriteOutcome::Sent {
                    new_dm: Some(_),
                    ..
                })
            ),
            "{sent:?}"
        );
    }

    #[tokio::test]
    async fn dms_are_created_once_and_rules_for_leaving_hold() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let alice = register(&store, "alice").await;
        let bob = register(&store, "Bob").await;
        let first = commit(
            &store,
            send(alice, Target::To("bob".into()), Uuid::new_v4()),
        )
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
        let reply = commit(
            &store,
            send(bob, Target::To("ALICE".into()), Uuid::new_v4()),
        )
        .await
        .unwrap();
        assert!(
            matches!(reply, WriteOutcome::Sent { new_dm: None, ref message, .. } if message.conv == dm && message.seq == 2)
        );
        let leave_dm = commit(
            &store,
            WriteOp::Leave {
                user: bob,
                conv: dm,
            },
        )
        .await;
        assert!(matches!(
            leave_dm,
            Err(StoreError::Rejected(ErrorCode::Forbidden, _))
        ));
        let leave_general = commit(&store, WriteOp::Leave { user: bob, conv: 1 }).await;
        assert!(matches!(
            leave_general,
            Err(StoreError::Rejected(ErrorCode::Forbidden, _))
        ));
        let carol = register(&store, "carol").await;
        let peek = commit(
            &store,
            WriteOp::Read {
                user: carol,
                conv: dm,
                seq: 1,
            },
        )
        .await;
        assert!(matches!(
            peek,
            Err(StoreError::Rejected(ErrorCode::NotFound, _))
        ));
        store.shutdown();
        // Everything survives a reopen: the snapshot has the DM with both members.
        let (_, snapshot) =
            SqliteStore::open(&dir.path().join(DB_FILE), OpenOptions::default()).unwrap();
        let dm_row = snapshot.convs.iter().find(|c| c.id == dm).unwrap();
        assert_eq!(dm_row.kind, ConvKind::Dm);
        assert_eq!(dm_row.last_seq, 2);
        assert_eq!(dm_row.members.len(), 2);
    }
}
