//! `natter`: the command-line Natter client, a thin layer over `natter::client`. For scripting,
//! bots, and as a second real client in tests.
//!
//! Profiles: `--profile DIR` (or `NATTER_PROFILE`) names the directory holding the session and
//! the local store. Without it, `register`/`login` use the per-server-and-user default profile and
//! remember it as the current one for later commands.
//!
//! Certificates: an https:// server whose certificate is not vouched for by the system's store
//! (a host's self-signed one) is trusted by its fingerprint: `register`/`login` show it and ask,
//! or take `--trust FINGERPRINT` (compared with what the server presents); the profile keeps the
//! pin, and a changed certificate later fails with an error that names the risk.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use natter::client::http::AccountAction;
use natter::client::trust;
use natter::client::{
    self, Client, ClientConfig, ClientError, ClientEvent, ConnectionState, LocalMessage,
    MessageChange, MessageEvent, MessageState, Target,
};
use natter::names;
use natter::protocol::{Action, ConvId, ConvKind, RegisterRequest};
use natter::tls::Fingerprint;
use tokio::sync::broadcast::error::RecvError;
use url::Url;

/// `println!` for every line the CLI prints: they hold names, messages and error texts that came
/// from other users, so control and bidi characters are written escaped
/// ([`names::visible`]), never raw to the terminal (ESC could retitle it, set the clipboard
/// through OSC 52 or forge lines).
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", names::visible(&format!($($arg)*)))
    };
}

/// `eprintln!` with the same escaping as [`say!`].
macro_rules! complain {
    ($($arg:tt)*) => {
        eprintln!("{}", names::visible(&format!($($arg)*)))
    };
}

const DEFAULT_SERVER: &str = "http://127.0.0.1:8686";

#[derive(Parser, Debug)]
#[command(name = "natter", version, about = "Natter chat from the command line")]
struct Cli {
    /// Server address, e.g. http://127.0.0.1:8686 (default: the profile's server).
    #[arg(long, env = "NATTER_SERVER", global = true)]
    server: Option<Url>,
    /// Profile directory (session and local history).
    #[arg(long, env = "NATTER_PROFILE", global = true)]
    profile: Option<PathBuf>,
    /// Trust the server's certificate if its fingerprint is this one (for `register` and
    /// `login` without a prompt; the profile keeps it).
    #[arg(long, env = "NATTER_TRUST", global = true, value_name = "FINGERPRINT")]
    trust: Option<Fingerprint>,
    /// Also trust the CA certificates in this PEM file (a private deployment's own CA).
    #[arg(long, env = "NATTER_CA_FILE", global = true, value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// Seconds to wait for the server before giving up (or queueing, for `send`).
    #[arg(long, default_value_t = 5.0, global = true)]
    timeout: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum InviteCommand {
    /// Make an invite and print its code (shown only this once).
    Create {
        /// Seconds it stays valid (60 to 2592000; default 7 days).
        #[arg(long)]
        expires_in: Option<u64>,
    },
    /// List the live invites.
    List,
    /// Revoke an invite by the id `natter invite list` shows.
    Revoke { id: i64 },
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// List the accounts waiting for approval.
    Pending,
    /// Approve a waiting account.
    Approve { user: String },
    /// Reject (delete) a waiting account.
    Reject { user: String },
    /// Ban an account from the server: its sessions end at once.
    Ban { user: String },
    /// Lift a ban.
    Unban { user: String },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create an account and sign in (password from NATTER_PASSWORD, else a prompt).
    Register {
        user: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        avatar: Option<String>,
        /// The invite code an admin gave you (needed on an invite-only server).
        // A code is base64url, so one in 64 starts with '-': it is still the value.
        #[arg(long, allow_hyphen_values = true)]
        invite: Option<String>,
    },
    /// Sign in (password from NATTER_PASSWORD, else a prompt).
    Login { user: String },
    /// Sign out and revoke the session.
    Logout,
    /// List the Natter hosts advertised on the local network (mDNS): name, addresses,
    /// certificate fingerprint and server id.
    Discover {
        /// Seconds to listen.
        #[arg(long, default_value_t = 3.0)]
        wait: f64,
    },
    /// List rooms: the public ones and the private ones you are in.
    Rooms,
    /// Create a room and join it; --private: only the members you add see it.
    Create {
        room: String,
        #[arg(long)]
        private: bool,
    },
    /// Add USER to a room you are in (the way into a private room).
    Add { room: String, user: String },
    /// Remove USER from a room you moderate (you created it, or you are an admin); --ban keeps
    /// them out.
    Remove {
        room: String,
        user: String,
        #[arg(long)]
        ban: bool,
    },
    /// Invites to this server (admins only).
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Accounts on this server (admins only).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Join a room.
    Join { room: String },
    /// Leave a room.
    Leave { room: String },
    /// List users and who is online.
    Users,
    /// Send a message to a room or to @user; queued when the server is unreachable. With
    /// --file (repeatable, up to 10) the files go with it, uploaded first; the text is then
    /// optional.
    Send {
        target: String,
        #[arg(long = "file", value_name = "PATH")]
        files: Vec<PathBuf>,
        #[arg(required_unless_present = "files", num_args = 0..)]
        text: Vec<String>,
    },
    /// Save the files of message SEQ of a room or a DM (@user) into DIR (default: here), under
    /// their names (never overwriting: `name (2).ext`).
    Download {
        target: String,
        seq: i64,
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
    /// Reply to message SEQ (the `#SEQ` history and tail show) of a room or a DM (@user).
    Reply {
        target: String,
        seq: i64,
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Replace the text of your message SEQ.
    Edit {
        target: String,
        seq: i64,
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Delete your message SEQ (its text is removed everywhere).
    Delete { target: String, seq: i64 },
    /// React to message SEQ with one emoji; --off takes your reaction back.
    React {
        target: String,
        seq: i64,
        emoji: String,
        #[arg(long)]
        off: bool,
    },
    /// Show recent messages of a room or a DM (@user).
    History {
        target: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Deliver queued messages, then print messages as they arrive until interrupted. With
    /// --sse: only listen, over the server's event stream (no socket, no local store); --json
    /// then prints every event as the server sent it.
    Tail {
        #[arg(long)]
        json: bool,
        /// Listen over `GET /api/events` (Server-Sent Events) instead of the chat socket.
        #[arg(long)]
        sse: bool,
        /// With --sse: start after this event id (a `Last-Event-ID` printed by --json).
        #[arg(long, requires = "sse")]
        since: Option<String>,
        /// With --sse: only these conversation ids (comma-separated).
        #[arg(long, requires = "sse")]
        conv: Option<String>,
    },
    /// Search stored messages.
    Search {
        query: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Unread counts per conversation.
    Unread,
    /// Export your whole history (every conversation you are in, every message, from the
    /// server) to a private file (0600).
    Export {
        /// json (machine-readable) or html (one readable page).
        #[arg(long, default_value = "json")]
        format: client::export::ExportFormat,
        /// Where to write it (default: natter-<user>-<date>-<time>.<format> here).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Change your display name and/or avatar.
    Profile {
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        avatar: Option<String>,
    },
    /// List your sessions (signed-in devices).
    Sessions,
    /// Revoke one of your sessions by the id `natter sessions` shows.
    Revoke { id: String },
    /// Rebuild a damaged local store: move it aside (natter.db.damaged-<ms>) and fetch history
    /// again from the server, keeping the session and unsent messages.
    Repair,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            complain!("natter: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            complain!("natter: {e}");
            ExitCode::FAILURE
        }
    }
}

fn current_pointer() -> PathBuf {
    client::default_data_dir().join("cli-current-profile")
}

/// The profile `register`/`login` use: `--profile`, else the default one of `user` on the
/// server, found by the server's id so a server reached at a new address keeps its profile.
async fn sign_in_profile(cli: &Cli, server: &Url, user: &str) -> Result<PathBuf, ClientError> {
    match &cli.profile {
        Some(p) => Ok(p.clone()),
        None => client::profiles::locate(&client::default_data_dir(), server, user).await,
    }
}

/// The profile for commands other than register/login.
fn current_profile(cli: &Cli) -> Result<PathBuf, ClientError> {
    if let Some(p) = &cli.profile {
        return Ok(p.clone());
    }
    std::fs::read_to_string(current_pointer())
        .map(|s| PathBuf::from(s.trim()))
        .map_err(|_| {
            ClientError::Unauthorized("not signed in: run `natter login <user>` first".into())
        })
}

fn env_ms(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()?
        .parse::<u64>()
        .ok()
        .map(Duration::from_millis)
}

fn config(server: Url, profile: &Path) -> ClientConfig {
    let mut config = ClientConfig::new(server, profile.to_path_buf());
    // Tests shorten the reconnect backoff so a restarted server is found quickly.
    if let Some(d) = env_ms("NATTER_BACKOFF_MIN_MS") {
        config.backoff_min = d;
    }
    if let Some(d) = env_ms("NATTER_BACKOFF_MAX_MS") {
        config.backoff_max = d;
    }
    config
}

/// The password: `NATTER_PASSWORD`, else a prompt on the terminal, else (for scripts) the first
/// line of standard input.
fn password() -> Result<String, ClientError> {
    if let Ok(p) = std::env::var("NATTER_PASSWORD") {
        return Ok(p);
    }
    let stdin = std::io::stdin();
    let line = if stdin.is_terminal() {
        rpassword::prompt_password("Password: ")
            .map_err(|e| ClientError::Invalid(format!("cannot read a password: {e}")))?
    } else {
        let mut line = String::new();
        stdin
            .read_line(&mut line)
            .map_err(|e| ClientError::Invalid(format!("cannot read a password: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if line.is_empty() {
        return Err(ClientError::Invalid(
            "no password: set NATTER_PASSWORD, type it at the prompt or pipe it on stdin".into(),
        ));
    }
    Ok(line)
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let wait = Duration::from_secs_f64(cli.timeout.clamp(0.1, 3600.0));
    match &cli.command {
        Command::Register {
            user,
            display_name,
            avatar,
            invite,
        } => {
            let server = cli
                .server
                .clone()
                .unwrap_or_else(|| DEFAULT_SERVER.parse().expect("valid default"));
            let known = client::default_profile_dir(&server, user);
            let profile = cli.profile.as_ref().unwrap_or(&known);
            let req = RegisterRequest {
                username: user.clone(),
                password: password()?,
                display_name: display_name.clone(),
                avatar: avatar.clone(),
                invite: invite.clone(),
            };
            let session = with_trust(&cli, &server, profile, || async {
                // Found (and moved to the server id's place) before the session is saved there.
                sign_in_profile(&cli, &server, user).await?;
                client::register(&server, req.clone()).await
            })
            .await?;
            signed_in(&cli, &server, &session)?;
            say!("registered and signed in as {}", session.user.username);
            Ok(())
        }
        Command::Login { user } => {
            let server = cli
                .server
                .clone()
                .unwrap_or_else(|| DEFAULT_SERVER.parse().expect("valid default"));
            let known = client::default_profile_dir(&server, user);
            let profile = cli.profile.as_ref().unwrap_or(&known);
            let password = password()?;
            let session = with_trust(&cli, &server, profile, || async {
                let profile = sign_in_profile(&cli, &server, user).await?;
                client::login_in_profile(&profile, &server, user, &password).await
            })
            .await?;
            signed_in(&cli, &server, &session)?;
            say!("signed in as {}", session.user.username);
            Ok(())
        }
        Command::Discover { wait } => {
            let wait = Duration::from_secs_f64(wait.clamp(0.1, 60.0));
            let hosts = natter::discovery::browse(wait)
                .await
                .map_err(|e| ClientError::Offline(e.to_string()))?;
            if hosts.is_empty() {
                say!("no Natter hosts found on the network");
            }
            for host in hosts {
                let fingerprint = host
                    .fingerprint
                    .map_or_else(|| "none (not encrypted)".to_owned(), |f| f.to_string());
                say!("{}  {}", host.name, host.urls.join(" "));
                say!("  fingerprint {fingerprint}  server id {}", host.server_id);
            }
            Ok(())
        }
        Command::Repair => {
            let profile = current_profile(&cli)?;
            let Some(done) = client::repair_store(&profile)? else {
                println!("the local store is sound: nothing to repair");
                return Ok(());
            };
            println!(
                "moved the damaged local store to {}",
                done.moved_to.display()
            );
            if !done.session_kept {
                return Err(ClientError::Unauthorized(
                    "the session could not be read back from the damaged store: sign in again \
                     with `natter login <user>`"
                        .into(),
                ));
            }
            let client = resume(&cli, &profile).await?;
            let synced = online(&client, wait).await;
            let convs = client.conversations().await.map(|c| c.len());
            client.shutdown().await;
            match (synced?, convs?) {
                (true, n) => println!("rebuilt from the server: {n} conversations resynced"),
                (false, _) => println!(
                    "rebuilt; the server is unreachable, so history comes back on the next \
                     command that connects"
                ),
            }
            if done.outbox_kept > 0 {
                println!("{} unsent messages kept in the outbox", done.outbox_kept);
            }
            Ok(())
        }
        Command::Tail {
            json,
            sse: true,
            since,
            conv,
        } => {
            let profile = current_profile(&cli)?;
            tail_sse(&cli, &profile, *json, since.clone(), conv.as_deref()).await
        }
        _ => {
            let profile = current_profile(&cli)?;
            let client = resume(&cli, &profile).await?;
            let result = command(&cli.command, &client, wait).await;
            client.shutdown().await;
            result
        }
    }
}

/// What every command that reaches `server` does first: trust the custom CA file, and warn when
/// the address is in clear text to another machine.
fn prepare_trust(cli: &Cli, server: &Url) -> Result<(), ClientError> {
    if let Some(ca) = &cli.ca_file {
        trust::add_ca_file(ca)?;
    }
    if trust::is_plaintext_remote(server) {
        complain!("natter: warning: {}", trust::PLAINTEXT_WARNING);
    }
    Ok(())
}

/// Runs `attempt` (a register or login) against `server`, trusting its certificate on the way
/// when the person says so: `--trust FINGERPRINT` is checked against the certificate the server
/// presents before anything is sent; without it, an untrusted certificate's fingerprint is
/// shown and, on a terminal, the person is asked. A pin confirmed either way is kept in
/// `profile`. A changed certificate is never asked about: it fails with its own error.
async fn with_trust<T, F>(
    cli: &Cli,
    server: &Url,
    profile: &Path,
    attempt: impl Fn() -> F,
) -> Result<T, ClientError>
where
    F: std::future::Future<Output = Result<T, ClientError>>,
{
    prepare_trust(cli, server)?;
    trust::install_profile_pin(profile, server)?;
    if let Some(wanted) = cli.trust {
        trust::confirm(server, wanted).await?;
        trust::keep_pin(profile, server)?;
    }
    match attempt().await {
        Err(ClientError::UntrustedCertificate(why)) if std::io::stdin().is_terminal() => {
            let presented = trust::probe(server).await?;
            complain!("natter: {why}");
            complain!(
                "Fingerprint of {}: {presented}\nCompare it with the one the server's host \
                 shows. Trust it? [y/N] ",
                trust::origin(server)
            );
            let mut answer = String::new();
            std::io::stdin()
                .read_line(&mut answer)
                .map_err(|e| ClientError::Invalid(format!("cannot read the answer: {e}")))?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                return Err(ClientError::UntrustedCertificate(
                    "not trusted: nothing was sent".into(),
                ));
            }
            trust::save_pin(profile, server, presented)?;
            attempt().await
        }
        Err(ClientError::UntrustedCertificate(why)) => Err(ClientError::UntrustedCertificate(
            format!("{why}. To trust it, run again with --trust FINGERPRINT"),
        )),
        other => other,
    }
}

/// Starts the client of the signed-in `profile`.
async fn resume(cli: &Cli, profile: &Path) -> Result<Client, ClientError> {
    let saved = client::saved_session(profile)?.ok_or_else(|| {
        ClientError::Unauthorized("not signed in: run `natter login <user>` first".into())
    })?;
    let server = match &cli.server {
        Some(s) => s.clone(),
        None => saved.server.parse().map_err(|e| {
            ClientError::Internal(format!("bad server address in the profile: {e}"))
        })?,
    };
    prepare_trust(cli, &server)?;
    Client::resume(config(server, profile))
        .await?
        .ok_or_else(|| ClientError::Unauthorized("not signed in".into()))
}

fn signed_in(
    cli: &Cli,
    server: &Url,
    session: &natter::protocol::Session,
) -> Result<(), ClientError> {
    let profile = match &cli.profile {
        Some(p) => p.clone(),
        None => {
            let p = client::default_profile_dir(server, &session.user.username);
            let pointer = current_pointer();
            let io = |e: std::io::Error| ClientError::Internal(format!("cannot save profile: {e}"));
            std::fs::create_dir_all(pointer.parent().unwrap_or(Path::new("."))).map_err(io)?;
            std::fs::write(&pointer, p.to_string_lossy().as_bytes()).map_err(io)?;
            p
        }
    };
    client::save_session(&profile, server, session)
}

/// Waits until the client is online and resumed. `Ok(false)` when the server cannot be reached
/// (the first attempt failed, or `wait` passed).
async fn online(client: &Client, wait: Duration) -> Result<bool, ClientError> {
    let mut state = client.connection_watch();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let now = state.borrow_and_update().clone();
        match now {
            ConnectionState::Online => break,
            ConnectionState::Offline { .. } => return Ok(false),
            ConnectionState::SignedOut { reason } => {
                return Err(ClientError::Unauthorized(format!(
                    "{reason}; sign in again with `natter login <user>`"
                )))
            }
            ConnectionState::Connecting => {}
        }
        match tokio::time::timeout_at(deadline, state.changed()).await {
            Ok(Ok(())) => {}
            _ => return Ok(false),
        }
    }
    match tokio::time::timeout_at(deadline, client.wait_synced()).await {
        Ok(r) => r.map(|()| true),
        Err(_) => Ok(false),
    }
}

async fn require_online(client: &Client, wait: Duration) -> Result<(), ClientError> {
    if online(client, wait).await? {
        return Ok(());
    }
    let reason = match client.connection_state() {
        ConnectionState::Offline { reason, .. } => reason,
        _ => "no answer".into(),
    };
    Err(ClientError::Offline(format!(
        "cannot reach the server: {reason}"
    )))
}

/// `@user` names a DM; anything else a room (a leading `#` is allowed).
fn parse_target(target: &str) -> (ConvKind, &str) {
    match target.strip_prefix('@') {
        Some(user) => (ConvKind::Dm, user),
        None => (ConvKind::Room, target.trim_start_matches('#')),
    }
}

async fn find(client: &Client, target: &str) -> Result<ConvId, ClientError> {
    let (kind, name) = parse_target(target);
    client.find_conversation(kind, name).await?.ok_or_else(|| {
        ClientError::NotFound(match kind {
            ConvKind::Room => format!("you are not in a room called {name} (join it first)"),
            ConvKind::Dm => format!("no conversation with {name} yet"),
        })
    })
}

async fn command(cmd: &Command, client: &Client, wait: Duration) -> Result<(), ClientError> {
    match cmd {
        Command::Register { .. }
        | Command::Login { .. }
        | Command::Repair
        | Command::Discover { .. } => {
            unreachable!("handled before")
        }
        Command::Logout => {
            client.logout().await?;
            say!("signed out");
        }
        Command::Export { format, out } => {
            require_online(client, wait).await?;
            let path = out.clone().unwrap_or_else(|| {
                let name = client::export::default_file_name(&client.user().username, *format);
                PathBuf::from(name)
            });
            let done = client.export_to(*format, &path).await?;
            say!(
                "exported {} conversations, {} messages to {}",
                done.conversations,
                done.messages,
                done.path
            );
        }
        Command::Profile {
            display_name,
            avatar,
        } => {
            let me = client
                .set_profile(display_name.clone(), avatar.clone())
                .await?;
            say!(
                "you are now {} (@{}) {}",
                me.display_name,
                me.username,
                me.avatar
            );
        }
        Command::Sessions => {
            for s in client.sessions().await? {
                let this = if s.current { "  (this session)" } else { "" };
                say!(
                    "{}  {}  signed in {}  expires {}{this}",
                    s.id,
                    s.label.as_deref().unwrap_or("unnamed device"),
                    client::export::format_utc(s.created_at),
                    client::export::format_utc(s.expires_at)
                );
            }
        }
        Command::Revoke { id } => {
            client.revoke_session(id).await?;
            say!("revoked session {id}");
        }
        Command::Rooms => {
            require_online(client, wait).await?;
            for r in client.rooms().await? {
                let joined = if r.joined { "  (joined)" } else { "" };
                say!("#{}  {} members{joined}", r.name, r.member_count);
            }
        }
        Command::Create { room, private } => {
            require_online(client, wait).await?;
            let c = if *private {
                client.create_private_room(room).await?
            } else {
                client.create_room(room).await?
            };
            say!("created and joined {}", c.title);
        }
        Command::Add { room, user } => {
            require_online(client, wait).await?;
            let conv = find(client, room).await?;
            client.add_member(conv, user).await?;
            say!("added {user} to {room}");
        }
        Command::Remove { room, user, ban } => {
            require_online(client, wait).await?;
            let conv = find(client, room).await?;
            client.remove_member(conv, user, *ban).await?;
            let done = if *ban { "banned" } else { "removed" };
            say!("{done} {user} from {room}");
        }
        Command::Invite(InviteCommand::Create { expires_in }) => {
            let invite = client.create_invite(*expires_in).await?;
            say!(
                "invite {}: {}  (valid until {})",
                invite.id,
                invite.code.unwrap_or_default(),
                client::export::format_utc(invite.expires_at)
            );
        }
        Command::Invite(InviteCommand::List) => {
            for invite in client.invites().await? {
                say!(
                    "{}  by {}  made {}  valid until {}",
                    invite.id,
                    invite.created_by,
                    client::export::format_utc(invite.created_at),
                    client::export::format_utc(invite.expires_at)
                );
            }
        }
        Command::Invite(InviteCommand::Revoke { id }) => {
            client.revoke_invite(*id).await?;
            say!("revoked invite {id}");
        }
        Command::Admin(AdminCommand::Pending) => {
            for user in client.pending_accounts().await? {
                say!(
                    "{}  ({})  registered {}",
                    user.username,
                    user.display_name,
                    client::export::format_utc(user.created_at)
                );
            }
        }
        Command::Admin(AdminCommand::Approve { user }) => {
            let approved = client.approve(user).await?;
            say!("approved {}", approved.username);
        }
        Command::Admin(AdminCommand::Reject { user }) => {
            client.account_action(AccountAction::Reject, user).await?;
            say!("rejected {user}");
        }
        Command::Admin(AdminCommand::Ban { user }) => {
            client.account_action(AccountAction::Ban, user).await?;
            say!("banned {user}");
        }
        Command::Admin(AdminCommand::Unban { user }) => {
            client.account_action(AccountAction::Unban, user).await?;
            say!("unbanned {user}");
        }
        Command::Join { room } => {
            require_online(client, wait).await?;
            let c = client.join_room(room).await?;
            say!("joined {}", c.title);
        }
        Command::Leave { room } => {
            require_online(client, wait).await?;
            let conv = find(client, room).await?;
            client.leave_room(conv).await?;
            say!("left #{}", room.trim_start_matches('#'));
        }
        Command::Users => {
            require_online(client, wait).await?;
            for m in client.users().await? {
                let state = if m.online { "online" } else { "offline" };
                say!("{}  ({})  {state}", m.user.username, m.user.display_name);
            }
        }
        Command::Send {
            target,
            files,
            text,
        } => send(client, target, &text.join(" "), None, files, wait).await?,
        Command::Reply { target, seq, text } => {
            send(client, target, &text.join(" "), Some(*seq), &[], wait).await?
        }
        Command::Download { target, seq, out } => {
            let _ = online(client, wait).await?;
            let conv = find(client, target).await?;
            let message = client
                .history(conv, Some(seq.saturating_add(1)), 1)
                .await?
                .into_iter()
                .find(|m| m.seq == Some(*seq))
                .ok_or_else(|| ClientError::NotFound(format!("no message #{seq} in {target}")))?;
            if message.attachments.is_empty() {
                return Err(ClientError::NotFound(format!(
                    "message #{seq} in {target} has no files"
                )));
            }
            for file in &message.attachments {
                let path = client.save_file(file, out).await?;
                say!(
                    "saved {} ({} bytes) to {}",
                    file.name,
                    file.size,
                    path.display()
                );
            }
        }
        Command::Edit { target, seq, text } => {
            let text = text.join(" ");
            act(client, target, wait, |conv| client.edit(conv, *seq, &text)).await?;
            say!("edited #{seq} in {target}");
        }
        Command::Delete { target, seq } => {
            act(client, target, wait, |conv| client.delete(conv, *seq)).await?;
            say!("deleted #{seq} in {target}");
        }
        Command::React {
            target,
            seq,
            emoji,
            off,
        } => {
            act(client, target, wait, |conv| {
                client.react(conv, *seq, emoji, !off)
            })
            .await?;
            let done = if *off { "took back" } else { "reacted" };
            say!("{done} {emoji} on #{seq} in {target}");
        }
        Command::History {
            target,
            limit,
            json,
        } => {
            let _ = online(client, wait).await?;
            let conv = find(client, target).await?;
            let name = conv_name(client, conv).await;
            let mut out = Vec::new();
            let mut before = None;
            // More than one server page may be wanted: walk backwards until `limit` or the start.
            while out.len() < *limit as usize {
                let want = (*limit as usize - out.len()).min(200) as u32;
                let mut page = client.history(conv, before, want).await?;
                page.retain(|m| m.state == MessageState::Sent || before.is_none());
                let sent: Vec<_> = page.iter().filter(|m| m.seq.is_some()).collect();
                let Some(first) = sent.first().and_then(|m| m.seq) else {
                    out.splice(0..0, page);
                    break;
                };
                let done = first <= 1 || sent.len() < want as usize;
                out.splice(0..0, page);
                if done {
                    break;
                }
                before = Some(first);
            }
            let skip = out.len().saturating_sub(*limit as usize);
            for m in &out[skip..] {
                print_message(&name, m, *json);
            }
        }
        Command::Tail { json, .. } => tail(client, *json).await?,
        Command::Search { query, limit, json } => {
            let _ = online(client, wait).await?;
            for hit in client.search(query, None, *limit).await? {
                let name = match hit.message.conv {
                    Some(c) => conv_name(client, c).await,
                    None => "?".to_owned(),
                };
                print_message(&name, &hit.message, *json);
            }
        }
        Command::Unread => {
            let _ = online(client, wait).await?;
            let convs = client.conversations().await?;
            let mut total = 0;
            for c in convs.iter().filter(|c| c.unread > 0) {
                total += c.unread;
                say!("{}  {}", c.title, c.unread);
            }
            if total == 0 {
                say!("no unread messages");
            }
        }
    }
    Ok(())
}

/// `general` for a room, `@bob` for a DM.
async fn conv_name(client: &Client, conv: ConvId) -> String {
    match client.conversation(conv).await.ok().flatten() {
        Some(c) if c.kind == ConvKind::Dm => format!("@{}", c.name),
        Some(c) => c.name,
        None => conv.to_string(),
    }
}

/// Sends `text` to `target` (a reply to message `reply_to` when given), with `files` when
/// there are any. A mention is `@name` in the text; `send` says whom it mentions among the
/// users it knows.
async fn send(
    client: &Client,
    target: &str,
    text: &str,
    reply_to: Option<i64>,
    files: &[PathBuf],
    wait: Duration,
) -> Result<(), ClientError> {
    let reachable = online(client, wait).await?;
    let (kind, name) = parse_target(target);
    let msg = match (kind, reply_to) {
        (_, Some(seq)) => client.reply(find(client, target).await?, seq, text).await?,
        (ConvKind::Dm, None) if !files.is_empty() => {
            client
                .send_files(Target::To(name.to_owned()), files, text)
                .await?
        }
        (ConvKind::Room, None) if !files.is_empty() => {
            let conv = find(client, target).await?;
            client.send_files(Target::Conv(conv), files, text).await?
        }
        (ConvKind::Dm, None) => client.send(Target::To(name.to_owned()), text).await?,
        (ConvKind::Room, None) => {
            client
                .send(Target::Conv(find(client, target).await?), text)
                .await?
        }
    };
    if reachable {
        if let Ok(users) = client.users().await {
            let mentioned: Vec<String> = users
                .iter()
                .filter(|m| names::mentions(text, &m.user.username))
                .map(|m| format!("@{}", m.user.username))
                .collect();
            if !mentioned.is_empty() {
                say!("mentions {}", mentioned.join(", "));
            }
        }
    }
    if reachable
        && tokio::time::timeout(wait, client.wait_outbox_empty())
            .await
            .is_ok()
    {
        if let Some(item) = client
            .outbox()
            .await?
            .into_iter()
            .find(|m| m.local_id == msg.local_id)
        {
            return Err(ClientError::Invalid(format!(
                "the server refused the message: {}",
                item.error.unwrap_or_default()
            )));
        }
        say!("sent to {target}");
        return Ok(());
    }
    say!(
        "queued: the server is unreachable; the message will be delivered by the next command \
         that connects (e.g. `natter tail`)"
    );
    Ok(())
}

/// Queues an action (`queue` gets the conversation of `target`) and, when online, waits for
/// the server's answer: an error when it refused it.
async fn act<F, Fut>(
    client: &Client,
    target: &str,
    wait: Duration,
    queue: F,
) -> Result<(), ClientError>
where
    F: FnOnce(ConvId) -> Fut,
    Fut: std::future::Future<Output = Result<String, ClientError>>,
{
    let reachable = online(client, wait).await?;
    let conv = find(client, target).await?;
    let mut events = client.subscribe();
    let local_id = queue(conv).await?;
    if !reachable
        || tokio::time::timeout(wait, client.wait_outbox_empty())
            .await
            .is_err()
    {
        say!(
            "queued: the server is unreachable; it will be done by the next command that \
             connects (e.g. `natter tail`)"
        );
        return Ok(());
    }
    while let Ok(event) = events.try_recv() {
        if let ClientEvent::ActionFailed(f) = event {
            if f.local_id == local_id {
                return Err(ClientError::Invalid(format!(
                    "the server refused it: {}",
                    f.error
                )));
            }
        }
    }
    Ok(())
}

async fn tail(client: &Client, json: bool) -> Result<(), ClientError> {
    let mut events = client.subscribe();
    let mut printed: HashSet<String> = HashSet::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            ev = events.recv() => match ev {
                Ok(ClientEvent::Message(MessageEvent { message: m, change })) => match m.state {
                    MessageState::Sent => {
                        // A message printed already and changed since (edited, deleted,
                        // reacted to) prints again, as it is now.
                        let again = change == MessageChange::Updated && m.seq.is_some();
                        if printed.insert(m.local_id.clone()) || again {
                            let name = match m.conv {
                                Some(c) => conv_name(client, c).await,
                                None => String::new(),
                            };
                            print_message(&name, &m, json);
                        }
                    }
                    MessageState::Failed => complain!(
                        "natter: not delivered: {:?}: {}",
                        m.text,
                        m.error.unwrap_or_default()
                    ),
                    MessageState::Pending => {}
                },
                Ok(ClientEvent::ActionFailed(f)) => {
                    complain!("natter: not done: {:?}: {}", f.action, f.error)
                }
                Ok(ClientEvent::Connection(state)) => match state {
                    ConnectionState::SignedOut { reason } => {
                        return Err(ClientError::Unauthorized(reason));
                    }
                    ConnectionState::Offline { reason, .. } => {
                        complain!("natter: offline ({reason}); reconnecting");
                    }
                    ConnectionState::Online => complain!("natter: online"),
                    ConnectionState::Connecting => {}
                },
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => complain!("natter: skipped {n} events"),
                Err(RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// `natter tail --sse`: print the event stream until interrupted, reconnecting with the last
/// event id. Messages print as `tail` prints them (the conversation by id: nothing is stored
/// locally); with `json`, every event as a line `{"event", "id", "data"}`.
async fn tail_sse(
    cli: &Cli,
    profile: &Path,
    json: bool,
    since: Option<String>,
    conv: Option<&str>,
) -> Result<(), ClientError> {
    let saved = client::saved_session(profile)?.ok_or_else(|| {
        ClientError::Unauthorized("not signed in: run `natter login <user>` first".into())
    })?;
    let server: Url = match &cli.server {
        Some(s) => s.clone(),
        None => saved.server.parse().map_err(|e| {
            ClientError::Internal(format!("bad server address in the profile: {e}"))
        })?,
    };
    prepare_trust(cli, &server)?;
    trust::install_profile_pin(profile, &server)?;
    let query = match conv {
        Some(c) => format!(
            "?conv={}",
            url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
        ),
        None => String::new(),
    };
    let follow =
        client::http::follow_events(&server, &saved.session.token, &query, since, |event| {
            print_event(event, json);
            client::http::Follow::Continue
        });
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        done = follow => done,
    }
}

fn print_event(event: &natter::stream::Event, json: bool) {
    if json {
        let data: serde_json::Value = serde_json::from_str(&event.data)
            .unwrap_or(serde_json::Value::String(event.data.clone()));
        let line = serde_json::json!({"event": event.name, "id": event.id, "data": data});
        println!("{}", names::visible_json(&line.to_string()));
        return;
    }
    if event.name != "message" {
        return;
    }
    if let Ok(natter::protocol::ServerFrame::Message { message: m }) =
        serde_json::from_str(&event.data)
    {
        let what = match &m.action {
            None => match m.reply_to {
                Some(seq) => format!("(reply to #{seq}) "),
                None => String::new(),
            },
            Some(Action::Edit { target }) => format!("(edits #{target}) "),
            Some(Action::Delete { target }) => format!("(deletes #{target})"),
            Some(Action::React { target, emoji, on }) => {
                let verb = if *on { "reacts" } else { "takes back" };
                format!("({verb} {emoji} on #{target})")
            }
        };
        say!(
            "[{}] #{} #{} <{}> {what}{}",
            client::export::format_utc(m.time),
            m.conv,
            m.seq,
            m.sender,
            m.text
        );
    }
}

/// One message: as a JSON line (`reply_to`, `edited`, `deleted`, `reactions`, `attachments` as
/// the client core has them), or as text `[time] conv #seq <sender> (notes) text`, the text
/// last, each file named after it as `[file: name, size]`.
fn print_message(conv: &str, m: &LocalMessage, json: bool) {
    if json {
        let line = serde_json::json!({
            "conversation": conv,
            "conv": m.conv,
            "seq": m.seq,
            "sender": m.sender,
            "time": m.time,
            "text": m.text,
            "state": m.state,
            "reply_to": m.reply_to,
            "edited": m.edited,
            "deleted": m.deleted,
            "reactions": m.reactions,
            "attachments": m.attachments,
        });
        println!("{}", names::visible_json(&line.to_string()));
    } else {
        let state = match m.state {
            MessageState::Sent => String::new(),
            MessageState::Pending => " (pending)".into(),
            MessageState::Failed => format!(" (failed: {})", m.error.as_deref().unwrap_or("")),
        };
        let seq = m.seq.map(|s| format!(" #{s}")).unwrap_or_default();
        let mut notes = String::new();
        if let Some(q) = &m.reply_to {
            let quoted = match (&q.sender, q.deleted) {
                (_, true) => "a deleted message".to_owned(),
                (Some(sender), false) => format!("<{sender}> {}", q.snippet),
                (None, false) => "an older message".to_owned(),
            };
            notes.push_str(&format!("(re #{}: {quoted}) ", q.seq));
        }
        for r in &m.reactions {
            notes.push_str(&format!("[{} {}] ", r.emoji, r.users.join(",")));
        }
        if m.deleted {
            notes.push_str("(deleted)");
        } else if m.edited.is_some() {
            notes.push_str("(edited) ");
        }
        let files: String = m
            .attachments
            .iter()
            .map(|a| format!(" [file: {}, {}]", a.name, file_size(a.size)))
            .collect();
        say!(
            "[{}] {conv}{seq} <{}> {notes}{}{files}{state}",
            client::export::format_utc(m.time),
            m.sender,
            m.text
        );
    }
}

/// A size for people: `12 B`, `3.4 KiB`, `2.5 MiB`.
fn file_size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{:.1} MiB", b / (KIB * KIB))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("@bob"), (ConvKind::Dm, "bob"));
        assert_eq!(parse_target("#general"), (ConvKind::Room, "general"));
        assert_eq!(parse_target("general"), (ConvKind::Room, "general"));
    }

    #[test]
    fn cli_parses_global_options_anywhere() {
        let cli = Cli::try_parse_from([
            "natter",
            "send",
            "--server",
            "http://h:1",
            "general",
            "hello",
            "world",
        ])
        .unwrap();
        assert_eq!(cli.server.unwrap().as_str(), "http://h:1/");
        match cli.command {
            Command::Send {
                target,
                text,
                files,
            } => {
                assert_eq!(target, "general");
                assert_eq!(text, ["hello", "world"]);
                assert!(files.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["natter", "send", "general"]).is_err());
        let with_files =
            Cli::try_parse_from(["natter", "send", "@bob", "--file", "a.png", "--file", "b"])
                .expect("files without text");
        match with_files.command {
            Command::Send { files, text, .. } => {
                assert_eq!(files, [PathBuf::from("a.png"), PathBuf::from("b")]);
                assert!(text.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(file_size(12), "12 B");
        assert_eq!(file_size(2 * 1024 * 1024 + 512 * 1024), "2.5 MiB");
        assert!(Cli::try_parse_from(["natter", "--server", "not a url", "rooms"]).is_err());
        let h =
            Cli::try_parse_from(["natter", "history", "@bob", "--limit", "5", "--json"]).unwrap();
        assert!(matches!(
            h.command,
            Command::History {
                limit: 5,
                json: true,
                ..
            }
        ));
    }
}
