//! The client core under a burst, against the real server (in-process on 127.0.0.1:0, temp
//! SQLite on both sides): per-conversation change events instead of list rebuilds, the user's
//! own message announced once and then updated, notification text without a server request,
//! a store that never blocks the async runtime, and store failures reported, not dropped.

mod support;

use std::time::Duration;

use natter::client::{
    Client, ClientConfig, ClientEvent, ConversationSummary, MessageChange, MessageEvent,
    MessageState, Target,
};
use natter::protocol::{ClientFrame, ConvId, Reply, Session};
use support::TestServer;
use tokio::sync::broadcast;
use uuid::Uuid;

const CONVS: usize = 50;
const MESSAGES: usize = 1000;

fn fast(c: &mut natter::server::ServerConfig) {
    c.rate_limit_per_sec = 1_000_000;
    c.rate_burst = 1_000_000;
    c.outbound_queue = 100_000;
}

async fn client(server: &TestServer, session: Session) -> (tempfile::TempDir, Client) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ClientConfig::new(
        format!("http://{}", server.addr).parse().unwrap(),
        dir.path().to_path_buf(),
    );
    config.backoff_min = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(200);
    let c = Client::start(config, session).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), c.wait_synced())
        .await
        .expect("synced in time")
        .expect("synced");
    (dir, c)
}

/// The id of `#general`, joined by everyone at registration.
async fn general(c: &Client) -> ConvId {
    c.find_conversation(natter::protocol::ConvKind::Room, "general")
        .await
        .unwrap()
        .expect("general")
}

/// What the desktop would forward for an event (the IPC payload), in bytes of JSON.
fn ipc_bytes(ev: &ClientEvent) -> usize {
    let json = match ev {
        ClientEvent::Message(m) => serde_json::to_string(m),
        ClientEvent::Conversation(c) => serde_json::to_string(c),
        ClientEvent::Unread(u) => serde_json::to_string(u),
        ClientEvent::ConversationRemoved(r) => serde_json::to_string(r),
        _ => Ok(String::new()),
    };
    json.unwrap().len()
}

/// 1,000 messages pushed across 50 conversations: each is announced once as added, the
/// conversation list is never re-read, and at most one summary is read and sent per message
/// (fewer when pushes coalesce). The old core asked for a full list rebuild (50 summaries, 151
/// queries, ~15 KB of IPC) after every message: 999 of them for this burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_pushes_sends_changes_not_conversation_lists() {
    let server = TestServer::start_with(fast).await;
    let (_dir, bob) = client(&server, server.register("bob").await).await;
    let mut alice = server.user("alice").await;
    let mut convs: Vec<ConvId> = vec![alice.general()];
    for i in 1..CONVS {
        let room = bob.create_room(&format!("room{i}")).await.unwrap();
        let name = room.name.clone();
        alice
            .request(|id| ClientFrame::Join { id, room: name })
            .await
            .unwrap();
        convs.push(room.id);
    }
    let mut rx = bob.subscribe();
    let before = bob.stats();

    // Pipelined: all 1,000 sends go out before the first answer is read.
    let mut ids = Vec::new();
    for i in 0..MESSAGES {
        let id = alice.next_id();
        alice
            .send_frame(&ClientFrame::Send {
                id,
                target: natter::protocol::Target::Conv(convs[i % CONVS]),
                client_msg_id: Uuid::new_v4(),
                text: format!("burst message {i}"),
                reply_to: None,
                attachments: Vec::new(),
            })
            .await;
        ids.push(id);
    }
    for id in ids {
        assert!(matches!(alice.answer(id).await, Ok(Reply::Sent { .. })));
    }

    let (mut added, mut summaries, mut other_changes, mut bytes) = (0, 0, 0, 0);
    let mut last_summary: std::collections::HashMap<ConvId, ConversationSummary> =
        Default::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // Every message, then every conversation's summary showing its last message.
    while added < MESSAGES
        || last_summary.len() < CONVS
        || last_summary
            .values()
            .any(|s| s.unread as usize != MESSAGES / CONVS)
    {
        let ev = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ev)) => ev,
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => panic!("lagged by {n}"),
            other => panic!(
                "burst not announced: {added} messages, {} conversations: {other:?}",
                last_summary.len()
            ),
        };
        bytes += ipc_bytes(&ev);
        match ev {
            ClientEvent::Message(MessageEvent { change, message }) => {
                assert_eq!(change, MessageChange::Added, "{message:?}");
                assert_eq!(message.state, MessageState::Sent);
                added += 1;
            }
            ClientEvent::Conversation(s) => {
                summaries += 1;
                last_summary.insert(s.id, s);
            }
            ClientEvent::Unread(_) | ClientEvent::ConversationRemoved(_) => other_changes += 1,
            _ => {}
        }
    }
    let stats = bob.stats();
    let full_lists = stats.store.full_lists - before.store.full_lists;
    let summary_reads = stats.store.summaries - before.store.summaries;
    let jobs = stats.store.jobs - before.store.jobs;
    let list_bytes = serde_json::to_string(&bob.conversations().await.unwrap())
        .unwrap()
        .len();
    eprintln!(
        "burst of {MESSAGES} messages in {CONVS} conversations: {added} message events, \
         {summaries} summary events, {other_changes} other changes, {full_lists} list reads, \
         {summary_reads} summary reads, {jobs} store jobs, {bytes} IPC bytes \
         (one list: {list_bytes} bytes)"
    );
    assert_eq!(added, MESSAGES);
    assert_eq!(full_lists, 0, "no conversation list is rebuilt for a burst");
    assert!(summaries <= MESSAGES, "{summaries} summaries");
    assert!(summary_reads <= MESSAGES as u64, "{summary_reads} reads");
    assert_eq!(other_changes, 0);
    // The old cost, one list per message, is ~15 MB here; the changes are a small fraction.
    assert!(
        bytes < MESSAGES * list_bytes / 10,
        "{bytes} IPC bytes against {} for a list per message",
        MESSAGES * list_bytes
    );
    for s in last_summary.values() {
        let last = s.last_message.as_ref().expect("a preview");
        assert!(last.text.starts_with("burst message "), "{last:?}");
    }
}

/// The user's own message is announced once (`added`, pending) and then `updated` to sent
/// with the same `local_id`: no second copy to reconcile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_is_one_added_message_and_one_update_to_sent() {
    let server = TestServer::start().await;
    let (_dir, alice) = client(&server, server.register("alice").await).await;
    let general = general(&alice).await;
    let mut rx = alice.subscribe();
    let sent = alice
        .send(Target::Conv(general), "only once")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen
        .iter()
        .any(|e: &MessageEvent| e.message.state == MessageState::Sent)
    {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ClientEvent::Message(e))) => seen.push(e),
            Ok(Ok(_)) => {}
            other => panic!("no update to sent: {other:?} after {seen:?}"),
        }
    }
    // Anything else about this message would come right behind the update.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(ev) = rx.try_recv() {
        if let ClientEvent::Message(e) = ev {
            seen.push(e);
        }
    }
    let changes: Vec<_> = seen
        .iter()
        .map(|e| (e.change, e.message.state, e.message.local_id.as_str()))
        .collect();
    assert_eq!(
        changes,
        vec![
            (
                MessageChange::Added,
                MessageState::Pending,
                sent.local_id.as_str()
            ),
            (
                MessageChange::Updated,
                MessageState::Sent,
                sent.local_id.as_str()
            ),
        ]
    );
}

/// A notification's text (conversation title, sender's display name) comes from the local
/// store: no request goes to the server, so the desktop's event pump never waits on one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_text_comes_from_the_store_without_a_server_request() {
    let server = TestServer::start().await;
    let (status, body) = server
        .post(
            "/api/register",
            serde_json::json!({"username": "alice", "password": support::PASSWORD,
                               "display_name": "Alice Liddell"}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_dir, bob) = client(&server, server.register("bob").await).await;
    // The user list the UI loads at start fills the store with display names.
    bob.users().await.unwrap();
    let general = general(&bob).await;
    let requests = bob.stats().requests;
    let facts = bob.notice_facts(general, "alice").await.unwrap();
    assert_eq!(facts.sender_display, "Alice Liddell");
    assert_eq!(facts.conv_title, "#general");
    assert_eq!(facts.level, natter::protocol::NotifyLevel::All);
    assert_eq!(facts.dnd, None);
    // Someone never listed: named by username, still without asking the server.
    let stranger = bob.notice_facts(general, "carol").await.unwrap();
    assert_eq!(stranger.sender_display, "carol");
    assert_eq!(bob.stats().requests, requests, "no request for the notice");

    // With the server gone the answer is the same and immediate.
    let (_data, _) = server.stop().await;
    let facts = tokio::time::timeout(Duration::from_secs(2), bob.notice_facts(general, "alice"))
        .await
        .expect("no wait on the server")
        .unwrap();
    assert_eq!(facts.sender_display, "Alice Liddell");
}

/// The store runs on its own thread: while it is busy (a slow disk, a long merge), the async
/// runtime, here a single thread, keeps running timers and other tasks; store calls just wait.
#[tokio::test(flavor = "current_thread")]
async fn a_busy_store_does_not_block_the_async_runtime() {
    let server = TestServer::start().await;
    let (_dir, alice) = client(&server, server.register("alice").await).await;
    let general = general(&alice).await;
    let stall = Duration::from_secs(3);
    let stalled = tokio::spawn({
        let alice = alice.clone();
        async move { alice.stall_store(stall).await }
    });
    // Let the stall reach the store thread.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let send = tokio::spawn({
        let alice = alice.clone();
        async move { alice.send(Target::Conv(general), "after the stall").await }
    });
    // The one runtime thread is free: a timer fires on time while the store is busy.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ticked = started.elapsed();
    assert!(
        ticked < Duration::from_secs(2),
        "a 50 ms timer took {ticked:?} while the store was busy"
    );
    assert!(!send.is_finished(), "the send waits for the store");
    stalled.await.unwrap().unwrap();
    let msg = send.await.unwrap().unwrap();
    assert_eq!(msg.state, MessageState::Pending);
}

/// A store write that fails while the actor handles a server frame is reported (a warning
/// event with the store's own reason), not dropped. The fault is a trigger added to the
/// client's store file from outside, as a full or failing disk would refuse the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_write_in_the_actor_is_reported_with_its_cause() {
    let server = TestServer::start().await;
    let (dir, bob) = client(&server, server.register("bob").await).await;
    let room = bob.create_room("faulty").await.unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join(natter::client::STORE_FILE)).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER injected_fault BEFORE UPDATE OF member_count ON conversations
             BEGIN SELECT RAISE(ABORT, 'injected disk fault'); END;",
        )
        .unwrap();
    }
    let mut rx = bob.subscribe();
    let mut alice = server.user("alice").await;
    alice
        .request(|id| ClientFrame::Join {
            id,
            room: room.name.clone(),
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ClientEvent::Warning(w))) if w.contains("injected disk fault") => {
                assert!(w.contains("member count"), "{w}");
                break;
            }
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            other => panic!("the failed write was not reported: {other:?}"),
        }
    }
}
