//! Attention settings over real sockets: a notification level or do not disturb set on one
//! socket is pushed to the user's other sockets (never to anyone else), is in every later
//! hello (also after a restart), and bad inputs get their documented errors.

mod support;

use std::time::Duration;

use natter::protocol::{
    limits, Attention, ClientFrame, ConvLevel, Dnd, ErrorCode, NotifyLevel, Reply, ServerFrame,
    Target,
};
use support::{TestServer, WsClient};
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn attention_of(c: &WsClient) -> Attention {
    match &c.hello {
        Some(ServerFrame::Hello { attention, .. }) => attention.clone(),
        other => panic!("no hello: {other:?}"),
    }
}

/// `watcher`'s frames up to the message `sender` sends now in `conv`: a push caused before the
/// message would have come before it (the fan-out keeps commit order).
async fn frames_until_message(
    watcher: &mut WsClient,
    sender: &mut WsClient,
    conv: i64,
) -> Vec<ServerFrame> {
    let sent = sender.send_text(conv, "marker").await;
    let mut seen: Vec<ServerFrame> = watcher.pending.drain(..).collect();
    loop {
        match watcher.recv().await.expect("socket open") {
            ServerFrame::Message { message } if message.id == sent.id => return seen,
            other => seen.push(other),
        }
    }
}

fn is_attention(f: &ServerFrame) -> bool {
    matches!(f, ServerFrame::Level { .. } | ServerFrame::Dnd { .. })
}

/// A level set on one socket reaches the user's other socket and the next hello; another user
/// in the same room hears nothing of it; `all` removes it; it survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_is_synced_to_the_users_devices_only_and_kept() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut phone = server.connect(&alice.token).await;
    let mut laptop = server.connect(&alice.token).await;
    let mut bob = server.user("bob").await;
    let general = phone.general();
    assert_eq!(attention_of(&phone), Attention::default());

    let r = phone
        .request(|id| ClientFrame::SetLevel {
            id,
            conv: general,
            level: NotifyLevel::Mentions,
        })
        .await;
    assert_eq!(r, Ok(Reply::Done));
    let pushed = laptop
        .wait_for(|f| matches!(f, ServerFrame::Level { .. }))
        .await;
    assert_eq!(
        pushed,
        ServerFrame::Level {
            conv: general,
            level: NotifyLevel::Mentions
        }
    );
    let bob_saw = frames_until_message(&mut bob, &mut phone, general).await;
    assert!(!bob_saw.iter().any(is_attention), "{bob_saw:?}");
    let phone_saw = frames_until_message(&mut phone, &mut bob, general).await;
    assert!(
        !phone_saw.iter().any(is_attention),
        "the setting socket gets its answer, not a push: {phone_saw:?}"
    );

    let tablet = server.connect(&alice.token).await;
    assert_eq!(
        attention_of(&tablet).levels,
        [ConvLevel {
            conv: general,
            level: NotifyLevel::Mentions
        }]
    );
    assert_eq!(
        attention_of(&server.connect(&bob_token(&server).await).await),
        Attention::default()
    );

    let r = laptop
        .request(|id| ClientFrame::SetLevel {
            id,
            conv: general,
            level: NotifyLevel::Nothing,
        })
        .await;
    assert_eq!(r, Ok(Reply::Done));
    let (dir, stopped) = server.stop().await;
    stopped.expect("clean stop");
    let server = TestServer::start_in(dir, |_| {}).await;
    let alice = server.login("alice").await;
    let mut phone = server.connect(&alice.token).await;
    assert_eq!(
        attention_of(&phone).levels,
        [ConvLevel {
            conv: general,
            level: NotifyLevel::Nothing
        }],
        "kept across a restart"
    );
    let r = phone
        .request(|id| ClientFrame::SetLevel {
            id,
            conv: general,
            level: NotifyLevel::All,
        })
        .await;
    assert_eq!(r, Ok(Reply::Done));
    assert!(attention_of(&server.connect(&alice.token).await)
        .levels
        .is_empty());
}

async fn bob_token(server: &TestServer) -> String {
    server.login("bob").await.token
}

/// Do not disturb: on until a time, then until turned off, then off, each pushed to the other
/// socket and in the next hello; nobody else hears of it; an ended one is not in hello.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnd_is_synced_and_an_ended_one_is_off() {
    let clock = natter::server::Clock::manual();
    let server = TestServer::start_with(|c| c.clock = clock.clone()).await;
    let alice = server.register("alice").await;
    let mut phone = server.connect(&alice.token).await;
    let mut laptop = server.connect(&alice.token).await;
    let mut bob = server.user("bob").await;
    let general = phone.general();
    let hour = clock.now_ms() + 3_600_000;

    for dnd in [
        Some(Dnd { until: Some(hour) }),
        Some(Dnd { until: None }),
        None,
    ] {
        let r = phone.request(|id| ClientFrame::SetDnd { id, dnd }).await;
        assert_eq!(r, Ok(Reply::Done), "{dnd:?}");
        let pushed = laptop
            .wait_for(|f| matches!(f, ServerFrame::Dnd { .. }))
            .await;
        assert_eq!(pushed, ServerFrame::Dnd { dnd });
        let fresh = server.connect(&alice.token).await;
        assert_eq!(attention_of(&fresh).dnd, dnd);
    }
    let bob_saw = frames_until_message(&mut bob, &mut phone, general).await;
    assert!(!bob_saw.iter().any(is_attention), "{bob_saw:?}");

    let r = phone
        .request(|id| ClientFrame::SetDnd {
            id,
            dnd: Some(Dnd { until: Some(hour) }),
        })
        .await;
    assert_eq!(r, Ok(Reply::Done));
    clock.advance(Duration::from_secs(3_599));
    assert!(attention_of(&server.connect(&alice.token).await)
        .dnd
        .is_some());
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        attention_of(&server.connect(&alice.token).await).dnd,
        None,
        "ended: off in hello"
    );
}

/// Bad inputs, each with its documented error: an unknown or missing level, a level for a
/// conversation that does not exist, a DM of others, a room not joined (the same errors `read`
/// gets), an end time in the past, now, beyond the limit, or not a number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_attention_requests_get_documented_errors() {
    let clock = natter::server::Clock::manual();
    let server = TestServer::start_with(|c| c.clock = clock.clone()).await;
    let mut alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let mut carol = server.user("carol").await;
    let general = alice.general();
    let dm = alice
        .request(|id| ClientFrame::Send {
            id,
            target: Target::To("bob".into()),
            client_msg_id: uuid::Uuid::new_v4(),
            text: "hi".into(),
            reply_to: None,
            attachments: Vec::new(),
        })
        .await;
    let Ok(Reply::Sent { message }) = dm else {
        panic!("{dm:?}")
    };
    let room = match bob
        .request(|id| ClientFrame::CreateRoom {
            private: false,
            id,
            name: "bobs".into(),
        })
        .await
    {
        Ok(Reply::Joined { conversation }) => conversation.id,
        other => panic!("{other:?}"),
    };

    for (raw, code) in [
        (
            r#"{"type":"set_level","id":1,"conv":1,"level":"loud"}"#,
            ErrorCode::BadRequest,
        ),
        (
            r#"{"type":"set_level","id":1,"conv":1}"#,
            ErrorCode::BadRequest,
        ),
        (
            r#"{"type":"set_level","id":1,"conv":"1","level":"all"}"#,
            ErrorCode::BadRequest,
        ),
        (
            r#"{"type":"set_dnd","id":1,"dnd":{"until":"soon"}}"#,
            ErrorCode::BadRequest,
        ),
        (
            r#"{"type":"set_dnd","id":1,"dnd":true}"#,
            ErrorCode::BadRequest,
        ),
    ] {
        let raw = raw.replace("\"conv\":1", &format!("\"conv\":{general}"));
        carol.send_raw(WsMessage::text(raw.clone())).await;
        match carol.next_error().await {
            Some(ServerFrame::Error {
                id,
                code: got,
                message,
            }) => {
                assert_eq!((id, got), (Some(1), code), "{raw}: {message}");
            }
            other => panic!("{raw}: {other:?}"),
        }
    }

    let set_level = |conv| {
        move |id| ClientFrame::SetLevel {
            id,
            conv,
            level: NotifyLevel::Nothing,
        }
    };
    for (conv, code) in [
        (99_999, ErrorCode::NotFound),
        (message.conv, ErrorCode::NotFound),
        (room, ErrorCode::Forbidden),
    ] {
        let level = carol.request(set_level(conv)).await.unwrap_err();
        let read = carol
            .request(|id| ClientFrame::Read { id, conv, seq: 1 })
            .await
            .unwrap_err();
        assert_eq!(level.0, code, "conv {conv}: {level:?}");
        assert_eq!(
            level, read,
            "the same error as the other conversation frames"
        );
    }

    let now = clock.now_ms();
    for until in [now - 1, now, now + limits::MAX_DND_AHEAD_MS + 1, i64::MAX] {
        let e = carol
            .request(|id| ClientFrame::SetDnd {
                id,
                dnd: Some(Dnd { until: Some(until) }),
            })
            .await
            .unwrap_err();
        assert_eq!(e.0, ErrorCode::BadRequest, "{until}: {e:?}");
        assert!(e.1.contains("until"), "{}", e.1);
    }
    let edge = now + limits::MAX_DND_AHEAD_MS;
    let ok = carol
        .request(|id| ClientFrame::SetDnd {
            id,
            dnd: Some(Dnd { until: Some(edge) }),
        })
        .await;
    assert_eq!(ok, Ok(Reply::Done), "the limit itself is allowed");
    assert_eq!(
        attention_of(&server.connect(&server.login("carol").await.token).await).dnd,
        Some(Dnd { until: Some(edge) })
    );
    // Nothing refused was stored.
    assert!(
        attention_of(&server.connect(&server.login("carol").await.token).await)
            .levels
            .is_empty()
    );
}
