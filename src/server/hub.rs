//! The hub: who is a member of what, who is online on which connections, and fan-out.
//!
//! Memory mirrors the database (users, conversations, members, read markers, last seq) and is
//! changed only by the writer thread's commit hook ([`Hub::on_commit`]) after a commit, so it is
//! never ahead of the disk. Fan-out happens there too, in commit order, which is what gives every
//! member the same gapless order. Each message is encoded once as a [`WireFrame`]; every
//! recipient gets the same bytes. Recipients are collected under the lock and written to after
//! it is released ([`Outgoing`]), so the lock is never held across socket writes. Pushing never
//! waits: a connection whose bounded queue is full is closed with [`close::SLOW_CONSUMER`]
//! (see [`super::outbound`]) and dropped from the hub, so one slow reader never slows a room.
//!
//! Presence is per user (two devices are one online user) and is pushed to every connected user,
//! in batches: changes wait up to [`PRESENCE_WINDOW`] and then go out together, every pending
//! change to each connection in one write ([`Hub::run_presence`]). When thousands of clients
//! reconnect at once (a server restart), announcing each one to everyone else separately would
//! cost a write per pair, N² in all; batched it is one write per connection per window.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use crate::protocol::{
    close, limits, ConvId, ConvKind, Conversation, ErrorCode, Member, Reply, RoomInfo, Seq,
    ServerFrame, Unread, User, PROTOCOL_VERSION,
};

use super::auth::TokenHash;
use super::outbound::{FrameRun, Outlet, WireFrame};
use super::store::{name_key, now_ms, Origin, Snapshot, StoreError, UserId, WriteOutcome};

/// How long a presence change may wait to go out with others. Reconnects make presence the
/// busiest push after messages (each one is an offline and an online change for everyone), so
/// the window is as long as people won't notice: a fifth of a second.
pub const PRESENCE_WINDOW: Duration = Duration::from_millis(200);

/// A connection's id, unique for the life of the server.
pub type ConnId = u64;

/// A one-shot "close this connection with this code" signal, awaited by the connection's one
/// task (only that task may await [`Kill::fired`]: the waker slot holds one waker). The task
/// polls it on every turn of its loop, so it costs a few atomic operations rather than a
/// lock, as a `Notify` would.
#[derive(Debug, Default)]
pub struct Kill {
    code: AtomicU16,
    waker: AtomicWaker,
}

impl Kill {
    /// Ask the connection to close with `code`. The first code wins.
    pub fn fire(&self, code: u16) {
        if self
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.waker.wake();
        }
    }

    /// The close code asked for, if any.
    pub fn code(&self) -> Option<u16> {
        match self.code.load(Ordering::Acquire) {
            0 => None,
            c => Some(c),
        }
    }

    /// Resolves once [`Kill::fire`] has been called.
    pub async fn fired(&self) {
        std::future::poll_fn(|cx| {
            if self.code().is_some() {
                return std::task::Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // A fire between the check and the registration woke nobody: look again.
            match self.code() {
                Some(_) => std::task::Poll::Ready(()),
                None => std::task::Poll::Pending,
            }
        })
        .await
    }
}

/// The hub's handle on one live connection.
#[derive(Clone)]
pub struct ConnHandle {
    pub id: ConnId,
    pub user: UserId,
    /// The token the socket authenticated with, so logout can close it.
    pub token: TokenHash,
    pub out: Arc<dyn Outlet>,
    pub kill: Arc<Kill>,
}

/// What a change to the hub's state sends: frames to write once the lock is released, and
/// connections to drop from the hub.
#[derive(Default)]
struct Outgoing {
    sends: Vec<(ConnId, Arc<dyn Outlet>, WireFrame)>,
    dead: Vec<ConnId>,
    /// A connection may have several frames here (a commit batch of several outcomes): group
    /// them so each connection gets its frames in one write.
    several: bool,
    /// A presence change was queued: wake the presence batcher.
    presence: bool,
}

impl Outgoing {
    fn push(&mut self, c: &ConnHandle, frame: &WireFrame) {
        self.sends.push((c.id, c.out.clone(), frame.clone()));
    }

    /// Push `frame` to each of one user's connections `conns` except `except`.
    fn push_all(&mut self, conns: &[ConnHandle], frame: &WireFrame, except: Option<ConnId>) {
        for c in conns.iter().filter(|c| Some(c.id) != except) {
            self.push(c, frame);
        }
    }
}

struct ConvEntry {
    kind: ConvKind,
    name: String,
    /// Members and their read markers.
    members: HashMap<UserId, Seq>,
    last_seq: Seq,
}

#[derive(Default)]
struct State {
    users: HashMap<UserId, User>,
    convs: HashMap<ConvId, ConvEntry>,
    rooms: HashMap<String, ConvId>,
    user_convs: HashMap<UserId, HashSet<ConvId>>,
    conns: HashMap<UserId, Vec<ConnHandle>>,
    owner: HashMap<ConnId, UserId>,
    /// Presence changes not yet sent, oldest first, with the user each is about.
    presence: Vec<(UserId, WireFrame)>,
    shutting_down: bool,
}

/// Encode a frame once; the result is shared by every recipient.
pub fn encode(frame: &ServerFrame) -> WireFrame {
    WireFrame::json(frame)
}

/// The answer frame for request `req`.
pub fn answer(req: u64, result: Result<Reply, (ErrorCode, String)>) -> WireFrame {
    encode(&match result {
        Ok(result) => ServerFrame::Ok { id: req, result },
        Err((code, message)) => ServerFrame::Error {
            id: Some(req),
            code,
            message,
        },
    })
}

impl State {
    fn conversation(&self, conv: ConvId, user: UserId) -> Option<Conversation> {
        let c = self.convs.get(&conv)?;
        let last_read = *c.members.get(&user)?;
        let peer = match c.kind {
            ConvKind::Room => None,
            ConvKind::Dm => c
                .members
                .keys()
                .find(|u| **u != user)
                .and_then(|u| self.users.get(u))
                .cloned(),
        };
        Some(Conversation {
            id: conv,
            kind: c.kind,
            name: peer
                .as_ref()
                .map(|p| p.username.clone())
                .unwrap_or_else(|| c.name.clone()),
            peer,
            member_count: c.members.len() as u32,
            last_seq: c.last_seq,
            last_read,
        })
    }

    fn online_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .conns
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .filter_map(|(u, _)| self.users.get(u).map(|u| u.username.clone()))
            .collect();
        names.sort();
        names
    }

    fn is_online(&self, user: UserId) -> bool {
        self.conns.get(&user).is_some_and(|v| !v.is_empty())
    }

    /// Send `frame` to every connection of `user` except `except`.
    fn push_user(
        &self,
        user: UserId,
        frame: &WireFrame,
        except: Option<ConnId>,
        out: &mut Outgoing,
    ) {
        if let Some(conns) = self.conns.get(&user) {
            out.push_all(conns, frame, except);
        }
    }

    fn push_conn(&self, conn: ConnId, frame: &WireFrame, out: &mut Outgoing) {
        if let Some(c) = self
            .owner
            .get(&conn)
            .and_then(|u| self.conns.get(u))
            .and_then(|v| v.iter().find(|c| c.id == conn))
        {
            out.push(c, frame);
        }
    }

    /// Queue a presence change for the next batch.
    fn announce(&mut self, user: UserId, online: bool, out: &mut Outgoing) {
        if let Some(u) = self.users.get(&user) {
            let frame = encode(&ServerFrame::Presence {
                username: u.username.clone(),
                online,
            });
            self.presence.push((user, frame));
            out.presence = true;
        }
    }

    fn push_members(
        &self,
        conv: ConvId,
        frame: &WireFrame,
        except: Option<ConnId>,
        out: &mut Outgoing,
    ) {
        let Some(c) = self.convs.get(&conv) else {
            return;
        };
        // Walk whichever is smaller: a big room usually has far more members than are online
        // (the default room holds every user), and this walk comes before the first write.
        if c.members.len() <= self.conns.len() {
            for user in c.members.keys() {
                self.push_user(*user, frame, except, out);
            }
        } else {
            for (user, conns) in &self.conns {
                if c.members.contains_key(user) {
                    out.push_all(conns, frame, except);
                }
            }
        }
    }

    /// Drop the connections in `out.dead` and announce users who went offline.
    fn reap(&mut self, out: &mut Outgoing) {
        while let Some(conn) = out.dead.pop() {
            self.remove_conn(conn, out);
        }
    }

    fn remove_conn(&mut self, conn: ConnId, out: &mut Outgoing) {
        let Some(user) = self.owner.remove(&conn) else {
            return;
        };
        let now_offline = match self.conns.get_mut(&user) {
            Some(list) => {
                list.retain(|c| c.id != conn);
                list.is_empty()
            }
            None => false,
        };
        if now_offline {
            self.conns.remove(&user);
            self.announce(user, false, out);
        }
    }

    fn add_member(&mut self, conv: ConvId, user: UserId) {
        if let Some(c) = self.convs.get_mut(&conv) {
            c.members.entry(user).or_insert(0);
        }
        self.user_convs.entry(user).or_default().insert(conv);
    }
}

/// Shared in-memory chat state. See the module docs.
pub struct Hub {
    state: Mutex<State>,
    /// Wakes [`Hub::run_presence`] when a presence change is queued.
    presence_queued: Notify,
    next_conn: AtomicU64,
    heartbeat_ms: u64,
}

impl Hub {
    /// Build the hub from the store's snapshot.
    pub fn new(snapshot: Snapshot, heartbeat_ms: u64) -> Hub {
        let mut state = State::default();
        for row in snapshot.users {
            state.users.insert(row.id, row.user);
        }
        for c in snapshot.convs {
            if c.kind == ConvKind::Room {
                state.rooms.insert(name_key(&c.name), c.id);
            }
            for (user, _) in &c.members {
                state.user_convs.entry(*user).or_default().insert(c.id);
            }
            state.convs.insert(
                c.id,
                ConvEntry {
                    kind: c.kind,
                    name: c.name,
                    members: c.members.into_iter().collect(),
                    last_seq: c.last_seq,
                },
            );
        }
        Hub {
            state: Mutex::new(state),
            presence_queued: Notify::new(),
            next_conn: AtomicU64::new(1),
            heartbeat_ms,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the whole server down with a poisoned lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write what a state change sends; call with the lock released. A connection that cannot
    /// take its frame (closed, or a slow consumer now being closed) is dropped from the hub,
    /// which may announce its user offline: hence the loop.
    fn deliver(&self, mut out: Outgoing) {
        if out.presence {
            self.presence_queued.notify_one();
        }
        let mut frames: Vec<WireFrame> = Vec::new();
        loop {
            if out.several {
                // Stable, so each connection's frames keep their commit order.
                out.sends.sort_by_key(|(conn, _, _)| *conn);
            }
            let mut sends = std::mem::take(&mut out.sends).into_iter().peekable();
            while let Some((conn, outlet, frame)) = sends.next() {
                frames.clear();
                frames.push(frame);
                while let Some((_, _, more)) = sends.next_if(|(c, _, _)| *c == conn) {
                    frames.push(more);
                }
                if outlet.push(&frames).is_err() {
                    out.dead.push(conn);
                }
            }
            if out.dead.is_empty() {
                return;
            }
            out.several = false;
            self.lock().reap(&mut out);
            if out.presence {
                self.presence_queued.notify_one();
            }
        }
    }

    /// Send queued presence changes in batches until the hub shuts down: after a change, wait
    /// [`PRESENCE_WINDOW`] for more, then write every connection the changes about other users,
    /// all in one push.
    pub async fn run_presence(self: Arc<Hub>) {
        loop {
            self.presence_queued.notified().await;
            tokio::time::sleep(PRESENCE_WINDOW).await;
            let mut state = self.lock();
            if state.shutting_down {
                return;
            }
            let changes = std::mem::take(&mut state.presence);
            let recipients: Vec<(UserId, ConnId, Arc<dyn Outlet>)> = state
                .conns
                .iter()
                .flat_map(|(user, conns)| conns.iter().map(|c| (*user, c.id, c.out.clone())))
                .collect();
            drop(state);
            let mut out = Outgoing::default();
            let frames: Vec<WireFrame> = changes.iter().map(|(_, f)| f.clone()).collect();
            let run = FrameRun::new(&frames);
            let mut pieces: Vec<WireFrame> = Vec::new();
            for (user, conn, outlet) in recipients {
                // Everything but the changes about the recipient itself: usually one piece.
                pieces.clear();
                run.select(|i| changes[i].0 != user, &mut pieces);
                if !pieces.is_empty() && outlet.push(&pieces).is_err() {
                    out.dead.push(conn);
                }
            }
            // Drops the connections that could not take the batch (and announces them).
            self.deliver(out);
        }
    }

    /// The user's public profile.
    pub fn user(&self, user: UserId) -> Option<User> {
        self.lock().users.get(&user).cloned()
    }

    /// Register an authenticated connection that writes to `out` and closes through `kill`.
    /// The `hello` frame is pushed before the connection is visible to anyone else, so nothing
    /// can come before it. Returns None when the server is shutting down.
    pub fn register(
        &self,
        user: UserId,
        token: TokenHash,
        unread: Vec<Unread>,
        out: Arc<dyn Outlet>,
        kill: Arc<Kill>,
    ) -> Option<ConnHandle> {
        let mut state = self.lock();
        if state.shutting_down {
            return None;
        }
        let profile = state.users.get(&user)?.clone();
        let handle = ConnHandle {
            id: self.next_conn.fetch_add(1, Ordering::Relaxed),
            user,
            token,
            out,
            kill,
        };
        let mut convs: Vec<ConvId> = state
            .user_convs
            .get(&user)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        convs.sort_unstable();
        let conversations = convs
            .iter()
            .filter_map(|c| state.conversation(*c, user))
            .collect();
        let was_online = state.is_online(user);
        let mut online = state.online_names();
        if !was_online {
            online.push(profile.username.clone());
            online.sort();
        }
        let hello = encode(&ServerFrame::Hello {
            protocol: PROTOCOL_VERSION,
            user: profile.clone(),
            server_time: now_ms(),
            heartbeat_ms: self.heartbeat_ms,
            conversations,
            online,
            unread,
        });
        // Nothing is queued yet, so the hello always fits; a socket that already failed is
        // found by its own task.
        let _ = handle.out.push(std::slice::from_ref(&hello));
        let mut out = Outgoing::default();
        if !was_online {
            state.announce(user, true, &mut out);
        }
        state.conns.entry(user).or_default().push(handle.clone());
        state.owner.insert(handle.id, user);
        drop(state);
        self.deliver(out);
        Some(handle)
    }

    /// Forget a connection (its task ended); announce the user offline if it was the last one.
    pub fn unregister(&self, conn: ConnId) {
        let mut out = Outgoing::default();
        self.lock().remove_conn(conn, &mut out);
        self.deliver(out);
    }

    /// Close every connection (code 1001) and refuse new ones.
    pub fn shutdown(&self) {
        let mut state = self.lock();
        state.shutting_down = true;
        self.presence_queued.notify_one();
        for conns in state.conns.values() {
            for c in conns {
                c.kill.fire(close::GOING_AWAY);
            }
        }
    }

    /// Ok when `user` is a member of `conv`; otherwise the error to answer with. A DM the user
    /// is not in answers like a conversation that does not exist.
    pub fn check_member(&self, user: UserId, conv: ConvId) -> Result<(), (ErrorCode, String)> {
        let state = self.lock();
        match state.convs.get(&conv) {
            Some(c) if c.members.contains_key(&user) => Ok(()),
            Some(c) if c.kind == ConvKind::Room => {
                Err((ErrorCode::Forbidden, "not a member of this room".into()))
            }
            _ => Err((ErrorCode::NotFound, "no such conversation".into())),
        }
    }

    /// The conversations `user` is in, with their last seq.
    pub fn member_convs(&self, user: UserId) -> Vec<(ConvId, Seq)> {
        let state = self.lock();
        let mut out: Vec<(ConvId, Seq)> = state
            .user_convs
            .get(&user)
            .map(|s| {
                s.iter()
                    .filter_map(|c| state.convs.get(c).map(|e| (*c, e.last_seq)))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_unstable();
        out
    }

    /// The public room list as seen by `user`.
    pub fn rooms(&self, user: UserId) -> Vec<RoomInfo> {
        let state = self.lock();
        let mut rooms: Vec<RoomInfo> = state
            .convs
            .iter()
            .filter(|(_, c)| c.kind == ConvKind::Room)
            .map(|(id, c)| RoomInfo {
                id: *id,
                name: c.name.clone(),
                member_count: c.members.len() as u32,
                joined: c.members.contains_key(&user),
            })
            .collect();
        rooms.sort_by_key(|r| r.name.to_lowercase());
        rooms
    }

    /// Members of a conversation `user` belongs to, with presence.
    pub fn members(&self, user: UserId, conv: ConvId) -> Result<Vec<Member>, (ErrorCode, String)> {
        self.check_member(user, conv)?;
        let state = self.lock();
        let mut members: Vec<Member> = state
            .convs
            .get(&conv)
            .map(|c| {
                c.members
                    .keys()
                    .filter_map(|u| {
                        state.users.get(u).map(|p| Member {
                            user: p.clone(),
                            online: state.is_online(*u),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        members.sort_by(|a, b| a.user.username.cmp(&b.user.username));
        Ok(members)
    }

    /// Every registered user, with presence.
    pub fn users(&self) -> Vec<Member> {
        let state = self.lock();
        let mut users: Vec<Member> = state
            .users
            .iter()
            .map(|(id, u)| Member {
                user: u.clone(),
                online: state.is_online(*id),
            })
            .collect();
        users.sort_by(|a, b| a.user.username.cmp(&b.user.username));
        users
    }

    /// Forward a typing indicator to the other members' connections (not stored).
    pub fn typing(&self, user: UserId, conv: ConvId) -> Result<(), (ErrorCode, String)> {
        self.check_member(user, conv)?;
        let state = self.lock();
        let Some(name) = state.users.get(&user).map(|u| u.username.clone()) else {
            return Err((ErrorCode::Unauthorized, "unknown user".into()));
        };
        let frame = encode(&ServerFrame::Typing {
            conv,
            username: name,
        });
        let mut out = Outgoing::default();
        if let Some(c) = state.convs.get(&conv) {
            for member in c.members.keys().filter(|m| **m != user) {
                state.push_user(*member, &frame, None, &mut out);
            }
        }
        drop(state);
        self.deliver(out);
        Ok(())
    }

    /// Close every socket opened with `token` (logout) with [`close::UNAUTHORIZED`].
    fn kill_token(state: &mut State, token: &TokenHash, out: &mut Outgoing) {
        for conns in state.conns.values() {
            for c in conns.iter().filter(|c| &c.token == token) {
                c.kill.fire(close::UNAUTHORIZED);
                out.dead.push(c.id);
            }
        }
    }

    /// The writer thread's commit hook: apply committed outcomes to memory, push to members,
    /// answer the origins. Runs in commit order on one thread, so frames go out in commit
    /// order even though they are written after the lock is released.
    pub fn on_commit(&self, batch: Vec<(Origin, Result<WriteOutcome, StoreError>)>) {
        let mut state = self.lock();
        let mut out = Outgoing {
            several: batch.len() > 1,
            ..Outgoing::default()
        };
        for (origin, result) in batch {
            let reply = match &result {
                Ok(outcome) => Ok(self.apply(&mut state, outcome, &origin, &mut out)),
                Err(e) => Err(e.to_client()),
            };
            match origin {
                Origin::Reply(tx) => {
                    let _ = tx.send(result);
                }
                Origin::Socket { conn, req } => {
                    let frame = answer(req, reply.map(|r| r.unwrap_or(Reply::Done)));
                    state.push_conn(conn, &frame, &mut out);
                }
            }
        }
        // Logged-out sockets leave the hub before anything is written.
        state.reap(&mut out);
        drop(state);
        self.deliver(out);
    }

    /// Apply one outcome; returns the reply for a socket origin.
    fn apply(
        &self,
        state: &mut State,
        outcome: &WriteOutcome,
        origin: &Origin,
        out: &mut Outgoing,
    ) -> Option<Reply> {
        let origin_conn = match origin {
            Origin::Socket { conn, .. } => Some(*conn),
            Origin::Reply(_) => None,
        };
        match outcome {
            WriteOutcome::Registered(row) => {
                state.users.insert(row.id, row.user.clone());
                if let Some(general) = state.rooms.get(limits::DEFAULT_ROOM).copied() {
                    state.add_member(general, row.id);
                    let frame = encode(&ServerFrame::Membership {
                        conv: general,
                        username: row.user.username.clone(),
                        joined: true,
                    });
                    state.push_members(general, &frame, None, out);
                }
                None
            }
            WriteOutcome::LoggedIn => None,
            WriteOutcome::LoggedOut { token_hash, .. } => {
                Self::kill_token(state, token_hash, out);
                None
            }
            WriteOutcome::RoomCreated { user, conv, name } => {
                state.convs.insert(
                    *conv,
                    ConvEntry {
                        kind: ConvKind::Room,
                        name: name.clone(),
                        members: HashMap::new(),
                        last_seq: 0,
                    },
                );
                state.rooms.insert(name_key(name), *conv);
                state.add_member(*conv, *user);
                let conversation = state.conversation(*conv, *user)?;
                let frame = encode(&ServerFrame::ConversationAdded {
                    conversation: conversation.clone(),
                });
                state.push_user(*user, &frame, origin_conn, out);
                Some(Reply::Joined { conversation })
            }
            WriteOutcome::Joined { user, conv, newly } => {
                if *newly {
                    state.add_member(*conv, *user);
                    let conversation = state.conversation(*conv, *user)?;
                    let frame = encode(&ServerFrame::ConversationAdded { conversation });
                    state.push_user(*user, &frame, origin_conn, out);
                    if let Some(name) = state.users.get(user).map(|u| u.username.clone()) {
                        let frame = encode(&ServerFrame::Membership {
                            conv: *conv,
                            username: name,
                            joined: true,
                        });
                        let others: Vec<UserId> = state
                            .convs
                            .get(conv)
                            .map(|c| c.members.keys().filter(|m| *m != user).copied().collect())
                            .unwrap_or_default();
                        for m in others {
                            state.push_user(m, &frame, None, out);
                        }
                    }
                }
                Some(Reply::Joined {
                    conversation: state.conversation(*conv, *user)?,
                })
            }
            WriteOutcome::Left { user, conv } => {
                if let Some(c) = state.convs.get_mut(conv) {
                    c.members.remove(user);
                }
                if let Some(s) = state.user_convs.get_mut(user) {
                    s.remove(conv);
                }
                let frame = encode(&ServerFrame::ConversationRemoved { conv: *conv });
                state.push_user(*user, &frame, origin_conn, out);
                if let Some(name) = state.users.get(user).map(|u| u.username.clone()) {
                    let frame = encode(&ServerFrame::Membership {
                        conv: *conv,
                        username: name,
                        joined: false,
                    });
                    state.push_members(*conv, &frame, None, out);
                }
                Some(Reply::Done)
            }
            WriteOutcome::Sent {
                message,
                fresh,
                new_dm,
            } => {
                if let Some((conv, a, b)) = new_dm {
                    state.convs.insert(
                        *conv,
                        ConvEntry {
                            kind: ConvKind::Dm,
                            name: String::new(),
                            members: [(*a, 0), (*b, 0)].into_iter().collect(),
                            last_seq: 0,
                        },
                    );
                    state.user_convs.entry(*a).or_default().insert(*conv);
                    state.user_convs.entry(*b).or_default().insert(*conv);
                    for user in [*a, *b] {
                        if let Some(conversation) = state.conversation(*conv, user) {
                            let frame = encode(&ServerFrame::ConversationAdded { conversation });
                            state.push_user(user, &frame, None, out);
                        }
                    }
                }
                if *fresh {
                    if let Some(c) = state.convs.get_mut(&message.conv) {
                        c.last_seq = c.last_seq.max(message.seq);
                    }
                    let frame = encode(&ServerFrame::Message {
                        message: message.clone(),
                    });
                    state.push_members(message.conv, &frame, origin_conn, out);
                }
                Some(Reply::Sent {
                    message: message.clone(),
                })
            }
            WriteOutcome::ReadMoved {
                user,
                conv,
                seq,
                moved,
            } => {
                if let Some(marker) = state
                    .convs
                    .get_mut(conv)
                    .and_then(|c| c.members.get_mut(user))
                {
                    *marker = (*marker).max(*seq);
                }
                if *moved {
                    let frame = encode(&ServerFrame::Read {
                        conv: *conv,
                        seq: *seq,
                    });
                    state.push_user(*user, &frame, origin_conn, out);
                }
                Some(Reply::Done)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `fired` resolves when another task fires, keeps the first code, and resolves at once
    /// once fired; it does not resolve before.
    #[tokio::test]
    async fn kill_wakes_its_waiter_and_keeps_the_first_code() {
        let kill = Arc::new(Kill::default());
        let early = tokio::time::timeout(Duration::from_millis(30), kill.fired()).await;
        assert!(early.is_err(), "fired before any fire");
        let waiter = tokio::spawn({
            let kill = kill.clone();
            async move { kill.fired().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        kill.fire(4000);
        kill.fire(1000);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter was woken")
            .unwrap();
        assert_eq!(kill.code(), Some(4000));
        tokio::time::timeout(Duration::from_millis(100), kill.fired())
            .await
            .expect("resolves at once after a fire");
    }
}
