//! Attachments in the client core against the real server (in-process on 127.0.0.1:0, real
//! files in temp dirs, temp SQLite on both sides): two clients send and receive files through
//! the outbox and open them byte-identical; a file chosen while the server is down is uploaded
//! and sent once after it returns, and after a client restart; a cancelled one never goes; a
//! file over the server's limit fails its entry and later messages still go; the file cache
//! drops the least recently used files beyond its cap and serves what it holds offline; an
//! upload the server turns away for now (429) is retried until it goes, and one cut off midway
//! (a proxy drops the connection) is done again, the message sent once; a new profile picture
//! reaches the others' stores and caches.
//! Bad inputs tried, by name: a missing path, a directory, an empty file, eleven files, a file
//! over the limit; the thumbnail of a file that has none.

mod support;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use image::{ImageFormat, Rgb, RgbImage};
use natter::client::{
    Client, ClientConfig, ClientError, ClientEvent, LocalMessage, MessageState, Target,
    UploadProgress,
};
use natter::protocol::{ConvId, ConvKind, Session};
use support::{next_message, synced, TestServer};

async fn start(config: ClientConfig, session: Session) -> Client {
    let c = Client::start(config, session).await.unwrap();
    synced(&c).await;
    c
}

async fn drained(c: &Client) {
    tokio::time::timeout(Duration::from_secs(20), c.wait_outbox_empty())
        .await
        .expect("outbox drained in time")
        .expect("outbox drained");
}

/// Alice and Bob signed in on `server`, each on a profile of their own, and a directory for
/// the files they send; `tweak` changes both client configs.
struct Pair {
    alice: Client,
    bob: Client,
    /// Alice's profile, Bob's profile, the files.
    dirs: [tempfile::TempDir; 3],
}

async fn pair(server: &TestServer, tweak: impl Fn(&mut ClientConfig)) -> Pair {
    let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
    let config = |dir: &Path| {
        let mut c = server.client_config(dir);
        tweak(&mut c);
        c
    };
    let alice = start(config(dirs[0].path()), server.register("alice").await).await;
    let bob = start(config(dirs[1].path()), server.register("bob").await).await;
    Pair { alice, bob, dirs }
}

/// A PNG of `w` x `h` pixels with a gradient (so it does not compress to nothing).
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, (x ^ y) as u8]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

/// `n` bytes that differ from file to file (`seed`).
fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

async fn general(c: &Client) -> ConvId {
    c.find_conversation(ConvKind::Room, "general")
        .await
        .unwrap()
        .expect("general joined")
}

/// The held messages of `conv` (the newest 200).
async fn texts(c: &Client, conv: ConvId) -> Vec<LocalMessage> {
    let mut page = c.history(conv, None, 200).await.unwrap();
    page.retain(|m| m.seq.is_some());
    page
}

/// How many held messages of `conv` have the text `text`.
async fn held_with(c: &Client, conv: ConvId, text: &str) -> usize {
    texts(c, conv)
        .await
        .iter()
        .filter(|m| m.text == text)
        .count()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_send_and_open_files_byte_identical() {
    let server = TestServer::start().await;
    let Pair { alice, bob, dirs } = pair(&server, |_| {}).await;
    let [_pa, pb, files] = &dirs;
    let photo_bytes = png(64, 48);
    let photo = write(files.path(), "photo.png", &photo_bytes);
    let notes = write(files.path(), "notes.txt", b"twelve bytes");
    let to_bob = || Target::To("bob".into());

    // Bad inputs, refused before anything is queued.
    let missing = files.path().join("missing.png");
    let empty = write(files.path(), "empty.txt", b"");
    for (what, paths) in [
        ("a missing path", vec![missing]),
        ("a directory", vec![files.path().to_path_buf()]),
        ("an empty file", vec![empty]),
        ("eleven files", vec![notes.clone(); 11]),
        ("no file", vec![]),
    ] {
        let refused = alice.send_files(to_bob(), &paths, "x").await;
        assert!(
            matches!(refused, Err(ClientError::Invalid(_))),
            "{what}: {refused:?}"
        );
    }
    assert!(alice.outbox().await.unwrap().is_empty(), "nothing queued");

    let mut alice_rx = alice.subscribe();
    let mut progress_rx = alice.subscribe();
    let mut bob_rx = bob.subscribe();
    let sent = alice
        .send_files(to_bob(), &[photo.clone(), notes.clone()], "")
        .await
        .unwrap();
    assert_eq!(sent.state, MessageState::Pending);
    let pending: Vec<&str> = sent.uploads.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(pending, ["photo.png", "notes.txt"]);
    let done = next_message(&mut alice_rx, |m| {
        m.local_id == sent.local_id && m.state == MessageState::Sent
    })
    .await;
    assert!(done.uploads.is_empty());
    let names: Vec<&str> = done.attachments.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["photo.png", "notes.txt"], "in the order chosen");
    assert_eq!(done.attachments[0].media_type, "image/png");
    assert_eq!(
        (done.attachments[0].width, done.attachments[0].height),
        (Some(64), Some(48))
    );
    assert_eq!(done.attachments[1].size, 12);

    let mut finished = Vec::new();
    while let Ok(ev) = progress_rx.try_recv() {
        if let ClientEvent::Upload(UploadProgress {
            local_id,
            path,
            sent: n,
            total,
        }) = ev
        {
            assert_eq!(local_id, sent.local_id);
            assert!(n <= total);
            if n == total {
                finished.push((path, total));
            }
        }
    }
    let photo_abs = std::path::absolute(&photo).unwrap();
    assert!(
        finished.contains(&(
            photo_abs.to_string_lossy().into_owned(),
            photo_bytes.len() as u64
        )),
        "progress reached the photo's size: {finished:?}"
    );

    let got = next_message(&mut bob_rx, |m| m.local_id == sent.local_id).await;
    assert_eq!(got.attachments, done.attachments, "the same records");
    let opened = bob.open_file(&got.attachments[0]).await.unwrap();
    assert_eq!(
        std::fs::read(&opened).unwrap(),
        photo_bytes,
        "byte-identical"
    );
    assert_eq!(opened.file_name().unwrap(), "photo.png");
    #[cfg(unix)]
    assert_eq!(mode(&opened), 0o600, "cached files are private");
    let thumb = bob.thumbnail(&got.attachments[0]).await.unwrap();
    let thumb_bytes = std::fs::read(&thumb).unwrap();
    assert!(
        thumb_bytes.starts_with(b"\x89PNG") || thumb_bytes.starts_with(&[0xff, 0xd8]),
        "a thumbnail image"
    );
    let none = bob.thumbnail(&got.attachments[1]).await;
    assert!(
        matches!(none, Err(ClientError::NotFound(_))),
        "a text file has no thumbnail: {none:?}"
    );

    // Saved into a directory: under its name, never over a file already there.
    let out = tempfile::tempdir().unwrap();
    let first = bob
        .save_file(&got.attachments[1], out.path())
        .await
        .unwrap();
    let second = bob
        .save_file(&got.attachments[1], out.path())
        .await
        .unwrap();
    assert_eq!(first, out.path().join("notes.txt"));
    assert_eq!(second, out.path().join("notes (2).txt"));
    assert_eq!(std::fs::read(&second).unwrap(), b"twelve bytes");

    // History keeps the files, and what was seen reads with the server gone, after a restart.
    let dm = bob
        .find_conversation(ConvKind::Dm, "alice")
        .await
        .unwrap()
        .expect("dm");
    bob.shutdown().await;
    drop(bob);
    let (_data, _) = server.stop().await;
    let config = {
        let mut c = ClientConfig::new("http://127.0.0.1:9".parse().unwrap(), pb.path().into());
        c.backoff_min = Duration::from_millis(20);
        c
    };
    let bob = Client::resume(config)
        .await
        .unwrap()
        .expect("saved session");
    let held = bob.history(dm, None, 10).await.unwrap();
    assert_eq!(held.last().unwrap().attachments, done.attachments);
    let offline = bob.thumbnail(&held.last().unwrap().attachments[0]).await;
    assert_eq!(offline.unwrap(), thumb, "served from the cache, offline");
    bob.shutdown().await;
    alice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_chosen_offline_is_sent_once_when_the_server_returns_and_after_a_restart() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let Pair { alice, bob, dirs } = pair(&server, |_| {}).await;
    let [pa, _pb, files] = &dirs;
    let room = general(&alice).await;
    let first = write(files.path(), "first.png", &png(40, 30));
    let second = write(files.path(), "second.bin", &bytes(300_000, 7));
    let dropped = write(files.path(), "dropped.bin", &bytes(1000, 9));

    let (data, _) = server.stop().await;
    let queued = alice
        .send_files(Target::Conv(room), &[first], "offline photo")
        .await
        .unwrap();
    assert_eq!(queued.state, MessageState::Pending);
    let cancelled = alice
        .send_files(Target::Conv(room), &[dropped], "cancelled")
        .await
        .unwrap();
    alice.cancel(&cancelled.local_id).await.unwrap();
    assert!(matches!(
        alice.cancel(&cancelled.local_id).await,
        Err(ClientError::NotFound(_))
    ));
    alice
        .send(Target::Conv(room), "after the photo")
        .await
        .unwrap();

    let mut bob_rx = bob.subscribe();
    let server = TestServer::start_at(addr, data, |_| {}).await;
    next_message(&mut bob_rx, |m| m.text == "after the photo").await;
    drained(&alice).await;

    // Offline again; this time the client is restarted before the server returns.
    let (data, _) = server.stop().await;
    alice
        .send_files(Target::Conv(room), &[second], "")
        .await
        .unwrap();
    alice.shutdown().await;
    drop(alice);
    let server = TestServer::start_at(addr, data, |_| {}).await;
    let alice = Client::resume(server.client_config(pa.path()))
        .await
        .unwrap()
        .expect("saved session");
    drained(&alice).await;
    next_message(&mut bob_rx, |m| {
        m.attachments
            .first()
            .is_some_and(|a| a.name == "second.bin")
    })
    .await;

    let held = texts(&bob, room).await;
    let with_files: Vec<(&str, Vec<&str>)> = held
        .iter()
        .filter(|m| !m.attachments.is_empty() || m.text.contains("photo"))
        .map(|m| {
            (
                m.text.as_str(),
                m.attachments.iter().map(|a| a.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        with_files,
        [
            ("offline photo", vec!["first.png"]),
            ("after the photo", vec![]),
            ("", vec!["second.bin"]),
        ],
        "each once, in the order queued"
    );
    assert!(
        held.iter().all(|m| m.text != "cancelled"),
        "a cancelled entry never goes"
    );
    let got = held.iter().find(|m| m.text.is_empty()).unwrap();
    let opened = bob.open_file(&got.attachments[0]).await.unwrap();
    assert_eq!(std::fs::read(opened).unwrap(), bytes(300_000, 7));
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_limit_fails_its_entry_and_later_messages_still_go() {
    let server = TestServer::start_with(|c| c.max_upload_bytes = 64 * 1024).await;
    let Pair { alice, bob, dirs } = pair(&server, |_| {}).await;
    let [_pa, _pb, files] = &dirs;
    let room = general(&alice).await;
    // Far more than the socket buffers hold: the refusal comes while the body is being sent.
    let big = write(files.path(), "big.bin", &bytes(8 * 1024 * 1024, 3));

    let mut alice_rx = alice.subscribe();
    let mut bob_rx = bob.subscribe();
    let queued = alice
        .send_files(Target::Conv(room), &[big], "too big")
        .await
        .unwrap();
    let failed = next_message(&mut alice_rx, |m| {
        m.local_id == queued.local_id && m.state == MessageState::Failed
    })
    .await;
    let why = failed.error.unwrap_or_default();
    assert!(
        why.starts_with("big.bin refused") && why.contains("at most 65536 bytes"),
        "names the file and the limit: {why}"
    );
    let still = alice.send(Target::Conv(room), "still here").await.unwrap();
    next_message(&mut bob_rx, |m| m.text == "still here").await;
    // Bob may hear it before Alice's client has settled its `sent` answer: wait for that, so
    // the outbox holds only the failed entry.
    next_message(&mut alice_rx, |m| {
        m.local_id == still.local_id && m.state == MessageState::Sent
    })
    .await;
    assert!(texts(&bob, room).await.iter().all(|m| m.text != "too big"));
    let outbox = alice.outbox().await.unwrap();
    assert_eq!(
        outbox.len(),
        1,
        "the failed entry stays, to retry or cancel"
    );
    assert_eq!(outbox[0].state, MessageState::Failed);
    alice.cancel(&queued.local_id).await.unwrap();
    assert!(alice.outbox().await.unwrap().is_empty());
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_cache_drops_the_least_recently_used_beyond_its_cap() {
    const SIZE: usize = 40_000;
    let server = TestServer::start().await;
    // Two files fit, not three.
    let Pair { alice, bob, dirs } =
        pair(&server, |c| c.file_cache_bytes = (SIZE * 5 / 2) as u64).await;
    let [_pa, _pb, files] = &dirs;
    let room = general(&alice).await;
    let paths: Vec<PathBuf> = ["a.bin", "b.bin", "c.bin"]
        .iter()
        .enumerate()
        .map(|(i, n)| write(files.path(), n, &bytes(SIZE, i as u8)))
        .collect();
    let mut bob_rx = bob.subscribe();
    let sent = alice
        .send_files(Target::Conv(room), &paths, "three")
        .await
        .unwrap();
    let got = next_message(&mut bob_rx, |m| m.local_id == sent.local_id).await;
    let [a, b, c] = &got.attachments[..] else {
        panic!("{:?}", got.attachments)
    };

    let pa_ = bob.open_file(a).await.unwrap();
    let pb_ = bob.open_file(b).await.unwrap();
    assert!(pa_.exists() && pb_.exists());
    bob.open_file(a).await.unwrap(); // a is now used more recently than b
    let pc_ = bob.open_file(c).await.unwrap();
    assert!(!pb_.exists(), "the least recently used went");
    assert!(pa_.exists() && pc_.exists());
    assert!(bob.file_cache_size() <= (SIZE * 5 / 2) as u64);
    assert_eq!(std::fs::read(&pc_).unwrap(), bytes(SIZE, 2));

    // Asked for again, b comes back (downloaded anew) and a, now the oldest, goes.
    let again = bob.open_file(b).await.unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), bytes(SIZE, 1));
    assert!(!pa_.exists() && pc_.exists());
    alice.shutdown().await;
    bob.shutdown().await;
}

/// An upload the server turns away for now (its upload pace, 429) is tried again after a wait,
/// not failed: the message goes once, with every file, when the pace allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_refused_for_now_is_retried_until_it_goes() {
    const REFILL: Duration = Duration::from_millis(400);
    let server = TestServer::start_with(|c| {
        c.uploads_per_user = 1;
        c.upload_refill = REFILL;
    })
    .await;
    let Pair { alice, bob, dirs } = pair(&server, |_| {}).await;
    let [_pa, _pb, files] = &dirs;
    let room = general(&alice).await;
    let paths = [
        write(files.path(), "one.bin", &bytes(2000, 1)),
        write(files.path(), "two.bin", &bytes(2000, 2)),
    ];
    let mut bob_rx = bob.subscribe();
    let began = tokio::time::Instant::now();
    let sent = alice
        .send_files(Target::Conv(room), &paths, "paced")
        .await
        .unwrap();
    let got = next_message(&mut bob_rx, |m| m.local_id == sent.local_id).await;
    assert!(
        began.elapsed() >= REFILL,
        "the second upload had to wait for the pace"
    );
    let names: Vec<&str> = got.attachments.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["one.bin", "two.bin"]);
    assert_eq!(held_with(&bob, room, "paced").await, 1, "sent once");
    alice.shutdown().await;
    bob.shutdown().await;
}

/// A profile picture someone uploads reaches the others' stores (kept across a restart) and
/// their caches; a user without one has no picture to fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_profile_picture_is_stored_and_cached_by_others() {
    let server = TestServer::start().await;
    let Pair { alice, bob, dirs } = pair(&server, |_| {}).await;
    assert_eq!(bob.avatar(&alice.user()).await.unwrap(), None, "none yet");
    let mut bob_rx = bob.subscribe();
    let token = server.login("alice").await.token;
    let resp = reqwest::Client::new()
        .post(server.http_url("/api/account/avatar"))
        .bearer_auth(&token)
        .body(png(300, 200))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let heard = loop {
        match tokio::time::timeout_at(deadline, bob_rx.recv()).await {
            Ok(Ok(ClientEvent::UserUpdated(u))) if u.avatar_image.is_some() => break u,
            Ok(_) => {}
            Err(_) => panic!("bob never heard of the picture"),
        }
    };
    let picture = bob.avatar(&heard).await.unwrap().expect("a picture");
    let bytes = std::fs::read(&picture).unwrap();
    assert!(bytes.starts_with(&[0xff, 0xd8]) || bytes.starts_with(b"\x89PNG"));
    assert!(picture.starts_with(dirs[1].path()), "in bob's profile");

    bob.shutdown().await;
    drop(bob);
    let store =
        natter::client::store::Store::open(&dirs[1].path().join(natter::client::STORE_FILE))
            .unwrap();
    assert_eq!(
        store.user("alice").unwrap().unwrap().avatar_image,
        heard.avatar_image,
        "kept in the store"
    );
    alice.shutdown().await;
}

/// A proxy on 127.0.0.1 in front of `server` that cuts the first connection through which a
/// client sends more than `cut_after` bytes (an upload) after that many, and forwards everything
/// else untouched. Returns its address.
async fn cutting_proxy(server: std::net::SocketAddr, cut_after: usize) -> std::net::SocketAddr {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cut_done = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let cut_done = cut_done.clone();
            tokio::spawn(async move {
                let Ok(upstream) = tokio::net::TcpStream::connect(server).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = upstream.into_split();
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut ur, &mut cw).await;
                });
                let mut sent = 0usize;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    sent += n;
                    if sent > cut_after && !cut_done.swap(true, Ordering::SeqCst) {
                        break; // both halves dropped: the connection is gone mid-body
                    }
                    if uw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                down.abort();
            });
        }
    });
    addr
}

/// The connection breaks while a file is on its way up: the client uploads it again, and the
/// message arrives once, its file whole, with no piece of the broken upload kept by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_off_midway_is_done_again_and_sent_once() {
    const SIZE: usize = 4 * 1024 * 1024;
    let server = TestServer::start().await;
    let proxy = cutting_proxy(server.addr, SIZE / 2).await;
    let Pair { alice, bob, dirs } = pair(&server, |c| {
        c.server = format!("http://{proxy}").parse().unwrap()
    })
    .await;
    let [_pa, _pb, files] = &dirs;
    let room = general(&alice).await;
    let data = bytes(SIZE, 5);
    let path = write(files.path(), "large.bin", &data);
    let mut alice_rx = alice.subscribe();
    let mut bob_rx = bob.subscribe();
    let sent = alice
        .send_files(Target::Conv(room), &[path], "large")
        .await
        .unwrap();
    let got = next_message(&mut bob_rx, |m| m.local_id == sent.local_id).await;
    let (mut started_over, mut top) = (false, 0);
    while let Ok(ev) = alice_rx.try_recv() {
        if let ClientEvent::Upload(p) = ev {
            started_over |= p.sent < top;
            top = top.max(p.sent);
        }
    }
    assert!(started_over, "the upload was cut and done again");
    let opened = bob.open_file(&got.attachments[0]).await.unwrap();
    assert!(std::fs::read(opened).unwrap() == data, "the whole file");
    let staging = server.dir.path().join("blobs").join("staging");
    let left: Vec<_> = std::fs::read_dir(&staging)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "no half upload kept: {left:?}");
    assert_eq!(held_with(&bob, room, "large").await, 1, "sent once");
    alice.shutdown().await;
    bob.shutdown().await;
}
