//! Your account (docs/protocol.md, "Your account"), against a real server over real HTTP,
//! WebSockets and SQLite: changing the display name reaches peers live and survives a restart,
//! password changes check the current password (charged to the sign-in limits) and can sign out
//! the other sessions, sessions are listed and revoked (only your own), and a deleted account
//! cannot sign in while its DM stays readable for the peer and its rooms hear it leave.
//!
//! Bad inputs tried: empty, blank, too long and hidden-character (U+202E, U+200B) display names,
//! an empty avatar, a request changing nothing, an unknown field, malformed JSON, a wrong
//! password, a too-short new password, unknown and another user's session ids, and every route
//! without a token.

mod support;

use natter::protocol::{
    close, ApiError, ClientFrame, ErrorCode, Member, Reply, ServerFrame, SessionList, User,
};
use serde_json::{json, Value};
use support::{TestServer, WsClient, PASSWORD};

/// An HTTP call with a bearer token: status and body.
async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut req = reqwest::Client::new().request(method, server.http_url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let resp = req.send().await.expect("http request");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

async fn post(server: &TestServer, path: &str, token: &str, body: Value) -> (u16, String) {
    call(
        server,
        reqwest::Method::POST,
        path,
        Some(token),
        Some(&body.to_string()),
    )
    .await
}

/// The documented JSON error body of a refused call, with its status checked.
fn refused(answer: (u16, String), status: u16, code: ErrorCode) -> ApiError {
    assert_eq!(answer.0, status, "{answer:?}");
    let err: ApiError = serde_json::from_str(&answer.1).expect("ApiError body");
    assert_eq!(err.code, code, "{answer:?}");
    err
}

async fn sessions(server: &TestServer, token: &str) -> SessionList {
    let (status, body) = call(
        server,
        reqwest::Method::GET,
        "/api/account/sessions",
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("session list")
}

async fn revoke(server: &TestServer, path: &str, token: &str) -> (u16, String) {
    call(server, reqwest::Method::DELETE, path, Some(token), None).await
}

async fn login_with(server: &TestServer, name: &str, password: &str) -> (u16, String) {
    server
        .post(
            "/api/login",
            json!({"username": name, "password": password}),
            None,
        )
        .await
}

async fn users(ws: &mut WsClient) -> Vec<Member> {
    match ws.request(|id| ClientFrame::Users { id }).await {
        Ok(Reply::Users { users }) => users,
        other => panic!("{other:?}"),
    }
}

fn updated(frame: &ServerFrame, username: &str) -> Option<User> {
    match frame {
        ServerFrame::UserUpdated { user } if user.username == username => Some(user.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn a_display_name_change_reaches_peers_live_and_survives_a_restart() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut alice_ws = server.connect(&alice.token).await;
    let mut bob = server.user("bob").await;

    let (status, body) = post(
        &server,
        "/api/account/profile",
        &alice.token,
        json!({"display_name": "  Alice Liddell ", "avatar": "🐇"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let me: User = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (me.display_name.as_str(), me.avatar.as_str()),
        ("Alice Liddell", "🐇")
    );
    for ws in [&mut bob, &mut alice_ws] {
        let frame = ws.wait_for(|f| updated(f, "alice").is_some()).await;
        assert_eq!(updated(&frame, "alice"), Some(me.clone()));
    }
    // Only the avatar: the display name stays.
    let (status, body) = post(
        &server,
        "/api/account/profile",
        &alice.token,
        json!({"avatar": "🦊"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let me: User = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (me.display_name.as_str(), me.avatar.as_str()),
        ("Alice Liddell", "🦊")
    );

    let bad = [
        (json!({"display_name": ""}), ErrorCode::InvalidName),
        (json!({"display_name": "   "}), ErrorCode::InvalidName),
        (
            json!({"display_name": "x".repeat(65)}),
            ErrorCode::InvalidName,
        ),
        (
            json!({"display_name": "\u{202e}ecila"}),
            ErrorCode::InvalidName,
        ),
        (
            json!({"display_name": "al\u{200b}ice"}),
            ErrorCode::InvalidName,
        ),
        (json!({"avatar": " "}), ErrorCode::InvalidName),
        (json!({"avatar": "x".repeat(33)}), ErrorCode::InvalidName),
        (json!({}), ErrorCode::BadRequest),
        (
            json!({"display_name": "A", "admin": true}),
            ErrorCode::BadRequest,
        ),
        (json!({"display_name": 5}), ErrorCode::BadRequest),
    ];
    for (body, code) in bad {
        let answer = post(&server, "/api/account/profile", &alice.token, body.clone()).await;
        refused(answer, 400, code);
    }
    let malformed = call(
        &server,
        reqwest::Method::POST,
        "/api/account/profile",
        Some(&alice.token),
        Some("{\"display_name\": "),
    )
    .await;
    refused(malformed, 400, ErrorCode::BadRequest);
    let anonymous = call(
        &server,
        reqwest::Method::POST,
        "/api/account/profile",
        None,
        Some(r#"{"display_name": "Mallory"}"#),
    )
    .await;
    refused(anonymous, 401, ErrorCode::Unauthorized);

    // After a restart the server still has the name.
    drop((alice_ws, bob));
    let (dir, stopped) = server.stop().await;
    stopped.unwrap();
    let server = TestServer::start_in(dir, |_| {}).await;
    let bob = server.login("bob").await;
    let mut bob = server.connect(&bob.token).await;
    let listed = users(&mut bob).await;
    let alice = listed.iter().find(|m| m.user.username == "alice").unwrap();
    assert_eq!(alice.user.display_name, "Alice Liddell");
    assert_eq!(alice.user.avatar, "🦊");
}

async fn change_password(
    server: &TestServer,
    token: &str,
    current: &str,
    new: &str,
) -> (u16, String) {
    let body = json!({"current_password": current, "new_password": new});
    post(server, "/api/account/password", token, body).await
}

#[tokio::test]
async fn a_wrong_current_password_is_refused_and_counts_toward_the_sign_in_limits() {
    let server = TestServer::start_with(|c| c.account_free_failures = 2).await;
    let alice = server.register("alice").await;
    let new = "a new long password";
    let too_short = change_password(&server, &alice.token, PASSWORD, "short").await;
    refused(too_short, 400, ErrorCode::InvalidName);
    for _ in 0..2 {
        let wrong = change_password(&server, &alice.token, "not my password", new).await;
        refused(wrong, 401, ErrorCode::Unauthorized);
    }
    // The account's free failures are spent: the next try waits, even with the right password,
    // and so does a sign-in (the same limits).
    let (status, body) = change_password(&server, &alice.token, PASSWORD, new).await;
    assert_eq!(status, 429, "{body}");
    let (status, body) = login_with(&server, "alice", PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    drop(server);

    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (status, body) = change_password(&server, &alice.token, PASSWORD, new).await;
    assert_eq!(status, 204, "{body}");
    refused(
        login_with(&server, "alice", PASSWORD).await,
        401,
        ErrorCode::Unauthorized,
    );
    let (status, body) = login_with(&server, "alice", new).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn signing_out_the_other_sessions_closes_their_sockets_but_not_this_one() {
    let server = TestServer::start().await;
    let here = server.register("alice").await;
    let other = server.login("alice").await;
    let mut here_ws = server.connect(&here.token).await;
    let mut other_ws = server.connect(&other.token).await;
    let general = here_ws.general();

    // Without the box ticked, the other session lives on.
    let (status, body) = post(
        &server,
        "/api/account/password",
        &here.token,
        json!({"current_password": PASSWORD, "new_password": "second password"}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    other_ws.send_text(general, "still here").await;

    let (status, body) = post(
        &server,
        "/api/account/password",
        &here.token,
        json!({"current_password": "second password", "new_password": "third password",
               "sign_out_others": true}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(other_ws.expect_close().await, Some(close::UNAUTHORIZED));
    here_ws.send_text(general, "this one stays").await;
    let listed = sessions(&server, &here.token).await;
    assert_eq!(listed.sessions.len(), 1, "{listed:?}");
    assert!(listed.sessions[0].current);
    let again = WsClient::connect(&server.ws_url(), Some(&other.token)).await;
    assert_eq!(
        again.err().as_ref().and_then(support::handshake_status),
        Some(401)
    );
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_only_by_their_owner() {
    let server = TestServer::start().await;
    let resp = reqwest::Client::new()
        .post(server.http_url("/api/register"))
        .header("user-agent", "natter-test 1.0 on linux")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let first: natter::protocol::Session = resp.json().await.unwrap();
    let (status, body) = server
        .post(
            "/api/login",
            json!({"username": "alice", "password": PASSWORD, "label": "Alice's phone\u{202e}"}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let phone: natter::protocol::Session = serde_json::from_str(&body).unwrap();
    let mut phone_ws = server.connect(&phone.token).await;
    let bob = server.register("bob").await;

    let listed = sessions(&server, &first.token).await;
    assert_eq!(listed.sessions.len(), 2, "{listed:?}");
    let newest = &listed.sessions[0];
    assert_eq!(
        newest.label.as_deref(),
        Some("Alice's phone"),
        "hidden characters dropped"
    );
    assert!(!newest.current);
    assert!(listed.sessions[1].current);
    assert_eq!(
        listed.sessions[1].label.as_deref(),
        Some("natter-test 1.0 on linux"),
        "the User-Agent names a session whose sign-in sent no label"
    );
    assert!(newest.expires_at > newest.created_at);
    // The list gives neither tokens nor hashes.
    let raw = serde_json::to_string(&listed).unwrap();
    assert!(!raw.contains(&first.token) && !raw.contains(&phone.token));
    assert_eq!(newest.id.len(), 32);

    // Bob neither sees nor revokes Alice's sessions.
    let bobs = sessions(&server, &bob.token).await;
    assert_eq!(bobs.sessions.len(), 1);
    assert!(bobs.sessions.iter().all(|s| s.id != newest.id));
    let path = format!("/api/account/sessions/{}", newest.id);
    let theirs = revoke(&server, &path, &bob.token).await;
    refused(theirs, 404, ErrorCode::NotFound);
    let unknown = revoke(
        &server,
        "/api/account/sessions/0123456789abcdef0123456789abcdef",
        &first.token,
    )
    .await;
    refused(unknown, 404, ErrorCode::NotFound);
    let anonymous = call(&server, reqwest::Method::DELETE, &path, None, None).await;
    refused(anonymous, 401, ErrorCode::Unauthorized);
    let anonymous = call(
        &server,
        reqwest::Method::GET,
        "/api/account/sessions",
        None,
        None,
    )
    .await;
    refused(anonymous, 401, ErrorCode::Unauthorized);

    let (status, body) = revoke(&server, &path, &first.token).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(phone_ws.expect_close().await, Some(close::UNAUTHORIZED));
    assert_eq!(sessions(&server, &first.token).await.sessions.len(), 1);
    let twice = revoke(&server, &path, &first.token).await;
    refused(twice, 404, ErrorCode::NotFound);
}

#[tokio::test]
async fn a_deleted_account_signs_in_no_more_and_its_peers_keep_the_conversation() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut alice_ws = server.connect(&alice.token).await;
    let mut bob = server.user("bob").await;
    let mut carol = server.user("carol").await;
    let club = match alice_ws
        .request(|id| ClientFrame::CreateRoom {
            private: false,
            id,
            name: "club".into(),
        })
        .await
    {
        Ok(Reply::Joined { conversation }) => conversation.id,
        other => panic!("{other:?}"),
    };
    carol
        .request(|id| ClientFrame::Join {
            id,
            room: "club".into(),
        })
        .await
        .unwrap();
    let dm = alice_ws.send_dm("bob", "a secret <b>").await.unwrap().conv;
    bob.send_dm("alice", "got it").await.unwrap();

    let wrong = post(
        &server,
        "/api/account/delete",
        &alice.token,
        json!({"password": "not it"}),
    )
    .await;
    refused(wrong, 401, ErrorCode::Unauthorized);
    let missing = post(&server, "/api/account/delete", &alice.token, json!({})).await;
    refused(missing, 400, ErrorCode::BadRequest);

    let (status, body) = post(
        &server,
        "/api/account/delete",
        &alice.token,
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(alice_ws.expect_close().await, Some(close::UNAUTHORIZED));
    refused(
        login_with(&server, "alice", PASSWORD).await,
        401,
        ErrorCode::Unauthorized,
    );
    // The username stays reserved: nobody can pose as the sender of the kept messages.
    let (status, body) = server
        .post(
            "/api/register",
            json!({"username": "alice", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // Bob hears it and still reads the DM, but cannot write to it.
    let frame = bob.wait_for(|f| updated(f, "alice").is_some()).await;
    let gone = updated(&frame, "alice").unwrap();
    assert!(gone.deleted);
    assert_eq!(gone.avatar, "");
    let history = bob.all_history(dm).await;
    assert_eq!(
        history.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["a secret <b>", "got it"]
    );
    assert_eq!(history[0].sender, "alice");
    for attempt in [
        bob.send_with_id(dm, "hello?", uuid::Uuid::new_v4()).await,
        bob.send_dm("alice", "hello?").await,
    ] {
        assert_eq!(attempt.unwrap_err().0, ErrorCode::Forbidden);
    }
    // Carol sees Alice leave the club; the member and user lists no longer have her.
    carol
        .wait_for(|f| {
            matches!(f, ServerFrame::Membership { conv, username, joined: false }
                if *conv == club && username == "alice")
        })
        .await;
    match carol
        .request(|id| ClientFrame::Members { id, conv: club })
        .await
    {
        Ok(Reply::Members { members, .. }) => {
            let names: Vec<_> = members.iter().map(|m| m.user.username.as_str()).collect();
            assert_eq!(names, ["carol"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(users(&mut carol)
        .await
        .iter()
        .all(|m| m.user.username != "alice"));
    // Its token is dead for every route.
    let after = post(
        &server,
        "/api/account/profile",
        &alice.token,
        json!({"display_name": "back"}),
    )
    .await;
    refused(after, 401, ErrorCode::Unauthorized);
}
