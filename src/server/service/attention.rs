//! Attention: a user's notification level per conversation and their do not disturb, stored
//! per user and synced to all their devices (the hub pushes each change to the user's other
//! connections and carries the settings in `hello`).

use crate::protocol::{limits, ConvId, Dnd, ErrorCode, NotifyLevel};

use super::super::store::WriteOp;
use super::super::Shared;
use super::{write_for_socket, Caller, ServiceError};

/// Set the caller's level for `conv`. A conversation they are not in is refused by the store
/// with the same error every conversation frame gets. Answered `done` later.
pub fn set_level(
    shared: &Shared,
    caller: &Caller,
    conv: ConvId,
    level: NotifyLevel,
) -> Result<(), ServiceError> {
    let op = WriteOp::SetLevel {
        user: caller.user,
        conv,
        level,
    };
    write_for_socket(shared, caller, op)
}

/// Turn the caller's do not disturb on or off. An end time must lie ahead of the server's
/// clock, by at most [`limits::MAX_DND_AHEAD_MS`]. Answered `done` later.
pub fn set_dnd(shared: &Shared, caller: &Caller, dnd: Option<Dnd>) -> Result<(), ServiceError> {
    if let Some(until) = dnd.and_then(|d| d.until) {
        check_until(until, shared.clock.now_ms())?;
    }
    write_for_socket(
        shared,
        caller,
        WriteOp::SetDnd {
            user: caller.user,
            dnd,
        },
    )
}

/// The rule for a do-not-disturb end time `until` set at `now`.
fn check_until(until: i64, now: i64) -> Result<(), ServiceError> {
    if until <= now {
        return Err(ServiceError::refused(
            ErrorCode::BadRequest,
            "do not disturb `until` has already passed: give a later time, or null for \
             \"until turned off\"",
        ));
    }
    if until - now > limits::MAX_DND_AHEAD_MS {
        return Err(ServiceError::refused(
            ErrorCode::BadRequest,
            "do not disturb `until` is more than 366 days ahead: use null for \"until turned \
             off\"",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_must_lie_ahead_and_within_the_limit() {
        let now = 1_700_000_000_000;
        assert!(check_until(now + 1, now).is_ok());
        assert!(check_until(now + limits::MAX_DND_AHEAD_MS, now).is_ok());
        for bad in [
            now,
            now - 1,
            0,
            i64::MIN,
            now + limits::MAX_DND_AHEAD_MS + 1,
            i64::MAX,
        ] {
            let e = check_until(bad, now).unwrap_err().to_client();
            assert_eq!(e.0, ErrorCode::BadRequest, "{bad}");
        }
    }
}
