//! The run's figures and the tables printed at the end: Natter against each peer at equal
//! offered load, with the ratios the targets are stated in.

use crate::scenarios::{FanoutRow, IdleResult, RealisticResult, SlowResult};
use crate::store::StoreResult;
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub machine: String,
    pub load_before: String,
    pub load_after: String,
    pub elapsed_secs: f64,
    pub fanout: Vec<FanoutRow>,
    pub idle: Vec<IdleResult>,
    pub slow: Vec<SlowResult>,
    pub realistic: Vec<RealisticResult>,
    pub store: Option<StoreResult>,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores available to the generator, Linux {kernel}")
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1e3)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

impl Results {
    pub fn new() -> Results {
        Results {
            machine: machine(),
            load_before: crate::procfs::loadavg(),
            ..Default::default()
        }
    }

    /// Markdown tables (they read fine in a terminal and paste into docs/benchmarks.md).
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "\n# natter-bench results\n");
        let _ = writeln!(
            o,
            "machine: {}; load average before {} / after {}; {:.0} s\n",
            self.machine, self.load_before, self.load_after, self.elapsed_secs
        );
        if !self.fanout.is_empty() {
            self.render_fanout(&mut o);
        }
        if !self.slow.is_empty() {
            let _ = writeln!(o, "## Scenario 4: 1% of clients stop reading (N=1000, 100 msg/s = 100k deliveries/s offered, 8 s stalled)\n");
            let _ = writeln!(o, "| server | p99 before ms | p99 during ms | max during ms | lost (readers) | RSS before KiB | RSS max KiB | RSS after KiB | stalled closed by server |");
            let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
            for s in &self.slow {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {}/{} |",
                    s.server,
                    ms(s.baseline.p99_us),
                    ms(s.with_stalled.p99_us),
                    ms(s.with_stalled.max_us),
                    s.with_stalled.lost,
                    s.rss_before_kib,
                    s.rss_max_kib,
                    s.rss_after_kib,
                    s.stalled_closed_by_server,
                    s.stopped_reading
                );
            }
            let _ = writeln!(o);
        }
        if !self.realistic.is_empty() {
            let _ = writeln!(o, "## Scenario 3: realistic (100 rooms of 10, 20% DMs, 10 reconnects/s each fetching history)\n");
            let _ = writeln!(o, "| server | msgs/s | deliveries/s | p50 ms | p99 ms | max ms | lost | server CPU % | deliveries per CPU-s | reconnects | history pages |");
            let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|");
            for r in &self.realistic {
                let s = &r.step;
                let _ = writeln!(
                    o,
                    "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {:.1} | {:.0} | {} | {} |",
                    r.server,
                    s.rate,
                    s.deliveries_per_sec,
                    ms(s.p50_us),
                    ms(s.p99_us),
                    ms(s.max_us),
                    s.lost,
                    s.server_cpu_pct,
                    s.deliveries_per_cpu_sec,
                    r.churn_connects,
                    r.history_pages
                );
            }
            let _ = writeln!(o);
        }
        if !self.idle.is_empty() {
            let _ = writeln!(
                o,
                "## Scenario 2: idle connections (target: <= 16 KiB of server RSS each)\n"
            );
            let _ = writeln!(o, "| server | connections | RSS KiB | PSS KiB | RSS per conn (B) | PSS per conn (B) | marginal RSS per conn, 2nd half (B) | closed | RSS/conn vs natter |");
            let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
            let natter = self
                .idle
                .iter()
                .find(|i| i.server == "natter")
                .map(|i| i.rss_per_conn_bytes);
            for i in &self.idle {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} |",
                    i.server,
                    i.connections,
                    i.rss_kib,
                    i.pss_kib,
                    i.rss_per_conn_bytes,
                    i.pss_per_conn_bytes,
                    i.rss_marginal_bytes,
                    i.closed,
                    natter
                        .map(|n| ratio(i.rss_per_conn_bytes, n))
                        .unwrap_or_else(|| "-".into())
                );
            }
            let _ = writeln!(o);
        }
        if let Some(s) = &self.store {
            let _ = writeln!(
                o,
                "## Local store (natter::client::store, {} messages)\n",
                s.messages
            );
            let _ = writeln!(o, "| measure | value | target |");
            let _ = writeln!(o, "|---|---|---|");
            let _ = writeln!(
                o,
                "| insert | {:.1} s ({:.0} msgs/s, batches of {}) | - |",
                s.insert_secs,
                s.messages as f64 / s.insert_secs,
                s.batch
            );
            let _ = writeln!(
                o,
                "| database size | {:.0} MiB | - |",
                s.db_bytes as f64 / 1048576.0
            );
            let _ = writeln!(
                o,
                "| latest page (50), first after reopen | {:.3} ms | <= 1 ms |",
                s.page_first_ms
            );
            let _ = writeln!(
                o,
                "| latest page (50), median / max of {} | {:.3} / {:.3} ms | <= 1 ms |",
                s.repeats, s.page_median_ms, s.page_max_ms
            );
            for q in &s.searches {
                let _ = writeln!(
                    o,
                    "| search {:?} ({}, {} hits of {} matching), first / median / max | {:.2} / {:.2} / {:.2} ms | <= 20 ms |",
                    q.query, q.note, q.hits, q.matching, q.first_ms, q.median_ms, q.max_ms
                );
            }
            let _ = writeln!(o);
        }
        let _ = writeln!(
            o,
            "## App footprint\n\n`natter-bench footprint` (scripts/bench runs it after this)\n"
        );
        o
    }

    fn render_fanout(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "## Scenario 1: one room, 100-byte messages, equal offered load\n"
        );
        let _ = writeln!(o, "Server pinned to one core, generator to the other. `deliv/CPU-s` = deliveries per second of server CPU (utime+stime).\n");
        let _ = writeln!(o, "| server | N | msgs/s | offered deliv/s | achieved deliv/s | p50 ms | p99 ms | max ms | lost | server CPU % | gen CPU % | deliv/CPU-s | RSS MiB |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in &self.fanout {
            let s = &r.step;
            let _ = writeln!(
                o,
                "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {:.1} | {:.1} | {:.0} | {:.1} |",
                r.server,
                r.clients,
                s.rate,
                s.offered_deliveries,
                s.deliveries_per_sec,
                ms(s.p50_us),
                ms(s.p99_us),
                ms(s.max_us),
                s.lost,
                s.server_cpu_pct,
                s.gen_cpu_pct,
                s.deliveries_per_cpu_sec,
                s.server_rss_kib as f64 / 1024.0
            );
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "### Ratios at equal offered load (natter / peer; higher deliv/CPU-s is better)\n"
        );
        let _ = writeln!(o, "| N | msgs/s | natter deliv/CPU-s | vs node-ws | vs socket.io | p99 natter / node-ws / socket.io ms | lost natter / node-ws / socket.io |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|");
        let find = |server: &str, n: usize, rate: f64| {
            self.fanout
                .iter()
                .find(|r| r.server == server && r.clients == n && r.step.rate == rate)
        };
        for r in self.fanout.iter().filter(|r| r.server == "natter") {
            let ws = find("node-ws", r.clients, r.step.rate);
            let sio = find("socket.io", r.clients, r.step.rate);
            let dpc =
                |x: Option<&FanoutRow>| x.map(|x| x.step.deliveries_per_cpu_sec).unwrap_or(0.0);
            let p99 =
                |x: Option<&FanoutRow>| x.map(|x| ms(x.step.p99_us)).unwrap_or_else(|| "-".into());
            let lost = |x: Option<&FanoutRow>| {
                x.map(|x| x.step.lost.to_string())
                    .unwrap_or_else(|| "-".into())
            };
            let _ = writeln!(
                o,
                "| {} | {:.0} | {:.0} | {} | {} | {} / {} / {} | {} / {} / {} |",
                r.clients,
                r.step.rate,
                r.step.deliveries_per_cpu_sec,
                ratio(r.step.deliveries_per_cpu_sec, dpc(ws)),
                ratio(r.step.deliveries_per_cpu_sec, dpc(sio)),
                ms(r.step.p99_us),
                p99(ws),
                p99(sio),
                r.step.lost,
                lost(ws),
                lost(sio)
            );
        }
        let _ = writeln!(o);
    }
}
