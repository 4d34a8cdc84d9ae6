//! Reading natter-server's latency trace (`--trace-latency FILE`, src/server/latency_trace.rs):
//! where each measured message spent its time, stage by stage, from its due time to its slowest
//! delivery, so a window with a high p99 can be pinned on a stage (issue 15, part 1).
//!
//! The trace names a socket write by (connection, request id); the generator's request ids are
//! unique in a swarm, so the id alone finds a message. The writer and the fan-out are one
//! thread each, so the commit a message was in is the last one that ended before its
//! completion handed it on, and its fan-out batch the first whose sends began after the
//! fan-out picked it up.

use crate::load::MessageTiming;
use anyhow::{bail, Context, Result};
use natter::server::latency_trace::{Mark as ServerMark, HEADER};
use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

/// The stages a message's latency is cut into, in the order it passes them.
pub const STAGES: [&str; 10] = [
    "to server",
    "service",
    "writer queue",
    "sql",
    "commit+sync",
    "checkpoint",
    "to fan-out",
    "hub",
    "sends",
    "after sends",
];

/// What one stage means, for the table's legend.
pub const LEGEND: &str = "to server: due -> frame read (pacer, loopback, the server's read); \
service: read -> handed to the writer; writer queue: -> its commit's transaction began; \
sql: -> COMMIT issued; commit+sync: COMMIT -> returned, WAL synced (less the checkpoint); \
checkpoint: a WAL checkpoint inside that commit; to fan-out: commit returned -> the fan-out \
thread picked it; hub: -> the first send of its batch; sends: -> its slowest delivery's send \
(at most the batch's last send); after sends: the batch's last send -> the slowest delivery read";

/// A message's time in each of [`STAGES`], in nanoseconds.
pub type Stages = [u64; STAGES.len()];

/// One WAL checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checkpoint {
    pub begin: u64,
    pub end: u64,
    /// Frames in the WAL, and how many it copied into the database.
    pub frames: u64,
    pub copied: u64,
}

/// A parsed trace.
#[derive(Debug, Default)]
pub struct Trace {
    /// Per request id and mark: the stamps seen (a request id may be reused by set-up frames).
    marks: HashMap<(u64, Mark), Vec<u64>>,
    /// (transaction began, COMMIT issued, COMMIT returned), in order.
    commits: Vec<(u64, u64, u64)>,
    pub checkpoints: Vec<Checkpoint>,
    /// (first send, last send) of each fan-out batch, in order.
    sends: Vec<(u64, u64)>,
}

/// The per-message marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mark {
    Received,
    ToWriter,
    Published,
    Picked,
}

impl Trace {
    pub fn read(path: &Path) -> Result<Trace> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the latency trace {}", path.display()))?;
        Trace::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Trace> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            bail!("not a natter latency trace (its first line is not {HEADER:?})");
        }
        let mut t = Trace::default();
        let (mut commit_begin, mut commit_call, mut ckpt_begin, mut sends_begin) =
            (None, None, None, None);
        for (n, line) in lines.enumerate() {
            let bad = || format!("latency trace line {}: {line:?}", n + 2);
            let mut f = line.split(' ');
            let (Some(at), Some(mark), Some(a), Some(b), None) =
                (f.next(), f.next(), f.next(), f.next(), f.next())
            else {
                bail!(bad());
            };
            let at: u64 = at.parse().with_context(bad)?;
            let a: u64 = a.parse().with_context(bad)?;
            let b: u64 = b.parse().with_context(bad)?;
            let Some(mark) = ServerMark::parse(mark) else {
                bail!(bad());
            };
            let mut per_message = |m| t.marks.entry((b, m)).or_default().push(at);
            match mark {
                ServerMark::Received => per_message(Mark::Received),
                ServerMark::ToWriter => per_message(Mark::ToWriter),
                ServerMark::Published => per_message(Mark::Published),
                ServerMark::Picked => per_message(Mark::Picked),
                ServerMark::CommitBegin => commit_begin = Some(at),
                ServerMark::CommitCall => commit_call = Some(at),
                ServerMark::CommitDone => {
                    if let (Some(begin), Some(call)) = (commit_begin.take(), commit_call.take()) {
                        t.commits.push((begin, call, at));
                    }
                }
                ServerMark::CheckpointBegin => ckpt_begin = Some(at),
                ServerMark::CheckpointEnd => {
                    if let Some(begin) = ckpt_begin.take() {
                        t.checkpoints.push(Checkpoint {
                            begin,
                            end: at,
                            frames: a,
                            copied: b,
                        });
                    }
                }
                ServerMark::SendsBegin => sends_begin = Some(at),
                ServerMark::SendsEnd => {
                    if let Some(begin) = sends_begin.take() {
                        t.sends.push((begin, at));
                    }
                }
            }
        }
        // Records are written in the order each buffer took them, which across threads is
        // nearly but not exactly time order.
        for stamps in t.marks.values_mut() {
            stamps.sort_unstable();
        }
        t.commits.sort_unstable();
        t.sends.sort_unstable();
        Ok(t)
    }

    /// The first stamp of `mark` for request `req` at or after `from`.
    fn mark(&self, req: u64, mark: Mark, from: u64) -> Option<u64> {
        let stamps = self.marks.get(&(req, mark))?;
        let i = stamps.partition_point(|&s| s < from);
        stamps.get(i).copied()
    }

    /// Where `m` spent its time, or None when the trace lacks one of its marks (a store
    /// without commit marks, a trace cut short).
    pub fn stages(&self, m: &MessageTiming) -> Option<Stages> {
        // Two processes read the epoch clock at different instants: allow them 5 ms apart.
        let due = m.intended_epoch_nanos;
        let from = due.saturating_sub(5_000_000);
        let received = self.mark(m.req, Mark::Received, from)?;
        let to_writer = self.mark(m.req, Mark::ToWriter, received)?;
        let published = self.mark(m.req, Mark::Published, to_writer)?;
        let picked = self.mark(m.req, Mark::Picked, published)?;
        let c = self
            .commits
            .partition_point(|&(_, _, done)| done <= published);
        let (begin, call, done) = *self.commits.get(c.checked_sub(1)?)?;
        let s = self.sends.partition_point(|&(b, _)| b < picked);
        let (sends_begin, sends_end) = *self.sends.get(s)?;
        let slowest = due + m.slowest_us * 1_000;
        let checkpoint: u64 = self
            .checkpoints
            .iter()
            .map(|k| k.end.min(done).saturating_sub(k.begin.max(call)))
            .sum();
        let d = |a: u64, b: u64| b.saturating_sub(a);
        Some([
            d(due, received),
            d(received, to_writer),
            d(to_writer, begin),
            d(begin, call),
            d(call, done).saturating_sub(checkpoint),
            checkpoint,
            d(done, picked),
            d(picked, sends_begin),
            d(sends_begin, slowest.min(sends_end)),
            d(sends_end, slowest),
        ])
    }

    /// The checkpoints that began in [from, to).
    pub fn checkpoints_in(&self, from: u64, to: u64) -> impl Iterator<Item = &Checkpoint> {
        self.checkpoints
            .iter()
            .filter(move |k| k.begin >= from && k.begin < to)
    }
}

/// Mean of each stage over `stages`, in milliseconds.
pub fn mean_ms(stages: &[Stages]) -> [f64; STAGES.len()] {
    let mut sum = [0f64; STAGES.len()];
    for s in stages {
        for (acc, &ns) in sum.iter_mut().zip(s) {
            *acc += ns as f64;
        }
    }
    sum.map(|ns| ns / 1e6 / stages.len().max(1) as f64)
}

/// The stage with the largest mean, with that mean in ms.
pub fn largest(means: &[f64; STAGES.len()]) -> (&'static str, f64) {
    let (i, ms) =
        means.iter().enumerate().fold(
            (0, f64::MIN),
            |best, (i, &ms)| if ms > best.1 { (i, ms) } else { best },
        );
    (STAGES[i], ms)
}

/// One line of stage means: `stage ms, ...`.
pub fn render_means(means: &[f64; STAGES.len()]) -> String {
    let mut out = String::new();
    for (name, ms) in STAGES.iter().zip(means) {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = write!(out, "{name} {ms:.2}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// A trace of two messages (request ids 7 and 8) committed together, where the commit
    /// holds a checkpoint, and one earlier message (id 7 reused by a set-up frame).
    fn trace() -> String {
        let t0 = 1_000 * MS;
        let at = |ms: u64| t0 + ms * MS;
        let lines = [
            format!("{} received 3 7", t0 - 500 * MS),
            format!("{} received 1 7", at(1)),
            format!("{} received 2 8", at(2)),
            format!("{} to_writer 1 7", at(2)),
            format!("{} to_writer 2 8", at(3)),
            format!("{} commit_begin 2 0", at(4)),
            format!("{} commit_call 2 0", at(5)),
            format!("{} checkpoint_begin 1000 0", at(6)),
            format!("{} checkpoint_end 1000 990", at(46)),
            format!("{} commit_done 2 0", at(50)),
            format!("{} published 1 7", at(51)),
            format!("{} published 2 8", at(51)),
            // The fan-out's records reach the file before the writer's of an earlier time.
            format!("{} sends_begin 0 0", at(40)),
            format!("{} sends_end 0 0", at(45)),
            format!("{} picked 1 7", at(52)),
            format!("{} picked 2 8", at(52)),
            format!("{} sends_begin 0 0", at(53)),
            format!("{} sends_end 0 0", at(60)),
        ];
        format!("{}\n{}\n", HEADER, lines.join("\n"))
    }

    fn message(req: u64, due_ms: u64, slowest_ms: u64) -> MessageTiming {
        MessageTiming {
            window: 0,
            req,
            intended_epoch_nanos: 1_000 * MS + due_ms * MS,
            slowest_us: slowest_ms * 1_000,
        }
    }

    #[test]
    fn a_message_is_cut_into_stages_that_add_up_to_its_slowest_delivery() {
        let t = Trace::parse(&trace()).unwrap();
        assert_eq!(t.checkpoints.len(), 1);
        assert_eq!(
            (t.checkpoints[0].frames, t.checkpoints[0].copied),
            (1000, 990)
        );
        // Due at 0 ms, slowest delivery read at 65 ms.
        let s = t.stages(&message(7, 0, 65)).unwrap();
        let ms: Vec<u64> = s.iter().map(|ns| ns / MS).collect();
        // to server 1, service 1, queue 2, sql 1, commit 45 of which checkpoint 40,
        // to fan-out 2, hub 1, sends 7 (53..60), after sends 5 (60..65).
        assert_eq!(ms, [1, 1, 2, 1, 5, 40, 2, 1, 7, 5]);
        assert_eq!(s.iter().sum::<u64>(), 65 * MS);
        // A delivery read before the batch's last send: the sends stage ends at it.
        let s = t.stages(&message(8, 1, 55)).unwrap();
        assert_eq!(s[8] / MS, 3);
        assert_eq!(s[9], 0);
        assert_eq!(s.iter().sum::<u64>(), 55 * MS);
        let (stage, mean) = largest(&mean_ms(&[s]));
        assert_eq!((stage, mean.round()), ("checkpoint", 40.0));
    }

    #[test]
    fn a_message_the_trace_does_not_name_has_no_stages() {
        let t = Trace::parse(&trace()).unwrap();
        assert!(t.stages(&message(9, 0, 10)).is_none());
        // Request 7 due long after its marks: those were another message's.
        assert!(t.stages(&message(7, 10_000, 10)).is_none());
    }

    #[test]
    fn malformed_traces_are_refused_with_the_line() {
        // No header; a short line; a word for a number; an unknown mark.
        assert!(Trace::parse("1 received 1 2\n").is_err());
        let header = HEADER;
        for (line, bad) in [
            ("1 received 1", "1 received 1"),
            ("x received 1 2", "x received 1 2"),
            ("1 stalled 1 2", "1 stalled 1 2"),
        ] {
            let e = Trace::parse(&format!("{header}\n{line}\n")).unwrap_err();
            assert!(format!("{e:#}").contains(bad), "{e:#}");
        }
    }
}
