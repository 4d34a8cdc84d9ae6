//! Messages: sending (validated here, sequenced and stored by the store, fanned out from the
//! bus), history pages, and resume (`sync`), which replays what a client missed.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::protocol::{
    is_valid_text, limits, ConvId, ConvSeq, ErrorCode, Message, Reply, Seq, ServerFrame, Target,
};

use super::super::hub::{answer, encode};
use super::super::outbound::WireFrame;
use super::super::store::{UserId, WriteOp};
use super::super::Shared;
use super::{write_for_socket, Caller, ServiceError};

/// Send `text` to `target`. Answered `sent` later, after every earlier message of that
/// conversation was pushed to the caller's socket.
pub fn send(
    shared: &Shared,
    caller: &Caller,
    target: Target,
    client_msg_id: Uuid,
    text: String,
) -> Result<(), ServiceError> {
    if text.chars().count() > limits::MAX_TEXT_CHARS {
        return Err(ServiceError::refused(
            ErrorCode::TooLong,
            format!("text is longer than {} characters", limits::MAX_TEXT_CHARS),
        ));
    }
    if !is_valid_text(&text) {
        return Err(ServiceError::refused(
            ErrorCode::BadRequest,
            "text is empty",
        ));
    }
    let op = WriteOp::Send {
        user: caller.user,
        target,
        client_msg_id,
        text,
        now: shared.clock.now_ms(),
    };
    write_for_socket(shared, caller, op)
}

/// A page of `conv`'s history for a member: before `before`, after `after`, or the newest.
pub async fn history(
    shared: &Shared,
    user: UserId,
    conv: ConvId,
    before: Option<Seq>,
    after: Option<Seq>,
    limit: u32,
) -> Result<(Vec<Message>, bool), ServiceError> {
    shared
        .hub
        .check_member(user, conv)
        .map_err(|(code, message)| ServiceError::Refused { code, message })?;
    if before.is_some() && after.is_some() {
        return Err(ServiceError::refused(
            ErrorCode::BadRequest,
            "give at most one of `before` and `after`",
        ));
    }
    if limit == 0 || limit > limits::MAX_PAGE {
        return Err(ServiceError::refused(
            ErrorCode::BadRequest,
            format!("limit must be 1..={}", limits::MAX_PAGE),
        ));
    }
    Ok(shared.store.history(conv, before, after, limit).await?)
}

/// Replay what the client missed (request `id`, see docs/protocol.md "Resume"), page by page
/// into `out`, then answer `synced`; answer `cancelled` instead when `cancelled` fires (or its
/// sender is dropped) first. Runs as its own task so the connection keeps reading (pongs,
/// other requests) during a long replay.
pub async fn replay(
    shared: &Shared,
    user: UserId,
    id: u64,
    since: Vec<ConvSeq>,
    out: mpsc::Sender<WireFrame>,
    cancelled: oneshot::Receiver<()>,
) {
    let frame = tokio::select! {
        biased;
        _ = cancelled => answer(
            id,
            Err((
                ErrorCode::Cancelled,
                "replaced by a later sync on this socket".into(),
            )),
        ),
        done = replay_pages(shared, user, since, &out) => match done {
            Some(Ok(unread)) => answer(id, Ok(Reply::Synced { unread })),
            Some(Err(e)) => answer(id, Err(e.to_client())),
            None => return,
        },
    };
    let _ = out.send(frame).await;
}

/// Send the replay's `batch` frames; the unread counts to answer with, or None when the
/// connection is gone.
async fn replay_pages(
    shared: &Shared,
    user: UserId,
    since: Vec<ConvSeq>,
    out: &mpsc::Sender<WireFrame>,
) -> Option<Result<Vec<crate::protocol::Unread>, ServiceError>> {
    let given: HashMap<_, _> = since.iter().map(|c| (c.conv, c.seq.max(0))).collect();
    for (conv, last_seq) in shared.hub.member_convs(user) {
        let mut from = given
            .get(&conv)
            .copied()
            .unwrap_or((last_seq - limits::SYNC_UNLISTED).max(0));
        loop {
            let page = shared
                .store
                .history(conv, None, Some(from), limits::MAX_PAGE)
                .await;
            let (messages, has_more) = match page {
                Ok(p) => p,
                Err(e) => return Some(Err(e.into())),
            };
            let Some(last) = messages.last() else { break };
            from = last.seq;
            out.send(encode(&ServerFrame::Batch { conv, messages }))
                .await
                .ok()?;
            if !has_more {
                break;
            }
        }
    }
    Some(shared.store.unread(user).await.map_err(ServiceError::from))
}
