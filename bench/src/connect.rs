//! Issue 15's connection scenario: N distinct Natter users each open one socket and wait for
//! `hello`, against the `ws` peer opening N sockets in the same run. Reports the wall time for
//! all N to connect, the server's CPU seconds meanwhile and its CPU per connect, so "within 2x
//! of ws" and "CPU per connect flat from 1,000 to 19,000" can be read off one table.
//!
//! Registering a user costs an argon2 hash, so the users are registered once into a template
//! (a data directory plus every user's token) kept on disk and reused by later runs and builds;
//! a run that needs more users than the template holds registers only the missing ones.

use crate::load::Swarm;
use crate::procfs;
use crate::target::{self, Kind, Launch, Server};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Prefix of the template's usernames (`c0`, `c1`...), distinct from the other scenarios' `u`.
const USER_PREFIX: &str = "c";

/// The template's files: `data/` (Natter's data directory) and `tokens.json` (token i is
/// user `c{i}`'s).
pub struct Template {
    pub data: PathBuf,
    pub tokens: Vec<String>,
}

fn tokens_path(dir: &Path) -> PathBuf {
    dir.join("tokens.json")
}

/// The template in `dir` with at least `users` users: loaded as it is when it has enough,
/// else extended by registering the missing users against a server started from it (on all
/// cores: argon2 is the cost) and saved back.
pub async fn prepare_template(launch: &Launch, dir: &Path, users: usize) -> Result<Template> {
    let data = dir.join("data");
    let mut tokens: Vec<String> = match std::fs::read(tokens_path(dir)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {}", tokens_path(dir).display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).context(format!("reading {}", tokens_path(dir).display())),
    };
    if !tokens.is_empty() && !data.is_dir() {
        bail!(
            "{} lists tokens but {} is missing: remove the template directory",
            tokens_path(dir).display(),
            data.display()
        );
    }
    if tokens.len() >= users {
        eprintln!(
            "  template {}: {} users registered, reused",
            dir.display(),
            tokens.len()
        );
        return Ok(Template { data, tokens });
    }
    let t = Instant::now();
    let have = tokens.len();
    let template = data.is_dir().then_some(data.as_path());
    let mut server = Server::start(Kind::Natter, launch, template).await?;
    tokens.extend(target::register_users_from(server.addr, have..users, USER_PREFIX).await?);
    let fresh = server
        .take_data()
        .context("the natter server has no data directory")?;
    server.stop().await;
    // Replace the old data directory only once the new one is complete.
    let staging = dir.join("data.new");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    crate::scenarios::copy_dir(fresh.path(), &staging)?;
    let _ = std::fs::remove_dir_all(&data);
    std::fs::rename(&staging, &data)?;
    std::fs::write(tokens_path(dir), serde_json::to_vec(&tokens)?)?;
    eprintln!(
        "  template {}: registered users {have}..{users} in {:.1} s",
        dir.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(Template { data, tokens })
}

/// One row of the table: one server, one N.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectRow {
    pub server: &'static str,
    pub users: usize,
    /// From the first connect to the last `hello` (Natter) or completed handshake (`ws`).
    pub connect_secs: f64,
    /// Server CPU from the first connect until the server had sent nothing more for
    /// [`SETTLE_QUIET`] (Natter's presence updates to the users online included).
    pub server_cpu_secs: f64,
    /// Sockets the server closed during the step (should be 0).
    pub closed: u64,
    pub load: String,
}

impl ConnectRow {
    pub fn cpu_ms_per_connect(&self) -> f64 {
        self.server_cpu_secs * 1e3 / self.users.max(1) as f64
    }
}

/// How long the server must stay silent after the last connect before its CPU is read.
const SETTLE_QUIET: Duration = Duration::from_millis(500);

/// The connection scenario: for each N of `ladder` and each server, a fresh server (Natter
/// from a copy of the template) and N new sockets, one per user.
pub async fn run(
    launch: &Launch,
    kinds: &[Kind],
    ladder: &[usize],
    template: Option<&Template>,
) -> Result<Vec<ConnectRow>> {
    let mut rows = Vec::new();
    for &n in ladder {
        for &kind in kinds {
            let tokens: &[String] = match (kind, template) {
                (Kind::Natter, Some(t)) if t.tokens.len() >= n => &t.tokens[..n],
                (Kind::Natter, _) => bail!("natter needs a template with {n} users"),
                _ => &[],
            };
            let server = Server::start(
                kind,
                launch,
                template
                    .filter(|_| kind == Kind::Natter)
                    .map(|t| t.data.as_path()),
            )
            .await?;
            server.pin(&launch.server_cpus).await?;
            // Let the server finish starting (Natter opens and checks its database) before
            // its CPU is counted.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before = procfs::sample(server.pid)?.cpu_secs;
            let mut swarm = Swarm::new(kind);
            let t = Instant::now();
            swarm
                .connect(server.addr, tokens, n)
                .await
                .with_context(|| format!("{}: connecting {n} users", kind.name()))?;
            let connect_secs = t.elapsed().as_secs_f64();
            swarm.settle(SETTLE_QUIET, Duration::from_secs(120)).await;
            let after = procfs::sample(server.pid)?.cpu_secs;
            let row = ConnectRow {
                server: kind.name(),
                users: n,
                connect_secs,
                server_cpu_secs: after - before,
                closed: swarm
                    .recorder
                    .closed
                    .load(std::sync::atomic::Ordering::Relaxed),
                load: procfs::loadavg(),
            };
            eprintln!(
                "  {:9} N={n:6} connected in {:.2} s, server cpu {:.2} s ({:.3} ms/connect), closed {}, load {}",
                row.server,
                row.connect_secs,
                row.server_cpu_secs,
                row.cpu_ms_per_connect(),
                row.closed,
                row.load
            );
            rows.push(row);
            drop(swarm);
            server.stop().await;
        }
    }
    Ok(rows)
}

/// The table: every row, and for Natter its connect time over `ws`'s at the same N.
pub fn table(rows: &[ConnectRow]) -> String {
    let mut out = String::from(
        "| server | users | connect (s) | x node-ws | server CPU (s) | CPU/connect (ms) | closed | load |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        let ws = rows
            .iter()
            .find(|w| w.server == Kind::Ws.name() && w.users == r.users);
        let ratio = match ws {
            Some(w) if r.server != w.server && w.connect_secs > 0.0 => {
                format!("{:.2}", r.connect_secs / w.connect_secs)
            }
            _ => "-".into(),
        };
        out.push_str(&format!(
            "| {} | {} | {:.2} | {} | {:.2} | {:.3} | {} | {} |\n",
            r.server,
            r.users,
            r.connect_secs,
            ratio,
            r.server_cpu_secs,
            r.cpu_ms_per_connect(),
            r.closed,
            r.load
        ));
    }
    out
}

/// What the run needs of the open-file limit: one descriptor per socket on each side (the
/// generator and the server are separate processes with the same limit), plus a margin for
/// the process's own files.
pub fn needed_open_files(largest: usize) -> u64 {
    largest as u64 + 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(server: &'static str, users: usize, secs: f64, cpu: f64) -> ConnectRow {
        ConnectRow {
            server,
            users,
            connect_secs: secs,
            server_cpu_secs: cpu,
            closed: 0,
            load: "1.00 1.00 1.00".into(),
        }
    }

    /// Natter's ratio is to node-ws at the same N only; node-ws itself and an N without a
    /// node-ws row show "-".
    #[test]
    fn the_table_compares_each_n_with_node_ws_at_that_n() {
        let rows = [
            row("natter", 1_000, 0.5, 0.25),
            row("node-ws", 1_000, 0.25, 0.1),
            row("natter", 5_000, 3.0, 1.5),
            row("node-ws", 19_000, 2.0, 1.0),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(
            lines[2],
            "| natter | 1000 | 0.50 | 2.00 | 0.25 | 0.250 | 0 | 1.00 1.00 1.00 |"
        );
        assert!(lines[3].starts_with("| node-ws | 1000 | 0.25 | - |"));
        assert!(lines[4].starts_with("| natter | 5000 | 3.00 | - | 1.50 | 0.300 |"));
    }

    #[test]
    fn cpu_per_connect_is_in_milliseconds_and_survives_zero_users() {
        assert_eq!(row("natter", 2_000, 1.0, 3.0).cpu_ms_per_connect(), 1.5);
        assert_eq!(row("natter", 0, 1.0, 0.0).cpu_ms_per_connect(), 0.0);
    }

    /// A template whose tokens survive but whose data directory is gone is refused (its tokens
    /// would name users no server knows), without starting any server.
    #[tokio::test]
    async fn a_template_without_its_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(tokens_path(dir.path()), r#"["t0","t1"]"#).unwrap();
        let launch = Launch {
            natter_server: PathBuf::from("/nonexistent/natter-server"),
            peers_dir: PathBuf::new(),
            server_cpus: "0".into(),
            durable_floor: false,
        };
        let err = prepare_template(&launch, dir.path(), 1)
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("is missing"), "{err:#}");
    }

    /// A template with enough users is reused as it is: no server is started (the binary does
    /// not even exist) and the tokens come back in order.
    #[tokio::test]
    async fn a_large_enough_template_is_reused_without_a_server() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(tokens_path(dir.path()), r#"["t0","t1","t2"]"#).unwrap();
        let launch = Launch {
            natter_server: PathBuf::from("/nonexistent/natter-server"),
            peers_dir: PathBuf::new(),
            server_cpus: "0".into(),
            durable_floor: false,
        };
        let t = prepare_template(&launch, dir.path(), 2).await.unwrap();
        assert_eq!(t.tokens, ["t0", "t1", "t2"]);
        assert_eq!(t.data, dir.path().join("data"));
    }
}
