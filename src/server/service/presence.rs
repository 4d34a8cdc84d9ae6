//! Presence: who is connected to this node (the hub's registry, which sends `hello` and the
//! batched presence changes), what each socket watches the presence of, and typing indicators,
//! which are published but never stored.

use std::sync::Arc;

use crate::protocol::{close, limits, ConvId, ErrorCode};

use super::super::bus::Event;
use super::super::hub::{ConnHandle, Kill};
use super::super::outbound::Outlet;
use super::super::Shared;
use super::accounts::{self, Authed};
use super::{Caller, ServiceError};

/// Why a socket could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Register an authenticated socket on this node: its `hello` (with unread counts from the
/// store) is its first frame, and the user is online from now on. If the token was revoked
/// meanwhile (a logout that committed after the upgrade checked it, before this socket could
/// be found and closed), or cannot be checked, the socket is registered and then told to close
/// with 4001.
pub async fn connect(
    shared: &Shared,
    authed: &Authed,
    out: Arc<dyn Outlet>,
    kill: Arc<Kill>,
) -> Result<ConnHandle, ConnectError> {
    let unread = shared
        .store
        .unread(authed.user)
        .await
        .map_err(ServiceError::from)?;
    let conn = shared
        .hub
        .register(authed.user, authed.token, unread, out, kill)
        .ok_or(ConnectError::ShuttingDown)?;
    if let Err(e) = accounts::check_token(shared, authed.token).await {
        tracing::debug!(conn = %conn.id, error = %e, "token gone by the time the socket registered");
        conn.kill.fire(close::UNAUTHORIZED);
    }
    Ok(conn)
}

/// Forget a socket that ended; its user goes offline if it was their last.
pub fn disconnect(shared: &Shared, conn: &ConnHandle) {
    shared.hub.unregister(conn.id);
}

/// Tell the other members of `conv` that the caller is typing (not stored).
pub fn typing(shared: &Shared, caller: &Caller, conv: ConvId) -> Result<(), ServiceError> {
    shared
        .hub
        .check_member(caller.user, conv)
        .map_err(|(code, message)| ServiceError::Refused { code, message })?;
    shared.bus.publish(Event::Typing {
        user: caller.user,
        conv,
    });
    Ok(())
}

/// A watch set (a socket's `watch_presence`, an event stream's `watch`) names at most
/// [`limits::MAX_WATCHED_USERS`] users; more is `bad_request`.
pub fn check_watch_size(users: &[String]) -> Result<(), ServiceError> {
    if users.len() > limits::MAX_WATCHED_USERS {
        return Err(ServiceError::Refused {
            code: ErrorCode::BadRequest,
            message: format!(
                "at most {} users may be watched at once, not {}",
                limits::MAX_WATCHED_USERS,
                users.len()
            ),
        });
    }
    Ok(())
}

/// Make `users` the caller's socket's presence watch set (replacing its last); the hub answers
/// the socket with which of them are online now. More than [`limits::MAX_WATCHED_USERS`] names
/// is `bad_request`, answered here; a name no user has is `not_found`; either way the last set
/// stays.
pub fn watch(shared: &Shared, caller: &Caller, users: &[String]) -> Result<(), ServiceError> {
    check_watch_size(users)?;
    let _ = shared
        .hub
        .watch_presence(caller.user, caller.conn, caller.req, users);
    Ok(())
}
