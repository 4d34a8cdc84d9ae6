//! Where a profile lives: keyed by the server's stable id (`hello` and `GET /api/health` carry
//! it), so a server reached at another address (a host whose DHCP address changed, `localhost`
//! instead of `127.0.0.1`, http:// turned https://) keeps its users' history, session and pin.
//!
//! Layout under a data directory: `profiles/<server id>-<user>`, and `profiles/servers.json`
//! mapping each address key ([`super::server_key`]) seen to its server's id, so a profile is found
//! without asking the server (offline start). Profiles made before server ids
//! (`profiles/<address key>-<user>`) are moved to their id's place the first time their server
//! answers ([`locate`]); a server too old to have an id keeps the address layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use url::Url;

use super::{sanitize, server_key, ClientError, Result};

/// The address-to-id index, in `profiles/`.
pub const INDEX_FILE: &str = "servers.json";

fn profiles(base: &Path) -> PathBuf {
    base.join("profiles")
}

fn read_index(base: &Path) -> BTreeMap<String, String> {
    std::fs::read(profiles(base).join(INDEX_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn write_index(base: &Path, index: &BTreeMap<String, String>) -> Result<()> {
    let dir = profiles(base);
    let io = |e: std::io::Error| ClientError::Internal(format!("{}: {e}", dir.display()));
    crate::dbfile::private_dir(&dir).map_err(io)?;
    let json = serde_json::to_vec_pretty(index)
        .map_err(|e| ClientError::Internal(format!("server index: {e}")))?;
    // Written beside and renamed over, so a crash leaves the old index or the new one.
    let tmp = dir.join(format!("{INDEX_FILE}.tmp"));
    std::fs::write(&tmp, json).map_err(io)?;
    std::fs::rename(&tmp, dir.join(INDEX_FILE)).map_err(io)
}

/// A server id as a file name: the server's own is 32 hex digits; anything else (a hostile
/// server) cannot name a path outside `profiles/`.
fn id_key(server_id: &str) -> Option<String> {
    let ok = !server_id.is_empty()
        && server_id.len() <= 64
        && server_id.chars().all(|c| c.is_ascii_alphanumeric());
    ok.then(|| server_id.to_ascii_lowercase())
}

/// The profile of `username` on `server` as far as this computer knows, without asking the
/// server: its id's place when the address was seen before, the address's place otherwise.
pub fn known_dir(base: &Path, server: &Url, username: &str) -> PathBuf {
    let address = server_key(server);
    let key = read_index(base)
        .get(&address)
        .and_then(|id| id_key(id))
        .unwrap_or(address);
    profiles(base).join(format!("{key}-{}", sanitize(username)))
}

/// The profile of `username` on the server with id `server_id`, reached at `server`: remembers
/// the address as that server's, and moves a profile kept under the address (before server ids,
/// or while the server was unknown) to the id's place when the id has none yet.
pub fn adopt(base: &Path, server: &Url, server_id: &str, username: &str) -> Result<PathBuf> {
    let Some(id) = id_key(server_id) else {
        return Ok(known_dir(base, server, username));
    };
    let user = sanitize(username);
    let by_id = profiles(base).join(format!("{id}-{user}"));
    let address = server_key(server);
    let by_address = profiles(base).join(format!("{address}-{user}"));
    if !by_id.exists() && by_address.is_dir() {
        std::fs::rename(&by_address, &by_id).map_err(|e| {
            ClientError::Internal(format!(
                "moving the profile {} to {}: {e}",
                by_address.display(),
                by_id.display()
            ))
        })?;
        tracing::info!(from = %by_address.display(), to = %by_id.display(), "profile keyed by the server id");
    }
    let mut index = read_index(base);
    if index.get(&address).map(String::as_str) != Some(id.as_str()) {
        index.insert(address, id);
        write_index(base, &index)?;
    }
    Ok(by_id)
}

/// The profile of `username` on `server`, asking the server for its id (`GET /api/health`) and
/// adopting ([`adopt`]) what is kept under the address. An unreachable server leaves the known
/// place ([`known_dir`]); a certificate refused is an error (the caller shows it).
pub async fn locate(base: &Path, server: &Url, username: &str) -> Result<PathBuf> {
    match super::http::health(server).await {
        Ok(health) => adopt(base, server, &health.server_id, username),
        Err(e @ (ClientError::CertificateChanged(_) | ClientError::UntrustedCertificate(_))) => {
            Err(e)
        }
        Err(e) => {
            tracing::debug!(error = %e, "server unreachable: the profile stays where it is known");
            Ok(known_dir(base, server, username))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Named bad inputs: a server id that would name a path elsewhere, an empty one (a server
    /// before ids), an overlong one. Each keeps the address's place.
    #[test]
    fn only_a_plain_server_id_names_a_profile() {
        assert_eq!(
            id_key("9F2C4E7A1B3D5F60718293A4B5C6D7E8").as_deref(),
            Some("9f2c4e7a1b3d5f60718293a4b5c6d7e8")
        );
        for bad in [
            "",
            "../../etc",
            "a/b",
            "x".repeat(65).as_str(),
            "id with spaces",
        ] {
            assert_eq!(id_key(bad), None, "{bad:?}");
        }
        let base = tempfile::tempdir().unwrap();
        let url: Url = "http://192.0.2.1:8686".parse().unwrap();
        let dir = adopt(base.path(), &url, "../../escape", "alice").unwrap();
        assert_eq!(dir, known_dir(base.path(), &url, "alice"));
        assert!(dir.starts_with(base.path().join("profiles")));
    }
}
