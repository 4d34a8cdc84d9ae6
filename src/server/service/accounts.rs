//! Accounts and sessions: registration, sign-in with its limits (docs/protocol.md, "Sign-in
//! limits"), sign-out, and turning a bearer token into a user.

use super::limits::Budget;
use std::net::IpAddr;
use std::time::Duration;

use crate::names::{self, NameKind};
use crate::protocol::{limits, ErrorCode, LoginRequest, Millis, RegisterRequest, Session};

use super::super::auth::{self, TokenHash};
use super::super::hasher::Busy;
use super::super::store::{rules, UserId, WriteOp, WriteOutcome};
use super::super::Shared;
use super::{write_for_call, ServiceError};

/// Presets for users who do not choose an avatar.
const AVATARS: &[&str] = &[
    "fox", "owl", "cat", "bear", "panda", "koala", "tiger", "frog",
];
/// Longest password accepted (argon2 cost grows with length; this bounds it).
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// Longest avatar choice.
const MAX_AVATAR_CHARS: usize = 32;

/// A live token's owner. (Serialisable: a ticket standing for it crosses the bus between
/// nodes.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Authed {
    pub user: UserId,
    pub token: TokenHash,
    pub expires_at: Millis,
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::refused(ErrorCode::InvalidName, message)
}

pub(super) fn busy() -> ServiceError {
    ServiceError::Later {
        code: ErrorCode::Busy,
        message: "the server is busy checking passwords",
        wait: Duration::from_secs(1),
    }
}

pub(super) fn limited(message: &'static str, wait: Duration) -> ServiceError {
    ServiceError::Later {
        code: ErrorCode::RateLimited,
        message,
        wait,
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A new password's length rule (registration and password change).
pub(super) fn check_password_rules(password: &str) -> Result<(), ServiceError> {
    let pw_len = password.chars().count();
    if !(limits::MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&pw_len) {
        return Err(invalid(format!(
            "passwords are {}-{MAX_PASSWORD_CHARS} characters",
            limits::MIN_PASSWORD_CHARS
        )));
    }
    Ok(())
}

/// An avatar's rule (registration and profile change).
pub(super) fn check_avatar(avatar: &str) -> Result<(), ServiceError> {
    if avatar.chars().count() > MAX_AVATAR_CHARS || has_control(avatar) {
        return Err(invalid(format!(
            "avatars are at most {MAX_AVATAR_CHARS} characters"
        )));
    }
    Ok(())
}

/// What names a session in the session list: the login's `label`, else its `User-Agent`, with
/// control and invisible characters dropped and cut to the limit; None when nothing is left.
pub(super) fn session_label(label: Option<&str>, user_agent: Option<&str>) -> Option<String> {
    let raw = label.or(user_agent)?;
    let clean: String = raw
        .chars()
        .filter(|c| !c.is_control() && !names::is_invisible(*c))
        .take(limits::MAX_SESSION_LABEL_CHARS)
        .collect();
    let clean = clean.trim();
    (!clean.is_empty()).then(|| clean.to_owned())
}

fn non_blank(field: &Option<String>) -> Option<&str> {
    field.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn default_avatar(username: &str) -> String {
    let h = username
        .chars()
        .fold(0usize, |h, c| h.wrapping_mul(31).wrapping_add(c as usize));
    AVATARS[h % AVATARS.len()].to_string()
}

fn session_expiry(shared: &Shared) -> Millis {
    shared
        .clock
        .now_ms()
        .saturating_add(shared.config.token_ttl.as_millis() as Millis)
}

/// What registering did.
#[derive(Debug)]
pub enum Registered {
    /// The account exists and is signed in.
    Session(Session),
    /// The account exists and waits for an admin's approval (`approval` registration).
    Pending,
}

/// Create an account (and its first session) for a request from `ip`, as the server's
/// registration mode allows ([`rules::admission`](super::super::store::rules::admission)).
pub async fn register(
    shared: &Shared,
    ip: IpAddr,
    req: RegisterRequest,
    user_agent: Option<&str>,
) -> Result<Registered, ServiceError> {
    let username = names::name(&req.username, NameKind::Username)
        .map_err(|e| invalid(e.to_string()))?
        .display;
    check_password_rules(&req.password)?;
    let display_name = names::display_name(non_blank(&req.display_name).unwrap_or(&username))
        .map_err(|e| invalid(e.to_string()))?;
    let avatar = non_blank(&req.avatar)
        .map(str::to_string)
        .unwrap_or_else(|| default_avatar(&username));
    check_avatar(&avatar)?;
    // Charged before hashing (so requests in flight count), after the checks that cost nothing.
    shared
        .limits
        .take_address(Budget::Registration, ip, shared.clock.instant())
        .map_err(|wait| limited("too many accounts created from this address", wait))?;
    let password_hash = match hash_password(shared, req.password).await {
        Ok(hashed) => hashed?,
        Err(Busy) => {
            // Nothing was created: the try is not counted.
            shared
                .limits
                .refund_address(Budget::Registration, ip, shared.clock.instant());
            return Err(busy());
        }
    };
    let (token, token_hash) = auth::new_token();
    let (device_token, device_hash) = auth::new_token();
    let expires_at = session_expiry(shared);
    let op = WriteOp::Register {
        mode: shared.config.registration,
        invite: req.invite.as_deref().map(auth::hash_token),
        username,
        display_name,
        avatar,
        password_hash,
        token_hash,
        now: shared.clock.now_ms(),
        expires_at,
        device_hash,
        label: session_label(None, user_agent),
    };
    match write_for_call(shared, op).await? {
        WriteOutcome::Registered(row) => Ok(Registered::Session(Session {
            token,
            user: row.user,
            expires_at,
            device_token: Some(device_token),
        })),
        WriteOutcome::RegisteredPending => Ok(Registered::Pending),
        other => Err(unexpected(other)),
    }
}

/// Hash a new password on the hashing threads: Err(Busy) when their queue is full (nothing
/// was done), Ok(Err) when hashing itself failed.
pub(super) async fn hash_password(
    shared: &Shared,
    password: String,
) -> Result<Result<String, ServiceError>, Busy> {
    Ok(shared
        .hasher
        .run(move |w| w.hash(&password))
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "cannot hash a password");
            ServiceError::refused(ErrorCode::Internal, "cannot hash password")
        }))
}

/// What registration answers (202) and sign-in refuses with while an account waits.
pub fn pending_approval() -> ServiceError {
    ServiceError::refused(
        ErrorCode::PendingApproval,
        "this account waits for an admin's approval; sign in once it is approved",
    )
}

fn unexpected(outcome: WriteOutcome) -> ServiceError {
    tracing::error!(?outcome, "a write answered with another write's outcome");
    ServiceError::refused(ErrorCode::Internal, "internal server error")
}

/// Sign in. Unless the request presents a device token this user was given, the address's
/// failed-sign-in budget and the account's delay are charged when the attempt starts and
/// refunded if it succeeds.
pub async fn login(
    shared: &Shared,
    ip: IpAddr,
    req: LoginRequest,
    user_agent: Option<&str>,
) -> Result<Session, ServiceError> {
    let label = session_label(req.label.as_deref(), user_agent);
    // The user first: whether the device is known to them decides which limits apply. Any
    // spelling is looked up by its key: names from before the current rules still sign in.
    let found = shared.store.credentials(req.username.clone()).await?;
    let user = found.as_ref().map(|(id, _)| *id);
    let known_device = match (user, req.device_token.as_deref()) {
        (Some(user), Some(device)) => {
            shared
                .store
                .is_known_device(user, auth::hash_token(device))
                .await?
        }
        _ => false,
    };
    let started = shared.clock.instant();
    if !known_device {
        shared
            .limits
            .take_address(Budget::SignIn, ip, started)
            .map_err(|wait| limited("too many failed sign-ins from this address", wait))?;
        if let Some(user) = user {
            if let Err(wait) = shared.limits.take_account(user, started) {
                shared.limits.refund_address(Budget::SignIn, ip, started);
                return Err(limited("too many failed sign-ins for this account", wait));
            }
        }
    }
    let password = req.password;
    let checked = match found {
        Some((_, hash)) => shared.hasher.run(move |w| w.verify(&password, &hash)).await,
        // Spend the same time as a real check so missing users cannot be told apart.
        None => shared.hasher.run(move |w| w.verify_dummy(&password)).await,
    };
    let ok = match checked {
        Ok(ok) => ok,
        Err(Busy) => {
            // The password was never checked: the attempt does not count.
            if !known_device {
                shared.limits.refund_address(Budget::SignIn, ip, started);
                if let Some(user) = user {
                    shared.limits.refund_account(user);
                }
            }
            return Err(busy());
        }
    };
    let (Some(user), true) = (user, ok) else {
        if let Some(user) = user {
            if known_device {
                // Exempt from waiting, not from counting.
                shared.limits.charge_address(Budget::SignIn, ip, started);
                shared.limits.charge_account(user, shared.clock.instant());
            } else {
                shared.limits.account_failed(user, shared.clock.instant());
            }
        }
        return Err(ServiceError::refused(
            ErrorCode::Unauthorized,
            "wrong username or password",
        ));
    };
    if !known_device {
        shared.limits.refund_address(Budget::SignIn, ip, started);
    }
    shared.limits.account_succeeded(user);
    // The right password of an account that waits or is banned: say so.
    match shared.store.standing(user).await? {
        Some(s) if s.pending => return Err(pending_approval()),
        Some(s) if s.banned => return Err(rules::banned_from_server().into()),
        _ => {}
    }
    let Some(profile) = shared.hub.user(user) else {
        tracing::error!(user, "a signed-in user is not in this node's memory");
        return Err(ServiceError::refused(
            ErrorCode::Internal,
            "user not loaded",
        ));
    };
    let (token, token_hash) = auth::new_token();
    // A known device keeps its token; a new one is remembered from now on.
    let (device_token, device_hash) = match req.device_token.filter(|_| known_device) {
        Some(device) => (device, None),
        None => {
            let (device, hash) = auth::new_token();
            (device, Some(hash))
        }
    };
    let expires_at = session_expiry(shared);
    let op = WriteOp::Login {
        user,
        token_hash,
        now: shared.clock.now_ms(),
        expires_at,
        device_hash,
        label,
    };
    write_for_call(shared, op).await?;
    Ok(Session {
        token,
        user: profile,
        expires_at,
        device_token: Some(device_token),
    })
}

/// The owner of a live token, or `unauthorized`.
pub async fn authenticate(shared: &Shared, token: &str) -> Result<Authed, ServiceError> {
    check_token(shared, auth::hash_token(token)).await
}

/// The owner of a live token given by its hash, or `unauthorized`.
pub async fn check_token(shared: &Shared, hash: TokenHash) -> Result<Authed, ServiceError> {
    match shared.store.token_user(hash, shared.clock.now_ms()).await? {
        Some((user, expires_at)) => Ok(Authed {
            user,
            token: hash,
            expires_at,
        }),
        None => Err(ServiceError::refused(
            ErrorCode::Unauthorized,
            "invalid, expired or revoked token",
        )),
    }
}

/// Revoke a token; every socket opened with it closes (4001) on every node.
pub async fn logout(shared: &Shared, token: TokenHash) -> Result<(), ServiceError> {
    write_for_call(shared, WriteOp::Logout { token_hash: token }).await?;
    Ok(())
}
