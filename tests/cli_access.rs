//! Run by its host from the `natter` CLI, against a real server on 127.0.0.1:0 in invite mode:
//! the first account (the admin) makes an invite, a second registers with it, a third without
//! one is refused; the admin lists and revokes invites; a private room is created, a member is
//! added, removed with a ban and cannot come back; an admin bans an account from the server and
//! approves nothing that does not wait.
//!
//! Bad inputs tried: registering without an invite and with a used one; `invite create` by a
//! non-admin; `join` of a private room by a non-member; `add` of a banned user; `admin approve`
//! of a name that does not wait; `admin ban` of an admin.

mod support;

use natter::protocol::Registration;
use support::cli::{fails, natter, ok};
use support::TestServer;

/// The invite code `natter invite create` printed ("invite ID: CODE  (valid until ...)").
fn code_of(out: &str) -> String {
    out.split(": ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no code in {out:?}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_runs_an_invite_only_server_from_the_cli() {
    let server = TestServer::start_with(|c| c.registration = Registration::Invite).await;
    let url = format!("http://{}", server.addr);
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (a, b, c) = (a.path(), b.path(), c.path());
    ok(natter(a, &["--server", &url, "register", "alice"]).await);

    let refused = fails(natter(b, &["--server", &url, "register", "bob"]).await);
    assert!(refused.contains("invite"), "{refused}");
    // A code may start with '-' (base64url): it is taken as the code, not as a flag.
    let wrong = fails(
        natter(
            b,
            &["--server", &url, "register", "bob", "--invite", "-lQx9"],
        )
        .await,
    );
    assert!(
        wrong.contains("invite") && !wrong.contains("unexpected argument"),
        "{wrong}"
    );
    let made = ok(natter(a, &["invite", "create", "--expires-in", "3600"]).await);
    let code = code_of(&made);
    let listed = ok(natter(a, &["invite", "list"]).await);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("by alice"), "{listed}");
    ok(natter(b, &["--server", &url, "register", "bob", "--invite", &code]).await);
    let used = fails(
        natter(
            c,
            &["--server", &url, "register", "carol", "--invite", &code],
        )
        .await,
    );
    assert!(used.contains("not valid"), "{used}");
    let by_bob = fails(natter(b, &["invite", "create"]).await);
    assert!(by_bob.contains("admin"), "{by_bob}");
    let second = code_of(&ok(natter(a, &["invite", "create"]).await));
    let id = made
        .split(':')
        .next()
        .unwrap()
        .trim_start_matches("invite ")
        .to_string();
    let other = ok(natter(a, &["invite", "list"]).await);
    let first_listed = other.lines().any(|l| l.starts_with(&format!("{id} ")));
    assert!(!first_listed, "the used invite is gone: {other}");
    let revoke_id = other.split_whitespace().next().unwrap().to_string();
    ok(natter(a, &["invite", "revoke", &revoke_id]).await);
    let revoked = fails(
        natter(
            c,
            &["--server", &url, "register", "carol", "--invite", &second],
        )
        .await,
    );
    assert!(revoked.contains("not valid"), "{revoked}");
    let third = code_of(&ok(natter(a, &["invite", "create"]).await));
    ok(natter(
        c,
        &["--server", &url, "register", "carol", "--invite", &third],
    )
    .await);

    // A private room: carol cannot find it; alice adds bob, then removes him with a ban.
    ok(natter(a, &["create", "--private", "secret"]).await);
    assert!(!ok(natter(c, &["rooms"]).await).contains("secret"));
    let join = fails(natter(c, &["join", "secret"]).await);
    assert!(join.contains("no such room"), "{join}");
    ok(natter(a, &["add", "secret", "bob"]).await);
    assert!(ok(natter(b, &["rooms"]).await).contains("#secret"));
    ok(natter(a, &["send", "secret", "members only"]).await);
    let history = ok(natter(b, &["history", "secret"]).await);
    assert!(history.contains("members only"), "{history}");
    assert!(ok(natter(a, &["remove", "secret", "bob", "--ban"]).await).contains("banned bob"));
    let back = fails(natter(a, &["add", "secret", "bob"]).await);
    assert!(back.contains("banned"), "{back}");

    // Accounts: nothing waits on an invite server; carol is banned from it.
    assert_eq!(ok(natter(a, &["admin", "pending"]).await), "");
    let approve = fails(natter(a, &["admin", "approve", "bob"]).await);
    assert!(approve.contains("waits for approval"), "{approve}");
    let admin = fails(natter(a, &["admin", "ban", "alice"]).await);
    assert!(admin.contains("admin cannot be banned"), "{admin}");
    ok(natter(a, &["admin", "ban", "carol"]).await);
    let signed_out = fails(natter(c, &["rooms"]).await);
    assert!(!signed_out.is_empty());
}
