//! HTTP routes: register, login, logout, health, and the WebSocket upgrade at `/ws`.
//!
//! The upgrade is checked completely before any socket exists: WebSocket headers, the Origin
//! allowlist, the `natter.v1` subprotocol, and the bearer token (a bad one gets 401 and no
//! socket). Sockets without a token count against a per-address cap until they authenticate.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::protocol::{
    is_valid_name, limits, ApiError, ErrorCode, Health, LoginRequest, RegisterRequest, Session,
    PROTOCOL_VERSION, SUBPROTOCOL,
};

use super::auth::{self, TokenHash};
use super::connection::{self, Authed, UnauthSlot};
use super::store::{self, now_ms, StoreError, WriteOp, WriteOutcome};
use super::Shared;

/// Presets for users who do not choose an avatar.
const AVATARS: &[&str] = &[
    "fox", "owl", "cat", "bear", "panda", "koala", "tiger", "frog",
];
/// Longest password accepted (argon2 cost grows with length; this bounds it).
const MAX_PASSWORD_CHARS: usize = 1024;
/// Longest avatar choice.
const MAX_AVATAR_CHARS: usize = 32;

/// The HTTP status for an error code.
fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest
        | ErrorCode::UnknownType
        | ErrorCode::InvalidName
        | ErrorCode::TooLong => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
    }
}

/// An HTTP error with the JSON [`ApiError`] body.
fn fail(code: ErrorCode, message: impl Into<String>) -> Response {
    (
        status_for(code),
        Json(ApiError {
            code,
            message: message.into(),
        }),
    )
        .into_response()
}

fn store_fail(e: StoreError) -> Response {
    let (code, message) = e.to_client();
    fail(code, message)
}

/// The axum router for every route.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/register", post(register))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/ws", get(upgrade))
        .fallback(|| async { fail(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(ApiError {
                    code: ErrorCode::BadRequest,
                    message: "method not allowed".into(),
                }),
            )
        })
        .layer(DefaultBodyLimit::max(16 * 1024))
        .with_state(shared)
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: PROTOCOL_VERSION,
    })
}

#[allow(clippy::result_large_err)] // an early-return response, built once per request
fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| fail(ErrorCode::BadRequest, format!("invalid request body: {e}")))
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// An optional field's trimmed value, None when absent or blank (then a default applies).
fn non_blank(field: &Option<String>) -> Option<&str> {
    field.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn default_avatar(username: &str) -> String {
    let h = username
        .chars()
        .fold(0usize, |h, c| h.wrapping_mul(31).wrapping_add(c as usize));
    AVATARS[h % AVATARS.len()].to_string()
}

fn session_expiry(shared: &Shared) -> i64 {
    now_ms().saturating_add(shared.config.token_ttl.as_millis() as i64)
}

/// Run an argon2 hash or verify on the blocking pool, at most one per CPU at a time: each takes
/// about 19 MiB and tens of milliseconds, so a burst of logins must queue rather than fan out
/// over the whole blocking pool and exhaust memory. None if the task failed.
async fn argon2_job<T, F>(shared: &Shared, job: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let _permit = shared.argon2_permits.acquire().await.ok()?;
    tokio::task::spawn_blocking(job).await.ok()
}

async fn register(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: RegisterRequest = match parse_json(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if !is_valid_name(&req.username) {
        return fail(
            ErrorCode::InvalidName,
            "usernames are 1-32 letters, digits or _-.",
        );
    }
    let pw_len = req.password.chars().count();
    if !(limits::MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&pw_len) {
        return fail(
            ErrorCode::InvalidName,
            format!(
                "passwords are {}-{MAX_PASSWORD_CHARS} characters",
                limits::MIN_PASSWORD_CHARS
            ),
        );
    }
    let display_name = non_blank(&req.display_name)
        .unwrap_or(&req.username)
        .to_string();
    if display_name.chars().count() > limits::MAX_DISPLAY_NAME_CHARS || has_control(&display_name) {
        return fail(
            ErrorCode::InvalidName,
            format!(
                "display names are at most {} characters, no control characters",
                limits::MAX_DISPLAY_NAME_CHARS
            ),
        );
    }
    let avatar = non_blank(&req.avatar)
        .map(str::to_string)
        .unwrap_or_else(|| default_avatar(&req.username));
    if avatar.chars().count() > MAX_AVATAR_CHARS || has_control(&avatar) {
        return fail(
            ErrorCode::InvalidName,
            format!("avatars are at most {MAX_AVATAR_CHARS} characters"),
        );
    }
    let password = req.password;
    let password_hash = match argon2_job(&shared, move || auth::hash_password(&password)).await {
        Some(Ok(h)) => h,
        _ => return fail(ErrorCode::Internal, "cannot hash password"),
    };
    let (token, token_hash) = auth::new_token();
    let expires_at = session_expiry(&shared);
    let op = WriteOp::Register {
        username: req.username,
        display_name,
        avatar,
        password_hash,
        token_hash,
        expires_at,
    };
    match shared.store.write(op).await {
        Ok(WriteOutcome::Registered(row)) => (
            StatusCode::CREATED,
            Json(Session {
                token,
                user: row.user,
                expires_at,
            }),
        )
            .into_response(),
        Ok(_) => fail(ErrorCode::Internal, "unexpected outcome"),
        Err(e) => store_fail(e),
    }
}

async fn login(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let req: LoginRequest = match parse_json(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let Err(wait) = shared.sign_in_guard.check(peer.ip()) {
        let secs = wait.as_secs() + 1;
        let mut resp = fail(
            ErrorCode::RateLimited,
            format!("too many failed sign-ins from this address: try again in {secs} s"),
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    let found = if is_valid_name(&req.username) {
        let name = req.username.clone();
        match shared
            .store
            .read(move |c| store::credentials(c, &name))
            .await
        {
            Ok(f) => f,
            Err(e) => return store_fail(e),
        }
    } else {
        None
    };
    let password = req.password;
    let (user, ok) = match found {
        Some((id, hash)) => {
            let ok = argon2_job(&shared, move || auth::verify_password(&password, &hash)).await;
            (Some(id), ok.unwrap_or(false))
        }
        None => {
            // Spend the same time as a real check so missing users cannot be told apart.
            argon2_job(&shared, move || {
                auth::verify_password(&password, auth::dummy_hash())
            })
            .await;
            (None, false)
        }
    };
    let (Some(user), true) = (user, ok) else {
        shared.sign_in_guard.failed(peer.ip());
        return fail(ErrorCode::Unauthorized, "wrong username or password");
    };
    let Some(profile) = shared.hub.user(user) else {
        return fail(ErrorCode::Internal, "user not loaded");
    };
    let (token, token_hash) = auth::new_token();
    let expires_at = session_expiry(&shared);
    match shared
        .store
        .write(WriteOp::Login {
            user,
            token_hash,
            expires_at,
        })
        .await
    {
        Ok(_) => Json(Session {
            token,
            user: profile,
            expires_at,
        })
        .into_response(),
        Err(e) => store_fail(e),
    }
}

/// The live token in the `Authorization` header: Ok(None) when there is no header at all.
#[allow(clippy::result_large_err)] // an early-return response, built once per request
async fn bearer_user(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
) -> Result<Option<Authed>, Response> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let unauthorized = || fail(ErrorCode::Unauthorized, "invalid, expired or revoked token");
    let token = value
        .to_str()
        .ok()
        .and_then(auth::bearer)
        .ok_or_else(unauthorized)?;
    let hash: TokenHash = auth::hash_token(token);
    match shared
        .store
        .read(move |c| store::token_user(c, &hash))
        .await
    {
        Ok(Some((user, expires_at))) => Ok(Some(Authed {
            user,
            token: hash,
            expires_at,
        })),
        Ok(None) => Err(unauthorized()),
        Err(e) => Err(store_fail(e)),
    }
}

async fn logout(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match bearer_user(&shared, &headers).await {
        Ok(Some(authed)) => match shared
            .store
            .write(WriteOp::Logout {
                token_hash: authed.token,
            })
            .await
        {
            Ok(_) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => store_fail(e),
        },
        Ok(None) => fail(
            ErrorCode::Unauthorized,
            "missing Authorization: Bearer <token>",
        ),
        Err(resp) => resp,
    }
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn origin_allowed(shared: &Shared, origin: &HeaderValue) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    shared.config.allowed_origins.iter().any(|allowed| {
        allowed == "*"
            || allowed
                .trim_end_matches('/')
                .eq_ignore_ascii_case(origin.trim_end_matches('/'))
    })
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    let headers = req.headers();
    if req.method() != Method::GET
        || !header_has_token(headers, header::CONNECTION, "upgrade")
        || !header_has_token(headers, header::UPGRADE, "websocket")
        || headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(|v| v.as_bytes())
            != Some(b"13")
    {
        return fail(
            ErrorCode::BadRequest,
            "expected a WebSocket upgrade (version 13)",
        );
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return fail(ErrorCode::BadRequest, "missing Sec-WebSocket-Key");
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !origin_allowed(&shared, origin) {
            return fail(ErrorCode::Forbidden, "origin not allowed");
        }
    }
    if !header_has_token(headers, header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL) {
        return fail(
            ErrorCode::BadRequest,
            format!("offer the subprotocol {SUBPROTOCOL}; this server speaks only that version"),
        );
    }
    let (authed, slot) = match bearer_user(&shared, headers).await {
        Ok(Some(a)) => (Some(a), None),
        Ok(None) => match UnauthSlot::take(&shared, peer.ip()) {
            Some(slot) => (None, Some(slot)),
            None => {
                return fail(
                    ErrorCode::RateLimited,
                    "too many unauthenticated sockets from this address",
                )
            }
        },
        Err(resp) => return resp,
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return fail(ErrorCode::BadRequest, "this connection cannot be upgraded");
    };
    let guard = shared.track();
    let task_shared = shared.clone();
    tokio::spawn(async move {
        let _guard = guard;
        match on_upgrade.await {
            Ok(upgraded) => {
                connection::serve(TokioIo::new(upgraded), task_shared, authed, slot).await;
            }
            Err(e) => tracing::debug!(%peer, error = %e, "upgrade failed"),
        }
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    resp
}
