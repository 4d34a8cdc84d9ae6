//! The event stream (`GET /api/events`; docs/protocol.md "Event stream"): a read-only view,
//! for bots, scripts and dashboards, of what the user's sockets get. This file decides what a
//! stream carries and where it stands; `sse.rs` writes it as Server-Sent Events.
//!
//! A stream listens at the hub ([`Hub::listen`](super::super::hub::Hub::listen)) like a socket
//! without answers or presence of its own, so it hears every committed event the user may read
//! in commit order, from the same fan-out. One that carries presence watches as a socket does
//! (the user's DM partners and the users it names in `watch`), never everyone. Its [`Cursor`] says, per conversation, the last seq
//! it delivered; each event's id is that cursor, so a client that reconnects with it gets what
//! came after (replayed from the store up to the instant the new stream started listening,
//! then live), nothing twice. The hub's queue for a stream is bounded: a stream that cannot keep
//! up is cut off as a slow socket is, and resumes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::protocol::{limits, ApiError, ConvId, ErrorCode, Millis, ServerFrame};
use crate::stream::{self, Cursor, Ready};

use super::super::auth::{self, TokenHash};
use super::super::bus::Event;
use super::super::connection::Slot;
use super::super::hub::{Kill, Listening};
use super::super::outbound::{Outlet, PushError, WireFrame};
use super::super::store::UserId;
use super::super::Shared;
use super::accounts::{self, Authed};
use super::ServiceError;

/// What a client asks of a new stream.
#[derive(Debug, Default, Clone)]
pub struct StreamRequest {
    /// Only these conversations (each must be one the user is in); None: all of the user's,
    /// including those they join while the stream is open.
    pub only: Option<Vec<ConvId>>,
    /// Carry presence changes of the user's DM partners and of `watch` (and list who of them
    /// is online in `ready`).
    pub presence: bool,
    /// The users whose presence the stream watches besides DM partners (only with
    /// `presence`), at most [`limits::MAX_WATCHED_USERS`].
    pub watch: Option<Vec<String>>,
    /// Where a previous stream stood (`Last-Event-ID`): replay what came after.
    pub since: Option<Cursor>,
}

/// One event to write: its name, its id (the cursor after it, for events that move it) and
/// its data (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    pub id: Option<String>,
    pub data: String,
}

/// Why a stream ended on the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The client went away.
    Gone,
    /// The stream fell too far behind: cut off (the client resumes with its last id).
    SlowConsumer,
    /// The server is shutting down (the client reconnects later).
    ShuttingDown,
    /// The token was revoked or expired: told to the client in a `closed` event.
    Unauthorized,
}

/// The hub's end of a stream: frames go into a bounded queue; a full queue cuts the stream off.
struct StreamOutlet {
    frames: mpsc::Sender<WireFrame>,
    kill: Arc<Kill>,
}

impl Outlet for StreamOutlet {
    fn push(&self, frames: &[WireFrame]) -> Result<(), PushError> {
        for frame in frames {
            match self.frames.try_send(frame.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.kill.fire(crate::protocol::close::SLOW_CONSUMER);
                    return Err(PushError::Full);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(PushError::Closed),
            }
        }
        Ok(())
    }
}

/// An open stream: listening at the hub, with what it must replay first.
pub struct Stream {
    user: UserId,
    frames: mpsc::Receiver<WireFrame>,
    kill: Arc<Kill>,
    conn: super::super::bus::ConnId,
    /// Where the stream stands now.
    cursor: Cursor,
    /// Per conversation, the last seq when the stream started listening: the replay goes up
    /// to it, the hub's frames come after it.
    replay_to: Vec<(ConvId, i64)>,
    only: Option<Vec<ConvId>>,
    presence: bool,
    /// With presence: who of those the stream watches is online, for `ready`.
    online: Option<Vec<String>>,
    expires_at: Millis,
    _slot: Slot<UserId>,
}

/// Open a stream for `authed`: check the request, take one of the user's stream places, and
/// start listening at the hub.
pub fn open(
    shared: &Shared,
    authed: Authed,
    request: StreamRequest,
) -> Result<Stream, ServiceError> {
    let user = authed.user;
    if request.watch.is_some() && !request.presence {
        return Err(ServiceError::refused(
            ErrorCode::BadRequest,
            "watch needs presence=true",
        ));
    }
    let watch = request.watch.as_deref().unwrap_or_default();
    super::presence::check_watch_size(watch)?;
    if let Some(only) = &request.only {
        for conv in only {
            shared
                .hub
                .check_member(user, *conv)
                .map_err(|(code, message)| {
                    ServiceError::refused(code, format!("conversation {conv}: {message}"))
                })?;
        }
    }
    let max = shared.config.max_streams_per_user;
    let slot = shared.streams_per_user.take(user, max).ok_or_else(|| {
        ServiceError::refused(
            ErrorCode::RateLimited,
            format!("too many open event streams for this user (at most {max})"),
        )
    })?;
    let (tx, frames) = mpsc::channel(shared.config.stream_queue.max(1));
    let kill = Arc::new(Kill::default());
    let outlet = Arc::new(StreamOutlet {
        frames: tx,
        kill: kill.clone(),
    });
    let listening = shared.hub.listen(
        user,
        authed.token,
        outlet,
        kill.clone(),
        request.presence.then_some(watch),
    );
    let Listening {
        handle,
        conversations,
        online,
    } = listening.map_err(|(code, message)| ServiceError::refused(code, message))?;
    let mut cursor = Cursor::default();
    let mut replay_to = Vec::new();
    for c in conversations {
        if request
            .only
            .as_ref()
            .is_some_and(|only| !only.contains(&c.id))
        {
            continue;
        }
        // No cursor: start now. A conversation the cursor does not name (joined since):
        // its newest messages, as `sync` does. Never beyond what exists.
        let from = match &request.since {
            None => c.last_seq,
            Some(since) => since
                .get(c.id)
                .unwrap_or(c.last_seq - limits::SYNC_UNLISTED)
                .clamp(0, c.last_seq),
        };
        cursor.set(c.id, from);
        if from < c.last_seq {
            replay_to.push((c.id, c.last_seq));
        }
    }
    Ok(Stream {
        user,
        frames,
        kill,
        conn: handle.id,
        cursor,
        replay_to,
        only: request.only,
        presence: request.presence,
        online,
        expires_at: authed.expires_at,
        _slot: slot,
    })
}

impl Stream {
    /// Write the stream into `out` until it ends: `ready`, the replay, then live events.
    pub async fn run(mut self, shared: Arc<Shared>, out: mpsc::Sender<Item>) -> Ending {
        let ending = self.pump(&shared, &out).await;
        shared.hub.unregister(self.conn);
        if ending == Ending::Unauthorized {
            let closed = ApiError {
                code: ErrorCode::Unauthorized,
                message: "the session was signed out or expired: sign in again".into(),
            };
            let _ = out.try_send(Item {
                name: stream::names::CLOSED.into(),
                id: None,
                data: json(&closed),
            });
        }
        ending
    }

    async fn pump(&mut self, shared: &Shared, out: &mpsc::Sender<Item>) -> Ending {
        let ready = Ready {
            conversations: self.cursor.to_conv_seqs(),
            online: self.online.take(),
        };
        let ready = Item {
            name: stream::names::READY.into(),
            id: Some(self.cursor.to_string()),
            data: json(&ready),
        };
        if out.send(ready).await.is_err() {
            return Ending::Gone;
        }
        let replay = std::mem::take(&mut self.replay_to);
        for (conv, to) in replay {
            if let Some(ending) = self.replay(shared, conv, to, out).await {
                return ending;
            }
        }
        let now = shared.clock.now_ms();
        let expiry = tokio::time::sleep(std::time::Duration::from_millis(
            self.expires_at.saturating_sub(now).max(0) as u64,
        ));
        tokio::pin!(expiry);
        loop {
            let frame = tokio::select! {
                biased;
                _ = self.kill.fired() => return self.killed(),
                _ = &mut expiry => return Ending::Unauthorized,
                _ = out.closed() => return Ending::Gone,
                frame = self.frames.recv() => match frame {
                    Some(frame) => frame,
                    None => return self.killed(),
                },
            };
            if let Some(item) = self.carry(&frame) {
                if out.send(item).await.is_err() {
                    return Ending::Gone;
                }
            }
        }
    }

    fn killed(&self) -> Ending {
        match self.kill.code() {
            Some(crate::protocol::close::UNAUTHORIZED) => Ending::Unauthorized,
            Some(crate::protocol::close::SLOW_CONSUMER) => Ending::SlowConsumer,
            _ => Ending::ShuttingDown,
        }
    }

    /// Replay `conv` after the cursor up to `to`, page by page; Some when the stream ended.
    async fn replay(
        &mut self,
        shared: &Shared,
        conv: ConvId,
        to: i64,
        out: &mpsc::Sender<Item>,
    ) -> Option<Ending> {
        loop {
            let from = self.cursor.get(conv)?;
            if from >= to {
                return None;
            }
            if self.kill.code().is_some() {
                return Some(self.killed());
            }
            let (messages, _) = match shared
                .store
                .history(conv, None, Some(from), limits::MAX_PAGE)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    let (_, message) = e.to_client();
                    tracing::warn!(user = self.user, conv, %message, "event stream replay failed");
                    return Some(Ending::ShuttingDown);
                }
            };
            if messages.is_empty() {
                return None;
            }
            for message in messages.into_iter().filter(|m| m.seq <= to) {
                self.cursor.set(conv, message.seq);
                let item = Item {
                    name: "message".into(),
                    id: Some(self.cursor.to_string()),
                    data: json(&ServerFrame::Message { message }),
                };
                if out.send(item).await.is_err() {
                    return Some(Ending::Gone);
                }
            }
        }
    }

    /// The event a frame from the hub becomes on this stream, if it carries it.
    fn carry(&mut self, frame: &WireFrame) -> Option<Item> {
        let payload = frame.payload();
        let parsed: ServerFrame = serde_json::from_slice(payload).ok()?;
        let (name, moves_cursor) = match &parsed {
            ServerFrame::Message { message } => {
                let last = self.cursor.get(message.conv)?;
                if message.seq <= last {
                    return None;
                }
                self.cursor.set(message.conv, message.seq);
                ("message", true)
            }
            ServerFrame::ConversationAdded { conversation } => {
                if self
                    .only
                    .as_ref()
                    .is_some_and(|only| !only.contains(&conversation.id))
                {
                    return None;
                }
                self.cursor.set(conversation.id, conversation.last_seq);
                ("conversation_added", true)
            }
            ServerFrame::ConversationRemoved { conv } => {
                if !self.cursor.remove(*conv) {
                    return None;
                }
                ("conversation_removed", true)
            }
            ServerFrame::Membership { conv, .. } if self.cursor.contains(*conv) => {
                ("membership", false)
            }
            ServerFrame::Presence { .. } if self.presence => ("presence", false),
            // Someone the user shares a conversation with changed their name or avatar, or
            // deleted their account: a bot showing names needs it.
            ServerFrame::UserUpdated { .. } => ("user_updated", false),
            _ => return None,
        };
        Some(Item {
            name: name.into(),
            id: moves_cursor.then(|| self.cursor.to_string()),
            data: String::from_utf8_lossy(payload).into_owned(),
        })
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
}

/// Single-use tickets that stand for a token in a URL (a browser's EventSource cannot send an
/// `Authorization` header), for [`stream::limits::TICKET_TTL_SECS`]. Kept in memory; in a
/// cluster each node's issues and redemptions cross the bus ([`TicketChange`]), so a ticket
/// from one node works once on any (two redemptions on two nodes within the bus's delay could
/// both succeed: the window is a millisecond or so, and a ticket lives 60 s at most).
#[derive(Default)]
pub struct Tickets(Mutex<HashMap<TokenHash, (Authed, Millis)>>);

/// A change to the tickets made on one node, for the others to make too.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TicketChange {
    Issued {
        hash: TokenHash,
        authed: Authed,
        until: Millis,
    },
    Redeemed {
        hash: TokenHash,
    },
}

/// Make a ticket change another node made.
pub fn apply_ticket_change(shared: &Shared, change: TicketChange) {
    let mut tickets = shared
        .stream_tickets
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match change {
        TicketChange::Issued {
            hash,
            authed,
            until,
        } => {
            let now = shared.clock.now_ms();
            tickets.retain(|_, (_, until)| *until > now);
            tickets.insert(hash, (authed, until));
        }
        TicketChange::Redeemed { hash } => {
            tickets.remove(&hash);
        }
    }
}

/// Tell the other nodes of a ticket change (in cluster mode; nothing on one node).
fn share_ticket_change(shared: &Shared, change: TicketChange) {
    if shared.config.bus.is_some() {
        shared.bus.publish(Event::Ticket {
            node: shared.hub.node(),
            change,
        });
    }
}

/// Most unused tickets one user may hold; the oldest goes when another is issued.
const MAX_TICKETS_PER_USER: usize = 16;

/// A new ticket for `authed`, and its lifetime in seconds.
pub fn issue_ticket(shared: &Shared, authed: Authed) -> (String, u64) {
    let now = shared.clock.now_ms();
    let ttl = stream::limits::TICKET_TTL_SECS;
    let expires = (now + ttl as Millis * 1000).min(authed.expires_at);
    let (ticket, hash) = auth::new_token();
    let mut tickets = shared
        .stream_tickets
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    tickets.retain(|_, (_, until)| *until > now);
    let mut own: Vec<(TokenHash, Millis)> = tickets
        .iter()
        .filter(|(_, (a, _))| a.user == authed.user)
        .map(|(h, (_, until))| (*h, *until))
        .collect();
    if own.len() >= MAX_TICKETS_PER_USER {
        own.sort_by_key(|(_, until)| *until);
        for (h, _) in &own[..=own.len() - MAX_TICKETS_PER_USER] {
            tickets.remove(h);
        }
    }
    tickets.insert(hash, (authed, expires));
    drop(tickets);
    share_ticket_change(
        shared,
        TicketChange::Issued {
            hash,
            authed,
            until: expires,
        },
    );
    (ticket, ttl)
}

/// The session a ticket stands for, once: a used, expired or unknown ticket, or one whose
/// token was revoked since, is `unauthorized`.
pub async fn redeem_ticket(shared: &Shared, ticket: &str) -> Result<Authed, ServiceError> {
    let hash = auth::hash_token(ticket);
    let found = shared
        .stream_tickets
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&hash);
    if found.is_some() {
        share_ticket_change(shared, TicketChange::Redeemed { hash });
    }
    match found {
        Some((authed, until)) if until > shared.clock.now_ms() => {
            accounts::check_token(shared, authed.token).await
        }
        _ => Err(ServiceError::refused(
            ErrorCode::Unauthorized,
            "invalid, used or expired ticket: get a new one from POST /api/events/ticket",
        )),
    }
}
