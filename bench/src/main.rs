//! `natter-bench`: Natter's benchmarks, side by side with a Node `ws` broadcast server and a
//! socket.io chat server in the same run (issue 5). `natter-bench all` is what `scripts/bench`
//! runs; the other subcommands run one part, for investigating.
//!
//! The generator runs on a single-threaded runtime: `scripts/bench` pins it to one core and
//! the server under test to the other, and a single thread on a dedicated core is the cheapest
//! way to drive thousands of sockets (no cross-thread wakeups).

mod cluster;
mod compare;
mod connect;
mod files;
mod floor;
mod footprint;
mod load;
mod procfs;
mod report;
mod scenarios;
mod steady;
mod store;
mod target;
mod trace;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use compare::Named;
use scenarios::{Env, REALISTIC_RATE, REALISTIC_ROOMS, REALISTIC_USERS};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use target::{Kind, Launch};

#[derive(Parser)]
#[command(
    name = "natter-bench",
    about = "Natter's benchmarks against peer chat servers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Everything: scenarios 1-4 for every server, the local store, then the summary table.
    All {
        #[command(flatten)]
        common: Common,
        /// Messages in the local-store benchmark.
        #[arg(long, default_value_t = 1_000_000)]
        store_messages: usize,
        /// Skip the local-store benchmark.
        #[arg(long)]
        skip_store: bool,
    },
    /// Scenario 1: one room, N clients, publish rate stepped up.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Publish rates in messages/s, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,50")]
        rates: Vec<f64>,
    },
    /// Issue 15's measurement: N clients in one room at a steady rate, measured as consecutive
    /// windows for each server in the same run (natter and the floor by default); every window's
    /// figures, each server's over all windows, and the verdicts. --warmup applies once,
    /// before the first window; --measure is ignored (see --window).
    Steady {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = TARGET_CLIENTS)]
        clients: usize,
        /// Publish rate, messages/s.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// Length of each window, seconds.
        #[arg(long, default_value_t = 10.0)]
        window: f64,
        /// Consecutive windows per server.
        #[arg(long, default_value_t = 20)]
        windows: usize,
        /// Natter writes its latency trace (natter-server --trace-latency) and the windows
        /// whose p99 is high are broken down by stage.
        #[arg(long)]
        trace_latency: bool,
        /// A window counts as slow when its p99 exceeds this many times its server's median
        /// window p99 (the worst window is always broken down).
        #[arg(long, default_value_t = 1.5)]
        slow_factor: f64,
        /// The floor also appends each message to a file and syncs it (fdatasync) before
        /// sending it, as Natter commits before it delivers: the reference for what the fan-out
        /// itself costs once both pay for durability. Off by default (the floor stores
        /// nothing).
        #[arg(long)]
        durable_floor: bool,
    },
    /// Scenario 2: idle connections up to the open-file limit.
    Idle {
        #[command(flatten)]
        common: Common,
    },
    /// Scenario 3: rooms of 10, DMs, presence churn, history.
    Realistic {
        #[command(flatten)]
        common: Common,
    },
    /// Scenario 4: 1% of clients stop reading.
    Slow {
        #[command(flatten)]
        common: Common,
    },
    /// The client's local store: insert, latest page, full-text search.
    Store {
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
    },
    /// The desktop app: cold start to first painted message of cached history, and PSS of the
    /// app with its WebKit processes (idle, conversation open), against an empty Tauri window.
    /// Needs Xvfb, tauri-driver and WebKitWebDriver.
    ///
    /// Give `--app` twice as LABEL=PATH (`--app old=... --app new=...`) to compare two builds in
    /// one run: the table then has each build's figures, its ratio to the first and whether it
    /// is within 10% of it.
    Footprint {
        /// natter-desktop, release build: PATH, or LABEL=PATH; repeat to compare builds (the
        /// first is the baseline).
        #[arg(long = "app", value_parser = compare::parse_app, default_value = "target/release/natter-desktop")]
        apps: Vec<Named>,
        /// bench/empty-window, release build.
        #[arg(long, default_value = "target/release/natter-empty-window")]
        empty: PathBuf,
        /// Leave the empty window out (when comparing builds, it is only a reference).
        #[arg(long)]
        skip_empty: bool,
        /// natter-server (fills the app's profile: registration and first sync).
        #[arg(long, default_value = "target/release/natter-server")]
        natter_server: PathBuf,
        /// Messages in the conversation the app opens.
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        /// Cold starts of each app; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Times each build's memory is read, the builds rotating (default: --runs when
        /// comparing builds, else 1). Another WebKit program on the machine lowers PSS while
        /// it runs; the median of several runs sees past that.
        #[arg(long)]
        memory_runs: Option<usize>,
        /// Seconds memory is left to settle before it is read.
        #[arg(long, default_value_t = 3.0)]
        settle: f64,
        /// Write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Issue 14: two or more natter-server builds in one run, interleaved round by round:
    /// deliveries per server CPU-second and p99 of the fan-out at each rate, the realistic
    /// scenario's p99 and server memory per idle connection, with each build's ratio to the
    /// first and whether it is within 10% of it.
    Compare {
        /// A natter-server build as LABEL=PATH (e.g. old=/work/bench-bins/old/natter-server);
        /// give it at least twice. The first is the baseline.
        #[arg(long = "server", value_parser = compare::parse_named, required = true)]
        servers: Vec<Named>,
        /// Rounds; each runs every scenario for every build, the order reversed every round.
        /// The table shows the medians (on a 2-core host one build's p99 varies by tens of %
        /// between rounds: fewer rounds cannot resolve 10%).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Clients in the fan-out room.
        #[arg(long, default_value_t = TARGET_CLIENTS)]
        clients: usize,
        /// Fan-out publish rates, messages/s, comma-separated (every one runs, saturated or not).
        #[arg(long, value_delimiter = ',', default_value = "50,800")]
        rates: Vec<f64>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Issue 16: one SQLite node against N PostgreSQL nodes on Redis behind nginx
    /// (scripts/cluster), in one run: fan-out in one room at each rate; committed messages and
    /// deliveries per second, latency, CPU of everything serving, losses. Run from the
    /// repository's root (it calls scripts/cluster).
    Cluster {
        /// Setups: 0 is one SQLite node, N > 0 is N PostgreSQL nodes behind nginx.
        #[arg(long, value_delimiter = ',', default_value = "0,1,3")]
        nodes: Vec<usize>,
        #[arg(long, default_value_t = TARGET_CLIENTS)]
        clients: usize,
        /// Publish rates, messages/s.
        #[arg(long, value_delimiter = ',', default_value = "50,200")]
        rates: Vec<f64>,
        /// The natter-server binary of the SQLite setup (scripts/cluster builds its own).
        #[arg(long, default_value = "target/release/natter-server")]
        natter_server: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Issue 17: upload and download throughput of one large file on loopback against the
    /// disk's raw write speed in the same run, the server's RSS growth during the upload, and
    /// the time to make a 12-megapixel JPEG's thumbnail.
    Files {
        /// The file's size in MiB.
        #[arg(long, default_value_t = 1024)]
        mib: u64,
        /// Thumbnails made; the median is reported.
        #[arg(long, default_value_t = 5)]
        thumbnail_runs: usize,
        /// The natter-server binary (a release build).
        #[arg(long, default_value = "target/release/natter-server")]
        natter_server: PathBuf,
    },
    /// Issue 15: N distinct Natter users each open one socket and wait for `hello`, against
    /// the `ws` peer opening N sockets, each N on a fresh server: connect time, server CPU and
    /// CPU per connect. Users are registered once into --template and reused by later runs.
    Connect {
        /// N, comma-separated (each needs N + 1,000 open files in both processes).
        #[arg(long, value_delimiter = ',', default_value = "1000,5000,19000")]
        users: Vec<usize>,
        /// Servers, comma-separated: natter, ws, sio.
        #[arg(long, value_delimiter = ',', default_value = "natter,ws")]
        servers: Vec<String>,
        /// Where the registered users are kept between runs (data/ and tokens.json); created
        /// or extended as needed. Any natter-server build as new as the one that made it reads it.
        #[arg(long, default_value = "target/bench-connect-users")]
        template: PathBuf,
        /// The natter-server binary (a release build).
        #[arg(long, default_value = "target/release/natter-server")]
        natter_server: PathBuf,
        /// The peers' directory (with node_modules installed).
        #[arg(long, default_value = "bench/peers")]
        peers: PathBuf,
        /// CPU list the server under test is pinned to.
        #[arg(long, default_value = "0")]
        server_cpus: String,
        /// Write the rows as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The reference floor server (bench/src/floor.rs), started by the harness like the peers:
    /// listens on 127.0.0.1, prints `LISTENING <port>`.
    #[command(hide = true)]
    FloorServer {
        /// 0 picks a free port.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Append each message's frame to this file and sync it before sending it.
        #[arg(long)]
        journal: Option<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Servers to run, comma-separated: natter, ws, sio, and floor (a reference, not a peer:
    /// the cheapest broadcast server, bench/src/floor.rs; scenario 1 only).
    #[arg(long, value_delimiter = ',', default_value = "natter,ws,sio,floor")]
    servers: Vec<String>,
    /// The natter-server binary (a release build).
    #[arg(long, default_value = "target/release/natter-server")]
    natter_server: PathBuf,
    /// The peers' directory (with node_modules installed).
    #[arg(long, default_value = "bench/peers")]
    peers: PathBuf,
    /// Largest N of the fan-out scenario (also the number of Natter users registered).
    #[arg(long, default_value_t = 5000)]
    max_clients: usize,
    #[command(flatten)]
    run: RunArgs,
}

/// How the network scenarios run, whichever servers they run against.
#[derive(Args, Clone)]
struct RunArgs {
    /// CPU list the server under test is pinned to.
    #[arg(long, default_value = "0")]
    server_cpus: String,
    /// Warm-up before each measured window, seconds.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Measured window of each step, seconds.
    #[arg(long, default_value_t = 3.0)]
    measure: f64,
    /// Idle connections to open (default: the open-file limit less a margin for the process).
    #[arg(long)]
    idle: Option<usize>,
    /// Write every figure as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl RunArgs {
    fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }

    fn measure(&self) -> Duration {
        Duration::from_secs_f64(self.measure)
    }

    fn idle_count(&self) -> usize {
        self.idle.unwrap_or_else(|| {
            // The server needs a few hundred descriptors of its own (listener, SQLite, epoll,
            // node's internals), and so does the generator.
            let limit = procfs::open_file_limit().unwrap_or(1024) as usize;
            limit.saturating_sub(1_000).max(100)
        })
    }
}

impl Common {
    /// `--servers`' default, as clap fills it in.
    const ALL_SERVERS: [&'static str; 4] = ["natter", "ws", "sio", "floor"];

    fn kinds(&self) -> Result<Vec<Kind>> {
        self.servers.iter().map(|s| Kind::parse(s)).collect()
    }

    /// The servers of scenarios 2-4: the floor only broadcasts, and is there to show the cost
    /// of a delivery in scenario 1.
    fn chat_kinds(&self) -> Result<Vec<Kind>> {
        let kinds = self.kinds()?;
        if kinds.contains(&Kind::Floor) {
            eprintln!("  (floor is a scenario-1 reference: not run in scenarios 2-4)");
        }
        Ok(kinds.into_iter().filter(|&k| k != Kind::Floor).collect())
    }

    async fn env(&self, users: usize) -> Result<Env> {
        let launch = Launch {
            natter_server: self.natter_server.clone(),
            peers_dir: self.peers.clone(),
            server_cpus: self.run.server_cpus.clone(),
            durable_floor: false,
        };
        let mut env = Env::new(launch, self.run.warmup(), self.run.measure());
        if self.kinds()?.contains(&Kind::Natter) {
            if !self.natter_server.is_file() {
                bail!(
                    "{} not found: build it with `cargo build --release --bin natter-server`",
                    self.natter_server.display()
                );
            }
            env.prepare_natter(users).await?;
        }
        Ok(env)
    }
}

/// The N of issue 5's fan-out target.
const TARGET_CLIENTS: usize = 1_000;

/// The fan-out plan: for each N the publish rates (messages/s), chosen so every N passes
/// through 50,000 deliveries/s (the target's load) and then doubles up to 800,000 deliveries/s,
/// past where every server saturated on the 2-core machine (a server stops at its first
/// saturated step, node-ws at N = 1,000 excepted, so the higher steps cost time only for those
/// that keep up).
fn fanout_plan(max_clients: usize) -> Vec<(usize, Vec<f64>)> {
    let plan = vec![
        // Natter's per-user rate limit is 20 messages/s by default: 100 users stay under it.
        (100, vec![100.0, 500.0, 1_000.0, 1_800.0]),
        (1_000, vec![10.0, 50.0, 100.0, 200.0, 400.0, 800.0]),
        (5_000, vec![4.0, 10.0, 20.0, 40.0, 80.0, 160.0]),
    ];
    plan.into_iter()
        .filter(|(n, _)| *n <= max_clients)
        .collect()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Cmd::FloorServer { port, journal } = cli.cmd {
        // Its own single-threaded runtime and LocalSet (no Send bounds, no locks).
        return floor::run(port, journal.as_deref());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    let started = Instant::now();
    let mut results = report::Results::new();
    let json_path = match &cli.cmd {
        Cmd::All { common, .. }
        | Cmd::Fanout { common, .. }
        | Cmd::Steady { common, .. }
        | Cmd::Idle { common }
        | Cmd::Realistic { common }
        | Cmd::Slow { common } => common.run.json.clone(),
        Cmd::Cluster { run, .. } => run.json.clone(),
        Cmd::Store { .. }
        | Cmd::Files { .. }
        | Cmd::Footprint { .. }
        | Cmd::Compare { .. }
        | Cmd::Connect { .. }
        | Cmd::FloorServer { .. } => None,
    };
    match cli.cmd {
        Cmd::All {
            common,
            store_messages,
            skip_store,
        } => {
            let kinds = common.kinds()?;
            eprintln!(
                "== natter-bench: servers {:?}, load {}",
                common.servers,
                procfs::loadavg()
            );
            // The realistic scenario needs 1,000 distinct users (100 rooms of 10).
            let env = common.env(common.max_clients.max(REALISTIC_USERS)).await?;
            let plan = fanout_plan(common.max_clients);
            eprintln!("== scenario 1: fan-out in one room");
            // Every server, the floor reference included, runs the same ladder.
            for &k in &kinds {
                // The target compares Natter with node-ws at N = 1,000 at equal offered load:
                // node-ws runs every step there, even saturated (its drain costs ~40 s).
                let every_step_at = (k == Kind::Ws).then_some(TARGET_CLIENTS);
                results
                    .fanout
                    .extend(scenarios::fanout(&env, k, &plan, every_step_at).await?);
            }
            let kinds = common.chat_kinds()?;
            eprintln!("== scenario 4: 1% of clients stop reading");
            for &k in &kinds {
                results.slow.push(
                    scenarios::slow_readers(&env, k, 1_000, 100.0, Duration::from_secs(8)).await?,
                );
            }
            eprintln!("== scenario 3: realistic (rooms of 10, DMs, presence churn, history)");
            for &k in &kinds {
                results
                    .realistic
                    .push(scenarios::realistic(&env, k, REALISTIC_ROOMS, REALISTIC_RATE).await?);
            }
            eprintln!("== scenario 2: idle connections");
            let count = common.run.idle_count();
            for &k in &kinds {
                results.idle.push(scenarios::idle(&env, k, count).await?);
            }
            if !skip_store {
                eprintln!("== local store");
                results.store = Some(store::run(store_messages).context("local store benchmark")?);
            }
        }
        Cmd::Cluster {
            nodes,
            clients,
            rates,
            natter_server,
            run,
        } => {
            let launch = Launch {
                natter_server,
                peers_dir: PathBuf::from("bench/peers"),
                server_cpus: run.server_cpus.clone(),
                durable_floor: false,
            };
            let rows = cluster::run(
                &launch,
                &nodes,
                clients,
                &rates,
                run.warmup(),
                run.measure(),
            )
            .await?;
            println!("{}", cluster::table(&rows, run.measure()));
            if let Some(path) = &run.json {
                std::fs::write(path, serde_json::to_string_pretty(&rows)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            return Ok(());
        }
        Cmd::Fanout {
            common,
            clients,
            rates,
        } => {
            let env = common.env(clients).await?;
            for k in common.kinds()? {
                results
                    .fanout
                    .extend(scenarios::fanout(&env, k, &[(clients, rates.clone())], None).await?);
            }
        }
        Cmd::Steady {
            mut common,
            clients,
            rate,
            window,
            windows,
            trace_latency,
            slow_factor,
            durable_floor,
        } => {
            anyhow::ensure!(clients > 0, "--clients must be at least 1");
            anyhow::ensure!(
                rate.is_finite() && rate > 0.0,
                "--rate must be a positive number of messages/s"
            );
            anyhow::ensure!(
                window.is_finite() && window * rate >= 1.0,
                "--window must hold at least one message at --rate"
            );
            anyhow::ensure!(windows > 0, "--windows must be at least 1");
            anyhow::ensure!(
                slow_factor.is_finite() && slow_factor > 0.0,
                "--slow-factor must be a positive number"
            );
            // Natter and the floor unless --servers says otherwise: the verdicts compare
            // the two, and the peers add a minute per window count each.
            if common.servers == Common::ALL_SERVERS {
                common.servers = vec!["natter".into(), "floor".into()];
            }
            let opts = steady::Options {
                kinds: common.kinds()?,
                clients,
                rate,
                window: Duration::from_secs_f64(window),
                windows,
                trace: trace_latency,
                slow_factor,
            };
            eprintln!(
                "== natter-bench steady: servers {:?}, {clients} clients, {rate}/s, {windows} x                  {window} s, load {}",
                common.servers,
                procfs::loadavg()
            );
            let mut env = common.env(clients).await?;
            env.launch.durable_floor = durable_floor;
            let s = steady::run(&env, &opts).await?;
            print!("{}", steady::render(&s));
            write_json(common.run.json.as_deref(), &s)?;
            return Ok(());
        }
        Cmd::Idle { common } => {
            let env = common
                .env(common.max_clients.min(common.run.idle_count()))
                .await?;
            for k in common.chat_kinds()? {
                results
                    .idle
                    .push(scenarios::idle(&env, k, common.run.idle_count()).await?);
            }
        }
        Cmd::Realistic { common } => {
            let env = common.env(REALISTIC_USERS).await?;
            for k in common.chat_kinds()? {
                results
                    .realistic
                    .push(scenarios::realistic(&env, k, REALISTIC_ROOMS, REALISTIC_RATE).await?);
            }
        }
        Cmd::Slow { common } => {
            let env = common.env(1_000).await?;
            for k in common.chat_kinds()? {
                results.slow.push(
                    scenarios::slow_readers(&env, k, 1_000, 100.0, Duration::from_secs(8)).await?,
                );
            }
        }
        Cmd::Store { messages } => {
            results.store = Some(store::run(messages)?);
        }
        Cmd::Files {
            mib,
            thumbnail_runs,
            natter_server,
        } => {
            let launch = Launch {
                natter_server,
                peers_dir: PathBuf::new(),
                server_cpus: "0-1023".into(),
                durable_floor: false,
            };
            let r = files::run(&launch, mib * 1024 * 1024, thumbnail_runs).await?;
            println!("{}", files::table(&r, &report::machine()));
            return Ok(());
        }
        Cmd::Connect {
            users,
            servers,
            template,
            natter_server,
            peers,
            server_cpus,
            json,
        } => {
            anyhow::ensure!(
                !users.is_empty() && users.iter().all(|&n| n > 0),
                "--users needs at least one N above 0"
            );
            let kinds = servers
                .iter()
                .map(|s| Kind::parse(s))
                .collect::<Result<Vec<_>>>()?;
            anyhow::ensure!(
                !kinds.contains(&Kind::Floor),
                "the floor only broadcasts: it is not a chat server to connect users to"
            );
            let largest = users.iter().copied().max().unwrap_or(0);
            let needed = connect::needed_open_files(largest);
            let limit = procfs::open_file_limit().unwrap_or(0);
            anyhow::ensure!(
                limit >= needed,
                "{largest} sockets need an open-file limit of at least {needed} (this process \
                 has {limit}; the server inherits it): raise it with `ulimit -n {needed}`"
            );
            let launch = Launch {
                natter_server,
                peers_dir: peers,
                server_cpus,
                durable_floor: false,
            };
            eprintln!(
                "== natter-bench connect: users {users:?}, servers {servers:?}, load {}",
                procfs::loadavg()
            );
            let template = if kinds.contains(&Kind::Natter) {
                std::fs::create_dir_all(&template)?;
                Some(connect::prepare_template(&launch, &template, largest).await?)
            } else {
                None
            };
            let rows = connect::run(&launch, &kinds, &users, template.as_ref()).await?;
            print!("{}", connect::table(&rows));
            write_json(json.as_deref(), &rows)?;
            return Ok(());
        }
        // main() runs it on its own runtime before this one exists.
        Cmd::FloorServer { .. } => bail!("floor-server does not run inside the harness"),
        Cmd::Compare {
            servers,
            rounds,
            clients,
            rates,
            run,
        } => {
            let opts = compare::ServerOptions {
                servers,
                rounds,
                clients,
                rates,
                idle: run.idle_count(),
                users: clients.max(REALISTIC_USERS),
                server_cpus: run.server_cpus.clone(),
                warmup: run.warmup(),
                measure: run.measure(),
            };
            eprintln!("== natter-bench compare, load {}", procfs::loadavg());
            let c = compare::run_servers(&opts).await?;
            print!("{}", compare::render_servers(&c));
            write_json(run.json.as_deref(), &c)?;
            return Ok(());
        }
        Cmd::Footprint {
            apps,
            empty,
            skip_empty,
            natter_server,
            messages,
            runs,
            memory_runs,
            settle,
            json,
        } => {
            anyhow::ensure!(runs > 0, "--runs must be at least 1");
            anyhow::ensure!(
                settle.is_finite() && settle >= 0.0,
                "--settle must be a number of seconds"
            );
            anyhow::ensure!(messages > 0, "--messages must be at least 1");
            compare::check_labels(&apps, "app")?;
            let several = apps.len() > 1;
            let opts = footprint::Options {
                apps,
                empty: (!skip_empty).then_some(empty),
                natter_server,
                messages,
                runs,
                memory_runs: memory_runs.unwrap_or(if several { runs } else { 1 }),
                settle: Duration::from_secs_f64(settle),
            };
            eprintln!("== app footprint, load {}", procfs::loadavg());
            let r = footprint::run(&opts).await?;
            print!("{}", footprint::render(&r));
            write_json(json.as_deref(), &r)?;
            return Ok(());
        }
    }
    results.elapsed_secs = started.elapsed().as_secs_f64();
    results.load_after = procfs::loadavg();
    print!("{}", results.render());
    write_json(json_path.as_deref(), &results)
}

/// Write a run's figures as JSON to `path`, when one was asked for.
fn write_json(path: Option<&std::path::Path>, figures: &impl serde::Serialize) -> Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_string_pretty(figures)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
