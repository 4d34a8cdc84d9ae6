//! Comparing builds of Natter in one run (issue 14: the previous main against the redesigned
//! core). This module owns naming the builds (`LABEL=PATH`), the interleaved server run
//! (`natter-bench compare`: every scenario for every build, round by round, with the order
//! reversed each round so drift on the host hits every build alike), and the table that
//! compares each build's medians with the first build's, with the 10% rule of issue 14.
//! `natter-bench footprint` uses the same naming and the same table for desktop app builds.

use crate::report;
use crate::scenarios::{self, Env, FanoutRow, IdleResult, RealisticResult};
use crate::store::median_max;
use crate::target::{Kind, Launch};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How far a build may fall behind the baseline on any measure and still pass (issue 14:
/// "within 10% of the old on each").
pub const TOLERANCE: f64 = 0.10;

/// A build under comparison: `old=/path/to/natter-server`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Named {
    pub label: String,
    pub path: PathBuf,
}

/// Labels are short words so they fit a table header and a shell argument unquoted.
fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 32
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `LABEL=PATH`, for `--server` (clap value parser).
pub fn parse_named(s: &str) -> Result<Named, String> {
    let Some((label, path)) = s.split_once('=') else {
        return Err(format!(
            "expected LABEL=PATH (e.g. old=/work/bench-bins/old/natter-server), got {s:?}"
        ));
    };
    if !valid_label(label) {
        return Err(format!(
            "label {label:?} must be 1-32 letters, digits, '-', '_' or '.'"
        ));
    }
    if path.is_empty() {
        return Err(format!("no path after {label}="));
    }
    Ok(Named {
        label: label.into(),
        path: path.into(),
    })
}

/// The label of an app given as a bare path (the single-app footprint run).
pub const DEFAULT_APP_LABEL: &str = "natter-desktop";

/// `LABEL=PATH`, or a bare `PATH` labelled `natter-desktop`, for `footprint --app`. A path
/// that merely contains '=' (`/tmp/a=b/app`) is a bare path: its prefix is no valid label.
pub fn parse_app(s: &str) -> Result<Named, String> {
    match s.split_once('=') {
        Some((label, _)) if valid_label(label) => parse_named(s),
        _ if s.is_empty() => Err("empty app path".into()),
        _ => Ok(Named {
            label: DEFAULT_APP_LABEL.into(),
            path: s.into(),
        }),
    }
}

/// Builds must have distinct labels (each is a column of the table).
pub fn check_labels(builds: &[Named], what: &str) -> Result<()> {
    for (i, b) in builds.iter().enumerate() {
        if builds[..i].iter().any(|o| o.label == b.label) {
            bail!(
                "two {what}s are labelled {:?}: name each one LABEL=PATH with its own label",
                b.label
            );
        }
    }
    Ok(())
}

/// The order the builds run in during round `round`: as given in even rounds, reversed in odd
/// ones (A B, B A, A B ...), so a host that slows down or speeds up during the run does not
/// always favour the same build.
pub fn round_order(builds: usize, round: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..builds).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// Which way a measure improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Better {
    Higher,
    Lower,
}

/// One row of the comparison: a figure of every build, one sample per round (or per cold
/// start); the table shows each build's median.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    pub name: String,
    pub better: Better,
    /// Decimals shown.
    pub decimals: usize,
    /// `samples[build][round]`; NaN where a round gave no figure (JSON: null), so the rounds
    /// stay aligned.
    pub samples: Vec<Vec<f64>>,
}

impl Measure {
    /// The median of a build's samples that were measured.
    pub fn median(&self, build: usize) -> Option<f64> {
        let s: Vec<f64> = self
            .samples
            .get(build)?
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        (!s.is_empty()).then(|| median_max(s).0)
    }
}

/// A build's median against the baseline's, as the table says it.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Within the tolerance, no better than it.
    Within,
    /// Better than the baseline by more than the tolerance (fraction).
    Better(f64),
    /// Worse than the baseline by more than the tolerance (fraction).
    Worse(f64),
    /// No ratio: a figure is missing or zero.
    Unknown,
}

impl Verdict {
    pub fn of(base: f64, x: f64, better: Better) -> Verdict {
        if !(base.is_finite() && x.is_finite() && base > 0.0 && x > 0.0) {
            return Verdict::Unknown;
        }
        // Positive = improvement, as a fraction of the baseline.
        let gain = match better {
            Better::Higher => x / base - 1.0,
            Better::Lower => 1.0 - x / base,
        };
        // The epsilon keeps a figure exactly 10% off on the passing side despite rounding.
        if gain < -TOLERANCE - 1e-9 {
            Verdict::Worse(-gain)
        } else if gain > TOLERANCE + 1e-9 {
            Verdict::Better(gain)
        } else {
            Verdict::Within
        }
    }

    pub fn passes(&self) -> bool {
        matches!(self, Verdict::Within | Verdict::Better(_))
    }

    fn cell(&self) -> String {
        match self {
            Verdict::Within => "yes".into(),
            Verdict::Better(g) => format!("yes ({:.1}% better)", g * 100.0),
            Verdict::Worse(g) => format!("**NO** ({:.1}% worse)", g * 100.0),
            Verdict::Unknown => "n/a".into(),
        }
    }
}

fn fmt_value(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "-".into(),
    }
}

/// The comparison table (Markdown): each build's median, then for every build after the first
/// its ratio to the first and whether it is within the tolerance of it.
pub fn render_table(labels: &[String], measures: &[Measure]) -> String {
    let mut o = String::new();
    let Some(base) = labels.first() else {
        return o;
    };
    let pct = TOLERANCE * 100.0;
    let mut head = String::from("| measure | better |");
    let mut rule = String::from("|---|---|");
    for l in labels {
        let _ = write!(head, " {l} |");
        rule.push_str("---|");
    }
    for l in &labels[1..] {
        let _ = write!(head, " {l} / {base} | {l} within {pct:.0}% of {base} |");
        rule.push_str("---|---|");
    }
    let _ = writeln!(o, "{head}\n{rule}");
    for m in measures {
        let better = match m.better {
            Better::Higher => "higher",
            Better::Lower => "lower",
        };
        let _ = write!(o, "| {} | {better} |", m.name);
        for b in 0..labels.len() {
            let _ = write!(o, " {} |", fmt_value(m.median(b), m.decimals));
        }
        let base_median = m.median(0);
        for b in 1..labels.len() {
            let (ratio, verdict) = match (base_median, m.median(b)) {
                (Some(base), Some(x)) if base > 0.0 && x > 0.0 => {
                    (format!("{:.2}x", x / base), Verdict::of(base, x, m.better))
                }
                _ => ("-".into(), Verdict::Unknown),
            };
            let _ = write!(o, " {ratio} | {} |", verdict.cell());
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o);
    for (b, label) in labels.iter().enumerate().skip(1) {
        let failing: Vec<&str> = measures
            .iter()
            .filter(|m| match (m.median(0), m.median(b)) {
                (Some(base), Some(x)) => !Verdict::of(base, x, m.better).passes(),
                _ => true,
            })
            .map(|m| m.name.as_str())
            .collect();
        let _ = if failing.is_empty() {
            writeln!(o, "{label}: within {pct:.0}% of {base} on every measure.")
        } else {
            writeln!(
                o,
                "{label}: **not** within {pct:.0}% of {base} (or not measured) on: {}.",
                failing.join("; ")
            )
        };
    }
    o
}

/// Every sample behind the medians, in run order, so the noise can be judged.
pub fn render_samples(labels: &[String], measures: &[Measure]) -> String {
    let mut o = String::new();
    let width = measures
        .iter()
        .flat_map(|m| m.samples.iter().map(Vec::len))
        .max()
        .unwrap_or(0);
    let mut head = String::from("| measure | build |");
    let mut rule = String::from("|---|---|");
    for i in 1..=width {
        let _ = write!(head, " {i} |");
        rule.push_str("---|");
    }
    let _ = writeln!(o, "{head}\n{rule}");
    for m in measures {
        for (b, label) in labels.iter().enumerate() {
            let s = m.samples.get(b).map(Vec::as_slice).unwrap_or_default();
            let _ = write!(o, "| {} | {label} |", m.name);
            for i in 0..width {
                let _ = write!(o, " {} |", fmt_value(s.get(i).copied(), m.decimals));
            }
            let _ = writeln!(o);
        }
    }
    o
}

/// What `natter-bench compare` runs.
pub struct ServerOptions {
    pub servers: Vec<Named>,
    pub rounds: usize,
    /// N of the fan-out scenario.
    pub clients: usize,
    /// Publish rates of the fan-out scenario, messages/s (every one runs, saturated or not).
    pub rates: Vec<f64>,
    /// Idle connections to open.
    pub idle: usize,
    /// Natter users to register in each build's template (at least `clients` and what the
    /// realistic scenario needs).
    pub users: usize,
    pub server_cpus: String,
    pub warmup: Duration,
    pub measure: Duration,
}

/// One build's figures in one round.
#[derive(Debug, Clone, Serialize)]
pub struct ServerRound {
    pub label: String,
    pub round: usize,
    pub fanout: Vec<FanoutRow>,
    pub realistic: RealisticResult,
    pub idle: IdleResult,
}

/// Everything `natter-bench compare` measured, as written to `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerComparison {
    pub machine: String,
    pub load_before: String,
    pub load_after: String,
    pub elapsed_secs: f64,
    pub servers: Vec<Named>,
    pub clients: usize,
    pub rates: Vec<f64>,
    pub idle_connections: usize,
    pub tolerance: f64,
    /// In the order they ran.
    pub rounds: Vec<ServerRound>,
    pub measures: Vec<Measure>,
}

/// A build's figures of one round, filled scenario by scenario.
#[derive(Default)]
struct Slot {
    fanout: Vec<FanoutRow>,
    realistic: Option<RealisticResult>,
    idle: Option<IdleResult>,
}

/// Run the issue-14 comparison: per round, the fan-out steps for every build, then the
/// realistic scenario for every build, then idle connections for every build.
pub async fn run_servers(opts: &ServerOptions) -> Result<ServerComparison> {
    check_labels(&opts.servers, "server")?;
    if opts.servers.len() < 2 {
        bail!("compare needs at least two --server LABEL=PATH");
    }
    anyhow::ensure!(opts.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(
        !opts.rates.is_empty() && opts.rates.iter().all(|r| r.is_finite() && *r > 0.0),
        "--rates must be positive messages/s"
    );
    for s in &opts.servers {
        if !s.path.is_file() {
            bail!("{}: {} not found", s.label, s.path.display());
        }
    }
    let started = Instant::now();
    let machine = report::machine();
    let load_before = crate::procfs::loadavg();
    // Each build registers its own users: a data directory made by one build may carry a
    // schema the other does not know, and migrating it would be work the other never does.
    let mut envs = Vec::new();
    for s in &opts.servers {
        let launch = Launch {
            natter_server: s.path.clone(),
            peers_dir: PathBuf::new(),
            server_cpus: opts.server_cpus.clone(),
            durable_floor: false,
        };
        let mut env = Env::new(launch, opts.warmup, opts.measure);
        eprintln!("== {}: registering users ({})", s.label, s.path.display());
        env.prepare_natter(opts.users)
            .await
            .with_context(|| format!("{}: registering users", s.label))?;
        envs.push(env);
    }
    let plan = [(opts.clients, opts.rates.clone())];
    let mut rounds: Vec<Vec<Slot>> = (0..opts.rounds)
        .map(|_| opts.servers.iter().map(|_| Slot::default()).collect())
        .collect();
    for (round, slots) in rounds.iter_mut().enumerate() {
        let order = round_order(opts.servers.len(), round);
        let names: Vec<&str> = order
            .iter()
            .map(|&b| opts.servers[b].label.as_str())
            .collect();
        eprintln!(
            "== round {} of {} ({}), load {}",
            round + 1,
            opts.rounds,
            names.join(", "),
            crate::procfs::loadavg()
        );
        for &b in &order {
            let label = &opts.servers[b].label;
            eprintln!("  {label}: fan-out, N={}", opts.clients);
            // Every rate runs, saturated or not: each is a row of the comparison.
            slots[b].fanout = scenarios::fanout(&envs[b], Kind::Natter, &plan, Some(opts.clients))
                .await
                .with_context(|| format!("{label}: fan-out"))?;
        }
        for &b in &order {
            let label = &opts.servers[b].label;
            eprintln!("  {label}: realistic");
            slots[b].realistic = Some(
                scenarios::realistic(
                    &envs[b],
                    Kind::Natter,
                    scenarios::REALISTIC_ROOMS,
                    scenarios::REALISTIC_RATE,
                )
                .await
                .with_context(|| format!("{label}: realistic"))?,
            );
        }
        for &b in &order {
            let label = &opts.servers[b].label;
            eprintln!("  {label}: {} idle connections", opts.idle);
            slots[b].idle = Some(
                scenarios::idle(&envs[b], Kind::Natter, opts.idle)
                    .await
                    .with_context(|| format!("{label}: idle connections"))?,
            );
        }
    }
    let done = in_run_order(&opts.servers, rounds)?;
    let measures = server_measures(&opts.servers, &done, opts.clients, &opts.rates);
    Ok(ServerComparison {
        machine,
        load_before,
        load_after: crate::procfs::loadavg(),
        elapsed_secs: started.elapsed().as_secs_f64(),
        servers: opts.servers.clone(),
        clients: opts.clients,
        rates: opts.rates.clone(),
        idle_connections: opts.idle,
        tolerance: TOLERANCE,
        rounds: done,
        measures,
    })
}

/// The rounds' figures in the order they ran (`slots[round][build]`), each one complete.
fn in_run_order(servers: &[Named], rounds: Vec<Vec<Slot>>) -> Result<Vec<ServerRound>> {
    let mut done = Vec::new();
    for (round, slots) in rounds.into_iter().enumerate() {
        let mut slots: Vec<Option<Slot>> = slots.into_iter().map(Some).collect();
        for b in round_order(servers.len(), round) {
            let Some(Slot {
                fanout,
                realistic: Some(realistic),
                idle: Some(idle),
            }) = slots.get_mut(b).and_then(Option::take)
            else {
                bail!("round {} of {} is incomplete", round + 1, servers[b].label);
            };
            done.push(ServerRound {
                label: servers[b].label.clone(),
                round,
                fanout,
                realistic,
                idle,
            });
        }
    }
    Ok(done)
}

/// The measures of issue 14 from the rounds: for each fan-out rate the deliveries per server
/// CPU-second and the p99, the realistic scenario's p99, and server RSS per idle connection.
pub fn server_measures(
    servers: &[Named],
    rounds: &[ServerRound],
    clients: usize,
    rates: &[f64],
) -> Vec<Measure> {
    let collect = |f: &dyn Fn(&ServerRound) -> Option<f64>| -> Vec<Vec<f64>> {
        servers
            .iter()
            .map(|s| {
                rounds
                    .iter()
                    .filter(|r| r.label == s.label)
                    .map(|r| f(r).unwrap_or(f64::NAN))
                    .collect()
            })
            .collect()
    };
    let step = |r: &ServerRound, rate: f64| {
        r.fanout
            .iter()
            .find(|row| row.clients == clients && row.step.rate == rate)
            .map(|row| row.step.clone())
    };
    let mut out = Vec::new();
    for &rate in rates {
        out.push(Measure {
            name: format!("deliveries per server CPU-s, N={clients}, {rate} msgs/s"),
            better: Better::Higher,
            decimals: 0,
            // A step in which the server's CPU time did not advance a clock tick has no
            // figure (short validation runs), rather than 0 deliveries per CPU-second.
            samples: collect(&|r| {
                step(r, rate)
                    .filter(|s| s.server_cpu_secs > 0.0)
                    .map(|s| s.deliveries_per_cpu_sec)
            }),
        });
    }
    for &rate in rates {
        out.push(Measure {
            name: format!(
                "p99 ms, N={clients}, {rate} msgs/s ({:.0} deliveries/s offered)",
                rate * clients as f64
            ),
            better: Better::Lower,
            decimals: 2,
            samples: collect(&|r| step(r, rate).map(|s| s.p99_us as f64 / 1e3)),
        });
    }
    out.push(Measure {
        name: format!(
            "realistic p99 ms ({} rooms of 10, {} msgs/s)",
            scenarios::REALISTIC_ROOMS,
            scenarios::REALISTIC_RATE
        ),
        better: Better::Lower,
        decimals: 2,
        samples: collect(&|r| Some(r.realistic.step.p99_us as f64 / 1e3)),
    });
    out.push(Measure {
        name: "idle: server RSS per connection, bytes".into(),
        better: Better::Lower,
        decimals: 0,
        samples: collect(&|r| Some(r.idle.rss_per_conn_bytes)),
    });
    out.push(Measure {
        name: "idle: server CPU per connection, us/s".into(),
        better: Better::Lower,
        decimals: 2,
        samples: collect(&|r| Some(r.idle.idle_cpu_us_per_conn_s)),
    });
    out
}

/// What went wrong in a build's measured steps, summed over its rounds: a build that lost
/// messages or had sockets closed is not comparable on latency, whatever its p99 says.
fn trouble(c: &ServerComparison, label: &str) -> (u64, u64, u64) {
    let mut t = (0, 0, 0);
    for r in c.rounds.iter().filter(|r| r.label == label) {
        for s in r.fanout.iter().map(|f| &f.step).chain([&r.realistic.step]) {
            t.0 += s.lost;
            t.1 += s.errors;
            t.2 += s.closed;
        }
        t.2 += r.idle.closed;
    }
    t
}

pub fn render_servers(c: &ServerComparison) -> String {
    let labels: Vec<String> = c.servers.iter().map(|s| s.label.clone()).collect();
    let rounds = c.rounds.len() / c.servers.len().max(1);
    let mut o = String::new();
    let _ = writeln!(o, "\n# natter-bench compare\n");
    let _ = writeln!(
        o,
        "machine: {}; load average before {} / after {}; {:.0} s\n",
        c.machine, c.load_before, c.load_after, c.elapsed_secs
    );
    for s in &c.servers {
        let _ = writeln!(o, "- `{}` = {}", s.label, s.path.display());
    }
    let _ = writeln!(
        o,
        "\nMedians of {rounds} round(s), the builds interleaved (order reversed every round); N = {} clients in one room, {} idle connections. Ratios are each build over `{}`; `within {:.0}%` means no more than {:.0}% worse (better is welcome).\n",
        c.clients,
        c.idle_connections,
        labels[0],
        TOLERANCE * 100.0,
        TOLERANCE * 100.0
    );
    o.push_str(&render_table(&labels, &c.measures));
    let _ = writeln!(
        o,
        "\nLost deliveries / error frames / sockets closed, all measured steps:"
    );
    for l in &labels {
        let (lost, errors, closed) = trouble(c, l);
        let warn = if lost + errors + closed > 0 {
            " (**not clean**: its latencies are not comparable)"
        } else {
            ""
        };
        let _ = writeln!(o, "- {l}: {lost} / {errors} / {closed}{warn}");
    }
    let _ = writeln!(o, "\n### Every round\n");
    o.push_str(&render_samples(&labels, &c.measures));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(label: &str, path: &str) -> Named {
        Named {
            label: label.into(),
            path: path.into(),
        }
    }

    #[test]
    fn builds_are_named_label_equals_path() {
        assert_eq!(
            parse_named("old=/work/bench-bins/old/natter-server").unwrap(),
            named("old", "/work/bench-bins/old/natter-server")
        );
        // Only the first '=' splits: the path may hold more.
        assert_eq!(
            parse_named("new=/tmp/a=b/natter-server").unwrap(),
            named("new", "/tmp/a=b/natter-server")
        );
        for bad in [
            "/work/bench-bins/old/natter-server",
            "=/x",
            "old=",
            "o d=/x",
            "a/b=/x",
        ] {
            let err = parse_named(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad:?}");
        }
        assert!(parse_named(&format!("{}=/x", "l".repeat(33))).is_err());
    }

    #[test]
    fn an_app_may_be_a_bare_path_or_named() {
        assert_eq!(
            parse_app("target/release/natter-desktop").unwrap(),
            named(DEFAULT_APP_LABEL, "target/release/natter-desktop")
        );
        assert_eq!(parse_app("old=/o/app").unwrap(), named("old", "/o/app"));
        // A '=' inside a path whose prefix is no label keeps the whole path.
        assert_eq!(
            parse_app("/tmp/a=b/app").unwrap(),
            named(DEFAULT_APP_LABEL, "/tmp/a=b/app")
        );
        assert!(parse_app("").is_err());
        assert!(parse_app("old=").is_err());
    }

    #[test]
    fn labels_must_differ() {
        let ok = [named("old", "/a"), named("new", "/a")];
        assert!(check_labels(&ok, "server").is_ok());
        let two_bare = [
            named(DEFAULT_APP_LABEL, "/a"),
            named(DEFAULT_APP_LABEL, "/b"),
        ];
        let err = check_labels(&two_bare, "app").unwrap_err().to_string();
        assert!(
            err.contains("natter-desktop") && err.contains("LABEL=PATH"),
            "{err}"
        );
    }

    #[test]
    fn rounds_alternate_the_order() {
        assert_eq!(round_order(2, 0), [0, 1]);
        assert_eq!(round_order(2, 1), [1, 0]);
        assert_eq!(round_order(2, 2), [0, 1]);
        assert_eq!(round_order(3, 1), [2, 1, 0]);
    }

    #[test]
    fn verdicts_follow_the_direction_and_the_ten_percent_rule() {
        use Better::*;
        // Exactly 10% worse passes, either way round.
        assert_eq!(Verdict::of(100.0, 90.0, Higher), Verdict::Within);
        assert_eq!(Verdict::of(100.0, 110.0, Lower), Verdict::Within);
        let worse = Verdict::of(100.0, 85.0, Higher);
        assert!(matches!(worse, Verdict::Worse(g) if (g - 0.15).abs() < 1e-9));
        assert!(!worse.passes());
        assert!(
            matches!(Verdict::of(10.0, 12.0, Lower), Verdict::Worse(g) if (g - 0.2).abs() < 1e-9)
        );
        // A higher figure is better for throughput and worse for latency.
        assert!(matches!(
            Verdict::of(100.0, 130.0, Higher),
            Verdict::Better(_)
        ));
        assert!(!Verdict::of(100.0, 130.0, Lower).passes());
        assert!(Verdict::of(10.0, 5.0, Lower).passes());
        assert_eq!(Verdict::of(0.0, 5.0, Lower), Verdict::Unknown);
        assert_eq!(Verdict::of(5.0, f64::NAN, Lower), Verdict::Unknown);
    }

    fn measure(name: &str, better: Better, samples: Vec<Vec<f64>>) -> Measure {
        Measure {
            name: name.into(),
            better,
            decimals: 1,
            samples,
        }
    }

    fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
        table
            .lines()
            .find(|l| l.starts_with(&format!("| {first} |")))
            .unwrap_or_else(|| panic!("no row {first:?} in\n{table}"))
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect()
    }

    #[test]
    fn the_table_shows_medians_ratios_and_verdicts() {
        let labels = vec!["old".to_string(), "new".to_string()];
        let measures = [
            // Medians 100 and 95: 0.95x, within.
            measure(
                "throughput",
                Better::Higher,
                vec![vec![90.0, 100.0, 110.0], vec![95.0, 200.0, 94.0]],
            ),
            // Medians 10 and 12: 1.20x, 20% worse.
            measure(
                "p99",
                Better::Lower,
                vec![vec![10.0, 9.0, 11.0], vec![12.0, 12.0, 30.0]],
            ),
            // The new build is missing a figure.
            measure("memory", Better::Lower, vec![vec![5.0], vec![]]),
            // A round without a figure is skipped, not counted as 0; two samples give their mean.
            measure(
                "cpu",
                Better::Higher,
                vec![vec![f64::NAN, 40.0, 60.0], vec![48.0, f64::NAN, f64::NAN]],
            ),
        ];
        let t = render_table(&labels, &measures);
        assert!(
            t.starts_with(
                "| measure | better | old | new | new / old | new within 10% of old |\n|---|---|---|---|---|---|\n"
            ),
            "{t}"
        );
        assert_eq!(
            row(&t, "throughput"),
            ["throughput", "higher", "100.0", "95.0", "0.95x", "yes"]
        );
        assert_eq!(
            row(&t, "p99"),
            [
                "p99",
                "lower",
                "10.0",
                "12.0",
                "1.20x",
                "**NO** (20.0% worse)"
            ]
        );
        assert_eq!(
            row(&t, "memory"),
            ["memory", "lower", "5.0", "-", "-", "n/a"]
        );
        assert_eq!(
            row(&t, "cpu"),
            ["cpu", "higher", "50.0", "48.0", "0.96x", "yes"]
        );
        assert!(
            t.ends_with("\nnew: **not** within 10% of old (or not measured) on: p99; memory.\n"),
            "{t}"
        );

        let s = render_samples(&labels, &measures);
        assert!(s.starts_with("| measure | build | 1 | 2 | 3 |"), "{s}");
        assert!(s.contains("| p99 | new | 12.0 | 12.0 | 30.0 |"), "{s}");
        assert!(s.contains("| memory | new | - | - | - |"), "{s}");
        assert!(s.contains("| cpu | old | - | 40.0 | 60.0 |"), "{s}");
    }

    #[test]
    fn a_third_build_gets_its_own_ratio_columns() {
        let labels = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let t = render_table(
            &labels,
            &[measure(
                "x",
                Better::Higher,
                vec![vec![10.0], vec![10.0], vec![20.0]],
            )],
        );
        assert!(t.contains("| b / a | b within 10% of a | c / a | c within 10% of a |"));
        assert_eq!(
            row(&t, "x"),
            [
                "x",
                "higher",
                "10.0",
                "10.0",
                "20.0",
                "1.00x",
                "yes",
                "2.00x",
                "yes (100.0% better)"
            ]
        );
        assert!(
            t.contains(
                "\nb: within 10% of a on every measure.\nc: within 10% of a on every measure.\n"
            ),
            "{t}"
        );
    }

    /// A round of `label` whose fan-out steps are `(rate, deliveries per CPU-s, p99 ms)`.
    fn round(
        label: &str,
        round: usize,
        steps: &[(f64, f64, u64)],
        realistic_p99_ms: u64,
        per_conn: f64,
    ) -> ServerRound {
        use crate::load::StepResult;
        let fanout = steps
            .iter()
            .map(|&(rate, dpc, p99)| {
                let mut step = StepResult::example();
                step.rate = rate;
                step.deliveries_per_cpu_sec = dpc;
                step.p99_us = p99 * 1_000;
                FanoutRow {
                    server: "natter",
                    clients: 1000,
                    connect_secs: 1.0,
                    step,
                }
            })
            .collect();
        let mut step = StepResult::example();
        step.p99_us = realistic_p99_ms * 1_000;
        ServerRound {
            label: label.into(),
            round,
            fanout,
            realistic: RealisticResult {
                server: "natter",
                rooms: 100,
                steady_clients: 900,
                churn_connects: 50,
                history_pages: 50,
                step,
            },
            idle: IdleResult {
                server: "natter",
                connections: 19_000,
                connect_secs: 10.0,
                rss_base_kib: 10_000,
                rss_mid_kib: 60_000,
                rss_kib: 110_000,
                pss_kib: 109_000,
                rss_per_conn_bytes: per_conn,
                pss_per_conn_bytes: per_conn,
                rss_marginal_bytes: per_conn,
                idle_cpu_us_per_conn_s: 1.0,
                closed: 0,
            },
        }
    }

    #[test]
    fn server_rounds_become_the_issue_14_measures() {
        let servers = [
            named("old", "/o/natter-server"),
            named("new", "/n/natter-server"),
        ];
        // Rounds in the order they ran: old, new, then new, old, then old, new.
        // (label, round, deliveries per CPU-s and p99 ms at 50 and at 800 msgs/s, realistic
        // p99 ms, RSS per idle connection), in the order they ran: old new, new old, old new.
        #[rustfmt::skip]
        let table = [
            ("old", 0, 100_000.0, 8, 400_000.0, 30, 4, 5_600.0),
            ("new", 0, 97_000.0, 9, 300_000.0, 31, 5, 5_700.0),
            ("new", 1, 95_000.0, 9, 310_000.0, 33, 5, 5_600.0),
            ("old", 1, 104_000.0, 7, 410_000.0, 29, 4, 5_500.0),
            ("old", 2, 101_000.0, 9, 390_000.0, 30, 4, 5_600.0),
            ("new", 2, 99_000.0, 9, 305_000.0, 40, 4, 5_600.0),
        ];
        let rounds: Vec<ServerRound> = table
            .iter()
            .map(|&(label, n, d50, p50, d800, p800, real, conn)| {
                round(
                    label,
                    n,
                    &[(50.0, d50, p50), (800.0, d800, p800)],
                    real,
                    conn,
                )
            })
            .collect();
        let mut rounds = rounds;
        // The old build's first 800 msgs/s step had no measurable CPU time: no figure.
        rounds[0].fanout[1].step.server_cpu_secs = 0.0;
        let m = server_measures(&servers, &rounds, 1000, &[50.0, 800.0]);
        assert!(m[1].samples[0][0].is_nan());
        assert_eq!(m[1].samples[0][1..], [410_000.0, 390_000.0]);
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "deliveries per server CPU-s, N=1000, 50 msgs/s",
                "deliveries per server CPU-s, N=1000, 800 msgs/s",
                "p99 ms, N=1000, 50 msgs/s (50000 deliveries/s offered)",
                "p99 ms, N=1000, 800 msgs/s (800000 deliveries/s offered)",
                "realistic p99 ms (100 rooms of 10, 500 msgs/s)",
                "idle: server RSS per connection, bytes",
                "idle: server CPU per connection, us/s",
            ]
        );
        // Samples per build, in run order.
        assert_eq!(
            m[0].samples,
            [
                vec![100_000.0, 104_000.0, 101_000.0],
                vec![97_000.0, 95_000.0, 99_000.0]
            ]
        );
        assert_eq!(m[3].samples[1], [31.0, 33.0, 40.0]);
        assert_eq!(m[4].samples[0], [4.0, 4.0, 4.0]);

        let c = ServerComparison {
            machine: "test machine".into(),
            load_before: "0.1".into(),
            load_after: "0.2".into(),
            elapsed_secs: 60.0,
            servers: servers.to_vec(),
            clients: 1000,
            rates: vec![50.0, 800.0],
            idle_connections: 19_000,
            tolerance: TOLERANCE,
            rounds,
            measures: m,
        };
        let out = render_servers(&c);
        assert!(
            out.contains("- `old` = /o/natter-server\n- `new` = /n/natter-server\n"),
            "{out}"
        );
        assert!(out.contains("Medians of 3 round(s)"), "{out}");
        // Medians 101,000 and 97,000: 0.96x. 800 msgs/s: 400,000 -> 305,000, 23.8% worse.
        assert_eq!(
            row(&out, "deliveries per server CPU-s, N=1000, 50 msgs/s")[2..],
            ["101000", "97000", "0.96x", "yes"]
        );
        assert_eq!(
            row(&out, "deliveries per server CPU-s, N=1000, 800 msgs/s")[2..],
            ["400000", "305000", "0.76x", "**NO** (23.8% worse)"]
        );
        // Realistic p99 medians 4 and 5 ms: 25% worse.
        assert_eq!(
            row(&out, "realistic p99 ms (100 rooms of 10, 500 msgs/s)")[2..],
            ["4.00", "5.00", "1.25x", "**NO** (25.0% worse)"]
        );
        assert!(
            out.contains("- old: 0 / 0 / 0\n- new: 0 / 0 / 0\n"),
            "{out}"
        );
        assert!(
            out.contains("| idle: server RSS per connection, bytes | new | 5700 | 5600 | 5600 |"),
            "{out}"
        );

        // A lost delivery marks the build as not clean.
        let mut c = c;
        c.rounds[1].fanout[0].step.lost = 3;
        c.rounds[2].idle.closed = 1;
        let out = render_servers(&c);
        assert!(out.contains("- new: 3 / 0 / 1 (**not clean**"), "{out}");
    }

    #[test]
    fn rounds_are_kept_in_the_order_they_ran_and_must_be_complete() {
        let servers = [named("old", "/o"), named("new", "/n")];
        let slot = |label: &str, n: usize| {
            let r = round(label, n, &[(50.0, 1.0, 1)], 1, 1.0);
            Slot {
                fanout: r.fanout,
                realistic: Some(r.realistic),
                idle: Some(r.idle),
            }
        };
        let rounds = vec![
            vec![slot("old", 0), slot("new", 0)],
            vec![slot("old", 1), slot("new", 1)],
        ];
        let done = in_run_order(&servers, rounds).unwrap();
        let ran: Vec<(&str, usize)> = done.iter().map(|r| (r.label.as_str(), r.round)).collect();
        assert_eq!(ran, [("old", 0), ("new", 0), ("new", 1), ("old", 1)]);

        let mut missing = slot("new", 0);
        missing.idle = None;
        let err = in_run_order(&servers, vec![vec![slot("old", 0), missing]])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "round 1 of new is incomplete");
    }
}
