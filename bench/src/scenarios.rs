//! The network scenarios of issue 5, each run the same way against Natter and the peers:
//! (1) fan-out in one room, stepped up to saturation; (2) idle connections up to the open-file
//! limit; (3) a realistic mix (rooms of 10, DMs, presence churn, history); (4) 1% of clients stop
//! reading.

use crate::load::{StepResult, Swarm};
use crate::procfs;
use crate::target::{self, Dest, Kind, Launch, Server};
use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// What every scenario needs: how to start servers, and Natter's registered users.
pub struct Env {
    pub launch: Launch,
    /// A Natter data directory in which `tokens.len()` users are registered; every Natter
    /// server of the run starts from a copy, so argon2 registration is paid once.
    pub natter_template: Option<tempfile::TempDir>,
    pub tokens: Vec<String>,
    pub warmup: Duration,
    pub measure: Duration,
}

impl Env {
    /// An environment whose Natter users are not registered yet ([`Env::prepare_natter`]).
    pub fn new(launch: Launch, warmup: Duration, measure: Duration) -> Env {
        Env {
            launch,
            natter_template: None,
            tokens: Vec::new(),
            warmup,
            measure,
        }
    }

    /// Register `users` Natter users once (server on all cores: argon2 is the cost), then stop
    /// that server and keep its data directory as the template.
    pub async fn prepare_natter(&mut self, users: usize) -> Result<()> {
        let t = Instant::now();
        let mut server = Server::start(Kind::Natter, &self.launch, None).await?;
        self.tokens = target::register_users(server.addr, users, "u").await?;
        let data = server.take_data();
        server.stop().await;
        self.natter_template = data;
        eprintln!(
            "  registered {users} natter users in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Start `kind` (Natter from the template) pinned to the server core.
    pub async fn start(&self, kind: Kind) -> Result<Server> {
        let template = self.natter_template.as_ref().map(|d| d.path());
        let server = Server::start(kind, &self.launch, template).await?;
        server.pin(&self.launch.server_cpus).await?;
        Ok(server)
    }

    fn tokens(&self, kind: Kind) -> &[String] {
        if kind == Kind::Natter {
            &self.tokens
        } else {
            &[]
        }
    }
}

/// One row of the fan-out table.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutRow {
    pub server: &'static str,
    pub clients: usize,
    pub connect_secs: f64,
    pub step: StepResult,
}

/// Scenario 1: for each N (ascending, the same sockets reused as N grows), publish at each rate
/// of the ladder until the server stops keeping up; at N = `every_step_at` it runs every rate,
/// saturated or not, so it can be compared with Natter at each of them.
pub async fn fanout(
    env: &Env,
    kind: Kind,
    plan: &[(usize, Vec<f64>)],
    every_step_at: Option<usize>,
) -> Result<Vec<FanoutRow>> {
    let server = env.start(kind).await?;
    let mut swarm = Swarm::new(kind);
    let mut rows = Vec::new();
    for (n, rates) in plan {
        let t = Instant::now();
        let more = n.saturating_sub(swarm.clients.len());
        swarm
            .connect(server.addr, env.tokens(kind), more)
            .await
            .with_context(|| format!("{}: connecting {n} clients", kind.name()))?;
        swarm
            .settle(Duration::from_millis(500), Duration::from_secs(60))
            .await;
        let connect_secs = t.elapsed().as_secs_f64();
        for &rate in rates {
            let step = swarm
                .fanout_step(&[server.pid], rate, env.warmup, env.measure)
                .await?;
            let kept_up = step.kept_up();
            eprintln!(
                "  {:9} N={n:5} rate={rate:6}/s deliveries/s={:8.0} p50={:6.2}ms p99={:7.2}ms pacer late p50/p99={:.2}/{:.2}ms first delivery p50/p99={:.2}/{:.2}ms lost={} errors={} closed={} cpu={:5.1}% gen={:5.1}% load={}",
                kind.name(),
                step.deliveries_per_sec,
                step.p50_us as f64 / 1e3,
                step.p99_us as f64 / 1e3,
                step.pacer_late_p50_us as f64 / 1e3,
                step.pacer_late_p99_us as f64 / 1e3,
                step.first_p50_us as f64 / 1e3,
                step.first_p99_us as f64 / 1e3,
                step.lost,
                step.errors,
                step.closed,
                step.server_cpu_pct,
                step.gen_cpu_pct,
                procfs::loadavg()
            );
            rows.push(FanoutRow {
                server: kind.name(),
                clients: *n,
                connect_secs,
                step,
            });
            if !kept_up && every_step_at != Some(*n) {
                break;
            }
        }
    }
    drop(swarm);
    server.stop().await;
    Ok(rows)
}

/// Scenario 2's figures.
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    pub server: &'static str,
    pub connections: usize,
    pub connect_secs: f64,
    pub rss_base_kib: u64,
    pub rss_mid_kib: u64,
    pub rss_kib: u64,
    pub pss_kib: u64,
    /// (RSS with all connections - RSS with the first 100) / the connections added.
    pub rss_per_conn_bytes: f64,
    pub pss_per_conn_bytes: f64,
    /// (RSS with all - RSS with half) / the second half: the cost of one more connection once
    /// start-up effects (Natter: each user's first socket announces presence to everyone) are
    /// behind, since the second half reuses users already online.
    pub rss_marginal_bytes: f64,
    /// Server CPU while every connection is open and idle, over [`IDLE_CPU_WINDOW`], in
    /// microseconds per connection per second: what timers and heartbeats cost.
    pub idle_cpu_us_per_conn_s: f64,
    pub closed: u64,
}

/// How long the idle connections' CPU is measured: Natter's heartbeat interval, so every socket
/// is pinged (and answers) once in it whenever its pings fall.
pub const IDLE_CPU_WINDOW: Duration = Duration::from_secs(25);

async fn quiet_sample(swarm: &Swarm, pid: u32) -> Result<procfs::Sample> {
    swarm
        .settle(Duration::from_secs(1), Duration::from_secs(120))
        .await;
    // Let the allocator and the runtime settle too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    procfs::sample(pid)
}

/// Scenario 2: open `count` idle connections and measure the server's memory per connection.
pub async fn idle(env: &Env, kind: Kind, count: usize) -> Result<IdleResult> {
    let server = env.start(kind).await?;
    let mut swarm = Swarm::new(kind);
    let first = 100.min(count);
    let half = (count / 2).max(first);
    swarm.connect(server.addr, env.tokens(kind), first).await?;
    let base = quiet_sample(&swarm, server.pid).await?;
    let t = Instant::now();
    swarm
        .connect(server.addr, env.tokens(kind), half - first)
        .await
        .with_context(|| format!("{}: opening {half} idle connections", kind.name()))?;
    let mid = quiet_sample(&swarm, server.pid).await?;
    swarm
        .connect(server.addr, env.tokens(kind), count - half)
        .await
        .with_context(|| format!("{}: opening {count} idle connections", kind.name()))?;
    let connect_secs = t.elapsed().as_secs_f64();
    let full = quiet_sample(&swarm, server.pid).await?;
    let before = procfs::sample(server.pid)?;
    tokio::time::sleep(IDLE_CPU_WINDOW).await;
    let after = procfs::sample(server.pid)?;
    let idle_cpu_us_per_conn_s = (after.cpu_secs - before.cpu_secs) * 1e6
        / IDLE_CPU_WINDOW.as_secs_f64()
        / count.max(1) as f64;
    let per = |a: u64, b: u64, n: usize| (a as f64 - b as f64) * 1024.0 / n.max(1) as f64;
    let result = IdleResult {
        server: kind.name(),
        connections: count,
        connect_secs,
        rss_base_kib: base.rss_kib,
        rss_mid_kib: mid.rss_kib,
        rss_kib: full.rss_kib,
        pss_kib: full.pss_kib,
        rss_per_conn_bytes: per(full.rss_kib, base.rss_kib, count - first),
        pss_per_conn_bytes: per(full.pss_kib, base.pss_kib, count - first),
        rss_marginal_bytes: per(full.rss_kib, mid.rss_kib, count - half),
        idle_cpu_us_per_conn_s,
        closed: swarm.recorder.closed.load(Ordering::Relaxed),
    };
    eprintln!(
        "  {:9} idle={count} rss={} KiB per-conn={:.0} B marginal={:.0} B idle-cpu={:.2} us/conn/s closed={} in {:.1} s, load={}",
        kind.name(),
        full.rss_kib,
        result.rss_per_conn_bytes,
        result.rss_marginal_bytes,
        result.idle_cpu_us_per_conn_s,
        result.closed,
        connect_secs,
        procfs::loadavg()
    );
    drop(swarm);
    server.stop().await;
    Ok(result)
}

/// Scenario 4's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SlowResult {
    pub server: &'static str,
    pub clients: usize,
    pub stopped_reading: usize,
    /// The same load with everyone reading, just before.
    pub baseline: StepResult,
    /// The readers' figures while 1% do not read.
    pub with_stalled: StepResult,
    pub rss_before_kib: u64,
    pub rss_max_kib: u64,
    pub rss_after_kib: u64,
    /// Sockets the server closed while 1% stalled (its open descriptors before minus after;
    /// Natter closes a slow consumer with 4000).
    pub stalled_closed_by_server: u64,
}

/// Kernel receive buffer of the clients that stop reading in scenario 4.
const STALLED_RCVBUF: u32 = 4 * 1024;

/// Scenario 4: N clients in one room at `rate`; then 1% stop reading while the rest carry on.
pub async fn slow_readers(
    env: &Env,
    kind: Kind,
    n: usize,
    rate: f64,
    stall: Duration,
) -> Result<SlowResult> {
    let server = env.start(kind).await?;
    let mut swarm = Swarm::new(kind);
    let stalled = (n / 100).max(1);
    swarm
        .connect(server.addr, env.tokens(kind), n - stalled)
        .await?;
    // The clients that will stall have a small receive window, like a phone on a bad network.
    swarm
        .connect_with(server.addr, env.tokens(kind), stalled, Some(STALLED_RCVBUF))
        .await?;
    swarm
        .settle(Duration::from_millis(500), Duration::from_secs(60))
        .await;
    let baseline = swarm
        .fanout_step(&[server.pid], rate, env.warmup, env.measure)
        .await?;
    // The last clients stall, so publishers (round-robin over readers) are unaffected.
    for c in &swarm.clients[n - stalled..] {
        c.stop_reading();
    }
    let rss_before = procfs::sample(server.pid)?.rss_kib;
    let fds_before = procfs::open_fds(server.pid)?;
    let rss_max = Arc::new(AtomicU64::new(rss_before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (rss_max, sampling, pid) = (rss_max.clone(), sampling.clone(), server.pid);
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Ok(s) = procfs::sample(pid) {
                    rss_max.fetch_max(s.rss_kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    // The stalled clients read their last frame before noticing the flag; the step's
    // expected deliveries count only the readers.
    let with_stalled = swarm
        .fanout_step(&[server.pid], rate, env.warmup, stall)
        .await?;
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let rss_after = procfs::sample(server.pid)?.rss_kib;
    let result = SlowResult {
        server: kind.name(),
        clients: n,
        stopped_reading: stalled,
        rss_before_kib: rss_before,
        rss_max_kib: rss_max.load(Ordering::Relaxed),
        rss_after_kib: rss_after,
        stalled_closed_by_server: fds_before.saturating_sub(procfs::open_fds(server.pid)?),
        baseline,
        with_stalled,
    };
    eprintln!(
        "  {:9} slow: p99 {:.2} -> {:.2} ms, lost {}, rss {} -> max {} KiB, closed {} load={}",
        kind.name(),
        result.baseline.p99_us as f64 / 1e3,
        result.with_stalled.p99_us as f64 / 1e3,
        result.with_stalled.lost,
        rss_before,
        result.rss_max_kib,
        result.stalled_closed_by_server,
        procfs::loadavg()
    );
    drop(swarm);
    server.stop().await;
    Ok(result)
}

/// Scenario 3's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RealisticResult {
    pub server: &'static str,
    pub rooms: usize,
    pub steady_clients: usize,
    pub churn_connects: u64,
    pub history_pages: u64,
    pub step: StepResult,
}

/// Members of each room who stay connected; the tenth member of every room churns.
const STEADY_PER_ROOM: usize = 9;

/// The realistic scenario as every run plays it: 100 rooms of 10, 500 messages/s.
pub const REALISTIC_ROOMS: usize = 100;
pub const REALISTIC_RATE: f64 = 500.0;

/// Natter users the realistic scenario needs: every member of every room (steady and churning).
pub const REALISTIC_USERS: usize = REALISTIC_ROOMS * (STEADY_PER_ROOM + 1);

/// Scenario 3: rooms of 10 (9 steady members + 1 that keeps reconnecting and fetching the
/// room's latest history page), 80% room messages and 20% DMs between steady members.
pub async fn realistic(env: &Env, kind: Kind, rooms: usize, rate: f64) -> Result<RealisticResult> {
    let steady = rooms * STEADY_PER_ROOM;
    let tokens = env.tokens(kind);
    // Steady members plus one churning member per room, each a registered Natter user.
    if kind == Kind::Natter && tokens.len() < steady + rooms {
        anyhow::bail!(
            "the realistic scenario needs {} Natter users, {} are registered: pass --max-clients {}",
            steady + rooms,
            tokens.len(),
            steady + rooms
        );
    }
    let server = env.start(kind).await?;
    let addr = server.addr;
    // Users 0..steady are steady; steady+k churns in room k.
    let user = |i: usize| format!("u{i}");
    let mut convs: Vec<String> = (0..rooms).map(|k| format!("r{k}")).collect();
    let mut swarm = Swarm::new(kind);
    let mut req = 1_000_000u64;
    // Creators first (one per room), so every other member can simply join.
    let order: Vec<usize> = (0..steady)
        .filter(|i| i % STEADY_PER_ROOM == 0)
        .chain((0..steady).filter(|i| i % STEADY_PER_ROOM != 0))
        .collect();
    let mut sockets: Vec<Option<target::Ws>> = (0..steady).map(|_| None).collect();
    for chunk in order.chunks(64) {
        let futs = chunk.iter().map(|&i| {
            let token = tokens.get(i).cloned();
            let room = format!("r{}", i / STEADY_PER_ROOM);
            let id = req + 2 * i as u64;
            let name = user(i);
            async move {
                let src = crate::load::SOURCE_IPS[i % crate::load::SOURCE_IPS.len()];
                let (mut ws, _) = target::connect(kind, addr, token.as_deref(), src).await?;
                let conv = if kind == Kind::Natter {
                    target::natter_enter_room(&mut ws, &room, id)
                        .await?
                        .to_string()
                } else {
                    ws.send(Message::text(kind.encode_join(&room, &name, id)))
                        .await?;
                    room
                };
                Ok::<_, anyhow::Error>((i, ws, conv))
            }
        });
        for r in futures_util::future::join_all(futs).await {
            let (i, ws, conv) = r?;
            convs[i / STEADY_PER_ROOM] = conv;
            sockets[i] = Some(ws);
        }
    }
    req += 4 * steady as u64;
    for ws in sockets.into_iter().flatten() {
        swarm.push(ws, None);
    }
    // Natter keeps memberships: the churning member joins its room once, up front.
    if kind == Kind::Natter {
        for k in 0..rooms {
            let src = crate::load::SOURCE_IPS[k % crate::load::SOURCE_IPS.len()];
            let (mut ws, _) =
                target::connect(kind, addr, tokens.get(steady + k).map(|s| s.as_str()), src)
                    .await?;
            target::natter_enter_room(&mut ws, &format!("r{k}"), req + 2 * k as u64).await?;
            let _ = ws.close(None).await;
        }
    }
    swarm
        .settle(Duration::from_millis(500), Duration::from_secs(60))
        .await;

    // Presence churn: ten (re)connections a second, each fetching its room's latest page.
    let churning = Arc::new(AtomicBool::new(true));
    let churn_connects = Arc::new(AtomicU64::new(0));
    let history_pages = Arc::new(AtomicU64::new(0));
    let churn = {
        let (churning, connects, pages) = (
            churning.clone(),
            churn_connects.clone(),
            history_pages.clone(),
        );
        let tokens: Vec<String> = tokens.to_vec();
        let convs = convs.clone();
        tokio::spawn(async move {
            let mut k = 0usize;
            while churning.load(Ordering::Relaxed) {
                let room = k % convs.len();
                let (tokens, conv, connects, pages) = (
                    tokens.clone(),
                    convs[room].clone(),
                    connects.clone(),
                    pages.clone(),
                );
                tokio::spawn(async move {
                    let token = tokens.get(steady + room).cloned();
                    let src = crate::load::SOURCE_IPS[room % crate::load::SOURCE_IPS.len()];
                    let Ok((mut ws, _)) = target::connect(kind, addr, token.as_deref(), src).await
                    else {
                        return;
                    };
                    connects.fetch_add(1, Ordering::Relaxed);
                    if kind != Kind::Natter {
                        let _ = ws
                            .send(Message::text(kind.encode_join(
                                &conv,
                                &format!("u{}", steady + room),
                                0,
                            )))
                            .await;
                    }
                    let _ = ws.send(Message::text(kind.encode_history(&conv, 7))).await;
                    let until = Instant::now() + Duration::from_secs(1);
                    while let Ok(Some(Ok(msg))) =
                        tokio::time::timeout_at(until.into(), ws.next()).await
                    {
                        if let Message::Text(t) = msg {
                            let t = t.as_str();
                            if t.contains(r#""kind":"history""#)
                                || t.starts_with(r#"{"type":"history""#)
                                || t.starts_with(r#"42["history""#)
                            {
                                pages.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    let _ = ws.close(None).await;
                });
                k += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let step = swarm
        .run_paced(
            &[server.pid],
            rate,
            env.warmup,
            env.measure,
            |_, _| {
                // xorshift: a deterministic, cheap mix of senders, rooms and DM partners.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let who = (rng % steady as u64) as usize;
                if (rng >> 32) % 5 == 0 {
                    let mut to = ((rng >> 16) % steady as u64) as usize;
                    if to == who {
                        to = (to + 1) % steady;
                    }
                    (who, Dest::User(user(to)), 2)
                } else {
                    (
                        who,
                        Dest::Conv(convs[who / STEADY_PER_ROOM].clone()),
                        STEADY_PER_ROOM as u32,
                    )
                }
            },
            |_| {},
        )
        .await?;
    churning.store(false, Ordering::Relaxed);
    let _ = churn.await;
    let result = RealisticResult {
        server: kind.name(),
        rooms,
        steady_clients: steady,
        churn_connects: churn_connects.load(Ordering::Relaxed),
        history_pages: history_pages.load(Ordering::Relaxed),
        step,
    };
    eprintln!(
        "  {:9} realistic: deliveries/s={:.0} p99={:.2}ms lost={} dup={} churn={} pages={} cpu={:.1}% load={}",
        kind.name(),
        result.step.deliveries_per_sec,
        result.step.p99_us as f64 / 1e3,
        result.step.lost,
        result.step.duplicates,
        result.churn_connects,
        result.history_pages,
        result.step.server_cpu_pct,
        procfs::loadavg()
    );
    drop(swarm);
    server.stop().await;
    Ok(result)
}

/// Copy a data directory's files (Natter's SQLite database and its WAL) into `to`.
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&dest)?;
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}
