//! Storage faults on the server, with the real `natter-server` binary over real SQLite files: a
//! page damaged in the middle of `natter.db`, a database emptied or deleted under a data directory
//! that held one, a full disk (a small tmpfs), and the permissions of the data directory and its
//! files. A bad store must stop the server before it announces itself, with a message that names
//! the file; a full disk must reach users as `storage_full`, never as `internal`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use natter::client::{Client, ClientConfig, ClientError};
use natter::protocol::ErrorCode;
use support::{
    assert_private, damage_middle_page, db_files, loosen, ServerProcess, TestServer, WsClient,
    PASSWORD,
};
use uuid::Uuid;

const SERVER: &str = env!("CARGO_BIN_EXE_natter-server");

/// What a server that refused to start printed, or a failure when it did not exit in time (it
/// served instead).
struct Refused {
    stdout: String,
    stderr: String,
}

async fn start_expecting_refusal(data_dir: &Path, extra: &[&str]) -> Refused {
    let child = tokio::process::Command::new(SERVER)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn natter-server");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the server exits instead of serving")
        .expect("server output");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        !out.status.success(),
        "exit status {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    assert!(
        !stdout.contains("listening"),
        "announced a server it does not run: {stdout}"
    );
    Refused { stdout, stderr }
}

/// A data directory with real data written through a real server: users, and enough messages
/// (about 1.2 MB) that the middle of the file is message pages.
async fn data_dir_with_history() -> tempfile::TempDir {
    let server = TestServer::start_with(|c| {
        c.rate_limit_per_sec = 100_000;
        c.rate_burst = 100_000;
        // These are SQLite's files, on every test pass.
        c.store = None;
    })
    .await;
    let alice = server.register("alice").await;
    server.register("bob").await;
    let mut ws = server.connect(&alice.token).await;
    let general = ws.general();
    for i in 0..300 {
        ws.send_text(general, &format!("message {i} {}", "x".repeat(4_000 - 20)))
            .await;
    }
    drop(ws);
    let (dir, result) = server.stop().await;
    result.expect("clean stop");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_database_stops_the_server_before_it_listens() {
    let dir = data_dir_with_history().await;
    let db = dir.path().join("natter.db");
    let page = damage_middle_page(&db);
    let refused = start_expecting_refusal(dir.path(), &[]).await;
    assert!(
        refused.stderr.contains(&db.display().to_string()) && refused.stderr.contains("damaged"),
        "page {page} damaged; stderr: {}",
        refused.stderr
    );
    // Not even --init starts over a damaged file: that would write into it.
    start_expecting_refusal(dir.path(), &["--init"]).await;
    assert!(refused.stdout.is_empty(), "{}", refused.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_is_refused_unless_told_to_initialise() {
    let server = TestServer::start_with(|c| c.store = None).await;
    server.register("alice").await;
    let (dir, result) = server.stop().await;
    result.expect("clean stop");
    let db = dir.path().join("natter.db");
    assert!(dir.path().join("natter.initialized").exists());

    // Emptied (a 0-byte file), then deleted: both are lost data, not a new install.
    std::fs::write(&db, b"").unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(natter::dbfile::with_suffix(&db, suffix));
    }
    for _ in 0..2 {
        let refused = start_expecting_refusal(dir.path(), &[]).await;
        assert!(
            refused.stderr.contains(&db.display().to_string()) && refused.stderr.contains("--init"),
            "stderr: {}",
            refused.stderr
        );
        let _ = std::fs::remove_file(&db);
    }

    // Told to, it starts afresh: alice is gone, a new account works.
    let proc = ServerProcess::spawn(SERVER, dir.path(), &["--init"]).await;
    let http = reqwest::Client::new();
    let login = http
        .post(format!("http://{}/api/login", proc.addr))
        .json(&serde_json::json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 401);
    drop(proc);

    // A fresh data directory needs nothing: it starts and is marked.
    let fresh = tempfile::tempdir().unwrap();
    let proc = ServerProcess::spawn(SERVER, fresh.path(), &[]).await;
    assert!(fresh.path().join("natter.initialized").exists());
    drop(proc);
}

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` when this process may not mount (not root, or no CAP_SYS_ADMIN).
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes a file until the file system is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).and_then(|()| f.flush()).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_storage_full_for_users_and_in_the_log() {
    // CI runs the tests as root; elsewhere the size-cap test below covers storage_full.
    let Some(disk) = Tmpfs::mount("8m") else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs (needs root); \
             a_database_at_its_size_cap_refuses_writes_as_storage_full covers storage_full"
        );
        return;
    };
    let proc = ServerProcess::spawn_logged(SERVER, &disk.path(), &[]).await;
    let base = format!("http://{}", proc.addr);
    let (alice, mut ws) = sign_up(&proc).await;
    let general = ws.general();
    let profile = tempfile::tempdir().unwrap();
    let client = Client::start(
        ClientConfig::new(base.parse().unwrap(), profile.path().to_path_buf()),
        alice.clone(),
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(30), client.wait_synced())
        .await
        .expect("client online")
        .unwrap();

    let filler = disk.fill();
    // A message: refused as storage_full (never stored, never `internal`).
    let mut refused = Vec::new();
    for i in 0..5 {
        match ws
            .send_with_id(general, &format!("while full {i}"), Uuid::new_v4())
            .await
        {
            Ok(m) => panic!("stored on a full disk: {m:?}"),
            Err((code, message)) => {
                assert_eq!(code, ErrorCode::StorageFull, "{message}");
                refused.push(message);
            }
        }
    }
    // Over HTTP: 507 with the ApiError body.
    let resp = register(&proc, "bob").await;
    assert_eq!(resp.status().as_u16(), 507);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "storage_full", "{body}");
    // The client core names it so the UI can translate it.
    match client.create_room("lounge").await {
        Err(e @ ClientError::StorageFull(_)) => assert_eq!(e.code(), "storage_full"),
        other => panic!("expected storage_full, got {other:?}"),
    }

    // Space freed: writes work again, and nothing refused was stored.
    std::fs::remove_file(filler).unwrap();
    let ok = ws.send_text(general, "after freeing space").await;
    let history = ws.all_history(general).await;
    assert_eq!(history.last().map(|m| m.id), Some(ok.id));
    assert!(!history.iter().any(|m| m.text.starts_with("while full")));
    client.shutdown().await;

    assert_full_disk_logged(proc).await;
}

/// Registers `name` on the server process.
async fn register(proc: &ServerProcess, name: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/api/register", proc.addr))
        .json(&serde_json::json!({"username": name, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

/// Registers alice and opens her socket.
async fn sign_up(proc: &ServerProcess) -> (natter::protocol::Session, WsClient) {
    let alice: natter::protocol::Session = register(proc, "alice").await.json().await.unwrap();
    let mut ws = WsClient::connect(&proc.ws_url(), Some(&alice.token))
        .await
        .unwrap();
    ws.expect_hello().await;
    (alice, ws)
}

/// Stops the server and checks its log named the full disk truly: its own line, SQLite's own
/// words, and not the old relabelled error.
async fn assert_full_disk_logged(mut proc: ServerProcess) {
    use tokio::io::AsyncReadExt;
    proc.child.kill().await.unwrap();
    let mut log = String::new();
    proc.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .await
        .unwrap();
    assert!(
        log.contains("storage full") && log.contains("database or disk is full"),
        "{log}"
    );
    assert!(!log.contains("Invalid parameter name"), "{log}");
}

/// Without root (no tmpfs), the hidden `--max-db-pages` stands in for a full disk: a write that
/// needs a page beyond the cap fails as SQLITE_FULL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_at_its_size_cap_refuses_writes_as_storage_full() {
    let dir = tempfile::tempdir().unwrap();
    let proc = ServerProcess::spawn_logged(SERVER, dir.path(), &["--max-db-pages", "60"]).await;
    let (_, mut ws) = sign_up(&proc).await;
    let general = ws.general();
    // Each message takes a page of its own: the cap is reached within 60 of them.
    let (mut stored, mut refused) = (0, 0);
    for i in 0..200 {
        let text = format!("{i} {}", "z".repeat(3_900));
        match ws.send_with_id(general, &text, Uuid::new_v4()).await {
            Ok(_) => stored += 1,
            Err((code, message)) => {
                if code != ErrorCode::StorageFull {
                    let mut proc = proc;
                    proc.child.kill().await.unwrap();
                    let out = proc.child.wait_with_output().await.unwrap();
                    panic!(
                        "{code:?} {message}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused, 3, "{stored} stored and none refused");
    assert_eq!(ws.all_history(general).await.len(), stored);
    assert_full_disk_logged(proc).await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_its_files_are_private() {
    // New: created private whatever the umask (this process's is the usual 022).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = || {
        TestServer::start_in(tempfile::tempdir().unwrap(), |c| {
            c.data_dir = data.clone();
            c.store = None;
        })
    };
    let server = start().await;
    server.register("alice").await;
    assert!(
        db_files(&data).iter().all(|f| f.exists()),
        "db, wal and shm while running"
    );
    assert_private(&data);
    server.stop().await.1.unwrap();

    // Existing and loose (an older install), with a WAL left behind: tightened at start.
    for f in db_files(&data).iter().skip(1).filter(|f| !f.exists()) {
        std::fs::write(f, b"").unwrap();
    }
    loosen(&data);
    let server = start().await;
    server.login("alice").await;
    assert_private(&data);
    server.stop().await.1.unwrap();
}

/// `--store` picks where the database lives: a `sqlite:` path outside the data directory is
/// created there and serves; a backend Natter does not have is refused by name, and a
/// PostgreSQL server that does not answer is refused saying so, before anything listens.
#[tokio::test]
async fn the_store_flag_chooses_the_database_and_refuses_unknown_backends() {
    let dir = tempfile::tempdir().unwrap();
    let refused = start_expecting_refusal(dir.path(), &["--store", "mysql://db/natter"]).await;
    assert!(
        refused
            .stderr
            .contains("unsupported store \"mysql://db/natter\""),
        "{}",
        refused.stderr
    );
    // Port 1 on loopback: nothing listens there.
    let refused = start_expecting_refusal(
        dir.path(),
        &["--store", "postgres://natter@127.0.0.1:1/natter"],
    )
    .await;
    assert!(
        refused.stderr.contains("cannot connect to PostgreSQL"),
        "{}",
        refused.stderr
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let db = elsewhere.path().join("chat.db");
    let store = format!("sqlite:{}", db.display());
    let mut proc = support::ServerProcess::spawn(SERVER, dir.path(), &["--store", &store]).await;
    let status = reqwest::Client::new()
        .post(format!("http://{}/api/register", proc.addr))
        .json(&serde_json::json!({"username": "alice", "password": support::PASSWORD}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
    proc.child.kill().await.unwrap();
    assert!(
        db.metadata().unwrap().len() > 0,
        "the database is where --store said"
    );
    assert!(
        !dir.path().join("natter.db").exists(),
        "and not in the data directory"
    );
}
