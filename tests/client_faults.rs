//! The client against a misbehaving server: a fake WebSocket server in this file sends garbage,
//! unknown and unsolicited frames, oversized frames, closes with every documented code, goes
//! silent, refuses the token, and rejects outbox messages. The client must report, reconnect when
//! it makes sense, sign out when the token is refused, and never panic.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use natter::client::{
    Client, ClientConfig, ClientError, ClientEvent, ConnectionState, MessageEvent, MessageState,
    Target,
};
use natter::protocol::{
    close, limits, ClientFrame, ConvKind, Conversation, ErrorCode, Message, Reply, ServerFrame,
    Session, User, SUBPROTOCOL,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::WebSocketStream;

type Sock = WebSocketStream<TcpStream>;

struct Fake {
    url: url::Url,
    connections: Arc<AtomicUsize>,
    auth: Arc<Mutex<Vec<String>>>,
}

/// Starts a fake server running `script(connection_index, socket)` for each connection. With
/// `refuse`, every upgrade is answered with HTTP 401.
// tungstenite's handshake callback type fixes the (large) error type.
#[allow(clippy::result_large_err)]
async fn fake<F, Fut>(refuse: bool, script: F) -> Fake
where
    F: Fn(usize, Sock) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let auth = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(script);
    {
        let connections = connections.clone();
        let auth = auth.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let n = connections.fetch_add(1, Ordering::SeqCst);
                let auth = auth.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let callback = |req: &Request, mut resp: Response| {
                        let header = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        auth.lock().unwrap().push(header);
                        if refuse {
                            let mut err = ErrorResponse::new(Some("unauthorized".into()));
                            *err.status_mut() = StatusCode::UNAUTHORIZED;
                            return Err(err);
                        }
                        resp.headers_mut().insert(
                            "sec-websocket-protocol",
                            HeaderValue::from_static(SUBPROTOCOL),
                        );
                        Ok(resp)
                    };
                    if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await {
                        script(n, ws).await;
                    }
                });
            }
        });
    }
    Fake {
        url: format!("http://{addr}").parse().unwrap(),
        connections,
        auth,
    }
}

fn user(name: &str) -> User {
    User {
        username: name.into(),
        display_name: name.into(),
        avatar: "cat".into(),
        deleted: false,
        avatar_image: None,
        admin: false,
    }
}

fn hello() -> ServerFrame {
    ServerFrame::Hello {
        protocol: 1,
        server_id: "0123456789abcdef0123456789abcdef".into(),
        user: user("alice"),
        server_time: 0,
        heartbeat_ms: 25_000,
        conversations: vec![Conversation {
            id: 1,
            kind: ConvKind::Room,
            name: "general".into(),
            peer: None,
            member_count: 2,
            last_seq: 0,
            last_read: 0,
            private: false,
            moderator: false,
        }],
        online: vec!["alice".into()],
        unread: vec![],
        attention: Default::default(),
    }
}

fn message(seq: i64, text: &str) -> Message {
    Message {
        id: seq,
        conv: 1,
        seq,
        sender: "bob".into(),
        text: text.into(),
        time: 1_000 + seq,
        client_msg_id: uuid::Uuid::new_v4(),
        ..Default::default()
    }
}

/// The server's `sent` answer for alice's message `text` committed at `seq`.
fn sent(id: u64, seq: i64, text: &str, client_msg_id: uuid::Uuid) -> ServerFrame {
    let mut m = message(seq, text);
    m.sender = "alice".into();
    m.client_msg_id = client_msg_id;
    ServerFrame::Ok {
        id,
        result: Reply::Sent { message: m },
    }
}

async fn push(ws: &mut Sock, frame: &ServerFrame) {
    let _ = ws
        .send(Ws::text(serde_json::to_string(frame).unwrap()))
        .await;
}

/// Close with `code` and `reason`, then read until the client's close reply.
async fn close_and_drain(ws: &mut Sock, code: u16, reason: &'static str) {
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }))
        .await;
    while let Some(Ok(_)) = ws.next().await {}
}

/// Reads client frames, answering `sync` with `synced` and everything else with `done`, until
/// the client goes away.
async fn serve(ws: &mut Sock) {
    while let Some(Ok(msg)) = ws.next().await {
        if let Ws::Text(t) = msg {
            let Ok(frame) = serde_json::from_str::<ClientFrame>(t.as_str()) else {
                continue;
            };
            push(ws, &plain_answer(&frame)).await;
        }
    }
}

/// What a server with nothing to say answers: `synced` to `sync`, `done` to anything else.
fn plain_answer(frame: &ClientFrame) -> ServerFrame {
    let result = match frame {
        ClientFrame::Sync { .. } => Reply::Synced { unread: vec![] },
        _ => Reply::Done,
    };
    ServerFrame::Ok {
        id: frame.id(),
        result,
    }
}

fn config(server: &url::Url, dir: &std::path::Path) -> ClientConfig {
    let mut c = ClientConfig::new(server.clone(), dir.to_path_buf());
    c.backoff_min = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(100);
    c.connect_timeout = Duration::from_secs(2);
    c.request_timeout = Duration::from_secs(3);
    c
}

async fn start(
    fake: &Fake,
    dir: &tempfile::TempDir,
    tweak: impl FnOnce(&mut ClientConfig),
) -> Client {
    let mut cfg = config(&fake.url, dir.path());
    tweak(&mut cfg);
    Client::start(
        cfg,
        Session {
            token: "secret-token".into(),
            user: user("alice"),
            expires_at: i64::MAX,
            device_token: None,
        },
    )
    .await
    .unwrap()
}

async fn wait_for(
    rx: &mut broadcast::Receiver<ClientEvent>,
    what: &str,
    mut pred: impl FnMut(&ClientEvent) -> bool,
) -> ClientEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ev)) if pred(&ev) => return ev,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event stream ended waiting for {what}: {e}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// Waits for the client to go offline; the reason it gives.
async fn wait_offline(rx: &mut broadcast::Receiver<ClientEvent>) -> String {
    let ev = wait_for(rx, "offline", |ev| {
        matches!(ev, ClientEvent::Connection(ConnectionState::Offline { .. }))
    })
    .await;
    let ClientEvent::Connection(ConnectionState::Offline { reason, .. }) = ev else {
        unreachable!()
    };
    reason
}

async fn wait_connections(fake: &Fake, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fake.connections.load(Ordering::SeqCst) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} connections"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn garbage_unknown_and_unsolicited_frames_are_reported_and_skipped() {
    let fake = fake(false, |_, mut ws| async move {
        push(&mut ws, &hello()).await;
        for junk in [
            "not json at all",
            r#"{"type":"bogus","x":1}"#,
            r#"{"type":"message"}"#,
            r#"{"type":"ok","id":987654,"result":{"kind":"done"}}"#,
            r#"{"type":"error","id":null,"code":"internal","message":"oops"}"#,
            "[]",
            "",
        ] {
            let _ = ws.send(Ws::text(junk)).await;
        }
        let _ = ws.send(Ws::binary(vec![0u8, 159, 146, 150])).await;
        push(
            &mut ws,
            &ServerFrame::Message {
                message: message(1, "still here"),
            },
        )
        .await;
        serve(&mut ws).await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir, |_| {}).await;
    let mut rx = client.subscribe();
    let mut warnings = 0;
    let ev = wait_for(&mut rx, "the good message", |ev| {
        if matches!(ev, ClientEvent::Warning(_)) {
            warnings += 1;
        }
        matches!(ev, ClientEvent::Message(MessageEvent { message: m, .. }) if m.text == "still here")
    })
    .await;
    assert!(
        matches!(ev, ClientEvent::Message(MessageEvent { message: m, .. }) if m.state == MessageState::Sent)
    );
    assert!(warnings >= 8, "each bad frame is reported, got {warnings}");
    assert_eq!(client.connection_state(), ConnectionState::Online);
    assert_eq!(
        fake.connections.load(Ordering::SeqCst),
        1,
        "no reconnect for junk"
    );
    assert_eq!(fake.auth.lock().unwrap()[0], "Bearer secret-token");
    let page = client.history(1, None, 10).await.unwrap();
    assert_eq!(page.len(), 1);
    client.shutdown().await;
}

/// A frame header declaring one byte more than the protocol's largest server frame ends the
/// connection at once: the client neither waits for nor allocates the payload.
#[tokio::test]
async fn an_oversized_frame_ends_the_connection_and_the_client_reconnects() {
    let fake = fake(false, |n, mut ws| async move {
        push(&mut ws, &hello()).await;
        if n == 0 {
            // A text frame (FIN, opcode 1), unmasked, 64-bit length, and no payload.
            let len = (limits::MAX_SERVER_FRAME_BYTES + 1) as u64;
            let mut header = vec![0x81u8, 127];
            header.extend_from_slice(&len.to_be_bytes());
            let _ = ws.get_mut().write_all(&header).await;
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        serve(&mut ws).await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir, |_| {}).await;
    let mut rx = client.subscribe();
    let reason = wait_offline(&mut rx).await;
    assert!(reason.contains("too long"), "{reason}");
    wait_connections(&fake, 2).await;
    tokio::time::timeout(Duration::from_secs(10), client.wait_synced())
        .await
        .unwrap()
        .unwrap();
    client.shutdown().await;
}

#[tokio::test]
async fn every_documented_close_code_reconnects_except_unauthorized_and_banned() {
    for code in close::ALL
        .iter()
        .copied()
        .filter(|&c| c != close::UNAUTHORIZED && c != close::BANNED)
    {
        let fake = fake(false, move |n, mut ws| async move {
            push(&mut ws, &hello()).await;
            if n == 0 {
                close_and_drain(&mut ws, code, "test").await;
                return;
            }
            serve(&mut ws).await;
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let client = start(&fake, &dir, |_| {}).await;
        let mut rx = client.subscribe();
        let reason = wait_offline(&mut rx).await;
        assert!(reason.contains(&code.to_string()), "{code}: {reason}");
        wait_connections(&fake, 2).await;
        tokio::time::timeout(Duration::from_secs(10), client.wait_synced())
            .await
            .unwrap_or_else(|_| panic!("no resume after close {code}"))
            .unwrap();
        client.shutdown().await;
    }
}

/// What a refused session must look like: signed out, no more attempts, the token forgotten,
/// requests refused, history still readable.
async fn assert_signed_out(fake: &Fake, client: &Client, dir: &tempfile::TempDir) {
    let mut state = client.connection_watch();
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| matches!(s, ConnectionState::SignedOut { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    let before = fake.connections.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        fake.connections.load(Ordering::SeqCst),
        before,
        "kept retrying"
    );
    assert!(matches!(
        client.rooms().await,
        Err(ClientError::Unauthorized(_))
    ));
    assert!(matches!(
        client.wait_synced().await,
        Err(ClientError::Unauthorized(_))
    ));
    client.history(1, None, 10).await.unwrap();
    client.shutdown().await;
    let again = Client::resume(config(&fake.url, dir.path())).await.unwrap();
    assert!(again.is_none(), "a refused token is not resumed");
}

#[tokio::test]
async fn http_401_at_the_upgrade_signs_out_and_stops() {
    let fake = fake(true, |_, _ws| async move {}).await;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir, |_| {}).await;
    assert_signed_out(&fake, &client, &dir).await;
}

#[tokio::test]
async fn close_4001_and_4005_sign_out_and_stop() {
    for code in [close::UNAUTHORIZED, close::BANNED] {
        let fake = fake(false, move |_, mut ws| async move {
            push(&mut ws, &hello()).await;
            close_and_drain(&mut ws, code, "token revoked or banned").await;
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let client = start(&fake, &dir, |_| {}).await;
        assert_signed_out(&fake, &client, &dir).await;
    }
}

#[tokio::test]
async fn policy_close_before_hello_signs_out() {
    let fake = fake(false, |_, mut ws| async move {
        close_and_drain(&mut ws, close::POLICY, "auth").await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir, |_| {}).await;
    assert_signed_out(&fake, &client, &dir).await;
}

#[tokio::test]
async fn a_silent_server_is_dropped_and_redialled() {
    let fake = fake(false, |n, mut ws| async move {
        push(&mut ws, &hello()).await;
        if n == 0 {
            // Never read again: no pongs, no answers.
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
        serve(&mut ws).await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir, |c| {
        c.heartbeat = Duration::from_millis(100);
        c.heartbeat_grace = Duration::from_millis(200);
    })
    .await;
    let mut rx = client.subscribe();
    let ev = wait_for(&mut rx, "offline", |ev| {
        matches!(ev, ClientEvent::Connection(ConnectionState::Offline { .. }))
    })
    .await;
    assert!(format!("{ev:?}").contains("stopped answering"), "{ev:?}");
    wait_connections(&fake, 2).await;
    client.shutdown().await;
}

#[tokio::test]
async fn no_hello_and_non_websocket_peers_are_retried() {
    // A server that upgrades but never says hello.
    let fake_quiet = fake(false, |_, mut ws| async move { serve(&mut ws).await }).await;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake_quiet, &dir, |c| {
        c.connect_timeout = Duration::from_millis(200)
    })
    .await;
    wait_connections(&fake_quiet, 2).await;
    assert!(matches!(
        client.connection_state(),
        ConnectionState::Offline { .. } | ConnectionState::Connecting
    ));
    client.shutdown().await;

    // A plain TCP peer that answers garbage to the upgrade.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            use tokio::io::AsyncWriteExt;
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nhi!")
                .await;
        }
    });
    let dir2 = tempfile::tempdir().unwrap();
    let mut cfg = config(&format!("http://{addr}").parse().unwrap(), dir2.path());
    cfg.connect_timeout = Duration::from_millis(500);
    let client = Client::start(
        cfg,
        Session {
            token: "t".into(),
            user: user("alice"),
            expires_at: 0,
            device_token: None,
        },
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while accepted.load(Ordering::SeqCst) < 3 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(
        client.connection_state(),
        ConnectionState::Offline { .. } | ConnectionState::Connecting
    ));
    client.shutdown().await;
}

#[tokio::test]
async fn rejected_outbox_messages_fail_with_the_reason_and_transient_ones_are_retried() {
    // The fake answers: 1st send rate_limited, then its retry (same id) sent; 2nd send forbidden.
    let seen: Arc<Mutex<Vec<(uuid::Uuid, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let fake = fake(false, move |_, mut ws| {
        let log = log.clone();
        async move {
            push(&mut ws, &hello()).await;
            let mut seq = 0;
            while let Some(Ok(msg)) = ws.next().await {
                let Ws::Text(t) = msg else { continue };
                let Ok(frame) = serde_json::from_str::<ClientFrame>(t.as_str()) else {
                    continue;
                };
                let reply = match &frame {
                    ClientFrame::Send {
                        id,
                        client_msg_id,
                        text,
                        ..
                    } => {
                        log.lock().unwrap().push((*client_msg_id, text.clone()));
                        let attempts = log
                            .lock()
                            .unwrap()
                            .iter()
                            .filter(|(c, _)| c == client_msg_id)
                            .count();
                        if text == "first" && attempts == 1 {
                            ServerFrame::Error {
                                id: Some(*id),
                                code: ErrorCode::RateLimited,
                                message: "slow down".into(),
                            }
                        } else if text == "second" {
                            ServerFrame::Error {
                                id: Some(*id),
                                code: ErrorCode::Forbidden,
                                message: "not a member".into(),
                            }
                        } else {
                            seq += 1;
                            sent(*id, seq, text, *client_msg_id)
                        }
                    }
                    other => plain_answer(other),
                };
                push(&mut ws, &reply).await;
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir, |_| {}).await;
    let mut rx = client.subscribe();
    let first = client.send(Target::Conv(1), "first").await.unwrap();
    let second = client.send(Target::Conv(1), "second").await.unwrap();
    let third = client.send(Target::Conv(1), "third").await.unwrap();
    assert_eq!(first.state, MessageState::Pending);
    let failed = wait_for(&mut rx, "second to fail", |ev| {
        matches!(ev, ClientEvent::Message(MessageEvent { message: m, .. }) if m.local_id == second.local_id && m.state == MessageState::Failed)
    })
    .await;
    let ClientEvent::Message(MessageEvent {
        message: failed, ..
    }) = failed
    else {
        unreachable!()
    };
    assert_eq!(failed.error.as_deref(), Some("not a member"));
    tokio::time::timeout(Duration::from_secs(10), client.wait_outbox_empty())
        .await
        .unwrap()
        .unwrap();
    let page = client.history(1, None, 10).await.unwrap();
    let texts: Vec<_> = page.iter().map(|m| (m.text.as_str(), m.state)).collect();
    assert_eq!(
        texts,
        [
            ("first", MessageState::Sent),
            ("third", MessageState::Sent),
            ("second", MessageState::Failed)
        ]
    );
    let log = seen.lock().unwrap().clone();
    let ids: Vec<_> = log.iter().map(|(id, _)| id.to_string()).collect();
    // The rate-limited message was retried with the same id and before "third": order kept.
    assert_eq!(
        ids,
        [
            first.local_id.clone(),
            first.local_id.clone(),
            second.local_id.clone(),
            third.local_id.clone()
        ]
    );
    // A retry of the failed one goes out again with the same id (and fails again here).
    let again = client.retry(&second.local_id).await.unwrap();
    assert_eq!(again.state, MessageState::Pending);
    wait_for(&mut rx, "second to fail again", |ev| {
        matches!(ev, ClientEvent::Message(MessageEvent { message: m, .. }) if m.local_id == second.local_id && m.state == MessageState::Failed)
    })
    .await;
    assert!(matches!(
        client.retry("no-such-id").await,
        Err(ClientError::NotFound(_))
    ));
    client.shutdown().await;
}

#[tokio::test]
async fn offline_start_is_instant_and_queues() {
    // Nothing listens on this port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let server: url::Url = format!("http://127.0.0.1:{port}").parse().unwrap();
    let t0 = std::time::Instant::now();
    let client = Client::start(
        config(&server, dir.path()),
        Session {
            token: "t".into(),
            user: user("alice"),
            expires_at: 0,
            device_token: None,
        },
    )
    .await
    .unwrap();
    assert!(t0.elapsed() < Duration::from_millis(500));
    let m = client
        .send(Target::To("bob".into()), "while offline")
        .await
        .unwrap();
    assert_eq!((m.state, m.conv), (MessageState::Pending, None));
    assert!(matches!(client.rooms().await, Err(ClientError::Offline(_))));
    assert!(matches!(
        client.send(Target::Conv(1), "   ").await,
        Err(ClientError::Invalid(_))
    ));
    assert!(matches!(
        client.send(Target::To("bad name".into()), "x").await,
        Err(ClientError::Invalid(_))
    ));
    let mut state = client.connection_watch();
    tokio::time::timeout(
        Duration::from_secs(5),
        state.wait_for(|s| matches!(s, ConnectionState::Offline { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    client.shutdown().await;
    // The queued message survives a restart.
    let client = Client::resume(config(&server, dir.path()))
        .await
        .unwrap()
        .unwrap();
    let outbox = client.outbox().await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].local_id, m.local_id);
    client.shutdown().await;
}

#[tokio::test]
async fn reconnect_now_skips_a_long_backoff() {
    let fake = fake(false, |n, mut ws| async move {
        push(&mut ws, &hello()).await;
        if n == 0 {
            close_and_drain(&mut ws, close::GOING_AWAY, "restarting").await;
            return;
        }
        serve(&mut ws).await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir, |c| {
        c.backoff_min = Duration::from_secs(60);
        c.backoff_max = Duration::from_secs(120);
    })
    .await;
    let mut state = client.connection_watch();
    let retry_at = tokio::time::timeout(
        Duration::from_secs(5),
        state.wait_for(|s| matches!(s, ConnectionState::Offline { .. })),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    let ConnectionState::Offline { retry_at, .. } = retry_at else {
        unreachable!()
    };
    let wait = retry_at - now_ms();
    assert!(
        wait >= 25_000,
        "jittered backoff of at least half of 60 s, got {wait} ms"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.connections.load(Ordering::SeqCst), 1);
    client.reconnect_now();
    tokio::time::timeout(Duration::from_secs(5), client.wait_synced())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fake.connections.load(Ordering::SeqCst), 2);
    client.shutdown().await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn an_unacknowledged_send_redials_and_resends_with_the_same_id() {
    let seen: Arc<Mutex<Vec<(usize, uuid::Uuid)>>> = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let fake = fake(false, move |n, mut ws| {
        let log = log.clone();
        async move {
            push(&mut ws, &hello()).await;
            while let Some(Ok(msg)) = ws.next().await {
                let Ws::Text(t) = msg else { continue };
                let Ok(frame) = serde_json::from_str::<ClientFrame>(t.as_str()) else {
                    continue;
                };
                let reply = match &frame {
                    // The first connection swallows sends: no ack, no error.
                    ClientFrame::Send { client_msg_id, .. } if n == 0 => {
                        log.lock().unwrap().push((n, *client_msg_id));
                        continue;
                    }
                    ClientFrame::Send {
                        id,
                        client_msg_id,
                        text,
                        ..
                    } => {
                        log.lock().unwrap().push((n, *client_msg_id));
                        sent(*id, 1, text, *client_msg_id)
                    }
                    other => plain_answer(other),
                };
                push(&mut ws, &reply).await;
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir, |c| {
        c.request_timeout = Duration::from_millis(300)
    })
    .await;
    let m = client.send(Target::Conv(1), "are you there").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), client.wait_outbox_empty())
        .await
        .unwrap()
        .unwrap();
    let log = seen.lock().unwrap().clone();
    let id: uuid::Uuid = m.local_id.parse().unwrap();
    assert_eq!(log, vec![(0, id), (1, id)]);
    let page = client.history(1, None, 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].state, MessageState::Sent);
    client.shutdown().await;
}

#[tokio::test]
async fn wait_synced_waits_for_the_resume_of_the_current_connection() {
    let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = answered.clone();
    let fake = fake(false, move |n, mut ws| {
        let flag = flag.clone();
        async move {
            push(&mut ws, &hello()).await;
            if n == 0 {
                serve_until_closed_after_sync(&mut ws).await;
                return;
            }
            // The second connection resumes slowly.
            while let Some(Ok(msg)) = ws.next().await {
                let Ws::Text(t) = msg else { continue };
                if let Ok(ClientFrame::Sync { id, .. }) = serde_json::from_str(t.as_str()) {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    flag.store(true, Ordering::SeqCst);
                    push(
                        &mut ws,
                        &ServerFrame::Ok {
                            id,
                            result: Reply::Synced { unread: vec![] },
                        },
                    )
                    .await;
                }
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir, |_| {}).await;
    let mut rx = client.subscribe();
    wait_for(&mut rx, "offline after the first connection", |ev| {
        matches!(ev, ClientEvent::Connection(ConnectionState::Offline { .. }))
    })
    .await;
    wait_for(&mut rx, "online again", |ev| {
        matches!(ev, ClientEvent::Connection(ConnectionState::Online))
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), client.wait_synced())
        .await
        .unwrap()
        .unwrap();
    assert!(
        answered.load(Ordering::SeqCst),
        "returned before the new resume finished"
    );
    client.shutdown().await;
}

/// Answers the first `sync`, then closes with 1001 (a server restart).
async fn serve_until_closed_after_sync(ws: &mut Sock) {
    while let Some(Ok(msg)) = ws.next().await {
        let Ws::Text(t) = msg else { continue };
        if let Ok(ClientFrame::Sync { id, .. }) = serde_json::from_str(t.as_str()) {
            push(
                ws,
                &ServerFrame::Ok {
                    id,
                    result: Reply::Synced { unread: vec![] },
                },
            )
            .await;
            let _ = ws
                .close(Some(CloseFrame {
                    code: CloseCode::from(close::GOING_AWAY),
                    reason: "restart".into(),
                }))
                .await;
        }
    }
}

#[tokio::test]
async fn backoff_grows_while_connections_fail_and_resets_after_a_stable_one() {
    let fake = fake(false, |n, mut ws| async move {
        push(&mut ws, &hello()).await;
        match n {
            // Four connections that die at once, then one that lasts, then one that dies again.
            0..=3 | 5 => {}
            4 => tokio::time::sleep(Duration::from_millis(400)).await,
            _ => return serve(&mut ws).await,
        }
        close_and_drain(&mut ws, close::INTERNAL, "boom").await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir, |c| {
        c.backoff_min = Duration::from_millis(50);
        c.backoff_max = Duration::from_secs(10);
        c.stable_after = Duration::from_millis(200);
    })
    .await;
    let mut rx = client.subscribe();
    let mut delays = Vec::new();
    while delays.len() < 6 {
        if let ClientEvent::Connection(ConnectionState::Offline { retry_at, .. }) =
            wait_for(&mut rx, "offline", |ev| {
                matches!(ev, ClientEvent::Connection(ConnectionState::Offline { .. }))
            })
            .await
        {
            delays.push(retry_at - now_ms());
        }
    }
    // Each quick failure doubles the base (50, 100, 200, 400 ms; jitter keeps at least half).
    assert!(delays[0] <= 50 && delays[3] >= 150, "growing: {delays:?}");
    // The stable connection (index 4) reset it: back to at most the minimum.
    assert!(
        delays[4] <= 50,
        "reset after a stable connection: {delays:?}"
    );
    // And the next quick failure grows from the minimum again.
    assert!(delays[5] <= 100, "{delays:?}");
    client.shutdown().await;
}

/// A server that stops answering once the client is synced (a half-open connection: the socket
/// stays open, nothing comes back) is noticed `heartbeat + heartbeat_grace` after the last
/// frame, on the liveness timer, not at the next ping tick (which would be up to one
/// `heartbeat` later).
#[tokio::test]
async fn a_half_open_connection_is_noticed_after_heartbeat_plus_grace() {
    let fake = fake(false, |n, mut ws| async move {
        push(&mut ws, &hello()).await;
        if n == 0 {
            while let Some(Ok(msg)) = ws.next().await {
                let Ws::Text(t) = msg else { continue };
                let Ok(frame) = serde_json::from_str::<ClientFrame>(t.as_str()) else {
                    continue;
                };
                push(&mut ws, &plain_answer(&frame)).await;
                if matches!(frame, ClientFrame::Sync { .. }) {
                    break;
                }
            }
            // Hold the socket, read nothing: no pongs, no answers.
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        serve(&mut ws).await;
    })
    .await;
    let heartbeat = Duration::from_secs(3);
    let grace = Duration::from_millis(500);
    let dir = tempfile::tempdir().unwrap();
    let client = start(&fake, &dir, |c| {
        c.heartbeat = heartbeat;
        c.heartbeat_grace = grace;
    })
    .await;
    let mut rx = client.subscribe();
    tokio::time::timeout(Duration::from_secs(10), client.wait_synced())
        .await
        .unwrap()
        .unwrap();
    let silent_since = std::time::Instant::now();
    let reason = wait_offline(&mut rx).await;
    let detected = silent_since.elapsed();
    println!("half-open connection detected after {detected:?} (heartbeat {heartbeat:?} + grace {grace:?})");
    assert!(reason.contains("stopped answering"), "{reason}");
    // The next ping tick after the limit would be at 2 x heartbeat = 6 s.
    assert!(
        detected < heartbeat + grace + Duration::from_millis(1200),
        "{detected:?}"
    );
    client.shutdown().await;
}

/// A fake HTTP server answering every request with `head` and then `body_chunk` over and over
/// until the client goes away.
async fn endless_http(head: &'static str, body_chunk: &'static [u8]) -> url::Url {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                if tcp.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                while tcp.write_all(body_chunk).await.is_ok() {}
            });
        }
    });
    format!("http://{addr}").parse().unwrap()
}

#[tokio::test]
async fn an_http_answer_larger_than_the_protocol_allows_is_refused() {
    // Declared too large: refused before reading.
    let declared = endless_http(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n",
        b"{\"status\":\"ok\",                                              ",
    )
    .await;
    // No length, chunked without end: refused once past the limit.
    let chunked = endless_http(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"40\r\n                                                                \r\n",
    )
    .await;
    for server in [declared, chunked] {
        let started = std::time::Instant::now();
        let err = natter::client::http::health(&server).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Server(ref m) if m.contains("larger than")),
            "{server}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
