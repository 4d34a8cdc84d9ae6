//! The event stream (`GET /api/events`, Server-Sent Events) against a real server: order,
//! resume with `Last-Event-ID`, what a user may not see, revocation, tickets, slow readers,
//! heartbeats, membership and presence, and bad input.
//!
//! Bad inputs tried: a malformed `Last-Event-ID` (no dot, a sign, letters, a repeated
//! conversation, zero conversation, another separator), a `conv` filter naming an unknown conversation,
//! another user's DM, a room the user left, `conv=0`, `conv=` empty, an unknown query parameter,
//! `presence=maybe`, `watch` without `presence=true`, `watch` naming no user, an empty name in
//! `watch` (`alice,,carol`, `watch=`), more than 1,000 names, `watch` twice, a ticket and a
//! bearer token together, no credentials, a bad token, a used, unknown or expired ticket, an
//! Origin not allowed, too many streams.

mod support;

use std::collections::VecDeque;
use std::time::Duration;

use natter::protocol::{Action, ClientFrame, ConvId, Message, Reply, ServerFrame};
use natter::stream::{Cursor, Event, Parser, Ready, Ticket};
use support::{TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// A stream read with reqwest and the crate's own parser.
struct Sse {
    resp: reqwest::Response,
    parser: Parser,
    pending: VecDeque<Event>,
    /// Comment lines seen (heartbeats).
    comments: usize,
}

impl Sse {
    /// Open a stream; Err(status, body) when the server refuses it.
    async fn open(
        server: &TestServer,
        token: Option<&str>,
        query: &str,
        last_id: Option<&str>,
    ) -> Result<Sse, (u16, serde_json::Value)> {
        let mut req = reqwest::Client::new().get(server.http_url(&format!("/api/events{query}")));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.json().await.expect("an error body is JSON");
            return Err((status, body));
        }
        assert_eq!(
            resp.headers()["content-type"],
            "text/event-stream",
            "the stream's media type"
        );
        Ok(Sse {
            resp,
            parser: Parser::default(),
            pending: VecDeque::new(),
            comments: 0,
        })
    }

    /// The next event; None when the stream ended.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            let chunk = tokio::time::timeout(WAIT, self.resp.chunk())
                .await
                .expect("an event within the wait")
                .ok()??;
            self.comments += String::from_utf8_lossy(&chunk)
                .lines()
                .filter(|l| l.starts_with(':'))
                .count();
            self.pending.extend(self.parser.feed(&chunk));
        }
    }

    async fn expect(&mut self, name: &str) -> Event {
        let e = self.next().await.expect("stream open");
        assert_eq!(e.name, name, "expected a {name} event, got {e:?}");
        e
    }

    async fn ready(&mut self) -> Ready {
        let e = self.expect("ready").await;
        let ready: Ready = serde_json::from_str(&e.data).expect("ready data");
        let cursor = Cursor::parse(e.id.as_deref().expect("ready has an id")).unwrap();
        assert_eq!(
            cursor.to_conv_seqs(),
            ready.conversations,
            "id and data agree"
        );
        ready
    }

    /// The next event, a `presence`: who came online and who went offline.
    async fn presence(&mut self) -> (Vec<String>, Vec<String>) {
        let e = self.expect("presence").await;
        match serde_json::from_str(&e.data).expect("frame json") {
            ServerFrame::Presence { online, offline } => (online, offline),
            other => panic!("presence data is the presence frame: {other:?}"),
        }
    }

    /// The next `message` event's message, checking the frame shape and that the id moved to it.
    async fn message(&mut self) -> Message {
        let e = self.expect("message").await;
        let ServerFrame::Message { message } = serde_json::from_str(&e.data).expect("frame json")
        else {
            panic!("message data is the message frame: {}", e.data)
        };
        let cursor = Cursor::parse(e.id.as_deref().expect("a message has an id")).unwrap();
        assert_eq!(cursor.get(message.conv), Some(message.seq), "{:?}", e.id);
        message
    }
}

async fn ticket(server: &TestServer, token: &str) -> Ticket {
    let (status, body) = server
        .post("/api/events/ticket", serde_json::json!(null), Some(token))
        .await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn code(body: &serde_json::Value) -> &str {
    body["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_carries_a_rooms_messages_in_order_and_never_a_dm_of_others() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    server.register("bob").await;
    let carol = server.register("carol").await;
    let mut a = server.connect(&alice.token).await;
    let general = a.general();
    let mut stream = Sse::open(&server, Some(&carol.token), "", None)
        .await
        .unwrap();
    let ready = stream.ready().await;
    assert!(ready.online.is_none(), "no presence unless asked");
    assert_eq!(
        ready
            .conversations
            .iter()
            .map(|c| c.conv)
            .collect::<Vec<_>>(),
        vec![general]
    );
    let mut sent = Vec::new();
    for i in 0..30 {
        if i % 10 == 5 {
            a.send_dm("bob", &format!("secret {i}")).await.unwrap();
        }
        sent.push(a.send_text(general, &format!("hello {i}")).await);
    }
    for expected in &sent {
        assert_eq!(&stream.message().await, expected, "in order, whole");
    }
    // Nothing else came: the DMs (and alice's new conversation with bob) never showed.
    a.send_text(general, "last").await;
    let last = stream.message().await;
    assert_eq!(last.text, "last");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_with_the_last_event_id_after_100_missed_gets_exactly_those() {
    let server = TestServer::start_with(|c| {
        c.rate_limit_per_sec = 10_000;
        c.rate_burst = 10_000;
    })
    .await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut a = server.connect(&alice.token).await;
    let general = a.general();
    let first = a.send_text(general, "before the stream").await;
    let mut stream = Sse::open(&server, Some(&bob.token), "", None)
        .await
        .unwrap();
    let ready = stream.ready().await;
    assert_eq!(ready.conversations[0].seq, first.seq, "starts now");
    let seen = a.send_text(general, "seen").await;
    assert_eq!(stream.message().await, seen);
    let last_id = stream.parser.last_id().unwrap().to_string();
    drop(stream);
    // A DM arrives while away: a conversation the cursor does not name.
    let dm = a.send_dm("bob", "while you were away").await.unwrap();
    let mut missed = Vec::new();
    for i in 0..100 {
        missed.push(a.send_text(general, &format!("missed {i}")).await);
    }
    let mut again = Sse::open(&server, Some(&bob.token), "", Some(&last_id))
        .await
        .unwrap();
    let ready = again.ready().await;
    let start: Vec<(ConvId, i64)> = ready
        .conversations
        .iter()
        .map(|c| (c.conv, c.seq))
        .collect();
    assert_eq!(start, vec![(general, seen.seq), (dm.conv, 0)]);
    let mut got = Vec::new();
    for _ in 0..101 {
        got.push(again.message().await);
    }
    let (in_general, in_dm): (Vec<Message>, Vec<Message>) =
        got.into_iter().partition(|m| m.conv == general);
    assert_eq!(in_general, missed, "exactly the missed ones, in order");
    assert_eq!(in_dm, vec![dm]);
    // Then live, with nothing repeated.
    let live = a.send_text(general, "live").await;
    assert_eq!(again.message().await, live);
}

/// Replies, edits, reactions and deletes are `message` events like messages: live, and
/// replayed after a reconnect with the last event id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_actions_ride_the_stream_live_and_on_resume() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut a = server.connect(&alice.token).await;
    let general = a.general();
    let mut stream = Sse::open(&server, Some(&bob.token), "", None)
        .await
        .unwrap();
    stream.ready().await;
    let m = a.send_text(general, "helo").await;
    let act = |frame: fn(u64, ConvId, i64, Uuid) -> ClientFrame| {
        move |id| frame(id, general, m.seq, Uuid::new_v4())
    };
    let edit = a
        .event(act(|id, conv, target, client_msg_id| ClientFrame::Edit {
            id,
            conv,
            target,
            client_msg_id,
            text: "hello".into(),
        }))
        .await
        .unwrap();
    let react = a
        .event(act(|id, conv, target, client_msg_id| ClientFrame::React {
            id,
            conv,
            target,
            client_msg_id,
            emoji: "👍".into(),
            on: true,
        }))
        .await
        .unwrap();
    assert_eq!(stream.message().await, m);
    assert_eq!(stream.message().await, edit);
    assert_eq!(stream.message().await.action, react.action);
    let last_id = stream.parser.last_id().unwrap().to_string();
    drop(stream);
    let delete = a
        .event(act(|id, conv, target, client_msg_id| ClientFrame::Delete {
            id,
            conv,
            target,
            client_msg_id,
        }))
        .await
        .unwrap();
    let mut again = Sse::open(&server, Some(&bob.token), "", Some(&last_id))
        .await
        .unwrap();
    again.ready().await;
    let replayed = again.message().await;
    assert_eq!(replayed, delete);
    assert_eq!(replayed.action, Some(Action::Delete { target: m.seq }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_leaving_and_membership_move_the_cursor_and_a_filter_narrows() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut a = server.connect(&alice.token).await;
    let mut b = server.connect(&bob.token).await;
    let general = a.general();
    let room = match a
        .request(|id| ClientFrame::CreateRoom {
            private: false,
            id,
            name: "lounge".into(),
        })
        .await
        .unwrap()
    {
        Reply::Joined { conversation } => conversation.id,
        other => panic!("{other:?}"),
    };
    a.send_text(room, "before bob").await;
    let mut all = Sse::open(&server, Some(&bob.token), "", None)
        .await
        .unwrap();
    all.ready().await;
    let mut only = Sse::open(&server, Some(&bob.token), &format!("?conv={general}"), None)
        .await
        .unwrap();
    assert_eq!(only.ready().await.conversations.len(), 1);
    b.request(|id| ClientFrame::Join {
        id,
        room: "lounge".into(),
    })
    .await
    .unwrap();
    let added = all.expect("conversation_added").await;
    let cursor = Cursor::parse(added.id.as_deref().unwrap()).unwrap();
    assert_eq!(
        cursor.get(room),
        Some(1),
        "the room joins the cursor at its last seq"
    );
    let in_room = a.send_text(room, "welcome").await;
    assert_eq!(all.message().await, in_room);
    a.request(|id| ClientFrame::Leave { id, conv: room })
        .await
        .unwrap();
    let left = all.expect("membership").await;
    assert!(left.data.contains("\"joined\":false"), "{}", left.data);
    b.request(|id| ClientFrame::Leave { id, conv: room })
        .await
        .unwrap();
    let removed = all.expect("conversation_removed").await;
    assert!(!Cursor::parse(removed.id.as_deref().unwrap())
        .unwrap()
        .contains(room));
    // The filtered stream saw none of it: its next event is general's.
    let hi = a.send_text(general, "hi").await;
    assert_eq!(only.message().await, hi);
    assert_eq!(all.message().await, hi);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_ends_the_stream_with_a_closed_event() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let other = server.login("bob").await;
    let mut stream = Sse::open(&server, Some(&bob.token), "", None)
        .await
        .unwrap();
    stream.ready().await;
    let mut survivor = Sse::open(&server, Some(&other.token), "", None)
        .await
        .unwrap();
    survivor.ready().await;
    let (status, _) = server
        .post("/api/logout", serde_json::json!(null), Some(&bob.token))
        .await;
    assert_eq!(status, 204);
    let closed = stream.expect("closed").await;
    let body: serde_json::Value = serde_json::from_str(&closed.data).unwrap();
    assert_eq!(code(&body), "unauthorized", "{body}");
    assert!(stream.next().await.is_none(), "then the stream ends");
    let (status, body) = Sse::open(&server, Some(&bob.token), "", None)
        .await
        .err()
        .unwrap();
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    // The other session's stream goes on.
    let mut a = server.connect(&alice.token).await;
    let general = a.general();
    let m = a.send_text(general, "still there?").await;
    assert_eq!(survivor.message().await, m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_opens_one_stream_once_and_expires() {
    let clock = natter::server::Clock::manual();
    let server = TestServer::start_with(|c| {
        c.clock = clock.clone();
        c.allowed_origins = vec!["http://dashboard.example".into()];
    })
    .await;
    let bob = server.register("bob").await;
    let t = ticket(&server, &bob.token).await;
    assert_eq!(t.expires_in, 60);
    assert_ne!(t.ticket, bob.token, "never the token itself");
    let query = format!("?ticket={}", t.ticket);
    // A browser on an allowed page.
    let resp = reqwest::Client::new()
        .get(server.http_url(&format!("/api/events{query}")))
        .header("Origin", "http://dashboard.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let (status, body) = Sse::open(&server, None, &query, None).await.err().unwrap();
    assert_eq!((status, code(&body)), (401, "unauthorized"), "used once");
    let late = ticket(&server, &bob.token).await;
    clock.advance(Duration::from_secs(61));
    let (status, _) = Sse::open(&server, None, &format!("?ticket={}", late.ticket), None)
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401, "expired");
    let (status, _) = Sse::open(&server, None, "?ticket=made-up", None)
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401, "unknown");
    let fresh = ticket(&server, &bob.token).await;
    let mut stream = Sse::open(&server, None, &format!("?ticket={}", fresh.ticket), None)
        .await
        .unwrap();
    stream.ready().await;
    // A browser reopening its EventSource passes the last id in the URL with a new ticket.
    let mut b = server.connect(&bob.token).await;
    let general = b.general();
    let first = b.send_text(general, "first").await;
    assert_eq!(stream.message().await, first);
    let last_id = stream.parser.last_id().unwrap().to_string();
    drop(stream);
    let second = b.send_text(general, "second").await;
    let reopen = ticket(&server, &bob.token).await;
    let query = format!(
        "?ticket={}&last_event_id={}",
        reopen.ticket,
        url::form_urlencoded::byte_serialize(last_id.as_bytes()).collect::<String>()
    );
    let mut stream = Sse::open(&server, None, &query, None).await.unwrap();
    stream.ready().await;
    assert_eq!(
        stream.message().await,
        second,
        "resumed after the id in the URL"
    );
    let both = format!("?last_event_id={last_id}");
    let (status, body) = Sse::open(&server, Some(&bob.token), &both, Some(&last_id))
        .await
        .err()
        .unwrap();
    assert_eq!((status, code(&body)), (400, "bad_request"), "{body}");
    // Another site's page cannot use one.
    let other = ticket(&server, &bob.token).await;
    let resp = reqwest::Client::new()
        .get(server.http_url(&format!("/api/events?ticket={}", other.ticket)))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // A ticket needs a token.
    let (status, _) = server
        .post("/api/events/ticket", serde_json::json!(null), None)
        .await;
    assert_eq!(status, 401);
    let (status, body) = Sse::open(
        &server,
        Some(&bob.token),
        &format!("?ticket={}", other.ticket),
        None,
    )
    .await
    .err()
    .unwrap();
    assert_eq!((status, code(&body)), (400, "bad_request"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let server = TestServer::start_with(|c| c.max_streams_per_user = 2).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let mut a = server.connect(&alice.token).await;
    let dm = a.send_dm("carol", "just us").await.unwrap().conv;
    a.request(|id| ClientFrame::CreateRoom {
        private: false,
        id,
        name: "closed".into(),
    })
    .await
    .unwrap();
    let room = a
        .request(|id| ClientFrame::Rooms { id })
        .await
        .map(|r| match r {
            Reply::Rooms { rooms } => rooms.into_iter().find(|r| r.name == "closed").unwrap().id,
            other => panic!("{other:?}"),
        })
        .unwrap();
    let expect = |status: u16, code_: &'static str, words: &'static str| {
        move |got: Result<Sse, (u16, serde_json::Value)>| {
            let (s, body) = got.err().expect("refused");
            assert_eq!((s, code(&body)), (status, code_), "{body}");
            assert!(
                body["message"].as_str().unwrap().contains(words),
                "{body} should say {words:?}"
            );
        }
    };
    for bad in ["1", "1.-2", "x.y", "1.2,1.3", "0.4", "1.2;3.4", "+1.2"] {
        expect(400, "bad_request", "Last-Event-ID")(
            Sse::open(&server, Some(&bob.token), "", Some(bad)).await,
        );
    }
    expect(404, "not_found", "conversation 999999")(
        Sse::open(&server, Some(&bob.token), "?conv=999999", None).await,
    );
    expect(404, "not_found", "no such conversation")(
        Sse::open(&server, Some(&bob.token), &format!("?conv={dm}"), None).await,
    );
    expect(403, "forbidden", "not a member")(
        Sse::open(&server, Some(&bob.token), &format!("?conv={room}"), None).await,
    );
    for q in ["?conv=0", "?conv=", "?conv=1,1"] {
        expect(400, "bad_request", "conv")(Sse::open(&server, Some(&bob.token), q, None).await);
    }
    expect(400, "bad_request", "unknown query parameter `since`")(
        Sse::open(&server, Some(&bob.token), "?since=3", None).await,
    );
    expect(400, "bad_request", "presence")(
        Sse::open(&server, Some(&bob.token), "?presence=maybe", None).await,
    );
    expect(400, "bad_request", "watch needs presence=true")(
        Sse::open(&server, Some(&bob.token), "?watch=alice", None).await,
    );
    expect(404, "not_found", "no such user: zed")(
        Sse::open(
            &server,
            Some(&bob.token),
            "?presence=1&watch=alice,zed",
            None,
        )
        .await,
    );
    for q in ["?presence=1&watch=alice,,carol", "?presence=1&watch="] {
        expect(400, "bad_request", "none empty")(
            Sse::open(&server, Some(&bob.token), q, None).await,
        );
    }
    let too_many: Vec<String> = (0..=1_000).map(|i| format!("u{i}")).collect();
    expect(400, "bad_request", "at most 1000 users")(
        Sse::open(
            &server,
            Some(&bob.token),
            &format!("?presence=1&watch={}", too_many.join(",")),
            None,
        )
        .await,
    );
    expect(400, "bad_request", "`watch` is given twice")(
        Sse::open(
            &server,
            Some(&bob.token),
            "?presence=1&watch=alice&watch=carol",
            None,
        )
        .await,
    );
    expect(401, "unauthorized", "Bearer")(Sse::open(&server, None, "", None).await);
    expect(401, "unauthorized", "token")(Sse::open(&server, Some("nope"), "", None).await);
    // Carol may read her DM; two streams, then a third is refused until one closes.
    let one = Sse::open(&server, Some(&carol.token), &format!("?conv={dm}"), None)
        .await
        .unwrap();
    let _two = Sse::open(&server, Some(&carol.token), "", None)
        .await
        .unwrap();
    expect(429, "rate_limited", "at most 2")(
        Sse::open(&server, Some(&carol.token), "", None).await,
    );
    drop(one);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // The server notices the closed stream at its next write: poke it with a message.
        a.send_dm("carol", "poke").await.unwrap();
        if Sse::open(&server, Some(&carol.token), "", None)
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_gets_heartbeats_and_presence_when_asked() {
    let server = TestServer::start_with(|c| c.stream_heartbeat = Duration::from_millis(100)).await;
    let bob = server.register("bob").await;
    let alice = server.register("alice").await;
    let mut stream = Sse::open(
        &server,
        Some(&bob.token),
        "?presence=true&watch=alice",
        None,
    )
    .await
    .unwrap();
    let ready = stream.ready().await;
    assert_eq!(
        ready.online,
        Some(vec![]),
        "a stream does not make bob online"
    );
    let _a = server.connect(&alice.token).await;
    assert_eq!(stream.presence().await, (vec!["alice".into()], vec![]));
    // Nothing else happens: heartbeats keep coming.
    let mut plain = Sse::open(&server, Some(&alice.token), "", None)
        .await
        .unwrap();
    plain.ready().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let more = tokio::time::timeout(Duration::from_millis(300), plain.next()).await;
    assert!(more.is_err(), "no event on an idle stream: {more:?}");
    assert!(
        plain.comments >= 2,
        "heartbeat comments on an idle stream: {}",
        plain.comments
    );
}

/// A stream that carries presence hears, as a socket does, its user's DM partners and the users
/// it names in `watch` (any spelling), never anyone else: dave, neither, comes and goes unheard.
/// `ready` lists those of them online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_hears_the_presence_of_dm_partners_and_watched_users_only() {
    let server = TestServer::start().await;
    let bob = server.register("bob").await;
    let alice = server.register("alice").await;
    let carol = server.register("carol").await;
    let dave = server.register("dave").await;
    let mut c = server.connect(&carol.token).await;
    c.send_dm("bob", "a DM makes us partners").await.unwrap();
    let d = server.connect(&dave.token).await;
    // Their coming is announced before the stream opens (a batch may repeat what `ready` says).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut stream = Sse::open(&server, Some(&bob.token), "?presence=1&watch=ALICE", None)
        .await
        .unwrap();
    let ready = stream.ready().await;
    assert_eq!(
        ready.online,
        Some(vec!["carol".to_string()]),
        "carol (a DM partner) is online; dave is too, but unwatched"
    );
    drop(d);
    // Dave's going would come first, in a frame of its own or the next, had it leaked: wait
    // longer than a presence batch (200 ms).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let _a = server.connect(&alice.token).await;
    assert_eq!(stream.presence().await, (vec!["alice".into()], vec![]));
    drop(c);
    assert_eq!(stream.presence().await, (vec![], vec!["carol".into()]));
}

/// A client that opens a stream and never reads is cut off (its connection closed) once the
/// server's queue for it is full, while another stream and a socket of the same room get every
/// message in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_never_reads_is_closed_while_others_keep_receiving() {
    // About 8 MB of events: more than the server's socket buffer (4 MiB at most here) and
    // the stuck client's small window hold.
    const MESSAGES: usize = 2_000;
    let server = TestServer::start_with(|c| {
        c.stream_queue = 8;
        c.rate_limit_per_sec = 100_000;
        c.rate_burst = 100_000;
    })
    .await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let mut a = server.connect(&alice.token).await;
    let mut c = server.connect(&carol.token).await;
    let general = a.general();
    // The stuck reader: a small receive window, and it never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(server.addr).await.unwrap();
    stuck
        .write_all(
            format!(
                "GET /api/events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
                server.addr, bob.token
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut reader = Sse::open(&server, Some(&bob.token), "", None)
        .await
        .unwrap();
    reader.ready().await;
    let reading = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..MESSAGES {
            got.push(reader.message().await.seq);
        }
        got
    });
    let socket_reading = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < MESSAGES {
            match c.next().await {
                Some(ServerFrame::Message { message }) => got.push(message.seq),
                Some(_) => {}
                None => panic!("carol's socket closed"),
            }
        }
        got
    });
    let text = "x".repeat(natter::protocol::limits::MAX_TEXT_CHARS);
    let mut sent = Vec::new();
    for _ in 0..MESSAGES {
        sent.push(a.send_text(general, &text).await.seq);
    }
    assert_eq!(reading.await.unwrap(), sent, "the reading stream got all");
    assert_eq!(socket_reading.await.unwrap(), sent, "the socket got all");
    // Now read what the stuck client was sent: it ends (the server closed the connection)
    // before the last message.
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stuck.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server closed the stuck stream");
    let text = String::from_utf8_lossy(&bytes);
    let delivered = text.matches("event: message").count();
    assert!(
        delivered < MESSAGES,
        "the stuck reader was cut off before the end ({delivered} of {MESSAGES})"
    );
}

/// A token that expires ends its stream with `closed`; a server that shuts down ends every
/// stream (the client reconnects later) instead of holding the shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_and_a_shutdown_end_streams() {
    let server = TestServer::start_with(|c| c.token_ttl = Duration::from_secs(1)).await;
    let bob = server.register("bob").await;
    let mut stream = Sse::open(&server, Some(&bob.token), "", None)
        .await
        .unwrap();
    stream.ready().await;
    let closed = stream.expect("closed").await;
    assert!(closed.data.contains("unauthorized"), "{}", closed.data);
    assert!(stream.next().await.is_none());

    let server = TestServer::start().await;
    let bob = server.register("bob").await;
    let mut stream = Sse::open(&server, Some(&bob.token), "", None)
        .await
        .unwrap();
    stream.ready().await;
    let (_, result) = server.stop().await;
    result.unwrap();
    assert!(
        stream.next().await.is_none(),
        "the stream ended with the server"
    );
}

/// A profile change of someone the user shares a conversation with reaches the stream as
/// `user_updated` (names on a wall screen stay right); it does not move the cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_change_reaches_the_stream() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut stream = Sse::open(&server, Some(&bob.token), "", None)
        .await
        .unwrap();
    stream.ready().await;
    let before = stream.parser.last_id().map(str::to_string);
    let (status, body) = server
        .post(
            "/api/account/profile",
            serde_json::json!({"display_name": "Alice Liddell"}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let updated = stream.expect("user_updated").await;
    let frame: ServerFrame = serde_json::from_str(&updated.data).unwrap();
    let ServerFrame::UserUpdated { user } = frame else {
        panic!("{frame:?}")
    };
    assert_eq!(
        (user.username.as_str(), user.display_name.as_str()),
        ("alice", "Alice Liddell")
    );
    assert_eq!(updated.id, before, "the cursor stays");
}
