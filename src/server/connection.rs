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
//! the loop sends that close frame, waits for the peer's close reply and then closes TCP at once
//! (RFC 6455 7.1.1), see [`finish`].
//!
//! Caps: sockets that have not authenticated count per address; authenticated ones per user and
//! per address ([`Counts`], [`SocketSlots`]).
//!
//! The socket type is generic over the underlying I/O, so tests drive it over an in-memory
//! duplex stream; the server uses it over TCP or TLS.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::protocol::{
    close, limits, ClientFrame, ErrorCode, FrameError, Millis, Reply, ServerFrame,
};

use super::auth::hash_token;
use super::hub::{answer, encode, Answer, ConnHandle, Kill};
use super::latency_trace::{self, Mark};
use super::outbound::{Conn, Outbound, Outlet, PushError, WireFrame};
use super::service::accounts::{self, Authed};
use super::service::presence::{self, ConnectError};
use super::service::{attention, messages, reads, rooms, Caller, ServiceError};
use super::store::UserId;
use super::Shared;

/// Not a real close code: the peer vanished, so no close frame is sent.
const ABORTED: u16 = 1006;

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
/// Live sockets per key (an address or a user), for the caps on them.
pub struct Counts<K>(Mutex<HashMap<K, usize>>);

impl<K: Eq + Hash + Copy> Counts<K> {
    pub fn new() -> Arc<Counts<K>> {
        Arc::new(Counts(Mutex::new(HashMap::new())))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<K, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for `key`, or None when it already holds `max` (0 means no cap).
    pub fn take(self: &Arc<Self>, key: K, max: usize) -> Option<Slot<K>> {
        let mut map = self.map();
        let n = map.entry(key).or_insert(0);
        if max != 0 && *n >= max {
            if *n == 0 {
                map.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: self.clone(),
            key,
        })
    }
}

/// One socket's place in a [`Counts`], given back when dropped.
pub struct Slot<K: Eq + Hash + Copy> {
    counts: Arc<Counts<K>>,
    key: K,
}

impl<K: Eq + Hash + Copy> Slot<K> {
    pub fn key(&self) -> K {
        self.key
    }
}

impl<K: Eq + Hash + Copy> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut map = self.counts.map();
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// A socket that upgraded without a token: its place in the per-address count of those.
pub type UnauthSlot = Slot<IpAddr>;

/// An authenticated socket's places in the per-user and per-address counts.
pub struct SocketSlots {
    _user: Slot<UserId>,
    _ip: Option<Slot<IpAddr>>,
}

impl SocketSlots {
    /// Places for one more socket of `user` from `ip` (None when unknown, as over a test
    /// pipe), or what cap it would exceed.
    pub fn take(shared: &Shared, user: UserId, ip: Option<IpAddr>) -> Result<SocketSlots, String> {
        let cfg = &shared.config;
        let user_slot = shared
            .sockets_per_user
            .take(user, cfg.max_sockets_per_user)
            .ok_or_else(|| {
                format!(
                    "too many open sockets for this user (at most {})",
                    cfg.max_sockets_per_user
                )
            })?;
        let ip_slot = match ip {
            Some(ip) => Some(
                shared
                    .sockets_per_ip
                    .take(ip, cfg.max_sockets_per_ip)
                    .ok_or_else(|| {
                        format!(
                            "too many open sockets from this address (at most {})",
                            cfg.max_sockets_per_ip
                        )
                    })?,
            ),
            None => None,
        };
        Ok(SocketSlots {
            _user: user_slot,
            _ip: ip_slot,
        })
    }
}

/// The close code for a read error.
fn code_for_error(e: &WsError) -> u16 {
    match e {
        WsError::Utf8(_) => close::INVALID_PAYLOAD,
        WsError::Capacity(_) => close::TOO_BIG,
        // The peer dropped the TCP connection: nobody is left to read a close frame.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => ABORTED,
        WsError::Protocol(_) => close::PROTOCOL_ERROR,
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
        close::TOO_MANY_SOCKETS => "too many open sockets for this user or address",
        close::PROTOCOL_ERROR => "protocol error",
        _ => "",
    }
}

/// Send a close frame (unless the peer vanished), then end the TCP connection as soon as the
/// close handshake is complete: RFC 6455 7.1.1 has the server close TCP first, and a peer
/// waits for that (a client's `close()`, our own shutdown). Frames still queued are dropped:
/// the client resumes from its last seq when it reconnects.
///
/// After a read error in the middle of a frame (too large, protocol error) the stream is not
/// at a frame boundary, so no close reply can be read: raw bytes are read and discarded for the
/// grace period instead, so a peer still sending the rest of its frame gets to read the close
/// frame rather than a TCP reset.
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
    // Also sends tungstenite's reply when the peer closed first (then `frame` is not used).
    if tokio::time::timeout(grace, ws.close(Some(frame)))
        .await
        .is_err()
    {
        return;
    }
    let mid_frame = matches!(code, close::TOO_BIG | close::PROTOCOL_ERROR);
    let _ = tokio::time::timeout(grace, async {
        if !mid_frame {
            // Ends at the peer's close reply, or at once when the peer closed first.
            while let Some(Ok(_)) = ws.next().await {}
            return;
        }
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
///
/// `pre` is the identity and socket slots of a socket that upgraded with a token; otherwise the
/// socket must send `auth` and `slot` holds its place among the address's unauthenticated
/// sockets (its address is then the one the caps on authenticated sockets count).
pub async fn serve<T>(
    io: T,
    shared: Arc<Shared>,
    pre: Option<(Authed, SocketSlots)>,
    slot: Option<UnauthSlot>,
) where
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
    // Held until the socket is gone: its places in the per-user and per-address caps.
    let (authed, _slots) = match pre {
        Some(a) => a,
        None => {
            let ip = slot.as_ref().map(Slot::key);
            let result = auth_phase(&mut ws, &shared, ip).await;
            // Authenticated or not, this socket no longer counts as a pending one.
            drop(slot);
            match result {
                Ok(a) => a,
                Err(code) => return finish(ws, code, grace).await,
            }
        }
    };
    let conn = match presence::connect(&shared, &authed, out.clone(), kill).await {
        Ok(conn) => conn,
        Err(ConnectError::ShuttingDown) => return finish(ws, close::GOING_AWAY, grace).await,
        Err(ConnectError::Service(e)) => {
            tracing::error!(error = %e, "cannot register a socket");
            return finish(ws, close::INTERNAL, grace).await;
        }
    };
    tracing::debug!(conn = %conn.id, user = authed.user, "connection registered");
    let mut session = Session {
        shared: shared.clone(),
        conn: conn.clone(),
        replay: None,
        replay_task: None,
        strikes: 0.0,
        strikes_at: Instant::now(),
    };
    run(&mut ws, &out, &mut session, &shared, authed.expires_at).await;
    if let Some(running) = session.replay_task.take() {
        running.task.abort();
    }
    presence::disconnect(&shared, &conn);
    let code = conn.kill.code().unwrap_or(close::NORMAL);
    tracing::debug!(conn = %conn.id, code, "connection closed");
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
async fn auth_phase<T>(
    ws: &mut Ws<T>,
    shared: &Arc<Shared>,
    ip: Option<IpAddr>,
) -> Result<(Authed, SocketSlots), u16>
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
        return match accounts::check_token(shared, hash_token(&token)).await {
            Ok(authed) => {
                let slots = match SocketSlots::take(shared, authed.user, ip) {
                    Ok(slots) => slots,
                    Err(message) => {
                        let err = answer(id, Err((ErrorCode::RateLimited, message)));
                        let _ = send_now(ws, &err).await;
                        return Err(close::TOO_MANY_SOCKETS);
                    }
                };
                send_now(ws, &answer(id, Ok(Reply::Authenticated))).await?;
                Ok((authed, slots))
            }
            Err(e @ ServiceError::Refused { .. }) => {
                let _ = send_now(ws, &answer(id, Err(e.to_client()))).await;
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
    let silence_limit = interval + shared.config.heartbeat_timeout;
    // One timer, set to the next moment something is due (a ping, or the silence limit), rather
    // than a ticker: an idle connection wakes about once per heartbeat, not several times. The
    // first ping comes after a random part of the interval, so sockets that connected together
    // (every client after a server restart) do not ping together for ever after.
    let mut next_ping = Instant::now() + first_ping_delay(interval);
    let mut last_heard = Instant::now();
    let timer = tokio::time::sleep_until(next_ping);
    tokio::pin!(timer);
    loop {
        if kill.code().is_some() {
            return;
        }
        // Not biased: a peer that keeps sending must not starve its own deliveries, nor a busy
        // queue the reading of pongs. A kill is seen at the top of every turn anyway.
        let failed = tokio::select! {
            _ = kill.fired() => return,
            () = &mut timer => {
                // The token's expiry is on the server's clock (which a test may move), so it is
                // checked whenever the timer fires: at least once per heartbeat.
                if shared.clock.now_ms() >= expires_at {
                    kill.fire(close::UNAUTHORIZED);
                    return;
                }
                let now = Instant::now();
                let silent_until = last_heard + silence_limit;
                if now >= silent_until {
                    kill.fire(close::HEARTBEAT_TIMEOUT);
                    return;
                }
                let mut failed = false;
                if now >= next_ping {
                    next_ping = now + interval;
                    failed = tokio::select! {
                        r = ws.send(Message::Ping(Bytes::new())) => r.is_err(),
                        _ = kill.fired() => true,
                    };
                }
                timer.as_mut().reset(next_ping.min(silent_until));
                failed
            }
            msg = ws.next() => {
                last_heard = Instant::now();
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

/// When a new socket gets its first ping: somewhere in the second half of the interval, at
/// random, so the pings of sockets that connected at once spread over half a heartbeat.
fn first_ping_delay(interval: Duration) -> Duration {
    interval.mul_f64(rand::random_range(0.5..=1.0))
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
    replay_task: Option<RunningSync>,
    /// Rejected frames not yet forgiven; they drain at the rate limit.
    strikes: f64,
    strikes_at: Instant,
}

/// The replay task of the socket's latest `sync`, and the switch that cancels it (dropping the
/// switch cancels it too).
struct RunningSync {
    task: tokio::task::JoinHandle<()>,
    cancel: oneshot::Sender<()>,
}

/// Whether a frame may be handled now ([`Session::admit`]).
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    Admitted,
    /// Over the rate: answer `rate_limited`, keep the socket.
    Limited,
    /// Flooding: close with [`close::RATE_LIMITED`].
    Flood,
}

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
    fn admit(&mut self) -> Admission {
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
            return Admission::Admitted;
        }
        self.strikes += 1.0;
        if self.strikes > cfg.flood_close_after as f64 {
            Admission::Flood
        } else {
            Admission::Limited
        }
    }

    /// Handle one text frame. Returns a close code when the connection must end.
    async fn handle_text(&mut self, text: &str) -> Option<u16> {
        let read_at = latency_trace::now();
        match self.admit() {
            Admission::Admitted => {}
            Admission::Limited => {
                let id = request_id(text);
                let frame = encode(&ServerFrame::Error {
                    id,
                    code: ErrorCode::RateLimited,
                    message: "rate limit exceeded; slow down".into(),
                });
                return self.reply(frame);
            }
            Admission::Flood => return Some(close::RATE_LIMITED),
        }
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(FrameError { id, code, message }) => {
                return self.reply(encode(&ServerFrame::Error { id, code, message }));
            }
        };
        let id = frame.id();
        if let Some(at) = read_at {
            latency_trace::record_at(at, Mark::Received, self.conn.id.local, id);
        }
        let result = self.dispatch(frame).await;
        match result {
            Some(answer_) => self.reply(answer(id, answer_)),
            None => None,
        }
    }

    /// Serve a request through its service. None means the answer comes later (from the
    /// fan-out, once the write it asked for was committed and applied, or from the replay).
    async fn dispatch(&mut self, frame: ClientFrame) -> Option<Answer> {
        let caller = Caller {
            user: self.user(),
            conn: self.conn.id,
            req: frame.id(),
        };
        let shared = self.shared.clone();
        let shared = &*shared;
        let later = |r: Result<(), ServiceError>| r.err().map(|e| Err(e.to_client()));
        let now = |r: Result<Reply, ServiceError>| Some(r.map_err(|e| e.to_client()));
        let frame = match frame.into_action() {
            Ok(request) => return later(messages::act(shared, &caller, request)),
            Err(frame) => frame,
        };
        match frame {
            ClientFrame::Auth { .. } => {
                Some(Err((ErrorCode::BadRequest, "already authenticated".into())))
            }
            ClientFrame::Sync { id, since } => {
                self.start_sync(id, since);
                None
            }
            ClientFrame::Send {
                target,
                client_msg_id,
                text,
                reply_to,
                attachments,
                ..
            } => later(messages::send(
                shared,
                &caller,
                target,
                client_msg_id,
                text,
                reply_to,
                attachments,
            )),
            // Served before this match (`into_action`).
            ClientFrame::Edit { .. } | ClientFrame::Delete { .. } | ClientFrame::React { .. } => {
                Some(Err((
                    ErrorCode::Internal,
                    "an action was not served".into(),
                )))
            }
            ClientFrame::History {
                conv,
                before,
                after,
                limit,
                ..
            } => now(
                messages::history(shared, caller.user, conv, before, after, limit)
                    .await
                    .map(|(messages, has_more)| Reply::History {
                        conv,
                        messages,
                        has_more,
                    }),
            ),
            ClientFrame::Rooms { .. } => now(Ok(Reply::Rooms {
                rooms: rooms::list(shared, &caller),
            })),
            ClientFrame::CreateRoom { name, private, .. } => {
                later(rooms::create(shared, &caller, &name, private))
            }
            ClientFrame::RemoveMember {
                conv,
                username,
                ban,
                ..
            } => later(rooms::remove_member(shared, &caller, conv, username, ban)),
            ClientFrame::AddMember { conv, username, .. } => {
                later(rooms::add_member(shared, &caller, conv, username))
            }
            ClientFrame::Join { room, .. } => later(rooms::join(shared, &caller, room)),
            ClientFrame::Leave { conv, .. } => later(rooms::leave(shared, &caller, conv)),
            ClientFrame::Members { conv, .. } => now(rooms::members(shared, &caller, conv)
                .map(|members| Reply::Members { conv, members })),
            ClientFrame::Users { .. } => now(Ok(Reply::Users {
                users: rooms::users(shared),
            })),
            ClientFrame::WatchPresence { users, .. } => {
                later(presence::watch(shared, &caller, &users))
            }
            ClientFrame::Read { conv, seq, .. } => {
                later(reads::mark_read(shared, &caller, conv, seq))
            }
            ClientFrame::Typing { conv, .. } => {
                now(presence::typing(shared, &caller, conv).map(|()| Reply::Done))
            }
            ClientFrame::SetLevel { conv, level, .. } => {
                later(attention::set_level(shared, &caller, conv, level))
            }
            ClientFrame::SetDnd { dnd, .. } => later(attention::set_dnd(shared, &caller, dnd)),
        }
    }

    /// Start replaying for a `sync`. A later sync replaces a running one: its task first
    /// cancels the old one and waits until the old answer (`synced` or `cancelled`) is queued,
    /// so every sync gets exactly one answer and the old one's frames all precede the new one's.
    fn start_sync(&mut self, id: u64, since: Vec<crate::protocol::ConvSeq>) {
        let out = self
            .replay
            .get_or_insert_with(|| mpsc::channel(2))
            .0
            .clone();
        let previous = self.replay_task.take();
        let (cancel, cancelled) = oneshot::channel();
        let (shared, user) = (self.shared.clone(), self.user());
        let task = tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.cancel.send(());
                let _ = previous.task.await;
            }
            messages::replay(&shared, user, id, since, out, cancelled).await
        });
        self.replay_task = Some(RunningSync { task, cancel });
    }
}

/// Just the request id of a frame, for answering one that is rate limited.
fn request_id(text: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<u64>,
    }
    serde_json::from_str::<IdOnly>(text).ok().and_then(|p| p.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ServerFrame;
    use crate::server::store::{WriteOp, WriteOutcome};
    use crate::server::{auth, ServerConfig};

    #[test]
    fn counts_cap_per_key_give_places_back_and_zero_means_no_cap() {
        let counts = Counts::<u8>::new();
        let a1 = counts.take(1, 2).expect("first");
        let _a2 = counts.take(1, 2).expect("second");
        assert!(counts.take(1, 2).is_none(), "a third is over the cap of 2");
        let _b1 = counts.take(2, 2).expect("another key has its own count");
        drop(a1);
        assert!(
            counts.take(1, 2).is_some(),
            "a dropped slot gives its place back"
        );
        let many: Vec<_> = (0..1000).map(|_| counts.take(3, 0).unwrap()).collect();
        assert_eq!(many.len(), 1000);
        drop(many);
        assert!(
            !counts.map().contains_key(&3),
            "no entry is left for a key with no sockets"
        );
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
        assert_eq!(code_for_error(&masked), close::PROTOCOL_ERROR);
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
        let now = shared.clock.now_ms();
        let op = WriteOp::Register {
            mode: crate::protocol::Registration::Open,
            invite: None,
            username: "pipe".into(),
            display_name: "Pipe".into(),
            avatar: "owl".into(),
            password_hash: "unused".into(),
            token_hash,
            now,
            expires_at: now + 60_000,
            device_hash: auth::new_token().1,
            label: None,
        };
        let outcome = crate::server::service::write_for_call(&shared, op)
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
