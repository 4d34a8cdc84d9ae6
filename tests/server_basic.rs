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
    let (status, _) = server
        .post(
            "/api/login",
            serde_json::json!({"username": "bob", "password": "wrong password"}),
            None,
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = server
        .post(
            "/api/login",
            serde_json::json!({"username": "nobody", "password": "wrong password"}),
            None,
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_reaches_every_device_of_every_member_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
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
    let Reply::History {
        messages, has_more, ..
    } = a
        .request(|id| ClientFrame::History {
            id,
            conv: general,
            before: None,
            after: None,
            limit: 10,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (16..=25).collect::<Vec<_>>()
    );
    assert!(has_more);
    let Reply::History {
        messages, has_more, ..
    } = a
        .request(|id| ClientFrame::History {
            id,
            conv: general,
            before: Some(6),
            after: None,
            limit: 10,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=5).collect::<Vec<_>>()
    );
    assert!(!has_more);
    let Reply::History {
        messages, has_more, ..
    } = a
        .request(|id| ClientFrame::History {
            id,
            conv: general,
            before: None,
            after: Some(20),
            limit: 3,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![21, 22, 23]
    );
    assert!(has_more);
    for limit in [0, 201] {
        let err = a
            .request(|id| ClientFrame::History {
                id,
                conv: general,
                before: None,
                after: None,
                limit,
            })
            .await
            .unwrap_err();
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
