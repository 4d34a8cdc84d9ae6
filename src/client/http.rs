//! The HTTP side of the client: health check, register, login, logout (token revocation),
//! your account (profile, password, sessions, deletion), and following the read-only event
//! stream ([`follow_events`]).
//! Errors are mapped from the server's `ApiError` body to [`ClientError`]. Answers are read up to
//! the protocol's body limit only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

use crate::client::{trust, ClientError, Result};
use crate::protocol::{
    limits, ApiError, DeleteAccountRequest, Health, Invite, InviteList, InviteRequest,
    LoginRequest, PasswordRequest, PendingList, ProfileRequest, RegisterRequest, Session,
    SessionList, User, UsernameRequest,
};

/// What the server's session list calls a session signed in from here (the `User-Agent`):
/// the program (`natter`, `natter-desktop`), its version and the operating system.
fn user_agent() -> String {
    let program = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "natter".into());
    format!(
        "{program} {} on {}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS
    )
}

/// An HTTP client for one server, trusting what [`trust::tls_config`] trusts for it.
struct Http {
    client: reqwest::Client,
    server: Url,
    refusal: Arc<Mutex<Option<trust::Refusal>>>,
}

impl Http {
    fn for_server(server: &Url, builder: reqwest::ClientBuilder) -> Result<Http> {
        let (tls, refusal) = trust::tls_config(server);
        let client = builder
            .use_preconfigured_tls((*tls).clone())
            .build()
            .map_err(|e| ClientError::Internal(format!("http client: {e}")))?;
        Ok(Http {
            client,
            server: server.clone(),
            refusal,
        })
    }

    /// The client for one request and its answer.
    fn new(server: &Url) -> Result<Http> {
        let builder = reqwest::Client::builder()
            .user_agent(user_agent())
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(10));
        Http::for_server(server, builder)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> Result<reqwest::RequestBuilder> {
        Ok(self.client.request(method, endpoint(&self.server, path)?))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        req.send().await.map_err(|e| self.failed(e))
    }

    /// A refused certificate says so (its own error kind); anything else is [`transport`].
    fn failed(&self, e: reqwest::Error) -> ClientError {
        match self
            .refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            Some(refusal) => refusal.to_error(&self.server),
            None => transport(e),
        }
    }
}

fn endpoint(server: &Url, path: &str) -> Result<Url> {
    match server.scheme() {
        "http" | "https" => {}
        other => {
            return Err(ClientError::Invalid(format!(
                "the server address must start with http:// or https://, not {other}://"
            )))
        }
    }
    server
        .join(path)
        .map_err(|e| ClientError::Invalid(format!("bad server address: {e}")))
}

fn transport(e: reqwest::Error) -> ClientError {
    if e.is_connect() || e.is_timeout() {
        ClientError::Offline(format!("cannot reach the server: {e}"))
    } else {
        ClientError::Server(format!("request failed: {e}"))
    }
}

/// The whole body of an answer, refused beyond the protocol's limit on API bodies: a broken or
/// hostile server cannot make the client read (or allocate) without bound.
async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>> {
    let too_large = || {
        ClientError::Server(format!(
            "the server's answer is larger than {} bytes, the protocol's limit",
            limits::MAX_HTTP_BODY_BYTES
        ))
    };
    if resp
        .content_length()
        .is_some_and(|n| n > limits::MAX_HTTP_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > limits::MAX_HTTP_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn decode<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T> {
    let status = resp.status();
    let body = read_body(resp).await?;
    // 202 is an account created but waiting for approval: an ApiError says so.
    if status.is_success() && status != reqwest::StatusCode::ACCEPTED {
        return serde_json::from_slice(&body)
            .map_err(|e| ClientError::Server(format!("unexpected answer from the server: {e}")));
    }
    match serde_json::from_slice::<ApiError>(&body) {
        Ok(err) => Err(ClientError::from_server(err.code, err.message)),
        Err(_) if status == reqwest::StatusCode::UNAUTHORIZED => Err(ClientError::Unauthorized(
            "the server refused the credentials".into(),
        )),
        Err(_) => Err(ClientError::Server(format!("the server answered {status}"))),
    }
}

/// `GET /api/health`: checks that a Natter server answers at `server`.
pub async fn health(server: &Url) -> Result<Health> {
    let http = Http::new(server)?;
    let resp = http
        .send(http.request(reqwest::Method::GET, "/api/health")?)
        .await?;
    decode(resp).await
}

/// `POST /api/register`: creates an account and returns its first session.
pub async fn register(server: &Url, req: RegisterRequest) -> Result<Session> {
    let http = Http::new(server)?;
    let resp = http
        .send(
            http.request(reqwest::Method::POST, "/api/register")?
                .json(&req),
        )
        .await?;
    decode(resp).await
}

/// `POST /api/login` from a device never signed in before (see [`super::login_in_profile`]).
pub async fn login(server: &Url, username: &str, password: &str) -> Result<Session> {
    login_as(server, username, password, None).await
}

/// `POST /api/login`, presenting `device_token` (from an earlier session of this user) so the
/// server's sign-in limits treat this device as known.
pub async fn login_as(
    server: &Url,
    username: &str,
    password: &str,
    device_token: Option<String>,
) -> Result<Session> {
    let http = Http::new(server)?;
    let req = http
        .request(reqwest::Method::POST, "/api/login")?
        .json(&LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            device_token,
            label: None,
        });
    let resp = http.send(req).await?;
    decode(resp).await
}

/// `POST /api/logout`: revokes `token` on the server (its open sockets are closed with 4001).
pub async fn logout_token(server: &Url, token: &str) -> Result<()> {
    let http = Http::new(server)?;
    let req = http
        .request(reqwest::Method::POST, "/api/logout")?
        .bearer_auth(token);
    let resp = http.send(req).await?;
    no_content(resp).await
}

/// An answer without a body (204): Ok, or the server's error.
async fn no_content(resp: reqwest::Response) -> Result<()> {
    if resp.status().is_success() {
        return Ok(());
    }
    decode::<serde_json::Value>(resp).await.map(|_| ())
}

// ---- your account (docs/protocol.md, "Your account") ----

/// A signed-in call to `path` with an optional JSON body.
async fn account_call(
    method: reqwest::Method,
    server: &Url,
    path: &str,
    token: &str,
    body: Option<&(impl serde::Serialize + ?Sized)>,
) -> Result<reqwest::Response> {
    let http = Http::new(server)?;
    let mut req = http.request(method, path)?.bearer_auth(token);
    if let Some(body) = body {
        req = req.json(body);
    }
    http.send(req).await
}

/// `POST /api/account/profile`: the profile as it is now.
pub async fn set_profile(server: &Url, token: &str, req: &ProfileRequest) -> Result<User> {
    let path = "/api/account/profile";
    decode(account_call(reqwest::Method::POST, server, path, token, Some(req)).await?).await
}

/// `POST /api/account/password`.
pub async fn change_password(server: &Url, token: &str, req: &PasswordRequest) -> Result<()> {
    let path = "/api/account/password";
    no_content(account_call(reqwest::Method::POST, server, path, token, Some(req)).await?).await
}

/// `GET /api/account/sessions`: newest first.
pub async fn sessions(server: &Url, token: &str) -> Result<SessionList> {
    let path = "/api/account/sessions";
    decode(account_call(reqwest::Method::GET, server, path, token, None::<&()>).await?).await
}

/// `DELETE /api/account/sessions/{id}`.
pub async fn revoke_session(server: &Url, token: &str, id: &str) -> Result<()> {
    // The id is the server's own (32 hex digits); anything else must not reshape the path.
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ClientError::NotFound(format!("no session {id:?}")));
    }
    let path = format!("/api/account/sessions/{id}");
    no_content(account_call(reqwest::Method::DELETE, server, &path, token, None::<&()>).await?)
        .await
}

/// `POST /api/account/delete`.
pub async fn delete_account(server: &Url, token: &str, req: &DeleteAccountRequest) -> Result<()> {
    let path = "/api/account/delete";
    no_content(account_call(reqwest::Method::POST, server, path, token, Some(req)).await?).await
}

// ---- run by its host (docs/protocol.md, "Run by its host"); admins only ----

/// `POST /api/invites`: the new invite, with its code.
pub async fn create_invite(server: &Url, token: &str, req: &InviteRequest) -> Result<Invite> {
    decode(
        account_call(
            reqwest::Method::POST,
            server,
            "/api/invites",
            token,
            Some(req),
        )
        .await?,
    )
    .await
}

/// `GET /api/invites`: the live invites, oldest first.
pub async fn invites(server: &Url, token: &str) -> Result<InviteList> {
    let path = "/api/invites";
    decode(account_call(reqwest::Method::GET, server, path, token, None::<&()>).await?).await
}

/// `DELETE /api/invites/{id}`.
pub async fn revoke_invite(server: &Url, token: &str, id: i64) -> Result<()> {
    let path = format!("/api/invites/{id}");
    no_content(account_call(reqwest::Method::DELETE, server, &path, token, None::<&()>).await?)
        .await
}

/// `GET /api/admin/pending`: the accounts waiting for approval, oldest first.
pub async fn pending(server: &Url, token: &str) -> Result<PendingList> {
    let path = "/api/admin/pending";
    decode(account_call(reqwest::Method::GET, server, path, token, None::<&()>).await?).await
}

/// `POST /api/admin/approve`: the approved account.
pub async fn approve(server: &Url, token: &str, username: &str) -> Result<User> {
    let req = UsernameRequest {
        username: username.to_owned(),
    };
    let path = "/api/admin/approve";
    decode(account_call(reqwest::Method::POST, server, path, token, Some(&req)).await?).await
}

/// What an admin does to one account with no answer but 204.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountAction {
    /// `POST /api/admin/reject`: delete a waiting account.
    Reject,
    /// `POST /api/admin/ban`: ban from the server.
    Ban,
    /// `POST /api/admin/unban`: lift a ban.
    Unban,
}

/// `POST /api/admin/reject|ban|unban`.
pub async fn account_action(
    server: &Url,
    token: &str,
    action: AccountAction,
    username: &str,
) -> Result<()> {
    let path = match action {
        AccountAction::Reject => "/api/admin/reject",
        AccountAction::Ban => "/api/admin/ban",
        AccountAction::Unban => "/api/admin/unban",
    };
    let req = UsernameRequest {
        username: username.to_owned(),
    };
    no_content(account_call(reqwest::Method::POST, server, path, token, Some(&req)).await?).await
}

/// What [`follow_events`] should do after an event.
pub enum Follow {
    Continue,
    Stop,
}

/// Longest wait between reconnects of an event stream that keeps failing.
const EVENTS_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// `GET /api/events{query}` (docs/protocol.md, "Event stream"), for as long as `on_event` says
/// [`Follow::Continue`]: every event in order, the `ready` of each (re)connection included.
/// A dropped stream is reopened with `Last-Event-ID` (starting from `since` when given) after
/// the server's `retry:` delay, longer while it keeps failing, so nothing is missed or
/// repeated. Ends with `Unauthorized` when the session was signed out or expired, and with the
/// server's error when it refuses the request itself (a bad filter or id).
pub async fn follow_events(
    server: &Url,
    token: &str,
    query: &str,
    since: Option<String>,
    mut on_event: impl FnMut(&crate::stream::Event) -> Follow,
) -> Result<()> {
    use crate::stream::{limits as stream_limits, names, Parser};
    // No overall timeout: a stream lasts. Silence longer than two heartbeats means it is dead.
    let http = Http::for_server(
        server,
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(2 * stream_limits::HEARTBEAT_SECS)),
    )?;
    let url = endpoint(server, &format!("/api/events{query}"))?;
    let mut last_id = since;
    let mut retry = Duration::from_millis(stream_limits::RETRY_MS);
    let mut failures = 0u32;
    loop {
        let mut req = http.client.get(url.clone()).bearer_auth(token);
        if let Some(id) = &last_id {
            req = req.header("Last-Event-ID", id);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                let mut parser = Parser::default();
                let mut resp = resp;
                while let Ok(Some(chunk)) = resp.chunk().await {
                    for event in parser.feed(&chunk) {
                        if event.name == names::CLOSED {
                            let why = serde_json::from_str::<ApiError>(&event.data)
                                .map(|e| e.message)
                                .unwrap_or(event.data);
                            return Err(ClientError::Unauthorized(why));
                        }
                        if event.name == names::READY {
                            failures = 0;
                        }
                        last_id = event.id.clone().or(last_id);
                        if let Follow::Stop = on_event(&event) {
                            return Ok(());
                        }
                    }
                }
                if let Some(ms) = parser.retry_ms {
                    retry = Duration::from_millis(ms);
                }
            }
            Ok(resp) if resp.status().is_server_error() => {
                tracing::debug!(status = %resp.status(), "event stream refused for now")
            }
            // Refused for a reason retrying will not change.
            Ok(resp) => return decode::<serde_json::Value>(resp).await.map(|_| ()),
            Err(e) => match http.failed(e) {
                // Retrying will not make a refused certificate trusted.
                e @ (ClientError::CertificateChanged(_) | ClientError::UntrustedCertificate(_)) => {
                    return Err(e)
                }
                e => tracing::debug!(error = %e, "event stream unreachable"),
            },
        }
        failures = failures.saturating_add(1);
        let wait = retry
            .saturating_mul(1 << failures.min(4).saturating_sub(1))
            .min(EVENTS_BACKOFF_MAX);
        tokio::time::sleep(wait).await;
    }
}
