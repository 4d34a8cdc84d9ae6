//! Messages: sending them and acting on them (replies, edits, deletes, reactions: validated
//! here, authorised, sequenced and stored by the store, fanned out from the bus like any
//! message), history pages, and resume (`sync`), which replays what a client missed.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::protocol::{
    is_valid_reaction, is_valid_text, limits, Action, ActionRequest, ConvId, ConvSeq, ErrorCode,
    Message, Reply, Seq, ServerFrame, Target,
};

use super::super::hub::{answer, encode};
use super::super::outbound::WireFrame;
use super::super::store::{UserId, WriteOp};
use super::super::Shared;
use super::{write_for_socket, Caller, ServiceError};

/// Send `text` and the files `attachments` (uploaded by the caller: the store checks) to
/// `target`, as a reply to the message `reply_to` of that conversation if given. The text may
/// be empty when there are attachments. Answered `sent` later, after every earlier message of
/// that conversation was pushed to the caller's socket.
pub fn send(
    shared: &Shared,
    caller: &Caller,
    target: Target,
    client_msg_id: Uuid,
    text: String,
    reply_to: Option<Seq>,
    attachments: Vec<String>,
) -> Result<(), ServiceError> {
    check_attachments(&attachments)?;
    // Files may go alone: then the text is empty. Any text follows the usual rules.
    if !text.is_empty() || attachments.is_empty() {
        check_text(&text)?;
    }
    write_event(
        shared,
        caller,
        Event {
            target,
            client_msg_id,
            text,
            reply_to,
            action: None,
            attachments,
        },
    )
}

/// How many files a message may carry, each once.
fn check_attachments(ids: &[String]) -> Result<(), ServiceError> {
    let refuse = |message: String| ServiceError::refused(ErrorCode::InvalidAttachment, message);
    if ids.len() > limits::MAX_ATTACHMENTS {
        return Err(refuse(format!(
            "a message carries at most {} files",
            limits::MAX_ATTACHMENTS
        )));
    }
    if let Some((i, id)) = ids
        .iter()
        .enumerate()
        .find(|(i, id)| ids[..*i].contains(id))
    {
        return Err(refuse(format!("file {id} is attached twice (at {i})")));
    }
    Ok(())
}

/// Act on message `action.target()` in `conv`: edit it (`text` is the new text), delete it or
/// react to it. Checked here: the text and the reaction; in the store: membership, the target,
/// and who may (only the author edits, see `rules::may_act`).
pub fn act(shared: &Shared, caller: &Caller, request: ActionRequest) -> Result<(), ServiceError> {
    let ActionRequest {
        conv,
        client_msg_id,
        action,
        text,
    } = request;
    match &action {
        Action::Edit { .. } => check_text(&text)?,
        Action::React { emoji, .. } if !is_valid_reaction(emoji) => {
            return Err(ServiceError::refused(
                ErrorCode::InvalidReaction,
                format!(
                    "a reaction must be a single emoji of at most {} bytes",
                    limits::MAX_REACTION_BYTES
                ),
            ))
        }
        Action::React { .. } | Action::Delete { .. } => {}
    }
    write_event(
        shared,
        caller,
        Event {
            target: Target::Conv(conv),
            client_msg_id,
            text,
            reply_to: None,
            action: Some(action),
            attachments: Vec::new(),
        },
    )
}

/// One conversation event (message, reply or action) as a client asked for it.
struct Event {
    target: Target,
    client_msg_id: Uuid,
    text: String,
    reply_to: Option<Seq>,
    action: Option<Action>,
    attachments: Vec<String>,
}

/// Queue one conversation event for the caller's socket.
fn write_event(shared: &Shared, caller: &Caller, event: Event) -> Result<(), ServiceError> {
    let op = WriteOp::Send {
        user: caller.user,
        target: event.target,
        client_msg_id: event.client_msg_id,
        text: event.text,
        now: shared.clock.now_ms(),
        reply_to: event.reply_to,
        action: event.action,
        attachments: event.attachments,
    };
    write_for_socket(shared, caller, op)
}

/// The text rules of a message and an edit: not longer than the limit, not blank.
fn check_text(text: &str) -> Result<(), ServiceError> {
    if text.chars().count() > limits::MAX_TEXT_CHARS {
        return Err(ServiceError::refused(
            ErrorCode::TooLong,
            format!("text is longer than {} characters", limits::MAX_TEXT_CHARS),
        ));
    }
    if !is_valid_text(text) {
        return Err(ServiceError::refused(
            ErrorCode::BadRequest,
            "text is empty",
        ));
    }
    Ok(())
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
