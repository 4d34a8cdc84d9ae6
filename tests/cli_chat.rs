//! The `natter` CLI as a user drives it, against a real server on 127.0.0.1:0: two users
//! register, chat in a room and a DM, list rooms and users, search in English and Chinese, read
//! unread counts, leave, log out; and every error goes to stderr with a non-zero exit.

mod support;

use std::time::Duration;

use support::cli::{fails, natter, natter_env, ok, Run};
use support::{TestServer, PASSWORD};
use tokio::process::Command;

fn json(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// Two profiles on `server`, registered as `first` and `second` from the CLI.
async fn two_registered(
    server: &TestServer,
    first: &str,
    second: &str,
) -> (tempfile::TempDir, tempfile::TempDir) {
    let url = format!("http://{}", server.addr);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    ok(natter(a.path(), &["--server", &url, "register", first]).await);
    ok(natter(b.path(), &["--server", &url, "register", second]).await);
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_through_the_cli() {
    let server = TestServer::start().await;
    let url = format!("http://{}", server.addr);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (a.path(), b.path());
    assert!(ok(natter(a, &["--server", &url, "register", "alice"]).await).contains("alice"));
    assert!(ok(natter(
        b,
        &["--server", &url, "register", "bob", "--display-name", "Bob"]
    )
    .await)
    .contains("bob"));

    ok(natter(a, &["create", "lounge"]).await);
    let rooms = ok(natter(b, &["rooms"]).await);
    assert!(
        rooms.contains("#lounge") && rooms.contains("#general"),
        "{rooms}"
    );
    assert!(ok(natter(b, &["join", "#lounge"]).await).contains("#lounge"));

    assert!(ok(natter(a, &["send", "lounge", "hello", "bob"]).await).contains("sent"));
    ok(natter(a, &["send", "lounge", "你好世界"]).await);
    ok(natter(b, &["send", "@alice", "a private word"]).await);

    let lines = json(&ok(natter(b, &["history", "lounge", "--json"]).await));
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["conversation"], "lounge");
    assert_eq!(lines[0]["sender"], "alice");
    assert_eq!(lines[0]["text"], "hello bob");
    assert_eq!(lines[0]["seq"], 1);
    assert!(lines[0]["time"].as_i64().unwrap() > 0);
    assert_eq!(lines[1]["text"], "你好世界");

    let dm = json(&ok(natter(a, &["history", "@bob", "--json"]).await));
    assert_eq!(dm.len(), 1);
    assert_eq!(
        (dm[0]["conversation"].as_str(), dm[0]["sender"].as_str()),
        (Some("@bob"), Some("bob"))
    );
    let plain = ok(natter(a, &["history", "@bob"]).await);
    assert!(plain.contains("<bob> a private word"), "{plain}");
    let limited = json(&ok(natter(
        b,
        &["history", "lounge", "--limit", "1", "--json"],
    )
    .await));
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0]["text"], "你好世界");

    let unread = ok(natter(a, &["unread"]).await);
    assert!(unread.contains("Bob  1"), "{unread}");
    let users = ok(natter(a, &["users"]).await);
    assert!(
        users.contains("alice") && users.contains("bob  (Bob)"),
        "{users}"
    );

    let hits = json(&ok(natter(b, &["search", "你好", "--json"]).await));
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["text"], "你好世界");
    let hits = json(&ok(natter(b, &["search", "hello", "--json"]).await));
    assert_eq!(hits[0]["text"], "hello bob");
    assert!(ok(natter(b, &["search", "nothing-like-this"]).await).is_empty());

    ok(natter(b, &["leave", "lounge"]).await);
    assert!(fails(natter(b, &["send", "lounge", "x"]).await).contains("lounge"));
    ok(natter(b, &["logout"]).await);
    assert!(fails(natter(b, &["rooms"]).await).contains("not signed in"));
    // Signing in again works and keeps the profile's history.
    ok(natter(b, &["--server", &url, "login", "bob"]).await);
    assert_eq!(
        json(&ok(natter(b, &["history", "@alice", "--json"]).await)).len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_are_clear_and_non_zero() {
    let server = TestServer::start().await;
    let url = format!("http://{}", server.addr);
    let p = tempfile::tempdir().unwrap();
    let p = p.path();
    // Not signed in yet.
    assert!(fails(natter(p, &["rooms"]).await).contains("not signed in"));
    // Bad names and passwords are refused by the server with its reason.
    fails(natter(p, &["--server", &url, "register", "bad name"]).await);
    fails(
        natter_env(
            p,
            &["--server", &url, "register", "carol"],
            &[("NATTER_PASSWORD", "short")],
        )
        .await,
    );
    ok(natter(p, &["--server", &url, "register", "carol"]).await);
    assert!(fails(natter(p, &["--server", &url, "register", "carol"]).await).contains("conflict"));
    assert!(fails(
        natter_env(
            p,
            &["--server", &url, "login", "carol"],
            &[("NATTER_PASSWORD", "wrong password")]
        )
        .await
    )
    .contains("unauthorized"));
    // No password and no terminal: an error, not a hang.
    assert!(
        fails(natter_env(p, &["--server", &url, "login", "carol"], &[]).await)
            .contains("no password")
    );
    // Unknown rooms and users.
    assert!(fails(natter(p, &["join", "nowhere"]).await).contains("not found"));
    assert!(fails(natter(p, &["history", "nowhere"]).await).contains("nowhere"));
    assert!(fails(natter(p, &["history", "@nobody"]).await).contains("nobody"));
    assert!(fails(natter(p, &["send", "@nobody", "hi"]).await).contains("refused"));
    assert!(fails(natter(p, &["send", "general", "   "]).await).contains("invalid"));
    assert!(fails(natter(p, &["create", "a/b"]).await).contains("invalid"));
    // Usage errors from the argument parser.
    fails(natter(p, &["send", "general"]).await);
    fails(natter(p, &["--server", "not a url", "rooms"]).await);
    fails(natter(p, &["frobnicate"]).await);
    // A server address with nothing behind it: connected commands fail, send queues.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    assert!(fails(natter(p, &["--server", &dead, "rooms"]).await).contains("offline"));
    assert!(fails(natter(p, &["--server", &dead, "login", "carol"]).await).contains("offline"));
    let queued = ok(natter(p, &["--server", &dead, "send", "general", "later"]).await);
    assert!(queued.contains("queued"), "{queued}");
    // The next connected command delivers it.
    ok(natter(p, &["send", "general", "now"]).await);
    let lines = json(&ok(natter(p, &["history", "general", "--json"]).await));
    let texts: Vec<_> = lines.iter().map(|v| v["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["later", "now"]);
}

/// Without `--profile`: the per-server-and-user profile under the XDG data dir, remembered as
/// the current one; the password piped on stdin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_profile_and_password_on_stdin() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start().await;
    let url = format!("http://{}", server.addr);
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_natter"));
        cmd.args(args)
            .env_remove("NATTER_PASSWORD")
            .env_remove("NATTER_PROFILE")
            .env_remove("NATTER_SERVER")
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let input = stdin.map(str::to_owned);
        async move {
            let mut child = cmd.spawn().unwrap();
            let mut pipe = child.stdin.take().unwrap();
            if let Some(input) = input {
                pipe.write_all(input.as_bytes()).await.unwrap();
            }
            drop(pipe);
            let o = child.wait_with_output().await.unwrap();
            Run {
                ok: o.status.success(),
                out: String::from_utf8_lossy(&o.stdout).into_owned(),
                err: String::from_utf8_lossy(&o.stderr).into_owned(),
            }
        }
    };
    let line = format!("{PASSWORD}\n");
    ok(run(&["--server", &url, "register", "dora"], Some(&line)).await);
    ok(run(&["send", "general", "from the default profile"], None).await);
    let lines = json(&ok(run(&["history", "general", "--json"], None).await));
    assert_eq!(lines[0]["text"], "from the default profile");
    let profiles = home.path().join("data/natter/profiles");
    // One profile directory, keyed by the server's id (and the index of addresses to ids).
    let names: Vec<_> = std::fs::read_dir(&profiles)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1);
    let health: natter::protocol::Health = reqwest::get(format!("{url}/api/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(names[0], format!("{}-dora", health.server_id), "{names:?}");
    assert!(profiles.join(natter::client::profiles::INDEX_FILE).exists());
    assert!(profiles.join(&names[0]).join("natter.db").exists());
    ok(run(&["logout"], None).await);
    assert!(fails(run(&["unread"], None).await).contains("not signed in"));
}

/// A message may hold ESC sequences (OSC 52 sets the reader's clipboard, CSI 2J clears the
/// screen), C1 CSI (U+009B), a bidi override and a newline that forges a second line: every
/// command that prints it shows them escaped, and `--json` keeps the exact text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_messages_print_escaped() {
    let server = TestServer::start().await;
    let (a, b) = two_registered(&server, "mallory", "victim").await;
    let (a, b) = (a.path(), b.path());
    let evil = "pwned\u{1b}]52;c;cm0gLXJmIH4=\u{7}\u{1b}[2J\u{1b}]0;title\u{7}\u{9b}31m\u{202e}txt.exe\r\n[2026-01-01 00:00:00] general <admin> forged\u{7f}";
    ok(natter(a, &["send", "general", evil]).await);

    let raw = |s: &str| {
        s.chars()
            .filter(|c| c.is_control() && *c != '\n' || matches!(c, '\u{202e}'))
            .map(|c| format!("U+{:04X}", c as u32))
            .collect::<Vec<_>>()
    };
    for args in [
        &["history", "general"][..],
        &["search", "pwned"][..],
        &["search", "forged"][..],
    ] {
        let out = ok(natter(b, args).await);
        assert_eq!(raw(&out), Vec::<String>::new(), "{args:?}: {out}");
        assert_eq!(out.lines().count(), 1, "no forged line: {args:?}: {out}");
        assert!(
            out.contains("<mallory> pwned\\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2J")
                && out.contains("\\u{9b}31m\\u{202e}txt.exe\\r\\n[2026")
                && out.ends_with("forged\\x7f\n"),
            "{args:?}: {out}"
        );
    }
    for args in [
        &["history", "general", "--json"][..],
        &["search", "pwned", "--json"][..],
    ] {
        let out = ok(natter(b, args).await);
        assert_eq!(raw(&out), Vec::<String>::new(), "{args:?}: {out}");
        let lines = json(&out);
        assert_eq!(lines.len(), 1, "{args:?}");
        assert_eq!(lines[0]["text"], evil, "JSON keeps the exact text");
    }
}

/// Rooms and DMs are found by any spelling of their name, as the server finds users and rooms:
/// fullwidth, other case, ß/SS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_work_in_any_spelling_from_the_cli() {
    let server = TestServer::start().await;
    let url = format!("http://{}", server.addr);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (a.path(), b.path());
    ok(natter(a, &["--server", &url, "register", "alice"]).await);
    ok(natter(b, &["--server", &url, "register", "Straße"]).await);
    let again = ok(natter(b, &["--server", &url, "login", "STRASSE"]).await);
    assert!(again.contains("signed in as Straße"), "{again}");

    ok(natter(b, &["send", "@ALICE", "hi"]).await);
    ok(natter(b, &["send", "@Alice", "again"]).await);
    let dm = json(&ok(natter(b, &["history", "@ａｌｉｃｅ", "--json"]).await));
    let texts: Vec<_> = dm.iter().map(|v| v["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["hi", "again"], "one DM conversation");
    ok(natter(a, &["send", "@strasse", "back"]).await);
    assert_eq!(
        json(&ok(natter(a, &["history", "@STRASSE", "--json"]).await)).len(),
        3
    );

    let created = ok(natter(a, &["create", "Ｌｏｕｎｇｅ"]).await);
    assert!(created.contains("Lounge"), "{created}");
    let joined = ok(natter(b, &["join", "#LOUNGE"]).await);
    assert!(joined.contains("Lounge"), "{joined}");
    ok(natter(b, &["send", "lounge", "in the lounge"]).await);
    let lines = json(&ok(natter(a, &["history", "LOUNGE", "--json"]).await));
    assert_eq!(lines[0]["text"], "in the lounge");
    assert_eq!(lines[0]["sender"], "Straße");
    assert!(fails(natter(b, &["create", "l\u{43e}unge"]).await).contains("looks the same"));
}

/// `natter tail --sse --json` prints the event stream as JSON lines; `--since` with a printed
/// id resumes after it with nothing missed or repeated; signing the session out ends it with
/// an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_over_the_event_stream_prints_resumes_and_ends_when_signed_out() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let server = TestServer::start().await;
    let url = format!("http://{}", server.addr);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (a.path(), b.path());
    ok(natter(a, &["--server", &url, "register", "alice"]).await);
    ok(natter(b, &["--server", &url, "register", "bob"]).await);
    let tail = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_natter"));
        cmd.arg("--profile")
            .arg(b)
            .args(["tail", "--sse", "--json"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("run natter tail --sse");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        (child, lines)
    };
    async fn next_line(
        lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    ) -> serde_json::Value {
        let line = tokio::time::timeout(support::WAIT, lines.next_line())
            .await
            .expect("a line within the wait")
            .unwrap()
            .expect("tail still running");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"))
    }
    let (child, mut lines) = tail(&[]);
    let ready = next_line(&mut lines).await;
    assert_eq!(ready["event"], "ready", "{ready}");
    ok(natter(a, &["send", "general", "one"]).await);
    let one = next_line(&mut lines).await;
    assert_eq!(
        (
            one["event"].as_str(),
            one["data"]["message"]["text"].as_str()
        ),
        (Some("message"), Some("one"))
    );
    let id = one["id"].as_str().unwrap().to_string();
    drop(child);
    ok(natter(a, &["send", "general", "two"]).await);
    ok(natter(a, &["send", "general", "three"]).await);
    let (mut child, mut lines) = tail(&["--since", &id]);
    assert_eq!(next_line(&mut lines).await["event"], "ready");
    for text in ["two", "three"] {
        let m = next_line(&mut lines).await;
        assert_eq!(m["data"]["message"]["text"], text, "{m}");
    }
    ok(natter(b, &["logout"]).await);
    let status = tokio::time::timeout(support::WAIT, child.wait())
        .await
        .expect("tail ends when signed out")
        .unwrap();
    assert!(!status.success());
    let mut err = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut err)
        .await
        .unwrap();
    assert!(err.contains("sign in again"), "{err}");
}

/// Replies, edits, reactions and deletes from the CLI, as `history --json` and the plain
/// history show them; refused actions (someone else's message, not an emoji) fail with the
/// server's reason on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_actions_through_the_cli() {
    let server = TestServer::start().await;
    let (a, b) = two_registered(&server, "alice", "bob").await;
    let (a, b) = (a.path(), b.path());
    let sent = ok(natter(a, &["send", "general", "helo", "@bob"]).await);
    assert!(sent.contains("mentions @bob"), "{sent}");
    ok(natter(b, &["reply", "general", "1", "hi", "alice"]).await);
    assert!(ok(natter(a, &["edit", "general", "1", "hello", "@bob"]).await).contains("edited #1"));
    ok(natter(b, &["react", "general", "1", "👍"]).await);
    ok(natter(a, &["react", "general", "1", "🎉"]).await);
    ok(natter(a, &["react", "general", "1", "🎉", "--off"]).await);

    let err = fails(natter(b, &["edit", "general", "1", "bob", "was", "here"]).await);
    assert!(err.contains("only the author"), "{err}");
    let err = fails(natter(b, &["delete", "general", "1"]).await);
    assert!(err.contains("only the author"), "{err}");
    let err = fails(natter(b, &["react", "general", "1", "a"]).await);
    assert!(err.contains("emoji"), "{err}");
    let err = fails(natter(b, &["edit", "general", "99", "x"]).await);
    assert!(err.contains("no message"), "{err}");

    let lines = json(&ok(natter(b, &["history", "general", "--json"]).await));
    assert_eq!(lines.len(), 2, "two messages, no action rows: {lines:?}");
    assert_eq!(lines[0]["text"], "hello @bob");
    assert!(lines[0]["edited"].as_i64().is_some());
    assert_eq!(
        lines[0]["reactions"],
        serde_json::json!([{"emoji": "👍", "users": ["bob"]}])
    );
    assert_eq!(lines[1]["reply_to"]["seq"], 1);
    assert_eq!(lines[1]["reply_to"]["sender"], "alice");
    let plain = ok(natter(a, &["history", "general"]).await);
    assert!(
        plain.contains("general #1 <alice> [👍 bob] (edited) hello @bob"),
        "{plain}"
    );
    assert!(
        plain.contains("(re #1: <alice> hello @bob) hi alice"),
        "{plain}"
    );

    ok(natter(a, &["delete", "general", "1"]).await);
    let lines = json(&ok(natter(b, &["history", "general", "--json"]).await));
    assert_eq!(
        (lines[0]["deleted"].as_bool(), lines[0]["text"].as_str()),
        (Some(true), Some(""))
    );
    assert_eq!(lines[1]["reply_to"]["deleted"], true);
    assert!(ok(natter(b, &["search", "hello"]).await).trim().is_empty());
}

/// `natter tail` prints a message when it arrives and again, as it is now, each time it is
/// edited, reacted to or deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_a_message_again_when_it_changes() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let server = TestServer::start().await;
    let (a, b) = two_registered(&server, "alice", "bob").await;
    let (a, b) = (a.path(), b.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_natter"))
        .arg("--profile")
        .arg(b)
        .args(["tail", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run natter tail");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The next printed line that `pred` accepts (others: replayed or earlier messages).
    async fn until(
        lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
        wait: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .ok()?;
            let line = line.unwrap().expect("tail still running");
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
            if pred(&v) {
                return Some(v);
            }
        }
    }
    // Tail is connected once a message sent now reaches it.
    let mut connected = false;
    for i in 0..50 {
        let ping = format!("ping {i}");
        ok(natter(a, &["send", "general", &ping]).await);
        let short = Duration::from_millis(300);
        if until(&mut lines, short, |v| v["text"] == ping)
            .await
            .is_some()
        {
            connected = true;
            break;
        }
    }
    assert!(connected, "tail prints live messages");
    ok(natter(a, &["send", "general", "helo"]).await);
    let first = until(&mut lines, support::WAIT, |v| v["text"] == "helo")
        .await
        .expect("printed");
    let seq = first["seq"].as_i64().unwrap();
    let this = move |v: &serde_json::Value| v["seq"].as_i64() == Some(seq);
    let arg = seq.to_string();
    ok(natter(a, &["edit", "general", &arg, "hello"]).await);
    let edited = until(&mut lines, support::WAIT, this)
        .await
        .expect("printed again");
    assert_eq!(edited["text"], "hello", "{edited}");
    assert!(edited["edited"].as_i64().is_some(), "{edited}");
    ok(natter(a, &["react", "general", &arg, "🎉"]).await);
    let reacted = until(&mut lines, support::WAIT, this)
        .await
        .expect("printed again");
    assert_eq!(reacted["reactions"][0]["emoji"], "🎉", "{reacted}");
    ok(natter(a, &["delete", "general", &arg]).await);
    let deleted = until(&mut lines, support::WAIT, this)
        .await
        .expect("printed again");
    assert_eq!(
        (deleted["deleted"].as_bool(), deleted["text"].as_str()),
        (Some(true), Some(""))
    );
}
