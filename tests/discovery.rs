//! Host discovery (issue 19) on this machine's network: an advertised host is found with its
//! server id, fingerprint and an https:// address on its port, and a later browse no longer
//! finds it once the advertisement is withdrawn; and, between two network namespaces joined by a
//! veth pair (scripts/netns-pair), a host found, joined at its advertised address, and found
//! again at a new address with the client's profile and history kept. Multicast must not leave
//! the test's machine: scripts/test runs this file inside network namespaces it makes
//! (scripts/netns-mdns, scripts/netns-pair); everywhere else it runs with NATTER_DISCOVERY=off
//! and skips.

mod support;

use std::time::Duration;

use natter::client::{profiles, Client, ClientConfig};
use natter::discovery::{browse, Advertisement};
use natter::protocol::ConvKind;
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

/// The environment of the test across two network namespaces (set by `scripts/netns-pair`): the
/// host's namespace, its end of the veth pair, its first address and the one it moves to.
const NETNS_HOST: &str = "NATTER_NETNS_HOST";
const NETNS_HOST_DEV: &str = "NATTER_NETNS_HOST_DEV";
const NETNS_HOST_ADDRS: &str = "NATTER_NETNS_HOST_ADDRS";
/// Set (to the data directory) in the host process the test starts in the host's namespace.
const NETNS_HOST_DATA: &str = "NATTER_NETNS_HOST_DATA";
/// The address the host process listens on (port 0: any).
const NETNS_HOST_LISTEN: &str = "NATTER_NETNS_HOST_LISTEN";

/// The host side of [`a_host_in_another_namespace_is_found_joined_and_keeps_the_profile_after_moving`]:
/// run by that test (this test executable, in the host's namespace, with `--ignored --exact`),
/// never on its own: ignored, so a plain `cargo test` does not count it as a test that passed,
/// and started bare (no data directory and address from the parent) it fails, saying so. It
/// serves a data directory on one address, advertises itself, says `READY <server id>` and
/// serves until its standard input closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the host side of the two-namespace discovery test, which starts it (scripts/netns-pair)"]
async fn netns_host_role() {
    let (Ok(data), Ok(listen)) = (
        std::env::var(NETNS_HOST_DATA),
        std::env::var(NETNS_HOST_LISTEN),
    ) else {
        panic!(
            "{NETNS_HOST_DATA} and {NETNS_HOST_LISTEN} are not set: this is the host side of \
             a_host_in_another_namespace_is_found_joined_and_keeps_the_profile_after_moving, \
             which starts it; run that test with scripts/netns-pair"
        );
    };
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = natter::server::ServerConfig::new(&data);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(natter::server::run(listener, config, async move {
        let _ = stopped.await;
    }));
    let url: url::Url = format!("http://{addr}").parse().unwrap();
    let health = natter::client::health(&url).await.expect("health");
    let advert = Advertisement::start("netns host", addr.port(), &health.server_id, None)
        .expect("advertise");
    println!("READY {}", health.server_id);
    let mut rest = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut rest).await;
    advert.stop().await;
    let _ = stop.send(());
    server.await.expect("joined").expect("served");
}

/// The host process in its namespace: this test executable running [`netns_host_role`] (an
/// ignored test, hence `--ignored`).
struct NetnsHost {
    child: tokio::process::Child,
    server_id: String,
}

impl NetnsHost {
    async fn start(ns: &str, data: &std::path::Path, ip: &str) -> NetnsHost {
        use tokio::io::AsyncBufReadExt;
        let exe = std::env::current_exe().expect("test executable");
        let mut child = tokio::process::Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args(["--ignored", "--exact", "netns_host_role", "--nocapture"])
            .env(NETNS_HOST_DATA, data)
            .env(NETNS_HOST_LISTEN, format!("{ip}:0"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the host in its namespace");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let server_id = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("host output") {
                if let Some(id) = line.strip_prefix("READY ") {
                    return id.to_string();
                }
            }
            panic!("the host ended before it was ready");
        })
        .await
        .expect("the host was ready in time");
        // The rest of its output is read to the end, so that it never writes into a closed pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("host: {line}");
            }
        });
        NetnsHost { child, server_id }
    }

    /// Close its input: it withdraws its advertisement and shuts down.
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the host stopped in time")
            .expect("host status");
        assert!(status.success(), "host: {status}");
    }
}

/// Browse until the host `server_id` is heard with an address in `ip`'s network.
async fn find_host(server_id: &str, ip: &str) -> natter::discovery::FoundHost {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let hosts = browse(Duration::from_secs(3)).await.expect("browse");
        if let Some(h) = hosts
            .into_iter()
            .find(|h| h.server_id == server_id && h.urls.iter().any(|u| u.contains(ip)))
        {
            return h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "host {server_id} never heard at {ip}"
        );
    }
}

fn run_ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .expect("ip");
    assert!(status.success(), "ip {args:?}: {status}");
}

/// Issue 19's discovery test: a host in one network namespace, a client in another, joined by a
/// veth pair (`scripts/netns-pair`; nothing leaves the namespaces). The client finds the host by
/// mDNS, joins it at the address it advertises and chats; the host stops, its address changes,
/// it starts again and is found at the new address, and the client's profile (keyed by the
/// server's id) is the same, with its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_in_another_namespace_is_found_joined_and_keeps_the_profile_after_moving() {
    let (Ok(ns), Ok(dev), Ok(addrs)) = (
        std::env::var(NETNS_HOST),
        std::env::var(NETNS_HOST_DEV),
        std::env::var(NETNS_HOST_ADDRS),
    ) else {
        eprintln!("skipped: scripts/netns-pair runs this between two network namespaces");
        return;
    };
    let addrs: Vec<&str> = addrs.split_whitespace().collect();
    let [first, moved] = addrs[..] else {
        panic!("{NETNS_HOST_ADDRS}: two addresses with their prefix, the first in use");
    };
    let ip = |cidr: &str| cidr.split('/').next().unwrap_or_default().to_string();
    let data = tempfile::tempdir().unwrap();
    let base = tempfile::tempdir().unwrap();

    let host = NetnsHost::start(&ns, data.path(), &ip(first)).await;
    let found = find_host(&host.server_id, &ip(first)).await;
    let url: url::Url = found
        .urls
        .iter()
        .find(|u| u.contains(&ip(first)))
        .unwrap()
        .parse()
        .unwrap();
    let register: natter::client::RegisterRequest = serde_json::from_value(
        serde_json::json!({"username": "alice", "password": support::PASSWORD}),
    )
    .unwrap();
    let session = natter::client::register(&url, register)
        .await
        .expect("register over the advertised address");
    let profile = profiles::locate(base.path(), &url, "alice").await.unwrap();
    let alice = Client::start(ClientConfig::new(url.clone(), profile.clone()), session)
        .await
        .unwrap();
    support::synced(&alice).await;
    let general = alice
        .find_conversation(ConvKind::Room, "general")
        .await
        .unwrap()
        .unwrap();
    support::send_acknowledged(&alice, general, "said at the first address").await;
    alice.shutdown().await;
    let server_id = host.server_id.clone();
    host.stop().await;

    // The host's address changes (as DHCP may do), and it starts again there.
    run_ip(&["-n", &ns, "addr", "del", first, "dev", &dev]);
    run_ip(&["-n", &ns, "addr", "add", moved, "dev", &dev]);
    let host = NetnsHost::start(&ns, data.path(), &ip(moved)).await;
    assert_eq!(host.server_id, server_id, "the same server");
    let found = find_host(&server_id, &ip(moved)).await;
    let new_url: url::Url = found
        .urls
        .iter()
        .find(|u| u.contains(&ip(moved)))
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(new_url, url);
    assert_eq!(
        profiles::locate(base.path(), &new_url, "alice")
            .await
            .unwrap(),
        profile,
        "the profile is the server id's, wherever the server is"
    );
    let again = Client::resume(ClientConfig::new(new_url, profile))
        .await
        .unwrap()
        .expect("the saved session is there");
    support::synced(&again).await;
    let history = again.history(general, None, 10).await.unwrap();
    assert!(
        history
            .iter()
            .any(|m| m.text == "said at the first address" && m.seq.is_some()),
        "{history:?}"
    );
    again.shutdown().await;
    host.stop().await;
}
