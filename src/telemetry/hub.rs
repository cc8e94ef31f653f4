//! Fan-out of encoded events to subscribers, each with its own bounded
//! queue. Publishing never waits: a full queue drops the event and counts
//! it for that subscriber only. `stats` are never dropped: a subscriber
//! that falls behind gets them first, coalesced into one exact aggregate.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::event::{Dropped, Message};
use super::filter::{EventFacts, Filter};
use super::metrics::Metrics;
use super::stats::StatsSnapshot;

/// Request/tcp events a subscriber may have waiting; past that, new events
/// are dropped for it (and reported with a `dropped` message).
pub const SUBSCRIBER_QUEUE: usize = 4096;

/// The subscribers of one sidecar.
pub struct Hub {
    subscribers: Mutex<Vec<Arc<Subscriber>>>,
    max_subscribers: usize,
    sidecar: String,
    metrics: Arc<Metrics>,
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
#[error("too many subscribers (the limit is {0}); try again later or raise --max-subscribers")]
pub struct TooManySubscribers(pub usize);

/// One subscriber's queue, written by the telemetry task and read by the
/// subscriber's connection task.
pub struct Subscriber {
    filter: Filter,
    queue: Mutex<Queue>,
    ready: Notify,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Utf8Bytes>,
    stats: Option<PendingStats>,
    /// Events missed since the last `dropped` message.
    missed: u64,
    missed_total: u64,
}

enum PendingStats {
    /// One interval, encoded once and shared by every subscriber.
    Shared(Arc<StatsSnapshot>, Utf8Bytes),
    /// Several intervals this subscriber fell behind on, merged.
    Coalesced(StatsSnapshot),
}

/// What a subscriber's connection sends next, in order.
#[derive(Default)]
pub struct Batch {
    pub stats: Option<Utf8Bytes>,
    pub events: Vec<Utf8Bytes>,
    pub dropped: Option<Utf8Bytes>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.stats.is_none() && self.events.is_empty() && self.dropped.is_none()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind;
    // the queue is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    pub fn new(sidecar: String, max_subscribers: usize, metrics: Arc<Metrics>) -> Self {
        Hub {
            subscribers: Mutex::new(Vec::new()),
            max_subscribers,
            sidecar,
            metrics,
        }
    }

    pub fn subscribe(&self, filter: Filter) -> Result<Arc<Subscriber>, TooManySubscribers> {
        let mut subscribers = lock(&self.subscribers);
        if subscribers.len() >= self.max_subscribers {
            return Err(TooManySubscribers(self.max_subscribers));
        }
        let subscriber = Arc::new(Subscriber {
            filter,
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
        });
        subscribers.push(subscriber.clone());
        self.metrics.subscribers.set(subscribers.len() as i64);
        Ok(subscriber)
    }

    pub fn unsubscribe(&self, subscriber: &Arc<Subscriber>) {
        let mut subscribers = lock(&self.subscribers);
        subscribers.retain(|s| !Arc::ptr_eq(s, subscriber));
        self.metrics.subscribers.set(subscribers.len() as i64);
    }

    pub fn subscriber_count(&self) -> usize {
        lock(&self.subscribers).len()
    }

    /// Whether anyone listens (so encoding can be skipped when nobody does).
    pub fn has_subscribers(&self) -> bool {
        self.subscriber_count() > 0
    }

    /// Offers an encoded request/tcp event to every subscriber whose filter
    /// matches `facts`. Never waits.
    pub fn publish(&self, facts: &EventFacts<'_>, encoded: &Utf8Bytes) {
        let subscribers = lock(&self.subscribers);
        for subscriber in subscribers.iter() {
            if !subscriber.filter.matches(facts) {
                continue;
            }
            let mut queue = lock(&subscriber.queue);
            if queue.events.len() < SUBSCRIBER_QUEUE {
                queue.events.push_back(encoded.clone());
                drop(queue);
                subscriber.ready.notify_one();
            } else {
                queue.missed += 1;
                queue.missed_total += 1;
                self.metrics.events_dropped.inc();
            }
        }
    }

    /// Hands an interval's stats to every subscriber; a subscriber still
    /// holding an unsent one gets the two merged.
    pub fn publish_stats(&self, snapshot: Arc<StatsSnapshot>) {
        let subscribers = lock(&self.subscribers);
        if subscribers.is_empty() {
            // Compressing every upstream's histograms costs about as much
            // as a few hundred requests; nobody would read them.
            return;
        }
        // Encoded under the lock, which only subscribing and leaving take:
        // the data path never waits for it.
        let encoded = encode(&Message::Stats(snapshot.to_message(&self.sidecar)));
        for subscriber in subscribers.iter() {
            let mut queue = lock(&subscriber.queue);
            queue.stats = Some(match queue.stats.take() {
                None => PendingStats::Shared(snapshot.clone(), encoded.clone()),
                Some(PendingStats::Shared(earlier, _)) => {
                    let mut merged = (*earlier).clone();
                    merged.merge(&snapshot);
                    PendingStats::Coalesced(merged)
                }
                Some(PendingStats::Coalesced(mut merged)) => {
                    merged.merge(&snapshot);
                    PendingStats::Coalesced(merged)
                }
            });
            drop(queue);
            subscriber.ready.notify_one();
        }
    }

    pub fn sidecar(&self) -> &str {
        &self.sidecar
    }
}

impl Subscriber {
    /// Waits until something is queued.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Takes what is queued: stats first, then up to `max` events, then a
    /// `dropped` notice if events were missed (the queue has room again).
    pub fn take(&self, max: usize, sidecar: &str) -> Batch {
        let mut queue = lock(&self.queue);
        let stats = queue.stats.take().map(|pending| match pending {
            PendingStats::Shared(_, encoded) => encoded,
            PendingStats::Coalesced(merged) => encode(&Message::Stats(merged.to_message(sidecar))),
        });
        let n = queue.events.len().min(max);
        let events: Vec<Utf8Bytes> = queue.events.drain(..n).collect();
        let dropped = (queue.missed > 0).then(|| {
            let notice = Dropped {
                count: queue.missed,
                total: queue.missed_total,
            };
            queue.missed = 0;
            encode(&Message::Dropped(notice))
        });
        Batch {
            stats,
            events,
            dropped,
        }
    }
}

/// Encodes a message as the JSON text of one frame: text known to be
/// UTF-8, which the WebSocket sends without checking it again.
pub fn encode(message: &Message) -> Utf8Bytes {
    // Serializing these plain types to JSON cannot fail.
    Utf8Bytes::from(serde_json::to_string(message).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::record::Direction;
    use std::time::{Duration, SystemTime};

    fn facts() -> EventFacts<'static> {
        EventFacts {
            direction: Direction::Inbound,
            authority: "web",
            failed: false,
            duration_ms: 1.0,
        }
    }

    fn hub() -> Hub {
        Hub::new("s".into(), 2, Arc::new(Metrics::new()))
    }

    #[test]
    fn a_full_queue_drops_counts_and_reports_once_there_is_room() {
        let hub = hub();
        let sub = hub.subscribe(Filter::default()).expect("room");
        let event = Utf8Bytes::from_static("{}");
        for _ in 0..SUBSCRIBER_QUEUE + 7 {
            hub.publish(&facts(), &event);
        }
        let batch = sub.take(usize::MAX, "s");
        assert_eq!(batch.events.len(), SUBSCRIBER_QUEUE);
        let dropped = batch.dropped.expect("a dropped notice");
        assert_eq!(
            dropped.as_str(),
            r#"{"type":"dropped","count":7,"total":7}"#
        );
        hub.publish(&facts(), &event);
        let batch = sub.take(usize::MAX, "s");
        assert_eq!(batch.events.len(), 1);
        assert!(batch.dropped.is_none());
    }

    #[test]
    fn stats_are_never_dropped_and_coalesce_when_unsent() {
        let hub = hub();
        let sub = hub.subscribe(Filter::default()).expect("room");
        for _ in 0..3 {
            let snapshot = StatsSnapshot {
                end: SystemTime::now(),
                interval: Duration::from_secs(1),
                upstreams: Vec::new(),
            };
            hub.publish_stats(Arc::new(snapshot));
        }
        let stats = sub.take(10, "s").stats.expect("stats pending");
        let message: Message = serde_json::from_str(&stats).expect("valid json");
        let Message::Stats(stats) = message else {
            panic!("not stats")
        };
        assert_eq!(stats.interval_ms, 3000);
    }

    #[test]
    fn subscribers_past_the_limit_are_refused() {
        let hub = hub();
        let a = hub.subscribe(Filter::default()).expect("room");
        let _b = hub.subscribe(Filter::default()).expect("room");
        assert!(hub.subscribe(Filter::default()).is_err());
        hub.unsubscribe(&a);
        assert!(hub.subscribe(Filter::default()).is_ok());
    }
}
