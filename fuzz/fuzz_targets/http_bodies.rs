//! The HTTP API's bodies: the first byte of an input picks the route (register, login, logout),
//! the rest is the body (for logout, the `Authorization` header value, when it is a valid one).
//! Each goes as raw HTTP/1.1 over an in-memory pipe through hyper and the real router. Fails on
//! a panic, no answer within `HANG`, a 5xx, or an error without the JSON `ApiError` body that
//! docs/protocol.md promises for every error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natter::protocol::ApiError;
use natter_fuzz::{http, post, runtime, server};

/// The routes, indexed by the input's first byte (modulo their number).
const ROUTES: [&str; 3] = ["/api/register", "/api/login", "/api/logout"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let path = ROUTES[usize::from(pick) % ROUTES.len()];
    let request = if path == "/api/logout" {
        // A header value may not hold line breaks or other control bytes: those would be a
        // different request, not a different token.
        let header = std::str::from_utf8(body)
            .ok()
            .filter(|v| !v.chars().any(char::is_control))
            .map(|v| format!("Authorization: {v}"));
        post(
            path,
            &header.iter().map(String::as_str).collect::<Vec<_>>(),
            b"",
        )
    } else {
        post(path, &[], body)
    };
    let server = server();
    let resp = runtime().block_on(http(server.inner(), &request));
    assert!(resp.status < 500, "{path} answered {resp:?}");
    if resp.status >= 400 {
        assert_eq!(
            resp.header("content-type"),
            Some("application/json"),
            "{path} answered {resp:?}"
        );
        if let Err(e) = serde_json::from_slice::<ApiError>(&resp.body) {
            panic!(
                "{path} answered {} without an ApiError body ({e}): {resp:?}",
                resp.status
            );
        }
    }
});
