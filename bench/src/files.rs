//! `natter-bench files` (issue 17's figures): upload and download throughput of one large file
//! on loopback against the raw speed of writing the same bytes (with fsync) to the file system
//! the server keeps its blobs on, measured in the same run; the server's RSS growth during the
//! upload (it streams to disk: the growth must stay under 50 MiB); and the time to make the
//! thumbnail of a 12-megapixel JPEG (`natter::server::images::inspect_image`, what an upload of
//! one runs). Prints a Markdown table with the machine and its load.

use std::io::{Cursor, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::procfs;
use crate::target::{self, Launch};

/// The pieces the file is written and sent in.
const CHUNK: usize = 1024 * 1024;
const MIB: f64 = 1024.0 * 1024.0;
/// The largest RSS growth the issue allows during an upload.
const MAX_GROWTH_MIB: f64 = 50.0;

/// What one run measured.
pub struct FilesResult {
    pub bytes: u64,
    /// The raw write speed before the upload and after the download (the machine is shared:
    /// the two show how much it moved meanwhile).
    pub disk_mib_s: [f64; 2],
    pub upload_mib_s: f64,
    pub download_mib_s: f64,
    pub rss_before_mib: f64,
    pub rss_growth_mib: f64,
    pub thumbnail_ms: Vec<f64>,
    pub load_before: String,
    pub load_after: String,
}

/// One MiB of bytes that do not compress (xorshift), the same in every run.
fn chunk() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..CHUNK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Write `bytes` (the chunk over and over) to a new file in `dir`, fsync it: MiB/s.
fn raw_disk(dir: &Path, bytes: u64, chunk: &[u8]) -> Result<f64> {
    let started = Instant::now();
    let mut f = tempfile::NamedTempFile::new_in(dir)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.as_file().sync_all()?;
    Ok(bytes as f64 / MIB / started.elapsed().as_secs_f64())
}

/// Upload `bytes` (the chunk over and over) as one file, sampling the server's RSS every 20 ms:
/// (MiB/s, the file's id, the largest RSS seen in KiB).
async fn upload(
    addr: SocketAddr,
    token: &str,
    pid: u32,
    bytes: u64,
    chunk: &[u8],
) -> Result<(f64, String, u64)> {
    let mut tcp = TcpStream::connect(addr).await?;
    let head = format!(
        "POST /api/files?name=big.bin HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {bytes}\r\n\r\n"
    );
    let started = Instant::now();
    let mut peak = procfs::sample(pid)?.rss_kib;
    let mut last_sample = Instant::now();
    tcp.write_all(head.as_bytes()).await?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        tcp.write_all(&chunk[..n]).await?;
        left -= n as u64;
        if last_sample.elapsed() >= Duration::from_millis(20) {
            peak = peak.max(procfs::sample(pid)?.rss_kib);
            last_sample = Instant::now();
        }
    }
    let answer = read_answer(&mut tcp, |_| {}).await?;
    let secs = started.elapsed().as_secs_f64();
    peak = peak.max(procfs::sample(pid)?.rss_kib);
    let text = String::from_utf8_lossy(&answer);
    if !text.starts_with("HTTP/1.1 201") {
        bail!("the upload was refused: {text}");
    }
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let attachment: natter::protocol::Attachment =
        serde_json::from_str(body).context("the upload's answer")?;
    Ok((bytes as f64 / MIB / secs, attachment.id, peak))
}

/// Read an HTTP/1.1 answer with a Content-Length to its end; `body` sees the body's pieces
/// (not kept). Returns the head (and the first piece of body, for small answers).
async fn read_answer(tcp: &mut TcpStream, mut body: impl FnMut(&[u8])) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; CHUNK];
    let mut head = Vec::new();
    let (head_len, length) = loop {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            bail!("the server closed the connection before answering");
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            let length: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .context("an answer without Content-Length")?;
            break (end + 4, length);
        }
    };
    let mut got = (head.len() - head_len) as u64;
    body(&head[head_len..]);
    while got < length {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            bail!("the answer was cut short after {got} of {length} bytes");
        }
        body(&buf[..n]);
        got += n as u64;
    }
    Ok(head)
}

/// Download file `id` whole and drop its bytes: MiB/s.
async fn download(addr: SocketAddr, token: &str, id: &str, bytes: u64) -> Result<f64> {
    let mut tcp = TcpStream::connect(addr).await?;
    let head = format!(
        "GET /api/files/{id} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    let started = Instant::now();
    tcp.write_all(head.as_bytes()).await?;
    let mut received = 0u64;
    read_answer(&mut tcp, |piece| received += piece.len() as u64).await?;
    let secs = started.elapsed().as_secs_f64();
    if received != bytes {
        bail!("downloaded {received} bytes of {bytes}");
    }
    Ok(bytes as f64 / MIB / secs)
}

/// A 12-megapixel (4000 x 3000) JPEG photo-like gradient with noise, encoded once.
fn twelve_megapixel_jpeg() -> Result<Vec<u8>> {
    let mut x: u32 = 12345;
    let img = image::RgbImage::from_fn(4000, 3000, |px, py| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let noise = (x % 32) as u8;
        image::Rgb([
            ((px / 16) as u8).wrapping_add(noise),
            ((py / 12) as u8).wrapping_add(noise),
            ((px + py) / 28) as u8,
        ])
    });
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&img)?;
    Ok(out.into_inner())
}

/// Run the whole benchmark with a file of `bytes`.
pub async fn run(launch: &Launch, bytes: u64, thumbnail_runs: usize) -> Result<FilesResult> {
    let load_before = procfs::loadavg();
    let env = [
        ("NATTER_MAX_UPLOAD", bytes.to_string()),
        ("NATTER_UPLOAD_QUOTA", "0".to_string()),
        // A loaded machine may pause a body for longer than the default 10 s.
        ("NATTER_BODY_TIMEOUT", "120".to_string()),
    ];
    let server = target::start_natter_with(launch, None, &env).await?;
    let token = target::register_users(server.addr, 1, "files")
        .await?
        .remove(0);
    let chunk = chunk();
    let dir = server
        .data_dir()
        .context("natter's data directory")?
        .to_path_buf();
    let disk = |dir: std::path::PathBuf, chunk: Vec<u8>| {
        tokio::task::spawn_blocking(move || raw_disk(&dir, bytes, &chunk))
    };
    let disk_before = disk(dir.clone(), chunk.clone()).await??;
    // Settled after registration (argon2's memory is returned by then).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = procfs::sample(server.pid)?.rss_kib;
    let (upload_mib_s, id, peak) = upload(server.addr, &token, server.pid, bytes, &chunk).await?;
    let download_mib_s = download(server.addr, &token, &id, bytes).await?;
    let disk_after = disk(dir, chunk).await??;
    server.stop().await;

    let jpeg = twelve_megapixel_jpeg()?;
    let mut thumbnail_ms = Vec::new();
    for _ in 0..thumbnail_runs.max(1) {
        let started = Instant::now();
        let inspected = natter::server::images::inspect_image(Cursor::new(&jpeg))
            .map_err(|e| anyhow::anyhow!("thumbnail: {e}"))?;
        thumbnail_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        if (inspected.width, inspected.height) != (4000, 3000) {
            bail!(
                "the JPEG was read as {}x{}",
                inspected.width,
                inspected.height
            );
        }
    }
    Ok(FilesResult {
        bytes,
        disk_mib_s: [disk_before, disk_after],
        upload_mib_s,
        download_mib_s,
        rss_before_mib: before as f64 / 1024.0,
        rss_growth_mib: peak.saturating_sub(before) as f64 / 1024.0,
        thumbnail_ms,
        load_before,
        load_after: procfs::loadavg(),
    })
}

/// The result as the Markdown table docs/benchmarks.md keeps.
pub fn table(r: &FilesResult, machine: &str) -> String {
    let mut ms = r.thumbnail_ms.clone();
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    let verdict = if r.rss_growth_mib < MAX_GROWTH_MIB {
        "under"
    } else {
        "OVER"
    };
    format!(
        "{machine}\n\nLoad average (1, 5, 15 min): {} before, {} after.\n\n\
         | figure | value |\n| --- | --- |\n\
         | file | {:.0} MiB |\n\
         | raw disk write (same bytes, fsync, same file system), before / after | {:.0} / {:.0} MiB/s |\n\
         | upload on loopback (streamed to disk, hashed, fsync, renamed) | {:.0} MiB/s ({:.0}% of the disk's mean) |\n\
         | download on loopback | {:.0} MiB/s |\n\
         | server RSS before the upload | {:.1} MiB |\n\
         | server RSS growth during the upload | {:.1} MiB ({verdict} the 50 MiB bound) |\n\
         | thumbnail of a 12-megapixel JPEG (median of {}) | {median:.0} ms |\n",
        r.load_before,
        r.load_after,
        r.bytes as f64 / MIB,
        r.disk_mib_s[0],
        r.disk_mib_s[1],
        r.upload_mib_s,
        200.0 * r.upload_mib_s / (r.disk_mib_s[0] + r.disk_mib_s[1]),
        r.download_mib_s,
        r.rss_before_mib,
        r.rss_growth_mib,
        ms.len(),
    )
}
