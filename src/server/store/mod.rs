//! The storage interface: what the services may ask of durable state, in the domain's words,
//! with no backend type in any signature. A backend is chosen at start from a URL ([`open`]);
//! [`sqlite`] is the embedded default (one file, a writer thread with group commit, a read
//! pool). [`postgres`] (cargo feature `postgres`) keeps state in PostgreSQL for several nodes. A
//! new backend implements [`Storage`] and is added to [`open`]; the services do not change.
//!
//! Writes are [`WriteOp`]s. [`Storage::write`] queues one at once (so one caller's writes
//! commit in the order it made them) and runs its [`Completion`] after the commit, in commit
//! order: that is where a service publishes what was committed, so the bus sees commits in the
//! order they happened. Reads return futures.

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod rules;
pub mod sqlite;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::dbfile::Damage;
use crate::protocol::{
    Action, Attachment, ConvId, ConvKind, Dnd, ErrorCode, Invite, Message, Millis, NotifyLevel,
    PendingUser, Registration, Seq, Target, Unread, User,
};

use super::auth::TokenHash;

/// A user's row id.
pub type UserId = i64;

/// How a backend failure should be told to a client and an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Out of space: nothing was stored; retry later.
    Full,
    /// The data is damaged.
    Corrupt,
    /// Anything else.
    Other,
}

/// A backend's own error, kept whole (shared, because one failed commit fails every write of
/// its batch) so its cause still says what went wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{source}")]
pub struct BackendError {
    pub kind: FailureKind,
    source: Arc<dyn std::error::Error + Send + Sync>,
}

impl BackendError {
    pub fn new(kind: FailureKind, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        BackendError {
            kind,
            source: Arc::new(source),
        }
    }

    /// The backend's error, for a backend that wants to look at its own type again.
    pub fn source_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }
}

/// Errors from the store. `Rejected` carries a protocol error the client should see verbatim.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Backend(BackendError),
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
    #[error(
        "unsupported store {0:?}: give a SQLite file as sqlite:PATH or a path, or a PostgreSQL \
         database as postgres://USER@HOST:PORT/DB (in a build with the `postgres` feature)"
    )]
    Url(String),
    #[error("cannot open the store: {0}")]
    Open(String),
}

impl StoreError {
    pub(crate) fn rejected(code: ErrorCode, message: impl Into<String>) -> Self {
        StoreError::Rejected(code, message.into())
    }

    /// The protocol error code and message a client sees for this error. Failures that are the
    /// server's own are logged here, once, with their cause.
    pub fn to_client(&self) -> (ErrorCode, String) {
        match self {
            StoreError::Rejected(code, message) => (*code, message.clone()),
            StoreError::Backend(e) if e.kind == FailureKind::Full => {
                tracing::error!(error = %e, "storage full: a write was refused; free disk space");
                (
                    ErrorCode::StorageFull,
                    "the server's storage is full; nothing was stored, try again later".into(),
                )
            }
            StoreError::Closed => (ErrorCode::Internal, "the server is shutting down".into()),
            other => {
                tracing::error!(error = %other, "store failure");
                (ErrorCode::Internal, "internal server error".into())
            }
        }
    }
}

/// A user as loaded into memory.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    /// A private room (invisible to non-members).
    pub private: bool,
    /// The room's creator, who moderates it; none for a DM or a room made by the server.
    pub created_by: Option<UserId>,
    pub last_seq: Seq,
    /// Members with their read markers.
    pub members: Vec<(UserId, Seq)>,
}

/// A live user's role and state ([`rules::access_sql::STANDING`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub admin: bool,
    pub pending: bool,
    pub banned: bool,
}

/// A live session as the store lists it.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub token_hash: TokenHash,
    pub label: Option<String>,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// The users and conversations, with members and read markers: what a node keeps in memory.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The server's stable id (one row, made by a migration; the same on every node of a
    /// cluster): `hello` and `GET /api/health` carry it.
    pub server_id: String,
    pub users: Vec<UserRow>,
    pub convs: Vec<ConvRow>,
    /// Attention settings: (user, conv, level) for every level that is not `all`.
    pub levels: Vec<(UserId, ConvId, NotifyLevel)>,
    /// Attention settings: each user whose do not disturb is set (perhaps already ended).
    pub dnd: Vec<(UserId, Dnd)>,
}

/// An upload's record (table `files`): what clients see of it, and what only the server
/// needs (who uploaded it, where its bytes and thumbnail are).
#[derive(Debug, Clone)]
pub struct FileRow {
    pub attachment: Attachment,
    pub uploader: UserId,
    /// The blob (`server::blobs`) holding its bytes: the SHA-256, in hex.
    pub blob: String,
    /// The thumbnail's media type (its blob is `attachment.thumbnail`).
    pub thumbnail_type: Option<String>,
}

/// A write, as the services ask for it. Times come from the caller's clock.
#[derive(Debug)]
pub enum WriteOp {
    /// An account: the server's admin when it is the first, waiting for approval when the
    /// server's `mode` says so ([`rules::admission`]); `invite` is used up when given.
    Register {
        mode: Registration,
        invite: Option<TokenHash>,
        username: String,
        display_name: String,
        avatar: String,
        password_hash: String,
        token_hash: TokenHash,
        now: Millis,
        expires_at: Millis,
        /// The hash of the device token handed out with this first session.
        device_hash: TokenHash,
        /// What names this first session in the session list.
        label: Option<String>,
    },
    Login {
        user: UserId,
        token_hash: TokenHash,
        now: Millis,
        expires_at: Millis,
        /// A new device token's hash to remember (None when the device was already known).
        device_hash: Option<TokenHash>,
        /// What names the session in the session list.
        label: Option<String>,
    },
    Logout {
        token_hash: TokenHash,
    },
    CreateRoom {
        user: UserId,
        name: String,
        now: Millis,
        private: bool,
    },
    /// A moderator (`by`, checked in the write) removes `username` from room `conv`; with
    /// `ban`, they cannot join or be added again.
    RemoveMember {
        by: UserId,
        conv: ConvId,
        username: String,
        ban: bool,
    },
    /// A member (`by`) of room `conv` adds `username` to it.
    AddMember {
        by: UserId,
        conv: ConvId,
        username: String,
    },
    Join {
        user: UserId,
        room: String,
    },
    Leave {
        user: UserId,
        conv: ConvId,
    },
    /// A message, a reply (`reply_to`) or an action on an earlier message (`action`, with
    /// `target` a conversation): one event with its own seq. [`rules::may_act`] decides whether
    /// the user may; the action's effect on its target commits with it.
    Send {
        user: UserId,
        target: Target,
        client_msg_id: Uuid,
        text: String,
        now: Millis,
        reply_to: Option<Seq>,
        action: Option<Action>,
        /// Files the user uploaded, by id, in order (checked: [`rules::OWN_FILE_SQL`]).
        attachments: Vec<String>,
    },
    Read {
        user: UserId,
        conv: ConvId,
        seq: Seq,
    },
    // ---- your account ----
    /// Change the display name and/or avatar (None keeps it).
    SetProfile {
        user: UserId,
        display_name: Option<String>,
        avatar: Option<String>,
    },
    /// Store a new password hash; with `keep`, revoke every other live session of the user.
    SetPassword {
        user: UserId,
        password_hash: String,
        keep: Option<TokenHash>,
        now: Millis,
    },
    /// Revoke the user's session whose opaque id ([`super::auth::session_id`]) is `id`.
    RevokeSession {
        user: UserId,
        id: String,
        now: Millis,
    },
    /// Delete the account: see docs/protocol.md ("Deleting an account").
    DeleteAccount {
        user: UserId,
        now: Millis,
    },
    // ---- run by its host ----
    /// Make `username` one of the server's admins, or no longer one (`natter-server admin`).
    SetAdmin {
        username: String,
        admin: bool,
    },
    /// An admin (`by`, checked in the write) makes an invite whose code hashes to `hash`.
    CreateInvite {
        by: UserId,
        hash: TokenHash,
        now: Millis,
        expires_at: Millis,
    },
    /// An admin revokes a live invite.
    RevokeInvite {
        by: UserId,
        id: i64,
        now: Millis,
    },
    /// An admin approves a pending account: it joins `general` as a new account does.
    Approve {
        by: UserId,
        username: String,
    },
    /// An admin bans (`banned`) an account from the server, revoking its sessions, or lifts
    /// the ban. Admins cannot be banned.
    SetBanned {
        by: UserId,
        username: String,
        banned: bool,
        now: Millis,
    },
    /// An admin rejects a pending account: it is deleted and its name is free again.
    Reject {
        by: UserId,
        username: String,
    },
    // Attention (notification levels, do not disturb).
    /// Set a member's notification level for a conversation (refused for a non-member).
    SetLevel {
        user: UserId,
        conv: ConvId,
        level: NotifyLevel,
    },
    /// Set (Some) or clear (None) a user's do not disturb.
    SetDnd {
        user: UserId,
        dnd: Option<Dnd>,
    },
    /// Set (Some: a blob already stored) or clear the user's profile picture; a new one ends
    /// the reservation of its upload (`reservation`), which held its blob until now.
    SetAvatarImage {
        user: UserId,
        image: Option<String>,
        reservation: Option<String>,
    },
    /// Hold `size` bytes of `user`'s quota (0: none) for an upload about to be read, as
    /// reservation `id`; refused (`too_long`) when their uploads, recorded and under way,
    /// would exceed it. Atomic: of two uploads racing for the last bytes, one is refused.
    ReserveUpload {
        id: String,
        user: UserId,
        size: u64,
        quota: u64,
        now: Millis,
    },
    /// Reservation `reservation` names the blobs its upload is about to store, so no sweep
    /// deletes them before the upload is recorded; refused (`busy`) while a sweep is deleting
    /// one of them.
    HoldBlobs {
        reservation: String,
        blob: String,
        thumbnail: Option<String>,
    },
    /// An upload failed: its reservation ends (its bytes no longer count).
    EndReservation {
        reservation: String,
    },
    /// Record an upload whose bytes (and thumbnail) are already in the blob store, ending its
    /// reservation; refused when the reservation is gone (a sweep removed it).
    AddFile {
        file: FileRow,
        reservation: String,
        now: Millis,
    },
    /// Remove the uploads made before `before` that no message carries, and the reservations
    /// made before it; mark the blobs nothing names any more as doomed
    /// ([`WriteOutcome::Uploads`]).
    SweepUploads {
        before: Millis,
    },
    /// Doomed blobs that are now gone from the blob store.
    ForgetBlobs {
        blobs: Vec<String>,
    },
}

/// What a committed write did: the change the services publish on the bus.
/// Serialisable: a bus between nodes carries it (see `bus::redis`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum WriteOutcome {
    /// A new account, or a pending one approved: it is now in `general`.
    Registered(UserRow),
    /// A new account waiting for approval: nobody else hears of it yet.
    RegisteredPending,
    InviteCreated {
        id: i64,
        created_by: String,
    },
    InviteRevoked,
    /// An account was banned (its sessions revoked: their sockets close with 4005) or unbanned
    /// (no sessions).
    BanSet {
        token_hashes: Vec<TokenHash>,
    },
    AccountRejected,
    LoggedIn,
    LoggedOut {
        token_hash: TokenHash,
    },
    RoomCreated {
        user: UserId,
        conv: ConvId,
        name: String,
        #[serde(default)]
        private: bool,
    },
    /// A moderator removed (and perhaps banned) `user` from `conv`; `was_member`: they were in
    /// it (a ban of a non-member changes no membership).
    Removed {
        user: UserId,
        conv: ConvId,
        was_member: bool,
    },
    /// `by` added `user` to `conv` (`newly`: they were not a member yet).
    Added {
        by: UserId,
        user: UserId,
        conv: ConvId,
        newly: bool,
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
    // ---- your account ----
    /// A user's public profile changed (display name, avatar, admin, or deleted).
    UserUpdated(UserRow),
    /// Sessions revoked at once (a password change that signs out the others).
    SessionsRevoked {
        token_hashes: Vec<TokenHash>,
    },
    /// The account was deleted: its profile as others now see it, the rooms it left and the
    /// sessions revoked.
    AccountDeleted {
        row: UserRow,
        left: Vec<ConvId>,
        token_hashes: Vec<TokenHash>,
    },
    // Attention (notification levels, do not disturb).
    LevelSet {
        user: UserId,
        conv: ConvId,
        level: NotifyLevel,
    },
    DndSet {
        user: UserId,
        dnd: Option<Dnd>,
    },
    /// An upload was recorded (nobody else hears of it until a message carries it).
    FileAdded {
        uploader: UserId,
    },
    /// The uploads' bookkeeping changed (a reservation, a sweep); nobody else hears of it.
    /// After a sweep: the uploads it `removed`, and every blob `doomed` (nothing names it), to
    /// delete from the blob store and then forget ([`WriteOp::ForgetBlobs`]).
    Uploads {
        removed: u64,
        doomed: Vec<String>,
    },
}

impl WriteOutcome {
    /// What a write that only keeps the uploads' books answers (nothing removed or doomed).
    pub fn uploads_changed() -> WriteOutcome {
        WriteOutcome::Uploads {
            removed: 0,
            doomed: Vec::new(),
        }
    }
}

/// Runs once a write committed (or failed), in commit order, on whatever thread the backend
/// commits on: it must not block (publishing on the bus is a channel send).
pub type Completion = Box<dyn FnOnce(Result<WriteOutcome, StoreError>) + Send>;

/// A read's answer, to await.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// Durable state, as the services need it. See the module docs.
pub trait Storage: Send + Sync {
    /// Queue `op` now; `done` runs after it committed or failed. Writes queued by one caller
    /// commit in the order they were queued. Err(Closed) once the store shut down.
    fn write(&self, op: WriteOp, done: Completion) -> Result<(), StoreError>;

    /// The user id and expiry of a live (unrevoked, unexpired at `now`) token.
    fn token_user(&self, hash: TokenHash, now: Millis) -> StoreFuture<Option<(UserId, Millis)>>;

    /// Whether `hash` is a device token given to `user`.
    fn is_known_device(&self, user: UserId, hash: TokenHash) -> StoreFuture<bool>;

    /// The id and password hash of a user by name, in any spelling of it.
    fn credentials(&self, username: String) -> StoreFuture<Option<(UserId, String)>>;

    /// A page of a conversation's messages, ascending, and whether more lie beyond it:
    /// the newest `limit` before `before`, or the oldest `limit` after `after`, or the newest.
    fn history(
        &self,
        conv: ConvId,
        before: Option<Seq>,
        after: Option<Seq>,
        limit: u32,
    ) -> StoreFuture<(Vec<Message>, bool)>;

    /// The live sessions of `user` at `now`, newest first: (token hash, label, created, expires).
    fn sessions(&self, user: UserId, now: Millis) -> StoreFuture<Vec<SessionRow>>;

    /// The live admins, ascending (a running node follows `natter-server admin` with it).
    fn admins(&self) -> StoreFuture<Vec<UserId>>;

    /// Whether a live (not deleted) user is an admin and whether it waits for approval.
    fn standing(&self, user: UserId) -> StoreFuture<Option<Standing>>;

    /// The invites live at `now` (unused, unrevoked, unexpired), oldest first, without codes.
    fn invites(&self, now: Millis) -> StoreFuture<Vec<Invite>>;

    /// The accounts waiting for approval, oldest first.
    fn pending_users(&self) -> StoreFuture<Vec<PendingUser>>;

    /// The password hash of a live (not deleted) user.
    fn password_hash(&self, user: UserId) -> StoreFuture<Option<String>>;

    /// Unread counts (messages from others after the read marker, not counting actions) per
    /// conversation of `user`.
    fn unread(&self, user: UserId) -> StoreFuture<Vec<Unread>>;

    /// Everything a node keeps in memory, as committed now: what it loads at start, and what a
    /// node reloads when it may have missed events on a bus between nodes.
    fn snapshot(&self) -> StoreFuture<Snapshot>;

    /// Upload `id` if `user` may read it: its uploader, or a member of a conversation where a
    /// message carrying it was posted. None otherwise, as for an id that does not exist.
    fn file_for(&self, id: String, user: UserId) -> StoreFuture<Option<FileRow>>;

    /// Whether blob `blob` is some user's current profile picture.
    fn is_avatar(&self, blob: String) -> StoreFuture<bool>;

    /// Stop taking writes, commit what is queued and wait for it (blocking).
    fn shutdown(&self);
}

impl dyn Storage {
    /// Queue `op` and wait for its outcome; `then` sees the outcome first, in commit order.
    pub fn write_then(
        &self,
        op: WriteOp,
        then: impl FnOnce(&WriteOutcome) + Send + 'static,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let queued = self.write(
            op,
            Box::new(move |result| {
                if let Ok(outcome) = &result {
                    then(outcome);
                }
                let _ = tx.send(result);
            }),
        );
        async move {
            queued?;
            rx.await.map_err(|_| StoreError::Closed)?
        }
    }
}

/// Where the store lives: the `--store` value, or the data directory's SQLite file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://` or `postgresql://`).
    #[cfg(feature = "postgres")]
    Postgres(String),
}

impl StoreLocation {
    /// Parse a `--store` value: `sqlite:PATH`, `sqlite://PATH`, a plain path, or (with the
    /// `postgres` feature) `postgres://...`.
    pub fn parse(url: &str) -> Result<StoreLocation, StoreError> {
        #[cfg(feature = "postgres")]
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(url.to_string()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let scheme = url.split_once("://").map(|(s, _)| s);
        if path.is_empty() || scheme.is_some_and(|s| s != "sqlite") {
            return Err(StoreError::Url(url.to_string()));
        }
        Ok(StoreLocation::Sqlite(PathBuf::from(path)))
    }

    /// The default: `natter.db` in the data directory.
    pub fn in_data_dir(data_dir: &Path) -> StoreLocation {
        StoreLocation::Sqlite(data_dir.join(sqlite::DB_FILE))
    }
}

/// What opening a store needs besides its location.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Begin with an empty store even though one existed (see `ServerConfig::init`).
    pub init: bool,
    /// Cap on the database's size in pages, for fault tests (`ServerConfig::max_db_pages`).
    pub max_db_pages: Option<u32>,
}

/// Open the store at `location`, checked and migrated, with its writer running, and read what
/// a node keeps in memory.
pub fn open(
    location: &StoreLocation,
    options: OpenOptions,
) -> Result<(Arc<dyn Storage>, Snapshot), StoreError> {
    match location {
        StoreLocation::Sqlite(path) => {
            let (store, snapshot) = sqlite::SqliteStore::open(path, options)?;
            Ok((Arc::new(store), snapshot))
        }
        #[cfg(feature = "postgres")]
        StoreLocation::Postgres(url) => {
            if options.init || options.max_db_pages.is_some() {
                tracing::warn!("--init and --max-db-pages apply to SQLite only");
            }
            let (store, snapshot) = postgres::PgStore::open(url)?;
            Ok((Arc::new(store), snapshot))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_name_a_sqlite_file_or_are_refused() {
        let sqlite = |p: &str| StoreLocation::Sqlite(PathBuf::from(p));
        let parse = |url: &str| StoreLocation::parse(url).unwrap();
        assert_eq!(parse("sqlite:/var/natter.db"), sqlite("/var/natter.db"));
        assert_eq!(parse("sqlite:///var/n.db"), sqlite("/var/n.db"));
        assert_eq!(parse("data/natter.db"), sqlite("data/natter.db"));
        #[cfg(feature = "postgres")]
        assert_eq!(
            parse("postgres://natter@db:5432/natter"),
            StoreLocation::Postgres("postgres://natter@db:5432/natter".into())
        );
        for bad in ["redis://x", "mysql://db/natter", "sqlite:", ""] {
            assert!(
                matches!(StoreLocation::parse(bad), Err(StoreError::Url(_))),
                "{bad:?} should be refused"
            );
        }
    }
}
