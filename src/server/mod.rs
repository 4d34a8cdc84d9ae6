//! The Natter server: HTTP API and WebSocket chat over one listener.
//!
//! [`run`] takes a bound listener, a [`ServerConfig`] and a shutdown future, so the CLI binary,
//! the desktop app's host mode and the tests all start the same server the same way
//! ([`Server::start`] then [`Server::serve`] for a caller that announces the server only once
//! its store is open). This file is the composition root; docs/architecture.md draws the layers:
//!
//! - the edges: [`http`] (routes, the upgrade) and [`connection`] (one task per socket, writing
//!   through [`outbound`]) turn the wire into calls of the [`service`]s;
//! - the [`service`]s (one per domain) validate, write through the [`store`] interface (SQLite
//!   by default, chosen by `--store`), and publish what was committed on the [`bus`];
//! - [`sse`] serves the read-only event stream (`GET /api/events`) from the hub's fan-out;
//! - the [`hub`] is this node: its sockets and presence, and the fan-out that hears the bus;
//! - [`admin`] is `natter-server admin` (roles changed on the store directly);
//! - [`auth`] and [`hasher`] keep credentials; [`clock`] is the one source of time.
//!
//! Each accepted TCP connection (optionally wrapped in TLS) is served by hyper's HTTP/1 with a
//! header read timeout (so a slowloris upgrade cannot hold a socket).
//!
//! Shutdown: stop accepting, close every socket with 1001, let HTTP requests in flight finish,
//! wait (bounded) for the sockets' close handshakes, then let the writer commit what is queued.

pub mod admin;
mod auth;
mod blobs;
mod bus;
mod clock;
mod connection;
mod hasher;
mod http;
mod hub;
pub mod images;
pub mod latency_trace;
mod outbound;
mod service;
mod sse;
mod store;

pub use self::bus::BusLocation;
pub use self::clock::Clock;
pub use self::store::{StoreError, StoreLocation};
pub use crate::protocol::Registration;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use self::bus::{local::LocalBus, Bus, NodeId};
use self::connection::{Bucket, Counts};
use self::hub::Hub;
use self::store::{OpenOptions, Storage, UserId};

/// Certificate and key (PEM files) for serving wss:// and https://.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything the server can be told. [`ServerConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The server's own directory (the SQLite database `natter.db` lives here unless `store`
    /// says otherwise).
    pub data_dir: PathBuf,
    /// Where durable state lives (`--store`); None: `natter.db` in `data_dir`.
    pub store: Option<StoreLocation>,
    /// The bus to the other nodes of a cluster (`--bus`); None: this node is alone.
    pub bus: Option<BusLocation>,
    /// How long another node may stay silent on the bus before its users count as offline.
    pub node_lease: Duration,
    /// The clock (a test's manual clock, or the system's).
    pub clock: Clock,
    /// Start with an empty database even though the data directory shows one existed (it is
    /// missing or empty). Without it such a start is refused, so lost data is noticed.
    pub init: bool,
    /// How often the server pings each socket.
    pub heartbeat_interval: Duration,
    /// How long beyond `heartbeat_interval` a silent peer is kept before close 4002.
    pub heartbeat_timeout: Duration,
    /// Origins allowed to call the HTTP API or open a socket when the request carries an
    /// `Origin` header (browser clients); others get 403. `*` allows any. Requests without
    /// `Origin` (native clients) are not affected.
    pub allowed_origins: Vec<String>,
    /// Serve TLS with this certificate when set.
    pub tls: Option<TlsConfig>,
    /// Sustained frames per second per user (token bucket refill rate).
    pub rate_limit_per_sec: u32,
    /// Frames a user may send in a burst (token bucket size).
    pub rate_burst: u32,
    /// Close a socket with 4003 once this many of its frames were rejected for rate, net of
    /// forgiveness at `rate_limit_per_sec`.
    pub flood_close_after: u32,
    /// Frames queued per socket before it is closed as a slow consumer (4000).
    pub outbound_queue: usize,
    /// Lifetime of a login token.
    pub token_ttl: Duration,
    /// Time a socket that upgraded without a token has to send `auth` (close 1008 after).
    pub auth_timeout: Duration,
    /// Time for a TLS handshake and for the HTTP request head (slowloris guard).
    pub handshake_timeout: Duration,
    /// Host names (besides IP literals and `localhost`) the HTTP API and `/ws` answer to. A
    /// request naming another host gets 421: a page that rebinds its own DNS name to this
    /// server's address cannot reach it.
    pub allowed_hosts: Vec<String>,
    /// Time for a whole HTTP request body once its head arrived (408 after).
    pub body_timeout: Duration,
    /// Sockets per IP address that have upgraded but not yet authenticated (0: no cap).
    pub max_unauthenticated_per_ip: usize,
    /// Authenticated sockets one user may have open (0: no cap).
    pub max_sockets_per_user: usize,
    /// Authenticated sockets one IP address may have open (0: no cap).
    pub max_sockets_per_ip: usize,
    /// Reverse proxies (load balancers in front of cluster nodes) whose `X-Forwarded-For` names
    /// the client: from these addresses, the last address in that header is the caller's for
    /// every per-address limit. From any other address the header is ignored (anyone can send it).
    pub trusted_proxies: Vec<IpAddr>,
    /// Failed sign-ins an IP address may make in a row before it must wait (429).
    pub failed_sign_ins_per_ip: u32,
    /// After that, one more try per this long.
    pub failed_sign_in_refill: Duration,
    /// Failed sign-ins an account may have (from any address) before each further try must
    /// wait 2^n seconds after the last failure (429).
    pub account_free_failures: u32,
    /// The longest such wait; a quiet `account_delay_cap` after its last failure, an account
    /// starts afresh.
    pub account_delay_cap: Duration,
    /// Who may create an account (`--registration`): open, with an invite, or awaiting an
    /// admin's approval. The first account on a server needs neither (it becomes the admin).
    pub registration: Registration,
    /// Accounts an IP address may create in a row before it must wait (429).
    pub registrations_per_ip: u32,
    /// After that, one more account per this long.
    pub registration_refill: Duration,
    /// Threads hashing passwords: at most this many argon2 hashes run at once, each with its
    /// own reused ~19 MiB buffer (so argon2 memory is at most this x 19 MiB).
    pub argon2_workers: usize,
    /// Sign-ins waiting for a hashing thread; beyond that the server answers 503 `busy`.
    pub argon2_queue: usize,
    /// How long the server waits for a peer to answer its close frame (TCP is closed as soon
    /// as it does).
    pub close_grace: Duration,
    /// How long shutdown waits for sockets and requests to finish.
    pub shutdown_grace: Duration,
    /// Cap on the database's size in pages (SQLite `max_page_count`): a write that needs more
    /// fails as a full disk would (`storage_full`). For fault tests that cannot mount a small
    /// file system; `None` (the default) leaves the size to the disk.
    pub max_db_pages: Option<u32>,
    /// Event streams (`GET /api/events`) one user may have open (0: no cap).
    pub max_streams_per_user: usize,
    /// Frames queued for an event stream before it is cut off as a slow reader.
    pub stream_queue: usize,
    /// Time between comment lines on an idle event stream (proxies close silent ones).
    pub stream_heartbeat: Duration,
    /// Where uploaded files are kept (`--blobs`); None: `blobs/` in `data_dir`. Nodes of a
    /// cluster name one directory they all mount.
    pub blobs: Option<PathBuf>,
    /// Largest upload, in bytes (413 beyond it, before the body is read).
    pub max_upload_bytes: u64,
    /// The bytes one user's uploads may total (413 beyond it); 0: no quota.
    pub upload_quota_bytes: u64,
    /// Uploads a user may start in a row before they must wait (429).
    pub uploads_per_user: u32,
    /// After that, one more upload per this long.
    pub upload_refill: Duration,
    /// Images decoded at once (each may take up to ~260 MiB while it is); more wait their turn.
    pub image_workers: usize,
    /// How long an upload no message carries is kept (time to send the message it was for);
    /// after that the sweep removes it, and its bytes unless something else names them.
    pub unattached_grace: Duration,
    /// Time between two sweeps of unattached uploads (each node runs its own).
    pub upload_sweep_every: Duration,
    /// Time between two reads of the admins from the store, by which a running node follows
    /// `natter-server admin grant|revoke` (each node reads its own).
    pub admin_poll: Duration,
}

impl ServerConfig {
    /// The defaults, storing data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            data_dir: data_dir.into(),
            store: None,
            bus: None,
            node_lease: Duration::from_secs(15),
            clock: Clock::system(),
            init: false,
            heartbeat_interval: Duration::from_secs(25),
            heartbeat_timeout: Duration::from_secs(10),
            allowed_origins: Vec::new(),
            tls: None,
            rate_limit_per_sec: 20,
            rate_burst: 60,
            flood_close_after: 200,
            outbound_queue: 512,
            token_ttl: Duration::from_secs(30 * 24 * 3600),
            auth_timeout: Duration::from_secs(crate::protocol::limits::AUTH_TIMEOUT_SECS),
            handshake_timeout: Duration::from_secs(10),
            allowed_hosts: Vec::new(),
            body_timeout: Duration::from_secs(crate::protocol::limits::HTTP_BODY_TIMEOUT_SECS),
            max_unauthenticated_per_ip: 16,
            max_sockets_per_user: 32,
            max_sockets_per_ip: 256,
            trusted_proxies: Vec::new(),
            failed_sign_ins_per_ip: 10,
            failed_sign_in_refill: Duration::from_secs(30),
            account_free_failures: 3,
            account_delay_cap: Duration::from_secs(15 * 60),
            registration: Registration::Open,
            registrations_per_ip: 5,
            registration_refill: Duration::from_secs(120),
            argon2_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            argon2_queue: 64,
            close_grace: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(5),
            max_db_pages: None,
            max_streams_per_user: 8,
            stream_queue: 1024,
            stream_heartbeat: Duration::from_secs(crate::stream::limits::HEARTBEAT_SECS),
            blobs: None,
            max_upload_bytes: crate::protocol::limits::DEFAULT_MAX_UPLOAD_BYTES,
            upload_quota_bytes: 1024 * 1024 * 1024,
            uploads_per_user: 30,
            upload_refill: Duration::from_secs(2),
            image_workers: 2,
            unattached_grace: Duration::from_secs(24 * 3600),
            upload_sweep_every: Duration::from_secs(10 * 60),
            admin_poll: Duration::from_secs(2),
        }
    }
}

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("the bus between nodes: {0}")]
    Bus(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot open the file store {0}: {1}")]
    Blobs(PathBuf, std::io::Error),
}

/// Counts tasks (HTTP connections, sockets) so shutdown can wait for them.
#[derive(Default)]
pub(crate) struct Tasks {
    count: AtomicUsize,
    idle: Notify,
}

pub(crate) struct TaskGuard(Arc<Shared>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.tasks.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.tasks.idle.notify_waiters();
        }
    }
}

impl Tasks {
    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub config: ServerConfig,
    pub store: Arc<dyn Storage>,
    pub bus: Arc<dyn Bus>,
    pub hub: Arc<Hub>,
    pub clock: Clock,
    pub buckets: Mutex<HashMap<UserId, Bucket>>,
    /// Sockets that have not authenticated yet, per address.
    pub unauth: Arc<Counts<IpAddr>>,
    /// Authenticated sockets per user and per address.
    pub sockets_per_user: Arc<Counts<UserId>>,
    pub sockets_per_ip: Arc<Counts<IpAddr>>,
    pub tasks: Tasks,
    /// Turns true when shutdown begins (HTTP connections and sockets still authenticating
    /// watch it).
    pub stopping: watch::Sender<bool>,
    /// Runs every argon2 hash and check (bounded threads, memory and queue).
    pub hasher: hasher::Hasher,
    /// The sign-in limits (failed sign-ins per address and account, registrations per
    /// address), shared with the other nodes of a cluster.
    pub limits: service::limits::Limits,
    /// Open event streams per user.
    pub streams_per_user: Arc<Counts<UserId>>,
    /// Tickets for event streams opened from a browser.
    pub stream_tickets: service::events::Tickets,
    /// Uploaded files' bytes.
    pub blobs: Arc<dyn blobs::BlobStore>,
    /// Uploads per user: this node's pace (a cluster's nodes each keep their own, so a user
    /// spreading uploads over N nodes may start N times as many; the quota, kept in the store,
    /// is the cluster's).
    pub uploads: auth::AddressBudget<UserId>,
    /// Permits to decode an image (bounds the memory decoding takes).
    pub image_permits: tokio::sync::Semaphore,
}

impl Shared {
    /// Open the store, load the hub from it and start the fan-out on the bus.
    pub(crate) fn start(config: ServerConfig) -> Result<Arc<Shared>, ServerError> {
        let location = config
            .store
            .clone()
            .unwrap_or_else(|| StoreLocation::in_data_dir(&config.data_dir));
        let options = OpenOptions {
            init: config.init,
            max_db_pages: config.max_db_pages,
        };
        let (store, snapshot) = store::open(&location, options)?;
        let node: NodeId = rand::random();
        let clock = config.clock.clone();
        let bus: Arc<dyn Bus> = match &config.bus {
            None => Arc::new(LocalBus::default()),
            Some(location) => location
                .start(node, config.node_lease)
                .map_err(ServerError::Bus)?,
        };
        let hub = Arc::new(Hub::new(
            snapshot,
            node,
            Arc::downgrade(&bus),
            config.heartbeat_interval.as_millis() as u64,
            clock.clone(),
        ));
        // Both end when the server does: the fan-out when the bus goes, presence on shutdown.
        hub.attach_store(&store, bus.reorder_wait());
        hub.clone().start_fanout(bus.subscribe())?;
        tokio::spawn(hub.clone().run_presence());
        tracing::debug!(node = format_args!("{node:x}"), "node started");
        // In a cluster the sign-in limits and event-stream tickets are shared: this node's
        // changes go out on the bus, the others' are followed from it.
        let clustered = config.bus.is_some();
        let limits =
            service::limits::Limits::new(&config, clustered.then(|| (Arc::downgrade(&bus), node)));
        let node_changes = clustered.then(|| bus.subscribe());
        let blobs_dir = config
            .blobs
            .clone()
            .unwrap_or_else(|| config.data_dir.join("blobs"));
        let blobs = blobs::DirBlobs::open(&blobs_dir)
            .map_err(|e| ServerError::Blobs(blobs_dir.clone(), e))?;
        let shared = Arc::new(Shared {
            store,
            bus,
            hub,
            clock,
            buckets: Mutex::new(HashMap::new()),
            unauth: Counts::new(),
            sockets_per_user: Counts::new(),
            sockets_per_ip: Counts::new(),
            tasks: Tasks::default(),
            stopping: watch::channel(false).0,
            hasher: hasher::Hasher::start(config.argon2_workers, config.argon2_queue)?,
            limits,
            streams_per_user: Counts::new(),
            stream_tickets: service::events::Tickets::default(),
            blobs: Arc::new(blobs),
            uploads: auth::AddressBudget::new(config.uploads_per_user, config.upload_refill),
            image_permits: tokio::sync::Semaphore::new(config.image_workers.max(1)),
            config,
        });
        tokio::spawn(service::files::sweep_periodically(Arc::downgrade(&shared)));
        tokio::spawn(service::admin::follow_admins(Arc::downgrade(&shared)));
        if let Some(changes) = node_changes {
            tokio::spawn(service::follow_nodes(
                Arc::downgrade(&shared),
                node,
                changes,
            ));
        }
        Ok(shared)
    }

    pub(crate) fn track(self: &Arc<Self>) -> TaskGuard {
        self.tasks.count.fetch_add(1, Ordering::AcqRel);
        TaskGuard(self.clone())
    }
}

fn load_tls(tls: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    let tls_error = |e: crate::tls::TlsError| ServerError::Tls(e.to_string());
    let certs = crate::tls::read_certificates(&tls.cert).map_err(tls_error)?;
    let key = crate::tls::read_private_key(&tls.key).map_err(tls_error)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serve Natter on `listener` until `shutdown` resolves, then shut down gracefully.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::start(listener, config)?.serve(shutdown).await
}

/// A server ready to serve: TLS loaded, the store opened and checked, the hub loaded. Only then
/// does a caller announce it (the binary prints "listening" after [`Server::start`]).
pub struct Server {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
}

impl Server {
    /// Load TLS and open the store; fails (serving nothing) when either is bad. Call it inside a
    /// Tokio runtime.
    pub fn start(listener: TcpListener, config: ServerConfig) -> Result<Server, ServerError> {
        let tls = config.tls.as_ref().map(load_tls).transpose()?;
        let shared = Shared::start(config)?;
        Ok(Server {
            listener,
            tls,
            shared,
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The server's stable id (from its store), as `hello` tells it.
    pub fn server_id(&self) -> &str {
        self.shared.hub.server_id()
    }

    /// Serve until `shutdown` resolves, then shut down gracefully.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            tls,
            shared,
        } = self;
        serve(listener, tls, shared, shutdown).await
    }
}

async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (store, hub) = (shared.store.clone(), shared.hub.clone());
    let router = http::router(shared.clone());
    let stop_rx = shared.stopping.subscribe();
    tracing::info!(addr = ?listener.local_addr().ok(), tls = tls.is_some(), "natter server listening");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let guard = shared.track();
                let (router, tls, shared, stop) = (router.clone(), tls.clone(), shared.clone(), stop_rx.clone());
                tokio::spawn(async move {
                    let _guard = guard;
                    match tls {
                        Some(acceptor) => {
                            match tokio::time::timeout(shared.config.handshake_timeout, acceptor.accept(tcp)).await {
                                Ok(Ok(stream)) => serve_http(stream, peer, router, &shared, stop).await,
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        }
                        None => serve_http(tcp, peer, router, &shared, stop).await,
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down: closing sockets");
    shared.stopping.send_replace(true);
    hub.shutdown();
    if tokio::time::timeout(shared.config.shutdown_grace, shared.tasks.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time");
    }
    let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
    tracing::info!("shut down");
    Ok(())
}

async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    router: axum::Router,
    shared: &Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let abort = http::ConnAbort::default();
    let service_abort = abort.clone();
    let trusted = shared.config.trusted_proxies.contains(&peer.ip());
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let caller = match trusted {
                true => http::forwarded_for(req.headers())
                    .map_or(peer, |ip| SocketAddr::new(ip, peer.port())),
                false => peer,
            };
            req.extensions_mut().insert(ConnectInfo(caller));
            req.extensions_mut().insert(service_abort.clone());
            router.clone().oneshot(req)
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.handshake_timeout)
        .max_buf_size(16 * 1024);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        }
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(shared.config.shutdown_grace, conn).await;
        }
        // A route gave up on this connection (an event stream whose reader stopped reading):
        // dropping it closes the TCP connection, whatever is still unwritten.
        _ = abort.aborted() => tracing::debug!(%peer, "HTTP connection closed by its route"),
    }
}

/// The server without a listener, for the fuzz targets in `fuzz/`: the same state [`run`]
/// starts (real store, hub and writer) and the same path each accepted connection takes (hyper
/// HTTP/1, the router, the WebSocket upgrade, the socket handler), served over any byte stream,
/// such as one end of a `tokio::io::duplex` pipe. Not a stable API: it exists so the fuzzers
/// drive the real code in memory, without TCP.
#[doc(hidden)]
pub struct InMemoryServer {
    shared: Arc<Shared>,
    router: axum::Router,
}

#[doc(hidden)]
impl InMemoryServer {
    /// Open the store and start the hub and the fan-out. Call it inside a Tokio runtime.
    pub fn start(config: ServerConfig) -> Result<InMemoryServer, ServerError> {
        let shared = Shared::start(config)?;
        let router = http::router(shared.clone());
        Ok(InMemoryServer { shared, router })
    }

    /// Serve one connection from `peer`, as [`run`] serves an accepted one. Returns when its
    /// HTTP part ends; an upgraded socket goes on in a task of its own.
    pub async fn serve<I>(&self, io: I, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let _guard = self.shared.track();
        let stop = self.shared.stopping.subscribe();
        serve_http(io, peer, self.router.clone(), &self.shared, stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operator reads these at startup: each names the file and what is wrong with it.
    #[test]
    fn tls_pem_problems_name_the_file_and_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(path("cert.pem"), generated.cert.pem()).unwrap();
        std::fs::write(path("key.pem"), generated.signing_key.serialize_pem()).unwrap();
        std::fs::write(path("empty.pem"), "").unwrap();
        std::fs::write(
            path("garbled.pem"),
            "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let load = |cert: &str, key: &str| {
            load_tls(&TlsConfig {
                cert: path(cert),
                key: path(key),
            })
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        assert_eq!(load("cert.pem", "key.pem"), Ok(()));
        let expect = |result: Result<(), String>, file: &str, what: &str| {
            let e = result.unwrap_err();
            assert!(
                e.contains(&path(file).display().to_string()) && e.contains(what),
                "{e:?} should name {file} and say {what:?}"
            );
        };
        expect(
            load("empty.pem", "key.pem"),
            "empty.pem",
            "no certificate found",
        );
        expect(
            load("cert.pem", "cert.pem"),
            "cert.pem",
            "no private key found",
        );
        expect(
            load("cert.pem", "empty.pem"),
            "empty.pem",
            "no private key found",
        );
        expect(
            load("missing.pem", "key.pem"),
            "missing.pem",
            "No such file",
        );
        expect(
            load("garbled.pem", "key.pem"),
            "garbled.pem",
            "not a valid PEM certificate",
        );
    }
}
