//! The connection actor: the one task that owns the WebSocket. It connects with the session token
//! (Authorization header, subprotocol `natter.v1`), waits for `hello`, resumes with `sync` from the
//! last seq held per conversation, drains the outbox one message at a time (so per-conversation
//! order holds even across failures), syncs read markers, answers requests from [`Client`]
//! handles, pings a quiet server and drops a silent one, and reconnects with jittered exponential
//! backoff. It stops retrying only when the token is refused (HTTP 401 or close 4001).
//!
//! Every store operation goes through the store thread ([`StoreHandle`]), so a slow disk never
//! blocks an async worker. Conversations touched by arriving messages are collected and their
//! summaries announced together shortly after ([`SUMMARY_COALESCE`]): a burst of pushes costs
//! one summary per conversation, not one per message.
//!
//! Nothing the server sends can panic it: unparseable or unexpected frames are reported as
//! [`ClientEvent::Warning`] and skipped; protocol errors and oversized frames end the connection,
//! which is then retried.
//!
//! [`Client`]: crate::client::Client
//! [`StoreHandle`]: crate::client::db::StoreHandle

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

use crate::client::store::{self, OutboxItem, Store};
use crate::client::types::{
    ActionFailure, ConnectionState, ConversationRemoved, MessageEvent, UploadProgress,
};
use crate::client::{http, now_ms, ClientConfig, ClientError, ClientEvent, Result, Shared};
use crate::protocol::{
    close, limits, ClientFrame, ConvId, ErrorCode, Reply, Seq, ServerFrame, SUBPROTOCOL,
};

/// How long summaries of touched conversations wait for more changes before they are
/// announced: about a frame, so a burst of pushes becomes one summary per conversation.
pub const SUMMARY_COALESCE: Duration = Duration::from_millis(16);

/// What a [`Client`](crate::client::Client) handle asks of the actor.
pub(crate) enum Command {
    /// Send the frame built with a fresh request id and deliver its answer.
    Request {
        build: Box<dyn FnOnce(u64) -> ClientFrame + Send>,
        reply: oneshot::Sender<Result<Reply>>,
    },
    /// The outbox or the read markers changed: look for work.
    Kick,
    /// A handle changed this conversation's summary (queued a message): announce it with the
    /// next flush, so a run of sends costs one summary, not one each.
    Touched(ConvId),
    /// Skip the backoff wait.
    ReconnectNow,
    Shutdown(oneshot::Sender<()>),
}

/// Jittered exponential backoff: the n-th retry waits between half and all of
/// `min * 2^n` (capped at `max`), so clients that lost the same server do not return in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The next delay, given `jitter` in [0, 1) (random in use, fixed in tests).
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(20));
        let base = self.min.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.5
        };
        base / 2 + base.mul_f64(jitter / 2.0)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The WebSocket address for a server's base address: `ws(s)://host:port/ws`.
pub fn ws_url(server: &Url) -> std::result::Result<Url, String> {
    let mut url = server.clone();
    let scheme = match server.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => return Err(format!("unsupported server address scheme {other}://")),
    };
    url.set_scheme(scheme)
        .map_err(|_| "cannot build the WebSocket address".to_string())?;
    url.set_path("/ws");
    url.set_query(None);
    Ok(url)
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a connection ended.
enum End {
    Shutdown(Option<oneshot::Sender<()>>),
    SignedOut(String),
    Retry {
        reason: String,
        immediate: bool,
        stable: bool,
    },
}

fn retry(reason: impl Into<String>) -> End {
    End::Retry {
        reason: reason.into(),
        immediate: false,
        stable: false,
    }
}

/// A request in flight on the current connection.
enum Pending {
    External(oneshot::Sender<Result<Reply>>),
    Sync,
    Outbox {
        local_id: String,
        to_user: Option<String>,
    },
    Read {
        conv: ConvId,
        seq: Seq,
    },
    /// The user list, for display names (notifications name senders from the store).
    Directory,
    /// A presence watch set (`watch_presence`): its answer replaces what is known of `users`,
    /// in the order frames arrive; `reply` is the caller's, absent when re-sent after a hello.
    Watch {
        users: Vec<String>,
        reply: Option<oneshot::Sender<Result<Reply>>>,
    },
    /// A mute from before levels were synced, pushed once as level `nothing`.
    LegacyMute {
        conv: ConvId,
    },
}

/// Per-connection state.
#[derive(Default)]
struct Conn {
    pending: HashMap<u64, Pending>,
    /// When the outbox message in flight was sent; it must be answered within the request
    /// timeout, or the connection is presumed broken and redialled.
    outbox_in_flight: Option<Instant>,
    outbox_retry_at: Option<Instant>,
    reads_in_flight: HashSet<ConvId>,
    /// Conversations whose summaries changed and are not announced yet, and when they will be.
    dirty: BTreeSet<ConvId>,
    flush_at: Option<Instant>,
    directory_in_flight: bool,
}

impl Conn {
    /// Notes that the summaries of `convs` changed; they are announced at the next flush.
    fn touch(&mut self, convs: impl IntoIterator<Item = ConvId>) {
        let before = self.dirty.len();
        self.dirty.extend(convs);
        if self.dirty.len() > before && self.flush_at.is_none() {
            self.flush_at = Some(Instant::now() + SUMMARY_COALESCE);
        }
    }
}

pub(crate) struct Actor {
    config: ClientConfig,
    token: String,
    shared: Arc<Shared>,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    state_tx: watch::Sender<ConnectionState>,
    /// Whether the current connection has finished its resume.
    synced_tx: watch::Sender<bool>,
    backoff: Backoff,
    next_id: u64,
    /// Users whose profile is stored; someone else coming online fetches the list again.
    known_users: HashSet<String>,
    /// The users this user shares a direct message with: always watched by the server, so
    /// their presence is kept whatever the watch set.
    dm_peers: HashSet<String>,
    /// Finished uploads of outbox files report here (see [`Actor::start_upload`]).
    uploads_tx: mpsc::UnboundedSender<UploadDone>,
    uploads_rx: mpsc::UnboundedReceiver<UploadDone>,
    /// Waits between attempts of an upload that keeps failing for now.
    upload_backoff: Backoff,
}

/// The end of one file's upload for outbox entry `local_id` (the record is already stored).
struct UploadDone {
    local_id: String,
    /// The file's name, for the reason when it is refused.
    name: String,
    result: Result<()>,
}

impl Actor {
    pub(crate) fn new(
        config: ClientConfig,
        token: String,
        shared: Arc<Shared>,
        cmd_rx: mpsc::UnboundedReceiver<Command>,
        state_tx: watch::Sender<ConnectionState>,
        synced_tx: watch::Sender<bool>,
    ) -> Actor {
        let backoff = Backoff::new(config.backoff_min, config.backoff_max);
        let upload_backoff = Backoff::new(config.backoff_min, config.backoff_max);
        let (uploads_tx, uploads_rx) = mpsc::unbounded_channel();
        Actor {
            config,
            token,
            shared,
            cmd_rx,
            state_tx,
            synced_tx,
            backoff,
            next_id: 0,
            known_users: HashSet::new(),
            dm_peers: HashSet::new(),
            uploads_tx,
            uploads_rx,
            upload_backoff,
        }
    }

    fn set_state(&self, state: ConnectionState) {
        if *self.state_tx.borrow() != state {
            self.state_tx.send_replace(state.clone());
            self.shared.emit(ClientEvent::Connection(state));
        }
    }

    fn warn(&self, what: String) {
        tracing::warn!("{what}");
        self.shared.emit(ClientEvent::Warning(what));
    }

    /// Runs `f` on the store thread.
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> store::Result<T> + Send + 'static,
    ) -> store::Result<T> {
        self.shared.store.call(f).await
    }

    /// Announces the summaries of the conversations touched since the last flush.
    async fn flush(&self, conn: &mut Conn) {
        conn.flush_at = None;
        let dirty: Vec<ConvId> = std::mem::take(&mut conn.dirty).into_iter().collect();
        self.shared.publish_summaries(dirty).await;
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) async fn run(mut self) {
        loop {
            self.set_state(ConnectionState::Connecting);
            let end = match self.connect().await {
                Ok(ws) => self.session(ws).await,
                Err(end) => end,
            };
            match end {
                End::Shutdown(ack) => {
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                    return;
                }
                End::SignedOut(reason) => return self.signed_out(reason).await,
                End::Retry {
                    reason,
                    immediate,
                    stable,
                } => {
                    if stable || immediate {
                        self.backoff.reset();
                    }
                    let delay = if immediate {
                        Duration::ZERO
                    } else {
                        self.backoff.next_delay(rand::random::<f64>())
                    };
                    tracing::info!("disconnected ({reason}); retrying in {delay:?}");
                    self.set_state(ConnectionState::Offline {
                        retry_at: now_ms() + delay.as_millis() as i64,
                        reason: reason.clone(),
                    });
                    if !self.wait(delay, &reason).await {
                        return;
                    }
                }
            }
        }
    }

    /// Waits out the backoff, serving commands meanwhile. `false` when asked to stop.
    async fn wait(&mut self, delay: Duration, reason: &str) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return true,
                cmd = self.cmd_rx.recv() => match cmd {
                    None => return false,
                    Some(Command::Shutdown(ack)) => {
                        let _ = ack.send(());
                        return false;
                    }
                    Some(Command::ReconnectNow) => {
                        self.backoff.reset();
                        return true;
                    }
                    Some(Command::Request { reply, .. }) => {
                        // A requester that gave up (timed out) needs no answer.
                        let _ = reply.send(Err(ClientError::Offline(reason.to_owned())));
                    }
                    Some(Command::Kick) => {}
                    Some(Command::Touched(conv)) => self.shared.publish_summaries(vec![conv]).await,
                },
            }
        }
    }

    /// The token was refused: forget it and refuse every request until shut down.
    async fn signed_out(mut self, reason: String) {
        tracing::warn!("signed out: {reason}");
        if let Err(e) = self.db(|s| s.clear_session()).await {
            tracing::error!("could not forget the refused session: {e}");
        }
        self.set_state(ConnectionState::SignedOut {
            reason: reason.clone(),
        });
        while let Some(cmd) = self.cmd_rx.recv().await {
            match cmd {
                Command::Shutdown(ack) => {
                    let _ = ack.send(());
                    return;
                }
                Command::Request { reply, .. } => {
                    let _ = reply.send(Err(ClientError::Unauthorized(reason.clone())));
                }
                Command::Kick | Command::ReconnectNow => {}
                Command::Touched(conv) => self.shared.publish_summaries(vec![conv]).await,
            }
        }
    }

    /// Opens the WebSocket, serving commands while the handshake runs.
    async fn connect(&mut self) -> std::result::Result<Ws, End> {
        let url = ws_url(&self.config.server).map_err(retry)?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| retry(format!("bad server address: {e}")))?;
        let auth = HeaderValue::from_str(&format!("Bearer {}", self.token))
            .map_err(|_| End::SignedOut("the saved token is malformed".into()))?;
        request.headers_mut().insert(header::AUTHORIZATION, auth);
        request.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
        // Nothing larger than the protocol's largest server frame is read: tungstenite checks a
        // frame's declared length before it allocates for the payload.
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(limits::MAX_SERVER_FRAME_BYTES))
            .max_frame_size(Some(limits::MAX_SERVER_FRAME_BYTES));
        let (tls, refusal) = crate::client::trust::tls_config(&self.config.server);
        let handshake = tokio::time::timeout(
            self.config.connect_timeout,
            tokio_tungstenite::connect_async_tls_with_config(
                request,
                Some(ws_config),
                true,
                Some(tokio_tungstenite::Connector::Rustls(tls)),
            ),
        );
        tokio::pin!(handshake);
        loop {
            tokio::select! {
                res = &mut handshake => {
                    return match res {
                        Err(_) => Err(retry("the server did not answer in time")),
                        Ok(Ok((ws, _))) => Ok(ws),
                        Ok(Err(tungstenite::Error::Http(resp)))
                            if resp.status() == StatusCode::UNAUTHORIZED =>
                        {
                            Err(End::SignedOut("the server refused the session token".into()))
                        }
                        Ok(Err(tungstenite::Error::Http(resp))) => {
                            Err(retry(format!("the server answered {}", resp.status())))
                        }
                        Ok(Err(e)) => match refusal.lock().unwrap_or_else(|p| p.into_inner()).take() {
                            // Nothing was sent. Retried like any failure (the person may trust
                            // the certificate meanwhile), with the reason that names the risk.
                            Some(refused) => Err(retry(refused.to_error(&self.config.server).to_string())),
                            None => Err(retry(format!("cannot connect: {e}"))),
                        },
                    };
                }
                cmd = self.cmd_rx.recv() => match cmd {
                    None => return Err(End::Shutdown(None)),
                    Some(Command::Shutdown(ack)) => return Err(End::Shutdown(Some(ack))),
                    Some(Command::Request { reply, .. }) => {
                        let _ = reply.send(Err(ClientError::Offline("connecting".into())));
                    }
                    Some(Command::Kick | Command::ReconnectNow) => {}
                    Some(Command::Touched(conv)) => {
                        self.shared.publish_summaries(vec![conv]).await;
                    }
                },
            }
        }
    }

    /// Runs one connection from the handshake to its end.
    async fn session(&mut self, mut ws: Ws) -> End {
        let mut conn = Conn::default();
        let end = self.session_inner(&mut ws, &mut conn).await;
        self.flush(&mut conn).await;
        self.synced_tx.send_replace(false);
        // Whatever was asked on this connection will not be answered now; outbox messages stay
        // pending in the store and go again (same client_msg_id) on the next connection.
        for (_, p) in conn.pending.drain() {
            if let Pending::External(reply)
            | Pending::Watch {
                reply: Some(reply), ..
            } = p
            {
                let _ = reply.send(Err(ClientError::Offline("connection lost".into())));
            }
        }
        if matches!(end, End::Shutdown(_)) {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                ws.close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "bye".into(),
                })),
            )
            .await;
        }
        end
    }

    async fn session_inner(&mut self, ws: &mut Ws, conn: &mut Conn) -> End {
        // The first frame must be `hello`.
        let deadline = Instant::now() + self.config.connect_timeout;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    return retry("the server sent no hello");
                }
                msg = ws.next() => match msg {
                    None => return retry("the server closed the connection"),
                    Some(Err(e)) => return retry(format!("connection error: {e}")),
                    Some(Ok(WsMessage::Text(text))) => {
                        match serde_json::from_str::<ServerFrame>(text.as_str()) {
                            Ok(ServerFrame::Hello { user, online, conversations, unread, attention, .. }) => {
                                self.on_hello(conn, user, online, conversations, unread, attention).await;
                                if let Err(end) = self.rewatch(ws, conn).await {
                                    return end;
                                }
                                break;
                            }
                            Ok(other) => self.warn(format!("frame before hello ignored: {}", frame_name(&other))),
                            Err(e) => self.warn(format!("unreadable frame from the server: {e}")),
                        }
                    }
                    Some(Ok(WsMessage::Close(frame))) => return close_end(frame, false, false),
                    Some(Ok(WsMessage::Binary(_))) => self.warn("binary frame from the server ignored".into()),
                    Some(Ok(_)) => {}
                },
                cmd = self.cmd_rx.recv() => match cmd {
                    None => return End::Shutdown(None),
                    Some(Command::Shutdown(ack)) => return End::Shutdown(Some(ack)),
                    Some(Command::ReconnectNow) => return End::Retry {
                        reason: "reconnect requested".into(), immediate: true, stable: false,
                    },
                    Some(Command::Request { reply, .. }) => {
                        let _ = reply.send(Err(ClientError::Offline("connecting".into())));
                    }
                    Some(Command::Kick) => {}
                    Some(Command::Touched(c)) => conn.touch([c]),
                },
            }
        }
        let online_since = Instant::now();
        let stable = |since: Instant, cfg: &ClientConfig| since.elapsed() >= cfg.stable_after;

        let since = match self.db(|s| s.sync_points()).await {
            Ok(s) => s,
            Err(e) => {
                self.warn(format!("cannot read sync points: {e}"));
                Vec::new()
            }
        };
        let id = self.id();
        conn.pending.insert(id, Pending::Sync);
        if let Err(end) = send(ws, &ClientFrame::Sync { id, since }).await {
            return end;
        }
        if let Err(end) = self.fetch_directory(ws, conn).await {
            return end;
        }
        if let Err(end) = self.push_legacy_mutes(ws, conn).await {
            return end;
        }
        if let Err(end) = self.pump(ws, conn).await {
            return end;
        }

        let mut last_rx = Instant::now();
        // A server silent this long is presumed gone (a half-open connection). Its own timer,
        // not a check on the ping tick, which would notice up to one ping interval late.
        let silence_limit = self.config.heartbeat + self.config.heartbeat_grace;
        let mut ping = tokio::time::interval(self.config.heartbeat);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            let retry_at = conn.outbox_retry_at;
            let ack_due = conn
                .outbox_in_flight
                .map(|sent| sent + self.config.request_timeout);
            let flush_at = conn.flush_at;
            tokio::select! {
                _ = sleep_until_opt(flush_at) => self.flush(conn).await,
                msg = ws.next() => {
                    last_rx = Instant::now();
                    let end = match msg {
                        None => Some("the server closed the connection".to_string()),
                        Some(Err(e)) => Some(format!("connection error: {e}")),
                        Some(Ok(WsMessage::Text(text))) => {
                            if let Err(end) = self.on_text(ws, conn, text.as_str()).await {
                                return end;
                            }
                            None
                        }
                        Some(Ok(WsMessage::Binary(_))) => {
                            self.warn("binary frame from the server ignored".into());
                            None
                        }
                        Some(Ok(WsMessage::Close(frame))) => {
                            return close_end(frame, true, stable(online_since, &self.config));
                        }
                        Some(Ok(_)) => None,
                    };
                    if let Some(reason) = end {
                        return End::Retry { reason, immediate: false, stable: stable(online_since, &self.config) };
                    }
                }
                cmd = self.cmd_rx.recv() => match cmd {
                    None => return End::Shutdown(None),
                    Some(Command::Shutdown(ack)) => return End::Shutdown(Some(ack)),
                    Some(Command::ReconnectNow) => return End::Retry {
                        reason: "reconnect requested".into(), immediate: true, stable: true,
                    },
                    Some(Command::Request { build, reply }) => {
                        let id = self.id();
                        let frame = build(id);
                        let pending = match &frame {
                            ClientFrame::WatchPresence { users, .. } => Pending::Watch {
                                users: users.clone(),
                                reply: Some(reply),
                            },
                            _ => Pending::External(reply),
                        };
                        conn.pending.insert(id, pending);
                        if let Err(end) = send(ws, &frame).await {
                            return end;
                        }
                    }
                    Some(Command::Kick) => {
                        if let Err(end) = self.pump(ws, conn).await {
                            return end;
                        }
                    }
                    Some(Command::Touched(c)) => conn.touch([c]),
                },
                _ = tokio::time::sleep_until(last_rx + silence_limit) => {
                    return End::Retry {
                        reason: "the server stopped answering".into(),
                        immediate: false,
                        stable: stable(online_since, &self.config),
                    };
                }
                _ = ping.tick() => {
                    if let Err(end) = send_raw(ws, WsMessage::Ping(Vec::new().into())).await {
                        return end;
                    }
                }
                _ = sleep_until_opt(ack_due) => {
                    return End::Retry {
                        reason: "the server did not acknowledge a message in time".into(),
                        immediate: false,
                        stable: false,
                    };
                }
                _ = sleep_until_opt(retry_at) => {
                    conn.outbox_retry_at = None;
                    if let Err(end) = self.pump(ws, conn).await {
                        return end;
                    }
                }
                Some(done) = self.uploads_rx.recv() => {
                    self.upload_done(conn, done).await;
                    if let Err(end) = self.pump(ws, conn).await {
                        return end;
                    }
                }
            }
        }
    }

    async fn on_hello(
        &mut self,
        conn: &mut Conn,
        user: crate::protocol::User,
        online: Vec<String>,
        conversations: Vec<crate::protocol::Conversation>,
        unread: Vec<crate::protocol::Unread>,
        attention: crate::protocol::Attention,
    ) {
        let me = self.shared.user.username.clone();
        let ids: Vec<ConvId> = conversations.iter().map(|c| c.id).collect();
        self.dm_peers = conversations
            .iter()
            .filter_map(|c| c.peer.as_ref().map(|p| p.username.clone()))
            .collect();
        let dnd = attention.dnd;
        let profile = user.clone();
        let stored = self
            .db(move |store| {
                store.upsert_user(&user)?;
                for c in &conversations {
                    store.upsert_conversation(c)?;
                    // Counted before the replay arrives; each replayed message then moves from
                    // the server's count to the local one.
                    let count = unread
                        .iter()
                        .find(|u| u.conv == c.id)
                        .map_or(0, |u| u.count);
                    store.set_server_unread(c.id, count, c.last_read, &me)?;
                }
                let ids: Vec<ConvId> = conversations.iter().map(|c| c.id).collect();
                store.apply_attention(&ids, &attention)?;
                store.retain_memberships(&ids)
            })
            .await;
        match stored {
            Ok(left) => {
                for conv in left {
                    self.shared
                        .emit(ClientEvent::ConversationRemoved(ConversationRemoved {
                            conv,
                        }));
                }
            }
            Err(e) => self.warn(format!("cannot store the hello: {e}")),
        }
        *self
            .shared
            .profile
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = profile;
        *self.shared.online.lock().unwrap_or_else(|e| e.into_inner()) =
            online.iter().cloned().collect();
        self.set_state(ConnectionState::Online);
        self.shared.emit(ClientEvent::Online(online));
        self.shared.emit(ClientEvent::Dnd { dnd });
        conn.touch(ids);
    }

    /// Pushes this device's mutes from before levels were synced to the server, as level
    /// `nothing`, once: each is cleared locally when the server answers (see
    /// [`Pending::LegacyMute`]), after which the server's level is the truth.
    async fn push_legacy_mutes(
        &mut self,
        ws: &mut Ws,
        conn: &mut Conn,
    ) -> std::result::Result<(), End> {
        let convs = match self.db(|s| s.legacy_mutes()).await {
            Ok(convs) => convs,
            Err(e) => {
                self.warn(format!("cannot read this device's mutes: {e}"));
                return Ok(());
            }
        };
        for conv in convs {
            let id = self.id();
            conn.pending.insert(id, Pending::LegacyMute { conv });
            let level = crate::protocol::NotifyLevel::Nothing;
            send(ws, &ClientFrame::SetLevel { id, conv, level }).await?;
        }
        Ok(())
    }

    /// The server answered a pushed pre-sync mute: done, or refused for good (the conversation
    /// is gone). A transient refusal leaves it for the next connection.
    async fn legacy_mute_settled(&mut self, conv: ConvId, refused: Option<(ErrorCode, String)>) {
        if let Some((code, message)) = &refused {
            if matches!(
                code,
                ErrorCode::RateLimited | ErrorCode::Internal | ErrorCode::StorageFull
            ) {
                return;
            }
            self.warn(format!(
                "this device's mute of {conv} was refused: {message}"
            ));
        }
        if let Err(e) = self.db(move |s| s.clear_legacy_mute(conv)).await {
            self.warn(format!("cannot record a pushed mute: {e}"));
        }
    }

    /// Asks for the user list (one request at a time), so the store has every display name a
    /// notification may need before the message arrives: the event pump never asks the server.
    async fn fetch_directory(
        &mut self,
        ws: &mut Ws,
        conn: &mut Conn,
    ) -> std::result::Result<(), End> {
        if conn.directory_in_flight {
            return Ok(());
        }
        conn.directory_in_flight = true;
        let id = self.id();
        conn.pending.insert(id, Pending::Directory);
        send(ws, &ClientFrame::Users { id }).await
    }

    /// Sends the watch set again after a hello: the server forgets it with the socket.
    async fn rewatch(&mut self, ws: &mut Ws, conn: &mut Conn) -> std::result::Result<(), End> {
        let users = self
            .shared
            .watching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if users.is_empty() {
            return Ok(());
        }
        let id = self.id();
        let frame = ClientFrame::WatchPresence {
            id,
            users: users.clone(),
        };
        conn.pending
            .insert(id, Pending::Watch { users, reply: None });
        send(ws, &frame).await
    }

    /// A watch set's answer: presence is kept only for this user, their DM partners and the
    /// users now watched, and of the watched ones exactly those in `online` are online.
    fn watched(&mut self, users: &[String], online: &[String]) {
        let me = &self.shared.user.username;
        let watched: HashSet<&String> = users.iter().collect();
        let list: Vec<String> = {
            let mut set = self.shared.online.lock().unwrap_or_else(|e| e.into_inner());
            set.retain(|n| (n == me || self.dm_peers.contains(n)) && !watched.contains(n));
            set.extend(online.iter().cloned());
            set.iter().cloned().collect()
        };
        self.shared.emit(ClientEvent::Online(list));
    }

    /// Stores the user list's profiles.
    async fn store_directory(&mut self, members: Vec<crate::protocol::Member>) {
        self.known_users
            .extend(members.iter().map(|m| m.user.username.clone()));
        let stored = self
            .db(move |s| members.iter().try_for_each(|m| s.upsert_user(&m.user)))
            .await;
        if let Err(e) = stored {
            self.warn(format!("cannot store the user list: {e}"));
        }
    }

    /// Sends the next outbox message (one in flight at a time) and unsent read markers.
    async fn pump(&mut self, ws: &mut Ws, conn: &mut Conn) -> std::result::Result<(), End> {
        let uploading = self.shared.upload_slot().is_some();
        if conn.outbox_in_flight.is_none() && conn.outbox_retry_at.is_none() && !uploading {
            match self.db(|s| s.next_pending()).await {
                Ok(Some(item)) if item.files.iter().any(|f| f.attachment.is_none()) => {
                    self.start_upload(item);
                }
                Ok(Some(item)) => match item.frame(self.id()) {
                    Some(frame) => {
                        let id = frame.id();
                        conn.pending.insert(
                            id,
                            Pending::Outbox {
                                local_id: item.local_id.clone(),
                                to_user: item.to_user.clone(),
                            },
                        );
                        conn.outbox_in_flight = Some(Instant::now());
                        send(ws, &frame).await?;
                    }
                    None => {
                        self.warn(format!(
                            "outbox entry {} has a corrupt id or no recipient",
                            item.local_id
                        ));
                        self.fail_outbox(conn, item.local_id, "corrupt outbox entry".into())
                            .await;
                    }
                },
                Ok(None) => {}
                Err(e) => self.warn(format!("cannot read the outbox: {e}")),
            }
        }
        let reads = match self.db(|s| s.dirty_reads()).await {
            Ok(r) => r,
            Err(e) => {
                self.warn(format!("cannot read the read markers: {e}"));
                Vec::new()
            }
        };
        for r in reads {
            if conn.reads_in_flight.insert(r.conv) {
                let id = self.id();
                conn.pending.insert(
                    id,
                    Pending::Read {
                        conv: r.conv,
                        seq: r.seq,
                    },
                );
                send(
                    ws,
                    &ClientFrame::Read {
                        id,
                        conv: r.conv,
                        seq: r.seq,
                    },
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Uploads the first file of `item` not on the server yet, as a task of its own (the
    /// connection goes on meanwhile); its record is stored in the entry and the end reported
    /// on `uploads_rx`.
    fn start_upload(&mut self, item: OutboxItem) {
        let Some((index, file)) = item
            .files
            .iter()
            .enumerate()
            .find(|(_, f)| f.attachment.is_none())
        else {
            return;
        };
        let path = file.path.clone();
        let local_id = item.local_id.clone();
        let server = self.config.server.clone();
        let token = self.token.clone();
        let shared = self.shared.clone();
        let done = self.uploads_tx.clone();
        let mut slot = self.shared.upload_slot();
        let task = tokio::spawn(async move {
            let progress = {
                let (shared, local_id, path) = (shared.clone(), local_id.clone(), path.clone());
                // One event per percent (and the last), not one per piece.
                let last = std::sync::atomic::AtomicU64::new(u64::MAX);
                move |sent: u64, total: u64| {
                    let percent = sent.saturating_mul(100) / total.max(1);
                    if last.swap(percent, std::sync::atomic::Ordering::Relaxed) != percent {
                        shared.emit(ClientEvent::Upload(UploadProgress {
                            local_id: local_id.clone(),
                            path: path.clone(),
                            sent,
                            total,
                        }));
                    }
                }
            };
            let uploaded =
                http::upload_file(&server, &token, std::path::Path::new(&path), progress).await;
            let result = match uploaded {
                Ok(attachment) => {
                    let id = local_id.clone();
                    let stored = shared
                        .store
                        .call(move |s| s.set_outbox_attachment(&id, index, &attachment))
                        .await;
                    match stored {
                        Ok(Some(item)) => {
                            shared
                                .emit(ClientEvent::Message(MessageEvent::updated(item.to_local())));
                            Ok(())
                        }
                        Ok(None) => Ok(()),
                        Err(e) => Err(ClientError::from(e)),
                    }
                }
                Err(e) => Err(e),
            };
            let name = std::path::Path::new(&path)
                .file_name()
                .map_or_else(|| path.clone(), |n| n.to_string_lossy().into_owned());
            let _ = done.send(UploadDone {
                local_id,
                name,
                result,
            });
        });
        *slot = Some(crate::client::UploadSlot {
            local_id: item.local_id,
            abort: task.abort_handle(),
        });
    }

    /// An upload ended: go on with the entry, wait and try again, or fail it for good.
    async fn upload_done(&mut self, conn: &mut Conn, done: UploadDone) {
        {
            let mut slot = self.shared.upload_slot();
            if slot.as_ref().is_some_and(|u| u.local_id == done.local_id) {
                *slot = None;
            }
        }
        match done.result {
            Ok(()) => self.upload_backoff.reset(),
            // The file is gone, unreadable, empty or refused by the server (too large, bad
            // request): trying again will not change that.
            Err(ClientError::Invalid(why) | ClientError::NotFound(why)) => {
                self.upload_backoff.reset();
                let reason = format!("{} refused: {why}", done.name);
                self.fail_outbox(conn, done.local_id, reason).await;
            }
            Err(e) => {
                let wait = self.upload_backoff.next_delay(rand::random::<f64>());
                tracing::info!("upload failed, retrying in {wait:?}: {e}");
                conn.outbox_retry_at = Some(Instant::now() + wait);
            }
        }
    }

    async fn on_text(
        &mut self,
        ws: &mut Ws,
        conn: &mut Conn,
        text: &str,
    ) -> std::result::Result<(), End> {
        let frame = match serde_json::from_str::<ServerFrame>(text) {
            Ok(f) => f,
            Err(e) => {
                self.warn(format!("unreadable frame from the server: {e}"));
                return Ok(());
            }
        };
        match frame {
            ServerFrame::Hello {
                user,
                online,
                conversations,
                unread,
                attention,
                ..
            } => {
                self.on_hello(conn, user, online, conversations, unread, attention)
                    .await;
                self.rewatch(ws, conn).await?;
            }
            ServerFrame::Ok { id, result } => match conn.pending.remove(&id) {
                None => self.warn(format!("answer to unknown request {id} ignored")),
                Some(Pending::External(reply)) => {
                    // A requester that gave up (timed out) needs no answer.
                    let _ = reply.send(Ok(result));
                }
                Some(Pending::Sync) => {
                    let me = self.shared.user.username.clone();
                    let unread = match result {
                        Reply::Synced { unread } => unread,
                        _ => Vec::new(),
                    };
                    let convs: Vec<ConvId> = unread.iter().map(|u| u.conv).collect();
                    let stored = self
                        .db(move |store| {
                            for u in unread {
                                store.set_server_unread(u.conv, u.count, u.last_read, &me)?;
                            }
                            store.mark_synced()
                        })
                        .await;
                    if let Err(e) = stored {
                        self.warn(format!("cannot record the resume: {e}"));
                    }
                    conn.touch(convs);
                    self.synced_tx.send_replace(true);
                    self.shared.emit(ClientEvent::Synced);
                }
                Some(Pending::Outbox { local_id, to_user }) => {
                    conn.outbox_in_flight = None;
                    match result {
                        Reply::Sent { message } => {
                            if let Some(user) = to_user {
                                let conv = message.conv;
                                if let Err(e) = self
                                    .db(move |s| s.assign_dm_conversation(&user, conv))
                                    .await
                                {
                                    self.warn(format!(
                                        "cannot file queued messages under the new conversation: {e}"
                                    ));
                                }
                            }
                            self.store_messages(conn, vec![message]).await;
                        }
                        other => {
                            let reason = format!("unexpected answer: {}", reply_name(&other));
                            self.fail_outbox(conn, local_id, reason).await;
                        }
                    }
                    self.pump(ws, conn).await?;
                }
                Some(Pending::Read { conv, seq }) => {
                    conn.reads_in_flight.remove(&conv);
                    self.read_settled(conv, seq).await;
                    self.pump(ws, conn).await?;
                }
                Some(Pending::LegacyMute { conv }) => self.legacy_mute_settled(conv, None).await,
                Some(Pending::Watch { users, reply }) => {
                    if let Reply::Watching { online } = &result {
                        self.watched(&users, online);
                    }
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(result));
                    }
                }
                Some(Pending::Directory) => {
                    conn.directory_in_flight = false;
                    match result {
                        Reply::Users { users } => self.store_directory(users).await,
                        other => self.warn(format!(
                            "unexpected answer to users: {}",
                            reply_name(&other)
                        )),
                    }
                }
            },
            ServerFrame::Error { id, code, message } => {
                match id.and_then(|id| conn.pending.remove(&id)) {
                    None => self.warn(format!("server error: {message} ({code:?})")),
                    Some(Pending::External(reply)) => {
                        // A requester that gave up (timed out) needs no answer.
                        let _ = reply.send(Err(ClientError::from_server(code, message)));
                    }
                    Some(Pending::Sync) => {
                        self.warn(format!("resume failed: {message}"));
                        return Err(retry(format!("resume failed: {message}")));
                    }
                    Some(Pending::Outbox { local_id, .. }) => {
                        conn.outbox_in_flight = None;
                        if matches!(code, ErrorCode::RateLimited | ErrorCode::Internal) {
                            // Transient: keep it first in line and try again shortly.
                            // Rate limits refill within a fraction of a second; a short wait
                            // keeps the drain quick while rejections stay far below the
                            // server's flood threshold.
                            let wait = if code == ErrorCode::RateLimited {
                                Duration::from_millis(250)
                            } else {
                                Duration::from_secs(1)
                            };
                            conn.outbox_retry_at = Some(Instant::now() + wait);
                        } else {
                            self.fail_outbox(conn, local_id, message).await;
                        }
                        self.pump(ws, conn).await?;
                    }
                    Some(Pending::Read { conv, seq }) => {
                        conn.reads_in_flight.remove(&conv);
                        // Not retried: the conversation is gone or the marker is invalid.
                        self.read_settled(conv, seq).await;
                        self.warn(format!("read marker for {conv} refused: {message}"));
                    }
                    Some(Pending::LegacyMute { conv }) => {
                        self.legacy_mute_settled(conv, Some((code, message))).await
                    }
                    Some(Pending::Watch { reply, .. }) => match reply {
                        Some(reply) => {
                            let _ = reply.send(Err(ClientError::from_server(code, message)));
                        }
                        None => self.warn(format!("watch set refused: {message} ({code:?})")),
                    },
                    Some(Pending::Directory) => {
                        conn.directory_in_flight = false;
                        // Names fall back to usernames until the next connection asks again.
                        self.warn(format!("user list refused: {message} ({code:?})"));
                    }
                }
            }
            ServerFrame::Message { message } => self.store_messages(conn, vec![message]).await,
            ServerFrame::Batch { conv, messages } => {
                let count = messages.len();
                self.store_messages(conn, messages).await;
                self.shared.emit(ClientEvent::SyncProgress {
                    conv,
                    messages: count,
                });
            }
            ServerFrame::Presence { online, offline } => {
                if online.iter().any(|n| !self.known_users.contains(n)) {
                    // Someone new (registered since the list was fetched): fetch it again.
                    self.fetch_directory(ws, conn).await?;
                }
                {
                    let mut set = self.shared.online.lock().unwrap_or_else(|e| e.into_inner());
                    for name in &offline {
                        set.remove(name);
                    }
                    set.extend(online.iter().cloned());
                }
                self.shared.emit(ClientEvent::Presence { online, offline });
            }
            ServerFrame::Typing { conv, username } => {
                if username != self.shared.user.username {
                    self.shared.emit(ClientEvent::Typing { conv, username });
                }
            }
            ServerFrame::Read { conv, seq } => {
                match self.db(move |s| s.set_last_read(conv, seq, false)).await {
                    Ok(true) => self.shared.publish_unread(conv).await,
                    Ok(false) => {}
                    Err(e) => self.warn(format!("cannot store a read marker: {e}")),
                }
                self.shared.emit(ClientEvent::ReadMarker { conv, seq });
            }
            ServerFrame::ConversationAdded { conversation } => {
                let id = conversation.id;
                if let Some(peer) = &conversation.peer {
                    self.dm_peers.insert(peer.username.clone());
                }
                match self.db(move |s| s.upsert_conversation(&conversation)).await {
                    Ok(()) => conn.touch([id]),
                    Err(e) => self.warn(format!("cannot store a conversation: {e}")),
                }
            }
            ServerFrame::ConversationsUpdated { conversations } => {
                // As the server describes them now (a moderator flag turned by an admin role
                // granted or revoked): stored, and their summaries follow.
                let ids: Vec<ConvId> = conversations.iter().map(|c| c.id).collect();
                let stored = self
                    .db(move |s| {
                        conversations
                            .iter()
                            .try_for_each(|c| s.upsert_conversation(c))
                    })
                    .await;
                match stored {
                    Ok(()) => conn.touch(ids),
                    Err(e) => self.warn(format!("cannot store updated conversations: {e}")),
                }
            }
            ServerFrame::ConversationRemoved { conv } => {
                if let Err(e) = self.db(move |s| s.remove_membership(conv)).await {
                    self.warn(format!("cannot record leaving conversation {conv}: {e}"));
                }
                conn.dirty.remove(&conv);
                self.shared
                    .emit(ClientEvent::ConversationRemoved(ConversationRemoved {
                        conv,
                    }));
            }
            ServerFrame::Level { conv, level } => {
                match self.db(move |s| s.set_level(conv, level)).await {
                    Ok(()) => conn.touch([conv]),
                    Err(e) => self.warn(format!("cannot store a notification level: {e}")),
                }
            }
            ServerFrame::Dnd { dnd } => {
                if let Err(e) = self.db(move |s| s.set_dnd(dnd)).await {
                    self.warn(format!("cannot store do not disturb: {e}"));
                }
                self.shared.emit(ClientEvent::Dnd { dnd });
            }
            ServerFrame::Membership {
                conv,
                username,
                joined,
            } => {
                let delta = if joined { 1 } else { -1 };
                if let Err(e) = self.db(move |s| s.set_member_count(conv, delta)).await {
                    self.warn(format!("cannot store a member count: {e}"));
                }
                self.shared.emit(ClientEvent::Membership {
                    conv,
                    username,
                    joined,
                });
            }
            ServerFrame::UserUpdated { user } => self.on_user_updated(conn, user).await,
        }
        Ok(())
    }

    /// A profile changed (or its account was deleted): stored, so names are right after a
    /// restart; the user's own profile follows; a DM with them gets a fresh summary (its title).
    async fn on_user_updated(&mut self, conn: &mut Conn, user: crate::protocol::User) {
        let stored = user.clone();
        let dm = self
            .db(move |s| {
                s.upsert_user(&stored)?;
                s.find_conversation(crate::protocol::ConvKind::Dm, &stored.username)
            })
            .await;
        match dm {
            Ok(dm) => conn.touch(dm),
            Err(e) => self.warn(format!("cannot store a profile: {e}")),
        }
        self.known_users.insert(user.username.clone());
        if user.username == self.shared.user.username {
            *self
                .shared
                .profile
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = user.clone();
        }
        self.shared.emit(ClientEvent::UserUpdated(user));
    }

    /// Stores committed messages and announces the ones that are new here: `added` for
    /// others', `updated` for the user's own from this profile's outbox (already shown as
    /// pending). Their conversations' summaries follow at the next flush.
    async fn store_messages(&self, conn: &mut Conn, messages: Vec<crate::protocol::Message>) {
        match self.db(move |s| s.insert_messages_tracked(&messages)).await {
            Ok(fresh) => {
                conn.touch(fresh.iter().filter_map(|i| i.message.conv));
                for i in fresh {
                    self.shared.emit(ClientEvent::Message(if i.was_shown {
                        MessageEvent::updated(i.message)
                    } else {
                        MessageEvent::added(i.message)
                    }));
                }
            }
            Err(e) => self.warn(format!("cannot store messages: {e}")),
        }
    }

    /// The server refused an outbox message for good: mark it failed and announce the update.
    async fn fail_outbox(&self, conn: &mut Conn, local_id: String, reason: String) {
        // An action is not retried (the state it was meant for may be gone: a deleted
        // message): it is announced, then dropped. Announced first, so that whoever waits for
        // the outbox to empty (the CLI) finds the refusal already sent when it is.
        let id = local_id.clone();
        let refused_action = match self.db(move |s| s.outbox_item(&id)).await {
            Ok(Some(OutboxItem {
                conv: Some(conv),
                action: Some(action),
                ..
            })) => Some((conv, action)),
            _ => None,
        };
        if let Some((conv, action)) = refused_action {
            self.shared.emit(ClientEvent::ActionFailed(ActionFailure {
                local_id: local_id.clone(),
                conv,
                action,
                error: reason,
            }));
            if let Err(e) = self.db(move |s| s.remove_outbox(&local_id)).await {
                self.warn(format!("cannot drop a refused action: {e}"));
            }
            return;
        }
        let failed = self
            .db(move |s| {
                s.mark_failed(&local_id, &reason)?;
                s.outbox_item(&local_id)
            })
            .await;
        match failed {
            Ok(Some(item)) => {
                conn.touch(item.conv);
                self.shared
                    .emit(ClientEvent::Message(MessageEvent::updated(item.to_local())));
            }
            Ok(None) => {}
            Err(e) => self.warn(format!("cannot record a failed message: {e}")),
        }
    }

    /// The server has (or refused for good) the read marker `seq` of `conv`.
    async fn read_settled(&self, conv: ConvId, seq: Seq) {
        if let Err(e) = self.db(move |s| s.clear_dirty_read(conv, seq)).await {
            self.warn(format!("cannot record a synced read marker: {e}"));
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn send(ws: &mut Ws, frame: &ClientFrame) -> std::result::Result<(), End> {
    let json = serde_json::to_string(frame).map_err(|e| retry(format!("encode: {e}")))?;
    send_raw(ws, WsMessage::text(json)).await
}

async fn send_raw(ws: &mut Ws, msg: WsMessage) -> std::result::Result<(), End> {
    ws.send(msg)
        .await
        .map_err(|e| retry(format!("connection error: {e}")))
}

/// What a close frame from the server means for the client.
fn close_end(frame: Option<CloseFrame>, after_hello: bool, stable: bool) -> End {
    let (code, reason) = match &frame {
        Some(f) => (u16::from(f.code), f.reason.as_str().to_owned()),
        None => (1005, String::new()),
    };
    let text = if reason.is_empty() {
        format!("the server closed the connection ({code})")
    } else {
        format!("the server closed the connection ({code}: {reason})")
    };
    // Revoked, or banned from the server: reconnecting cannot help, signing in again might.
    if code == close::UNAUTHORIZED
        || code == close::BANNED
        || (code == close::POLICY && !after_hello)
    {
        return End::SignedOut(text);
    }
    End::Retry {
        reason: text,
        immediate: false,
        stable,
    }
}

fn frame_name(frame: &ServerFrame) -> String {
    serde_json::to_value(frame)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn reply_name(reply: &Reply) -> String {
    serde_json::to_value(reply)
        .ok()
        .and_then(|v| v.get("kind").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        // With the largest jitter the delay is the full base; with none, half of it.
        assert_eq!(b.next_delay(0.999_999_9).as_millis(), 499);
        assert_eq!(b.next_delay(0.0), Duration::from_millis(500));
        assert_eq!(b.next_delay(0.0), Duration::from_secs(1));
        assert_eq!(b.next_delay(0.0), Duration::from_secs(2));
        for _ in 0..20 {
            let d = b.next_delay(0.5);
            assert!(d <= Duration::from_secs(30));
        }
        assert_eq!(b.next_delay(0.0), Duration::from_secs(15));
        assert_eq!(b.next_delay(1.0), Duration::from_secs(30));
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(250));
    }

    #[test]
    fn backoff_survives_absurd_inputs() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(1));
        for _ in 0..100 {
            assert!(b.next_delay(f64::NAN) <= Duration::from_secs(10));
            assert!(b.next_delay(7.0) <= Duration::from_secs(10));
        }
    }

    #[test]
    fn websocket_address_follows_the_server_scheme() {
        let u = |s: &str| ws_url(&s.parse().unwrap());
        assert_eq!(
            u("http://127.0.0.1:8686").unwrap().as_str(),
            "ws://127.0.0.1:8686/ws"
        );
        assert_eq!(
            u("https://chat.example.com/x?y=1").unwrap().as_str(),
            "wss://chat.example.com/ws"
        );
        assert!(u("ftp://example.com").is_err());
    }

    #[test]
    fn close_codes_decide_between_retry_and_sign_out() {
        let frame = |code: u16| {
            Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "r".into(),
            })
        };
        assert!(matches!(
            close_end(frame(close::UNAUTHORIZED), true, false),
            End::SignedOut(_)
        ));
        assert!(matches!(
            close_end(frame(close::POLICY), false, false),
            End::SignedOut(_)
        ));
        assert!(matches!(
            close_end(frame(close::BANNED), true, false),
            End::SignedOut(_)
        ));
        for code in close::ALL
            .iter()
            .copied()
            .filter(|&c| c != close::UNAUTHORIZED && c != close::BANNED)
        {
            assert!(
                matches!(close_end(frame(code), true, false), End::Retry { .. }),
                "{code}"
            );
        }
        assert!(matches!(
            close_end(None, true, true),
            End::Retry { stable: true, .. }
        ));
    }
}
