//! HTTP routes: register, login, logout, your account (`/api/account/*`), health, the
//! WebSocket upgrade at `/ws`, and the event stream (`/api/events`, in [`super::sse`]). Each
//! route parses its request and calls a service ([`super::service`]); this file holds what is
//! HTTP's own: statuses, headers, the guard below.
//!
//! Every request first passes [`guard`]: the `Host` names this server (DNS rebinding), the
//! `Origin`, when a browser sent one, is allowed, a POST body is JSON, and the whole body arrives
//! within its size limit and deadline. Every error, of a route or of the guard, has the JSON
//! [`ApiError`] body.
//!
//! The upgrade is checked completely before any socket exists: WebSocket headers, the
//! `natter.v1` subprotocol, and the bearer token (a bad one gets 401 and no socket), and the caps
//! on open sockets per user and address (429). Sockets without a token count against a
//! per-address cap until they authenticate.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::protocol::{
    limits, ApiError, DeleteAccountRequest, ErrorCode, Health, InviteRequest, LoginRequest,
    PasswordRequest, ProfileRequest, RegisterRequest, UsernameRequest, PROTOCOL_VERSION,
    SUBPROTOCOL,
};

use super::auth;
use super::connection::{self, SocketSlots};
use super::images;
use super::service::accounts::{self, Authed};
use super::service::files::{self, Part};
use super::service::{account, admin};
use super::service::{retry_secs, ServiceError};
use super::sse;
use super::store;
use super::Shared;

/// The HTTP status for an error code.
fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest
        | ErrorCode::UnknownType
        | ErrorCode::InvalidName
        | ErrorCode::TooLong
        | ErrorCode::InvalidTarget
        | ErrorCode::InvalidReaction
        | ErrorCode::InvalidAttachment => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden
        | ErrorCode::InviteRequired
        | ErrorCode::InvalidInvite
        | ErrorCode::PendingApproval => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        // `cancelled` only answers a socket's `sync`; 409 if it ever reached HTTP.
        ErrorCode::Conflict | ErrorCode::Cancelled => StatusCode::CONFLICT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
    }
}

/// An HTTP error with the JSON [`ApiError`] body.
pub(crate) fn fail(code: ErrorCode, message: impl Into<String>) -> Response {
    fail_with(status_for(code), code, message)
}

/// An HTTP error whose status says more than its code's usual one (405, 408, 413, 415, 421).
fn fail_with(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            code,
            message: message.into(),
        }),
    )
        .into_response()
}

/// [`fail_with`], and the connection closes after the answer: the rest of the request body is
/// never read, so nothing else can follow on this connection (and a refused cross-site caller
/// gets no connection to reuse).
fn fail_and_close(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    let mut resp = fail_with(status, code, message);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// A service's refusal as an HTTP error; one that says when to try again carries
/// `Retry-After` (whole seconds, at least 1, the figure the message ends with).
pub(crate) fn service_fail(e: ServiceError) -> Response {
    let (code, message) = e.to_client();
    let mut resp = fail(code, message);
    if let ServiceError::Later { wait, .. } = e {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_secs(wait)));
    }
    resp
}

/// A handle on the HTTP connection a request came on, for a route that must close it at once
/// (an event stream whose reader stopped reading: its body may never be written).
#[derive(Clone, Default)]
pub(crate) struct ConnAbort(Arc<tokio::sync::Notify>);

impl ConnAbort {
    /// Close the connection now.
    pub(crate) fn abort(&self) {
        self.0.notify_one();
    }

    /// Resolves once [`ConnAbort::abort`] was called.
    pub(crate) async fn aborted(&self) {
        self.0.notified().await
    }
}

/// Where files are uploaded (`POST`); `/{id}` and `/{id}/thumbnail` download them.
const FILES_PATH: &str = "/api/files";
/// Where a profile picture is uploaded (`POST`, the image is the body) or removed (`DELETE`).
const AVATAR_PATH: &str = "/api/account/avatar";

/// The axum router for every route.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/register", post(register))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        // ---- your account ----
        .route("/api/account/profile", post(account_profile))
        .route("/api/account/password", post(account_password))
        .route("/api/account/sessions", get(account_sessions))
        .route("/api/account/sessions/{id}", delete(account_revoke))
        .route("/api/account/delete", post(account_delete))
        // ---- files ----
        .route(AVATAR_PATH, post(avatar_set).delete(avatar_clear))
        .route("/api/avatars/{id}", get(avatar_get))
        .route(FILES_PATH, post(upload_file))
        .route("/api/files/{id}", get(download_file))
        .route("/api/files/{id}/thumbnail", get(download_thumbnail))
        // ---- run by its host ----
        .route("/api/invites", post(invite_create).get(invite_list))
        .route("/api/invites/{id}", delete(invite_revoke))
        .route("/api/admin/pending", get(admin_pending))
        .route("/api/admin/approve", post(admin_approve))
        .route("/api/admin/reject", post(admin_reject))
        .route("/api/admin/ban", post(admin_ban))
        .route("/api/admin/unban", post(admin_unban))
        .route("/ws", get(upgrade))
        .route("/api/events", get(sse::events))
        .route("/api/events/ticket", post(sse::ticket))
        .fallback(|| async { fail(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            fail_with(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::BadRequest,
                "method not allowed",
            )
        })
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

/// Whether the `Host` header names this server: an IP literal (a DNS rebinding attack needs a
/// name, and a LAN host is reached by its address), `localhost` and its subdomains (browsers
/// resolve those to loopback themselves), or a name in `allowed_hosts` (`*` allows any).
fn host_allowed(shared: &Shared, host: &str) -> bool {
    if let Some(rest) = host.strip_prefix('[') {
        // Only IPv6 literals are bracketed: `[::1]` or `[::1]:8686`.
        return rest
            .split_once(']')
            .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_end_matches('.');
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let lower = name.to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || shared
            .config
            .allowed_hosts
            .iter()
            .any(|h| h == "*" || h.trim_end_matches('.').eq_ignore_ascii_case(name))
}

/// Whether a request declares a body (hyper gives every request a body, maybe empty).
fn declares_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// Whether the `Content-Type` is JSON (parameters such as `charset` are allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// Checks every request before its route sees it, in this order: `Host` (421), `Origin` (403),
/// a POST body's `Content-Type` (415), then reads the whole body within the size limit (413,
/// at once for a `Content-Length` beyond it) and the body deadline (408). A route gets the body
/// already read, so none of them waits on a slow or endless one.
async fn guard(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if let Some(host) = headers.get(header::HOST) {
        let host = host.to_str().unwrap_or("");
        if !host_allowed(&shared, host) {
            return fail_and_close(
                StatusCode::MISDIRECTED_REQUEST,
                ErrorCode::Forbidden,
                format!(
                    "this server does not answer to the host name `{host}` (a server reached \
                     by a name lists it with --allowed-host)"
                ),
            );
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !origin_allowed(&shared, origin) {
            return fail_and_close(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "origin not allowed",
            );
        }
    }
    // An upload's body is the file: its route checks the size before reading any of it and
    // then streams it to disk (never whole in memory, never under the JSON limit).
    let path = req.uri().path();
    if !declares_body(headers)
        || (req.method() == Method::POST && (path == FILES_PATH || path == AVATAR_PATH))
    {
        return next.run(req).await;
    }
    if req.method() == Method::POST && !is_json(headers) {
        return fail_and_close(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadRequest,
            "request bodies are JSON: send Content-Type: application/json",
        );
    }
    let too_large = || {
        fail_and_close(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLong,
            format!(
                "request bodies are at most {} bytes",
                limits::MAX_HTTP_BODY_BYTES
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits::MAX_HTTP_BODY_BYTES as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(shared.config.body_timeout, async {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Some(e.to_string()))?;
            if buf.len() + chunk.len() > limits::MAX_HTTP_BODY_BYTES {
                return Err(None::<String>);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    })
    .await;
    match read {
        Ok(Ok(buf)) => next.run(Request::from_parts(parts, Body::from(buf))).await,
        Ok(Err(None)) => too_large(),
        Ok(Err(Some(e))) => fail_and_close(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("cannot read the request body: {e}"),
        ),
        Err(_) => fail_and_close(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::BadRequest,
            format!(
                "the request body did not arrive within {} s",
                shared.config.body_timeout.as_secs_f64()
            ),
        ),
    }
}

async fn health(State(shared): State<Arc<Shared>>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: PROTOCOL_VERSION,
        server_id: shared.hub.server_id().to_owned(),
        cluster: shared.bus.status(),
        registration: Some(shared.config.registration),
    })
}

#[allow(clippy::result_large_err)] // an early-return response, built once per request
fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| fail(ErrorCode::BadRequest, format!("invalid request body: {e}")))
}

/// The `User-Agent`, which names a session whose sign-in sent no `label`.
fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

/// `POST /api/register`: create an account and its first session (201).
async fn register(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: RegisterRequest = match parse_json(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match accounts::register(&shared, peer.ip(), req, user_agent(&headers)).await {
        Ok(accounts::Registered::Session(session)) => {
            (StatusCode::CREATED, Json(session)).into_response()
        }
        // Created, not signed in: said with the error body a client already reads.
        Ok(accounts::Registered::Pending) => {
            let (code, message) = accounts::pending_approval().to_client();
            fail_with(StatusCode::ACCEPTED, code, message)
        }
        Err(e) => service_fail(e),
    }
}

/// `POST /api/login`, with the sign-in limits of docs/protocol.md ("Sign-in limits").
async fn login(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: LoginRequest = match parse_json(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match accounts::login(&shared, peer.ip(), req, user_agent(&headers)).await {
        Ok(session) => Json(session).into_response(),
        Err(e) => service_fail(e),
    }
}

/// The live token in the `Authorization` header: Ok(None) when there is no header at all.
#[allow(clippy::result_large_err)] // an early-return response, built once per request
pub(crate) async fn bearer_user(
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
    accounts::authenticate(shared, token)
        .await
        .map(Some)
        .map_err(service_fail)
}

// ---- your account (docs/protocol.md, "Your account") ----

/// The signed-in caller of an account route, as an extractor: the token's owner and the address
/// it called from. A missing or dead token is answered 401 before the body is looked at.
struct Caller {
    shared: Arc<Shared>,
    authed: Authed,
    ip: std::net::IpAddr,
}

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, Response> {
        let authed = bearer_user(shared, &parts.headers).await?.ok_or_else(|| {
            fail(
                ErrorCode::Unauthorized,
                "missing Authorization: Bearer <token>",
            )
        })?;
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| fail(ErrorCode::Internal, "the caller's address is unknown"))?;
        Ok(Caller {
            shared: shared.clone(),
            authed,
            ip,
        })
    }
}

/// A JSON request body, refused with the documented `bad_request` ApiError (not axum's own).
struct JsonBody<T>(T);

impl<T: serde::de::DeserializeOwned> FromRequest<Arc<Shared>> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, shared: &Arc<Shared>) -> Result<Self, Response> {
        let body = Bytes::from_request(req, shared)
            .await
            .map_err(IntoResponse::into_response)?;
        parse_json(&body).map(JsonBody)
    }
}

/// A service's answer: `ok` as JSON with 200, or its error.
fn answer_json<T: serde::Serialize>(result: Result<T, ServiceError>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => service_fail(e),
    }
}

/// A service's answer with no body: 204, or its error.
fn answer_empty(result: Result<(), ServiceError>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => service_fail(e),
    }
}

/// `POST /api/account/profile`: change the display name and/or avatar (200, the `User`).
async fn account_profile(c: Caller, JsonBody(req): JsonBody<ProfileRequest>) -> Response {
    answer_json(account::set_profile(&c.shared, &c.authed, req).await)
}

/// `POST /api/account/password`: change the password (204).
async fn account_password(c: Caller, JsonBody(req): JsonBody<PasswordRequest>) -> Response {
    answer_empty(account::change_password(&c.shared, c.ip, &c.authed, req).await)
}

/// `GET /api/account/sessions`: the caller's live sessions (200, `SessionList`).
async fn account_sessions(c: Caller) -> Response {
    answer_json(account::sessions(&c.shared, &c.authed).await)
}

/// `DELETE /api/account/sessions/{id}`: revoke one of the caller's sessions (204).
async fn account_revoke(c: Caller, Path(id): Path<String>) -> Response {
    answer_empty(account::revoke_session(&c.shared, &c.authed, id).await)
}

/// `POST /api/account/delete`: delete the caller's account (204).
async fn account_delete(c: Caller, JsonBody(req): JsonBody<DeleteAccountRequest>) -> Response {
    answer_empty(account::delete_account(&c.shared, c.ip, &c.authed, req).await)
}

// ---- files (docs/protocol.md, "Files") ----

/// `POST /api/files?name=NAME`: the body is the file, `Content-Length` its size (201, the
/// `Attachment`). Refused before the body is read when too large (413), over the quota (413),
/// too frequent (429), empty or of unknown length (400, 411); a body that ends early or
/// stalls is 400 and leaves nothing stored. A refusal closes the connection, since the rest
/// of the body is never read.
async fn upload_file(c: Caller, req: Request) -> Response {
    let name = req
        .uri()
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let (reservation, declared, body) = match raw_body(&c, req).await {
        Ok(admitted) => admitted,
        Err(resp) => return resp,
    };
    match files::upload(&c.shared, c.authed.user, &name, reservation, declared, body).await {
        Ok(attachment) => (StatusCode::CREATED, Json(attachment)).into_response(),
        Err(e) => refuse_upload(e),
    }
}

/// `POST /api/account/avatar`: the body is an image (checked like an upload), which becomes
/// the caller's profile picture (200, the `User`).
async fn avatar_set(c: Caller, req: Request) -> Response {
    let (reservation, declared, body) = match raw_body(&c, req).await {
        Ok(admitted) => admitted,
        Err(resp) => return resp,
    };
    match files::set_avatar(&c.shared, c.authed.user, reservation, declared, body).await {
        Ok(user) => Json(user).into_response(),
        Err(e) => refuse_upload(e),
    }
}

/// `DELETE /api/account/avatar`: no profile picture any more (200, the `User`).
async fn avatar_clear(c: Caller) -> Response {
    answer_json(files::clear_avatar(&c.shared, c.authed.user).await)
}

/// `GET /api/avatars/{id}`: a current profile picture, for any signed-in user.
async fn avatar_get(c: Caller, Path(id): Path<String>, headers: HeaderMap) -> Response {
    match files::avatar(&c.shared, id).await {
        Ok(d) => {
            let ext = if d.media_type == "image/png" {
                "png"
            } else {
                "jpg"
            };
            let name = format!("avatar.{ext}");
            serve_bytes(d.content, d.len, &d.media_type, &name, &headers).await
        }
        Err(e) => service_fail(e),
    }
}

// ---- run by its host (docs/protocol.md, "Run by its host"); admins only ----

/// `POST /api/invites`: make an invite (201, the `Invite` with its code).
async fn invite_create(c: Caller, JsonBody(req): JsonBody<InviteRequest>) -> Response {
    match admin::create_invite(&c.shared, &c.authed, req).await {
        Ok(invite) => (StatusCode::CREATED, Json(invite)).into_response(),
        Err(e) => service_fail(e),
    }
}

/// A raw request body (a file), admitted by its `Content-Length` before any of it is read
/// ([`files::admit`]): its reservation of the user's quota, the declared size and the body's
/// stream, or the refusal to answer.
#[allow(clippy::result_large_err)] // an early-return response, built once per request
async fn raw_body(
    c: &Caller,
    req: Request,
) -> Result<(files::Reservation, u64, axum::body::BodyDataStream), Response> {
    let headers = req.headers();
    // No Content-Length and no Transfer-Encoding is a request without a body: 0 bytes.
    let declared = match headers.get(header::CONTENT_LENGTH) {
        Some(v) => v.to_str().ok().and_then(|v| v.parse::<u64>().ok()),
        None if headers.contains_key(header::TRANSFER_ENCODING) => None,
        None => Some(0),
    };
    let Some(declared) = declared else {
        return Err(fail_and_close(
            StatusCode::LENGTH_REQUIRED,
            ErrorCode::BadRequest,
            "send the file's size as Content-Length",
        ));
    };
    let reservation = files::admit(&c.shared, c.authed.user, declared)
        .await
        .map_err(refuse_upload)?;
    Ok((reservation, declared, req.into_body().into_data_stream()))
}

/// An upload's refusal: 413 for `too_long` (size or quota), and the connection closes, since
/// the rest of the body is never read.
fn refuse_upload(e: ServiceError) -> Response {
    // The size limit is the service's refusal, the quota the store's.
    let too_large = matches!(
        &e,
        ServiceError::Refused {
            code: ErrorCode::TooLong,
            ..
        } | ServiceError::Store(store::StoreError::Rejected(ErrorCode::TooLong, _))
    );
    let mut resp = service_fail(e);
    if too_large {
        *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    }
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// `GET /api/files/{id}`: the file's bytes, for its uploader and the members of a
/// conversation it was posted in (404 for anyone else); `Range` gives 206.
async fn download_file(c: Caller, Path(id): Path<String>, headers: HeaderMap) -> Response {
    serve_file(&c, id, Part::Whole, &headers).await
}

/// `GET /api/files/{id}/thumbnail`: an image's thumbnail, to the same readers.
async fn download_thumbnail(c: Caller, Path(id): Path<String>, headers: HeaderMap) -> Response {
    serve_file(&c, id, Part::Thumbnail, &headers).await
}

async fn serve_file(c: &Caller, id: String, part: Part, headers: &HeaderMap) -> Response {
    let download = match files::download(&c.shared, c.authed.user, id, part).await {
        Ok(d) => d,
        Err(e) => return service_fail(e),
    };
    let name = match part {
        Part::Whole => download.file.attachment.name.clone(),
        Part::Thumbnail => thumbnail_name(&download.file.attachment.name, &download.media_type),
    };
    let (content, len) = (download.content, download.len);
    serve_bytes(content, len, &download.media_type, &name, headers).await
}

/// Send a stored file of `len` bytes (or the one range of it `headers` ask for) as a download
/// named `name`, with the headers that keep a browser from rendering or sniffing it.
async fn serve_bytes(
    content: std::fs::File,
    len: u64,
    media_type: &str,
    name: &str,
    headers: &HeaderMap,
) -> Response {
    let range = match byte_range(headers, len) {
        Ok(range) => range,
        Err(()) => {
            let mut resp = fail_with(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::BadRequest,
                format!("the range lies beyond the file's {len} bytes"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return resp;
        }
    };
    let (start, end) = range.unwrap_or((0, len.saturating_sub(1)));
    let count = if len == 0 { 0 } else { end - start + 1 };
    let mut file = tokio::fs::File::from_std(content);
    if start > 0 {
        use tokio::io::AsyncSeekExt;
        if let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await {
            tracing::error!(error = %e, "cannot seek in a stored file");
            return fail(ErrorCode::Internal, "internal server error");
        }
    }
    let mut resp = Response::new(file_body(file, count));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(images::servable(media_type)),
    );
    if let Ok(v) = HeaderValue::from_str(&content_disposition(name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Should a browser show it anyway, it runs nothing and loads nothing.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    // An id's bytes never change; only the reader who fetched them may keep them.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if range.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

/// The single byte range (first and last byte, inclusive) a `Range` header asks of a file of
/// `len` bytes: Ok(None) for the whole file (no header, or one this server does not split a
/// file for: several ranges, another unit, a malformed one, which RFC 9110 lets it ignore),
/// Err(()) when the range starts beyond the end (416).
fn byte_range(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // A suffix: the last n bytes.
        return match last.parse::<u64>() {
            Ok(n) if n > 0 && len > 0 => Ok(Some((len - n.min(len), len - 1))),
            Ok(_) => Err(()),
            Err(_) => Ok(None),
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return Ok(None);
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match last.parse::<u64>() {
            Ok(end) if end >= start => end,
            _ => return Ok(None),
        }
    };
    if start >= len {
        return Err(());
    }
    Ok(Some((start, end.min(len - 1))))
}

/// `count` bytes of `file` from where it stands, as a streamed body (never whole in memory).
fn file_body(file: tokio::fs::File, count: u64) -> Body {
    use tokio::io::AsyncReadExt;
    const CHUNK: usize = 64 * 1024;
    let stream = futures_util::stream::unfold(file.take(count), |mut reader| async move {
        let mut buf = vec![0u8; CHUNK];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), reader))
            }
            Err(e) => Some((Err(e), reader)),
        }
    });
    Body::from_stream(stream)
}

/// A thumbnail's download name: the file's, with the thumbnail's extension.
fn thumbnail_name(name: &str, media_type: &str) -> String {
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    let ext = if media_type == "image/png" {
        "png"
    } else {
        "jpg"
    };
    format!("{stem}.thumbnail.{ext}")
}

/// `Content-Disposition: attachment` naming the file: `filename*` (RFC 8187, UTF-8
/// percent-encoded) for clients that read it, and an ASCII `filename` with everything else
/// as `_` for those that do not. The name is already safe ([`crate::names::file_name`]); the
/// encoding keeps quotes, `;` and non-ASCII out of the header's syntax.
fn content_disposition(name: &str) -> String {
    let is_attr_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b);
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if is_attr_char(b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && (is_attr_char(c as u8) || c == ' ') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// `GET /api/invites`: the live invites (200, `InviteList`).
async fn invite_list(c: Caller) -> Response {
    answer_json(admin::invites(&c.shared, &c.authed).await)
}

/// `DELETE /api/invites/{id}`: revoke a live invite (204).
async fn invite_revoke(c: Caller, Path(id): Path<String>) -> Response {
    // Not a number cannot name an invite: the same answer as an unknown one.
    let Ok(id) = id.parse::<i64>() else {
        return service_fail(store::rules::no_such_invite().into());
    };
    answer_empty(admin::revoke_invite(&c.shared, &c.authed, id).await)
}

/// `GET /api/admin/pending`: the accounts waiting for approval (200, `PendingList`).
async fn admin_pending(c: Caller) -> Response {
    answer_json(admin::pending(&c.shared, &c.authed).await)
}

/// `POST /api/admin/approve`: approve a waiting account (200, its `User`).
async fn admin_approve(c: Caller, JsonBody(req): JsonBody<UsernameRequest>) -> Response {
    answer_json(admin::approve(&c.shared, &c.authed, req.username).await)
}

/// `POST /api/admin/ban`: ban an account from the server (204).
async fn admin_ban(c: Caller, JsonBody(req): JsonBody<UsernameRequest>) -> Response {
    answer_empty(admin::set_banned(&c.shared, &c.authed, req.username, true).await)
}

/// `POST /api/admin/unban`: lift an account's ban (204).
async fn admin_unban(c: Caller, JsonBody(req): JsonBody<UsernameRequest>) -> Response {
    answer_empty(admin::set_banned(&c.shared, &c.authed, req.username, false).await)
}

/// `POST /api/admin/reject`: reject a waiting account (204).
async fn admin_reject(c: Caller, JsonBody(req): JsonBody<UsernameRequest>) -> Response {
    answer_empty(admin::reject(&c.shared, &c.authed, req.username).await)
}

async fn logout(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match bearer_user(&shared, &headers).await {
        Ok(Some(authed)) => match accounts::logout(&shared, authed.token).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => service_fail(e),
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
    if !header_has_token(headers, header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL) {
        return fail(
            ErrorCode::BadRequest,
            format!("offer the subprotocol {SUBPROTOCOL}; this server speaks only that version"),
        );
    }
    let (authed, slot) = match bearer_user(&shared, headers).await {
        Ok(Some(a)) => match SocketSlots::take(&shared, a.user, Some(peer.ip())) {
            Ok(slots) => (Some((a, slots)), None),
            Err(message) => return fail(ErrorCode::RateLimited, message),
        },
        Ok(None) => match shared
            .unauth
            .take(peer.ip(), shared.config.max_unauthenticated_per_ip)
        {
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

/// The client's address as a trusted reverse proxy reports it: the last address in
/// `X-Forwarded-For` (the one the proxy itself appended; earlier ones came from the client and
/// prove nothing). None when the header is missing or its last entry is not an IP address.
pub(crate) fn forwarded_for(headers: &axum::http::HeaderMap) -> Option<std::net::IpAddr> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()?
        .trim();
    last.parse().ok()
}
