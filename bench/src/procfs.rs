//! Reading a process's CPU time and memory from /proc: the measurements every scenario reports
//! for the server under test (and for the load generator itself, so a reader can see which side
//! was the bottleneck).

use anyhow::{bail, Context, Result};
use std::fs;

/// CPU time and memory of one process at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// utime + stime, in seconds.
    pub cpu_secs: f64,
    /// utime alone: the process's own code.
    pub user_secs: f64,
    /// stime alone: the kernel working for it (syscalls, and on kernels without
    /// CONFIG_IRQ_TIME_ACCOUNTING the softirq work it triggers, e.g. loopback TCP receive).
    pub sys_secs: f64,
    /// Resident set size, in KiB.
    pub rss_kib: u64,
    /// Proportional set size, in KiB (0 when smaps_rollup is not readable). Shared pages count
    /// divided by the number of processes mapping them, so other programs using the same
    /// libraries (another WebKit app) lower it.
    pub pss_kib: u64,
    /// Unique set size (Private_Clean + Private_Dirty), in KiB: pages no other process maps,
    /// so unaffected by what else runs (0 when smaps_rollup is not readable).
    pub uss_kib: u64,
}

/// Clock ticks per second for /proc/PID/stat. Linux has used 100 (USER_HZ) on every
/// architecture we run on; `getconf CLK_TCK` confirms it, so ask once rather than assume.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// (utime, stime) of `pid` in seconds (its reaped children NOT included: a server's CPU is its
/// own).
pub fn cpu_split(pid: u32) -> Result<(f64, f64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let (user, sys) = parse_stat_cpu(&stat)?;
    Ok((user as f64 / clock_ticks(), sys as f64 / clock_ticks()))
}

/// (utime, stime) in ticks. The comm field may contain spaces and parentheses, so fields are
/// counted after the last ')'.
fn parse_stat_cpu(stat: &str) -> Result<(u64, u64)> {
    let rest = match stat.rfind(')') {
        Some(i) => &stat[i + 1..],
        None => bail!("malformed /proc/PID/stat"),
    };
    // After ')' come field 3 (state) onward; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.len() < 13 {
        bail!("short /proc/PID/stat");
    }
    let utime: u64 = fields[11].parse().context("utime")?;
    let stime: u64 = fields[12].parse().context("stime")?;
    Ok((utime, stime))
}

/// A `Key:   1234 kB` line's number.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l[key.len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU and memory of `pid` now.
pub fn sample(pid: u32) -> Result<Sample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss_kib = kib_field(&status, "VmRSS:").unwrap_or(0);
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |key| kib_field(&rollup, key).unwrap_or(0);
    let pss_kib = field("Pss:");
    let uss_kib = field("Private_Clean:") + field("Private_Dirty:");
    let (user_secs, sys_secs) = cpu_split(pid)?;
    Ok(Sample {
        cpu_secs: user_secs + sys_secs,
        user_secs,
        sys_secs,
        rss_kib,
        pss_kib,
        uss_kib,
    })
}

/// CPU and memory of every process in the trees rooted at `roots` (the roots and all their
/// descendants now), summed: what a server made of several processes costs (cluster nodes,
/// PostgreSQL and its backends, Redis, nginx and its workers). A process that ended between
/// listing and reading is skipped.
pub fn sample_group(roots: &[u32]) -> Result<Sample> {
    if let [one] = roots {
        if children_of(*one).is_empty() {
            return sample(*one);
        }
    }
    let mut total = Sample::default();
    let seen = tree(roots);
    for &pid in &seen {
        let Ok(s) = sample(pid) else { continue };
        total.cpu_secs += s.cpu_secs;
        total.user_secs += s.user_secs;
        total.sys_secs += s.sys_secs;
        total.rss_kib += s.rss_kib;
        total.pss_kib += s.pss_kib;
        total.uss_kib += s.uss_kib;
    }
    if seen.is_empty() {
        bail!("no process to sample");
    }
    Ok(total)
}

/// The processes of the trees rooted at `roots`: the roots and all their descendants now.
pub fn tree(roots: &[u32]) -> Vec<u32> {
    let mut seen = Vec::new();
    let mut todo: Vec<u32> = roots.to_vec();
    while let Some(pid) = todo.pop() {
        if !seen.contains(&pid) {
            seen.push(pid);
            todo.extend(children_of(pid));
        }
    }
    seen
}

/// The pids whose parent is `pid` (from /proc/PID/task/*/children).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Open file descriptors of `pid`: a server's connection count, seen from the server side
/// (a client that stopped reading never learns that the server closed it).
pub fn open_fds(pid: u32) -> Result<u64> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count() as u64)
}

/// The 1-minute load average, noted with every run because other builds skew the figures.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            let parts: Vec<&str> = s.split_whitespace().take(3).collect();
            (parts.len() == 3).then(|| parts.join(" "))
        })
        .unwrap_or_else(|| "?".into())
}

/// The soft limit on open files of this process (what `ulimit -n` set for the run).
pub fn open_file_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A comm with spaces and a ')' must not shift the fields.
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 9 1 1";
        assert_eq!(parse_stat_cpu(stat).unwrap(), (250, 75));
        assert!(parse_stat_cpu("garbage").is_err());
        assert!(parse_stat_cpu("1 (x) S 1 2").is_err());
    }

    #[test]
    fn own_process_is_measurable() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
        assert!(s.cpu_secs >= 0.0);
        assert_eq!(s.cpu_secs, s.user_secs + s.sys_secs);
        assert!(kib_field("VmRSS:\t  1234 kB\n", "VmRSS:") == Some(1234));
        // Private pages are part of the proportional share, which is part of what is resident.
        assert!(
            s.uss_kib > 0 && s.uss_kib <= s.pss_kib && s.pss_kib <= s.rss_kib,
            "{s:?}"
        );
        // "Pss:" is not "Pss_Anon:".
        assert_eq!(kib_field("Pss_Anon: 5 kB\nPss: 9 kB\n", "Pss:"), Some(9));
        assert!(open_file_limit().unwrap_or(0) > 0);
        assert!(open_fds(std::process::id()).unwrap() >= 3);
    }
}
