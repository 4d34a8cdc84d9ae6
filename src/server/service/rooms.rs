//! Rooms and membership: create, join and leave rooms; the room list, a conversation's
//! members and the user directory (from this node's memory, kept current by the bus).

use crate::names::{self, NameKind};
use crate::protocol::{ConvId, ErrorCode, Member, RoomInfo};

use super::super::store::WriteOp;
use super::super::Shared;
use super::{write_for_socket, Caller, ServiceError};

/// Create a room (`private`: invisible to non-members); the creator joins it. Answered
/// `joined` later.
pub fn create(
    shared: &Shared,
    caller: &Caller,
    name: &str,
    private: bool,
) -> Result<(), ServiceError> {
    let name = names::name(name, NameKind::RoomName)
        .map_err(|e| ServiceError::refused(ErrorCode::InvalidName, e.to_string()))?
        .display;
    let now = shared.clock.now_ms();
    let op = WriteOp::CreateRoom {
        user: caller.user,
        name,
        now,
        private,
    };
    write_for_socket(shared, caller, op)
}

/// Add `username` to room `conv` the caller is in (the way into a private room). Answered
/// `done` later; the added user gets `conversation_added`, the members `membership`.
pub fn add_member(
    shared: &Shared,
    caller: &Caller,
    conv: ConvId,
    username: String,
) -> Result<(), ServiceError> {
    let op = WriteOp::AddMember {
        by: caller.user,
        conv,
        username,
    };
    write_for_socket(shared, caller, op)
}

/// Join a room by name (any spelling of it). Answered `joined` later.
pub fn join(shared: &Shared, caller: &Caller, room: String) -> Result<(), ServiceError> {
    let op = WriteOp::Join {
        user: caller.user,
        room,
    };
    write_for_socket(shared, caller, op)
}

/// Leave a room. Answered `done` later.
pub fn leave(shared: &Shared, caller: &Caller, conv: ConvId) -> Result<(), ServiceError> {
    let op = WriteOp::Leave {
        user: caller.user,
        conv,
    };
    write_for_socket(shared, caller, op)
}

/// Remove `username` from room `conv` the caller moderates (`ban`: for good). Answered `done`
/// later; they get `conversation_removed`, the members `membership`, on every node.
pub fn remove_member(
    shared: &Shared,
    caller: &Caller,
    conv: ConvId,
    username: String,
    ban: bool,
) -> Result<(), ServiceError> {
    let op = WriteOp::RemoveMember {
        by: caller.user,
        conv,
        username,
        ban,
    };
    write_for_socket(shared, caller, op)
}

/// The room list as `caller` sees it: the public rooms and the private ones they are in.
pub fn list(shared: &Shared, caller: &Caller) -> Vec<RoomInfo> {
    shared.hub.rooms(caller.user)
}

/// Members of a conversation the caller is in, with presence.
pub fn members(
    shared: &Shared,
    caller: &Caller,
    conv: ConvId,
) -> Result<Vec<Member>, ServiceError> {
    shared
        .hub
        .members(caller.user, conv)
        .map_err(|(code, message)| ServiceError::Refused { code, message })
}

/// Every registered user, with presence.
pub fn users(shared: &Shared) -> Vec<Member> {
    shared.hub.users()
}
