//! The services: what the server does, one file per domain. `http.rs` and `connection.rs`
//! only translate between the wire and these functions; the services validate, write through
//! the [storage interface](super::store), and publish what was committed on the
//! [bus](super::bus). None of them knows SQL or a socket.
//!
//! - [`accounts`]: registration, sign-in (with its limits), sign-out, tokens.
//! - [`limits`]: the sign-in limits, shared by the nodes of a cluster.
//! - [`account`]: your account: profile, password, sessions, deletion.
//! - [`admin`]: run by its host: invites, approving accounts, following admin roles.
//! - [`rooms`]: rooms and membership: create, join, leave, the room list, members, users.
//! - [`messages`]: sending, history pages, resume (`sync`).
//! - [`reads`]: read markers.
//! - [`presence`]: who is connected to this node, and typing.
//! - [`events`]: the read-only event stream (`GET /api/events`): what it carries, its cursor.
//! - [`attention`]: notification levels and do not disturb.
//! - [`files`]: uploads (limits, streaming into the blob store, thumbnails) and who may
//!   download a file.
//!
//! Two ways to write ([`write_for_socket`], [`write_for_call`]) cover every request: a socket's
//! answer goes out from the fan-out after the change is applied (so it keeps its place among
//! the pushes); an HTTP call waits for the same point and then answers.

pub mod account;
pub mod accounts;
pub mod admin;
pub mod attention;
pub mod events;
pub mod files;
pub mod limits;
pub mod messages;
pub mod presence;
pub mod reads;
pub mod rooms;

use std::time::Duration;

use crate::protocol::ErrorCode;

use super::bus::{ConnId, Event, Origin};
use super::latency_trace::{self, Mark};
use super::store::{StoreError, UserId, WriteOp, WriteOutcome};
use super::Shared;

/// Why a service did not do what was asked: a code and a message for the client, with the
/// store's error kept whole underneath (it is logged with its cause when told to a client).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is refused for a reason the client can act on.
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    /// Too many tries: `rate_limited` or `busy`, and when to try again.
    #[error("{message}: try again in {} s", retry_secs(*.wait))]
    Later {
        code: ErrorCode,
        message: &'static str,
        wait: Duration,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whole seconds to wait, at least 1 (what `Retry-After` says).
pub fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

impl ServiceError {
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        ServiceError::Refused {
            code,
            message: message.into(),
        }
    }

    /// The protocol error code and message a client sees.
    pub fn to_client(&self) -> (ErrorCode, String) {
        match self {
            ServiceError::Refused { code, message } => (*code, message.clone()),
            ServiceError::Later { code, .. } => (*code, self.to_string()),
            ServiceError::Store(e) => e.to_client(),
        }
    }
}

/// Who is asking, on a socket: the user, the connection and the request id.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user: UserId,
    pub conn: ConnId,
    pub req: u64,
}

/// Queue a socket's write. Its answer goes to the socket later: from the fan-out once the
/// committed change was applied here, or as an error if the write failed.
pub(crate) fn write_for_socket(
    shared: &Shared,
    caller: &Caller,
    op: WriteOp,
) -> Result<(), ServiceError> {
    let bus = shared.bus.clone();
    let (conn, req) = (caller.conn, caller.req);
    latency_trace::record(Mark::ToWriter, conn.local, req);
    shared.store.write(
        op,
        Box::new(move |result| match result {
            Ok(outcome) => {
                latency_trace::record(Mark::Published, conn.local, req);
                bus.publish(Event::Committed {
                    outcome,
                    origin: Some(Origin::Socket { conn, req }),
                })
            }
            Err(e) => {
                let (code, message) = e.to_client();
                bus.publish(Event::Refused {
                    conn,
                    req,
                    code,
                    message,
                })
            }
        }),
    )?;
    Ok(())
}

/// Commit an HTTP call's write, publish it, and return once this node applied it (so the
/// caller's next request sees it).
pub(crate) async fn write_for_call(
    shared: &Shared,
    op: WriteOp,
) -> Result<WriteOutcome, ServiceError> {
    let waiter = shared.hub.waiter();
    let origin = Some(waiter.origin());
    let bus = shared.bus.clone();
    let outcome = shared
        .store
        .write_then(op, move |outcome| {
            bus.publish(Event::Committed {
                outcome: outcome.clone(),
                origin,
            })
        })
        .await?;
    waiter.applied().await;
    Ok(outcome)
}

/// For a task a node runs periodically (each node its own): wait `every`, then the server to
/// work with; None once the server stops (`stopping`) or is gone.
pub(crate) async fn periodically(
    shared: &std::sync::Weak<Shared>,
    every: Duration,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<std::sync::Arc<Shared>> {
    tokio::select! {
        _ = tokio::time::sleep(every) => shared.upgrade(),
        _ = stopping.wait_for(|s| *s) => None,
    }
}

/// In a cluster: make here the changes the other nodes made to what each node keeps in memory
/// beside the hub (sign-in limits, event-stream tickets), as the bus brings them, until it
/// closes or the server is gone.
pub(crate) async fn follow_nodes(
    shared: std::sync::Weak<super::Shared>,
    node: super::bus::NodeId,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Vec<super::bus::Event>>,
) {
    use super::bus::Event;
    while let Some(batch) = events.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        for event in batch {
            match event {
                Event::Limits { node: from, change } if from != node => {
                    shared.limits.apply(change, shared.clock.instant())
                }
                Event::Ticket { node: from, change } if from != node => {
                    events::apply_ticket_change(&shared, change)
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use uuid::Uuid;

    use super::*;
    use crate::protocol::{Reply, ServerFrame, Target};
    use crate::server::auth;
    use crate::server::hub::Kill;
    use crate::server::outbound::{Outlet, PushError, WireFrame};
    use crate::server::ServerConfig;

    /// Keeps what it is sent, and the name of the thread that sent it.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, ServerFrame)>>);

    impl Outlet for Recorder {
        fn push(&self, frames: &[WireFrame]) -> Result<(), PushError> {
            let thread = std::thread::current().name().unwrap_or("?").to_string();
            let mut seen = self.0.lock().unwrap();
            for f in frames {
                seen.push((thread.clone(), serde_json::from_slice(f.payload()).unwrap()));
            }
            Ok(())
        }
    }

    async fn registered(shared: &Shared, name: &str) -> UserId {
        let now = shared.clock.now_ms();
        let op = WriteOp::Register {
            mode: crate::protocol::Registration::Open,
            invite: None,
            username: name.into(),
            display_name: name.into(),
            avatar: "owl".into(),
            password_hash: "unused".into(),
            token_hash: auth::new_token().1,
            now,
            expires_at: now + 60_000,
            device_hash: auth::new_token().1,
            label: None,
        };
        match write_for_call(shared, op).await.unwrap() {
            WriteOutcome::Registered(row) => row.id,
            other => panic!("{other:?}"),
        }
    }

    /// The fan-out is not the store's writer thread: every push and answer is written from a
    /// thread other than `natter-writer` (before the bus, the writer wrote them all). The
    /// answers on one socket keep their place among the pushes: two users sending to one room
    /// at once, each socket sees the room's seqs in ascending order, its own as `sent`
    /// answers and the other's as pushes, with none missing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fan_out_runs_off_the_writer_thread_and_answers_keep_seq_order() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::start(ServerConfig::new(dir.path())).unwrap();
        let (alice, bob) = (
            registered(&shared, "alice").await,
            registered(&shared, "bob").await,
        );
        let general = 1;
        let mut sockets = Vec::new();
        for user in [alice, bob] {
            let out = Arc::new(Recorder::default());
            let conn = shared
                .hub
                .register(
                    user,
                    auth::new_token().1,
                    Vec::new(),
                    out.clone(),
                    Arc::new(Kill::default()),
                )
                .unwrap();
            sockets.push((user, conn, out));
        }
        const EACH: u64 = 200;
        for req in 1..=EACH {
            for (user, conn, _) in &sockets {
                let caller = Caller {
                    user: *user,
                    conn: conn.id,
                    req,
                };
                let text = format!("{req}");
                messages::send(
                    &shared,
                    &caller,
                    Target::Conv(general),
                    Uuid::new_v4(),
                    text,
                    None,
                    Vec::new(),
                )
                .unwrap();
            }
        }
        for (_, _, out) in &sockets {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let seqs = out
                    .0
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(_, f)| {
                        matches!(f, ServerFrame::Message { .. })
                            || matches!(
                                f,
                                ServerFrame::Ok {
                                    result: Reply::Sent { .. },
                                    ..
                                }
                            )
                    })
                    .count();
                if seqs as u64 == 2 * EACH {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "only {seqs} arrived"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let seen = out.0.lock().unwrap();
            let mut seqs = Vec::new();
            for (thread, frame) in seen.iter() {
                assert_ne!(thread, "natter-writer", "{frame:?} written by the writer");
                match frame {
                    ServerFrame::Message { message } => seqs.push(message.seq),
                    ServerFrame::Ok {
                        result: Reply::Sent { message },
                        ..
                    } => seqs.push(message.seq),
                    _ => {}
                }
            }
            assert_eq!(seqs, (1..=2 * EACH as i64).collect::<Vec<_>>());
        }
        shared.store.shutdown();
    }
}
