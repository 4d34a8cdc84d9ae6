//! The connection actor: the one task that owns the WebSocket. It connects with the session token
//! (Authorization header, subprotocol `natter.v1`), waits for `hello`, resumes with `sync` from the
//! last seq held per conversation, drains the outbox one message at a time (so per-conversation
//! order holds even across failures), syncs read markers, answers requests from [`Client`]
//! handles, pings a quiet server and drops a silent one, and reconnects with jittered exponential
//! backoff. It stops retrying only when the token is refused (HTTP 401 or close 4001).
//!
//! Nothing the server sends can panic it: unparseable or unexpected frames are reported as
//! [`ClientEvent::Warning`] and skipped; protocol errors and oversized frames end the connection,
//! which is then retried.
//!
//! [`Client`]: crate::client::Client

use std::collections::{HashMap, HashSet};
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

use crate::client::types::{ConnectionState, MessageState};
use crate::client::{now_ms, ClientConfig, ClientError, ClientEvent, Result, Shared};
use crate::protocol::{
    close, limits, ClientFrame, ConvId, ErrorCode, Reply, Seq, ServerFrame, SUBPROTOCOL,
};

/// What a [`Client`](crate::client::Client) handle asks of the actor.
pub(crate) enum Command {
    /// Send the frame built with a fresh request id and deliver its answer.
    Request {
        build: Box<dyn FnOnce(u64) -> ClientFrame + Send>,
        reply: oneshot::Sender<Result<Reply>>,
    },
    /// The outbox or the read markers changed: look for work.
    Kick,
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
        Actor {
            config,
            token,
            shared,
            cmd_rx,
            state_tx,
            synced_tx,
            backoff,
            next_id: 0,
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
                        let _ = reply.send(Err(ClientError::Offline(reason.to_owned())));
                    }
                    Some(Command::Kick) => {}
                },
            }
        }
    }

    /// The token was refused: forget it and refuse every request until shut down.
    async fn signed_out(mut self, reason: String) {
        tracing::warn!("signed out: {reason}");
        if let Err(e) = self.shared.store.clear_session() {
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
        let handshake = tokio::time::timeout(
            self.config.connect_timeout,
            tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true),
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
                        Ok(Err(e)) => Err(retry(format!("cannot connect: {e}"))),
                    };
                }
                cmd = self.cmd_rx.recv() => match cmd {
                    None => return Err(End::Shutdown(None)),
                    Some(Command::Shutdown(ack)) => return Err(End::Shutdown(Some(ack))),
                    Some(Command::Request { reply, .. }) => {
                        let _ = reply.send(Err(ClientError::Offline("connecting".into())));
                    }
                    Some(Command::Kick | Command::ReconnectNow) => {}
                },
            }
        }
    }

    /// Runs one connection from the handshake to its end.
    async fn session(&mut self, mut ws: Ws) -> End {
        let mut conn = Conn::default();
        let end = self.session_inner(&mut ws, &mut conn).await;
        self.synced_tx.send_replace(false);
        // Whatever was asked on this connection will not be answered now; outbox messages stay
        // pending in the store and go again (same client_msg_id) on the next connection.
        for (_, p) in conn.pending.drain() {
            if let Pending::External(reply) = p {
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
                            Ok(ServerFrame::Hello { user, online, conversations, unread, .. }) => {
                                self.on_hello(user, online, conversations, unread);
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
                },
            }
        }
        let online_since = Instant::now();
        let stable = |since: Instant, cfg: &ClientConfig| since.elapsed() >= cfg.stable_after;

        let since = match self.shared.store.sync_points() {
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
            tokio::select! {
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
                        conn.pending.insert(id, Pending::External(reply));
                        if let Err(end) = send(ws, &frame).await {
                            return end;
                        }
                    }
                    Some(Command::Kick) => {
                        if let Err(end) = self.pump(ws, conn).await {
                            return end;
                        }
                    }
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
            }
        }
    }

    fn on_hello(
        &mut self,
        user: crate::protocol::User,
        online: Vec<String>,
        conversations: Vec<crate::protocol::Conversation>,
        unread: Vec<crate::protocol::Unread>,
    ) {
        let store = &self.shared.store;
        let result = (|| -> std::result::Result<(), crate::client::store::StoreError> {
            store.upsert_user(&user)?;
            for c in &conversations {
                store.upsert_conversation(c)?;
                // Counted before the replay arrives; each replayed message then moves from
                // the server's count to the local one.
                let count = unread
                    .iter()
                    .find(|u| u.conv == c.id)
                    .map_or(0, |u| u.count);
                store.set_server_unread(c.id, count, c.last_read, &self.shared.user.username)?;
            }
            store.retain_memberships(&conversations.iter().map(|c| c.id).collect::<Vec<_>>())
        })();
        if let Err(e) = result {
            self.warn(format!("cannot store the hello: {e}"));
        }
        *self.shared.online.lock().unwrap_or_else(|e| e.into_inner()) =
            online.iter().cloned().collect();
        self.set_state(ConnectionState::Online);
        self.shared.emit(ClientEvent::Online(online));
        self.shared.emit(ClientEvent::Conversations);
    }

    /// Sends the next outbox message (one in flight at a time) and unsent read markers.
    async fn pump(&mut self, ws: &mut Ws, conn: &mut Conn) -> std::result::Result<(), End> {
        let shared = self.shared.clone();
        let store = &shared.store;
        if conn.outbox_in_flight.is_none() && conn.outbox_retry_at.is_none() {
            match store.next_pending() {
                Ok(Some(item)) => match (item.local_id.parse(), item.target()) {
                    (Ok(client_msg_id), Some(target)) => {
                        let id = self.id();
                        let frame = ClientFrame::Send {
                            id,
                            target,
                            client_msg_id,
                            text: item.text.clone(),
                        };
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
                    _ => {
                        let _ = store.mark_failed(&item.local_id, "corrupt outbox entry");
                        self.warn(format!(
                            "outbox entry {} has a corrupt id or no recipient",
                            item.local_id
                        ));
                    }
                },
                Ok(None) => {}
                Err(e) => self.warn(format!("cannot read the outbox: {e}")),
            }
        }
        let reads = match store.dirty_reads() {
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
        let shared = self.shared.clone();
        let store = &shared.store;
        match frame {
            ServerFrame::Hello {
                user,
                online,
                conversations,
                unread,
                ..
            } => {
                self.on_hello(user, online, conversations, unread);
            }
            ServerFrame::Ok { id, result } => match conn.pending.remove(&id) {
                None => self.warn(format!("answer to unknown request {id} ignored")),
                Some(Pending::External(reply)) => {
                    let _ = reply.send(Ok(result));
                }
                Some(Pending::Sync) => {
                    if let Reply::Synced { unread } = result {
                        for u in unread {
                            if let Err(e) = store.set_server_unread(
                                u.conv,
                                u.count,
                                u.last_read,
                                &shared.user.username,
                            ) {
                                self.warn(format!("cannot store unread counts: {e}"));
                            }
                        }
                    }
                    if let Err(e) = store.mark_synced() {
                        self.warn(format!("cannot record the resume: {e}"));
                    }
                    self.synced_tx.send_replace(true);
                    self.shared.emit(ClientEvent::Synced);
                    self.shared.emit(ClientEvent::Conversations);
                }
                Some(Pending::Outbox { local_id, to_user }) => {
                    conn.outbox_in_flight = None;
                    match result {
                        Reply::Sent { message } => {
                            if let Some(user) = &to_user {
                                let _ = store.assign_dm_conversation(user, message.conv);
                            }
                            self.store_messages(&[message]);
                        }
                        other => {
                            let reason = format!("unexpected answer: {}", reply_name(&other));
                            let _ = store.mark_failed(&local_id, &reason);
                            self.emit_outbox(&local_id);
                        }
                    }
                    self.pump(ws, conn).await?;
                }
                Some(Pending::Read { conv, seq }) => {
                    conn.reads_in_flight.remove(&conv);
                    let _ = store.clear_dirty_read(conv, seq);
                    self.pump(ws, conn).await?;
                }
            },
            ServerFrame::Error { id, code, message } => {
                match id.and_then(|id| conn.pending.remove(&id)) {
                    None => self.warn(format!("server error: {message} ({code:?})")),
                    Some(Pending::External(reply)) => {
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
                            let _ = store.mark_failed(&local_id, &message);
                            self.emit_outbox(&local_id);
                        }
                        self.pump(ws, conn).await?;
                    }
                    Some(Pending::Read { conv, seq }) => {
                        conn.reads_in_flight.remove(&conv);
                        // Not retried: the conversation is gone or the marker is invalid.
                        let _ = store.clear_dirty_read(conv, seq);
                        self.warn(format!("read marker for {conv} refused: {message}"));
                    }
                }
            }
            ServerFrame::Message { message } => self.store_messages(&[message]),
            ServerFrame::Batch { conv, messages } => {
                self.store_messages(&messages);
                self.shared.emit(ClientEvent::SyncProgress {
                    conv,
                    messages: messages.len(),
                });
            }
            ServerFrame::Presence { online, offline } => {
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
                if let Err(e) = store.set_last_read(conv, seq, false) {
                    self.warn(format!("cannot store a read marker: {e}"));
                }
                self.shared.emit(ClientEvent::ReadMarker { conv, seq });
                self.shared.emit(ClientEvent::Conversations);
            }
            ServerFrame::ConversationAdded { conversation } => {
                if let Err(e) = store.upsert_conversation(&conversation) {
                    self.warn(format!("cannot store a conversation: {e}"));
                }
                self.shared.emit(ClientEvent::Conversations);
            }
            ServerFrame::ConversationRemoved { conv } => {
                let _ = store.remove_membership(conv);
                self.shared.emit(ClientEvent::Conversations);
            }
            ServerFrame::Membership {
                conv,
                username,
                joined,
            } => {
                let _ = store.set_member_count(conv, if joined { 1 } else { -1 });
                self.shared.emit(ClientEvent::Membership {
                    conv,
                    username,
                    joined,
                });
            }
        }
        Ok(())
    }

    /// Stores committed messages and announces the ones that are new here.
    fn store_messages(&self, messages: &[crate::protocol::Message]) {
        match self.shared.store.insert_messages(messages) {
            Ok(fresh) => {
                let any = !fresh.is_empty();
                for m in fresh {
                    self.shared.emit(ClientEvent::Message(m));
                }
                if any {
                    self.shared.emit(ClientEvent::Conversations);
                }
            }
            Err(e) => self.warn(format!("cannot store messages: {e}")),
        }
    }

    fn emit_outbox(&self, local_id: &str) {
        if let Ok(Some(item)) = self.shared.store.outbox_item(local_id) {
            debug_assert_eq!(item.state, MessageState::Failed);
            self.shared.emit(ClientEvent::Message(item.to_local()));
            self.shared.emit(ClientEvent::Conversations);
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
    if code == close::UNAUTHORIZED || (code == close::POLICY && !after_hello) {
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
        for code in close::ALL
            .iter()
            .copied()
            .filter(|&c| c != close::UNAUTHORIZED)
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
