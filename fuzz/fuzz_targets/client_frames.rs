//! The client core's handling of server frames: each input is what a server sends on one
//! connection, one frame per line, to a real `natter::client::Client` (real local SQLite store in
//! a fresh profile) that connected over TCP on 127.0.0.1 to a fake server run here. Fails on a
//! panic, a client that stops reading (no pong to a ping sent after the input within `HANG`), a
//! client that does not shut down, or a local store it can no longer read (before shutdown, and
//! reopened from its file after).
#![no_main]

use futures_util::{SinkExt, StreamExt};
use libfuzzer_sys::fuzz_target;
use natter::client::store::Store;
use natter::client::{Client, ClientConfig, STORE_FILE};
use natter::protocol::{Session, User, SUBPROTOCOL};
use natter_fuzz::{frames, runtime, HANG};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tokio_tungstenite::tungstenite::Message;

/// The token the client presents; the fake server accepts any.
const TOKEN: &str = "fuzz-token";
/// Sent after the input: its pong proves the client read everything before it.
const BARRIER: &[u8] = b"after the input";

fn session() -> Session {
    Session {
        token: TOKEN.into(),
        user: User {
            username: "alice".into(),
            display_name: "Alice".into(),
            avatar: "owl".into(),
            deleted: false,
            avatar_image: None,
            admin: false,
        },
        expires_at: i64::MAX,
        device_token: None,
    }
}

/// Accept the client's upgrade with the subprotocol, as a Natter server does.
#[allow(clippy::result_large_err)] // the signature tungstenite's handshake callback requires
fn agree_subprotocol(_: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    resp.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(resp)
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        // A listener per input: a client of an earlier input that retried cannot be accepted.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let profile = tempfile::tempdir().expect("a profile directory");
        let config = ClientConfig::new(url.parse().expect("url"), profile.path().to_path_buf());
        let client = Client::start(config, session())
            .await
            .expect("client starts");
        let (tcp, _) = tokio::time::timeout(HANG, listener.accept())
            .await
            .expect("the client connected in time")
            .expect("accept");
        let ws = tokio_tungstenite::accept_hdr_async(tcp, agree_subprotocol)
            .await
            .expect("the client's upgrade");
        let (mut tx, mut rx) = ws.split();
        let send = async {
            for msg in frames(data, TOKEN) {
                if tx.send(msg).await.is_err() {
                    // The client hung up (a close frame in the input, a protocol error).
                    return;
                }
            }
            let _ = tx.send(Message::Ping(BARRIER.to_vec().into())).await;
        };
        // Drain what the client sends (sync, read markers) until it answers the barrier.
        let read = async {
            while let Some(Ok(msg)) = rx.next().await {
                if matches!(&msg, Message::Pong(p) if p.as_ref() == BARRIER) {
                    return;
                }
            }
        };
        tokio::time::timeout(HANG, async { tokio::join!(send, read) })
            .await
            .expect("the client read the input within HANG");
        if let Err(e) = client.conversations().await {
            panic!("the client cannot read its own store after this input: {e}");
        }
        tokio::time::timeout(HANG, client.shutdown())
            .await
            .expect("the client shut down in time");
        // Shutdown closes the store; the file it leaves must open again, checked and sound.
        let reopened = Store::open(&profile.path().join(STORE_FILE))
            .unwrap_or_else(|e| panic!("the store does not reopen after this input: {e}"));
        if let Err(e) = reopened.conversations("alice") {
            panic!("the reopened store cannot be read after this input: {e}");
        }
    });
});
