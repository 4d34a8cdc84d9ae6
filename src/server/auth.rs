//! Credentials: argon2id password hashes, bearer tokens, and the budget of failed sign-ins.
//!
//! Tokens are 256 random bits, handed to the client base64url-encoded and stored only as their
//! SHA-256 hash, so a leaked database does not hand out live sessions. Password hashing is
//! deliberately slow; callers run it on `spawn_blocking` so it never stalls the async runtime.
//! [`SignInGuard`] bounds password guessing per address: argon2's cost alone still allows
//! thousands of guesses an hour.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Failed sign-ins per address: each address may fail `burst` times in a row, then gets one
/// more try per `refill`. Success does not reset the count, so interleaving a known password
/// buys nothing. Addresses whose budget is whole again are forgotten.
#[derive(Debug)]
pub struct SignInGuard {
    burst: f64,
    refill: Duration,
    failures: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl SignInGuard {
    pub fn new(burst: u32, refill: Duration) -> SignInGuard {
        SignInGuard {
            burst: f64::from(burst.max(1)),
            refill: refill.max(Duration::from_millis(1)),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Tries left for an entry after the time since it was last charged.
    fn left(&self, (tries, at): (f64, Instant), now: Instant) -> f64 {
        let refilled = now.duration_since(at).as_secs_f64() / self.refill.as_secs_f64();
        (tries + refilled).min(self.burst)
    }

    /// Ok when `ip` may try a password now; otherwise how long until it may.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = map.get(&ip) else {
            return Ok(());
        };
        let left = self.left(*entry, Instant::now());
        if left >= 1.0 {
            Ok(())
        } else {
            Err(self.refill.mul_f64(1.0 - left))
        }
    }

    /// Charge `ip` one failed sign-in.
    pub fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let left = map
            .get(&ip)
            .map_or(self.burst, |entry| self.left(*entry, now));
        map.insert(ip, ((left - 1.0).max(0.0), now));
        if map.len() > 4096 {
            map.retain(|_, entry| self.left(*entry, now) < self.burst);
        }
    }
}

/// The SHA-256 of a token: what the database stores and what sockets remember.
pub type TokenHash = [u8; 32];

/// Hash a password with argon2id (the crate's default parameters) and a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut raw = [0u8; 16];
    rand::rng().fill_bytes(&mut raw);
    let salt = SaltString::encode_b64(&raw)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches a stored PHC hash string. A malformed stored hash never matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash that `verify_password` can run against for unknown usernames, so a login for a missing
/// user costs as much time as one with a wrong password (no user enumeration by timing).
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("natter-dummy-password").unwrap_or_default())
}

/// A new random token (256 bits, base64url without padding) and its hash.
pub fn new_token() -> (String, TokenHash) {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = URL_SAFE_NO_PAD.encode(raw);
    let hash = hash_token(&token);
    (token, hash)
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// The token in an `Authorization: Bearer <token>` header value, if it has that shape.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_when_equal() {
        let stored = hash_password("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &stored));
        assert!(!verify_password("correct hors", &stored));
        assert!(!verify_password("correct horse", "not a phc string"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = new_token();
        let (b, hb) = new_token();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(a.len(), 43, "256 bits in base64url without padding");
        assert_eq!(hash_token(&a), ha);
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    /// Ten failures from one address exhaust it (the next try must wait about one refill),
    /// other addresses are unaffected, and the budget refills with time.
    #[test]
    fn sign_in_guard_stops_guessing_per_address_and_refills() {
        let guard = SignInGuard::new(10, Duration::from_millis(200));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for i in 0..10 {
            assert!(guard.check(a).is_ok(), "try {i} allowed");
            guard.failed(a);
        }
        let wait = guard.check(a).expect_err("the 11th try must wait");
        assert!(wait > Duration::from_millis(150) && wait <= Duration::from_millis(200));
        assert!(guard.check(b).is_ok(), "another address is not affected");
        std::thread::sleep(Duration::from_millis(250));
        assert!(guard.check(a).is_ok(), "one more try after a refill");
        guard.failed(a);
        assert!(guard.check(a).is_err(), "and only one");
    }
}
