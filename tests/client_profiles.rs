//! Profiles keyed by the server's stable id (issue 19): the same server reached at another
//! address (`localhost` instead of `127.0.0.1`, as after a host's address changed) finds the
//! same profile, with its history and session; a profile kept under the address (made before
//! server ids) moves to the id's place the first time its server answers; an unreachable
//! server leaves the profile where it is known.

mod support;

use std::time::Duration;

use natter::client::{profile_dir_in, profiles, Client, ClientConfig};
use natter::protocol::ConvKind;
use support::TestServer;
use url::Url;

/// The test server's quick-reconnect config, at the address `url`.
fn config(server: &TestServer, url: &Url, profile: &std::path::Path) -> ClientConfig {
    ClientConfig {
        server: url.clone(),
        ..server.client_config(profile)
    }
}

async fn synced(c: &Client) {
    tokio::time::timeout(Duration::from_secs(10), c.wait_synced())
        .await
        .expect("synced in time")
        .expect("synced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_at_a_new_address_keeps_the_profile_and_its_history() {
    let server = TestServer::start().await;
    let base = tempfile::tempdir().unwrap();
    let by_ip: Url = format!("http://127.0.0.1:{}", server.addr.port())
        .parse()
        .unwrap();
    let by_name: Url = format!("http://localhost:{}", server.addr.port())
        .parse()
        .unwrap();

    let profile = profiles::locate(base.path(), &by_ip, "alice")
        .await
        .unwrap();
    let session = server.register("alice").await;
    let alice = Client::start(config(&server, &by_ip, &profile), session)
        .await
        .unwrap();
    synced(&alice).await;
    let general = alice
        .find_conversation(ConvKind::Room, "general")
        .await
        .unwrap()
        .unwrap();
    support::send_acknowledged(&alice, general, "said at 127.0.0.1").await;
    alice.shutdown().await;

    // The same server by another name: the same profile, found with and without asking it.
    assert_eq!(
        profiles::locate(base.path(), &by_name, "alice")
            .await
            .unwrap(),
        profile
    );
    assert_eq!(profile_dir_in(base.path(), &by_name, "alice"), profile);
    let again = Client::resume(config(&server, &by_name, &profile))
        .await
        .unwrap()
        .expect("the saved session is there");
    synced(&again).await;
    let history = again.history(general, None, 10).await.unwrap();
    assert!(
        history.iter().any(|m| m.text == "said at 127.0.0.1"),
        "{history:?}"
    );
    again.shutdown().await;

    // Another server is another profile.
    let other = TestServer::start().await;
    let other_url: Url = format!("http://127.0.0.1:{}", other.addr.port())
        .parse()
        .unwrap();
    assert_ne!(
        profiles::locate(base.path(), &other_url, "alice")
            .await
            .unwrap(),
        profile
    );
}

#[tokio::test]
async fn a_profile_kept_under_the_address_moves_to_the_server_id() {
    let server = TestServer::start().await;
    let base = tempfile::tempdir().unwrap();
    let url: Url = format!("http://127.0.0.1:{}", server.addr.port())
        .parse()
        .unwrap();
    // Before server ids (or before the server was first reached) the profile is the address's.
    let legacy = profile_dir_in(base.path(), &url, "bob");
    assert!(legacy.ends_with(format!("http_127.0.0.1_{}-bob", server.addr.port())));
    std::fs::create_dir_all(&legacy).unwrap();
    std::fs::write(legacy.join("marker"), "kept").unwrap();

    let located = profiles::locate(base.path(), &url, "bob").await.unwrap();
    assert_ne!(located, legacy);
    assert!(!legacy.exists(), "moved, not copied");
    assert_eq!(
        std::fs::read_to_string(located.join("marker")).unwrap(),
        "kept"
    );

    // Unreachable: the known place, without an error.
    let (_, result) = server.stop().await;
    result.unwrap();
    assert_eq!(
        profiles::locate(base.path(), &url, "bob").await.unwrap(),
        located
    );
}
