//! `natter-server`: parse flags and environment variables, bind, and hand over to
//! [`natter::server::run`]. SIGINT or SIGTERM shuts down gracefully (sockets close with 1001,
//! queued commits finish).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use natter::server::{BusLocation, Registration, Server, ServerConfig, StoreLocation, TlsConfig};

/// The Natter chat server: HTTP API and WebSocket chat (protocol natter.v1).
#[derive(Debug, Parser)]
#[command(name = "natter-server", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "NATTER_LISTEN", default_value = "127.0.0.1:8686")]
    listen: SocketAddr,
    /// Directory for the database [default: the user's XDG data dir, e.g. ~/.local/share/natter].
    #[arg(long, env = "NATTER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TLS certificate chain (PEM). With --tls-key, serves https:// and wss://.
    #[arg(long, env = "NATTER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "NATTER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Origins allowed to call the API and open sockets from a browser (repeat or
    /// comma-separate; `*` allows any). Clients that send no Origin header are not affected.
    #[arg(
        long = "allowed-origin",
        env = "NATTER_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// Host names, besides IP addresses and `localhost`, the server answers to (repeat or
    /// comma-separate; `*` allows any). Needed when clients reach it by a DNS name: requests
    /// naming any other host get 421 (a DNS rebinding guard).
    #[arg(
        long = "allowed-host",
        env = "NATTER_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,
    /// Seconds a client has to send a whole HTTP request body (408 after).
    #[arg(long, env = "NATTER_BODY_TIMEOUT", default_value_t = 10.0)]
    body_timeout: f64,
    /// Authenticated sockets one user may have open (0: no cap).
    #[arg(long, env = "NATTER_MAX_SOCKETS_PER_USER", default_value_t = 32)]
    max_sockets_per_user: usize,
    /// Authenticated sockets one IP address may have open (0: no cap).
    #[arg(long, env = "NATTER_MAX_SOCKETS_PER_IP", default_value_t = 256)]
    max_sockets_per_ip: usize,
    /// A reverse proxy (the load balancer in front of cluster nodes) trusted to name the client
    /// in `X-Forwarded-For`; repeat for several. Per-address limits then count the client's
    /// address, not the proxy's. The header is ignored from any other address.
    #[arg(
        long = "trusted-proxy",
        env = "NATTER_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// Event streams (`GET /api/events`) one user may have open (0: no cap).
    #[arg(long, env = "NATTER_MAX_STREAMS_PER_USER", default_value_t = 8)]
    max_streams_per_user: usize,
    /// Events queued for one event stream before it is cut off as a slow reader.
    #[arg(long, env = "NATTER_STREAM_QUEUE", default_value_t = 1024)]
    stream_queue: usize,
    /// Where uploaded files are kept (default: `blobs/` in the data directory). Nodes of a
    /// cluster name one directory that they all mount.
    #[arg(long, env = "NATTER_BLOBS")]
    blobs: Option<PathBuf>,
    /// Largest upload, in bytes.
    #[arg(long, env = "NATTER_MAX_UPLOAD", default_value_t = natter::protocol::limits::DEFAULT_MAX_UPLOAD_BYTES)]
    max_upload: u64,
    /// Bytes one user's uploads may total (0: no quota).
    #[arg(long, env = "NATTER_UPLOAD_QUOTA", default_value_t = 1024 * 1024 * 1024)]
    upload_quota: u64,
    /// Seconds an upload no message carries is kept before it is removed (default a day).
    #[arg(long, env = "NATTER_UNATTACHED_GRACE", default_value_t = 24.0 * 3600.0)]
    unattached_grace: f64,
    /// Uploads a user may start in a row before they must wait.
    #[arg(long, env = "NATTER_UPLOADS_PER_USER", default_value_t = 30)]
    uploads_per_user: u32,
    /// Seconds: after that, one more upload per this long.
    #[arg(long, env = "NATTER_UPLOAD_REFILL", default_value_t = 2.0)]
    upload_refill: f64,
    /// Seconds between server pings.
    #[arg(long, env = "NATTER_HEARTBEAT_INTERVAL", default_value_t = 25.0)]
    heartbeat_interval: f64,
    /// Seconds of silence beyond the heartbeat interval before a socket is closed (4002).
    #[arg(long, env = "NATTER_HEARTBEAT_TIMEOUT", default_value_t = 10.0)]
    heartbeat_timeout: f64,
    /// Frames per second per user (token bucket refill).
    #[arg(long, env = "NATTER_RATE_LIMIT", default_value_t = 20)]
    rate_limit: u32,
    /// Burst size of the per-user token bucket.
    #[arg(long, env = "NATTER_RATE_BURST", default_value_t = 60)]
    rate_burst: u32,
    /// Rejected frames (net of forgiveness at the rate limit) before a flooder is closed (4003).
    #[arg(long, env = "NATTER_FLOOD_CLOSE_AFTER", default_value_t = 200)]
    flood_close_after: u32,
    /// Frames queued per socket before a slow reader is closed (4000).
    #[arg(long, env = "NATTER_OUTBOUND_QUEUE", default_value_t = 512)]
    outbound_queue: usize,
    /// Days a login token stays valid.
    #[arg(long, env = "NATTER_TOKEN_TTL_DAYS", default_value_t = 30.0)]
    token_ttl_days: f64,
    /// Seconds a socket without an Authorization header has to send its `auth` frame (1008).
    #[arg(long, env = "NATTER_AUTH_TIMEOUT", default_value_t = 5.0)]
    auth_timeout: f64,
    /// Seconds allowed for the TLS handshake and the HTTP request head (slowloris guard).
    #[arg(long, env = "NATTER_HANDSHAKE_TIMEOUT", default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Sockets per IP address that have upgraded but not yet authenticated (0: no cap).
    #[arg(long, env = "NATTER_MAX_UNAUTHENTICATED_PER_IP", default_value_t = 16)]
    max_unauthenticated_per_ip: usize,
    /// Where durable state lives: a SQLite file as `sqlite:PATH` (or just a path), or a
    /// PostgreSQL database as `postgres://USER@HOST:PORT/DB` (several nodes may share one).
    /// Default: natter.db in the data directory.
    #[arg(long, env = "NATTER_STORE")]
    store: Option<String>,
    /// The bus to the other nodes of a cluster: `redis://HOST:PORT` (or `rediss://` with TLS).
    /// Every node of one community names the same bus and the same PostgreSQL `--store`.
    /// Default: none (this node is alone).
    #[arg(long, env = "NATTER_BUS")]
    bus: Option<String>,
    /// The channel name on the bus: the same for every node of one community (several
    /// communities may share one Redis under different names).
    #[arg(long, env = "NATTER_BUS_CHANNEL", default_value = "natter")]
    bus_channel: String,
    /// Seconds another node may stay silent on the bus before its users count as offline.
    #[arg(long, env = "NATTER_NODE_LEASE", default_value_t = 15.0)]
    node_lease: f64,
    /// Start with an empty database although the data directory shows one existed (natter.db
    /// missing or empty while its marker natter.initialized is there). Without it the server
    /// refuses such a start, so lost data is noticed rather than silently replaced.
    #[arg(long, env = "NATTER_INIT")]
    init: bool,
    /// Testing aid (hidden): cap the database at this many pages (SQLite max_page_count), so a
    /// write that needs more fails as on a full disk (storage_full).
    #[arg(long, env = "NATTER_MAX_DB_PAGES", hide = true)]
    max_db_pages: Option<u32>,
    /// Failed sign-ins an IP address may make in a row before it must wait (429).
    #[arg(long, env = "NATTER_FAILED_SIGN_INS_PER_IP", default_value_t = 10)]
    failed_sign_ins_per_ip: u32,
    /// Seconds per further try once an address has used up its failed sign-ins.
    #[arg(long, env = "NATTER_FAILED_SIGN_IN_REFILL", default_value_t = 30.0)]
    failed_sign_in_refill: f64,
    /// Failed sign-ins an account may have (from any address) before each further try must
    /// wait 2, 4, 8 ... seconds after the last failure (429).
    #[arg(long, env = "NATTER_ACCOUNT_FREE_FAILURES", default_value_t = 3)]
    account_free_failures: u32,
    /// Seconds: the longest wait an account's failures impose.
    #[arg(long, env = "NATTER_ACCOUNT_DELAY_CAP", default_value_t = 900.0)]
    account_delay_cap: f64,
    /// Who may create an account: `open` (anyone), `invite` (with an invite code an admin
    /// made), `approval` (new accounts wait for an admin). The first account is the admin and
    /// needs neither.
    #[arg(long, env = "NATTER_REGISTRATION", value_enum, default_value_t = RegistrationArg::Open)]
    registration: RegistrationArg,
    /// Accounts an IP address may create in a row before it must wait (429).
    #[arg(long, env = "NATTER_REGISTRATIONS_PER_IP", default_value_t = 5)]
    registrations_per_ip: u32,
    /// Seconds per further account once an address has used those up.
    #[arg(long, env = "NATTER_REGISTRATION_REFILL", default_value_t = 120.0)]
    registration_refill: f64,
    /// Threads hashing passwords, each with one ~19 MiB argon2 buffer [default: CPU count].
    #[arg(long, env = "NATTER_ARGON2_WORKERS")]
    argon2_workers: Option<usize>,
    /// Sign-ins and registrations waiting for a hashing thread before the server answers 503.
    #[arg(long, env = "NATTER_ARGON2_QUEUE", default_value_t = 64)]
    argon2_queue: usize,
    /// Diagnostics (issue 15): write a latency trace to FILE, the timestamps of each socket
    /// write's stages from the read of its frame to the fan-out's last send, and of each WAL
    /// checkpoint (format: docs/benchmarks.md, "The latency trace"). Off by default.
    #[arg(long, env = "NATTER_TRACE_LATENCY", value_name = "FILE")]
    trace_latency: Option<PathBuf>,
    /// Instead of serving: administer the server's store (the same --data-dir / --store).
    #[command(subcommand)]
    command: Option<Command>,
}

/// `--registration`, as clap parses it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RegistrationArg {
    Open,
    Invite,
    Approval,
}

impl From<RegistrationArg> for Registration {
    fn from(arg: RegistrationArg) -> Registration {
        match arg {
            RegistrationArg::Open => Registration::Open,
            RegistrationArg::Invite => Registration::Invite,
            RegistrationArg::Approval => Registration::Approval,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// The server's admins. Works whether the server runs or not: what a user may do changes
    /// at once; a running server shows the new role in `hello` after its next start.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, clap::Subcommand)]
enum AdminCommand {
    /// Make USERNAME an admin.
    Grant { username: String },
    /// Make USERNAME no longer an admin.
    Revoke { username: String },
    /// List the admins.
    List,
}

fn secs(s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|e| format!("bad duration {s}: {e}"))
}

/// Run `natter-server admin ...` on the store named by `config`.
async fn administer(command: AdminCommand, config: &ServerConfig) -> Result<(), String> {
    use natter::server::admin;
    match command {
        AdminCommand::Grant { username } => {
            let name = admin::set_admin(config, &username, true).await;
            println!("{} is an admin", name.map_err(|e| e.to_string())?);
        }
        AdminCommand::Revoke { username } => {
            let name = admin::set_admin(config, &username, false).await;
            println!("{} is no longer an admin", name.map_err(|e| e.to_string())?);
        }
        AdminCommand::List => {
            for name in admin::admins(config).await.map_err(|e| e.to_string())? {
                println!("{name}");
            }
        }
    }
    Ok(())
}

fn config(args: Args) -> Result<(SocketAddr, ServerConfig), String> {
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => directories::ProjectDirs::from("", "", "natter")
            .map(|p| p.data_dir().to_path_buf())
            .ok_or("cannot find a home directory; pass --data-dir")?,
    };
    let mut c = ServerConfig::new(data_dir);
    c.init = args.init;
    c.store = args
        .store
        .as_deref()
        .map(StoreLocation::parse)
        .transpose()
        .map_err(|e| e.to_string())?;
    c.bus = args
        .bus
        .as_deref()
        .map(|url| BusLocation::parse(url, &args.bus_channel))
        .transpose()?;
    c.node_lease = secs(args.node_lease)?;
    c.max_db_pages = args.max_db_pages;
    c.heartbeat_interval = secs(args.heartbeat_interval)?;
    c.heartbeat_timeout = secs(args.heartbeat_timeout)?;
    c.allowed_origins = args
        .allowed_origins
        .into_iter()
        .filter(|o| !o.trim().is_empty())
        .collect();
    c.allowed_hosts = args
        .allowed_hosts
        .into_iter()
        .filter(|h| !h.trim().is_empty())
        .collect();
    c.body_timeout = secs(args.body_timeout)?;
    c.max_sockets_per_user = args.max_sockets_per_user;
    c.max_sockets_per_ip = args.max_sockets_per_ip;
    c.trusted_proxies = args.trusted_proxies;
    c.max_streams_per_user = args.max_streams_per_user;
    c.stream_queue = args.stream_queue.max(1);
    c.blobs = args.blobs;
    c.max_upload_bytes = args.max_upload;
    c.upload_quota_bytes = args.upload_quota;
    c.unattached_grace = secs(args.unattached_grace)?;
    c.uploads_per_user = args.uploads_per_user;
    c.upload_refill = secs(args.upload_refill)?;
    c.tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsConfig { cert, key }),
        _ => None,
    };
    c.rate_limit_per_sec = args.rate_limit;
    c.rate_burst = args.rate_burst;
    c.flood_close_after = args.flood_close_after;
    c.outbound_queue = args.outbound_queue;
    c.token_ttl = secs(args.token_ttl_days * 86_400.0)?;
    c.auth_timeout = secs(args.auth_timeout)?;
    c.handshake_timeout = secs(args.handshake_timeout)?;
    c.max_unauthenticated_per_ip = args.max_unauthenticated_per_ip;
    c.failed_sign_ins_per_ip = args.failed_sign_ins_per_ip;
    c.failed_sign_in_refill = secs(args.failed_sign_in_refill)?;
    c.account_free_failures = args.account_free_failures;
    c.account_delay_cap = secs(args.account_delay_cap)?;
    c.registration = args.registration.into();
    c.registrations_per_ip = args.registrations_per_ip;
    c.registration_refill = secs(args.registration_refill)?;
    if let Some(workers) = args.argon2_workers {
        c.argon2_workers = workers;
    }
    c.argon2_queue = args.argon2_queue;
    Ok((args.listen, c))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = Args::parse();
    let command = args.command.take();
    // Before the store opens: the writer installs its checkpoint probe only when tracing.
    if let (Some(path), None) = (&args.trace_latency, &command) {
        if let Err(e) = natter::server::latency_trace::start(path) {
            eprintln!("natter-server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let (listen, config) = match config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("natter-server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(Command::Admin(command)) = command {
        return match administer(command, &config).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("natter-server: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("natter-server: cannot listen on {listen}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let data_dir = config.data_dir.clone();
    // Announced only once the store is open and checked: a bad database must not look served.
    let server = match Server::start(listener, config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("natter-server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match server.local_addr() {
        // Printed on stdout so scripts and tests can learn the port when listening on :0.
        Ok(addr) => println!(
            "natter-server listening on {scheme}://{addr} (data: {})",
            data_dir.display()
        ),
        Err(e) => eprintln!("natter-server: {e}"),
    }
    match server.serve(shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natter-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
