//! Run by its host (docs/protocol.md, "Run by its host"), against a real server over real HTTP,
//! WebSockets and its store (SQLite, or PostgreSQL with `NATTER_TEST_POSTGRES`): the first
//! account is the server's admin and no later one is, even when the first registrations race;
//! `natter-server admin grant|revoke|list` changes and lists the admins through the store while
//! the server runs (what the user may do follows at once; the user's open sockets are told the
//! new `admin` and each room's new `moderator` without reconnecting), and the server shows the
//! new roles in `hello` after a restart. Registration modes: on an invite-only server registration needs an
//! invite, which works once, expires (on the server's test clock) and can be revoked, and of
//! racing registrations with one invite exactly one wins; on an approval server new accounts
//! wait, cannot sign in, and are approved (they join `general`) or rejected (the name is free).
//! A private room is in no non-member's room list, and every question a non-member asks about
//! it (join by name, history, members, send, read, leave, level, add) gets the answer for a
//! room that does not exist, until a member adds them. Moderation: a room's creator and an
//! admin delete others' messages there (a member may not, nobody may in a DM), remove members
//! (who hear it at once and may rejoin) and ban them (who then cannot join or be added). An
//! admin bans a user from the server: every socket of theirs closes at once with 4005, their
//! token and sign-in are refused, nobody else is touched; unbanned, they sign in again.
//! Every conversation object says whether the room is private and whether its receiver
//! moderates it (the creator and an admin do, another member does not, nobody does a DM): in
//! `joined` answers, `conversation_added` pushes and `hello`, also after a restart (from the
//! store).
//!
//! Bad inputs tried: `natter-server admin grant` of a user that does not exist; registering
//! with no invite, an unknown code, a used, an expired and a revoked one; `expires_in` too short,
//! too long, and an unknown field; revoking an id that is not a number, an unknown one and one
//! already revoked; approving and rejecting a name that does not wait; every admin route called
//! by a non-admin and without a token; `add_member` by a non-member, of an unknown user, into a
//! DM; `remove_member` by a non-moderator, from `general`, of an unknown user and of a
//! non-member; a banned user's join, add and send; a server ban by a non-admin, of an admin and
//! of an unknown user.

mod support;

use std::time::Duration;

use natter::protocol::{
    close, limits, ApiError, ClientFrame, Conversation, ErrorCode, Invite, InviteList, PendingList,
    Registration, Reply, ServerFrame, Session, User,
};
use natter::server::Clock;
use reqwest::Method;
use serde_json::{json, Value};
use support::{natter_server_admin, TestServer, WsClient, PASSWORD};

/// An HTTP call with an optional bearer token and JSON body: status and body.
async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = reqwest::Client::new().request(method, server.http_url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("http request");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

/// The error code of an ApiError body.
fn code(body: &str) -> ErrorCode {
    serde_json::from_str::<ApiError>(body)
        .unwrap_or_else(|e| panic!("not an ApiError ({e}): {body}"))
        .code
}

/// The status and error code of a refused call.
fn refused((status, body): (u16, String)) -> (u16, ErrorCode) {
    (status, code(&body))
}

/// `GET path` with `token`, parsed; panics unless it is 200.
async fn get<T: serde::de::DeserializeOwned>(server: &TestServer, token: &str, path: &str) -> T {
    let (status, body) = call(server, Method::GET, path, Some(token), None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Register `name`, with `invite` when given: status and body.
async fn register(server: &TestServer, name: &str, invite: Option<&str>) -> (u16, String) {
    let mut body = json!({"username": name, "password": PASSWORD});
    if let Some(code) = invite {
        body["invite"] = json!(code);
    }
    server.post("/api/register", body, None).await
}

/// `admin` makes an invite valid for `secs` (the default when None); panics unless it is made.
async fn invite(server: &TestServer, admin: &Session, secs: Option<u64>) -> Invite {
    let body = match secs {
        Some(s) => json!({ "expires_in": s }),
        None => json!({}),
    };
    let (status, body) = call(
        server,
        Method::POST,
        "/api/invites",
        Some(&admin.token),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_str(&body).expect("an Invite")
}

/// Whether `hello` says its user is an admin.
async fn hello_says_admin(server: &TestServer, session: &Session) -> bool {
    let mut ws = WsClient::connect(&server.ws_url(), Some(&session.token))
        .await
        .expect("ws connect");
    match ws.expect_hello().await {
        ServerFrame::Hello { user, .. } => user.admin,
        other => panic!("expected hello, got {other:?}"),
    }
}

#[tokio::test]
async fn the_first_account_is_admin_and_later_ones_are_not() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    assert!(alice.user.admin, "the first account is the admin");
    assert!(!bob.user.admin, "a second account is not");
    assert!(hello_says_admin(&server, &alice).await);
    assert!(!hello_says_admin(&server, &bob).await);
}

#[tokio::test]
async fn racing_first_registrations_make_exactly_one_admin() {
    let server = TestServer::start().await;
    let names = ["ann", "ben", "cat", "dan", "eve", "fay"];
    let sessions =
        futures_util::future::join_all(names.iter().map(|name| server.register(name))).await;
    let admins: Vec<&str> = sessions
        .iter()
        .filter(|s| s.user.admin)
        .map(|s| s.user.username.as_str())
        .collect();
    assert_eq!(admins.len(), 1, "exactly one admin, got {admins:?}");
}

#[tokio::test]
async fn natter_server_admin_grants_revokes_and_lists_while_the_server_runs() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;

    let (ok, out, err) = natter_server_admin(&server, &["list"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "alice\n");

    let (ok, out, err) = natter_server_admin(&server, &["grant", "Bob"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "bob is an admin\n", "the stored spelling is named");
    let (ok, out, err) = natter_server_admin(&server, &["revoke", "alice"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "alice is no longer an admin\n");
    let (_, out, _) = natter_server_admin(&server, &["list"]).await;
    assert_eq!(out, "bob\n");

    // Authority follows the store at once: alice, no longer an admin, may not make invites.
    let made = call(
        &server,
        Method::POST,
        "/api/invites",
        Some(&alice.token),
        Some(json!({})),
    );
    assert_eq!(refused(made.await), (403, ErrorCode::Forbidden));
    invite(&server, &bob, None).await;

    // Bad input: a user that does not exist.
    let (ok, _, err) = natter_server_admin(&server, &["grant", "nobody"]).await;
    assert!(!ok, "granting an unknown user fails");
    assert!(err.contains("no such user"), "{err}");
    let (_, out, _) = natter_server_admin(&server, &["list"]).await;
    assert_eq!(out, "bob\n", "nothing changed");

    let (dir, result) = server.stop().await;
    result.expect("clean stop");
    let server = TestServer::start_in(dir, |_| {}).await;
    assert!(
        hello_says_admin(&server, &bob).await,
        "bob's hello says admin"
    );
    assert!(
        !hello_says_admin(&server, &alice).await,
        "alice's no longer does"
    );
}

/// Whether `frame` is a `user_updated` saying `name` is an admin (`admin`) or not.
fn says_admin(frame: &ServerFrame, name: &str, admin: bool) -> bool {
    matches!(frame, ServerFrame::UserUpdated { user } if user.username == name && user.admin == admin)
}

/// The rooms (name, moderator) a `conversations_updated` frame describes, in its order.
fn moderated(frame: ServerFrame) -> Vec<(String, bool)> {
    match frame {
        ServerFrame::ConversationsUpdated { conversations } => conversations
            .into_iter()
            .map(|c| (c.name, c.moderator))
            .collect(),
        other => panic!("expected conversations_updated, got {other:?}"),
    }
}

/// `natter-server admin grant|revoke` reaches the user's open socket without a reconnect (the
/// server reads the admins from the store every couple of seconds): `user_updated` tells them
/// and carol, who shares a room with them, the new `admin`, and `conversations_updated` turns
/// `moderator` in each room bob is in but did not create (general, carol's den), never in his
/// own (bobs, which he moderates either way).
#[tokio::test]
async fn a_grant_and_a_revoke_reach_the_users_open_sockets() {
    let server = TestServer::start().await;
    server.register("ada").await; // the admin, so bob is not one
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let mut b = server.connect(&bob.token).await;
    let mut c = server.connect(&carol.token).await;
    c.create_room("den", false).await;
    b.request(|id| ClientFrame::Join {
        id,
        room: "den".into(),
    })
    .await
    .expect("bob joins den");
    assert!(b.create_room("bobs", false).await.moderator);
    let is_update = |f: &ServerFrame| matches!(f, ServerFrame::ConversationsUpdated { .. });
    let rooms = |moderator: bool| {
        vec![
            (limits::DEFAULT_ROOM.to_string(), moderator),
            ("den".to_string(), moderator),
        ]
    };

    let (ok, _, err) = natter_server_admin(&server, &["grant", "bob"]).await;
    assert!(ok, "{err}");
    b.wait_for(|f| says_admin(f, "bob", true)).await;
    assert_eq!(moderated(b.wait_for(is_update).await), rooms(true));
    c.wait_for(|f| says_admin(f, "bob", true)).await;

    let (ok, _, err) = natter_server_admin(&server, &["revoke", "bob"]).await;
    assert!(ok, "{err}");
    b.wait_for(|f| says_admin(f, "bob", false)).await;
    assert_eq!(moderated(b.wait_for(is_update).await), rooms(false));
    c.wait_for(|f| says_admin(f, "bob", false)).await;
    // A new socket's hello agrees with what the open one was told.
    let Some(ServerFrame::Hello { conversations, .. }) = server.connect(&bob.token).await.hello
    else {
        unreachable!("connect reads the hello")
    };
    let flags: Vec<(String, bool)> = conversations
        .into_iter()
        .map(|c| (c.name, c.moderator))
        .collect();
    let mut want = rooms(false);
    want.push(("bobs".to_string(), true));
    assert_eq!(flags, want);
}

#[tokio::test]
async fn an_invite_only_server_needs_an_invite_that_works_once() {
    let server = TestServer::start_with(|c| c.registration = Registration::Invite).await;
    // The first account needs none: there is nobody to make one.
    let (status, body) = register(&server, "alice", None).await;
    assert_eq!(status, 201, "{body}");
    let alice: Session = serde_json::from_str(&body).unwrap();
    assert!(alice.user.admin);

    let no_invite = refused(register(&server, "bob", None).await);
    assert_eq!(no_invite, (403, ErrorCode::InviteRequired));
    let unknown = refused(register(&server, "bob", Some("not-a-code")).await);
    assert_eq!(unknown, (403, ErrorCode::InvalidInvite));

    let made = invite(&server, &alice, None).await;
    let code_text = made.code.clone().expect("the new invite's code");
    assert!(code_text.len() >= 22, "at least 128 bits: {code_text}");
    assert_eq!(made.created_by, "alice");
    assert_eq!(made.expires_at - made.created_at, 7 * 24 * 3_600_000);
    let listed: InviteList = get(&server, &alice.token, "/api/invites").await;
    assert_eq!(listed.invites.len(), 1);
    assert_eq!(listed.invites[0].id, made.id);
    assert_eq!(listed.invites[0].code, None, "a code is shown only once");

    let (status, body) = register(&server, "bob", Some(&code_text)).await;
    assert_eq!(status, 201, "{body}");
    let bob: Session = serde_json::from_str(&body).unwrap();
    assert!(!bob.user.admin);
    server.connect(&bob.token).await;
    // Used up: a second registration with it is refused, and it is no longer listed.
    let used = refused(register(&server, "carol", Some(&code_text)).await);
    assert_eq!(used, (403, ErrorCode::InvalidInvite));
    let listed: InviteList = get(&server, &alice.token, "/api/invites").await;
    assert!(listed.invites.is_empty(), "{listed:?}");

    let health = reqwest::get(server.http_url("/api/health")).await.unwrap();
    let health: natter::protocol::Health = health.json().await.unwrap();
    assert_eq!(health.registration, Some(Registration::Invite));
}

#[tokio::test]
async fn invites_expire_on_the_servers_clock_and_can_be_revoked() {
    let clock = Clock::manual();
    let server = TestServer::start_with(|c| {
        c.clock = clock.clone();
        c.registration = Registration::Invite;
    })
    .await;
    let alice = server.register("alice").await;
    let token = Some(alice.token.as_str());

    let short = invite(&server, &alice, Some(60)).await;
    clock.advance(Duration::from_secs(61));
    let expired = refused(register(&server, "bob", short.code.as_deref()).await);
    assert_eq!(expired, (403, ErrorCode::InvalidInvite), "expired");

    let revoked = invite(&server, &alice, Some(3600)).await;
    let kept = invite(&server, &alice, Some(3600)).await;
    let path = format!("/api/invites/{}", revoked.id);
    let (status, body) = call(&server, Method::DELETE, &path, token, None).await;
    assert_eq!(status, 204, "{body}");
    // Bad ids: revoked already, not a number, unknown.
    for bad in [path.as_str(), "/api/invites/abc", "/api/invites/999999"] {
        let answer = refused(call(&server, Method::DELETE, bad, token, None).await);
        assert_eq!(answer, (404, ErrorCode::NotFound), "{bad}");
    }
    let answer = refused(register(&server, "bob", revoked.code.as_deref()).await);
    assert_eq!(answer, (403, ErrorCode::InvalidInvite), "revoked");
    // Only the live one is listed: not the expired, not the revoked.
    let listed: InviteList = get(&server, &alice.token, "/api/invites").await;
    let ids: Vec<i64> = listed.invites.iter().map(|i| i.id).collect();
    assert_eq!(ids, [kept.id]);

    // Bad lifetimes and fields.
    for bad in [
        json!({"expires_in": 10}),
        json!({"expires_in": 31 * 24 * 3600}),
        json!({"expires_in": -5}),
        json!({"uses": 3}),
    ] {
        let made = call(
            &server,
            Method::POST,
            "/api/invites",
            token,
            Some(bad.clone()),
        )
        .await;
        assert_eq!(refused(made), (400, ErrorCode::BadRequest), "{bad}");
    }
    let (status, body) = register(&server, "bob", kept.code.as_deref()).await;
    assert_eq!(status, 201, "the live invite still works: {body}");
}

#[tokio::test]
async fn of_racing_registrations_with_one_invite_exactly_one_wins() {
    let server = TestServer::start_with(|c| c.registration = Registration::Invite).await;
    let alice = server.register("alice").await;
    let code_text = invite(&server, &alice, None).await.code.unwrap();
    let names = ["ann", "ben", "cat", "dan", "eve", "fay"];
    let answers = futures_util::future::join_all(
        names
            .iter()
            .map(|name| register(&server, name, Some(&code_text))),
    )
    .await;
    let (won, lost): (Vec<_>, Vec<_>) = answers.into_iter().partition(|(status, _)| *status == 201);
    assert_eq!(won.len(), 1, "won: {won:?}, lost: {lost:?}");
    for answer in lost {
        assert_eq!(refused(answer), (403, ErrorCode::InvalidInvite));
    }
}

#[tokio::test]
async fn on_an_approval_server_new_accounts_wait_for_an_admin() {
    let server = TestServer::start_with(|c| c.registration = Registration::Approval).await;
    let alice = server.register("alice").await;
    assert!(alice.user.admin, "the first account waits for nobody");
    let token = Some(alice.token.as_str());
    let mut alice_ws = server.connect(&alice.token).await;

    for name in ["bob", "carol"] {
        let registered = refused(register(&server, name, None).await);
        assert_eq!(registered, (202, ErrorCode::PendingApproval), "{name}");
        let signed_in = refused(server.try_login(name).await);
        assert_eq!(signed_in, (403, ErrorCode::PendingApproval), "{name}");
    }
    // A wrong password learns nothing of the wait.
    let wrong = json!({"username": "bob", "password": "wrong password"});
    let answer = refused(server.post("/api/login", wrong, None).await);
    assert_eq!(answer, (401, ErrorCode::Unauthorized));
    let pending: PendingList = get(&server, &alice.token, "/api/admin/pending").await;
    let names: Vec<&str> = pending.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["bob", "carol"]);
    // Waiting accounts are in no list and take no direct message.
    let id = alice_ws.next_id();
    alice_ws.send_frame(&ClientFrame::Users { id }).await;
    match alice_ws.answer(id).await {
        Ok(Reply::Users { users }) => {
            let listed: Vec<&str> = users.iter().map(|m| m.user.username.as_str()).collect();
            assert_eq!(listed, ["alice"], "waiting accounts are not listed");
        }
        other => panic!("{other:?}"),
    }
    let dm = alice_ws.send_dm("bob", "hi").await.unwrap_err();
    assert_eq!(dm.0, ErrorCode::NotFound, "a waiting account takes no DM");

    // An account with an invite waits for nobody.
    let made = invite(&server, &alice, None).await;
    let (status, body) = register(&server, "dave", made.code.as_deref()).await;
    assert_eq!(status, 201, "{body}");

    let bob = Some(json!({"username": "bob"}));
    let (status, body) = call(&server, Method::POST, "/api/admin/approve", token, bob).await;
    assert_eq!(status, 200, "{body}");
    let approved: User = serde_json::from_str(&body).unwrap();
    assert_eq!(approved.username, "bob");
    alice_ws
        .wait_for(|f| {
            matches!(f, ServerFrame::Membership { username, joined: true, .. } if username == "bob")
        })
        .await;
    let (status, body) = server.try_login("bob").await;
    assert_eq!(status, 200, "approved bob signs in: {body}");

    let carol = Some(json!({"username": "carol"}));
    let (status, body) = call(&server, Method::POST, "/api/admin/reject", token, carol).await;
    assert_eq!(status, 204, "{body}");
    let gone = refused(server.try_login("carol").await);
    assert_eq!(gone, (401, ErrorCode::Unauthorized), "carol is gone");
    let again = refused(register(&server, "carol", None).await);
    assert_eq!(again, (202, ErrorCode::PendingApproval), "her name is free");

    // Names that do not wait: approved already, unknown.
    for route in ["approve", "reject"] {
        for name in ["bob", "nobody"] {
            let path = format!("/api/admin/{route}");
            let body = Some(json!({ "username": name }));
            let answer = refused(call(&server, Method::POST, &path, token, body).await);
            assert_eq!(answer, (404, ErrorCode::NotFound), "{route} {name}");
        }
    }
}

#[tokio::test]
async fn only_admins_make_invites_and_approve() {
    let server = TestServer::start_with(|c| c.registration = Registration::Approval).await;
    let alice = server.register("alice").await;
    let made = invite(&server, &alice, None).await;
    let (status, body) = register(&server, "bob", made.code.as_deref()).await;
    assert_eq!(status, 201, "{body}");
    let bob: Session = serde_json::from_str(&body).unwrap();
    assert_eq!(register(&server, "carol", None).await.0, 202);

    let invite_path = format!("/api/invites/{}", made.id);
    let carol = json!({"username": "carol"});
    let forbidden: [(Method, &str, Option<Value>); 6] = [
        (Method::POST, "/api/invites", Some(json!({}))),
        (Method::GET, "/api/invites", None),
        (Method::DELETE, &invite_path, None),
        (Method::GET, "/api/admin/pending", None),
        (Method::POST, "/api/admin/approve", Some(carol.clone())),
        (Method::POST, "/api/admin/reject", Some(carol)),
    ];
    for (method, path, body) in forbidden {
        let as_bob = call(
            &server,
            method.clone(),
            path,
            Some(&bob.token),
            body.clone(),
        )
        .await;
        assert_eq!(
            refused(as_bob),
            (403, ErrorCode::Forbidden),
            "bob: {method} {path}"
        );
        let anonymous = call(&server, method.clone(), path, None, body).await;
        assert_eq!(
            refused(anonymous),
            (401, ErrorCode::Unauthorized),
            "{method} {path}"
        );
    }
    // Nothing changed: carol still waits.
    let pending: PendingList = get(&server, &alice.token, "/api/admin/pending").await;
    assert_eq!(pending.users.len(), 1);
}

/// `ws`'s user adds `username` to `conv`: the answer.
async fn add(ws: &mut WsClient, conv: i64, username: &str) -> Result<Reply, (ErrorCode, String)> {
    let username = username.to_string();
    ws.request(|id| ClientFrame::AddMember { id, conv, username })
        .await
}

/// The room names `ws`'s user sees in the room list.
async fn listed_rooms(ws: &mut WsClient) -> Vec<String> {
    match ws.request(|id| ClientFrame::Rooms { id }).await {
        Ok(Reply::Rooms { rooms }) => rooms.into_iter().map(|r| r.name).collect(),
        other => panic!("rooms: {other:?}"),
    }
}

/// Every request a non-member could make about conversation `conv`: history, members,
/// send, read, leave, a notification level and adding someone. Their answers (errors).
async fn asked_about(ws: &mut WsClient, conv: i64) -> Vec<Result<Reply, (ErrorCode, String)>> {
    type Make = Box<dyn Fn(u64) -> ClientFrame>;
    let requests: [Make; 7] = [
        Box::new(move |id| ClientFrame::History {
            id,
            conv,
            before: None,
            after: None,
            limit: 50,
        }),
        Box::new(move |id| ClientFrame::Members { id, conv }),
        Box::new(move |id| ClientFrame::Send {
            id,
            target: natter::protocol::Target::Conv(conv),
            client_msg_id: uuid::Uuid::new_v4(),
            text: "hi".into(),
            reply_to: None,
            attachments: Vec::new(),
        }),
        Box::new(move |id| ClientFrame::Read { id, conv, seq: 1 }),
        Box::new(move |id| ClientFrame::Leave { id, conv }),
        Box::new(move |id| ClientFrame::SetLevel {
            id,
            conv,
            level: natter::protocol::NotifyLevel::Nothing,
        }),
        Box::new(move |id| ClientFrame::AddMember {
            id,
            conv,
            username: "carol".into(),
        }),
    ];
    let mut answers = Vec::new();
    for make in requests {
        answers.push(ws.request(make).await);
    }
    answers
}

#[tokio::test]
async fn a_private_room_is_invisible_to_non_members_until_a_member_adds_them() {
    let server = TestServer::start().await;
    let mut alice = server.user("alice").await;
    let mut bob = server.user("bob").await;
    let mut carol = server.user("carol").await;
    let secret = match alice
        .request(|id| ClientFrame::CreateRoom {
            id,
            name: "secret".into(),
            private: true,
        })
        .await
    {
        Ok(Reply::Joined { conversation }) => conversation.id,
        other => panic!("create_room: {other:?}"),
    };
    alice.send_text(secret, "for members only").await;
    alice
        .request(|id| ClientFrame::CreateRoom {
            id,
            name: "lobby".into(),
            private: false,
        })
        .await
        .expect("a public room");

    assert_eq!(
        listed_rooms(&mut alice).await,
        ["general", "lobby", "secret"]
    );
    assert_eq!(listed_rooms(&mut bob).await, ["general", "lobby"]);

    // Joining it by name, in any spelling, is answered as for a room that does not exist.
    let missing = bob
        .request(|id| ClientFrame::Join {
            id,
            room: "nowhere".into(),
        })
        .await;
    assert_eq!(missing, Err((ErrorCode::NotFound, "no such room".into())));
    for spelling in ["secret", "SECRET"] {
        let join = bob
            .request(|id| ClientFrame::Join {
                id,
                room: spelling.into(),
            })
            .await;
        assert_eq!(join, missing, "join {spelling}");
    }
    // Every question about it by id: the answers for an id no conversation has.
    let unknown = asked_about(&mut bob, 999_999).await;
    assert!(unknown.iter().all(Result::is_err), "{unknown:?}");
    assert_eq!(asked_about(&mut bob, secret).await, unknown);

    // Bad adds: by a non-member (carol adds herself), of an unknown user, into a DM.
    let carol_adds = add(&mut carol, secret, "carol").await;
    assert_eq!(carol_adds.unwrap_err().0, ErrorCode::NotFound);
    let nobody = add(&mut alice, secret, "nobody").await;
    assert_eq!(nobody, Err((ErrorCode::NotFound, "no such user".into())));
    let dm = alice.send_dm("carol", "hello").await.unwrap().conv;
    let into_dm = add(&mut alice, dm, "bob").await;
    assert_eq!(into_dm.unwrap_err().0, ErrorCode::Forbidden);

    // A member adds bob: he is in, with its history; carol still sees nothing.
    let added = add(&mut alice, secret, "Bob").await;
    assert_eq!(added, Ok(Reply::Done));
    bob.wait_for(|f| matches!(f, ServerFrame::ConversationAdded { conversation } if conversation.id == secret))
        .await;
    alice
        .wait_for(|f| matches!(f, ServerFrame::Membership { username, joined: true, .. } if username == "bob"))
        .await;
    let history = bob.all_history(secret).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].text, "for members only");
    assert_eq!(listed_rooms(&mut bob).await, ["general", "lobby", "secret"]);
    assert_eq!(listed_rooms(&mut carol).await, ["general", "lobby"]);
    assert_eq!(
        asked_about(&mut carol, secret).await,
        asked_about(&mut carol, 999_999).await
    );
}

/// `ws`'s user deletes message `target` of `conv`: the answer.
async fn delete(
    ws: &mut WsClient,
    conv: i64,
    target: i64,
) -> Result<natter::protocol::Message, (ErrorCode, String)> {
    ws.event(|id| ClientFrame::Delete {
        id,
        conv,
        target,
        client_msg_id: uuid::Uuid::new_v4(),
    })
    .await
}

/// `ws`'s user removes (with `ban`: bans) `username` from `conv`: the answer.
async fn remove(
    ws: &mut WsClient,
    conv: i64,
    username: &str,
    ban: bool,
) -> Result<Reply, (ErrorCode, String)> {
    let username = username.to_string();
    ws.request(|id| ClientFrame::RemoveMember {
        id,
        conv,
        username,
        ban,
    })
    .await
}

/// `ws`'s user joins `room`: the answer.
async fn join(ws: &mut WsClient, room: &str) -> Result<Reply, (ErrorCode, String)> {
    let room = room.to_string();
    ws.request(|id| ClientFrame::Join { id, room }).await
}

#[tokio::test]
async fn room_moderators_delete_messages_remove_and_ban_members() {
    let server = TestServer::start().await;
    let mut alice = server.user("alice").await; // the admin: moderates every room
    let mut bob = server.user("bob").await; // creates the room: moderates it
    let mut carol = server.user("carol").await;
    let mut dave = server.user("dave").await;
    let general = alice.general();
    let room = match bob
        .request(|id| ClientFrame::CreateRoom {
            id,
            name: "bobs".into(),
            private: false,
        })
        .await
    {
        Ok(Reply::Joined { conversation }) => conversation.id,
        other => panic!("create_room: {other:?}"),
    };
    for ws in [&mut alice, &mut carol, &mut dave] {
        join(ws, "bobs").await.expect("join");
    }
    let from_carol = carol.send_text(room, "carol's").await;
    let from_dave = dave.send_text(room, "dave's").await;

    // Deleting another's message: a member may not, the room's creator and an admin may.
    let refused = delete(&mut dave, room, from_carol.seq).await.unwrap_err();
    assert_eq!(refused.0, ErrorCode::Forbidden, "dave is no moderator");
    let deleted = delete(&mut bob, room, from_carol.seq)
        .await
        .expect("bob moderates");
    assert_eq!(
        deleted.action,
        Some(natter::protocol::Action::Delete {
            target: from_carol.seq
        })
    );
    delete(&mut alice, room, from_dave.seq)
        .await
        .expect("an admin moderates");
    let history = carol.all_history(room).await;
    let originals: Vec<bool> = history
        .iter()
        .filter(|m| m.action.is_none())
        .map(|m| m.deleted)
        .collect();
    assert_eq!(
        originals,
        [true, true],
        "both messages are deleted: {history:?}"
    );
    // DMs have no moderators, not even an admin.
    let dm_message = carol.send_dm("alice", "just us").await.unwrap();
    let in_dm = delete(&mut alice, dm_message.conv, dm_message.seq).await;
    assert_eq!(in_dm.unwrap_err().0, ErrorCode::Forbidden);

    // Removing: not by a member, not from general, not someone absent.
    let by_member = remove(&mut dave, room, "carol", false).await;
    assert_eq!(by_member.unwrap_err().0, ErrorCode::Forbidden);
    let from_general = remove(&mut alice, general, "carol", false).await;
    assert_eq!(from_general.unwrap_err().0, ErrorCode::Forbidden);
    let nobody = remove(&mut bob, room, "nobody", false).await;
    assert_eq!(nobody, Err((ErrorCode::NotFound, "no such user".into())));

    // bob removes carol: she leaves the room, the others hear it; she may come back.
    assert_eq!(
        remove(&mut bob, room, "carol", false).await,
        Ok(Reply::Done)
    );
    carol
        .wait_for(|f| matches!(f, ServerFrame::ConversationRemoved { conv } if *conv == room))
        .await;
    dave.wait_for(|f| {
        matches!(f, ServerFrame::Membership { username, joined: false, .. } if username == "carol")
    })
    .await;
    let absent = remove(&mut bob, room, "carol", false).await;
    assert_eq!(
        absent.unwrap_err().0,
        ErrorCode::NotFound,
        "not a member any more"
    );
    join(&mut carol, "bobs")
        .await
        .expect("a removed member may rejoin");

    // bob bans carol: she is out and stays out, also when a member would add her.
    assert_eq!(remove(&mut bob, room, "carol", true).await, Ok(Reply::Done));
    carol
        .wait_for(|f| matches!(f, ServerFrame::ConversationRemoved { conv } if *conv == room))
        .await;
    let banned = Err((ErrorCode::Forbidden, "banned from this room".into()));
    assert_eq!(join(&mut carol, "bobs").await, banned);
    assert_eq!(add(&mut dave, room, "carol").await, banned);
    let sent = carol
        .send_with_id(room, "let me in", uuid::Uuid::new_v4())
        .await;
    assert_eq!(sent.unwrap_err().0, ErrorCode::Forbidden);
}

#[tokio::test]
async fn an_admin_bans_a_user_who_is_disconnected_at_once_and_refused_afterwards() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let mut bob_phone = server.connect(&bob.token).await;
    let mut bob_laptop = server.connect(&server.login("bob").await.token).await;
    let mut carol_ws = server.connect(&carol.token).await;
    let ban = |name: &str| Some(json!({ "username": name }));
    let token = Some(alice.token.as_str());

    // Bad bans: by a non-admin, of an admin (herself), of an unknown user.
    let by_carol = call(
        &server,
        Method::POST,
        "/api/admin/ban",
        Some(&carol.token),
        ban("bob"),
    );
    assert_eq!(refused(by_carol.await), (403, ErrorCode::Forbidden));
    let admin = call(&server, Method::POST, "/api/admin/ban", token, ban("alice")).await;
    assert_eq!(refused(admin), (403, ErrorCode::Forbidden));
    let unknown = call(
        &server,
        Method::POST,
        "/api/admin/ban",
        token,
        ban("nobody"),
    )
    .await;
    assert_eq!(refused(unknown), (404, ErrorCode::NotFound));

    let (status, body) = call(&server, Method::POST, "/api/admin/ban", token, ban("bob")).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(bob_phone.expect_close().await, Some(close::BANNED));
    assert_eq!(bob_laptop.expect_close().await, Some(close::BANNED));
    // Refused afterwards: the old token, a new sign-in.
    let old = WsClient::connect(&server.ws_url(), Some(&bob.token)).await;
    assert_eq!(
        old.err().as_ref().and_then(support::handshake_status),
        Some(401)
    );
    let again = refused(server.try_login("bob").await);
    assert_eq!(again, (403, ErrorCode::Forbidden));
    // Nobody else is touched.
    let id = carol_ws.next_id();
    carol_ws.send_frame(&ClientFrame::Users { id }).await;
    assert!(
        carol_ws.answer(id).await.is_ok(),
        "carol is still connected"
    );

    let (status, body) = call(&server, Method::POST, "/api/admin/unban", token, ban("bob")).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = server.try_login("bob").await;
    assert_eq!(status, 200, "unbanned bob signs in: {body}");
}

/// A conversation's name with its `private` and `moderator` flags, as a test expects them.
type Flags<'a> = (&'a str, bool, bool);

/// A conversation's name with its `private` and `moderator` flags.
fn flags(c: &Conversation) -> (String, bool, bool) {
    (c.name.clone(), c.private, c.moderator)
}

/// The flags of every conversation in `session`'s `hello`, sorted by name.
async fn hello_flags(server: &TestServer, session: &Session) -> Vec<(String, bool, bool)> {
    let mut ws = WsClient::connect(&server.ws_url(), Some(&session.token))
        .await
        .expect("ws connect");
    let mut all: Vec<_> = match ws.expect_hello().await {
        ServerFrame::Hello { conversations, .. } => conversations.iter().map(flags).collect(),
        other => panic!("expected hello, got {other:?}"),
    };
    all.sort();
    all
}

#[tokio::test]
async fn conversations_say_whether_private_and_whether_the_receiver_moderates() {
    let server = TestServer::start().await;
    let alice_session = server.register("alice").await; // the admin
    let bob_session = server.register("bob").await; // creates the rooms
    let carol_session = server.register("carol").await; // a plain member
    let mut alice = server.connect(&alice_session.token).await;
    let mut bob = server.connect(&bob_session.token).await;
    let mut carol = server.connect(&carol_session.token).await;

    // The creator's `joined` answers.
    let board = bob.create_room("board", true).await;
    assert_eq!(flags(&board), ("board".into(), true, true));
    let open = bob.create_room("open", false).await;
    assert_eq!(flags(&open), ("open".into(), false, true));

    // Added to the private room: carol's push says private, not hers to moderate.
    assert_eq!(add(&mut bob, board.id, "carol").await, Ok(Reply::Done));
    let pushed = carol
        .wait_for(|f| matches!(f, ServerFrame::ConversationAdded { conversation } if conversation.id == board.id))
        .await;
    let ServerFrame::ConversationAdded { conversation } = pushed else {
        unreachable!("matched above")
    };
    assert_eq!(flags(&conversation), ("board".into(), true, false));

    // Joining the public room: the admin moderates it, carol does not.
    match join(&mut alice, "open").await {
        Ok(Reply::Joined { conversation }) => {
            assert_eq!(flags(&conversation), ("open".into(), false, true))
        }
        other => panic!("join: {other:?}"),
    }
    match join(&mut carol, "open").await {
        Ok(Reply::Joined { conversation }) => {
            assert_eq!(flags(&conversation), ("open".into(), false, false))
        }
        other => panic!("join: {other:?}"),
    }

    // A DM is neither private nor moderated, not even by an admin.
    alice.send_dm("carol", "hi").await.expect("dm");

    // Each user's hello: (name, private, moderator) of each conversation, sorted by name.
    let general = natter::protocol::limits::DEFAULT_ROOM;
    let expected: [(&Session, &str, &[Flags]); 3] = [
        (
            &alice_session,
            "alice (admin)",
            &[
                ("carol", false, false),
                (general, false, true),
                ("open", false, true),
            ],
        ),
        (
            &bob_session,
            "bob (creator)",
            &[
                ("board", true, true),
                (general, false, false),
                ("open", false, true),
            ],
        ),
        (
            &carol_session,
            "carol (member)",
            &[
                ("alice", false, false),
                ("board", true, false),
                (general, false, false),
                ("open", false, false),
            ],
        ),
    ];
    let expect_all = |server: TestServer| async {
        for (session, who, convs) in &expected {
            let want: Vec<(String, bool, bool)> = convs
                .iter()
                .map(|(n, p, m)| (n.to_string(), *p, *m))
                .collect();
            assert_eq!(hello_flags(&server, session).await, want, "{who}");
        }
        server
    };
    drop((alice, bob, carol));
    let server = expect_all(server).await;
    // After a restart, from the store: the creator is remembered.
    let (dir, result) = server.stop().await;
    result.expect("clean stop");
    expect_all(TestServer::start_in(dir, |_| {}).await).await;
}
