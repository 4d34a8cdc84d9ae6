//! The "floor" reference server (`natter-bench floor-server`): the cheapest correct broadcast
//! chat server we can write, run in scenario 1 next to Natter and the peers so a reader sees the
//! lowest CPU per delivery any server can have on the machine. It is a yardstick, not a peer:
//! it stores nothing, has no users, rooms or acks, and Natter is not expected to beat it.
//! With `--journal FILE` (`natter-bench --durable-floor`) it also appends each message's frame
//! to a file and syncs it (fdatasync) before sending it, as Natter commits before it delivers:
//! the reference for what the fan-out itself costs once both pay for durability.
//!
//! It speaks the Node `ws` peer's wire (bench/peers/ws-server.js), so the generator drives it
//! with `Kind::Ws`'s frames: a text frame `{"type":"send","text":...}` is stamped with the
//! sender and the time, serialised once into one unmasked WebSocket frame, and those bytes go to
//! every open socket (the sender included) with a direct non-blocking `try_write`. Only when the
//! kernel's send buffer is full does the rest wait in that socket's queue for a writer task
//! (spawned then, gone when the queue is empty). One thread, no locks: every task runs on one
//! `LocalSet`, so the registry is an `Rc<RefCell<..>>`.
//!
//! The WebSocket side is written by hand (the HTTP upgrade with `httparse`, frames per RFC 6455)
//! rather than through tungstenite so that the socket itself stays free for those direct writes
//! and no byte the client sent right after its handshake is lost. Only `send` is understood;
//! joins, history and direct messages (the realistic scenario) are ignored.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::io::ErrorKind;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Largest message a client may send (fragments included); chat texts are 100 bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Largest HTTP upgrade request.
const MAX_REQUEST: usize = 8 * 1024;
/// Bytes a socket may have queued (its kernel buffer full) before it is dropped as too slow:
/// the floor never buffers without bound.
const MAX_PENDING: usize = 16 * 1024 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Why a connection is refused or closed; [`FloorError::close_code`] is what the client is told.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    #[error("bad upgrade request: {0}")]
    BadRequest(&'static str),
    #[error("client frame not masked")]
    Unmasked,
    #[error("reserved bits set or unknown opcode {0:#x}")]
    BadFrame(u8),
    #[error("control frame fragmented or over 125 bytes")]
    BadControl,
    #[error("continuation without a message, or a new message inside one")]
    BadFragment,
    #[error("message over {MAX_MESSAGE} bytes")]
    TooBig,
    #[error("text frame is not UTF-8")]
    NotUtf8,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl FloorError {
    /// The RFC 6455 close code for a protocol violation (none for I/O or handshake failures).
    pub fn close_code(&self) -> Option<u16> {
        match self {
            FloorError::Unmasked
            | FloorError::BadFrame(_)
            | FloorError::BadControl
            | FloorError::BadFragment => Some(1002),
            FloorError::TooBig => Some(1009),
            FloorError::NotUtf8 => Some(1007),
            FloorError::BadRequest(_) | FloorError::Io(_) => None,
        }
    }
}

/// One server-to-client frame, final and unmasked: the bytes every recipient gets.
pub fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = Vec::with_capacity(len + 10);
    f.push(0x80 | opcode);
    if len < 126 {
        f.push(len as u8);
    } else if len <= u16::MAX as usize {
        f.push(126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

/// A client frame, unmasked.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Parse one client frame from the start of `buf`: `Ok(None)` until it is complete, else the
/// frame and the bytes it took.
pub fn parse_client_frame(buf: &[u8]) -> Result<Option<(ClientFrame, usize)>, FloorError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
    if b0 & 0x70 != 0 || !matches!(opcode, 0x0..=0x2 | 0x8..=0xA) {
        return Err(FloorError::BadFrame(b0));
    }
    if b1 & 0x80 == 0 {
        return Err(FloorError::Unmasked);
    }
    let (len, mut at) = match b1 & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().expect("8")), 10),
        126 | 127 => return Ok(None),
        n => (n as u64, 2),
    };
    if opcode >= OP_CLOSE && (!fin || len > 125) {
        return Err(FloorError::BadControl);
    }
    if len > MAX_MESSAGE as u64 {
        return Err(FloorError::TooBig);
    }
    let len = len as usize;
    if buf.len() < at + 4 + len {
        return Ok(None);
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    at += 4;
    let payload = buf[at..at + len]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    Ok(Some((
        ClientFrame {
            fin,
            opcode,
            payload,
        },
        at + len,
    )))
}

/// Answer a WebSocket upgrade request. Returns the bytes read past the request (a client may
/// send its first frame right behind it).
async fn handshake(stream: &mut TcpStream) -> Result<Vec<u8>, FloorError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(FloorError::BadRequest("closed before the request ended"));
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let parsed = req.parse(&buf);
        let end = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => continue,
            Ok(httparse::Status::Partial) => return refuse(stream, "request too large").await,
            Err(_) => return refuse(stream, "malformed HTTP").await,
        };
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        let has = |name: &str, token: &str| {
            header(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        if req.method != Some("GET") {
            return refuse(stream, "not a GET").await;
        }
        if !has("upgrade", "websocket") || !has("connection", "upgrade") {
            return refuse(stream, "not a WebSocket upgrade").await;
        }
        if header("sec-websocket-version") != Some(b"13".as_slice()) {
            return refuse(stream, "Sec-WebSocket-Version is not 13").await;
        }
        let Some(key) = header("sec-websocket-key") else {
            return refuse(stream, "no Sec-WebSocket-Key").await;
        };
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key)
        );
        stream.write_all(response.as_bytes()).await?;
        return Ok(buf.split_off(end));
    }
}

async fn refuse(stream: &mut TcpStream, why: &'static str) -> Result<Vec<u8>, FloorError> {
    let _ = stream
        .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        .await;
    Err(FloorError::BadRequest(why))
}

/// One open socket's sending side.
struct Conn {
    wr: OwnedWriteHalf,
    /// What the kernel would not take yet, in order; written by a flush task.
    pending: RefCell<Vec<u8>>,
    flushing: Cell<bool>,
    /// Write failed or the queue overflowed: send nothing more.
    dead: Cell<bool>,
}

impl Conn {
    /// Send `bytes` now if the kernel takes them, else queue the rest behind what is queued.
    fn send(self: &Rc<Self>, bytes: &[u8]) {
        if self.dead.get() {
            return;
        }
        let mut pending = self.pending.borrow_mut();
        let rest = if pending.is_empty() {
            match self.wr.try_write(bytes) {
                Ok(n) if n == bytes.len() => return,
                Ok(n) => &bytes[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => bytes,
                Err(_) => {
                    self.dead.set(true);
                    return;
                }
            }
        } else {
            bytes
        };
        if pending.len() + rest.len() > MAX_PENDING {
            tracing::warn!(
                "floor: dropping a socket with {} bytes queued",
                pending.len()
            );
            self.dead.set(true);
            pending.clear();
            return;
        }
        pending.extend_from_slice(rest);
        if !self.flushing.replace(true) {
            tokio::task::spawn_local(flush(self.clone()));
        }
    }
}

/// Write a socket's queue out as the kernel takes it.
async fn flush(conn: Rc<Conn>) {
    while !conn.dead.get() {
        if conn.wr.writable().await.is_err() {
            conn.dead.set(true);
            break;
        }
        let mut pending = conn.pending.borrow_mut();
        match conn.wr.try_write(&pending) {
            Ok(n) => {
                pending.drain(..n);
                if pending.is_empty() {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => conn.dead.set(true),
        }
    }
    conn.pending.borrow_mut().clear();
    conn.flushing.set(false);
}

/// Every open socket, in connection order.
#[derive(Default)]
struct Registry {
    conns: RefCell<Vec<Rc<Conn>>>,
    /// The durable floor's journal: each message is appended and synced before it is sent.
    journal: Option<RefCell<std::fs::File>>,
}

impl Registry {
    /// Sends `frame` to every socket, after the journal (when there is one) holds it on disk.
    /// The write and the sync block this one thread, as a commit would.
    fn broadcast(&self, frame: &[u8]) -> std::io::Result<()> {
        if let Some(journal) = &self.journal {
            let mut file = journal.borrow_mut();
            std::io::Write::write_all(&mut *file, frame)?;
            file.sync_data()?;
        }
        for c in self.conns.borrow().iter() {
            c.send(frame);
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    conv: serde_json::Value,
    #[serde(default, borrow)]
    to: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

/// The same shape as ws-server.js's `{type:'message', message:{conv,to,sender,text,time}}`.
#[derive(Serialize)]
struct Outgoing<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: Stamped<'a>,
}

#[derive(Serialize)]
struct Stamped<'a> {
    conv: &'a serde_json::Value,
    to: Option<&'a str>,
    sender: &'a str,
    text: &'a str,
    time: u64,
}

/// The frame every socket gets for a client's text, or `None` when it is not a `send`
/// (ws-server.js ignores such frames too).
pub fn stamp(text: &str, sender: &str, time_ms: u64) -> Option<Vec<u8>> {
    let frame: Incoming = serde_json::from_str(text).ok()?;
    if frame.kind != "send" {
        return None;
    }
    let out = Outgoing {
        kind: "message",
        message: Stamped {
            conv: &frame.conv,
            to: frame.to.as_deref(),
            sender,
            text: frame.text.as_deref()?,
            time: time_ms,
        },
    };
    let json = serde_json::to_vec(&out).ok()?;
    Some(server_frame(OP_TEXT, &json))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Serve on `listener` until it fails. Must run inside a `LocalSet`.
pub async fn serve(listener: TcpListener, journal: Option<&Path>) -> std::io::Result<()> {
    let journal = match journal {
        Some(path) => Some(RefCell::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        )),
        None => None,
    };
    let registry = Rc::new(Registry {
        conns: RefCell::default(),
        journal,
    });
    let mut next_user = 0u64;
    loop {
        let (stream, _) = listener.accept().await?;
        let name = format!("u{next_user}");
        next_user += 1;
        tokio::task::spawn_local(connection(stream, name, registry.clone()));
    }
}

async fn connection(mut stream: TcpStream, name: String, registry: Rc<Registry>) {
    // Deliveries are single small frames: send each at once, as every server in the run does.
    let _ = stream.set_nodelay(true);
    let leftover = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut stream)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            tracing::debug!("floor: handshake refused: {e}");
            return;
        }
        Err(_) => return,
    };
    let (rd, wr) = stream.into_split();
    let conn = Rc::new(Conn {
        wr,
        pending: RefCell::new(Vec::new()),
        flushing: Cell::new(false),
        dead: Cell::new(false),
    });
    registry.conns.borrow_mut().push(conn.clone());
    let end = read_loop(rd, leftover, &conn, &name, &registry).await;
    registry
        .conns
        .borrow_mut()
        .retain(|c| !Rc::ptr_eq(c, &conn));
    let code = match &end {
        Ok(code) => *code,
        Err(e) => e.close_code(),
    };
    if let Some(code) = code {
        // Queued behind whatever the socket still owes; the flush task keeps the socket alive.
        conn.send(&server_frame(OP_CLOSE, &code.to_be_bytes()));
    }
    if let Err(e) = end {
        tracing::debug!("floor: {name} closed: {e}");
    }
}

/// Read frames until the client closes (returns the close code to echo) or breaks the protocol.
async fn read_loop(
    mut rd: OwnedReadHalf,
    mut buf: Vec<u8>,
    conn: &Rc<Conn>,
    name: &str,
    registry: &Registry,
) -> Result<Option<u16>, FloorError> {
    // A message in fragments: its opcode and the bytes so far.
    let mut partial: Option<(u8, Vec<u8>)> = None;
    loop {
        let mut used = 0;
        while let Some((frame, n)) = parse_client_frame(&buf[used..])? {
            used += n;
            let message = match frame.opcode {
                OP_TEXT | OP_BINARY if partial.is_some() => return Err(FloorError::BadFragment),
                OP_TEXT | OP_BINARY if frame.fin => Some((frame.opcode, frame.payload)),
                OP_TEXT | OP_BINARY => {
                    partial = Some((frame.opcode, frame.payload));
                    None
                }
                OP_CONT => {
                    let (op, mut so_far) = partial.take().ok_or(FloorError::BadFragment)?;
                    if so_far.len() + frame.payload.len() > MAX_MESSAGE {
                        return Err(FloorError::TooBig);
                    }
                    so_far.extend_from_slice(&frame.payload);
                    if frame.fin {
                        Some((op, so_far))
                    } else {
                        partial = Some((op, so_far));
                        None
                    }
                }
                OP_PING => {
                    conn.send(&server_frame(OP_PONG, &frame.payload));
                    None
                }
                OP_PONG => None,
                _ => {
                    // Close: echo the client's code (1000 when it gave none).
                    let code = frame
                        .payload
                        .get(..2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .unwrap_or(1000);
                    return Ok(Some(code));
                }
            };
            if let Some((OP_TEXT, payload)) = message {
                let text = std::str::from_utf8(&payload).map_err(|_| FloorError::NotUtf8)?;
                if let Some(out) = stamp(text, name, now_ms()) {
                    registry.broadcast(&out)?;
                }
            }
        }
        buf.drain(..used);
        buf.reserve(4096);
        if rd.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// `natter-bench floor-server`: listen on 127.0.0.1:`port` (0 = any free port), print
/// `LISTENING <port>` for the harness (as the Node peers do), serve on this thread forever.
pub fn run(port: u16, journal: Option<&Path>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        println!("LISTENING {}", listener.local_addr()?.port());
        serve(listener, journal).await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{self, Dest, Kind};
    use futures_util::{SinkExt, StreamExt};
    use std::io::Cursor;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::path::PathBuf;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};
    use tokio_tungstenite::tungstenite::Message;

    /// What a tungstenite client makes of the bytes the floor sends.
    fn client_reads(bytes: Vec<u8>) -> Vec<Message> {
        let mut ws = WebSocket::from_raw_socket(Cursor::new(bytes), Role::Client, None);
        let mut out = Vec::new();
        while let Ok(m) = ws.read() {
            out.push(m);
        }
        out
    }

    #[test]
    fn stamped_frames_are_unmasked_text_frames_tungstenite_reads() {
        let text = crate::load::make_text(1, 7, 42);
        let send = Kind::Floor.encode_send(&Dest::Conv("1".into()), 3, &text);
        let frame = stamp(&send, "u5", 1234).expect("a send is stamped");
        assert_eq!(frame[0], 0x81, "final text frame");
        assert_eq!(frame[1] & 0x80, 0, "server frames are not masked");
        let got = client_reads(frame);
        assert_eq!(got.len(), 1);
        let Message::Text(t) = &got[0] else {
            panic!("not text: {got:?}")
        };
        assert!(Kind::Floor.is_delivery(t.as_str()), "{t}");
        let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
        assert_eq!(v["message"]["text"], text.as_str());
        assert_eq!(v["message"]["sender"], "u5");
        assert_eq!(v["message"]["conv"], "1");
        assert_eq!(v["message"]["time"], 1234);
        assert!(v["message"]["to"].is_null());
        // Other frames are not broadcast.
        assert!(stamp(r#"{"type":"join","room":"r1"}"#, "u5", 1).is_none());
        assert!(stamp(r#"{"type":"send"}"#, "u5", 1).is_none());
        assert!(stamp("not json", "u5", 1).is_none());
    }

    #[test]
    fn every_length_encoding_is_read_back() {
        for len in [0usize, 125, 126, 65_535, 65_536, 200_000] {
            let text = "y".repeat(len);
            let got = client_reads(server_frame(OP_TEXT, text.as_bytes()));
            assert_eq!(got, vec![Message::text(text)], "length {len}");
        }
        let got = client_reads(server_frame(OP_CLOSE, &1002u16.to_be_bytes()));
        assert!(matches!(&got[..], [Message::Close(Some(c))] if u16::from(c.code) == 1002));
    }

    fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![b0];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 65_535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn client_frames_parse_and_bad_ones_are_refused() {
        let f = masked(0x81, b"hello");
        for cut in 0..f.len() {
            assert!(
                parse_client_frame(&f[..cut]).unwrap().is_none(),
                "cut {cut}"
            );
        }
        let (frame, used) = parse_client_frame(&f).unwrap().unwrap();
        assert_eq!((frame.fin, frame.opcode, used), (true, OP_TEXT, f.len()));
        assert_eq!(frame.payload, b"hello");
        let long = masked(0x82, &[7u8; 300]);
        assert_eq!(
            parse_client_frame(&long).unwrap().unwrap().0.payload,
            vec![7u8; 300]
        );
        let refused = |bytes: &[u8]| parse_client_frame(bytes).unwrap_err().close_code();
        assert_eq!(
            refused(&server_frame(OP_TEXT, b"x")),
            Some(1002),
            "unmasked"
        );
        assert_eq!(refused(&masked(0xC1, b"x")), Some(1002), "RSV1 set");
        assert_eq!(refused(&masked(0x83, b"x")), Some(1002), "opcode 3");
        assert_eq!(refused(&masked(0x09, b"x")), Some(1002), "fragmented ping");
        assert_eq!(refused(&masked(0x89, &[0; 126])), Some(1002), "long ping");
        let mut huge = vec![0x81, 0x80 | 127];
        huge.extend_from_slice(&(u64::MAX).to_be_bytes());
        assert_eq!(refused(&huge), Some(1009), "too big");
    }

    /// Run `test` against a floor server on 127.0.0.1:0 (on a LocalSet, as in production).
    async fn with_floor<F: std::future::Future<Output = ()>>(test: impl FnOnce(SocketAddr) -> F) {
        with_floor_journal(None, test).await
    }

    /// [`with_floor`], the durable floor when `journal` is given.
    async fn with_floor_journal<F: std::future::Future<Output = ()>>(
        journal: Option<PathBuf>,
        test: impl FnOnce(SocketAddr) -> F,
    ) {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::task::spawn_local(async move { serve(listener, journal.as_deref()).await });
                test(addr).await
            })
            .await;
    }

    #[tokio::test]
    async fn the_durable_floor_has_each_message_in_its_journal_before_anyone_gets_it() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal");
        let path = journal.clone();
        with_floor_journal(Some(journal), |addr| async move {
            let (mut a, _) = target::connect(Kind::Floor, addr, None, Ipv4Addr::LOCALHOST)
                .await
                .unwrap();
            let (mut b, _) = target::connect(Kind::Floor, addr, None, Ipv4Addr::LOCALHOST)
                .await
                .unwrap();
            for text in ["one", "two"] {
                let frame = Kind::Floor.encode_send(&Dest::Conv("1".into()), 0, text);
                a.send(Message::text(frame)).await.unwrap();
                assert_eq!(next_delivery(&mut b).await["message"]["text"], text);
                // Delivered, so already in the journal: the frames in order, nothing else.
                let written = client_reads(std::fs::read(&path).unwrap());
                let texts: Vec<String> = written
                    .iter()
                    .map(|m| {
                        let v: serde_json::Value =
                            serde_json::from_str(m.to_text().unwrap()).unwrap();
                        v["message"]["text"].as_str().unwrap().to_owned()
                    })
                    .collect();
                let expected: &[&str] = if text == "one" {
                    &["one"]
                } else {
                    &["one", "two"]
                };
                assert_eq!(texts, expected);
                next_delivery(&mut a).await;
            }
        })
        .await;
    }

    async fn next_delivery(ws: &mut target::Ws) -> serde_json::Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("a frame within 10 s")
                .expect("open")
                .expect("valid frame");
            if let Message::Text(t) = msg {
                assert!(Kind::Floor.is_delivery(t.as_str()), "{t}");
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn every_client_gets_each_message_exactly_once_in_order() {
        with_floor(|addr| async move {
            let mut clients = Vec::new();
            for _ in 0..3 {
                let (ws, _) = target::connect(Kind::Floor, addr, None, Ipv4Addr::LOCALHOST)
                    .await
                    .unwrap();
                clients.push(ws);
            }
            // A duplicate of a message would arrive before the next one: each client reads
            // message k from sender k before sender k+1 publishes.
            for (k, text) in ["first", "second", "third"].iter().enumerate() {
                let frame = Kind::Floor.encode_send(&Dest::Conv("1".into()), 0, text);
                clients[k].send(Message::text(frame)).await.unwrap();
                let mut senders = Vec::new();
                for ws in clients.iter_mut() {
                    let v = next_delivery(ws).await;
                    assert_eq!(v["message"]["text"], *text);
                    senders.push(v["message"]["sender"].as_str().unwrap().to_owned());
                }
                assert!(senders.iter().all(|s| s == &senders[0]));
            }
            // Non-send frames reach nobody: the next frame everyone reads is "last".
            clients[0]
                .send(Message::text(Kind::Floor.encode_join("r1", "a", 0)))
                .await
                .unwrap();
            clients[0]
                .send(Message::text(Kind::Floor.encode_history("r1", 0)))
                .await
                .unwrap();
            let last = Kind::Floor.encode_send(&Dest::Conv("1".into()), 0, "last");
            clients[1].send(Message::text(last)).await.unwrap();
            for ws in clients.iter_mut() {
                assert_eq!(next_delivery(ws).await["message"]["text"], "last");
            }
            // A client that leaves stops being written to; the others carry on.
            let gone = clients.pop().unwrap();
            drop(gone);
            let after = Kind::Floor.encode_send(&Dest::Conv("1".into()), 0, "after");
            clients[0].send(Message::text(after)).await.unwrap();
            for ws in clients.iter_mut() {
                assert_eq!(next_delivery(ws).await["message"]["text"], "after");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_gets_the_queued_frames_in_order_later() {
        with_floor(|addr| async move {
            let (mut sender, _) = target::connect(Kind::Floor, addr, None, Ipv4Addr::LOCALHOST)
                .await
                .unwrap();
            // A 4 KiB receive window: the server's send buffer fills within a few frames,
            // so most of the 8 MB below waits in the floor's queue.
            let (mut slow, _) =
                target::connect_with(Kind::Floor, addr, None, Ipv4Addr::LOCALHOST, Some(4096))
                    .await
                    .unwrap();
            let count = 160;
            let pad = "z".repeat(50_000);
            let sending = async {
                for i in 0..count {
                    let text = format!("{i};{pad}");
                    let f = Kind::Floor.encode_send(&Dest::Conv("1".into()), 0, &text);
                    sender.send(Message::text(f)).await.unwrap();
                    // The sender reads its own copies so only `slow` falls behind.
                    let v = next_delivery(&mut sender).await;
                    assert!(v["message"]["text"]
                        .as_str()
                        .unwrap()
                        .starts_with(&format!("{i};")));
                }
            };
            sending.await;
            for i in 0..count {
                let v = next_delivery(&mut slow).await;
                let t = v["message"]["text"].as_str().unwrap();
                assert!(t.starts_with(&format!("{i};")), "frame {i}: {}", &t[..10]);
                assert_eq!(t.len(), format!("{i};").len() + pad.len());
            }
        })
        .await;
    }

    #[tokio::test]
    async fn bad_handshakes_and_frames_are_refused_with_a_clear_answer() {
        with_floor(|addr| async move {
                // Plain HTTP, no upgrade: 400.
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
                let mut answer = String::new();
                s.read_to_string(&mut answer).await.unwrap();
                assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
                // Garbage: 400.
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.write_all(b"\x00\x01garbage\r\n\r\n").await.unwrap();
                let mut answer = String::new();
                s.read_to_string(&mut answer).await.unwrap();
                assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
                // A real upgrade, then an unmasked frame: close 1002, and the socket ends.
                let mut s = TcpStream::connect(addr).await.unwrap();
                let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_vec();
                // Pipelined right behind the request: must not be lost.
                req.extend_from_slice(&server_frame(OP_TEXT, b"{}"));
                s.write_all(&req).await.unwrap();
                let mut answer = Vec::new();
                s.read_to_end(&mut answer).await.unwrap();
                let text = String::from_utf8_lossy(&answer);
                assert!(text.starts_with("HTTP/1.1 101"), "{text}");
                assert!(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "RFC 6455's example key");
                let end = text.find("\r\n\r\n").unwrap() + 4;
                assert_eq!(&answer[end..], &server_frame(OP_CLOSE, &1002u16.to_be_bytes())[..]);
        })
        .await;
    }
}
