//! One task per WebSocket: the auth phase (for sockets that upgraded without a token), then one
//! loop that reads the socket and waits at once for incoming frames, queued outbound bytes to
//! drain, replay pages, the heartbeat tick and a kill.
//!
//! Frames *to* the client do not pass through this task as a rule: the hub writes each one to
//! the socket directly through the connection's [`Outbound`] (see [`super::outbound`]), and
//! this task only drains what a full socket did not take. The loop also sends the heartbeat
//! pings and closes a peer silent for `heartbeat_interval + heartbeat_timeout`.
//!
//! Every way a socket ends goes through [`Kill`]: whoever decides (the loop on bad input, the
//! outbound queue on overflow, the hub on logout, heartbeat, shutdown) fires a close code, and
//! the loop sends that close frame. After the close frame the task keeps reading and discarding
//! raw bytes for a short grace period, so a peer that was mid-way through a large frame still
//! sees the close frame instead of a TCP reset.
//!
//! The socket type is generic over the underlying I/O, so tests drive it over an in-memory
//! duplex stream; the server uses it over TCP or TLS.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::protocol::{
    close, is_valid_name, is_valid_text, limits, ClientFrame, ConvSeq, ErrorCode, Millis, Reply,
    ServerFrame,
};

use super::auth::{hash_token, TokenHash};
use super::hub::{answer, encode, ConnHandle, Kill};
use super::outbound::{Conn, Outbound, Outlet, PushError, WireFrame};
use super::store::{self, now_ms, Origin, UserId, WriteOp};
use super::Shared;

/// Not a real close code: the peer vanished, so no close frame is sent.
const ABORTED: u16 = 1006;
/// The standard code for a protocol violation at the WebSocket level.
const PROTOCOL_ERROR: u16 = 1002;

/// The socket as tungstenite sees it: reads from the socket, writes through the outbound queue.
type Ws<T> = WebSocketStream<Conn<T>>;

/// tungstenite's settings for server sockets. Buffers are sized for many connections: the read
/// buffer defaults to 128 KiB per socket and would be most of an idle connection's memory.
/// tungstenite writes only control frames (everything else goes through [`Outbound`]), so its
/// write buffer stays small too. Messages and frames are capped at the protocol's frame limit
/// (close 1009 beyond it).
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(2 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(limits::MAX_FRAME_BYTES))
        .max_frame_size(Some(limits::MAX_FRAME_BYTES))
}
/// Every `type` a client frame may have; anything else is `unknown_type`.
const KNOWN_TYPES: &[&str] = &[
    "auth",
    "sync",
    "send",
    "history",
    "rooms",
    "create_room",
    "join",
    "leave",
    "members",
    "users",
    "read",
    "typing",
];

/// A socket's identity once authenticated.
#[derive(Debug, Clone, Copy)]
pub struct Authed {
    pub user: UserId,
    pub token: TokenHash,
    pub expires_at: Millis,
}

/// Keeps a slot in the per-address count of sockets that have not authenticated yet.
pub struct UnauthSlot {
    shared: Arc<Shared>,
    ip: std::net::IpAddr,
}

impl UnauthSlot {
    /// Take a slot for `ip`, or None when it already holds `max_unauthenticated_per_ip`.
    pub fn take(shared: &Arc<Shared>, ip: std::net::IpAddr) -> Option<UnauthSlot> {
        let mut map = shared.unauth.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= shared.config.max_unauthenticated_per_ip {
            return None;
        }
        *n += 1;
        Some(UnauthSlot {
            shared: shared.clone(),
            ip,
        })
    }
}

impl Drop for UnauthSlot {
    fn drop(&mut self) {
        let mut map = self.shared.unauth.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// The close code for a read error.
fn code_for_error(e: &WsError) -> u16 {
    match e {
        WsError::Utf8(_) => close::INVALID_PAYLOAD,
        WsError::Capacity(_) => close::TOO_BIG,
        // The peer dropped the TCP connection: nobody is left to read a close frame.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => ABORTED,
        WsError::Protocol(_) => PROTOCOL_ERROR,
        _ => ABORTED,
    }
}

fn close_reason(code: u16) -> &'static str {
    match code {
        close::NORMAL => "bye",
        close::GOING_AWAY => "server shutting down",
        close::UNSUPPORTED_DATA => "binary frames are not supported",
        close::INVALID_PAYLOAD => "text frame is not valid UTF-8",
        close::POLICY => "authenticate with an auth frame first",
        close::TOO_BIG => "frame too large",
        close::SLOW_CONSUMER => "outbound queue overflow: resume later",
        close::UNAUTHORIZED => "session ended: sign in again",
        close::HEARTBEAT_TIMEOUT => "heartbeat timeout",
        close::RATE_LIMITED => "rate limit exceeded",
        PROTOCOL_ERROR => "protocol error",
        _ => "",
    }
}

/// Send a close frame (unless the peer vanished), then read and discard for a grace period so
/// the peer gets to read it. Frames still queued are dropped: the client resumes from its last
/// seq when it reconnects.
async fn finish<T>(mut ws: Ws<T>, code: u16, grace: Duration)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    ws.get_ref().outbound().close();
    if code == ABORTED {
        return;
    }
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from_static(close_reason(code)),
    };
    let sent = tokio::time::timeout(grace, async {
        let _ = ws.send(Message::Close(Some(frame))).await;
        let _ = ws.flush().await;
    })
    .await;
    if sent.is_err() {
        return;
    }
    let _ = tokio::time::timeout(grace, async {
        let io = ws.get_mut();
        // On the heap and only now: an array here would sit in every connection's task for its
        // whole life, since a future is as large as its largest state.
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Serve one upgraded socket (the raw byte stream after the HTTP upgrade) until it closes.
pub async fn serve<T>(io: T, shared: Arc<Shared>, pre: Option<Authed>, slot: Option<UnauthSlot>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let kill = Arc::new(Kill::default());
    let out = Arc::new(Outbound::new(
        io,
        shared.config.outbound_queue,
        kill.clone(),
    ));
    let mut ws = WebSocketStream::from_raw_socket(
        Conn::new(out.clone()),
        Role::Server,
        Some(socket_config()),
    )
    .await;
    let grace = shared.config.close_grace;
    let authed = match pre {
        Some(a) => a,
        None => {
            let result = auth_phase(&mut ws, &shared).await;
            // Authenticated or not, this socket no longer counts as a pending one.
            drop(slot);
            match result {
                Ok(a) => a,
                Err(code) => return finish(ws, code, grace).await,
            }
        }
    };
    let unread = match shared
        .store
        .read(move |c| store::unread(c, authed.user))
        .await
    {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "cannot read unread counts");
            return finish(ws, close::INTERNAL, grace).await;
        }
    };
    let Some(conn) = shared
        .hub
        .register(authed.user, authed.token, unread, out.clone(), kill)
    else {
        return finish(ws, close::GOING_AWAY, grace).await;
    };
    tracing::debug!(conn = conn.id, user = authed.user, "connection registered");
    // A logout that committed after the upgrade checked the token, but before this socket was
    // registered, found no socket to close: check again now that logout would find it.
    let token = authed.token;
    if !matches!(
        shared
            .store
            .read(move |c| store::token_user(c, &token))
            .await,
        Ok(Some(_))
    ) {
        conn.kill.fire(close::UNAUTHORIZED);
    }
    let mut session = Session {
        shared: shared.clone(),
        conn: conn.clone(),
        replay: None,
        replay_task: None,
        strikes: 0.0,
        strikes_at: Instant::now(),
    };
    run(&mut ws, &out, &mut session, &shared, authed.expires_at).await;
    if let Some(task) = session.replay_task.take() {
        task.abort();
    }
    shared.hub.unregister(conn.id);
    let code = conn.kill.code().unwrap_or(close::NORMAL);
    tracing::debug!(conn = conn.id, code, "connection closed");
    finish(ws, code, grace).await
}

/// Write `frame` and wait until the socket has taken it.
async fn send_now<T>(ws: &mut Ws<T>, frame: &WireFrame) -> Result<(), u16>
where
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    ws.get_ref()
        .outbound()
        .push(std::slice::from_ref(frame))
        .map_err(|_| ABORTED)?;
    ws.flush().await.map_err(|_| ABORTED)
}

/// Wait for the `auth` frame of a socket that upgraded without a token.
async fn auth_phase<T>(ws: &mut Ws<T>, shared: &Arc<Shared>) -> Result<Authed, u16>
where
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    let deadline = Instant::now() + shared.config.auth_timeout;
    let mut stopping = shared.stopping.subscribe();
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout_at(deadline, ws.next()) => next,
            _ = stopping.wait_for(|s| *s) => return Err(close::GOING_AWAY),
        };
        let text = match next {
            Err(_) => return Err(close::POLICY),
            Ok(None) => return Err(ABORTED),
            Ok(Some(Err(e))) => return Err(code_for_error(&e)),
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(Message::Binary(_)))) => return Err(close::UNSUPPORTED_DATA),
            Ok(Some(Ok(Message::Close(_)))) => return Err(close::NORMAL),
            Ok(Some(Ok(_))) => continue,
        };
        let Ok(ClientFrame::Auth { id, token }) = serde_json::from_str::<ClientFrame>(&text) else {
            return Err(close::POLICY);
        };
        let hash = hash_token(&token);
        let found = shared
            .store
            .read(move |c| store::token_user(c, &hash))
            .await;
        return match found {
            Ok(Some((user, expires_at))) => {
                send_now(ws, &answer(id, Ok(Reply::Authenticated))).await?;
                Ok(Authed {
                    user,
                    token: hash,
                    expires_at,
                })
            }
            Ok(None) => {
                let err = answer(
                    id,
                    Err((
                        ErrorCode::Unauthorized,
                        "invalid, expired or revoked token".into(),
                    )),
                );
                let _ = send_now(ws, &err).await;
                Err(close::UNAUTHORIZED)
            }
            Err(e) => {
                tracing::error!(error = %e, "token lookup failed");
                Err(close::INTERNAL)
            }
        };
    }
}

/// The connection's one loop: it waits at once for an incoming frame, queued outbound bytes to
/// drain, replay pages, the heartbeat tick and a kill. Deliveries written through by the hub
/// never wake it.
async fn run<T>(
    ws: &mut Ws<T>,
    out: &Outbound<T>,
    session: &mut Session,
    shared: &Shared,
    expires_at: Millis,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let kill = session.conn.kill.clone();
    let interval = shared.config.heartbeat_interval;
    let silence_limit = (interval + shared.config.heartbeat_timeout).as_millis() as i64;
    // Check liveness several times per period so a silent peer is dropped close to the limit.
    let check = (interval.min(shared.config.heartbeat_timeout) / 4).max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(Instant::now() + check, check);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ping = Instant::now();
    let mut last_heard = now_ms();
    loop {
        if kill.code().is_some() {
            return;
        }
        // Not biased: a peer that keeps sending must not starve its own deliveries, nor a busy
        // queue the reading of pongs. A kill is seen at the top of every turn anyway.
        let failed = tokio::select! {
            _ = kill.fired() => return,
            _ = ticker.tick() => {
                let now = now_ms();
                if now >= expires_at {
                    kill.fire(close::UNAUTHORIZED);
                    return;
                }
                if now - last_heard > silence_limit {
                    kill.fire(close::HEARTBEAT_TIMEOUT);
                    return;
                }
                if last_ping.elapsed() < interval {
                    continue;
                }
                last_ping = Instant::now();
                tokio::select! {
                    r = ws.send(Message::Ping(Bytes::new())) => r.is_err(),
                    _ = kill.fired() => true,
                }
            }
            msg = ws.next() => {
                last_heard = now_ms();
                let code = match msg {
                    Some(Ok(Message::Text(text))) => session.handle_text(&text).await,
                    Some(Ok(Message::Binary(_))) => Some(close::UNSUPPORTED_DATA),
                    Some(Ok(Message::Close(_))) => Some(close::NORMAL),
                    Some(Ok(_)) => None,
                    Some(Err(e)) => Some(code_for_error(&e)),
                    None => Some(ABORTED),
                };
                if let Some(code) = code {
                    kill.fire(code);
                    return;
                }
                false
            }
            drained = std::future::poll_fn(|cx| out.poll_drain(cx)) => drained.is_err(),
            // One page at a time, each once the socket has taken what came before it.
            Some(frame) = async {
                match session.replay.as_mut() {
                    Some((_, pages)) => pages.recv().await,
                    None => std::future::pending().await,
                }
            }, if out.is_idle() => {
                if let Some(code) = session.reply(frame) {
                    kill.fire(code);
                    return;
                }
                false
            }
        };
        if failed {
            kill.fire(ABORTED);
            return;
        }
    }
}

/// A token bucket per user, shared by all of the user's connections.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Session {
    shared: Arc<Shared>,
    conn: ConnHandle,
    /// Where replay tasks put their pages. Made by the first `sync`: a channel allocates a
    /// block of slots up front, which sockets that never sync should not carry.
    replay: Option<(mpsc::Sender<WireFrame>, mpsc::Receiver<WireFrame>)>,
    replay_task: Option<tokio::task::JoinHandle<()>>,
    /// Rejected frames not yet forgiven; they drain at the rate limit.
    strikes: f64,
    strikes_at: Instant,
}

/// The request id and error code for a frame that did not parse as a [`ClientFrame`].
fn diagnose(text: &str) -> (Option<u64>, ErrorCode, String) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return (None, ErrorCode::BadRequest, "malformed JSON".into());
    };
    let id = value.get("id").and_then(|v| v.as_u64());
    match value.get("type").and_then(|v| v.as_str()) {
        None => (id, ErrorCode::BadRequest, "missing `type`".into()),
        Some(t) if !KNOWN_TYPES.contains(&t) => (
            id,
            ErrorCode::UnknownType,
            format!("unknown frame type `{t}`"),
        ),
        Some(_) => {
            let detail = serde_json::from_value::<ClientFrame>(value)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            (
                id,
                ErrorCode::BadRequest,
                format!("missing or mistyped field: {detail}"),
            )
        }
    }
}

type Answer = Result<Reply, (ErrorCode, String)>;

impl Session {
    fn user(&self) -> UserId {
        self.conn.user
    }

    /// Send a frame to this connection; a full queue means a slow consumer.
    fn reply(&self, frame: WireFrame) -> Option<u16> {
        match self.conn.out.push(std::slice::from_ref(&frame)) {
            Ok(()) => None,
            Err(PushError::Full) => Some(close::SLOW_CONSUMER),
            Err(PushError::Closed) => Some(ABORTED),
        }
    }

    /// Whether the user may send another frame now. Keeps count of rejections for flood control.
    fn admit(&mut self) -> Result<(), u16> {
        let cfg = &self.shared.config;
        let rate = cfg.rate_limit_per_sec.max(1) as f64;
        let allowed = {
            let mut buckets = self
                .shared
                .buckets
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let b = buckets.entry(self.user()).or_insert_with(|| Bucket {
                tokens: cfg.rate_burst as f64,
                at: Instant::now(),
            });
            let now = Instant::now();
            b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate)
                .min(cfg.rate_burst.max(1) as f64);
            b.at = now;
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                true
            } else {
                false
            }
        };
        let now = Instant::now();
        self.strikes =
            (self.strikes - now.duration_since(self.strikes_at).as_secs_f64() * rate).max(0.0);
        self.strikes_at = now;
        if allowed {
            return Ok(());
        }
        self.strikes += 1.0;
        if self.strikes > cfg.flood_close_after as f64 {
            Err(close::RATE_LIMITED)
        } else {
            Err(0)
        }
    }

    /// Handle one text frame. Returns a close code when the connection must end.
    async fn handle_text(&mut self, text: &str) -> Option<u16> {
        match self.admit() {
            Ok(()) => {}
            Err(0) => {
                let (id, _, _) = diagnose_id(text);
                let frame = encode(&ServerFrame::Error {
                    id,
                    code: ErrorCode::RateLimited,
                    message: "rate limit exceeded; slow down".into(),
                });
                return self.reply(frame);
            }
            Err(code) => return Some(code),
        }
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(_) => {
                let (id, code, message) = diagnose(text);
                return self.reply(encode(&ServerFrame::Error { id, code, message }));
            }
        };
        let id = frame.id();
        let result = self.dispatch(frame).await;
        match result {
            Some(answer_) => self.reply(answer(id, answer_)),
            None => None,
        }
    }

    /// Serve a request. None means the answer comes later (from the writer thread or replay).
    async fn dispatch(&mut self, frame: ClientFrame) -> Option<Answer> {
        let user = self.user();
        let shared = self.shared.clone();
        match frame {
            ClientFrame::Auth { .. } => {
                Some(Err((ErrorCode::BadRequest, "already authenticated".into())))
            }
            ClientFrame::Sync { id, since } => {
                if let Some(old) = self.replay_task.take() {
                    old.abort();
                }
                let out = self
                    .replay
                    .get_or_insert_with(|| mpsc::channel(2))
                    .0
                    .clone();
                self.replay_task = Some(tokio::spawn(replay(shared, user, id, since, out)));
                None
            }
            ClientFrame::Send {
                id,
                conv,
                to,
                client_msg_id,
                text,
            } => {
                if text.chars().count() > limits::MAX_TEXT_CHARS {
                    return Some(Err((
                        ErrorCode::TooLong,
                        format!("text is longer than {} characters", limits::MAX_TEXT_CHARS),
                    )));
                }
                if !is_valid_text(&text) {
                    return Some(Err((ErrorCode::BadRequest, "text is empty".into())));
                }
                if conv.is_some() == to.is_some() {
                    return Some(Err((
                        ErrorCode::BadRequest,
                        "send needs exactly one of `conv` and `to`".into(),
                    )));
                }
                if to.as_deref().is_some_and(|t| !is_valid_name(t)) {
                    return Some(Err((ErrorCode::NotFound, "no such user".into())));
                }
                let op = WriteOp::Send {
                    user,
                    conv,
                    to,
                    client_msg_id,
                    text,
                };
                self.submit(op, id)
            }
            ClientFrame::History {
                conv,
                before,
                after,
                limit,
                ..
            } => {
                if let Err(e) = shared.hub.check_member(user, conv) {
                    return Some(Err(e));
                }
                if before.is_some() && after.is_some() {
                    return Some(Err((
                        ErrorCode::BadRequest,
                        "give at most one of `before` and `after`".into(),
                    )));
                }
                if limit == 0 || limit > limits::MAX_PAGE {
                    return Some(Err((
                        ErrorCode::BadRequest,
                        format!("limit must be 1..={}", limits::MAX_PAGE),
                    )));
                }
                let page = shared
                    .store
                    .read(move |c| store::history(c, conv, before, after, limit))
                    .await;
                Some(match page {
                    Ok((messages, has_more)) => Ok(Reply::History {
                        conv,
                        messages,
                        has_more,
                    }),
                    Err(e) => Err(e.to_client()),
                })
            }
            ClientFrame::Rooms { .. } => Some(Ok(Reply::Rooms {
                rooms: shared.hub.rooms(user),
            })),
            ClientFrame::CreateRoom { id, name } => {
                if !is_valid_name(&name) {
                    return Some(Err((
                        ErrorCode::InvalidName,
                        "room names are 1-32 letters, digits or _-.".into(),
                    )));
                }
                self.submit(WriteOp::CreateRoom { user, name }, id)
            }
            ClientFrame::Join { id, room } => {
                if !is_valid_name(&room) {
                    return Some(Err((ErrorCode::NotFound, "no such room".into())));
                }
                self.submit(WriteOp::Join { user, room }, id)
            }
            ClientFrame::Leave { id, conv } => self.submit(WriteOp::Leave { user, conv }, id),
            ClientFrame::Members { conv, .. } => Some(
                shared
                    .hub
                    .members(user, conv)
                    .map(|members| Reply::Members { conv, members }),
            ),
            ClientFrame::Users { .. } => Some(Ok(Reply::Users {
                users: shared.hub.users(),
            })),
            ClientFrame::Read { id, conv, seq } => {
                self.submit(WriteOp::Read { user, conv, seq }, id)
            }
            ClientFrame::Typing { conv, .. } => {
                Some(shared.hub.typing(user, conv).map(|()| Reply::Done))
            }
        }
    }

    fn submit(&self, op: WriteOp, req: u64) -> Option<Answer> {
        match self.shared.store.submit(
            op,
            Origin::Socket {
                conn: self.conn.id,
                req,
            },
        ) {
            Ok(()) => None,
            Err(_) => Some(Err((
                ErrorCode::Internal,
                "the server is shutting down".into(),
            ))),
        }
    }
}

/// Just the request id of a frame, for answering one that is rate limited.
fn diagnose_id(text: &str) -> (Option<u64>, (), ()) {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<u64>,
    }
    (
        serde_json::from_str::<IdOnly>(text).ok().and_then(|p| p.id),
        (),
        (),
    )
}

/// Replay what the client missed, page by page, then answer `synced`. Runs as its own task so
/// the connection keeps reading (pongs, other requests) during a long replay.
async fn replay(
    shared: Arc<Shared>,
    user: UserId,
    id: u64,
    since: Vec<ConvSeq>,
    out: mpsc::Sender<WireFrame>,
) {
    let given: HashMap<_, _> = since.iter().map(|c| (c.conv, c.seq.max(0))).collect();
    for (conv, last_seq) in shared.hub.member_convs(user) {
        let mut from = given.get(&conv).copied().unwrap_or((last_seq - 50).max(0));
        loop {
            let page = shared
                .store
                .read(move |c| store::history(c, conv, None, Some(from), limits::MAX_PAGE))
                .await;
            let (messages, has_more) = match page {
                Ok(p) => p,
                Err(e) => {
                    let _ = out.send(answer(id, Err(e.to_client()))).await;
                    return;
                }
            };
            let Some(last) = messages.last() else { break };
            from = last.seq;
            if out
                .send(encode(&ServerFrame::Batch { conv, messages }))
                .await
                .is_err()
            {
                return;
            }
            if !has_more {
                break;
            }
        }
    }
    let unread = shared.store.read(move |c| store::unread(c, user)).await;
    let frame = match unread {
        Ok(unread) => answer(id, Ok(Reply::Synced { unread })),
        Err(e) => answer(id, Err(e.to_client())),
    };
    let _ = out.send(frame).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ServerFrame;
    use crate::server::store::{WriteOp, WriteOutcome};
    use crate::server::{auth, ServerConfig};

    #[test]
    fn diagnose_names_the_problem_and_keeps_the_id() {
        assert_eq!(diagnose("{nope").1, ErrorCode::BadRequest);
        assert_eq!(diagnose("{nope").0, None);
        assert_eq!(diagnose(r#"{"type":"zap","id":4}"#).0, Some(4));
        assert_eq!(
            diagnose(r#"{"type":"zap","id":4}"#).1,
            ErrorCode::UnknownType
        );
        assert_eq!(
            diagnose(r#"{"type":"send","id":5}"#).1,
            ErrorCode::BadRequest
        );
        assert_eq!(diagnose(r#"{"id":6}"#).1, ErrorCode::BadRequest);
        assert_eq!(diagnose(r#"{"type":"rooms","id":"x"}"#).0, None);
    }

    #[test]
    fn read_errors_map_to_close_codes() {
        use tokio_tungstenite::tungstenite::error::CapacityError;
        assert_eq!(
            code_for_error(&WsError::Utf8("bad".into())),
            close::INVALID_PAYLOAD
        );
        let big = WsError::Capacity(CapacityError::MessageTooLong {
            size: 2,
            max_size: 1,
        });
        assert_eq!(code_for_error(&big), close::TOO_BIG);
        assert_eq!(code_for_error(&WsError::ConnectionClosed), ABORTED);
        let reset = WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake);
        assert_eq!(code_for_error(&reset), ABORTED);
        let masked = WsError::Protocol(ProtocolError::UnmaskedFrameFromClient);
        assert_eq!(code_for_error(&masked), PROTOCOL_ERROR);
    }

    async fn next_frame(
        ws: &mut WebSocketStream<tokio::io::DuplexStream>,
    ) -> Option<Result<ServerFrame, u16>> {
        loop {
            match ws.next().await? {
                Ok(Message::Text(t)) => return Some(Ok(serde_json::from_str(&t).unwrap())),
                Ok(Message::Close(f)) => return Some(Err(f.map_or(0, |f| u16::from(f.code)))),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The socket handler runs over any byte stream: here an in-memory duplex pipe instead of
    /// TCP, driven through the `auth` frame path and a binary frame.
    #[tokio::test]
    async fn serve_over_an_in_memory_pipe_auth_frame_then_binary_closes_1003() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path());
        config.close_grace = Duration::from_millis(200);
        let shared = crate::server::Shared::start(config).unwrap();
        let (token, token_hash) = auth::new_token();
        let outcome = shared
            .store
            .write(WriteOp::Register {
                username: "pipe".into(),
                display_name: "Pipe".into(),
                avatar: "owl".into(),
                password_hash: "unused".into(),
                token_hash,
                expires_at: now_ms() + 60_000,
                device_hash: auth::new_token().1,
            })
            .await
            .unwrap();
        assert!(matches!(outcome, WriteOutcome::Registered(_)));

        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let task = tokio::spawn(serve(server_io, shared.clone(), None, None));

        let auth = ClientFrame::Auth { id: 1, token };
        client
            .send(Message::text(serde_json::to_string(&auth).unwrap()))
            .await
            .unwrap();
        assert!(matches!(
            next_frame(&mut client).await,
            Some(Ok(ServerFrame::Ok {
                id: 1,
                result: Reply::Authenticated
            }))
        ));
        let Some(Ok(ServerFrame::Hello { user, .. })) = next_frame(&mut client).await else {
            panic!("hello expected")
        };
        assert_eq!(user.display_name, "Pipe");
        client.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
        assert_eq!(
            next_frame(&mut client).await.unwrap().unwrap_err(),
            close::UNSUPPORTED_DATA
        );
        drop(client);
        task.await.unwrap();
        shared.store.shutdown();
    }
}
