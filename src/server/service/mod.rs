//! The services: what the server does, one file per domain. `http.rs` and `connection.rs`
//! only translate between the wire and these functions; the services validate, write through
//! the [storage interface](super::store), and publish what was committed on the
//! [bus](super::bus). None of them knows SQL or a socket.
//!
//! - [`accounts`]: registration, sign-in (with its limits), sign-out, tokens.
//! - [`rooms`]: rooms and membership: create, join, leave, the room list, members, users.
//! - [`messages`]: sending, history pages, resume (`sync`).
//! - [`reads`]: read markers.
//! - [`presence`]: who is connected to this node, and typing.
//!
//! Two ways to write ([`write_for_socket`], [`write_for_call`]) cover every request: a socket's
//! answer goes out from the fan-out after the change is applied (so it keeps its place among
//! the pushes); an HTTP call waits for the same point and then answers.

pub mod accounts;
pub mod messages;
pub mod presence;
pub mod reads;
pub mod rooms;

use std::time::Duration;

use crate::protocol::ErrorCode;

use super::bus::{ConnId, Event, Origin};
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
    let (bus, hub) = (shared.bus.clone(), shared.hub.clone());
    let (conn, req) = (caller.conn, caller.req);
    shared.store.write(
        op,
        Box::new(move |result| match result {
            Ok(outcome) => bus.publish(Event::Committed {
                outcome,
                origin: Some(Origin::Socket { conn, req }),
            }),
            Err(e) => hub.fail(conn, req, e.to_client()),
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
