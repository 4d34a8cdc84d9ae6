//! What Natter's fuzz targets share: one Tokio runtime per process, the real server started in
//! memory ([`natter::server::InMemoryServer`]: real SQLite store in a temporary directory, real
//! hub, router and socket handler) with two registered users, raw HTTP/1.1 over an in-memory
//! pipe, and WebSocket clients over such pipes.
//!
//! Frame inputs are text, one WebSocket frame per line (a line that is not UTF-8 goes as a binary
//! frame). In a line, `@token@` stands for the live token of the user the socket belongs to: the
//! seeds, extracted from docs/protocol.md by `fuzz/seeds.mjs`, put it where the document shows its
//! example token, so a seed authenticates and then reaches the request that follows.
//!
//! The server lives as long as the fuzzing process, so its state (accounts, rooms, messages)
//! grows from input to input, as a real server's does under many clients. Each input still gets
//! fresh sockets, so a crash reproduces from its input alone unless it needs that history.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use natter::protocol::{ClientFrame, ErrorCode, Reply, ServerFrame, Session, SUBPROTOCOL};
use natter::server::{InMemoryServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Stands for the socket owner's live token in a frame input (see the module docs).
pub const TOKEN_PLACEHOLDER: &str = "@token@";

/// How long the harness waits for the code under test before calling it a hang. Generous:
/// sanitizer builds on a loaded CI machine are slow, and argon2 runs in them too.
pub const HANG: Duration = Duration::from_secs(30);

/// The password of the two users the harness registers.
const PASSWORD: &str = "correct horse battery";

/// The process's runtime. Two workers, like a small server: the server's tasks and the harness's
/// clients run on it concurrently.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a Tokio runtime")
    })
}

/// A fresh peer address for each connection (127.x.y.z), so the server's per-address budgets
/// (failed sign-ins, registrations, unauthenticated sockets) do not turn every later input into
/// the same `rate_limited` answer; those budgets have tests of their own.
fn next_peer() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
    let ip = Ipv4Addr::from(0x7f00_0000 | n.max(1));
    SocketAddr::from((ip, 40000))
}

/// The server in memory and the sessions of its two users.
pub struct Server {
    server: InMemoryServer,
    /// The user the fuzzed sockets belong to.
    pub alice: Session,
    /// A bystander: after each input, [`Server::check_serves_others`] proves the server still
    /// serves her.
    pub bob: Session,
    _data: tempfile::TempDir,
}

/// The process's server, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let rt = runtime();
        let _enter = rt.enter();
        let data = tempfile::tempdir().expect("a temporary data directory");
        let server = InMemoryServer::start(ServerConfig::new(data.path())).expect("server starts");
        let register = |name: &str| {
            let body = serde_json::json!({"username": name, "password": PASSWORD}).to_string();
            let resp = rt.block_on(http(&server, &post("/api/register", &[], body.as_bytes())));
            assert_eq!(resp.status, 201, "registering {name}: {resp:?}");
            serde_json::from_slice::<Session>(&resp.body).expect("a session")
        };
        let (alice, bob) = (register("alice"), register("bob"));
        Server {
            server,
            alice,
            bob,
            _data: data,
        }
    })
}

/// An HTTP response as read off the wire.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A `POST` of `body` as JSON to `path`, with extra header lines, closing after the answer.
pub fn post(path: &str, extra_headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in extra_headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Send one raw HTTP/1.1 request over an in-memory pipe and read the whole answer. Panics when
/// the server does not answer within [`HANG`] or answers something that is not HTTP.
pub async fn http(server: &InMemoryServer, request: &[u8]) -> HttpResponse {
    let (mut ours, theirs) = tokio::io::duplex(64 * 1024);
    let serve = server.serve(theirs, next_peer());
    let talk = async {
        // The server may answer (413) and close before it read everything: not an error here.
        let _ = ours.write_all(request).await;
        let mut raw = Vec::new();
        let _ = ours.read_to_end(&mut raw).await;
        raw
    };
    let ((), raw) = tokio::time::timeout(HANG, async { tokio::join!(serve, talk) })
        .await
        .expect("the server answered an HTTP request in time");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, _) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP response head, got {text:?}"));
    let body = raw[head.len() + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP status line, got {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// A socket's client end.
pub type Socket = WebSocketStream<DuplexStream>;

impl Server {
    pub fn inner(&self) -> &InMemoryServer {
        &self.server
    }

    /// Open a WebSocket to `/ws` over an in-memory pipe, with `token` in the `Authorization`
    /// header or, with None, to authenticate by frame. The server side runs in its own task.
    pub async fn socket(&'static self, token: Option<&str>) -> Socket {
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        tokio::spawn(self.server.serve(theirs, next_peer()));
        let mut req = "ws://127.0.0.1/ws"
            .into_client_request()
            .expect("a request");
        let headers = req.headers_mut();
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a header");
            headers.insert(header::AUTHORIZATION, value);
        }
        let (ws, _) = tokio::time::timeout(HANG, tokio_tungstenite::client_async(req, ours))
            .await
            .expect("the upgrade answered in time")
            .expect("the upgrade accepted");
        ws
    }

    /// The bystander opens a socket, gets `hello` and an answer to `rooms` (the room list, or
    /// `rate_limited`): whatever the input did to its own socket, other users are still served.
    pub async fn check_serves_others(&'static self) {
        let mut ws = self.socket(Some(&self.bob.token)).await;
        let request = ClientFrame::Rooms { id: 7 };
        let json = serde_json::to_string(&request).expect("encodes");
        let answered = async {
            let mut hello = false;
            ws.send(Message::text(json))
                .await
                .expect("the bystander sends");
            while let Some(msg) = ws.next().await {
                let Ok(Message::Text(text)) = msg else {
                    continue;
                };
                match server_frame(&text) {
                    ServerFrame::Hello { .. } => hello = true,
                    ServerFrame::Ok {
                        id: 7,
                        result: Reply::Rooms { .. },
                    } => return hello,
                    // Her frames share one per-user rate budget across inputs, which the fuzzer
                    // runs faster than it refills: refused for rate is still served.
                    ServerFrame::Error {
                        id: Some(7),
                        code: ErrorCode::RateLimited,
                        ..
                    } => return hello,
                    _ => {}
                }
            }
            false
        };
        let ok = tokio::time::timeout(HANG, answered).await;
        assert_eq!(
            ok,
            Ok(true),
            "the bystander got hello and an answer to `rooms`"
        );
        let _ = ws.close(None).await;
    }
}

/// A frame from the server, which must be one the protocol defines: a client in another language
/// could not read anything else.
pub fn server_frame(text: &str) -> ServerFrame {
    serde_json::from_str(text).unwrap_or_else(|e| {
        panic!("the server sent a frame the protocol does not define ({e}): {text}")
    })
}

/// The input as WebSocket messages, one per line (see the module docs); `token` replaces
/// [`TOKEN_PLACEHOLDER`].
pub fn frames(data: &[u8], token: &str) -> Vec<Message> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    data.split(|b| *b == b'\n')
        .map(|line| match std::str::from_utf8(line) {
            Ok(text) => Message::text(text.replace(TOKEN_PLACEHOLDER, token)),
            Err(_) => Message::binary(line.to_vec()),
        })
        .collect()
}
