//! docs/protocol.md is the contract for clients in other languages; these tests keep it true.
//!
//! They read the document itself: every ```` ```json <tag> ```` example must parse into the Rust
//! type its tag names and serialise back to the same JSON; every frame type, answer kind, error
//! code and close code the code knows must be documented; the client examples are sent to a real
//! server, whose answers must be of the documented kind or carry an error code the document lists
//! for that request. The other tests pin behaviour the document promises and the server once got
//! wrong or left open: the one answer of a `sync` replaced by another, the canonical form of
//! `client_msg_id`, which text counts as blank, the errors of each request, the order of the
//! upgrade checks.

mod support;

use std::collections::{BTreeSet, HashMap};

use futures_util::StreamExt;
use natter::protocol::{
    close, ApiError, ClientFrame, ErrorCode, Health, LoginRequest, RegisterRequest, Reply,
    ServerFrame, Session, Target,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use support::{handshake_status, TestServer, WsClient, WAIT};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

const DOC: &str = include_str!("../docs/protocol.md");

/// One fenced code block of the document.
#[derive(Debug)]
struct Block {
    /// The info string after the fence: language, then (for json) the tag.
    lang: String,
    tag: String,
    /// 1-based line of the opening fence, for messages.
    line: usize,
    /// The headings in force where the block sits: (level, text), outermost first.
    headings: Vec<(usize, String)>,
    body: String,
}

impl Block {
    /// The text of the innermost heading of `level`, if any.
    fn heading(&self, level: usize) -> Option<&str> {
        self.headings
            .iter()
            .rev()
            .find(|(l, _)| *l == level)
            .map(|(_, t)| t.as_str())
    }

    /// The JSON values of the block, or why they do not parse.
    fn values(&self) -> Result<Vec<Value>, String> {
        serde_json::Deserializer::from_str(&self.body)
            .into_iter::<Value>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("line {}: not JSON: {e}", self.line))
    }
}

/// A heading line: its level and text.
fn heading(line: &str) -> Option<(usize, String)> {
    let level = line.chars().take_while(|c| *c == '#').count();
    (level > 0 && line[level..].starts_with(' ')).then(|| (level, line[level..].trim().to_string()))
}

/// Every fenced block of `doc`, with the headings it sits under. Fences may be indented (inside
/// list items).
fn blocks(doc: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut headings: Vec<(usize, String)> = Vec::new();
    let mut open: Option<Block> = None;
    for (i, raw) in doc.lines().enumerate() {
        let line = raw.trim_start();
        if let Some(fence) = line.strip_prefix("```") {
            match open.take() {
                Some(block) => out.push(block),
                None => {
                    let mut words = fence.split_whitespace();
                    open = Some(Block {
                        lang: words.next().unwrap_or("").to_string(),
                        tag: words.next().unwrap_or("").to_string(),
                        line: i + 1,
                        headings: headings.clone(),
                        body: String::new(),
                    });
                }
            }
            continue;
        }
        match open.as_mut() {
            Some(block) => {
                block.body.push_str(line);
                block.body.push('\n');
            }
            None => {
                if let Some((level, text)) = heading(raw) {
                    headings.retain(|(l, _)| *l < level);
                    headings.push((level, text));
                }
            }
        }
    }
    assert!(open.is_none(), "an unclosed code block");
    out
}

/// `value` as serialised again, minus the `null`s of optional fields the example left out (the
/// document says absent and `null` mean the same).
fn without_added_nulls(reserialised: Value, original: &Value) -> Value {
    match (reserialised, original) {
        (Value::Object(map), Value::Object(orig)) => Value::Object(
            map.into_iter()
                .filter(|(k, v)| !v.is_null() || orig.contains_key(k))
                .map(|(k, v)| {
                    let v = match orig.get(&k) {
                        Some(o) => without_added_nulls(v, o),
                        None => v,
                    };
                    (k, v)
                })
                .collect(),
        ),
        (Value::Array(items), Value::Array(orig)) if items.len() == orig.len() => Value::Array(
            items
                .into_iter()
                .zip(orig)
                .map(|(v, o)| without_added_nulls(v, o))
                .collect(),
        ),
        (v, _) => v,
    }
}

/// Whether `value` parses as `T` and serialises back to itself.
fn round_trip<T: DeserializeOwned + Serialize>(value: &Value) -> Result<(), String> {
    let parsed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let again = without_added_nulls(serde_json::to_value(&parsed).unwrap(), value);
    if &again == value {
        Ok(())
    } else {
        Err(format!("serialises back as {again}"))
    }
}

/// Check one example value against the type its block's tag names.
fn check_example(tag: &str, value: &Value) -> Result<(), String> {
    match tag {
        "client" => round_trip::<ClientFrame>(value),
        "server" => round_trip::<ServerFrame>(value),
        "RegisterRequest" => round_trip::<RegisterRequest>(value),
        "LoginRequest" => round_trip::<LoginRequest>(value),
        "Session" => round_trip::<Session>(value),
        "ApiError" => round_trip::<ApiError>(value),
        "Health" => round_trip::<Health>(value),
        "ProfileRequest" => round_trip::<natter::protocol::ProfileRequest>(value),
        "User" => round_trip::<natter::protocol::User>(value),
        "PasswordRequest" => round_trip::<natter::protocol::PasswordRequest>(value),
        "SessionList" => round_trip::<natter::protocol::SessionList>(value),
        "DeleteAccountRequest" => round_trip::<natter::protocol::DeleteAccountRequest>(value),
        "InviteRequest" => round_trip::<natter::protocol::InviteRequest>(value),
        "Invite" => round_trip::<natter::protocol::Invite>(value),
        "InviteList" => round_trip::<natter::protocol::InviteList>(value),
        "PendingList" => round_trip::<natter::protocol::PendingList>(value),
        "UsernameRequest" => round_trip::<natter::protocol::UsernameRequest>(value),
        "Ready" => round_trip::<natter::stream::Ready>(value),
        "Ticket" => round_trip::<natter::stream::Ticket>(value),
        "Attachment" => round_trip::<natter::protocol::Attachment>(value),
        other => Err(format!(
            "unknown tag `{other}`: tag json blocks client, server or an HTTP body type"
        )),
    }
}

/// The variant names serde knows for a type, read from the error it gives for an unknown one
/// ("unknown variant `?`, expected one of `a`, `b`"): the list comes from the enum itself, so a
/// new variant shows up here without anyone updating the test.
fn variants<T: DeserializeOwned + std::fmt::Debug>(probe: Value) -> BTreeSet<String> {
    let err = serde_json::from_value::<T>(probe).expect_err("the probe is no variant");
    let text = err.to_string();
    let expected = text
        .split_once("expected")
        .unwrap_or_else(|| panic!("unexpected serde message: {text}"))
        .1;
    let names: BTreeSet<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(names.len() > 1, "no variants in {text}");
    names
}

fn client_types() -> BTreeSet<String> {
    variants::<ClientFrame>(json!({"type": "?"}))
}

fn server_types() -> BTreeSet<String> {
    variants::<ServerFrame>(json!({"type": "?"}))
}

fn reply_kinds() -> BTreeSet<String> {
    variants::<Reply>(json!({"kind": "?"}))
}

fn error_codes() -> BTreeSet<String> {
    variants::<ErrorCode>(json!("?"))
}

/// The part of the document under the level-2 heading `title`, up to the next level-2 heading.
fn section(title: &str) -> &'static str {
    let start = DOC
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("no section {title}"));
    let rest = &DOC[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    &rest[..end]
}

/// The text of each client frame's section (`#### \`type\` ...` under "### Client frames"), by
/// type, and the errors every request can get (the text before the first of them).
fn client_sections() -> (HashMap<String, &'static str>, &'static str) {
    let frames = section("Frames");
    let start = frames.find("### Client frames").expect("### Client frames");
    let end = frames[start..]
        .find("\n### Answers")
        .map_or(frames.len(), |e| start + e);
    let part = &frames[start..end];
    let mut parts = part.split("\n#### `");
    let common = parts.next().unwrap_or("");
    let by_type = parts
        .map(|p| {
            let name = p.split('`').next().unwrap_or("").to_string();
            (name, p)
        })
        .collect();
    (by_type, common)
}

/// The error codes named (in backticks) in `text`.
fn codes_in(text: &str) -> BTreeSet<String> {
    error_codes()
        .into_iter()
        .filter(|code| text.contains(&format!("`{code}`")))
        .collect()
}

/// The `Answer: \`kind\`` a client frame's section documents.
fn documented_kind(section: &str) -> String {
    section
        .split_once("Answer")
        .and_then(|(_, rest)| rest.split('`').nth(1))
        .unwrap_or_else(|| panic!("no `Answer: \\`kind\\`` in {section}"))
        .to_string()
}

#[test]
fn every_json_example_parses_into_its_type_and_back() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for block in blocks(DOC).iter().filter(|b| b.lang == "json") {
        let values = match block.values() {
            Ok(v) if !v.is_empty() => v,
            Ok(_) => {
                failures.push(format!("line {}: empty json block", block.line));
                continue;
            }
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        for value in &values {
            checked += 1;
            if let Err(e) = check_example(&block.tag, value) {
                failures.push(format!("line {} ({}): {value}: {e}", block.line, block.tag));
            }
        }
        // An example under a frame's own heading is that frame (answers sit under the request).
        let frames_heading = block.heading(3).unwrap_or("");
        let own = block
            .heading(4)
            .and_then(|h| h.strip_prefix('`'))
            .and_then(|h| h.split('`').next());
        let expect_type = match (block.tag.as_str(), frames_heading) {
            ("client", "Client frames") | ("server", "Server pushes") => own,
            _ => None,
        };
        if let Some(expect) = expect_type {
            for value in &values {
                if value["type"] != expect {
                    failures.push(format!(
                        "line {}: a `{}` example under the heading of `{expect}`",
                        block.line, value["type"]
                    ));
                }
            }
        }
    }
    assert!(checked >= 30, "only {checked} examples found");
    assert!(
        failures.is_empty(),
        "bad examples:\n{}",
        failures.join("\n")
    );
}

#[test]
fn everything_the_code_knows_is_documented() {
    let examples: Vec<(String, Value)> = blocks(DOC)
        .into_iter()
        .filter(|b| b.lang == "json")
        .flat_map(|b| {
            let tag = b.tag.clone();
            b.values()
                .unwrap_or_default()
                .into_iter()
                .map(move |v| (tag.clone(), v))
        })
        .collect();
    let typed = |tag: &str| -> BTreeSet<String> {
        examples
            .iter()
            .filter(|(t, _)| t == tag)
            .filter_map(|(_, v)| v["type"].as_str().map(str::to_string))
            .collect()
    };
    let mut missing = Vec::new();

    let (sections, _) = client_sections();
    let client_examples = typed("client");
    for t in client_types() {
        if !client_examples.contains(&t) {
            missing.push(format!("no `client` example of the `{t}` frame"));
        }
        if !sections.contains_key(&t) {
            missing.push(format!("no `#### \\`{t}\\`` section under Client frames"));
        }
    }
    let server_examples = typed("server");
    let pushes = section("Frames")
        .split_once("### Server pushes")
        .expect("### Server pushes")
        .1;
    for t in server_types() {
        if !server_examples.contains(&t) {
            missing.push(format!("no `server` example of the `{t}` frame"));
        }
        let is_answer = t == "ok" || t == "error";
        if !is_answer && !pushes.contains(&format!("\n#### `{t}`")) {
            missing.push(format!("no `#### \\`{t}\\`` section under Server pushes"));
        }
    }
    let kinds: BTreeSet<String> = examples
        .iter()
        .filter(|(t, v)| t == "server" && v["type"] == "ok")
        .filter_map(|(_, v)| v["result"]["kind"].as_str().map(str::to_string))
        .collect();
    for k in reply_kinds() {
        if !kinds.contains(&k) {
            missing.push(format!("no `server` example of an `ok` of kind `{k}`"));
        }
    }
    let errors = section("Error codes");
    for code in error_codes() {
        if !errors.contains(&format!("\n| `{code}` |")) {
            missing.push(format!(
                "error code `{code}` is not in the Error codes table"
            ));
        }
    }
    let closes = section("Close codes");
    for code in close::ALL {
        if !closes.contains(&format!("\n| {code} |")) {
            missing.push(format!("close code {code} is not in the Close codes table"));
        }
    }
    assert!(missing.is_empty(), "undocumented:\n{}", missing.join("\n"));

    // And the other way: the tables name nothing the code does not have.
    let known_errors = error_codes();
    for row in errors.lines().filter_map(|l| l.strip_prefix("| `")) {
        let code = row.split('`').next().unwrap_or("");
        assert!(known_errors.contains(code), "`{code}` is no ErrorCode");
    }
    for row in closes.lines().filter_map(|l| l.strip_prefix("| ")) {
        let Ok(code) = row.split(' ').next().unwrap_or("").parse::<u16>() else {
            continue;
        };
        assert!(
            close::ALL.contains(&code),
            "{code} is not in protocol::close"
        );
    }
}

#[test]
fn no_section_is_repeated() {
    let mut seen = BTreeSet::new();
    let mut repeated = Vec::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    for line in DOC.lines() {
        if let Some((level, text)) = heading(line) {
            path.retain(|(l, _)| *l < level);
            path.push((level, text));
            if !seen.insert(path.clone()) {
                repeated.push(format!("{path:?}"));
            }
        }
    }
    assert!(repeated.is_empty(), "repeated sections: {repeated:?}");
    // Every client frame's section documents its answer and its errors.
    let (sections, common) = client_sections();
    for (name, text) in &sections {
        documented_kind(text);
        assert!(text.contains("Errors"), "`{name}` lists no errors");
    }
    for code in ["rate_limited", "bad_request", "unknown_type", "internal"] {
        assert!(
            codes_in(common).contains(code),
            "the errors any request can get miss `{code}`"
        );
    }
}

/// Reads raw text frames (so spelling, not only meaning, can be checked).
async fn raw_answer(c: &mut WsClient, id: u64) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, c.ws.next())
            .await
            .expect("a frame within the wait")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).expect("server frames are JSON");
            serde_json::from_value::<ServerFrame>(v.clone())
                .unwrap_or_else(|e| panic!("undocumented frame {v}: {e}"));
            if v["id"] == id && (v["type"] == "ok" || v["type"] == "error") {
                return v;
            }
        }
    }
}

async fn send_json(c: &mut WsClient, v: &Value) {
    c.send_raw(Message::text(v.to_string())).await;
}

/// The HTTP examples and every client example, sent to a real server in document order.
#[tokio::test]
async fn the_examples_work_against_a_real_server() {
    let server = TestServer::start().await;
    let all = blocks(DOC);
    let example = |tag: &str| -> Vec<Value> {
        all.iter()
            .filter(|b| b.lang == "json" && b.tag == tag)
            .flat_map(|b| b.values().expect("json"))
            .collect()
    };

    let health = reqwest::get(server.http_url("/api/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let health: Health = health.json().await.expect("a Health body");
    assert_eq!(health.protocol, 1);

    // Register the documented account: the answer's user is the documented one.
    let register = example("RegisterRequest").remove(0);
    let (status, body) = server.post("/api/register", register, None).await;
    assert_eq!(status, 201, "{body}");
    let session: Session = serde_json::from_str(&body).expect("a Session body");
    let documented: Session = serde_json::from_value(example("Session").remove(0)).unwrap();
    assert_eq!(session.user, documented.user);
    assert_eq!(session.token.len(), 43, "tokens are 43 characters");

    // alice (with the documented password) and bob; bob opens the DM, so it is conversation 2,
    // and alice's two rooms take 3 and 4: the documented `create_room` then makes room 5.
    let login = example("LoginRequest").remove(0);
    let (status, body) = server
        .post(
            "/api/register",
            json!({"username": login["username"], "password": login["password"]}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.post("/api/login", login, None).await;
    assert_eq!(status, 200, "{body}");
    let alice: Session = serde_json::from_str(&body).expect("a Session body");
    let bob = server.register("bob").await;
    let mut b = server.connect(&bob.token).await;
    b.send_dm("alice", "hi alice").await.expect("dm");
    let mut a = server.connect(&alice.token).await;
    for room in ["three", "four"] {
        let name = room.to_string();
        a.request(|id| ClientFrame::CreateRoom {
            id,
            name,
            private: false,
        })
        .await
        .expect("room");
    }

    let (sections, common) = client_sections();
    let always = codes_in(common);
    let mut succeeded = BTreeSet::new();
    for frame in example("client") {
        let kind = frame["type"].as_str().unwrap().to_string();
        let text = sections[&kind];
        send_json(&mut a, &frame).await;
        let answer = raw_answer(&mut a, frame["id"].as_u64().unwrap()).await;
        if answer["type"] == "ok" {
            assert_eq!(
                answer["result"]["kind"],
                documented_kind(text),
                "{frame} -> {answer}"
            );
            succeeded.insert(kind);
        } else {
            let code = answer["code"].as_str().unwrap();
            assert!(
                codes_in(text).contains(code) || always.contains(code),
                "{frame} -> {answer}: `{code}` is not documented for `{kind}`"
            );
        }
    }
    // Everything but `auth` (the socket is authenticated) and `members` (of the room the
    // `leave` example just left) is valid in this setting and must succeed.
    for kind in client_types() {
        if kind != "auth" && kind != "members" {
            assert!(succeeded.contains(&kind), "the `{kind}` example failed");
        }
    }
}

/// Post `n` messages to `conv`, pipelined in rounds so the writer commits many per transaction
/// and the outbound queue never fills. Needs a server with a high rate limit.
async fn post_many(a: &mut WsClient, conv: natter::protocol::ConvId, n: i64) {
    let mut posted = 0;
    while posted < n {
        let round = (n - posted).min(200);
        let ids: Vec<u64> = (0..round).map(|_| a.next_id()).collect();
        for id in &ids {
            posted += 1;
            a.send_frame(&ClientFrame::Send {
                id: *id,
                target: Target::Conv(conv),
                client_msg_id: uuid::Uuid::new_v4(),
                text: format!("m{posted}"),
                reply_to: None,
                attachments: Vec::new(),
            })
            .await;
        }
        for id in ids {
            a.answer(id).await.expect("sent");
        }
    }
    a.pending.clear();
}

fn unlimited(c: &mut natter::server::ServerConfig) {
    c.rate_limit_per_sec = 100_000;
    c.rate_burst = 100_000;
}

/// The batch sizes of one `sync`, in order, and the seqs they carried.
async fn sync_batches(
    a: &mut WsClient,
    since: Vec<natter::protocol::ConvSeq>,
) -> (Vec<usize>, Vec<i64>) {
    let id = a.next_id();
    a.send_frame(&ClientFrame::Sync { id, since }).await;
    let (mut sizes, mut seqs) = (Vec::new(), Vec::new());
    loop {
        match a.recv().await.expect("socket open") {
            ServerFrame::Batch { messages, .. } => {
                sizes.push(messages.len());
                seqs.extend(messages.iter().map(|m| m.seq));
            }
            ServerFrame::Ok {
                id: got,
                result: Reply::Synced { .. },
            } if got == id => return (sizes, seqs),
            other => panic!("during a sync: {other:?}"),
        }
    }
}

/// The two numbers the document once mixed up: an unlisted conversation replays its 50 newest
/// messages, and replay batches hold up to 200 (the page size). Both are read from the code's
/// constants and must be the ones the document states.
#[tokio::test]
async fn sync_replays_the_documented_numbers() {
    use natter::protocol::limits::{MAX_PAGE, SYNC_UNLISTED};
    let resume = section("Delivery semantics");
    assert!(resume.contains(&format!("at most the **{SYNC_UNLISTED}** newest messages")));
    assert!(resume.contains(&format!("at most **{MAX_PAGE}** messages each")));

    let server = TestServer::start_with(unlimited).await;
    let mut a = server.user("alice").await;
    let general = a.general();
    let total = i64::from(MAX_PAGE) + 50;
    post_many(&mut a, general, total).await;

    let (sizes, seqs) = sync_batches(&mut a, vec![]).await;
    assert_eq!(
        seqs,
        (total - SYNC_UNLISTED + 1..=total).collect::<Vec<_>>()
    );
    assert!(sizes.iter().all(|s| *s as u32 <= MAX_PAGE));
    let everything = vec![natter::protocol::ConvSeq {
        conv: general,
        seq: -3,
    }];
    let (sizes, seqs) = sync_batches(&mut a, everything).await;
    assert_eq!(sizes, vec![MAX_PAGE as usize, 50]);
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
}

/// A `sync` replaced by a later one used to get no answer at all, against "exactly one answer
/// per request". Now it is answered `cancelled` before any of the later one's batches, and the
/// later one replays everything.
#[tokio::test]
async fn a_sync_replaced_by_a_later_one_is_answered_cancelled() {
    const MESSAGES: i64 = 2_000;
    let server = TestServer::start_with(unlimited).await;
    let mut a = server.user("alice").await;
    let general = a.general();
    post_many(&mut a, general, MESSAGES).await;

    let (first, second) = (a.next_id(), a.next_id());
    for id in [first, second] {
        a.send_frame(&ClientFrame::Sync {
            id,
            since: vec![natter::protocol::ConvSeq {
                conv: general,
                seq: 0,
            }],
        })
        .await;
    }
    // Up to the first sync's answer: its own batches (any number). After it, the second
    // sync's batches: all of the messages in order, then its answer. The first is answered
    // `cancelled`, or `synced` when its replay ended before the second sync was read (the
    // document allows both; on a loaded machine the replay of 2,000 can win that race).
    loop {
        match a.recv().await.expect("socket open") {
            ServerFrame::Batch { .. } => continue,
            ServerFrame::Error { id, code, .. } if id == Some(first) => {
                assert_eq!(code, ErrorCode::Cancelled);
                break;
            }
            ServerFrame::Ok {
                id,
                result: Reply::Synced { .. },
            } if id == first => {
                println!("the first sync finished before the second was read");
                break;
            }
            other => panic!("before the first sync's answer: {other:?}"),
        }
    }
    let mut next_seq = 1;
    loop {
        match a.recv().await.expect("socket open") {
            ServerFrame::Batch { conv, messages } => {
                assert_eq!(conv, general);
                for m in messages {
                    assert_eq!(
                        m.seq, next_seq,
                        "the second replay is complete and in order"
                    );
                    next_seq += 1;
                }
            }
            ServerFrame::Ok {
                id,
                result: Reply::Synced { .. },
            } if id == second => break,
            other => panic!("during the second sync: {other:?}"),
        }
    }
    assert_eq!(next_seq, MESSAGES + 1);
    // Nothing more for either sync: the next frame is the answer to a new request.
    let probe = a.next_id();
    a.send_frame(&ClientFrame::Rooms { id: probe }).await;
    match a.recv().await.expect("socket open") {
        ServerFrame::Ok { id, .. } => assert_eq!(id, probe),
        other => panic!("a second answer to a sync: {other:?}"),
    }
}

/// `client_msg_id` is the UUID's value: any accepted spelling is echoed (answer and push) in the
/// canonical lowercase hyphenated form and is the same idempotency key; what is not a UUID is
/// `bad_request` with the request's id.
#[tokio::test]
async fn client_msg_id_is_echoed_in_canonical_form_whatever_its_spelling() {
    let server = TestServer::start().await;
    let mut a = server.user("alice").await;
    let mut b = server.user("bob").await;
    let general = a.general();
    let canonical = "6f1c4a52-8f52-4a43-9b8e-0d4b1f7f6a10";
    let upper = canonical.to_uppercase();

    send_json(
        &mut a,
        &json!({"type": "send", "id": 1, "conv": general, "client_msg_id": upper, "text": "hi"}),
    )
    .await;
    let sent = raw_answer(&mut a, 1).await;
    assert_eq!(sent["result"]["kind"], "sent", "{sent}");
    let message = sent["result"]["message"].clone();
    assert_eq!(message["client_msg_id"], canonical, "{sent}");
    let push = loop {
        let msg = tokio::time::timeout(WAIT, b.ws.next())
            .await
            .expect("a push")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "message" {
                break v;
            }
        }
    };
    assert_eq!(push["message"]["client_msg_id"], canonical, "{push}");

    // Other spellings of the same UUID are retries of the same message.
    let simple = canonical.replace('-', "");
    let braced = format!("{{{upper}}}");
    let urn = format!("urn:uuid:{canonical}");
    for (id, spelling) in [
        (2, canonical.to_string()),
        (3, simple),
        (4, braced),
        (5, urn),
    ] {
        send_json(
            &mut a,
            &json!({"type": "send", "id": id, "conv": general, "client_msg_id": spelling, "text": "again"}),
        )
        .await;
        let again = raw_answer(&mut a, id).await;
        assert_eq!(again["result"]["message"], message, "{spelling}: {again}");
    }

    // Not a UUID, or none at all: bad_request, answered with the request's id.
    for (id, frame) in [
        (
            6,
            json!({"type": "send", "id": 6, "conv": general, "client_msg_id": "not-a-uuid", "text": "x"}),
        ),
        (
            7,
            json!({"type": "send", "id": 7, "conv": general, "client_msg_id": 42, "text": "x"}),
        ),
        (
            8,
            json!({"type": "send", "id": 8, "conv": general, "text": "x"}),
        ),
        (
            9,
            json!({"type": "send", "id": 9, "conv": general, "client_msg_id": "6f1c4a52-8f52-4a43-9b8e-0d4b1f7f6a1", "text": "x"}),
        ),
    ] {
        send_json(&mut a, &frame).await;
        let answer = raw_answer(&mut a, id).await;
        assert_eq!(answer["code"], "bad_request", "{frame} -> {answer}");
    }
    let history = a.history(general, None, None, 200).await.expect("history");
    assert_eq!(history.0.len(), 1, "one message stored: {history:?}");
}

/// "Not only whitespace" means Unicode White_Space; invisible characters that are not
/// White_Space count as text, and lengths are counted in characters, not bytes.
#[tokio::test]
async fn blank_text_is_unicode_whitespace_and_length_is_in_characters() {
    let server = TestServer::start().await;
    let mut a = server.user("alice").await;
    let general = a.general();
    for blank in ["", " ", "\u{3000}\u{a0}\t\r\n ", "\u{2003}\u{2028}\u{85}"] {
        let err = a
            .send_with_id(general, blank, uuid::Uuid::new_v4())
            .await
            .expect_err("blank text is refused");
        assert_eq!(err.0, ErrorCode::BadRequest, "{blank:?}");
    }
    for visible in ["\u{200b}", "\u{feff}", "a", &"👋".repeat(4_000)] {
        a.send_with_id(general, visible, uuid::Uuid::new_v4())
            .await
            .unwrap_or_else(|e| panic!("{visible:?}: {e:?}"));
    }
    let err = a
        .send_with_id(general, &"é".repeat(4_001), uuid::Uuid::new_v4())
        .await
        .expect_err("too long");
    assert_eq!(err.0, ErrorCode::TooLong);
}

/// Errors of requests the document once listed none for, each one checked against the
/// document's list for that request.
#[tokio::test]
async fn each_request_gets_the_errors_its_section_lists() {
    let server = TestServer::start().await;
    let mut a = server.user("alice").await;
    let mut b = server.user("bob").await;
    let c = server.user("carol").await;
    let general = a.general();
    let Reply::Joined { conversation } = b
        .request(|id| ClientFrame::CreateRoom {
            private: false,
            id,
            name: "bobs".into(),
        })
        .await
        .expect("room")
    else {
        panic!("joined expected")
    };
    let room = conversation.id;
    let dm = b.send_dm("carol", "hi").await.expect("dm").conv;
    let nowhere = 9_999;

    let new_id = || uuid::Uuid::new_v4().to_string();
    // By the expected code; `history` checks membership before its fields.
    let cases = [
        (
            ErrorCode::Forbidden,
            vec![
                json!({"type": "members", "conv": room}),
                json!({"type": "read", "conv": room, "seq": 1}),
                json!({"type": "typing", "conv": room}),
                json!({"type": "history", "conv": room, "limit": 0}),
                json!({"type": "set_level", "conv": room, "level": "nothing"}),
                json!({"type": "leave", "conv": general}),
                json!({"type": "leave", "conv": room}),
                json!({"type": "send", "conv": room, "client_msg_id": new_id(), "text": "x"}),
            ],
        ),
        (
            ErrorCode::NotFound,
            vec![
                json!({"type": "members", "conv": dm}),
                json!({"type": "members", "conv": nowhere}),
                json!({"type": "read", "conv": dm, "seq": 1}),
                json!({"type": "typing", "conv": nowhere}),
                json!({"type": "set_level", "conv": dm, "level": "all"}),
                json!({"type": "set_level", "conv": nowhere, "level": "mentions"}),
                json!({"type": "join", "room": "nope"}),
                json!({"type": "join", "room": "not a name"}),
                json!({"type": "leave", "conv": dm}),
                json!({"type": "send", "to": "nobody", "client_msg_id": new_id(), "text": "x"}),
                json!({"type": "watch_presence", "users": ["bob", "nobody"]}),
            ],
        ),
        (
            ErrorCode::BadRequest,
            vec![
                json!({"type": "history", "conv": general}),
                json!({"type": "history", "conv": general, "limit": 201}),
                json!({"type": "history", "conv": general, "limit": 0}),
                json!({"type": "history", "conv": general, "before": 5, "after": 1, "limit": 5}),
                json!({"type": "sync", "since": {"conv": 1}}),
                json!({"type": "send", "to": "alice", "client_msg_id": new_id(), "text": "me"}),
                json!({"type": "send", "conv": general, "to": "bob", "client_msg_id": new_id(), "text": "x"}),
                json!({"type": "auth", "token": "x"}),
                json!({"type": "set_level", "conv": general, "level": "loud"}),
                json!({"type": "set_dnd", "dnd": {"until": 1}}),
                json!({"type": "set_dnd", "dnd": {"until": i64::MAX}}),
                json!({"type": "watch_presence", "users": vec!["bob"; natter::protocol::limits::MAX_WATCHED_USERS + 1]}),
                json!({"type": "watch_presence", "users": "bob"}),
            ],
        ),
        (
            ErrorCode::Conflict,
            vec![json!({"type": "create_room", "name": "BOBS"})],
        ),
        (
            ErrorCode::InvalidName,
            vec![json!({"type": "create_room", "name": "a b"})],
        ),
    ];
    let (sections, common) = client_sections();
    let always = codes_in(common);
    let mut id = 100;
    for (code, frames) in cases {
        for mut frame in frames {
            id += 1;
            frame["id"] = json!(id);
            send_json(&mut a, &frame).await;
            let answer = raw_answer(&mut a, id).await;
            let got: ErrorCode = serde_json::from_value(answer["code"].clone())
                .unwrap_or_else(|_| panic!("{frame} -> {answer}"));
            assert_eq!(got, code, "{frame} -> {answer}");
            let (kind, wire) = (
                frame["type"].as_str().unwrap(),
                answer["code"].as_str().unwrap(),
            );
            assert!(
                codes_in(sections[kind]).contains(wire) || always.contains(wire),
                "`{wire}` is not documented for `{kind}`"
            );
        }
    }
    // Requests with no errors of their own.
    assert!(matches!(
        a.request(|id| ClientFrame::Users { id }).await,
        Ok(Reply::Users { .. })
    ));
    assert!(matches!(
        a.request(|id| ClientFrame::Rooms { id }).await,
        Ok(Reply::Rooms { .. })
    ));
    // A read marker below the current one, or negative, is a no-op that is still `done`.
    let seq = a.send_text(general, "x").await.seq;
    for s in [seq, -5, 0] {
        let answer = a
            .request(|id| ClientFrame::Read {
                id,
                conv: general,
                seq: s,
            })
            .await;
        assert_eq!(answer, Ok(Reply::Done));
    }
    drop((b, c));
}

/// Open a socket with extra upgrade headers; the refusal's HTTP status and ApiError.
async fn refused_upgrade(
    server: &TestServer,
    subprotocol: bool,
    headers: &[(&'static str, &str)],
) -> (u16, ApiError) {
    let mut req = server.ws_url().into_client_request().unwrap();
    if subprotocol {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(natter::protocol::SUBPROTOCOL),
        );
    }
    for (name, value) in headers {
        req.headers_mut()
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    let err = match tokio_tungstenite::connect_async(req).await {
        Ok(_) => panic!("upgrade with {headers:?} was accepted"),
        Err(e) => e,
    };
    let status = handshake_status(&err).unwrap_or_else(|| panic!("not an HTTP refusal: {err}"));
    let tungstenite::Error::Http(resp) = err else {
        unreachable!()
    };
    let body: ApiError = serde_json::from_slice(resp.body().as_deref().unwrap_or_default())
        .expect("an ApiError body");
    (status, body)
}

/// The upgrade checks run in the documented order (Origin before subprotocol before token),
/// the default Origin allowlist is empty, and a POST to /ws is 405 with an ApiError.
#[tokio::test]
async fn upgrade_checks_run_in_the_documented_order() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let good = format!("Bearer {}", alice.token);
    let bad = "Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let origin = "http://localhost:8686";

    let resp = reqwest::Client::new()
        .post(server.ws_url().replace("ws://", "http://"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let body: ApiError = resp.json().await.expect("an ApiError body");
    assert_eq!(body.code, ErrorCode::BadRequest);

    // A foreign Origin is refused before the subprotocol and the token are looked at, and with
    // the default (empty) allowlist even with a good token.
    for (subprotocol, auth) in [(true, bad), (false, bad), (true, good.as_str())] {
        let (status, body) = refused_upgrade(
            &server,
            subprotocol,
            &[("Origin", origin), ("Authorization", auth)],
        )
        .await;
        assert_eq!(
            (status, body.code),
            (403, ErrorCode::Forbidden),
            "{subprotocol} {auth}"
        );
    }
    // The subprotocol before the token.
    let (status, body) = refused_upgrade(&server, false, &[("Authorization", bad)]).await;
    assert_eq!((status, body.code), (400, ErrorCode::BadRequest));
    // Then the token.
    let (status, body) = refused_upgrade(&server, true, &[("Authorization", bad)]).await;
    assert_eq!((status, body.code), (401, ErrorCode::Unauthorized));
    // An allowed Origin matches ignoring case and a trailing slash.
    let listed = TestServer::start_with(|c| c.allowed_origins = vec![format!("{origin}/")]).await;
    let alice = listed.register("alice").await;
    let mut req = listed.ws_url().into_client_request().unwrap();
    let h = req.headers_mut();
    h.insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(natter::protocol::SUBPROTOCOL),
    );
    h.insert("Origin", HeaderValue::from_static("HTTP://LOCALHOST:8686"));
    h.insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {}", alice.token)).unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("an allowed origin connects");
    ws.close(None).await.ok();
}
