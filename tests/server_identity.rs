//! The server's stable id (issue 19): made once per store, told in `hello` and in
//! `GET /api/health`, unchanged across restarts, the same on every node of a cluster (one
//! PostgreSQL database) and different between servers.

mod support;

use natter::protocol::{Health, ServerFrame};
use support::{on_postgres, TestServer};

async fn health_id(server: &TestServer) -> String {
    let health: Health = reqwest::get(server.http_url("/api/health"))
        .await
        .expect("health request")
        .json()
        .await
        .expect("health body");
    health.server_id
}

async fn hello_id(server: &TestServer, name: &str) -> String {
    let session = server.login(name).await;
    let mut ws = server.connect(&session.token).await;
    match ws.hello.take() {
        Some(ServerFrame::Hello { server_id, .. }) => server_id,
        other => panic!("expected hello, got {other:?}"),
    }
}

fn is_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test]
async fn the_server_id_is_told_alike_in_hello_and_health_and_survives_a_restart() {
    let server = TestServer::start().await;
    server.register("alice").await;
    let first = health_id(&server).await;
    assert!(is_id(&first), "32 lowercase hex characters: {first:?}");
    assert_eq!(hello_id(&server, "alice").await, first);

    let other = TestServer::start().await;
    assert_ne!(health_id(&other).await, first, "another server, another id");

    let (dir, result) = server.stop().await;
    result.unwrap();
    let again = TestServer::start_in(dir, |_| {}).await;
    assert_eq!(
        health_id(&again).await,
        first,
        "the id is kept across a restart"
    );
    assert_eq!(hello_id(&again, "alice").await, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_database_have_one_server_id() {
    if !on_postgres() {
        eprintln!("NATTER_TEST_POSTGRES is not set: this PostgreSQL test runs in its own pass");
        return;
    }
    // Two nodes start at once on a new database: whichever migrates makes the id, the other
    // reads it.
    let dir = tempfile::tempdir().unwrap();
    let store = support::postgres_store(dir.path()).await;
    let (a, b) = tokio::join!(
        TestServer::start_in(dir, |c| c.store = store.clone()),
        TestServer::start_with(|c| c.store = store.clone()),
    );
    let id = health_id(&a).await;
    assert!(is_id(&id), "{id:?}");
    assert_eq!(health_id(&b).await, id);
    // (Without a bus between them, a node knows only the users of its own store snapshot
    // and registrations: bob registers on the node he connects to.)
    b.register("bob").await;
    assert_eq!(hello_id(&b, "bob").await, id);
}
