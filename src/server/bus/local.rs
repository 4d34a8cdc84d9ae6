//! The in-process bus: one node, its hub as the subscriber. Publishing is a channel send, so
//! the store's writer thread only hands events over; the fan-out happens on the hub's task.
//! The channels are unbounded because what feeds them is bounded already: the writer commits
//! at most one batch at a time, and the hub drains a batch per turn.

use std::sync::Mutex;

use tokio::sync::mpsc;

use super::{Bus, Event};

/// See the module docs.
#[derive(Default)]
pub struct LocalBus {
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Event>>>,
}

impl Bus for LocalBus {
    fn publish(&self, event: Event) {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subscribers.retain(|s| !s.is_closed());
        if let Some((last, others)) = subscribers.split_last() {
            for s in others {
                let _ = s.send(event.clone());
            }
            let _ = last.send(event);
        }
    }

    fn subscribe(&self) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typing(conv: i64) -> Event {
        Event::Typing { user: 1, conv }
    }

    fn conv_of(e: Event) -> i64 {
        match e {
            Event::Typing { conv, .. } => conv,
            other => panic!("{other:?}"),
        }
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
            let got: Vec<i64> = (0..3).map(|_| conv_of(rx.try_recv().unwrap())).collect();
            assert_eq!(got, [1, 2, 3]);
            assert!(rx.try_recv().is_err());
        }
        drop(a);
        bus.publish(typing(4));
        assert_eq!(conv_of(b.try_recv().unwrap()), 4);
        assert_eq!(
            bus.subscribers.lock().unwrap().len(),
            1,
            "a dropped subscriber is let go"
        );
    }
}
