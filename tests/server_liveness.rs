//! Liveness and lifecycle: heartbeats drop silent peers, presence follows connects and
//! disconnects within a second, a slow reader is cut off without slowing anyone else or growing
//! memory, a paused reader catches up without loss, and shutdown (in-process and SIGTERM of the
//! binary) closes sockets with 1001 after committing what was acked.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use natter::protocol::{close, ClientFrame, Reply, ServerFrame, Target};
use support::{ServerProcess, TestServer, WsClient};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::MaybeTlsStream;
use uuid::Uuid;

/// A presence frame that names `name` as online (or offline).
fn is_presence(name: &'static str, online: bool) -> impl FnMut(&ServerFrame) -> bool {
    move |f| match f {
        ServerFrame::Presence {
            online: on,
            offline: off,
        } => if online { on } else { off }.iter().any(|n| n == name),
        _ => false,
    }
}

/// A presence frame that names `name` at all.
fn names(f: &ServerFrame, name: &str) -> bool {
    matches!(f, ServerFrame::Presence { online, offline }
        if online.iter().chain(offline).any(|n| n == name))
}

/// Wait for a frame matching `pred`, keeping every frame read on the way (and it) in `log`.
async fn wait_logged(
    c: &mut WsClient,
    log: &mut Vec<ServerFrame>,
    mut pred: impl FnMut(&ServerFrame) -> bool,
) {
    loop {
        let f = c.next().await.expect("socket open");
        let done = pred(&f);
        log.push(f);
        if done {
            return;
        }
    }
}

/// Read into `log` every frame that arrives until the socket has been quiet for 300 ms.
async fn drain(c: &mut WsClient, log: &mut Vec<ServerFrame>) {
    log.extend(c.pending.drain(..));
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(300), c.ws.next()).await
    {
        if let WsMessage::Text(t) = m {
            log.push(serde_json::from_str(&t).unwrap());
        }
    }
}

/// A socket with a 4 KiB receive buffer, so the kernel holds little of what the server sends to
/// a reader that does not read; returned after its hello.
async fn connect_with_small_receive_buffer(server: &TestServer, token: &str) -> WsClient {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(server.addr).await.unwrap();
    let mut req = server.ws_url().into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "natter.v1".parse().unwrap());
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp))
        .await
        .unwrap();
    let mut client = WsClient::from_stream(ws);
    client.expect_hello().await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_follows_connect_and_disconnect_within_a_second_two_devices_one_user() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut b = server.connect(&bob.token).await;
    assert!(b.watch(&["alice"]).await.is_empty());

    let t = Instant::now();
    let mut a1 = server.connect(&alice.token).await;
    b.wait_for(is_presence("alice", true)).await;
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "online seen after {:?}",
        t.elapsed()
    );
    let Some(ServerFrame::Hello { online, .. }) = &a1.hello else {
        panic!()
    };
    assert_eq!(
        online,
        &vec!["alice".to_string()],
        "bob is online but shares no DM with alice"
    );

    // A second device: still one online user, no second announcement.
    let a2 = server.connect(&alice.token).await;
    let Reply::Users { users } = b.request(|id| ClientFrame::Users { id }).await.unwrap() else {
        panic!()
    };
    assert!(users.iter().any(|m| m.user.username == "alice" && m.online));
    // Closing one device does not take alice offline.
    a1.ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    assert_eq!(a1.expect_close().await, Some(close::NORMAL));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let general = b.general();
    let Reply::Members { members, .. } = b
        .request(|id| ClientFrame::Members { id, conv: general })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(members
        .iter()
        .any(|m| m.user.username == "alice" && m.online));
    assert!(
        !b.pending.iter().any(|f| names(f, "alice")),
        "{:?}",
        b.pending
    );

    // Closing the last one does, within a second.
    let t = Instant::now();
    drop(a2);
    b.wait_for(is_presence("alice", false)).await;
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "offline seen after {:?}",
        t.elapsed()
    );
}

/// Presence goes only where it is watched. Alice's hello lists, besides herself, only bob, her
/// DM partner; carol, online too, is not in it. Alice watches nobody, yet hears bob leave
/// within a second (DM partners are always watched), and never hears of carol or dave; dave,
/// who watches nobody and has no DM, hears nothing at all; carol, who watches dave, hears of
/// him within a second. A DM opened later makes its partners watch each other at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reaches_dm_partners_and_watchers_only() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let dave = server.register("dave").await;
    let erin = server.register("erin").await;
    let (mut a_log, mut c_log, mut d_log) = (Vec::new(), Vec::new(), Vec::new());
    let mut b = server.connect(&bob.token).await;
    b.send_dm("alice", "hi").await.expect("dm");
    let mut c = server.connect(&carol.token).await;
    assert!(
        c.watch(&["Dave"]).await.is_empty(),
        "any spelling of a name"
    );

    let mut a = server.connect(&alice.token).await;
    let Some(ServerFrame::Hello { online, .. }) = &a.hello else {
        panic!()
    };
    assert_eq!(online, &["alice".to_string(), "bob".to_string()]);

    let t = Instant::now();
    let mut d = server.connect(&dave.token).await;
    wait_logged(&mut c, &mut c_log, is_presence("dave", true)).await;
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    let t = Instant::now();
    drop(b);
    wait_logged(&mut a, &mut a_log, is_presence("bob", false)).await;
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    // Erin opens a DM with alice: each hears at once that the other is online.
    let mut e = server.connect(&erin.token).await;
    e.send_dm("alice", "hello").await.expect("dm");
    wait_logged(&mut a, &mut a_log, is_presence("erin", true)).await;
    e.wait_for(is_presence("alice", true)).await;

    // Wait out two presence windows, then look at everything each one got.
    tokio::time::sleep(Duration::from_millis(400)).await;
    drain(&mut a, &mut a_log).await;
    drain(&mut c, &mut c_log).await;
    drain(&mut d, &mut d_log).await;
    assert!(
        !a_log.iter().any(|f| names(f, "carol") || names(f, "dave")),
        "alice watches neither carol nor dave: {a_log:?}"
    );
    assert!(
        !d_log
            .iter()
            .any(|f| matches!(f, ServerFrame::Presence { .. })),
        "dave watches nobody: {d_log:?}"
    );
    assert!(
        !c_log.iter().any(|f| names(f, "bob") || names(f, "erin")),
        "carol watches only dave: {c_log:?}"
    );
}

/// Bad watch sets are refused with the documented code and leave the last set in place: more
/// than 1,000 names (`bad_request`), a name no user has (`not_found`, naming it), `users` not a
/// list, a list of numbers, or missing (`bad_request`). Another user is unaffected throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_presence_refuses_bad_input_and_keeps_the_last_set() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let mut a = server.connect(&alice.token).await;
    let mut c = server.connect(&carol.token).await;
    assert!(c.watch(&["bob"]).await.is_empty());
    assert!(a.watch(&["bob", "bob", "BOB"]).await.is_empty());

    let too_many: Vec<String> = (0..=natter::protocol::limits::MAX_WATCHED_USERS)
        .map(|_| "bob".to_string())
        .collect();
    let refused = a
        .request(|id| ClientFrame::WatchPresence {
            id,
            users: too_many,
        })
        .await;
    assert!(
        matches!(&refused, Err((natter::protocol::ErrorCode::BadRequest, m)) if m.contains("1000")),
        "{refused:?}"
    );
    let refused = a
        .request(|id| ClientFrame::WatchPresence {
            id,
            users: vec!["carol".into(), "nobody".into()],
        })
        .await;
    assert!(
        matches!(&refused, Err((natter::protocol::ErrorCode::NotFound, m)) if m.contains("nobody")),
        "{refused:?}"
    );
    for (n, bad) in [
        r#"{"type":"watch_presence","id":9001,"users":"bob"}"#,
        r#"{"type":"watch_presence","id":9002,"users":[5]}"#,
        r#"{"type":"watch_presence","id":9003}"#,
    ]
    .into_iter()
    .enumerate()
    {
        a.ws.send(WsMessage::Text(bad.into())).await.unwrap();
        let answer = a.answer(9001 + n as u64).await;
        assert!(
            matches!(&answer, Err((natter::protocol::ErrorCode::BadRequest, m)) if m.contains("watch_presence")),
            "{bad} -> {answer:?}"
        );
    }

    // The set from before (bob) still holds, and carol's was never touched.
    let _b = server.connect(&bob.token).await;
    a.wait_for(is_presence("bob", true)).await;
    c.wait_for(is_presence("bob", true)).await;
    assert_eq!(a.watch(&["carol", "bob"]).await, ["bob", "carol"]);
}

/// Thirty users connect at once, each watching all thirty, and ten of them leave: presence
/// goes out in batches (larger than the outbound queue limit, which they must not trip), and
/// every remaining client, starting from its `watching` answer and applying the presence frames
/// that follow in the order received, ends with exactly the true online set, never told about
/// itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_presence_converges_when_thirty_connect_at_once_and_ten_leave() {
    // A queue limit below the batch size: a batch is not a backlog, so nobody is dropped.
    let server = TestServer::start_with(|c| c.outbound_queue = 8).await;
    let mut sessions = Vec::new();
    for i in 0..30 {
        sessions.push(server.register(&format!("u{i:02}")).await);
    }
    let everyone: Vec<String> = (0..30).map(|i| format!("u{i:02}")).collect();
    let everyone: Vec<&str> = everyone.iter().map(String::as_str).collect();
    let mut clients = futures_util::future::join_all(sessions.iter().map(|s| async {
        let mut c = server.connect(&s.token).await;
        let online = c.watch(&everyone).await;
        (c, online)
    }))
    .await;
    let leaving = clients.split_off(20);
    for (mut c, _) in leaving {
        c.ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
        assert_eq!(c.expect_close().await, Some(close::NORMAL));
    }
    let expected: std::collections::BTreeSet<String> =
        (0..20).map(|i| format!("u{i:02}")).collect();
    for (i, (c, online)) in clients.iter_mut().enumerate() {
        let me = format!("u{i:02}");
        let mut view: std::collections::BTreeSet<String> = online.iter().cloned().collect();
        // Frames queued before the answer are older than it.
        c.pending.clear();
        let deadline = Instant::now() + Duration::from_secs(5);
        while view != expected {
            assert!(Instant::now() < deadline, "{me} sees {view:?}");
            let frame = match c.pending.pop_front() {
                Some(f) => f,
                None => match tokio::time::timeout(Duration::from_millis(500), c.ws.next()).await {
                    Ok(Some(Ok(WsMessage::Text(t)))) => serde_json::from_str(&t).unwrap(),
                    Ok(Some(Ok(_))) => continue,
                    Ok(_) => panic!("{me} was disconnected"),
                    Err(_) => continue,
                },
            };
            if let ServerFrame::Presence { online, offline } = frame {
                assert!(
                    !online.iter().chain(&offline).any(|n| *n == me),
                    "nobody is told about themselves"
                );
                for name in offline {
                    view.remove(&name);
                }
                view.extend(online);
            }
        }
    }
}

/// Sockets that connect together do not ping together: each one's first ping comes somewhere in
/// the second half of the interval, then every interval. Sixteen sockets whose first pings all
/// fell within 100 ms of each other would mean the spread is gone (the chance that uniform
/// delays over 500 ms do that is below 1e-9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_connect_together_are_pinged_at_spread_times() {
    let interval = Duration::from_millis(1000);
    let server = TestServer::start_with(|c| c.heartbeat_interval = interval).await;
    let alice = server.register("alice").await;
    let mut first_pings = Vec::new();
    let mut sockets = Vec::new();
    for _ in 0..16 {
        let connected = Instant::now();
        let ws = WsClient::connect(&server.ws_url(), Some(&alice.token))
            .await
            .expect("connect");
        sockets.push((connected, ws));
    }
    // Each socket is read on its own task, so a ping is timed when it arrives.
    let readers = sockets.into_iter().map(|(connected, mut client)| {
        tokio::spawn(async move {
            let mut pings = Vec::new();
            while pings.len() < 2 {
                match tokio::time::timeout(3 * interval, client.ws.next()).await {
                    Ok(Some(Ok(WsMessage::Ping(_)))) => pings.push(connected.elapsed()),
                    Ok(Some(Ok(_))) => {}
                    other => panic!("a ping within three intervals, got {other:?}"),
                }
            }
            (pings[0], pings[1])
        })
    });
    for reader in readers.collect::<Vec<_>>() {
        let (first, second) = reader.await.expect("reader");
        assert!(
            first >= interval / 2 && first <= interval + Duration::from_millis(300),
            "first ping {first:?} after connecting"
        );
        let gap = second - first;
        assert!(
            gap >= interval - Duration::from_millis(50) && gap <= interval * 2,
            "pings {gap:?} apart"
        );
        first_pings.push(first);
    }
    let spread = *first_pings.iter().max().unwrap() - *first_pings.iter().min().unwrap();
    assert!(
        spread >= Duration::from_millis(100),
        "first pings all within {spread:?}: {first_pings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_pings_is_dropped_and_shown_offline() {
    let server = TestServer::start_with(|c| {
        c.heartbeat_interval = Duration::from_millis(300);
        c.heartbeat_timeout = Duration::from_millis(300);
    })
    .await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut b = server.connect(&bob.token).await;
    let Some(ServerFrame::Hello { heartbeat_ms, .. }) = &b.hello else {
        panic!()
    };
    assert_eq!(*heartbeat_ms, 300);
    assert!(b.watch(&["alice"]).await.is_empty());
    // Alice reads her hello, then never reads again, so tungstenite never answers pings.
    let mut frozen = server.connect(&alice.token).await;
    b.wait_for(is_presence("alice", true)).await;
    let t = Instant::now();
    // Bob keeps reading (and so answering pings) the whole time.
    b.wait_for(is_presence("alice", false)).await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "not dropped before interval + timeout ({took:?})"
    );
    assert!(
        took < Duration::from_secs(3),
        "dropped soon after the limit ({took:?})"
    );
    assert!(
        b.request(|id| ClientFrame::Rooms { id }).await.is_ok(),
        "a peer that answers pings stays"
    );
    assert_eq!(frozen.expect_close().await, Some(close::HEARTBEAT_TIMEOUT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_closed_while_ten_megabytes_go_out_and_others_keep_receiving() {
    const MESSAGES: usize = 2_500;
    let server = TestServer::start_with(|c| {
        c.rate_limit_per_sec = 1_000_000;
        c.rate_burst = 1_000_000;
        c.outbound_queue = 256;
        // Long enough for the close frame to reach the slow reader once it reads again.
        c.close_grace = Duration::from_secs(60);
    })
    .await;
    let loud = server.register("loud").await;
    let keen = server.register("keen").await;
    let sloth = server.register("sloth").await;

    // The slow reader stops reading after the hello.
    let mut slow = connect_with_small_receive_buffer(&server, &sloth.token).await;

    let mut k = server.connect(&keen.token).await;
    assert_eq!(k.watch(&["loud", "sloth"]).await, ["sloth"]);
    let l = server.connect(&loud.token).await;
    let general = l.general();
    k.wait_for(is_presence("loud", true)).await;
    // The fast reader counts what it has seen so the broadcaster can pace itself by it: on a
    // loaded 2-core test machine even a reading client can fall 256 frames behind a sender that
    // only waits for acks, and that would be a (correctly) dropped slow consumer too.
    let seen = Arc::new(AtomicUsize::new(0));
    let sloth_dropped = Arc::new(AtomicBool::new(false));
    let keen_task = tokio::spawn({
        let (seen, sloth_dropped) = (seen.clone(), sloth_dropped.clone());
        async move {
            let mut next = 1;
            while next <= MESSAGES as i64 || !sloth_dropped.load(Ordering::SeqCst) {
                match k.next().await {
                    Some(ServerFrame::Message { message }) => {
                        assert_eq!(
                            message.seq, next,
                            "the fast reader gets every message in order"
                        );
                        next += 1;
                        seen.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(f) if is_presence("sloth", false)(&f) => {
                        sloth_dropped.store(true, Ordering::SeqCst)
                    }
                    Some(_) => {}
                    None => panic!("the fast reader was disconnected"),
                }
            }
            k
        }
    });

    let rss_before = support::rss_kib();
    let mut rss_peak = rss_before;
    let text = "z".repeat(4_000);
    // The broadcaster keeps at most 32 sends in flight, as a real client's outbox would, and
    // stays within 128 messages of the fast reader.
    let mut ws = l.ws;
    let (mut sent, mut acks) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "broadcast stalled at {acks} acks"
        );
        while sent < MESSAGES && sent - acks < 32 && sent - seen.load(Ordering::SeqCst) < 128 {
            sent += 1;
            let frame = ClientFrame::Send {
                id: sent as u64,
                target: Target::Conv(general),
                client_msg_id: Uuid::new_v4(),
                text: text.clone(),
                reply_to: None,
                attachments: Vec::new(),
            };
            ws.send(WsMessage::text(serde_json::to_string(&frame).unwrap()))
                .await
                .unwrap();
        }
        let Ok(msg) = tokio::time::timeout(Duration::from_millis(20), ws.next()).await else {
            continue;
        };
        if let WsMessage::Text(t) = msg.unwrap().unwrap() {
            match serde_json::from_str(&t).unwrap() {
                ServerFrame::Ok {
                    result: Reply::Sent { .. },
                    ..
                } => {
                    acks += 1;
                    if acks % 250 == 0 {
                        rss_peak = rss_peak.max(support::rss_kib());
                    }
                }
                ServerFrame::Error { code, message, .. } => panic!("{code:?}: {message}"),
                _ => {}
            }
        }
    }
    let _k = tokio::time::timeout(Duration::from_secs(30), keen_task)
        .await
        .expect("fast reader got everything and saw the slow reader go offline")
        .unwrap();
    rss_peak = rss_peak.max(support::rss_kib());
    let growth_mib = rss_peak.saturating_sub(rss_before) / 1024;
    eprintln!("slow reader: RSS before {rss_before} KiB, peak {rss_peak} KiB");
    assert!(
        growth_mib < 48,
        "memory stays bounded while 10 MB is broadcast (grew {growth_mib} MiB)"
    );

    // Now the slow reader reads: what it got before being cut off, then close 4000.
    let mut received = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(20), slow.ws.next())
            .await
            .expect("reads")
        {
            Some(Ok(WsMessage::Text(_))) => received += 1,
            Some(Ok(WsMessage::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("socket error instead of a close frame: {e}"),
            None => break None,
        }
    };
    eprintln!("slow reader got {received} frames before close {code:?}");
    assert_eq!(code, Some(close::SLOW_CONSUMER));
    // Kernel buffers (up to 4 MiB here) plus the 256-frame queue hold about 1,300 of the 2,500.
    assert!(
        received < MESSAGES * 3 / 4,
        "the slow reader was cut off early ({received} frames)"
    );
}

/// A reader that stops reading for a while, with more sent to it than the kernel's socket
/// buffers hold, gets every message in order once it reads again and stays connected: the
/// frames the socket did not take waited in the server's outbound queue and were drained
/// whole, after those written straight through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_reader_catches_up_on_eight_megabytes_in_order_without_being_dropped() {
    const MESSAGES: i64 = 2_000;
    let server = TestServer::start_with(|c| {
        c.rate_limit_per_sec = 1_000_000;
        c.rate_burst = 1_000_000;
        c.outbound_queue = 100_000;
    })
    .await;
    let loud = server.register("loud").await;
    let nap = server.register("nap").await;
    let mut napper = connect_with_small_receive_buffer(&server, &nap.token).await;
    let mut l = server.connect(&loud.token).await;
    let general = l.general();

    // 2,000 x 4,000 bytes = 8 MB while the napper reads nothing (loopback buffers hold a few MB).
    let text = "n".repeat(4_000);
    for _ in 0..MESSAGES {
        l.send_text(general, &text).await;
    }
    let mut next = 1;
    while next <= MESSAGES {
        match tokio::time::timeout(Duration::from_secs(20), napper.next()).await {
            Ok(Some(ServerFrame::Message { message })) => {
                assert_eq!(message.seq, next, "every message, in order");
                assert_eq!(message.text.len(), 4_000, "whole");
                next += 1;
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the paused reader was dropped after {} messages", next - 1),
            Err(_) => panic!("stalled after {} messages", next - 1),
        }
    }
    // Still connected and served.
    let id = napper.next_id();
    napper.send_frame(&ClientFrame::Rooms { id }).await;
    assert!(matches!(napper.answer(id).await, Ok(Reply::Rooms { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_sockets_with_1001_and_keeps_acked_messages() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut a = server.connect(&alice.token).await;
    let mut b = server.connect(&bob.token).await;
    let general = a.general();
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push(a.send_text(general, &format!("before shutdown {i}")).await);
    }
    let addr = server.addr;
    let stopping = tokio::spawn(server.stop());
    assert_eq!(a.expect_close().await, Some(close::GOING_AWAY));
    assert_eq!(b.expect_close().await, Some(close::GOING_AWAY));
    let (dir, result) = stopping.await.unwrap();
    result.expect("run returns Ok after shutdown");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );

    let server = TestServer::start_in(dir, |_| {}).await;
    let mut a = server.connect(&server.login("alice").await.token).await;
    let (messages, _) = a.history(general, None, None, 200).await.unwrap();
    assert_eq!(messages, acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_binary_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = ServerProcess::spawn(env!("CARGO_BIN_EXE_natter-server"), dir.path(), &[]).await;
    let http = reqwest::Client::new();
    let session: natter::protocol::Session = http
        .post(format!("http://{}/api/register", proc.addr))
        .json(&serde_json::json!({"username": "alice", "password": support::PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut a = WsClient::connect(&proc.ws_url(), Some(&session.token))
        .await
        .unwrap();
    a.expect_hello().await;
    let sent = a.send_text(a.general(), "last words").await;
    let pid = proc.child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(a.expect_close().await, Some(close::GOING_AWAY));
    let exit = tokio::time::timeout(Duration::from_secs(15), proc.child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");

    let proc = ServerProcess::spawn(env!("CARGO_BIN_EXE_natter-server"), dir.path(), &[]).await;
    let mut a = WsClient::connect(&proc.ws_url(), Some(&session.token))
        .await
        .unwrap();
    a.expect_hello().await;
    let general = a.general();
    let (messages, _) = a.history(general, None, None, 10).await.unwrap();
    assert_eq!(messages, vec![sent]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_help_lists_every_setting_and_env_vars_configure_the_binary() {
    let bin = env!("CARGO_BIN_EXE_natter-server");
    let help = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--listen",
        "--data-dir",
        "--store",
        "--tls-cert",
        "--tls-key",
        "--allowed-origin",
        "--heartbeat-interval",
        "--heartbeat-timeout",
        "--rate-limit",
        "--rate-burst",
        "--flood-close-after",
        "--outbound-queue",
        "--token-ttl-days",
        "--auth-timeout",
        "--handshake-timeout",
        "--max-unauthenticated-per-ip",
        "--failed-sign-ins-per-ip",
        "--failed-sign-in-refill",
        "--blobs",
        "--max-upload",
        "--upload-quota",
        "--uploads-per-user",
        "--upload-refill",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}");
    }
    assert!(
        help.contains("NATTER_LISTEN")
            && help.contains("NATTER_DATA_DIR")
            && help.contains("127.0.0.1:8686")
    );

    // Environment variables alone configure it; without a data dir it uses the XDG data dir.
    let home = tempfile::tempdir().unwrap();
    let xdg = home.path().join("xdg-data");
    let mut child = tokio::process::Command::new(bin)
        .env("NATTER_LISTEN", "127.0.0.1:0")
        .env("NATTER_HEARTBEAT_INTERVAL", "7")
        .env_remove("NATTER_DATA_DIR")
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", &xdg)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let banner = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = banner
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(
        banner.contains(&xdg.join("natter").display().to_string()),
        "{banner}"
    );
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/api/register"))
        .json(&serde_json::json!({"username": "envy", "password": support::PASSWORD}))
        .send()
        .await
        .unwrap();
    let session: natter::protocol::Session = resp.json().await.unwrap();
    let mut c = WsClient::connect(&format!("ws://{addr}/ws"), Some(&session.token))
        .await
        .unwrap();
    let ServerFrame::Hello { heartbeat_ms, .. } = c.expect_hello().await else {
        panic!()
    };
    assert_eq!(heartbeat_ms, 7_000);
    assert!(xdg.join("natter").join("natter.db").exists());
}
