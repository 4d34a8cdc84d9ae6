//! Read markers: how far a user has read a conversation, on all their devices.

use crate::protocol::{ConvId, Seq};

use super::super::store::WriteOp;
use super::super::Shared;
use super::{write_for_socket, Caller, ServiceError};

/// Move the caller's read marker in `conv` to `seq` (forward only, never past the newest
/// message); their other connections hear it. Answered `done` later.
pub fn mark_read(
    shared: &Shared,
    caller: &Caller,
    conv: ConvId,
    seq: Seq,
) -> Result<(), ServiceError> {
    let op = WriteOp::Read {
        user: caller.user,
        conv,
        seq,
    };
    write_for_socket(shared, caller, op)
}
