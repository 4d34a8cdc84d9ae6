//! Host mode: the natter server running inside the desktop app, so a LAN group needs nothing
//! else. This module owns starting and stopping it and telling the user which addresses others
//! should enter. The server speaks https:// and wss:// only, with the host's own certificate
//! (`natter::tls::HostCertificate`, kept in the server's data directory); others confirm its
//! fingerprint when they join, and this app's own client trusts it by that fingerprint.
//!
//! Registration is by invite only (the host's own first account is the admin and needs none;
//! the host's screen makes invites), and the server is the host's alone until they share it:
//! unshared it listens on loopback and is not advertised; shared it listens on the shell's
//! network address and is advertised with mDNS ([`Reach`]).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use tokio::sync::oneshot;

use crate::error::{CommandError, ErrorCode};

/// The port used when the user does not choose one.
pub const DEFAULT_PORT: u16 = 8686;

/// Who may register on a hosted server.
pub const REGISTRATION: natter::protocol::Registration = natter::protocol::Registration::Invite;

/// Who can reach a hosted server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// This computer only: loopback, no advertisement.
    ThisComputer,
    /// The network: listening on this address (all interfaces in the app), and advertised.
    Network(IpAddr),
}

impl Reach {
    fn listen_ip(self) -> IpAddr {
        match self {
            Reach::ThisComputer => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            Reach::Network(ip) => ip,
        }
    }

    pub fn is_shared(self) -> bool {
        matches!(self, Reach::Network(_))
    }
}

/// A running in-process server. Dropping it (or [`HostedServer::stop`]) shuts the server down.
pub struct HostedServer {
    pub port: u16,
    pub reach: Reach,
    /// The fingerprint of the certificate it serves, for the host's screen.
    pub fingerprint: natter::tls::Fingerprint,
    /// Its advertisement on the network (None when the network has no multicast interface).
    advertisement: Option<natter::discovery::Advertisement>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HostedServer {
    /// Binds `port` (0 picks a free one) where `reach` says and runs the server with its data in
    /// `data_dir`, advertised when shared. Fails with a clear message when the port is taken or
    /// the server's database cannot be used (damaged, or lost: see the server's start-up checks).
    pub async fn start(reach: Reach, port: u16, data_dir: PathBuf) -> Result<Self, CommandError> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(reach.listen_ip(), port))
            .await
            .map_err(|e| {
                CommandError::new(
                    ErrorCode::Invalid,
                    format!("cannot listen on port {port}: {e}"),
                )
            })?;
        let port = listener.local_addr()?.port();
        let cert = natter::tls::HostCertificate::load_or_create(&data_dir.join("tls"))
            .map_err(|e| CommandError::internal(format!("cannot host a server: {e}")))?;
        // This app's own client talks to its server through the certificate it just read.
        natter::client::trust::pin(
            &local_url(port).parse().expect("a valid URL"),
            cert.fingerprint,
        );
        let (tx, rx) = oneshot::channel::<()>();
        let mut config = natter::server::ServerConfig::new(data_dir);
        config.tls = Some(cert.server_tls());
        // Whoever reaches a shared host needs an invite from its admins (the host's first
        // account, which the server lets register without one).
        config.registration = REGISTRATION;
        // The store opens here, so a bad database fails this command instead of a hosted
        // server that silently is not there.
        let server = natter::server::Server::start(listener, config)
            .map_err(|e| CommandError::internal(format!("cannot host a server: {e}")))?;
        // Found by others without typing an address (a failure only costs that convenience),
        // once the host shares it.
        let advertisement = if reach.is_shared() {
            let name = natter::tls::host_names().swap_remove(0);
            natter::discovery::Advertisement::start(
                &name,
                port,
                server.server_id(),
                Some(cert.fingerprint),
            )
            .inspect_err(|e| tracing::warn!(error = %e, "cannot advertise the hosted server"))
            .ok()
        } else {
            None
        };
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = server.serve(shutdown).await {
                tracing::error!(error = %e, "hosted server stopped");
            }
        });
        tracing::info!(port, shared = reach.is_shared(), "hosting a natter server");
        Ok(Self {
            port,
            reach,
            fingerprint: cert.fingerprint,
            advertisement,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Asks the server to shut down and waits for it.
    pub async fn stop(mut self) {
        if let Some(advertisement) = self.advertisement.take() {
            advertisement.stop().await;
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HostedServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The URL this app's own client uses to reach the hosted server.
pub fn local_url(port: u16) -> String {
    format!("https://127.0.0.1:{port}")
}

/// The URLs others on the LAN should enter: one per LAN IPv4 address
/// ([`natter::tls::lan_addresses`]). Empty when the machine has no network (then only this
/// computer can connect, which the UI says).
pub fn lan_urls(port: u16) -> Vec<String> {
    natter::tls::lan_addresses()
        .into_iter()
        .filter(IpAddr::is_ipv4)
        .map(|ip| format!("https://{ip}:{port}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn lan_urls_never_offer_loopback_and_are_well_formed() {
        for url in lan_urls(8686) {
            let parsed = url::Url::parse(&url).unwrap();
            assert_eq!(parsed.port(), Some(8686));
            let host: Ipv4Addr = parsed.host_str().unwrap().parse().unwrap();
            assert!(natter::tls::is_lan_candidate(host.into()), "{url}");
        }
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let first = HostedServer::start(Reach::ThisComputer, 0, dir.path().join("a"))
            .await
            .unwrap();
        let err = HostedServer::start(Reach::ThisComputer, first.port, dir.path().join("b"))
            .await
            .err()
            .expect("second bind on the same port must fail");
        assert_eq!(err.code, ErrorCode::Invalid);
        assert!(
            err.message.contains(&first.port.to_string()),
            "{}",
            err.message
        );
        first.stop().await;
    }
}
