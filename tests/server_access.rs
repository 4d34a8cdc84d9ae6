//! Run by its host (docs/protocol.md, "Run by its host"), against a real server over real HTTP,
//! WebSockets and its store (SQLite, or PostgreSQL with `NATTER_TEST_POSTGRES`): the first
//! account is the server's admin and no later one is, even when the first registrations race;
//! `natter-server admin grant|revoke|list` changes and lists the admins through the store while
//! the server runs, and the server shows the new roles in `hello` after a restart.
//!
//! Bad inputs tried: `natter-server admin grant` of a user that does not exist.

mod support;

use natter::protocol::{ServerFrame, Session};
use support::{postgres_store, TestServer, WsClient};

/// `natter-server --data-dir DIR [--store URL] admin ARGS...` on `server`'s store: whether it
/// succeeded, and its stdout and stderr.
async fn natter_server_admin(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter-server"));
    cmd.arg("--data-dir").arg(server.dir.path());
    if let Some(natter::server::StoreLocation::Postgres(url)) =
        postgres_store(server.dir.path()).await
    {
        cmd.args(["--store", &url]);
    }
    let out = cmd
        .arg("admin")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run natter-server admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether `hello` says its user is an admin.
async fn hello_says_admin(server: &TestServer, session: &Session) -> bool {
    let mut ws = WsClient::connect(&server.ws_url(), Some(&session.token))
        .await
        .expect("ws connect");
    match ws.expect_hello().await {
        ServerFrame::Hello { user, .. } => user.admin,
        other => panic!("expected hello, got {other:?}"),
    }
}

#[tokio::test]
async fn the_first_account_is_admin_and_later_ones_are_not() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    assert!(alice.user.admin, "the first account is the admin");
    assert!(!bob.user.admin, "a second account is not");
    assert!(hello_says_admin(&server, &alice).await);
    assert!(!hello_says_admin(&server, &bob).await);
}

#[tokio::test]
async fn racing_first_registrations_make_exactly_one_admin() {
    let server = TestServer::start().await;
    let names = ["ann", "ben", "cat", "dan", "eve", "fay"];
    let sessions =
        futures_util::future::join_all(names.iter().map(|name| server.register(name))).await;
    let admins: Vec<&str> = sessions
        .iter()
        .filter(|s| s.user.admin)
        .map(|s| s.user.username.as_str())
        .collect();
    assert_eq!(admins.len(), 1, "exactly one admin, got {admins:?}");
}

#[tokio::test]
async fn natter_server_admin_grants_revokes_and_lists_while_the_server_runs() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;

    let (ok, out, err) = natter_server_admin(&server, &["list"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "alice\n");

    let (ok, out, err) = natter_server_admin(&server, &["grant", "Bob"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "bob is an admin\n", "the stored spelling is named");
    let (ok, out, err) = natter_server_admin(&server, &["revoke", "alice"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "alice is no longer an admin\n");
    let (_, out, _) = natter_server_admin(&server, &["list"]).await;
    assert_eq!(out, "bob\n");

    // Bad input: a user that does not exist.
    let (ok, _, err) = natter_server_admin(&server, &["grant", "nobody"]).await;
    assert!(!ok, "granting an unknown user fails");
    assert!(err.contains("no such user"), "{err}");
    let (_, out, _) = natter_server_admin(&server, &["list"]).await;
    assert_eq!(out, "bob\n", "nothing changed");

    let (dir, result) = server.stop().await;
    result.expect("clean stop");
    let server = TestServer::start_in(dir, |_| {}).await;
    assert!(
        hello_says_admin(&server, &bob).await,
        "bob's hello says admin"
    );
    assert!(
        !hello_says_admin(&server, &alice).await,
        "alice's no longer does"
    );
}
