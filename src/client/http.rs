//! The HTTP side of the client: health check, register, login, logout (token revocation),
//! your account (profile, password, sessions, deletion), files (upload streamed from disk,
//! download streamed to disk), and following the read-only event stream ([`follow_events`]).
//! Errors are mapped from the server's `ApiError` body to [`ClientError`]. Answers are read up to
//! the protocol's body limit only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

use crate::client::{trust, ClientError, Result};
use crate::protocol::{
    limits, ApiError, Attachment, DeleteAccountRequest, Health, Invite, InviteList, InviteRequest,
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

// ---- files (docs/protocol.md, "Files") ----

/// How long an upload or download may make no progress before it counts as broken (a file
/// transfer has no overall timeout: a big one on a slow link takes as long as it takes).
const TRANSFER_STALL: Duration = Duration::from_secs(30);

/// Bytes read from disk per piece of an upload (and per progress report).
const UPLOAD_PIECE: usize = 256 * 1024;

/// The HTTP client for file transfers with `server`, trusting what [`trust::tls_config`]
/// trusts for it.
fn transfer_client(server: &Url) -> Result<Http> {
    let builder = reqwest::Client::builder()
        .user_agent(user_agent())
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(TRANSFER_STALL);
    Http::for_server(server, builder)
}

/// `POST /api/files?name=NAME`: uploads the regular file at `path` under its file name,
/// streamed from disk a piece at a time (never read whole into memory), calling
/// `progress(sent, total)` after each piece. A path that is missing, not a regular file or
/// empty is `Invalid` before anything is sent; the server's refusals keep its code (a file over
/// the limit is `Invalid` with the server's message, a full pace `RateLimited`).
pub async fn upload_file(
    server: &Url,
    token: &str,
    path: &std::path::Path,
    progress: impl Fn(u64, u64) + Send + Sync + 'static,
) -> Result<Attachment> {
    use futures_util::stream;
    use tokio::io::AsyncReadExt;

    let unreadable =
        |e: std::io::Error| ClientError::Invalid(format!("cannot read {}: {e}", path.display()));
    let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let meta = file.metadata().await.map_err(unreadable)?;
    if !meta.is_file() {
        return Err(ClientError::Invalid(format!(
            "{} is not a file",
            path.display()
        )));
    }
    let total = meta.len();
    if total == 0 {
        return Err(ClientError::Invalid(format!("{} is empty", path.display())));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut url = endpoint(server, "/api/files")?;
    url.query_pairs_mut().append_pair("name", &name);
    // Exactly the length announced, even if the file grows meanwhile.
    let reader = file.take(total);
    let body = stream::unfold(reader, |mut reader| async move {
        let mut piece = vec![0u8; UPLOAD_PIECE];
        match reader.read(&mut piece).await {
            Ok(0) => None,
            Ok(n) => {
                piece.truncate(n);
                Some((Ok(piece), reader))
            }
            Err(e) => Some((Err(e), reader)),
        }
    });
    let mut sent = 0u64;
    let body = futures_util::StreamExt::map(body, move |piece: std::io::Result<Vec<u8>>| {
        if let Ok(p) = &piece {
            sent += p.len() as u64;
            progress(sent, total);
        }
        piece
    });
    let http = transfer_client(server)?;
    let req = http
        .client
        .post(url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_LENGTH, total)
        .body(reqwest::Body::wrap_stream(body));
    let resp = http.send(req).await?;
    decode(resp).await
}

/// `GET {path}` (a file, a thumbnail or an avatar, see "Files") into a new file at `dest`,
/// streamed: the bytes go to a private temporary file beside `dest` that is renamed into place
/// only when whole, so an interrupted download leaves nothing at `dest`; `Conflict` when a
/// file appeared at `dest` meanwhile (it is kept). Returns the size.
pub async fn download_to(
    server: &Url,
    token: &str,
    path: &str,
    dest: &std::path::Path,
) -> Result<u64> {
    use tokio::io::AsyncWriteExt;

    let http = transfer_client(server)?;
    let resp = http
        .send(http.request(reqwest::Method::GET, path)?.bearer_auth(token))
        .await?;
    if !resp.status().is_success() {
        return decode::<serde_json::Value>(resp).await.map(|_| 0);
    }
    let local =
        |e: std::io::Error| ClientError::Internal(format!("cannot write {}: {e}", dest.display()));
    let dir = dest.parent().unwrap_or(std::path::Path::new("."));
    // Removed again if anything below fails (the temporary file's drop).
    let part = tempfile::Builder::new()
        .prefix(".natter-part-")
        .tempfile_in(dir)
        .map_err(local)?;
    let mut out = tokio::fs::File::from_std(part.as_file().try_clone().map_err(local)?);
    let mut resp = resp;
    let mut size = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        out.write_all(&chunk).await.map_err(local)?;
        size += chunk.len() as u64;
    }
    out.sync_all().await.map_err(local)?;
    drop(out);
    // Never over a file that is there (a name chosen meanwhile by someone else).
    part.persist_noclobber(dest).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            ClientError::Conflict(format!("{} exists already", dest.display()))
        } else {
            local(e.error)
        }
    })?;
    Ok(size)
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
