//! Files through the `natter` CLI against a real server on 127.0.0.1:0: `send --file` (several,
//! with and without text), `history --json` and text output naming the files, and `download`
//! writing byte-identical copies into `--out DIR` without overwriting. Bad inputs tried, by
//! name: a missing path, a directory, a file over the server's limit, a message without files,
//! a message that does not exist, an `--out` that is not a directory.

mod support;

use std::path::Path;

use support::cli::{fails, natter, ok};
use support::TestServer;

fn json(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_out_with_send_and_come_back_with_download() {
    let server = TestServer::start_with(|c| c.max_upload_bytes = 64 * 1024).await;
    let url = format!("http://{}", server.addr);
    let [a, b, files, out] = [(); 4].map(|_| tempfile::tempdir().unwrap());
    let (a, b) = (a.path(), b.path());
    ok(natter(a, &["--server", &url, "register", "alice"]).await);
    ok(natter(b, &["--server", &url, "register", "bob"]).await);
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let report = write(files.path(), "report.bin", &data);
    let notes = write(files.path(), "notes.txt", b"twelve bytes");

    let sent = ok(natter(
        a,
        &[
            "send", "@bob", "--file", &report, "--file", &notes, "two", "files",
        ],
    )
    .await);
    assert!(sent.contains("sent to @bob"), "{sent}");
    ok(natter(a, &["send", "@bob", "--file", &notes]).await); // no text
    ok(natter(a, &["send", "@bob", "plain"]).await);

    let lines = json(&ok(natter(b, &["history", "@alice", "--json"]).await));
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["text"], "two files");
    let names: Vec<&str> = lines[0]["attachments"]
        .as_array()
        .expect("attachments")
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["report.bin", "notes.txt"]);
    assert_eq!(lines[0]["attachments"][0]["size"], 5000);
    assert_eq!(lines[1]["text"], "");
    assert_eq!(lines[2]["attachments"], serde_json::json!([]));
    let plain = ok(natter(b, &["history", "@alice"]).await);
    assert!(
        plain.contains("<alice> two files [file: report.bin, 4.9 KiB] [file: notes.txt, 12 B]"),
        "{plain}"
    );

    let out_dir = out.path().to_string_lossy().into_owned();
    let saved = ok(natter(b, &["download", "@alice", "1", "--out", &out_dir]).await);
    assert!(
        saved.contains("report.bin") && saved.contains("notes.txt"),
        "{saved}"
    );
    assert_eq!(std::fs::read(out.path().join("report.bin")).unwrap(), data);
    assert_eq!(
        std::fs::read(out.path().join("notes.txt")).unwrap(),
        b"twelve bytes"
    );
    ok(natter(b, &["download", "@alice", "2", "--out", &out_dir]).await);
    assert_eq!(
        std::fs::read(out.path().join("notes (2).txt")).unwrap(),
        b"twelve bytes",
        "a second copy beside the first, not over it"
    );
    let mut listed: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        ["notes (2).txt", "notes.txt", "report.bin"],
        "nothing else written"
    );

    // Bad inputs: each a clear error on stderr, nothing sent.
    let missing = files
        .path()
        .join("missing.png")
        .to_string_lossy()
        .into_owned();
    let dir = files.path().to_string_lossy().into_owned();
    let big = write(files.path(), "big.bin", &vec![1u8; 100 * 1024]);
    for (what, args, says) in [
        (
            "a missing path",
            vec!["send", "@bob", "--file", &missing],
            "missing.png",
        ),
        (
            "a directory",
            vec!["send", "@bob", "--file", &dir, "x"],
            "not a file",
        ),
        (
            "over the limit",
            vec!["send", "@bob", "--file", &big],
            "big.bin refused",
        ),
        ("no files", vec!["download", "@bob", "3"], "has no files"),
        (
            "no such message",
            vec!["download", "@bob", "99"],
            "no message #99",
        ),
    ] {
        let err = fails(natter(a, &args).await);
        assert!(err.contains(says), "{what}: {err}");
    }
    let not_dir = fails(natter(b, &["download", "@alice", "1", "--out", &notes]).await);
    assert!(not_dir.contains("not a directory"), "{not_dir}");
    let lines = json(&ok(natter(b, &["history", "@alice", "--json"]).await));
    assert_eq!(lines.len(), 3, "no bad input sent anything");
}
