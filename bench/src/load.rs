//! The load generator's core: a swarm of WebSocket clients, an open-loop pacer that publishes
//! at a fixed rate regardless of how fast the server answers, and a recorder that turns every
//! delivery into a latency sample (HDR histogram) and counts what was lost.
//!
//! Each published text carries `@@<step>:<seq>:<nanos>;` (nanos = the message's *intended* send
//! time on the generator's clock, padded to 100 bytes), so a delivery is attributed to its step
//! and message without parsing the server's JSON, and latency includes any time the message
//! waited because the generator or the server fell behind (no coordinated omission).

use crate::procfs;
use crate::target::{self, Dest, Kind, Ws};
use anyhow::{anyhow, Result};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Length of every published message text, in bytes.
pub const TEXT_BYTES: usize = 100;

/// The marker a text starts with, followed by `step:seq:nanos;`.
const MARK: &str = "@@";

/// Build the 100-byte text of message `seq` of `step`, intended to be sent at `nanos`.
pub fn make_text(step: u32, seq: u64, nanos: u64) -> String {
    let mut t = format!("{MARK}{step}:{seq}:{nanos};");
    while t.len() < TEXT_BYTES {
        t.push(if t.len() % 10 == 9 { ' ' } else { 'x' });
    }
    t.truncate(TEXT_BYTES);
    t
}

/// Find the marker in a received frame: (step, seq, nanos).
pub fn parse_mark(frame: &str) -> Option<(u32, u64, u64)> {
    let start = frame.find(MARK)? + MARK.len();
    let rest = &frame[start..];
    let end = rest.find(';')?;
    let mut parts = rest[..end].splitn(3, ':');
    let step = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let nanos = parts.next()?.parse().ok()?;
    Some((step, seq, nanos))
}

/// What one step is expecting, and what arrived.
struct StepState {
    step: u32,
    /// Messages with seq in `measured` are counted; earlier ones are warm-up.
    measured: std::ops::Range<u64>,
    /// Deliveries expected per measured message (index seq - measured.start).
    expected: Vec<u32>,
    got: Vec<u32>,
    /// Latency in microseconds.
    hist: Histogram<u64>,
    /// How late the pacer handed each measured message to its client, in microseconds: the
    /// generator's own share of every latency above.
    late: Histogram<u64>,
    /// Latency of each measured message's first delivery, in microseconds: the server's time to
    /// its first `send` (for Natter, the commit and its sync) without the fan-out's spread.
    first: Histogram<u64>,
    unique: u64,
    duplicates: u64,
    /// Measured messages per window: message i (from `measured.start`) is in window
    /// `i / window_msgs` (consecutive windows of issue 15; one window in the other scenarios).
    window_msgs: u64,
    windows: Vec<WindowTally>,
    /// Each measured message's slowest delivery so far, in microseconds.
    slowest: Vec<u64>,
    /// Each measured message's request id (what the server's latency trace names it by).
    reqs: Vec<u64>,
}

/// What arrived for the messages of one window.
struct WindowTally {
    hist: Histogram<u64>,
    first: Histogram<u64>,
    unique: u64,
}

impl WindowTally {
    fn new() -> WindowTally {
        WindowTally {
            hist: new_hist(),
            first: new_hist(),
            unique: 0,
        }
    }
}

impl StepState {
    /// Expect `windows` windows of `per_window` messages each after `warm` warm-up messages.
    fn reset(&mut self, step: u32, warm: u64, per_window: u64, windows: usize) {
        let n = (per_window * windows as u64) as usize;
        self.step = step;
        self.measured = warm..warm + n as u64;
        self.expected = vec![0; n];
        self.got = vec![0; n];
        self.slowest = vec![0; n];
        self.reqs = vec![0; n];
        self.hist.reset();
        self.late.reset();
        self.first.reset();
        self.unique = 0;
        self.duplicates = 0;
        self.window_msgs = per_window.max(1);
        self.windows = (0..windows).map(|_| WindowTally::new()).collect();
    }

    /// The window of measured message `i` (counted from `measured.start`).
    fn window_of(&self, i: usize) -> usize {
        i / self.window_msgs as usize
    }
}

/// Shared by every client's reader task.
pub struct Recorder {
    origin: Instant,
    /// `origin` as nanoseconds since the Unix epoch: the clock of natter-server's latency trace.
    origin_epoch_nanos: u64,
    state: Mutex<StepState>,
    /// Frames the server sent that were errors (rate limited, refused...).
    pub errors: AtomicU64,
    /// Sockets the server closed (or that failed) while running.
    pub closed: AtomicU64,
    /// Non-delivery frames (acks, presence...), counted to show their share of traffic.
    pub other_frames: AtomicU64,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            origin: Instant::now(),
            origin_epoch_nanos: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            state: Mutex::new(StepState {
                step: 0,
                measured: 0..0,
                expected: Vec::new(),
                got: Vec::new(),
                hist: new_hist(),
                late: new_hist(),
                first: new_hist(),
                unique: 0,
                duplicates: 0,
                window_msgs: 1,
                windows: Vec::new(),
                slowest: Vec::new(),
                reqs: Vec::new(),
            }),
            errors: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            other_frames: AtomicU64::new(0),
        }
    }

    fn nanos_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_nanos() as u64
    }

    fn on_delivery(&self, frame: &str) {
        let Some((step, seq, nanos)) = parse_mark(frame) else {
            return;
        };
        let now = self.nanos_at(Instant::now());
        let mut s = self.state.lock().expect("recorder lock");
        if step != s.step || !s.measured.contains(&seq) {
            return;
        }
        let i = (seq - s.measured.start) as usize;
        s.got[i] += 1;
        if s.got[i] > s.expected[i] {
            s.duplicates += 1;
            return;
        }
        s.unique += 1;
        let micros = (now.saturating_sub(nanos) / 1_000).max(1);
        let first = s.got[i] == 1;
        s.hist.saturating_record(micros);
        if first {
            s.first.saturating_record(micros);
        }
        s.slowest[i] = s.slowest[i].max(micros);
        let w = s.window_of(i);
        let window = &mut s.windows[w];
        window.unique += 1;
        window.hist.saturating_record(micros);
        if first {
            window.first.saturating_record(micros);
        }
    }
}

fn new_hist() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant figures.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// One connected client.
pub struct Client {
    tx: mpsc::UnboundedSender<Message>,
    /// Set to make the client stop reading its socket (scenario 4).
    pause: Arc<AtomicBool>,
    /// The server's default room (Natter) for the fan-out scenario.
    pub general: Option<i64>,
    task: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    pub fn send_text(&self, frame: String) {
        let _ = self.tx.send(Message::text(frame));
    }
    pub fn stop_reading(&self) {
        self.pause.store(true, Ordering::Relaxed);
    }
}

/// Many clients of one server.
pub struct Swarm {
    pub kind: Kind,
    pub clients: Vec<Client>,
    pub recorder: Arc<Recorder>,
    next_id: AtomicU64,
    step: u32,
}

/// The source addresses clients bind to, round-robin.
pub const SOURCE_IPS: [Ipv4Addr; 8] = [
    Ipv4Addr::new(127, 0, 0, 1),
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
    Ipv4Addr::new(127, 0, 0, 4),
    Ipv4Addr::new(127, 0, 0, 5),
    Ipv4Addr::new(127, 0, 0, 6),
    Ipv4Addr::new(127, 0, 0, 7),
    Ipv4Addr::new(127, 0, 0, 8),
];

impl Swarm {
    pub fn new(kind: Kind) -> Swarm {
        Swarm {
            kind,
            clients: Vec::new(),
            recorder: Arc::new(Recorder::new()),
            next_id: AtomicU64::new(1),
            step: 0,
        }
    }

    /// Connect `count` more clients (client i uses token i mod tokens.len()), 64 at a time.
    pub async fn connect(
        &mut self,
        addr: SocketAddr,
        tokens: &[String],
        count: usize,
    ) -> Result<()> {
        self.connect_with(addr, tokens, count, None).await
    }

    /// [`Swarm::connect`] with an optional small kernel receive buffer (see
    /// [`target::connect_with`]). Each client starts reading as soon as it is connected, so
    /// what the server pushes meanwhile (presence, hello) never piles up unread.
    pub async fn connect_with(
        &mut self,
        addr: SocketAddr,
        tokens: &[String],
        count: usize,
        recv_buffer: Option<u32>,
    ) -> Result<()> {
        let first = self.clients.len();
        let kind = self.kind;
        let mut connecting = futures_util::stream::iter(first..first + count)
            .map(|i| {
                let token = (!tokens.is_empty()).then(|| tokens[i % tokens.len()].clone());
                let src = SOURCE_IPS[i % SOURCE_IPS.len()];
                async move {
                    let r =
                        target::connect_with(kind, addr, token.as_deref(), src, recv_buffer).await;
                    r.map_err(|e| anyhow!("client {i}: {e:#}"))
                }
            })
            .buffered(64);
        while let Some(r) = connecting.next().await {
            let (ws, general) = r?;
            let client = self.spawn_client(ws, general);
            self.clients.push(client);
        }
        Ok(())
    }

    /// Add an already connected (and set up) socket to the swarm.
    pub fn push(&mut self, ws: Ws, general: Option<i64>) {
        let client = self.spawn_client(ws, general);
        self.clients.push(client);
    }

    /// Wait until the server has stopped sending non-delivery frames (Natter's presence storm
    /// after many clients connect) for `quiet`, at most `limit`.
    pub async fn settle(&self, quiet: Duration, limit: Duration) {
        let start = Instant::now();
        let mut last = self.recorder.other_frames.load(Ordering::Relaxed);
        let mut since = Instant::now();
        while start.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.recorder.other_frames.load(Ordering::Relaxed);
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
        }
    }

    fn spawn_client(&self, ws: Ws, general: Option<i64>) -> Client {
        let (tx, rx) = mpsc::unbounded_channel();
        let pause = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(client_loop(
            ws,
            rx,
            self.recorder.clone(),
            self.kind,
            pause.clone(),
        ));
        Client {
            tx,
            pause,
            general,
            task,
        }
    }

    pub fn next_request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Where the fan-out scenario publishes: Natter's default room, the peers' only room.
    fn room(&self) -> Dest {
        let conv = self.clients.first().and_then(|c| c.general).unwrap_or(1);
        Dest::Conv(conv.to_string())
    }

    /// The fan-out scenario's room, how many receive each message (every client still
    /// reading), and who publishes (the same clients, round-robin).
    fn fanout_route(&self) -> (Dest, u32, Vec<usize>) {
        let publishers: Vec<usize> = (0..self.clients.len())
            .filter(|&i| !self.clients[i].pause.load(Ordering::Relaxed))
            .collect();
        (self.room(), publishers.len() as u32, publishers)
    }

    /// One measured step of the fan-out scenario: every client is in one room, `rate` messages
    /// per second are published round-robin by the clients, each delivered to every client.
    pub async fn fanout_step(
        &mut self,
        server_pids: &[u32],
        rate: f64,
        warmup: Duration,
        measure: Duration,
    ) -> Result<StepResult> {
        let run = self
            .fanout_windows(server_pids, rate, warmup, measure, 1)
            .await?;
        Ok(run.step)
    }

    /// The open-loop pacer shared by the scenarios. `route(seq)` says who publishes message
    /// `seq`, where, and how many deliveries it should make. `tick` runs about every 10 ms
    /// during the measured window (the realistic scenario's presence churn).
    pub async fn run_paced<R, T>(
        &mut self,
        server_pids: &[u32],
        rate: f64,
        warmup: Duration,
        measure: Duration,
        route: R,
        tick: T,
    ) -> Result<StepResult>
    where
        R: FnMut(&Swarm, u64) -> (usize, Dest, u32),
        T: FnMut(&mut Swarm),
    {
        let run = self
            .run_windows(server_pids, rate, warmup, measure, 1, route, tick)
            .await?;
        Ok(run.step)
    }

    /// One step of the fan-out scenario measured as `windows` consecutive windows of `window`
    /// each (issue 15), with the step's figures over all of them too.
    pub async fn fanout_windows(
        &mut self,
        server_pids: &[u32],
        rate: f64,
        warmup: Duration,
        window: Duration,
        windows: usize,
    ) -> Result<WindowedRun> {
        let (dest, receivers, publishers) = self.fanout_route();
        let mut run = self
            .run_windows(
                server_pids,
                rate,
                warmup,
                window,
                windows,
                |_, seq| {
                    let who = publishers[(seq as usize) % publishers.len()];
                    (who, dest.clone(), receivers)
                },
                |_| {},
            )
            .await?;
        run.step.offered_deliveries = rate * receivers as f64;
        Ok(run)
    }

    /// [`Swarm::run_paced`] over `windows` consecutive windows of `window` each: the server's
    /// CPU is read at every window's first message, and every delivery is counted in the window
    /// its message was due in (deliveries that arrive after the window ended included).
    #[allow(clippy::too_many_arguments)]
    async fn run_windows<R, T>(
        &mut self,
        server_pids: &[u32],
        rate: f64,
        warmup: Duration,
        window: Duration,
        windows: usize,
        mut route: R,
        mut tick: T,
    ) -> Result<WindowedRun>
    where
        R: FnMut(&Swarm, u64) -> (usize, Dest, u32),
        T: FnMut(&mut Swarm),
    {
        anyhow::ensure!(windows > 0, "at least one window");
        self.step += 1;
        let step = self.step;
        let warm_n = (rate * warmup.as_secs_f64()).round() as u64;
        let per_window = ((rate * window.as_secs_f64()).round() as u64).max(1);
        let total = warm_n + per_window * windows as u64;
        self.recorder
            .state
            .lock()
            .expect("recorder lock")
            .reset(step, warm_n, per_window, windows);
        // (time, server CPU) at each window's start, then at the last window's end.
        let mut boundaries: Vec<(Instant, procfs::Sample)> = Vec::with_capacity(windows + 1);
        let errors0 = self.recorder.errors.load(Ordering::Relaxed);
        let closed0 = self.recorder.closed.load(Ordering::Relaxed);
        let me = std::process::id();
        let mut at_measure: Option<(Instant, procfs::Sample, procfs::Sample)> = None;
        let start = Instant::now();
        let mut beats = metronome(start, rate, total);
        let mut seq = 0u64;
        let mut last_tick = start;
        let mut expected_total = 0u64;
        while seq < total {
            // Message `seq` is due at start + seq/rate: message 0 goes at once.
            let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
            while seq < due {
                if seq == warm_n && at_measure.is_none() {
                    at_measure = Some((
                        Instant::now(),
                        procfs::sample_group(server_pids)?,
                        procfs::sample(me)?,
                    ));
                }
                if seq >= warm_n && (seq - warm_n) % per_window == 0 {
                    boundaries.push((Instant::now(), procfs::sample_group(server_pids)?));
                }
                let intended = start + Duration::from_secs_f64(seq as f64 / rate);
                let text = make_text(step, seq, self.recorder.nanos_at(intended));
                let (who, dest, deliveries) = route(self, seq);
                let id = self.next_request_id();
                if seq >= warm_n {
                    let late = Instant::now().saturating_duration_since(intended);
                    let mut s = self.recorder.state.lock().expect("recorder lock");
                    s.expected[(seq - warm_n) as usize] = deliveries;
                    s.reqs[(seq - warm_n) as usize] = id;
                    s.late.saturating_record((late.as_micros() as u64).max(1));
                    expected_total += deliveries as u64;
                }
                self.clients[who].send_text(self.kind.encode_send(&dest, id, &text));
                seq += 1;
            }
            if at_measure.is_some() && last_tick.elapsed() >= Duration::from_millis(10) {
                last_tick = Instant::now();
                tick(self);
            }
            // Wake for the next message, or for the tick.
            let tick_at = last_tick + Duration::from_millis(10);
            tokio::select! {
                _ = beats.recv() => {}
                _ = tokio::time::sleep_until(tick_at.into()) => {}
            }
        }
        // The last window ends when its last message's successor would have been due.
        tokio::time::sleep_until((start + Duration::from_secs_f64(total as f64 / rate)).into())
            .await;
        boundaries.push((Instant::now(), procfs::sample_group(server_pids)?));
        let (t0, server0, me0) = match at_measure {
            Some(m) => m,
            None => (
                Instant::now(),
                procfs::sample_group(server_pids)?,
                procfs::sample(me)?,
            ),
        };
        // Drain: wait for every expected delivery, giving up after 3 s of silence at most.
        let mut last_unique = 0;
        let mut last_change = Instant::now();
        loop {
            let unique = self.recorder.state.lock().expect("recorder lock").unique;
            if unique >= expected_total {
                break;
            }
            if unique != last_unique {
                last_unique = unique;
                last_change = Instant::now();
            } else if last_change.elapsed() > Duration::from_secs(3) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t1 = Instant::now();
        let server1 = procfs::sample_group(server_pids)?;
        let me1 = procfs::sample(me)?;
        let s = self.recorder.state.lock().expect("recorder lock");
        let wall = t1.duration_since(t0).as_secs_f64();
        let server_cpu = server1.cpu_secs - server0.cpu_secs;
        let cpu: Vec<(f64, f64)> = boundaries
            .iter()
            .map(|(t, sample)| (t.duration_since(t0).as_secs_f64(), sample.cpu_secs))
            .collect();
        let window_results = window_results(&s, &cpu);
        let messages = (0..s.expected.len())
            .map(|i| MessageTiming {
                window: s.window_of(i),
                req: s.reqs[i],
                intended_epoch_nanos: self.recorder.origin_epoch_nanos
                    + self.recorder.nanos_at(
                        start + Duration::from_secs_f64((warm_n + i as u64) as f64 / rate),
                    ),
                slowest_us: s.slowest[i],
            })
            .collect();
        let step = StepResult {
            rate,
            offered_deliveries: 0.0,
            measured_messages: total - warm_n,
            deliveries: s.unique,
            // Over the whole window including the drain: a server that falls behind shows
            // a lower rate than offered.
            deliveries_per_sec: s.unique as f64 / wall,
            lost: expected_total.saturating_sub(s.unique),
            duplicates: s.duplicates,
            p50_us: s.hist.value_at_quantile(0.50),
            p99_us: s.hist.value_at_quantile(0.99),
            max_us: s.hist.max(),
            pacer_late_p50_us: s.late.value_at_quantile(0.50),
            pacer_late_p99_us: s.late.value_at_quantile(0.99),
            first_p50_us: s.first.value_at_quantile(0.50),
            first_p99_us: s.first.value_at_quantile(0.99),
            server_cpu_secs: server_cpu,
            server_cpu_pct: 100.0 * server_cpu / wall,
            server_usr_pct: 100.0 * (server1.user_secs - server0.user_secs) / wall,
            server_sys_pct: 100.0 * (server1.sys_secs - server0.sys_secs) / wall,
            gen_cpu_pct: 100.0 * (me1.cpu_secs - me0.cpu_secs) / wall,
            deliveries_per_cpu_sec: if server_cpu > 0.0 {
                s.unique as f64 / server_cpu
            } else {
                0.0
            },
            server_rss_kib: server1.rss_kib,
            errors: self.recorder.errors.load(Ordering::Relaxed) - errors0,
            closed: self.recorder.closed.load(Ordering::Relaxed) - closed0,
        };
        Ok(WindowedRun {
            step,
            windows: window_results,
            messages,
        })
    }
}

/// A step measured in consecutive windows: its figures over all of them, each window's, and
/// each measured message's timing (for the server's latency trace).
pub struct WindowedRun {
    pub step: StepResult,
    pub windows: Vec<WindowResult>,
    pub messages: Vec<MessageTiming>,
}

/// The figures of one window: the deliveries of the messages due in it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WindowResult {
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub first_p99_us: u64,
    pub deliveries: u64,
    pub lost: u64,
    /// Server CPU from this window's first message to the next window's (the last window: to
    /// its end), in seconds and as % of one core over that time.
    pub server_cpu_secs: f64,
    pub server_cpu_pct: f64,
}

/// One measured message, as the trace analysis needs it.
pub struct MessageTiming {
    pub window: usize,
    /// Its request id on the wire.
    pub req: u64,
    /// When it was due, in nanoseconds since the Unix epoch.
    pub intended_epoch_nanos: u64,
    /// Its slowest delivery's latency, in microseconds.
    pub slowest_us: u64,
}

/// Each window's figures from the tallies and `cpu`: (seconds since the first window's start,
/// the server's CPU seconds) at every window's start and after the last one's end.
fn window_results(s: &StepState, cpu: &[(f64, f64)]) -> Vec<WindowResult> {
    let mut expected = vec![0u64; s.windows.len()];
    for (i, &e) in s.expected.iter().enumerate() {
        expected[s.window_of(i)] += e as u64;
    }
    s.windows
        .iter()
        .enumerate()
        .map(|(w, tally)| {
            let (cpu_secs, wall) = match (cpu.get(w), cpu.get(w + 1)) {
                (Some(&(t0, c0)), Some(&(t1, c1))) => (c1 - c0, t1 - t0),
                _ => (0.0, 0.0),
            };
            WindowResult {
                p50_us: tally.hist.value_at_quantile(0.50),
                p99_us: tally.hist.value_at_quantile(0.99),
                max_us: tally.hist.max(),
                first_p99_us: tally.first.value_at_quantile(0.99),
                deliveries: tally.unique,
                lost: expected[w].saturating_sub(tally.unique),
                server_cpu_secs: cpu_secs,
                server_cpu_pct: if wall > 0.0 {
                    100.0 * cpu_secs / wall
                } else {
                    0.0
                },
            }
        })
        .collect()
}

/// Beats at each message's due time (start + seq/rate, seq < total), from an OS thread: its
/// sleep is late by tens of µs, while tokio's timer rounds every deadline up to its 1 ms tick,
/// and however late the pacer sends a message counts in that message's latency. The thread
/// ends after the last beat, or as soon as the receiver is gone.
fn metronome(start: Instant, rate: f64, total: u64) -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for seq in 1..total {
            let due = start + Duration::from_secs_f64(seq as f64 / rate);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    rx
}

/// One client's socket, read and written by one task: the socket is not split, so a delivery
/// costs the generator no lock between a reader half and a writer half (the generator's own
/// cost per delivery is on the path of every latency it measures).
async fn client_loop(
    mut ws: Ws,
    mut outgoing: mpsc::UnboundedReceiver<Message>,
    rec: Arc<Recorder>,
    kind: Kind,
    paused: Arc<AtomicBool>,
) {
    loop {
        // A paused client keeps its socket open but never reads again: the server must cope.
        let reading = !paused.load(Ordering::Relaxed);
        let failed = tokio::select! {
            msg = ws.next(), if reading => match msg {
                Some(Ok(Message::Text(t))) => {
                    let t = t.as_str();
                    if kind.is_delivery(t) {
                        rec.on_delivery(t);
                        false
                    } else if kind == Kind::Sio && t == "2" {
                        // Engine.IO heartbeat: the server pings, the client answers.
                        ws.send(Message::text("3")).await.is_err()
                    } else {
                        if t.starts_with(r#"{"type":"error""#) {
                            rec.errors.fetch_add(1, Ordering::Relaxed);
                        } else {
                            rec.other_frames.fetch_add(1, Ordering::Relaxed);
                        }
                        false
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => true,
                Some(Ok(_)) => false,
            },
            msg = outgoing.recv() => match msg {
                Some(msg) => write_queued(&mut ws, msg, &mut outgoing).await.is_err(),
                // The swarm is gone.
                None => return,
            },
        };
        if failed {
            rec.closed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
}

/// Write `first` and everything already queued behind it, with one flush.
async fn write_queued(
    ws: &mut Ws,
    first: Message,
    outgoing: &mut mpsc::UnboundedReceiver<Message>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    ws.feed(first).await?;
    while let Ok(msg) = outgoing.try_recv() {
        ws.feed(msg).await?;
    }
    ws.flush().await
}

/// The figures of one measured step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepResult {
    /// Published messages per second.
    pub rate: f64,
    /// Deliveries per second the schedule asks for (rate x recipients).
    pub offered_deliveries: f64,
    pub measured_messages: u64,
    pub deliveries: u64,
    pub deliveries_per_sec: f64,
    pub lost: u64,
    pub duplicates: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// How late the pacer sent the measured messages (see `StepState::late`).
    pub pacer_late_p50_us: u64,
    pub pacer_late_p99_us: u64,
    /// Latency of each message's first delivery (see `StepState::first`).
    pub first_p50_us: u64,
    pub first_p99_us: u64,
    pub server_cpu_secs: f64,
    /// Of one core, over the measured window plus the drain.
    pub server_cpu_pct: f64,
    /// The user-space part of `server_cpu_pct` (utime).
    pub server_usr_pct: f64,
    /// The kernel part of `server_cpu_pct` (stime: syscalls, and here the loopback receiver's
    /// TCP softirq work too, since this kernel charges softirq time to the running process).
    pub server_sys_pct: f64,
    pub gen_cpu_pct: f64,
    pub deliveries_per_cpu_sec: f64,
    pub server_rss_kib: u64,
    pub errors: u64,
    pub closed: u64,
}

impl StepResult {
    /// Whether the server kept up: nothing lost, nothing refused, latency not running away.
    pub fn kept_up(&self) -> bool {
        self.lost == 0 && self.errors == 0 && self.closed == 0 && self.p99_us < 1_000_000
    }

    /// A clean step of 50 msgs/s to 1,000 clients, for the table tests to vary.
    #[cfg(test)]
    pub fn example() -> StepResult {
        StepResult {
            rate: 50.0,
            offered_deliveries: 50_000.0,
            measured_messages: 150,
            deliveries: 150_000,
            deliveries_per_sec: 50_000.0,
            lost: 0,
            duplicates: 0,
            p50_us: 1_000,
            p99_us: 5_000,
            max_us: 9_000,
            pacer_late_p50_us: 100,
            pacer_late_p99_us: 900,
            first_p50_us: 300,
            first_p99_us: 700,
            server_cpu_secs: 1.0,
            server_cpu_pct: 30.0,
            server_usr_pct: 10.0,
            server_sys_pct: 20.0,
            gen_cpu_pct: 30.0,
            deliveries_per_cpu_sec: 150_000.0,
            server_rss_kib: 10_240,
            errors: 0,
            closed: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_100_bytes_and_parse_back() {
        let t = make_text(3, 12_345, 987_654_321_000);
        assert_eq!(t.len(), TEXT_BYTES);
        assert_eq!(parse_mark(&t), Some((3, 12_345, 987_654_321_000)));
        // Inside a server's JSON envelope, after other fields.
        let framed = format!(r#"{{"type":"message","message":{{"sender":"u1","text":"{t}"}}}}"#);
        assert_eq!(parse_mark(&framed), Some((3, 12_345, 987_654_321_000)));
    }

    #[test]
    fn frames_without_a_valid_mark_are_ignored() {
        assert_eq!(parse_mark(r#"{"type":"presence"}"#), None);
        assert_eq!(parse_mark("@@1:2;"), None);
        assert_eq!(parse_mark("@@a:b:c;"), None);
        assert_eq!(parse_mark("@@1:2:3"), None);
    }

    #[tokio::test]
    async fn the_metronome_beats_once_per_message_after_the_first_never_early() {
        let start = Instant::now();
        let rate = 200.0;
        let mut beats = metronome(start, rate, 20);
        let mut n = 0u64;
        while beats.recv().await.is_some() {
            n += 1;
            let due = start + Duration::from_secs_f64(n as f64 / rate);
            assert!(Instant::now() >= due, "beat {n} came early");
        }
        // Message 0 goes at once; beats are for messages 1..20.
        assert_eq!(n, 19);
    }

    /// A recorder in `step`, measuring messages `measured`, each expecting `deliveries`.
    fn recorder(step: u32, measured: std::ops::Range<u64>, deliveries: u32) -> Recorder {
        windowed_recorder(
            step,
            measured.start,
            measured.end - measured.start,
            1,
            deliveries,
        )
    }

    /// A recorder in `step` after `warm` warm-up messages, measuring `windows` windows of
    /// `per_window` messages, each expecting `deliveries`.
    fn windowed_recorder(
        step: u32,
        warm: u64,
        per_window: u64,
        windows: usize,
        deliveries: u32,
    ) -> Recorder {
        let mut rec = Recorder::new();
        // Started a second ago, so a test can send messages that were due up to then.
        rec.origin -= Duration::from_secs(1);
        {
            let mut s = rec.state.lock().unwrap();
            s.reset(step, warm, per_window, windows);
            s.expected.fill(deliveries);
        }
        rec
    }

    /// A text of `step`'s message `seq` that was due `ago` before now.
    fn due_ago(rec: &Recorder, step: u32, seq: u64, ago: Duration) -> String {
        make_text(step, seq, rec.nanos_at(Instant::now() - ago))
    }

    #[test]
    fn each_delivery_counts_in_the_window_its_message_was_due_in() {
        // 5 warm-up messages, then 3 windows of 4 messages, 2 deliveries each.
        let rec = windowed_recorder(1, 5, 4, 3, 2);
        // Window 0 (seqs 5..9): everything arrives, fast.
        for seq in 5..9 {
            for _ in 0..2 {
                rec.on_delivery(&due_ago(&rec, 1, seq, Duration::from_millis(1)));
            }
        }
        // Window 1 (seqs 9..13): seq 12 loses one delivery; seq 10's second is 200 ms late.
        for seq in 9..13 {
            rec.on_delivery(&due_ago(&rec, 1, seq, Duration::from_millis(2)));
        }
        for seq in [9, 11] {
            rec.on_delivery(&due_ago(&rec, 1, seq, Duration::from_millis(2)));
        }
        rec.on_delivery(&due_ago(&rec, 1, 10, Duration::from_millis(200)));
        // Window 2 (seqs 13..17): nothing at all; a warm-up delivery is not counted anywhere.
        rec.on_delivery(&due_ago(&rec, 1, 4, Duration::from_millis(1)));
        let s = rec.state.lock().unwrap();
        // CPU read at each window's start and at the end: 1 s windows, 0.2/0.5/0.1 s of CPU.
        let cpu = [(0.0, 10.0), (1.0, 10.2), (2.0, 10.7), (3.0, 10.8)];
        let w = window_results(&s, &cpu);
        assert_eq!(w.len(), 3);
        assert_eq!(
            w.iter().map(|w| (w.deliveries, w.lost)).collect::<Vec<_>>(),
            [(8, 0), (7, 1), (0, 8)]
        );
        assert!(w[0].max_us < 100_000, "window 0 max {}", w[0].max_us);
        assert!(w[1].max_us >= 200_000, "window 1 max {}", w[1].max_us);
        // Window 1's first deliveries were all ~2 ms: the late one was a second delivery.
        assert!(w[1].first_p99_us < 100_000, "{}", w[1].first_p99_us);
        let pct: Vec<f64> = w
            .iter()
            .map(|w| (w.server_cpu_pct * 10.0).round())
            .collect();
        assert_eq!(pct, [200.0, 500.0, 100.0]);
        // Seq 10 (window 1's second message) keeps its slowest delivery.
        assert!(s.slowest[5] >= 200_000 && s.slowest[4] < 100_000);
    }

    #[test]
    fn recorder_counts_duplicates_and_ignores_other_steps() {
        let rec = recorder(2, 10..12, 1);
        rec.on_delivery(&make_text(2, 10, 0));
        rec.on_delivery(&make_text(2, 10, 0));
        rec.on_delivery(&make_text(1, 11, 0));
        rec.on_delivery(&make_text(2, 9, 0));
        let s = rec.state.lock().unwrap();
        assert_eq!((s.unique, s.duplicates), (1, 1));
    }

    #[test]
    fn first_delivery_records_each_message_once_with_its_earliest_latency() {
        let rec = recorder(1, 0..2, 3);
        // Sent "now": the first arrivals are within milliseconds of it.
        let sent = rec.nanos_at(Instant::now());
        for _ in 0..3 {
            rec.on_delivery(&make_text(1, 0, sent));
        }
        // Message 1 arrives 30 ms after it was sent; its first delivery is the slow one.
        std::thread::sleep(Duration::from_millis(30));
        rec.on_delivery(&make_text(1, 1, sent));
        let s = rec.state.lock().unwrap();
        assert_eq!((s.hist.len(), s.first.len()), (4, 2));
        assert!(s.first.min() < 30_000, "min {}", s.first.min());
        assert!(s.first.max() >= 30_000, "max {}", s.first.max());
    }
}
