//! A client and a host over real TLS on 127.0.0.1 (issue 19): the host serves with its own
//! self-signed certificate (`natter::tls::HostCertificate`), the client probes its fingerprint,
//! pins it and chats over https:// and wss://; a certificate swapped behind the same address
//! (a new key) is refused as changed and nothing reaches the server.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use natter::client::{trust, Client, ClientConfig, ClientError, ConnectionState, MessageState};
use natter::protocol::{ConvKind, RegisterRequest, Target};
use natter::server::ServerConfig;
use natter::tls::HostCertificate;
use tokio::sync::oneshot;
use url::Url;

/// A server serving TLS with the host certificate kept in `data_dir`/tls, on `addr`.
struct TlsHost {
    url: Url,
    addr: SocketAddr,
    fingerprint: natter::tls::Fingerprint,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsHost {
    async fn start(data_dir: &Path, addr: SocketAddr) -> TlsHost {
        let cert = HostCertificate::load_or_create(&data_dir.join("tls")).expect("host cert");
        let mut config = ServerConfig::new(data_dir);
        config.store = support::postgres_store(data_dir).await;
        config.tls = Some(cert.server_tls());
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            natter::server::run(listener, config, async move {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        TlsHost {
            url: format!("https://{addr}").parse().unwrap(),
            addr,
            fingerprint: cert.fingerprint,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|tx| tx.send(()));
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("stops")
            .unwrap();
    }
}

fn register_req(name: &str) -> RegisterRequest {
    RegisterRequest {
        username: name.into(),
        password: support::PASSWORD.into(),
        display_name: None,
        avatar: None,
        invite: None,
    }
}

fn config(url: &Url, profile: &Path) -> ClientConfig {
    let mut c = ClientConfig::new(url.clone(), profile.to_path_buf());
    c.backoff_min = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    c
}

async fn wait_state(
    client: &Client,
    mut pred: impl FnMut(&ConnectionState) -> bool,
) -> ConnectionState {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = client.connection_state();
        if pred(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "state stayed {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_pins_the_hosts_certificate_and_a_swapped_one_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let host = TlsHost::start(data.path(), "127.0.0.1:0".parse().unwrap()).await;
    let url = host.url.clone();

    // Unknown: the probe reads the fingerprint without sending anything, and it is the host's.
    assert_eq!(trust::probe(&url).await, Ok(host.fingerprint));
    // Before the person confirms it, nothing is trusted: the error names the fingerprint.
    match natter::client::register(&url, register_req("alice")).await {
        Err(ClientError::UntrustedCertificate(m)) => {
            assert!(m.contains(&host.fingerprint.to_string()), "{m}")
        }
        other => panic!("expected an untrusted certificate, got {other:?}"),
    }

    // Confirmed: the profile keeps the pin, and https:// and wss:// work.
    let profile = tempfile::tempdir().unwrap();
    trust::save_pin(profile.path(), &url, host.fingerprint).unwrap();
    let session = natter::client::register(&url, register_req("alice"))
        .await
        .expect("register over https");
    let alice = Client::start(config(&url, profile.path()), session)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), alice.wait_synced())
        .await
        .expect("synced over wss in time")
        .unwrap();
    let general = alice
        .find_conversation(ConvKind::Room, "general")
        .await
        .unwrap()
        .expect("in general");
    let state_of = |local_id: String| {
        let alice = &alice;
        async move {
            let page = alice.history(general, None, 50).await.unwrap();
            page.into_iter()
                .find(|m| m.local_id == local_id)
                .expect("the message is in the history")
                .state
        }
    };
    let sent = alice.send(Target::Conv(general), "over TLS").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while state_of(sent.local_id.clone()).await != MessageState::Sent {
        assert!(tokio::time::Instant::now() < deadline, "never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The host's certificate is replaced by another (a new key) at the same address.
    let addr = host.addr;
    host.stop().await;
    std::fs::remove_dir_all(data.path().join("tls")).unwrap();
    let impostor = TlsHost::start(data.path(), addr).await;
    assert_ne!(impostor.fingerprint, trust::pinned(&url).unwrap());

    // The running client is refused, says why, and its new message stays in its outbox.
    let state = wait_state(
        &alice,
        |s| matches!(s, ConnectionState::Offline { reason, .. } if reason.contains("certificate")),
    )
    .await;
    let ConnectionState::Offline { reason, .. } = state else {
        unreachable!()
    };
    // The UI's banner names the risk from this prefix (ui/src/lib/banner.ts).
    assert!(
        reason.starts_with("certificate changed:") && reason.contains("impersonating"),
        "{reason}"
    );
    let queued = alice
        .send(Target::Conv(general), "not for impostors")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        state_of(queued.local_id.clone()).await,
        MessageState::Pending
    );

    // HTTP is refused the same way, before any request reaches the server: bob's registration
    // did not happen, so the name is still free once the new certificate is trusted on purpose.
    match natter::client::register(&url, register_req("bob")).await {
        Err(e @ ClientError::CertificateChanged(_)) => {
            let m = e.to_string();
            assert!(m.contains(&impostor.fingerprint.to_string()), "{m}");
            assert_eq!(e.code(), "certificate_changed");
        }
        other => panic!("expected a changed certificate, got {other:?}"),
    }
    assert_eq!(trust::probe(&url).await, Ok(impostor.fingerprint));
    trust::pin(&url, impostor.fingerprint);
    natter::client::register(&url, register_req("bob"))
        .await
        .expect("bob's name was never taken: the refused request never arrived");
    alice.shutdown().await;
    impostor.stop().await;
}

/// Named bad inputs: probing a plain-HTTP address, and a server that does not speak TLS.
#[tokio::test]
async fn probing_what_has_no_certificate_is_a_clear_error() {
    let server = support::TestServer::start().await;
    let plain: Url = format!("http://{}", server.addr).parse().unwrap();
    let e = trust::probe(&plain).await.unwrap_err();
    assert!(e.to_string().contains("not an https:// address"), "{e}");
    let pretend: Url = format!("https://{}", server.addr).parse().unwrap();
    let e = trust::probe(&pretend).await.unwrap_err();
    assert!(
        e.to_string().contains("did not present a certificate"),
        "{e}"
    );
}

/// The CLI against a TLS host: an unknown certificate is refused with its fingerprint and the
/// way to trust it, `--trust` with the right fingerprint pins it (later commands use the
/// profile's pin), and after the certificate is swapped both a login and `--trust` with the old
/// fingerprint fail as changed. Named bad inputs: a garbage `--trust`, a CA file that is not PEM,
/// a clear-text address to another machine (warned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_trusts_by_fingerprint_and_refuses_a_changed_certificate() {
    use support::cli::{fails, natter, ok};
    let data = tempfile::tempdir().unwrap();
    let host = TlsHost::start(data.path(), "127.0.0.1:0".parse().unwrap()).await;
    let url = host.url.to_string();
    let fp = host.fingerprint.to_string();
    let profile = tempfile::tempdir().unwrap();
    let p = profile.path();

    let err = fails(
        natter(
            p,
            &["--server", &url, "--trust", "12-34-zz", "register", "alice"],
        )
        .await,
    );
    assert!(err.contains("not a certificate fingerprint"), "{err}");
    let not_pem = data.path().join("ca.txt");
    std::fs::write(&not_pem, "no certificates here").unwrap();
    let err = fails(
        natter(
            p,
            &[
                "--server",
                &url,
                "--ca-file",
                not_pem.to_str().unwrap(),
                "register",
                "alice",
            ],
        )
        .await,
    );
    assert!(
        err.contains("ca.txt") && err.contains("no certificate found"),
        "{err}"
    );

    let err = fails(natter(p, &["--server", &url, "register", "alice"]).await);
    assert!(
        err.contains("not trusted") && err.contains(&fp) && err.contains("--trust"),
        "{err}"
    );
    ok(natter(p, &["--server", &url, "--trust", &fp, "register", "alice"]).await);
    assert!(ok(natter(p, &["send", "general", "pinned"]).await).contains("sent"));

    let addr = host.addr;
    host.stop().await;
    std::fs::remove_dir_all(data.path().join("tls")).unwrap();
    let impostor = TlsHost::start(data.path(), addr).await;
    let err = fails(natter(p, &["--server", &url, "login", "alice"]).await);
    assert!(
        err.contains("changed") && err.contains("impersonating"),
        "{err}"
    );
    let err = fails(natter(p, &["--server", &url, "--trust", &fp, "login", "alice"]).await);
    assert!(
        err.contains(&impostor.fingerprint.to_string()) && err.contains("nothing was sent"),
        "{err}"
    );

    let err = fails(natter(p, &["--server", "http://0.0.0.0:1", "login", "alice"]).await);
    assert!(
        err.contains("warning") && err.contains("not encrypted"),
        "{err}"
    );
    impostor.stop().await;
}
