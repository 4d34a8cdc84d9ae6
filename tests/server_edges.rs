//! The server at its HTTP and WebSocket edges, over real TCP on 127.0.0.1:0: cross-site
//! requests (Content-Type, Origin, Host), request bodies that are too large or too slow, every
//! HTTP error's JSON body, the close handshake's end, the caps on open sockets, and the errors
//! for frames whose `type` is wrong.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use natter::protocol::{close, limits, ApiError, ClientFrame, ErrorCode, ServerFrame};
use support::{handshake_status, TestServer, WsClient, PASSWORD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// An HTTP answer read off a raw socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
    /// Whether the server closed the connection after the answer.
    closed: bool,
}

impl Answer {
    /// The JSON error body every error must carry.
    fn api_error(&self) -> ApiError {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{} without an ApiError body ({e}): {self:?}", self.status))
    }
}

/// Read one HTTP answer from `tcp`, then whether the server closes within a second.
async fn read_answer(tcp: &mut TcpStream) -> Answer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body_start) = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break (String::from_utf8_lossy(&buf[..at]).into_owned(), at + 4);
        }
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .expect("read");
        assert!(
            n > 0,
            "closed before an answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let status = head[9..12].parse().expect("status");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < body_start + length {
        let n = tcp.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "closed inside the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[body_start..body_start + length]).into_owned();
    let closed = matches!(
        tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut chunk)).await,
        Ok(Ok(0)) | Ok(Err(_))
    );
    Answer {
        status,
        head,
        body,
        closed,
    }
}

/// Send raw request bytes on a new connection and read the answer.
async fn raw(addr: SocketAddr, request: &str) -> Answer {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    read_answer(&mut tcp).await
}

/// A POST of `body` to `path` with extra header lines (each ending in \r\n).
fn post(addr: SocketAddr, path: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn register_body(name: &str) -> String {
    serde_json::json!({"username": name, "password": PASSWORD}).to_string()
}

const JSON: &str = "Content-Type: application/json\r\n";

#[tokio::test]
async fn posts_must_be_json_so_a_cross_site_form_cannot_register() {
    let server = TestServer::start().await;
    let body = register_body("mallory");
    for content_type in [
        "Content-Type: text/plain\r\n",
        "Content-Type: text/plain;charset=UTF-8\r\n",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        "Content-Type: multipart/form-data; boundary=x\r\n",
        "",
    ] {
        let a = raw(
            server.addr,
            &post(server.addr, "/api/register", content_type, &body),
        )
        .await;
        assert_eq!(a.status, 415, "{content_type:?}: {a:?}");
        assert_eq!(a.api_error().code, ErrorCode::BadRequest);
        assert!(a.api_error().message.contains("application/json"));
    }
    // Nothing was created: the name is still free, and a JSON body (with a charset) works.
    let json_utf8 = "Content-Type: application/json; charset=utf-8\r\n";
    let a = raw(
        server.addr,
        &post(server.addr, "/api/register", json_utf8, &body),
    )
    .await;
    assert_eq!(a.status, 201, "{a:?}");
    // A login in text/plain cannot burn the victim's failed sign-in budget either.
    let wrong = serde_json::json!({"username": "mallory", "password": "wrong password"});
    for _ in 0..12 {
        let req = post(
            server.addr,
            "/api/login",
            "Content-Type: text/plain\r\n",
            &wrong.to_string(),
        );
        assert_eq!(raw(server.addr, &req).await.status, 415);
    }
    server.login("mallory").await;
}

#[tokio::test]
async fn the_origin_allowlist_applies_to_the_http_api() {
    let server = TestServer::start_with(|c| {
        c.allowed_origins = vec!["https://app.example".into()];
    })
    .await;
    let evil = "Origin: https://evil.example\r\n".to_string() + JSON;
    for path in ["/api/register", "/api/login", "/api/logout"] {
        let a = raw(
            server.addr,
            &post(server.addr, path, &evil, &register_body("eve")),
        )
        .await;
        assert_eq!(a.status, 403, "{path}: {a:?}");
        assert_eq!(a.api_error().code, ErrorCode::Forbidden);
    }
    for (origin, status) in [("null", 403), ("https://app.example", 201)] {
        let headers = format!("Origin: {origin}\r\n{JSON}");
        let a = raw(
            server.addr,
            &post(
                server.addr,
                "/api/register",
                &headers,
                &register_body("eve"),
            ),
        )
        .await;
        assert_eq!(a.status, status, "{origin}: {a:?}");
    }
    // No Origin: a native client, allowed.
    server.login("eve").await;
}

#[tokio::test]
async fn a_host_name_not_configured_gets_421_so_dns_rebinding_fails() {
    let server = TestServer::start_with(|c| c.allowed_hosts = vec!["chat.example".into()]).await;
    let port = server.addr.port();
    let get = |host: String| {
        format!("GET /api/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    for bad in [
        format!("evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        "localhost.evil.example".to_string(),
        format!("[evil.example]:{port}"),
        format!("chat.example.evil:{port}"),
    ] {
        let a = raw(server.addr, &get(bad.clone())).await;
        assert_eq!(a.status, 421, "{bad}: {a:?}");
        assert_eq!(a.api_error().code, ErrorCode::Forbidden);
    }
    for good in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".to_string(),
        format!("[::1]:{port}"),
        format!("192.168.1.20:{port}"),
        format!("chat.example:{port}"),
        "Chat.Example.".to_string(),
    ] {
        let a = raw(server.addr, &get(good.clone())).await;
        assert_eq!(a.status, 200, "{good}: {a:?}");
    }
    // A rebound page's POST is refused too, before its body is looked at.
    let req = format!(
        "POST /api/register HTTP/1.1\r\nHost: evil.example:{port}\r\n{JSON}Content-Length: {}\r\n\r\n{}",
        register_body("rebound").len(),
        register_body("rebound")
    );
    assert_eq!(raw(server.addr, &req).await.status, 421);
    // And so is a WebSocket upgrade.
    let upgrade = "GET /ws HTTP/1.1\r\nHost: evil.example\r\nConnection: Upgrade\r\n\
        Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: natter.v1\r\n\r\n";
    assert_eq!(raw(server.addr, upgrade).await.status, 421);
    // The client core, which names the server by address, is unaffected.
    server.register("rebound").await;
}

#[tokio::test]
async fn a_content_length_beyond_the_limit_gets_a_json_413_at_once() {
    let server = TestServer::start().await;
    for length in [
        "99999999999",
        &(limits::MAX_HTTP_BODY_BYTES + 1).to_string(),
    ] {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST /api/login HTTP/1.1\r\nHost: {}\r\n{JSON}Content-Length: {length}\r\n\r\n{{",
            server.addr
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let a = read_answer(&mut tcp).await;
        println!(
            "Content-Length {length} -> {} in {:?}",
            a.status,
            started.elapsed()
        );
        // At once: the body is not awaited (the deadline for it is 10 s).
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(a.status, 413, "{a:?}");
        assert_eq!(a.api_error().code, ErrorCode::TooLong);
        assert!(a.closed, "the connection closes after a 413");
    }
    // A chunked body (no length declared) that runs past the limit.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/login HTTP/1.1\r\nHost: {}\r\n{JSON}Transfer-Encoding: chunked\r\n\r\n",
        server.addr
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("1000\r\n{}\r\n", "a".repeat(0x1000));
    for _ in 0..(limits::MAX_HTTP_BODY_BYTES / 0x1000 + 1) {
        if tcp.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let a = read_answer(&mut tcp).await;
    assert_eq!(a.status, 413, "{a:?}");
    assert_eq!(a.api_error().code, ErrorCode::TooLong);
}

#[tokio::test]
async fn a_slow_drip_body_gets_408_within_the_deadline_and_the_connection_closes() {
    let server = TestServer::start_with(|c| c.body_timeout = Duration::from_secs(1)).await;
    let addr = server.addr;
    // Several at once, each declaring 10000 bytes and sending one every 100 ms.
    let drips: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn(async move {
                let mut tcp = TcpStream::connect(addr).await.unwrap();
                let head = format!(
                    "POST /api/login HTTP/1.1\r\nHost: {addr}\r\n{JSON}Content-Length: 10000\r\n\r\n"
                );
                tcp.write_all(head.as_bytes()).await.unwrap();
                let started = Instant::now();
                let (mut rd, mut wr) = tcp.into_split();
                let dripper = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        if wr.write_all(b"{").await.is_err() {
                            return;
                        }
                    }
                });
                let mut buf = Vec::new();
                let read = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut buf)).await;
                dripper.abort();
                let elapsed = started.elapsed();
                assert!(read.is_ok(), "still open after 10 s of dripping");
                (String::from_utf8_lossy(&buf).into_owned(), elapsed)
            })
        })
        .collect();
    for drip in drips {
        let (text, elapsed) = drip.await.unwrap();
        println!("slow drip answered and closed after {elapsed:?}");
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        let err: ApiError = serde_json::from_str(body).unwrap();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.message.contains("did not arrive"), "{}", err.message);
        // The deadline is for the whole body (1 s), not for each byte.
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
            "{elapsed:?}"
        );
    }
}

#[tokio::test]
async fn every_http_error_has_the_json_body() {
    let server = TestServer::start().await;
    let a = server.addr;
    let cases = [
        (
            format!("GET /nope HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n"),
            404,
        ),
        (
            format!("GET /api/login HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n"),
            405,
        ),
        (
            format!(
                "POST /ws HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            ),
            405,
        ),
        (
            post(
                a,
                "/api/login",
                "Content-Type: text/plain\r\nConnection: close\r\n",
                "{}",
            ),
            415,
        ),
        (
            post(
                a,
                "/api/login",
                &format!("{JSON}Connection: close\r\n"),
                "{not json",
            ),
            400,
        ),
        (post(a, "/api/logout", "Connection: close\r\n", ""), 401),
        (
            format!("GET /ws HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n"),
            400,
        ),
    ];
    for (req, status) in cases {
        let answer = raw(a, &req).await;
        assert_eq!(answer.status, status, "{req}: {answer:?}");
        answer.api_error();
        assert!(
            answer
                .head
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{answer:?}"
        );
    }
}

/// Reads until the server ends the TCP connection; how long that took.
async fn time_to_eof(ws: &mut WsClient) -> Duration {
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = ws.ws.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the connection stayed open 10 s");
    started.elapsed()
}

#[tokio::test]
async fn the_server_closes_tcp_right_after_the_close_handshake() {
    // The grace period is the default 2 s: only a peer that never answers should wait for it.
    let server = TestServer::start().await;
    let alice = server.register("alice").await;

    // The client closes: the server replies and drops TCP at once.
    let mut ws = server.connect(&alice.token).await;
    ws.ws
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await
        .unwrap();
    let took = time_to_eof(&mut ws).await;
    println!("client close -> TCP EOF: {took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");

    // The server closes (logout, 4001): after the client's reply, TCP ends at once.
    let mut ws = server.connect(&alice.token).await;
    let (status, _) = server
        .post("/api/logout", serde_json::json!({}), Some(&alice.token))
        .await;
    assert_eq!(status, 204);
    let took = time_to_eof(&mut ws).await;
    println!("server close (logout) -> TCP EOF: {took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");

    // Shutdown with a client connected that answers the close frame.
    let bob = server.register("bob").await;
    let mut ws = server.connect(&bob.token).await;
    let reader = tokio::spawn(async move { time_to_eof(&mut ws).await });
    let started = Instant::now();
    let (_, result) = server.stop().await;
    result.unwrap();
    let took = started.elapsed();
    println!("shutdown with one socket: {took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    reader.await.unwrap();
}

/// The JSON body of an upgrade with `token` that must be refused with 429.
async fn refused_upgrade(server: &TestServer, token: &str) -> ApiError {
    let e = WsClient::connect(&server.ws_url(), Some(token))
        .await
        .err()
        .expect("the upgrade is refused");
    assert_eq!(handshake_status(&e), Some(429), "{e}");
    let tokio_tungstenite::tungstenite::Error::Http(resp) = &e else {
        unreachable!()
    };
    serde_json::from_slice(resp.body().as_deref().expect("a body")).expect("an ApiError body")
}

#[tokio::test]
async fn open_sockets_are_capped_per_user_and_per_address() {
    let server = TestServer::start_with(|c| {
        c.max_sockets_per_user = 2;
        c.max_sockets_per_ip = 3;
    })
    .await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let a1 = server.connect(&alice.token).await;
    let _a2 = server.connect(&alice.token).await;

    // A third socket for alice: 429 at the upgrade, with the JSON body.
    let body = refused_upgrade(&server, &alice.token).await;
    assert_eq!(body.code, ErrorCode::RateLimited);
    assert!(body.message.contains("this user"), "{}", body.message);

    // Bob from the same address: the third socket of the address is fine, the fourth is not.
    let _b1 = server.connect(&bob.token).await;
    let body = refused_upgrade(&server, &bob.token).await;
    assert!(body.message.contains("this address"), "{}", body.message);

    // Through an `auth` frame instead of a header: an error answer, then close 4004.
    let mut c = WsClient::connect(&server.ws_url(), None).await.unwrap();
    c.send_frame(&ClientFrame::Auth {
        id: 1,
        token: bob.token.clone(),
    })
    .await;
    match c.recv().await {
        Some(ServerFrame::Error {
            id: Some(1),
            code,
            message,
        }) => {
            assert_eq!(code, ErrorCode::RateLimited);
            assert!(message.contains("address"), "{message}");
        }
        other => panic!("expected the auth error, got {other:?}"),
    }
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), c.ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, Some(close::TOO_MANY_SOCKETS));

    // A closed socket gives its place back.
    drop(a1);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match WsClient::connect(&server.ws_url(), Some(&alice.token)).await {
            Ok(mut ws) => {
                ws.expect_hello().await;
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert_eq!(handshake_status(&e), Some(429), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the place was not given back: {e}"),
        }
    }
}

#[tokio::test]
async fn a_frame_whose_type_is_wrong_is_told_what_is_wrong() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut ws = server.connect(&alice.token).await;
    let cases: [(&str, ErrorCode, &[&str]); 6] = [
        (
            r#"{"type":5,"id":9}"#,
            ErrorCode::BadRequest,
            &["`type` must be a string", "not a number"],
        ),
        (
            r#"{"type":null,"id":9}"#,
            ErrorCode::BadRequest,
            &["`type` must be a string", "not null"],
        ),
        (
            r#"{"type":["send"],"id":9}"#,
            ErrorCode::BadRequest,
            &["`type` must be a string", "not an array"],
        ),
        (r#"{"id":9}"#, ErrorCode::BadRequest, &["missing `type`"]),
        (
            r#"{"type":"zap","id":9}"#,
            ErrorCode::UnknownType,
            &["unknown frame type `zap`", "history"],
        ),
        (
            r#"{"type":"history","id":9,"conv":1}"#,
            ErrorCode::BadRequest,
            &["invalid `history` frame", "`limit`"],
        ),
    ];
    for (text, want_code, phrases) in cases {
        ws.send_raw(Message::text(text)).await;
        match ws.recv().await {
            Some(ServerFrame::Error { id, code, message }) => {
                assert_eq!((id, code), (Some(9), want_code), "{text}: {message}");
                for p in phrases {
                    assert!(message.contains(p), "{text}: {message:?} lacks {p:?}");
                }
                if !text.contains("\"type\":") || text.contains("\"type\":\"") {
                    continue;
                }
                assert!(!message.contains("missing"), "{text}: {message}");
            }
            other => panic!("{text}: expected an error, got {other:?}"),
        }
    }
    // Not an object at all.
    ws.send_raw(Message::text("[1,2]")).await;
    match ws.recv().await {
        Some(ServerFrame::Error {
            id: None, message, ..
        }) => {
            assert_eq!(message, "a frame must be a JSON object, not an array");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}
