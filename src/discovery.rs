//! Finding Natter hosts on the local network without typing addresses: a host advertises itself
//! with mDNS/DNS-SD as `_natter._tcp` ([`Advertisement`]), with its stable server id, its name and
//! its certificate's fingerprint in the TXT record; a client lists the hosts it hears
//! ([`browse`]). What an advertisement says is untrusted (anyone on the network can send one):
//! the fingerprint is only what the person compares with the host's screen, as when an address
//! is typed, and the id and name are checked before use.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};

use crate::tls::Fingerprint;

/// The DNS-SD service type of a Natter server.
pub const SERVICE_TYPE: &str = "_natter._tcp.local.";
/// TXT keys: the server id, its certificate's fingerprint (absent: plain http://), the protocol.
const KEY_ID: &str = "id";
const KEY_FINGERPRINT: &str = "fp";
const KEY_PROTOCOL: &str = "proto";
/// The longest host name shown (an instance label is at most 63 bytes anyway).
const MAX_NAME_CHARS: usize = 40;

/// The environment variable that turns discovery off: with `NATTER_DISCOVERY=off` nothing is
/// advertised and a browse hears nothing. `scripts/test` sets it for the whole run, so that no
/// test sends mDNS onto the machine's network; it runs the discovery tests again inside a network
/// namespace of its own, where discovery is on.
pub const DISCOVERY_ENV: &str = "NATTER_DISCOVERY";

/// Whether this process advertises and browses (see [`DISCOVERY_ENV`]).
pub fn is_enabled() -> bool {
    std::env::var(DISCOVERY_ENV).map_or(true, |v| v != "off")
}

/// Why advertising or browsing failed (no usable network interface, a bad name).
#[derive(Debug, thiserror::Error)]
#[error("network discovery: {0}")]
pub struct DiscoveryError(String);

fn fail(e: impl std::fmt::Display) -> DiscoveryError {
    DiscoveryError(e.to_string())
}

/// A host heard on the network (`FoundHost` in docs/ipc.md).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, ts_rs::TS)]
#[ts(export)]
pub struct FoundHost {
    /// The name it advertises (control characters dropped, shortened).
    pub name: String,
    pub server_id: String,
    /// Its certificate's fingerprint, to compare with the host's screen; None for plain HTTP.
    #[ts(type = "string | null")]
    pub fingerprint: Option<Fingerprint>,
    /// Addresses to join it at (`https://` when it has a certificate), IPv4 first.
    pub urls: Vec<String>,
}

/// This server advertised on the network until dropped.
pub struct Advertisement {
    /// None when discovery is off ([`is_enabled`]).
    daemon: Option<ServiceDaemon>,
    fullname: String,
}

impl Advertisement {
    /// Advertise the server with id `server_id` listening on `port` of this machine's LAN
    /// addresses, named `name` (the machine's host name, say).
    pub fn start(
        name: &str,
        port: u16,
        server_id: &str,
        fingerprint: Option<Fingerprint>,
    ) -> Result<Advertisement, DiscoveryError> {
        if !is_enabled() {
            tracing::info!("network discovery is off ({DISCOVERY_ENV}=off): not advertised");
            return Ok(Advertisement {
                daemon: None,
                fullname: String::new(),
            });
        }
        let daemon = ServiceDaemon::new().map_err(fail)?;
        let label = clean_name(name);
        // Two hosts of one name must not share an instance name: the id's start tells them apart.
        let short_id: String = server_id.chars().take(8).collect();
        let instance = format!("{label} {short_id}");
        let mut txt = vec![
            (KEY_ID, server_id.to_owned()),
            (KEY_PROTOCOL, crate::protocol::PROTOCOL_VERSION.to_string()),
        ];
        if let Some(fp) = fingerprint {
            txt.push((KEY_FINGERPRINT, fp.to_string()));
        }
        let host = format!("natter-{short_id}.local.");
        let info = ServiceInfo::new(SERVICE_TYPE, &instance, &host, "", port, &txt[..])
            .map_err(fail)?
            .enable_addr_auto();
        let fullname = info.get_fullname().to_owned();
        daemon.register(info).map_err(fail)?;
        Ok(Advertisement {
            daemon: Some(daemon),
            fullname,
        })
    }
}

impl Advertisement {
    /// Withdraw the advertisement (a goodbye on the network, so browsers drop the host at once)
    /// and wait until the daemon has stopped answering.
    pub async fn stop(mut self) {
        let Some(daemon) = self.daemon.take() else {
            return;
        };
        if let Ok(said) = daemon.unregister(&self.fullname) {
            let _ = tokio::time::timeout(Duration::from_secs(2), said.recv_async()).await;
        }
        if let Ok(stopped) = daemon.shutdown() {
            let _ = tokio::time::timeout(Duration::from_secs(2), stopped.recv_async()).await;
        }
    }
}

impl Drop for Advertisement {
    fn drop(&mut self) {
        // Best effort when not stopped: the goodbye is sent by the daemon's own thread.
        if let Some(daemon) = self.daemon.take() {
            let _ = daemon.unregister(&self.fullname);
            let _ = daemon.shutdown();
        }
    }
}

/// The Natter hosts heard on the network within `wait`, one per server id, sorted by name.
pub async fn browse(wait: Duration) -> Result<Vec<FoundHost>, DiscoveryError> {
    if !is_enabled() {
        return Ok(Vec::new());
    }
    let daemon = ServiceDaemon::new().map_err(fail)?;
    let events = daemon.browse(SERVICE_TYPE).map_err(fail)?;
    let mut found: BTreeMap<String, FoundHost> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, events.recv_async()).await {
        if let ServiceEvent::ServiceResolved(info) = event {
            if let Some(host) = found_host(&info) {
                found.insert(host.server_id.clone(), host);
            }
        }
    }
    let _ = daemon.shutdown();
    let mut hosts: Vec<FoundHost> = found.into_values().collect();
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(hosts)
}

/// What an advertisement says, checked: an id that is not plain alphanumerics (at most 64) or
/// an advertisement without addresses is ignored; a fingerprint that does not parse is dropped
/// (the host then looks like a plain-HTTP one, which is warned about).
fn found_host(info: &ServiceInfo) -> Option<FoundHost> {
    let server_id = info.get_property_val_str(KEY_ID)?.to_owned();
    let id_ok = !server_id.is_empty()
        && server_id.len() <= 64
        && server_id.chars().all(|c| c.is_ascii_alphanumeric());
    if !id_ok {
        return None;
    }
    let fingerprint = info
        .get_property_val_str(KEY_FINGERPRINT)
        .and_then(|f| f.parse().ok());
    let scheme = if fingerprint.is_some() {
        "https"
    } else {
        "http"
    };
    let mut ips: Vec<IpAddr> = info.get_addresses().iter().copied().collect();
    ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    let urls: Vec<String> = ips
        .into_iter()
        .filter(|ip| crate::tls::is_lan_candidate(*ip) || ip.is_loopback())
        .map(|ip| match ip {
            IpAddr::V4(v4) => format!("{scheme}://{v4}:{}", info.get_port()),
            IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{}", info.get_port()),
        })
        .collect();
    if urls.is_empty() {
        return None;
    }
    let instance = info
        .get_fullname()
        .strip_suffix(SERVICE_TYPE)
        .unwrap_or_default()
        .trim_end_matches('.');
    // The instance is "<name> <short id>": the name is what the host said.
    let name = instance.rsplit_once(' ').map_or(instance, |(name, _)| name);
    Some(FoundHost {
        name: clean_name(name),
        server_id,
        fingerprint,
        urls,
    })
}

/// A host name fit to show: no control characters, at most [`MAX_NAME_CHARS`].
fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    match cleaned.trim() {
        "" => "Natter".into(),
        name => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Named bad inputs: control characters, an empty name, an overlong name.
    #[test]
    fn advertised_names_are_cleaned() {
        assert_eq!(clean_name("desk\u{1b}[2Jtop"), "desk[2Jtop");
        assert_eq!(clean_name("  "), "Natter");
        assert_eq!(clean_name(&"x".repeat(100)).chars().count(), MAX_NAME_CHARS);
    }
}
