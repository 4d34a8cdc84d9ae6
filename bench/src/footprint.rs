//! The desktop app's footprint (issue 5): cold start to the first painted message of cached
//! history, and the memory (PSS) of the app with all its WebKit processes, idle and with a
//! 10,000-message conversation open, against an empty Tauri 2 window built the same way
//! (bench/empty-window).
//!
//! Both apps run under their own Xvfb and are driven through WebDriver (tauri-driver in front of
//! WebKitWebDriver), so "painted" means the same thing for both: the element the user is waiting
//! for is in the rendered page (Natter: the first `message` row; the empty window: its one
//! paragraph), timed from the request that spawns the process. WebDriver adds its own round trips
//! to both, so the difference between the two is what Natter costs over any Tauri window.
//!
//! Natter's profile is filled for real: a natter-server registers the user, the client core
//! signs in and syncs (the default room lands in the store), then 10,000 messages are written
//! into that room through the client store's own `insert_messages`. The server is stopped before
//! the app starts, so the app shows cached history offline, as after a restart without network.
//!
//! Several builds of the app (`--app old=... --app new=...`, issue 14) run in the same session:
//! each gets its own copy of the filled profile (one build's store migration or settings must
//! not reach the other), and the cold starts rotate over every build and the empty window,
//! the order reversed every round, so background load hits them alike.

use anyhow::{anyhow, bail, Context, Result};
use natter::client::store::Store;
use natter::client::{Client, ClientConfig, STORE_FILE};
use natter::protocol::{self, ConvId, ConvKind, Message};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::compare::{self, Better, Measure, Named};
use crate::procfs;
use crate::scenarios::copy_dir;
use crate::store::{median_max, text, Rng};
use crate::target::{Kind, Launch, Server};

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const USERNAME: &str = "bench";

/// What to run.
pub struct Options {
    /// Release builds of natter-desktop; the first is the baseline of the comparison.
    pub apps: Vec<Named>,
    /// The release build of bench/empty-window; `None` leaves the reference out.
    pub empty: Option<PathBuf>,
    pub natter_server: PathBuf,
    /// Messages in the open conversation.
    pub messages: usize,
    /// Cold starts of each app (the median is reported).
    pub runs: usize,
    /// Times each build's memory is read (idle, then with the conversation open); the run
    /// with the median PSS open is shown.
    pub memory_runs: usize,
    /// How long memory is left to settle before it is read.
    pub settle: Duration,
}

/// Memory of one app: the process and every descendant (WebKit's web and network processes,
/// and bwrap/xdg-dbus-proxy when WebKit sandboxes them).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    pub pss_kib: u64,
    /// Private pages only (procfs::Sample::uss_kib): unlike PSS, not lowered by other programs
    /// that map the same libraries (another WebKit app on the machine).
    pub uss_kib: u64,
    pub rss_kib: u64,
    /// PSS per process name (comm), summed over processes of that name.
    pub by_process: BTreeMap<String, u64>,
    pub processes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppFigures {
    /// Spawn (session request) to the awaited element, each cold start, ms.
    pub first_paint_ms: Vec<f64>,
    /// Spawn to WebDriver session ready (the window's page is connected), each cold start, ms.
    pub session_ms: Vec<f64>,
    pub first_paint_median_ms: f64,
    pub session_median_ms: f64,
    /// Natter: of the memory run with the median PSS open.
    pub idle: Memory,
    /// Natter only: with the large conversation open.
    pub open: Option<Memory>,
    /// Natter only: message rows in the DOM with the conversation open (the list is virtual).
    pub rows_rendered: Option<usize>,
    /// Natter only: every memory run, in the order they ran.
    pub memory_runs: Vec<MemoryRun>,
    /// The page's own timeline ([`Session::page_timeline`]): each step's median over the cold
    /// starts that reached it, in time order. Steadier than the WebDriver figure, whose read
    /// comes some polls after the paint.
    pub page_steps: Vec<PageStep>,
}

/// One cold start's page timeline: each step's name and ms from the spawn, in time order
/// ([`Session::page_timeline`]).
type Timeline = Vec<(String, f64)>;

/// One step of the page's timeline, ms from the spawn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PageStep {
    pub name: String,
    pub median_ms: f64,
    /// Cold starts whose page reached the step (a mark after the bench's read is missing).
    pub runs: usize,
}

/// Each step's median over `starts` (one timeline per cold start), ordered by that median.
fn page_medians(starts: &[Timeline]) -> Vec<PageStep> {
    let mut by_name: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for start in starts {
        for (name, ms) in start {
            by_name.entry(name).or_default().push(*ms);
        }
    }
    let mut steps: Vec<PageStep> = by_name
        .into_iter()
        .map(|(name, v)| PageStep {
            name: name.to_string(),
            runs: v.len(),
            median_ms: median_max(v).0,
        })
        .collect();
    steps.sort_by(|a, b| a.median_ms.total_cmp(&b.median_ms));
    steps
}

/// One build of the app and its figures.
#[derive(Debug, Clone, Serialize)]
pub struct NamedFigures {
    pub label: String,
    pub path: PathBuf,
    #[serde(flatten)]
    pub figures: AppFigures,
}

#[derive(Debug, Clone, Serialize)]
pub struct FootprintResult {
    pub messages: usize,
    pub runs: usize,
    pub memory_runs: usize,
    pub settle_secs: f64,
    pub load_before: String,
    pub load_after: String,
    /// In the order given; the first is the baseline.
    pub apps: Vec<NamedFigures>,
    /// The empty Tauri window, unless it was left out.
    pub empty: Option<AppFigures>,
}

/// Memory of one build: idle, with the large conversation open, and the rows it rendered.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryRun {
    pub idle: Memory,
    pub open: Memory,
    pub rows: usize,
}

pub async fn run(opts: &Options) -> Result<FootprintResult> {
    anyhow::ensure!(!opts.apps.is_empty(), "no app to measure");
    let apps: Vec<PathBuf> = opts
        .apps
        .iter()
        .map(|a| absolute(&a.path))
        .collect::<Result<_>>()?;
    let empty = opts.empty.as_deref().map(absolute).transpose()?;
    let load_before = procfs::loadavg();
    let filled = tempfile::tempdir()?;
    let conv = fill_profile(opts, filled.path()).await?;
    eprintln!(
        "  footprint: profile filled ({} messages in one room), load {}",
        opts.messages,
        procfs::loadavg()
    );

    let display = Xvfb::start().await?;
    // One data directory and one driver (its NATTER_DATA_DIR) per build.
    let mut dirs = Vec::new();
    let mut drivers = Vec::new();
    for _ in &apps {
        let dir = tempfile::tempdir()?;
        copy_dir(filled.path(), dir.path())?;
        drivers.push(Driver::start(&display.display, dir.path()).await?);
        dirs.push(dir);
    }

    // Memory, the builds rotating like the cold starts below: PSS shares each library page
    // among every process mapping it, so another WebKit program starting or ending on the
    // machine moves it; runs spread over the session let the median see past that.
    let mut opened: Vec<Vec<MemoryRun>> = vec![Vec::new(); apps.len()];
    for run in 0..opts.memory_runs.max(1) {
        for k in compare::round_order(apps.len(), run) {
            let label = &opts.apps[k].label;
            let m = open_conversation(&drivers[k], dirs[k].path(), &apps[k], conv, opts.settle)
                .await
                .with_context(|| format!("{label}: memory idle and with the conversation open"))?;
            eprintln!(
                "  footprint: memory {}: {label} PSS idle {:.1} MiB, open {:.1} MiB (load {})",
                run + 1,
                mib(m.idle.pss_kib),
                mib(m.open.pss_kib),
                procfs::loadavg()
            );
            opened[k].push(m);
        }
    }

    // The empty window reads no profile: any driver will do.
    let empty_idle = match &empty {
        Some(empty) => {
            let session = drivers[0].session(empty).await?;
            session.wait_for("[data-testid=\"empty\"]").await?;
            tokio::time::sleep(opts.settle).await;
            let idle = tree_memory(empty)?;
            session.end(empty).await?;
            Some(idle)
        }
        None => None,
    };

    // Cold starts, rotating over the builds and the empty window so background load hits all
    // alike. Natter reopens the big conversation (last_conversation), so its first message row
    // is cached history.
    for dir in &dirs {
        write_desktop_config(dir.path(), Some(conv))?;
    }
    // Entry k < apps.len() is a build; the last, when there is one, the empty window.
    let entries = apps.len() + usize::from(empty.is_some());
    let mut paint = vec![Vec::new(); entries];
    let mut sessions = vec![Vec::new(); entries];
    let mut timelines: Vec<Vec<Timeline>> = vec![Vec::new(); entries];
    for run in 0..opts.runs {
        let mut line = Vec::new();
        for k in compare::round_order(entries, run) {
            let (s, p, timeline) = match (apps.get(k), &empty) {
                (Some(app), _) => drivers[k]
                    .cold_start(app, "[data-testid=\"message\"]")
                    .await
                    .with_context(|| format!("{} cold start", opts.apps[k].label))?,
                (None, Some(empty)) => drivers[0]
                    .cold_start(empty, "[data-testid=\"empty\"]")
                    .await
                    .context("empty window cold start")?,
                (None, None) => unreachable!("entries counts the empty window only when given"),
            };
            sessions[k].push(s);
            paint[k].push(p);
            let name = opts
                .apps
                .get(k)
                .map_or("empty window", |a| a.label.as_str());
            line.push(format!("{name} {p:.0} ms"));
            eprintln!("    {name}: {}", format_steps(&timeline));
            timelines[k].push(timeline);
        }
        eprintln!(
            "  footprint: cold start {}: {} (load {})",
            run + 1,
            line.join(", "),
            procfs::loadavg()
        );
    }
    for driver in drivers {
        driver.stop().await;
    }
    display.stop().await;

    let empty_figures = empty_idle.map(|idle| {
        let mut f = figures(
            paint.pop().unwrap_or_default(),
            sessions.pop().unwrap_or_default(),
            idle,
        );
        f.page_steps = page_medians(&timelines.pop().unwrap_or_default());
        f
    });
    let apps = opts
        .apps
        .iter()
        .zip(opened)
        .zip(paint.into_iter().zip(sessions))
        .zip(timelines)
        .map(|(((a, runs), (p, s)), starts)| {
            let mut figures = app_figures(p, s, runs);
            figures.page_steps = page_medians(&starts);
            NamedFigures {
                label: a.label.clone(),
                path: a.path.clone(),
                figures,
            }
        })
        .collect();
    Ok(FootprintResult {
        messages: opts.messages,
        runs: opts.runs,
        memory_runs: opts.memory_runs.max(1),
        settle_secs: opts.settle.as_secs_f64(),
        load_before,
        load_after: procfs::loadavg(),
        apps,
        empty: empty_figures,
    })
}

/// Start `app` on its profile with no conversation open (the sidebar from cache), read its
/// memory, then open the big conversation and read it again.
async fn open_conversation(
    driver: &Driver,
    data_dir: &Path,
    app: &Path,
    conv: ConvId,
    settle: Duration,
) -> Result<MemoryRun> {
    write_desktop_config(data_dir, None)?;
    let session = driver.session(app).await?;
    session
        .wait_for("[data-testid=\"conv-item\"]")
        .await
        .context(
            "no conversation in the sidebar: can this build read the profile's store? \
         (the profile is written by natter-bench's own client core)",
        )?;
    tokio::time::sleep(settle).await;
    let idle = tree_memory(app)?;
    session
        .click(&format!(
            "[data-testid=\"conv-item\"][data-conv-id=\"{conv}\"]"
        ))
        .await?;
    session.wait_for("[data-testid=\"message\"]").await?;
    tokio::time::sleep(settle).await;
    let open = tree_memory(app)?;
    let rows = session.count("[data-testid=\"message\"]").await?;
    session.end(app).await?;
    Ok(MemoryRun { idle, open, rows })
}

/// The figures of the empty window: cold starts and idle memory.
fn figures(paint: Vec<f64>, session: Vec<f64>, idle: Memory) -> AppFigures {
    AppFigures {
        first_paint_median_ms: median_max(paint.clone()).0,
        session_median_ms: median_max(session.clone()).0,
        first_paint_ms: paint,
        session_ms: session,
        idle,
        open: None,
        rows_rendered: None,
        memory_runs: Vec::new(),
        page_steps: Vec::new(),
    }
}

/// The figures of a Natter build: cold starts, and its memory runs, of which the one with the
/// median PSS open stands for the build in the tables.
fn app_figures(paint: Vec<f64>, session: Vec<f64>, runs: Vec<MemoryRun>) -> AppFigures {
    let mut by_open: Vec<&MemoryRun> = runs.iter().collect();
    by_open.sort_by_key(|r| r.open.pss_kib);
    let median = by_open.get(by_open.len() / 2).copied().cloned();
    let mut f = figures(
        paint,
        session,
        median.as_ref().map(|m| m.idle.clone()).unwrap_or_default(),
    );
    f.open = median.as_ref().map(|m| m.open.clone());
    f.rows_rendered = median.map(|m| m.rows);
    f.memory_runs = runs;
    f
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(p).with_context(|| {
        format!(
            "{} not found (scripts/bench builds it in release mode)",
            p.display()
        )
    })
}

/// Registers the user on a real server, signs the client core in and lets it sync (so the
/// profile holds a real session and the server's default room), stops the server, then writes
/// `messages` into that room through the store. Returns the room's id.
async fn fill_profile(opts: &Options, data_dir: &Path) -> Result<ConvId> {
    let launch = Launch {
        natter_server: opts.natter_server.clone(),
        peers_dir: PathBuf::new(),
        server_cpus: "0".into(),
        durable_floor: false,
    };
    let server = Server::start(Kind::Natter, &launch, None).await?;
    let url = url::Url::parse(&format!("http://{}/", server.addr))?;
    let session: protocol::Session = reqwest::Client::new()
        .post(url.join("api/register")?)
        .json(&protocol::RegisterRequest {
            username: USERNAME.into(),
            password: "bench-password-footprint".into(),
            display_name: Some("Bench".into()),
            avatar: None,
            invite: None,
        })
        .send()
        .await?
        .error_for_status()
        .context("registering the footprint user")?
        .json()
        .await?;
    let profile = profile_dir(data_dir, &url);
    let client = Client::start(ClientConfig::new(url.clone(), profile.clone()), session).await?;
    tokio::time::timeout(Duration::from_secs(20), client.wait_synced())
        .await
        .context("the client did not sync within 20 s")??;
    let room = client
        .conversations()
        .await?
        .into_iter()
        .find(|c| c.kind == ConvKind::Room)
        .ok_or_else(|| anyhow!("the new user is in no room after sync"))?;
    client.shutdown().await;
    drop(client);
    server.stop().await;

    let store = Store::open(&profile.join(STORE_FILE))?;
    let conv = room.id;
    let first_seq = store.last_seq(conv)? + 1;
    let mut rng = Rng(0x5eed_f007_0001);
    let now = natter_now_ms();
    let mut batch = Vec::with_capacity(1_000);
    for i in 0..opts.messages {
        // Half the user's own, half from nine others, one every 30 s up to now.
        let sender = if i % 2 == 0 {
            USERNAME.to_string()
        } else {
            format!("peer{}", rng.below(9) + 1)
        };
        batch.push(Message {
            id: 1_000_000 + i as i64,
            conv,
            seq: first_seq + i as i64,
            sender,
            text: text(&mut rng, i),
            time: now - (opts.messages - i) as i64 * 30_000,
            client_msg_id: uuid::Uuid::from_u64_pair(0xf007, i as u64),
            ..Message::default()
        });
        if batch.len() == 1_000 || i + 1 == opts.messages {
            store.insert_messages(&batch)?;
            batch.clear();
        }
    }
    let last = store.last_seq(conv)?;
    store.set_last_read(conv, last, false)?;
    let count = store.message_count(conv)?;
    if count < opts.messages as u64 {
        bail!(
            "the room holds {count} messages, expected at least {}",
            opts.messages
        );
    }
    // Remember the (now dead) server for the app: it starts offline from this profile.
    std::fs::write(data_dir.join("server-url"), url.as_str())?;
    Ok(conv)
}

fn natter_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Where the desktop app keeps this user's profile (the layout the client core defines).
fn profile_dir(data_dir: &Path, url: &url::Url) -> PathBuf {
    natter::client::profile_dir_in(data_dir, url, USERNAME)
}

/// desktop.json (src-tauri/src/config.rs): the server, the signed-in user and, for the cold
/// starts, the conversation to reopen. Settings are left to their defaults.
fn write_desktop_config(data_dir: &Path, last: Option<ConvId>) -> Result<()> {
    let url = std::fs::read_to_string(data_dir.join("server-url"))?;
    let cfg = json!({
        "server_url": url,
        "host_port": null,
        "username": USERNAME,
        "last_conversation": last,
    });
    std::fs::write(
        data_dir.join("desktop.json"),
        serde_json::to_vec_pretty(&cfg)?,
    )?;
    Ok(())
}

/// A virtual X server of its own; `-displayfd` picks a free display number.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    async fn start() -> Result<Xvfb> {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting Xvfb (apt install xvfb)")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
            .await
            .context("Xvfb did not report its display within 15 s")??
            .ok_or_else(|| anyhow!("Xvfb exited before reporting its display"))?;
        let n: u32 = line
            .trim()
            .parse()
            .with_context(|| format!("Xvfb reported {line:?}"))?;
        Ok(Xvfb {
            child,
            display: format!(":{n}"),
        })
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// tauri-driver (and the WebKitWebDriver it runs) on a free port.
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Driver {
    async fn start(display: &str, data_dir: &Path) -> Result<Driver> {
        let port = free_port()?;
        let native = free_port()?;
        let child = Command::new("tauri-driver")
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native.to_string(),
            ])
            .env("DISPLAY", display)
            .env("NATTER_DATA_DIR", data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting tauri-driver (cargo install tauri-driver)")?;
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        for _ in 0..100 {
            if let Ok(r) = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
            {
                if r.status().is_success() {
                    return Ok(driver);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("tauri-driver did not answer within 10 s")
    }

    async fn session(&self, app: &Path) -> Result<Session<'_>> {
        let v = call(
            &self.http,
            reqwest::Method::POST,
            &format!("{}/session", self.base),
            Some(json!({"capabilities": {"alwaysMatch": {"tauri:options": {"application": app}}}})),
        )
        .await
        .with_context(|| format!("starting {}", app.display()))?;
        let id = v["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no sessionId in {v}"))?;
        Ok(Session {
            driver: self,
            url: format!("{}/session/{id}", self.base),
        })
    }

    /// One cold start: (ms to session ready, ms to the awaited element), both from the spawn,
    /// and the page's own timeline of that start ([`page_timeline`]).
    async fn cold_start(&self, app: &Path, css: &str) -> Result<(f64, f64, Timeline)> {
        let spawned = std::time::SystemTime::now();
        let t = Instant::now();
        let session = self.session(app).await?;
        let session_ms = t.elapsed().as_secs_f64() * 1e3;
        session.wait_for(css).await?;
        let paint_ms = t.elapsed().as_secs_f64() * 1e3;
        let timeline = session.page_timeline(spawned).await;
        session.end(app).await?;
        Ok((session_ms, paint_ms, timeline))
    }

    async fn stop(mut self) {
        // tauri-driver's own children (WebKitWebDriver) would outlive a SIGKILL: end them first.
        if let Some(pid) = self.child.id() {
            for child in descendants(pid) {
                signal(child, "TERM");
            }
        }
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

struct Session<'a> {
    driver: &'a Driver,
    url: String,
}

impl Session<'_> {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        call(
            &self.driver.http,
            method,
            &format!("{}{path}", self.url),
            body,
        )
        .await
    }

    async fn find(&self, css: &str) -> Result<Vec<String>> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn count(&self, css: &str) -> Result<usize> {
        Ok(self.find(css).await?.len())
    }

    /// Polls every 10 ms: the poll interval bounds how late a paint can be noticed.
    async fn wait_for(&self, css: &str) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(el) = self.find(css).await?.into_iter().next() {
                return Ok(el);
            }
            if Instant::now() > deadline {
                bail!("no {css} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Where a cold start's time went, read from the page after the paint (so the reading
    /// costs the figure nothing): each step in ms from the spawn, from the Navigation and Paint
    /// Timing APIs and the `natter:` marks the UI sets (ui/src/main.ts, the store's boot).
    /// Shown per run, so a regression in first paint can be placed without a profiler.
    async fn page_timeline(&self, spawned: std::time::SystemTime) -> Timeline {
        const SCRIPT: &str = "const n = performance.getEntriesByType('navigation')[0] || {};\
            const at = [['navigation', 0], ['html', n.responseEnd], \
            ['dom-interactive', n.domInteractive], ['dom-loaded', n.domContentLoadedEventEnd]];\
            for (const e of performance.getEntriesByType('mark')) at.push([e.name, e.startTime]);\
            for (const e of performance.getEntriesByType('paint')) at.push([e.name, e.startTime]);\
            at.push(['read', performance.now()]);\
            return { origin: performance.timeOrigin, at };";
        let Ok(v) = self
            .call(
                reqwest::Method::POST,
                "/execute/sync",
                Some(json!({"script": SCRIPT, "args": []})),
            )
            .await
        else {
            return Vec::new();
        };
        let spawn_ms = spawned
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3);
        let origin = v["origin"].as_f64().unwrap_or(spawn_ms) - spawn_ms;
        let mut steps: Timeline = v["at"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p[0].as_str()?.to_string(), origin + p[1].as_f64()?)))
            .collect();
        steps.sort_by(|a, b| a.1.total_cmp(&b.1));
        steps
    }

    async fn click(&self, css: &str) -> Result<()> {
        let el = self.wait_for(css).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await?;
        Ok(())
    }

    /// Ends the session and waits until no process of `app` is left (the next start must be
    /// cold, and the single-instance check must not hand over to a dying one).
    async fn end(self, app: &Path) -> Result<()> {
        let _ = self.call(reqwest::Method::DELETE, "", None).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = pids_of(app);
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                for pid in &left {
                    signal(*pid, "KILL");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut req = http.request(method.clone(), url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{method} {url}: HTTP {status}: {}", v["value"]);
    }
    Ok(v["value"].clone())
}

fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Every process: pid -> (parent pid, comm).
fn process_table() -> HashMap<u32, (u32, String)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((comm, ppid)) = parse_comm_ppid(&stat) {
            out.insert(pid, (ppid, comm));
        }
    }
    out
}

/// `pid (comm) state ppid ...`; comm may hold spaces and parentheses, so split at the last ')'.
fn parse_comm_ppid(stat: &str) -> Option<(String, u32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let ppid = stat
        .get(close + 1..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((comm, ppid))
}

fn descendants(root: u32) -> Vec<u32> {
    let table = process_table();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (&pid, (ppid, _)) in &table {
            if *ppid == p {
                out.push(pid);
                frontier.push(pid);
            }
        }
    }
    out
}

/// Processes running the executable `app`.
fn pids_of(app: &Path) -> Vec<u32> {
    process_table()
        .into_keys()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .map(|exe| exe == app)
                .unwrap_or(false)
        })
        .collect()
}

/// PSS and RSS of `app`'s process and all its descendants.
fn tree_memory(app: &Path) -> Result<Memory> {
    let roots = pids_of(app);
    if roots.len() != 1 {
        bail!(
            "expected one {} process, found {}",
            app.display(),
            roots.len()
        );
    }
    let table = process_table();
    let mut pids = vec![roots[0]];
    pids.extend(descendants(roots[0]));
    let mut mem = Memory {
        pss_kib: 0,
        uss_kib: 0,
        rss_kib: 0,
        by_process: BTreeMap::new(),
        processes: 0,
    };
    for pid in pids {
        let Ok(s) = procfs::sample(pid) else {
            continue; // gone between listing and reading
        };
        let comm = table.get(&pid).map(|(_, c)| c.clone()).unwrap_or_default();
        mem.pss_kib += s.pss_kib;
        mem.uss_kib += s.uss_kib;
        mem.rss_kib += s.rss_kib;
        *mem.by_process.entry(comm).or_default() += s.pss_kib;
        mem.processes += 1;
    }
    if !mem
        .by_process
        .keys()
        .any(|c| c.starts_with("WebKitWebProces"))
    {
        bail!(
            "no WebKitWebProcess under {}: {:?}",
            app.display(),
            mem.by_process
        );
    }
    Ok(mem)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The table printed after the run (and pasted into docs/benchmarks.md): every build next to
/// the empty window (with the ratio to it when there is one build), then, with several builds,
/// the comparison with the first.
pub fn render(r: &FootprintResult) -> String {
    let mib = |k: u64| format!("{:.1}", mib(k));
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            "-".into()
        }
    };
    let empty = r.empty.as_ref();
    let with_ratio = r.apps.len() == 1 && empty.is_some();
    // One row: a cell per build, the empty window's, and the single build's ratio to it. The
    // closures give the empty window's cell and the ratio, when there is an empty window.
    let row = |name: &str,
               cells: Vec<String>,
               empty_cell: &dyn Fn(&AppFigures) -> String,
               ratio_cell: &dyn Fn(&AppFigures) -> String| {
        let mut line = format!("| {name} |");
        for c in cells {
            line.push_str(&format!(" {c} |"));
        }
        if let Some(e) = empty {
            line.push_str(&format!(" {} |", empty_cell(e)));
            if with_ratio {
                line.push_str(&format!(" {} |", ratio_cell(e)));
            }
        }
        line.push('\n');
        line
    };
    let first = &r.apps[0].figures;
    let labels: Vec<String> = r.apps.iter().map(|a| a.label.clone()).collect();
    let mut s = String::new();
    s.push_str(&format!(
        "\n### App footprint ({} cold starts each, {} messages, memory after {:.0} s; load {} -> {})\n\n",
        r.runs, r.messages, r.settle_secs, r.load_before, r.load_after
    ));
    s.push_str(&row(
        "measure",
        labels.clone(),
        &|_| "empty Tauri window".into(),
        &|_| "ratio".into(),
    ));
    s.push_str(
        &row(
            "---",
            labels.iter().map(|_| "---".into()).collect(),
            &|_| "---".into(),
            &|_| "---".into(),
        )
        .replace(' ', ""),
    );
    let paint = |f: &AppFigures| {
        format!(
            "{:.0} ({})",
            f.first_paint_median_ms,
            join_ms(&f.first_paint_ms)
        )
    };
    s.push_str(&row(
        "cold start to first paint, median ms (runs)",
        r.apps.iter().map(|a| paint(&a.figures)).collect(),
        &paint,
        &|e| ratio(first.first_paint_median_ms, e.first_paint_median_ms),
    ));
    s.push_str(&row(
        "spawn to WebDriver session, median ms",
        r.apps
            .iter()
            .map(|a| format!("{:.0}", a.figures.session_median_ms))
            .collect(),
        &|e| format!("{:.0}", e.session_median_ms),
        &|e| ratio(first.session_median_ms, e.session_median_ms),
    ));
    s.push_str(&row(
        "PSS idle, MiB (all processes)",
        r.apps.iter().map(|a| mib(a.figures.idle.pss_kib)).collect(),
        &|e| mib(e.idle.pss_kib),
        &|e| ratio(first.idle.pss_kib as f64, e.idle.pss_kib as f64),
    ));
    let open_pss = |f: &AppFigures| f.open.as_ref().map(|m| m.pss_kib);
    s.push_str(&row(
        &format!("PSS with the {}-message conversation open, MiB", r.messages),
        r.apps
            .iter()
            .map(|a| open_pss(&a.figures).map_or("-".into(), mib))
            .collect(),
        &|_| "-".into(),
        &|e| open_pss(first).map_or("-".into(), |k| ratio(k as f64, e.idle.pss_kib as f64)),
    ));
    s.push_str(&row(
        "RSS idle, MiB (sum, double-counts shared pages)",
        r.apps.iter().map(|a| mib(a.figures.idle.rss_kib)).collect(),
        &|e| mib(e.idle.rss_kib),
        &|_| "-".into(),
    ));

    s.push_str("\nPSS by process (MiB):\n\n| process |");
    for l in &labels {
        s.push_str(&format!(" {l} idle | {l} open |"));
    }
    if empty.is_some() {
        s.push_str(" empty window |");
    }
    s.push_str("\n|---|");
    s.push_str(&"---|---|".repeat(labels.len()));
    if empty.is_some() {
        s.push_str("---|");
    }
    s.push('\n');
    let mut names: Vec<&String> = r
        .apps
        .iter()
        .flat_map(|a| a.figures.idle.by_process.keys())
        .chain(empty.into_iter().flat_map(|e| e.idle.by_process.keys()))
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let get = |m: Option<&Memory>| {
            m.and_then(|m| m.by_process.get(name))
                .map(|k| mib(*k))
                .unwrap_or_else(|| "-".into())
        };
        s.push_str(&format!("| {name} |"));
        for a in &r.apps {
            s.push_str(&format!(
                " {} | {} |",
                get(Some(&a.figures.idle)),
                get(a.figures.open.as_ref())
            ));
        }
        if let Some(e) = empty {
            s.push_str(&format!(" {} |", get(Some(&e.idle))));
        }
        s.push('\n');
    }
    s.push('\n');
    for a in &r.apps {
        if let Some(rows) = a.figures.rows_rendered {
            s.push_str(&format!(
                "Message rows in the DOM with the conversation open ({}): {rows} of {}.\n",
                a.label, r.messages
            ));
        }
    }
    s.push_str(&page_table(r));
    if r.apps.len() > 1 {
        s.push_str(&format!(
            "\n### {} compared (medians of {} cold starts and {} memory runs each)\n\n",
            labels.join(" vs "),
            r.runs,
            r.memory_runs
        ));
        let measures = measures(r);
        s.push_str(&compare::render_table(&labels, &measures));
        s.push_str("\nEvery run:\n\n");
        s.push_str(&compare::render_samples(&labels, &measures));
    }
    s
}

/// The figures issue 14 compares between builds of the app: first the two it names (cold
/// start to the first painted message of cached history, PSS with the big conversation open),
/// then USS open (what PSS would be without other programs sharing the libraries), idle PSS
/// and the spawn-to-session time.
pub fn measures(r: &FootprintResult) -> Vec<Measure> {
    let per_app = |f: &dyn Fn(&AppFigures) -> Vec<f64>| -> Vec<Vec<f64>> {
        r.apps.iter().map(|a| f(&a.figures)).collect()
    };
    vec![
        Measure {
            name: "cold start to first painted message, ms".into(),
            better: Better::Lower,
            decimals: 0,
            samples: per_app(&|f| f.first_paint_ms.clone()),
        },
        Measure {
            name: format!("PSS with the {}-message conversation open, MiB", r.messages),
            better: Better::Lower,
            decimals: 1,
            samples: per_app(&|f| f.memory_runs.iter().map(|m| mib(m.open.pss_kib)).collect()),
        },
        Measure {
            name: "USS (private pages) with the conversation open, MiB".into(),
            better: Better::Lower,
            decimals: 1,
            samples: per_app(&|f| f.memory_runs.iter().map(|m| mib(m.open.uss_kib)).collect()),
        },
        Measure {
            name: "PSS idle, MiB".into(),
            better: Better::Lower,
            decimals: 1,
            samples: per_app(&|f| f.memory_runs.iter().map(|m| mib(m.idle.pss_kib)).collect()),
        },
        Measure {
            name: "spawn to WebDriver session, ms".into(),
            better: Better::Lower,
            decimals: 0,
            samples: per_app(&|f| f.session_ms.clone()),
        },
    ]
}

/// The page timelines side by side: a row per step any page reached, in time order; each cell
/// is the build's median, with in how many cold starts it was reached when not in all.
fn page_table(r: &FootprintResult) -> String {
    let mut columns: Vec<(&str, &[PageStep])> = r
        .apps
        .iter()
        .map(|a| (a.label.as_str(), a.figures.page_steps.as_slice()))
        .collect();
    if let Some(e) = &r.empty {
        columns.push(("empty Tauri window", e.page_steps.as_slice()));
    }
    // Each step where the first column that has it places it (the builds before the empty
    // window), so every build's steps read in their own order.
    let mut names: Vec<(&str, f64)> = Vec::new();
    for step in columns.iter().flat_map(|(_, steps)| steps.iter()) {
        if !names.iter().any(|(n, _)| *n == step.name) {
            names.push((&step.name, step.median_ms));
        }
    }
    if names.is_empty() {
        return String::new();
    }
    names.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut s = format!(
        "\nThe page's own timeline, median ms from the spawn over {} cold starts \
         (`(n)`: reached in n of them; `read` is when the bench read it, after finding the row):\n\n| step |",
        r.runs
    );
    for (label, _) in &columns {
        s.push_str(&format!(" {label} |"));
    }
    s.push_str("\n|---|");
    s.push_str(&"---|".repeat(columns.len()));
    s.push('\n');
    for (name, _) in names {
        s.push_str(&format!("| {name} |"));
        for (_, steps) in &columns {
            match steps.iter().find(|st| st.name == name) {
                Some(st) if st.runs < r.runs => {
                    s.push_str(&format!(" {:.0} ({}) |", st.median_ms, st.runs))
                }
                Some(st) => s.push_str(&format!(" {:.0} |", st.median_ms)),
                None => s.push_str(" - |"),
            }
        }
        s.push('\n');
    }
    s
}

/// One cold start's page timeline as `name ms, ...` (the progress lines).
fn format_steps(steps: &Timeline) -> String {
    if steps.is_empty() {
        return "no page timeline".into();
    }
    steps
        .iter()
        .map(|(name, ms)| format!("{name} {ms:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn join_ms(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory of `pss` MiB split between a UI process and WebKit's web process, half of it
    /// private.
    fn memory(ui: &str, pss_mib: u64) -> Memory {
        let by_process = BTreeMap::from([
            (ui.to_string(), 64 * 1024),
            ("WebKitWebProces".to_string(), (pss_mib - 64) * 1024),
        ]);
        Memory {
            pss_kib: pss_mib * 1024,
            uss_kib: pss_mib * 512,
            rss_kib: 2 * pss_mib * 1024,
            by_process,
            processes: 3,
        }
    }

    /// A build with one memory run per `(idle, open)` PSS in MiB.
    fn app(label: &str, paint: Vec<f64>, memory_runs: &[(u64, u64)]) -> NamedFigures {
        let session = paint.iter().map(|p| p / 2.0).collect();
        let runs = memory_runs
            .iter()
            .map(|&(idle, open)| MemoryRun {
                idle: memory("natter-desktop", idle),
                open: memory("natter-desktop", open),
                rows: 25,
            })
            .collect();
        NamedFigures {
            label: label.into(),
            path: format!("/bins/{label}/natter-desktop").into(),
            figures: app_figures(paint, session, runs),
        }
    }

    fn result(apps: Vec<NamedFigures>, empty: Option<AppFigures>) -> FootprintResult {
        FootprintResult {
            messages: 10_000,
            runs: 3,
            memory_runs: 3,
            settle_secs: 3.0,
            load_before: "0.5".into(),
            load_after: "0.6".into(),
            apps,
            empty,
        }
    }

    fn line<'a>(out: &'a str, start: &str) -> &'a str {
        out.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?} in\n{out}"))
    }

    #[test]
    fn one_build_is_shown_against_the_empty_window() {
        let empty = figures(
            vec![300.0, 400.0, 350.0],
            vec![100.0, 100.0, 100.0],
            memory("natter-empty-wi", 250),
        );
        let r = result(
            vec![app(
                compare::DEFAULT_APP_LABEL,
                vec![600.0, 500.0, 700.0],
                &[(300, 330)],
            )],
            Some(empty),
        );
        let out = render(&r);
        assert!(
            out.contains(
                "| measure | natter-desktop | empty Tauri window | ratio |\n|---|---|---|---|\n"
            ),
            "{out}"
        );
        assert_eq!(
            line(&out, "| cold start"),
            "| cold start to first paint, median ms (runs) | 600 (600, 500, 700) | 350 (300, 400, 350) | 1.71x |"
        );
        assert_eq!(
            line(&out, "| PSS with the"),
            "| PSS with the 10000-message conversation open, MiB | 330.0 | - | 1.32x |"
        );
        assert!(
            out.contains("| process | natter-desktop idle | natter-desktop open | empty window |"),
            "{out}"
        );
        assert!(out.contains("| natter-empty-wi | - | - | 64.0 |"), "{out}");
        assert!(
            !out.contains("compared"),
            "one build has nothing to compare: {out}"
        );
    }

    /// A cold start's timeline from `(step, ms)` pairs.
    fn start(steps: &[(&str, f64)]) -> Timeline {
        steps.iter().map(|(n, ms)| (n.to_string(), *ms)).collect()
    }

    #[test]
    fn page_timelines_are_medians_per_step_side_by_side() {
        // Three cold starts; the frame mark is missing from one (read before it).
        let starts = [
            start(&[
                ("html", 350.0),
                ("natter:next-frame", 500.0),
                ("read", 520.0),
            ]),
            start(&[("html", 360.0), ("read", 505.0)]),
            start(&[
                ("html", 340.0),
                ("natter:next-frame", 480.0),
                ("read", 530.0),
            ]),
        ];
        let steps = page_medians(&starts);
        assert_eq!(
            steps,
            vec![
                PageStep {
                    name: "html".into(),
                    median_ms: 350.0,
                    runs: 3
                },
                PageStep {
                    name: "natter:next-frame".into(),
                    median_ms: 490.0,
                    runs: 2
                },
                PageStep {
                    name: "read".into(),
                    median_ms: 520.0,
                    runs: 3
                },
            ]
        );
        let mut natter = app("new", vec![520.0, 505.0, 530.0], &[(300, 330)]);
        natter.figures.page_steps = steps;
        let mut empty = figures(
            vec![380.0; 3],
            vec![200.0; 3],
            memory("natter-empty-wi", 250),
        );
        empty.page_steps = page_medians(&[
            start(&[("first-contentful-paint", 345.0), ("read", 380.0)]),
            start(&[("first-contentful-paint", 347.0), ("read", 390.0)]),
            start(&[("first-contentful-paint", 349.0), ("read", 370.0)]),
        ]);
        let out = render(&result(vec![natter], Some(empty)));
        assert!(
            out.contains("| step | new | empty Tauri window |\n|---|---|---|\n"),
            "{out}"
        );
        // In the build's time order; a step a page never reached is `-`, one reached in only
        // some cold starts says in how many.
        let table: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.starts_with("| step |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert_eq!(
            table,
            [
                "| first-contentful-paint | - | 347 |",
                "| html | 350 | - |",
                "| natter:next-frame | 490 (2) | - |",
                "| read | 520 | 380 |",
            ]
        );
    }

    #[test]
    fn two_builds_get_the_comparison_table() {
        let r = result(
            vec![
                app(
                    "old",
                    vec![600.0, 500.0, 700.0],
                    &[(300, 330), (310, 340), (280, 300)],
                ),
                // The run with the median PSS open (320) stands for the build in the tables.
                app(
                    "new",
                    vec![640.0, 700.0, 690.0],
                    &[(250, 400), (290, 320), (240, 300)],
                ),
            ],
            None,
        );
        let out = render(&r);
        // No empty window: no column for it, and no ratio to it.
        assert!(
            out.contains("| measure | old | new |\n|---|---|---|\n"),
            "{out}"
        );
        assert_eq!(
            line(&out, "| PSS idle"),
            "| PSS idle, MiB (all processes) | 300.0 | 290.0 |"
        );
        assert_eq!(
            line(&out, "| PSS with the"),
            "| PSS with the 10000-message conversation open, MiB | 330.0 | 320.0 |"
        );
        assert!(
            out.contains(
                "| process | old idle | old open | new idle | new open |\n|---|---|---|---|---|\n"
            ),
            "{out}"
        );
        assert!(out.contains("### old vs new compared"), "{out}");
        // Medians 600 and 690 ms: 1.15x, 15% slower.
        assert!(
            out.contains("| cold start to first painted message, ms | lower | 600 | 690 | 1.15x | **NO** (15.0% worse) |"),
            "{out}"
        );
        // Medians of the memory runs: open 330 and 320, USS half of that; idle 300 and 250.
        assert!(
            out.contains("| PSS with the 10000-message conversation open, MiB | lower | 330.0 | 320.0 | 0.97x | yes |"),
            "{out}"
        );
        assert!(
            out.contains("| USS (private pages) with the conversation open, MiB | lower | 165.0 | 160.0 | 0.97x | yes |"),
            "{out}"
        );
        assert!(
            out.contains("| PSS idle, MiB | lower | 300.0 | 250.0 | 0.83x | yes (16.7% better) |"),
            "{out}"
        );
        assert!(
            out.contains("| PSS idle, MiB | new | 250.0 | 290.0 | 240.0 |"),
            "{out}"
        );
        assert!(
            out.contains("Message rows in the DOM with the conversation open (new): 25 of 10000.")
        );
    }

    #[test]
    fn comm_and_parent_survive_odd_process_names() {
        assert_eq!(
            parse_comm_ppid("4242 (Web Content (x)) S 17 4242 4242 0 -1"),
            Some(("Web Content (x)".to_string(), 17))
        );
        assert_eq!(parse_comm_ppid("garbage"), None);
        assert_eq!(parse_comm_ppid("1 (init) S"), None);
    }

    #[test]
    fn this_process_is_found_by_its_executable_and_has_no_children_of_its_own() {
        let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
        let me = std::process::id();
        assert!(pids_of(&exe).contains(&me));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let kids = descendants(me);
        assert!(kids.contains(&child.id()), "{kids:?}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
