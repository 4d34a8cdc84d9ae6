//! `natter-bench steady`, issue 15's measurement as one command: one room of N clients at a
//! steady publish rate, measured as consecutive windows for each server in the same run, every
//! window reported (stalls show), then per server the cost per delivery, the median and worst
//! window p99 and what was lost, and the verdicts computed from those figures. With
//! `--trace-latency`, Natter writes its latency trace and the windows with a high p99 are broken
//! down by stage (bench/src/trace.rs).

use crate::load::{MessageTiming, Swarm, WindowResult};
use crate::procfs;
use crate::scenarios::Env;
use crate::target::{self, Kind};
use crate::trace::{self, Trace};
use anyhow::{Context, Result};
use serde::Serialize;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// What to run.
pub struct Options {
    pub kinds: Vec<Kind>,
    pub clients: usize,
    pub rate: f64,
    pub window: Duration,
    pub windows: usize,
    /// Write Natter's latency trace and break the slow windows down by stage.
    pub trace: bool,
    /// A window is slow when its p99 exceeds this many times its server's median window p99.
    pub slow_factor: f64,
}

/// The limits (issue 15, part 1 and part 3).
pub const WORST_P99_LIMIT: f64 = 2.0;
pub const MEDIAN_P99_LIMIT: f64 = 1.2;
pub const COST_LIMIT: f64 = 0.95;

/// One server's run.
#[derive(Debug, Serialize)]
pub struct ServerRun {
    pub server: &'static str,
    pub connect_secs: f64,
    pub windows: Vec<WindowResult>,
    pub summary: Summary,
    /// Stage breakdowns of the slow windows (Natter with `--trace-latency`).
    pub slow_windows: Vec<SlowWindow>,
    /// Every stage's spread over the whole run (Natter with `--trace-latency`).
    pub stages: Option<StageSpread>,
}

/// A server's figures over all its windows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub deliveries: u64,
    /// Server CPU from the first window's start until the last delivery (the drain included:
    /// it is the last window's fan-out).
    pub server_cpu_secs: f64,
    pub deliveries_per_cpu_sec: f64,
    pub median_p99_us: f64,
    pub worst_p99_us: u64,
    pub lost: u64,
}

/// Where a slow window's slowest messages spent their time.
#[derive(Debug, Serialize)]
pub struct SlowWindow {
    pub window: usize,
    pub p99_us: u64,
    /// The slowest messages (by slowest delivery) looked at, and those the trace named.
    pub slow_messages: usize,
    pub traced: usize,
    /// Mean ms per stage (trace::STAGES) over the slow messages, and over all of the window's.
    pub slow_ms: Vec<f64>,
    pub all_ms: Vec<f64>,
    pub checkpoints: usize,
    pub longest_checkpoint_ms: f64,
}

/// One verdict of the issue.
#[derive(Debug, Serialize, PartialEq)]
pub struct Verdict {
    pub what: String,
    pub met: bool,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Steady {
    pub machine: String,
    pub load_before: String,
    pub load_after: String,
    pub clients: usize,
    pub rate: f64,
    pub window_secs: f64,
    pub servers: Vec<ServerRun>,
    pub verdicts: Vec<Verdict>,
    /// The floor synced each message to a journal before sending it (`--durable-floor`).
    pub durable_floor: bool,
}

/// The median of `values`: the middle one, or the mean of the two middle ones.
pub fn median(values: &[u64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2] as f64,
        n => (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0,
    }
}

/// A server's summary from its windows and the CPU it used over all of them.
pub fn summarize(windows: &[WindowResult], server_cpu_secs: f64) -> Summary {
    let deliveries = windows.iter().map(|w| w.deliveries).sum();
    let p99s: Vec<u64> = windows.iter().map(|w| w.p99_us).collect();
    Summary {
        deliveries,
        server_cpu_secs,
        deliveries_per_cpu_sec: if server_cpu_secs > 0.0 {
            deliveries as f64 / server_cpu_secs
        } else {
            0.0
        },
        median_p99_us: median(&p99s),
        worst_p99_us: p99s.iter().copied().max().unwrap_or(0),
        lost: windows.iter().map(|w| w.lost).sum(),
    }
}

/// The verdicts for Natter against the floor of the same run. The floor's p99 is its
/// median window's: the floor has stalls of its own when the host hiccups, and the worst
/// window of a reference that stores nothing would excuse a stall of Natter's that the
/// floor's typical p99 does not.
pub fn verdicts(natter: &Summary, floor: Option<&Summary>, all_lost: u64) -> Vec<Verdict> {
    let ms = |us: f64| us / 1e3;
    let mut v = Vec::new();
    if let Some(floor) = floor {
        let f = floor.median_p99_us;
        v.push(Verdict {
            what: format!(
                "worst natter window p99 {:.2} ms <= {WORST_P99_LIMIT}x the floor's median window \
                 p99 {:.2} ms = {:.2} ms",
                ms(natter.worst_p99_us as f64),
                ms(f),
                ms(WORST_P99_LIMIT * f)
            ),
            met: natter.worst_p99_us as f64 <= WORST_P99_LIMIT * f,
        });
        v.push(Verdict {
            what: format!(
                "median natter window p99 {:.2} ms <= {MEDIAN_P99_LIMIT}x the floor's {:.2} ms = \
                 {:.2} ms",
                ms(natter.median_p99_us),
                ms(f),
                ms(MEDIAN_P99_LIMIT * f)
            ),
            met: natter.median_p99_us <= MEDIAN_P99_LIMIT * f,
        });
        let ratio = if floor.deliveries_per_cpu_sec > 0.0 {
            natter.deliveries_per_cpu_sec / floor.deliveries_per_cpu_sec
        } else {
            0.0
        };
        v.push(Verdict {
            what: format!(
                "natter deliveries per server CPU-s {:.0} >= {COST_LIMIT}x the floor's {:.0} \
                 (ratio {ratio:.2})",
                natter.deliveries_per_cpu_sec, floor.deliveries_per_cpu_sec
            ),
            met: ratio >= COST_LIMIT,
        });
    }
    v.push(Verdict {
        what: format!("nothing lost (lost {all_lost} over every server's windows)"),
        met: all_lost == 0,
    });
    v
}

/// Run every server in turn, each on a fresh server.
pub async fn run(env: &Env, opts: &Options) -> Result<Steady> {
    let load_before = procfs::loadavg();
    let mut servers = Vec::new();
    for &kind in &opts.kinds {
        servers.push(run_one(env, kind, opts).await?);
    }
    let summary = |k: Kind| {
        servers
            .iter()
            .find(|s| s.server == k.name())
            .map(|s| &s.summary)
    };
    let all_lost = servers.iter().map(|s| s.summary.lost).sum();
    let verdicts = match summary(Kind::Natter) {
        Some(natter) => verdicts(natter, summary(Kind::Floor), all_lost),
        None => Vec::new(),
    };
    Ok(Steady {
        machine: crate::report::machine(),
        load_before,
        load_after: procfs::loadavg(),
        clients: opts.clients,
        rate: opts.rate,
        window_secs: opts.window.as_secs_f64(),
        servers,
        verdicts,
        durable_floor: env.launch.durable_floor,
    })
}

async fn run_one(env: &Env, kind: Kind, opts: &Options) -> Result<ServerRun> {
    let trace_dir = tempfile::tempdir()?;
    let trace_path = trace_dir.path().join("latency.trace");
    let tracing = opts.trace && kind == Kind::Natter;
    let server = if tracing {
        let template = env.natter_template.as_ref().map(|d| d.path());
        let traced = [("NATTER_TRACE_LATENCY", trace_path.display().to_string())];
        let server = target::start_natter_with(&env.launch, template, &traced).await?;
        server.pin(&env.launch.server_cpus).await?;
        server
    } else {
        env.start(kind).await?
    };
    let t = Instant::now();
    let mut swarm = Swarm::new(kind);
    let tokens: &[String] = if kind == Kind::Natter {
        &env.tokens
    } else {
        &[]
    };
    swarm
        .connect(server.addr, tokens, opts.clients)
        .await
        .with_context(|| format!("{}: connecting {} clients", kind.name(), opts.clients))?;
    swarm
        .settle(Duration::from_millis(500), Duration::from_secs(60))
        .await;
    let connect_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "  {:9} {} clients connected in {connect_secs:.1} s; {} windows of {:.0} s at {}/s, load {}",
        kind.name(),
        opts.clients,
        opts.windows,
        opts.window.as_secs_f64(),
        opts.rate,
        procfs::loadavg()
    );
    let run = swarm
        .fanout_windows(
            &[server.pid],
            opts.rate,
            env.warmup,
            opts.window,
            opts.windows,
        )
        .await?;
    for (i, w) in run.windows.iter().enumerate() {
        eprintln!("  {:9} {}", kind.name(), window_row(i, w));
    }
    let summary = summarize(&run.windows, run.step.server_cpu_secs);
    let (slow_windows, stages) = if tracing {
        // The trace thread writes every 100 ms.
        tokio::time::sleep(natter::server::latency_trace::FLUSH_EVERY * 3).await;
        let trace = Trace::read(&trace_path)?;
        let slow = slow_windows(
            &trace,
            &run.windows,
            &run.messages,
            &summary,
            opts.slow_factor,
        );
        (slow, Some(stage_spread(&trace, &run.messages)))
    } else {
        (Vec::new(), None)
    };
    drop(swarm);
    server.stop().await;
    Ok(ServerRun {
        server: kind.name(),
        connect_secs,
        windows: run.windows,
        summary,
        slow_windows,
        stages,
    })
}

/// Each stage's spread over every traced message of the run, and the checkpoints.
#[derive(Debug, Serialize)]
pub struct StageSpread {
    pub traced: usize,
    /// Per stage (trace::STAGES): p50, p99 and max in ms.
    pub p50_ms: Vec<f64>,
    pub p99_ms: Vec<f64>,
    pub max_ms: Vec<f64>,
    /// Checkpoints in the run, their p50 and longest duration in ms, and the messages whose
    /// commit held one.
    pub checkpoints: usize,
    pub checkpoint_p50_ms: f64,
    pub checkpoint_max_ms: f64,
    pub messages_with_checkpoint: usize,
}

/// The value at quantile `q` of sorted `v` (nearest rank), in ms from ns.
fn quantile_ms(v: &[u64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1] as f64 / 1e6
}

fn stage_spread(trace: &Trace, messages: &[MessageTiming]) -> StageSpread {
    let all: Vec<trace::Stages> = messages.iter().filter_map(|m| trace.stages(m)).collect();
    let per_stage: Vec<Vec<u64>> = (0..trace::STAGES.len())
        .map(|i| {
            let mut v: Vec<u64> = all.iter().map(|s| s[i]).collect();
            v.sort_unstable();
            v
        })
        .collect();
    let checkpoint_stage = trace::STAGES
        .iter()
        .position(|&s| s == "checkpoint")
        .unwrap_or(0);
    let mut durations: Vec<u64> = trace
        .checkpoints
        .iter()
        .map(|k| k.end.saturating_sub(k.begin))
        .collect();
    durations.sort_unstable();
    let messages_with_checkpoint = all.iter().filter(|s| s[checkpoint_stage] > 0).count();
    let spread = |q: f64| per_stage.iter().map(|v| quantile_ms(v, q)).collect();
    StageSpread {
        traced: all.len(),
        p50_ms: spread(0.5),
        p99_ms: spread(0.99),
        max_ms: spread(1.0),
        checkpoints: durations.len(),
        checkpoint_p50_ms: quantile_ms(&durations, 0.5),
        checkpoint_max_ms: quantile_ms(&durations, 1.0),
        messages_with_checkpoint,
    }
}

/// The share of a window's messages, slowest first, whose stages a slow window reports.
const SLOW_SHARE: f64 = 0.05;

/// The windows whose p99 is over `factor` x the median window's (and always the worst one),
/// each with where its slowest messages spent their time.
fn slow_windows(
    trace: &Trace,
    windows: &[WindowResult],
    messages: &[MessageTiming],
    summary: &Summary,
    factor: f64,
) -> Vec<SlowWindow> {
    let worst = windows
        .iter()
        .enumerate()
        .max_by_key(|(_, w)| w.p99_us)
        .map(|(i, _)| i);
    windows
        .iter()
        .enumerate()
        .filter(|&(i, w)| Some(i) == worst || w.p99_us as f64 > factor * summary.median_p99_us)
        .map(|(i, w)| {
            let mut mine: Vec<&MessageTiming> = messages.iter().filter(|m| m.window == i).collect();
            mine.sort_by_key(|m| std::cmp::Reverse(m.slowest_us));
            let n = ((mine.len() as f64 * SLOW_SHARE).ceil() as usize).clamp(1, mine.len().max(1));
            let all: Vec<trace::Stages> = mine.iter().filter_map(|m| trace.stages(m)).collect();
            let slow: Vec<trace::Stages> = mine
                .iter()
                .take(n)
                .filter_map(|m| trace.stages(m))
                .collect();
            // From the window's first due message until its last message's slowest delivery.
            let from = mine
                .iter()
                .map(|m| m.intended_epoch_nanos)
                .min()
                .unwrap_or(0);
            let to = mine
                .iter()
                .map(|m| m.intended_epoch_nanos + m.slowest_us * 1_000)
                .max()
                .unwrap_or(0);
            let checkpoints: Vec<_> = trace.checkpoints_in(from, to).collect();
            SlowWindow {
                window: i,
                p99_us: w.p99_us,
                slow_messages: n.min(mine.len()),
                traced: slow.len(),
                slow_ms: trace::mean_ms(&slow).to_vec(),
                all_ms: trace::mean_ms(&all).to_vec(),
                checkpoints: checkpoints.len(),
                longest_checkpoint_ms: checkpoints
                    .iter()
                    .map(|k| (k.end - k.begin) as f64 / 1e6)
                    .fold(0.0, f64::max),
            }
        })
        .collect()
}

fn window_row(i: usize, w: &WindowResult) -> String {
    format!(
        "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1} |",
        i + 1,
        w.p50_us as f64 / 1e3,
        w.p99_us as f64 / 1e3,
        w.max_us as f64 / 1e3,
        w.first_p99_us as f64 / 1e3,
        w.deliveries,
        w.lost,
        w.server_cpu_pct
    )
}

/// The run as markdown tables.
pub fn render(s: &Steady) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Steady windows (issue 15)\n");
    let _ = writeln!(
        out,
        "{} clients in one room, {} msgs/s ({:.0} deliveries/s offered), 100-byte messages, \
         open loop; {} consecutive {:.0} s windows per server.\nMachine: {}\nLoad: {} -> {}\n",
        s.clients,
        s.rate,
        s.rate * s.clients as f64,
        s.servers.first().map_or(0, |r| r.windows.len()),
        s.window_secs,
        s.machine,
        s.load_before,
        s.load_after
    );
    if s.durable_floor {
        let _ = writeln!(
            out,
            "**The floor is durable in this run** (`--durable-floor`): it appends each message to \
             a file and syncs it before sending it, as Natter commits before it delivers; the \
             verdicts compare with that floor, not the issue's floor that stores nothing.\n"
        );
    }
    for r in &s.servers {
        let _ = writeln!(
            out,
            "### {} (connected in {:.1} s)\n\n| window | p50 ms | p99 ms | max ms | first-delivery \
             p99 ms | deliveries | lost | server CPU % |\n|---|---|---|---|---|---|---|---|",
            r.server, r.connect_secs
        );
        for (i, w) in r.windows.iter().enumerate() {
            let _ = writeln!(out, "{}", window_row(i, w));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "### Per server, over all windows\n\n| server | deliveries | server CPU s | deliveries \
         per CPU-s | median window p99 ms | worst window p99 ms | lost |\n|---|---|---|---|---|---|---|"
    );
    for r in &s.servers {
        let m = &r.summary;
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {} |",
            r.server,
            m.deliveries,
            m.server_cpu_secs,
            m.deliveries_per_cpu_sec,
            m.median_p99_us / 1e3,
            m.worst_p99_us as f64 / 1e3,
            m.lost
        );
    }
    for r in &s.servers {
        let Some(spread) = &r.stages else {
            continue;
        };
        let _ = writeln!(
            out,
            "\n### {}: each stage over the whole run ({} messages traced; ms)\n\n| stage | p50 | \
             p99 | max |\n|---|---|---|---|",
            r.server, spread.traced
        );
        for (i, stage) in trace::STAGES.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {stage} | {:.2} | {:.2} | {:.2} |",
                spread.p50_ms[i], spread.p99_ms[i], spread.max_ms[i]
            );
        }
        let _ = writeln!(
            out,
            "\nWAL checkpoints: {} (p50 {:.2} ms, longest {:.2} ms); messages whose commit held \
             one: {}",
            spread.checkpoints,
            spread.checkpoint_p50_ms,
            spread.checkpoint_max_ms,
            spread.messages_with_checkpoint
        );
    }
    for r in &s.servers {
        if r.slow_windows.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n### {}: where the slowest {:.0}% of each slow window's messages spent their time \
             (latency trace; mean ms per stage)\n\n{}\n",
            r.server,
            SLOW_SHARE * 100.0,
            trace::LEGEND
        );
        for w in &r.slow_windows {
            let slow: [f64; trace::STAGES.len()] =
                std::array::from_fn(|i| w.slow_ms.get(i).copied().unwrap_or(0.0));
            let all: [f64; trace::STAGES.len()] =
                std::array::from_fn(|i| w.all_ms.get(i).copied().unwrap_or(0.0));
            let (stage, ms) = trace::largest(&slow);
            let _ = writeln!(
                out,
                "- window {} (p99 {:.2} ms): mostly **{stage}** ({ms:.2} ms); {} slowest messages \
                 ({} traced): {}; the window's average message: {}; checkpoints begun in it: {} \
                 (longest {:.2} ms)",
                w.window + 1,
                w.p99_us as f64 / 1e3,
                w.slow_messages,
                w.traced,
                trace::render_means(&slow),
                trace::render_means(&all),
                w.checkpoints,
                w.longest_checkpoint_ms
            );
        }
    }
    if !s.verdicts.is_empty() {
        let _ = writeln!(out, "\n### Verdicts (issue 15)\n");
        for v in &s.verdicts {
            let _ = writeln!(
                out,
                "- {}: {}",
                if v.met { "met" } else { "NOT met" },
                v.what
            );
        }
        if !s.servers.iter().any(|r| r.server == Kind::Floor.name()) {
            let _ = writeln!(
                out,
                "- (no floor in this run: the p99 and cost verdicts need `--servers natter,floor`)"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(p99_ms: u64, deliveries: u64, lost: u64) -> WindowResult {
        WindowResult {
            p50_us: 1_000,
            p99_us: p99_ms * 1_000,
            max_us: p99_ms * 2_000,
            first_p99_us: 500,
            deliveries,
            lost,
            server_cpu_secs: 3.0,
            server_cpu_pct: 30.0,
        }
    }

    #[test]
    fn a_stage_quantile_is_the_nearest_rank_in_ms() {
        let ns: Vec<u64> = (1..=200).map(|i| i * 1_000_000).collect();
        assert_eq!(quantile_ms(&ns, 0.5), 100.0);
        assert_eq!(quantile_ms(&ns, 0.99), 198.0);
        assert_eq!(quantile_ms(&ns, 1.0), 200.0);
        assert_eq!(quantile_ms(&[], 0.99), 0.0);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[9, 1, 5]), 5.0);
        assert_eq!(median(&[8, 2, 6, 4]), 5.0);
        assert_eq!(median(&[7]), 7.0);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn a_summary_adds_the_windows_and_takes_their_median_and_worst_p99() {
        let w = [
            window(10, 500_000, 0),
            window(250, 499_000, 1_000),
            window(12, 500_000, 0),
        ];
        let s = summarize(&w, 50.0);
        assert_eq!(s.deliveries, 1_499_000);
        assert_eq!(s.deliveries_per_cpu_sec, 29_980.0);
        assert_eq!(s.median_p99_us, 12_000.0);
        assert_eq!(s.worst_p99_us, 250_000);
        assert_eq!(s.lost, 1_000);
        // No CPU measured: no cost per delivery rather than infinity.
        assert_eq!(summarize(&w, 0.0).deliveries_per_cpu_sec, 0.0);
    }

    fn summary(median_ms: f64, worst_ms: u64, per_cpu_s: f64) -> Summary {
        Summary {
            deliveries: 1_000_000,
            server_cpu_secs: 1_000_000.0 / per_cpu_s,
            deliveries_per_cpu_sec: per_cpu_s,
            median_p99_us: median_ms * 1e3,
            worst_p99_us: worst_ms * 1_000,
            lost: 0,
        }
    }

    fn met(v: &[Verdict]) -> Vec<bool> {
        v.iter().map(|v| v.met).collect()
    }

    #[test]
    fn verdicts_compare_natter_with_the_floors_median_window() {
        let floor = summary(8.0, 40, 100_000.0);
        // At the limits exactly (16 ms worst = 2 x 8, 9.6 median = 1.2 x 8, 95,000 = 0.95 x),
        // then just past each limit in turn, then one lost delivery.
        let cases = [
            (summary(9.6, 16, 95_000.0), 0, [true, true, true, true]),
            (summary(9.6, 17, 95_000.0), 0, [false, true, true, true]),
            (summary(9.7, 16, 95_000.0), 0, [true, false, true, true]),
            (summary(9.6, 16, 94_900.0), 0, [true, true, false, true]),
            (summary(9.6, 16, 95_000.0), 1, [true, true, true, false]),
        ];
        for (natter, lost, expected) in cases {
            assert_eq!(
                met(&verdicts(&natter, Some(&floor), lost)),
                expected,
                "{natter:?}, lost {lost}"
            );
        }
        let natter = summary(9.6, 16, 95_000.0);
        // The floor's worst window (40 ms) is not what natter's worst is held to.
        let stalled = summary(9.0, 39, 99_000.0);
        assert!(!verdicts(&stalled, Some(&floor), 0)[0].met);
        // Without a floor only the losses can be judged.
        assert_eq!(met(&verdicts(&natter, None, 0)), [true]);
    }
}
