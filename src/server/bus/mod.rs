//! The bus: how what one node committed reaches every node's sockets.
//!
//! A service publishes an [`Event`] after its write committed, in commit order (from the
//! store's [`Completion`](super::store::Completion)); each node's hub subscribes and fans the
//! events out to its own connections on its own thread, never on the thread that committed.
//! Events say what changed, not who should hear it: each node works that out from its
//! membership and its sockets.
//!
//! [`local::LocalBus`] is the in-process bus, the default and the only one a single node
//! needs. A bus between nodes implements [`Bus`] the same way; an event names the node that
//! should answer its request ([`Origin`]), so the answer goes out on the node that holds the
//! socket or the waiting HTTP request.

pub mod local;
#[cfg(feature = "redis")]
pub mod redis;

use std::cell::RefCell;

use tokio::sync::mpsc;

use crate::protocol::{ConvId, ErrorCode};

use super::store::{UserId, WriteOutcome};

/// Which bus links this node to others (`--bus`); a config without one uses the in-process
/// bus (one node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusLocation {
    /// Redis pub/sub at `url`, on the channel `channel` (every node of one cluster names the
    /// same; several clusters may share one Redis under different names).
    #[cfg(feature = "redis")]
    Redis { url: String, channel: String },
}

impl BusLocation {
    /// Parse a `--bus` value (`redis://HOST:PORT` or `rediss://` for TLS) with the channel
    /// name from `--bus-channel`.
    pub fn parse(url: &str, channel: &str) -> Result<BusLocation, String> {
        if channel.is_empty()
            || !channel
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "bad bus channel {channel:?}: use letters, digits, '-', '_' or '.'"
            ));
        }
        #[cfg(feature = "redis")]
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            return Ok(BusLocation::Redis {
                url: url.to_string(),
                channel: channel.to_string(),
            });
        }
        Err(format!(
            "unknown bus {url:?}: expected redis://HOST:PORT (built with the `redis` feature)"
        ))
    }

    /// Start the bus for node `node`; a node silent for `lease` counts as gone.
    pub(crate) fn start(
        &self,
        node: NodeId,
        lease: std::time::Duration,
    ) -> Result<std::sync::Arc<dyn Bus>, String> {
        let _ = (node, lease);
        match *self {
            #[cfg(feature = "redis")]
            BusLocation::Redis {
                ref url,
                ref channel,
            } => Ok(std::sync::Arc::new(
                redis::RedisBus::start(url, channel, node, lease).map_err(|e| e.to_string())?,
            )),
        }
    }
}

/// A server process's id, random per start: it qualifies connection ids and request origins.
pub type NodeId = u64;

/// A connection's id: the node that holds the socket and a number unique on that node.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// Something every node must hear about. Serialisable: a bus between nodes carries it (its
/// encoding is internal to one version of the server; see `redis`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Event {
    /// A committed write, and who asked for it.
    Committed {
        outcome: WriteOutcome,
        origin: Option<Origin>,
    },
    /// `user` is typing in `conv` (not stored).
    Typing { user: UserId, conv: ConvId },
    /// Node `node` now has (`online`) or no longer has a connection of `user`. A user is online
    /// while any node has one (two devices on two nodes are one online user).
    Presence {
        node: NodeId,
        user: UserId,
        online: bool,
    },
    /// A socket's write failed (nothing was committed): its node answers it with this error.
    Refused {
        conn: ConnId,
        req: u64,
        code: ErrorCode,
        message: String,
    },
    // ---- between nodes (a bus that links nodes publishes these; the local bus never does) ----
    /// The users with a connection on `node`, all of them: a node asked with
    /// [`Event::PresenceWanted`] says who is on it, replacing what others knew.
    NodePresence { node: NodeId, users: Vec<UserId> },
    /// Node `of` (None: every node) answers with its [`Event::NodePresence`]. A node that
    /// (re)subscribes asks every node (what it knew may be stale); a node that hears another
    /// for the first time asks that one only (what it knows of the rest still holds).
    PresenceWanted { of: Option<NodeId> },
    /// `node` fell silent for longer than its lease: its users are offline (unless on another
    /// node). Delivered by the bus to this node only.
    NodeGone { node: NodeId },
    /// Node `node` changed the sign-in limits: every other node makes the same change.
    Limits {
        node: NodeId,
        change: super::service::limits::LimitChange,
    },
    /// Node `node` issued or redeemed an event-stream ticket: every other node does too.
    Ticket {
        node: NodeId,
        change: super::service::events::TicketChange,
    },
    /// This node may have missed events (the bus lost its connection, or a publisher's batch
    /// never arrived): reload what is durable from the store and fill the gaps. Delivered by
    /// the bus to this node only.
    Resync,
}

/// Carries events to every subscriber, each subscriber seeing one publisher's events in the
/// order they were published, in batches.
pub trait Bus: Send + Sync {
    /// Hand `event` to every subscriber. Never blocks.
    fn publish(&self, event: Event);

    /// A new subscription: every event published from now on, in batches (the events of one
    /// commit arrive together when they were published inside [`hold_deliveries`]).
    fn subscribe(&self) -> mpsc::UnboundedReceiver<Vec<Event>>;

    /// How long a node waits for a message that is missing before one it heard, before it
    /// reads the missing one from the store. Zero for the in-process bus, which delivers in
    /// commit order: a gap there means another node committed without a shared bus.
    fn reorder_wait(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// How this node stands on a bus between nodes; None for the in-process bus.
    fn status(&self) -> Option<crate::protocol::ClusterHealth> {
        None
    }
}

/// A bus's delivery of what it holds.
type Delivery = Box<dyn FnOnce()>;

thread_local! {
    /// Deliveries waiting for the end of the [`hold_deliveries`] running on this thread.
    static HELD: RefCell<Option<Vec<Delivery>>> = const { RefCell::new(None) };
}

/// Run `f`; buses hold what is published inside it on this thread and deliver it, in one
/// batch per bus, when `f` returns. The store runs the completions of one commit inside it, so
/// the fan-out hears a commit's events at once and writes each connection its frames of that
/// commit in one write, instead of being woken (and writing) once per event.
pub fn hold_deliveries<T>(f: impl FnOnce() -> T) -> T {
    let outer = HELD.with(|h| h.borrow().is_some());
    if outer {
        return f();
    }
    HELD.with(|h| *h.borrow_mut() = Some(Vec::new()));
    // Deliver even if `f` panics: what was published was committed.
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            let held = HELD.with(|h| h.borrow_mut().take()).unwrap_or_default();
            for deliver in held {
                deliver();
            }
        }
    }
    let _release = Release;
    f()
}

/// For a bus: run `deliver` now, or when the enclosing [`hold_deliveries`] on this thread ends.
fn deliver_when_released(deliver: impl FnOnce() + 'static) {
    let deliver: Delivery = Box::new(deliver);
    let now = HELD.with(|h| match h.borrow_mut().as_mut() {
        Some(held) => {
            held.push(deliver);
            None
        }
        None => Some(deliver),
    });
    if let Some(deliver) = now {
        deliver();
    }
}

#[cfg(test)]
mod tests {
    use super::BusLocation;

    /// `--bus` and `--bus-channel` values that are refused, with a message that says why.
    #[test]
    fn bad_bus_locations_are_refused() {
        for (url, channel) in [
            ("http://redis.example:6379", "natter"),
            ("redis.example:6379", "natter"),
            ("", "natter"),
            ("redis://redis.example:6379", ""),
            ("redis://redis.example:6379", "with space"),
            ("redis://redis.example:6379", "naïve"),
        ] {
            let err = BusLocation::parse(url, channel).err().unwrap();
            assert!(err.contains("bus"), "{url} {channel}: {err}");
        }
        #[cfg(feature = "redis")]
        assert!(BusLocation::parse("rediss://redis.example:6380", "team-1.chat").is_ok());
    }
}
