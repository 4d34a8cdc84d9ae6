//! Cluster mode: several server nodes on one PostgreSQL database, linked by the Redis bus.
//! Every client, whichever node it is on, gets every message of its conversations once and in
//! seq order; a Redis restart loses nothing; a node that dies takes its users offline within
//! its lease, and they come back when they reconnect. A room made on one node reaches sockets on
//! another with each receiver's `private` and `moderator` flags, and an admin role changed by
//! `natter-server admin` reaches the user's sockets on every node.
//!
//! These tests need both `NATTER_TEST_POSTGRES` and `NATTER_TEST_REDIS` (`scripts/test` sets
//! them in its cluster pass); without them they say so and pass.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use natter::protocol::{ClientFrame, ConvId, Reply, ServerFrame, Target};
use natter::server::{BusLocation, ServerConfig};
use support::{on_postgres, on_redis, TestServer, WsClient};
use uuid::Uuid;

fn cluster_available() -> bool {
    // RUST_LOG=natter=debug shows what the nodes do (gap fills, resyncs, leases).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    if on_postgres() && on_redis() {
        return true;
    }
    eprintln!("NATTER_TEST_POSTGRES and NATTER_TEST_REDIS are not both set: this test runs in the cluster pass");
    false
}

fn unlimited(c: &mut ServerConfig) {
    c.rate_limit_per_sec = 1_000_000;
    c.rate_burst = 1_000_000;
}

/// Register `names` on a node of its own over a fresh database, stop it, and return the data
/// directory (whose database the cluster's nodes then share) and the users' tokens.
async fn users_on_a_new_store(names: &[&str]) -> (tempfile::TempDir, Vec<String>) {
    let setup = TestServer::start_with(unlimited).await;
    let mut tokens = Vec::new();
    for name in names {
        tokens.push(setup.register(name).await.token);
    }
    let (dir, result) = setup.stop().await;
    result.unwrap();
    (dir, tokens)
}

/// `count` nodes on the store of `dir` (the first one over `dir` itself), each tweaked by
/// `tweak` after the defaults.
async fn start_nodes(
    dir: tempfile::TempDir,
    count: usize,
    tweak: impl Fn(&mut ServerConfig) + Clone,
) -> Vec<TestServer> {
    let store = support::postgres_store(dir.path()).await;
    let mut nodes = vec![
        TestServer::start_in(dir, {
            let (store, tweak) = (store.clone(), tweak.clone());
            move |c| {
                unlimited(c);
                c.store = store;
                tweak(c);
            }
        })
        .await,
    ];
    for _ in 1..count {
        let (store, tweak) = (store.clone(), tweak.clone());
        nodes.push(
            TestServer::start_with(move |c| {
                unlimited(c);
                c.store = store;
                tweak(c);
            })
            .await,
        );
    }
    for node in &nodes {
        hears(node, count - 1).await;
    }
    nodes
}

/// Wait until `node` says (`GET /api/health`) it is subscribed to the bus and hears `others`
/// other nodes: from then on nothing another node publishes passes it by.
async fn hears(node: &TestServer, others: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health: natter::protocol::Health = reqwest::get(node.http_url("/api/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let cluster = health.cluster.expect("a cluster node reports on its bus");
        if cluster.subscribed && cluster.nodes as usize >= others {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node:?} hears {cluster:?}",
            node = node.addr
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one client saw of one conversation: seqs in the order they arrived (its own sends'
/// answers and the others' pushes), and the texts by seq.
#[derive(Default, Debug)]
struct Seen {
    order: Vec<i64>,
    texts: BTreeMap<i64, String>,
}

/// Send `texts` (conversation, text) pipelined, then read until every conversation in
/// `expect` (conversation -> number of messages) was seen whole. Returns what was seen.
async fn send_and_collect(
    mut ws: WsClient,
    texts: Vec<(ConvId, String)>,
    expect: BTreeMap<ConvId, usize>,
) -> (WsClient, BTreeMap<ConvId, Seen>) {
    for (conv, text) in texts {
        let id = ws.next_id();
        ws.send_frame(&ClientFrame::Send {
            id,
            target: Target::Conv(conv),
            client_msg_id: Uuid::new_v4(),
            text,
            reply_to: None,
            attachments: Vec::new(),
        })
        .await;
    }
    let mut seen: BTreeMap<ConvId, Seen> = BTreeMap::new();
    let complete = |seen: &BTreeMap<ConvId, Seen>| {
        expect
            .iter()
            .all(|(conv, n)| seen.get(conv).map_or(0, |s| s.order.len()) >= *n)
    };
    while !complete(&seen) {
        let frame = match ws.pending.pop_front() {
            Some(f) => f,
            None => match tokio::time::timeout(Duration::from_secs(8), ws.recv()).await {
                Ok(f) => f.expect("the socket stays open"),
                Err(_) => panic!(
                    "stalled; seen so far: {:?}",
                    seen.iter()
                        .map(|(c, s)| (c, s.order.len(), s.order.last()))
                        .collect::<Vec<_>>()
                ),
            },
        };
        let message = match frame {
            ServerFrame::Message { message } => message,
            ServerFrame::Ok {
                result: Reply::Sent { message },
                ..
            } => message,
            ServerFrame::Error { code, message, .. } => panic!("refused: {code:?} {message}"),
            _ => continue,
        };
        let s = seen.entry(message.conv).or_default();
        s.order.push(message.seq);
        s.texts.insert(message.seq, message.text);
    }
    (ws, seen)
}

/// Wait for every client's run; each must end within a minute.
async fn finish<T>(runs: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::new();
    for run in runs {
        results.push(
            tokio::time::timeout(Duration::from_secs(60), run)
                .await
                .expect("every client gets everything within a minute")
                .unwrap(),
        );
    }
    results
}

/// 20 clients spread over 3 nodes, in 5 rooms (four created during the run on different
/// nodes and joined from every node), send 1,000 messages at once: every client sees each
/// room's messages exactly once, in seq order 1, 2, 3 ..., and they are what the store holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_give_every_client_each_message_once_in_order() {
    if !cluster_available() {
        return;
    }
    let names: Vec<String> = (0..20).map(|i| format!("user{i}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (dir, tokens) = users_on_a_new_store(&name_refs).await;
    let nodes = start_nodes(dir, 3, |_| {}).await;
    let mut clients = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        clients.push(nodes[i % 3].connect(token).await);
    }
    let mut rooms = vec![clients[0].general()];
    // Rooms created on nodes 0, 1, 2, 0 and joined from every node: membership crosses the bus.
    for r in 1..5 {
        let name = format!("room{r}");
        let Ok(Reply::Joined { conversation }) = clients[r - 1]
            .request(|id| ClientFrame::CreateRoom {
                private: false,
                id,
                name: name.clone(),
            })
            .await
        else {
            panic!("create {name}");
        };
        rooms.push(conversation.id);
        for (i, ws) in clients.iter_mut().enumerate().filter(|(i, _)| *i != r - 1) {
            // The other nodes hear of the room shortly after it was created.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match ws
                    .request(|id| ClientFrame::Join {
                        id,
                        room: name.clone(),
                    })
                    .await
                {
                    Ok(Reply::Joined { .. }) => break,
                    other if Instant::now() > deadline => {
                        panic!("client {i} joins {name}: {other:?}")
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
    }
    // Every node has applied every join before anyone sends (a join is answered on its own
    // node; the others apply it from the bus right after).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for ws in &mut clients {
        ws.pending.clear();
    }
    const EACH: usize = 50;
    let mut expect: BTreeMap<ConvId, usize> = BTreeMap::new();
    let mut plans = Vec::new();
    for i in 0..clients.len() {
        let mut plan = Vec::new();
        for j in 0..EACH {
            let conv = rooms[(i + j) % rooms.len()];
            *expect.entry(conv).or_default() += 1;
            plan.push((conv, format!("{} #{j}", names[i])));
        }
        plans.push(plan);
    }
    let runs: Vec<_> = clients
        .into_iter()
        .zip(plans)
        .map(|(ws, plan)| tokio::spawn(send_and_collect(ws, plan, expect.clone())))
        .collect();
    let mut results = finish(runs).await;
    let reader = &mut results.last_mut().unwrap().0;
    let mut stored_by_conv = BTreeMap::new();
    for &conv in &rooms {
        stored_by_conv.insert(conv, reader.all_history(conv).await);
    }
    for &conv in &rooms {
        let stored = &stored_by_conv[&conv];
        let n = expect[&conv];
        assert_eq!(stored.len(), n, "the store holds every message of {conv}");
        let want: Vec<i64> = (1..=n as i64).collect();
        for (i, (_, seen)) in results.iter().enumerate() {
            let s = &seen[&conv];
            assert_eq!(
                s.order, want,
                "client {i} saw conversation {conv} once each, in seq order"
            );
            for m in stored {
                assert_eq!(
                    s.texts.get(&m.seq),
                    Some(&m.text),
                    "client {i}, seq {}",
                    m.seq
                );
            }
        }
    }
}

/// A Redis server of this test's own, which it can kill and start again on the same port.
struct OwnRedis {
    port: u16,
    child: std::process::Child,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/redis installs it)");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server listens");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis { port, child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Redis killed and started again, then every node's connection to it dropped, while clients
/// on two nodes keep sending: every client still ends with every message once, in seq order
/// (what the bus lost comes from the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_mid_run_loses_nothing() {
    if !cluster_available() {
        return;
    }
    let mut redis = OwnRedis::start(free_port());
    let port = redis.port;
    let (dir, tokens) = users_on_a_new_store(&["ann", "ben", "cat", "dan"]).await;
    let bus = BusLocation::parse(&format!("redis://127.0.0.1:{port}"), "restart").unwrap();
    let nodes = start_nodes(dir, 2, move |c| c.bus = Some(bus.clone())).await;
    let mut clients = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        clients.push(nodes[i % 2].connect(token).await);
    }
    let general = clients[0].general();
    const EACH: usize = 40;
    let expect: BTreeMap<ConvId, usize> = [(general, EACH * clients.len())].into();
    // Each client sends in three bursts; Redis goes down after the first and comes back
    // during the second.
    let runs: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            let expect = expect.clone();
            tokio::spawn(async move {
                for burst in 0..3 {
                    let plan: Vec<(ConvId, String)> = (0..EACH / 4)
                        .map(|j| (general, format!("c{i} b{burst} #{j}")))
                        .collect();
                    // Nothing awaited yet: the final read below takes every answer and push
                    // in the order they came.
                    ws = send_and_collect(ws, plan, BTreeMap::new()).await.0;
                    tokio::time::sleep(Duration::from_millis(800)).await;
                }
                let rest: Vec<(ConvId, String)> = (0..EACH - 3 * (EACH / 4))
                    .map(|j| (general, format!("c{i} last #{j}")))
                    .collect();
                send_and_collect(ws, rest, expect).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let _redis = OwnRedis::start(port);
    // Then every node's subscription is dropped (and the publishers' connections): the nodes
    // subscribe again and catch up from the store.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for kind in ["pubsub", "normal"] {
        let killed = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "CLIENT", "KILL", "TYPE", kind])
            .output()
            .expect("redis-cli");
        assert!(killed.status.success(), "{killed:?}");
    }
    let mut results = finish(runs).await;
    let n = EACH * results.len();
    let want: Vec<i64> = (1..=n as i64).collect();
    let stored = results[0].0.all_history(general).await;
    assert_eq!(stored.len(), n);
    for (i, (_, seen)) in results.iter().enumerate() {
        assert_eq!(
            seen[&general].order, want,
            "client {i}: every message once, in order"
        );
    }
}

/// The flags of a `natter-server` process that joins a cluster on the database of `dir` and
/// the test Redis, on a channel of its own, with a 2 s lease, and `extra`.
async fn process_flags(dir: &tempfile::TempDir, extra: &[&str]) -> Vec<String> {
    let Some(natter::server::StoreLocation::Postgres(store)) =
        support::postgres_store(dir.path()).await
    else {
        panic!("a PostgreSQL store");
    };
    let redis = std::env::var("NATTER_TEST_REDIS").unwrap();
    let channel = format!("procs_{}", Uuid::new_v4().simple());
    let mut flags: Vec<String> = [
        "--store",
        &store,
        "--bus",
        &redis,
        "--bus-channel",
        &channel,
    ]
    .into_iter()
    .chain(["--node-lease", "2"])
    .map(String::from)
    .collect();
    flags.extend(extra.iter().map(|s| s.to_string()));
    flags
}

/// Whether `frame` says `name` is online now (a hello listing them, or a presence change).
fn says_online(frame: &ServerFrame, name: &str) -> bool {
    match frame {
        ServerFrame::Hello { online, .. } => online.iter().any(|n| n == name),
        ServerFrame::Presence { online, .. } => online.iter().any(|n| n == name),
        _ => false,
    }
}

/// Presence across two nodes goes where it is watched: bob on node B watches amy, who
/// connects on node A, and hears her come and go within a second; cat on node B watches
/// nobody and shares no DM, and hears nothing of amy; dan, amy's DM partner, finds her in his
/// hello on node B and hears her leave without watching anyone. Amy's hello on node A lists
/// dan (her DM partner, on node B) and not bob or cat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_crosses_nodes_to_watchers_and_dm_partners_only() {
    if !cluster_available() {
        return;
    }
    let (dir, tokens) = users_on_a_new_store(&["amy", "bob", "cat", "dan"]).await;
    let nodes = start_nodes(dir, 2, |_| {}).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut bob = WsClient::connect(&b.ws_url(), Some(&tokens[1]))
        .await
        .unwrap();
    bob.expect_hello().await;
    assert!(bob.watch(&["amy"]).await.is_empty());
    let mut cat = WsClient::connect(&b.ws_url(), Some(&tokens[2]))
        .await
        .unwrap();
    cat.expect_hello().await;
    let mut dan = WsClient::connect(&b.ws_url(), Some(&tokens[3]))
        .await
        .unwrap();
    dan.expect_hello().await;
    dan.send_dm("amy", "hi amy").await.expect("dm");

    let t = Instant::now();
    let mut amy = WsClient::connect(&a.ws_url(), Some(&tokens[0]))
        .await
        .unwrap();
    let hello = amy.expect_hello().await;
    let ServerFrame::Hello { online, .. } = &hello else {
        unreachable!()
    };
    assert_eq!(online, &["amy".to_string(), "dan".to_string()]);
    bob.wait_for(|f| says_online(f, "amy")).await;
    dan.wait_for(|f| says_online(f, "amy")).await;
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let mut dan2 = WsClient::connect(&b.ws_url(), Some(&tokens[3]))
        .await
        .unwrap();
    let ServerFrame::Hello { online, .. } = dan2.expect_hello().await else {
        unreachable!()
    };
    assert_eq!(online, ["amy", "dan"], "amy is on the other node");

    let t = Instant::now();
    drop(amy);
    let gone = |f: &ServerFrame| matches!(f, ServerFrame::Presence { offline, .. } if offline.iter().any(|n| n == "amy"));
    bob.wait_for(gone).await;
    dan.wait_for(gone).await;
    dan2.wait_for(gone).await;
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    // Cat heard nothing of amy: whatever reached her socket by now names nobody.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let quiet = cat
        .request(|id| natter::protocol::ClientFrame::Rooms { id })
        .await;
    assert!(quiet.is_ok());
    assert!(
        !cat.pending
            .iter()
            .any(|f| matches!(f, ServerFrame::Presence { .. })),
        "cat watches nobody: {:?}",
        cat.pending
    );
}

/// Two real `natter-server` processes on one database and one Redis. One is killed with
/// SIGKILL (it publishes nothing more): its user goes offline for the other node's clients
/// within the lease (2 s here), comes back online by reconnecting to the surviving node, and
/// chats from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_takes_its_users_offline_within_its_lease() {
    if !cluster_available() {
        return;
    }
    let (dir, tokens) = users_on_a_new_store(&["amy", "bob"]).await;
    let flags = process_flags(&dir, &[]).await;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let bin = env!("CARGO_BIN_EXE_natter-server");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = support::ServerProcess::spawn(bin, dir_a.path(), &flags).await;
    let b = support::ServerProcess::spawn(bin, dir_b.path(), &flags).await;

    let mut amy = WsClient::connect(&a.ws_url(), Some(&tokens[0]))
        .await
        .unwrap();
    amy.expect_hello().await;
    let mut bob = WsClient::connect(&b.ws_url(), Some(&tokens[1]))
        .await
        .unwrap();
    bob.expect_hello().await;
    if bob.watch(&["amy"]).await.is_empty() {
        bob.wait_for(|f| says_online(f, "amy")).await;
    }

    a.child.start_kill().unwrap();
    a.child.wait().await.unwrap();
    let killed = Instant::now();
    bob.wait_for(|f| matches!(f, ServerFrame::Presence { offline, .. } if offline.iter().any(|n| n == "amy")))
        .await;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "amy went offline {took:?} after her node died (lease 2 s, checked every 0.4 s, announced within 0.2 s)"
    );
    drop(amy);

    // Amy's client resumes on the surviving node: online again, and her messages arrive.
    let mut amy = WsClient::connect(&b.ws_url(), Some(&tokens[0]))
        .await
        .unwrap();
    amy.expect_hello().await;
    bob.wait_for(|f| says_online(f, "amy")).await;
    let general = amy.general();
    let sent = amy.send_text(general, "back on node b").await;
    let ServerFrame::Message { message } = bob
        .wait_for(|f| matches!(f, ServerFrame::Message { .. }))
        .await
    else {
        unreachable!()
    };
    assert_eq!(
        (message.seq, message.text.as_str()),
        (sent.seq, "back on node b")
    );
}

/// Signing out on one node closes that session's socket on another (the logout crosses the
/// bus), and a message sent on either node reaches the other node's client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_node_closes_the_socket_on_another() {
    if !cluster_available() {
        return;
    }
    let (dir, tokens) = users_on_a_new_store(&["eve", "fay"]).await;
    let nodes = start_nodes(dir, 2, |_| {}).await;
    let mut eve = nodes[1].connect(&tokens[0]).await;
    let mut fay = nodes[0].connect(&tokens[1]).await;
    let general = eve.general();
    let sent = fay.send_text(general, "from node a").await;
    let ServerFrame::Message { message } = eve
        .wait_for(|f| matches!(f, ServerFrame::Message { .. }))
        .await
    else {
        unreachable!("wait_for returns what matched")
    };
    assert_eq!((message.seq, message.text), (sent.seq, sent.text));

    let (status, body) = nodes[0]
        .post("/api/logout", serde_json::json!({}), Some(&tokens[0]))
        .await;
    assert_eq!(status, 204, "logout: {body}");
    assert_eq!(
        eve.expect_close().await,
        Some(natter::protocol::close::UNAUTHORIZED),
        "the session's socket on the other node is closed"
    );
}

/// Send one message and wait for its answer: the acked message, or None when the socket
/// closed or went quiet (its node was killed).
async fn send_once(
    ws: &mut WsClient,
    conv: ConvId,
    text: &str,
    cmid: Uuid,
) -> Option<natter::protocol::Message> {
    let id = ws.next_id();
    ws.send_raw(tokio_tungstenite::tungstenite::Message::text(
        serde_json::to_string(&ClientFrame::Send {
            id,
            target: Target::Conv(conv),
            client_msg_id: cmid,
            text: text.to_string(),
            reply_to: None,
            attachments: Vec::new(),
        })
        .unwrap(),
    ))
    .await;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.recv()).await {
            Ok(Some(ServerFrame::Ok {
                id: got,
                result: Reply::Sent { message },
            })) if got == id => return Some(message),
            Ok(Some(ServerFrame::Error {
                id: Some(got),
                code,
                message,
            })) if got == id => panic!("send refused: {code:?} {message}"),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

/// A socket to whichever listed node answers first.
async fn connect_any(urls: &std::sync::Mutex<Vec<String>>, token: &str) -> WsClient {
    loop {
        let candidates = urls.lock().unwrap().clone();
        for url in candidates {
            if let Ok(mut ws) = WsClient::connect(&url, Some(token)).await {
                if let Ok(Some(hello @ ServerFrame::Hello { .. })) =
                    tokio::time::timeout(Duration::from_secs(5), ws.recv()).await
                {
                    ws.hello = Some(hello);
                    return ws;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ten rounds of SIGKILL, each of one of two `natter-server` processes in turn, while four
/// clients keep sending: a client whose node dies reconnects to a live one and sends the
/// unanswered message again with the same `client_msg_id`. In the end every acked message is
/// in the store exactly once at the seq its ack named, nothing is there twice, and the seqs
/// have no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_node_kills_lose_no_acked_message_and_double_none() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    if !cluster_available() {
        return;
    }
    let (dir, tokens) = users_on_a_new_store(&["k0", "k1", "k2", "k3"]).await;
    let flags = process_flags(&dir, &["--rate-limit", "100000", "--rate-burst", "100000"]).await;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let bin = env!("CARGO_BIN_EXE_natter-server");
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut nodes = Vec::new();
    for d in &dirs {
        nodes.push(support::ServerProcess::spawn(bin, d.path(), &flags).await);
    }
    let urls = Arc::new(Mutex::new(
        nodes.iter().map(|n| n.ws_url()).collect::<Vec<_>>(),
    ));
    let general = connect_any(&urls, &tokens[0]).await.general();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let (urls, stop, token) = (urls.clone(), stop.clone(), token.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut ws: Option<WsClient> = None;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let (text, cmid) = (format!("k{i} #{n}"), Uuid::new_v4());
                    loop {
                        let socket = match ws.as_mut() {
                            Some(s) => s,
                            None => ws.insert(connect_any(&urls, &token).await),
                        };
                        match send_once(socket, general, &text, cmid).await {
                            Some(message) => {
                                acked.push(message);
                                break;
                            }
                            None => ws = None,
                        }
                    }
                }
                acked
            })
        })
        .collect();
    for round in 0..10 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let victim = round % 2;
        let gone = nodes[victim].ws_url();
        nodes[victim].child.start_kill().unwrap();
        nodes[victim].child.wait().await.unwrap();
        urls.lock().unwrap().retain(|u| *u != gone);
        nodes[victim] = support::ServerProcess::spawn(bin, dirs[victim].path(), &flags).await;
        urls.lock().unwrap().push(nodes[victim].ws_url());
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<natter::protocol::Message> =
        finish(senders).await.into_iter().flatten().collect();
    let mut reader = connect_any(&urls, &tokens[0]).await;
    let stored = reader.all_history(general).await;
    let seqs: Vec<i64> = stored.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "no gap"
    );
    let mut by_text: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for m in &stored {
        by_text.entry(m.text.as_str()).or_default().push(m.seq);
    }
    let doubled: Vec<_> = by_text.iter().filter(|(_, s)| s.len() > 1).collect();
    assert!(doubled.is_empty(), "stored twice: {doubled:?}");
    for m in &acked {
        assert_eq!(
            by_text.get(m.text.as_str()),
            Some(&vec![m.seq]),
            "acked {:?} at seq {} is stored once, there",
            m.text,
            m.seq
        );
    }
    // A send whose node died after its commit was retried until acked: nothing is stored
    // that its sender does not know of.
    assert_eq!(stored.len(), acked.len(), "every stored message was acked");
    eprintln!("{} messages acked and stored across 10 kills", acked.len());
    assert!(
        acked.len() >= 40,
        "the clients kept sending: {}",
        acked.len()
    );
}

/// The sign-in limits hold across nodes: wrong passwords spent on one node use up the address's
/// budget and the account's free failures on the other too (the changes cross the bus).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_limits_spent_on_one_node_hold_on_another() {
    if !cluster_available() {
        return;
    }
    let (dir, _) = users_on_a_new_store(&["gus"]).await;
    let nodes = start_nodes(dir, 2, |c| {
        c.failed_sign_ins_per_ip = 3;
        c.failed_sign_in_refill = Duration::from_secs(600);
        c.account_free_failures = 3;
    })
    .await;
    let wrong = serde_json::json!({"username": "gus", "password": "not the password"});
    for _ in 0..3 {
        let (status, body) = nodes[0].post("/api/login", wrong.clone(), None).await;
        assert_eq!(status, 401, "{body}");
    }
    // The other node hears of the three failures within a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = nodes[1].post("/api/login", wrong.clone(), None).await;
    assert_eq!(
        status, 429,
        "the address's budget is spent on node b too: {body}"
    );
    assert!(body.contains("address"), "{body}");
    // From another address the account's own limit holds there as well.
    let other = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let resp = other
        .post(nodes[1].http_url("/api/login"))
        .json(&wrong)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert_eq!(
        status, 429,
        "the account's failures count on node b: {body}"
    );
    assert!(body.contains("account"), "{body}");
}

/// What crosses nodes besides messages: a read marker set on one node reaches the same user's
/// socket on another, typing reaches the other members there, and a client that reconnects to
/// another node resumes (`sync`) from its last seq with exactly what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_typing_and_resume_cross_nodes() {
    if !cluster_available() {
        return;
    }
    let (dir, tokens) = users_on_a_new_store(&["ida", "jon"]).await;
    let nodes = start_nodes(dir, 3, |_| {}).await;
    let mut ida_a = nodes[0].connect(&tokens[0]).await;
    let mut ida_b = nodes[1].connect(&tokens[0]).await;
    let mut jon = nodes[2].connect(&tokens[1]).await;
    let general = jon.general();
    let first = jon.send_text(general, "one").await;

    // Typing on node c reaches ida's socket on node a.
    jon.request(|id| ClientFrame::Typing { id, conv: general })
        .await
        .unwrap();
    ida_a
        .wait_for(|f| matches!(f, ServerFrame::Typing { username, .. } if username == "jon"))
        .await;
    // Ida reads on node a; her socket on node b hears of it.
    ida_a
        .request(|id| ClientFrame::Read {
            id,
            conv: general,
            seq: first.seq,
        })
        .await
        .unwrap();
    ida_b
        .wait_for(|f| matches!(f, ServerFrame::Read { conv, seq } if *conv == general && *seq == first.seq))
        .await;

    // Ida's node-a client goes away after seq `first`; jon sends three more on node c; she
    // comes back on node b and resumes from her last seq: exactly the three, in order.
    drop(ida_a);
    let mut missed = Vec::new();
    for text in ["two", "three", "four"] {
        missed.push(jon.send_text(general, text).await.seq);
    }
    let mut back = nodes[1].connect(&tokens[0]).await;
    let id = back.next_id();
    back.send_frame(&ClientFrame::Sync {
        id,
        since: vec![natter::protocol::ConvSeq {
            conv: general,
            seq: first.seq,
        }],
    })
    .await;
    let mut replayed = Vec::new();
    loop {
        match back.next().await.expect("open") {
            ServerFrame::Batch { conv, messages } if conv == general => {
                replayed.extend(messages.iter().map(|m| m.seq))
            }
            ServerFrame::Message { message } if message.conv == general => {
                replayed.push(message.seq)
            }
            ServerFrame::Ok {
                id: got,
                result: Reply::Synced { .. },
            } if got == id => break,
            _ => {}
        }
    }
    assert_eq!(replayed, missed, "exactly what was missed, once, in order");
}

/// An event-stream ticket (for a browser's EventSource behind a load balancer) taken on one
/// node opens a stream on another, once: used there, it is refused everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_ticket_from_one_node_works_once_on_another() {
    if !cluster_available() {
        return;
    }
    let (dir, tokens) = users_on_a_new_store(&["kim"]).await;
    let nodes = start_nodes(dir, 2, |_| {}).await;
    let (status, body) = nodes[0]
        .post(
            "/api/events/ticket",
            serde_json::json!(null),
            Some(&tokens[0]),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let ticket: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ticket = ticket["ticket"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let open = |node: &TestServer| {
        reqwest::Client::new()
            .get(node.http_url(&format!("/api/events?ticket={ticket}")))
            .send()
    };
    let resp = open(&nodes[1]).await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the ticket from node a opens a stream on node b"
    );
    drop(resp);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for node in &nodes {
        let resp = open(node).await.unwrap();
        assert_eq!(resp.status(), 401, "used once, refused on every node");
    }
}

/// A room created on one node reaches the creator's and a member's sockets on another with the
/// flags each of them should see: private, and moderated by the creator only.
#[tokio::test]
async fn conversation_flags_cross_nodes() {
    if !cluster_available() {
        return;
    }
    // The first account is the admin; ann and bea are not.
    let (dir, tokens) = users_on_a_new_store(&["ada", "ann", "bea"]).await;
    let nodes = start_nodes(dir, 2, |_| {}).await;
    let mut ann_a = nodes[0].connect(&tokens[1]).await;
    let mut ann_b = nodes[1].connect(&tokens[1]).await;
    let mut bea_b = nodes[1].connect(&tokens[2]).await;
    let created = ann_a.create_room("den", true).await;
    assert!(created.private && created.moderator);

    let added = |frame: ServerFrame| match frame {
        ServerFrame::ConversationAdded { conversation } => {
            (conversation.private, conversation.moderator)
        }
        other => panic!("expected conversation_added, got {other:?}"),
    };
    let is_den = |f: &ServerFrame| matches!(f, ServerFrame::ConversationAdded { conversation } if conversation.id == created.id);
    assert_eq!(
        added(ann_b.wait_for(is_den).await),
        (true, true),
        "the creator's other node"
    );
    let username = "bea".to_string();
    let conv = created.id;
    ann_a
        .request(|id| ClientFrame::AddMember { id, conv, username })
        .await
        .expect("add bea");
    assert_eq!(
        added(bea_b.wait_for(is_den).await),
        (true, false),
        "a member on the other node"
    );
}

/// `natter-server admin grant|revoke` on the cluster's store reaches the user's open sockets on
/// every node without a reconnect (each node reads the admins from the store): bob's sockets on
/// node A and node B are told general is moderated by him, then no longer.
#[tokio::test]
async fn an_admin_role_change_reaches_the_users_sockets_on_every_node() {
    if !cluster_available() {
        return;
    }
    let (dir, tokens) = users_on_a_new_store(&["ada", "bob"]).await;
    let nodes = start_nodes(dir, 2, |_| {}).await;
    let mut bob_a = nodes[0].connect(&tokens[1]).await;
    let mut bob_b = nodes[1].connect(&tokens[1]).await;
    for (verb, admin) in [("grant", true), ("revoke", false)] {
        // The first node's directory names the cluster's database.
        let (ok, _, err) = support::natter_server_admin(&nodes[0], &[verb, "bob"]).await;
        assert!(ok, "{err}");
        for bob in [&mut bob_a, &mut bob_b] {
            let frame = bob
                .wait_for(|f| matches!(f, ServerFrame::ConversationsUpdated { .. }))
                .await;
            let ServerFrame::ConversationsUpdated { conversations } = frame else {
                unreachable!()
            };
            let flags: Vec<(&str, bool)> = conversations
                .iter()
                .map(|c| (c.name.as_str(), c.moderator))
                .collect();
            assert_eq!(flags, [("general", admin)], "after {verb}");
        }
    }
}
