//! Which servers' certificates this client trusts, and the one place its TLS configuration is
//! built ([`tls_config`]): the HTTP client (reqwest) and the WebSocket (tokio-tungstenite) both
//! connect with it.
//!
//! A server is trusted when its certificate is
//! - **pinned** for its address (trust on first use): the person compared the fingerprint the
//!   [`probe`] showed with the one on the host's screen, and the profile keeps it
//!   ([`save_pin`]). Then exactly that certificate is accepted, self-signed or not, and any
//!   other is refused as [`ClientError::CertificateChanged`], even one a CA vouches for: a
//!   changed certificate is what an attacker in the middle presents;
//! - or, with no pin, valid for its name under the operating system's certificate store
//!   (rustls-platform-verifier) or a custom CA ([`add_ca_file`], for private deployments).
//!   Otherwise it is refused as [`ClientError::UntrustedCertificate`], which names the
//!   fingerprint to confirm.
//!
//! The pins and custom CAs of this process live here, by server origin (`host:port`); a
//! profile's pin is installed when the profile is used ([`install_profile_pin`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use url::Url;

use crate::client::{ClientError, Result};
use crate::tls::Fingerprint;

/// The file in a profile directory that holds the pinned certificate's fingerprint.
pub const PIN_FILE: &str = "server-certificate.pin";

/// What a person reads when an address sends passwords and messages in clear text.
pub const PLAINTEXT_WARNING: &str = "this address is not encrypted (http://): anyone on the \
     network can read your password and messages. Use https:// unless the server is on this \
     computer";

#[derive(Default)]
struct Registry {
    /// Pinned fingerprints by origin (`host:port`).
    pins: HashMap<String, Fingerprint>,
    /// Custom CA certificates trusted besides the operating system's.
    extra_roots: Vec<CertificateDer<'static>>,
    /// The verifier for unpinned servers, built once per set of roots (None: not built yet).
    system: Option<Option<Arc<dyn ServerCertVerifier>>>,
}

fn registry() -> &'static RwLock<Registry> {
    static REGISTRY: OnceLock<RwLock<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// `host:port` of a server address (the port the scheme implies when none is written).
pub fn origin(server: &Url) -> String {
    let host = server.host_str().unwrap_or_default();
    let port = server.port_or_known_default().unwrap_or(0);
    format!("{host}:{port}")
}

/// Whether `server` talks in clear text to another machine: `http://` or `ws://` to anything
/// but `localhost` and loopback addresses. The UI and the CLI show [`PLAINTEXT_WARNING`] then.
pub fn is_plaintext_remote(server: &Url) -> bool {
    if !matches!(server.scheme(), "http" | "ws") {
        return false;
    }
    let loopback = match server.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::from(ip).is_loopback(),
        None => false,
    };
    !loopback
}

/// Trust exactly the certificate `fingerprint` at `server` from now on in this process (see
/// [`save_pin`] to keep it in a profile).
pub fn pin(server: &Url, fingerprint: Fingerprint) {
    let mut reg = registry().write().unwrap_or_else(|e| e.into_inner());
    reg.pins.insert(origin(server), fingerprint);
}

/// The certificate pinned for `server` in this process, if any.
pub fn pinned(server: &Url) -> Option<Fingerprint> {
    let reg = registry().read().unwrap_or_else(|e| e.into_inner());
    reg.pins.get(&origin(server)).copied()
}

/// Trust the CA certificates in the PEM file `path` besides the operating system's.
pub fn add_ca_file(path: &Path) -> Result<()> {
    let certs = crate::tls::read_certificates(path)
        .map_err(|e| ClientError::Invalid(format!("custom CA: {e}")))?;
    let mut reg = registry().write().unwrap_or_else(|e| e.into_inner());
    reg.extra_roots.extend(certs);
    reg.system = None;
    Ok(())
}

/// Keep `fingerprint` as the pinned certificate of the profile in `profile_dir` (a private
/// file) and trust it for `server` in this process.
pub fn save_pin(profile_dir: &Path, server: &Url, fingerprint: Fingerprint) -> Result<()> {
    let path = profile_dir.join(PIN_FILE);
    let fail = |e: std::io::Error| ClientError::Internal(format!("{}: {e}", path.display()));
    crate::dbfile::private_dir(profile_dir).map_err(fail)?;
    crate::dbfile::private_file(&path).map_err(fail)?;
    std::fs::write(&path, format!("{fingerprint}\n")).map_err(fail)?;
    pin(server, fingerprint);
    Ok(())
}

/// The pinned certificate kept in the profile in `profile_dir`, if any.
pub fn load_pin(profile_dir: &Path) -> Result<Option<Fingerprint>> {
    let path = profile_dir.join(PIN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .parse()
            .map(Some)
            .map_err(|e| ClientError::Invalid(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::Internal(format!("{}: {e}", path.display()))),
    }
}

/// Trust the certificate pinned in the profile in `profile_dir` for `server` (nothing when the
/// profile pinned none).
pub fn install_profile_pin(profile_dir: &Path, server: &Url) -> Result<()> {
    if let Some(fingerprint) = load_pin(profile_dir)? {
        pin(server, fingerprint);
    }
    Ok(())
}

/// Why a handshake's certificate was refused, as the verifier saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Neither pinned nor valid under the trusted roots: show the fingerprint, ask.
    Untrusted {
        fingerprint: Fingerprint,
        reason: String,
    },
    /// Another certificate than the pinned one.
    Changed {
        pinned: Fingerprint,
        presented: Fingerprint,
    },
}

impl Refusal {
    /// The client's error for this refusal, with the text a person reads.
    pub fn to_error(&self, server: &Url) -> ClientError {
        let origin = origin(server);
        match self {
            Refusal::Untrusted {
                fingerprint,
                reason,
            } => ClientError::UntrustedCertificate(format!(
                "the certificate of {origin} is not trusted ({reason}); its fingerprint is \
                 {fingerprint}: compare it with the one the server's host shows before trusting it"
            )),
            Refusal::Changed { pinned, presented } => ClientError::CertificateChanged(format!(
                "the certificate of {origin} changed: you trusted {pinned}, it now presents \
                 {presented}. Someone on the network may be impersonating the server to read \
                 your password and messages; nothing was sent. Trust the new certificate only if \
                 the server's host confirms it changed"
            )),
        }
    }
}

/// The client's TLS configuration for `server` (one place for HTTP and WebSocket), and the
/// slot where its verifier leaves why it refused a certificate.
pub fn tls_config(server: &Url) -> (Arc<rustls::ClientConfig>, Arc<Mutex<Option<Refusal>>>) {
    let refusal = Arc::new(Mutex::new(None));
    let verifier = Arc::new(Verifier {
        pinned: pinned(server),
        system: system_verifier(),
        provider: provider(),
        refusal: refusal.clone(),
    });
    let config = client_config_with(verifier);
    (Arc::new(config), refusal)
}

fn client_config_with(verifier: Arc<dyn ServerCertVerifier>) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// The operating system's store plus the custom CAs; None when there are no roots at all (a
/// system without a CA bundle): then only pinned certificates are trusted.
fn system_verifier() -> Option<Arc<dyn ServerCertVerifier>> {
    if let Some(built) = &registry().read().unwrap_or_else(|e| e.into_inner()).system {
        return built.clone();
    }
    let mut reg = registry().write().unwrap_or_else(|e| e.into_inner());
    let roots = reg.extra_roots.clone();
    let built: Option<Arc<dyn ServerCertVerifier>> =
        match rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider()) {
            Ok(v) => Some(Arc::new(v)),
            Err(e) => {
                tracing::warn!(error = %e, "no certificate store: only pinned certificates are trusted");
                None
            }
        };
    reg.system = Some(built.clone());
    built
}

/// Pinned certificate first, then the trusted roots; refusals are recorded for the caller.
#[derive(Debug)]
struct Verifier {
    pinned: Option<Fingerprint>,
    system: Option<Arc<dyn ServerCertVerifier>>,
    provider: Arc<CryptoProvider>,
    refusal: Arc<Mutex<Option<Refusal>>>,
}

impl Verifier {
    fn refuse(&self, refusal: Refusal) -> rustls::Error {
        *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(refusal);
        rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of_der(end_entity);
        if let Some(pinned) = self.pinned {
            return match presented == pinned {
                true => Ok(ServerCertVerified::assertion()),
                false => Err(self.refuse(Refusal::Changed { pinned, presented })),
            };
        }
        let reason = match &self.system {
            Some(system) => match system.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Ok(verified) => return Ok(verified),
                Err(e) => e.to_string(),
            },
            None => "this computer has no certificate store".into(),
        };
        Err(self.refuse(Refusal::Untrusted {
            fingerprint: presented,
            reason,
        }))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The fingerprint of the certificate `server` (an `https://` address) presents, read from a
/// TLS handshake that is abandoned as soon as the certificate arrived: nothing is sent to the
/// server, so it is safe before the person confirmed the fingerprint.
pub async fn probe(server: &Url) -> Result<Fingerprint> {
    if !matches!(server.scheme(), "https" | "wss") {
        return Err(ClientError::Invalid(format!(
            "{server} is not an https:// address: it has no certificate to check"
        )));
    }
    let host = server
        .host_str()
        .ok_or_else(|| ClientError::Invalid(format!("{server} names no host")))?;
    let port = server.port_or_known_default().unwrap_or(443);
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
        .map_err(|e| ClientError::Invalid(format!("{host}: {e}")))?
        .to_owned();
    let refusal = Arc::new(Mutex::new(None));
    // Pinned to nothing that can match: every certificate is refused, and recorded.
    let verifier = Arc::new(Verifier {
        pinned: None,
        system: None,
        provider: provider(),
        refusal: refusal.clone(),
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config_with(verifier)));
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect((
            host.trim_start_matches('[').trim_end_matches(']'),
            port,
        ))
        .await
        .map_err(|e| ClientError::Offline(format!("cannot reach {}: {e}", origin(server))))?;
        let _ = connector.connect(name, tcp).await;
        Ok::<_, ClientError>(())
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), handshake)
        .await
        .map_err(|_| {
            ClientError::Offline(format!("{} did not answer in time", origin(server)))
        })??;
    let seen = refusal.lock().unwrap_or_else(|e| e.into_inner()).take();
    match seen {
        Some(Refusal::Untrusted { fingerprint, .. }) => Ok(fingerprint),
        _ => Err(ClientError::Server(format!(
            "{} did not present a certificate (is it a TLS server?)",
            origin(server)
        ))),
    }
}

/// The person confirmed `wanted` as the fingerprint of `server`'s certificate: trust it in this
/// process when the server presents exactly that one ([`probe`]; nothing is sent), and fail as
/// a changed certificate otherwise (it may not be the server the person means).
pub async fn confirm(server: &Url, wanted: Fingerprint) -> Result<()> {
    let presented = probe(server).await?;
    if presented != wanted {
        return Err(ClientError::CertificateChanged(format!(
            "{} presents the certificate {presented}, not the {wanted} you confirmed: it may not \
             be the server you mean, so nothing was sent",
            origin(server)
        )));
    }
    pin(server, presented);
    Ok(())
}

/// Keep the certificate trusted for `server` in this process (if any) in the profile in
/// `profile_dir`, so later starts trust it too (after a sign-in confirmed with [`confirm`]).
pub fn keep_pin(profile_dir: &Path, server: &Url) -> Result<()> {
    match pinned(server) {
        Some(fingerprint) => save_pin(profile_dir, server, fingerprint),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clear_text_to_another_machine_warns() {
        let warns = |u: &str| is_plaintext_remote(&u.parse().unwrap());
        assert!(warns("http://192.168.1.20:8686"));
        assert!(warns("http://chat.example.org"));
        assert!(warns("ws://10.0.0.2:8686"));
        assert!(!warns("http://127.0.0.1:8686"));
        assert!(!warns("http://localhost:8686"));
        assert!(!warns("http://[::1]:8686"));
        assert!(!warns("https://192.168.1.20:8686"));
    }

    /// Named bad inputs: a pin file with garbage is an error naming the file; no file is no pin.
    #[test]
    fn a_profile_pin_reads_back_and_a_damaged_one_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let server: Url = "https://127.0.0.1:1".parse().unwrap();
        assert_eq!(load_pin(dir.path()), Ok(None));
        let fp = Fingerprint::of_der(b"cert");
        save_pin(dir.path(), &server, fp).unwrap();
        assert_eq!(load_pin(dir.path()), Ok(Some(fp)));
        assert_eq!(pinned(&server), Some(fp));
        std::fs::write(dir.path().join(PIN_FILE), "not a fingerprint").unwrap();
        let e = load_pin(dir.path()).unwrap_err();
        assert!(e.to_string().contains(PIN_FILE), "{e}");
    }
}
