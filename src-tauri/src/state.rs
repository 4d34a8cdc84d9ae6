//! The shell's state: the running client (if signed in), host mode, what the window shows and
//! whether it has focus, and the pump that forwards [`ClientEvent`]s as UI events (one per
//! changed message or conversation, never the whole list for one change), raises
//! notifications and keeps the unread total in the title and tray.
//!
//! The state is runtime-agnostic: it reaches the windows through the small [`Ui`] trait, so the
//! commands are plain functions and tests run them under Tauri's mock runtime.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use natter::client::notify::{decide, NotifyContext};
use natter::client::{
    Client, ClientConfig, ClientError, ClientEvent, ConnectionState, MessageChange, MessageState,
};
use natter::protocol::{ConvId, Dnd, NotifyLevel, Session, User};
use serde::Serialize;
use tauri::{AppHandle, Emitter, Runtime};
use tokio::sync::broadcast::error::RecvError;
use ts_rs::TS;
use url::Url;

use crate::config::{DesktopConfig, Language, Settings};
use crate::error::{CmdResult, CommandError};
use crate::host::{self, HostedServer};
use crate::notifications::{ClickHandler, NoticeSource, Notifier, Presenter};
use crate::{startup, tray, window};

/// Event names of docs/ipc.md.
pub mod events {
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

/// The real [`Ui`]: a Tauri app handle.
pub struct TauriUi<R: Runtime>(pub AppHandle<R>);

impl<R: Runtime> Ui for TauriUi<R> {
    fn emit(&self, event: &str, payload: serde_json::Value) {
        if let Err(e) = self.0.emit(event, payload) {
            tracing::warn!(event, error = %e, "cannot emit event");
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
    pub hosting: Option<Hosting>,
    pub user: Option<User>,
    pub settings: Settings,
    #[ts(type = "number | null")]
    pub last_conversation: Option<ConvId>,
    pub connection: ConnectionState,
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
    /// URLs others on the LAN can enter.
    pub addresses: Vec<String>,
    pub port: u16,
}

/// How long a command needing the server waits for a connection that is still being made.
const CONNECTING_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The shell's state, managed by Tauri. Cheap to clone (the pump task holds a clone).
#[derive(Clone)]
pub struct Shell(Arc<Inner>);

struct Inner {
    ui: Arc<dyn Ui>,
    data_dir: PathBuf,
    config: Mutex<DesktopConfig>,
    /// Serialises the commands that replace the client or the server (join, host, sign-in/out).
    switching: tokio::sync::Mutex<()>,
    client: RwLock<Option<Running>>,
    host: Mutex<Option<HostedServer>>,
    focused: AtomicBool,
    visible: Mutex<Option<ConvId>>,
    notifier: Arc<Notifier>,
    /// Unread count and muted flag (level `nothing`) per conversation, from the change events:
    /// the unread total without re-reading the list.
    unread: Mutex<HashMap<ConvId, (u32, bool)>>,
    /// Do not disturb as last heard, and a counter that lets a timer for its end know it is
    /// still the one in force.
    dnd: Mutex<(Option<Dnd>, u64)>,
    unread_total: AtomicU32,
    /// Where hosted server data lives and which address it binds (tests bind loopback).
    host_bind: IpAddr,
}

struct Running {
    client: Client,
    pump: tauri::async_runtime::JoinHandle<()>,
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
            host: Mutex::new(None),
            focused: AtomicBool::new(false),
            visible: Mutex::new(None),
            notifier: Notifier::new(presenter),
            unread: Mutex::new(HashMap::new()),
            dnd: Mutex::new((None, 0)),
            unread_total: AtomicU32::new(0),
            host_bind,
        }))
    }

    /// Starts what the saved config says: the hosted server, then the client from its store.
    pub async fn restore(&self) {
        let cfg = self.config();
        if let Some(port) = cfg.host_port {
            match HostedServer::start(self.0.host_bind, port, self.server_data_dir()).await {
                Ok(server) => *lock(&self.0.host) = Some(server),
                Err(e) => tracing::warn!(port, error = %e.message, "cannot host again"),
            }
        }
        let (Some(url), Some(username)) = (cfg.server_url, cfg.username) else {
            return;
        };
        let Ok(url) = Url::parse(&url) else { return };
        let config = self.client_config(&url, &username);
        match Client::resume(config).await {
            Ok(Some(client)) => self.install(client),
            Ok(None) => tracing::info!("no saved session; sign in again"),
            Err(e) => tracing::warn!(error = %e, "cannot open the local store"),
        }
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
        });
        AppState {
            phase,
            server_url: cfg.server_url,
            hosting,
            user: client.map(|c| c.user()),
            settings: cfg.settings,
            last_conversation: cfg.last_conversation,
            connection,
        }
    }

    fn server_data_dir(&self) -> PathBuf {
        self.0.data_dir.join("server")
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
                match HostedServer::start(self.0.host_bind, port, dir.clone()).await {
                    Ok(server) => {
                        let port = server.port;
                        *lock(&self.0.host) = Some(server);
                        port
                    }
                    Err(e) => {
                        if let Some(old_port) = already {
                            match HostedServer::start(self.0.host_bind, old_port, dir).await {
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
        let hosted = lock(&self.0.host).take();
        if let Some(server) = hosted {
            server.stop().await;
        }
        self.switch_server(url.to_string(), None).await;
        Ok(self.app_state())
    }

    /// Records the new server; a signed-in client for another server is stopped (its history
    /// stays in its profile for when the user comes back).
    async fn switch_server(&self, url: String, host_port: Option<u16>) {
        let same = self.config().server_url.as_deref() == Some(url.as_str());
        if !same {
            self.stop_client().await;
        }
        self.update_config(|c| {
            if !same {
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
    ) -> CmdResult<AppState> {
        let url = self.server_url()?;
        let req = natter::client::RegisterRequest {
            username,
            password,
            display_name: Some(display_name).filter(|s| !s.trim().is_empty()),
            avatar: Some(avatar).filter(|s| !s.trim().is_empty()),
        };
        let session = natter::client::register(&url, req).await?;
        self.sign_in(url, session).await
    }

    pub async fn login(&self, username: String, password: String) -> CmdResult<AppState> {
        let url = self.server_url()?;
        let profile = self.client_config(&url, &username).profile_dir;
        let session =
            natter::client::login_in_profile(&profile, &url, &username, &password).await?;
        self.sign_in(url, session).await
    }

    async fn sign_in(&self, url: Url, session: Session) -> CmdResult<AppState> {
        let _guard = self.0.switching.lock().await;
        self.stop_client().await;
        let username = session.user.username.clone();
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
        });
        self.install(client);
        Ok(self.app_state())
    }

    pub async fn logout(&self) -> CmdResult<AppState> {
        let _guard = self.0.switching.lock().await;
        let running = write(&self.0.client).take();
        if let Some(r) = running {
            r.pump.abort();
            r.client.logout().await?;
        }
        Ok(self.signed_out_here())
    }

    /// What signing out leaves here, whichever way it happened: no remembered user, no unread
    /// total, the UI told.
    fn signed_out_here(&self) -> AppState {
        self.update_config(|c| c.username = None);
        lock(&self.0.unread).clear();
        self.set_unread_total(0);
        self.0.ui.emit(
            events::CONNECTION,
            to_json(&ConnectionState::SignedOut {
                reason: String::new(),
            }),
        );
        self.app_state()
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
        Ok(self.signed_out_here())
    }

    /// Rebuilds the local store of the remembered profile when it is damaged
    /// ([`natter::client::repair_store`]): the client, which holds the store open, is stopped
    /// first and started again on the rebuilt store, whose history comes back from the server.
    pub async fn repair_store(&self) -> CmdResult<StoreRepair> {
        let _guard = self.0.switching.lock().await;
        let cfg = self.config();
        let (Some(url), Some(username)) = (cfg.server_url, cfg.username) else {
            return Err(CommandError::signed_out());
        };
        let url = parse_server_url(&url)?;
        let config = self.client_config(&url, &username);
        self.stop_client().await;
        let repaired = natter::client::repair_store_async(&config.profile_dir).await;
        if let Some(client) = Client::resume(config).await? {
            self.install(client);
        }
        Ok(StoreRepair {
            repaired: repaired?.is_some(),
            app: self.app_state(),
        })
    }

    /// Stops the client (closing its connection normally) and the hosted server: the app is
    /// quitting. The pump task holds the state, so this is what really ends them.
    pub async fn shutdown(&self) {
        self.stop_client().await;
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

    /// Makes `client` the app's client and starts pumping its events to the UI.
    fn install(&self, client: Client) {
        let events = client.subscribe();
        let pump = tauri::async_runtime::spawn(self.clone().pump(client.clone(), events));
        let old = write(&self.0.client).replace(Running { client, pump });
        if let Some(old) = old {
            old.pump.abort();
        }
    }

    /// Forwards client events to the UI, raises notifications and keeps the unread total.
    /// Starts with the whole list (the state may have changed before the pump subscribed);
    /// after that only changes go out, and the whole list again only if events were lost.
    async fn pump(self, client: Client, mut events: tokio::sync::broadcast::Receiver<ClientEvent>) {
        self.0
            .ui
            .emit(events::CONNECTION, to_json(&client.connection_state()));
        self.reset_conversations(&client).await;
        // The tray shows a stored do not disturb before the connection brings the server's.
        match client.dnd().await {
            Ok(dnd) => self.note_dnd(dnd),
            Err(e) => tracing::warn!(code = e.code(), "cannot read do not disturb: {e}"),
        }
        loop {
            match events.recv().await {
                Ok(ev) => self.handle_event(&client, ev).await,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "UI event pump lagged; resending the list");
                    self.reset_conversations(&client).await;
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Forwards one event.
    async fn handle_event(&self, client: &Client, ev: ClientEvent) {
        let ui = &self.0.ui;
        match ev {
            ClientEvent::Message(change) => {
                ui.emit(events::MESSAGE, to_json(&change));
                let msg = &change.message;
                if change.change == MessageChange::Added && msg.state == MessageState::Sent {
                    self.maybe_notify(client, msg).await;
                }
            }
            ClientEvent::Conversation(summary) => {
                let muted = summary.level == NotifyLevel::Nothing;
                self.note_unread(summary.id, Some((summary.unread, muted)));
                ui.emit(events::CONVERSATION, to_json(&summary));
            }
            ClientEvent::Unread(change) => {
                let muted = lock(&self.0.unread).get(&change.conv).is_some_and(|u| u.1);
                self.note_unread(change.conv, Some((change.unread, muted)));
                ui.emit(events::UNREAD, to_json(&change));
            }
            ClientEvent::ConversationRemoved(removed) => {
                self.note_unread(removed.conv, None);
                ui.emit(events::CONVERSATION_REMOVED, to_json(&removed));
            }
            ClientEvent::Presence { online, offline } => {
                ui.emit(
                    events::PRESENCE,
                    to_json(&PresenceEvent { online, offline }),
                );
            }
            ClientEvent::Online(list) => ui.emit(events::ONLINE, to_json(&list)),
            ClientEvent::Typing { conv, username } => {
                ui.emit(events::TYPING, to_json(&TypingEvent { conv, username }));
            }
            ClientEvent::Connection(state) => ui.emit(events::CONNECTION, to_json(&state)),
            ClientEvent::Dnd { dnd } => {
                ui.emit(events::DND, to_json(&DndEvent { dnd }));
                self.note_dnd(dnd);
            }
            ClientEvent::Warning(w) => tracing::warn!(warning = %w, "server"),
            ClientEvent::UserUpdated(user) => ui.emit(events::USER, to_json(&user)),
            // Progress of a long resume and anything newer the UI does not show (yet).
            other => tracing::debug!(event = ?other, "client event"),
        }
    }

    /// Applies the core's notification policy to a newly delivered message. Everything it
    /// needs comes from the local store: no server request holds up the event pump.
    async fn maybe_notify(&self, client: &Client, msg: &natter::client::LocalMessage) {
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
        let visible = *lock(&self.0.visible);
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
        let on_click: ClickHandler = Arc::new(move |conv| shell.open_conversation(conv));
        let cfg = Arc::clone(&self.0);
        self.0.notifier.offer(
            NoticeSource {
                conv: conv_id,
                kind: facts.kind,
                conv_title: facts.conv_title,
                sender_display: facts.sender_display,
                text: msg.text.clone(),
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

    /// Sends the whole conversation list (`natter://conversations`) and recounts the unread
    /// total: when the pump starts and when it lost events, never for a single change.
    async fn reset_conversations(&self, client: &Client) {
        match client.conversations().await {
            Ok(list) => {
                *lock(&self.0.unread) = list
                    .iter()
                    .map(|c| (c.id, (c.unread, c.level == NotifyLevel::Nothing)))
                    .collect();
                self.0.ui.emit(events::CONVERSATIONS, to_json(&list));
                self.recount_unread();
            }
            Err(e) => tracing::warn!(code = e.code(), "cannot read conversations: {e}"),
        }
    }

    /// Records a conversation's unread count and muted flag (`None`: gone) and updates the
    /// total in the title and tray when it changed.
    fn note_unread(&self, conv: ConvId, state: Option<(u32, bool)>) {
        {
            let mut map = lock(&self.0.unread);
            match state {
                Some(s) => map.insert(conv, s),
                None => map.remove(&conv),
            };
        }
        self.recount_unread();
    }

    fn recount_unread(&self) {
        let total = lock(&self.0.unread)
            .values()
            .filter(|(_, muted)| !muted)
            .map(|(unread, _)| *unread)
            .fold(0u32, u32::saturating_add);
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
            self.0.notifier.clear(conv);
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
        ];
        for client in all {
            let code = client.code();
            let e: CommandError = client.into();
            assert_eq!(serde_json::to_value(&e).unwrap()["code"], code);
        }
    }
}
