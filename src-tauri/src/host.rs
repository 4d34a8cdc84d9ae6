//! Host mode: the natter server running inside the desktop app, so a LAN group needs nothing
//! else. This module owns starting and stopping it and telling the user which addresses others
//! should enter.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use tokio::sync::oneshot;

use crate::error::{CommandError, ErrorCode};

/// The port used when the user does not choose one.
pub const DEFAULT_PORT: u16 = 8686;

/// A running in-process server. Dropping it (or [`HostedServer::stop`]) shuts the server down.
pub struct HostedServer {
    pub port: u16,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HostedServer {
    /// Binds `bind_ip:port` (port 0 picks a free one) and runs the server with its data in
    /// `data_dir`. Fails with a clear message when the port is taken or the server's database
    /// cannot be used (damaged, or lost: see the server's start-up checks).
    pub async fn start(
        bind_ip: IpAddr,
        port: u16,
        data_dir: PathBuf,
    ) -> Result<Self, CommandError> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(bind_ip, port))
            .await
            .map_err(|e| {
                CommandError::new(
                    ErrorCode::Invalid,
                    format!("cannot listen on port {port}: {e}"),
                )
            })?;
        let port = listener.local_addr()?.port();
        let (tx, rx) = oneshot::channel::<()>();
        let mut config = natter::server::ServerConfig::new(data_dir);
        config.registration = natter::server::Registration::Invite;
        // The store opens here, so a bad database fails this command instead of a hosted
        // server that silently is not there.
        let server = natter::server::Server::start(listener, config)
            .map_err(|e| CommandError::internal(format!("cannot host a server: {e}")))?;
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = server.serve(shutdown).await {
                tracing::error!(error = %e, "hosted server stopped");
            }
        });
        tracing::info!(port, "hosting a natter server");
        Ok(Self {
            port,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Asks the server to shut down and waits for it.
    pub async fn stop(mut self) {
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
    format!("http://127.0.0.1:{port}")
}

/// The URLs others on the LAN should enter: one per non-loopback IPv4 interface address,
/// sorted and de-duplicated. Empty when the machine has no network (then only this computer
/// can connect, which the UI says).
pub fn lan_urls(port: u16) -> Vec<String> {
    let mut ips: Vec<Ipv4Addr> = match local_ip_address::list_afinet_netifas() {
        Ok(list) => list
            .into_iter()
            .filter_map(|(_, ip)| match ip {
                IpAddr::V4(v4) if is_lan_candidate(v4) => Some(v4),
                _ => None,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list network interfaces");
            Vec::new()
        }
    };
    ips.sort();
    ips.dedup();
    ips.into_iter()
        .map(|ip| format!("http://{ip}:{port}"))
        .collect()
}

/// Loopback, link-local (169.254/16, no DHCP) and unspecified addresses are useless to others.
fn is_lan_candidate(ip: Ipv4Addr) -> bool {
    !(ip.is_loopback() || ip.is_link_local() || ip.is_unspecified() || ip.is_broadcast())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_urls_never_offer_loopback_and_are_well_formed() {
        for url in lan_urls(8686) {
            let parsed = url::Url::parse(&url).unwrap();
            assert_eq!(parsed.port(), Some(8686));
            let host: Ipv4Addr = parsed.host_str().unwrap().parse().unwrap();
            assert!(is_lan_candidate(host), "{url}");
        }
        assert!(!is_lan_candidate(Ipv4Addr::LOCALHOST));
        assert!(!is_lan_candidate(Ipv4Addr::new(169, 254, 1, 2)));
        assert!(is_lan_candidate(Ipv4Addr::new(192, 168, 1, 20)));
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let first = HostedServer::start(Ipv4Addr::LOCALHOST.into(), 0, dir.path().join("a"))
            .await
            .unwrap();
        let err = HostedServer::start(Ipv4Addr::LOCALHOST.into(), first.port, dir.path().join("b"))
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
