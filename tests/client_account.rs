//! Your account through the client core and the `natter` CLI, against a real server on
//! 127.0.0.1:0 with real SQLite on both sides: a peer's client stores a display name change and
//! still shows it after an offline restart; sessions are listed and revoked, and a deleted
//! account's client is signed out; `natter export` writes every message of a conversation longer
//! than one history page (JSON) and a readable page whose markup, `&` and bidi characters from
//! names and messages are escaped (HTML), both private (0600).
//!
//! Bad inputs tried: an unknown session id, a session id that would reshape the URL, an unknown
//! export format, a wrong password for deletion.

mod support;

use std::time::Duration;

use natter::client::{Client, ClientConfig, ClientError, ClientEvent, ConnectionState};
use natter::protocol::{ClientFrame, ConvKind, Reply, Session};
use support::cli::{fails, natter, ok};
use support::{TestServer, PASSWORD};

fn config(server_url: &str, dir: &std::path::Path) -> ClientConfig {
    let mut c = ClientConfig::new(server_url.parse().unwrap(), dir.to_path_buf());
    c.backoff_min = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    c
}

async fn synced(c: &Client) {
    tokio::time::timeout(Duration::from_secs(10), c.wait_synced())
        .await
        .expect("synced in time")
        .expect("synced");
}

async fn start(server: &TestServer, session: Session, dir: &std::path::Path) -> Client {
    let url = format!("http://{}", server.addr);
    let c = Client::start(config(&url, dir), session).await.unwrap();
    synced(&c).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stores_a_name_change_and_shows_it_after_an_offline_restart() {
    let server = TestServer::start().await;
    let url = format!("http://{}", server.addr);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let alice = start(&server, server.register("alice").await, da.path()).await;
    let bob = start(&server, server.register("bob").await, db.path()).await;
    let mut events = bob.subscribe();
    alice
        .send(natter::client::Target::To("bob".into()), "hi")
        .await
        .unwrap();
    alice.wait_outbox_empty().await.unwrap();

    let me = alice
        .set_profile(Some("Alice Liddell".into()), Some("🐇".into()))
        .await
        .unwrap();
    assert_eq!(me.display_name, "Alice Liddell");
    assert_eq!(alice.user().display_name, "Alice Liddell");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let heard = loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(ClientEvent::UserUpdated(u))) if u.username == "alice" => break u,
            Ok(_) => {}
            Err(_) => panic!("bob never heard of the new name"),
        }
    };
    assert_eq!(
        (heard.display_name.as_str(), heard.avatar.as_str()),
        ("Alice Liddell", "🐇")
    );
    let dm = bob
        .find_conversation(ConvKind::Dm, "alice")
        .await
        .unwrap()
        .expect("the DM");
    // The DM's title follows (the summary is republished).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while bob.conversation(dm).await.unwrap().unwrap().title != "Alice Liddell" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "title never changed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Bob restarts with the server gone: the name comes from his store.
    bob.shutdown().await;
    alice.shutdown().await;
    drop(server.stop().await);
    let bob = Client::resume(config(&url, db.path()))
        .await
        .unwrap()
        .expect("saved session");
    let summary = bob.conversation(dm).await.unwrap().unwrap();
    assert_eq!(summary.title, "Alice Liddell");
    assert_eq!(summary.peer.unwrap().avatar, "🐇");
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_revoked_and_a_deleted_account_is_signed_out() {
    let server = TestServer::start().await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let laptop = start(&server, server.register("alice").await, d1.path()).await;
    let url = format!("http://{}", server.addr);
    let signed_in = natter::client::login(&url.parse().unwrap(), "alice", PASSWORD)
        .await
        .unwrap();
    let phone = start(&server, signed_in, d2.path()).await;

    let sessions = laptop.sessions().await.unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let other = sessions.iter().find(|s| !s.current).unwrap();
    assert!(
        other.label.as_deref().unwrap_or("").contains(" on "),
        "the client names its sessions (program, version, OS): {other:?}"
    );
    for bad in ["0123456789abcdef0123456789abcdef", "../../logout", ""] {
        let e = laptop.revoke_session(bad).await.unwrap_err();
        assert!(matches!(e, ClientError::NotFound(_)), "{bad}: {e:?}");
    }
    laptop.revoke_session(&other.id).await.unwrap();
    let mut state = phone.connection_watch();
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| matches!(s, ConnectionState::SignedOut { .. })),
    )
    .await
    .expect("the revoked device is signed out")
    .unwrap();
    assert_eq!(laptop.sessions().await.unwrap().len(), 1);

    let wrong = laptop.delete_account("not my password").await.unwrap_err();
    assert!(matches!(wrong, ClientError::Unauthorized(_)), "{wrong:?}");
    laptop.delete_account(PASSWORD).await.unwrap();
    assert!(
        Client::resume(config(&url, d1.path()))
            .await
            .unwrap()
            .is_none(),
        "the session is forgotten"
    );
    let login = natter::client::login(&url.parse().unwrap(), "alice", PASSWORD).await;
    assert!(
        matches!(login, Err(ClientError::Unauthorized(_))),
        "{login:?}"
    );
    phone.shutdown().await;
}

/// `posts` messages from a raw socket of a new user `name` into `general`.
async fn post_many(server: &TestServer, name: &str, texts: &[String]) {
    let mut ws = server.user(name).await;
    let general = ws.general();
    for text in texts {
        ws.send_text(general, text).await;
    }
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natter_export_writes_every_message_as_json_and_escaped_html() {
    let server = TestServer::start_with(|c| {
        c.rate_limit_per_sec = 1_000_000;
        c.rate_burst = 1_000_000;
    })
    .await;
    let url = format!("http://{}", server.addr);
    let profile = tempfile::tempdir().unwrap();
    let a = profile.path();
    ok(natter(a, &["--server", &url, "register", "alice"]).await);
    // More than two history pages, posted while Alice's CLI is not running: her store does not
    // hold them, the export must page them from the server.
    let texts: Vec<String> = (1..=450).map(|i| format!("message {i}")).collect();
    post_many(&server, "bob", &texts).await;
    // A sender whose name and message carry markup, `&` and a bidi override.
    let session = server
        .post(
            "/api/register",
            serde_json::json!({"username": "mallory", "password": PASSWORD,
                "display_name": "<script>alert(1)</script> & Co"}),
            None,
        )
        .await;
    assert_eq!(session.0, 201, "{session:?}");
    let session: Session = serde_json::from_str(&session.1).unwrap();
    let mut mallory = server.connect(&session.token).await;
    let general = mallory.general();
    mallory
        .send_text(
            general,
            "<img src=x onerror=alert(2)> Tom & Jerry Invoice_\u{202e}fdp.exe",
        )
        .await;
    let dm = match mallory
        .request(|id| ClientFrame::Send {
            id,
            target: natter::protocol::Target::To("alice".into()),
            client_msg_id: uuid::Uuid::new_v4(),
            text: "</p><script>steal()</script>".into(),
            reply_to: None,
            attachments: Vec::new(),
        })
        .await
    {
        Ok(Reply::Sent { message }) => message.conv,
        other => panic!("{other:?}"),
    };

    let out = a.join("history.json");
    let said = ok(natter(a, &["export", "--out", out.to_str().unwrap()]).await);
    assert!(said.contains("452 messages"), "{said}");
    let export: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(export["format"], "natter-export");
    assert_eq!(export["user"]["username"], "alice");
    let convs = export["conversations"].as_array().unwrap();
    let general_msgs = convs.iter().find(|c| c["name"] == "general").unwrap()["messages"]
        .as_array()
        .unwrap();
    let seqs: Vec<i64> = general_msgs
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=451).collect::<Vec<_>>(),
        "every message, in order"
    );
    assert_eq!(general_msgs[449]["text"], "message 450");
    let dm_export = convs.iter().find(|c| c["id"] == dm).expect("the DM");
    assert_eq!(dm_export["kind"], "dm");
    assert_eq!(dm_export["messages"][0]["sender"], "mallory");
    #[cfg(unix)]
    assert_eq!(mode(&out), 0o600);

    let page = a.join("history.html");
    ok(natter(
        a,
        &[
            "export",
            "--format",
            "html",
            "--out",
            page.to_str().unwrap(),
        ],
    )
    .await);
    let html = std::fs::read_to_string(&page).unwrap();
    #[cfg(unix)]
    assert_eq!(mode(&page), 0o600);
    assert!(
        !html.contains("<script") && !html.contains("<img"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co"));
    assert!(html.contains(
        "<p dir=\"auto\">&lt;img src=x onerror=alert(2)&gt; Tom &amp; Jerry Invoice_\u{202e}fdp.exe</p>"
    ));
    assert!(html.contains("&lt;/p&gt;&lt;script&gt;steal()&lt;/script&gt;"));
    assert!(html.contains("message 450"));

    let err = fails(natter(a, &["export", "--format", "pdf"]).await);
    assert!(err.contains("pdf"), "{err}");
}
