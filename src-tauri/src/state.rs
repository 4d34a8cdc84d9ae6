//! The shell's state: the running clients (one per signed-in account: the active one, which the
//! window shows, and the background ones, which stay connected), host mode, what the window
//! shows and whether it has focus, and the pump per client that forwards [`ClientEvent`]s as UI
//! events for the active account (one per changed message or conversation, never the whole list
//! for one change), raises notifications for every account and keeps the unread totals (per
//! account in the account list, all together in the title and tray).
//!
//! The state is runtime-agnostic: it reaches the windows through the small [`Ui`] trait, so the
//! commands are plain functions and tests run them under Tauri's mock runtime.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use natter::client::notify::{decide, Gist, NotifyContext};
use natter::client::{
    Client, ClientConfig, ClientError, ClientEvent, ConnectionState, MessageChange, MessageState,
};
use natter::protocol::{ConvId, Dnd, NotifyLevel, Session, User};
use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager, Runtime};
use tokio::sync::broadcast::error::RecvError;
use ts_rs::TS;
use url::Url;

use crate::accounts::{self, AccountInfo, AccountKey, UnreadBook};
use crate::config::{DesktopConfig, Language, Settings};
use crate::error::{CmdResult, CommandError};
use crate::first_screen::EventGate;
use crate::host::{self, HostedServer, Reach};
use crate::notifications::{ClickHandler, NoticeSource, Notifier, Presenter};
use crate::{startup, tray, window};

/// Event names of docs/ipc.md. Every one of them reaches the window on the one channel
/// [`events::CHANNEL`], as an [`EventEnvelope`] naming it: the page subscribes once at start-up
/// instead of once per event (each subscription is an IPC round trip before the first paint).
pub mod events {
    /// The Tauri event that carries all the others.
    pub const CHANNEL: &str = "natter://event";
    pub const MESSAGE: &str = "natter://message";
    pub const CONVERSATION: &str = "natter://conversation";
    pub const CONVERSATION_REMOVED: &str = "natter://conversation-removed";
    pub const UNREAD: &str = "natter://unread";
    pub const CONVERSATIONS: &str = "natter://conversations";
    pub const PRESENCE: &str = "natter://presence";
    pub const ONLINE: &str = "natter://online";
    pub const TYPING: &str = "natter://typing";
    pub const CONNECTION: &str = "natter://connection";
    pub const OPEN_CONVERSATION: &str = "natter://open-conversation";
    pub const SETTINGS: &str = "natter://settings";
    /// Someone's public profile changed (or their account was deleted), the user's own included.
    pub const USER: &str = "natter://user";
    pub const DND: &str = "natter://dnd";
    /// The account list changed (added, removed, switched, an account's unread total, its
    /// connection or its own profile).
    pub const ACCOUNTS: &str = "natter://accounts";
    /// The window now shows another account (switched from a notification, or the next one
    /// after signing out): the whole `AppState`.
    pub const APP_STATE: &str = "natter://app-state";
    /// The server refused an edit, delete or reaction of the user's for good: nothing changed
    /// (`ActionFailure`: the action's `localId`, `conv`, `action`, `error`).
    pub const ACTION_FAILED: &str = "natter://action-failed";
    /// How far the upload of one file of an outbox message got (`UploadProgress`).
    pub const UPLOAD: &str = "natter://upload";
}

/// What [`events::CHANNEL`] carries: the event's name (one of [`events`]) and its payload.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct EventEnvelope {
    pub event: String,
    #[ts(type = "unknown")]
    pub payload: serde_json::Value,
}

/// `natter://dnd` payload: do not disturb as the server has it (`null`: off). Sent on every
/// (re)connect and when it changed on any of the user's devices.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct DndEvent {
    pub dnd: Option<Dnd>,
}

/// `natter://presence` payload: who came online and who went offline since the last one.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct PresenceEvent {
    pub online: Vec<String>,
    pub offline: Vec<String>,
}

/// `natter://typing` payload.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct TypingEvent {
    #[ts(type = "number")]
    pub conv: ConvId,
    pub username: String,
}

/// `natter://open-conversation` payload.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct OpenConversationEvent {
    #[ts(type = "number")]
    pub conv: ConvId,
}

/// Where the shell's state meets the windows: events to the UI, showing the window, and the
/// unread total (title and tray).
pub trait Ui: Send + Sync + 'static {
    fn emit(&self, event: &str, payload: serde_json::Value);
    fn show_main(&self);
    fn set_unread_total(&self, total: u32);
    /// The language setting changed: relabel what the shell draws itself (the tray).
    fn set_language(&self, lang: Language);
    /// Adds (`true`) or removes the desktop's entry that starts the app at login.
    fn set_start_at_login(&self, enabled: bool) -> Result<(), String>;
    /// Do not disturb went on or off: the tray says so.
    fn set_dnd(&self, _on: bool) {}
}

/// Emits `event` on [`events::CHANNEL`] now (the [`EventGate`] decides when).
pub(crate) fn send_event<R: Runtime>(app: &AppHandle<R>, event: EventEnvelope) {
    if let Err(e) = app.emit(events::CHANNEL, &event) {
        tracing::warn!(event = event.event, error = %e, "cannot emit event");
    }
}

/// The real [`Ui`]: a Tauri app handle. Its events pass the main window's [`EventGate`] when
/// the window has one (the real app's; see `first_screen`).
pub struct TauriUi<R: Runtime>(pub AppHandle<R>);

impl<R: Runtime> Ui for TauriUi<R> {
    fn emit(&self, event: &str, payload: serde_json::Value) {
        let envelope = EventEnvelope {
            event: event.to_string(),
            payload,
        };
        match self.0.try_state::<EventGate>() {
            Some(gate) => gate.pass(envelope, |e| send_event(&self.0, e)),
            None => send_event(&self.0, envelope),
        }
    }

    fn show_main(&self) {
        window::show_main(&self.0);
    }

    fn set_unread_total(&self, total: u32) {
        window::set_unread_title(&self.0, total);
        tray::set_unread(&self.0, total);
    }

    fn set_language(&self, lang: Language) {
        tray::set_language(&self.0, lang);
    }

    fn set_start_at_login(&self, enabled: bool) -> Result<(), String> {
        startup::set_start_at_login(&self.0, enabled)
    }

    fn set_dnd(&self, on: bool) {
        tray::set_dnd(&self.0, on);
    }
}

/// `AppState` of docs/ipc.md.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct AppState {
    pub phase: Phase,
    pub server_url: Option<String>,
    /// `server_url` is an http:// address of another machine: passwords and messages cross the
    /// network in clear text, which the UI warns about.
    pub plaintext: bool,
    pub hosting: Option<Hosting>,
    pub user: Option<User>,
    pub settings: Settings,
    #[ts(type = "number | null")]
    pub last_conversation: Option<ConvId>,
    pub connection: ConnectionState,
    /// Every signed-in account, the active one included (`active: true`), in the order added.
    pub accounts: Vec<AccountInfo>,
}

/// A new invite and the links to pass it on with (docs/ipc.md `create_invite`).
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct NewInvite {
    /// Its `code` is shown this once.
    pub invite: natter::protocol::Invite,
    /// `natter://invite` links: one per address others on the network can use when this app
    /// hosts the server (with its certificate's fingerprint), else the server's address.
    pub links: Vec<String>,
}

/// What `repair_store` did (docs/ipc.md).
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct StoreRepair {
    /// A damaged local store was moved aside and rebuilt; false: it was sound, nothing was done.
    pub repaired: bool,
    /// The app after the repair (signed out when the session could not be read back).
    pub app: AppState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum Phase {
    /// No server chosen yet.
    Setup,
    SignedOut,
    Ready,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[ts(export)]
pub struct Hosting {
    /// URLs others on the LAN can enter (once `shared`).
    pub addresses: Vec<String>,
    pub port: u16,
    /// "Share on the network" is on: the server listens on the network and is advertised;
    /// off, only this computer reaches it.
    pub shared: bool,
    /// Who may register on it (a hosted server is invite only).
    pub registration: natter::protocol::Registration,
    /// The fingerprint of the hosted server's certificate, which those who join compare with
    /// the one their app shows.
    pub fingerprint: String,
}

/// How long quitting waits for a restore still under way.
const RESTORE_AT_EXIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a command needing the server waits for a connection that is still being made.
const CONNECTING_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The shell's state, managed by Tauri. Cheap to clone (the pump task holds a clone).
#[derive(Clone)]
pub struct Shell(Arc<Inner>);

struct Inner {
    ui: Arc<dyn Ui>,
    data_dir: PathBuf,
    config: Mutex<DesktopConfig>,
    /// Serialises the commands that replace a client, the account shown or the server (join,
    /// host, sign-in/out, add and switch account).
    switching: tokio::sync::Mutex<()>,
    /// The active account's client: the one the window shows and the commands act on.
    client: RwLock<Option<Running>>,
    /// The other signed-in accounts' clients, connected as the active one is, so their
    /// notifications and unread counts keep coming.
    background: Mutex<Vec<Running>>,
    host: Mutex<Option<HostedServer>>,
    focused: AtomicBool,
    visible: Mutex<Option<ConvId>>,
    presenter: Arc<dyn Presenter>,
    /// Unread counts per account and conversation: totals without re-reading any list.
    unread: Mutex<UnreadBook>,
    /// Do not disturb as last heard, and a counter that lets a timer for its end know it is
    /// still the one in force.
    dnd: Mutex<(Option<Dnd>, u64)>,
    unread_total: AtomicU32,
    /// The address a hosted server shared on the network listens on (all interfaces; tests
    /// name one). Unshared, it listens on loopback.
    host_bind: IpAddr,
    /// Whether [`Shell::restore`] has finished: it runs beside the page's load, so the commands
    /// wait for it ([`Shell::restored`]) instead of answering from a half-started shell.
    restored: tokio::sync::watch::Sender<bool>,
}

/// One signed-in account's running client, the pump of its events, and its notifications
/// (bursts are coalesced per conversation of one account: conversation ids are per server).
/// Whether a client's store already holds the account's history when its pump starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum History {
    /// Resumed from a store that has it: what the resume brings was missed, and notifies.
    Known,
    /// A new sign-in on this device, or a rebuilt store: the first resume brings the history
    /// the server has, none of which is news.
    Arriving,
}

struct Running {
    key: AccountKey,
    client: Client,
    pump: tauri::async_runtime::JoinHandle<()>,
    notifier: Arc<Notifier>,
}

impl Shell {
    /// Assembles the state; [`Shell::restore`] then starts what the saved config says.
    pub fn with_parts(
        ui: Arc<dyn Ui>,
        presenter: Arc<dyn Presenter>,
        data_dir: PathBuf,
        host_bind: IpAddr,
    ) -> Self {
        let config = DesktopConfig::load(&data_dir);
        Shell(Arc::new(Inner {
            ui,
            data_dir,
            config: Mutex::new(config),
            switching: tokio::sync::Mutex::new(()),
            client: RwLock::new(None),
            background: Mutex::new(Vec::new()),
            host: Mutex::new(None),
            focused: AtomicBool::new(false),
            visible: Mutex::new(None),
            presenter,
            unread: Mutex::new(UnreadBook::default()),
            dnd: Mutex::new((None, 0)),
            unread_total: AtomicU32::new(0),
            host_bind,
            restored: tokio::sync::watch::Sender::new(false),
        }))
    }

    /// Whether the profile's restore has finished (see [`Shell::restored`]).
    pub fn is_restored(&self) -> bool {
        *self.0.restored.borrow()
    }

    /// Resolves once [`Shell::restore`] has finished. The app restores the profile on the async
    /// runtime while the window loads its page (the main thread serves the page's files, so a
    /// restore there held the page's load up); every command waits here first
    /// (`commands::handler`), so the first answers already see the restored accounts.
    pub async fn restored(&self) {
        let mut done = self.0.restored.subscribe();
        // The sender lives in `self`, so it cannot be dropped while we wait.
        let _ = done.wait_for(|restored| *restored).await;
    }

    /// Starts what the saved config says: the hosted server, then a client for every signed-in
    /// account from its store. A background account whose session is gone (or whose store
    /// cannot be opened) leaves the list; the active one stays, signed out, so the window asks
    /// to sign in to it again.
    pub async fn restore(&self) {
        self.restore_then(|_| {}).await;
    }

    /// [`Shell::restore`], then `then` (what the app applies once it knows the accounts:
    /// start-up settings, the unread display) before the waiting commands are let through, so
    /// none of them sees the profile restored but `then` not yet done.
    pub async fn restore_then(&self, then: impl FnOnce(&Shell)) {
        if let Some(port) = self.config().host_port {
            match HostedServer::start(self.host_reach(), port, self.server_data_dir()).await {
                Ok(server) => {
                    *lock(&self.0.host) = Some(server);
                    self.move_hosted_accounts_to_https(port).await;
                }
                Err(e) => tracing::warn!(port, error = %e.message, "cannot host again"),
            }
        }
        let cfg = self.config();
        let active = cfg.active_account();
        for saved in cfg.accounts {
            let key = saved.key;
            let is_active = active.as_ref() == Some(&key);
            let resumed = match Url::parse(&key.server_url) {
                Ok(url) => Client::resume(self.client_config(&url, &key.username)).await,
                Err(e) => Err(ClientError::Internal(format!("saved server URL: {e}"))),
            };
            match resumed {
                Ok(Some(client)) if is_active => self.install(key, client, History::Known),
                Ok(Some(client)) => self.install_background(key, client),
                Ok(None) => tracing::info!(user = %key.username, "no saved session; sign in again"),
                Err(e) => tracing::warn!(user = %key.username, error = %e, "cannot resume"),
            }
        }
        let started: Vec<AccountKey> = lock(&self.0.background)
            .iter()
            .map(|r| r.key.clone())
            .collect();
        self.update_config(|c| {
            c.accounts
                .retain(|a| active.as_ref() == Some(&a.key) || started.contains(&a.key))
        });
        then(self);
        self.0.restored.send_replace(true);
    }

    pub fn data_dir(&self) -> &Path {
        &self.0.data_dir
    }

    pub fn config(&self) -> DesktopConfig {
        lock(&self.0.config).clone()
    }

    pub fn settings(&self) -> Settings {
        lock(&self.0.config).settings.clone()
    }

    /// Changes the config and writes it. A failed write is logged: the change still holds for
    /// this run, and refusing a settings change over a full disk would help nobody.
    fn update_config(&self, f: impl FnOnce(&mut DesktopConfig)) -> DesktopConfig {
        let mut cfg = lock(&self.0.config);
        f(&mut cfg);
        if let Err(e) = cfg.save(&self.0.data_dir) {
            tracing::warn!(error = %e, "cannot save desktop config");
        }
        cfg.clone()
    }

    pub fn client(&self) -> Option<Client> {
        read(&self.0.client).as_ref().map(|r| r.client.clone())
    }

    /// The signed-in client, or the error a command returns without one.
    pub fn require_client(&self) -> CmdResult<Client> {
        self.client().ok_or_else(CommandError::signed_out)
    }

    /// The client for a command that needs the server: right after sign-in or start-up the
    /// connection is still being made, so wait for it briefly instead of failing as offline
    /// (an `offline` state with a retry time fails at once: the UI shows the banner).
    pub async fn online_client(&self) -> CmdResult<Client> {
        let client = self.require_client()?;
        let mut watch = client.connection_watch();
        let settled = async {
            loop {
                if !matches!(*watch.borrow_and_update(), ConnectionState::Connecting) {
                    break;
                }
                if watch.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CONNECTING_GRACE, settled).await;
        Ok(client)
    }

    /// Whether `key` is the account the window shows.
    fn is_active(&self, key: &AccountKey) -> bool {
        let cfg = lock(&self.0.config);
        cfg.server_url.as_deref() == Some(key.server_url.as_str())
            && cfg.username.as_deref() == Some(key.username.as_str())
    }

    /// The account list (`AccountInfo` of docs/ipc.md), in the order the accounts were added.
    pub fn accounts(&self) -> Vec<AccountInfo> {
        let cfg = self.config();
        let active = cfg.active_account();
        let mut clients: Vec<(AccountKey, Client)> = lock(&self.0.background)
            .iter()
            .map(|r| (r.key.clone(), r.client.clone()))
            .collect();
        if let Some(r) = read(&self.0.client).as_ref() {
            clients.push((r.key.clone(), r.client.clone()));
        }
        let book = lock(&self.0.unread);
        cfg.accounts
            .iter()
            .map(|saved| {
                let key = &saved.key;
                let client = clients.iter().find(|(k, _)| k == key).map(|(_, c)| c);
                AccountInfo {
                    server_url: key.server_url.clone(),
                    server_name: accounts::server_name(&key.server_url),
                    username: key.username.clone(),
                    user: client.map(|c| c.user()),
                    unread: book.account_total(key),
                    active: active.as_ref() == Some(key),
                    connection: client.map_or(
                        ConnectionState::SignedOut {
                            reason: String::new(),
                        },
                        |c| c.connection_state(),
                    ),
                }
            })
            .collect()
    }

    fn emit_accounts(&self) {
        self.0.ui.emit(events::ACCOUNTS, to_json(&self.accounts()));
    }

    pub fn app_state(&self) -> AppState {
        let cfg = self.config();
        let client = self.client();
        // No client: nobody was thrown out, the user has not signed in, so no reason (the UI
        // explains only sessions that ended against the user's will).
        let connection =
            client
                .as_ref()
                .map(|c| c.connection_state())
                .unwrap_or(ConnectionState::SignedOut {
                    reason: String::new(),
                });
        let phase = match (&cfg.server_url, &client, &connection) {
            (None, _, _) => Phase::Setup,
            (Some(_), None, _) | (_, _, ConnectionState::SignedOut { .. }) => Phase::SignedOut,
            (Some(_), Some(_), _) => Phase::Ready,
        };
        let hosting = lock(&self.0.host).as_ref().map(|h| Hosting {
            addresses: host::lan_urls(h.port),
            port: h.port,
            shared: h.reach.is_shared(),
            registration: host::REGISTRATION,
            fingerprint: h.fingerprint.to_string(),
        });
        let plaintext = cfg
            .server_url
            .as_deref()
            .and_then(|u| Url::parse(u).ok())
            .is_some_and(|u| natter::client::trust::is_plaintext_remote(&u));
        AppState {
            phase,
            server_url: cfg.server_url,
            plaintext,
            hosting,
            user: client.map(|c| c.user()),
            settings: cfg.settings,
            last_conversation: cfg.last_conversation,
            connection,
            accounts: self.accounts(),
        }
    }

    /// Accounts on this app's hosted server from before it was encrypted (kept under
    /// `http://127.0.0.1:PORT`) move to its https:// address, and their profiles to the server
    /// id's place, so they stay signed in with their history.
    async fn move_hosted_accounts_to_https(&self, port: u16) {
        let plain: Url = format!("http://127.0.0.1:{port}")
            .parse()
            .expect("a valid URL");
        let secure: Url = host::local_url(port).parse().expect("a valid URL");
        let cfg = self.config();
        let users: Vec<String> = cfg
            .accounts
            .iter()
            .filter(|a| Url::parse(&a.key.server_url).is_ok_and(|u| u == plain))
            .map(|a| a.key.username.clone())
            .collect();
        if users.is_empty() {
            return;
        }
        let server_id = match natter::client::health(&secure).await {
            Ok(health) => health.server_id,
            Err(e) => {
                tracing::warn!(error = %e, "cannot move the hosted server's accounts to https");
                return;
            }
        };
        for user in &users {
            let moved = [&plain, &secure].into_iter().try_for_each(|url| {
                natter::client::profiles::adopt(&self.0.data_dir, url, &server_id, user).map(drop)
            });
            if let Err(e) = moved {
                tracing::warn!(%user, error = %e, "cannot move a profile to the server id");
            }
        }
        self.update_config(|c| c.move_server(&plain, &host::local_url(port)));
        tracing::info!(port, "the hosted server's accounts moved to https");
    }

    fn server_data_dir(&self) -> PathBuf {
        self.0.data_dir.join("server")
    }

    /// The links that carry invite `code` to others: from this app's hosted server, one per
    /// network address with its fingerprint; else the address of the server the app is on.
    pub fn invite_links(&self, code: &str) -> Vec<String> {
        use natter::client::invitation::InviteLink;
        let hosted = lock(&self.0.host).as_ref().map(|h| (h.port, h.fingerprint));
        let on_host = hosted.filter(|(port, _)| {
            self.config().server_url.as_deref() == Some(host::local_url(*port).as_str())
        });
        match on_host {
            Some((port, fingerprint)) => host::lan_urls(port)
                .iter()
                .filter_map(|u| Url::parse(u).ok())
                .map(|u| InviteLink::new(&u, Some(fingerprint), code).to_link())
                .collect(),
            None => self
                .server_url()
                .ok()
                .map(|u| InviteLink::new(&u, None, code).to_link())
                .into_iter()
                .collect(),
        }
    }

    /// Who may reach a hosted server, as the host chose ("Share on the network").
    fn host_reach(&self) -> Reach {
        if self.config().host_shared {
            Reach::Network(self.0.host_bind)
        } else {
            Reach::ThisComputer
        }
    }

    /// "Share on the network" on or off: the hosted server starts again on the same port,
    /// listening on the network and advertised, or on loopback only (which closes everyone
    /// else's connections). The choice is remembered. This app's own clients reconnect at once.
    pub async fn set_sharing(&self, on: bool) -> CmdResult<AppState> {
        let _guard = self.0.switching.lock().await;
        let running = lock(&self.0.host).take();
        let Some(running) = running else {
            return Err(CommandError::new(
                crate::error::ErrorCode::NotFound,
                "this app is not hosting a server",
            ));
        };
        if running.reach.is_shared() == on {
            // Nothing changes: a restart would only cut everyone's connections.
            *lock(&self.0.host) = Some(running);
            return Ok(self.app_state());
        }
        let (port, before) = (running.port, running.reach);
        running.stop().await;
        self.update_config(|c| c.host_shared = on);
        let dir = self.server_data_dir();
        match HostedServer::start(self.host_reach(), port, dir.clone()).await {
            Ok(server) => *lock(&self.0.host) = Some(server),
            Err(e) => {
                // The port went to someone else meanwhile: keep hosting as before if we can.
                self.update_config(|c| c.host_shared = before.is_shared());
                match HostedServer::start(before, port, dir).await {
                    Ok(server) => *lock(&self.0.host) = Some(server),
                    Err(e) => tracing::warn!(error = %e.message, "cannot host again"),
                }
                return Err(e);
            }
        }
        if let Some(client) = self.client() {
            client.reconnect_now();
        }
        for r in lock(&self.0.background).iter() {
            r.client.reconnect_now();
        }
        Ok(self.app_state())
    }

    fn client_config(&self, url: &Url, username: &str) -> ClientConfig {
        let profile = natter::client::profile_dir_in(&self.0.data_dir, url, username);
        ClientConfig::new(url.clone(), profile)
    }

    /// Host mode: runs the server in-process on `port` and points this app at it. The choice
    /// is remembered, so the next start hosts again.
    pub async fn host_server(&self, port: u16) -> CmdResult<AppState> {
        let _guard = self.0.switching.lock().await;
        let already = lock(&self.0.host).as_ref().map(|h| h.port);
        let port = match already {
            Some(p) if p == port || port == 0 => p,
            _ => {
                // One server per data directory at a time: stop the old one first, and bring
                // it back if the new port cannot be had.
                let old = lock(&self.0.host).take();
                if let Some(old) = old {
                    old.stop().await;
                }
                let dir = self.server_data_dir();
                match HostedServer::start(self.host_reach(), port, dir.clone()).await {
                    Ok(server) => {
                        let port = server.port;
                        *lock(&self.0.host) = Some(server);
                        port
                    }
                    Err(e) => {
                        if let Some(old_port) = already {
                            match HostedServer::start(self.host_reach(), old_port, dir).await {
                                Ok(server) => *lock(&self.0.host) = Some(server),
                                Err(e) => tracing::warn!(error = %e.message, "cannot host again"),
                            }
                        }
                        return Err(e);
                    }
                }
            }
        };
        let url = host::local_url(port);
        self.switch_server(url, Some(port)).await;
        Ok(self.app_state())
    }

    /// Points the app at another server after checking that a Natter server answers there.
    pub async fn join_server(&self, url: &str) -> CmdResult<AppState> {
        let url = parse_server_url(url)?;
        natter::client::health(&url).await?;
        let _guard = self.0.switching.lock().await;
        // The hosted server keeps running while another signed-in account is on it (the user
        // added an account on another server); otherwise joining elsewhere ends hosting.
        let cfg = self.config();
        let active = cfg.active_account();
        let hosted_port = lock(&self.0.host).as_ref().map(|h| h.port);
        let still_used = hosted_port.filter(|port| {
            let hosted_url = host::local_url(*port);
            cfg.accounts
                .iter()
                .any(|a| a.key.server_url == hosted_url && active.as_ref() != Some(&a.key))
        });
        if still_used.is_none() {
            let hosted = lock(&self.0.host).take();
            if let Some(server) = hosted {
                server.stop().await;
            }
        }
        self.switch_server(url.to_string(), still_used).await;
        Ok(self.app_state())
    }

    /// Records the new server; a signed-in client for another server is stopped and leaves the
    /// account list (its history stays in its profile for when the user comes back). Background
    /// accounts are not touched.
    async fn switch_server(&self, url: String, host_port: Option<u16>) {
        let cfg = self.config();
        let same = cfg.server_url.as_deref() == Some(url.as_str());
        if !same {
            self.stop_client().await;
            if let Some(old) = cfg.active_account() {
                lock(&self.0.unread).forget(&old);
            }
        }
        self.update_config(|c| {
            if !same {
                if let Some(old) = c.active_account() {
                    c.forget_account(&old);
                }
                c.username = None;
                c.last_conversation = None;
            }
            c.server_url = Some(url);
            c.host_port = host_port;
        });
    }

    fn server_url(&self) -> CmdResult<Url> {
        let url = self
            .config()
            .server_url
            .ok_or_else(CommandError::no_server)?;
        Url::parse(&url).map_err(|e| CommandError::internal(format!("saved server URL: {e}")))
    }

    pub async fn register(
        &self,
        username: String,
        password: String,
        display_name: String,
        avatar: String,
        invite: Option<String>,
    ) -> CmdResult<AppState> {
        let url = self.server_url()?;
        let req = natter::client::RegisterRequest {
            username,
            password,
            display_name: Some(display_name).filter(|s| !s.trim().is_empty()),
            avatar: Some(avatar).filter(|s| !s.trim().is_empty()),
            invite: invite
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty()),
        };
        // Keyed by the server's id (a profile kept under the address moves there) before the
        // session is saved in it.
        natter::client::profiles::locate(&self.0.data_dir, &url, &req.username).await?;
        let session = natter::client::register(&url, req).await?;
        let profile = self.client_config(&url, &session.user.username).profile_dir;
        natter::client::trust::keep_pin(&profile, &url)?;
        self.sign_in(url, session).await
    }

    pub async fn login(&self, username: String, password: String) -> CmdResult<AppState> {
        let url = self.server_url()?;
        let profile = natter::client::profiles::locate(&self.0.data_dir, &url, &username).await?;
        let session =
            natter::client::login_in_profile(&profile, &url, &username, &password).await?;
        natter::client::trust::keep_pin(&profile, &url)?;
        self.sign_in(url, session).await
    }

    async fn sign_in(&self, url: Url, session: Session) -> CmdResult<AppState> {
        let _guard = self.0.switching.lock().await;
        let username = session.user.username.clone();
        let key = AccountKey {
            server_url: self.config().server_url.unwrap_or_else(|| url.to_string()),
            username: username.clone(),
        };
        // The account shown until now (signed out by the server, or another user on this
        // server) is replaced; the same account running in the background is started afresh
        // with the new session.
        let replaced = self.config().active_account().filter(|k| k != &key);
        self.stop_client().await;
        if let Some(old) = &replaced {
            lock(&self.0.unread).forget(old);
            self.update_config(|c| c.forget_account(old));
        }
        let same_in_background = {
            let mut bg = lock(&self.0.background);
            bg.iter().position(|r| r.key == key).map(|i| bg.remove(i))
        };
        if let Some(r) = same_in_background {
            r.pump.abort();
            r.client.shutdown().await;
        }
        let config = self.client_config(&url, &username);
        let client = match Client::start(config.clone(), session.clone()).await {
            // Signing in is where a user whose store was found damaged at start-up lands (the
            // Settings button is out of reach while signed out), so rebuild it here, as
            // `repair_store` would; the damaged file is kept aside.
            Err(ClientError::StoreCorrupt(reason)) => {
                tracing::warn!(%reason, "local store damaged at sign-in: rebuilding it");
                natter::client::repair_store_async(&config.profile_dir).await?;
                Client::start(config, session).await?
            }
            other => other?,
        };
        let same_user = self.config().username.as_deref() == Some(username.as_str());
        self.update_config(|c| {
            if !same_user {
                c.last_conversation = None;
            }
            c.username = Some(username);
            c.remember_account(key.clone());
        });
        self.install(key, client, History::Arriving);
        self.emit_accounts();
        Ok(self.app_state())
    }

    /// Signs the active account out (the others stay signed in) and shows the next account,
    /// if there is one.
    pub async fn logout(&self) -> CmdResult<AppState> {
        let _guard = self.0.switching.lock().await;
        let running = write(&self.0.client).take();
        if let Some(r) = running {
            r.pump.abort();
            r.client.logout().await?;
        }
        self.signed_out_here();
        Ok(self.show_next_account().await)
    }

    /// What signing the active account out leaves here, whichever way it happened: it is no
    /// longer remembered, its unread messages no longer count, the UI told.
    fn signed_out_here(&self) {
        let gone = self.config().active_account();
        if let Some(gone) = &gone {
            lock(&self.0.unread).forget(gone);
        }
        self.update_config(|c| {
            if let Some(gone) = &gone {
                c.forget_account(gone);
            }
            c.username = None;
        });
        let total = lock(&self.0.unread).total();
        self.set_unread_total(total);
        self.0.ui.emit(
            events::CONNECTION,
            to_json(&ConnectionState::SignedOut {
                reason: String::new(),
            }),
        );
        self.emit_accounts();
    }

    /// After the active account signed out: the first other account becomes the one shown
    /// (the window follows through `natter://app-state`); without one the app is signed out.
    /// Called with `switching` held.
    async fn show_next_account(&self) -> AppState {
        let next = lock(&self.0.background).first().map(|r| r.key.clone());
        match next {
            Some(key) => match self.activate(key, None).await {
                Ok(state) => state,
                Err(e) => {
                    tracing::warn!(error = %e.message, "cannot show the next account");
                    self.app_state()
                }
            },
            None => self.app_state(),
        }
    }

    // ---- several accounts ----

    /// "Add account": the active account keeps running in the background (still connected,
    /// still notifying) and the window goes to the server choice (`phase: setup`), from where
    /// joining or hosting and signing in adds the new account and shows it.
    pub async fn add_account(&self) -> CmdResult<AppState> {
        let _guard = self.0.switching.lock().await;
        self.put_active_in_background();
        self.update_config(|c| {
            c.server_url = None;
            c.username = None;
            c.last_conversation = None;
        });
        // The tray's do not disturb line belongs to the account shown; none is now.
        self.note_dnd(None);
        self.emit_accounts();
        Ok(self.app_state())
    }

    /// Shows another signed-in account in the window (one click in the sidebar). Fails
    /// `not_found` for an account that is not signed in here.
    pub async fn switch_account(&self, server_url: &str, username: &str) -> CmdResult<AppState> {
        let key = AccountKey {
            server_url: server_url.to_string(),
            username: username.to_string(),
        };
        let _guard = self.0.switching.lock().await;
        self.activate(key, None).await
    }

    /// A notification of a background account was clicked: show that account, then the
    /// conversation. Runs on its own task: the click arrives on the notification's thread.
    pub fn open_account_conversation(&self, key: AccountKey, conv: ConvId) {
        if self.is_active(&key) {
            self.open_conversation(conv);
            return;
        }
        let shell = self.clone();
        tauri::async_runtime::spawn(async move {
            let switched = {
                let _guard = shell.0.switching.lock().await;
                shell.activate(key, Some(conv)).await
            };
            match switched {
                Ok(_) => shell.open_conversation(conv),
                Err(e) => tracing::warn!(error = %e.message, "cannot switch to the account"),
            }
        });
    }

    /// Moves the active account's client to the background, remembering where it was.
    fn put_active_in_background(&self) {
        let running = write(&self.0.client).take();
        if let Some(r) = running {
            lock(&self.0.background).push(r);
        }
        *lock(&self.0.visible) = None;
        self.update_config(|c| {
            if let Some(active) = c.active_account() {
                let open = c.last_conversation;
                if let Some(saved) = c.accounts.iter_mut().find(|a| a.key == active) {
                    saved.last_conversation = open;
                }
            }
        });
    }

    /// Makes the background account `key` the one shown, opening `open` or the conversation
    /// it showed last, and tells the window (`natter://app-state`, then the account's state as
    /// at sign-in: connection, the whole conversation list, do not disturb). Called with
    /// `switching` held.
    async fn activate(&self, key: AccountKey, open: Option<ConvId>) -> CmdResult<AppState> {
        if self.is_active(&key) {
            return Ok(self.app_state());
        }
        let target = {
            let mut bg = lock(&self.0.background);
            let i = bg.iter().position(|r| r.key == key).ok_or_else(|| {
                CommandError::new(
                    crate::error::ErrorCode::NotFound,
                    format!(
                        "not signed in as {} on {} in this app",
                        key.username, key.server_url
                    ),
                )
            })?;
            bg.remove(i)
        };
        self.put_active_in_background();
        let client = target.client.clone();
        *write(&self.0.client) = Some(target);
        self.update_config(|c| {
            let saved = c
                .accounts
                .iter()
                .find(|a| a.key == key)
                .and_then(|a| a.last_conversation);
            c.server_url = Some(key.server_url.clone());
            c.username = Some(key.username.clone());
            c.last_conversation = open.or(saved);
        });
        let state = self.app_state();
        self.0.ui.emit(events::APP_STATE, to_json(&state));
        self.announce(&key, &client).await;
        self.emit_accounts();
        Ok(self.app_state())
    }

    // ---- your account ----

    /// Deletes the account (the core checks the password with the server), then signs out
    /// here. A refusal (wrong password, offline) leaves everything as it was.
    pub async fn delete_account(&self, password: &str) -> CmdResult<AppState> {
        let _guard = self.0.switching.lock().await;
        let client = self.require_client()?;
        client.delete_account(password).await?;
        if let Some(r) = write(&self.0.client).take() {
            r.pump.abort();
        }
        self.signed_out_here();
        Ok(self.show_next_account().await)
    }

    /// Rebuilds the local store of the remembered profile when it is damaged
    /// ([`natter::client::repair_store`]): the client, which holds the store open, is stopped
    /// first and started again on the rebuilt store, whose history comes back from the server.
    pub async fn repair_store(&self) -> CmdResult<StoreRepair> {
        let _guard = self.0.switching.lock().await;
        let cfg = self.config();
        let Some(key) = cfg.active_account() else {
            return Err(CommandError::signed_out());
        };
        let url = parse_server_url(&key.server_url)?;
        let config = self.client_config(&url, &key.username);
        self.stop_client().await;
        let repaired = natter::client::repair_store_async(&config.profile_dir).await;
        if let Some(client) = Client::resume(config).await? {
            // A rebuilt store gets its history back from the server; a sound one had it.
            let history = match &repaired {
                Ok(Some(_)) => History::Arriving,
                _ => History::Known,
            };
            self.install(key, client, history);
        }
        Ok(StoreRepair {
            repaired: repaired?.is_some(),
            app: self.app_state(),
        })
    }

    /// Stops every client (closing their connections normally) and the hosted server: the app
    /// is quitting. The pump tasks hold the state, so this is what really ends them.
    pub async fn shutdown(&self) {
        // A quit during start-up: let the restore finish, or the clients it is starting would
        // miss their goodbye (bounded, so a stuck restore cannot keep the app from quitting).
        let _ = tokio::time::timeout(RESTORE_AT_EXIT, self.restored()).await;
        self.stop_client().await;
        let background = std::mem::take(&mut *lock(&self.0.background));
        for r in background {
            r.pump.abort();
            r.client.shutdown().await;
        }
        let hosted = lock(&self.0.host).take();
        if let Some(server) = hosted {
            server.stop().await;
        }
    }

    async fn stop_client(&self) {
        let running = write(&self.0.client).take();
        if let Some(r) = running {
            r.pump.abort();
            r.client.shutdown().await;
        }
    }

    /// Starts pumping `client`'s events (see [`Shell::pump`]).
    fn start(&self, key: AccountKey, client: Client, history: History) -> Running {
        let notifier = Notifier::new(self.0.presenter.clone());
        let events = client.subscribe();
        let pump = tauri::async_runtime::spawn(self.clone().pump(
            key.clone(),
            client.clone(),
            notifier.clone(),
            events,
            history,
        ));
        Running {
            key,
            client,
            pump,
            notifier,
        }
    }

    /// Makes `client` the active account's client and starts pumping its events to the UI.
    fn install(&self, key: AccountKey, client: Client, history: History) {
        let running = self.start(key, client, history);
        let old = write(&self.0.client).replace(running);
        if let Some(old) = old {
            old.pump.abort();
        }
    }

    /// Runs `client` as a background account's: connected, counting and notifying.
    fn install_background(&self, key: AccountKey, client: Client) {
        let running = self.start(key, client, History::Known);
        lock(&self.0.background).push(running);
    }

    /// Follows one account's client for as long as it runs: while the account is the active
    /// one its events go to the UI; for every account it raises notifications and keeps the
    /// unread counts. Starts with the whole list (the state may have changed before the pump
    /// subscribed); after that only changes go out, and the whole list again only if events
    /// were lost. For a store that starts empty ([`History::Arriving`]) nothing is notified
    /// until its first resume is done: what it brings is history, not news.
    async fn pump(
        self,
        key: AccountKey,
        client: Client,
        notifier: Arc<Notifier>,
        mut events: tokio::sync::broadcast::Receiver<ClientEvent>,
        history: History,
    ) {
        // Subscribed before this check: a resume that finished before it is seen here, one
        // that finishes after it as `Synced` in order behind the messages it stored.
        let synced_already = tokio::time::timeout(std::time::Duration::ZERO, client.wait_synced())
            .await
            .is_ok();
        let mut catching_up = history == History::Arriving && !synced_already;
        if self.is_active(&key) {
            self.announce(&key, &client).await;
        } else {
            self.reset_conversations(&key, &client).await;
        }
        loop {
            match events.recv().await {
                Ok(ClientEvent::Synced) if catching_up => {
                    tracing::debug!(user = %key.username, "first resume done: notifying from now");
                    catching_up = false;
                }
                Ok(ev) => {
                    // While catching up, messages are still shown and counted, never notified.
                    let notifier = (!catching_up).then_some(&notifier);
                    self.handle_event(&key, &client, notifier, ev).await
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "UI event pump lagged; resending the list");
                    self.reset_conversations(&key, &client).await;
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Tells the UI the state of the account it now shows: its connection, its whole
    /// conversation list and do not disturb (the tray shows a stored do not disturb before the
    /// connection brings the server's).
    async fn announce(&self, key: &AccountKey, client: &Client) {
        self.0
            .ui
            .emit(events::CONNECTION, to_json(&client.connection_state()));
        self.reset_conversations(key, client).await;
        match client.dnd().await {
            Ok(dnd) => {
                self.0.ui.emit(events::DND, to_json(&DndEvent { dnd }));
                self.note_dnd(dnd);
            }
            Err(e) => tracing::warn!(code = e.code(), "cannot read do not disturb: {e}"),
        }
    }

    /// Handles one event of `key`'s client: forwarded to the UI when that account is shown,
    /// counted and notified whichever account is shown.
    /// `notifier` is `None` while the account's history is still arriving.
    async fn handle_event(
        &self,
        key: &AccountKey,
        client: &Client,
        notifier: Option<&Arc<Notifier>>,
        ev: ClientEvent,
    ) {
        let shown = self.is_active(key);
        let emit = |event: &str, payload: serde_json::Value| {
            if shown {
                self.0.ui.emit(event, payload);
            }
        };
        match ev {
            ClientEvent::Message(change) => {
                emit(events::MESSAGE, to_json(&change));
                let msg = &change.message;
                let live = change.change == MessageChange::Added && msg.state == MessageState::Sent;
                if let (true, Some(notifier)) = (live, notifier) {
                    self.maybe_notify(key, client, notifier, msg, shown).await;
                }
            }
            ClientEvent::Conversation(summary) => {
                let muted = summary.level == NotifyLevel::Nothing;
                self.note_unread(key, summary.id, Some((summary.unread, muted)));
                emit(events::CONVERSATION, to_json(&summary));
            }
            ClientEvent::Unread(change) => {
                let muted = lock(&self.0.unread).muted(key, change.conv);
                self.note_unread(key, change.conv, Some((change.unread, muted)));
                emit(events::UNREAD, to_json(&change));
            }
            ClientEvent::ConversationRemoved(removed) => {
                self.note_unread(key, removed.conv, None);
                emit(events::CONVERSATION_REMOVED, to_json(&removed));
            }
            ClientEvent::Presence { online, offline } => {
                emit(
                    events::PRESENCE,
                    to_json(&PresenceEvent { online, offline }),
                );
            }
            ClientEvent::Online(list) => emit(events::ONLINE, to_json(&list)),
            ClientEvent::Typing { conv, username } => {
                emit(events::TYPING, to_json(&TypingEvent { conv, username }));
            }
            ClientEvent::Connection(state) => {
                emit(events::CONNECTION, to_json(&state));
                self.emit_accounts();
            }
            ClientEvent::Dnd { dnd } => {
                if shown {
                    self.0.ui.emit(events::DND, to_json(&DndEvent { dnd }));
                    self.note_dnd(dnd);
                }
            }
            ClientEvent::Warning(w) => tracing::warn!(warning = %w, "server"),
            ClientEvent::ActionFailed(failure) => {
                emit(events::ACTION_FAILED, to_json(&failure));
            }
            ClientEvent::Upload(progress) => emit(events::UPLOAD, to_json(&progress)),
            ClientEvent::UserUpdated(user) => {
                let own = user.username == key.username;
                emit(events::USER, to_json(&user));
                if own {
                    self.emit_accounts();
                }
            }
            // Progress of a long resume and anything newer the UI does not show (yet).
            other => tracing::debug!(event = ?other, "client event"),
        }
    }

    /// Applies the core's notification policy to a newly delivered message. Everything it
    /// needs comes from the local store: no server request holds up the event pump. A
    /// background account has nothing on screen, so only its own rules (level, do not disturb)
    /// can hold a notification back; a click on it switches to the account.
    async fn maybe_notify(
        &self,
        key: &AccountKey,
        client: &Client,
        notifier: &Arc<Notifier>,
        msg: &natter::client::LocalMessage,
        shown: bool,
    ) {
        let settings = self.settings();
        let Some(conv_id) = msg.conv else { return };
        if !settings.notifications {
            return;
        }
        let facts = match client.notice_facts(conv_id, &msg.sender).await {
            Ok(facts) => facts,
            Err(e) => {
                tracing::warn!(code = e.code(), conv = conv_id, "no notification: {e}");
                return;
            }
        };
        let me = client.user().username;
        let visible = if shown { *lock(&self.0.visible) } else { None };
        let ctx = NotifyContext {
            own_username: &me,
            visible_conv: visible,
            window_focused: self.0.focused.load(Ordering::SeqCst),
            level: facts.level,
            dnd: facts.dnd,
            now: now_ms(),
            notifications_enabled: settings.notifications,
        };
        if !decide(msg, &ctx) {
            return;
        }
        let shell = self.clone();
        let account = key.clone();
        let on_click: ClickHandler =
            Arc::new(move |conv| shell.open_account_conversation(account.clone(), conv));
        // Its own statement: the config lock must be released before `offer` reads the
        // settings under it.
        let several = self.config().accounts.len() > 1;
        let account =
            several.then(|| (key.username.clone(), accounts::server_name(&key.server_url)));
        let cfg = Arc::clone(&self.0);
        notifier.offer(
            NoticeSource {
                conv: conv_id,
                kind: facts.kind,
                conv_title: facts.conv_title,
                sender_display: facts.sender_display,
                gist: Gist::of(msg),
                account,
            },
            move || {
                let s = lock(&cfg.config).settings.clone();
                (s.hide_message_text, s.language)
            },
            on_click,
        );
    }

    /// A notification (or the tray) asked for `conv`: bring the window up and tell the UI.
    pub fn open_conversation(&self, conv: ConvId) {
        self.0.ui.show_main();
        self.0.ui.emit(
            events::OPEN_CONVERSATION,
            to_json(&OpenConversationEvent { conv }),
        );
    }

    /// Recounts `key`'s unread messages from its whole conversation list, and sends the list
    /// (`natter://conversations`) when the account is shown: when a pump starts, when the
    /// window switches to the account, and when events were lost; never for a single change.
    async fn reset_conversations(&self, key: &AccountKey, client: &Client) {
        match client.conversations().await {
            Ok(list) => {
                let changed = lock(&self.0.unread).replace(
                    key,
                    list.iter()
                        .map(|c| (c.id, (c.unread, c.level == NotifyLevel::Nothing))),
                );
                if self.is_active(key) {
                    self.0.ui.emit(events::CONVERSATIONS, to_json(&list));
                }
                self.recount_unread();
                if changed {
                    self.emit_accounts();
                }
            }
            Err(e) => tracing::warn!(code = e.code(), "cannot read conversations: {e}"),
        }
    }

    /// Records a conversation's unread count and muted flag (`None`: gone) and updates the
    /// total in the title and tray, and the account list, when they changed.
    fn note_unread(&self, key: &AccountKey, conv: ConvId, state: Option<(u32, bool)>) {
        let changed = lock(&self.0.unread).set(key, conv, state);
        self.recount_unread();
        if changed {
            self.emit_accounts();
        }
    }

    fn recount_unread(&self) {
        let total = lock(&self.0.unread).total();
        if total != self.0.unread_total.load(Ordering::SeqCst) {
            self.set_unread_total(total);
        }
    }

    /// Do not disturb changed: the tray shows it until it ends (a timer turns the tray's line
    /// off then, unless another change came first).
    fn note_dnd(&self, dnd: Option<Dnd>) {
        let now = now_ms();
        let generation = {
            let mut held = lock(&self.0.dnd);
            held.0 = dnd;
            held.1 += 1;
            held.1
        };
        let on = dnd.is_some_and(|d| d.is_on(now));
        self.0.ui.set_dnd(on);
        if let (true, Some(until)) = (on, dnd.and_then(|d| d.until)) {
            let shell = self.clone();
            let wait = std::time::Duration::from_millis(until.saturating_sub(now).max(0) as u64);
            tauri::async_runtime::spawn(async move {
                tokio::time::sleep(wait).await;
                if lock(&shell.0.dnd).1 == generation {
                    shell.0.ui.set_dnd(false);
                }
            });
        }
    }

    /// Do not disturb as last heard from the server (perhaps ended since).
    pub fn dnd(&self) -> Option<Dnd> {
        lock(&self.0.dnd).0
    }

    fn set_unread_total(&self, total: u32) {
        self.0.unread_total.store(total, Ordering::SeqCst);
        self.0.ui.set_unread_total(total);
    }

    /// Re-applies the unread total to the title and tray (once the tray exists).
    pub fn refresh_unread_display(&self) {
        self.0
            .ui
            .set_unread_total(self.0.unread_total.load(Ordering::SeqCst));
    }

    pub fn unread_total(&self) -> u32 {
        self.0.unread_total.load(Ordering::SeqCst)
    }

    pub fn set_focused(&self, focused: bool) {
        tracing::debug!(focused, "main window focus");
        self.0.focused.store(focused, Ordering::SeqCst);
    }

    pub fn focused(&self) -> bool {
        self.0.focused.load(Ordering::SeqCst)
    }

    /// What the window shows now (drives the notification policy and is remembered).
    pub fn set_visible_conversation(&self, conv: Option<ConvId>) {
        tracing::debug!(?conv, "visible conversation");
        *lock(&self.0.visible) = conv;
        if let Some(conv) = conv {
            if let Some(r) = read(&self.0.client).as_ref() {
                r.notifier.clear(conv);
            }
            if self.config().last_conversation != Some(conv) {
                self.update_config(|c| c.last_conversation = Some(conv));
            }
        }
    }

    /// Saves and applies `settings`. A change of `start_at_login` goes to the desktop first: if
    /// it refuses, nothing is saved and the command fails `internal` saying why.
    pub fn set_settings(&self, settings: Settings) -> CmdResult<Settings> {
        if settings.start_at_login != self.settings().start_at_login {
            self.0
                .ui
                .set_start_at_login(settings.start_at_login)
                .map_err(CommandError::internal)?;
        }
        let cfg = self.update_config(|c| c.settings = settings);
        self.0.ui.set_language(cfg.settings.language);
        self.0.ui.emit(events::SETTINGS, to_json(&cfg.settings));
        Ok(cfg.settings)
    }

    pub fn ui(&self) -> &Arc<dyn Ui> {
        &self.0.ui
    }
}

/// Checks a server URL typed by the user: http(s), a host, nothing after the authority
/// except `/`. A bare `host:port` gets `http://` in front.
pub fn parse_server_url(input: &str) -> CmdResult<Url> {
    let input = input.trim();
    if input.is_empty() {
        return Err(CommandError::invalid("enter the server's address"));
    }
    let with_scheme = if input.contains("://") {
        input.to_string()
    } else {
        format!("http://{input}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| CommandError::invalid(format!("not a valid address ({e}): {input}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CommandError::invalid(format!(
            "the address must start with http:// or https://: {input}"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(CommandError::invalid(format!(
            "the address has no host: {input}"
        )));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(CommandError::invalid(format!(
            "give only the server's address, like http://192.168.1.20:8686: {input}"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CommandError::invalid(
            "the address must not contain a user or password",
        ));
    }
    Ok(url)
}

impl From<ClientError> for CommandError {
    fn from(e: ClientError) -> Self {
        use crate::error::ErrorCode as C;
        let (code, message) = match e {
            ClientError::Offline(m) => (C::Offline, m),
            ClientError::Unauthorized(m) => (C::Unauthorized, m),
            ClientError::Invalid(m) => (C::Invalid, m),
            ClientError::NotFound(m) => (C::NotFound, m),
            ClientError::Forbidden(m) => (C::Forbidden, m),
            ClientError::Conflict(m) => (C::Conflict, m),
            ClientError::RateLimited(m) => (C::RateLimited, m),
            ClientError::Server(m) => (C::Server, m),
            ClientError::Internal(m) => (C::Internal, m),
            ClientError::StorageFull(m) => (C::StorageFull, m),
            ClientError::StoreCorrupt(m) => (C::StoreCorrupt, m),
            ClientError::UntrustedCertificate(m) => (C::UntrustedCertificate, m),
            ClientError::CertificateChanged(m) => (C::CertificateChanged, m),
            ClientError::InviteRequired(m) => (C::InviteRequired, m),
            ClientError::InvalidInvite(m) => (C::InvalidInvite, m),
            ClientError::PendingApproval(m) => (C::PendingApproval, m),
        };
        CommandError::new(code, message)
    }
}

/// Now, in ms since the epoch (the notification policy and do not disturb compare with it).
fn now_ms() -> natter::protocol::Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

// A panic while holding one of these locks must not take the whole shell down with it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_urls_are_checked() {
        assert_eq!(
            parse_server_url(" 192.168.1.20:8686 ").unwrap().as_str(),
            "http://192.168.1.20:8686/"
        );
        assert_eq!(
            parse_server_url("https://chat.example.org")
                .unwrap()
                .as_str(),
            "https://chat.example.org/"
        );
        for bad in [
            "",
            "   ",
            "ftp://x",
            "javascript:alert(1)",
            "http://",
            "http://host/path",
            "http://host/?q=1",
            "http://u:p@host",
            "http://exa mple",
        ] {
            let err = parse_server_url(bad).expect_err(bad);
            assert_eq!(err.code, crate::error::ErrorCode::Invalid, "{bad}");
        }
    }

    #[test]
    fn client_errors_keep_their_code() {
        let e: CommandError = ClientError::Conflict("username taken".into()).into();
        assert_eq!(
            serde_json::to_value(e).unwrap(),
            json!({"code": "conflict", "message": "username taken"})
        );
        let e: CommandError = ClientError::Offline("refused".into()).into();
        assert_eq!(e.code, crate::error::ErrorCode::Offline);
        // Every client error keeps the code the client core names for it (docs/ipc.md).
        let all = [
            ClientError::Offline("m".into()),
            ClientError::Unauthorized("m".into()),
            ClientError::Invalid("m".into()),
            ClientError::NotFound("m".into()),
            ClientError::Forbidden("m".into()),
            ClientError::Conflict("m".into()),
            ClientError::RateLimited("m".into()),
            ClientError::Server("m".into()),
            ClientError::Internal("m".into()),
            ClientError::StorageFull("m".into()),
            ClientError::StoreCorrupt("m".into()),
            ClientError::UntrustedCertificate("m".into()),
            ClientError::CertificateChanged("m".into()),
            ClientError::InviteRequired("m".into()),
            ClientError::InvalidInvite("m".into()),
            ClientError::PendingApproval("m".into()),
        ];
        for client in all {
            let code = client.code();
            let e: CommandError = client.into();
            assert_eq!(serde_json::to_value(&e).unwrap()["code"], code);
        }
    }
}
