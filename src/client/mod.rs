//! The Natter client core, with no Tauri dependency: what the CLI and the desktop app stand on.
//!
//! A [`Client`] is a cheap handle to an actor task ([`connection`]) that owns the WebSocket: it
//! connects with the session token, keeps the connection alive, reconnects with jittered backoff,
//! resumes from the last seq held for each conversation and drains the outbox. Everything the
//! user sees is read from the local [`store`] (so an offline start is instant and history is
//! readable), and changes are announced as [`ClientEvent`]s: per message (added or updated)
//! and per conversation (its summary, its unread count, its removal), never "re-read
//! everything". [`notify`] holds the pure policy of which message deserves a desktop
//! notification.
//!
//! Module map: [`types`] (view types shared with the UI), [`http`] (register, login, logout,
//! health, your account), `account` (your account and export on [`Client`]), [`export`] (the
//! history export's document and files), [`connection`] (the actor), [`store`] (local SQLite), [`db`] (the thread that runs
//! the store for a running client: no SQLite call runs on an async worker), [`notify`],
//! [`trust`] (which certificates are trusted: pins, the system store, custom CAs), [`profiles`]
//! (where a profile lives: keyed by the server's id).

mod account;
mod admin;
pub mod connection;
pub mod db;
pub mod export;
pub mod files;
pub mod http;
pub mod invitation;
pub mod notify;
pub mod profiles;
pub mod store;
pub mod trust;
pub mod types;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use url::Url;
use uuid::Uuid;

use crate::dbfile::{with_suffix, COMPANIONS};
use crate::protocol::{
    self, Action, ClientFrame, ConvId, ConvKind, ErrorCode, Member, Millis, Reply, RoomInfo, Seq,
    Session, User,
};
use connection::Command;
use db::{StoreHandle, StoreStats};
use store::{OutboxFile, OutboxItem, SavedSession, Store};
pub use types::{
    ActionFailure, ConnectionState, ConversationRemoved, ConversationSummary, LocalMessage,
    MessageChange, MessageEvent, MessageState, PendingFile, Quote, Reaction, SearchHit,
    UnreadChange, UploadProgress,
};

pub use http::{health, login, login_as, logout_token, register};
pub use protocol::RegisterRequest;

/// File name of the local store inside a profile directory.
pub const STORE_FILE: &str = "natter.db";

/// One error type for the whole client; [`ClientError::code`] gives the stable code the desktop
/// UI maps (see docs/ipc.md).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server cannot be reached right now.
    #[error("offline: {0}")]
    Offline(String),
    /// Wrong credentials, or the session was revoked or expired: sign in again.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The request was malformed or broke a rule (name, length).
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A name already taken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Too many attempts (failed sign-ins, or frames): wait before trying again.
    #[error("rate limited: {0}")]
    RateLimited(String),
    /// The server failed or misbehaved.
    #[error("server error: {0}")]
    Server(String),
    /// A local failure (store, I/O).
    #[error("internal error: {0}")]
    Internal(String),
    /// A disk is full: the server's (nothing was stored there) or this computer's (the local
    /// store could not write). Free space, then retry.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// The local store is damaged: rebuild it from the server with [`repair_store`]
    /// (`natter repair`, or Settings in the app).
    #[error("{0}")]
    StoreCorrupt(String),
    /// The server's certificate is neither pinned nor vouched for by a trusted CA: the message
    /// names its fingerprint, which the person compares with the host's before trusting it
    /// ([`trust`]).
    #[error("untrusted certificate: {0}")]
    UntrustedCertificate(String),
    /// The server presents another certificate than the one pinned for it: possibly someone
    /// impersonating it. Nothing was sent ([`trust`]).
    #[error("certificate changed: {0}")]
    CertificateChanged(String),
    /// Registering here needs an invite code, and none was given.
    #[error("invite required: {0}")]
    InviteRequired(String),
    /// The invite code is unknown, used, revoked or expired.
    #[error("invalid invite: {0}")]
    InvalidInvite(String),
    /// The account waits for an admin's approval (registered, or signing in before approval).
    #[error("pending approval: {0}")]
    PendingApproval(String),
}

impl ClientError {
    /// The machine code of docs/ipc.md's `CommandError`.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Offline(_) => "offline",
            ClientError::Unauthorized(_) => "unauthorized",
            ClientError::Invalid(_) => "invalid",
            ClientError::NotFound(_) => "not_found",
            ClientError::Forbidden(_) => "forbidden",
            ClientError::Conflict(_) => "conflict",
            ClientError::RateLimited(_) => "rate_limited",
            ClientError::Server(_) => "server",
            ClientError::Internal(_) => "internal",
            ClientError::StorageFull(_) => "storage_full",
            ClientError::StoreCorrupt(_) => "store_corrupt",
            ClientError::UntrustedCertificate(_) => "untrusted_certificate",
            ClientError::CertificateChanged(_) => "certificate_changed",
            ClientError::InviteRequired(_) => "invite_required",
            ClientError::InvalidInvite(_) => "invalid_invite",
            ClientError::PendingApproval(_) => "pending_approval",
        }
    }

    /// Maps a protocol error code and message from the server.
    pub fn from_server(code: ErrorCode, message: String) -> ClientError {
        match code {
            ErrorCode::BadRequest
            | ErrorCode::UnknownType
            | ErrorCode::InvalidName
            | ErrorCode::TooLong
            | ErrorCode::InvalidTarget
            | ErrorCode::InvalidReaction
            | ErrorCode::InvalidAttachment => ClientError::Invalid(message),
            ErrorCode::Unauthorized => ClientError::Unauthorized(message),
            ErrorCode::Forbidden => ClientError::Forbidden(message),
            // Told apart, so an app can say in its own words what the newcomer should do.
            ErrorCode::InviteRequired => ClientError::InviteRequired(message),
            ErrorCode::InvalidInvite => ClientError::InvalidInvite(message),
            ErrorCode::PendingApproval => ClientError::PendingApproval(message),
            ErrorCode::NotFound => ClientError::NotFound(message),
            ErrorCode::Conflict => ClientError::Conflict(message),
            // Both mean "wait, then try again"; the message says which.
            ErrorCode::RateLimited | ErrorCode::Busy => ClientError::RateLimited(message),
            ErrorCode::Internal | ErrorCode::Cancelled => ClientError::Server(message),
            ErrorCode::StorageFull => ClientError::StorageFull(message),
        }
    }
}

/// What a damaged local store tells the user to do.
const REPAIR_HINT: &str =
    "rebuild it from the server with `natter repair` (or Repair in the app's Settings)";

impl From<store::StoreError> for ClientError {
    fn from(e: store::StoreError) -> Self {
        use store::StoreError as S;
        match &e {
            S::Corrupt { .. } => ClientError::StoreCorrupt(format!("{e}: {REPAIR_HINT}")),
            S::Closed => stopped(),
            // Damage found by a query after a clean open (a page that went bad since).
            S::Sqlite(inner) if crate::dbfile::is_corrupt(inner) => ClientError::StoreCorrupt(
                format!("the local store is damaged ({inner}): {REPAIR_HINT}"),
            ),
            S::Sqlite(inner) if crate::dbfile::is_full(inner) => ClientError::StorageFull(format!(
                "this computer's disk is full; the local store cannot write ({inner})"
            )),
            _ => ClientError::Internal(e.to_string()),
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Something that changed, for whoever draws it (the desktop UI, `natter tail`). Changes are
/// per model: a message, a conversation's summary, a conversation's unread count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A message new to this client (`added`: someone else's, or the user's own just queued),
    /// or one already announced changing state (`updated`, same `local_id`: pending -> sent or
    /// failed, failed -> pending on retry).
    Message(MessageEvent),
    /// One conversation's summary changed (preview, unread count, title, level) or it was
    /// joined. A burst of messages gives one per conversation, not one per message.
    Conversation(ConversationSummary),
    /// The user is no longer a member of this conversation.
    ConversationRemoved(ConversationRemoved),
    /// Only the unread count of a conversation changed (its read marker moved).
    Unread(UnreadChange),
    /// Users who came online or went offline, one event per server presence frame (a connection
    /// storm is hundreds of names in one frame; one event keeps the UI to one redraw for them).
    Presence {
        online: Vec<String>,
        offline: Vec<String>,
    },
    /// The full online list (of the users whose presence is kept), on every (re)connect and
    /// after each watch set's answer.
    Online(Vec<String>),
    Typing {
        conv: ConvId,
        username: String,
    },
    /// Do not disturb as the server has it: on every (re)connect and when it changed (on this
    /// device or another). `None`: off.
    Dnd {
        dnd: Option<crate::protocol::Dnd>,
    },
    /// The user's read marker moved on another device.
    ReadMarker {
        conv: ConvId,
        seq: Seq,
    },
    Membership {
        conv: ConvId,
        username: String,
        joined: bool,
    },
    Connection(ConnectionState),
    /// Resume progress: a replayed page of `messages` messages of `conv` was stored.
    SyncProgress {
        conv: ConvId,
        messages: usize,
    },
    /// The resume after a (re)connect finished: every missed message is stored.
    Synced,
    /// Someone's public profile changed (display name, avatar), or their account was deleted
    /// (`deleted`); also the user's own, from another device. Already stored.
    UserUpdated(User),
    /// The server did something unexpected (garbage, unknown frames, an unsolicited error).
    /// Reported, and otherwise ignored.
    Warning(String),
    /// The server refused an edit, delete or reaction of the user's for good (someone else's
    /// message, deleted meanwhile, ...): nothing changed. Committed actions are announced as
    /// `Message` `updated` of their target instead.
    ActionFailed(ActionFailure),
    /// An outbox message's file is being uploaded: bytes sent so far of its total.
    Upload(UploadProgress),
}

/// Where a message goes: an existing conversation, or a direct message to a user (the
/// conversation is created by the server on the first message). The wire's own type.
pub use crate::protocol::Target;

/// How a client connects and where it keeps its data.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's base address, `http(s)://host:port`.
    pub server: Url,
    /// Where the local store and session live (see [`default_profile_dir`]).
    pub profile_dir: PathBuf,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How often to ping the server; a server silent for `heartbeat + heartbeat_grace` is dropped.
    pub heartbeat: Duration,
    pub heartbeat_grace: Duration,
    /// A connection that lasted this long resets the backoff.
    pub stable_after: Duration,
    /// Time allowed for the TCP + WebSocket handshake and the `hello` frame.
    pub connect_timeout: Duration,
    /// Time a request waits for its answer.
    pub request_timeout: Duration,
    /// The most bytes the profile's cache of thumbnails and opened files holds
    /// ([`files::FileCache`]).
    pub file_cache_bytes: u64,
}

impl ClientConfig {
    pub fn new(server: Url, profile_dir: PathBuf) -> ClientConfig {
        ClientConfig {
            server,
            profile_dir,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            heartbeat: Duration::from_secs(25),
            heartbeat_grace: Duration::from_secs(10),
            stable_after: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
            file_cache_bytes: files::DEFAULT_CACHE_BYTES,
        }
    }
}

/// The CLI's data directory: the XDG data dir (`~/.local/share/natter` on Linux).
pub fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "natter")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("natter"))
}

/// The default profile directory for `username` on `server` in [`default_data_dir`]
/// (`profiles/<server id>-<user>`, see [`profiles`]), one per server and user.
pub fn default_profile_dir(server: &Url, username: &str) -> PathBuf {
    profile_dir_in(&default_data_dir(), server, username)
}

/// The profile directory for `username` on `server` under a data directory `base`, as far as
/// this computer knows without asking the server: `<base>/profiles/<server id>-<user>` once the
/// address was seen with its server's id ([`profiles::locate`] at sign-in), the address's place
/// before. The CLI and the desktop app share this layout.
pub fn profile_dir_in(base: &Path, server: &Url, username: &str) -> PathBuf {
    profiles::known_dir(base, server, username)
}

/// A file-name-safe key for a server address.
pub fn server_key(server: &Url) -> String {
    let host = server.host_str().unwrap_or("local");
    let port = server.port_or_known_default().unwrap_or(0);
    sanitize(&format!("{}_{host}_{port}", server.scheme()))
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The session saved in a profile, if any (for callers that need the server or user first).
pub fn saved_session(profile_dir: &Path) -> Result<Option<SavedSession>> {
    let path = profile_dir.join(STORE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    Ok(Store::open(&path)?.session()?)
}

/// `POST /api/login` for the profile in `profile_dir`: sends the device token an earlier
/// session saved there, so the server's sign-in limits (docs/protocol.md, "Sign-in limits")
/// know this device; the new session (saved by [`save_session`] or [`Client::start`]) keeps
/// the device token for next time.
pub async fn login_in_profile(
    profile_dir: &Path,
    server: &Url,
    username: &str,
    password: &str,
) -> Result<Session> {
    trust::install_profile_pin(profile_dir, server)?;
    let path = profile_dir.join(STORE_FILE);
    // Opening checks the whole file: a blocking job, off the async workers.
    let device = tokio::task::spawn_blocking(move || device_token_of(&path))
        .await
        .map_err(|e| ClientError::Internal(format!("reading the device token: {e}")))??;
    http::login_as(server, username, password, device).await
}

/// The device token saved in the store at `path`, read back from a damaged store when it can be.
fn device_token_of(path: &Path) -> Result<Option<String>> {
    Ok(if path.exists() {
        match Store::open(path).and_then(|store| store.device_token()) {
            Ok(device) => device,
            Err(e) => match ClientError::from(e) {
                // Signing in is where a damaged store gets rebuilt (after this, once the
                // session is known), so damage must not stop it here: the token is read back
                // from the damaged file when it can be.
                ClientError::StoreCorrupt(reason) => {
                    tracing::warn!(%reason, "local store damaged: signing in all the same");
                    Store::salvage_device_token(path)
                }
                other => return Err(other),
            },
        }
    } else {
        None
    })
}

/// Saves a session into a profile without connecting (e.g. right after `register`).
pub fn save_session(profile_dir: &Path, server: &Url, session: &Session) -> Result<()> {
    let store = Store::open(&profile_dir.join(STORE_FILE))?;
    store.save_session(&SavedSession {
        server: server.to_string(),
        session: session.clone(),
    })?;
    Ok(())
}

/// What [`repair_store`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// Where the damaged store now lies (kept for inspection; delete it when done).
    pub moved_to: PathBuf,
    /// The session was read back from the damaged store: no new sign-in is needed.
    pub session_kept: bool,
    /// Messages not yet sent that were carried over into the new store.
    pub outbox_kept: usize,
}

/// Rebuilds a damaged local store: moves it (with its `-wal` and `-shm` files) aside as
/// `natter.db.damaged-<ms>`, and starts a new one holding what could be read back: the session
/// and the messages not yet sent. History comes back from the server through the normal resume
/// on the next connect. `None` when the store is sound (nothing to do) or there is none. Stop
/// every client of the profile first. Blocking (it checks the whole file): async callers use
/// [`repair_store_async`].
pub fn repair_store(profile_dir: &Path) -> Result<Option<Repaired>> {
    let path = profile_dir.join(STORE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    match Store::open(&path) {
        Ok(_) => return Ok(None),
        Err(store::StoreError::Corrupt { .. }) => {}
        Err(e) => match ClientError::from(e) {
            // Damage met by migrations after a clean check: still a repair.
            ClientError::StoreCorrupt(_) => {}
            other => return Err(other),
        },
    }
    let (session, outbox) = Store::salvage(&path);
    let moved_to = with_suffix(&path, &format!(".damaged-{}", now_ms()));
    let io =
        |e: std::io::Error| ClientError::Internal(format!("cannot move the damaged store: {e}"));
    // The companions first: a new store must not meet the old write-ahead log.
    for suffix in COMPANIONS {
        let from = with_suffix(&path, suffix);
        if from.exists() {
            std::fs::rename(&from, with_suffix(&moved_to, suffix)).map_err(io)?;
        }
    }
    std::fs::rename(&path, &moved_to).map_err(io)?;
    tracing::warn!(damaged = %moved_to.display(), "moved the damaged local store aside");
    let store = Store::open(&path)?;
    let session_kept = match &session {
        Some(saved) => {
            store.save_session(saved)?;
            true
        }
        None => false,
    };
    let pending: Vec<_> = outbox
        .into_iter()
        .filter(|o| session_kept && o.state == MessageState::Pending)
        .collect();
    for item in &pending {
        store.enqueue(item)?;
    }
    Ok(Some(Repaired {
        moved_to,
        session_kept,
        outbox_kept: pending.len(),
    }))
}

/// [`repair_store`] on a blocking thread, for async callers (the desktop's commands).
pub async fn repair_store_async(profile_dir: &Path) -> Result<Option<Repaired>> {
    let dir = profile_dir.to_path_buf();
    tokio::task::spawn_blocking(move || repair_store(&dir))
        .await
        .map_err(|e| ClientError::Internal(format!("repairing the local store: {e}")))?
}

pub(crate) fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// State the actor and the handles share.
pub(crate) struct Shared {
    pub store: StoreHandle,
    pub events: broadcast::Sender<ClientEvent>,
    pub online: Mutex<BTreeSet<String>>,
    /// The users this client watches the presence of ([`Client::watch_presence`]), sent again
    /// after every hello.
    pub watching: Mutex<Vec<String>>,
    /// The signed-in user as the session named them (the username never changes).
    pub user: User,
    /// The user's profile as last heard from the server (display name, avatar).
    pub profile: Mutex<User>,
    /// The upload under way (one at a time, for the oldest outbox entry), so that cancelling
    /// its entry stops it.
    pub upload: Mutex<Option<UploadSlot>>,
}

/// The upload of a file of outbox entry `local_id`, running as its own task.
pub(crate) struct UploadSlot {
    pub local_id: String,
    pub abort: tokio::task::AbortHandle,
}

impl Shared {
    /// The upload under way, if any. (A panic while holding the lock leaves nothing half
    /// changed: the slot is only ever set or cleared.)
    pub fn upload_slot(&self) -> std::sync::MutexGuard<'_, Option<UploadSlot>> {
        self.upload.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the upload under way if it is one of entry `local_id`'s files (any, when `None`).
    pub fn stop_upload(&self, local_id: Option<&str>) {
        let mut slot = self.upload_slot();
        if slot
            .as_ref()
            .is_some_and(|u| local_id.is_none_or(|id| u.local_id == id))
        {
            if let Some(upload) = slot.take() {
                upload.abort.abort();
            }
        }
    }

    pub fn emit(&self, event: ClientEvent) {
        // No receivers is fine: nobody is listening yet.
        let _ = self.events.send(event);
    }

    /// Announces the current summary of each of `convs` (or its removal when the user is no
    /// longer a member), read in one store job.
    pub async fn publish_summaries(&self, convs: Vec<ConvId>) {
        if convs.is_empty() {
            return;
        }
        let me = self.user.username.clone();
        let read = self
            .store
            .call(move |s| {
                convs
                    .into_iter()
                    .map(|c| Ok((c, s.conversation_summary(&me, c)?)))
                    .collect::<store::Result<Vec<_>>>()
            })
            .await;
        match read {
            Ok(list) => {
                for (conv, summary) in list {
                    self.emit(match summary {
                        Some(summary) => ClientEvent::Conversation(summary),
                        None => ClientEvent::ConversationRemoved(ConversationRemoved { conv }),
                    });
                }
            }
            Err(e) => {
                let e = ClientError::from(e);
                tracing::warn!(code = e.code(), "cannot read conversation summaries: {e}");
                self.emit(ClientEvent::Warning(format!(
                    "cannot read conversation summaries: {e}"
                )));
            }
        }
    }

    /// Announces the unread count of `conv` after its read marker moved.
    pub async fn publish_unread(&self, conv: ConvId) {
        let me = self.user.username.clone();
        match self.store.call(move |s| s.unread(&me, conv)).await {
            Ok(Some(unread)) => self.emit(ClientEvent::Unread(UnreadChange { conv, unread })),
            Ok(None) => {}
            Err(e) => {
                let e = ClientError::from(e);
                tracing::warn!(code = e.code(), %conv, "cannot read an unread count: {e}");
            }
        }
    }
}

/// What the client has done, for tests and measurements (see [`Client::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub store: StoreStats,
    /// Requests sent to the server on behalf of [`Client`] methods (not the actor's own
    /// resume, outbox and read-marker traffic).
    pub requests: u64,
}

struct Inner {
    config: ClientConfig,
    token: String,
    shared: Arc<Shared>,
    cmd: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<ConnectionState>,
    /// Whether the current connection has finished its resume.
    synced: watch::Receiver<bool>,
    actor: Mutex<Option<tokio::task::JoinHandle<()>>>,
    requests: AtomicU64,
    files: files::FileCache,
}

/// A handle to a running client. Cheap to clone; the connection stops when the last handle is
/// dropped or [`Client::shutdown`] is called.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user", &self.inner.shared.user.username)
            .field("server", &self.inner.config.server.as_str())
            .finish()
    }
}

impl Client {
    /// Opens (or creates) the store in `config.profile_dir`, saves `session` there and starts the
    /// connection in the background. Returns at once: history is readable while it connects.
    /// The connection task is spawned on the Tokio runtime this is awaited on.
    pub async fn start(config: ClientConfig, session: Session) -> Result<Client> {
        let store = StoreHandle::open(&config.profile_dir.join(STORE_FILE)).await?;
        let saved = SavedSession {
            server: config.server.to_string(),
            session: session.clone(),
        };
        store.call(move |s| s.save_session(&saved)).await?;
        Self::spawn(config, store, session).await
    }

    /// Starts from the session saved in `config.profile_dir`; `None` when there is none (never
    /// signed in, signed out, or the token was refused).
    pub async fn resume(config: ClientConfig) -> Result<Option<Client>> {
        let path = config.profile_dir.join(STORE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let store = StoreHandle::open(&path).await?;
        let Some(saved) = store.call(|s| s.session()).await? else {
            store.close().await;
            return Ok(None);
        };
        Ok(Some(Self::spawn(config, store, saved.session).await?))
    }

    async fn spawn(config: ClientConfig, store: StoreHandle, session: Session) -> Result<Client> {
        trust::install_profile_pin(&config.profile_dir, &config.server)?;
        let me = session.user.username.clone();
        // The local store keeps no roles: the session's (from the sign-in, then `hello`) holds
        // whether the user is an admin.
        let admin = session.user.admin;
        let profile = store
            .call(move |s| s.user(&me))
            .await?
            .map(|stored| User { admin, ..stored })
            .unwrap_or_else(|| session.user.clone());
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            store,
            events,
            online: Mutex::new(BTreeSet::new()),
            watching: Mutex::new(Vec::new()),
            user: session.user.clone(),
            profile: Mutex::new(profile),
            upload: Mutex::new(None),
        });
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connecting);
        let (synced_tx, synced_rx) = watch::channel(false);
        let actor = connection::Actor::new(
            config.clone(),
            session.token.clone(),
            shared.clone(),
            cmd_rx,
            state_tx,
            synced_tx,
        );
        let handle = tokio::spawn(actor.run());
        tokio::spawn(revoke_pending(
            config.server.clone(),
            shared.clone(),
            state_rx.clone(),
        ));
        let files = files::FileCache::new(&config.profile_dir, config.file_cache_bytes);
        Ok(Client {
            inner: Arc::new(Inner {
                files,
                config,
                token: session.token,
                shared,
                cmd: cmd_tx,
                state: state_rx,
                synced: synced_rx,
                actor: Mutex::new(Some(handle)),
                requests: AtomicU64::new(0),
            }),
        })
    }

    /// Runs `f` on the store thread.
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> store::Result<T> + Send + 'static,
    ) -> Result<T> {
        Ok(self.inner.shared.store.call(f).await?)
    }

    fn me(&self) -> String {
        self.inner.shared.user.username.clone()
    }

    fn emit(&self, event: ClientEvent) {
        self.inner.shared.emit(event);
    }

    fn kick(&self) {
        // The actor is gone only after shutdown; the change is stored and goes out next start.
        if self.inner.cmd.send(Command::Kick).is_err() {
            tracing::debug!("client stopped: the change goes out on the next start");
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ClientEvent> {
        self.inner.shared.events.subscribe()
    }

    pub fn connection_state(&self) -> ConnectionState {
        self.inner.state.borrow().clone()
    }

    /// A watch on the connection state, for callers that wait for a particular state.
    pub fn connection_watch(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state.clone()
    }

    /// The signed-in user's profile as last heard from the server (no store read).
    pub fn user(&self) -> User {
        self.inner
            .shared
            .profile
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Counters for tests and measurements: store jobs and summary reads, requests sent.
    #[doc(hidden)]
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            store: self.inner.shared.store.stats(),
            requests: self.inner.requests.load(Ordering::Relaxed),
        }
    }

    /// Keeps the store thread busy for `how_long` (a test's stand-in for a slow disk or a long
    /// merge): calls into the store wait, async tasks must not.
    #[doc(hidden)]
    pub async fn stall_store(&self, how_long: Duration) -> Result<()> {
        self.db(move |_| {
            std::thread::sleep(how_long);
            Ok(())
        })
        .await
    }

    /// Skip the backoff wait and reconnect now (wake from sleep, network change).
    pub fn reconnect_now(&self) {
        if self.inner.cmd.send(Command::ReconnectNow).is_err() {
            tracing::debug!("client stopped: nothing to reconnect");
        }
    }

    /// Sends a request frame (built with the actor's id) and waits for its answer.
    async fn request(
        &self,
        build: impl FnOnce(u64) -> ClientFrame + Send + 'static,
    ) -> Result<Reply> {
        let (tx, rx) = oneshot::channel();
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        self.inner
            .cmd
            .send(Command::Request {
                build: Box::new(build),
                reply: tx,
            })
            .map_err(|_| stopped())?;
        match tokio::time::timeout(self.inner.config.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(ClientError::Offline(
                "the server did not answer in time".into(),
            )),
        }
    }

    /// Queues `text` for `target`: stored in the outbox first (so it survives a restart), sent
    /// when online. Announced once as an `added` [`ClientEvent::Message`] (pending); the same
    /// `local_id` is then `updated` to sent or failed. The returned message is the pending one.
    pub async fn send(&self, target: Target, text: &str) -> Result<LocalMessage> {
        self.queue_message(target, text, None, Vec::new()).await
    }

    /// Queues a message carrying the files at `paths` (in order, at most
    /// [`protocol::limits::MAX_ATTACHMENTS`]) with `text` as its caption (may be empty), like
    /// [`Client::send`]: the entry is in the outbox, with the files' paths, before this returns.
    /// The outbox uploads each file (streamed from disk, [`ClientEvent::Upload`] reporting
    /// progress), then sends the message with their ids, exactly once and in order with
    /// everything queued, after a reconnect or a restart too. An upload that fails for now is
    /// retried with a growing wait; a file the server refuses for good (over its size limit,
    /// not readable any more) fails the message with the reason (`updated`, state failed).
    /// A path that is missing, a directory or an empty file is `Invalid` here, nothing queued.
    pub async fn send_files(
        &self,
        target: Target,
        paths: &[PathBuf],
        text: &str,
    ) -> Result<LocalMessage> {
        if paths.is_empty() || paths.len() > protocol::limits::MAX_ATTACHMENTS {
            return Err(ClientError::Invalid(format!(
                "a message carries 1 to {} files",
                protocol::limits::MAX_ATTACHMENTS
            )));
        }
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let meta = tokio::fs::metadata(path).await.map_err(|e| {
                ClientError::Invalid(format!("cannot read {}: {e}", path.display()))
            })?;
            if !meta.is_file() {
                return Err(ClientError::Invalid(format!(
                    "{} is not a file",
                    path.display()
                )));
            }
            if meta.len() == 0 {
                return Err(ClientError::Invalid(format!("{} is empty", path.display())));
            }
            // Absolute, so the entry still names the file after a restart from elsewhere.
            let path = std::path::absolute(path).map_err(|e| {
                ClientError::Invalid(format!("cannot read {}: {e}", path.display()))
            })?;
            files.push(OutboxFile {
                path: path.to_string_lossy().into_owned(),
                attachment: None,
            });
        }
        self.queue_message(target, text, None, files).await
    }

    /// The local path of `file`'s thumbnail (an image's), from the profile's cache, downloaded
    /// first when it is not there: read offline once seen. `NotFound` for a file without one.
    pub async fn thumbnail(&self, file: &protocol::Attachment) -> Result<PathBuf> {
        self.cached(file, files::Part::Thumbnail).await
    }

    /// The local path of `file` itself, from the profile's cache (downloaded first when not
    /// there), to open it. The cache is bounded: keep a copy with [`Client::save_file`].
    pub async fn open_file(&self, file: &protocol::Attachment) -> Result<PathBuf> {
        self.cached(file, files::Part::File).await
    }

    /// The local path of `user`'s profile picture, from the profile's cache (downloaded first
    /// when not there); `None` when they have none (show `avatar`).
    pub async fn avatar(&self, user: &User) -> Result<Option<PathBuf>> {
        let Some(id) = &user.avatar_image else {
            return Ok(None);
        };
        let (server, token) = (&self.inner.config.server, &self.inner.token);
        Ok(Some(self.inner.files.avatar(server, token, id).await?))
    }

    async fn cached(&self, file: &protocol::Attachment, part: files::Part) -> Result<PathBuf> {
        let (server, token) = (&self.inner.config.server, &self.inner.token);
        self.inner.files.get(server, token, file, part).await
    }

    /// Downloads `file` into `dir` under its safe name, never overwriting (see
    /// [`files::save_into`]). Returns the new file's path.
    pub async fn save_file(&self, file: &protocol::Attachment, dir: &Path) -> Result<PathBuf> {
        files::save_into(&self.inner.config.server, &self.inner.token, file, dir).await
    }

    /// Bytes the profile's file cache holds.
    pub fn file_cache_size(&self) -> u64 {
        self.inner.files.size()
    }

    /// Takes an outbox message that is not sent yet (pending or failed) out of the outbox:
    /// it will not be sent, and an upload of its files under way stops. An entry already handed
    /// to the server (its `send` in flight) may still arrive. `NotFound` when it is not in the
    /// outbox.
    pub async fn cancel(&self, local_id: &str) -> Result<()> {
        let id = local_id.to_owned();
        let found = self
            .db(move |s| {
                let item = s.outbox_item(&id)?;
                if item.is_some() {
                    s.remove_outbox(&id)?;
                }
                Ok(item)
            })
            .await?;
        if found.is_none() {
            return Err(ClientError::NotFound(format!(
                "no message {local_id} in the outbox"
            )));
        }
        self.inner.shared.stop_upload(Some(local_id));
        self.kick();
        Ok(())
    }

    /// Queues `text` as a reply to message `reply_to` of `conv`, like [`Client::send`]. The
    /// message's `reply_to` quotes the target as this client holds it (sender and first line).
    pub async fn reply(&self, conv: ConvId, reply_to: Seq, text: &str) -> Result<LocalMessage> {
        self.queue_message(Target::Conv(conv), text, Some(reply_to), Vec::new())
            .await
    }

    /// Queues an edit of the user's message `target` of `conv` to `text`. Like every action it
    /// goes through the outbox (offline-safe, exactly once, in order with messages). When the
    /// server commits it, the target is announced `updated` (new text, `edited`); when it
    /// refuses it, [`ClientEvent::ActionFailed`]. Returns the action's `local_id`.
    pub async fn edit(&self, conv: ConvId, target: Seq, text: &str) -> Result<String> {
        check_text(text)?;
        self.queue_action(conv, Action::Edit { target }, text).await
    }

    /// Queues the deletion of the user's message `target` of `conv` (see [`Client::edit`]):
    /// once committed its text is gone here too (store and search) and it is announced
    /// `updated` as a tombstone (`deleted`).
    pub async fn delete(&self, conv: ConvId, target: Seq) -> Result<String> {
        self.queue_action(conv, Action::Delete { target }, "").await
    }

    /// Queues adding (`on`) or taking back the user's reaction `emoji` (one emoji, see
    /// [`protocol::is_valid_reaction`]) to message `target` of `conv` (see [`Client::edit`]).
    /// The same emoji twice is still one reaction. To toggle, pass `on` as "the user's name is
    /// not in the message's reaction for this emoji".
    pub async fn react(&self, conv: ConvId, target: Seq, emoji: &str, on: bool) -> Result<String> {
        if !protocol::is_valid_reaction(emoji) {
            return Err(ClientError::Invalid(format!(
                "a reaction must be a single emoji of at most {} bytes",
                protocol::limits::MAX_REACTION_BYTES
            )));
        }
        let action = Action::React {
            target,
            emoji: emoji.to_owned(),
            on,
        };
        self.queue_action(conv, action, "").await
    }

    /// Puts an action in the outbox behind everything queued before it.
    async fn queue_action(&self, conv: ConvId, action: Action, text: &str) -> Result<String> {
        let item = OutboxItem {
            local_id: Uuid::new_v4().to_string(),
            conv: Some(conv),
            to_user: None,
            sender: self.me(),
            text: text.to_owned(),
            created: now_ms(),
            state: MessageState::Pending,
            error: None,
            reply_to: None,
            action: Some(action),
            files: Vec::new(),
        };
        let local_id = item.local_id.clone();
        self.db(move |s| s.enqueue(&item)).await?;
        self.kick();
        Ok(local_id)
    }

    /// Queues a message, reply or message with files (see [`Client::send`]).
    async fn queue_message(
        &self,
        target: Target,
        text: &str,
        reply_to: Option<Seq>,
        files: Vec<OutboxFile>,
    ) -> Result<LocalMessage> {
        // With files the caption may be left out; one that is there follows the text rules.
        if files.is_empty() || !text.is_empty() {
            check_text(text)?;
        }
        let (conv, to_user) = match target {
            Target::Conv(id) => (Some(id), None),
            Target::To(name) => {
                // A name that no account can have fails here rather than after a round trip.
                if let Err(e) = crate::names::name(&name, crate::names::NameKind::Username) {
                    return Err(ClientError::Invalid(format!("no such user name: {e}")));
                }
                let peer = name.clone();
                let conv = self
                    .db(move |s| s.find_conversation(ConvKind::Dm, &peer))
                    .await?;
                (conv, Some(name))
            }
        };
        let item = OutboxItem {
            local_id: Uuid::new_v4().to_string(),
            conv,
            to_user,
            sender: self.me(),
            text: text.to_owned(),
            created: now_ms(),
            state: MessageState::Pending,
            error: None,
            reply_to,
            action: None,
            files,
        };
        let queued = item.clone();
        self.db(move |s| s.enqueue(&queued)).await?;
        let mut msg = item.to_local();
        if let (Some(conv), Some(seq)) = (conv, reply_to) {
            // The quote, as this client holds the target.
            if let Some(target) = self.db(move |s| s.message_at(conv, seq)).await? {
                msg.reply_to = Some(types::Quote {
                    seq,
                    sender: Some(target.sender),
                    snippet: types::Quote::snippet_of(&target.text),
                    deleted: target.deleted,
                });
            }
        }
        self.emit(ClientEvent::Message(MessageEvent::added(msg.clone())));
        if let Some(conv) = conv {
            if self.inner.cmd.send(Command::Touched(conv)).is_err() {
                // No actor (shut down): announce it here.
                self.inner.shared.publish_summaries(vec![conv]).await;
            }
        }
        self.kick();
        Ok(msg)
    }

    /// Puts a failed message back in the outbox with the same `client_msg_id`.
    pub async fn retry(&self, local_id: &str) -> Result<LocalMessage> {
        let id = local_id.to_owned();
        if let Some(item) = self.db(move |s| s.requeue(&id)).await? {
            let msg = item.to_local();
            self.emit(ClientEvent::Message(MessageEvent::updated(msg.clone())));
            self.kick();
            return Ok(msg);
        }
        let id = local_id.to_owned();
        self.db(move |s| s.message_by_local_id(&id))
            .await?
            .ok_or_else(|| ClientError::NotFound(format!("no message {local_id}")))
    }

    /// Messages of `conv` before `before` (the newest when `None`), ascending, at most `limit`.
    /// Served from the store; when it has a gap or runs out, the page is fetched from the server
    /// (if online) and stored. The newest page ends with the conversation's outbox messages.
    pub async fn history(
        &self,
        conv: ConvId,
        before: Option<Seq>,
        limit: u32,
    ) -> Result<Vec<LocalMessage>> {
        let limit = limit.clamp(1, protocol::limits::MAX_PAGE);
        // The newest page ends with the outbox, read in the same store call as the page: the
        // store thread may settle a message (outbox -> messages) between two calls, and the
        // message would then be in neither.
        let queued = move |s: &Store| match before {
            None => s.outbox(Some(conv)),
            Some(_) => Ok(Vec::new()),
        };
        let (mut page, seqs, top, mut outbox) = self
            .db(move |s| {
                let (page, seqs) = s.page_with_seqs(conv, before, limit)?;
                let top = match before {
                    Some(b) => b - 1,
                    None => s.last_seq(conv)?,
                };
                Ok((page, seqs, top, queued(s)?))
            })
            .await?;
        if !page_complete(&seqs, top, limit) {
            let fetched = self
                .request(move |id| ClientFrame::History {
                    id,
                    conv,
                    before,
                    after: None,
                    limit,
                })
                .await;
            match fetched {
                Ok(Reply::History { messages, .. }) => {
                    let (fresh, stored, queued_now) = self
                        .db(move |s| {
                            let fresh = s.insert_messages(&messages)?;
                            Ok((fresh.len(), s.page(conv, before, limit)?, queued(s)?))
                        })
                        .await?;
                    if fresh > 0 {
                        self.inner.shared.publish_summaries(vec![conv]).await;
                    }
                    page = stored;
                    outbox = queued_now;
                }
                Ok(other) => {
                    return Err(ClientError::Server(format!(
                        "unexpected answer to history: {other:?}"
                    )))
                }
                // Offline: what is stored is the best there is.
                Err(ClientError::Offline(_)) => {}
                Err(e) if page.is_empty() => return Err(e),
                Err(e) => tracing::warn!("history page from the server failed: {e}"),
            }
        }
        page.extend(outbox.iter().map(|o| o.to_local()));
        Ok(page)
    }

    /// Joined conversations, most recently active first.
    pub async fn conversations(&self) -> Result<Vec<ConversationSummary>> {
        let me = self.me();
        self.db(move |s| s.conversations(&me)).await
    }

    /// The conversation with this id, if joined.
    pub async fn conversation(&self, conv: ConvId) -> Result<Option<ConversationSummary>> {
        let me = self.me();
        self.db(move |s| s.conversation_summary(&me, conv)).await
    }

    /// The joined room called `name`, or the DM with user `name`.
    pub async fn find_conversation(&self, kind: ConvKind, name: &str) -> Result<Option<ConvId>> {
        let name = name.to_owned();
        self.db(move |s| s.find_conversation(kind, &name)).await
    }

    /// What a notification about `sender`'s message in `conv` says, from the local store only
    /// (no server request: this runs in the desktop's event pump). A sender whose display name
    /// is not stored is named by username.
    pub async fn notice_facts(&self, conv: ConvId, sender: &str) -> Result<notify::NoticeFacts> {
        let me = self.me();
        let sender = sender.to_owned();
        self.db(move |s| {
            let summary = s.conversation_summary(&me, conv)?;
            let display = s
                .user(&sender)?
                .map(|u| u.display_name)
                .filter(|d| !d.is_empty());
            Ok(notify::NoticeFacts::new(
                conv,
                summary.as_ref(),
                &sender,
                display,
                s.dnd()?,
            ))
        })
        .await
    }

    /// Marks `conv` read up to `seq`: stored at once, synced to the server when online.
    pub async fn mark_read(&self, conv: ConvId, seq: Seq) -> Result<()> {
        if self.db(move |s| s.set_last_read(conv, seq, true)).await? {
            self.inner.shared.publish_unread(conv).await;
            self.kick();
        }
        Ok(())
    }

    /// Full-text search over stored messages (English words, Chinese substrings), newest first.
    pub async fn search(
        &self,
        query: &str,
        conv: Option<ConvId>,
        limit: u32,
    ) -> Result<Vec<SearchHit>> {
        let query = query.to_owned();
        self.db(move |s| s.search(&query, conv, limit.clamp(1, 1000)))
            .await
    }

    pub async fn rooms(&self) -> Result<Vec<RoomInfo>> {
        match self.request(|id| ClientFrame::Rooms { id }).await? {
            Reply::Rooms { rooms } => Ok(rooms),
            other => Err(unexpected("rooms", other)),
        }
    }

    pub async fn create_room(&self, name: &str) -> Result<ConversationSummary> {
        self.create_room_of(name, false).await
    }

    /// Creates a private room (docs/protocol.md, "Private rooms"): invisible to non-members,
    /// who come in when a member adds them ([`Client::add_member`]).
    pub async fn create_private_room(&self, name: &str) -> Result<ConversationSummary> {
        self.create_room_of(name, true).await
    }

    async fn create_room_of(&self, name: &str, private: bool) -> Result<ConversationSummary> {
        let name = name.trim_start_matches('#').to_owned();
        let name = crate::names::name(&name, crate::names::NameKind::RoomName)
            .map_err(|e| ClientError::Invalid(e.to_string()))?
            .display;
        let reply = self
            .request(move |id| ClientFrame::CreateRoom { id, name, private })
            .await?;
        self.joined(reply).await
    }

    pub async fn join_room(&self, name: &str) -> Result<ConversationSummary> {
        let room = name.trim_start_matches('#').to_owned();
        let reply = self
            .request(move |id| ClientFrame::Join { id, room })
            .await?;
        self.joined(reply).await
    }

    async fn joined(&self, reply: Reply) -> Result<ConversationSummary> {
        let Reply::Joined { conversation } = reply else {
            return Err(unexpected("join", reply));
        };
        let me = self.me();
        let summary = self
            .db(move |s| {
                s.upsert_conversation(&conversation)?;
                s.conversation_summary(&me, conversation.id)
            })
            .await?
            .ok_or_else(|| ClientError::Internal("joined conversation not stored".into()))?;
        self.emit(ClientEvent::Conversation(summary.clone()));
        Ok(summary)
    }

    pub async fn leave_room(&self, conv: ConvId) -> Result<()> {
        self.request(move |id| ClientFrame::Leave { id, conv })
            .await?;
        self.db(move |s| s.remove_membership(conv)).await?;
        self.emit(ClientEvent::ConversationRemoved(ConversationRemoved {
            conv,
        }));
        Ok(())
    }

    /// Stores the users of a members or users answer (the names notifications use).
    /// The users named `usernames` as the local store last heard of them (from `users` and
    /// `members` answers), in that order; those it never heard of are left out. No server
    /// request: the window names people with it before the user list comes from the server.
    pub async fn known_users(&self, usernames: Vec<String>) -> Result<Vec<User>> {
        self.db(move |s| {
            usernames
                .iter()
                .filter_map(|u| s.user(u).transpose())
                .collect()
        })
        .await
    }

    async fn remember_users(&self, members: &[Member]) -> Result<()> {
        let users: Vec<User> = members.iter().map(|m| m.user.clone()).collect();
        self.db(move |s| users.iter().try_for_each(|u| s.upsert_user(u)))
            .await
    }

    pub async fn members(&self, conv: ConvId) -> Result<Vec<Member>> {
        match self
            .request(move |id| ClientFrame::Members { id, conv })
            .await?
        {
            Reply::Members { members, .. } => {
                self.remember_users(&members).await?;
                Ok(members)
            }
            other => Err(unexpected("members", other)),
        }
    }

    /// Every registered user, with presence.
    pub async fn users(&self) -> Result<Vec<Member>> {
        match self.request(|id| ClientFrame::Users { id }).await? {
            Reply::Users { users } => {
                self.remember_users(&users).await?;
                Ok(users)
            }
            other => Err(unexpected("users", other)),
        }
    }

    /// Watch the presence of `users` (those it shows: a room's members, a user picker),
    /// replacing the last set; returns those online now. The set is kept and sent again after
    /// every reconnect; presence is kept only for it, this user and their DM partners (always
    /// watched). At most [`crate::protocol::limits::MAX_WATCHED_USERS`] names. Offline, the set
    /// is kept for the next connection (and the call fails `Offline`); refused (an unknown
    /// name is `not_found`), the last set stays, here as on the server.
    pub async fn watch_presence(&self, users: Vec<String>) -> Result<Vec<String>> {
        let watching = &self.inner.shared.watching;
        let last = std::mem::replace(
            &mut *watching.lock().unwrap_or_else(|e| e.into_inner()),
            users.clone(),
        );
        let answer = self
            .request(move |id| ClientFrame::WatchPresence { id, users })
            .await;
        match answer {
            Ok(Reply::Watching { online }) => Ok(online),
            Ok(other) => Err(unexpected("watch_presence", other)),
            Err(e) => {
                if !matches!(e, ClientError::Offline(_)) {
                    *watching.lock().unwrap_or_else(|e| e.into_inner()) = last;
                }
                Err(e)
            }
        }
    }

    /// Usernames online now, as last reported by the server: this user, their DM partners and
    /// the users watched ([`Client::watch_presence`]); nobody else is known.
    pub fn online(&self) -> Vec<String> {
        self.inner
            .shared
            .online
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Tells the other members the user is typing.
    pub async fn typing(&self, conv: ConvId) -> Result<()> {
        self.request(move |id| ClientFrame::Typing { id, conv })
            .await?;
        Ok(())
    }

    /// Sets the notification level of `conv` on the server (so on every device of the user);
    /// stored here once the server accepted it. Needs a connection.
    pub async fn set_level(&self, conv: ConvId, level: crate::protocol::NotifyLevel) -> Result<()> {
        self.request(move |id| ClientFrame::SetLevel { id, conv, level })
            .await?;
        self.db(move |s| s.set_level(conv, level)).await?;
        self.inner.shared.publish_summaries(vec![conv]).await;
        Ok(())
    }

    /// Turns do not disturb on (until a time, or until turned off: `until: None`) or off
    /// (`None`) on the server, so on every device of the user. Needs a connection.
    pub async fn set_dnd(&self, dnd: Option<crate::protocol::Dnd>) -> Result<()> {
        self.request(move |id| ClientFrame::SetDnd { id, dnd })
            .await?;
        self.db(move |s| s.set_dnd(dnd)).await?;
        self.inner.shared.emit(ClientEvent::Dnd { dnd });
        Ok(())
    }

    /// Do not disturb as last heard from the server (it may have ended since: see
    /// [`crate::protocol::Dnd::is_on`]).
    pub async fn dnd(&self) -> Result<Option<crate::protocol::Dnd>> {
        self.db(|s| s.dnd()).await
    }

    /// Messages still waiting in the outbox (pending and failed), oldest first.
    pub async fn outbox(&self) -> Result<Vec<LocalMessage>> {
        let items = self.db(|s| s.outbox(None)).await?;
        Ok(items.iter().map(OutboxItem::to_local).collect())
    }

    /// Waits until the current connection has finished its resume (returns at once when it
    /// has). Fails when the session is signed out; use a timeout for the offline case.
    pub async fn wait_synced(&self) -> Result<()> {
        let mut synced = self.inner.synced.clone();
        let mut state = self.inner.state.clone();
        loop {
            {
                let s = state.borrow_and_update().clone();
                if let ConnectionState::SignedOut { reason } = s {
                    return Err(ClientError::Unauthorized(reason));
                }
                if s == ConnectionState::Online && *synced.borrow_and_update() {
                    return Ok(());
                }
            }
            tokio::select! {
                r = synced.changed() => r.map_err(|_| stopped())?,
                r = state.changed() => r.map_err(|_| stopped())?,
            }
        }
    }

    /// Waits until no message is pending in the outbox (failed ones do not count).
    pub async fn wait_outbox_empty(&self) -> Result<()> {
        let mut events = self.subscribe();
        loop {
            if self.db(|s| s.pending_count()).await? == 0 {
                return Ok(());
            }
            if let ConnectionState::SignedOut { reason } = self.connection_state() {
                return Err(ClientError::Unauthorized(reason));
            }
            // Re-check on every event, and now and then in case one was missed (lagged): a
            // timeout here is that "now and then", not a failure.
            let _ = tokio::time::timeout(Duration::from_millis(200), events.recv()).await;
        }
    }

    /// Revokes the token on the server (best effort when offline), forgets the session locally
    /// and stops the client. History stays for the next sign-in.
    pub async fn logout(&self) -> Result<()> {
        let revoked = http::logout_token(&self.inner.config.server, &self.inner.token).await;
        match revoked {
            Ok(()) | Err(ClientError::Unauthorized(_)) => {}
            Err(e) => {
                // Signed out here all the same; the token is revoked on the server the next
                // time a session of this profile gets through to it.
                tracing::warn!("logout: the server was not told, will retry: {e}");
                let token = self.inner.token.clone();
                self.db(move |s| s.add_pending_revocation(&token)).await?;
            }
        }
        self.db(|s| s.clear_session()).await?;
        self.shutdown().await;
        Ok(())
    }

    /// Closes the connection (normal closure) and stops the actor.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.cmd.send(Command::Shutdown(tx)).is_ok()
            && tokio::time::timeout(Duration::from_secs(3), rx)
                .await
                .is_err()
        {
            tracing::warn!("the connection did not close in time");
        }
        let handle = self
            .inner
            .actor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            if tokio::time::timeout(Duration::from_secs(3), handle)
                .await
                .is_err()
            {
                tracing::warn!("the connection task did not stop in time");
            }
        }
        // An upload under way stops too; its entry keeps its place and is uploaded again by the
        // next start.
        self.inner.shared.stop_upload(None);
        // Other handles (a task that was just aborted, the revocation task) may outlive this
        // call by a moment; the file is closed now all the same, so whoever comes next (a
        // repair, the next start, a copy) finds it complete, without a write-ahead log.
        self.inner.shared.store.close().await;
    }
}

/// Revoke the tokens of sessions signed out while offline, each time this client gets online,
/// until none is left. A token the server no longer accepts is done too.
async fn revoke_pending(
    server: Url,
    shared: Arc<Shared>,
    mut state: watch::Receiver<ConnectionState>,
) {
    loop {
        if state
            .wait_for(|s| matches!(s, ConnectionState::Online))
            .await
            .is_err()
        {
            return;
        }
        let tokens = match shared.store.call(|s| s.pending_revocations()).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("cannot read pending revocations: {e}");
                return;
            }
        };
        if tokens.is_empty() {
            return;
        }
        for token in tokens {
            match http::logout_token(&server, &token).await {
                Ok(()) | Err(ClientError::Unauthorized(_)) => {
                    if let Err(e) = shared
                        .store
                        .call(move |s| s.remove_pending_revocation(&token))
                        .await
                    {
                        tracing::warn!("cannot forget a revoked token: {e}");
                    }
                }
                Err(e) => tracing::info!("revoking an old session failed, will retry: {e}"),
            }
        }
        if state
            .wait_for(|s| !matches!(s, ConnectionState::Online))
            .await
            .is_err()
        {
            return;
        }
    }
}

fn stopped() -> ClientError {
    ClientError::Offline("client stopped".into())
}

fn unexpected(what: &str, reply: Reply) -> ClientError {
    ClientError::Server(format!("unexpected answer to {what}: {reply:?}"))
}

/// Whether a stored page can be served as is: it runs without gaps from `top` downwards and is
/// either full or reaches the conversation's first message.
/// The text rules of a message and an edit, checked before queuing (the server checks again).
fn check_text(text: &str) -> Result<()> {
    if protocol::is_valid_text(text) {
        Ok(())
    } else {
        Err(ClientError::Invalid(format!(
            "a message must be 1 to {} characters and not blank",
            protocol::limits::MAX_TEXT_CHARS
        )))
    }
}

/// Whether the events (messages and actions) a page looked at, by seq, are every event of
/// the stretch it covers: ending at `top`, without gaps, `limit` of them or down to seq 1.
fn page_complete(seqs: &[Seq], top: Seq, limit: u32) -> bool {
    if top <= 0 {
        return true;
    }
    if seqs.last() != Some(&top) {
        return false;
    }
    let contiguous = seqs.windows(2).all(|w| w[1] == w[0] + 1);
    contiguous && (seqs.len() as u32 >= limit || seqs[0] == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(seqs: &[Seq]) -> Vec<Seq> {
        seqs.to_vec()
    }

    #[test]
    fn page_completeness() {
        assert!(page_complete(&page(&[]), 0, 10));
        assert!(!page_complete(&page(&[]), 5, 10));
        assert!(page_complete(&page(&[1, 2, 3]), 3, 10));
        assert!(page_complete(&page(&[4, 5, 6]), 6, 3));
        assert!(
            !page_complete(&page(&[4, 5, 6]), 6, 4),
            "short and not at seq 1"
        );
        assert!(!page_complete(&page(&[4, 6, 7]), 7, 3), "gap");
        assert!(
            !page_complete(&page(&[4, 5, 6]), 8, 3),
            "newest messages missing"
        );
    }

    #[test]
    fn error_codes_match_the_ipc_contract() {
        assert_eq!(
            ClientError::from_server(ErrorCode::TooLong, "x".into()).code(),
            "invalid"
        );
        assert_eq!(
            ClientError::from_server(ErrorCode::Unauthorized, "x".into()).code(),
            "unauthorized"
        );
        assert_eq!(
            ClientError::from_server(ErrorCode::NotFound, "x".into()).code(),
            "not_found"
        );
        assert_eq!(
            ClientError::from_server(ErrorCode::Conflict, "x".into()).code(),
            "conflict"
        );
        assert_eq!(
            ClientError::from_server(ErrorCode::Internal, "x".into()).code(),
            "server"
        );
        assert_eq!(ClientError::Offline("x".into()).code(), "offline");
        assert_eq!(
            ClientError::from_server(ErrorCode::StorageFull, "x".into()).code(),
            "storage_full"
        );
    }

    /// Damage met by a query after a clean open, and a full local disk, keep their own codes
    /// (the UI offers a repair for one and says "free space" for the other), not `internal`.
    #[test]
    fn store_failures_keep_their_kind() {
        let sqlite = |code| {
            store::StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        let corrupt = ClientError::from(sqlite(rusqlite::ffi::SQLITE_CORRUPT));
        assert_eq!(corrupt.code(), "store_corrupt");
        assert!(corrupt.to_string().contains("natter repair"), "{corrupt}");
        let not_a_db = ClientError::from(sqlite(rusqlite::ffi::SQLITE_NOTADB));
        assert_eq!(not_a_db.code(), "store_corrupt");
        let full = ClientError::from(sqlite(rusqlite::ffi::SQLITE_FULL));
        assert_eq!(full.code(), "storage_full");
        assert_eq!(
            ClientError::from(sqlite(rusqlite::ffi::SQLITE_BUSY)).code(),
            "internal"
        );
    }

    #[test]
    fn profile_dirs_differ_per_server_and_user() {
        let a: Url = "http://127.0.0.1:8686".parse().unwrap();
        let b: Url = "https://chat.example.com".parse().unwrap();
        assert_ne!(
            default_profile_dir(&a, "alice"),
            default_profile_dir(&a, "bob")
        );
        assert_ne!(
            default_profile_dir(&a, "alice"),
            default_profile_dir(&b, "alice")
        );
        let p = default_profile_dir(&b, "../../etc");
        assert!(!p.to_string_lossy().contains("../"), "{p:?}");
        assert!(p.to_string_lossy().contains("https_chat.example.com_443"));
    }
}
