//! What PostgreSQL storage promises beyond one node (the rest of the suite runs on it too, with
//! `NATTER_TEST_POSTGRES` set; `scripts/test` does so): two server nodes on one database start
//! together without racing over the schema, keep each conversation's seqs gapless while both
//! commit sends into it at once, and answer a retried send with the original on either node.
//! Without `NATTER_TEST_POSTGRES` these tests say so and pass: they belong to the PostgreSQL run.

mod support;

use std::collections::BTreeSet;

use natter::protocol::Message;
use support::{on_postgres, TestServer};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_keep_seqs_gapless_and_retries_idempotent() {
    if !on_postgres() {
        eprintln!("NATTER_TEST_POSTGRES is not set: this PostgreSQL test runs in its own pass");
        return;
    }
    let unlimited = |c: &mut natter::server::ServerConfig| {
        c.rate_limit_per_sec = 100_000;
        c.rate_burst = 100_000;
    };
    // Users first: a node learns of users and rooms from the store when it starts (across
    // nodes the bus carries them; these nodes have none between them).
    let dir = tempfile::tempdir().unwrap();
    let setup = TestServer::start_in(dir, unlimited).await;
    let alice = setup.register("alice").await;
    let bob = setup.register("bob").await;
    let (dir, result) = setup.stop().await;
    result.unwrap();
    // Both nodes start at once on that database.
    let store = support::postgres_store(dir.path()).await;
    let (a_node, b_node) = tokio::join!(
        TestServer::start_in(dir, |c| {
            unlimited(c);
            c.store = store.clone();
        }),
        TestServer::start_with(|c| {
            unlimited(c);
            c.store = store.clone();
        })
    );
    let a = a_node.connect(&alice.token).await;
    let b = b_node.connect(&bob.token).await;
    let general = a.general();
    const EACH: usize = 150;
    let send_all = |mut ws: support::WsClient, who: &'static str| async move {
        let mut acked = Vec::new();
        for i in 0..EACH {
            acked.push(ws.send_text(general, &format!("{who} {i}")).await);
        }
        (ws, acked)
    };
    let ((mut a, from_a), (_b, from_b)) = tokio::join!(send_all(a, "a"), send_all(b, "b"));
    let history = a.all_history(general).await;
    let seqs: Vec<i64> = history.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=(2 * EACH) as i64).collect::<Vec<_>>(),
        "one gapless sequence for both nodes"
    );
    let acked: BTreeSet<(i64, String)> = from_a
        .iter()
        .chain(&from_b)
        .map(|m: &Message| (m.seq, m.text.clone()))
        .collect();
    let stored: BTreeSet<(i64, String)> = history.iter().map(|m| (m.seq, m.text.clone())).collect();
    assert_eq!(acked, stored, "every ack is what was stored, at its seq");
    for (node, acks) in [("a", &from_a), ("b", &from_b)] {
        assert!(
            acks.windows(2).all(|w| w[0].seq < w[1].seq),
            "node {node}'s own sends keep their order"
        );
    }

    // A retry that reaches the other node gets the original message back.
    let cmid = Uuid::new_v4();
    let original = a.send_with_id(general, "once", cmid).await.unwrap();
    let mut b_again = b_node.connect(&alice.token).await;
    let retried = b_again.send_with_id(general, "once", cmid).await.unwrap();
    assert_eq!(retried, original);
    let after = a.all_history(general).await;
    assert_eq!(
        after.iter().filter(|m| m.client_msg_id == cmid).count(),
        1,
        "stored once"
    );
}
