//! The bus: how what one node committed reaches every node's sockets.
//!
//! A service publishes an [`Event`] after its write committed, in commit order (from the
//! store's [`Completion`](super::store::Completion)); each node's hub subscribes and fans the
//! events out to its own connections on its own task, never on the thread that committed.
//! Events say what changed, not who should hear it: each node works that out from its
//! membership and its sockets.
//!
//! [`local::LocalBus`] is the in-process bus, the default and the only one a single node
//! needs. A bus between nodes implements [`Bus`] the same way; an event names the node that
//! should answer its request ([`Origin`]), so the answer goes out on the node that holds the
//! socket or the waiting HTTP request.

pub mod local;

use tokio::sync::mpsc;

use crate::protocol::ConvId;

use super::store::{UserId, WriteOutcome};

/// A server process's id, random per start: it qualifies connection ids and request origins.
pub type NodeId = u64;

/// A connection's id: the node that holds the socket and a number unique on that node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub node: NodeId,
    pub local: u64,
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}.{}", self.node, self.local)
    }
}

/// Who waits for the answer to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Request `req` on a socket: the answer frame goes to it.
    Socket { conn: ConnId, req: u64 },
    /// A call on `node` (an HTTP request) waiting until its node has applied the change.
    Call { node: NodeId, ticket: u64 },
}

impl Origin {
    pub fn node(&self) -> NodeId {
        match self {
            Origin::Socket { conn, .. } => conn.node,
            Origin::Call { node, .. } => *node,
        }
    }
}

/// Something every node must hear about.
#[derive(Debug, Clone)]
pub enum Event {
    /// A committed write, and who asked for it.
    Committed {
        outcome: WriteOutcome,
        origin: Option<Origin>,
    },
    /// `user` is typing in `conv` (not stored).
    Typing { user: UserId, conv: ConvId },
}

/// Carries events to every subscriber, each subscriber seeing one publisher's events in the
/// order they were published.
pub trait Bus: Send + Sync {
    /// Hand `event` to every subscriber. Never blocks.
    fn publish(&self, event: Event);

    /// A new subscription: every event published from now on.
    fn subscribe(&self) -> mpsc::UnboundedReceiver<Event>;
}
