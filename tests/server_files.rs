//! Files (issue 17): upload, download, thumbnails, and who may read what, against a real server
//! with its blob store in a temporary data directory. The bad inputs tried, by name: a file
//! over the limit (413 before the body is sent), a truncated body, a Content-Length larger than
//! what is sent, no Content-Length, 0 bytes, a decompression-bomb PNG, a corrupt image,
//! polyglot HTML/SVG files, a file name with path separators, control characters and a
//! right-to-left override, too many uploads, an exhausted quota; and on `send`: another user's
//! file id, an id that names no file, the same file twice, more than 10 files. After each the
//! server keeps serving others.

mod support;

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::{Delay, Frame, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use natter::protocol::{
    ApiError, Attachment, ClientFrame, ConvSeq, ErrorCode, ServerFrame, Target,
};
use reqwest::header::HeaderMap;
use support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

/// A server's answer to an HTTP call.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn attachment(&self) -> Attachment {
        assert_eq!(
            self.status,
            201,
            "upload: {}",
            String::from_utf8_lossy(&self.body)
        );
        serde_json::from_slice(&self.body).expect("attachment json")
    }

    fn error(&self) -> ApiError {
        serde_json::from_slice(&self.body).expect("ApiError json")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn answer(resp: reqwest::Response) -> Answer {
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.bytes().await.expect("body").to_vec(),
    }
}

async fn upload(server: &TestServer, token: &str, name: &str, bytes: &[u8]) -> Answer {
    let resp = reqwest::Client::new()
        .post(server.http_url("/api/files"))
        .query(&[("name", name)])
        .bearer_auth(token)
        .header("content-type", "text/html") // never believed
        .body(bytes.to_vec())
        .send()
        .await
        .expect("upload");
    answer(resp).await
}

async fn get(server: &TestServer, token: &str, path: &str, range: Option<&str>) -> Answer {
    let mut req = reqwest::Client::new()
        .get(server.http_url(path))
        .bearer_auth(token);
    if let Some(range) = range {
        req = req.header("range", range);
    }
    answer(req.send().await.expect("download")).await
}

fn file_path(a: &Attachment) -> String {
    format!("/api/files/{}", a.id)
}

fn thumb_path(a: &Attachment) -> String {
    format!("/api/files/{}/thumbnail", a.id)
}

/// The blobs stored (files under the blob directory, staging excluded).
fn stored_blobs(data_dir: &Path) -> usize {
    let root = data_dir.join("blobs");
    std::fs::read_dir(&root)
        .map(|dirs| {
            dirs.filter_map(Result::ok)
                .filter(|d| d.file_name() != "staging")
                .map(|d| std::fs::read_dir(d.path()).map_or(0, |f| f.count()))
                .sum()
        })
        .unwrap_or(0)
}

/// Files left in the staging directory (an interrupted upload must leave none).
fn staged(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("blobs").join("staging")).map_or(0, |f| f.count())
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, 7])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A JPEG carrying an EXIF block with a GPS position marker in it.
fn jpeg_with_exif(marker: &[u8]) -> Vec<u8> {
    let img = RgbImage::from_fn(640, 480, |x, y| Rgb([(x / 3) as u8, (y / 2) as u8, 90]));
    let mut plain = Vec::new();
    img.write_with_encoder(JpegEncoder::new_with_quality(&mut plain, 85))
        .unwrap();
    // APP1: "Exif\0\0", a little-endian TIFF header, an IFD of no entries and no next IFD, then
    // the marker bytes.
    let mut exif = b"Exif\0\0II*\0\x08\0\0\0\0\0\0\0\0\0".to_vec();
    exif.extend_from_slice(marker);
    let len = (exif.len() + 2) as u16;
    let mut out = plain[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&exif);
    out.extend_from_slice(&plain[2..]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// A decompression bomb: a few hundred bytes of PNG declaring `side` x `side` pixels.
fn bomb_png(side: u32) -> Vec<u8> {
    let mut ihdr = side.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &ihdr));
    // A zlib stream's start: the decoder would inflate it to side * side * 4 bytes.
    out.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0xed, 0xc1, 0x01, 0x0d, 0x00, 0x00],
    ));
    out.extend(chunk(b"IEND", &[]));
    out
}

fn animated_gif() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut out);
        for colour in [[255, 0, 0, 255], [0, 0, 255, 255]] {
            let frame = Frame::from_parts(
                RgbaImage::from_pixel(400, 200, Rgba(colour)),
                0,
                0,
                Delay::from_numer_denom_ms(100, 1),
            );
            encoder.encode_frame(frame).unwrap();
        }
    }
    out
}

/// Send a raw request head and `body` on a new connection; with `finish`, close the sending
/// half after it. Returns the status line's code and the whole answer.
async fn raw(addr: SocketAddr, head: &str, body: &[u8], finish: bool) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(head.as_bytes()).await.expect("write head");
    tcp.write_all(body).await.expect("write body");
    if finish {
        tcp.shutdown().await.expect("shutdown");
    }
    let mut text = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut text)).await;
    let text = String::from_utf8_lossy(&text).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn upload_head(addr: SocketAddr, token: &str, length: Option<u64>) -> String {
    let length = length.map_or("Transfer-Encoding: chunked\r\n".to_string(), |n| {
        format!("Content-Length: {n}\r\n")
    });
    format!(
        "POST /api/files?name=f.bin HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         {length}\r\n"
    )
}

#[tokio::test]
async fn an_upload_is_sniffed_thumbnailed_downloaded_and_stored_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let bytes = png(800, 600);

    let first = upload(&server, &alice.token, "holiday.png", &bytes).await;
    let a = first.attachment();
    assert_eq!(a.name, "holiday.png");
    assert_eq!(
        a.media_type, "image/png",
        "sniffed, not the client's text/html"
    );
    assert_eq!(a.size, bytes.len() as u64);
    assert_eq!((a.width, a.height), (Some(800), Some(600)));
    assert!(a.thumbnail.as_ref().is_some_and(|t| t.len() == 64), "{a:?}");

    // The uploader downloads it whole, with the headers that keep a browser from rendering it.
    let whole = get(&server, &alice.token, &file_path(&a), None).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, bytes);
    assert_eq!(whole.header("content-type"), "image/png");
    assert_eq!(whole.header("x-content-type-options"), "nosniff");
    assert_eq!(
        whole.header("content-disposition"),
        "attachment; filename=\"holiday.png\"; filename*=UTF-8''holiday.png"
    );
    assert_eq!(whole.header("accept-ranges"), "bytes");

    // A range of it: 206 with exactly those bytes.
    let part = get(&server, &alice.token, &file_path(&a), Some("bytes=100-199")).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, bytes[100..200]);
    assert_eq!(
        part.header("content-range"),
        format!("bytes 100-199/{}", bytes.len())
    );
    let tail = get(&server, &alice.token, &file_path(&a), Some("bytes=-10")).await;
    assert_eq!(tail.body, bytes[bytes.len() - 10..]);
    let beyond = get(
        &server,
        &alice.token,
        &file_path(&a),
        Some(&format!("bytes={}-", bytes.len())),
    )
    .await;
    assert_eq!(beyond.status, 416);
    assert_eq!(
        beyond.header("content-range"),
        format!("bytes */{}", bytes.len())
    );

    // The thumbnail fits the 320 px box, keeping the aspect ratio.
    let thumb = get(&server, &alice.token, &thumb_path(&a), None).await;
    assert_eq!(thumb.status, 200);
    assert_eq!(thumb.header("content-type"), "image/jpeg");
    let decoded = image::load_from_memory(&thumb.body).expect("thumbnail decodes");
    assert_eq!((decoded.width(), decoded.height()), (320, 240));

    // The same bytes again: a new upload record, but the blob store keeps them once (one blob
    // for the file, one for its thumbnail).
    let again = upload(&server, &alice.token, "copy.png", &bytes)
        .await
        .attachment();
    assert_ne!(again.id, a.id);
    assert_eq!(again.thumbnail, a.thumbnail);
    assert_eq!(stored_blobs(server.dir.path()), 2);

    // Bob never was in a conversation with it: 404 for the file and its thumbnail, the same
    // answer as for an id that does not exist.
    for path in [
        format!("/api/files/{}", a.id),
        format!("/api/files/{}/thumbnail", a.id),
        "/api/files/0123456789abcdef0123456789abcdef".to_string(),
    ] {
        let refused = get(&server, &bob.token, &path, None).await;
        assert_eq!(refused.status, 404, "{path}");
        assert_eq!(refused.error().code, ErrorCode::NotFound);
    }
    // Without a token, nobody.
    let anonymous = reqwest::get(server.http_url(&file_path(&a))).await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn bad_uploads_are_refused_clearly_and_leave_nothing() {
    let server = TestServer::start_with(|c| {
        c.max_upload_bytes = 64 * 1024;
        c.body_timeout = Duration::from_secs(1);
    })
    .await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let addr = server.addr;

    // Refused from the head or as the body arrives: (what, Content-Length (None: chunked),
    // the bytes sent, whether the sending half is closed after them, status, words of the answer).
    type Case = (&'static str, Option<u64>, &'static [u8], bool, u16, String);
    let cases: [Case; 4] = [
        (
            "over the limit: 413 with the JSON error from the head alone, no body byte sent",
            Some(65 * 1024),
            b"",
            false,
            413,
            format!(
                "\"code\":\"too_long\",\"message\":\"files are at most {} bytes",
                64 * 1024
            ),
        ),
        (
            "a truncated body: 1000 bytes declared, 400 sent, then the connection closed",
            Some(1000),
            &[b'x'; 400],
            true,
            400,
            "cut short after 400 of 1000 bytes".into(),
        ),
        (
            "a Content-Length larger than what is sent, the connection kept open",
            Some(5000),
            &[b'y'; 100],
            false,
            400,
            "stalled".into(),
        ),
        (
            "no Content-Length (chunked): the size must be known before the body",
            None,
            b"0\r\n\r\n",
            false,
            411,
            "Content-Length".into(),
        ),
    ];
    for (what, length, body, finish, status, says) in cases {
        let (got, text) = raw(addr, &upload_head(addr, &alice.token, length), body, finish).await;
        assert_eq!(got, status, "{what}: {text}");
        assert!(text.contains(&says), "{what}: {text}");
    }

    // 0 bytes.
    let empty = upload(&server, &alice.token, "empty.txt", b"").await;
    assert_eq!(empty.status, 400);
    assert!(empty.error().message.contains("empty"));

    // A decompression bomb: a tiny PNG declaring 100,000 x 100,000 pixels.
    let bomb = bomb_png(100_000);
    assert!(bomb.len() < 100);
    let refused = upload(&server, &alice.token, "bomb.png", &bomb).await;
    assert_eq!(refused.status, 400, "{:?}", refused.error());
    assert_eq!(refused.error().code, ErrorCode::BadRequest);
    assert!(
        refused.error().message.contains("100000x100000"),
        "{:?}",
        refused.error()
    );

    // Bytes that claim to be a PNG and are not one.
    let mut corrupt = png(50, 50);
    corrupt.truncate(60);
    let refused = upload(&server, &alice.token, "broken.png", &corrupt).await;
    assert_eq!(refused.status, 400);
    assert!(refused.error().message.contains("cannot be read"));

    // None of these left a blob or a staged file behind.
    assert_eq!(stored_blobs(server.dir.path()), 0);
    assert_eq!(staged(server.dir.path()), 0);

    // The server kept serving: bob uploads and downloads as if nothing happened.
    let fine = upload(&server, &bob.token, "fine.txt", b"hello")
        .await
        .attachment();
    assert_eq!(fine.media_type, "application/octet-stream");
    let back = get(&server, &bob.token, &file_path(&fine), None).await;
    assert_eq!(back.body, b"hello");
    assert_eq!(stored_blobs(server.dir.path()), 1);
}

#[tokio::test]
async fn hostile_files_and_names_are_served_as_inert_bytes() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;

    // Polyglots: an SVG with a script, an HTML page, and a GIF header followed by HTML. None is
    // served as something a browser renders.
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>"#;
    let html = b"<!doctype html><html><script>alert(document.cookie)</script></html>";
    for (name, bytes) in [("a.svg", &svg[..]), ("page.html", &html[..])] {
        let a = upload(&server, &alice.token, name, bytes)
            .await
            .attachment();
        assert_eq!(a.media_type, "application/octet-stream", "{name}");
        assert_eq!(a.thumbnail, None);
        let served = get(&server, &alice.token, &file_path(&a), None).await;
        assert_eq!(served.header("content-type"), "application/octet-stream");
        assert_eq!(served.header("x-content-type-options"), "nosniff");
        assert!(served
            .header("content-disposition")
            .starts_with("attachment;"));
        assert!(served.header("content-security-policy").contains("sandbox"));
        assert_eq!(served.body, bytes);
    }
    let mut gif_html = b"GIF89a".to_vec();
    gif_html.extend_from_slice(html);
    let refused = upload(&server, &alice.token, "x.gif", &gif_html).await;
    assert_eq!(refused.status, 400, "a GIF that does not decode is refused");

    // A name with path separators, control characters and a right-to-left override.
    let hostile = "../../etc/\u{1b}[2Jre\u{202e}gnp.exe\r\n";
    let a = upload(&server, &alice.token, hostile, b"MZ fake exe")
        .await
        .attachment();
    assert_eq!(a.name, "[2Jregnp.exe");
    let served = get(&server, &alice.token, &file_path(&a), None).await;
    assert_eq!(
        served.header("content-disposition"),
        "attachment; filename=\"_2Jregnp.exe\"; filename*=UTF-8''%5B2Jregnp.exe"
    );
    // A name of non-ASCII letters travels percent-encoded.
    let a = upload(&server, &alice.token, "照片 1.txt", b"text")
        .await
        .attachment();
    assert_eq!(a.name, "照片 1.txt");
    let served = get(&server, &alice.token, &file_path(&a), None).await;
    assert_eq!(
        served.header("content-disposition"),
        "attachment; filename=\"__ 1.txt\"; filename*=UTF-8''%E7%85%A7%E7%89%87%201.txt"
    );
}

#[tokio::test]
async fn thumbnails_strip_exif_and_animations_get_a_still() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;

    let marker = b"GPS 51.5007N 0.1246W SECRET";
    let jpeg = jpeg_with_exif(marker);
    assert!(jpeg.windows(marker.len()).any(|w| w == marker));
    let a = upload(&server, &alice.token, "photo.jpg", &jpeg)
        .await
        .attachment();
    assert_eq!(a.media_type, "image/jpeg");
    assert_eq!((a.width, a.height), (Some(640), Some(480)));
    let thumb = get(&server, &alice.token, &thumb_path(&a), None).await;
    assert_eq!(thumb.status, 200);
    assert!(!thumb.body.windows(marker.len()).any(|w| w == marker));
    assert!(!thumb.body.windows(4).any(|w| w == b"Exif"));
    let decoded = image::load_from_memory(&thumb.body).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (320, 240));
    // The original is the uploader's file, kept as it was.
    let whole = get(&server, &alice.token, &file_path(&a), None).await;
    assert_eq!(whole.body, jpeg);

    let gif = animated_gif();
    let a = upload(&server, &alice.token, "anim.gif", &gif)
        .await
        .attachment();
    assert_eq!(a.media_type, "image/gif");
    assert_eq!((a.width, a.height), (Some(400), Some(200)));
    let thumb = get(&server, &alice.token, &thumb_path(&a), None).await;
    // A still (JPEG), of the first frame (red).
    assert_eq!(thumb.header("content-type"), "image/jpeg");
    let still = image::load_from_memory(&thumb.body).unwrap().to_rgb8();
    let Rgb([r, _, b]) = *still.get_pixel(10, 10);
    assert!(r > 200 && b < 60, "first frame is red: {r} {b}");
}

#[tokio::test]
async fn uploads_are_paced_and_counted_against_a_quota() {
    let server = TestServer::start_with(|c| {
        c.uploads_per_user = 3;
        c.upload_refill = Duration::from_secs(3600);
        c.upload_quota_bytes = 250;
    })
    .await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;

    upload(&server, &alice.token, "a", &[1; 100])
        .await
        .attachment();
    upload(&server, &alice.token, "b", &[2; 100])
        .await
        .attachment();
    // 200 of 250 bytes used: 100 more would pass the quota.
    let over = upload(&server, &alice.token, "c", &[3; 100]).await;
    assert_eq!(over.status, 413);
    assert!(over.error().message.contains("may total 250 bytes"));
    // 50 fit exactly.
    upload(&server, &alice.token, "d", &[4; 50])
        .await
        .attachment();

    // Bob's quota and pace are his own: three uploads in a row, then the fourth must wait.
    for name in ["e", "f", "g"] {
        upload(&server, &bob.token, name, &[5; 10])
            .await
            .attachment();
    }
    let paced = upload(&server, &bob.token, "h", &[6; 10]).await;
    assert_eq!(paced.status, 429);
    assert_eq!(paced.error().code, ErrorCode::RateLimited);
    assert!(paced.header("retry-after").parse::<u64>().unwrap() > 0);
}

/// Answer of a raw upload whose head was sent: Some when the server answered within `wait`
/// (a refusal from the head), None while it waits for the body (the upload was admitted).
async fn answered_within(tcp: &mut TcpStream, wait: Duration) -> Option<(u16, String)> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(wait, tcp.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok())?;
    Some((status, text))
}

/// The status code of the answer to a raw upload whose body was sent whole. (The sending half
/// stays open: the server drops a request whose client closed it.)
async fn status_after(mut tcp: TcpStream) -> u16 {
    answered_within(&mut tcp, Duration::from_secs(30))
        .await
        .map_or(0, |(status, _)| status)
}

#[tokio::test]
async fn concurrent_uploads_cannot_pass_the_quota_together() {
    // Eight uploads of 300 bytes start at once against a quota of 1000: the quota is checked
    // and reserved from each head, before any body arrives, so exactly three are admitted and
    // five refused, although none of the admitted has finished (they all saw 0 bytes used).
    let server = TestServer::start_with(|c| {
        c.uploads_per_user = 100;
        c.upload_quota_bytes = 1000;
        // The admitted wait for their bodies while the test goes on.
        c.body_timeout = Duration::from_secs(120);
    })
    .await;
    let alice = server.register("alice").await;
    let head = upload_head(server.addr, &alice.token, Some(300));
    let mut admitted = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        tcp.write_all(head.as_bytes()).await.expect("head");
        match answered_within(&mut tcp, Duration::from_secs(2)).await {
            None => admitted.push(tcp),
            Some((status, text)) => {
                assert_eq!(status, 413, "{text}");
                assert!(text.contains("may total 1000 bytes"), "{text}");
                refused += 1;
            }
        }
    }
    assert_eq!((admitted.len(), refused), (3, 5));

    // One admitted upload is cut short: its reservation ends, and its 300 bytes are free again
    // while the other two are still under way.
    let mut third = admitted.pop().unwrap();
    third.write_all(&[b'c'; 100]).await.expect("part");
    third.shutdown().await.expect("cut short");
    assert_eq!(status_after(third).await, 400);
    upload(&server, &alice.token, "fits.bin", &[b'd'; 400])
        .await
        .attachment();
    // 300 + 300 under way and 400 recorded: not one byte more.
    let full = upload(&server, &alice.token, "one.bin", b"e").await;
    assert_eq!(full.status, 413);
    assert_eq!(full.error().code, ErrorCode::TooLong);

    // The two under way finish and are recorded.
    for (i, mut tcp) in admitted.into_iter().enumerate() {
        tcp.write_all(&[b'a' + i as u8; 300]).await.expect("body");
        assert_eq!(status_after(tcp).await, 201);
    }
    assert_eq!(staged(server.dir.path()), 0);
    // Another user's quota is their own.
    let bob = server.register("bob").await;
    upload(&server, &bob.token, "bob.bin", &[b'b'; 1000])
        .await
        .attachment();
}

/// Where the blob store keeps blob `hex`.
fn blob_file(data_dir: &Path, hex: &str) -> std::path::PathBuf {
    data_dir.join("blobs").join(&hex[..2]).join(&hex[2..])
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn uploads_no_message_carries_are_swept_after_the_grace_with_bytes_nothing_else_names() {
    let clock = natter::server::Clock::manual();
    let server = TestServer::start_with(|c| {
        c.clock = clock.clone();
        c.unattached_grace = Duration::from_secs(3600);
        c.upload_sweep_every = Duration::from_millis(50);
    })
    .await;
    let dir = server.dir.path().to_path_buf();
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut alice_ws = server.connect(&alice.token).await;
    let general = alice_ws.general();

    // Sent in a message: kept.
    let kept = upload(&server, &alice.token, "kept.txt", b"kept bytes")
        .await
        .attachment();
    alice_ws
        .event(send_files(Target::Conv(general), "", &[&kept.id]))
        .await
        .expect("sent");
    // Never sent: an image, so its thumbnail goes with it.
    let lonely_bytes = png(300, 200);
    let lonely = upload(&server, &alice.token, "lonely.png", &lonely_bytes)
        .await
        .attachment();
    let lonely_thumb = lonely.thumbnail.clone().expect("a thumbnail");
    // Never sent, but the same bytes as a file Bob sent: the row goes, the bytes stay.
    let twin = upload(&server, &alice.token, "twin.txt", b"twin bytes")
        .await
        .attachment();
    let sent_twin = upload(&server, &bob.token, "twin.txt", b"twin bytes")
        .await
        .attachment();
    let mut bob_ws = server.connect(&bob.token).await;
    bob_ws
        .event(send_files(Target::Conv(general), "", &[&sent_twin.id]))
        .await
        .expect("sent");
    // Never sent, but the same bytes as Alice's profile picture: the picture stays.
    let set = set_avatar(&server, &alice.token, &png(64, 64)).await;
    assert_eq!(set.status, 200, "{}", String::from_utf8_lossy(&set.body));
    let user: natter::protocol::User = serde_json::from_slice(&set.body).unwrap();
    let picture_path = format!("/api/avatars/{}", user.avatar_image.expect("a picture"));
    let picture = get(&server, &bob.token, &picture_path, None).await;
    assert_eq!(picture.status, 200);
    let copy = upload(&server, &alice.token, "copy.jpg", &picture.body)
        .await
        .attachment();
    // Sent, then the message deleted: no message carries it any more.
    let retracted = upload(&server, &alice.token, "oops.txt", b"retracted bytes")
        .await
        .attachment();
    let sent = alice_ws
        .event(send_files(Target::Conv(general), "", &[&retracted.id]))
        .await
        .expect("sent");
    alice_ws
        .event(|id| ClientFrame::Delete {
            id,
            conv: general,
            target: sent.seq,
            client_msg_id: Uuid::new_v4(),
        })
        .await
        .expect("deleted");

    let readable = |a: &Attachment| {
        let (server, token, path) = (&server, alice.token.clone(), file_path(a));
        async move { get(server, &token, &path, None).await.status == 200 }
    };
    // Within the grace, several sweeps later, everything is there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for a in [&kept, &lonely, &twin, &copy, &retracted] {
        assert!(readable(a).await, "{} kept within the grace", a.name);
    }

    // Past the grace: the next sweep removes what no message carries.
    clock.advance(Duration::from_secs(3601));
    let fresh = upload(&server, &alice.token, "fresh.txt", b"fresh bytes")
        .await
        .attachment();
    // A sweep deletes the rows in one write and the bytes they freed after it commits, so
    // wait for both: a file can be unreadable a moment before its blob is off the disk.
    let doomed_blobs = [
        blob_file(&dir, &sha256_hex(&lonely_bytes)),
        blob_file(&dir, &lonely_thumb),
        blob_file(&dir, &sha256_hex(b"retracted bytes")),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while readable(&lonely).await || doomed_blobs.iter().any(|b| b.exists()) {
        assert!(tokio::time::Instant::now() < deadline, "never swept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for a in [&twin, &copy, &retracted] {
        assert_eq!(
            get(&server, &alice.token, &file_path(a), None).await.status,
            404,
            "{} swept",
            a.name
        );
    }
    // What something else names stays: the file Bob sent, the picture, and a message's file.
    let bobs = get(&server, &alice.token, &file_path(&sent_twin), None).await;
    assert_eq!(
        (bobs.status, bobs.body.as_slice()),
        (200, &b"twin bytes"[..])
    );
    assert_eq!(
        get(&server, &bob.token, &picture_path, None).await.body,
        picture.body
    );
    let kept_now = get(&server, &bob.token, &file_path(&kept), None).await;
    assert_eq!(
        (kept_now.status, kept_now.body.as_slice()),
        (200, &b"kept bytes"[..])
    );
    // An upload younger than the grace stays.
    assert!(readable(&fresh).await);
    // Left: kept, Bob's twin, the picture, fresh.
    assert_eq!(stored_blobs(&dir), 4);
}

/// A `send` with files, as a client builds it.
fn send_files(target: Target, text: &str, ids: &[&str]) -> impl FnOnce(u64) -> ClientFrame {
    let (text, attachments) = (
        text.to_string(),
        ids.iter().map(|s| s.to_string()).collect(),
    );
    move |id| ClientFrame::Send {
        id,
        target,
        client_msg_id: Uuid::new_v4(),
        text,
        reply_to: None,
        attachments,
    }
}

#[tokio::test]
async fn a_dm_carries_files_its_members_download_and_nobody_else() {
    let server = TestServer::start().await;
    let (alice, bob, carol) = (
        server.register("alice").await,
        server.register("bob").await,
        server.register("carol").await,
    );
    let mut alice_ws = server.connect(&alice.token).await;
    let mut bob_ws = server.connect(&bob.token).await;
    let mut carol_ws = server.connect(&carol.token).await;
    let bytes = png(400, 300);
    let photo = upload(&server, &alice.token, "photo.png", &bytes)
        .await
        .attachment();
    let notes = upload(&server, &alice.token, "notes.txt", b"notes")
        .await
        .attachment();
    // Before a message carries it, only its uploader may read it.
    assert_eq!(
        get(&server, &bob.token, &file_path(&photo), None)
            .await
            .status,
        404
    );

    // Files alone, no text, as a DM: `sent` carries their records in order.
    let cmid = Uuid::new_v4();
    let ids = vec![photo.id.clone(), notes.id.clone()];
    let frame = |id| ClientFrame::Send {
        id,
        target: Target::To("bob".into()),
        client_msg_id: cmid,
        text: String::new(),
        reply_to: None,
        attachments: ids.clone(),
    };
    let sent = alice_ws.event(frame).await.expect("sent");
    assert_eq!(sent.text, "");
    assert_eq!(sent.attachments, vec![photo.clone(), notes.clone()]);
    // A retry is the same message, files included.
    let again = alice_ws.event(frame).await.expect("retry");
    assert_eq!(again, sent);

    // Bob hears it live, and history and resume carry the files too.
    let pushed = bob_ws
        .wait_for(|f| matches!(f, ServerFrame::Message { .. }))
        .await;
    let ServerFrame::Message { message } = pushed else {
        unreachable!()
    };
    assert_eq!(message, sent);
    assert_eq!(bob_ws.all_history(sent.conv).await, vec![sent.clone()]);
    let synced = bob_ws
        .request(|id| ClientFrame::Sync {
            id,
            since: vec![ConvSeq {
                conv: sent.conv,
                seq: 0,
            }],
        })
        .await;
    assert!(synced.is_ok(), "{synced:?}");
    let batch = bob_ws
        .wait_for(|f| matches!(f, ServerFrame::Batch { conv, .. } if *conv == sent.conv))
        .await;
    let ServerFrame::Batch { messages, .. } = batch else {
        unreachable!()
    };
    assert_eq!(messages, vec![sent.clone()]);

    // Bob, a member of the DM, downloads both files and the thumbnail.
    assert_eq!(
        get(&server, &bob.token, &file_path(&photo), None)
            .await
            .body,
        bytes
    );
    assert_eq!(
        get(&server, &bob.token, &file_path(&notes), None)
            .await
            .body,
        b"notes"
    );
    let thumb = get(&server, &bob.token, &thumb_path(&photo), None).await;
    assert_eq!(thumb.status, 200);
    // Carol, not in the DM, gets 404 for the file and its thumbnail.
    for path in [file_path(&photo), thumb_path(&photo), file_path(&notes)] {
        let refused = get(&server, &carol.token, &path, None).await;
        assert_eq!(refused.status, 404, "{path}");
    }

    // Bad attachments, by name, each refused with `invalid_attachment` and nothing sent:
    let carols = upload(&server, &carol.token, "mine.txt", b"carol's")
        .await
        .attachment();
    let eleven: Vec<String> = (0..11).map(|i| format!("{i:032x}")).collect();
    let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
    let general = bob_ws.general();
    let refusals: [(&str, Target, Vec<&str>); 4] = [
        // a file someone else uploaded, even one bob may download;
        (
            "alice's file",
            Target::Conv(general),
            vec![photo.id.as_str()],
        ),
        (
            "carol's file",
            Target::To("alice".into()),
            vec![carols.id.as_str()],
        ),
        // an id that names no file;
        (
            "no such file",
            Target::Conv(general),
            vec!["0123456789abcdef0123456789abcdef"],
        ),
        // more than the limit.
        ("eleven files", Target::Conv(general), eleven),
    ];
    for (what, target, ids) in refusals {
        let refused = bob_ws.event(send_files(target, "look", &ids)).await;
        let Err((code, message)) = refused else {
            panic!("{what}: {refused:?}")
        };
        assert_eq!(code, ErrorCode::InvalidAttachment, "{what}: {message}");
    }
    // The same file twice.
    let twice = alice_ws
        .event(send_files(
            Target::To("bob".into()),
            "",
            &[notes.id.as_str(), notes.id.as_str()],
        ))
        .await;
    assert_eq!(twice.unwrap_err().0, ErrorCode::InvalidAttachment);
    // Empty text without files is still refused.
    let empty = alice_ws
        .event(send_files(Target::To("bob".into()), "", &[]))
        .await;
    assert_eq!(empty.unwrap_err().0, ErrorCode::BadRequest);
    // Carol still cannot read alice's photo, and the server kept serving: a text goes through.
    assert_eq!(
        get(&server, &carol.token, &file_path(&photo), None)
            .await
            .status,
        404
    );
    let hello = carol_ws.send_text(general, "still here").await;
    assert_eq!(hello.text, "still here");

    // Deleting the message takes its files from it: bob loses access, alice keeps hers.
    alice_ws
        .event(|id| ClientFrame::Delete {
            id,
            conv: sent.conv,
            target: sent.seq,
            client_msg_id: Uuid::new_v4(),
        })
        .await
        .expect("deleted");
    assert_eq!(
        get(&server, &bob.token, &file_path(&photo), None)
            .await
            .status,
        404
    );
    assert_eq!(
        get(&server, &alice.token, &file_path(&photo), None)
            .await
            .status,
        200
    );
    let history = bob_ws.all_history(sent.conv).await;
    assert!(
        history[0].deleted && history[0].attachments.is_empty(),
        "{history:?}"
    );
}

#[tokio::test]
async fn a_file_posted_in_a_room_is_readable_by_its_members() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut alice_ws = server.connect(&alice.token).await;
    let general = alice_ws.general();
    let doc = upload(&server, &alice.token, "minutes.pdf", b"%PDF-1.7 minutes")
        .await
        .attachment();
    assert_eq!(doc.media_type, "application/pdf");
    let sent = alice_ws
        .event(send_files(
            Target::Conv(general),
            "the minutes",
            &[doc.id.as_str()],
        ))
        .await
        .expect("sent");
    assert_eq!(sent.attachments, vec![doc.clone()]);
    let served = get(&server, &bob.token, &file_path(&doc), None).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), "application/pdf");
    assert_eq!(served.body, b"%PDF-1.7 minutes");
    // A PDF has no thumbnail: 404, as for any file without one.
    assert_eq!(
        get(&server, &bob.token, &thumb_path(&doc), None)
            .await
            .status,
        404
    );
}

/// `DELETE /api/account/avatar`.
async fn clear_avatar(server: &TestServer, token: &str) -> Answer {
    let resp = reqwest::Client::new()
        .delete(server.http_url("/api/account/avatar"))
        .bearer_auth(token)
        .send()
        .await
        .expect("avatar removal");
    answer(resp).await
}

async fn set_avatar(server: &TestServer, token: &str, bytes: &[u8]) -> Answer {
    let resp = reqwest::Client::new()
        .post(server.http_url("/api/account/avatar"))
        .bearer_auth(token)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("avatar upload");
    answer(resp).await
}

#[tokio::test]
async fn a_profile_picture_is_cropped_square_and_everyone_sharing_a_room_sees_it_live() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let mut bob_ws = server.connect(&bob.token).await;

    // A wide image: the centre square is kept, at 256 x 256.
    let wide = RgbImage::from_fn(600, 300, |x, _| {
        if (150..450).contains(&x) {
            Rgb([0, 200, 0])
        } else {
            Rgb([200, 0, 0])
        }
    });
    let mut bytes = Cursor::new(Vec::new());
    wide.write_to(&mut bytes, ImageFormat::Png).unwrap();
    let set = set_avatar(&server, &alice.token, &bytes.into_inner()).await;
    assert_eq!(set.status, 200, "{}", String::from_utf8_lossy(&set.body));
    let user: natter::protocol::User = serde_json::from_slice(&set.body).unwrap();
    let image = user.avatar_image.clone().expect("a picture");

    // Bob shares `general` with alice: he hears the change live.
    let pushed = bob_ws
        .wait_for(|f| matches!(f, ServerFrame::UserUpdated { user } if user.username == "alice"))
        .await;
    assert_eq!(pushed, ServerFrame::UserUpdated { user: user.clone() });
    let picture = get(&server, &bob.token, &format!("/api/avatars/{image}"), None).await;
    assert_eq!(picture.status, 200);
    assert_eq!(picture.header("content-type"), "image/jpeg");
    assert_eq!(picture.header("x-content-type-options"), "nosniff");
    let decoded = image::load_from_memory(&picture.body).unwrap().to_rgb8();
    assert_eq!(decoded.dimensions(), (256, 256));
    // Only the green centre survived the crop.
    for (x, y) in [(2, 2), (253, 128), (128, 253)] {
        let Rgb([r, g, _]) = *decoded.get_pixel(x, y);
        assert!(g > 150 && r < 60, "({x}, {y}) is green: {r} {g}");
    }

    // Bad pictures, by name: not an image, a decompression bomb, 0 bytes.
    for (what, bytes, says) in [
        ("text", &b"not a picture"[..], "PNG, JPEG, GIF or WebP"),
        ("bomb", &bomb_png(100_000)[..], "100000x100000"),
        ("empty", &b""[..], "empty"),
    ] {
        let refused = set_avatar(&server, &alice.token, bytes).await;
        assert_eq!(refused.status, 400, "{what}");
        assert!(
            refused.error().message.contains(says),
            "{what}: {:?}",
            refused.error()
        );
    }
    // Unknown ids and blobs that are not a current picture are 404, as is a bad id.
    for id in ["0".repeat(64), "nope".to_string()] {
        let missing = get(&server, &bob.token, &format!("/api/avatars/{id}"), None).await;
        assert_eq!(missing.status, 404, "{id}");
    }

    // Removing it: everyone hears it, and the old picture is no longer served.
    assert_eq!(clear_avatar(&server, &alice.token).await.status, 200);
    let pushed = bob_ws
        .wait_for(|f| matches!(f, ServerFrame::UserUpdated { user } if user.avatar_image.is_none()))
        .await;
    assert!(matches!(pushed, ServerFrame::UserUpdated { user } if user.username == "alice"));
    let gone = get(&server, &bob.token, &format!("/api/avatars/{image}"), None).await;
    assert_eq!(gone.status, 404);
}

/// A replaced profile picture's bytes leave the blob directory (they stayed forever), unless
/// something still names them: the same picture as another user's, or an upload of the same
/// bytes. Tried, by name: a picture replaced by another, a picture bob has too (kept until his
/// account is deleted), a picture whose bytes an upload has (kept when cleared, the upload
/// still downloads). A picture no longer current answers 404 `not_found`; the current one is
/// served.
#[tokio::test]
async fn a_replaced_profile_picture_is_deleted_once_nothing_names_it() {
    let server = TestServer::start().await;
    let data = server.dir.path();
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let picture_of = |set: Answer| {
        assert_eq!(set.status, 200, "{}", String::from_utf8_lossy(&set.body));
        let user: natter::protocol::User = serde_json::from_slice(&set.body).unwrap();
        user.avatar_image.expect("a picture")
    };
    let served = |id: &str| {
        let (server, token, path) = (&server, bob.token.clone(), format!("/api/avatars/{id}"));
        async move { get(server, &token, &path, None).await }
    };
    let not_found = |answer: Answer| {
        assert_eq!(answer.status, 404);
        assert_eq!(answer.error().code, ErrorCode::NotFound);
    };

    // Replaced by another: A's bytes go, B is served.
    let a = picture_of(set_avatar(&server, &alice.token, &png(64, 64)).await);
    assert!(blob_file(data, &a).exists());
    let b = picture_of(set_avatar(&server, &alice.token, &png(90, 40)).await);
    assert_ne!(a, b);
    assert!(
        !blob_file(data, &a).exists(),
        "the replaced picture's blob is gone"
    );
    not_found(served(&a).await);
    assert_eq!(served(&b).await.status, 200);

    // Bob has the same picture as alice (the same bytes make the same picture): replacing
    // hers keeps it for him, until his account goes.
    let shared = picture_of(set_avatar(&server, &alice.token, &png(50, 70)).await);
    assert!(!blob_file(data, &b).exists());
    assert_eq!(
        picture_of(set_avatar(&server, &bob.token, &png(50, 70)).await),
        shared
    );
    let c = picture_of(set_avatar(&server, &alice.token, &png(30, 30)).await);
    assert!(blob_file(data, &shared).exists(), "still bob's picture");
    assert_eq!(served(&shared).await.status, 200);
    let (status, body) = server
        .post(
            "/api/account/delete",
            serde_json::json!({"password": support::PASSWORD}),
            Some(&bob.token),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert!(
        !blob_file(data, &shared).exists(),
        "gone with bob's account"
    );

    // An upload with the bytes of alice's picture: clearing the picture keeps them for it.
    let alice_reads = |path: String| {
        let (server, token) = (&server, alice.token.clone());
        async move { get(server, &token, &path, None).await }
    };
    let bytes = alice_reads(format!("/api/avatars/{c}")).await.body;
    let copy = upload(&server, &alice.token, "copy.jpg", &bytes)
        .await
        .attachment();
    assert_eq!(clear_avatar(&server, &alice.token).await.status, 200);
    assert!(blob_file(data, &c).exists(), "the upload still names it");
    not_found(alice_reads(format!("/api/avatars/{c}")).await);
    assert_eq!(alice_reads(file_path(&copy)).await.body, bytes);
}
