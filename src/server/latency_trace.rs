//! The opt-in latency trace (`natter-server --trace-latency FILE`, issue 15): timestamps of
//! every socket write's stages, from the read of its frame to the fan-out's last send, and of
//! each WAL checkpoint, so that a slow message can be pinned on one stage of the commit path.
//!
//! Off unless [`start`] was called: every probe is then one atomic load of an empty cell. When
//! on, a probe pushes a small fixed-size record into a shared buffer, and a thread of its own
//! (`natter-trace`) writes the buffer out every [`FLUSH_EVERY`], so the hot path never formats
//! or writes anything. The file's format is described in docs/benchmarks.md ("The latency
//! trace"); `natter-bench steady --trace-latency` reads it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the buffered records are written to the file.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The first line of every trace file: the format's name and version.
pub const HEADER: &str = "# natter latency trace v1: nanos-since-epoch event a b";

/// What a record marks. The name is what the file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A socket's frame was read (a = connection, b = request id); recorded once it parsed (any
    /// request, not only writes), with the time it was read.
    Received,
    /// The socket's write was handed to the store's writer (a = connection, b = request id).
    ToWriter,
    /// The writer began a batch's transaction (a = writes in the batch).
    CommitBegin,
    /// The writer asked SQLite to commit the batch: the SQL is done (a = writes in the batch).
    CommitCall,
    /// The commit returned: the WAL is synced (a = writes in the batch).
    CommitDone,
    /// The write's completion handed it to the fan-out (a = connection, b = request id).
    Published,
    /// The fan-out thread took the write off its queue (a = connection, b = request id).
    Picked,
    /// The fan-out began writing a batch's frames to the sockets: its first send.
    SendsBegin,
    /// The fan-out wrote its batch's last frame: its last send.
    SendsEnd,
    /// A WAL checkpoint began (a = frames in the WAL).
    CheckpointBegin,
    /// The checkpoint ended (a = frames in the WAL, b = frames it copied to the database).
    CheckpointEnd,
}

impl Mark {
    pub const ALL: [Mark; 11] = [
        Mark::Received,
        Mark::ToWriter,
        Mark::CommitBegin,
        Mark::CommitCall,
        Mark::CommitDone,
        Mark::Published,
        Mark::Picked,
        Mark::SendsBegin,
        Mark::SendsEnd,
        Mark::CheckpointBegin,
        Mark::CheckpointEnd,
    ];

    /// The mark a trace file names `name` (what [`Mark::name`] wrote).
    pub fn parse(name: &str) -> Option<Mark> {
        Mark::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Mark::Received => "received",
            Mark::ToWriter => "to_writer",
            Mark::CommitBegin => "commit_begin",
            Mark::CommitCall => "commit_call",
            Mark::CommitDone => "commit_done",
            Mark::Published => "published",
            Mark::Picked => "picked",
            Mark::SendsBegin => "sends_begin",
            Mark::SendsEnd => "sends_end",
            Mark::CheckpointBegin => "checkpoint_begin",
            Mark::CheckpointEnd => "checkpoint_end",
        }
    }
}

/// A point on the trace's clock: nanoseconds since the Unix epoch, read monotonically.
pub type Stamp = u64;

struct Record {
    at: Stamp,
    mark: Mark,
    a: u64,
    b: u64,
}

struct Tracer {
    /// The epoch time of `origin`: stamps are `base + origin.elapsed()`, so they never go back
    /// and another process on this machine can compare them with its own epoch clock.
    base: u64,
    origin: Instant,
    buffer: Mutex<Vec<Record>>,
}

static TRACER: OnceLock<Tracer> = OnceLock::new();

/// The trace could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot write the latency trace to {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("the latency trace is already on")]
    AlreadyOn,
}

/// Start tracing into `path` (created or truncated) for the rest of the process's life.
pub fn start(path: &Path) -> Result<(), TraceError> {
    let file_err = |source| TraceError::File {
        path: path.display().to_string(),
        source,
    };
    let mut out = BufWriter::new(File::create(path).map_err(file_err)?);
    writeln!(out, "{HEADER}").map_err(file_err)?;
    out.flush().map_err(file_err)?;
    let tracer = Tracer {
        base: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        origin: Instant::now(),
        buffer: Mutex::new(Vec::with_capacity(1 << 16)),
    };
    TRACER.set(tracer).map_err(|_| TraceError::AlreadyOn)?;
    std::thread::Builder::new()
        .name("natter-trace".into())
        .spawn(move || flush_loop(out))
        .map_err(file_err)?;
    tracing::info!(path = %path.display(), "latency trace on");
    Ok(())
}

/// Now on the trace's clock, or None when the trace is off (the probes' one check).
#[inline]
pub fn now() -> Option<Stamp> {
    TRACER
        .get()
        .map(|t| t.base + t.origin.elapsed().as_nanos() as u64)
}

/// Record `mark` at `at` (a stamp from [`now`], so the caller can take it before it knows
/// whether the frame is worth recording).
pub fn record_at(at: Stamp, mark: Mark, a: u64, b: u64) {
    if let Some(t) = TRACER.get() {
        t.buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Record { at, mark, a, b });
    }
}

/// Record `mark` now; nothing when the trace is off.
#[inline]
pub fn record(mark: Mark, a: u64, b: u64) {
    if let Some(at) = now() {
        record_at(at, mark, a, b);
    }
}

fn flush_loop(mut out: BufWriter<File>) {
    let Some(tracer) = TRACER.get() else {
        return;
    };
    let mut taken = Vec::with_capacity(1 << 16);
    let mut writing = true;
    loop {
        std::thread::sleep(FLUSH_EVERY);
        std::mem::swap(
            &mut taken,
            &mut *tracer.buffer.lock().unwrap_or_else(|e| e.into_inner()),
        );
        // After a failed write (a full disk) records are still taken and dropped, so the
        // buffer never grows: the trace ends, not the server.
        let records = taken.drain(..);
        if !writing {
            continue;
        }
        let written = records
            .into_iter()
            .try_for_each(|r| writeln!(out, "{} {} {} {}", r.at, r.mark.name(), r.a, r.b))
            .and_then(|()| out.flush());
        if let Err(e) = written {
            tracing::error!(error = %e, "latency trace stopped: cannot write");
            writing = false;
        }
    }
}
