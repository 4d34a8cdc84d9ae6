//! Message actions on a real server (issue 18): replies, edits, deletes and reactions are events
//! with their own seq, reach every member in order, replay on resume, are authorised and
//! validated (bad inputs named below change nothing), race to one state from two devices, and
//! leave unread counts alone. Runs on PostgreSQL too when NATTER_TEST_POSTGRES is set.

mod support;

use std::collections::BTreeSet;

use natter::protocol::{
    limits, Action, ActionRequest, ClientFrame, ConvId, ConvSeq, ErrorCode, Message, Reply, Seq,
    ServerFrame, Target,
};
use support::{TestServer, WsClient};
use uuid::Uuid;

/// The frame of `action` in `conv` under key `client_msg_id`, for a request id.
fn action_with(
    conv: ConvId,
    action: Action,
    text: &str,
    client_msg_id: Uuid,
) -> impl FnOnce(u64) -> ClientFrame {
    let request = ActionRequest {
        conv,
        client_msg_id,
        action,
        text: text.to_owned(),
    };
    move |id| request.into_frame(id)
}

fn edit(conv: ConvId, target: Seq, text: &str) -> impl FnOnce(u64) -> ClientFrame {
    action_with(conv, Action::Edit { target }, text, Uuid::new_v4())
}

fn delete(conv: ConvId, target: Seq) -> impl FnOnce(u64) -> ClientFrame {
    action_with(conv, Action::Delete { target }, "", Uuid::new_v4())
}

fn react(conv: ConvId, target: Seq, emoji: &str, on: bool) -> impl FnOnce(u64) -> ClientFrame {
    react_with(conv, target, emoji, on, Uuid::new_v4())
}

fn react_with(
    conv: ConvId,
    target: Seq,
    emoji: &str,
    on: bool,
    client_msg_id: Uuid,
) -> impl FnOnce(u64) -> ClientFrame {
    let emoji = emoji.to_owned();
    action_with(conv, Action::React { target, emoji, on }, "", client_msg_id)
}

fn reply(conv: ConvId, target: Seq, text: &str) -> impl FnOnce(u64) -> ClientFrame {
    let text = text.to_owned();
    move |id| ClientFrame::Send {
        id,
        target: Target::Conv(conv),
        client_msg_id: Uuid::new_v4(),
        text,
        reply_to: Some(target),
        attachments: Vec::new(),
    }
}

/// The reactions a conversation's events add up to: (target, sender, emoji), folded in seq
/// order as every client folds them.
fn reactions(events: &[Message]) -> BTreeSet<(Seq, String, String)> {
    let mut set = BTreeSet::new();
    for m in events {
        if let Some(Action::React { target, emoji, on }) = &m.action {
            let key = (*target, m.sender.clone(), emoji.clone());
            if *on {
                set.insert(key);
            } else {
                set.remove(&key);
            }
        }
    }
    set
}

/// What a frame that commits an event gets: the event, or the error.
type Outcome = Result<Message, (ErrorCode, String)>;

fn message_at(events: &[Message], seq: Seq) -> &Message {
    events
        .iter()
        .find(|m| m.seq == seq)
        .expect("seq in history")
}

/// The pushed `message` frames up to and including seq `upto` of `conv`.
async fn pushed_until(c: &mut WsClient, conv: ConvId, upto: Seq) -> Vec<Message> {
    let mut got = Vec::new();
    while got.last().is_none_or(|m: &Message| m.seq < upto) {
        if let ServerFrame::Message { message } = c
            .wait_for(|f| matches!(f, ServerFrame::Message { message } if message.conv == conv))
            .await
        {
            got.push(message);
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_events_that_reach_every_member_in_order() {
    let server = TestServer::start().await;
    let mut alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let general = alice.general();
    let first = alice.send_text(general, "helo wrold").await;
    let answer = bob.event(reply(general, first.seq, "hi!")).await.unwrap();
    assert_eq!(answer.reply_to, Some(first.seq));
    assert_eq!(answer.action, None);
    let edited = alice
        .event(edit(general, first.seq, "hello world"))
        .await
        .unwrap();
    assert_eq!(edited.action, Some(Action::Edit { target: first.seq }));
    assert_eq!(edited.text, "hello world");
    let up = bob
        .event(react(general, first.seq, "👍", true))
        .await
        .unwrap();
    // The same reaction again (another device, another key) is still one reaction.
    let again = bob
        .event(react(general, first.seq, "👍", true))
        .await
        .unwrap();
    assert!(again.seq > up.seq);
    let party = alice
        .event(react(general, first.seq, "🎉", true))
        .await
        .unwrap();
    let party_off = alice
        .event(react(general, first.seq, "🎉", false))
        .await
        .unwrap();
    assert_eq!(
        party_off.action,
        Some(Action::React {
            target: first.seq,
            emoji: "🎉".into(),
            on: false
        })
    );
    assert!(party_off.seq > party.seq);

    // Bob's socket saw Alice's events pushed, in seq order.
    let pushed = pushed_until(&mut bob, general, party_off.seq).await;
    let seqs: Vec<Seq> = pushed.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![first.seq, edited.seq, party.seq, party_off.seq]);

    // History: the target carries its current text and the edit time; the events are there.
    let history = bob.all_history(general).await;
    let target = message_at(&history, first.seq);
    assert_eq!(target.text, "hello world");
    assert_eq!(target.edited, Some(edited.time));
    assert!(!target.deleted);
    assert_eq!(
        reactions(&history),
        BTreeSet::from([(first.seq, "bob".to_owned(), "👍".to_owned())])
    );

    // A delete empties the target and its edits on the server, for everyone.
    let deleted = alice.event(delete(general, first.seq)).await.unwrap();
    assert_eq!(deleted.action, Some(Action::Delete { target: first.seq }));
    for c in [&mut alice, &mut bob] {
        let history = c.all_history(general).await;
        let target = message_at(&history, first.seq);
        assert!(target.deleted && target.text.is_empty(), "{target:?}");
        let edit_event = message_at(&history, edited.seq);
        assert!(
            edit_event.deleted && edit_event.text.is_empty(),
            "{edit_event:?}"
        );
        assert!(!history.iter().any(|m| m.text.contains("hello world")));
        assert_eq!(message_at(&history, answer.seq).reply_to, Some(first.seq));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_actions_get_clear_errors_and_change_nothing() {
    let server = TestServer::start().await;
    let mut alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let general = alice.general();
    let Reply::Joined { conversation } = alice
        .request(|id| ClientFrame::CreateRoom {
            private: false,
            id,
            name: "side".into(),
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    let side = conversation.id;
    for i in 0..5 {
        alice.send_text(side, &format!("side {i}")).await;
    }
    let mine = alice.send_text(general, "alice's words").await;
    let fixed = alice
        .event(edit(general, mine.seq, "alice's words!"))
        .await
        .unwrap();
    let gone = alice.send_text(general, "soon gone").await;
    alice.event(delete(general, gone.seq)).await.unwrap();
    let before = bob.all_history(general).await;
    let side_before = alice.all_history(side).await;
    let last = before.last().unwrap().seq;
    assert!(last < 5, "seq 5 exists in side only");

    let refused = |r: Outcome| r.expect_err("refused");
    let cases: Vec<(&str, Outcome, ErrorCode)> = vec![
        (
            "bob edits alice's message",
            bob.event(edit(general, mine.seq, "bob was here")).await,
            ErrorCode::Forbidden,
        ),
        (
            "bob deletes alice's message",
            bob.event(delete(general, mine.seq)).await,
            ErrorCode::Forbidden,
        ),
        (
            "a target seq that does not exist",
            alice.event(edit(general, 999, "x")).await,
            ErrorCode::NotFound,
        ),
        (
            "a target that exists only in another conversation (side's seq 5)",
            alice.event(delete(general, 5)).await,
            ErrorCode::NotFound,
        ),
        (
            "a target that is itself an edit",
            alice.event(edit(general, fixed.seq, "edit the edit")).await,
            ErrorCode::InvalidTarget,
        ),
        (
            "a reaction to an edit",
            bob.event(react(general, fixed.seq, "👍", true)).await,
            ErrorCode::InvalidTarget,
        ),
        (
            "a reply to an edit event",
            bob.event(reply(general, fixed.seq, "re: edit")).await,
            ErrorCode::InvalidTarget,
        ),
        (
            "editing a deleted message",
            alice.event(edit(general, gone.seq, "back")).await,
            ErrorCode::InvalidTarget,
        ),
        (
            "deleting a deleted message",
            alice.event(delete(general, gone.seq)).await,
            ErrorCode::InvalidTarget,
        ),
        (
            "reacting to a deleted message",
            bob.event(react(general, gone.seq, "👍", true)).await,
            ErrorCode::InvalidTarget,
        ),
        (
            "an edit one char over the length limit",
            alice
                .event(edit(
                    general,
                    mine.seq,
                    &"a".repeat(limits::MAX_TEXT_CHARS + 1),
                ))
                .await,
            ErrorCode::TooLong,
        ),
        (
            "a blank edit",
            alice.event(edit(general, mine.seq, " \n ")).await,
            ErrorCode::BadRequest,
        ),
        (
            "a reaction that is a letter",
            bob.event(react(general, mine.seq, "a", true)).await,
            ErrorCode::InvalidReaction,
        ),
        (
            "a reaction of 1,000 characters",
            bob.event(react(general, mine.seq, &"👍".repeat(1_000), true))
                .await,
            ErrorCode::InvalidReaction,
        ),
        (
            "a reaction of two emoji",
            bob.event(react(general, mine.seq, "👍👍", true)).await,
            ErrorCode::InvalidReaction,
        ),
        (
            "an empty reaction",
            bob.event(react(general, mine.seq, "", true)).await,
            ErrorCode::InvalidReaction,
        ),
        (
            "a reaction that is markup",
            bob.event(react(general, mine.seq, "<img src=x>", true))
                .await,
            ErrorCode::InvalidReaction,
        ),
    ];
    for (name, result, code) in cases {
        let (got, message) = refused(result);
        assert_eq!(got, code, "{name}: {message}");
        assert!(!message.is_empty(), "{name}");
    }

    // Reacting in a conversation one is not in: the same error as sending there.
    let mut carol = server.user("carol").await;
    let send_error = carol
        .send_with_id(side, "let me in", Uuid::new_v4())
        .await
        .unwrap_err();
    let react_error = carol.event(react(side, 1, "👍", true)).await.unwrap_err();
    assert_eq!(react_error, send_error);
    assert_eq!(react_error.0, ErrorCode::Forbidden);
    let edit_error = carol.event(edit(side, 1, "mine now")).await.unwrap_err();
    assert_eq!(edit_error, send_error);

    assert_eq!(bob.all_history(general).await, before, "nothing changed");
    assert_eq!(
        alice.all_history(side).await,
        side_before,
        "nothing changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_and_a_delete_racing_from_two_devices_end_in_one_state() {
    let server = TestServer::start().await;
    let session = server.register("alice").await;
    let mut phone = server.connect(&session.token).await;
    let mut laptop = server.connect(&session.token).await;
    let mut bob = server.user("bob").await;
    let general = phone.general();
    for round in 0..10 {
        let m = phone.send_text(general, &format!("draft {round}")).await;
        let (e, d) = (phone.next_id(), laptop.next_id());
        phone
            .send_frame(&edit(general, m.seq, &format!("final {round}"))(e))
            .await;
        laptop.send_frame(&delete(general, m.seq)(d)).await;
        let edited = phone.answer(e).await;
        let deleted = laptop.answer(d).await;
        assert!(deleted.is_ok(), "the delete always wins: {deleted:?}");
        if let Err((code, _)) = &edited {
            assert_eq!(*code, ErrorCode::InvalidTarget, "edit after the delete");
        }
        let mut states = Vec::new();
        for c in [&mut phone, &mut laptop, &mut bob] {
            let history = c.all_history(general).await;
            let target = message_at(&history, m.seq).clone();
            assert!(target.deleted && target.text.is_empty(), "{target:?}");
            assert!(!history.iter().any(|h| h.text == format!("final {round}")));
            states.push(history);
        }
        assert!(states.windows(2).all(|w| w[0] == w[1]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_toggled_from_two_devices_at_once_agree() {
    let server = TestServer::start().await;
    let session = server.register("alice").await;
    let mut phone = server.connect(&session.token).await;
    let mut laptop = server.connect(&session.token).await;
    let mut bob = server.user("bob").await;
    let general = phone.general();
    let m = bob.send_text(general, "react to me").await;
    // Both devices add 👍 at once, then both take it back while re-adding ❤️ twice.
    for (first, second, want) in [
        (("👍", true), ("👍", true), vec!["👍"]),
        (("👍", false), ("❤\u{FE0F}", true), vec!["❤\u{FE0F}"]),
        (("❤\u{FE0F}", true), ("👍", false), vec!["❤\u{FE0F}"]),
    ] {
        let (a, b) = (phone.next_id(), laptop.next_id());
        phone
            .send_frame(&react(general, m.seq, first.0, first.1)(a))
            .await;
        laptop
            .send_frame(&react(general, m.seq, second.0, second.1)(b))
            .await;
        phone.answer(a).await.unwrap();
        laptop.answer(b).await.unwrap();
        let want: BTreeSet<_> = want
            .iter()
            .map(|e| (m.seq, "alice".to_owned(), (*e).to_owned()))
            .collect();
        for c in [&mut phone, &mut laptop, &mut bob] {
            assert_eq!(reactions(&c.all_history(general).await), want);
        }
    }
    // A retry with the same key is the same event: no new seq, same answer.
    let key = Uuid::new_v4();
    let once = bob
        .event(react_with(general, m.seq, "🎉", true, key))
        .await
        .unwrap();
    let retry = bob
        .event(react_with(general, m.seq, "🎉", true, key))
        .await
        .unwrap();
    assert_eq!(once, retry);
    let history = bob.all_history(general).await;
    assert_eq!(history.last().unwrap().seq, once.seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_message_deleted_meanwhile_points_at_its_tombstone() {
    let server = TestServer::start().await;
    let mut alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let general = alice.general();
    let m = alice.send_text(general, "oops").await;
    let (d, r) = (alice.next_id(), bob.next_id());
    alice.send_frame(&delete(general, m.seq)(d)).await;
    bob.send_frame(&reply(general, m.seq, "what did you say?")(r))
        .await;
    alice.answer(d).await.unwrap();
    let Reply::Sent { message: answer } = bob.answer(r).await.unwrap() else {
        panic!()
    };
    assert_eq!(answer.reply_to, Some(m.seq));
    let a = alice.all_history(general).await;
    let b = bob.all_history(general).await;
    assert_eq!(a, b);
    assert!(message_at(&a, m.seq).deleted);
    assert_eq!(message_at(&a, answer.seq).text, "what did you say?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_counts_ignore_edits_deletes_and_reactions() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut a = server.connect(&alice.token).await;
    let mut b = server.connect(&bob.token).await;
    let general = a.general();
    let one = a.send_text(general, "one").await;
    let two = a.send_text(general, "two").await;
    a.event(edit(general, one.seq, "one!")).await.unwrap();
    a.event(react(general, two.seq, "👍", true)).await.unwrap();
    a.event(delete(general, two.seq)).await.unwrap();
    b.event(react(general, one.seq, "🎉", true)).await.unwrap();
    a.event(reply(general, one.seq, "three")).await.unwrap();
    let unread = |c: &WsClient| match &c.hello {
        Some(ServerFrame::Hello { unread, .. }) => {
            unread.iter().find(|u| u.conv == general).unwrap().count
        }
        _ => panic!(),
    };
    // Three messages from Alice (one since deleted: it was a message); her edit, reaction and
    // delete and Bob's own reaction are not unread.
    let b2 = server.connect(&bob.token).await;
    assert_eq!(unread(&b2), 3);
    let a2 = server.connect(&alice.token).await;
    assert_eq!(unread(&a2), 0, "bob's reaction is not unread for alice");
    let Reply::Synced { unread } = b
        .request(|id| ClientFrame::Sync {
            id,
            since: vec![ConvSeq {
                conv: general,
                seq: 0,
            }],
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(unread.iter().find(|u| u.conv == general).unwrap().count, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_offline_during_fifty_actions_replays_each_once_in_order() {
    let server = TestServer::start().await;
    let mut alice = server.user("alice").await;
    let bob = server.register("bob").await;
    let general = alice.general();
    let mut targets = Vec::new();
    for i in 0..10 {
        targets.push(alice.send_text(general, &format!("note {i}")).await.seq);
    }
    let held = targets.last().copied().unwrap();
    // Bob is offline from here: 50 actions happen.
    let mut done = Vec::new();
    for i in 0..50 {
        let target = targets[i % 10];
        let event = match i % 5 {
            0 | 1 => alice.event(react(general, target, "👍", i % 2 == 0)).await,
            2 | 3 => {
                alice
                    .event(edit(general, target, &format!("note {i}, edited")))
                    .await
            }
            _ => alice.event(react(general, target, "🔥", true)).await,
        };
        done.push(event.unwrap());
    }
    let mut b = server.connect(&bob.token).await;
    let id = b.next_id();
    b.send_frame(&ClientFrame::Sync {
        id,
        since: vec![ConvSeq {
            conv: general,
            seq: held,
        }],
    })
    .await;
    let mut replayed = Vec::new();
    loop {
        match b.recv().await.expect("open") {
            ServerFrame::Batch { conv, messages } if conv == general => replayed.extend(messages),
            ServerFrame::Ok { id: got, .. } if got == id => break,
            _ => {}
        }
    }
    let got: Vec<Seq> = replayed.iter().map(|m| m.seq).collect();
    let want: Vec<Seq> = done.iter().map(|m| m.seq).collect();
    assert_eq!(got, want, "each once, in order");
    let actions: Vec<_> = replayed.iter().map(|m| m.action.clone()).collect();
    assert_eq!(
        actions,
        done.iter().map(|m| m.action.clone()).collect::<Vec<_>>()
    );
}
