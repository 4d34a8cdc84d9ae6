//! Shared helpers for integration tests: start a real Natter server in-process on 127.0.0.1:0
//! with a temporary data directory, register users over real HTTP, and talk to it with a small
//! raw WebSocket client (tokio-tungstenite) that speaks the wire protocol as JSON.
//!
//! Use it from a test file with `mod support;`. Not every test file uses every helper.
#![allow(dead_code)]

pub mod cli;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use natter::protocol::{
    ClientFrame, ConvId, Conversation, ErrorCode, Message as ChatMessage, Reply, ServerFrame,
    Session, Target, SUBPROTOCOL,
};
use natter::server::{BusLocation, ServerConfig, ServerError};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery";
/// How long a helper waits for an expected frame before failing the test.
pub const WAIT: Duration = Duration::from_secs(10);

/// With `NATTER_TEST_POSTGRES` set (a URL of a PostgreSQL server's `postgres` database, as
/// `scripts/postgres start` prints), every test server stores in PostgreSQL instead of SQLite:
/// a database of its own, named in its data directory so a restart over that directory finds
/// it again. The same tests then prove the same behaviour on both backends.
pub async fn postgres_store(dir: &std::path::Path) -> Option<natter::server::StoreLocation> {
    let admin = std::env::var("NATTER_TEST_POSTGRES").ok()?;
    let name_file = dir.join("postgres-database");
    let name = match std::fs::read_to_string(&name_file) {
        Ok(name) => name,
        Err(_) => {
            let name = format!("natter_test_{}", Uuid::new_v4().simple());
            let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                .await
                .expect("connect to the test PostgreSQL server");
            tokio::spawn(connection);
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create a test database");
            std::fs::write(&name_file, &name).expect("remember the database");
            name
        }
    };
    let mut url = url::Url::parse(&admin).expect("NATTER_TEST_POSTGRES is a URL");
    url.set_path(&name);
    Some(natter::server::StoreLocation::Postgres(url.to_string()))
}

/// Whether test servers store in PostgreSQL (see [`postgres_store`]).
pub fn on_postgres() -> bool {
    std::env::var_os("NATTER_TEST_POSTGRES").is_some()
}

/// With `NATTER_TEST_REDIS` set (`redis://127.0.0.1:PORT`, as `scripts/redis start` prints),
/// every test server links through the Redis bus as well, on a channel named after its store:
/// nodes that share a PostgreSQL database share a channel (a cluster), other test servers never
/// hear each other.
pub fn redis_bus(store: Option<&natter::server::StoreLocation>) -> Option<BusLocation> {
    let url = std::env::var("NATTER_TEST_REDIS").ok()?;
    let channel = match store {
        Some(natter::server::StoreLocation::Postgres(db)) => url::Url::parse(db)
            .ok()?
            .path()
            .trim_start_matches('/')
            .to_string(),
        _ => format!("natter_test_{}", Uuid::new_v4().simple()),
    };
    Some(BusLocation::parse(&url, &channel).expect("a Redis bus"))
}

/// Whether test servers link through Redis (see [`redis_bus`]).
pub fn on_redis() -> bool {
    std::env::var_os("NATTER_TEST_REDIS").is_some()
}

/// `natter-server --data-dir DIR [--store URL] admin ARGS...` on `server`'s store (of a
/// cluster, give its first node: its directory names the shared database): whether it
/// succeeded, and its stdout and stderr.
pub async fn natter_server_admin(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter-server"));
    cmd.arg("--data-dir").arg(server.dir.path());
    if let Some(natter::server::StoreLocation::Postgres(url)) =
        postgres_store(server.dir.path()).await
    {
        cmd.args(["--store", &url]);
    }
    let out = cmd
        .arg("admin")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run natter-server admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
    http: reqwest::Client,
}

impl TestServer {
    /// A server with default settings.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A server whose config `tweak` may change (short heartbeats, low limits...).
    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        Self::start_in(tempfile::tempdir().expect("tempdir"), tweak).await
    }

    /// A server on an existing data directory (to restart over the same data).
    pub async fn start_in(
        dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        Self::start_at("127.0.0.1:0".parse().expect("addr"), dir, tweak).await
    }

    /// [`TestServer::start_in`] on the address `addr`: a server that comes back where its
    /// clients left it (they reconnect to the same address).
    pub async fn start_at(
        addr: SocketAddr,
        dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let mut config = ServerConfig::new(dir.path());
        // Tests create many accounts from 127.0.0.1; tests of the limit set it low again.
        config.registrations_per_ip = 10_000;
        config.store = postgres_store(dir.path()).await;
        tweak(&mut config);
        if config.bus.is_none() {
            config.bus = redis_bus(config.store.as_ref());
        }
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(natter::server::run(listener, config, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            dir,
            shutdown: Some(tx),
            task: Some(task),
            http: reqwest::Client::new(),
        }
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// POST JSON to `path`, returning status and body text.
    pub async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
        token: Option<&str>,
    ) -> (u16, String) {
        let mut req = self.http.post(self.http_url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("http request");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// Register `name` with [`PASSWORD`]; panics unless it succeeds.
    pub async fn register(&self, name: &str) -> Session {
        let (status, body) = self
            .post(
                "/api/register",
                serde_json::json!({"username": name, "password": PASSWORD}),
                None,
            )
            .await;
        assert_eq!(status, 201, "register {name}: {body}");
        serde_json::from_str(&body).expect("session json")
    }

    /// Log in with [`PASSWORD`]: status and body.
    pub async fn try_login(&self, name: &str) -> (u16, String) {
        self.post(
            "/api/login",
            serde_json::json!({"username": name, "password": PASSWORD}),
            None,
        )
        .await
    }

    /// Log in; panics unless it succeeds.
    pub async fn login(&self, name: &str) -> Session {
        let (status, body) = self.try_login(name).await;
        assert_eq!(status, 200, "login {name}: {body}");
        serde_json::from_str(&body).expect("session json")
    }

    /// Connect with `Authorization: Bearer <token>` and read the hello.
    pub async fn connect(&self, token: &str) -> WsClient {
        let mut c = WsClient::connect(&self.ws_url(), Some(token))
            .await
            .expect("ws connect");
        c.expect_hello().await;
        c
    }

    /// Register `name` and connect as them (hello read).
    pub async fn user(&self, name: &str) -> WsClient {
        let session = self.register(name).await;
        self.connect(&session.token).await
    }

    /// A client config for this server with its profile in `dir`, reconnecting quickly.
    pub fn client_config(&self, dir: &std::path::Path) -> natter::client::ClientConfig {
        let mut c = natter::client::ClientConfig::new(
            self.http_url("").parse().expect("url"),
            dir.to_path_buf(),
        );
        c.backoff_min = Duration::from_millis(20);
        c.backoff_max = Duration::from_millis(200);
        c
    }

    /// Ask the server to shut down and wait for `run` to return.
    pub async fn stop(mut self) -> (tempfile::TempDir, Result<(), ServerError>) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server stops within 30 s")
                .expect("server task"),
            None => Ok(()),
        };
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        (dir, result)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Waits (up to [`WAIT`]) until client `c` finished its resume.
pub async fn synced(c: &natter::client::Client) {
    tokio::time::timeout(WAIT, c.wait_synced())
        .await
        .expect("synced in time")
        .expect("synced");
}

/// Sends `text` to `conv` from client `c` and waits (up to [`WAIT`]) until the server
/// acknowledged it (the local history shows it with its seq).
pub async fn send_acknowledged(
    c: &natter::client::Client,
    conv: natter::protocol::ConvId,
    text: &str,
) {
    c.send(natter::client::Target::Conv(conv), text)
        .await
        .expect("send");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !c
        .history(conv, None, 10)
        .await
        .expect("history")
        .iter()
        .any(|m| m.text == text && m.seq.is_some())
    {
        assert!(tokio::time::Instant::now() < deadline, "never acknowledged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next `Message` event of `rx` whose message matches `pred` (up to [`WAIT`]).
pub async fn next_message(
    rx: &mut tokio::sync::broadcast::Receiver<natter::client::ClientEvent>,
    mut pred: impl FnMut(&natter::client::LocalMessage) -> bool,
) -> natter::client::LocalMessage {
    use natter::client::{ClientEvent, MessageEvent};
    use tokio::sync::broadcast::error::RecvError;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ClientEvent::Message(MessageEvent { message: m, .. }))) if pred(&m) => return m,
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
            other => panic!("no matching message: {other:?}"),
        }
    }
}

/// The HTTP status of a failed WebSocket handshake (e.g. 401), or None if it did not fail so.
pub fn handshake_status(e: &tungstenite::Error) -> Option<u16> {
    match e {
        tungstenite::Error::Http(resp) => Some(resp.status().as_u16()),
        _ => None,
    }
}

/// A raw protocol client over a real WebSocket.
pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Frames that arrived while waiting for something else, oldest first.
    pub pending: VecDeque<ServerFrame>,
    /// The hello frame, once read.
    pub hello: Option<ServerFrame>,
}

impl WsClient {
    /// Open a socket offering `natter.v1`, with a bearer token when given. Does not read.
    pub async fn connect(url: &str, token: Option<&str>) -> Result<WsClient, tungstenite::Error> {
        let mut req = url.into_client_request()?;
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        if let Some(t) = token {
            req.headers_mut().insert(
                "Authorization",
                HeaderValue::from_str(&format!("Bearer {t}")).expect("header"),
            );
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(WsClient::from_stream(ws))
    }

    pub fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> WsClient {
        WsClient {
            ws,
            next_id: 0,
            pending: VecDeque::new(),
            hello: None,
        }
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Send a raw WebSocket message.
    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("ws send");
    }

    /// Send a client frame as JSON text.
    pub async fn send_frame(&mut self, frame: &ClientFrame) {
        let text = serde_json::to_string(frame).expect("json");
        self.send_raw(Message::text(text)).await;
    }

    /// The next server frame from the socket (not from `pending`), skipping pings. None when the
    /// socket closed. Panics after [`WAIT`].
    pub async fn recv(&mut self) -> Option<ServerFrame> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Some(
                        serde_json::from_str(&t)
                            .unwrap_or_else(|e| panic!("bad server frame {t}: {e}")),
                    )
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next frame, from `pending` first.
    pub async fn next(&mut self) -> Option<ServerFrame> {
        match self.pending.pop_front() {
            Some(f) => Some(f),
            None => self.recv().await,
        }
    }

    /// Read the hello frame (must be the first frame).
    pub async fn expect_hello(&mut self) -> ServerFrame {
        let f = self.recv().await.expect("hello");
        assert!(
            matches!(f, ServerFrame::Hello { .. }),
            "first frame must be hello, got {f:?}"
        );
        self.hello = Some(f.clone());
        f
    }

    /// Send a request built from a fresh id and wait for its answer; other frames go to
    /// `pending`.
    pub async fn request(
        &mut self,
        make: impl FnOnce(u64) -> ClientFrame,
    ) -> Result<Reply, (ErrorCode, String)> {
        let id = self.next_id();
        self.send_frame(&make(id)).await;
        self.answer(id).await
    }

    /// Wait for the answer to request `id`.
    pub async fn answer(&mut self, id: u64) -> Result<Reply, (ErrorCode, String)> {
        loop {
            match self.recv().await {
                Some(ServerFrame::Ok { id: got, result }) if got == id => return Ok(result),
                Some(ServerFrame::Error {
                    id: Some(got),
                    code,
                    message,
                }) if got == id => return Err((code, message)),
                Some(other) => self.pending.push_back(other),
                None => panic!("socket closed while waiting for the answer to {id}"),
            }
        }
    }

    /// Watch the presence of `names` (replacing the last watch set); returns who of them is
    /// online, as answered.
    pub async fn watch(&mut self, names: &[&str]) -> Vec<String> {
        let users = names.iter().map(|n| n.to_string()).collect();
        match self
            .request(|id| ClientFrame::WatchPresence { id, users })
            .await
        {
            Ok(Reply::Watching { online }) => online,
            other => panic!("expected watching, got {other:?}"),
        }
    }

    /// Send `text` to a conversation and return the acked message.
    pub async fn send_text(&mut self, conv: ConvId, text: &str) -> ChatMessage {
        self.send_with_id(conv, text, Uuid::new_v4())
            .await
            .expect("send acked")
    }

    pub async fn send_with_id(
        &mut self,
        conv: ConvId,
        text: &str,
        cmid: Uuid,
    ) -> Result<ChatMessage, (ErrorCode, String)> {
        let text = text.to_string();
        match self
            .request(|id| ClientFrame::Send {
                id,
                target: Target::Conv(conv),
                client_msg_id: cmid,
                text,
                reply_to: None,
                attachments: Vec::new(),
            })
            .await?
        {
            Reply::Sent { message } => Ok(message),
            other => panic!("expected sent, got {other:?}"),
        }
    }

    /// Send a frame that commits one conversation event (`send`, `edit`, `delete`, `react`)
    /// built from a fresh request id, and return the event the `sent` answer carries.
    pub async fn event(
        &mut self,
        make: impl FnOnce(u64) -> ClientFrame,
    ) -> Result<ChatMessage, (ErrorCode, String)> {
        match self.request(make).await? {
            Reply::Sent { message } => Ok(message),
            other => panic!("expected sent, got {other:?}"),
        }
    }

    /// Create room `name` (a private one with `private`): the conversation of the `joined`
    /// answer.
    pub async fn create_room(&mut self, name: &str, private: bool) -> Conversation {
        let name = name.to_string();
        match self
            .request(|id| ClientFrame::CreateRoom { id, name, private })
            .await
        {
            Ok(Reply::Joined { conversation }) => conversation,
            other => panic!("create_room: {other:?}"),
        }
    }

    /// Send `text` as a direct message to user `to`.
    pub async fn send_dm(
        &mut self,
        to: &str,
        text: &str,
    ) -> Result<ChatMessage, (ErrorCode, String)> {
        let (to, text) = (to.to_string(), text.to_string());
        match self
            .request(|id| ClientFrame::Send {
                id,
                target: Target::To(to),
                client_msg_id: Uuid::new_v4(),
                text,
                reply_to: None,
                attachments: Vec::new(),
            })
            .await?
        {
            Reply::Sent { message } => Ok(message),
            other => panic!("expected sent, got {other:?}"),
        }
    }

    /// One `history` page: the messages and `has_more`.
    pub async fn history(
        &mut self,
        conv: ConvId,
        before: Option<i64>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool), (ErrorCode, String)> {
        match self
            .request(|id| ClientFrame::History {
                id,
                conv,
                before,
                after,
                limit,
            })
            .await?
        {
            Reply::History {
                messages, has_more, ..
            } => Ok((messages, has_more)),
            other => panic!("expected history, got {other:?}"),
        }
    }

    /// Every message of a conversation, paging forward from the start.
    pub async fn all_history(&mut self, conv: ConvId) -> Vec<ChatMessage> {
        let mut all: Vec<ChatMessage> = Vec::new();
        loop {
            let after = all.last().map_or(0, |m| m.seq);
            let (page, has_more) = self
                .history(conv, None, Some(after), 200)
                .await
                .expect("history");
            all.extend(page);
            if !has_more {
                return all;
            }
        }
    }

    /// Wait for a pushed frame matching `pred` (from `pending` or the socket); frames that do
    /// not match are dropped.
    pub async fn wait_for(&mut self, mut pred: impl FnMut(&ServerFrame) -> bool) -> ServerFrame {
        if let Some(pos) = self.pending.iter().position(&mut pred) {
            return self.pending.remove(pos).expect("present");
        }
        loop {
            match self.recv().await {
                Some(f) if pred(&f) => return f,
                Some(_) => continue,
                None => panic!("socket closed while waiting for a frame"),
            }
        }
    }

    /// The next `error` frame, skipping pushes (other users may be chatting meanwhile).
    pub async fn next_error(&mut self) -> Option<ServerFrame> {
        Some(
            self.wait_for(|f| matches!(f, ServerFrame::Error { .. }))
                .await,
        )
    }

    /// Read until the server closes; the close code, or None when the socket ended without one.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("close within the wait")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The id of the `general` room from the hello.
    pub fn general(&self) -> ConvId {
        match &self.hello {
            Some(ServerFrame::Hello { conversations, .. }) => {
                conversations
                    .iter()
                    .find(|c| c.name == "general")
                    .expect("general in hello")
                    .id
            }
            _ => panic!("no hello yet"),
        }
    }
}

/// Overwrites the page in the middle of the (closed) SQLite database at `path` with garbage and
/// returns its number; checks through SQLite that the file is now really damaged. The WAL is
/// checkpointed into the file first, so the page holds data rather than a stale copy.
pub fn damage_middle_page(path: &std::path::Path) -> u64 {
    let page_size: u64 = {
        let db = rusqlite::Connection::open(path).unwrap();
        db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        db.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap()
    };
    let len = std::fs::metadata(path).unwrap().len();
    let page = len / page_size / 2;
    let mut bytes = std::fs::read(path).unwrap();
    let start = (page * page_size) as usize;
    for (i, b) in bytes[start..start + page_size as usize]
        .iter_mut()
        .enumerate()
    {
        *b = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    std::fs::write(path, bytes).unwrap();
    let check: String = rusqlite::Connection::open(path)
        .unwrap()
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .unwrap_or_else(|e| e.to_string());
    assert_ne!(check, "ok", "the damage must be real");
    page + 1
}

/// The SQLite files of a data or profile directory: the database, then its WAL and shared memory.
pub fn db_files(dir: &std::path::Path) -> [std::path::PathBuf; 3] {
    ["natter.db", "natter.db-wal", "natter.db-shm"].map(|f| dir.join(f))
}

/// Asserts that `dir` is 0700 and that its database files, each that exists, are 0600.
#[cfg(unix)]
pub fn assert_private(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for f in db_files(dir).iter().filter(|f| f.exists()) {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
}

/// Makes `dir` 0755 and its existing database files 0644, as an older version left them.
#[cfg(unix)]
pub fn loosen(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in db_files(dir).iter().filter(|f| f.exists()) {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

/// Resident set size of this process in KiB (Linux), for memory-bound checks.
pub fn rss_kib() -> u64 {
    proc_rss_kib("self")
}

/// Resident set size in KiB of the process `/proc/<proc>` (a pid, or `self`).
pub fn proc_rss_kib(proc: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{proc}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// A real `natter-server` child process (for kill/restart and signal tests). Pass
/// `env!("CARGO_BIN_EXE_natter-server")` as `bin`: only integration tests know that path.
pub struct ServerProcess {
    pub child: tokio::process::Child,
    /// host:port it listens on.
    pub addr: String,
}

impl ServerProcess {
    /// Start the binary on 127.0.0.1:0 over `data_dir` with `extra` flags, and read the bound
    /// address from its banner line.
    pub async fn spawn(bin: &str, data_dir: &std::path::Path, extra: &[&str]) -> ServerProcess {
        Self::spawn_with(bin, data_dir, extra, std::process::Stdio::inherit()).await
    }

    /// As [`ServerProcess::spawn`], with the log (stderr) piped: read it from `child.stderr`.
    pub async fn spawn_logged(
        bin: &str,
        data_dir: &std::path::Path,
        extra: &[&str],
    ) -> ServerProcess {
        Self::spawn_with(bin, data_dir, extra, std::process::Stdio::piped()).await
    }

    async fn spawn_with(
        bin: &str,
        data_dir: &std::path::Path,
        extra: &[&str],
        stderr: std::process::Stdio,
    ) -> ServerProcess {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn natter-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("server starts")
            .expect("read banner")
            .expect("a banner line");
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected banner {line}"))
            .to_string();
        ServerProcess { child, addr }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}
