//! Attention through the client library against the real server: a level or do not disturb set
//! on one device reaches the user's other device (store, events, notification facts) and a
//! new device's hello; a mute from before levels were synced is pushed to the server once, then
//! the server's level wins.

mod support;

use std::time::Duration;

use natter::client::{Client, ClientConfig, ClientEvent, STORE_FILE};
use natter::protocol::{ConvId, Dnd, NotifyLevel, Session};
use support::TestServer;
use tokio::sync::broadcast;

fn config(server: &TestServer, dir: &std::path::Path) -> ClientConfig {
    server.client_config(dir)
}

async fn start(server: &TestServer, dir: &std::path::Path, session: Session) -> Client {
    let c = Client::start(config(server, dir), session).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), c.wait_synced())
        .await
        .expect("synced in time")
        .expect("synced");
    c
}

async fn general(c: &Client) -> ConvId {
    c.conversations()
        .await
        .unwrap()
        .iter()
        .find(|s| s.name == "general")
        .expect("general")
        .id
}

/// Waits until `check` holds, polling; panics after 10 s.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn level(c: &Client, conv: ConvId) -> NotifyLevel {
    c.conversation(conv).await.unwrap().expect("joined").level
}

async fn next_dnd(rx: &mut broadcast::Receiver<ClientEvent>) -> Option<Dnd> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ClientEvent::Dnd { dnd })) => return dnd,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            other => panic!("no dnd event: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_and_dnd_reach_the_users_other_devices() {
    let server = TestServer::start().await;
    let session = server.register("alice").await;
    server.register("bob").await;
    let (d1, d2, d3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let phone = start(&server, d1.path(), session.clone()).await;
    let laptop = start(&server, d2.path(), server.login("alice").await).await;
    let general = general(&phone).await;
    let mut laptop_events = laptop.subscribe();

    phone
        .set_level(general, NotifyLevel::Mentions)
        .await
        .unwrap();
    assert_eq!(level(&phone, general).await, NotifyLevel::Mentions);
    eventually("the laptop has the level", || async {
        level(&laptop, general).await == NotifyLevel::Mentions
    })
    .await;
    assert_eq!(
        laptop.notice_facts(general, "bob").await.unwrap().level,
        NotifyLevel::Mentions
    );

    let forever = Some(Dnd { until: None });
    phone.set_dnd(forever).await.unwrap();
    assert_eq!(next_dnd(&mut laptop_events).await, forever);
    assert_eq!(laptop.dnd().await.unwrap(), forever);
    assert_eq!(
        laptop.notice_facts(general, "bob").await.unwrap().dnd,
        forever
    );

    let tablet = start(&server, d3.path(), server.login("alice").await).await;
    assert_eq!(
        level(&tablet, general).await,
        NotifyLevel::Mentions,
        "from hello"
    );
    assert_eq!(tablet.dnd().await.unwrap(), forever, "from hello");

    laptop.set_dnd(None).await.unwrap();
    eventually("the phone hears DND is off", || async {
        phone.dnd().await.unwrap().is_none()
    })
    .await;
    for c in [&phone, &laptop, &tablet] {
        c.shutdown().await;
    }
}

/// A profile from before levels were synced, with `general` muted: its first connection pushes
/// the mute (the server and the user's other devices get `nothing`); after that another
/// device's change wins on this one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_mute_from_before_is_pushed_once_then_the_server_wins() {
    let server = TestServer::start().await;
    let session = server.register("alice").await;
    let (old_dir, other_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old = start(&server, old_dir.path(), session.clone()).await;
    let general = general(&old).await;
    old.shutdown().await;
    drop(old);
    {
        // What a release before synced levels stored for a mute: the flag, at schema 6.
        let db = rusqlite::Connection::open(old_dir.path().join(STORE_FILE)).unwrap();
        db.execute_batch(&format!(
            "ALTER TABLE conversations DROP COLUMN level;
             UPDATE conversations SET muted = 1 WHERE id = {general};
             {}
             {}
             {}
             PRAGMA user_version = 6;",
            include_str!("support/undo_client_0010.sql"),
            include_str!("support/undo_client_0009.sql"),
            include_str!("support/undo_client_0008.sql")
        ))
        .unwrap();
    }
    let other = start(&server, other_dir.path(), server.login("alice").await).await;
    assert_eq!(level(&other, general).await, NotifyLevel::All);

    let old = start(&server, old_dir.path(), session.clone()).await;
    assert_eq!(
        level(&old, general).await,
        NotifyLevel::Nothing,
        "muted stays muted"
    );
    eventually("the other device hears of the pushed mute", || async {
        level(&other, general).await == NotifyLevel::Nothing
    })
    .await;

    other.set_level(general, NotifyLevel::All).await.unwrap();
    eventually("the old device follows the server", || async {
        level(&old, general).await == NotifyLevel::All
    })
    .await;
    old.shutdown().await;
    drop(old);
    let old = start(&server, old_dir.path(), session).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        level(&old, general).await,
        NotifyLevel::All,
        "pushed once: a reconnect does not mute it again"
    );
    assert_eq!(level(&other, general).await, NotifyLevel::All);
}
