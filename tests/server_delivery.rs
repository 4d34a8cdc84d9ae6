//! Delivery guarantees: one gapless order per room seen by everyone under concurrent load,
//! idempotent sends (also across a reconnect), and durability across SIGKILL of the real
//! `natter-server` binary.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use natter::protocol::{ClientFrame, ConvId, Message, Reply, ServerFrame, Target};
use support::{ServerProcess, TestServer, WsClient};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_five_rooms_thousand_messages_same_gapless_order() {
    const CLIENTS: usize = 20;
    const ROOMS: usize = 5;
    const PER_CLIENT: usize = 50;
    let server = TestServer::start_with(|c| {
        c.rate_limit_per_sec = 100_000;
        c.rate_burst = 100_000;
    })
    .await;
    let mut sessions = Vec::new();
    for i in 0..CLIENTS {
        sessions.push(server.register(&format!("user{i}")).await);
    }
    // Client i is in rooms i % 5 and (i + 1) % 5, so every room has 8 members.
    let rooms_of = |i: usize| [i % ROOMS, (i + 1) % ROOMS];
    let mut room_ids: Vec<ConvId> = Vec::new();
    let mut clients = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        let mut c = server.connect(&s.token).await;
        if i == 0 {
            for r in 0..ROOMS {
                let name = format!("room{r}");
                let Reply::Joined { conversation } = c
                    .request(|id| ClientFrame::CreateRoom {
                        id,
                        name,
                        private: false,
                    })
                    .await
                    .unwrap()
                else {
                    panic!()
                };
                room_ids.push(conversation.id);
            }
        }
        clients.push(c);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        for (r, &conv) in room_ids.iter().enumerate() {
            let member = rooms_of(i).contains(&r);
            let name = format!("room{r}");
            if member && i != 0 {
                c.request(|id| ClientFrame::Join { id, room: name })
                    .await
                    .unwrap();
            } else if !member && i == 0 {
                c.request(|id| ClientFrame::Leave { id, conv })
                    .await
                    .unwrap();
            }
        }
    }
    let mut expected: HashMap<ConvId, usize> = HashMap::new();
    for i in 0..CLIENTS {
        for k in 0..PER_CLIENT {
            *expected.entry(room_ids[rooms_of(i)[k % 2]]).or_default() += 1;
        }
    }
    // Everyone sends at once, pipelined, while reading; each records what it sees per room, in
    // arrival order (pushes from others and acks of its own).
    let mut tasks = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        let my_rooms: Vec<ConvId> = rooms_of(i).iter().map(|r| room_ids[*r]).collect();
        let want: usize = my_rooms.iter().map(|r| expected[r]).sum();
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = c.ws.split();
            let sender = tokio::spawn(async move {
                for k in 0..PER_CLIENT {
                    let frame = ClientFrame::Send {
                        id: k as u64 + 1000,
                        target: Target::Conv(my_rooms[k % 2]),
                        client_msg_id: Uuid::new_v4(),
                        text: format!("client {i} message {k}"),
                        reply_to: None,
                        attachments: Vec::new(),
                    };
                    sink.send(WsMessage::text(serde_json::to_string(&frame).unwrap()))
                        .await
                        .unwrap();
                }
                sink
            });
            let mut seen: HashMap<ConvId, Vec<Message>> = HashMap::new();
            let mut got = 0;
            while got < want {
                let msg = tokio::time::timeout(Duration::from_secs(30), stream.next())
                    .await
                    .expect("traffic keeps flowing")
                    .expect("open")
                    .expect("ok");
                let WsMessage::Text(t) = msg else { continue };
                let message = match serde_json::from_str::<ServerFrame>(&t).unwrap() {
                    ServerFrame::Message { message } => message,
                    ServerFrame::Ok {
                        result: Reply::Sent { message },
                        ..
                    } => message,
                    ServerFrame::Error { code, message, .. } => {
                        panic!("client {i}: {code:?} {message}")
                    }
                    _ => continue,
                };
                seen.entry(message.conv).or_default().push(message);
                got += 1;
            }
            let _sink = sender.await.unwrap();
            seen
        }));
    }
    let mut views = Vec::new();
    for t in tasks {
        views.push(t.await.unwrap());
    }
    let mut canonical: HashMap<ConvId, Vec<i64>> = HashMap::new();
    for view in &views {
        for (conv, messages) in view {
            let seqs: Vec<i64> = messages.iter().map(|m| m.seq).collect();
            assert_eq!(
                seqs,
                (1..=expected[conv] as i64).collect::<Vec<_>>(),
                "gapless, in order"
            );
            let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
            let first = canonical.entry(*conv).or_insert_with(|| ids.clone());
            assert_eq!(
                *first, ids,
                "every member sees the same order in room {conv}"
            );
        }
    }
    assert_eq!(canonical.len(), ROOMS);
    assert_eq!(
        canonical.values().map(Vec::len).sum::<usize>(),
        CLIENTS * PER_CLIENT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_client_msg_id_three_times_once_across_reconnect_is_one_message() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut b = server.connect(&bob.token).await;
    let mut a = server.connect(&alice.token).await;
    let general = a.general();
    let cmid = Uuid::new_v4();
    let first = a.send_with_id(general, "only once", cmid).await.unwrap();
    let second = a.send_with_id(general, "only once", cmid).await.unwrap();
    assert_eq!(first, second, "a retry returns the original ack");
    drop(a);
    let mut a = server.connect(&alice.token).await;
    let third = a.send_with_id(general, "only once", cmid).await.unwrap();
    assert_eq!(
        first, third,
        "a retry after reconnecting returns the original ack"
    );
    // Two copies in flight at once (same commit batch) still make one message.
    let twin = Uuid::new_v4();
    for _ in 0..2 {
        let id = a.next_id();
        a.send_frame(&ClientFrame::Send {
            id,
            target: Target::Conv(general),
            client_msg_id: twin,
            text: "twin".into(),
            reply_to: None,
            attachments: Vec::new(),
        })
        .await;
    }
    let mut acks = Vec::new();
    while acks.len() < 2 {
        if let Some(ServerFrame::Ok {
            result: Reply::Sent { message },
            ..
        }) = a.recv().await
        {
            acks.push(message);
        }
    }
    assert_eq!(acks[0], acks[1]);
    let (messages, _) = a.history(general, None, None, 200).await.unwrap();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0], first);
    // Bob saw each exactly once.
    let mut pushed = Vec::new();
    while pushed.len() < 2 {
        if let Some(ServerFrame::Message { message }) = b.next().await {
            pushed.push(message.seq);
        }
    }
    let Reply::Users { .. } = b.request(|id| ClientFrame::Users { id }).await.unwrap() else {
        panic!()
    };
    assert!(
        !b.pending
            .iter()
            .any(|f| matches!(f, ServerFrame::Message { .. })),
        "no duplicate push"
    );
    assert_eq!(pushed, vec![1, 2]);
}

async fn spawn_server(dir: &std::path::Path) -> ServerProcess {
    ServerProcess::spawn(
        env!("CARGO_BIN_EXE_natter-server"),
        dir,
        &[
            "--rate-limit",
            "100000",
            "--rate-burst",
            "100000",
            // Ten writers register from 127.0.0.1.
            "--registrations-per-ip",
            "100",
        ],
    )
    .await
}

/// One sender's view of a round: acked messages and those sent without an ack.
#[derive(Default)]
struct Ledger {
    /// Every message ever sent: client_msg_id -> text.
    sent: HashMap<Uuid, String>,
    /// Acked: client_msg_id -> (seq, id).
    acked: HashMap<Uuid, (i64, i64)>,
    /// Sent but not acked yet (to be retried after the restart, like an outbox).
    pending: Vec<Uuid>,
}

/// Send `retry` first (awaiting each), then new messages pipelined until the socket dies.
async fn send_until_killed(
    addr: String,
    token: String,
    conv: ConvId,
    client: usize,
    round: usize,
    retry: Vec<(Uuid, String)>,
) -> (Vec<(Uuid, String)>, HashMap<Uuid, (i64, i64)>) {
    let mut sent = Vec::new();
    let mut acked = HashMap::new();
    let Ok(c) = WsClient::connect(&format!("ws://{addr}/ws"), Some(&token)).await else {
        return (retry, acked);
    };
    let (mut sink, mut stream) = c.ws.split();
    let mut by_req: HashMap<u64, Uuid> = HashMap::new();
    let mut queue: Vec<(Uuid, String)> = retry;
    queue.reverse();
    let mut n = 0u64;
    let mut outstanding = 0usize;
    loop {
        while outstanding < 8 {
            let (cmid, text) = queue.pop().unwrap_or_else(|| {
                n += 1;
                (
                    Uuid::new_v4(),
                    format!(
                        "c{client} r{round} n{n} {}",
                        "x".repeat((n % 7) as usize * 50)
                    ),
                )
            });
            let req = by_req.len() as u64 + 1;
            by_req.insert(req, cmid);
            sent.push((cmid, text.clone()));
            let frame = ClientFrame::Send {
                id: req,
                target: Target::Conv(conv),
                client_msg_id: cmid,
                text,
                reply_to: None,
                attachments: Vec::new(),
            };
            if sink
                .send(WsMessage::text(serde_json::to_string(&frame).unwrap()))
                .await
                .is_err()
            {
                return (sent, acked);
            }
            outstanding += 1;
        }
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(WsMessage::Text(t)))) => {
                if let Ok(ServerFrame::Ok {
                    id,
                    result: Reply::Sent { message },
                }) = serde_json::from_str(&t)
                {
                    let cmid = by_req[&id];
                    assert_eq!(message.client_msg_id, cmid);
                    acked.insert(cmid, (message.seq, message.id));
                    outstanding -= 1;
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => return (sent, acked),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_ten_clients_send_loses_no_acked_message_for_twenty_rounds() {
    const CLIENTS: usize = 10;
    const ROUNDS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn_server(dir.path()).await;
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for i in 0..CLIENTS {
        let resp = http
            .post(format!("http://{}/api/register", server.addr))
            .json(&serde_json::json!({"username": format!("writer{i}"), "password": support::PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        let s: natter::protocol::Session = resp.json().await.unwrap();
        tokens.push(s.token);
    }
    let mut probe = WsClient::connect(&format!("ws://{}/ws", server.addr), Some(&tokens[0]))
        .await
        .unwrap();
    probe.expect_hello().await;
    let general = probe.general();
    drop(probe);

    let mut ledgers: Vec<Ledger> = (0..CLIENTS).map(|_| Ledger::default()).collect();
    for round in 0..ROUNDS {
        if round > 0 {
            server = spawn_server(dir.path()).await;
        }
        let mut tasks = Vec::new();
        for (i, ledger) in ledgers.iter_mut().enumerate() {
            let retry: Vec<(Uuid, String)> = ledger
                .pending
                .drain(..)
                .map(|c| (c, ledger.sent[&c].clone()))
                .collect();
            tasks.push(tokio::spawn(send_until_killed(
                server.addr.clone(),
                tokens[i].clone(),
                general,
                i,
                round,
                retry,
            )));
        }
        // Kill at a different moment each round, while traffic flows.
        tokio::time::sleep(Duration::from_millis(250 + (round as u64 * 37) % 300)).await;
        server.child.start_kill().unwrap();
        let _ = server.child.wait().await;
        for (i, t) in tasks.into_iter().enumerate() {
            let (sent, acked) = t.await.unwrap();
            let ledger = &mut ledgers[i];
            for (cmid, text) in sent {
                if let Some(previous) = ledger.sent.insert(cmid, text.clone()) {
                    assert_eq!(previous, text, "a retry resends the same text");
                }
                if !acked.contains_key(&cmid)
                    && !ledger.acked.contains_key(&cmid)
                    && !ledger.pending.contains(&cmid)
                {
                    ledger.pending.push(cmid);
                }
            }
            for (cmid, at) in acked {
                if let Some(before) = ledger.acked.insert(cmid, at) {
                    assert_eq!(
                        before, at,
                        "a retried message keeps its original seq and id"
                    );
                }
                ledger.pending.retain(|c| *c != cmid);
            }
        }
    }
    let total_acked: usize = ledgers.iter().map(|l| l.acked.len()).sum();
    assert!(
        total_acked >= ROUNDS * CLIENTS,
        "traffic flowed in every round: {total_acked} acked"
    );

    // Read back everything and check it against the ledgers.
    let server = spawn_server(dir.path()).await;
    let mut reader = WsClient::connect(&format!("ws://{}/ws", server.addr), Some(&tokens[0]))
        .await
        .unwrap();
    reader.expect_hello().await;
    let stored: BTreeMap<i64, Message> = reader
        .all_history(general)
        .await
        .into_iter()
        .map(|m| (m.seq, m))
        .collect();
    let n = stored.len() as i64;
    assert_eq!(
        stored.keys().copied().collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>(),
        "seqs are gapless"
    );
    let mut cmids = HashSet::new();
    let sent_all: HashMap<Uuid, &String> = ledgers
        .iter()
        .flat_map(|l| l.sent.iter().map(|(k, v)| (*k, v)))
        .collect();
    for m in stored.values() {
        assert!(
            cmids.insert(m.client_msg_id),
            "message {} stored twice",
            m.client_msg_id
        );
        let text = sent_all
            .get(&m.client_msg_id)
            .unwrap_or_else(|| panic!("stored message nobody sent: {m:?}"));
        assert_eq!(*text, &m.text, "stored text is whole");
    }
    for l in &ledgers {
        for (cmid, (seq, id)) in &l.acked {
            let m = stored
                .get(seq)
                .unwrap_or_else(|| panic!("acked seq {seq} missing"));
            assert_eq!(
                (m.client_msg_id, m.id),
                (*cmid, *id),
                "acked message present with its ack's seq and id"
            );
        }
    }
    eprintln!(
        "durability: {} messages stored, {total_acked} acked over {ROUNDS} kills",
        stored.len()
    );
}
