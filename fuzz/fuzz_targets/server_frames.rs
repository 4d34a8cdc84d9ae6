//! The server's frame handling: each input is one socket's worth of client frames, one per line,
//! sent over an in-memory pipe through the real upgrade and socket handler (no `Authorization`
//! header, so the auth phase is fuzzed too; `@token@` is alice's live token). Fails on a panic,
//! a frame from the server the protocol does not define, a socket that does not end within
//! `HANG` after the client closes, or a bystander the server no longer serves.
#![no_main]

use futures_util::{SinkExt, StreamExt};
use libfuzzer_sys::fuzz_target;
use natter_fuzz::{frames, runtime, server, server_frame, HANG};
use tokio_tungstenite::tungstenite::Message;

fuzz_target!(|data: &[u8]| {
    let server = server();
    runtime().block_on(async {
        let ws = server.socket(None).await;
        let (mut tx, mut rx) = ws.split();
        let send = async {
            for msg in frames(data, &server.alice.token) {
                if tx.send(msg).await.is_err() {
                    // The server closed the socket (bad auth, binary frame, flood): fine.
                    return;
                }
            }
            let _ = tx.send(Message::Close(None)).await;
        };
        // Read while sending, as a real client does: answers must not wedge the pipe.
        // The server's close frame ends the exchange: the server must then drop the socket
        // (not waited for here: that would time the close grace, not the handling).
        let read = async {
            while let Some(Ok(msg)) = rx.next().await {
                match msg {
                    Message::Text(text) => drop(server_frame(&text)),
                    Message::Close(_) => return,
                    _ => {}
                }
            }
        };
        tokio::time::timeout(HANG, async { tokio::join!(send, read) })
            .await
            .expect("the socket ended within HANG after the client closed it");
        server.check_serves_others().await;
    });
});
