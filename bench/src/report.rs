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

/// The machine line of a run's results: CPU, cores, kernel and the disk's sync time.
pub(crate) fn machine() -> String {
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
    let sync = match disk_sync_ms(200) {
        Ok((p50, p99)) => format!("{p50:.2} / {p99:.2} ms"),
        Err(e) => format!("not measured ({e})"),
    };
    format!(
        "{cpu}, {cores} cores available to the generator, Linux {kernel}; disk sync p50 / p99 {sync} \
         (4 KiB overwrite + fdatasync where the servers keep their data: Natter pays one per commit \
         before it fans a message out, the peers none)"
    )
}

/// Time `n` syncs of a rewritten 4 KiB block in the temp dir (where every server's data
/// directory is made): the floor under Natter's commit, which the disk sets, not Natter.
fn disk_sync_ms(n: usize) -> std::io::Result<(f64, f64)> {
    use std::io::{Seek, SeekFrom, Write as _};
    let mut file = tempfile::tempfile()?;
    let block = [7u8; 4096];
    file.write_all(&block)?;
    file.sync_all()?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&block)?;
        let t = std::time::Instant::now();
        file.sync_data()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.50), at(0.99)))
}

/// The reference floor's name in the results (`Kind::Floor`).
const FLOOR: &str = "floor";

const FLOOR_LEGEND: &str = "`floor (reference)` = minimal Rust broadcast, stores nothing (`natter-bench floor-server`, bench/src/floor.rs): each message serialised once and written to every socket with one direct non-blocking write, on one thread. It shows the lowest CPU per delivery a server can have on this machine; it is not a peer Natter must beat.";

/// How a server is named in the tables: the floor is marked as a reference.
fn shown(server: &str) -> &str {
    if server == FLOOR {
        "floor (reference)"
    } else {
        server
    }
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
            let _ = writeln!(o, "| server | connections | RSS KiB | PSS KiB | RSS per conn (B) | PSS per conn (B) | marginal RSS per conn, 2nd half (B) | idle CPU per conn (us/s) | closed | RSS/conn vs natter |");
            let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
            let natter = self
                .idle
                .iter()
                .find(|i| i.server == "natter")
                .map(|i| i.rss_per_conn_bytes);
            for i in &self.idle {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {} | {} |",
                    i.server,
                    i.connections,
                    i.rss_kib,
                    i.pss_kib,
                    i.rss_per_conn_bytes,
                    i.pss_per_conn_bytes,
                    i.rss_marginal_bytes,
                    i.idle_cpu_us_per_conn_s,
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
        let floor_run = self.fanout.iter().any(|r| r.server == FLOOR);
        let _ = writeln!(
            o,
            "## Scenario 1: one room, 100-byte messages, equal offered load\n"
        );
        let _ = writeln!(o, "Server pinned to one core, generator to the other. `deliv/CPU-s` = deliveries per second of server CPU (utime+stime); `server usr %` / `server sys %` split the server's CPU into its own code (utime) and the kernel's work for it (stime).\n");
        if floor_run {
            let _ = writeln!(o, "{FLOOR_LEGEND}\n");
        }
        let _ = writeln!(o, "`first p50 / p99` = latency of each message's first delivery: the server's time to its first `send` (for Natter, the commit and its sync), without the fan-out's spread.\n");
        let _ = writeln!(o, "| server | N | msgs/s | offered deliv/s | achieved deliv/s | p50 ms | p99 ms | first p50 / p99 ms | max ms | lost | server CPU % | server usr % | server sys % | gen CPU % | deliv/CPU-s | RSS MiB |");
        let _ = writeln!(
            o,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for r in &self.fanout {
            let s = &r.step;
            let _ = writeln!(
                o,
                "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} / {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} |",
                shown(r.server),
                r.clients,
                s.rate,
                s.offered_deliveries,
                s.deliveries_per_sec,
                ms(s.p50_us),
                ms(s.p99_us),
                ms(s.first_p50_us),
                ms(s.first_p99_us),
                ms(s.max_us),
                s.lost,
                s.server_cpu_pct,
                s.server_usr_pct,
                s.server_sys_pct,
                s.gen_cpu_pct,
                s.deliveries_per_cpu_sec,
                s.server_rss_kib as f64 / 1024.0
            );
        }
        let _ = writeln!(o);
        let find = |server: &str, n: usize, rate: f64| {
            self.fanout
                .iter()
                .find(|r| r.server == server && r.clients == n && r.step.rate == rate)
        };
        let dpc = |x: Option<&FanoutRow>| x.map(|x| x.step.deliveries_per_cpu_sec).unwrap_or(0.0);
        if self.fanout.iter().any(|r| r.server == "natter") {
            let _ = writeln!(
                o,
                "### Ratios at equal offered load (natter / peer; higher deliv/CPU-s is better)\n"
            );
            let (floor_head, floor_rule) = if floor_run {
                (" floor deliv/CPU-s | natter / floor |", "---|---|")
            } else {
                ("", "")
            };
            let _ = writeln!(o, "| N | msgs/s | natter deliv/CPU-s | vs node-ws | vs socket.io | p99 natter / node-ws / socket.io ms | lost natter / node-ws / socket.io |{floor_head}");
            let _ = writeln!(o, "|---|---|---|---|---|---|---|{floor_rule}");
            for r in self.fanout.iter().filter(|r| r.server == "natter") {
                let ws = find("node-ws", r.clients, r.step.rate);
                let sio = find("socket.io", r.clients, r.step.rate);
                let p99 = |x: Option<&FanoutRow>| {
                    x.map(|x| ms(x.step.p99_us)).unwrap_or_else(|| "-".into())
                };
                let lost = |x: Option<&FanoutRow>| {
                    x.map(|x| x.step.lost.to_string())
                        .unwrap_or_else(|| "-".into())
                };
                let mine = r.step.deliveries_per_cpu_sec;
                let floor_cells = if floor_run {
                    let f = dpc(find(FLOOR, r.clients, r.step.rate));
                    let shown_f = if f > 0.0 {
                        format!("{f:.0}")
                    } else {
                        "-".into()
                    };
                    format!(" {shown_f} | {} |", ratio(mine, f))
                } else {
                    String::new()
                };
                let _ = writeln!(
                    o,
                    "| {} | {:.0} | {:.0} | {} | {} | {} / {} / {} | {} / {} / {} |{floor_cells}",
                    r.clients,
                    r.step.rate,
                    mine,
                    ratio(mine, dpc(ws)),
                    ratio(mine, dpc(sio)),
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
        if floor_run {
            self.render_against_floor(o);
        }
        self.render_capacity(o);
    }

    /// What each server can carry on its one core: the highest step it delivered in full, and
    /// what it managed flat out at the step where it saturated. A server whose ladder ended
    /// without saturating can carry more than the table shows.
    fn render_capacity(&self, o: &mut String) {
        let mut servers: Vec<&str> = Vec::new();
        let mut sizes: Vec<usize> = Vec::new();
        for r in &self.fanout {
            if !servers.contains(&r.server) {
                servers.push(r.server);
            }
            if !sizes.contains(&r.clients) {
                sizes.push(r.clients);
            }
        }
        let _ = writeln!(o, "### Capacity on one core\n");
        let _ = writeln!(o, "`in full` = the highest step with nothing lost and p99 under 1 s (deliveries/s, p99). `flat out` = the first step it did not keep up with: offered -> achieved deliveries/s at its CPU %; `not reached` = the ladder ended first, so it can carry more. `natter / peer` = natter's in-full figure over the peer's flat-out one, a lower bound (`>=` when natter never saturated).\n");
        let _ = writeln!(o, "| N | server | in full: deliv/s | p99 ms | flat out: offered -> achieved deliv/s | CPU % | natter / peer |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|");
        for &n in &sizes {
            let ladder = |server: &str| -> (Option<&FanoutRow>, Option<&FanoutRow>) {
                let steps: Vec<&FanoutRow> = self
                    .fanout
                    .iter()
                    .filter(|r| r.server == server && r.clients == n)
                    .collect();
                let in_full = steps.iter().rev().find(|r| r.step.kept_up()).copied();
                let flat_out = steps.iter().find(|r| !r.step.kept_up()).copied();
                (in_full, flat_out)
            };
            let (natter_full, natter_flat) = ladder("natter");
            for &server in &servers {
                let (in_full, flat_out) = ladder(server);
                if in_full.is_none() && flat_out.is_none() {
                    continue;
                }
                let (full, p99) = match in_full {
                    Some(r) => (
                        format!("{:.0}", r.step.deliveries_per_sec),
                        ms(r.step.p99_us),
                    ),
                    None => ("-".into(), "-".into()),
                };
                let (flat, cpu) = match flat_out {
                    Some(r) => (
                        format!(
                            "{:.0} -> {:.0}",
                            r.step.offered_deliveries, r.step.deliveries_per_sec
                        ),
                        format!("{:.1}", r.step.server_cpu_pct),
                    ),
                    None => ("not reached".into(), "-".into()),
                };
                let vs = match (server, natter_full, flat_out) {
                    ("natter", _, _) => String::new(),
                    (_, Some(mine), Some(peer)) => {
                        let bound = if natter_flat.is_none() { ">= " } else { "" };
                        format!(
                            "{bound}{}",
                            ratio(mine.step.deliveries_per_sec, peer.step.deliveries_per_sec)
                        )
                    }
                    _ => "-".into(),
                };
                let _ = writeln!(
                    o,
                    "| {n} | {} | {full} | {p99} | {flat} | {cpu} | {vs} |",
                    shown(server)
                );
            }
        }
        let _ = writeln!(o);
    }

    /// Every server's CPU per delivery as a share of the floor's at the same load: how much of
    /// the floor's efficiency each one reaches (1.00x = as cheap as a server can be here).
    fn render_against_floor(&self, o: &mut String) {
        let mut others: Vec<&str> = Vec::new();
        for r in &self.fanout {
            if r.server != FLOOR && !others.contains(&r.server) {
                others.push(r.server);
            }
        }
        let _ = writeln!(
            o,
            "### Against the floor (server deliv/CPU-s / floor's at the same load; the floor is a reference, not a peer)\n"
        );
        let heads: String = others.iter().map(|s| format!(" {s} |")).collect();
        let rules: String = others.iter().map(|_| "---|").collect();
        let _ = writeln!(
            o,
            "| N | msgs/s | floor deliv/CPU-s | floor usr % / sys % | floor p99 ms |{heads}"
        );
        let _ = writeln!(o, "|---|---|---|---|---|{rules}");
        for f in self.fanout.iter().filter(|r| r.server == FLOOR) {
            let base = f.step.deliveries_per_cpu_sec;
            let cells: String = others
                .iter()
                .map(|&s| {
                    let x = self.fanout.iter().find(|r| {
                        r.server == s && r.clients == f.clients && r.step.rate == f.step.rate
                    });
                    let x = x.map(|x| x.step.deliveries_per_cpu_sec).unwrap_or(0.0);
                    format!(" {} |", ratio(x, base))
                })
                .collect();
            let _ = writeln!(
                o,
                "| {} | {:.0} | {:.0} | {:.1} / {:.1} | {} |{cells}",
                f.clients,
                f.step.rate,
                base,
                f.step.server_usr_pct,
                f.step.server_sys_pct,
                ms(f.step.p99_us)
            );
        }
        let _ = writeln!(o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::StepResult;

    #[test]
    fn the_disk_sync_probe_times_real_syncs() {
        let (p50, p99) = disk_sync_ms(20).unwrap();
        assert!(p50 > 0.0 && p50 <= p99, "p50 {p50} p99 {p99}");
    }

    fn row(server: &'static str, dpc: f64, usr: f64, sys: f64) -> FanoutRow {
        let mut step = StepResult::example();
        step.server_cpu_pct = usr + sys;
        step.server_usr_pct = usr;
        step.server_sys_pct = sys;
        step.deliveries_per_cpu_sec = dpc;
        FanoutRow {
            server,
            clients: 1000,
            connect_secs: 1.0,
            step,
        }
    }

    /// A step of `server` at `rate` messages/s to 1,000 clients, flat out at 100% CPU when
    /// `achieved` falls short of what was offered.
    fn step(server: &'static str, rate: f64, achieved: f64, p99_ms: u64) -> FanoutRow {
        let mut r = row(server, 1.0, 10.0, 20.0);
        r.step.rate = rate;
        r.step.offered_deliveries = rate * 1000.0;
        r.step.deliveries_per_sec = achieved;
        r.step.p99_us = p99_ms * 1000;
        if achieved < r.step.offered_deliveries {
            r.step.server_cpu_pct = 100.0;
        }
        r
    }

    #[test]
    fn capacity_compares_what_natter_carries_in_full_with_a_saturated_peer() {
        let saturated_ws = Results {
            fanout: vec![
                step("natter", 200.0, 200_000.0, 20),
                step("natter", 400.0, 400_000.0, 30),
                step("node-ws", 200.0, 200_000.0, 9),
                step("node-ws", 400.0, 160_000.0, 4_000),
            ],
            ..Default::default()
        };
        let out = saturated_ws.render();
        assert!(out.contains("### Capacity on one core"), "{out}");
        // natter never saturated: its figure is a floor, and so is the ratio.
        assert!(
            out.contains("| 1000 | natter | 400000 | 30.00 | not reached | - |  |"),
            "{out}"
        );
        assert!(
            out.contains(
                "| 1000 | node-ws | 200000 | 9.00 | 400000 -> 160000 | 100.0 | >= 2.50x |"
            ),
            "{out}"
        );

        // Both saturate: natter's in-full figure over the peer's flat-out one, no `>=`.
        let mut both = saturated_ws;
        both.fanout
            .insert(2, step("natter", 800.0, 500_000.0, 2_000));
        let out = both.render();
        assert!(
            out.contains("| 1000 | natter | 400000 | 30.00 | 800000 -> 500000 | 100.0 |  |"),
            "{out}"
        );
        assert!(out.contains("| 100.0 | 2.50x |"), "{out}");
    }

    /// The table row of `server` (its first cell), split into cells.
    fn cells<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("| {first} |")))
            .unwrap_or_else(|| panic!("no row {first:?} in\n{table}"));
        line.trim_matches('|').split('|').map(str::trim).collect()
    }

    #[test]
    fn fanout_tables_split_user_and_kernel_cpu_and_compare_with_the_floor() {
        let mut r = Results {
            fanout: vec![
                row("natter", 150_000.0, 12.0, 21.5),
                row("node-ws", 160_000.0, 10.0, 20.0),
                row("floor", 400_000.0, 2.5, 10.0),
            ],
            ..Default::default()
        };
        let out = r.render();
        assert!(
            out.contains("| server CPU % | server usr % | server sys % |"),
            "{out}"
        );
        let natter = cells(&out, "natter");
        assert_eq!(natter[7], "0.30 / 0.70", "first delivery p50 / p99");
        assert_eq!(&natter[10..13], ["33.5", "12.0", "21.5"]);
        assert!(out.contains(FLOOR_LEGEND));
        let floor = cells(&out, "floor (reference)");
        assert_eq!(&floor[10..13], ["12.5", "2.5", "10.0"]);
        // Ratio table: natter / node-ws, then the floor's figure and natter / floor.
        assert!(
            out.contains("| floor deliv/CPU-s | natter / floor |"),
            "{out}"
        );
        let ratios = out
            .lines()
            .find(|l| l.starts_with("| 1000 | 50 | 150000 |"))
            .unwrap();
        assert!(ratios.ends_with("| 400000 | 0.38x |"), "{ratios}");
        assert!(ratios.contains("| 0.94x |"), "{ratios}");
        // Against the floor: every other server's share of the floor's deliv/CPU-s.
        assert!(out.contains("| floor usr % / sys % | floor p99 ms | natter | node-ws |"));
        let against = out
            .lines()
            .find(|l| l.starts_with("| 1000 | 50 | 400000 |"))
            .unwrap();
        assert_eq!(
            against,
            "| 1000 | 50 | 400000 | 2.5 / 10.0 | 5.00 | 0.38x | 0.40x |"
        );

        // Capacity: one row per server; no peer saturated, so no lower bound yet.
        assert!(
            out.contains("| 1000 | node-ws | 50000 | 5.00 | not reached | - | - |"),
            "{out}"
        );

        // Without the floor, no floor columns or tables.
        r.fanout.pop();
        let out = r.render();
        assert!(!out.contains("floor"), "{out}");
        assert!(out.contains("| server usr % | server sys % |"));
    }
}
