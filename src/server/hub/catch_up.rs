//! How a node keeps each conversation's order when events come from other nodes late, out of
//! order or not at all (a lost publish, a restarted bus, a node killed between its commit and
//! its publish).
//!
//! A message heard ahead of a gap in its conversation is held. After the bus's reorder wait
//! ([`Bus::reorder_wait`](super::Bus::reorder_wait)) the gap is read from the store and
//! delivered first, then what was held, so every member still gets seq 1, 2, 3 ... once each;
//! a copy of a message already delivered is answered but not pushed again. A resync (the bus
//! says it may have lost events) reloads membership and last seqs from the store, tells the
//! members what changed and fills what is behind. Other nodes' presence is replaced by what
//! they announce ([`Event::NodePresence`]) and dropped when their lease runs out
//! ([`Event::NodeGone`]).
//!
//! On one node with the in-process bus none of this happens: commits arrive in seq order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Weak;
use std::time::Duration;

use crate::protocol::{limits, ConvId, ConvKind, Seq, ServerFrame};

use super::super::bus::{Event, NodeId, Origin};
use super::super::store::{Snapshot, Storage, UserId, WriteOutcome};
use super::{encode, ConvEntry, Hub, Outgoing, State};
use crate::names;

/// The most messages one gap-fill read asks for.
const FILL_PAGE: i64 = 200;
/// How long to wait before trying a failed store read again.
const RETRY: Duration = Duration::from_millis(500);

/// What is waiting for a gap to close.
#[derive(Default)]
pub(super) struct Pending {
    /// Messages heard ahead of a gap, by conversation and seq, with who waits for the answer.
    held: HashMap<ConvId, BTreeMap<Seq, (WriteOutcome, Option<Origin>)>>,
    /// The seq a conversation must reach, known from the store (a resync) rather than heard.
    behind: HashMap<ConvId, Seq>,
    /// Conversations whose gap is being read from the store.
    filling: HashSet<ConvId>,
    /// Resyncs whose snapshot is being read, and what was applied meanwhile.
    resyncs: u32,
    touched: Touched,
}

/// What the hub applied from events while a resync read its snapshot. The snapshot may be
/// older than these (or miss them), so reconciling leaves them as the events made them.
#[derive(Default, Clone)]
struct Touched {
    members: HashSet<(ConvId, UserId)>,
    convs: HashSet<ConvId>,
    users: HashSet<UserId>,
}

impl Pending {
    /// Remember that `user`'s row changed here without an event (an admin role the store
    /// poll found), while a resync is reading its snapshot.
    pub(super) fn note_user(&mut self, user: UserId) {
        if self.resyncs > 0 {
            self.touched.users.insert(user);
        }
    }

    /// Remember what `outcome` changes, while a resync is reading its snapshot. `rooms` (the
    /// hub's, by name key) finds the default room, which a registration (or approval) joins.
    pub(super) fn note(&mut self, outcome: &WriteOutcome, rooms: &HashMap<String, ConvId>) {
        if self.resyncs == 0 {
            return;
        }
        let t = &mut self.touched;
        match outcome {
            WriteOutcome::Registered(row) => {
                t.users.insert(row.id);
                // The new account is in general from this event on: a snapshot read before
                // it committed must not take it out again (it did: the user's sockets were
                // told `conversation_removed` for general right after their hello).
                let general = rooms.get(limits::DEFAULT_ROOM);
                t.members.extend(general.map(|conv| (*conv, row.id)));
            }
            WriteOutcome::UserUpdated(row) => {
                t.users.insert(row.id);
            }
            WriteOutcome::RoomCreated { user, conv, .. } => {
                t.convs.insert(*conv);
                t.members.insert((*conv, *user));
            }
            WriteOutcome::Joined { user, conv, .. }
            | WriteOutcome::Added { user, conv, .. }
            | WriteOutcome::Removed { user, conv, .. }
            | WriteOutcome::Left { user, conv } => {
                t.members.insert((*conv, *user));
            }
            WriteOutcome::Sent {
                new_dm: Some((conv, a, b)),
                ..
            } => {
                t.convs.insert(*conv);
                t.members.extend([(*conv, *a), (*conv, *b)]);
            }
            WriteOutcome::AccountDeleted { row, left, .. } => {
                t.users.insert(row.id);
                t.members.extend(left.iter().map(|c| (*c, row.id)));
            }
            WriteOutcome::LevelSet { user, .. } | WriteOutcome::DndSet { user, .. } => {
                t.users.insert(*user);
            }
            _ => {}
        }
    }
}

/// How the hub reads what it missed; set by [`Hub::attach_store`].
#[derive(Clone)]
pub(super) struct Reader {
    pub hub: Weak<Hub>,
    pub store: Weak<dyn Storage>,
    pub runtime: tokio::runtime::Handle,
    pub reorder_wait: Duration,
}

impl State {
    /// The held message that comes next in `conv`, once everything before it was delivered.
    pub(super) fn next_held(&mut self, conv: ConvId) -> Option<Event> {
        let last = self.convs.get(&conv)?.last_seq;
        let held = self.catch_up.held.get_mut(&conv)?;
        if *held.first_key_value()?.0 > last + 1 {
            return None;
        }
        let (_, (outcome, origin)) = held.pop_first()?;
        if held.is_empty() {
            self.catch_up.held.remove(&conv);
        }
        Some(Event::Committed { outcome, origin })
    }

    /// Make `users` exactly the users node `node` has (none: the node is gone), announcing
    /// whoever that turns online or offline as a whole.
    pub(super) fn set_node_presence(&mut self, node: NodeId, users: &[UserId], out: &mut Outgoing) {
        let now: HashSet<UserId> = users.iter().copied().collect();
        let gone: Vec<UserId> = self
            .nodes_of
            .iter()
            .filter(|(user, nodes)| nodes.contains(&node) && !now.contains(user))
            .map(|(user, _)| *user)
            .collect();
        for user in gone {
            self.node_presence(node, user, false, out);
        }
        for user in now {
            self.node_presence(node, user, true, out);
        }
    }

    /// The gap left in `conv`: (last delivered, seq to reach). None, and the fill ends, when
    /// there is none.
    fn gap(&mut self, conv: ConvId) -> Option<(Seq, Seq)> {
        let last = self.convs.get(&conv).map(|c| c.last_seq);
        let held = self
            .catch_up
            .held
            .get(&conv)
            .and_then(|h| h.keys().next())
            .map(|s| s - 1);
        let target = held.max(self.catch_up.behind.get(&conv).copied());
        match (last, target) {
            (Some(last), Some(target)) if target > last => Some((last, target)),
            _ => {
                self.catch_up.behind.remove(&conv);
                self.catch_up.filling.remove(&conv);
                None
            }
        }
    }
}

impl Hub {
    /// Where a committed outcome stands in its conversation's order: the outcome to apply
    /// now (a message already delivered comes back not fresh: answered, not pushed again), or
    /// None when it was held for a gap before it.
    pub(super) fn in_order(
        &self,
        state: &mut State,
        outcome: WriteOutcome,
        origin: Option<Origin>,
    ) -> Option<WriteOutcome> {
        let message = match outcome {
            WriteOutcome::Sent {
                message,
                fresh: true,
                new_dm: None,
            } => message,
            other => return Some(other),
        };
        let Some(last) = state.convs.get(&message.conv).map(|c| c.last_seq) else {
            return Some(WriteOutcome::Sent {
                message,
                fresh: true,
                new_dm: None,
            });
        };
        if message.seq <= last + 1 {
            return Some(WriteOutcome::Sent {
                fresh: message.seq == last + 1,
                message,
                new_dm: None,
            });
        }
        let (conv, seq) = (message.conv, message.seq);
        let outcome = WriteOutcome::Sent {
            message,
            fresh: true,
            new_dm: None,
        };
        state
            .catch_up
            .held
            .entry(conv)
            .or_default()
            .insert(seq, (outcome, origin));
        self.fill_later(state, conv);
        None
    }

    /// Read `conv`'s gap from the store after the reorder wait (unless a fill is running).
    fn fill_later(&self, state: &mut State, conv: ConvId) {
        let Some(reader) = self.reader.get() else {
            return;
        };
        if state.catch_up.filling.insert(conv) {
            reader.runtime.spawn(reader.clone().fill(conv));
        }
    }

    /// Reload what is durable from the store and catch up with it ([`Event::Resync`]).
    pub(super) fn resync(&self, state: &mut State) {
        if let Some(reader) = self.reader.get() {
            state.catch_up.resyncs += 1;
            reader.runtime.spawn(reader.clone().resync());
        }
    }

    /// Tell every node who is on this one ([`Event::NodePresence`]).
    ///
    /// All of this node's users, not only those the asking node watches or shares a DM with:
    /// every node must know every user's presence at any moment, because it answers for any
    /// user at once from memory ([`State::is_online`]): `watch_presence` may name anyone (its
    /// answer tells who is online now, and later batches only carry changes), `members` and
    /// `users` list everyone's presence, and a DM partner's hello needs it. The list is asked
    /// for rarely (a node that subscribes asks everyone once; a node heard for the first time
    /// is asked alone), which is what keeps its cost down.
    pub(super) fn publish_node_presence(&self) {
        let users: Vec<UserId> = self
            .lock()
            .conns
            .iter()
            .filter(|(_, conns)| !conns.is_empty())
            .map(|(user, _)| *user)
            .collect();
        if let Some(bus) = self.bus.upgrade() {
            bus.publish(Event::NodePresence {
                node: self.node,
                users,
            });
        }
    }

    /// Bring memory up to `snapshot`: users, attention, conversations and their members (who
    /// hears of a changed profile, admin role or membership hears it as if the events had
    /// come), and fill the messages behind.
    ///
    /// What the hub applied from events while the snapshot was being read stays as the events
    /// made it (the snapshot may predate them); the rest follows the snapshot.
    fn reconcile(&self, snapshot: Snapshot) {
        let mut state = self.lock();
        let touched = state.catch_up.touched.clone();
        state.catch_up.resyncs = state.catch_up.resyncs.saturating_sub(1);
        if state.catch_up.resyncs == 0 {
            state.catch_up.touched = Touched::default();
        }
        // Changes made here are not events: keep them out of `touched`.
        let resyncs = std::mem::take(&mut state.catch_up.resyncs);
        let mut out = Outgoing::default();
        // Users whose row the bus never told this node about (an event missed, or
        // `natter-server admin`, which writes the store and tells no bus): they are told below,
        // once the memberships are settled, as the events would have told them. A later admin
        // poll then finds the role already known here and pushes it no second time.
        let mut changed = Vec::new();
        for row in snapshot.users {
            if touched.users.contains(&row.id) {
                continue;
            }
            if let Some(known) = state.users.get(&row.id).filter(|u| **u != row.user) {
                changed.push((row.clone(), known.admin != row.user.admin));
            }
            state.set_user(row.id, row.user);
        }
        state.levels.retain(|user, _| touched.users.contains(user));
        for (user, conv, level) in snapshot.levels {
            if !touched.users.contains(&user) {
                state.levels.entry(user).or_default().insert(conv, level);
            }
        }
        state.dnd.retain(|user, _| touched.users.contains(user));
        for (user, dnd) in snapshot.dnd {
            if !touched.users.contains(&user) {
                state.dnd.insert(user, dnd);
            }
        }
        for c in snapshot.convs {
            if touched.convs.contains(&c.id) {
                // Created here from its event meanwhile: already as it should be.
                continue;
            }
            let Some(entry) = state.convs.get(&c.id) else {
                // New to this node: its members hear of it, their clients fetch its history.
                if c.kind == ConvKind::Room {
                    state.rooms.insert(names::key(&c.name), c.id);
                }
                state.convs.insert(
                    c.id,
                    ConvEntry {
                        kind: c.kind,
                        name: c.name,
                        private: c.private,
                        created_by: c.created_by,
                        members: c.members.iter().copied().collect(),
                        last_seq: c.last_seq,
                    },
                );
                for (user, _) in &c.members {
                    state.user_convs.entry(*user).or_default().insert(c.id);
                    if let Some(conversation) = state.conversation(c.id, *user) {
                        let frame = encode(&ServerFrame::ConversationAdded { conversation });
                        state.push_user(*user, &frame, None, &mut out);
                    }
                }
                continue;
            };
            let last_seq = entry.last_seq;
            let now: super::IdMap<UserId, Seq> = c.members.iter().copied().collect();
            let settled = |u: &&UserId| !touched.members.contains(&(c.id, **u));
            let left: Vec<UserId> = entry
                .members
                .keys()
                .filter(|u| !now.contains_key(u))
                .filter(settled)
                .copied()
                .collect();
            let joined: Vec<UserId> = now
                .keys()
                .filter(|u| !entry.members.contains_key(u))
                .filter(settled)
                .copied()
                .collect();
            for user in left {
                self.apply(
                    &mut state,
                    &WriteOutcome::Left { user, conv: c.id },
                    None,
                    &mut out,
                );
            }
            for user in joined {
                let outcome = WriteOutcome::Joined {
                    user,
                    conv: c.id,
                    newly: true,
                };
                self.apply(&mut state, &outcome, None, &mut out);
            }
            if let Some(entry) = state.convs.get_mut(&c.id) {
                for (user, read) in &c.members {
                    if let Some(marker) = entry.members.get_mut(user) {
                        *marker = (*marker).max(*read);
                    }
                }
            }
            if c.last_seq > last_seq {
                let behind = state.catch_up.behind.entry(c.id).or_default();
                *behind = (*behind).max(c.last_seq);
                self.fill_later(&mut state, c.id);
            }
        }
        for (row, role_turned) in changed {
            if role_turned {
                state.push_role(&row, &mut out);
            } else {
                state.push_profile(&row, &mut out);
            }
        }
        state.catch_up.resyncs = resyncs;
        state.reap(&mut out);
        drop(state);
        self.deliver(out);
    }
}

impl Reader {
    /// Deliver `conv`'s missing messages from the store until its gap is closed.
    async fn fill(self, conv: ConvId) {
        tokio::time::sleep(self.reorder_wait).await;
        loop {
            let (Some(hub), Some(store)) = (self.hub.upgrade(), self.store.upgrade()) else {
                return;
            };
            let Some((last, target)) = hub.lock().gap(conv) else {
                return;
            };
            let limit = (target - last).clamp(1, FILL_PAGE) as u32;
            match store.history(conv, None, Some(last), limit).await {
                Ok((messages, _)) if messages.first().is_some_and(|m| m.seq == last + 1) => {
                    tracing::debug!(conv, last, target, "filling a gap from the store");
                    let events: Vec<Event> = messages
                        .into_iter()
                        .filter(|m| m.seq <= target)
                        .map(|message| Event::Committed {
                            outcome: WriteOutcome::Sent {
                                message,
                                fresh: true,
                                new_dm: None,
                            },
                            origin: None,
                        })
                        .collect();
                    hub.on_events(events.into_iter());
                }
                Ok(_) => {
                    tracing::warn!(
                        conv,
                        last,
                        "the store lacks the messages of a gap; retrying"
                    );
                    tokio::time::sleep(RETRY).await;
                }
                Err(e) => {
                    tracing::warn!(conv, "could not read a gap from the store ({e}); retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Reload the snapshot until it can be read, and reconcile with it.
    async fn resync(self) {
        loop {
            let (Some(hub), Some(store)) = (self.hub.upgrade(), self.store.upgrade()) else {
                return;
            };
            match store.snapshot().await {
                Ok(snapshot) => {
                    tracing::info!(
                        "resynchronising with the store (the bus may have missed events)"
                    );
                    hub.reconcile(snapshot);
                    return;
                }
                Err(e) => {
                    tracing::warn!("could not reload from the store ({e}); retrying");
                    drop((hub, store));
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::super::bus::{local::LocalBus, Bus};
    use super::super::super::clock::Clock;
    use super::super::super::store::{ConvRow, UserRow};
    use super::super::tests::{connect_capturing, frames_of};
    use super::*;
    use crate::protocol::{limits, User};

    fn user(id: UserId, name: &str) -> UserRow {
        UserRow {
            id,
            user: User {
                username: name.to_string(),
                display_name: name.to_string(),
                avatar: "🙂".into(),
                deleted: false,
                avatar_image: None,
                admin: false,
            },
        }
    }

    fn snapshot(members: &[UserId]) -> Snapshot {
        let users = ["ann", "ben", "cat"]
            .iter()
            .enumerate()
            .map(|(i, name)| user(i as UserId + 1, name))
            .collect();
        Snapshot {
            users,
            convs: vec![ConvRow {
                private: false,
                created_by: None,
                id: 1,
                kind: ConvKind::Room,
                name: limits::DEFAULT_ROOM.into(),
                last_seq: 0,
                members: members.iter().map(|u| (*u, 0)).collect(),
            }],
            ..Snapshot::default()
        }
    }

    fn members(hub: &Hub) -> Vec<UserId> {
        let mut m: Vec<UserId> = hub.lock().convs[&1].members.keys().copied().collect();
        m.sort_unstable();
        m
    }

    /// A hub with ann and ben in general, reading a resync's snapshot (no store attached: the
    /// test hands the snapshot to `reconcile`), that applies `outcome` meanwhile.
    fn resyncing_through(outcome: WriteOutcome) -> Hub {
        let bus: Arc<dyn Bus> = Arc::new(LocalBus::default());
        let hub = Hub::new(
            snapshot(&[1, 2]),
            9,
            Arc::downgrade(&bus),
            25_000,
            Clock::system(),
        );
        hub.lock().catch_up.resyncs += 1;
        let event = Event::Committed {
            outcome,
            origin: None,
        };
        hub.on_events(vec![event].into_iter());
        hub
    }

    /// A resync's snapshot may be older than events the hub applied while it was read: those
    /// stay as the events made them; what the hub missed follows the snapshot.
    #[tokio::test]
    async fn a_resync_keeps_what_events_changed_while_its_snapshot_was_read() {
        // Ben leaves (an event) after the snapshot below was read.
        let hub = resyncing_through(WriteOutcome::Left { user: 2, conv: 1 });
        assert_eq!(members(&hub), [1]);
        // The snapshot still has ben (older), and has cat, who joined in an event this node
        // never heard, and lacks ann, whose leaving it never heard either.
        hub.reconcile(snapshot(&[2, 3]));
        assert_eq!(members(&hub), [3], "ben stays out, cat is in, ann is out");
        let state = hub.lock();
        assert_eq!(state.catch_up.resyncs, 0);
        assert!(state.catch_up.touched.members.is_empty(), "tracking ended");
    }

    /// A node's first resync (the Redis bus asks for one when it subscribes) may read its
    /// snapshot before a registration commits: the new account, in general from its event on,
    /// stays in general, so its next hello still lists general. (It was taken out, and its
    /// sockets told `conversation_removed`: the flaky
    /// `client_actions::racing_devices_and_a_reply_to_a_deleted_message_end_in_one_state`.)
    #[tokio::test]
    async fn a_registration_during_a_resync_stays_in_general() {
        let hub = resyncing_through(WriteOutcome::Registered(user(4, "dan")));
        assert_eq!(members(&hub), [1, 2, 4]);
        // The snapshot was read before dan registered: it has neither his row nor his seat.
        hub.reconcile(snapshot(&[1, 2]));
        assert_eq!(members(&hub), [1, 2, 4], "dan stays in general");
        assert_eq!(hub.member_convs(4), [(1, 0)], "his hello lists general");
        assert_eq!(hub.user(4).map(|u| u.username).as_deref(), Some("dan"));
    }

    /// A hub with ann and ben in general (no resync under way) and `snapshot`'s users.
    fn hub_of(snapshot: Snapshot) -> Hub {
        let bus: Arc<dyn Bus> = Arc::new(LocalBus::default());
        Hub::new(snapshot, 9, Arc::downgrade(&bus), 25_000, Clock::system())
    }

    /// Ann's profile, an admin or not.
    fn ann(admin: bool) -> User {
        let mut ann = user(1, "ann").user;
        ann.admin = admin;
        ann
    }

    /// `frames` are what a user whose admin role turned to `admin` hears: their profile, then
    /// general (which they did not create) with its `moderator` flag turned.
    fn told_of_role(frames: &[ServerFrame], admin: bool) -> bool {
        matches!(frames, [
            ServerFrame::UserUpdated { user },
            ServerFrame::ConversationsUpdated { conversations },
        ] if *user == ann(admin)
            && conversations.len() == 1
            && conversations[0].id == 1
            && conversations[0].moderator == admin)
    }

    /// `natter-server admin grant` writes the store and tells no bus. When a resync reads
    /// the grant before the admin poll does, the resync pushes it: ann's socket hears her
    /// profile (admin) and general's `moderator` flag, ben (in general with her) her profile,
    /// and the poll that follows finds the role known and pushes nothing a second time. (The
    /// resync used to take the role into memory silently; the poll then found it known, and
    /// nobody was told.) The revocation the same way.
    #[tokio::test]
    async fn a_role_a_resync_reads_before_the_admin_poll_is_pushed_once() {
        let hub = hub_of(snapshot(&[1, 2]));
        let (_ann_conn, _, ann_frames) = connect_capturing(&hub, 1);
        let (_ben_conn, _, ben_frames) = connect_capturing(&hub, 2);
        for admin in [true, false] {
            let mut store = snapshot(&[1, 2]);
            store.users[0].user.admin = admin;
            hub.reconcile(store);
            let to_ann = frames_of(&ann_frames);
            assert!(told_of_role(&to_ann, admin), "{to_ann:?}");
            assert_eq!(
                frames_of(&ben_frames),
                [ServerFrame::UserUpdated { user: ann(admin) }]
            );
            hub.set_admin_roles(&[(1, admin)]);
            assert_eq!(
                frames_of(&ann_frames),
                [],
                "the poll pushes it no second time"
            );
            assert_eq!(frames_of(&ben_frames), []);
        }
        // A resync that finds nothing changed tells nobody anything.
        hub.reconcile(snapshot(&[1, 2]));
        assert_eq!(frames_of(&ann_frames), []);
        assert_eq!(frames_of(&ben_frames), []);
    }

    /// The other order: the admin poll pushes a grant while a resync reads a snapshot from
    /// before it. The role stays (the snapshot is older), and ann hears nothing more.
    #[tokio::test]
    async fn a_role_the_admin_poll_pushed_outlives_an_older_resync_snapshot() {
        let hub = hub_of(snapshot(&[1, 2]));
        let (_ann_conn, _, ann_frames) = connect_capturing(&hub, 1);
        hub.lock().catch_up.resyncs += 1;
        hub.set_admin_roles(&[(1, true)]);
        let to_ann = frames_of(&ann_frames);
        assert!(told_of_role(&to_ann, true), "{to_ann:?}");
        // Read before the grant: ann is no admin there.
        hub.reconcile(snapshot(&[1, 2]));
        assert_eq!(hub.user(1), Some(ann(true)), "the role stays");
        assert_eq!(frames_of(&ann_frames), []);
        assert_eq!(hub.lock().catch_up.resyncs, 0);
    }
}
