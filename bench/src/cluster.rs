//! Cluster figures (issue 16, docs/scaling.md): one SQLite node against PostgreSQL nodes
//! behind nginx (`scripts/cluster`), in one run, with the same clients in one room and the same
//! publish rates: messages committed and deliveries per second, delivery latency, the CPU of
//! everything that serves (the nodes; for a cluster also PostgreSQL and its backends, Redis and
//! nginx with its workers), and what was lost. Everything that serves is pinned to the server
//! cores, so the figures compare what each setup costs, not how many cores it could use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::process::Command;

use crate::load::{StepResult, Swarm};
use crate::procfs;
use crate::target::{self, Kind, Launch, Server};

/// One measured step of one setup.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterRow {
    /// "sqlite x1" or "postgres xN".
    pub setup: String,
    pub clients: usize,
    pub step: StepResult,
}

/// A cluster started by `scripts/cluster`.
struct Cluster {
    dir: PathBuf,
    addr: SocketAddr,
    /// The processes that serve: nodes, nginx, redis-server, the PostgreSQL postmaster.
    roots: Vec<u32>,
}

fn read_pid(path: &Path) -> Result<u32> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| anyhow!("no pid in {}", path.display()))
}

impl Cluster {
    async fn start(nodes: usize) -> Result<Cluster> {
        let out = Command::new("scripts/cluster")
            .args(["start", &nodes.to_string()])
            // The bench registers its users and opens its sockets from 127.0.0.1.
            .env("NATTER_REGISTRATIONS_PER_IP", "1000000")
            .env("NATTER_MAX_SOCKETS_PER_USER", "0")
            .env("NATTER_MAX_SOCKETS_PER_IP", "0")
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit())
            .output()
            .await
            .context("running scripts/cluster (from the repository's root)")?;
        if !out.status.success() {
            bail!("scripts/cluster start {nodes} failed");
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let value = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {key}=")))
                .map(str::to_string)
                .ok_or_else(|| anyhow!("scripts/cluster printed no {key}"))
        };
        let dir = PathBuf::from(value("NATTER_CLUSTER_DIR")?);
        let url = value("NATTER_CLUSTER_URL")?;
        let addr = url
            .trim_start_matches("http://")
            .parse()
            .with_context(|| format!("cluster address {url}"))?;
        let mut roots: Vec<u32> = std::fs::read_to_string(dir.join("pids"))?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        roots.push(read_pid(&dir.join("nginx/nginx.pid"))?);
        let redis_dir = std::fs::read_to_string(dir.join("redis-dir"))?;
        roots.push(read_pid(&Path::new(redis_dir.trim()).join("redis.pid"))?);
        let pg_dir = std::fs::read_to_string(dir.join("postgres-dir"))?;
        roots.push(read_pid(
            &Path::new(pg_dir.trim()).join("data/postmaster.pid"),
        )?);
        Ok(Cluster { dir, addr, roots })
    }

    async fn stop(self) {
        let _ = Command::new("scripts/cluster")
            .arg("stop")
            .env("NATTER_CLUSTER_DIR", &self.dir)
            .status()
            .await;
    }
}

/// Pin every process of the trees at `roots` (every thread) to `cpus`.
async fn pin(roots: &[u32], cpus: &str) -> Result<()> {
    for pid in procfs::tree(roots) {
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .await
            .context("running taskset")?;
        if !status.success() {
            bail!("taskset -a -p -c {cpus} {pid} failed");
        }
    }
    Ok(())
}

/// The setups to compare: 0 is one SQLite node (started like every other natter-server of
/// the bench), N > 0 is N PostgreSQL nodes on Redis behind nginx.
pub async fn run(
    launch: &Launch,
    setups: &[usize],
    clients: usize,
    rates: &[f64],
    warmup: Duration,
    measure: Duration,
) -> Result<Vec<ClusterRow>> {
    let mut rows = Vec::new();
    for &nodes in setups {
        let (setup, addr, roots, single, cluster) = if nodes == 0 {
            let server = Server::start(Kind::Natter, launch, None).await?;
            let (addr, pid) = (server.addr, server.pid);
            ("sqlite x1".to_string(), addr, vec![pid], Some(server), None)
        } else {
            let cluster = Cluster::start(nodes).await?;
            let (addr, roots) = (cluster.addr, cluster.roots.clone());
            (
                format!("postgres x{nodes}"),
                addr,
                roots,
                None,
                Some(cluster),
            )
        };
        eprintln!("== {setup}: registering {clients} users through {addr}");
        let tokens = target::register_users(addr, clients, "c").await?;
        pin(&roots, &launch.server_cpus).await?;
        let mut swarm = Swarm::new(Kind::Natter);
        swarm.connect(addr, &tokens, clients).await?;
        swarm
            .settle(Duration::from_millis(500), Duration::from_secs(60))
            .await;
        // Connections opened PostgreSQL backends and nginx workers may have started since.
        pin(&roots, &launch.server_cpus).await?;
        for &rate in rates {
            let step = swarm.fanout_step(&roots, rate, warmup, measure).await?;
            let row = ClusterRow {
                setup: setup.clone(),
                clients,
                step,
            };
            eprintln!("  {}", table_row(&row, measure));
            rows.push(row);
        }
        drop(swarm);
        if let Some(server) = single {
            server.stop().await;
        }
        if let Some(cluster) = cluster {
            cluster.stop().await;
        }
    }
    Ok(rows)
}

/// The rows as a Markdown table (docs/scaling.md).
pub fn table(rows: &[ClusterRow], measure: Duration) -> String {
    let mut out = String::from(
        "| setup | clients | msgs/s offered | committed/s | deliveries/s | p50 ms | p99 ms | server CPU % of one core | deliveries per CPU-s | lost |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        out.push_str(&table_row(r, measure));
        out.push('\n');
    }
    out
}

/// One row of [`table`]: also what the run prints as each step ends.
fn table_row(r: &ClusterRow, measure: Duration) -> String {
    let s = &r.step;
    format!(
        "| {} | {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.1} | {:.0} | {} |",
        r.setup,
        r.clients,
        s.rate,
        s.measured_messages as f64 / measure.as_secs_f64(),
        s.deliveries_per_sec,
        s.p50_us as f64 / 1e3,
        s.p99_us as f64 / 1e3,
        s.server_cpu_pct,
        s.deliveries_per_cpu_sec,
        s.lost,
    )
}
