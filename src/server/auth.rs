//! Credentials and the limits on signing in: bearer and device tokens, the per-address
//! budgets (failed sign-ins, registrations) and the per-account delay after failed sign-ins.
//!
//! Tokens are 256 random bits, handed to the client base64url-encoded and stored only as their
//! SHA-256 hash, so a leaked database does not hand out live sessions. Password hashing itself
//! lives in [`super::hasher`].
//!
//! The limits are designed so that an attacker sharing a user's address (a NAT) cannot lock the
//! user out, while guessing spread over many addresses is still slowed:
//! - [`AddressBudget`] bounds failed sign-ins (and, separately, registrations) per address;
//! - [`AccountDelay`] makes each account wait exponentially longer after repeated failures,
//!   whatever address they come from;
//! - a sign-in presenting a device token that this account was given at an earlier successful
//!   sign-in skips both gates (it is still charged when its password is wrong).
//!
//! Both gates are charged when an attempt STARTS (and refunded when it succeeds), so attempts
//! in flight count: sending 30 guesses at once buys no more than sending them one by one.
//! The guards take the current time as an argument so tests can drive their clocks.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::store::UserId;

/// Entries a guard keeps before it forgets the ones that no longer restrict anything.
const PRUNE_ABOVE: usize = 4096;

/// A budget per address: each address may spend `burst` in a row, then gets one more per
/// `refill`. Addresses whose budget is whole again are forgotten. Used for failed sign-ins
/// (success does not refill it, so interleaving a known password buys nothing) and for
/// account creation; keyed by user (`K = UserId`) it paces uploads.
#[derive(Debug)]
pub struct AddressBudget<K = IpAddr> {
    burst: f64,
    refill: Duration,
    spent: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Copy> AddressBudget<K> {
    pub fn new(burst: u32, refill: Duration) -> AddressBudget<K> {
        AddressBudget {
            burst: f64::from(burst.max(1)),
            refill: refill.max(Duration::from_millis(1)),
            spent: Mutex::new(HashMap::new()),
        }
    }

    /// Tries left for an entry after the time since it was last charged.
    fn left(&self, (tries, at): (f64, Instant), now: Instant) -> f64 {
        let refilled = now.saturating_duration_since(at).as_secs_f64() / self.refill.as_secs_f64();
        (tries + refilled).min(self.burst)
    }

    /// Set `ip`'s budget to `left` at `now`, forgetting whole budgets.
    fn store(&self, map: &mut HashMap<K, (f64, Instant)>, ip: K, left: f64, now: Instant) {
        if left >= self.burst {
            map.remove(&ip);
        } else {
            map.insert(ip, (left, now));
        }
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, entry| self.left(*entry, now) < self.burst);
        }
    }

    /// Spend one try for `ip` if it has one; otherwise how long until it will.
    pub fn take(&self, ip: K, now: Instant) -> Result<(), Duration> {
        let mut map = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        let left = map.get(&ip).map_or(self.burst, |e| self.left(*e, now));
        if left < 1.0 {
            return Err(self.refill.mul_f64(1.0 - left));
        }
        self.store(&mut map, ip, left - 1.0, now);
        Ok(())
    }

    /// Spend one try for `ip` even if none is left (a known device's wrong password).
    pub fn charge(&self, ip: K, now: Instant) {
        let mut map = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        let left = map.get(&ip).map_or(self.burst, |e| self.left(*e, now));
        self.store(&mut map, ip, (left - 1.0).max(0.0), now);
    }

    /// Give back a try taken for an attempt that turned out not to count (it succeeded, or
    /// was never checked).
    pub fn refund(&self, ip: K, now: Instant) {
        let mut map = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get(&ip) {
            let left = (self.left(*entry, now) + 1.0).min(self.burst);
            self.store(&mut map, ip, left, now);
        }
    }
}

/// Failed sign-ins per account, from any address: the first `free` cost nothing, after that
/// each further try must wait 2^n seconds after the last failure (n = failures - free + 1, so
/// 2 s, 4 s, 8 s ...), at most `cap`. A successful sign-in resets the account; so does a quiet
/// `cap` after the last failure.
#[derive(Debug)]
pub struct AccountDelay<K = UserId> {
    free: u32,
    cap: Duration,
    failures: Mutex<HashMap<K, (u32, Instant)>>,
}

impl<K: Hash + Eq + Copy> AccountDelay<K> {
    pub fn new(free: u32, cap: Duration) -> AccountDelay<K> {
        AccountDelay {
            free,
            cap,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How long after its last failure an account with `failures` must wait.
    fn delay(&self, failures: u32) -> Duration {
        match failures.checked_sub(self.free) {
            None => Duration::ZERO,
            // 2^(n+1) s; from 2^20 s on the cap applies anyway.
            Some(n) => Duration::from_secs(1u64 << (n + 1).min(20)).min(self.cap),
        }
    }

    /// Whether the entry still restricts or remembers anything at `now`.
    fn live(&self, (_, last): (u32, Instant), now: Instant) -> bool {
        now.saturating_duration_since(last) < self.cap
    }

    /// Count one failure for `account` now, unless it must still wait (then how long). The
    /// attempt counts as a failure from its start; [`AccountDelay::succeeded`] clears it.
    pub fn take(&self, account: K, now: Instant) -> Result<(), Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (failures, last) = match map.get(&account) {
            Some(&entry) if self.live(entry, now) => entry,
            _ => (0, now),
        };
        let ready = last + self.delay(failures);
        if ready > now {
            return Err(ready - now);
        }
        Self::count(&mut map, account, failures, now, |e| self.live(e, now));
        Ok(())
    }

    /// Count one failure for `account` without asking (a known device's wrong password).
    pub fn charge(&self, account: K, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let failures = match map.get(&account) {
            Some(&entry) if self.live(entry, now) => entry.0,
            _ => 0,
        };
        Self::count(&mut map, account, failures, now, |e| self.live(e, now));
    }

    fn count(
        map: &mut HashMap<K, (u32, Instant)>,
        account: K,
        failures: u32,
        now: Instant,
        live: impl Fn((u32, Instant)) -> bool,
    ) {
        map.insert(account, (failures.saturating_add(1), now));
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, entry| live(*entry));
        }
    }

    /// The attempt counted by [`AccountDelay::take`] has failed: the wait runs from now, the
    /// end of its (possibly slow) password check, not from its start.
    pub fn failed(&self, account: K, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get_mut(&account) {
            entry.1 = entry.1.max(now);
        }
    }

    /// Take back the failure counted for an attempt whose password was never checked.
    pub fn refund(&self, account: K) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get_mut(&account) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }

    /// The right password: the account starts afresh.
    pub fn succeeded(&self, account: K) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&account);
    }
}

/// The SHA-256 of a token: what the database stores and what sockets remember.
pub type TokenHash = [u8; 32];

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

/// The opaque id a session is listed and revoked by: derived from the token's hash one-way (with
/// a domain prefix, so it is neither the token nor the stored hash, and cannot lead to either).
pub fn session_id(hash: &TokenHash) -> String {
    let digest = Sha256::new()
        .chain_update(b"natter session id\0")
        .chain_update(hash)
        .finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
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
    fn tokens_are_random_and_hashed() {
        let (a, ha) = new_token();
        let (b, hb) = new_token();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(a.len(), 43, "256 bits in base64url without padding");
        assert_eq!(hash_token(&a), ha);
        let id = session_id(&ha);
        assert_eq!(id.len(), 32);
        assert_eq!(id, session_id(&ha), "stable");
        assert_ne!(id, session_id(&hb));
        let hex: String = ha.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!hex.contains(&id), "not a piece of the stored hash");
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    fn at(start: Instant, secs: f64) -> Instant {
        start + Duration::from_secs_f64(secs)
    }

    /// Ten tries from one address exhaust it (the next must wait about one refill), other
    /// addresses are unaffected, the budget refills with time, and a refund gives a try back.
    #[test]
    fn address_budget_stops_guessing_per_address_and_refills() {
        let guard = AddressBudget::new(10, Duration::from_secs(30));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(guard.take(a, t0).is_ok(), "try {i} allowed");
        }
        let wait = guard.take(a, t0).expect_err("the 11th try must wait");
        assert_eq!(wait, Duration::from_secs(30));
        let wait = guard.take(a, at(t0, 10.0)).expect_err("still waiting");
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20));
        assert!(guard.take(b, t0).is_ok(), "another address is not affected");
        assert!(
            guard.take(a, at(t0, 31.0)).is_ok(),
            "one more try after a refill"
        );
        assert!(guard.take(a, at(t0, 31.0)).is_err(), "and only one");
        guard.refund(a, at(t0, 31.0));
        assert!(
            guard.take(a, at(t0, 31.0)).is_ok(),
            "a refunded try can be used again"
        );
        guard.charge(a, at(t0, 31.0));
        assert!(
            guard.take(a, at(t0, 31.0)).is_err(),
            "a charge never goes below zero"
        );
        assert!(
            guard.take(a, at(t0, 61.0)).is_ok(),
            "...so one refill is enough again"
        );
        assert!(guard.take(a, at(t0, 400.0)).is_ok());
        assert_eq!(guard.spent.lock().unwrap().len(), 2);
    }

    /// Three failures are free, then the account waits 2 s, 4 s, 8 s ... after each failure,
    /// capped; it holds for every address (the guard does not know addresses); success resets.
    #[test]
    fn account_delay_grows_exponentially_and_resets_on_success() {
        let guard = AccountDelay::<i64>::new(3, Duration::from_secs(900));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(guard.take(7, t0).is_ok(), "free failure {i}");
        }
        assert_eq!(guard.take(7, t0), Err(Duration::from_secs(2)));
        assert!(guard.take(8, t0).is_ok(), "another account is not affected");
        assert_eq!(guard.take(7, at(t0, 1.5)), Err(Duration::from_millis(500)));
        assert!(guard.take(7, at(t0, 2.0)).is_ok(), "4th failure after 2 s");
        assert_eq!(guard.take(7, at(t0, 2.0)), Err(Duration::from_secs(4)));
        assert!(guard.take(7, at(t0, 6.0)).is_ok(), "5th after 4 more");
        assert_eq!(guard.take(7, at(t0, 6.0)), Err(Duration::from_secs(8)));
        guard.charge(7, at(t0, 6.0));
        assert_eq!(guard.take(7, at(t0, 6.0)), Err(Duration::from_secs(16)));
        guard.failed(7, at(t0, 7.0));
        assert_eq!(
            guard.take(7, at(t0, 7.0)),
            Err(Duration::from_secs(16)),
            "the wait runs from the end of the failed check"
        );
        guard.succeeded(7);
        assert!(guard.take(7, at(t0, 6.0)).is_ok(), "success starts afresh");
    }

    /// The delay stops growing at the cap, and a quiet cap after the last failure forgets it.
    #[test]
    fn account_delay_is_capped_and_forgotten() {
        let guard = AccountDelay::<i64>::new(3, Duration::from_secs(900));
        let t0 = Instant::now();
        for _ in 0..40 {
            guard.charge(1, t0);
        }
        assert_eq!(guard.take(1, t0), Err(Duration::from_secs(900)));
        assert_eq!(guard.take(1, at(t0, 899.0)), Err(Duration::from_secs(1)));
        assert!(
            guard.take(1, at(t0, 900.0)).is_ok(),
            "forgotten after the cap"
        );
        assert!(
            guard.take(1, at(t0, 900.0)).is_ok(),
            "...so counting starts again"
        );
    }
}
