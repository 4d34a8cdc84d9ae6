//! Names against a real server on 127.0.0.1:0 with its real SQLite store: differently encoded
//! and differently cased spellings are one account or room (fullwidth, NFC/NFD Hangul, KELVIN
//! SIGN, ß/SS, decomposed café), look-alikes of an existing name are refused (Cyrillic
//! homoglyphs), other scripts keep working (张伟), display and room names refuse bidi and
//! invisible characters, and a database from before these rules keeps its colliding accounts.

mod support;

use natter::protocol::{ClientFrame, ConvKind, ErrorCode, Reply, ServerFrame, Session};
use support::{TestServer, PASSWORD};

/// POST /api/register with `body`; (status, `code` of an error body or "", the whole body).
async fn register_body(server: &TestServer, body: serde_json::Value) -> (u16, String, String) {
    let (status, text) = server.post("/api/register", body, None).await;
    let v: serde_json::Value = serde_json::from_str(&text).expect("a JSON body");
    let code = v["code"].as_str().unwrap_or_default().to_owned();
    (status, code, text)
}

async fn register_as(server: &TestServer, name: &str) -> (u16, String, String) {
    register_body(
        server,
        serde_json::json!({"username": name, "password": PASSWORD}),
    )
    .await
}

fn session(body: &str) -> Session {
    serde_json::from_str(body).expect("a session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spellings_of_one_name_are_one_account() {
    let server = TestServer::start().await;
    // (first registered, later spellings that are the same name, the stored form)
    let cases: [(&str, &[&str], &str); 5] = [
        (
            "alice",
            &["ＡＬＩＣＥ", "Alice", "ALICE", "ａｌｉｃｅ"],
            "alice",
        ),
        // NFC U+D55C vs the NFD jamo sequence of the same syllable.
        ("\u{d55c}", &["\u{1112}\u{1161}\u{11ab}"], "\u{d55c}"),
        // KELVIN SIGN K is NFKC K.
        ("\u{212a}ate", &["kate", "KATE"], "Kate"),
        ("Straße", &["STRASSE", "strasse", "STRAẞE"], "Straße"),
        // Decomposed é (e + U+0301) is accepted and stored composed.
        ("cafe\u{301}", &["café", "CAFÉ"], "café"),
    ];
    for (first, others, stored) in cases {
        let (status, _, body) = register_as(&server, first).await;
        assert_eq!(status, 201, "{first:?}: {body}");
        assert_eq!(session(&body).user.username, stored, "{first:?}");
        for other in others {
            let (status, code, body) = register_as(&server, other).await;
            assert_eq!(
                (status, code.as_str()),
                (409, "conflict"),
                "{other:?}: {body}"
            );
            // Any spelling signs in to the one account, shown as it was stored.
            assert_eq!(server.login(other).await.user.username, stored, "{other:?}");
        }
    }
    // Other scripts and the plain ASCII alphabet keep working.
    for name in ["张伟", "xy", "a.b", "हिन्दी", "Ünïcødé"] {
        let (status, _, body) = register_as(&server, name).await;
        assert_eq!(status, 201, "{name}: {body}");
        assert_eq!(server.login(name).await.user.username, name);
    }
    let users = {
        let me = server.login("alice").await;
        let mut ws = server.connect(&me.token).await;
        match ws.request(|id| ClientFrame::Users { id }).await.unwrap() {
            Reply::Users { users } => users,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(users.len(), 10, "one account per name: {users:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_looks_like_an_existing_one_is_refused() {
    let server = TestServer::start().await;
    server.register("alice").await;
    server.register("paypal").await;
    // Cyrillic а (U+0430); Cyrillic р (U+0440) and а; one Cyrillic а; digit 1 for l.
    for spoof in [
        "\u{430}lice",
        "\u{440}\u{430}yp\u{430}l",
        "p\u{430}ypal",
        "paypa1",
    ] {
        let (status, code, body) = register_as(&server, spoof).await;
        assert_eq!(
            (status, code.as_str()),
            (409, "conflict"),
            "{spoof:?}: {body}"
        );
        assert!(
            body.contains("looks the same") && body.contains("existing user"),
            "{body}"
        );
    }
    // A look-alike of nobody is fine, and so is a second Chinese name.
    server.register("bob").await;
    server.register("张伟").await;
    server.register("张三").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dm_and_join_find_any_spelling_and_rooms_are_unique_the_same_way() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("Straße").await;
    let mut a = server.connect(&alice.token).await;
    let mut b = server.connect(&bob.token).await;

    // A DM to the fullwidth spelling reaches alice; one to STRASSE reaches Straße.
    let sent = b.send_dm("ＡＬＩＣＥ", "hello").await.expect("dm sent");
    let got = a
        .wait_for(|f| matches!(f, ServerFrame::Message { message } if message.id == sent.id))
        .await;
    let ServerFrame::Message { message } = got else {
        unreachable!()
    };
    assert_eq!(message.sender, "Straße");
    let back = a.send_dm("STRASSE", "hi").await.expect("dm back");
    assert_eq!(back.conv, sent.conv, "the same DM conversation");
    assert_eq!(
        a.send_dm("\u{430}lice", "x").await.unwrap_err().0,
        ErrorCode::NotFound,
        "a look-alike is not the same user"
    );

    let created = a
        .request(|id| ClientFrame::CreateRoom {
            private: false,
            id,
            name: "Ｌｏｕｎｇｅ".into(),
        })
        .await
        .expect("room created");
    let Reply::Joined { conversation } = created else {
        panic!("{created:?}")
    };
    assert_eq!(conversation.name, "Lounge", "stored in NFKC, case kept");
    for (name, why) in [
        ("lounge", "same name"),
        ("LOUNGE", "same name"),
        ("L\u{43e}unge", "Cyrillic о looks the same"),
    ] {
        let r = b
            .request(|id| ClientFrame::CreateRoom {
                private: false,
                id,
                name: name.into(),
            })
            .await;
        let (code, message) = r.unwrap_err();
        assert_eq!(code, ErrorCode::Conflict, "{name}: {why}: {message}");
    }
    let joined = b
        .request(|id| ClientFrame::Join {
            id,
            room: "ｌｏｕｎｇｅ".into(),
        })
        .await
        .expect("joined by another spelling");
    let Reply::Joined { conversation: j } = joined else {
        panic!("{joined:?}")
    };
    assert_eq!((j.id, j.kind), (conversation.id, ConvKind::Room));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_characters_in_names_are_invalid() {
    let server = TestServer::start().await;
    let bad_display = [
        ("\u{202e}ecila", "RIGHT-TO-LEFT OVERRIDE"),
        ("\u{2067}alice\u{2069}", "RIGHT-TO-LEFT ISOLATE"),
        ("ali\u{200e}ce", "LEFT-TO-RIGHT MARK"),
        ("ali\u{61c}ce", "ARABIC LETTER MARK"),
        ("al\u{200d}ice", "ZERO WIDTH JOINER"),
        ("al\u{200b}ice", "ZERO WIDTH SPACE"),
        ("al\u{2060}ice", "WORD JOINER"),
        ("\u{feff}alice", "BYTE ORDER MARK"),
        ("a\u{ad}lice", "SOFT HYPHEN"),
        ("a\u{3164}", "HANGUL FILLER"),
        ("line\u{2028}break", "LINE SEPARATOR"),
        ("\u{1b}[31mred", "ESC"),
    ];
    for (i, (display, what)) in bad_display.iter().enumerate() {
        let (status, code, body) = register_body(
            &server,
            serde_json::json!({
                "username": format!("user{i}"), "password": PASSWORD, "display_name": display
            }),
        )
        .await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_name"),
            "{what}: {body}"
        );
        assert!(body.contains("display name"), "{what}: {body}");
        // The same characters in a username are refused too.
        let (status, code, body) = register_as(&server, &format!("x{display}")).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_name"),
            "{what}: {body}"
        );
    }
    // White_Space at the ends is trimmed; spaces inside a display name are kept.
    let (status, _, body) = register_body(
        &server,
        serde_json::json!({
            "username": "carol", "password": PASSWORD, "display_name": "\u{3000} Carol  Ann\t"
        }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(session(&body).user.display_name, "Carol  Ann");

    let me = server.login("carol").await;
    let mut ws = server.connect(&me.token).await;
    for room in [
        "\u{202e}moor",
        "lou\u{200d}nge",
        "lounge\u{fe0f}",
        "tea\u{2066}",
    ] {
        let r = ws
            .request(|id| ClientFrame::CreateRoom {
                private: false,
                id,
                name: room.into(),
            })
            .await;
        assert_eq!(r.unwrap_err().0, ErrorCode::InvalidName, "{room:?}");
    }
}

/// A store at schema version 2 (before the name keys) holding accounts that are one name under
/// the new rules: the server migrates it, keeps every account, and each still signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_the_rules_keeps_colliding_accounts() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let dir = tempfile::tempdir().unwrap();
    {
        let db = rusqlite::Connection::open(dir.path().join("natter.db")).unwrap();
        db.execute_batch(include_str!("../src/server/store/migrations/0001_init.sql"))
            .unwrap();
        db.execute_batch(include_str!(
            "../src/server/store/migrations/0002_unread_by_sender.sql"
        ))
        .unwrap();
        db.pragma_update(None, "user_version", 2).unwrap();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let hash = argon2::Argon2::default()
            .hash_password(PASSWORD.as_bytes(), &salt)
            .unwrap()
            .to_string();
        // Old keys were the lowercased name, so these four could all be registered.
        for name in ["Straße", "STRASSE", "alice", "ＡＬＩＣＥ"] {
            db.execute(
                "INSERT INTO users (username, name_key, display_name, avatar, password_hash, \
                 created_at) VALUES (?1, lower(?1), ?1, 'cat', ?2, 0)",
                rusqlite::params![name, hash],
            )
            .unwrap();
            db.execute(
                "INSERT INTO members (conv_id, user_id) VALUES (1, last_insert_rowid())",
                [],
            )
            .unwrap();
        }
        db.execute(
            "INSERT INTO conversations (kind, name, name_key, created_at) \
             VALUES ('room', 'Café', 'café', 0)",
            [],
        )
        .unwrap();
    }
    // A SQLite file from before the rules, on every test pass.
    let server = TestServer::start_in(dir, |c| c.store = None).await;
    // The exact spelling reaches its own account; another spelling the oldest.
    for (typed, account) in [
        ("Straße", "Straße"),
        ("STRASSE", "STRASSE"),
        ("strasse", "Straße"),
        ("ＡＬＩＣＥ", "ＡＬＩＣＥ"),
        ("Alice", "alice"),
    ] {
        assert_eq!(server.login(typed).await.user.username, account, "{typed}");
    }
    // New registrations of that name, or one that looks like it, are refused.
    for name in ["straße", "\u{430}lice", "ALICE"] {
        let (status, code, body) = register_as(&server, name).await;
        assert_eq!((status, code.as_str()), (409, "conflict"), "{name}: {body}");
    }
    let me = server.login("alice").await;
    let mut ws = server.connect(&me.token).await;
    let r = ws
        .request(|id| ClientFrame::Join {
            id,
            room: "CAFE\u{301}".into(),
        })
        .await;
    assert!(
        matches!(r, Ok(Reply::Joined { ref conversation }) if conversation.name == "Café"),
        "{r:?}"
    );
    let r = ws
        .request(|id| ClientFrame::CreateRoom {
            private: false,
            id,
            name: "cafe\u{301}".into(),
        })
        .await;
    assert_eq!(r.unwrap_err().0, ErrorCode::Conflict);
}
