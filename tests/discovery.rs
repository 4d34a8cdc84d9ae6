//! Host discovery (issue 19) on this machine's network: an advertised host is found with its
//! server id, fingerprint and an https:// address on its port, and a later browse no longer
//! finds it once the advertisement is withdrawn. (The test across two network
//! namespaces is not written yet.) Multicast must not leave the test's machine: scripts/test
//! runs this file inside a network namespace it makes (scripts/netns-mdns); everywhere else it
//! runs with NATTER_DISCOVERY=off and skips.

mod support;

use std::time::Duration;

use natter::discovery::{browse, Advertisement};
use natter::tls::Fingerprint;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_advertised_host_is_found_with_its_id_and_fingerprint() {
    if !natter::discovery::is_enabled() {
        // scripts/test runs this file again inside a network namespace with discovery on.
        eprintln!("skipped: NATTER_DISCOVERY=off (no mDNS onto this machine's network)");
        return;
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let fp = Fingerprint::of_der(id.as_bytes());
    let port = 40_000 + (std::process::id() % 20_000) as u16;
    let advert = Advertisement::start("test host", port, &id, Some(fp)).expect("advertise");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let host = loop {
        let hosts = browse(Duration::from_secs(3)).await.expect("browse");
        if let Some(h) = hosts.into_iter().find(|h| h.server_id == id) {
            break h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the host was never found"
        );
    };
    assert_eq!(host.name, "test host");
    assert_eq!(host.fingerprint, Some(fp));
    assert!(!host.urls.is_empty());
    for url in &host.urls {
        assert!(
            url.starts_with("https://") && url.ends_with(&format!(":{port}")),
            "{url}"
        );
    }

    // The CLI lists it too, with what the person compares and where to join.
    let profile = tempfile::tempdir().unwrap();
    let out =
        support::cli::ok(support::cli::natter(profile.path(), &["discover", "--wait", "3"]).await);
    assert!(
        out.contains(&id) && out.contains(&fp.to_string()) && out.contains(&host.urls[0]),
        "{out}"
    );
    advert.stop().await;
    let after = browse(Duration::from_secs(3)).await.expect("browse");
    assert!(
        after.iter().all(|h| h.server_id != id),
        "still found after withdrawal: {after:?}"
    );
}
