//! Core server behaviour over real HTTP and WebSockets: health, accounts, the hello, sending and
//! fan-out to every device of every member, history paging, resume, rooms, direct messages, read
//! markers, typing and presence.

mod support;

use natter::protocol::{ClientFrame, ConvKind, ConvSeq, ErrorCode, Reply, ServerFrame};
use support::TestServer;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_register_login_and_hello() {
    let server = TestServer::start().await;
    let health: serde_json::Value = reqwest::get(server.http_url("/api/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["protocol"], 1);
    let wrong = reqwest::get(server.http_url("/api/login")).await.unwrap();
    assert_eq!(wrong.status().as_u16(), 405);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["code"], "bad_request");
    let missing = reqwest::get(server.http_url("/nope")).await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "not_found");

    let alice = server.register("alice").await;
    assert_eq!(
        alice.user.display_name, "alice",
        "display name defaults to the username"
    );
    assert!(!alice.user.avatar.is_empty(), "an avatar preset is chosen");
    let zh = server.register("张伟").await;
    assert_eq!(zh.user.username, "张伟");
    let again = server.login("alice").await;
    assert_ne!(again.token, alice.token, "each login gets its own token");

    let mut ws = server.connect(&alice.token).await;
    let Some(ServerFrame::Hello {
        protocol,
        user,
        conversations,
        online,
        unread,
        heartbeat_ms,
        ..
    }) = ws.hello.clone()
    else {
        panic!()
    };
    assert_eq!(protocol, 1);
    assert_eq!(user.username, "alice");
    assert_eq!(heartbeat_ms, 25_000);
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0].name, "general");
    assert_eq!(conversations[0].kind, ConvKind::Room);
    assert_eq!(conversations[0].member_count, 2);
    assert_eq!(online, vec!["alice".to_string()]);
    assert_eq!(unread.len(), 1);
    let _ = ws.request(|id| ClientFrame::Users { id }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_rejects_bad_names_passwords_and_duplicates() {
    let server = TestServer::start().await;
    server.register("bob").await;
    for (body, status, code) in [
        (
            serde_json::json!({"username": "Bob", "password": "long enough"}),
            409,
            "conflict",
        ),
        (
            serde_json::json!({"username": "a b", "password": "long enough"}),
            400,
            "invalid_name",
        ),
        (
            serde_json::json!({"username": "", "password": "long enough"}),
            400,
            "invalid_name",
        ),
        (
            serde_json::json!({"username": "x".repeat(33), "password": "long enough"}),
            400,
            "invalid_name",
        ),
        (
            serde_json::json!({"username": "carol", "password": "short"}),
            400,
            "invalid_name",
        ),
        (serde_json::json!({"username": "carol"}), 400, "bad_request"),
        (
            serde_json::json!({"username": "carol", "password": "long enough", "admin": true}),
            400,
            "bad_request",
        ),
    ] {
        let (got, text) = server.post("/api/register", body.clone(), None).await;
        assert_eq!(got, status, "{body}: {text}");
        let err: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(err["code"], code, "{body}");
    }
    // A wrong password and an unknown user get the same answer.
    for name in ["bob", "nobody"] {
        let body = serde_json::json!({"username": name, "password": "wrong password"});
        let (status, text) = server.post("/api/login", body, None).await;
        assert_eq!(status, 401, "{name}: {text}");
        assert!(text.contains("\"unauthorized\""), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_reaches_every_device_of_every_member_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    // Carol and Dave stay offline, so the room has more members than online users and the
    // fan-out walks the online users instead of the members.
    server.register("carol").await;
    server.register("dave").await;
    let mut a1 = server.connect(&alice.token).await;
    let mut a2 = server.connect(&alice.token).await;
    let mut b = server.connect(&bob.token).await;
    let general = a1.general();

    let sent = a1.send_text(general, "hello 你好").await;
    assert_eq!(sent.seq, 1);
    assert_eq!(sent.sender, "alice");
    for c in [&mut a2, &mut b] {
        let f = c
            .wait_for(|f| matches!(f, ServerFrame::Message { .. }))
            .await;
        let ServerFrame::Message { message } = f else {
            unreachable!()
        };
        assert_eq!(message, sent);
    }
    // The sending socket got the ack, not a second copy.
    let next = b.send_text(general, "hi alice").await;
    assert_eq!(next.seq, 2);
    let f = a1
        .wait_for(|f| matches!(f, ServerFrame::Message { .. }))
        .await;
    assert!(
        matches!(f, ServerFrame::Message { message } if message.seq == 2),
        "a1 sees seq 2 next, not a duplicate of 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_before_and_after() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut a = server.connect(&alice.token).await;
    let general = a.general();
    for i in 1..=25 {
        a.send_text(general, &format!("m{i}")).await;
    }
    let (messages, has_more) = a.history(general, None, None, 10).await.unwrap();
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (16..=25).collect::<Vec<_>>()
    );
    assert!(has_more);
    let (messages, has_more) = a.history(general, Some(6), None, 10).await.unwrap();
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=5).collect::<Vec<_>>()
    );
    assert!(!has_more);
    let (messages, has_more) = a.history(general, None, Some(20), 3).await.unwrap();
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![21, 22, 23]
    );
    assert!(has_more);
    for limit in [0, 201] {
        let err = a.history(general, None, None, limit).await.unwrap_err();
        assert_eq!(err.0, ErrorCode::BadRequest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_missed_messages_in_pages_then_synced() {
    let server = TestServer::start_with(|c| {
        c.rate_limit_per_sec = 10_000;
        c.rate_burst = 10_000;
    })
    .await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut a = server.connect(&alice.token).await;
    let general = a.general();
    for i in 1..=450 {
        a.send_with_id(general, &format!("m{i}"), Uuid::new_v4())
            .await
            .unwrap_or_else(|e| panic!("{i}: {e:?}"));
    }
    let mut b = server.connect(&bob.token).await;
    let id = b.next_id();
    b.send_frame(&ClientFrame::Sync {
        id,
        since: vec![ConvSeq {
            conv: general,
            seq: 10,
        }],
    })
    .await;
    let mut seqs = Vec::new();
    loop {
        match b.recv().await.expect("frame") {
            ServerFrame::Batch { conv, messages } => {
                assert_eq!(conv, general);
                assert!(messages.len() <= 200);
                seqs.extend(messages.iter().map(|m| m.seq));
            }
            ServerFrame::Ok {
                id: got,
                result: Reply::Synced { unread },
            } if got == id => {
                assert_eq!(
                    unread.iter().find(|u| u.conv == general).unwrap().count,
                    450
                );
                break;
            }
            _ => {}
        }
    }
    assert_eq!(seqs, (11..=450).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_create_join_leave_list_and_members() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut a = server.connect(&alice.token).await;
    let mut a2 = server.connect(&alice.token).await;
    let mut b = server.connect(&bob.token).await;

    let Reply::Joined { conversation } = a
        .request(|id| ClientFrame::CreateRoom {
            private: false,
            id,
            name: "Rust".into(),
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (conversation.name.as_str(), conversation.member_count),
        ("Rust", 1)
    );
    let rust = conversation.id;
    // The creator's other device learns of it.
    a2.wait_for(
        |f| matches!(f, ServerFrame::ConversationAdded { conversation } if conversation.id == rust),
    )
    .await;
    let dup = a
        .request(|id| ClientFrame::CreateRoom {
            private: false,
            id,
            name: "rust".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        dup.0,
        ErrorCode::Conflict,
        "room names are unique regardless of case"
    );

    let Reply::Rooms { rooms } = b.request(|id| ClientFrame::Rooms { id }).await.unwrap() else {
        panic!()
    };
    let listed: Vec<(String, u32, bool)> = rooms
        .iter()
        .map(|r| (r.name.clone(), r.member_count, r.joined))
        .collect();
    assert_eq!(
        listed,
        vec![("general".into(), 2, true), ("Rust".into(), 1, false)]
    );

    let Reply::Joined { conversation } = b
        .request(|id| ClientFrame::Join {
            id,
            room: "rust".into(),
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((conversation.id, conversation.member_count), (rust, 2));
    a.wait_for(|f| matches!(f, ServerFrame::Membership { conv, username, joined: true } if *conv == rust && username == "bob")).await;
    let again = b
        .request(|id| ClientFrame::Join {
            id,
            room: "Rust".into(),
        })
        .await
        .unwrap();
    assert!(
        matches!(again, Reply::Joined { .. }),
        "joining twice is harmless"
    );
    let Reply::Members { members, .. } = a
        .request(|id| ClientFrame::Members { id, conv: rust })
        .await
        .unwrap()
    else {
        panic!()
    };
    let names: Vec<(&str, bool)> = members
        .iter()
        .map(|m| (m.user.username.as_str(), m.online))
        .collect();
    assert_eq!(names, vec![("alice", true), ("bob", true)]);

    let msg = b.send_text(rust, "hello rustaceans").await;
    a.wait_for(|f| matches!(f, ServerFrame::Message { message } if message.id == msg.id))
        .await;

    assert!(matches!(
        b.request(|id| ClientFrame::Leave { id, conv: rust })
            .await
            .unwrap(),
        Reply::Done
    ));
    a.wait_for(|f| matches!(f, ServerFrame::Membership { conv, username, joined: false } if *conv == rust && username == "bob")).await;
    let Reply::Rooms { rooms } = b.request(|id| ClientFrame::Rooms { id }).await.unwrap() else {
        panic!()
    };
    assert!(rooms
        .iter()
        .any(|r| r.id == rust && r.member_count == 1 && !r.joined));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_are_created_on_first_message_and_reach_both_sides() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut a1 = server.connect(&alice.token).await;
    let mut a2 = server.connect(&alice.token).await;
    let mut b = server.connect(&bob.token).await;

    let message = a1.send_dm("BOB", "psst").await.unwrap();
    assert_eq!(message.seq, 1);
    let dm = message.conv;
    for (c, peer) in [(&mut a1, "bob"), (&mut a2, "bob"), (&mut b, "alice")] {
        let ServerFrame::ConversationAdded { conversation } = c
            .wait_for(|f| matches!(f, ServerFrame::ConversationAdded { .. }))
            .await
        else {
            unreachable!()
        };
        assert_eq!(conversation.id, dm);
        assert_eq!(conversation.kind, ConvKind::Dm);
        assert_eq!(conversation.name, peer);
        assert_eq!(conversation.peer.as_ref().unwrap().username, peer);
        assert_eq!(conversation.member_count, 2);
    }
    for c in [&mut a2, &mut b] {
        c.wait_for(|f| matches!(f, ServerFrame::Message { message } if message.conv == dm && message.text == "psst")).await;
    }
    // The reply goes to the same conversation, by `to` or by `conv`.
    let message = b.send_dm("alice", "hi").await.unwrap();
    assert_eq!((message.conv, message.seq), (dm, 2));
    let err = a1.send_dm("nobody", "?").await.unwrap_err();
    assert_eq!(err.0, ErrorCode::NotFound);
    let err = a1.send_dm("alice", "me").await.unwrap_err();
    assert_eq!(err.0, ErrorCode::BadRequest);
    // A DM cannot be left; it is in both users' hello.
    assert_eq!(
        b.request(|id| ClientFrame::Leave { id, conv: dm })
            .await
            .unwrap_err()
            .0,
        ErrorCode::Forbidden
    );
    let b2 = server.connect(&bob.token).await;
    let Some(ServerFrame::Hello { conversations, .. }) = &b2.hello else {
        panic!()
    };
    assert!(conversations
        .iter()
        .any(|c| c.id == dm && c.kind == ConvKind::Dm && c.last_seq == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_markers_sync_to_other_devices_and_unread_counts_agree() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut a = server.connect(&alice.token).await;
    let general = a.general();
    for i in 0..5 {
        a.send_text(general, &format!("news {i}")).await;
    }
    let mut b1 = server.connect(&bob.token).await;
    let mut b2 = server.connect(&bob.token).await;
    let Some(ServerFrame::Hello { unread, .. }) = &b1.hello else {
        panic!()
    };
    let u = unread.iter().find(|u| u.conv == general).unwrap();
    assert_eq!((u.count, u.last_read), (5, 0));
    // Alice's own messages are not unread for her.
    let a2 = server.connect(&alice.token).await;
    let Some(ServerFrame::Hello { unread, .. }) = &a2.hello else {
        panic!()
    };
    assert_eq!(unread.iter().find(|u| u.conv == general).unwrap().count, 0);

    assert!(matches!(
        b1.request(|id| ClientFrame::Read {
            id,
            conv: general,
            seq: 3
        })
        .await
        .unwrap(),
        Reply::Done
    ));
    b2.wait_for(|f| matches!(f, ServerFrame::Read { conv, seq: 3 } if *conv == general))
        .await;
    // Markers never move back, and are capped at the newest message.
    b1.request(|id| ClientFrame::Read {
        id,
        conv: general,
        seq: 1,
    })
    .await
    .unwrap();
    b1.request(|id| ClientFrame::Read {
        id,
        conv: general,
        seq: 99,
    })
    .await
    .unwrap();
    b2.wait_for(|f| matches!(f, ServerFrame::Read { conv, seq: 5 } if *conv == general))
        .await;
    let b3 = server.connect(&bob.token).await;
    let Some(ServerFrame::Hello {
        unread,
        conversations,
        ..
    }) = &b3.hello
    else {
        panic!()
    };
    let u = unread.iter().find(|u| u.conv == general).unwrap();
    assert_eq!((u.count, u.last_read), (0, 5));
    assert_eq!(
        conversations
            .iter()
            .find(|c| c.id == general)
            .unwrap()
            .last_read,
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_forwarded_to_other_members_and_not_stored() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut a = server.connect(&alice.token).await;
    let mut a2 = server.connect(&alice.token).await;
    let mut b = server.connect(&bob.token).await;
    let general = a.general();
    assert!(matches!(
        a.request(|id| ClientFrame::Typing { id, conv: general })
            .await
            .unwrap(),
        Reply::Done
    ));
    b.wait_for(|f| matches!(f, ServerFrame::Typing { conv, username } if *conv == general && username == "alice")).await;
    // Not echoed to the typist's own devices, and nothing stored.
    let marker = b.send_text(general, "marker").await;
    loop {
        match a2.next().await.expect("frame") {
            ServerFrame::Message { message } if message.id == marker.id => break,
            ServerFrame::Typing { .. } => panic!("typing echoed to the typist's other device"),
            _ => {}
        }
    }
    let (messages, _) = a.history(general, None, None, 10).await.unwrap();
    assert_eq!(messages, vec![marker]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_and_wss_with_the_configured_certificate() {
    use std::sync::Arc;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, generated.cert.pem()).unwrap();
    std::fs::write(&key_path, generated.signing_key.serialize_pem()).unwrap();
    let server = TestServer::start_with(|c| {
        c.tls = Some(natter::server::TlsConfig {
            cert: cert_path.clone(),
            key: key_path.clone(),
        })
    })
    .await;

    let https = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(generated.cert.pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let register = https
        .post(format!("https://{}/api/register", server.addr))
        .json(&serde_json::json!({"username": "alice", "password": support::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status().as_u16(), 201);
    let session: natter::protocol::Session = register.json().await.unwrap();
    // Plain HTTP to the TLS port gets nothing useful.
    assert!(reqwest::get(server.http_url("/api/health"))
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(generated.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("wss://{}/ws", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        natter::protocol::SUBPROTOCOL.parse().unwrap(),
    );
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", session.token).parse().unwrap(),
    );
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        req,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(tls))),
    )
    .await
    .expect("wss connects");
    let mut c = support::WsClient::from_stream(ws);
    c.expect_hello().await;
    let sent = c.send_text(c.general(), "encrypted hello").await;
    assert_eq!(sent.seq, 1);
}
