//! Faults in the client's local store, with the real `natter` CLI and a real server: a page
//! damaged in the middle of a profile's `natter.db` must be reported (never an empty answer with
//! exit 0), and `natter repair` must rebuild the store from the server keeping the session; and a
//! profile (its store holds the session token and all history) must be private.

mod support;

use std::time::Duration;

use natter::client::{Client, ClientConfig};
use support::cli::{fails, natter, ok};
use support::{assert_private, damage_middle_page, db_files, loosen, TestServer};

const WORD: &str = "pineapple";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_local_store_is_reported_and_repair_rebuilds_it_from_the_server() {
    let server = TestServer::start_with(|c| {
        c.rate_limit_per_sec = 100_000;
        c.rate_burst = 100_000;
    })
    .await;
    let url = format!("http://{}", server.addr);
    let profile = tempfile::tempdir().unwrap();
    let profile = profile.path();
    ok(natter(profile, &["--server", &url, "register", "alice"]).await);
    // History from someone else, big enough that the middle of alice's store is messages.
    let bob = server.register("bob").await;
    let mut ws = server.connect(&bob.token).await;
    let general = ws.general();
    for i in 0..40 {
        ws.send_text(general, &format!("{WORD} {i} {}", "y".repeat(3_000)))
            .await;
    }
    let before = ok(natter(profile, &["search", WORD, "--json"]).await);
    assert_eq!(before.lines().count(), 40, "{before}");
    assert_eq!(
        ok(natter(profile, &["repair"]).await).trim(),
        "the local store is sound: nothing to repair"
    );

    let db = profile.join("natter.db");
    let page = damage_middle_page(&db);
    // Every command says so and points at the repair, instead of a silent empty answer.
    for args in [&["search", WORD][..], &["history", "general"], &["unread"]] {
        let err = fails(natter(profile, args).await);
        assert!(
            err.contains("damaged") && err.contains("natter repair"),
            "{args:?} with page {page} damaged: {err}"
        );
    }

    let out = ok(natter(profile, &["repair"]).await);
    assert!(out.contains("moved the damaged local store to"), "{out}");
    assert!(out.contains("resynced"), "{out}");
    let kept: Vec<_> = std::fs::read_dir(profile)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("natter.db.damaged-") && !n.ends_with("-wal") && !n.ends_with("-shm")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    // Same session (no sign-in), history back from the server.
    let after = ok(natter(profile, &["search", WORD, "--json"]).await);
    assert_eq!(after.lines().count(), 40, "{after}");
    ok(natter(profile, &["send", "general", "still signed in"]).await);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_directory_and_its_files_are_private() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let base = tempfile::tempdir().unwrap();
    let profile = base.path().join("profiles").join("alice");
    let config = ClientConfig::new(
        format!("http://{}", server.addr).parse().unwrap(),
        profile.clone(),
    );

    let client = Client::start(config.clone(), alice).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), client.wait_synced())
        .await
        .expect("online")
        .unwrap();
    assert!(
        db_files(&profile).iter().all(|f| f.exists()),
        "db, wal and shm while running"
    );
    assert_private(&profile);
    client.shutdown().await;
    drop(client);

    // A profile left loose by an older version is tightened when next opened.
    loosen(&profile);
    let client = Client::resume(config)
        .await
        .unwrap()
        .expect("saved session");
    assert_private(&profile);
    client.shutdown().await;
}
