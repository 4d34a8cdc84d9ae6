//! The latency trace (`natter-server --trace-latency FILE`, issue 15): a real server process
//! writes each stage of a socket's message to the file, in the order the message passed them,
//! on whichever store it runs. Bad input tried: a trace path that cannot be written (a
//! directory) stops the start with a clear error instead of serving untraced.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use natter::protocol::{ClientFrame, Reply, Target};
use natter::server::latency_trace::{Mark, FLUSH_EVERY, HEADER};
use natter::server::StoreLocation;
use support::{ServerProcess, TestServer, WsClient};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_natter-server");

/// The trace's records: (stamp, mark, a, b).
fn records(path: &Path) -> Vec<(u64, Mark, u64, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Vec::new();
    }
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 4, "a record is four fields: {l:?}");
            let mark = Mark::parse(f[1]).unwrap_or_else(|| panic!("unknown mark in {l:?}"));
            (
                f[0].parse().unwrap(),
                mark,
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_server_writes_every_stage_of_a_message_in_order() {
    // Register on an in-process server (PostgreSQL when the suite runs there), then serve the
    // same store from the binary with the trace on.
    let setup = TestServer::start().await;
    let token = setup.register("amy").await.token;
    let (dir, result) = setup.stop().await;
    result.unwrap();
    let trace_dir = tempfile::tempdir().unwrap();
    let path = trace_dir.path().join("latency.trace");
    let mut flags = vec!["--trace-latency".to_string(), path.display().to_string()];
    if let Some(StoreLocation::Postgres(url)) = support::postgres_store(dir.path()).await {
        flags.extend(["--store".to_string(), url]);
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = ServerProcess::spawn(BIN, dir.path(), &flags).await;

    let mut amy = WsClient::connect(&server.ws_url(), Some(&token))
        .await
        .unwrap();
    amy.expect_hello().await;
    let general = amy.general();
    let id = amy.next_id();
    amy.send_frame(&ClientFrame::Send {
        id,
        target: Target::Conv(general),
        client_msg_id: Uuid::new_v4(),
        text: "traced".into(),
        reply_to: None,
        attachments: Vec::new(),
    })
    .await;
    assert!(matches!(amy.answer(id).await, Ok(Reply::Sent { .. })));

    // The trace thread writes every FLUSH_EVERY; the fan-out's last mark follows the answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    let trace = loop {
        let r = records(&path);
        let picked = r.iter().find(|&&(_, m, _, b)| m == Mark::Picked && b == id);
        if let Some(&(picked, ..)) = picked {
            if r.iter()
                .any(|&(t, m, ..)| m == Mark::SendsEnd && t >= picked)
            {
                break r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no complete trace of request {id}: {r:?}"
        );
        tokio::time::sleep(FLUSH_EVERY).await;
    };
    let of_request = |mark: Mark| {
        let found: Vec<_> = trace
            .iter()
            .filter(|&&(_, m, _, b)| m == mark && b == id)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {} of request {id}: {trace:?}",
            mark.name()
        );
        found[0].0
    };
    let received = of_request(Mark::Received);
    let to_writer = of_request(Mark::ToWriter);
    let published = of_request(Mark::Published);
    let picked = of_request(Mark::Picked);
    // Its commit is the last that ended before it was published; its sends the first batch
    // that began after the fan-out picked it up.
    let last_before = |mark: Mark, t: u64| {
        trace
            .iter()
            .filter(|&&(s, m, ..)| m == mark && s <= t)
            .map(|r| r.0)
            .max()
            .unwrap_or_else(|| panic!("no {} before {t}: {trace:?}", mark.name()))
    };
    let done = last_before(Mark::CommitDone, published);
    let call = last_before(Mark::CommitCall, done);
    let begin = last_before(Mark::CommitBegin, call);
    let first_after = |mark: Mark, t: u64| {
        trace
            .iter()
            .filter(|&&(s, m, ..)| m == mark && s >= t)
            .map(|r| r.0)
            .min()
            .unwrap_or_else(|| panic!("no {} after {t}: {trace:?}", mark.name()))
    };
    let sends_begin = first_after(Mark::SendsBegin, picked);
    let sends_end = first_after(Mark::SendsEnd, sends_begin);
    let order = [
        received,
        to_writer,
        begin,
        call,
        done,
        published,
        picked,
        sends_begin,
        sends_end,
    ];
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "stages out of order: {order:?}"
    );
    // The connection field names the same socket throughout.
    let conn_of = |mark: Mark| {
        trace
            .iter()
            .find(|&&(_, m, _, b)| m == mark && b == id)
            .map(|r| r.2)
    };
    assert_eq!(conn_of(Mark::Received), conn_of(Mark::Picked));
    // Stamps are the epoch clock's, so another process can line them up with its own.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(
        received <= now && now - received < 60_000_000_000,
        "{received} vs {now}"
    );
}

#[tokio::test]
async fn a_trace_path_that_cannot_be_written_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    // A directory cannot be opened as the trace file.
    let out = tokio::process::Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--trace-latency")
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "served with an unwritable trace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot write the latency trace"),
        "stderr: {stderr}"
    );
    assert!(out.stdout.is_empty(), "announced it was listening");
}
