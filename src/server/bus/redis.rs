//! The bus between cluster nodes, on Redis pub/sub (`--bus redis://...`, cargo feature `redis`).
//!
//! Every node publishes what it committed on one Redis channel and hears everyone's there. Its
//! own events reach its own hub at once, in-process, as on the [local bus](super::local); other
//! nodes' events come from Redis, in the order each node published them.
//!
//! Redis pub/sub keeps nothing: a subscriber that loses its connection misses what was
//! published meanwhile, and a node can die between its commit and its publish. So nothing
//! depends on the bus for durability, only for speed:
//! - each batch carries its node's running number, and heartbeats (every lease / 5) carry the
//!   latest; a node that sees a number skipped, or gets its subscription back after losing
//!   it, tells its hub to resync from the store ([`Event::Resync`]);
//! - a message heard ahead of a gap waits [`REORDER_WAIT`] for the missing one, which is then
//!   read from the store (the hub's `catch_up`);
//! - presence is leased: a node silent for a whole lease is gone and its users with it
//!   ([`Event::NodeGone`]); a node that subscribes (again) asks every node who is on it, and a
//!   node heard for the first time (or again, after its lease ran out) is asked who is on it
//!   ([`Event::PresenceWanted`], [`Event::NodePresence`]).
//!
//! A lost publish, a Redis restart or a killed node therefore costs latency, never a message.
//! The encoding (JSON of [`Event`]) is internal: every node of a cluster runs the same version,
//! and the channel name carries a version so that a mixed cluster does not misread itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::local::LocalBus;
use super::{deliver_when_released, Bus, Event, NodeId};
use crate::protocol::ClusterHealth;

/// How long a node waits for a message missing before one it heard from another node, before
/// it reads the missing one from the store. Redis delivers in well under a millisecond on a
/// LAN; the wait only covers a publish that lost the race with a later one.
pub const REORDER_WAIT: Duration = Duration::from_millis(100);

/// The longest wait between attempts to reach Redis again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long a connection (the first at start, and every later one) or a publish may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedisBusError {
    #[error("the bus address {url} is not a Redis URL: {source}")]
    Url {
        url: String,
        source: redis::RedisError,
    },
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// What one publish carries: a node's batch (or, with no events, its heartbeat) and its number.
#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    node: NodeId,
    /// The node's count of batches so far: a batch is numbered one more than the last; a
    /// heartbeat repeats the last number.
    n: u64,
    events: Vec<Event>,
}

/// See the module docs.
pub struct RedisBus {
    inner: Arc<Inner>,
}

struct Inner {
    node: NodeId,
    /// What `GET /api/health` says of the bus.
    status: Mutex<ClusterHealth>,
    /// This node's subscribers (its hub).
    local: LocalBus,
    /// Events published here, for other nodes, not yet handed to the publisher.
    pending: Mutex<Vec<Event>>,
    outgoing: mpsc::UnboundedSender<Vec<Event>>,
}

impl Inner {
    fn publish(self: &Arc<Self>, event: Event) {
        let crosses = !matches!(
            event,
            Event::Refused { .. } | Event::NodeGone { .. } | Event::Resync
        );
        if crosses {
            let first = {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                pending.push(event.clone());
                pending.len() == 1
            };
            if first {
                let inner = self.clone();
                deliver_when_released(move || {
                    let batch = std::mem::take(
                        &mut *inner.pending.lock().unwrap_or_else(|e| e.into_inner()),
                    );
                    let _ = inner.outgoing.send(batch);
                });
            }
        }
        self.local.publish(event);
    }
}

impl RedisBus {
    /// Connect to Redis at `url` (checked now: a cluster node that cannot reach its bus must
    /// not start), then publish and listen on `channel` as node `node`. A node silent for
    /// `lease` is gone. Call inside a Tokio runtime; the bus's tasks run there until it is
    /// dropped.
    pub fn start(
        url: &str,
        channel: &str,
        node: NodeId,
        lease: Duration,
    ) -> Result<RedisBus, RedisBusError> {
        let client = redis::Client::open(url).map_err(|source| RedisBusError::Url {
            url: redact(url),
            source,
        })?;
        // Checked with a plain blocking connection: starting is not async, and this runs once.
        let unreachable = |e: redis::RedisError| RedisBusError::Unreachable {
            url: redact(url),
            reason: e.to_string(),
        };
        let mut check = client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(unreachable)?;
        // A host that accepts but never answers must not hang the start.
        check
            .set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(unreachable)?;
        redis::cmd("PING")
            .query::<String>(&mut check)
            .map_err(unreachable)?;
        let (outgoing, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            node,
            status: Mutex::new(ClusterHealth {
                subscribed: false,
                nodes: 0,
            }),
            local: LocalBus::default(),
            pending: Mutex::new(Vec::new()),
            outgoing,
        });
        let channel = format!("natter:v1:{channel}");
        let beat = lease / 5;
        tokio::spawn(publish_loop(
            client.clone(),
            channel.clone(),
            node,
            rx,
            beat,
        ));
        tokio::spawn(subscribe_loop(
            client,
            channel,
            Arc::downgrade(&inner),
            beat,
            lease,
        ));
        Ok(RedisBus { inner })
    }
}

impl Bus for RedisBus {
    fn publish(&self, event: Event) {
        self.inner.publish(event);
    }

    fn subscribe(&self) -> mpsc::UnboundedReceiver<Vec<Event>> {
        self.inner.local.subscribe()
    }

    fn reorder_wait(&self) -> Duration {
        REORDER_WAIT
    }

    fn status(&self) -> Option<ClusterHealth> {
        Some(*self.inner.status.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Inner {
    fn set_status(&self, subscribed: bool, nodes: usize) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = ClusterHealth {
            subscribed,
            nodes: nodes as u32,
        };
    }
}

/// The URL as logs and errors may show it: without a password.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// `work`, or a timeout error after `limit`: an unreachable host (a partition, a half-open
/// connection) must not stall the bus for the operating system's TCP timeout.
async fn timed<T>(
    limit: Duration,
    work: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from Redis in {} s", limit.as_secs()),
        )))
    })
}

/// Publish this node's batches in order, and a heartbeat every `beat`, until the bus is
/// dropped. Without a connection a batch is dropped (its number is not reused, so the others
/// notice) and the connection is tried again, backing off.
async fn publish_loop(
    client: redis::Client,
    channel: String,
    node: NodeId,
    mut batches: mpsc::UnboundedReceiver<Vec<Event>>,
    beat: Duration,
) {
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut n = 0u64;
    let mut heartbeat = tokio::time::interval(beat);
    let mut backoff = Duration::from_millis(100);
    let mut retry_at = Instant::now();
    loop {
        let envelope = tokio::select! {
            batch = batches.recv() => match batch {
                Some(events) => {
                    n += 1;
                    Envelope { node, n, events }
                }
                None => return,
            },
            _ = heartbeat.tick() => Envelope { node, n, events: Vec::new() },
        };
        let payload = match serde_json::to_vec(&envelope) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("cannot encode a bus batch ({e}); the other nodes will resync");
                continue;
            }
        };
        if conn.is_none() && Instant::now() >= retry_at {
            let connecting = client.get_multiplexed_async_connection();
            match timed(CONNECT_TIMEOUT, connecting).await {
                Ok(c) => {
                    tracing::info!("bus: publishing again");
                    conn = Some(c);
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!("bus: cannot reach Redis to publish ({e})");
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&channel).arg(payload);
        // A publish that hangs (a half-open connection) is as good as lost.
        let published = timed(CONNECT_TIMEOUT, publish.query_async::<i64>(c)).await;
        if let Err(e) = published {
            tracing::warn!(
                "bus: a publish failed ({e}); the other nodes will catch up from the store"
            );
            conn = None;
        }
    }
}

/// Hear the other nodes until the bus is dropped: hand their batches to this node's hub, watch
/// their numbers and leases, and subscribe again (then resync) whenever the subscription is
/// lost, including when this node stops hearing its own heartbeats.
async fn subscribe_loop(
    client: redis::Client,
    channel: String,
    inner: Weak<Inner>,
    beat: Duration,
    lease: Duration,
) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        let subscribed = timed(CONNECT_TIMEOUT, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let pubsub = match subscribed {
            Ok(p) => p,
            Err(e) => {
                if inner.strong_count() == 0 {
                    return;
                }
                tracing::warn!("bus: cannot subscribe ({e}); trying again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        {
            let Some(bus) = inner.upgrade() else { return };
            // What was committed before the subscription (since the snapshot this node started
            // from, or while it was away) is read from the store.
            if !first {
                tracing::info!("bus: subscribed again; catching up from the store");
            }
            bus.local.deliver(vec![Event::Resync]);
            bus.set_status(true, 0);
            // Everyone (this node too) says who is on it: what this node knew may be stale.
            bus.publish(Event::PresenceWanted { of: None });
        }
        first = false;
        if !listen(pubsub, &inner, beat, lease).await {
            return;
        }
        if let Some(bus) = inner.upgrade() {
            bus.set_status(false, 0);
        }
        tracing::warn!("bus: lost the subscription; subscribing again");
    }
}

/// One subscription's life. Returns false when the bus was dropped, true when the
/// subscription was lost.
async fn listen(
    pubsub: redis::aio::PubSub,
    inner: &Weak<Inner>,
    beat: Duration,
    lease: Duration,
) -> bool {
    let mut messages = pubsub.into_on_message();
    // Each other node: when it was last heard and its last batch number.
    let mut heard: HashMap<NodeId, (Instant, u64)> = HashMap::new();
    let mut own_heard = Instant::now();
    let mut check = tokio::time::interval(beat);
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return true };
                let Some(bus) = inner.upgrade() else { return false };
                let now = Instant::now();
                let envelope: Envelope = match serde_json::from_slice(message.get_payload_bytes()) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!("bus: a batch this node cannot read ({e}): is every node the same version?");
                        continue;
                    }
                };
                if envelope.node == bus.node {
                    own_heard = now;
                    continue;
                }
                let missed = match heard.get_mut(&envelope.node) {
                    None => {
                        heard.insert(envelope.node, (now, envelope.n));
                        bus.set_status(true, heard.len());
                        tracing::debug!(node = format_args!("{:x}", envelope.node), "bus: a node joined");
                        // Only that node's users are unknown here (the others' are as they were):
                        // asking everyone made every node send its whole list once per join.
                        bus.publish(Event::PresenceWanted { of: Some(envelope.node) });
                        false
                    }
                    Some((at, last)) => {
                        let expected = if envelope.events.is_empty() { *last } else { *last + 1 };
                        let missed = envelope.n > expected;
                        *at = now;
                        *last = (*last).max(envelope.n);
                        missed
                    }
                };
                if missed {
                    tracing::info!(node = format_args!("{:x}", envelope.node), "bus: a batch was lost; catching up from the store");
                    bus.local.deliver(vec![Event::Resync]);
                }
                if !envelope.events.is_empty() {
                    tracing::trace!(node = format_args!("{:x}", envelope.node), n = envelope.n, events = envelope.events.len(), "bus: heard a batch");
                    bus.local.deliver(envelope.events);
                }
            }
            _ = check.tick() => {
                let Some(bus) = inner.upgrade() else { return false };
                let now = Instant::now();
                if now.duration_since(own_heard) > 3 * beat {
                    tracing::warn!("bus: not hearing this node's own heartbeats");
                    return true;
                }
                let gone: Vec<NodeId> = heard
                    .iter()
                    .filter(|(_, (at, _))| now.duration_since(*at) > lease)
                    .map(|(node, _)| *node)
                    .collect();
                for node in gone {
                    heard.remove(&node);
                    bus.set_status(true, heard.len());
                    tracing::info!(node = format_args!("{node:x}"), "bus: a node's lease ran out; its users are offline");
                    bus.local.deliver(vec![Event::NodeGone { node }]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bad bus addresses are refused at start with a message naming them: not a Redis URL,
    /// nothing listening, and a listener that accepts but never answers (within the timeout).
    #[tokio::test]
    async fn a_bus_that_cannot_be_used_is_refused_at_start() {
        let lease = Duration::from_secs(15);
        let err = RedisBus::start("redis://[::1", "natter", 1, lease)
            .err()
            .unwrap();
        assert!(matches!(err, RedisBusError::Url { .. }), "{err}");

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let url = format!("redis://127.0.0.1:{port}");
        let err = RedisBus::start(&url, "natter", 1, lease).err().unwrap();
        assert!(matches!(err, RedisBusError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains(&url), "{err}");

        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}", silent.local_addr().unwrap());
        let held = std::thread::spawn(move || silent.accept().map(|(socket, _)| socket));
        let started = std::time::Instant::now();
        let err = RedisBus::start(&url, "natter", 1, lease).err().unwrap();
        assert!(matches!(err, RedisBusError::Unreachable { .. }), "{err}");
        // The connection's setup and the PING each wait at most the timeout.
        assert!(
            started.elapsed() < CONNECT_TIMEOUT * 3,
            "{:?}",
            started.elapsed()
        );
        drop(held);
    }

    #[test]
    fn the_password_is_never_shown() {
        assert_eq!(
            redact("redis://user:secret@redis.example:6379"),
            "redis://user:***@redis.example:6379"
        );
        assert_eq!(
            redact("redis://redis.example:6379"),
            "redis://redis.example:6379"
        );
    }
}
