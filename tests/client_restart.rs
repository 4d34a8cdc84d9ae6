//! Faults across processes: the real `natter-server` binary is SIGKILLed and restarted on the
//! same port and data directory mid-conversation; messages are written while it is down, also by
//! a client process that then exits (`natter send`) and a later one that delivers them
//! (`natter tail`); and a client process is SIGKILLed while it writes its store.
//! Nothing may be lost or duplicated, outboxes drain in order, and the store stays sound.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use natter::client::{self, Client, ClientConfig, ConnectionState, LocalMessage, Target};
use natter::protocol::{ConvId, ConvKind, RegisterRequest, Session};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use url::Url;

const PASSWORD: &str = "correct horse battery";

/// The real server binary on a fixed port and data dir, so it can be killed and restarted.
struct ServerProc {
    child: Option<Child>,
    port: u16,
    data: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl ServerProc {
    async fn start() -> ServerProc {
        let mut s = ServerProc {
            child: None,
            port: free_port(),
            data: tempfile::tempdir().unwrap(),
        };
        s.restart().await;
        s
    }

    fn url(&self) -> Url {
        format!("http://127.0.0.1:{}", self.port).parse().unwrap()
    }

    async fn restart(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_natter-server"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data.path())
            // The tests send in bursts; the rate limiter is not what they are about.
            .env("NATTER_RATE_LIMIT", "100000")
            .env("NATTER_RATE_BURST", "100000")
            .env("NATTER_OUTBOUND_QUEUE", "100000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn natter-server");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while client::health(&self.url()).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "server did not come up"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL: no graceful close, no flush beyond what was committed.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    async fn register(&self, name: &str) -> Session {
        client::register(
            &self.url(),
            RegisterRequest {
                username: name.into(),
                password: PASSWORD.into(),
                display_name: None,
                avatar: None,
                invite: None,
            },
        )
        .await
        .unwrap()
    }
}

fn config(server: &Url, dir: &Path) -> ClientConfig {
    let mut c = ClientConfig::new(server.clone(), dir.to_path_buf());
    c.backoff_min = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(300);
    c.connect_timeout = Duration::from_secs(3);
    c
}

async fn within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Every message of `conv`, oldest first, walking pages back from the newest.
async fn all_messages(c: &Client, conv: ConvId) -> Vec<LocalMessage> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let mut page = c.history(conv, before, 200).await.unwrap();
        page.retain(|m| m.seq.is_some());
        if page.is_empty() {
            break;
        }
        before = page[0].seq;
        page.extend(out);
        out = page;
        if before == Some(1) {
            break;
        }
    }
    out
}

/// Seqs are exactly 1..=n, every text appears once, and each sender's messages are in the order
/// they were written (`<sender-prefix><index>`).
fn assert_exactly_once_in_order(msgs: &[LocalMessage], expected: &[String]) {
    let seqs: Vec<_> = msgs.iter().map(|m| m.seq.unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=msgs.len() as i64).collect::<Vec<_>>(),
        "no gaps, no duplicates"
    );
    let mut count: HashMap<&str, usize> = HashMap::new();
    for m in msgs {
        *count.entry(m.text.as_str()).or_default() += 1;
    }
    for text in expected {
        assert_eq!(count.get(text.as_str()), Some(&1), "{text} exactly once");
    }
    assert_eq!(msgs.len(), expected.len(), "nothing extra");
    let mut by_sender: HashMap<&str, Vec<&str>> = HashMap::new();
    for m in msgs {
        by_sender
            .entry(m.sender.as_str())
            .or_default()
            .push(m.text.as_str());
    }
    for (sender, texts) in by_sender {
        let expected_order: Vec<&str> = expected
            .iter()
            .map(String::as_str)
            .filter(|t| texts.contains(t))
            .collect();
        assert_eq!(
            texts, expected_order,
            "{sender}'s messages in the order written"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sigkilled_mid_conversation_clients_recover_by_themselves() {
    let mut server = ServerProc::start().await;
    let url = server.url();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let alice = Client::start(config(&url, da.path()), server.register("alice").await)
        .await
        .unwrap();
    let bob = Client::start(config(&url, db.path()), server.register("bob").await)
        .await
        .unwrap();
    within(10, "alice synced", alice.wait_synced())
        .await
        .unwrap();
    within(10, "bob synced", bob.wait_synced()).await.unwrap();
    let general = alice
        .find_conversation(ConvKind::Room, "general")
        .await
        .unwrap()
        .unwrap();
    let mut alice_states = alice.connection_watch();

    let mut expected = Vec::new();
    for i in 0..40 {
        if i == 12 {
            server.kill().await;
        }
        if i == 28 {
            // The clients must notice by themselves (socket error or missing pongs).
            within(
                10,
                "alice notices",
                alice_states.wait_for(|s| {
                    matches!(
                        s,
                        ConnectionState::Offline { .. } | ConnectionState::Connecting
                    )
                }),
            )
            .await
            .unwrap();
            server.restart().await;
        }
        for (who, c) in [("a", &alice), ("b", &bob)] {
            let text = format!("{who}{i}");
            c.send(Target::Conv(general), &text).await.unwrap();
            expected.push(text);
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    within(30, "alice's outbox drains", alice.wait_outbox_empty())
        .await
        .unwrap();
    within(30, "bob's outbox drains", bob.wait_outbox_empty())
        .await
        .unwrap();
    assert_eq!(alice.connection_state(), ConnectionState::Online);
    // Both see the same complete history once the live pushes have landed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let a = all_messages(&alice, general).await;
        let b = all_messages(&bob, general).await;
        if a.len() >= expected.len() && b.len() >= expected.len() {
            assert_exactly_once_in_order(&a, &expected);
            assert_exactly_once_in_order(&b, &expected);
            let ids = |v: &[LocalMessage]| v.iter().map(|m| m.local_id.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&a), ids(&b), "the same order for every member");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "histories incomplete: {} {}",
            a.len(),
            b.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A fresh device sees exactly the same.
    let dc = tempfile::tempdir().unwrap();
    let login = client::login(&url, "bob", PASSWORD).await.unwrap();
    let fresh = Client::start(config(&url, dc.path()), login).await.unwrap();
    within(10, "fresh synced", fresh.wait_synced())
        .await
        .unwrap();
    assert_exactly_once_in_order(&all_messages(&fresh, general).await, &expected);
    for c in [alice, bob, fresh] {
        c.shutdown().await;
    }
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_message_is_delivered_exactly_once_after_a_client_restart() {
    let mut server = ServerProc::start().await;
    let url = server.url();
    let da = tempfile::tempdir().unwrap();
    let alice = Client::start(config(&url, da.path()), server.register("alice").await)
        .await
        .unwrap();
    let bob_session = server.register("bob").await;
    within(10, "synced", alice.wait_synced()).await.unwrap();
    let general = alice
        .find_conversation(ConvKind::Room, "general")
        .await
        .unwrap()
        .unwrap();
    server.kill().await;

    // Written while the server is down, then the client process "exits".
    alice
        .send(Target::Conv(general), "written offline 1")
        .await
        .unwrap();
    alice
        .send(Target::To("bob".into()), "dm offline")
        .await
        .unwrap();
    alice
        .send(Target::Conv(general), "written offline 2")
        .await
        .unwrap();
    alice.shutdown().await;
    drop(alice);

    server.restart().await;
    let alice = Client::resume(config(&url, da.path()))
        .await
        .unwrap()
        .expect("session kept");
    assert_eq!(alice.outbox().await.unwrap().len(), 3);
    within(20, "outbox drains", alice.wait_outbox_empty())
        .await
        .unwrap();
    assert!(alice.outbox().await.unwrap().is_empty());

    let db = tempfile::tempdir().unwrap();
    let bob = Client::start(config(&url, db.path()), bob_session)
        .await
        .unwrap();
    within(10, "bob synced", bob.wait_synced()).await.unwrap();
    let texts: Vec<_> = all_messages(&bob, general)
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["written offline 1", "written offline 2"]);
    let dm = bob
        .find_conversation(ConvKind::Dm, "alice")
        .await
        .unwrap()
        .expect("DM created");
    let texts: Vec<_> = all_messages(&bob, dm)
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["dm offline"]);
    // Restarting alice again must not send anything twice.
    alice.shutdown().await;
    let alice = Client::resume(config(&url, da.path()))
        .await
        .unwrap()
        .unwrap();
    within(10, "synced", alice.wait_synced()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(all_messages(&bob, general).await.len(), 2);
    alice.shutdown().await;
    bob.shutdown().await;
    server.kill().await;
}

async fn natter(profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_natter"))
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env("NATTER_PASSWORD", PASSWORD)
        .env("NATTER_BACKOFF_MIN_MS", "20")
        .env("NATTER_BACKOFF_MAX_MS", "300")
        .output()
        .await
        .expect("run natter")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_lines(o: &std::process::Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_send_while_the_server_is_down_is_delivered_once_by_a_later_tail() {
    let mut server = ServerProc::start().await;
    let url = server.url().to_string();
    let (pa, pb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (p, name) in [(&pa, "alice"), (&pb, "bob")] {
        let o = natter(p.path(), &["--server", &url, "register", name]).await;
        assert!(o.status.success(), "{o:?}");
    }
    // One connected command so the profile knows its rooms.
    let o = natter(pa.path(), &["send", "general", "before the crash"]).await;
    assert!(o.status.success() && stdout(&o).contains("sent"), "{o:?}");
    server.kill().await;

    let o = natter(pa.path(), &["send", "general", "queued while down"]).await;
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("queued"), "{}", stdout(&o));
    let o = natter(pa.path(), &["history", "general", "--json"]).await;
    let lines = json_lines(&o);
    assert_eq!(lines.last().unwrap()["state"], "pending");

    server.restart().await;
    let mut tail = Command::new(env!("CARGO_BIN_EXE_natter"))
        .arg("--profile")
        .arg(pa.path())
        .args(["tail", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    within(20, "tail delivers the queued message", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["text"] == "queued while down" {
                assert_eq!(v["sender"], "alice");
                assert_eq!(v["conversation"], "general");
                return;
            }
        }
        panic!("tail ended");
    })
    .await;
    // A live message from bob reaches the tail too.
    let o = natter(pb.path(), &["send", "general", "hi from bob"]).await;
    assert!(o.status.success(), "{o:?}");
    within(10, "tail prints bob's message", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("hi from bob") {
                return;
            }
        }
    })
    .await;
    tail.kill().await.unwrap();

    let o = natter(pb.path(), &["history", "general", "--json"]).await;
    assert!(o.status.success(), "{o:?}");
    let texts: Vec<String> = json_lines(&o)
        .iter()
        .map(|v| v["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        texts,
        ["before the crash", "queued while down", "hi from bob"]
    );
    let seqs: Vec<i64> = json_lines(&o)
        .iter()
        .map(|v| v["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_while_writing_leaves_a_sound_store_and_resumes() {
    const N: usize = 3_000;
    let mut server = ServerProc::start().await;
    let url = server.url();
    let pb = tempfile::tempdir().unwrap();
    let o = natter(pb.path(), &["--server", url.as_str(), "register", "bob"]).await;
    assert!(o.status.success(), "{o:?}");
    let da = tempfile::tempdir().unwrap();
    let alice = Client::start(config(&url, da.path()), server.register("alice").await)
        .await
        .unwrap();
    within(10, "synced", alice.wait_synced()).await.unwrap();
    let general = alice
        .find_conversation(ConvKind::Room, "general")
        .await
        .unwrap()
        .unwrap();

    let mut tail = Command::new(env!("CARGO_BIN_EXE_natter"))
        .arg("--profile")
        .arg(pb.path())
        .args(["tail", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    // Wait until the tail is connected (its presence reaches alice, who watches bob).
    alice.watch_presence(vec!["bob".into()]).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !alice.online().contains(&"bob".to_string()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tail never came online"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sender = {
        let alice = alice.clone();
        tokio::spawn(async move {
            for i in 0..N {
                alice
                    .send(Target::Conv(general), &format!("flood {i}"))
                    .await
                    .unwrap();
            }
        })
    };
    // Kill the tail in the middle of the stream of writes.
    within(30, "tail receives part of the flood", async {
        let mut seen = 0;
        while let Some(_line) = lines.next_line().await.unwrap() {
            seen += 1;
            if seen == N / 3 {
                return;
            }
        }
        panic!("tail ended early");
    })
    .await;
    tail.kill().await.unwrap();
    sender.await.unwrap();
    within(60, "alice's outbox drains", alice.wait_outbox_empty())
        .await
        .unwrap();

    let db = pb.path().join(client::STORE_FILE);
    let held = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        let fts: Result<(), _> = conn
            .execute_batch("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')");
        fts.expect("the search index matches the messages");
        let held: i64 = conn
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        held
    };
    assert!(
        held >= (N / 3) as i64 && held < N as i64,
        "killed mid-stream: held {held}"
    );

    // The next run resumes from where the store stopped and ends with everything, once.
    let o = natter(
        pb.path(),
        &["history", "general", "--limit", "5000", "--json"],
    )
    .await;
    assert!(o.status.success(), "{o:?}");
    let lines = json_lines(&o);
    let seqs: Vec<i64> = lines.iter().map(|v| v["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=N as i64).collect::<Vec<_>>());
    let o = natter(pb.path(), &["search", "flood", "--limit", "5"]).await;
    assert!(
        stdout(&o).contains(&format!("flood {}", N - 1)),
        "{}",
        stdout(&o)
    );
    alice.shutdown().await;
    server.kill().await;
}
