//! Authorisation and hostile input: DM isolation, rooms left behind, bad frames and floods each
//! answered with their documented error or close code while a bystander keeps chatting, and
//! HTTP-level refusals (no/wrong/expired/revoked token, bad origin, no subprotocol, slowloris).

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::SinkExt;

use natter::protocol::{close, ClientFrame, ConvSeq, ErrorCode, Reply, ServerFrame, Target};
use support::{handshake_status, TestServer, WsClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

/// Two users chatting in `general` for as long as the returned handle runs: every message must
/// arrive, in order, with no error. Stop it with the sender and check its result: it sends at
/// least [`BYSTANDER_MESSAGES_AFTER_STOP`] more after the stop, so the chat is proved alive after
/// whatever the test did, however fast the test ran (a manual clock makes some take milliseconds).
const BYSTANDER_MESSAGES_AFTER_STOP: usize = 3;

struct Bystanders {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<usize>,
}

async fn bystanders(server: &TestServer) -> Bystanders {
    let p = server.register("patient").await;
    let q = server.register("quiet").await;
    let mut a = server.connect(&p.token).await;
    let mut b = server.connect(&q.token).await;
    let general = a.general();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut n = 0usize;
        let mut stop_at = None;
        loop {
            if stop_at.is_none() && stopped.try_recv().is_ok() {
                stop_at = Some(n + BYSTANDER_MESSAGES_AFTER_STOP);
            }
            if stop_at.is_some_and(|last| n >= last) {
                return n;
            }
            n += 1;
            let text = format!("still here {n}");
            let sent = a.send_text(general, &text).await;
            let got = b.wait_for(|f| matches!(f, ServerFrame::Message { message } if message.sender == "patient")).await;
            let ServerFrame::Message { message } = got else {
                unreachable!()
            };
            assert_eq!(
                message, sent,
                "bystander message {n} arrives intact and in order"
            );
            // 10 per second: well under the tightest rate limit these tests configure (20/s).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Bystanders { stop, task }
}

impl Bystanders {
    async fn finish(self) -> usize {
        let _ = self.stop.send(());
        self.task.await.expect("bystanders were not disturbed")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_user_cannot_read_page_resume_post_into_or_learn_of_a_dm() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let mut a = server.connect(&alice.token).await;
    let mut b = server.connect(&bob.token).await;
    let mut c = server.connect(&carol.token).await;
    let general = c.general();

    let message = a.send_dm("bob", "secret").await.unwrap();
    let dm = message.conv;
    let added = b
        .wait_for(|f| matches!(f, ServerFrame::ConversationAdded { .. }))
        .await;
    let ServerFrame::ConversationAdded { conversation } = added else {
        unreachable!()
    };
    assert_eq!(conversation.id, dm);
    assert_eq!(
        conversation.name, "alice",
        "a DM is named after the other user"
    );
    b.wait_for(|f| matches!(f, ServerFrame::Message { message } if message.text == "secret"))
        .await;

    let not_found =
        |r: Result<Reply, (ErrorCode, String)>| assert_eq!(r.unwrap_err().0, ErrorCode::NotFound);
    not_found(c.history(dm, None, None, 50).await.map(|_| Reply::Done));
    not_found(c.history(dm, None, Some(0), 50).await.map(|_| Reply::Done));
    not_found(
        c.request(|id| ClientFrame::Send {
            id,
            target: Target::Conv(dm),
            client_msg_id: Uuid::new_v4(),
            text: "let me in".into(),
            reply_to: None,
            attachments: Vec::new(),
        })
        .await,
    );
    not_found(c.request(|id| ClientFrame::Members { id, conv: dm }).await);
    not_found(c.request(|id| ClientFrame::Typing { id, conv: dm }).await);
    not_found(
        c.request(|id| ClientFrame::Read {
            id,
            conv: dm,
            seq: 1,
        })
        .await,
    );
    not_found(c.request(|id| ClientFrame::Leave { id, conv: dm }).await);
    // A DM carol is not in answers exactly like one that does not exist.
    let unknown = c.history(999_999, None, None, 5).await.unwrap_err();
    let hidden = c.history(dm, None, None, 5).await.unwrap_err();
    assert_eq!(unknown, hidden);

    // Resume naming the DM replays nothing from it.
    let id = c.next_id();
    c.send_frame(&ClientFrame::Sync {
        id,
        since: vec![
            ConvSeq { conv: dm, seq: 0 },
            ConvSeq {
                conv: general,
                seq: 0,
            },
        ],
    })
    .await;
    loop {
        match c.recv().await.expect("frame") {
            ServerFrame::Batch { conv, .. } => {
                assert_ne!(conv, dm, "no replay of someone else's DM")
            }
            ServerFrame::Ok {
                id: got,
                result: Reply::Synced { unread },
            } if got == id => {
                assert!(unread.iter().all(|u| u.conv != dm));
                break;
            }
            _ => {}
        }
    }
    // Not in her room list, not in her hello after reconnecting, never pushed to her.
    let Reply::Rooms { rooms } = c.request(|id| ClientFrame::Rooms { id }).await.unwrap() else {
        panic!()
    };
    assert!(rooms.iter().all(|r| r.id != dm));
    let c2 = server.connect(&carol.token).await;
    let Some(ServerFrame::Hello {
        conversations,
        unread,
        ..
    }) = &c2.hello
    else {
        panic!()
    };
    assert!(conversations.iter().all(|cv| cv.id != dm));
    assert!(unread.iter().all(|u| u.conv != dm));
    // A marker after more DM traffic proves nothing of the DM reached carol.
    a.send_text(dm, "more secrets").await;
    let marker = b.send_text(general, "marker").await;
    loop {
        let f = c.next().await.expect("frame");
        match &f {
            ServerFrame::Message { message }
                if message.seq == marker.seq && message.conv == general =>
            {
                break
            }
            ServerFrame::Message { message } => assert_ne!(message.conv, dm),
            ServerFrame::ConversationAdded { conversation } => assert_ne!(conversation.id, dm),
            ServerFrame::Typing { conv, .. } | ServerFrame::Read { conv, .. } => {
                assert_ne!(*conv, dm)
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_posts_as_someone_else_and_a_left_room_is_closed_to_its_leaver() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let carol = server.register("carol").await;
    let mut a = server.connect(&alice.token).await;
    let mut c = server.connect(&carol.token).await;
    let general = c.general();

    // A forged `sender` field is ignored: the sender is always the authenticated user.
    let id = c.next_id();
    let forged = serde_json::json!({"type": "send", "id": id, "conv": general, "sender": "alice",
        "client_msg_id": Uuid::new_v4(), "text": "I am alice"});
    c.send_raw(WsMessage::text(forged.to_string())).await;
    let Reply::Sent { message } = c.answer(id).await.unwrap() else {
        panic!()
    };
    assert_eq!(message.sender, "carol");
    let pushed = a
        .wait_for(|f| matches!(f, ServerFrame::Message { .. }))
        .await;
    assert!(matches!(pushed, ServerFrame::Message { message } if message.sender == "carol"));

    let Reply::Joined { conversation } = a
        .request(|id| ClientFrame::CreateRoom {
            private: false,
            id,
            name: "lobby".into(),
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    let lobby = conversation.id;
    c.request(|id| ClientFrame::Join {
        id,
        room: "LOBBY".into(),
    })
    .await
    .unwrap();
    c.send_text(lobby, "hi").await;
    c.request(|id| ClientFrame::Leave { id, conv: lobby })
        .await
        .unwrap();
    let forbidden =
        |r: Result<Reply, (ErrorCode, String)>| assert_eq!(r.unwrap_err().0, ErrorCode::Forbidden);
    forbidden(
        c.request(|id| ClientFrame::Send {
            id,
            target: Target::Conv(lobby),
            client_msg_id: Uuid::new_v4(),
            text: "back".into(),
            reply_to: None,
            attachments: Vec::new(),
        })
        .await,
    );
    forbidden(c.history(lobby, None, None, 10).await.map(|_| Reply::Done));
    forbidden(
        c.request(|id| ClientFrame::Typing { id, conv: lobby })
            .await,
    );
    forbidden(
        c.request(|id| ClientFrame::Read {
            id,
            conv: lobby,
            seq: 1,
        })
        .await,
    );
    forbidden(
        c.request(|id| ClientFrame::Members { id, conv: lobby })
            .await,
    );
    forbidden(c.request(|id| ClientFrame::Leave { id, conv: lobby }).await);
    // Leaving the default room is refused.
    forbidden(
        c.request(|id| ClientFrame::Leave { id, conv: general })
            .await,
    );
    a.send_text(lobby, "after carol left").await;
    let marker = a.send_text(general, "marker").await;
    loop {
        match c.next().await.expect("frame") {
            ServerFrame::Message { message } if message.id == marker.id => break,
            ServerFrame::Message { message } => {
                assert_ne!(message.conv, lobby, "no messages from a room she left")
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_their_codes_while_bystanders_chat() {
    let server = TestServer::start_with(|c| {
        c.rate_limit_per_sec = 20;
        c.rate_burst = 20;
        c.flood_close_after = 60;
    })
    .await;
    let crowd = bystanders(&server).await;
    let mallory = server.register("mallory").await;
    let mut m = server.connect(&mallory.token).await;
    let general = m.general();

    let error_for = |f: Option<ServerFrame>| match f {
        Some(ServerFrame::Error { id, code, .. }) => (id, code),
        other => panic!("expected an error frame, got {other:?}"),
    };
    // Malformed JSON: bad_request without an id (it could not be read).
    m.send_raw(WsMessage::text("{this is not json")).await;
    assert_eq!(
        error_for(m.next_error().await),
        (None, ErrorCode::BadRequest)
    );
    // Unknown type: unknown_type, with the id.
    m.send_raw(WsMessage::text(r#"{"type":"explode","id":5}"#))
        .await;
    assert_eq!(
        error_for(m.next_error().await),
        (Some(5), ErrorCode::UnknownType)
    );
    // Missing fields.
    m.send_raw(WsMessage::text(r#"{"type":"send","id":6}"#))
        .await;
    assert_eq!(
        error_for(m.next_error().await),
        (Some(6), ErrorCode::BadRequest)
    );
    // Mistyped fields.
    m.send_raw(WsMessage::text(
        r#"{"type":"history","id":7,"conv":"general","limit":10}"#,
    ))
    .await;
    assert_eq!(
        error_for(m.next_error().await),
        (Some(7), ErrorCode::BadRequest)
    );
    m.send_raw(WsMessage::text(
        r#"{"type":"send","id":8,"conv":1,"client_msg_id":"nope","text":"x"}"#,
    ))
    .await;
    assert_eq!(
        error_for(m.next_error().await),
        (Some(8), ErrorCode::BadRequest)
    );
    // No type at all, and JSON that is not an object.
    m.send_raw(WsMessage::text(r#"{"id":9}"#)).await;
    assert_eq!(
        error_for(m.next_error().await),
        (Some(9), ErrorCode::BadRequest)
    );
    m.send_raw(WsMessage::text("[1,2,3]")).await;
    assert_eq!(
        error_for(m.next_error().await),
        (None, ErrorCode::BadRequest)
    );
    // Text over 4,000 characters, an empty text, and both/neither of conv and to.
    let long = "字".repeat(4_001);
    assert_eq!(
        m.send_with_id(general, &long, Uuid::new_v4())
            .await
            .unwrap_err()
            .0,
        ErrorCode::TooLong
    );
    assert_eq!(
        m.send_with_id(general, "  ", Uuid::new_v4())
            .await
            .unwrap_err()
            .0,
        ErrorCode::BadRequest
    );
    // Both targets at once cannot be built as a ClientFrame: send the JSON.
    let id = m.next_id();
    m.send_raw(WsMessage::text(format!(
        r#"{{"type":"send","id":{id},"conv":{general},"to":"patient","client_msg_id":"{}","text":"x"}}"#,
        Uuid::new_v4()
    )))
    .await;
    let both = m.answer(id).await;
    assert_eq!(both.unwrap_err().0, ErrorCode::BadRequest);
    // Names that cannot exist.
    let r = m
        .request(|id| ClientFrame::CreateRoom {
            private: false,
            id,
            name: "no spaces".into(),
        })
        .await;
    assert_eq!(r.unwrap_err().0, ErrorCode::InvalidName);
    let r = m
        .request(|id| ClientFrame::Join {
            id,
            room: "nowhere".into(),
        })
        .await;
    assert_eq!(r.unwrap_err().0, ErrorCode::NotFound);
    // After all that the socket still works.
    m.send_text(general, "still fine").await;

    // A 1 MiB frame: close 1009.
    let mut big = server.connect(&mallory.token).await;
    let _ = big.ws.send(WsMessage::text("x".repeat(1 << 20))).await;
    assert_eq!(big.expect_close().await, Some(close::TOO_BIG));
    // Invalid UTF-8 in a text frame: close 1007.
    let mut bad = server.connect(&mallory.token).await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    bad.send_raw(WsMessage::Frame(frame)).await;
    assert_eq!(bad.expect_close().await, Some(close::INVALID_PAYLOAD));
    // A binary frame of garbage: close 1003.
    let mut bin = server.connect(&mallory.token).await;
    bin.send_raw(WsMessage::binary(vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0x13]))
        .await;
    assert_eq!(bin.expect_close().await, Some(close::UNSUPPORTED_DATA));

    // A flood at 10x the rate limit (200 frames/s against 20/s): rate_limited errors, nothing
    // stored for them, then close 4003.
    tokio::time::sleep(Duration::from_millis(1_100)).await; // let the bucket refill
    let mut flood = server.connect(&mallory.token).await;
    let (mut acked, mut limited) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let mut closed = None;
    'flood: for i in 0..2_000u64 {
        let frame = ClientFrame::Send {
            id: i + 1,
            target: Target::Conv(general),
            client_msg_id: Uuid::new_v4(),
            text: format!("flood {i}"),
            reply_to: None,
            attachments: Vec::new(),
        };
        if flood
            .ws
            .send(WsMessage::text(serde_json::to_string(&frame).unwrap()))
            .await
            .is_err()
        {
            break;
        }
        // 200 per second.
        let due = start + Duration::from_millis(5 * (i + 1));
        while Instant::now() < due {
            match tokio::time::timeout_at(due.into(), futures_util::StreamExt::next(&mut flood.ws))
                .await
            {
                Ok(Some(Ok(WsMessage::Text(t)))) => {
                    match serde_json::from_str::<ServerFrame>(&t).unwrap() {
                        ServerFrame::Ok {
                            result: Reply::Sent { message },
                            ..
                        } => acked.push(message.text),
                        ServerFrame::Error {
                            id: Some(id),
                            code: ErrorCode::RateLimited,
                            ..
                        } => limited.push(format!("flood {}", id - 1)),
                        _ => {}
                    }
                }
                Ok(Some(Ok(WsMessage::Close(f)))) => {
                    closed = f.map(|f| u16::from(f.code));
                    break 'flood;
                }
                Ok(Some(Ok(_))) => {}
                Ok(_) => break 'flood,
                Err(_) => break,
            }
        }
    }
    if closed.is_none() {
        closed = flood.expect_close().await;
    }
    assert_eq!(
        closed,
        Some(close::RATE_LIMITED),
        "a sustained flood is closed with 4003"
    );
    assert!(!limited.is_empty(), "rate_limited errors before the close");
    assert!(
        acked.len() <= 20 + 20 * 3,
        "only about burst + rate x time got through ({})",
        acked.len()
    );
    // Every acked flood message is stored and no rate-limited one is (checked as another user:
    // mallory's bucket is empty). A message admitted just before the close may be stored without
    // its ack having reached the client; that is the ordinary unacked case.
    let auditor = server.register("auditor").await;
    let mut check = server.connect(&auditor.token).await;
    let stored: HashSet<String> = check
        .all_history(general)
        .await
        .into_iter()
        .map(|m| m.text)
        .filter(|t| t.starts_with("flood "))
        .collect();
    assert!(
        acked.iter().all(|t| stored.contains(t)),
        "acked messages are stored"
    );
    assert!(
        !limited.iter().any(|t| stored.contains(t)),
        "rate-limited messages are not stored"
    );
    assert!(
        stored.len() <= acked.len() + 2,
        "{} stored, {} acked",
        stored.len(),
        acked.len()
    );

    crowd.finish().await;
    let health = reqwest::get(server.http_url("/api/health")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200, "the server keeps running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_refusals_and_auth_frame_rules() {
    let server = TestServer::start_with(|c| {
        c.auth_timeout = Duration::from_millis(800);
        c.handshake_timeout = Duration::from_millis(800);
        c.max_unauthenticated_per_ip = 2;
        c.allowed_origins = vec!["https://chat.example".into()];
    })
    .await;
    let crowd = bystanders(&server).await;
    let alice = server.register("alice").await;
    let url = server.ws_url();

    // Wrong token: 401, no socket.
    let e = WsClient::connect(&url, Some("not-a-real-token"))
        .await
        .err()
        .expect("refused");
    assert_eq!(handshake_status(&e), Some(401));
    // Revoked token (logout): 401.
    let spare = server.login("alice").await;
    let (status, _) = server
        .post("/api/logout", serde_json::json!({}), Some(&spare.token))
        .await;
    assert_eq!(status, 204);
    let e = WsClient::connect(&url, Some(&spare.token))
        .await
        .err()
        .expect("refused");
    assert_eq!(handshake_status(&e), Some(401));
    let (status, _) = server
        .post("/api/logout", serde_json::json!({}), Some(&spare.token))
        .await;
    assert_eq!(status, 401, "a revoked token cannot log out again");

    // No subprotocol: 400. Foreign origin: 403. Allowed origin: fine.
    let raw = |origin: Option<&str>, protocol: bool| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.as_str().into_client_request().unwrap();
        if protocol {
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", "natter.v1".parse().unwrap());
        }
        req.headers_mut().insert(
            "Authorization",
            format!("Bearer {}", alice.token).parse().unwrap(),
        );
        if let Some(o) = origin {
            req.headers_mut().insert("Origin", o.parse().unwrap());
        }
        req
    };
    let e = tokio_tungstenite::connect_async(raw(None, false))
        .await
        .expect_err("refused");
    assert_eq!(handshake_status(&e), Some(400));
    let e = tokio_tungstenite::connect_async(raw(Some("https://evil.example"), true))
        .await
        .expect_err("refused");
    assert_eq!(handshake_status(&e), Some(403));
    let (ws, resp) = tokio_tungstenite::connect_async(raw(Some("https://chat.example"), true))
        .await
        .expect("allowed origin");
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "natter.v1"
    );
    drop(ws);

    // No token and no auth frame: close 1008 after the auth timeout.
    let mut silent = WsClient::connect(&url, None).await.unwrap();
    let t = Instant::now();
    assert_eq!(silent.expect_close().await, Some(close::POLICY));
    assert!(t.elapsed() >= Duration::from_millis(700));
    // No token, first frame not auth: 1008.
    let mut rude = WsClient::connect(&url, None).await.unwrap();
    rude.send_frame(&ClientFrame::Rooms { id: 1 }).await;
    assert_eq!(rude.expect_close().await, Some(close::POLICY));
    // No token, auth frame with a wrong token: unauthorized error, close 4001.
    let mut liar = WsClient::connect(&url, None).await.unwrap();
    liar.send_frame(&ClientFrame::Auth {
        id: 1,
        token: "forged".into(),
    })
    .await;
    assert!(matches!(
        liar.recv().await,
        Some(ServerFrame::Error {
            id: Some(1),
            code: ErrorCode::Unauthorized,
            ..
        })
    ));
    assert_eq!(liar.expect_close().await, Some(close::UNAUTHORIZED));
    // No token, good auth frame: authenticated, then hello.
    let mut browser = WsClient::connect(&url, None).await.unwrap();
    browser
        .send_frame(&ClientFrame::Auth {
            id: 1,
            token: alice.token.clone(),
        })
        .await;
    assert!(matches!(
        browser.recv().await,
        Some(ServerFrame::Ok {
            id: 1,
            result: Reply::Authenticated
        })
    ));
    browser.expect_hello().await;

    // At most 2 unauthenticated sockets per address: the third is refused with 429.
    let _p1 = WsClient::connect(&url, None).await.unwrap();
    let _p2 = WsClient::connect(&url, None).await.unwrap();
    let e = WsClient::connect(&url, None).await.err().expect("capped");
    assert_eq!(handshake_status(&e), Some(429));

    // Slowloris: request headers dribbled one byte at a time are cut off at the handshake timeout.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Slow: ";
    tcp.write_all(head).await.unwrap();
    let t = Instant::now();
    let cut = loop {
        if tcp.write_all(b"a").await.is_err() {
            break t.elapsed();
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break t.elapsed(),
            Ok(Ok(_)) => break t.elapsed(), // an error response, then close
            Err(_) => {}
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "slowloris connection still open after 5 s"
        );
    };
    assert!(cut < Duration::from_secs(3), "cut after {cut:?}");
    // A connection that never sends a byte is dropped the same way (EOF, an error response or a
    // reset, but not silence).
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let ended = tokio::time::timeout(Duration::from_secs(3), idle.read(&mut buf)).await;
    assert!(ended.is_ok(), "idle connection still open after 3 s");

    crowd.finish().await;
}

/// Token expiry on the server's clock: a manual clock moved past the token's lifetime, no
/// real waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_refused_and_its_open_socket_closed() {
    let clock = natter::server::Clock::manual();
    let server = TestServer::start_with(|c| {
        c.token_ttl = Duration::from_secs(3600);
        c.clock = clock.clone();
        // The socket checks its token's expiry every quarter of this.
        c.heartbeat_interval = Duration::from_millis(400);
    })
    .await;
    let alice = server.register("alice").await;
    let mut open = server.connect(&alice.token).await;
    clock.advance(Duration::from_secs(3599));
    let r = open.request(|id| ClientFrame::Rooms { id }).await;
    assert!(r.is_ok(), "a second before expiry the socket still works");
    clock.advance(Duration::from_secs(2));
    let e = WsClient::connect(&server.ws_url(), Some(&alice.token))
        .await
        .err()
        .expect("expired");
    assert_eq!(handshake_status(&e), Some(401));
    assert_eq!(open.expect_close().await, Some(close::UNAUTHORIZED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_closes_the_sockets_of_that_token_only() {
    let server = TestServer::start().await;
    let first = server.register("alice").await;
    let second = server.login("alice").await;
    let mut a1 = server.connect(&first.token).await;
    let mut a2 = server.connect(&first.token).await;
    let mut other = server.connect(&second.token).await;
    let (status, _) = server
        .post("/api/logout", serde_json::json!({}), Some(&first.token))
        .await;
    assert_eq!(status, 204);
    assert_eq!(a1.expect_close().await, Some(close::UNAUTHORIZED));
    assert_eq!(a2.expect_close().await, Some(close::UNAUTHORIZED));
    let r = other.request(|id| ClientFrame::Rooms { id }).await;
    assert!(r.is_ok(), "a socket with another token stays open");
    let (status, _) = server
        .post("/api/logout", serde_json::json!({}), None)
        .await;
    assert_eq!(status, 401, "logout without a token");
}

/// Password guessing from one address: ten wrong passwords (or unknown users) are each a 401,
/// then the address must wait: 429 with Retry-After even for the right password, so the
/// eleventh guess learns nothing. After the refill one more try is allowed and the right
/// password signs in. Signed-in users keep chatting throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_from_one_address_must_wait_then_may_try_again() {
    let clock = natter::server::Clock::manual();
    let server = TestServer::start_with(|c| {
        c.clock = clock.clone();
        // This is the per-address budget; the per-account delay (which would hold "target"
        // after 3 guesses) has its own tests in server_signin.rs.
        c.account_free_failures = 1_000;
    })
    .await;
    let chat = bystanders(&server).await;
    server.register("target").await;
    for i in 0..10 {
        let user = if i % 2 == 0 { "target" } else { "nobody" };
        let (status, body) = server
            .post(
                "/api/login",
                serde_json::json!({"username": user, "password": format!("guess-{i}")}),
                None,
            )
            .await;
        assert_eq!(status, 401, "guess {i}: {body}");
    }
    let resp = reqwest::Client::new()
        .post(server.http_url("/api/login"))
        .json(&serde_json::json!({"username": "target", "password": support::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429, "the right password waits too");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        retry, 30,
        "the default refill, on a clock that stands still"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited", "{body}");

    clock.advance(Duration::from_secs(29));
    let (status, _) = server
        .post(
            "/api/login",
            serde_json::json!({"username": "target", "password": support::PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, 429, "a second early");
    clock.advance(Duration::from_secs(1));
    let session = server.login("target").await;
    assert_eq!(session.user.username, "target");
    chat.finish().await;
}
