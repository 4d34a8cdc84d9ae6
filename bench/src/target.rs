//! The servers under test (Natter and the two peers): starting each one pinned to its core,
//! registering Natter users, opening one client WebSocket and speaking just enough of each
//! server's protocol to publish and receive chat messages.

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use natter::protocol::{self, ConvKind, ServerFrame};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// One client socket.
pub type Ws = WebSocketStream<TcpStream>;

/// Which server a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Natter,
    /// Node `ws` broadcast chat server (bench/peers/ws-server.js).
    Ws,
    /// socket.io chat server (bench/peers/sio-server.js), spoken to as Engine.IO v4 over WebSocket.
    Sio,
    /// The reference floor (`natter-bench floor-server`, bench/src/floor.rs): the cheapest
    /// broadcast server, stores nothing; speaks the `ws` peer's wire. Scenario 1 only.
    Floor,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Natter => "natter",
            Kind::Ws => "node-ws",
            Kind::Sio => "socket.io",
            Kind::Floor => "floor",
        }
    }

    pub fn parse(s: &str) -> Result<Kind> {
        match s {
            "natter" => Ok(Kind::Natter),
            "ws" | "node-ws" => Ok(Kind::Ws),
            "sio" | "socket.io" => Ok(Kind::Sio),
            "floor" => Ok(Kind::Floor),
            other => bail!("unknown server {other:?} (natter, ws, sio, floor)"),
        }
    }

    /// Whether a received text frame is a chat message delivery (as opposed to an ack, presence,
    /// a ping...). Checked on the frame's start so a delivery costs no JSON parse here.
    pub fn is_delivery(self, frame: &str) -> bool {
        match self {
            // Natter answers the sending socket with the committed message (`sent`) instead of
            // a second copy: that answer is the sender's delivery.
            Kind::Natter => {
                frame.starts_with(r#"{"type":"message""#)
                    || (frame.starts_with(r#"{"type":"ok""#) && frame.contains(r#""kind":"sent""#))
            }
            Kind::Ws | Kind::Floor => frame.starts_with(r#"{"type":"message""#),
            Kind::Sio => frame.starts_with(r#"42["chat""#),
        }
    }

    /// The frame that publishes `text` to conversation `conv` (room or DM) as request `id`.
    pub fn encode_send(self, dest: &Dest, id: u64, text: &str) -> String {
        // Texts are generated ASCII without quotes or backslashes, so no escaping is needed.
        debug_assert!(!text.contains(['"', '\\']));
        match (self, dest) {
            (Kind::Natter, Dest::Conv(conv)) => format!(
                r#"{{"type":"send","id":{id},"conv":{conv},"client_msg_id":"{}","text":"{text}"}}"#,
                uuid::Uuid::new_v4()
            ),
            (Kind::Natter, Dest::User(to)) => format!(
                r#"{{"type":"send","id":{id},"to":"{to}","client_msg_id":"{}","text":"{text}"}}"#,
                uuid::Uuid::new_v4()
            ),
            // The peers name rooms by string.
            (Kind::Ws | Kind::Floor, Dest::Conv(conv)) => {
                format!(r#"{{"type":"send","conv":"{conv}","text":"{text}"}}"#)
            }
            (Kind::Ws | Kind::Floor, Dest::User(to)) => {
                format!(r#"{{"type":"send","to":"{to}","text":"{text}"}}"#)
            }
            (Kind::Sio, Dest::Conv(conv)) => {
                format!(r#"42["chat",{{"conv":"{conv}","text":"{text}"}}]"#)
            }
            (Kind::Sio, Dest::User(to)) => format!(r#"42["chat",{{"to":"{to}","text":"{text}"}}]"#),
        }
    }

    /// The frame that joins room `room` as user `user` (the peers learn the name from it;
    /// Natter knows it from the token).
    pub fn encode_join(self, room: &str, user: &str, id: u64) -> String {
        match self {
            Kind::Natter => format!(r#"{{"type":"join","id":{id},"room":"{room}"}}"#),
            Kind::Ws | Kind::Floor => {
                format!(r#"{{"type":"join","room":"{room}","name":"{user}"}}"#)
            }
            Kind::Sio => format!(r#"42["join",{{"room":"{room}","name":"{user}"}}]"#),
        }
    }

    /// The frame that asks for the latest history page of a conversation.
    pub fn encode_history(self, conv: &str, id: u64) -> String {
        match self {
            Kind::Natter => format!(r#"{{"type":"history","id":{id},"conv":{conv},"limit":50}}"#),
            Kind::Ws | Kind::Floor => format!(r#"{{"type":"history","conv":"{conv}"}}"#),
            Kind::Sio => format!(r#"42["history","{conv}"]"#),
        }
    }
}

/// Where a message goes.
#[derive(Debug, Clone)]
pub enum Dest {
    /// A room (Natter: conversation id; peers: room name or id, used as given).
    Conv(String),
    /// A direct message to a user by name.
    User(String),
}

/// How to start the servers.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The natter-server binary (release build).
    pub natter_server: PathBuf,
    /// bench/peers, with node_modules installed.
    pub peers_dir: PathBuf,
    /// The CPU list the server is pinned to (taskset -c).
    pub server_cpus: String,
    /// The floor appends each message to a journal file and syncs it before sending it
    /// (`floor-server --journal`): the reference for a server that stores every message durably.
    pub durable_floor: bool,
}

/// A running server. Killed on drop.
pub struct Server {
    pub pid: u32,
    pub addr: SocketAddr,
    child: Child,
    /// Natter's data directory, removed with the server.
    _data: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Server {
    /// Start `kind` on a free port of 127.0.0.1 and wait until it answers.
    /// Natter starts from a copy of `template` (a data directory with users registered).
    pub async fn start(kind: Kind, launch: &Launch, template: Option<&Path>) -> Result<Server> {
        match kind {
            Kind::Natter => start_natter(launch, template).await,
            Kind::Ws => start_node(launch, "ws-server.js").await,
            Kind::Sio => start_node(launch, "sio-server.js").await,
            Kind::Floor => start_floor(launch).await,
        }
    }

    /// Pin every thread of the server to `cpus` (taskset -a -p). Natter is started on all
    /// cores so that registering users (argon2, deliberately slow) takes half as long, then
    /// pinned before anything is measured.
    pub async fn pin(&self, cpus: &str) -> Result<()> {
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &self.pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .await
            .context("running taskset")?;
        if !status.success() {
            bail!("taskset -a -p -c {cpus} {} failed", self.pid);
        }
        Ok(())
    }

    /// Natter's data directory (None for the peers).
    pub fn data_dir(&self) -> Option<&Path> {
        self._data.as_ref().map(|d| d.path())
    }

    /// Keep the data directory beyond the server's life (the registration template).
    pub fn take_data(&mut self) -> Option<tempfile::TempDir> {
        self._data.take()
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

async fn start_natter(launch: &Launch, template: Option<&Path>) -> Result<Server> {
    start_natter_with(launch, template, &[]).await
}

/// [`Server::start`] of Natter with settings of its own in the environment (`NATTER_...`).
pub async fn start_natter_with(
    launch: &Launch,
    template: Option<&Path>,
    env: &[(&str, String)],
) -> Result<Server> {
    let data = tempfile::tempdir()?;
    if let Some(template) = template {
        crate::scenarios::copy_dir(template, data.path())?;
    }
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cmd = Command::new("taskset");
    cmd.arg("-c")
        .arg("0-1023")
        .arg(&launch.natter_server)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(data.path())
        // The load generator opens thousands of sockets from one address, several per user.
        .args(["--max-sockets-per-user", "0", "--max-sockets-per-ip", "0"])
        .env("RUST_LOG", "warn")
        // The bench registers all its users from 127.0.0.1: lift the per-address budget.
        .env("NATTER_REGISTRATIONS_PER_IP", "1000000")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", launch.natter_server.display()))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("natter-server exited at once"))?;
    let mut server = Server {
        pid,
        addr,
        child,
        _data: Some(data),
    };
    let http = reqwest::Client::new();
    let health = format!("http://{addr}/api/health");
    for _ in 0..200 {
        if let Ok(r) = http.get(&health).send().await {
            if r.status().is_success() {
                return Ok(server);
            }
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            bail!("natter-server exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("natter-server did not answer {health} within 10 s")
}

async fn start_node(launch: &Launch, script: &str) -> Result<Server> {
    let path = launch.peers_dir.join(script);
    if !launch.peers_dir.join("node_modules").is_dir() {
        bail!(
            "{}/node_modules is missing: run `npm ci` there (scripts/bench does)",
            launch.peers_dir.display()
        );
    }
    let mut cmd = Command::new("taskset");
    cmd.arg("-c")
        .arg(&launch.server_cpus)
        .arg("node")
        .arg(script)
        .env("PORT", "0")
        .current_dir(&launch.peers_dir);
    start_listening(cmd, &format!("node {}", path.display())).await
}

/// The floor is this very binary's hidden `floor-server` subcommand, started like the peers.
async fn start_floor(launch: &Launch) -> Result<Server> {
    let exe = std::env::current_exe().context("finding natter-bench's own binary")?;
    let mut cmd = Command::new("taskset");
    cmd.arg("-c")
        .arg(&launch.server_cpus)
        .arg(exe)
        .args(["floor-server", "--port", "0"]);
    // The journal lives where Natter's data directory would: a temporary directory on the same
    // disk, removed with the server.
    let journal = if launch.durable_floor {
        let dir = tempfile::tempdir().context("making the floor's journal directory")?;
        cmd.arg("--journal").arg(dir.path().join("journal"));
        Some(dir)
    } else {
        None
    };
    let mut server = start_listening(cmd, "natter-bench floor-server").await?;
    server._data = journal;
    Ok(server)
}

/// Start a server that prints `LISTENING <port>` as its first line (the peers, the floor).
async fn start_listening(mut cmd: Command, script: &str) -> Result<Server> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {script}"))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("{script} exited at once"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .context("peer did not print LISTENING within 15 s")??
        .ok_or_else(|| anyhow!("peer {script} exited before listening"))?;
    let port: u16 = line
        .strip_prefix("LISTENING ")
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| anyhow!("unexpected first line from {script}: {line:?}"))?;
    // Keep draining stdout so a chatty peer never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Server {
        pid,
        addr: ([127, 0, 0, 1], port).into(),
        child,
        _data: None,
    })
}

/// Register `count` Natter users `{prefix}0..` concurrently; returns their bearer tokens in
/// order.
pub async fn register_users(addr: SocketAddr, count: usize, prefix: &str) -> Result<Vec<String>> {
    register_users_from(addr, 0..count, prefix).await
}

/// Register Natter users `{prefix}{i}` for each i of `range` concurrently; returns their bearer
/// tokens in order (the connection scenario extends its template this way).
pub async fn register_users_from(
    addr: SocketAddr,
    range: std::ops::Range<usize>,
    prefix: &str,
) -> Result<Vec<String>> {
    let first = range.start;
    let count = range.len();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()?;
    let url = format!("http://{addr}/api/register");
    let mut tokens = vec![String::new(); count];
    // A handful in flight keeps both cores busy with argon2 without queueing thousands.
    let results = futures_util::stream::iter(range)
        .map(|i| {
            let http = http.clone();
            let url = url.clone();
            let username = format!("{prefix}{i}");
            async move {
                let body = protocol::RegisterRequest {
                    username: username.clone(),
                    password: format!("bench-password-{i}"),
                    display_name: None,
                    avatar: None,
                    invite: None,
                };
                let resp = http.post(&url).json(&body).send().await?;
                let status = resp.status();
                if !status.is_success() {
                    bail!("register {username}: HTTP {status}: {}", resp.text().await?);
                }
                let session: protocol::Session = resp.json().await?;
                Ok::<_, anyhow::Error>((i, session.token))
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    for r in results {
        let (i, token) = r?;
        tokens[i - first] = token;
    }
    Ok(tokens)
}

/// Buffers sized for many connections on the generator side: messages are 100 bytes, so the
/// 128 KiB default read buffer would only cost memory (19,000 x 128 KiB). Small for speed too:
/// tungstenite zero-fills the free part of its read buffer before every read (the last one,
/// which finds the socket empty, included), which at 8 KiB was 8% of the generator's CPU.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(2 * 1024)
        .write_buffer_size(0)
}

/// Open one client socket to `server` from source address `src`, and complete the server's
/// own handshake. Returns the socket and, for Natter, the id of the default room.
pub async fn connect(
    kind: Kind,
    addr: SocketAddr,
    token: Option<&str>,
    src: Ipv4Addr,
) -> Result<(Ws, Option<i64>)> {
    connect_with(kind, addr, token, src, None).await
}

/// [`connect`], optionally with a small kernel receive buffer: a client that will stop reading
/// (scenario 4) then fills the server's side within seconds instead of parking megabytes in
/// loopback socket buffers, the way a stalled client on a slow network does.
pub async fn connect_with(
    kind: Kind,
    addr: SocketAddr,
    token: Option<&str>,
    src: Ipv4Addr,
    recv_buffer: Option<u32>,
) -> Result<(Ws, Option<i64>)> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    // Several source addresses (127.0.0.x) so tens of thousands of sockets never exhaust the
    // ephemeral ports of one address pair.
    socket.bind((src, 0).into())?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let url = match kind {
        Kind::Natter => format!("ws://{addr}/ws"),
        Kind::Ws | Kind::Floor => format!("ws://{addr}/"),
        Kind::Sio => format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"),
    };
    let mut req = url.into_client_request()?;
    if kind == Kind::Natter {
        let token = token.ok_or_else(|| anyhow!("natter needs a token"))?;
        let h = req.headers_mut();
        h.insert("authorization", format!("Bearer {token}").parse()?);
        h.insert("sec-websocket-protocol", protocol::SUBPROTOCOL.parse()?);
    }
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(req, stream, Some(client_config())).await?;
    let general = match kind {
        Kind::Natter => Some(await_hello(&mut ws).await?),
        Kind::Sio => {
            sio_handshake(&mut ws).await?;
            None
        }
        Kind::Ws | Kind::Floor => None,
    };
    Ok((ws, general))
}

async fn next_text(ws: &mut Ws) -> Result<String> {
    let deadline = Duration::from_secs(60);
    loop {
        let msg = tokio::time::timeout(deadline, ws.next())
            .await
            .context("handshake timed out")?
            .ok_or_else(|| anyhow!("closed during handshake"))??;
        match msg {
            Message::Text(t) => return Ok(t.as_str().to_owned()),
            Message::Close(c) => bail!("closed during handshake: {c:?}"),
            _ => {}
        }
    }
}

/// Natter's first frame is `hello`; the default room is where the fan-out scenario publishes.
async fn await_hello(ws: &mut Ws) -> Result<i64> {
    loop {
        let text = next_text(ws).await?;
        if let Some(general) = default_room_in_hello(&text) {
            return general;
        }
    }
}

/// The default room's id when `text` is a hello. Only the conversations are read: the hello
/// also names every online user (thousands of names in the idle scenario), and parsing it as a
/// whole `ServerFrame` (an internally tagged enum, buffered and copied by serde) made the
/// generator, not the server, the slow side of opening connections.
fn default_room_in_hello(text: &str) -> Option<Result<i64>> {
    #[derive(serde::Deserialize)]
    struct Hello {
        #[serde(rename = "type")]
        kind: String,
        conversations: Vec<Conv>,
    }
    #[derive(serde::Deserialize)]
    struct Conv {
        id: i64,
        kind: ConvKind,
        name: String,
    }
    let hello: Hello = serde_json::from_str(text).ok()?;
    if hello.kind != "hello" {
        return None;
    }
    Some(
        hello
            .conversations
            .iter()
            .find(|c| c.kind == ConvKind::Room && c.name == protocol::limits::DEFAULT_ROOM)
            .map(|c| c.id)
            .ok_or_else(|| anyhow!("hello without the default room")),
    )
}

/// Engine.IO v4 open (`0{...}`), then a socket.io CONNECT to the main namespace (`40`).
async fn sio_handshake(ws: &mut Ws) -> Result<()> {
    let open = next_text(ws).await?;
    if !open.starts_with('0') {
        bail!("expected an Engine.IO open packet, got {open:?}");
    }
    ws.send(Message::text("40")).await?;
    loop {
        let t = next_text(ws).await?;
        if t.starts_with("40") {
            return Ok(());
        }
        if t.starts_with("44") {
            bail!("socket.io refused the connection: {t}");
        }
    }
}

/// Put a Natter client in room `room`: join it, or create it when it does not exist yet.
/// Returns the room's conversation id.
pub async fn natter_enter_room(ws: &mut Ws, room: &str, id: u64) -> Result<i64> {
    ws.send(Message::text(Kind::Natter.encode_join(room, "", id)))
        .await?;
    match await_reply(ws, id).await? {
        ServerFrame::Ok {
            result: protocol::Reply::Joined { conversation },
            ..
        } => Ok(conversation.id),
        ServerFrame::Error {
            code: protocol::ErrorCode::NotFound,
            ..
        } => {
            let create = format!(
                r#"{{"type":"create_room","id":{},"name":"{room}"}}"#,
                id + 1
            );
            ws.send(Message::text(create)).await?;
            match await_reply(ws, id + 1).await? {
                ServerFrame::Ok {
                    result: protocol::Reply::Joined { conversation },
                    ..
                } => Ok(conversation.id),
                other => bail!("create_room {room}: {other:?}"),
            }
        }
        other => bail!("join {room}: {other:?}"),
    }
}

/// Read until the answer to request `id` (skipping pushes).
async fn await_reply(ws: &mut Ws, id: u64) -> Result<ServerFrame> {
    loop {
        let text = next_text(ws).await?;
        match serde_json::from_str::<ServerFrame>(&text) {
            Ok(f @ ServerFrame::Ok { id: got, .. }) if got == id => return Ok(f),
            Ok(f @ ServerFrame::Error { id: Some(got), .. }) if got == id => return Ok(f),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The light hello reader finds the default room in what the protocol type encodes, skips
    /// other frames, and says so when the room is missing.
    #[test]
    fn the_default_room_is_read_from_a_real_hello() {
        let conv = |id, kind, name: &str| protocol::Conversation {
            id,
            kind,
            name: name.into(),
            peer: None,
            member_count: 2,
            last_seq: 0,
            last_read: 0,
            private: false,
            moderator: false,
        };
        let hello = |conversations| ServerFrame::Hello {
            protocol: protocol::PROTOCOL_VERSION,
            server_id: "0123456789abcdef0123456789abcdef".into(),
            user: protocol::User {
                username: "u1".into(),
                display_name: "u1".into(),
                avatar: String::new(),
                deleted: false,
                avatar_image: None,
                admin: false,
            },
            server_time: 1,
            heartbeat_ms: 25_000,
            conversations,
            online: vec!["u0".into(), "u1".into()],
            unread: Vec::new(),
            attention: Default::default(),
        };
        let general = protocol::limits::DEFAULT_ROOM;
        let text = serde_json::to_string(&hello(vec![
            conv(4, ConvKind::Dm, general),
            conv(9, ConvKind::Room, "other"),
            conv(3, ConvKind::Room, general),
        ]))
        .unwrap();
        assert_eq!(default_room_in_hello(&text).unwrap().unwrap(), 3);
        let text = serde_json::to_string(&hello(vec![conv(9, ConvKind::Room, "other")])).unwrap();
        assert!(default_room_in_hello(&text).unwrap().is_err());
        let presence = serde_json::to_string(&ServerFrame::Presence {
            online: vec!["u0".into()],
            offline: Vec::new(),
        })
        .unwrap();
        assert!(default_room_in_hello(&presence).is_none());
    }

    #[test]
    fn deliveries_are_told_from_other_frames() {
        assert!(Kind::Natter.is_delivery(r#"{"type":"message","message":{}}"#));
        assert!(Kind::Natter.is_delivery(r#"{"type":"ok","id":1,"result":{"kind":"sent"}}"#));
        assert!(!Kind::Natter.is_delivery(r#"{"type":"ok","id":1,"result":{"kind":"done"}}"#));
        assert!(!Kind::Ws.is_delivery(r#"{"type":"ok","id":1,"result":{"kind":"sent"}}"#));
        assert!(!Kind::Natter.is_delivery(r#"{"type":"presence","username":"a","online":true}"#));
        assert!(Kind::Sio.is_delivery(r#"42["chat",{"text":"x"}]"#));
        assert!(!Kind::Sio.is_delivery("2"));
        assert!(!Kind::Sio.is_delivery(r#"42["history",[]]"#));
    }

    #[test]
    fn natter_send_frames_are_valid_protocol() {
        let f = Kind::Natter.encode_send(&Dest::Conv("3".into()), 9, "hello");
        let parsed: protocol::ClientFrame = serde_json::from_str(&f).unwrap();
        assert!(matches!(
            parsed,
            protocol::ClientFrame::Send {
                id: 9,
                target: protocol::Target::Conv(3),
                ..
            }
        ));
        let peer: serde_json::Value =
            serde_json::from_str(&Kind::Ws.encode_send(&Dest::Conv("r1".into()), 1, "x")).unwrap();
        assert_eq!(peer["conv"], "r1");
        let sio = Kind::Sio.encode_send(&Dest::Conv("r1".into()), 1, "x");
        let sio: serde_json::Value = serde_json::from_str(&sio[2..]).unwrap();
        assert_eq!(sio[1]["conv"], "r1");
        let f = Kind::Natter.encode_send(&Dest::User("bob".into()), 10, "hi");
        let parsed: protocol::ClientFrame = serde_json::from_str(&f).unwrap();
        assert!(
            matches!(parsed, protocol::ClientFrame::Send { target: protocol::Target::To(ref t), .. } if t == "bob")
        );
        let j: protocol::ClientFrame =
            serde_json::from_str(&Kind::Natter.encode_join("r1", "u1", 4)).unwrap();
        assert!(matches!(j, protocol::ClientFrame::Join { id: 4, .. }));
        let h: protocol::ClientFrame =
            serde_json::from_str(&Kind::Natter.encode_history("7", 5)).unwrap();
        assert!(matches!(
            h,
            protocol::ClientFrame::History {
                conv: 7,
                limit: 50,
                ..
            }
        ));
    }

    #[test]
    fn unknown_server_names_are_refused() {
        assert!(Kind::parse("nginx").is_err());
        assert_eq!(Kind::parse("sio").unwrap(), Kind::Sio);
        assert_eq!(Kind::parse("floor").unwrap(), Kind::Floor);
    }
}
