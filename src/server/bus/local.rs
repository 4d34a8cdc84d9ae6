//! The in-process bus: one node, its hub as the subscriber. Publishing is a channel send, so
//! the store's writer thread only hands events over; the fan-out happens on the hub's fan-out thread.
//! Events published inside [`super::hold_deliveries`] (a commit's) go out as one batch.
//! The channels are unbounded because what feeds them is bounded already: the writer commits
//! at most one batch at a time, and the hub drains what is there each turn.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{deliver_when_released, Bus, Event};

/// See the module docs.
#[derive(Default)]
pub struct LocalBus(Arc<Inner>);

#[derive(Default)]
struct Inner {
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Vec<Event>>>>,
    /// Published, not yet delivered (held until the end of a `hold_deliveries`).
    pending: Mutex<Vec<Event>>,
}

impl Inner {
    fn flush(&self) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if batch.is_empty() {
            return;
        }
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subscribers.retain(|s| !s.is_closed());
        if let Some((last, others)) = subscribers.split_last() {
            for s in others {
                let _ = s.send(batch.clone());
            }
            let _ = last.send(batch);
        }
    }
}

impl LocalBus {
    /// Hand `batch` to every subscriber now, as one batch (a bus between nodes delivers what
    /// it heard from the others this way).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn deliver(&self, batch: Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        let mut subscribers = self.0.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subscribers.retain(|s| !s.is_closed());
        for s in subscribers.iter() {
            let _ = s.send(batch.clone());
        }
    }
}

impl Bus for LocalBus {
    fn publish(&self, event: Event) {
        let first = {
            let mut pending = self.0.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.push(event);
            pending.len() == 1
        };
        if first {
            let inner = self.0.clone();
            deliver_when_released(move || inner.flush());
        }
    }

    fn subscribe(&self) -> mpsc::UnboundedReceiver<Vec<Event>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.0
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::super::hold_deliveries;
    use super::*;

    fn typing(conv: i64) -> Event {
        Event::Typing { user: 1, conv }
    }

    fn convs(batch: Vec<Event>) -> Vec<i64> {
        batch
            .into_iter()
            .map(|e| match e {
                Event::Typing { conv, .. } => conv,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_later_event_in_order() {
        let bus = LocalBus::default();
        bus.publish(typing(0));
        let (mut a, mut b) = (bus.subscribe(), bus.subscribe());
        for conv in 1..=3 {
            bus.publish(typing(conv));
        }
        for rx in [&mut a, &mut b] {
            let got: Vec<i64> = (0..3).flat_map(|_| convs(rx.try_recv().unwrap())).collect();
            assert_eq!(got, [1, 2, 3], "outside a hold each event goes at once");
            assert!(rx.try_recv().is_err());
        }
        drop(a);
        bus.publish(typing(4));
        assert_eq!(convs(b.try_recv().unwrap()), [4]);
        assert_eq!(
            bus.0.subscribers.lock().unwrap().len(),
            1,
            "a dropped subscriber is let go"
        );
    }

    /// A commit's events, published inside a hold, reach the subscriber as one batch, and
    /// only when the hold ends.
    #[tokio::test]
    async fn events_published_in_a_hold_arrive_as_one_batch_when_it_ends() {
        let bus = LocalBus::default();
        let mut rx = bus.subscribe();
        hold_deliveries(|| {
            for conv in 1..=5 {
                bus.publish(typing(conv));
            }
            assert!(rx.try_recv().is_err(), "nothing before the hold ends");
        });
        assert_eq!(convs(rx.try_recv().unwrap()), [1, 2, 3, 4, 5]);
        assert!(rx.try_recv().is_err());
    }
}
