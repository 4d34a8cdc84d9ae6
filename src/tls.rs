//! Certificates as people and programs check them: the short readable [`Fingerprint`] of a
//! certificate (one definition for the host's screen, the client's pin, the CLI's `--trust` and
//! the UI), reading PEM certificate and key files with errors that name the file and what is
//! wrong, and the host mode's own self-signed certificate ([`HostCertificate`]): made once in the
//! host's profile, private (0600), and reused on every later start so its fingerprint stays the
//! one clients pinned.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Bytes of SHA-256 a fingerprint keeps: 128 bits, which no one can match with another
/// certificate by search, and short enough to read aloud (32 hex digits).
const FINGERPRINT_BYTES: usize = 16;
/// Hex digits per group in the written form (`3F9A-1C02-...`: 8 groups of 4).
const GROUP_DIGITS: usize = 4;

/// The fingerprint of a certificate: the first 128 bits of the SHA-256 of its DER encoding,
/// written as 8 groups of 4 uppercase hex digits joined by `-` (`3F9A-1C02-77B4-0E5D-9A21-C4F0-
/// 6B83-D217`). Two people compare it to know a client talks to the host they mean.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; FINGERPRINT_BYTES]);

impl Fingerprint {
    /// The fingerprint of the certificate `der`.
    pub fn of_der(der: &[u8]) -> Fingerprint {
        let digest = Sha256::digest(der);
        let mut bytes = [0; FINGERPRINT_BYTES];
        bytes.copy_from_slice(&digest[..FINGERPRINT_BYTES]);
        Fingerprint(bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: String = self.0.iter().map(|b| format!("{b:02X}")).collect();
        for (i, group) in hex.as_bytes().chunks(GROUP_DIGITS).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            // Hex digits are ASCII.
            f.write_str(std::str::from_utf8(group).unwrap_or_default())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A text that is not a fingerprint (`--trust`, a pin file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a certificate fingerprint: it is 32 hexadecimal digits, in groups of 4 \
     (like 3F9A-1C02-77B4-0E5D-9A21-C4F0-6B83-D217)"
)]
pub struct BadFingerprint(pub String);

impl FromStr for Fingerprint {
    type Err = BadFingerprint;

    /// Reads the written form in either case; `-`, `:` and spaces between digits are ignored,
    /// so a fingerprint copied from any of the usual notations reads the same.
    fn from_str(text: &str) -> Result<Fingerprint, BadFingerprint> {
        let bad = || BadFingerprint(text.chars().take(80).collect());
        let digits: Vec<u8> = text
            .trim()
            .chars()
            .filter(|c| !matches!(c, '-' | ':' | ' '))
            .map(|c| c.to_digit(16).map(|d| d as u8).ok_or_else(bad))
            .collect::<Result<_, _>>()?;
        if digits.len() != 2 * FINGERPRINT_BYTES {
            return Err(bad());
        }
        let mut bytes = [0; FINGERPRINT_BYTES];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks(2)) {
            *byte = pair[0] << 4 | pair[1];
        }
        Ok(Fingerprint(bytes))
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A certificate or key file that cannot be used, or the host's certificate that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file is missing, unreadable, not PEM, or holds no item of the kind wanted (a
    /// truncated file is one of these): the path, then what is wrong.
    #[error("{}: {why}", path.display())]
    File { path: PathBuf, why: String },
    #[error("cannot make the host's certificate: {0}")]
    Generate(String),
}

impl TlsError {
    fn file(path: &Path, why: impl Into<String>) -> TlsError {
        TlsError::File {
            path: path.to_owned(),
            why: why.into(),
        }
    }
}

/// A PEM file's problem as a person should read it.
fn pem_error(path: &Path, what: &str, e: pem::Error) -> TlsError {
    let why = match e {
        pem::Error::NoItemsFound => format!("no {what} found"),
        pem::Error::Io(e) => e.to_string(),
        other => format!("not a valid PEM {what}: {other}"),
    };
    TlsError::file(path, why)
}

/// Every certificate in the PEM file `path`, in order (the server's own first); at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    // PEM parsing from rustls' own pki-types (rustls-pemfile is unmaintained, RUSTSEC-2025-0134).
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(path, "certificate", e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "certificate", pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// The private key in the PEM file `path`.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, "private key", e))
}

/// File names of the host's certificate and key in its directory.
pub const HOST_CERT_FILE: &str = "host-cert.pem";
pub const HOST_KEY_FILE: &str = "host-key.pem";

/// The host mode's self-signed certificate, kept in the host's directory.
#[derive(Debug, Clone)]
pub struct HostCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub fingerprint: Fingerprint,
}

impl HostCertificate {
    /// The certificate in `dir` (made private, 0700), made there on the first call: a new key
    /// and a self-signed certificate for this machine's names ([`host_names`]), both files
    /// 0600. Later calls reuse it, so the fingerprint clients pinned stays valid. A certificate
    /// or key that is there but unusable (not PEM, truncated) is an error naming the file, never
    /// silently replaced: a new certificate would make every client refuse the host as changed.
    pub fn load_or_create(dir: &Path) -> Result<HostCertificate, TlsError> {
        crate::dbfile::private_dir(dir).map_err(|e| TlsError::file(dir, e.to_string()))?;
        let cert = dir.join(HOST_CERT_FILE);
        let key = dir.join(HOST_KEY_FILE);
        match (cert.exists(), key.exists()) {
            (false, false) => {
                generate(&cert, &key)?;
                tracing::info!(path = %cert.display(), "made the host's TLS certificate");
            }
            (true, true) => {}
            (has_cert, _) => {
                let (missing, there) = if has_cert {
                    (&key, &cert)
                } else {
                    (&cert, &key)
                };
                return Err(TlsError::file(
                    missing,
                    format!(
                        "missing, while {} is there: a certificate and its key go together \
                         (remove both to make a new certificate, which clients will have to \
                         confirm again)",
                        there.display()
                    ),
                ));
            }
        }
        for file in [&cert, &key] {
            // An older file may be looser than the key deserves.
            crate::dbfile::private_file(file).map_err(|e| TlsError::file(file, e.to_string()))?;
        }
        let leaf = read_certificates(&cert)?.swap_remove(0);
        read_private_key(&key)?;
        Ok(HostCertificate {
            fingerprint: Fingerprint::of_der(&leaf),
            cert,
            key,
        })
    }

    /// What the server is told to serve with.
    pub fn server_tls(&self) -> crate::server::TlsConfig {
        crate::server::TlsConfig {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

/// Writes a new key and a self-signed certificate for [`host_names`].
fn generate(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let names = host_names();
    let mut params = rcgen::CertificateParams::new(names.clone())
        .map_err(|e| TlsError::Generate(format!("names {names:?}: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("Natter host {}", names[0]),
    );
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    // The key first: a certificate without its key is of no use, and a key without a
    // certificate is refused at the next start like any other half pair.
    write_private(key_path, key.serialize_pem().as_bytes())?;
    write_private(cert_path, cert.pem().as_bytes())
}

/// Writes `bytes` to a new private (0600) file at `path`.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let fail = |e: std::io::Error| TlsError::file(path, e.to_string());
    crate::dbfile::private_file(path).map_err(fail)?;
    std::fs::write(path, bytes).map_err(fail)
}

/// The names the host's certificate is for: the machine's host name (when it is a usable DNS
/// name), `localhost`, its LAN addresses ([`lan_addresses`]) and loopback. The first is the most
/// readable, for the certificate's common name.
pub fn host_names() -> Vec<String> {
    let mut names = Vec::new();
    if let Some(host) = gethostname::gethostname().to_str() {
        let host = host.trim().to_ascii_lowercase();
        let dns_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if host != "localhost" && host.split('.').all(dns_label) {
            names.push(host);
        }
    }
    names.push("localhost".into());
    let loopback: [IpAddr; 2] = [[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
    names.extend(
        lan_addresses()
            .into_iter()
            .chain(loopback)
            .map(|ip| ip.to_string()),
    );
    names
}

/// This machine's addresses others on the network can reach: every interface address but
/// loopback, link-local (no DHCP), unspecified and broadcast; sorted, without repeats. Empty when
/// the machine has no network or its interfaces cannot be listed.
pub fn lan_addresses() -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = match local_ip_address::list_afinet_netifas() {
        Ok(list) => list
            .into_iter()
            .map(|(_, ip)| ip)
            .filter(|ip| is_lan_candidate(*ip))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list network interfaces");
            Vec::new()
        }
    };
    ips.sort();
    ips.dedup();
    ips
}

/// Whether others could reach this machine at `ip`.
pub fn is_lan_candidate(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast())
        }
        // fe80::/10 is link-local: it needs a zone to be reached, which a URL rarely carries.
        IpAddr::V6(v6) => {
            !(v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_reads_back_from_its_written_form_and_the_usual_notations() {
        let fp = Fingerprint::of_der(b"a certificate");
        let text = fp.to_string();
        assert_eq!(text.len(), 8 * 4 + 7, "{text}");
        assert!(text
            .split('-')
            .all(|g| g.len() == 4 && g.chars().all(|c| c.is_ascii_hexdigit())));
        assert_eq!(text.parse::<Fingerprint>(), Ok(fp));
        assert_eq!(text.to_lowercase().parse::<Fingerprint>(), Ok(fp));
        let colons = text
            .replace('-', "")
            .as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(colons.parse::<Fingerprint>(), Ok(fp));
        assert_ne!(Fingerprint::of_der(b"another certificate"), fp);
    }

    /// Named bad inputs: too short, too long, a letter that is not hex, empty.
    #[test]
    fn garbage_is_not_a_fingerprint() {
        let fp = Fingerprint::of_der(b"x").to_string();
        for bad in [
            &fp[..fp.len() - 1],
            &format!("{fp}-0000"),
            &fp.replace('-', "G"),
            "",
            "zz",
        ] {
            let e = bad.parse::<Fingerprint>().unwrap_err();
            assert!(e.to_string().contains("32 hexadecimal digits"), "{e}");
        }
        let mut wrong = fp.clone().into_bytes();
        wrong[0] = b'Q';
        assert!(String::from_utf8(wrong)
            .unwrap()
            .parse::<Fingerprint>()
            .is_err());
    }

    #[test]
    fn host_names_include_localhost_and_loopback_and_never_a_link_local_address() {
        let names = host_names();
        for want in ["localhost", "127.0.0.1", "::1"] {
            assert!(names.iter().any(|n| n == want), "{names:?}");
        }
        assert!(!is_lan_candidate("169.254.3.4".parse().unwrap()));
        assert!(!is_lan_candidate("fe80::1".parse().unwrap()));
        assert!(is_lan_candidate("192.168.1.20".parse().unwrap()));
        assert!(is_lan_candidate("fd00::20".parse().unwrap()));
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Made once, private, and reused: the same fingerprint on every start, and the files keep
    /// their bytes.
    #[test]
    fn the_host_certificate_is_made_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        let first = HostCertificate::load_or_create(&host).unwrap();
        #[cfg(unix)]
        {
            assert_eq!(mode(&first.cert), 0o600);
            assert_eq!(mode(&first.key), 0o600);
            assert_eq!(mode(&host), 0o700);
        }
        let leaf = read_certificates(&first.cert).unwrap().swap_remove(0);
        assert_eq!(Fingerprint::of_der(&leaf), first.fingerprint);
        let key_bytes = std::fs::read(&first.key).unwrap();
        let again = HostCertificate::load_or_create(&host).unwrap();
        assert_eq!(again.fingerprint, first.fingerprint);
        assert_eq!(std::fs::read(&again.key).unwrap(), key_bytes);
        // Another host, another key: another fingerprint.
        let other = HostCertificate::load_or_create(&dir.path().join("other")).unwrap();
        assert_ne!(other.fingerprint, first.fingerprint);
    }

    /// Named bad inputs: a certificate file that is not PEM, a truncated key file, a missing
    /// half of the pair. Each is an error naming the file, and nothing is replaced.
    #[test]
    fn an_unusable_certificate_or_key_is_a_clear_error_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        let made = HostCertificate::load_or_create(&host).unwrap();
        let (cert, key) = (
            std::fs::read(&made.cert).unwrap(),
            std::fs::read(&made.key).unwrap(),
        );
        let expect = |file: &Path, what: &str| {
            let e = HostCertificate::load_or_create(&host)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&file.display().to_string()) && e.contains(what),
                "{e:?} should name {} and say {what:?}",
                file.display()
            );
        };

        std::fs::write(&made.cert, "this is not a certificate\n").unwrap();
        expect(&made.cert, "no certificate found");
        std::fs::write(&made.cert, b"\x30\x82\x01\x0a binary DER, not PEM").unwrap();
        expect(&made.cert, "certificate");
        assert_eq!(
            std::fs::read(&made.cert).unwrap(),
            b"\x30\x82\x01\x0a binary DER, not PEM",
            "kept as it was"
        );
        std::fs::write(&made.cert, &cert).unwrap();

        std::fs::write(&made.key, &key[..key.len() / 2]).unwrap();
        expect(&made.key, "private key");
        std::fs::write(&made.key, &key).unwrap();

        std::fs::remove_file(&made.key).unwrap();
        expect(&made.key, "missing");
        assert!(!made.key.exists(), "no empty key file is made");
    }
}
