//! Message actions through the client core against the real server (in-process on
//! 127.0.0.1:0, real SQLite on both sides): replies, edits, deletes and reactions go through
//! the outbox, reach the other clients as one `updated` per changed message, survive being
//! offline (a client that missed 50 actions replays each once and its search forgets deleted
//! and pre-edit text), racing devices end in one state, refused actions say why.

mod support;

use std::time::Duration;

use natter::client::{
    ActionFailure, Client, ClientEvent, LocalMessage, MessageChange, MessageEvent, Reaction,
};
use natter::protocol::{Action, ConvId, ConvKind, Seq, Session};
use support::TestServer;
use tokio::sync::broadcast;

async fn client(server: &TestServer, session: Session) -> (tempfile::TempDir, Client) {
    let dir = tempfile::tempdir().unwrap();
    let c = start(server, session, dir.path()).await;
    (dir, c)
}

async fn start(server: &TestServer, session: Session, dir: &std::path::Path) -> Client {
    let c = Client::start(server.client_config(dir), session)
        .await
        .unwrap();
    settle(&c).await;
    c
}

/// Waits until `c` has resumed and its outbox is empty.
async fn settle(c: &Client) {
    tokio::time::timeout(Duration::from_secs(10), async {
        c.wait_synced().await.expect("synced");
        c.wait_outbox_empty().await.expect("outbox drained");
    })
    .await
    .expect("settled in time");
}

async fn general(c: &Client) -> ConvId {
    c.find_conversation(ConvKind::Room, "general")
        .await
        .unwrap()
        .expect("in general")
}

/// The next `Message` event matching `pred`, with its change.
async fn next_message(
    rx: &mut broadcast::Receiver<ClientEvent>,
    mut pred: impl FnMut(&MessageEvent) -> bool,
) -> MessageEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ClientEvent::Message(e))) if pred(&e) => return e,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            other => panic!("no matching message event: {other:?}"),
        }
    }
}

async fn next_failure(rx: &mut broadcast::Receiver<ClientEvent>) -> ActionFailure {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ClientEvent::ActionFailed(f))) => return f,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            other => panic!("no action failure: {other:?}"),
        }
    }
}

/// The message at `seq` as `c`'s history shows it.
async fn shown(c: &Client, conv: ConvId, seq: Seq) -> LocalMessage {
    c.history(conv, Some(seq + 1), 1)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.seq == Some(seq))
        .expect("held")
}

fn reactions(m: &LocalMessage) -> Vec<(String, Vec<String>)> {
    m.reactions
        .iter()
        .map(|Reaction { emoji, users }| (emoji.clone(), users.clone()))
        .collect()
}

/// Every committed message of `conv` as `c` shows it: (seq, text, edited?, deleted, reactions).
async fn state(
    c: &Client,
    conv: ConvId,
) -> Vec<(Seq, String, bool, bool, Vec<(String, Vec<String>)>)> {
    c.history(conv, None, 200)
        .await
        .unwrap()
        .iter()
        .filter_map(|m| {
            Some((
                m.seq?,
                m.text.clone(),
                m.edited.is_some(),
                m.deleted,
                reactions(m),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_edits_reactions_and_deletes_reach_the_other_client_as_updates() {
    let server = TestServer::start().await;
    let (_da, alice) = client(&server, server.register("alice").await).await;
    let (_db, bob) = client(&server, server.register("bob").await).await;
    let conv = general(&alice).await;
    let mut bob_events = bob.subscribe();
    let mut alice_events = alice.subscribe();

    alice
        .send(natter::client::Target::Conv(conv), "helo @bob, teh plan")
        .await
        .unwrap();
    let first = next_message(&mut bob_events, |e| e.message.text.contains("helo")).await;
    let seq = first.message.seq.unwrap();
    let summary = bob.conversation(conv).await.unwrap().unwrap();
    assert_eq!((summary.unread, summary.mentions), (1, 1));

    let reply = bob.reply(conv, seq, "which plan?").await.unwrap();
    let quote = reply.reply_to.clone().expect("a quote");
    assert_eq!(quote.seq, seq);
    assert_eq!(quote.sender.as_deref(), Some("alice"));
    assert_eq!(quote.snippet, "helo @bob, teh plan");
    let got = next_message(&mut alice_events, |e| e.message.text == "which plan?").await;
    assert_eq!(got.change, MessageChange::Added);
    assert_eq!(
        got.message.reply_to.unwrap().sender.as_deref(),
        Some("alice")
    );

    alice.edit(conv, seq, "hello @bob, the plan").await.unwrap();
    let edited = next_message(&mut bob_events, |e| e.message.seq == Some(seq)).await;
    assert_eq!(edited.change, MessageChange::Updated);
    assert_eq!(edited.message.text, "hello @bob, the plan");
    assert!(edited.message.edited.is_some());
    assert!(bob.search("teh", None, 10).await.unwrap().is_empty());
    assert_eq!(bob.search("the plan", None, 10).await.unwrap().len(), 1);
    // Bob's reply quotes the message: its quote follows the edit, announced as an update.
    let requoted = next_message(&mut bob_events, |e| e.message.local_id == reply.local_id).await;
    assert_eq!(requoted.change, MessageChange::Updated);
    assert_eq!(
        requoted.message.reply_to.unwrap().snippet,
        "hello @bob, the plan"
    );

    bob.react(conv, seq, "👍", true).await.unwrap();
    let reacted = next_message(&mut alice_events, |e| {
        e.message.seq == Some(seq) && !e.message.reactions.is_empty()
    })
    .await;
    assert_eq!(
        reactions(&reacted.message),
        [("👍".to_owned(), vec!["bob".to_owned()])]
    );

    // Bob may not edit or delete Alice's message: refused, nothing changed.
    let mut bob_failures = bob.subscribe();
    bob.edit(conv, seq, "bob was here").await.unwrap();
    let failure = next_failure(&mut bob_failures).await;
    assert_eq!(failure.action, Action::Edit { target: seq });
    assert!(failure.error.contains("author"), "{}", failure.error);
    bob.delete(conv, seq).await.unwrap();
    let failure = next_failure(&mut bob_failures).await;
    assert_eq!(failure.action, Action::Delete { target: seq });
    // Not emoji: refused before it is queued.
    for bad in ["a", "👍👍", &"👍".repeat(1_000)] {
        assert_eq!(
            bob.react(conv, seq, bad, true).await.unwrap_err().code(),
            "invalid",
            "{bad}"
        );
    }

    alice.delete(conv, seq).await.unwrap();
    let deleted = next_message(&mut bob_events, |e| {
        e.message.seq == Some(seq) && e.message.deleted
    })
    .await;
    assert!(deleted.message.text.is_empty() && deleted.message.reactions.is_empty());
    // And the reply's quote turns into a tombstone as it happens, not only on reload.
    next_message(&mut bob_events, |e| {
        e.message.local_id == reply.local_id
            && e.message.reply_to.as_ref().is_some_and(|q| q.deleted)
    })
    .await;
    assert!(
        bob.search("plan", None, 10).await.unwrap().len() == 1,
        "only bob's reply"
    );
    // Bob's reply was the next event after Alice's message.
    let reply_now = shown(&bob, conv, seq + 1).await;
    assert_eq!(reply_now.local_id, reply.local_id);
    assert!(
        reply_now.reply_to.unwrap().deleted,
        "the quote is a tombstone"
    );
    settle(&alice).await;
    settle(&bob).await;
    assert_eq!(state(&alice, conv).await, state(&bob, conv).await);
    // Unread: Alice's one message for Bob, Bob's reply for Alice; no action counted.
    assert_eq!(bob.conversation(conv).await.unwrap().unwrap().unread, 1);
    assert_eq!(alice.conversation(conv).await.unwrap().unwrap().unread, 1);
    assert_eq!(
        bob.conversation(conv).await.unwrap().unwrap().mentions,
        0,
        "a deleted mention is no mention"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_offline_during_fifty_actions_replays_them_and_forgets_old_text() {
    let server = TestServer::start().await;
    let (_da, alice) = client(&server, server.register("alice").await).await;
    let bob_session = server.register("bob").await;
    let bob_dir = tempfile::tempdir().unwrap();
    let bob = start(&server, bob_session.clone(), bob_dir.path()).await;
    let conv = general(&alice).await;
    let mut seqs = Vec::new();
    for i in 0..10 {
        let sent = alice
            .send(
                natter::client::Target::Conv(conv),
                &format!("draft{i} words"),
            )
            .await
            .unwrap();
        settle(&alice).await;
        let held = alice.history(conv, None, 200).await.unwrap();
        let seq = held
            .iter()
            .find(|m| m.local_id == sent.local_id)
            .and_then(|m| m.seq)
            .expect("sent");
        seqs.push(seq);
    }
    settle(&bob).await;
    assert_eq!(bob.search("draft3", None, 10).await.unwrap().len(), 1);
    bob.shutdown().await;

    // 50 actions while Bob is away: 25 edits of seqs[0..5], 3 deletes of seqs[5..8], 22
    // reactions toggled on seqs[8..] (ending on).
    let mut actions = 0;
    for round in 0..5 {
        for (i, &seq) in seqs[..5].iter().enumerate() {
            let text = format!("final{i} round{round}");
            alice.edit(conv, seq, &text).await.unwrap();
            actions += 1;
        }
    }
    for &seq in &seqs[5..8] {
        alice.delete(conv, seq).await.unwrap();
        actions += 1;
    }
    for round in 0..11 {
        for &seq in &seqs[8..] {
            alice.react(conv, seq, "🎉", round % 2 == 0).await.unwrap();
            actions += 1;
        }
    }
    assert_eq!(actions, 50);
    settle(&alice).await;
    let bob = start(&server, bob_session, bob_dir.path()).await;
    let mut events = bob.subscribe();
    bob.reconnect_now();
    settle(&bob).await;
    assert_eq!(state(&bob, conv).await, state(&alice, conv).await);
    for i in 0..8 {
        let old = format!("draft{i}");
        assert!(
            bob.search(&old, None, 10).await.unwrap().is_empty(),
            "{old}"
        );
    }
    assert_eq!(
        bob.search("draft9", None, 10).await.unwrap().len(),
        1,
        "kept"
    );
    assert_eq!(bob.search("round4", None, 10).await.unwrap().len(), 5);
    assert!(bob.search("round3", None, 10).await.unwrap().is_empty());
    for &seq in &seqs[5..8] {
        assert!(shown(&bob, conv, seq).await.deleted);
    }
    for &seq in &seqs[8..] {
        let m = shown(&bob, conv, seq).await;
        assert_eq!(reactions(&m), [("🎉".to_owned(), vec!["alice".to_owned()])]);
    }
    // Nothing was replayed twice: a reconnect brings no message events at all.
    while let Ok(e) = events.try_recv() {
        assert!(!matches!(e, ClientEvent::Message(_)), "{e:?}");
    }
    let summary = bob.conversation(conv).await.unwrap().unwrap();
    assert_eq!(summary.unread, 10, "ten messages, none of the 50 actions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_devices_and_a_reply_to_a_deleted_message_end_in_one_state() {
    let server = TestServer::start().await;
    let alice_session = server.register("alice").await;
    let (_dp, phone) = client(&server, alice_session.clone()).await;
    let (_dl, laptop) = client(&server, server.login("alice").await).await;
    let (_db, bob) = client(&server, server.register("bob").await).await;
    let conv = general(&phone).await;
    let mut bob_events = bob.subscribe();
    for round in 0..5 {
        phone
            .send(natter::client::Target::Conv(conv), &format!("note {round}"))
            .await
            .unwrap();
        let m = next_message(&mut bob_events, |e| {
            e.message.text == format!("note {round}")
        })
        .await;
        let seq = m.message.seq.unwrap();
        settle(&laptop).await;
        // An edit and a delete from two devices, two reactions from two devices, and Bob's
        // reply, all at once.
        let (edit, reply) = (format!("edited {round}"), format!("re {round}"));
        let (a, b, c, d, e) = tokio::join!(
            phone.edit(conv, seq, &edit),
            laptop.delete(conv, seq),
            phone.react(conv, seq, "👍", true),
            laptop.react(conv, seq, "👍", true),
            bob.reply(conv, seq, &reply),
        );
        a.unwrap();
        b.unwrap();
        c.unwrap();
        d.unwrap();
        e.unwrap();
        for c in [&phone, &laptop, &bob] {
            settle(c).await;
        }
        let states = [
            state(&phone, conv).await,
            state(&laptop, conv).await,
            state(&bob, conv).await,
        ];
        assert_eq!(states[0], states[1]);
        assert_eq!(states[1], states[2]);
        let target = states[0].iter().find(|s| s.0 == seq).unwrap();
        assert!(
            target.3 && target.1.is_empty(),
            "the delete wins: {target:?}"
        );
        assert!(states[0].iter().any(|s| s.1 == format!("re {round}")));
    }
}
