//! The hub: this node's connections, presence and fan-out, and the node's picture of who is a
//! member of what.
//!
//! Membership, read markers and last seqs come from the store (the snapshot read at start) and
//! are kept current by the committed events the hub hears on the bus ([`Hub::start_fanout`]), so
//! memory is never ahead of the disk. The fan-out runs on a thread of its own: it applies each event to
//! memory and writes to the connections concerned, in the order the events were published,
//! which is commit order, which is what gives every member the same gapless order. The answer
//! to the request that caused an event (a socket's `ok`, an HTTP call waiting) goes out from
//! here too, after the change was applied, so a `sent` answer comes after every earlier
//! message push on that socket and an HTTP response is never ahead of this node's memory.
//!
//! Event streams (`GET /api/events`, [`super::service::events`]) listen here too
//! ([`Hub::listen`]): they get the frames a user's sockets get, from the same fan-out, but are
//! not sockets: no answers, no presence of their own. One that asks for presence watches as a
//! socket does: its user's DM partners and the users it names.
//!
//! Each message is encoded once as a [`WireFrame`]; every recipient gets the same bytes.
//! Recipients are collected under the lock and written to after it is released ([`Outgoing`]),
//! so the lock is never held across socket writes. Pushing never waits: a connection whose
//! bounded queue is full is closed with [`close::SLOW_CONSUMER`] (see [`super::outbound`]) and
//! dropped from the hub, so one slow reader never slows a room.
//!
//! Presence is per user (two devices, on one node or two, are one online user). A node
//! publishes on the bus when a user gets their first or loses their last connection there
//! ([`Event::Presence`]); every hub, this one included, counts the nodes each user is on and
//! announces the user when that makes them online or offline as a whole. (A node that dies
//! publishes nothing: expiring its users is the cluster bus's job, with leases.) A change goes
//! only to the connections that watch the user: those that named them in `watch_presence`
//! (found through a reverse index, [`State::watchers`]) and those of the user's DM partners,
//! who are always watched. So a user coming or going costs the number of their watchers, and a
//! hello the number of the user's DMs, never the number of users online: N distinct users
//! connecting cost N, not N². Changes go out in batches: they wait up to [`PRESENCE_WINDOW`]
//! and then each connection gets one frame naming the changes it watches, encoded once per
//! distinct set ([`Hub::run_presence`]). Event streams that asked for presence are watchers
//! like sockets (their watch set is named when they open, [`Hub::listen`]).

use std::collections::{HashMap, HashSet};

/// Maps and sets keyed by the server's own ids (users, conversations, connections, nodes) hash
/// with FxHash instead of SipHash: the fan-out looks one up per recipient, and these keys are
/// assigned by the server, never chosen by a client, so nobody can pick keys that collide.
/// Maps keyed by names (rooms, usernames) keep SipHash.
pub(crate) type IdMap<K, V> = rustc_hash::FxHashMap<K, V>;
pub(crate) type IdSet<K> = rustc_hash::FxHashSet<K>;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::names;
use crate::protocol::{
    close, limits, Attention, ConvId, ConvKind, ConvLevel, Conversation, Dnd, ErrorCode, Member,
    NotifyLevel, Reply, RoomInfo, Seq, ServerFrame, Unread, User, PROTOCOL_VERSION,
};

use super::auth::TokenHash;
use super::bus::{Bus, ConnId, Event, NodeId, Origin};
use super::clock::Clock;
use super::latency_trace::{self, Mark};
use super::outbound::{Outlet, WireFrame};
use super::store::{Snapshot, Storage, UserId, UserRow, WriteOutcome};

mod catch_up;

/// How long a presence change may wait to go out with others. Reconnects make presence the
/// busiest push after messages (each one is an offline and an online change for everyone), so
/// the window is as long as people won't notice: a fifth of a second.
pub const PRESENCE_WINDOW: Duration = Duration::from_millis(200);

/// The answer to a request, before it is encoded.
pub type Answer = Result<Reply, (ErrorCode, String)>;

/// Most batches (commits) the fan-out takes in one turn (their frames to one connection go
/// out in one write).
const FANOUT_BATCH: usize = 64;

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
    /// Users who got their first connection on this node (true) or lost their last (false):
    /// published on the bus once the lock is released.
    flips: Vec<(UserId, bool)>,
    /// A node asked who is on this one ([`Event::PresenceWanted`]).
    presence_wanted: bool,
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
    /// A private room: listed to, and known by, its members only.
    private: bool,
    /// The room's creator, who moderates it (as admins do); none for a DM.
    created_by: Option<UserId>,
    /// Members and their read markers.
    members: IdMap<UserId, Seq>,
    last_seq: Seq,
}

#[derive(Default)]
struct State {
    users: IdMap<UserId, User>,
    convs: IdMap<ConvId, ConvEntry>,
    rooms: HashMap<String, ConvId>,
    user_convs: IdMap<UserId, IdSet<ConvId>>,
    conns: IdMap<UserId, Vec<ConnHandle>>,
    /// Event streams (`GET /api/events`): they get what the user's sockets get, but they are
    /// not sockets: they never make the user online and never get answers.
    listeners: IdMap<UserId, Vec<ConnHandle>>,
    owner: IdMap<ConnId, UserId>,
    /// Users by the key of their username ([`names::key`]), for `watch_presence`.
    by_name: HashMap<String, UserId>,
    /// Each connection's `watch_presence` set, or an event stream's `watch` (DM partners are
    /// watched without being here).
    watches: IdMap<ConnId, Watch>,
    /// The event streams that carry presence: they hear their user's DM partners as the
    /// user's sockets do (and their watch set, in `watches`).
    presence_streams: IdSet<ConnId>,
    /// The reverse of `watches`: who watches each user, so a change reaches its watchers
    /// without walking every connection.
    watchers: IdMap<UserId, IdSet<ConnId>>,
    /// Presence changes not yet sent, oldest first: who, and whether now online.
    presence: Vec<(UserId, bool)>,
    /// The nodes that have a connection of each user, as heard on the bus (this one included).
    nodes_of: IdMap<UserId, IdSet<NodeId>>,
    /// This node.
    node: NodeId,
    shutting_down: bool,
    /// Attention: each user's notification levels other than `all`, by conversation.
    levels: IdMap<UserId, IdMap<ConvId, NotifyLevel>>,
    /// Attention: each user's do not disturb, while set (it may have ended since).
    dnd: IdMap<UserId, Dnd>,
    /// Ordering across nodes ([`catch_up`]): messages heard ahead of a gap, the seq each
    /// conversation must reach, and the gap fills running.
    catch_up: catch_up::Pending,
}

/// One connection's `watch_presence` set, with where its presence frames go.
struct Watch {
    out: Arc<dyn Outlet>,
    users: Vec<UserId>,
}

/// [`ServerFrame::Hello`] as it is written: the same JSON, borrowing the hub's state.
#[derive(serde::Serialize)]
struct HelloOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    protocol: u32,
    server_id: &'a str,
    user: &'a User,
    server_time: crate::protocol::Millis,
    heartbeat_ms: u64,
    conversations: &'a [Conversation],
    online: &'a [&'a str],
    unread: &'a [Unread],
    attention: &'a Attention,
}

/// Encode a frame once; the result is shared by every recipient.
pub fn encode(frame: &ServerFrame) -> WireFrame {
    WireFrame::json(frame)
}

/// Each changed user once, by their latest state, sorted by username: a user who dropped and
/// came back within the window is simply online.
fn net_presence(state: &State, changes: Vec<(UserId, bool)>) -> Vec<(UserId, String, bool)> {
    let mut latest: HashMap<UserId, bool> = HashMap::new();
    for (user, online) in changes {
        latest.insert(user, online);
    }
    let mut net: Vec<(UserId, String, bool)> = latest
        .into_iter()
        .filter_map(|(user, online)| {
            let name = state.users.get(&user)?.username.clone();
            Some((user, name, online))
        })
        .collect();
    net.sort_by(|a, b| a.1.cmp(&b.1));
    net
}

/// The presence frame for `changes`; None when there are none.
fn presence_frame<'a>(
    changes: impl IntoIterator<Item = &'a (UserId, String, bool)>,
) -> Option<WireFrame> {
    let (mut online, mut offline) = (Vec::new(), Vec::new());
    for (_, name, is_online) in changes {
        if *is_online {
            &mut online
        } else {
            &mut offline
        }
        .push(name.clone());
    }
    if online.is_empty() && offline.is_empty() {
        return None;
    }
    Some(encode(&ServerFrame::Presence { online, offline }))
}

/// The answer frame for request `req`.
pub fn answer(req: u64, result: Answer) -> WireFrame {
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
            private: c.private,
            moderator: self.moderates(c, user),
        })
    }

    /// Whether `user` moderates room `c`: its creator, or an admin (the same rule as
    /// [`super::store::rules::MODERATES`] in the store, which checks each moderation write).
    fn moderates(&self, c: &ConvEntry, user: UserId) -> bool {
        c.kind == ConvKind::Room
            && (c.created_by == Some(user) || self.users.get(&user).is_some_and(|u| u.admin))
    }

    /// Connected here or on another node. This node's own connections are known at once;
    /// the others' as heard on the bus.
    fn is_online(&self, user: UserId) -> bool {
        self.conns.get(&user).is_some_and(|v| !v.is_empty())
            || self
                .nodes_of
                .get(&user)
                .is_some_and(|nodes| nodes.iter().any(|n| *n != self.node))
    }

    /// Learn or update a user's profile (and the name `watch_presence` finds them by).
    fn set_user(&mut self, id: UserId, user: User) {
        if let Some(old) = self.users.get(&id) {
            if old.username != user.username {
                self.by_name.remove(&names::key(&old.username));
            }
        }
        self.by_name.insert(names::key(&user.username), id);
        self.users.insert(id, user);
    }

    /// The users `user` shares a direct message with: always watched by each other.
    fn dm_peers(&self, user: UserId) -> impl Iterator<Item = UserId> + '_ {
        self.user_convs
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|conv| self.convs.get(conv))
            .filter(|c| c.kind == ConvKind::Dm)
            .flat_map(|c| c.members.keys().copied())
            .filter(move |peer| *peer != user)
    }

    /// The users `names` name (any spelling, [`names::key`]), sorted and each once; the first
    /// name no user has is `not_found`, naming it.
    fn resolve(&self, names: &[String]) -> Result<Vec<UserId>, (ErrorCode, String)> {
        let mut users = names
            .iter()
            .map(|name| {
                self.by_name
                    .get(&names::key(name))
                    .copied()
                    .ok_or_else(|| (ErrorCode::NotFound, format!("no such user: {name}")))
            })
            .collect::<Result<Vec<UserId>, _>>()?;
        users.sort_unstable();
        users.dedup();
        Ok(users)
    }

    /// The connections of `user` that hear presence: sockets, and event streams that asked.
    fn presence_conns(&self, user: UserId) -> impl Iterator<Item = &ConnHandle> + '_ {
        let streams = self
            .listeners
            .get(&user)
            .into_iter()
            .flatten()
            .filter(|c| self.presence_streams.contains(&c.id));
        self.conns.get(&user).into_iter().flatten().chain(streams)
    }

    /// The usernames of those of `users` online now, sorted and each once.
    fn online_names(&self, users: impl IntoIterator<Item = UserId>) -> Vec<String> {
        let mut names: Vec<String> = users
            .into_iter()
            .filter(|u| self.is_online(*u))
            .filter_map(|u| self.users.get(&u).map(|p| p.username.clone()))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Make `users` the watch set of connection `conn` (writing to `out`), replacing its last.
    fn watch(&mut self, conn: ConnId, out: Arc<dyn Outlet>, users: Vec<UserId>) {
        self.unwatch(conn);
        if users.is_empty() {
            return;
        }
        for user in &users {
            self.watchers.entry(*user).or_default().insert(conn);
        }
        self.watches.insert(conn, Watch { out, users });
    }

    /// Forget connection `conn`'s watch set.
    fn unwatch(&mut self, conn: ConnId) {
        let Some(watch) = self.watches.remove(&conn) else {
            return;
        };
        for user in watch.users {
            if let Some(set) = self.watchers.get_mut(&user) {
                set.remove(&conn);
                if set.is_empty() {
                    self.watchers.remove(&user);
                }
            }
        }
    }

    /// Who hears each of `changes` (sorted, each user once): per connection, where it writes
    /// and the indices of the changes it watches, ascending. Connections that watch a user
    /// (`watch_presence`, a stream's `watch`) and those of the user's DM partners (sockets,
    /// and streams that carry presence); never the user's own.
    fn presence_recipients(
        &self,
        changes: &[(UserId, String, bool)],
    ) -> HashMap<ConnId, (Arc<dyn Outlet>, Vec<usize>)> {
        let mut to: HashMap<ConnId, (Arc<dyn Outlet>, Vec<usize>)> = HashMap::new();
        let mut add = |conn: ConnId, out: &Arc<dyn Outlet>, i: usize| {
            let (_, list) = to.entry(conn).or_insert_with(|| (out.clone(), Vec::new()));
            // A connection may both watch a user and share a DM with them: once.
            if list.last() != Some(&i) {
                list.push(i);
            }
        };
        for (i, (user, _, _)) in changes.iter().enumerate() {
            for conn in self.watchers.get(user).into_iter().flatten() {
                if let Some(watch) = self.watches.get(conn) {
                    if self.owner.get(conn) != Some(user) {
                        add(*conn, &watch.out, i);
                    }
                }
            }
            for peer in self.dm_peers(*user) {
                for c in self.presence_conns(peer) {
                    add(c.id, &c.out, i);
                }
            }
        }
        to
    }

    /// Apply a node's presence change heard on the bus: announce the user when that makes them
    /// online or offline as a whole.
    fn node_presence(&mut self, node: NodeId, user: UserId, online: bool, out: &mut Outgoing) {
        let before = self.nodes_of.contains_key(&user);
        if online {
            self.nodes_of.entry(user).or_default().insert(node);
        } else if let Some(nodes) = self.nodes_of.get_mut(&user) {
            nodes.remove(&node);
            if nodes.is_empty() {
                self.nodes_of.remove(&user);
            }
        }
        let after = self.nodes_of.contains_key(&user);
        if before == after {
            return;
        }
        self.announce(user, after, out);
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
        if let Some(listeners) = self.listeners.get(&user) {
            out.push_all(listeners, frame, except);
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
        self.presence.push((user, online));
        out.presence = true;
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
        out.sends.reserve(c.members.len().min(self.conns.len()));
        if c.members.len() <= self.conns.len() {
            for user in c.members.keys() {
                self.push_user(*user, frame, except, out);
            }
        } else {
            for (user, conns) in self.conns.iter().chain(&self.listeners) {
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
        self.unwatch(conn);
        self.presence_streams.remove(&conn);
        // A stream going away changes nobody's presence.
        if let Some(list) = self.listeners.get_mut(&user) {
            if let Some(i) = list.iter().position(|c| c.id == conn) {
                list.swap_remove(i);
                if list.is_empty() {
                    self.listeners.remove(&user);
                }
                return;
            }
        }
        let now_offline = match self.conns.get_mut(&user) {
            Some(list) => {
                list.retain(|c| c.id != conn);
                list.is_empty()
            }
            None => false,
        };
        if now_offline {
            // Watchers hear of it when the bus brings the change back.
            self.conns.remove(&user);
            out.flips.push((user, false));
        }
    }

    /// `a` and `b` now share a DM, so they watch each other: each hears at once that the other
    /// is online (offline is what a client assumes of a user it was told nothing about).
    fn dm_presence(&self, a: UserId, b: UserId, out: &mut Outgoing) {
        if a == b {
            return;
        }
        for (user, peer) in [(a, b), (b, a)] {
            if let (true, Some(p)) = (self.is_online(peer), self.users.get(&peer)) {
                let frame = encode(&ServerFrame::Presence {
                    online: vec![p.username.clone()],
                    offline: Vec::new(),
                });
                for c in self.presence_conns(user) {
                    out.push(c, &frame);
                }
            }
        }
    }

    /// Forward a typing indicator to the other members' connections.
    fn typing(&self, user: UserId, conv: ConvId, out: &mut Outgoing) {
        let (Some(name), Some(c)) = (self.users.get(&user), self.convs.get(&conv)) else {
            return;
        };
        let frame = encode(&ServerFrame::Typing {
            conv,
            username: name.username.clone(),
        });
        for member in c.members.keys().filter(|m| **m != user) {
            self.push_user(*member, &frame, None, out);
        }
    }

    /// The user's attention settings for their hello: levels of the conversations they are
    /// in (a level is kept across leaving and rejoining), and do not disturb unless it ended.
    fn attention(&self, user: UserId, now: crate::protocol::Millis) -> Attention {
        let mut levels: Vec<ConvLevel> = self
            .levels
            .get(&user)
            .into_iter()
            .flatten()
            .filter(|(conv, _)| self.user_convs.get(&user).is_some_and(|s| s.contains(conv)))
            .map(|(conv, level)| ConvLevel {
                conv: *conv,
                level: *level,
            })
            .collect();
        levels.sort_unstable_by_key(|l| l.conv);
        Attention {
            dnd: self.dnd.get(&user).copied().filter(|d| d.is_on(now)),
            levels,
        }
    }

    fn add_member(&mut self, conv: ConvId, user: UserId) {
        if let Some(c) = self.convs.get_mut(&conv) {
            c.members.entry(user).or_insert(0);
        }
        self.user_convs.entry(user).or_default().insert(conv);
    }

    /// `user` newly joined `conv` (by joining, or added by a member): they get
    /// `conversation_added` (but on `origin_conn`, which gets its answer), the others
    /// `membership`.
    fn joined(
        &mut self,
        user: UserId,
        conv: ConvId,
        origin_conn: Option<ConnId>,
        out: &mut Outgoing,
    ) {
        self.add_member(conv, user);
        if let Some(conversation) = self.conversation(conv, user) {
            let frame = encode(&ServerFrame::ConversationAdded { conversation });
            self.push_user(user, &frame, origin_conn, out);
        }
        if let Some(name) = self.users.get(&user).map(|u| u.username.clone()) {
            let frame = encode(&ServerFrame::Membership {
                conv,
                username: name,
                joined: true,
            });
            let others: Vec<UserId> = self
                .convs
                .get(&conv)
                .map(|c| c.members.keys().filter(|m| **m != user).copied().collect())
                .unwrap_or_default();
            for m in others {
                self.push_user(m, &frame, None, out);
            }
        }
    }
}

/// Shared in-memory chat state. See the module docs.
pub struct Hub {
    state: Mutex<State>,
    /// Wakes [`Hub::run_presence`] when a presence change is queued.
    presence_queued: Notify,
    /// This node: connection ids and origins carry it.
    node: NodeId,
    /// Where this node's presence changes go (weak: the bus feeds this hub's fan-out, which
    /// must end when the server drops the bus).
    bus: Weak<dyn Bus>,
    next_conn: AtomicU64,
    heartbeat_ms: u64,
    /// The server's stable id from the store, told in every hello.
    server_id: String,
    clock: Clock,
    /// HTTP calls waiting until the change they committed was applied here, by ticket.
    calls: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    next_ticket: AtomicU64,
    /// Where this node reads what it missed ([`catch_up`]), once [`Hub::attach_store`] ran.
    reader: std::sync::OnceLock<catch_up::Reader>,
}

/// An event stream registered at the hub ([`Hub::listen`]).
pub struct Listening {
    pub handle: ConnHandle,
    /// The user's conversations as of the instant the stream started listening.
    pub conversations: Vec<Conversation>,
    /// With presence: of the user, their DM partners and the watched, those online now.
    pub online: Option<Vec<String>>,
}

/// A call's place in line for [`Hub::applied`]: the origin to publish its write with, and
/// the wait. Dropping it forgets the call.
pub struct Waiter<'a> {
    hub: &'a Hub,
    ticket: u64,
    applied: oneshot::Receiver<()>,
}

impl Waiter<'_> {
    /// The origin to publish the call's write with.
    pub fn origin(&self) -> Origin {
        Origin::Call {
            node: self.hub.node,
            ticket: self.ticket,
        }
    }

    /// Resolves once this node applied the change published with [`Waiter::origin`].
    pub async fn applied(mut self) {
        let _ = (&mut self.applied).await;
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.hub
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.ticket);
    }
}

impl Hub {
    /// Build the hub of node `node` from the store's snapshot.
    pub fn new(
        snapshot: Snapshot,
        node: NodeId,
        bus: Weak<dyn Bus>,
        heartbeat_ms: u64,
        clock: Clock,
    ) -> Hub {
        let server_id = snapshot.server_id;
        let mut state = State {
            node,
            ..State::default()
        };
        for row in snapshot.users {
            state.set_user(row.id, row.user);
        }
        for (user, conv, level) in snapshot.levels {
            state.levels.entry(user).or_default().insert(conv, level);
        }
        state.dnd.extend(snapshot.dnd);
        for c in snapshot.convs {
            if c.kind == ConvKind::Room {
                state.rooms.insert(names::key(&c.name), c.id);
            }
            for (user, _) in &c.members {
                state.user_convs.entry(*user).or_default().insert(c.id);
            }
            state.convs.insert(
                c.id,
                ConvEntry {
                    kind: c.kind,
                    name: c.name,
                    private: c.private,
                    created_by: c.created_by,
                    members: c.members.into_iter().collect(),
                    last_seq: c.last_seq,
                },
            );
        }
        Hub {
            state: Mutex::new(state),
            presence_queued: Notify::new(),
            node,
            bus,
            next_conn: AtomicU64::new(1),
            heartbeat_ms,
            server_id,
            clock,
            calls: Mutex::new(HashMap::new()),
            next_ticket: AtomicU64::new(1),
            reader: std::sync::OnceLock::new(),
        }
    }

    /// The server's stable id (the store's, so every node of a cluster has the same).
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Let this hub read what it missed from `store` (gap fills and resyncs, on the current
    /// Tokio runtime). Without it a gap is waited out until the missing event arrives.
    pub fn attach_store(self: &Arc<Hub>, store: &Arc<dyn Storage>, reorder_wait: Duration) {
        let _ = self.reader.set(catch_up::Reader {
            hub: Arc::downgrade(self),
            store: Arc::downgrade(store),
            runtime: tokio::runtime::Handle::current(),
            reorder_wait,
        });
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the whole server down with a poisoned lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write what a state change sends; call with the lock released. A connection that cannot
    /// take its frame (closed, or a slow consumer now being closed) is dropped from the hub,
    /// which may announce its user offline: hence the loop.
    fn deliver(&self, mut out: Outgoing) {
        self.publish_flips(&mut out);
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
            self.publish_flips(&mut out);
            if out.presence {
                self.presence_queued.notify_one();
            }
        }
    }

    /// Tell every node (this one too, through the bus) which users got their first or lost
    /// their last connection here.
    fn publish_flips(&self, out: &mut Outgoing) {
        if out.flips.is_empty() {
            return;
        }
        let Some(bus) = self.bus.upgrade() else {
            return;
        };
        for (user, online) in out.flips.drain(..) {
            bus.publish(Event::Presence {
                node: self.node,
                user,
                online,
            });
        }
    }

    /// Send queued presence changes in batches until the hub shuts down: after a change, wait
    /// [`PRESENCE_WINDOW`] for more, then write each watching connection the changes it
    /// watches, in one frame encoded once per distinct set of changes.
    pub async fn run_presence(self: Arc<Hub>) {
        loop {
            self.presence_queued.notified().await;
            tokio::time::sleep(PRESENCE_WINDOW).await;
            let mut state = self.lock();
            if state.shutting_down {
                return;
            }
            let pending = std::mem::take(&mut state.presence);
            let changes = net_presence(&state, pending);
            let watching = state.presence_recipients(&changes);
            drop(state);
            let mut out = Outgoing::default();
            let mut encoded: HashMap<Vec<usize>, Option<WireFrame>> = HashMap::new();
            for (conn, (outlet, which)) in watching {
                let frame = encoded
                    .entry(which)
                    .or_insert_with_key(|which| presence_frame(which.iter().map(|i| &changes[*i])))
                    .as_ref();
                if let Some(frame) = frame {
                    if outlet.push(std::slice::from_ref(frame)).is_err() {
                        out.dead.push(conn);
                    }
                }
            }
            // Drops the connections that could not take the batch (and announces them).
            self.deliver(out);
        }
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.node
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
        let handle = self.handle(user, token, out, kill);
        let mut convs: Vec<ConvId> = state
            .user_convs
            .get(&user)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        convs.sort_unstable();
        let conversations: Vec<Conversation> = convs
            .iter()
            .filter_map(|c| state.conversation(*c, user))
            .collect();
        let here_already = state.conns.get(&user).is_some_and(|v| !v.is_empty());
        // The user is online in their own hello at once (their watchers hear of it when the
        // bus brings it back); of the others, only DM partners.
        let mut online = state.online_names(state.dm_peers(user));
        if let Err(at) = online.binary_search(&profile.username) {
            online.insert(at, profile.username.clone());
        }
        let online: Vec<&str> = online.iter().map(String::as_str).collect();
        let server_time = self.clock.now_ms();
        let attention = state.attention(user, server_time);
        let hello = WireFrame::json(&HelloOut {
            kind: "hello",
            protocol: PROTOCOL_VERSION,
            server_id: &self.server_id,
            user: &profile,
            server_time,
            heartbeat_ms: self.heartbeat_ms,
            conversations: &conversations,
            online: &online,
            unread: &unread,
            attention: &attention,
        });
        // Nothing is queued yet, so the hello always fits; a socket that already failed is
        // found by its own task.
        let _ = handle.out.push(std::slice::from_ref(&hello));
        let mut out = Outgoing::default();
        if !here_already {
            out.flips.push((user, true));
        }
        state.conns.entry(user).or_default().push(handle.clone());
        state.owner.insert(handle.id, user);
        drop(state);
        self.deliver(out);
        Some(handle)
    }

    /// A new connection's handle, with the next id of this node.
    fn handle(
        &self,
        user: UserId,
        token: TokenHash,
        out: Arc<dyn Outlet>,
        kill: Arc<Kill>,
    ) -> ConnHandle {
        ConnHandle {
            id: ConnId {
                node: self.node,
                local: self.next_conn.fetch_add(1, Ordering::Relaxed),
            },
            user,
            token,
            out,
            kill,
        }
    }

    /// Register an event stream of `user` (opened with `token`) that gets, through `out`, every
    /// frame the user's sockets get from now on, but no answers, and does not make the user
    /// online. With `watch` (a stream that carries presence) it hears presence as a socket
    /// does: of the user's DM partners and of the users `watch` names (any spelling; a name no
    /// user has is `not_found`). Returns its handle with the user's conversations (their
    /// `last_seq` as of this instant: every later message reaches `out`) and, with `watch`,
    /// of the user, their DM partners and the watched, those online now, sorted. `busy` when
    /// the server is shutting down, `not_found` when the user is unknown.
    pub fn listen(
        &self,
        user: UserId,
        token: TokenHash,
        out: Arc<dyn Outlet>,
        kill: Arc<Kill>,
        watch: Option<&[String]>,
    ) -> Result<Listening, (ErrorCode, String)> {
        let mut state = self.lock();
        if state.shutting_down {
            return Err((ErrorCode::Busy, "the server is shutting down".into()));
        }
        if !state.users.contains_key(&user) {
            return Err((ErrorCode::NotFound, "no such user".into()));
        }
        let watched = watch.map(|names| state.resolve(names)).transpose()?;
        let handle = self.handle(user, token, out, kill);
        let mut conversations: Vec<Conversation> = state
            .user_convs
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|c| state.conversation(*c, user))
            .collect();
        conversations.sort_unstable_by_key(|c| c.id);
        let online = watched.map(|watched| {
            let known = state.dm_peers(user).chain([user]);
            let online = state.online_names(known.chain(watched.iter().copied()));
            state.presence_streams.insert(handle.id);
            state.watch(handle.id, handle.out.clone(), watched);
            online
        });
        state
            .listeners
            .entry(user)
            .or_default()
            .push(handle.clone());
        state.owner.insert(handle.id, user);
        Ok(Listening {
            handle,
            conversations,
            online,
        })
    }

    /// Make `names` the presence watch set of connection `conn` of `user`, replacing its last,
    /// and answer request `req` on it with those of them online now, sorted (returned too).
    /// Every name must be a user's (any spelling, [`names::key`]); otherwise the answer is
    /// `not_found` naming it, and the last set stays. The answer is written under the lock, so
    /// every presence batch after it reaches the socket after it too.
    pub fn watch_presence(&self, user: UserId, conn: ConnId, req: u64, names: &[String]) -> Answer {
        let mut state = self.lock();
        let resolved = state.resolve(names);
        let result = resolved
            .as_ref()
            .map_err(Clone::clone)
            .map(|users| Reply::Watching {
                online: state.online_names(users.iter().copied()),
            });
        let Some(handle) = state
            .conns
            .get(&user)
            .and_then(|conns| conns.iter().find(|c| c.id == conn))
            .cloned()
        else {
            // The socket is gone: nobody to answer, nothing to watch.
            return result;
        };
        if let Ok(users) = resolved {
            state.watch(conn, handle.out.clone(), users);
        }
        let mut out = Outgoing::default();
        if handle
            .out
            .push(std::slice::from_ref(&answer(req, result.clone())))
            .is_err()
        {
            out.dead.push(conn);
            state.reap(&mut out);
        }
        drop(state);
        self.deliver(out);
        result
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
        for conns in state.conns.values().chain(state.listeners.values()) {
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
            // A private room is not there for those outside it.
            Some(c) if c.kind == ConvKind::Room && !c.private => {
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
            .filter(|(_, c)| {
                c.kind == ConvKind::Room && (!c.private || c.members.contains_key(&user))
            })
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

    /// The users this node knows as admins.
    pub fn admins(&self) -> HashSet<UserId> {
        let state = self.lock();
        let admins = state.users.iter().filter(|(_, u)| u.admin && !u.deleted);
        admins.map(|(id, _)| *id).collect()
    }

    /// Follow admin roles changed outside the server (`natter-server admin` writes the store
    /// from another process; [`super::service::admin::follow_admins`] finds the changes): each
    /// of `changed` is now an admin (true) or not. A user this makes an admin or no longer one
    /// here is told as for a role an event brought ([`State::push_role`]). A user already known
    /// in that role (an event said so, or a resync read it from the store and pushed it) is
    /// left alone.
    pub fn set_admin_roles(&self, changed: &[(UserId, bool)]) {
        let mut state = self.lock();
        let mut out = Outgoing::default();
        for &(id, admin) in changed {
            let Some(mut user) = state.users.get(&id).cloned() else {
                continue;
            };
            if user.admin == admin || user.deleted {
                continue;
            }
            user.admin = admin;
            // Newer than the snapshot a resync may be reading: it must not turn the role back.
            state.catch_up.note_user(id);
            state.set_user(id, user.clone());
            let row = UserRow { id, user };
            state.push_role(&row, &mut out);
        }
        drop(state);
        self.deliver(out);
    }

    /// Every registered user, with presence.
    pub fn users(&self) -> Vec<Member> {
        let state = self.lock();
        let mut users: Vec<Member> = state
            .users
            .iter()
            .filter(|(_, u)| !u.deleted)
            .map(|(id, u)| Member {
                user: u.clone(),
                online: state.is_online(*id),
            })
            .collect();
        users.sort_by(|a, b| a.user.username.cmp(&b.user.username));
        users
    }

    /// Close every socket opened with `token` (logout) with [`close::UNAUTHORIZED`].
    fn kill_token(state: &mut State, token: &TokenHash, code: u16, out: &mut Outgoing) {
        for conns in state.conns.values().chain(state.listeners.values()) {
            for c in conns.iter().filter(|c| &c.token == token) {
                c.kill.fire(code);
                out.dead.push(c.id);
            }
        }
    }

    /// Line up an HTTP call to wait until its change was applied here.
    pub fn waiter(&self) -> Waiter<'_> {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let (tx, applied) = oneshot::channel();
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ticket, tx);
        Waiter {
            hub: self,
            ticket,
            applied,
        }
    }

    /// The fan-out: apply each event heard on the bus to memory and write what it sends to
    /// this node's connections, in order, until the bus closes. Runs on a thread of its own
    /// ("natter-fanout"): not the store's writer (which commits meanwhile), and not a Tokio
    /// worker, where it would queue behind the sockets' tasks (measured: the realistic
    /// scenario's p99 went from 13 to 20 ms) and spend their cooperative budget on writes.
    pub fn start_fanout(
        self: Arc<Hub>,
        mut events: mpsc::UnboundedReceiver<Vec<Event>>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("natter-fanout".into())
            .spawn(move || {
                let mut batch = Vec::new();
                while let Some(first) = events.blocking_recv() {
                    batch.extend(first);
                    // Whatever else is there goes out in the same turn (one write per socket).
                    for _ in 1..FANOUT_BATCH {
                        match events.try_recv() {
                            Ok(more) => batch.extend(more),
                            Err(_) => break,
                        }
                    }
                    // A bug in applying one batch must not end the only fan-out (every later
                    // message would go nowhere); what it sent is sent.
                    let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.on_events(batch.drain(..))
                    }));
                    if applied.is_err() {
                        tracing::error!("applying committed events panicked; continuing");
                        batch.clear();
                    }
                }
                tracing::debug!("fan-out finished");
            })
    }

    /// Apply events to memory, push to members, answer the origins on this node.
    fn on_events(&self, events: impl ExactSizeIterator<Item = Event>) {
        let mut state = self.lock();
        let mut out = Outgoing {
            several: events.len() > 1,
            ..Outgoing::default()
        };
        let mut calls = Vec::new();
        let mut events: std::collections::VecDeque<Event> = events.collect();
        while let Some(event) = events.pop_front() {
            match event {
                Event::Committed { outcome, origin } => {
                    if let Some(Origin::Socket { conn, req }) = origin {
                        latency_trace::record(Mark::Picked, conn.local, req);
                    }
                    // A message ahead of a gap waits for it (several nodes); one already
                    // delivered is not pushed again.
                    let Some(outcome) = self.in_order(&mut state, outcome, origin) else {
                        continue;
                    };
                    let here = origin.filter(|o| o.node() == self.node);
                    let origin_conn = match here {
                        Some(Origin::Socket { conn, .. }) => Some(conn),
                        _ => None,
                    };
                    let reply = self.apply(&mut state, &outcome, origin_conn, &mut out);
                    if let WriteOutcome::Sent { message, .. } = &outcome {
                        if let Some(next) = state.next_held(message.conv) {
                            events.push_front(next);
                        }
                    }
                    match here {
                        Some(Origin::Socket { conn, req }) => {
                            let frame = answer(req, Ok(reply.unwrap_or(Reply::Done)));
                            state.push_conn(conn, &frame, &mut out);
                        }
                        Some(Origin::Call { ticket, .. }) => calls.push(ticket),
                        None => {}
                    }
                }
                Event::Typing { user, conv } => state.typing(user, conv, &mut out),
                Event::Presence { node, user, online } => {
                    state.node_presence(node, user, online, &mut out)
                }
                Event::Refused {
                    conn,
                    req,
                    code,
                    message,
                } => {
                    if conn.node == self.node {
                        state.push_conn(conn, &answer(req, Err((code, message))), &mut out);
                    }
                }
                Event::NodePresence { node, users } => {
                    if node != self.node {
                        state.set_node_presence(node, &users, &mut out);
                    }
                }
                Event::NodeGone { node } => state.set_node_presence(node, &[], &mut out),
                Event::PresenceWanted { of } => {
                    if of.is_none_or(|node| node == self.node) {
                        out.presence_wanted = true;
                    }
                }
                // Followed by `service::follow_nodes`, not the hub.
                Event::Limits { .. } | Event::Ticket { .. } => {}
                Event::Resync => self.resync(&mut state),
            }
        }
        // Logged-out sockets leave the hub before anything is written.
        state.reap(&mut out);
        drop(state);
        let presence_wanted = out.presence_wanted;
        latency_trace::record(Mark::SendsBegin, 0, 0);
        self.deliver(out);
        latency_trace::record(Mark::SendsEnd, 0, 0);
        if presence_wanted {
            self.publish_node_presence();
        }
        if !calls.is_empty() {
            let mut waiting = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            for ticket in calls {
                if let Some(tx) = waiting.remove(&ticket) {
                    let _ = tx.send(());
                }
            }
        }
    }

    /// Apply one outcome; returns the reply for a socket origin.
    fn apply(
        &self,
        state: &mut State,
        outcome: &WriteOutcome,
        origin_conn: Option<ConnId>,
        out: &mut Outgoing,
    ) -> Option<Reply> {
        state.catch_up.note(outcome, &state.rooms);
        match outcome {
            WriteOutcome::Registered(row) => {
                state.set_user(row.id, row.user.clone());
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
            // Nobody else hears of these.
            WriteOutcome::LoggedIn
            | WriteOutcome::RegisteredPending
            | WriteOutcome::InviteCreated { .. }
            | WriteOutcome::InviteRevoked
            | WriteOutcome::AccountRejected => None,
            WriteOutcome::LoggedOut { token_hash, .. } => {
                Self::kill_token(state, token_hash, close::UNAUTHORIZED, out);
                None
            }
            WriteOutcome::RoomCreated {
                user,
                conv,
                name,
                private,
            } => {
                state.convs.insert(
                    *conv,
                    ConvEntry {
                        kind: ConvKind::Room,
                        name: name.clone(),
                        private: *private,
                        created_by: Some(*user),
                        members: IdMap::default(),
                        last_seq: 0,
                    },
                );
                state.rooms.insert(names::key(name), *conv);
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
                    state.joined(*user, *conv, origin_conn, out);
                }
                Some(Reply::Joined {
                    conversation: state.conversation(*conv, *user)?,
                })
            }
            WriteOutcome::Added {
                user, conv, newly, ..
            } => {
                if *newly {
                    state.joined(*user, *conv, origin_conn, out);
                }
                Some(Reply::Done)
            }
            WriteOutcome::Removed {
                was_member: false, ..
            } => Some(Reply::Done),
            WriteOutcome::Left { user, conv }
            | WriteOutcome::Removed {
                user,
                conv,
                was_member: true,
            } => {
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
                if let Some((conv, a, b)) = new_dm
                    .as_ref()
                    .filter(|(c, _, _)| !state.convs.contains_key(c))
                {
                    state.convs.insert(
                        *conv,
                        ConvEntry {
                            kind: ConvKind::Dm,
                            name: String::new(),
                            private: false,
                            created_by: None,
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
                    state.dm_presence(*a, *b, out);
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
            // ---- your account ----
            WriteOutcome::UserUpdated(row) => {
                state.set_user(row.id, row.user.clone());
                state.push_profile(row, out);
                None
            }
            WriteOutcome::SessionsRevoked { token_hashes } => {
                for token in token_hashes {
                    Self::kill_token(state, token, close::UNAUTHORIZED, out);
                }
                None
            }
            WriteOutcome::BanSet { token_hashes } => {
                for token in token_hashes {
                    Self::kill_token(state, token, close::BANNED, out);
                }
                None
            }
            WriteOutcome::AccountDeleted {
                row,
                left,
                token_hashes,
            } => {
                // Everyone who shared a conversation hears of it before the rooms are left.
                state.set_user(row.id, row.user.clone());
                state.push_profile(row, out);
                for conv in left {
                    if let Some(c) = state.convs.get_mut(conv) {
                        c.members.remove(&row.id);
                    }
                    if let Some(s) = state.user_convs.get_mut(&row.id) {
                        s.remove(conv);
                    }
                    let frame = encode(&ServerFrame::Membership {
                        conv: *conv,
                        username: row.user.username.clone(),
                        joined: false,
                    });
                    state.push_members(*conv, &frame, None, out);
                }
                for token in token_hashes {
                    Self::kill_token(state, token, close::UNAUTHORIZED, out);
                }
                None
            }
            // Attention: memory follows the store; the user's other connections hear of it.
            WriteOutcome::LevelSet { user, conv, level } => {
                let levels = state.levels.entry(*user).or_default();
                match level {
                    NotifyLevel::All => levels.remove(conv),
                    other => levels.insert(*conv, *other),
                };
                let frame = encode(&ServerFrame::Level {
                    conv: *conv,
                    level: *level,
                });
                state.push_user(*user, &frame, origin_conn, out);
                Some(Reply::Done)
            }
            WriteOutcome::DndSet { user, dnd } => {
                match dnd {
                    Some(d) => state.dnd.insert(*user, *d),
                    None => state.dnd.remove(user),
                };
                let frame = encode(&ServerFrame::Dnd { dnd: *dnd });
                state.push_user(*user, &frame, origin_conn, out);
                Some(Reply::Done)
            }
            // An upload is the uploader's alone until a message carries it.
            WriteOutcome::FileAdded { .. } | WriteOutcome::Uploads { .. } => None,
        }
    }
}

impl State {
    /// Tell of `row`'s admin role, which turned: their profile as for a profile edit
    /// ([`State::push_profile`]), and their own connections the rooms whose `moderator` flag
    /// it turned (`conversations_updated`: every room they are in but did not create).
    fn push_role(&self, row: &UserRow, out: &mut Outgoing) {
        self.push_profile(row, out);
        let id = row.id;
        let mut conversations: Vec<Conversation> = self
            .user_convs
            .get(&id)
            .into_iter()
            .flatten()
            .filter(|conv| {
                self.convs
                    .get(conv)
                    .is_some_and(|c| c.kind == ConvKind::Room && c.created_by != Some(id))
            })
            .filter_map(|conv| self.conversation(*conv, id))
            .collect();
        if conversations.is_empty() {
            return;
        }
        conversations.sort_unstable_by_key(|c| c.id);
        let frame = encode(&ServerFrame::ConversationsUpdated { conversations });
        self.push_user(id, &frame, None, out);
    }

    /// Push a user's public profile (`user_updated`) to everyone who shares a conversation with
    /// them, and to their own connections.
    fn push_profile(&self, row: &UserRow, out: &mut Outgoing) {
        let frame = encode(&ServerFrame::UserUpdated {
            user: row.user.clone(),
        });
        let mut audience: HashSet<UserId> = HashSet::from([row.id]);
        for conv in self.user_convs.get(&row.id).into_iter().flatten() {
            if let Some(c) = self.convs.get(conv) {
                audience.extend(c.members.keys().copied());
            }
        }
        for user in audience {
            self.push_user(user, &frame, None, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Keeps every frame pushed to it.
    #[derive(Default)]
    pub(super) struct Capture(Mutex<Vec<WireFrame>>);

    impl Outlet for Capture {
        fn push(&self, frames: &[WireFrame]) -> Result<(), super::super::outbound::PushError> {
            self.0.lock().unwrap().extend_from_slice(frames);
            Ok(())
        }
    }

    /// A hub of node `node` on `bus`, its fan-out running, with these users all in general
    /// (ids from 1 in the order named) and a DM between each pair of `dms`.
    fn hub_on(
        names: &[&str],
        dms: &[(UserId, UserId)],
        node: NodeId,
        bus: &Arc<dyn Bus>,
    ) -> Arc<Hub> {
        let users = names
            .iter()
            .enumerate()
            .map(|(i, n)| super::super::store::UserRow {
                id: i as UserId + 1,
                user: User {
                    username: n.to_string(),
                    display_name: n.to_uppercase(),
                    avatar: "🙂".into(),
                    deleted: false,
                    avatar_image: None,
                    admin: false,
                },
            })
            .collect();
        let general = super::super::store::ConvRow {
            private: false,
            created_by: None,
            id: 1,
            kind: ConvKind::Room,
            name: limits::DEFAULT_ROOM.into(),
            last_seq: 7,
            members: (1..=names.len() as UserId).map(|u| (u, 0)).collect(),
        };
        let dms = dms
            .iter()
            .enumerate()
            .map(|(i, (a, b))| super::super::store::ConvRow {
                private: false,
                created_by: None,
                id: i as ConvId + 2,
                kind: ConvKind::Dm,
                name: String::new(),
                last_seq: 0,
                members: vec![(*a, 0), (*b, 0)],
            });
        let hub = Arc::new(Hub::new(
            Snapshot {
                server_id: "5e7e1d0000000000000000000000cafe".into(),
                users,
                convs: std::iter::once(general).chain(dms).collect(),
                ..Snapshot::default()
            },
            node,
            Arc::downgrade(bus),
            25_000,
            Clock::system(),
        ));
        hub.clone().start_fanout(bus.subscribe()).unwrap();
        hub
    }

    /// One node's hub on a bus of its own (the bus is kept for the life of the test).
    fn hub_with(names: &[&str], dms: &[(UserId, UserId)]) -> Arc<Hub> {
        let bus: Arc<dyn Bus> = Arc::new(super::super::bus::local::LocalBus::default());
        let hub = hub_on(names, dms, 7, &bus);
        // The hub holds the bus weakly; a test's hub lives as long as the test.
        std::mem::forget(bus);
        hub
    }

    /// Connect `user` and return the hello it was sent, parsed as the client parses it.
    fn connect(hub: &Hub, user: UserId) -> (ConnHandle, ServerFrame) {
        let (handle, hello, _) = connect_capturing(hub, user);
        (handle, hello)
    }

    /// [`connect`], also returning everything the connection is sent later.
    pub(super) fn connect_capturing(
        hub: &Hub,
        user: UserId,
    ) -> (ConnHandle, ServerFrame, Arc<Capture>) {
        let out = Arc::new(Capture::default());
        let handle = hub
            .register(user, [0; 32], Vec::new(), out.clone(), Arc::default())
            .expect("registered");
        let first = out.0.lock().unwrap()[0].clone();
        let hello = serde_json::from_slice(first.payload()).expect("hello parses as a ServerFrame");
        // Byte for byte what encoding the protocol type gives: no field more, less or moved.
        assert_eq!(encode(&hello).payload(), first.payload());
        out.0.lock().unwrap().clear();
        (handle, hello, out)
    }

    pub(super) fn frames_of(out: &Capture) -> Vec<ServerFrame> {
        let frames = std::mem::take(&mut *out.0.lock().unwrap());
        frames
            .iter()
            .map(|f| serde_json::from_slice(f.payload()).unwrap())
            .collect()
    }

    /// `conn` (writing to `frames`) watches `names`; returns who of them is online, after
    /// checking the answer it was sent says the same.
    fn watch(hub: &Hub, conn: &ConnHandle, frames: &Capture, names: &[&str]) -> Vec<String> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let Ok(Reply::Watching { online }) = hub.watch_presence(conn.user, conn.id, 9, &names)
        else {
            panic!("not watching {names:?}")
        };
        let answered = ServerFrame::Ok {
            id: 9,
            result: Reply::Watching {
                online: online.clone(),
            },
        };
        assert_eq!(frames_of(frames), [answered]);
        online
    }

    fn presence(online: &[&str], offline: &[&str]) -> ServerFrame {
        let names = |v: &[&str]| v.iter().map(|n| n.to_string()).collect();
        ServerFrame::Presence {
            online: names(online),
            offline: names(offline),
        }
    }

    /// Changes within one window go out as one frame per watching connection, each watched
    /// user named once by their latest state (bob dropped and came back: online), sorted; a
    /// user who watches themselves is not told about themselves, one whose only watched change
    /// is their own gets nothing, and eve, who watches nobody and shares no DM, hears nothing.
    /// Dave left after coming online: offline.
    #[tokio::test]
    async fn presence_changes_go_to_watchers_as_one_net_frame_per_window() {
        let hub = hub_with(&["alice", "bob", "carol", "dave", "eve"], &[]);
        tokio::spawn(hub.clone().run_presence());
        let (a, _, alice) = connect_capturing(&hub, 1);
        assert!(watch(&hub, &a, &alice, &["bob", "carol", "dave"]).is_empty());
        let (e, _, eve) = connect_capturing(&hub, 5);
        assert!(watch(&hub, &e, &eve, &[]).is_empty());
        tokio::time::sleep(PRESENCE_WINDOW * 2).await;
        assert!(frames_of(&alice).is_empty(), "nobody alice watches came");

        let (c, _, carol) = connect_capturing(&hub, 3);
        assert_eq!(
            watch(&hub, &c, &carol, &["bob", "dave", "carol"]),
            ["carol"],
            "the answer tells of yourself too; batches never do"
        );
        let (bob1, _, _) = connect_capturing(&hub, 2);
        hub.unregister(bob1.id);
        let (b, _, bob) = connect_capturing(&hub, 2);
        assert_eq!(watch(&hub, &b, &bob, &["carol", "dave"]), ["carol"]);
        let (dave1, _, _) = connect_capturing(&hub, 4);
        hub.unregister(dave1.id);
        tokio::time::sleep(PRESENCE_WINDOW * 2).await;

        assert_eq!(frames_of(&alice), [presence(&["bob", "carol"], &["dave"])]);
        assert_eq!(frames_of(&bob), [presence(&["carol"], &["dave"])]);
        assert_eq!(frames_of(&carol), [presence(&["bob"], &["dave"])]);
        assert!(frames_of(&eve).is_empty(), "eve watches nobody");

        let (_c2, _, carol2) = connect_capturing(&hub, 3);
        tokio::time::sleep(PRESENCE_WINDOW * 2).await;
        assert!(
            frames_of(&carol2).is_empty() && frames_of(&alice).is_empty(),
            "a second device of an online user changes nobody's presence"
        );

        // A new watch set replaces the last: alice stops hearing of carol, starts of eve.
        assert_eq!(watch(&hub, &a, &alice, &["eve"]), ["eve"]);
        hub.unregister(c.id);
        hub.unregister(_c2.id);
        hub.unregister(e.id);
        tokio::time::sleep(PRESENCE_WINDOW * 2).await;
        assert_eq!(frames_of(&alice), [presence(&[], &["eve"])]);
        assert_eq!(frames_of(&bob), [presence(&[], &["carol"])]);
        hub.shutdown();
    }

    /// DM partners watch each other without naming each other, and a connection that also
    /// names its partner hears each change once; bad names are refused and keep the last set.
    #[tokio::test]
    async fn dm_partners_are_always_watched_and_bad_names_are_refused() {
        let hub = hub_with(&["alice", "bob", "carol"], &[(1, 2)]);
        tokio::spawn(hub.clone().run_presence());
        let (a, _, alice) = connect_capturing(&hub, 1);
        assert_eq!(
            watch(&hub, &a, &alice, &["BOB", "carol"]),
            Vec::<String>::new()
        );
        let (b, _, _) = connect_capturing(&hub, 2);
        tokio::time::sleep(PRESENCE_WINDOW * 2).await;
        assert_eq!(frames_of(&alice), [presence(&["bob"], &[])]);

        let unknown = ["carol".to_string(), "zed".to_string()];
        let refused = hub.watch_presence(1, a.id, 10, &unknown).unwrap_err();
        assert_eq!(refused.0, ErrorCode::NotFound);
        assert!(refused.1.contains("zed"), "{}", refused.1);
        assert!(
            matches!(
                &frames_of(&alice)[..],
                [ServerFrame::Error {
                    id: Some(10),
                    code: ErrorCode::NotFound,
                    ..
                }]
            ),
            "answered on the socket"
        );
        let (_c, _, _) = connect_capturing(&hub, 3);
        tokio::time::sleep(PRESENCE_WINDOW * 2).await;
        assert_eq!(
            frames_of(&alice),
            [presence(&["carol"], &[])],
            "the last set (bob, carol) stayed"
        );
        assert_eq!(watch(&hub, &a, &alice, &[]), Vec::<String>::new());
        hub.unregister(b.id);
        tokio::time::sleep(PRESENCE_WINDOW * 2).await;
        assert_eq!(
            frames_of(&alice),
            [presence(&[], &["bob"])],
            "a DM partner stays watched with an empty set"
        );
        hub.shutdown();
    }

    /// Presence crosses nodes through the bus: two hubs (two nodes) on one bus. A user
    /// connected on node A is online for node B's users and lists; with devices on both nodes
    /// they stay online until the last one goes; node B's users hear each change once.
    #[tokio::test]
    async fn presence_travels_the_bus_between_nodes() {
        let bus: Arc<dyn Bus> = Arc::new(super::super::bus::local::LocalBus::default());
        let names = ["alice", "bob"];
        let (a, b) = (hub_on(&names, &[], 1, &bus), hub_on(&names, &[], 2, &bus));
        tokio::spawn(a.clone().run_presence());
        tokio::spawn(b.clone().run_presence());
        let (bob, _, bob_frames) = connect_capturing(&b, 2);
        assert!(watch(&b, &bob, &bob_frames, &["alice"]).is_empty());
        let online_on_b = |user: &str| {
            b.users()
                .iter()
                .any(|m| m.user.username == user && m.online)
        };
        assert!(!online_on_b("alice"));
        let (alice_a, _, _) = connect_capturing(&a, 1);
        tokio::time::sleep(PRESENCE_WINDOW * 2).await;
        assert!(online_on_b("alice"), "node B knows alice is on node A");
        assert_eq!(frames_of(&bob_frames), [presence(&["alice"], &[])]);
        let (alice_b, hello, alice_frames) = connect_capturing(&b, 1);
        assert_eq!(
            online_of(&hello),
            ["alice"],
            "bob is not alice's DM partner"
        );
        assert_eq!(watch(&b, &alice_b, &alice_frames, &["bob"]), ["bob"]);
        a.unregister(alice_a.id);
        tokio::time::sleep(PRESENCE_WINDOW * 2).await;
        assert!(online_on_b("alice"), "still on node B");
        assert!(
            frames_of(&bob_frames).is_empty(),
            "no change while a device is left"
        );
        b.unregister(alice_b.id);
        tokio::time::sleep(PRESENCE_WINDOW * 2).await;
        assert!(!online_on_b("alice"));
        assert!(!a
            .users()
            .iter()
            .any(|m| m.user.username == "alice" && m.online));
        assert_eq!(frames_of(&bob_frames), [presence(&[], &["alice"])]);
        std::mem::forget(bus);
    }

    /// A node heard for the first time is asked alone who is on it, and only it answers; a
    /// node that subscribes asks everyone, and every node answers with all its users (what any
    /// node answers for anyone, `members`, `users`, `watch_presence`, needs them all).
    #[tokio::test]
    async fn only_the_asked_node_says_who_is_on_it() {
        let bus: Arc<dyn Bus> = Arc::new(super::super::bus::local::LocalBus::default());
        let names = ["alice", "bob", "carol"];
        let (a, b) = (hub_on(&names, &[], 1, &bus), hub_on(&names, &[], 2, &bus));
        let mut heard = bus.subscribe();
        let (_alice, _) = connect(&a, 1);
        let (_bob, _) = connect(&b, 2);
        let (_carol, _) = connect(&b, 3);
        // Wait for every NodePresence `asks` brings, and a little longer for any extra one.
        let mut answers_to = |ask: Event| {
            bus.publish(ask);
            let mut answers = Vec::new();
            let until = std::time::Instant::now() + Duration::from_millis(300);
            while std::time::Instant::now() < until {
                match heard.try_recv() {
                    Ok(events) => answers.extend(events.into_iter().filter_map(|e| match e {
                        Event::NodePresence { node, mut users } => {
                            users.sort_unstable();
                            Some((node, users))
                        }
                        _ => None,
                    })),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            answers.sort_unstable();
            answers
        };
        assert_eq!(
            answers_to(Event::PresenceWanted { of: Some(2) }),
            [(2, vec![2, 3])],
            "node 1 was not asked"
        );
        assert_eq!(
            answers_to(Event::PresenceWanted { of: None }),
            [(1, vec![1]), (2, vec![2, 3])]
        );
        std::mem::forget(bus);
    }

    fn online_of(hello: &ServerFrame) -> Vec<&str> {
        match hello {
            ServerFrame::Hello { online, .. } => online.iter().map(String::as_str).collect(),
            other => panic!("not a hello: {other:?}"),
        }
    }

    /// The hello written from the hub's borrowed state is the protocol's `Hello`, field for
    /// field; its online list holds the new user and, of the others, only their DM partners
    /// online (sorted, a partner with two devices once, gone once their last device went):
    /// carol, online but no DM partner of alice's, is not in it.
    #[test]
    fn hello_lists_only_dm_partners_online_and_matches_the_protocol_type() {
        let hub = hub_with(
            &["alice", "bob", "carol", "dave"],
            &[(4, 2), (4, 3), (1, 4)],
        );
        let (_alice, hello) = connect(&hub, 1);
        assert_eq!(online_of(&hello), ["alice"]);
        let (bob1, _) = connect(&hub, 2);
        let (bob2, _) = connect(&hub, 2);
        let (_carol, hello) = connect(&hub, 3);
        assert_eq!(
            online_of(&hello),
            ["carol"],
            "alice and bob are no partners of carol"
        );
        let (dave1, hello) = connect(&hub, 4);
        assert_eq!(online_of(&hello), ["alice", "bob", "carol", "dave"]);
        hub.unregister(bob1.id);
        hub.unregister(dave1.id);
        let (_, hello) = connect(&hub, 4);
        assert_eq!(
            online_of(&hello),
            ["alice", "bob", "carol", "dave"],
            "bob still has a device"
        );
        hub.unregister(bob2.id);
        let (_, hello) = connect(&hub, 1);
        assert_eq!(
            online_of(&hello),
            ["alice", "dave"],
            "carol is no partner of alice"
        );

        let ServerFrame::Hello {
            protocol,
            server_id,
            user,
            heartbeat_ms,
            conversations,
            unread,
            ..
        } = &hello
        else {
            unreachable!()
        };
        assert_eq!(*protocol, PROTOCOL_VERSION);
        assert_eq!(server_id, "5e7e1d0000000000000000000000cafe");
        assert_eq!(user.username, "alice");
        assert_eq!(user.display_name, "ALICE");
        assert_eq!(*heartbeat_ms, 25_000);
        assert!(unread.is_empty());
        assert_eq!(conversations.len(), 2);
        assert_eq!(conversations[0].name, limits::DEFAULT_ROOM);
        assert_eq!(conversations[0].last_seq, 7);
        assert_eq!(conversations[0].member_count, 4);
        assert_eq!(conversations[1].name, "dave");
    }

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
