//! The client library against the real server (in-process on 127.0.0.1:0, temp SQLite on both
//! sides): two users chat in a room and a DM, rooms and members, read markers across devices,
//! search in English and Chinese, paging through 10,000 messages of history, and a room's
//! private and moderator flags kept in the local store across an offline restart, and the
//! moderator flags turned in the store while connected when an admin role changes.

mod support;

use std::time::Duration;

use natter::client::{
    Client, ClientConfig, ClientError, ClientEvent, ConnectionState, MessageState, Target,
};
use natter::protocol::{ClientFrame, ConvKind, Reply, Session};
use support::{next_message, synced, TestServer};
use uuid::Uuid;

fn config(server: &TestServer, dir: &std::path::Path) -> ClientConfig {
    server.client_config(dir)
}

async fn client(server: &TestServer, session: Session) -> (tempfile::TempDir, Client) {
    let dir = tempfile::tempdir().unwrap();
    let c = Client::start(config(server, dir.path()), session)
        .await
        .unwrap();
    synced(&c).await;
    (dir, c)
}

/// Log in as `name` again and start a synced client on the existing profile `dir`.
async fn sign_in_again(server: &TestServer, name: &str, dir: &std::path::Path) -> Client {
    let url = format!("http://{}", server.addr).parse().unwrap();
    let session = natter::client::login(&url, name, support::PASSWORD)
        .await
        .unwrap();
    let c = Client::start(config(server, dir), session).await.unwrap();
    synced(&c).await;
    c
}

/// Resume the profile in `dir` against a server that is not there (a closed port, retried
/// rarely): what the local store alone gives.
async fn resume_offline(dir: &std::path::Path) -> Client {
    let mut c = ClientConfig::new("http://127.0.0.1:9".parse().unwrap(), dir.to_path_buf());
    c.backoff_min = Duration::from_secs(5);
    Client::resume(c).await.unwrap().unwrap()
}

/// The unread count of a joined conversation.
async fn unread(c: &Client, conv: natter::protocol::ConvId) -> u32 {
    c.conversation(conv).await.unwrap().expect("joined").unread
}

fn fast(c: &mut natter::server::ServerConfig) {
    c.rate_limit_per_sec = 1_000_000;
    c.rate_burst = 1_000_000;
    c.outbound_queue = 100_000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_in_a_room_and_a_dm() {
    let server = TestServer::start().await;
    let (_da, alice) = client(&server, server.register("alice").await).await;
    let (_db, bob) = client(&server, server.register("bob").await).await;
    let general = alice
        .find_conversation(ConvKind::Room, "general")
        .await
        .unwrap()
        .expect("general joined");
    assert_eq!(
        bob.find_conversation(ConvKind::Room, "general")
            .await
            .unwrap(),
        Some(general)
    );

    // Room message.
    let mut bob_rx = bob.subscribe();
    let mut alice_rx = alice.subscribe();
    let sent = alice
        .send(Target::Conv(general), "hello bob")
        .await
        .unwrap();
    assert_eq!(sent.state, MessageState::Pending);
    let echoed = next_message(&mut alice_rx, |m| {
        m.local_id == sent.local_id && m.state == MessageState::Sent
    })
    .await;
    let got = next_message(&mut bob_rx, |m| m.text == "hello bob").await;
    assert_eq!(
        (got.sender.as_str(), got.seq, got.conv),
        ("alice", echoed.seq, Some(general))
    );
    assert_eq!(
        got.local_id, sent.local_id,
        "the same client_msg_id on every device"
    );

    // Unread counts, and mark_read synced to the server.
    let conv = bob.conversation(general).await.unwrap().unwrap();
    assert_eq!((conv.unread, conv.title.as_str()), (1, "#general"));
    assert_eq!(conv.last_message.unwrap().text, "hello bob");
    bob.mark_read(general, got.seq.unwrap()).await.unwrap();
    assert_eq!(bob.conversation(general).await.unwrap().unwrap().unread, 0);

    // DM: the conversation is created by the first message.
    let dm = bob.send(Target::To("alice".into()), "psst").await.unwrap();
    assert_eq!(dm.conv, None);
    let got = next_message(&mut alice_rx, |m| m.text == "psst").await;
    let dm_conv = got.conv.unwrap();
    assert_ne!(dm_conv, general);
    tokio::time::timeout(Duration::from_secs(5), bob.wait_outbox_empty())
        .await
        .unwrap()
        .unwrap();
    // Both sides know the DM by the peer's name, and later messages go to the same conversation.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while alice
        .find_conversation(ConvKind::Dm, "bob")
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "DM listed for alice"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        alice.find_conversation(ConvKind::Dm, "bob").await.unwrap(),
        Some(dm_conv)
    );
    assert_eq!(
        bob.find_conversation(ConvKind::Dm, "alice").await.unwrap(),
        Some(dm_conv)
    );
    let reply = alice.send(Target::To("bob".into()), "ok!").await.unwrap();
    assert_eq!(reply.conv, Some(dm_conv));
    let got = next_message(&mut bob_rx, |m| m.text == "ok!").await;
    assert_eq!(got.conv, Some(dm_conv));
    let list = alice.conversations().await.unwrap();
    assert_eq!(list[0].id, dm_conv, "most recent first");
    assert_eq!(list[0].kind, ConvKind::Dm);
    assert_eq!(list[0].peer.as_ref().unwrap().username, "bob");

    let history: Vec<_> = bob
        .history(dm_conv, None, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(history, ["psst", "ok!"]);

    // Presence (sent in batches, so it may trail the messages a little), users, typing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while alice.online() != ["alice", "bob"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice sees bob online: {:?}",
            alice.online()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let users = alice.users().await.unwrap();
    assert!(users.iter().any(|m| m.user.username == "bob" && m.online));
    alice.typing(dm_conv).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, bob_rx.recv()).await {
            Ok(Ok(ClientEvent::Typing { conv, username })) => {
                assert_eq!((conv, username.as_str()), (dm_conv, "alice"));
                break;
            }
            Ok(_) => {}
            Err(_) => panic!("no typing event"),
        }
    }
    bob.shutdown().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, alice_rx.recv()).await {
            Ok(Ok(ClientEvent::Presence { offline, .. }))
                if offline.contains(&"bob".to_string()) =>
            {
                break
            }
            Ok(_) => {}
            Err(_) => panic!("no offline presence for bob"),
        }
    }
    assert_eq!(alice.online(), vec!["alice".to_string()]);
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_members_and_errors_map_to_codes() {
    let server = TestServer::start().await;
    let (_da, alice) = client(&server, server.register("alice").await).await;
    let (_db, bob) = client(&server, server.register("bob").await).await;
    let lounge = alice.create_room("lounge").await.unwrap();
    assert_eq!(
        (lounge.title.as_str(), lounge.kind),
        ("#lounge", ConvKind::Room)
    );
    assert!(matches!(
        alice.create_room("lounge").await,
        Err(ClientError::Conflict(_))
    ));
    assert!(matches!(
        alice.create_room("bad name!").await,
        Err(ClientError::Invalid(_))
    ));
    assert!(matches!(
        bob.join_room("nope").await,
        Err(ClientError::NotFound(_))
    ));
    let rooms = bob.rooms().await.unwrap();
    assert!(rooms.iter().any(|r| r.name == "lounge" && !r.joined));
    let joined = bob.join_room("lounge").await.unwrap();
    assert_eq!(joined.id, lounge.id);
    let members = alice.members(lounge.id).await.unwrap();
    let mut names: Vec<_> = members.iter().map(|m| m.user.username.clone()).collect();
    names.sort();
    assert_eq!(names, ["alice", "bob"]);
    bob.leave_room(lounge.id).await.unwrap();
    assert!(bob
        .find_conversation(ConvKind::Room, "lounge")
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        bob.members(lounge.id).await,
        Err(ClientError::Forbidden(_) | ClientError::NotFound(_))
    ));
    // A message to a conversation the user left is refused and marked failed, with the reason.
    let mut rx = bob.subscribe();
    let m = bob
        .send(Target::Conv(lounge.id), "let me in")
        .await
        .unwrap();
    let failed = next_message(&mut rx, |x| {
        x.local_id == m.local_id && x.state == MessageState::Failed
    })
    .await;
    assert!(failed.error.as_deref().is_some_and(|e| !e.is_empty()));
    // A DM to nobody fails too.
    let m = bob.send(Target::To("ghost".into()), "boo").await.unwrap();
    next_message(&mut rx, |x| {
        x.local_id == m.local_id && x.state == MessageState::Failed
    })
    .await;
    assert_eq!(bob.outbox().await.unwrap().len(), 2);
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_markers_and_unread_counts_agree_across_devices() {
    let server = TestServer::start().await;
    let alice_session = server.register("alice").await;
    let (_da, alice) = client(&server, alice_session).await;
    let bob_session = server.register("bob").await;
    let (_db, bob_phone) = client(&server, bob_session.clone()).await;
    let general = alice
        .find_conversation(ConvKind::Room, "general")
        .await
        .unwrap()
        .unwrap();
    let mut rx = bob_phone.subscribe();
    for i in 0..5 {
        alice
            .send(Target::Conv(general), &format!("m{i}"))
            .await
            .unwrap();
    }
    next_message(&mut rx, |m| m.text == "m4").await;
    assert_eq!(unread(&bob_phone, general).await, 5);

    // A second device for bob, fresh profile: unread from the server's count.
    let (_dl, bob_laptop) = client(&server, server.login("bob").await).await;
    assert_eq!(unread(&bob_laptop, general).await, 5);
    let mut laptop_rx = bob_laptop.subscribe();
    let seq3 = bob_phone.history(general, None, 10).await.unwrap()[2]
        .seq
        .unwrap();
    bob_phone.mark_read(general, seq3).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, laptop_rx.recv()).await {
            Ok(Ok(ClientEvent::ReadMarker { conv, seq })) => {
                assert_eq!((conv, seq), (general, seq3));
                break;
            }
            Ok(_) => {}
            Err(_) => panic!("the read marker did not reach the other device"),
        }
    }
    assert_eq!(unread(&bob_laptop, general).await, 2);
    assert_eq!(unread(&bob_phone, general).await, 2);

    // Marked read while offline: stored at once, synced on the next connection.
    bob_phone.shutdown().await;
    bob_laptop.mark_read(general, seq3 + 2).await.unwrap();
    bob_laptop.shutdown().await;
    let _ = _dl;
    let dir_phone = _db;
    let phone = Client::resume(config(&server, dir_phone.path()))
        .await
        .unwrap()
        .unwrap();
    synced(&phone).await;
    // The laptop's marker reached the server before it shut down (or on its next start).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while phone.conversation(general).await.unwrap().unwrap().unread != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "unread did not converge"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    phone.shutdown().await;
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_english_and_chinese_through_the_server() {
    let server = TestServer::start().await;
    let (_da, alice) = client(&server, server.register("alice").await).await;
    let (_db, bob) = client(&server, server.register("bob").await).await;
    let general = alice
        .find_conversation(ConvKind::Room, "general")
        .await
        .unwrap()
        .unwrap();
    let mut rx = bob.subscribe();
    for text in [
        "Meeting at noon",
        "你好世界",
        "the meeting moved",
        "我们明天见",
        "unrelated",
    ] {
        alice.send(Target::Conv(general), text).await.unwrap();
    }
    next_message(&mut rx, |m| m.text == "unrelated").await;
    let texts = |hits: Vec<natter::client::SearchHit>| -> Vec<String> {
        hits.into_iter().map(|h| h.message.text).collect()
    };
    assert_eq!(
        texts(bob.search("meeting", None, 10).await.unwrap()),
        ["the meeting moved", "Meeting at noon"]
    );
    assert_eq!(
        texts(bob.search("你好", None, 10).await.unwrap()),
        ["你好世界"]
    );
    assert_eq!(
        texts(bob.search("明天", Some(general), 10).await.unwrap()),
        ["我们明天见"]
    );
    assert!(bob.search("banana", None, 10).await.unwrap().is_empty());
    let hit = &bob.search("世界", None, 10).await.unwrap()[0];
    assert_eq!(hit.conv_title, "#general");
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_through_ten_thousand_messages() {
    const N: i64 = 10_000;
    let server = TestServer::start_with(fast).await;
    let alice = server.register("alice").await;
    let mut ws = server.connect(&alice.token).await;
    let general = ws.general();
    // Pipelined sends over the raw protocol, then collect the acks.
    for i in 1..=N {
        let id = ws.next_id();
        ws.send_frame(&ClientFrame::Send {
            id,
            target: natter::protocol::Target::Conv(general),
            client_msg_id: Uuid::new_v4(),
            text: format!("message number {i}"),
            reply_to: None,
            attachments: Vec::new(),
        })
        .await;
    }
    let mut acked = 0;
    while acked < N {
        match ws.next().await.expect("socket open") {
            natter::protocol::ServerFrame::Ok {
                result: Reply::Sent { .. },
                ..
            } => acked += 1,
            natter::protocol::ServerFrame::Error { message, .. } => {
                panic!("send failed: {message}")
            }
            _ => {}
        }
    }

    let (dir, bob) = client(&server, server.register("bob").await).await;
    // A fresh profile holds only the last page from the resume; the rest comes page by page.
    let held_after_resume = bob.history(general, None, 200).await.unwrap();
    assert_eq!(held_after_resume.last().unwrap().seq, Some(N));
    let mut before = None;
    let mut seen = Vec::new();
    let t0 = std::time::Instant::now();
    loop {
        let page = bob.history(general, before, 200).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(
            page.windows(2)
                .all(|w| w[0].seq.unwrap() + 1 == w[1].seq.unwrap()),
            "ascending, no gaps"
        );
        before = page[0].seq;
        seen.extend(page.into_iter().rev().map(|m| m.seq.unwrap()));
        if before == Some(1) {
            break;
        }
    }
    seen.reverse();
    assert_eq!(seen, (1..=N).collect::<Vec<_>>());
    eprintln!("paged {N} messages from the server in {:?}", t0.elapsed());

    // Now everything is local: paging again works offline, and search covers it.
    bob.shutdown().await;
    drop(ws);
    let (_dir, result) = server.stop().await;
    result.unwrap();
    let offline = resume_offline(dir.path()).await;
    let t0 = std::time::Instant::now();
    let mut count = 0;
    let mut before = None;
    loop {
        let page = offline.history(general, before, 200).await.unwrap();
        if page.is_empty() {
            break;
        }
        count += page.len();
        before = page[0].seq;
    }
    assert_eq!(count as i64, N);
    eprintln!(
        "paged {N} messages from the local store in {:?}",
        t0.elapsed()
    );
    let hits = offline.search("9999", None, 10).await.unwrap();
    assert_eq!(hits[0].message.text, "message number 9999");
    assert!(matches!(
        offline.connection_state(),
        ConnectionState::Connecting | ConnectionState::Offline { .. }
    ));
    offline.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_answers_server_heartbeats_and_stays_connected() {
    let server = TestServer::start_with(|c| {
        c.heartbeat_interval = Duration::from_millis(100);
        // Generous against a loaded machine; without pongs the server would still close well
        // inside the idle window below.
        c.heartbeat_timeout = Duration::from_millis(800);
    })
    .await;
    let (_d, alice) = client(&server, server.register("alice").await).await;
    let mut rx = alice.subscribe();
    // Idle for many server heartbeat periods: the pongs must keep the socket open.
    let quiet = tokio::time::timeout(Duration::from_millis(2_500), async {
        loop {
            if let Ok(ClientEvent::Connection(s)) = rx.recv().await {
                return s;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "connection changed while idle: {quiet:?}");
    assert_eq!(alice.connection_state(), ConnectionState::Online);
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_signs_the_client_out() {
    let server = TestServer::start().await;
    let session = server.register("alice").await;
    let (dir, alice) = client(&server, session.clone()).await;
    // The token is revoked elsewhere (e.g. logout on another device that shared it).
    let url = format!("http://{}", server.addr).parse().unwrap();
    natter::client::logout_token(&url, &session.token)
        .await
        .unwrap();
    let mut state = alice.connection_watch();
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| matches!(s, ConnectionState::SignedOut { .. })),
    )
    .await
    .expect("signed out in time")
    .unwrap();
    assert!(matches!(
        alice.users().await,
        Err(ClientError::Unauthorized(_))
    ));
    alice.shutdown().await;
    // Nothing to resume; a fresh start with the dead token is refused at the upgrade (401).
    assert!(Client::resume(config(&server, dir.path()))
        .await
        .unwrap()
        .is_none());
    let again = Client::start(config(&server, dir.path()), session)
        .await
        .unwrap();
    let mut state = again.connection_watch();
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| matches!(s, ConnectionState::SignedOut { .. })),
    )
    .await
    .expect("refused in time")
    .unwrap();
    again.shutdown().await;
    // A new login on the same profile keeps its history.
    let back = sign_in_again(&server, "alice", dir.path()).await;
    back.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_rate_limit_drains_in_order_without_being_cut_off() {
    let server = TestServer::start_with(|c| {
        c.rate_limit_per_sec = 50;
        c.rate_burst = 20;
    })
    .await;
    let (_da, alice) = client(&server, server.register("alice").await).await;
    let general = alice
        .find_conversation(ConvKind::Room, "general")
        .await
        .unwrap()
        .unwrap();
    let mut rx = alice.subscribe();
    let texts: Vec<String> = (0..120).map(|i| format!("burst {i}")).collect();
    for t in &texts {
        alice.send(Target::Conv(general), t).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(30), alice.wait_outbox_empty())
        .await
        .expect("drained")
        .unwrap();
    assert!(alice.outbox().await.unwrap().is_empty(), "nothing failed");
    let got: Vec<String> = alice
        .history(general, None, 200)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(got, texts);
    // Never disconnected for flooding.
    while let Ok(ev) = rx.try_recv() {
        assert!(
            !matches!(ev, ClientEvent::Connection(ConnectionState::Offline { .. })),
            "{ev:?}"
        );
    }
    alice.shutdown().await;
}

/// A client that keeps failing to sign in is told to wait (`RateLimited`, which the desktop
/// shows as its own translated message), not that the server failed; a wrong password before
/// that is `Unauthorized`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_become_rate_limited_for_the_client() {
    let server = TestServer::start_with(|c| c.failed_sign_ins_per_ip = 2).await;
    server.register("alice").await;
    let url = format!("http://{}", server.addr).parse().unwrap();
    for _ in 0..2 {
        assert!(matches!(
            natter::client::login(&url, "alice", "wrong").await,
            Err(ClientError::Unauthorized(_))
        ));
    }
    let refused = natter::client::login(&url, "alice", support::PASSWORD).await;
    assert!(
        matches!(&refused, Err(ClientError::RateLimited(m)) if m.contains("try again")),
        "{refused:?}"
    );
    assert_eq!(refused.unwrap_err().code(), "rate_limited");
}

/// Signing out while the server is down still signs out at once; the old token stays live on
/// the server only until a session of the same profile next gets through, which revokes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_made_offline_is_revoked_on_the_server_once_it_is_back() {
    let server = TestServer::start().await;
    let old = server.register("alice").await;
    let (profile, alice) = client(&server, old.clone()).await;
    let (data, _) = server.stop().await;

    alice.logout().await.unwrap();
    let store =
        natter::client::store::Store::open(&profile.path().join(natter::client::STORE_FILE))
            .unwrap();
    assert_eq!(
        store.pending_revocations().unwrap(),
        vec![old.token.clone()]
    );
    assert!(
        store.session().unwrap().is_none(),
        "signed out locally at once"
    );
    drop(store);

    let server = TestServer::start_in(data, |_| {}).await;
    let again = sign_in_again(&server, "alice", profile.path()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // An upgrade with the old token: refused (401) once it is revoked. (Not a logout call,
        // which would revoke it itself.)
        let refused = support::WsClient::connect(&server.ws_url(), Some(&old.token))
            .await
            .err()
            .and_then(|e| support::handshake_status(&e));
        if refused == Some(401) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "old token still live"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store =
        natter::client::store::Store::open(&profile.path().join(natter::client::STORE_FILE))
            .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !store.pending_revocations().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pending revocation kept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The new session is untouched.
    assert!(again.users().await.is_ok());
    again.shutdown().await;
}

/// A connection storm of users the client watches reaches it as a few presence events naming
/// many users each, not one event per user: the desktop redraws its people list once per event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_storm_arrives_as_few_presence_events() {
    const USERS: usize = 20;
    let server = TestServer::start().await;
    let (_dir, alice) = client(&server, server.register("alice").await).await;
    let mut tokens = Vec::new();
    for i in 0..USERS {
        tokens.push(server.register(&format!("storm{i}")).await.token);
    }
    let names: Vec<String> = (0..USERS).map(|i| format!("storm{i}")).collect();
    assert!(alice.watch_presence(names).await.unwrap().is_empty());
    let mut events = alice.subscribe();
    let sockets =
        futures_util::future::join_all(tokens.iter().map(|token| server.connect(token))).await;

    let mut seen = std::collections::BTreeSet::new();
    let mut presence_events = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < USERS {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(ClientEvent::Presence { online, offline })) => {
                presence_events += 1;
                assert!(offline.is_empty(), "nobody left: {offline:?}");
                seen.extend(online);
            }
            Ok(Ok(_)) => {}
            other => panic!(
                "presence for {} of {USERS} users, then {other:?}",
                seen.len()
            ),
        }
    }
    assert_eq!(seen.len(), USERS);
    assert!(
        presence_events < USERS,
        "{USERS} users came online in {presence_events} events"
    );
    assert_eq!(alice.online().len(), USERS + 1);
    drop(sockets);
    alice.shutdown().await;
}

/// The client keeps presence only for the users it watches (and itself, and DM partners): a
/// new watch set drops the users left out even while they are online, its answer is the
/// client's online list at once, and the set is sent again after a reconnect (a server
/// restart), so a watched user's coming back is heard without asking again. An unknown name is
/// refused `not_found` and the last set stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_kept_for_watched_users_and_the_watch_outlives_a_reconnect() {
    let server = TestServer::start().await;
    let alice_session = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let (_dir, alice) = client(&server, alice_session).await;
    let _b = server.connect(&bob.token).await;
    let c = server.connect(&carol.token).await;
    assert_eq!(
        alice.watch_presence(vec!["bob".into()]).await.unwrap(),
        ["bob"]
    );
    assert_eq!(alice.online(), ["alice", "bob"], "carol is not watched");
    assert_eq!(
        alice.watch_presence(vec!["carol".into()]).await.unwrap(),
        ["carol"]
    );
    assert_eq!(alice.online(), ["alice", "carol"], "bob is no longer kept");
    let refused = alice.watch_presence(vec!["nobody".into()]).await;
    assert!(
        matches!(&refused, Err(e) if e.code() == "not_found"),
        "{refused:?}"
    );

    // The watch set (carol) survives a reconnect: after a server restart (on the same
    // address), carol coming back is heard without watching again.
    let addr = server.addr;
    drop((_b, c));
    let (data, _) = server.stop().await;
    let server = TestServer::start_at(addr, data, |_| {}).await;
    alice.reconnect_now();
    let _c = server.connect(&carol.token).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while alice.online() != ["alice", "carol"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "carol back: {:?}",
            alice.online()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    alice.shutdown().await;
}

#[tokio::test]
async fn room_flags_come_from_the_server_and_stay_in_the_store_offline() {
    let server = TestServer::start().await;
    server.register("ada").await; // the admin, so bob is not one
    let (dir, bob) = client(&server, server.register("bob").await).await;
    let den = bob.create_private_room("den").await.unwrap();
    assert!(den.private && den.moderator, "{den:?}");
    let flags = |list: Vec<natter::client::ConversationSummary>| {
        let mut all: Vec<_> = list
            .into_iter()
            .map(|c| (c.name, c.private, c.moderator))
            .collect();
        all.sort();
        all
    };
    let want = [
        ("den".to_string(), true, true),
        ("general".to_string(), false, false),
    ];
    assert_eq!(flags(bob.conversations().await.unwrap()), want);

    // Restarted with the server gone: the local store still knows both flags.
    bob.shutdown().await;
    let (_dir, result) = server.stop().await;
    result.unwrap();
    let offline = resume_offline(dir.path()).await;
    assert_eq!(flags(offline.conversations().await.unwrap()), want);
    offline.shutdown().await;
}

/// An admin role granted or revoked with `natter-server admin` while the client is connected
/// turns the `moderator` flag of the rooms it did not create in its local store, without a
/// reconnect (the server pushes `conversations_updated`); its own room stays moderated.
#[tokio::test]
async fn an_admin_role_change_turns_moderator_in_the_store_while_connected() {
    let server = TestServer::start().await;
    server.register("ada").await; // the admin, so bob is not one
    let (_dir, bob) = client(&server, server.register("bob").await).await;
    bob.create_private_room("den").await.unwrap();
    let moderates = |list: Vec<natter::client::ConversationSummary>| {
        let mut all: Vec<_> = list.into_iter().map(|c| (c.name, c.moderator)).collect();
        all.sort();
        all
    };
    for (verb, admin) in [("grant", true), ("revoke", false)] {
        let (ok, _, err) = support::natter_server_admin(&server, &[verb, "bob"]).await;
        assert!(ok, "{err}");
        let want = [("den".to_string(), true), ("general".to_string(), admin)];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = moderates(bob.conversations().await.unwrap());
            if now == want {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "after {verb}: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    bob.shutdown().await;
}
