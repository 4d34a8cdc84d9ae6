//! PostgreSQL storage (`--store postgres://...`, cargo feature `postgres`): durable state shared
//! by several server nodes, with exactly the guarantees of the SQLite store.
//!
//! - **Gapless seqs in commit order, whichever node commits.** A send takes its seq with
//!   `UPDATE conversations SET last_seq = last_seq + 1 ... RETURNING`, which locks the
//!   conversation's row until COMMIT: a send on another node waits, then takes the next one.
//! - **Ack after COMMIT.** Each node has one writer task that commits what is queued in batches
//!   (one transaction, a savepoint per write, so a refused write rolls back alone), with
//!   `synchronous_commit` on (the server's default, never lowered here), and runs the
//!   completions after the COMMIT returned, in commit order.
//! - **No deadlocks between nodes' batches.** A batch first locks the conversations it names,
//!   in ascending id order (one fixed order for every node); should PostgreSQL still pick it as
//!   a deadlock victim (a DM created by name), the whole batch runs again: nothing of an
//!   aborted transaction was committed.
//! - **A retry returns the original**, whichever node it reaches: `(sender, client_msg_id)` is
//!   unique; a send that finds it taken (a retry committed meanwhile by another node) returns
//!   the stored message.
//! - **Migrations** are numbered .sql files (`postgres/`), applied at start under an advisory
//!   lock, so nodes starting together apply each once.

use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row, Transaction};
use uuid::Uuid;

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
    BackendError, Completion, ConvRow, FailureKind, FileRow, SessionRow, Snapshot, Standing,
    Storage, StoreError, StoreFuture, UserId, UserRow, WriteOp, WriteOutcome,
};

/// The schema, one file per version.
const MIGRATIONS: &[&str] = &[
    include_str!("postgres/0001_init.sql"),
    include_str!("postgres/0002_message_actions.sql"),
    include_str!("postgres/0003_access.sql"),
    include_str!("postgres/0004_files.sql"),
    include_str!("postgres/0005_server_id.sql"),
    include_str!("postgres/0006_upload_reservations.sql"),
    include_str!("postgres/0007_admins_index.sql"),
];
/// The advisory lock nodes take while migrating ("natter" in ASCII).
const MIGRATION_LOCK: i64 = 0x6e61_7474_6572;
/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;
/// Times a batch runs again after PostgreSQL aborted it (deadlock, serialisation).
const MAX_RETRIES: u32 = 5;
/// Pooled connections for reads and the writer.
const POOL_SIZE: usize = 16;

fn backend(e: tokio_postgres::Error) -> BackendError {
    let kind = match e.code() {
        Some(c) if *c == SqlState::DISK_FULL => FailureKind::Full,
        Some(c) if *c == SqlState::DATA_CORRUPTED || *c == SqlState::INDEX_CORRUPTED => {
            FailureKind::Corrupt
        }
        _ => FailureKind::Other,
    };
    BackendError::new(kind, e)
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Backend(backend(e))
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => e.into(),
        other => StoreError::Backend(BackendError::new(FailureKind::Other, other)),
    }
}

/// Whether PostgreSQL aborted the transaction for a reason that running it again can cure.
fn is_retryable(e: &BackendError) -> bool {
    e.source_ref()
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        .is_some_and(|c| {
            *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
        })
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

struct Job {
    op: WriteOp,
    done: Completion,
}

/// The PostgreSQL store of one node.
pub struct PgStore {
    pool: Pool,
    writer: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    /// Told when the writer has committed everything and stopped.
    finished: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl PgStore {
    /// Connect to `url`, apply the migrations, and start this node's writer on the current
    /// Tokio runtime. Call it inside one.
    pub fn open(url: &str) -> Result<(PgStore, Snapshot), StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Open(format!("bad PostgreSQL URL: {e}")))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::Open("PostgreSQL needs a Tokio runtime".into()))?;
        // Setting up is async but `open` is not: do it on a thread with a runtime of its own.
        let setup_config = config.clone();
        let snapshot = std::thread::scope(|s| {
            s.spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::Open(e.to_string()))?
                    .block_on(setup(setup_config))
            })
            .join()
            .unwrap_or_else(|_| Err(StoreError::Open("setting up panicked".into())))
        })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Open(e.to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (finished_tx, finished) = std::sync::mpsc::channel();
        runtime.spawn(write_loop(pool.clone(), rx, finished_tx));
        Ok((
            PgStore {
                pool,
                writer: Mutex::new(Some(tx)),
                finished: Mutex::new(Some(finished)),
            },
            snapshot,
        ))
    }
}

/// Migrate (under the advisory lock), make sure the default room exists, read the snapshot.
async fn setup(config: tokio_postgres::Config) -> Result<Snapshot, StoreError> {
    let (mut client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| StoreError::Open(format!("cannot connect to PostgreSQL: {e}")))?;
    let driver = tokio::spawn(connection);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS natter_schema (version INTEGER NOT NULL)")
        .await?;
    let version: i32 = match client
        .query_opt("SELECT version FROM natter_schema", &[])
        .await?
    {
        Some(row) => row.get(0),
        None => {
            client
                .execute("INSERT INTO natter_schema (version) VALUES (0)", &[])
                .await?;
            0
        }
    };
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "UPDATE natter_schema SET version = $1",
            &[&((i + 1) as i32)],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version = i + 1, "applied PostgreSQL migration");
    }
    let general = Name::of_stored(limits::DEFAULT_ROOM);
    client
        .execute(
            "INSERT INTO conversations (kind, name, name_key, fold_key, skeleton, created_at) \
             VALUES ('room', $1, $2, $2, $3, 0) ON CONFLICT (name_key) DO NOTHING",
            &[&general.display, &general.key, &general.skeleton],
        )
        .await?;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    let snapshot = load_snapshot(&client).await?;
    drop(client);
    let _ = driver.await;
    Ok(snapshot)
}

fn user_from_row(r: &Row) -> UserRow {
    UserRow {
        id: r.get(0),
        user: User {
            username: r.get(1),
            display_name: r.get(2),
            avatar: r.get(3),
            deleted: r.get(4),
            avatar_image: r.get(5),
            admin: r.get(6),
        },
    }
}

fn kind_of(text: &str) -> ConvKind {
    if text == "dm" {
        ConvKind::Dm
    } else {
        ConvKind::Room
    }
}

async fn load_snapshot(client: &tokio_postgres::Client) -> Result<Snapshot, StoreError> {
    let users = client
        // Accounts waiting for approval are nobody's business until approved.
        .query(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE NOT pending"),
            &[],
        )
        .await?
        .iter()
        .map(user_from_row)
        .collect();
    let mut convs: Vec<ConvRow> = client
        .query(
            "SELECT id, kind, coalesce(name, ''), last_seq, private, created_by FROM conversations \
             ORDER BY id",
            &[],
        )
        .await?
        .into_iter()
        .map(|r| ConvRow {
            id: r.get(0),
            kind: kind_of(r.get(1)),
            name: r.get(2),
            last_seq: r.get(3),
            private: r.get(4),
            created_by: r.get(5),
            members: Vec::new(),
        })
        .collect();
    let index: std::collections::HashMap<ConvId, usize> =
        convs.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
    for r in client
        .query("SELECT conv_id, user_id, last_read FROM members", &[])
        .await?
    {
        if let Some(i) = index.get(&r.get::<_, i64>(0)) {
            convs[*i].members.push((r.get(1), r.get(2)));
        }
    }
    let levels = client
        .query(attention_sql::LOAD_LEVELS, &[])
        .await?
        .into_iter()
        .map(|r| {
            // The table's CHECK admits only `mentions` and `nothing`.
            let level = NotifyLevel::from_name(r.get(2)).unwrap_or(NotifyLevel::Nothing);
            (r.get(0), r.get(1), level)
        })
        .collect();
    let dnd = client
        .query(attention_sql::LOAD_DND, &[])
        .await?
        .into_iter()
        .map(|r| (r.get(0), Dnd { until: r.get(1) }))
        .collect();
    let server_id = client
        .query_one("SELECT id FROM server_identity", &[])
        .await?
        .get(0);
    Ok(Snapshot {
        server_id,
        users,
        convs,
        levels,
        dnd,
    })
}

/// The writer: commit what is queued, in batches, then run each write's completion in commit
/// order. Ends when the store is shut down and the queue is empty.
async fn write_loop(
    pool: Pool,
    mut rx: mpsc::UnboundedReceiver<Job>,
    finished: std::sync::mpsc::Sender<()>,
) {
    let (mut ops, mut dones) = (Vec::new(), Vec::new());
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            ops.push(job.op);
            dones.push(job.done);
            if ops.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let results = run_batch(&pool, &ops).await;
        ops.clear();
        hold_deliveries(|| {
            for (done, result) in dones.drain(..).zip(results) {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(result))).is_err()
                {
                    tracing::error!("a write's completion panicked; continuing");
                }
            }
        });
    }
    tracing::debug!("PostgreSQL writer finished");
    let _ = finished.send(());
}

async fn run_batch(pool: &Pool, ops: &[WriteOp]) -> Vec<Result<WriteOutcome, StoreError>> {
    let mut attempt = 0;
    loop {
        match try_batch(pool, ops).await {
            Ok(results) => return results,
            Err(e) if attempt < MAX_RETRIES && is_retryable(&e) => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "batch aborted by PostgreSQL; running it again");
            }
            Err(e) => {
                tracing::error!(error = %e, "the batch failed; every write of it is reported failed");
                return ops
                    .iter()
                    .map(|_| Err(StoreError::Backend(e.clone())))
                    .collect();
            }
        }
    }
}

/// One transaction for the batch: Err when the transaction as a whole failed (nothing of it
/// was committed), else each write's own result.
async fn try_batch(
    pool: &Pool,
    ops: &[WriteOp],
) -> Result<Vec<Result<WriteOutcome, StoreError>>, BackendError> {
    let as_backend = |e: StoreError| match e {
        StoreError::Backend(e) => e,
        other => BackendError::new(FailureKind::Other, other),
    };
    let batch = ops.len() as u64;
    latency_trace::record(Mark::CommitBegin, batch, 0);
    let mut client = pool.get().await.map_err(|e| as_backend(pool_error(e)))?;
    let mut tx = client.transaction().await.map_err(backend)?;
    let mut convs: Vec<ConvId> = ops
        .iter()
        .filter_map(|op| match op {
            WriteOp::Send {
                target: Target::Conv(c),
                ..
            }
            | WriteOp::Read { conv: c, .. } => Some(*c),
            _ => None,
        })
        .collect();
    convs.sort_unstable();
    convs.dedup();
    if !convs.is_empty() {
        tx.execute(
            "SELECT id FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&convs],
        )
        .await
        .map_err(backend)?;
    }
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        let mut sp = tx.savepoint("write").await.map_err(backend)?;
        match apply(&mut sp, op).await {
            Ok(outcome) => {
                sp.commit().await.map_err(backend)?;
                results.push(Ok(outcome));
            }
            Err(StoreError::Backend(e)) if is_retryable(&e) => return Err(e),
            Err(e) => {
                sp.rollback().await.map_err(backend)?;
                results.push(Err(e));
            }
        }
    }
    latency_trace::record(Mark::CommitCall, batch, 0);
    let committed = tx.commit().await;
    latency_trace::record(Mark::CommitDone, batch, 0);
    committed.map_err(backend)?;
    Ok(results)
}

async fn find_name(
    tx: &impl tokio_postgres::GenericClient,
    names: Names,
    raw: &str,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let key = crate::names::key(raw);
    Ok(tx
        .query_opt(names.find_sql(), &[&key, &raw])
        .await?
        .map(|r| r.get(0)))
}

async fn refuse_clash(tx: &Transaction<'_>, names: Names, name: &Name) -> Result<(), StoreError> {
    let clash = tx
        .query_opt(names.clash_sql(), &[&name.key, &name.skeleton])
        .await?
        .map(|r| (r.get::<_, String>(0), r.get::<_, bool>(1)));
    names.refuse(name, clash)
}

async fn add_device(
    tx: &Transaction<'_>,
    user: UserId,
    hash: &TokenHash,
    now: Millis,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO devices (hash, user_id, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (hash) DO NOTHING",
        &[&&hash[..], &user, &now],
    )
    .await?;
    tx.execute(
        "DELETE FROM devices WHERE user_id = $1 AND hash NOT IN \
         (SELECT hash FROM devices WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2)",
        &[&user, &MAX_DEVICES_PER_USER],
    )
    .await?;
    Ok(())
}

/// A row of [`rules::FILE_FOR_SQL`].
fn file_from_row(r: &Row) -> FileRow {
    let pixels = |i: usize| {
        r.get::<_, Option<i64>>(i)
            .and_then(|n| u32::try_from(n).ok())
    };
    FileRow {
        attachment: Attachment {
            id: r.get(0),
            name: r.get(1),
            media_type: r.get(2),
            size: r.get::<_, i64>(3).max(0) as u64,
            width: pixels(4),
            height: pixels(5),
            thumbnail: r.get(6),
        },
        uploader: r.get(7),
        blob: r.get(8),
        thumbnail_type: r.get(9),
    }
}

fn message_from_row(r: &Row) -> Message {
    let cmid: String = r.get(6);
    Message {
        id: r.get(0),
        conv: r.get(1),
        seq: r.get(2),
        sender: r.get(3),
        text: r.get(4),
        time: r.get(5),
        client_msg_id: Uuid::parse_str(&cmid).unwrap_or_default(),
        reply_to: r.get(7),
        action: rules::action_from_columns(r.get(8), r.get(9), r.get(10)),
        edited: r.get(11),
        deleted: r.get(12),
        attachments: Vec::new(),
    }
}

/// Give an ascending page of `conv`'s messages the files they carry.
async fn with_files(
    c: &impl tokio_postgres::GenericClient,
    conv: ConvId,
    messages: &mut [Message],
) -> Result<(), tokio_postgres::Error> {
    let Some((first, last)) = rules::seq_span(messages) else {
        return Ok(());
    };
    let files = c
        .query(rules::MESSAGE_FILES_SQL, &[&conv, &first, &last])
        .await?
        .iter()
        .map(|r| (r.get(rules::FILE_COLUMN_COUNT), file_from_row(r).attachment))
        .collect();
    rules::attach(messages, files);
    Ok(())
}

async fn conv_kind(
    tx: &Transaction<'_>,
    conv: ConvId,
) -> Result<Option<(ConvKind, String)>, tokio_postgres::Error> {
    Ok(tx
        .query_opt(
            "SELECT kind, coalesce(name_key, '') FROM conversations WHERE id = $1",
            &[&conv],
        )
        .await?
        .map(|r| (kind_of(r.get(0)), r.get(1))))
}

async fn is_banned(
    tx: &Transaction<'_>,
    conv: ConvId,
    user: UserId,
) -> Result<bool, tokio_postgres::Error> {
    Ok(tx
        .query_one(rules::IS_BANNED, &[&conv, &user])
        .await?
        .get(0))
}

/// `user` enters room `conv` (joining, or added by a member): refused when banned from it;
/// true when they were not a member before.
async fn enter_room(tx: &Transaction<'_>, conv: ConvId, user: UserId) -> Result<bool, StoreError> {
    if is_banned(tx, conv, user).await? {
        return Err(rules::banned_from_room());
    }
    let n = tx
        .execute(
            "INSERT INTO members (conv_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&conv, &user],
        )
        .await?;
    Ok(n > 0)
}

/// The kind of a conversation as someone outside it may know it ([`rules::VISIBLE_KIND`]).
async fn visible_kind(
    tx: &Transaction<'_>,
    conv: ConvId,
) -> Result<Option<ConvKind>, tokio_postgres::Error> {
    Ok(tx
        .query_opt(rules::VISIBLE_KIND, &[&conv])
        .await?
        .map(|r| kind_of(r.get(0))))
}

async fn is_member(
    tx: &Transaction<'_>,
    conv: ConvId,
    user: UserId,
) -> Result<bool, tokio_postgres::Error> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM members WHERE conv_id = $1 AND user_id = $2",
            &[&conv, &user],
        )
        .await?
        .is_some())
}

/// The live sessions of `user` at `now`, newest first.
async fn sessions(
    c: &impl tokio_postgres::GenericClient,
    user: UserId,
    now: Millis,
) -> Result<Vec<SessionRow>, tokio_postgres::Error> {
    Ok(c.query(
        "SELECT hash, label, created_at, expires_at FROM tokens \
             WHERE user_id = $1 AND NOT revoked AND expires_at > $2 ORDER BY created_at DESC",
        &[&user, &now],
    )
    .await?
    .into_iter()
    .map(|r| SessionRow {
        token_hash: r.get::<_, Vec<u8>>(0).try_into().unwrap_or([0; 32]),
        label: r.get(1),
        created_at: r.get(2),
        expires_at: r.get(3),
    })
    .collect())
}

/// Revoke every live session of `user` but `keep`; the hashes revoked.
async fn revoke_sessions(
    tx: &Transaction<'_>,
    user: UserId,
    keep: Option<&TokenHash>,
    now: Millis,
) -> Result<Vec<TokenHash>, tokio_postgres::Error> {
    let revoked: Vec<TokenHash> = sessions(tx, user, now)
        .await?
        .into_iter()
        .map(|s| s.token_hash)
        .filter(|h| Some(h) != keep)
        .collect();
    for hash in &revoked {
        tx.execute(
            "UPDATE tokens SET revoked = TRUE WHERE hash = $1",
            &[&&hash[..]],
        )
        .await?;
    }
    Ok(revoked)
}

/// A live (not deleted) user's row.
async fn user_row(tx: &Transaction<'_>, user: UserId) -> Result<UserRow, StoreError> {
    tx.query_opt(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL"),
        &[&user],
    )
    .await?
    .as_ref()
    .map(user_from_row)
    .ok_or_else(rules::account_deleted)
}

/// `forbidden` when the other member of DM `conv` deleted their account.
async fn refuse_deleted_peer(
    tx: &Transaction<'_>,
    conv: ConvId,
    user: UserId,
) -> Result<(), StoreError> {
    let deleted = tx
        .query_opt(rules::DELETED_PEER_SQL, &[&conv, &user])
        .await?
        .is_some();
    if deleted {
        return Err(rules::peer_deleted());
    }
    Ok(())
}

async fn sent_before(
    tx: &Transaction<'_>,
    user: UserId,
    cmid: &str,
) -> Result<Option<Message>, tokio_postgres::Error> {
    let Some(mut message) = tx
        .query_opt(
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id \
                 WHERE m.sender_id = $1 AND m.client_msg_id = $2"
            ),
            &[&user, &cmid],
        )
        .await?
        .as_ref()
        .map(message_from_row)
    else {
        return Ok(None);
    };
    with_files(tx, message.conv, std::slice::from_mut(&mut message)).await?;
    Ok(Some(message))
}

/// The advisory lock that orders, across nodes, a sweep's look at which blobs nothing names
/// against an upload naming its blobs ("blobs"): an upload either names a blob before the
/// sweep looks (the sweep keeps it) or finds it doomed and waits until it is gone.
const BLOBS_LOCK: i64 = 0x62_6c6f_6273;

async fn lock_blobs(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&BLOBS_LOCK])
        .await?;
    Ok(())
}

/// The profile picture of live user `user`, their row locked to COMMIT (so a change of picture
/// on another node waits, then reads the picture this one set); `account_deleted` for a deleted
/// or unknown user.
async fn lock_picture(tx: &Transaction<'_>, user: UserId) -> Result<Option<String>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT avatar_image FROM users WHERE id = $1 AND deleted_at IS NULL \
             FOR NO KEY UPDATE",
            &[&user],
        )
        .await?;
    Ok(row.ok_or_else(rules::account_deleted)?.get(0))
}

/// Mark `blob` for deletion from the blob store when nothing names it any more (no upload,
/// profile picture or reservation: [`rules::BLOB_NAMED_SQL`]); the sweep deletes it. The caller
/// holds [`lock_blobs`], so an upload naming the blob meanwhile is seen or finds it doomed.
async fn doom_unnamed(tx: &Transaction<'_>, blob: &str) -> Result<(), StoreError> {
    let named: bool = tx.query_one(rules::BLOB_NAMED_SQL, &[&blob]).await?.get(0);
    if !named {
        tx.execute(rules::DOOM_BLOB, &[&blob]).await?;
    }
    Ok(())
}

/// The advisory lock a registration takes while the server has no account yet ("first").
const FIRST_ACCOUNT_LOCK: i64 = 0x66_6972_7374;

/// Whether the account about to be inserted is the server's first (and so its admin). Two
/// first registrations may race on several nodes: while no account is seen, each takes an
/// advisory lock held to COMMIT and looks again, and READ COMMITTED's next statement sees the
/// winner's committed row.
async fn first_account(tx: &Transaction<'_>) -> Result<bool, StoreError> {
    let any_user = access_sql::ANY_USER;
    if tx.query_one(any_user, &[]).await?.get::<_, bool>(0) {
        return Ok(false);
    }
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FIRST_ACCOUNT_LOCK])
        .await?;
    Ok(!tx.query_one(any_user, &[]).await?.get::<_, bool>(0))
}

/// Make `user` a member of `general` (a new or newly approved account).
async fn join_general(tx: &Transaction<'_>, user: UserId) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO members (conv_id, user_id) \
         SELECT id, $1 FROM conversations WHERE kind = 'room' AND name_key = $2",
        &[&user, &limits::DEFAULT_ROOM],
    )
    .await?;
    Ok(())
}

/// Refuse unless `user` is a live admin, as the store has it now.
async fn require_admin(tx: &Transaction<'_>, user: UserId) -> Result<(), StoreError> {
    let admin = tx
        .query_opt(access_sql::STANDING, &[&user])
        .await?
        .map(|r| r.get::<_, bool>(0));
    rules::require_admin(admin)
}

async fn apply(tx: &mut Transaction<'_>, op: &WriteOp) -> Result<WriteOutcome, StoreError> {
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
            let name = Name::of_stored(username);
            refuse_clash(tx, Names::Users, &name).await?;
            let first = first_account(tx).await?;
            let invited: Option<i64> = match invite {
                Some(hash) if !first => Some(
                    tx.query_opt(access_sql::REDEEM_INVITE, &[now, &&hash[..]])
                        .await?
                        .ok_or_else(rules::invalid_invite)?
                        .get(0),
                ),
                _ => None,
            };
            let admission = rules::admission(*mode, first, invited.is_some())?;
            let admin = admission == Admission::Admin;
            let pending = admission == Admission::Pending;
            let inserted = tx
                .query_one(
                    "INSERT INTO users (username, name_key, fold_key, skeleton, display_name, \
                     avatar, password_hash, created_at, admin, pending) \
                     VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                    &[
                        username,
                        &name.key,
                        &name.skeleton,
                        display_name,
                        avatar,
                        password_hash,
                        now,
                        &admin,
                        &pending,
                    ],
                )
                .await;
            let id: i64 = match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::rejected(
                        ErrorCode::Conflict,
                        "username is taken",
                    ))
                }
                other => other?.get(0),
            };
            if let Some(invite) = invited {
                tx.execute(access_sql::INVITE_USED_BY, &[&id, &invite])
                    .await?;
            }
            if pending {
                return Ok(WriteOutcome::RegisteredPending);
            }
            join_general(tx, id).await?;
            tx.execute(
                "INSERT INTO tokens (hash, user_id, created_at, expires_at, label) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&&token_hash[..], &id, now, expires_at, label],
            )
            .await?;
            add_device(tx, id, device_hash, *now).await?;
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
            let user = find_name(tx, Names::Users, username)
                .await?
                .ok_or_else(|| StoreError::rejected(ErrorCode::NotFound, "no such user"))?;
            let row = tx
                .query_opt(
                    &format!(
                        "UPDATE users SET admin = $2 WHERE id = $1 AND deleted_at IS NULL \
                         RETURNING {USER_COLUMNS}"
                    ),
                    &[&user, admin],
                )
                .await?
                .ok_or_else(rules::account_deleted)?;
            Ok(WriteOutcome::UserUpdated(user_from_row(&row)))
        }
        WriteOp::CreateInvite {
            by,
            hash,
            now,
            expires_at,
        } => {
            require_admin(tx, *by).await?;
            let id: i64 = tx
                .query_one(
                    access_sql::CREATE_INVITE,
                    &[&&hash[..], by, now, expires_at],
                )
                .await?
                .get(0);
            let created_by: String = tx
                .query_one("SELECT username FROM users WHERE id = $1", &[by])
                .await?
                .get(0);
            Ok(WriteOutcome::InviteCreated { id, created_by })
        }
        WriteOp::RevokeInvite { by, id, now } => {
            require_admin(tx, *by).await?;
            if tx.execute(access_sql::REVOKE_INVITE, &[id, now]).await? == 0 {
                return Err(rules::no_such_invite());
            }
            Ok(WriteOutcome::InviteRevoked)
        }
        WriteOp::Approve { by, username } => {
            require_admin(tx, *by).await?;
            let user = find_name(tx, Names::Users, username)
                .await?
                .ok_or_else(rules::not_pending)?;
            if tx.execute(access_sql::APPROVE, &[&user]).await? == 0 {
                return Err(rules::not_pending());
            }
            join_general(tx, user).await?;
            let row = tx
                .query_one(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
                    &[&user],
                )
                .await?;
            Ok(WriteOutcome::Registered(user_from_row(&row)))
        }
        WriteOp::SetBanned {
            by,
            username,
            banned,
            now,
        } => {
            require_admin(tx, *by).await?;
            let user = find_name(tx, Names::Users, username)
                .await?
                .ok_or_else(|| StoreError::rejected(ErrorCode::NotFound, "no such user"))?;
            tx.query_opt(access_sql::SET_BANNED, &[banned, &user])
                .await?
                .ok_or_else(rules::cannot_ban_admin)?;
            let token_hashes = if *banned {
                revoke_sessions(tx, user, None, *now).await?
            } else {
                Vec::new()
            };
            Ok(WriteOutcome::BanSet { token_hashes })
        }
        WriteOp::Reject { by, username } => {
            require_admin(tx, *by).await?;
            let user = find_name(tx, Names::Users, username)
                .await?
                .ok_or_else(rules::not_pending)?;
            if tx.execute(access_sql::REJECT, &[&user]).await? == 0 {
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
            tx.execute(
                "INSERT INTO tokens (hash, user_id, created_at, expires_at, label) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&&token_hash[..], user, now, expires_at, label],
            )
            .await?;
            if let Some(device_hash) = device_hash {
                add_device(tx, *user, device_hash, *now).await?;
            }
            Ok(WriteOutcome::LoggedIn)
        }
        WriteOp::Logout { token_hash } => {
            tx.execute(
                "UPDATE tokens SET revoked = TRUE WHERE hash = $1",
                &[&&token_hash[..]],
            )
            .await?;
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
            let keys = Name::of_stored(name);
            refuse_clash(tx, Names::Rooms, &keys).await?;
            let inserted = tx
                .query_one(
                    "INSERT INTO conversations (kind, name, name_key, fold_key, skeleton, \
                     created_at, private, created_by) \
                     VALUES ('room', $1, $2, $2, $3, $4, $5, $6) RETURNING id",
                    &[name, &keys.key, &keys.skeleton, now, private, user],
                )
                .await;
            let conv: i64 = match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::rejected(
                        ErrorCode::Conflict,
                        "a room with that name exists",
                    ))
                }
                other => other?.get(0),
            };
            tx.execute(
                "INSERT INTO members (conv_id, user_id) VALUES ($1, $2)",
                &[&conv, user],
            )
            .await?;
            Ok(WriteOutcome::RoomCreated {
                user: *user,
                conv,
                name: name.clone(),
                private: *private,
            })
        }
        WriteOp::AddMember { by, conv, username } => {
            if !is_member(tx, *conv, *by).await? {
                return Err(not_member(visible_kind(tx, *conv).await?));
            }
            rules::may_add(conv_kind(tx, *conv).await?.map(|k| k.0))?;
            let no_user = || StoreError::rejected(ErrorCode::NotFound, "no such user");
            let user = find_name(&*tx, Names::Users, username)
                .await?
                .ok_or_else(no_user)?;
            let live: bool = tx
                .query_one(
                    "SELECT deleted_at IS NULL AND NOT pending FROM users WHERE id = $1",
                    &[&user],
                )
                .await?
                .get(0);
            if !live {
                return Err(no_user());
            }
            Ok(WriteOutcome::Added {
                by: *by,
                user,
                conv: *conv,
                newly: enter_room(tx, *conv, user).await?,
            })
        }
        WriteOp::RemoveMember {
            by,
            conv,
            username,
            ban,
        } => {
            if !is_member(tx, *conv, *by).await? {
                return Err(not_member(visible_kind(tx, *conv).await?));
            }
            let moderator: bool = tx
                .query_one(&format!("SELECT {}", rules::MODERATES), &[conv, by])
                .await?
                .get(0);
            let key = conv_kind(tx, *conv).await?.map(|k| k.1).unwrap_or_default();
            rules::may_remove(moderator, &key)?;
            let user = find_name(&*tx, Names::Users, username)
                .await?
                .ok_or_else(|| StoreError::rejected(ErrorCode::NotFound, "no such user"))?;
            if *ban {
                tx.execute(
                    "INSERT INTO room_bans (conv_id, user_id) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                    &[conv, &user],
                )
                .await?;
            }
            let was_member = tx
                .execute(
                    "DELETE FROM members WHERE conv_id = $1 AND user_id = $2",
                    &[conv, &user],
                )
                .await?
                > 0;
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
            let conv = find_name(&*tx, Names::Rooms, room)
                .await?
                .ok_or_else(rules::no_such_room)?;
            let private: bool = tx
                .query_one("SELECT private FROM conversations WHERE id = $1", &[&conv])
                .await?
                .get(0);
            if private && !is_member(tx, conv, *user).await? {
                return Err(rules::no_such_room());
            }
            Ok(WriteOutcome::Joined {
                user: *user,
                conv,
                newly: enter_room(tx, conv, *user).await?,
            })
        }
        WriteOp::Leave { user, conv } => {
            let kind = conv_kind(tx, *conv).await?;
            rules::may_leave(kind.as_ref(), is_member(tx, *conv, *user).await?)?;
            let n = tx
                .execute(
                    "DELETE FROM members WHERE conv_id = $1 AND user_id = $2",
                    &[conv, user],
                )
                .await?;
            if n == 0 {
                return Err(not_member(visible_kind(tx, *conv).await?));
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
            let cmid = client_msg_id.to_string();
            if let Some(message) = sent_before(tx, *user, &cmid).await? {
                return Ok(WriteOutcome::Sent {
                    message,
                    fresh: false,
                    new_dm: None,
                });
            }
            let mut new_dm = None;
            let conv = match target {
                Target::Conv(conv) => {
                    if !is_member(tx, *conv, *user).await? {
                        return Err(not_member(visible_kind(tx, *conv).await?));
                    }
                    refuse_deleted_peer(tx, *conv, *user).await?;
                    *conv
                }
                Target::To(to) => {
                    let peer = find_name(&*tx, Names::Users, to)
                        .await?
                        .ok_or_else(|| StoreError::rejected(ErrorCode::NotFound, "no such user"))?;
                    let peer_row = tx
                        .query_one(
                            "SELECT deleted_at IS NOT NULL, pending FROM users WHERE id = $1",
                            &[&peer],
                        )
                        .await?;
                    let (peer_deleted, peer_pending): (bool, bool) =
                        (peer_row.get(0), peer_row.get(1));
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
                    let find = "SELECT id FROM conversations WHERE dm_key = $1";
                    let existing = tx.query_opt(find, &[&dm_key]).await?;
                    // Looked up first: an insert that conflicts still uses up an id. Two
                    // nodes may start the same DM at once: the unique dm_key lets one insert
                    // it, and the other finds it.
                    let created = match existing {
                        Some(_) => None,
                        None => {
                            tx.query_opt(
                                "INSERT INTO conversations (kind, dm_key, created_at) \
                                 VALUES ('dm', $1, $2) ON CONFLICT (dm_key) DO NOTHING \
                                 RETURNING id",
                                &[&dm_key, now],
                            )
                            .await?
                        }
                    };
                    match created {
                        Some(row) => {
                            let id: i64 = row.get(0);
                            tx.execute(
                                "INSERT INTO members (conv_id, user_id) VALUES ($1, $2), ($1, $3)",
                                &[&id, &lo, &hi],
                            )
                            .await?;
                            new_dm = Some((id, lo, hi));
                            id
                        }
                        None => tx.query_one(find, &[&dm_key]).await?.get(0),
                    }
                }
            };
            if let Some(target) = rules::target_of(*reply_to, action.as_ref()) {
                let found = tx
                    .query_opt(&rules::target_sql(), &[&conv, user, &target])
                    .await?
                    .map(|r| rules::TargetRow {
                        sender: r.get(0),
                        is_action: r.get(1),
                        deleted: r.get(2),
                        by_moderator: r.get(3),
                    });
                rules::may_act(*user, action.as_ref(), found)?;
            }
            let mut files = Vec::with_capacity(attachments.len());
            for id in attachments {
                // Locked to COMMIT against a sweep removing it meanwhile (FOR KEY SHARE does
                // not block other sends attaching it).
                let own = format!("{} FOR KEY SHARE OF f", rules::OWN_FILE_SQL);
                let file = tx.query_opt(&own, &[id, user]).await?;
                let file = file.ok_or_else(|| rules::not_your_file(id))?;
                files.push(file_from_row(&file).attachment);
            }
            // Locks the conversation's row until COMMIT: the next seq is ours alone.
            let inner = tx.savepoint("send").await?;
            let seq: Seq = inner
                .query_one(
                    "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 \
                     RETURNING last_seq",
                    &[&conv],
                )
                .await?
                .get(0);
            let (kind, target_seq, emoji) = rules::action_columns(action.as_ref());
            let inserted = inner
                .query_opt(
                    &format!(
                        "{} ON CONFLICT ON CONSTRAINT messages_sender_cmid DO NOTHING RETURNING id",
                        rules::INSERT_MESSAGE
                    ),
                    &[
                        &conv,
                        &seq,
                        user,
                        text,
                        now,
                        &cmid,
                        reply_to,
                        &kind,
                        &target_seq,
                        &emoji,
                    ],
                )
                .await?;
            let Some(row) = inserted else {
                // The same retry committed on another node meanwhile: answer with it.
                inner.rollback().await?;
                let message = sent_before(tx, *user, &cmid).await?.ok_or_else(|| {
                    StoreError::rejected(ErrorCode::Internal, "a retried message vanished")
                })?;
                return Ok(WriteOutcome::Sent {
                    message,
                    fresh: false,
                    new_dm: None,
                });
            };
            let id: i64 = row.get(0);
            for (position, file) in files.iter().enumerate() {
                inner
                    .execute(
                        rules::INSERT_MESSAGE_FILE,
                        &[&conv, &seq, &(position as i64), &file.id],
                    )
                    .await?;
            }
            match (rules::effect(action.as_ref(), text, *now), target_seq) {
                (Some(rules::Effect::Edit { text, now }), Some(target)) => {
                    inner
                        .execute(rules::EDIT_SQL, &[&text, &now, &conv, &target])
                        .await?;
                }
                (Some(rules::Effect::Delete { now }), Some(target)) => {
                    inner
                        .execute(rules::DELETE_SQL, &[&now, &conv, &target])
                        .await?;
                    inner
                        .execute(rules::UNATTACH_SQL, &[&conv, &target])
                        .await?;
                }
                _ => {}
            }
            inner.commit().await?;
            let sender: String = tx
                .query_one("SELECT username FROM users WHERE id = $1", &[user])
                .await?
                .get(0);
            Ok(WriteOutcome::Sent {
                message: Message {
                    id,
                    conv,
                    seq,
                    sender,
                    text: text.clone(),
                    time: *now,
                    client_msg_id: *client_msg_id,
                    reply_to: *reply_to,
                    action: action.clone(),
                    attachments: files,
                    ..Message::default()
                },
                fresh: true,
                new_dm,
            })
        }
        WriteOp::Read { user, conv, seq } => {
            let row = tx
                .query_opt(
                    "SELECT mb.last_read, c.last_seq FROM members mb \
                     JOIN conversations c ON c.id = mb.conv_id \
                     WHERE mb.conv_id = $1 AND mb.user_id = $2",
                    &[conv, user],
                )
                .await?;
            let Some(row) = row else {
                return Err(not_member(visible_kind(tx, *conv).await?));
            };
            let (last_read, last_seq): (Seq, Seq) = (row.get(0), row.get(1));
            let (marker, moved) = rules::read_marker(*seq, last_read, last_seq);
            if moved {
                tx.execute(
                    "UPDATE members SET last_read = $1 WHERE conv_id = $2 AND user_id = $3",
                    &[&marker, conv, user],
                )
                .await?;
            }
            Ok(WriteOutcome::ReadMoved {
                user: *user,
                conv: *conv,
                seq: marker,
                moved,
            })
        }
        // ---- attention ----
        WriteOp::SetLevel { user, conv, level } => {
            if !is_member(tx, *conv, *user).await? {
                return Err(not_member(visible_kind(tx, *conv).await?));
            }
            match level {
                NotifyLevel::All => {
                    tx.execute(attention_sql::CLEAR_LEVEL, &[user, conv])
                        .await?
                }
                other => {
                    tx.execute(attention_sql::SET_LEVEL, &[user, conv, &other.as_str()])
                        .await?
                }
            };
            Ok(WriteOutcome::LevelSet {
                user: *user,
                conv: *conv,
                level: *level,
            })
        }
        WriteOp::SetAvatarImage {
            user,
            image,
            reservation,
        } => {
            lock_blobs(tx).await?;
            let previous = lock_picture(tx, *user).await?;
            tx.execute(
                "UPDATE users SET avatar_image = $2 WHERE id = $1",
                &[user, image],
            )
            .await?;
            if let Some(reservation) = reservation {
                tx.execute(rules::END_RESERVATION, &[reservation]).await?;
            }
            if let Some(previous) = previous.filter(|p| Some(p) != image.as_ref()) {
                doom_unnamed(tx, &previous).await?;
            }
            Ok(WriteOutcome::UserUpdated(user_row(tx, *user).await?))
        }
        WriteOp::ReserveUpload {
            id,
            user,
            size,
            quota,
            now,
        } => {
            // The user's row stays locked to COMMIT: a reservation on another node waits, and
            // its sum (the next statement, READ COMMITTED) then counts this one.
            tx.execute(
                "SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE",
                &[user],
            )
            .await?;
            let used: i64 = tx.query_one(rules::QUOTA_USED_SQL, &[user]).await?.get(0);
            rules::check_quota(*quota, used.max(0) as u64, *size)?;
            tx.execute(rules::INSERT_RESERVATION, &[id, user, &(*size as i64), now])
                .await?;
            Ok(WriteOutcome::uploads_changed())
        }
        WriteOp::HoldBlobs {
            reservation,
            blob,
            thumbnail,
        } => {
            lock_blobs(tx).await?;
            if tx
                .query_opt(rules::DOOMED_SQL, &[blob, thumbnail])
                .await?
                .is_some()
            {
                return Err(rules::blob_doomed());
            }
            if tx
                .execute(rules::HOLD_BLOBS_SQL, &[blob, thumbnail, reservation])
                .await?
                == 0
            {
                return Err(rules::reservation_gone());
            }
            Ok(WriteOutcome::uploads_changed())
        }
        WriteOp::EndReservation { reservation } => {
            tx.execute(rules::END_RESERVATION, &[reservation]).await?;
            Ok(WriteOutcome::uploads_changed())
        }
        WriteOp::SweepUploads { before } => {
            lock_blobs(tx).await?;
            tx.execute(rules::EXPIRE_RESERVATIONS, &[before]).await?;
            // Rows a send is attaching right now (locked by its FOR KEY SHARE) are skipped; the
            // next sweep sees them carried.
            let unattached = tx
                .query(
                    &format!("{} FOR UPDATE SKIP LOCKED", rules::UNATTACHED_FILES_SQL),
                    &[before, &rules::SWEEP_BATCH],
                )
                .await?;
            let mut removed = 0;
            let mut freed = Vec::new();
            for row in unattached {
                let id: String = row.get(0);
                if tx.execute(rules::DELETE_UNATTACHED_FILE, &[&id]).await? > 0 {
                    removed += 1;
                    freed.push(row.get::<_, String>(1));
                    freed.extend(row.get::<_, Option<String>>(2));
                }
            }
            freed.sort_unstable();
            freed.dedup();
            for blob in freed {
                doom_unnamed(tx, &blob).await?;
            }
            let doomed = tx
                .query(rules::DOOMED_BLOBS_SQL, &[&rules::SWEEP_BATCH])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            Ok(WriteOutcome::Uploads { removed, doomed })
        }
        WriteOp::ForgetBlobs { blobs } => {
            for blob in blobs {
                tx.execute(rules::FORGET_BLOB, &[blob]).await?;
            }
            Ok(WriteOutcome::uploads_changed())
        }
        WriteOp::AddFile {
            file,
            reservation,
            now,
        } => {
            if tx.execute(rules::END_RESERVATION, &[reservation]).await? == 0 {
                return Err(rules::reservation_gone());
            }
            let a = &file.attachment;
            let (width, height) = (a.width.map(i64::from), a.height.map(i64::from));
            tx.execute(
                rules::INSERT_FILE,
                &[
                    &a.id,
                    &file.uploader,
                    &file.blob,
                    &a.name,
                    &a.media_type,
                    &(a.size as i64),
                    &width,
                    &height,
                    &a.thumbnail,
                    &file.thumbnail_type,
                    now,
                ],
            )
            .await?;
            Ok(WriteOutcome::FileAdded {
                uploader: file.uploader,
            })
        }
        WriteOp::SetDnd { user, dnd } => {
            match dnd {
                Some(d) => {
                    tx.execute(attention_sql::SET_DND, &[user, &d.until])
                        .await?
                }
                None => tx.execute(attention_sql::CLEAR_DND, &[user]).await?,
            };
            Ok(WriteOutcome::DndSet {
                user: *user,
                dnd: *dnd,
            })
        }
        // ---- your account ----
        WriteOp::SetProfile {
            user,
            display_name,
            avatar,
        } => {
            user_row(tx, *user).await?;
            tx.execute(
                "UPDATE users SET display_name = coalesce($2, display_name), \
                 avatar = coalesce($3, avatar) WHERE id = $1",
                &[user, display_name, avatar],
            )
            .await?;
            Ok(WriteOutcome::UserUpdated(user_row(tx, *user).await?))
        }
        WriteOp::SetPassword {
            user,
            password_hash,
            keep,
            now,
        } => {
            user_row(tx, *user).await?;
            tx.execute(
                "UPDATE users SET password_hash = $2 WHERE id = $1",
                &[user, password_hash],
            )
            .await?;
            let token_hashes = match keep {
                Some(keep) => revoke_sessions(tx, *user, Some(keep), *now).await?,
                None => Vec::new(),
            };
            Ok(WriteOutcome::SessionsRevoked { token_hashes })
        }
        WriteOp::RevokeSession { user, id, now } => {
            let session = sessions(&*tx, *user, *now)
                .await?
                .into_iter()
                .find(|s| super::super::auth::session_id(&s.token_hash) == *id)
                .ok_or_else(rules::no_such_session)?;
            tx.execute(
                "UPDATE tokens SET revoked = TRUE WHERE hash = $1",
                &[&&session.token_hash[..]],
            )
            .await?;
            Ok(WriteOutcome::LoggedOut {
                token_hash: session.token_hash,
            })
        }
        WriteOp::DeleteAccount { user, now } => {
            lock_blobs(tx).await?;
            let picture = lock_picture(tx, *user).await?;
            let token_hashes = revoke_sessions(tx, *user, None, *now).await?;
            // Rooms are left; DMs keep both members, so the peer still reads the conversation.
            let mut left: Vec<ConvId> = tx
                .query(
                    "DELETE FROM members mb USING conversations c \
                     WHERE c.id = mb.conv_id AND mb.user_id = $1 AND c.kind = 'room' \
                     RETURNING mb.conv_id",
                    &[user],
                )
                .await?
                .into_iter()
                .map(|r| r.get(0))
                .collect();
            left.sort_unstable();
            tx.execute("DELETE FROM devices WHERE user_id = $1", &[user])
                .await?;
            // The row stays (messages keep their sender, the username stays reserved); what
            // described the person goes, and no password can match an empty hash.
            tx.execute(
                "UPDATE users SET display_name = $2, avatar = '', avatar_image = NULL, password_hash = '', \
                 deleted_at = $3, admin = false WHERE id = $1",
                &[user, &DELETED_DISPLAY_NAME, now],
            )
            .await?;
            if let Some(picture) = picture {
                doom_unnamed(tx, &picture).await?;
            }
            let row = tx
                .query_one(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
                    &[user],
                )
                .await?;
            Ok(WriteOutcome::AccountDeleted {
                row: user_from_row(&row),
                left,
                token_hashes,
            })
        }
    }
}

impl Storage for PgStore {
    fn write(&self, op: WriteOp, done: Completion) -> Result<(), StoreError> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let sender = guard.as_ref().ok_or(StoreError::Closed)?;
        sender
            .send(Job { op, done })
            .map_err(|_| StoreError::Closed)
    }

    fn token_user(&self, hash: TokenHash, now: Millis) -> StoreFuture<Option<(UserId, Millis)>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let c = pool.get().await.map_err(pool_error)?;
            Ok(c.query_opt(
                "SELECT user_id, expires_at FROM tokens \
                 WHERE hash = $1 AND NOT revoked AND expires_at > $2",
                &[&&hash[..], &now],
            )
            .await?
            .map(|r| (r.get(0), r.get(1))))
        })
    }

    fn is_known_device(&self, user: UserId, hash: TokenHash) -> StoreFuture<bool> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let c = pool.get().await.map_err(pool_error)?;
            Ok(c.query_opt(
                "SELECT 1 FROM devices WHERE hash = $1 AND user_id = $2",
                &[&&hash[..], &user],
            )
            .await?
            .is_some())
        })
    }

    fn credentials(&self, username: String) -> StoreFuture<Option<(UserId, String)>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let c = pool.get().await.map_err(pool_error)?;
            let Some(id) = find_name(&**c, Names::Users, &username).await? else {
                return Ok(None);
            };
            Ok(c.query_opt(
                "SELECT id, password_hash FROM users WHERE id = $1 AND deleted_at IS NULL",
                &[&id],
            )
            .await?
            .map(|r| (r.get(0), r.get(1))))
        })
    }

    fn history(
        &self,
        conv: ConvId,
        before: Option<Seq>,
        after: Option<Seq>,
        limit: u32,
    ) -> StoreFuture<(Vec<Message>, bool)> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let c = pool.get().await.map_err(pool_error)?;
            let limit = limit.clamp(1, limits::MAX_PAGE) as i64;
            let messages: Vec<Message> = if let Some(after) = after {
                c.query(
                    &format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id \
                         WHERE m.conv_id = $1 AND m.seq > $2 ORDER BY m.seq ASC LIMIT $3"
                    ),
                    &[&conv, &after, &(limit + 1)],
                )
                .await?
                .iter()
                .map(message_from_row)
                .collect()
            } else {
                let before = before.unwrap_or(i64::MAX);
                let mut page: Vec<Message> = c
                    .query(
                        &format!(
                            "SELECT {MESSAGE_COLUMNS} FROM messages m \
                             JOIN users u ON u.id = m.sender_id \
                             WHERE m.conv_id = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3"
                        ),
                        &[&conv, &before, &(limit + 1)],
                    )
                    .await?
                    .iter()
                    .map(message_from_row)
                    .collect();
                page.reverse();
                page
            };
            let (mut messages, more) = rules::page(messages, limit, after.is_some());
            with_files(&**c, conv, &mut messages).await?;
            Ok((messages, more))
        })
    }

    fn sessions(&self, user: UserId, now: Millis) -> StoreFuture<Vec<SessionRow>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let c = pool.get().await.map_err(pool_error)?;
            Ok(sessions(&**c, user, now).await?)
        })
    }

    fn admins(&self) -> StoreFuture<Vec<UserId>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let c = pool.get().await.map_err(pool_error)?;
            Ok(c.query(access_sql::ADMINS, &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
    }

    fn standing(&self, user: UserId) -> StoreFuture<Option<Standing>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let c = pool.get().await.map_err(pool_error)?;
            Ok(c.query_opt(access_sql::STANDING, &[&user])
                .await?
                .map(|r| Standing {
                    admin: r.get(0),
                    pending: r.get(1),
                    banned: r.get(2),
                }))
        })
    }

    fn invites(&self, now: Millis) -> StoreFuture<Vec<Invite>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let c = pool.get().await.map_err(pool_error)?;
            Ok(c.query(access_sql::LIVE_INVITES, &[&now])
                .await?
                .iter()
                .map(|r| Invite {
                    id: r.get(0),
                    code: None,
                    created_by: r.get(1),
                    created_at: r.get(2),
                    expires_at: r.get(3),
                })
                .collect())
        })
    }

    fn pending_users(&self) -> StoreFuture<Vec<PendingUser>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let c = pool.get().await.map_err(pool_error)?;
            Ok(c.query(access_sql::PENDING_USERS, &[])
                .await?
                .iter()
                .map(|r| PendingUser {
                    username: r.get(0),
                    display_name: r.get(1),
                    created_at: r.get(2),
                })
                .collect())
        })
    }

    fn password_hash(&self, user: UserId) -> StoreFuture<Option<String>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let c = pool.get().await.map_err(pool_error)?;
            Ok(c.query_opt(
                "SELECT password_hash FROM users WHERE id = $1 AND deleted_at IS NULL",
                &[&user],
            )
            .await?
            .map(|r| r.get(0)))
        })
    }

    fn file_for(&self, id: String, user: UserId) -> StoreFuture<Option<FileRow>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let c = pool.get().await.map_err(pool_error)?;
            Ok(c.query_opt(rules::FILE_FOR_SQL, &[&id, &user])
                .await?
                .map(|r| file_from_row(&r)))
        })
    }

    fn is_avatar(&self, blob: String) -> StoreFuture<bool> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let c = pool.get().await.map_err(pool_error)?;
            Ok(c.query_opt(rules::IS_AVATAR_SQL, &[&blob]).await?.is_some())
        })
    }

    fn snapshot(&self) -> StoreFuture<Snapshot> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let c = pool.get().await.map_err(pool_error)?;
            load_snapshot(&c).await
        })
    }

    fn unread(&self, user: UserId) -> StoreFuture<Vec<Unread>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let c = pool.get().await.map_err(pool_error)?;
            Ok(c.query(
                "SELECT mb.conv_id, mb.last_read, \
                   GREATEST(0, c.last_seq - mb.last_read) - \
                   (SELECT count(*) FROM messages m WHERE m.conv_id = mb.conv_id \
                      AND (m.sender_id = mb.user_id OR m.action IS NOT NULL) \
                      AND m.seq > mb.last_read) \
                 FROM members mb JOIN conversations c ON c.id = mb.conv_id \
                 WHERE mb.user_id = $1 ORDER BY mb.conv_id",
                &[&user],
            )
            .await?
            .into_iter()
            .map(|r| Unread {
                conv: r.get(0),
                last_read: r.get(1),
                count: r.get::<_, i64>(2).max(0) as u32,
            })
            .collect())
        })
    }

    fn shutdown(&self) {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        let finished = self
            .finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(finished) = finished {
            // The writer commits what is queued; a database that stopped answering must not
            // hold the shutdown for ever.
            let _ = finished.recv_timeout(Duration::from_secs(30));
        }
    }
}
