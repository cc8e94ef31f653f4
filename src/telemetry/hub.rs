//! Fan-out of encoded events to subscribers, each with its own queue,
//! bounded by count and by bytes. Publishing never waits: a full queue
//! drops the event and counts it for that subscriber only. `stats` are
//! never dropped: a subscriber that falls behind gets them first, coalesced
//! into one exact aggregate.
//!
//! The hub also keeps the last intervals' `stats` (the sidecar's
//! `--history`, bounded by bytes too): a new subscriber gets them first,
//! marked `"backfill":true`, so that attaching shows figures at once and a
//! reconnect after a restart of the UI loses nothing the sidecar counted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::metrics::Metrics;
use super::stats::StatsSnapshot;
use crate::filter::{Facts, FilterExpr};
use crate::schema::{Dropped, Message};

/// Request/tcp events a subscriber may have waiting; past that, or past
/// its bytes (see [`HubLimits::queue_bytes`]), new events are dropped for
/// it (and reported with a `dropped` message).
pub const SUBSCRIBER_QUEUE: usize = 4096;

/// What a hub holds at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubLimits {
    /// Subscribers beyond this many are refused.
    pub subscribers: usize,
    /// Bytes of events a subscriber may have waiting. Events are shared
    /// between subscribers, so this bounds what all of them hold together.
    pub queue_bytes: usize,
    /// How far back `stats` are kept for new subscribers.
    pub history: Duration,
    /// Bytes of `stats` kept for new subscribers: a sidecar with many
    /// upstreams keeps less than `history`.
    pub history_bytes: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            subscribers: 16,
            queue_bytes: 4 << 20,
            history: Duration::from_secs(300),
            history_bytes: 8 << 20,
        }
    }
}

/// The subscribers of one sidecar.
pub struct Hub {
    subscribers: Mutex<Vec<Arc<Subscriber>>>,
    limits: HubLimits,
    sidecar: String,
    metrics: Arc<Metrics>,
    history: Mutex<History>,
}

/// The last intervals' `stats`, encoded as a new subscriber gets them.
#[derive(Default)]
struct History {
    /// The end of each interval and its message, oldest first.
    intervals: VecDeque<(SystemTime, Utf8Bytes)>,
    bytes: usize,
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
#[error("too many subscribers (the limit is {0}); try again later or raise --max-subscribers")]
pub struct TooManySubscribers(pub usize);

/// One subscriber's queue, written by the telemetry task and read by the
/// subscriber's connection task.
pub struct Subscriber {
    filter: FilterExpr,
    queue: Mutex<Queue>,
    ready: Notify,
}

#[derive(Default)]
struct Queue {
    /// The history as it was when the subscription began, sent first.
    backfill: VecDeque<Utf8Bytes>,
    events: VecDeque<Utf8Bytes>,
    /// Bytes of `events`.
    bytes: usize,
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
    pub backfill: Vec<Utf8Bytes>,
    pub stats: Option<Utf8Bytes>,
    pub events: Vec<Utf8Bytes>,
    pub dropped: Option<Utf8Bytes>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.backfill.is_empty()
            && self.stats.is_none()
            && self.events.is_empty()
            && self.dropped.is_none()
    }

    /// The messages, in the order they are sent.
    pub fn into_texts(self) -> impl Iterator<Item = Utf8Bytes> {
        self.backfill
            .into_iter()
            .chain(self.stats)
            .chain(self.events)
            .chain(self.dropped)
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
    pub fn new(sidecar: String, limits: HubLimits, metrics: Arc<Metrics>) -> Self {
        Hub {
            subscribers: Mutex::new(Vec::new()),
            limits,
            sidecar,
            metrics,
            history: Mutex::new(History::default()),
        }
    }

    /// A new subscriber, whose queue starts with the history (taken under
    /// the subscribers' lock, which publishing stats takes too: no interval
    /// is both in the history given and published to it, none is missed).
    pub fn subscribe(&self, filter: FilterExpr) -> Result<Arc<Subscriber>, TooManySubscribers> {
        let mut subscribers = lock(&self.subscribers);
        if subscribers.len() >= self.limits.subscribers {
            return Err(TooManySubscribers(self.limits.subscribers));
        }
        let backfill = lock(&self.history)
            .intervals
            .iter()
            .map(|(_, encoded)| encoded.clone())
            .collect();
        let subscriber = Arc::new(Subscriber {
            filter,
            queue: Mutex::new(Queue {
                backfill,
                ..Queue::default()
            }),
            ready: Notify::new(),
        });
        subscribers.push(subscriber.clone());
        self.metrics.subscribers.set(subscribers.len() as i64);
        subscriber.ready.notify_one();
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
    pub fn publish(&self, facts: &dyn Facts, encoded: &Utf8Bytes) {
        let subscribers = lock(&self.subscribers);
        for subscriber in subscribers.iter() {
            if !subscriber.filter.matches(facts) {
                continue;
            }
            let mut queue = lock(&subscriber.queue);
            let fits = queue.events.len() < SUBSCRIBER_QUEUE
                && queue.bytes + encoded.len() <= self.limits.queue_bytes;
            if fits {
                queue.bytes += encoded.len();
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

    /// Hands an interval's stats to every subscriber (a subscriber still
    /// holding an unsent one gets the two merged), and keeps it for those
    /// to come.
    pub fn publish_stats(&self, snapshot: Arc<StatsSnapshot>) {
        let subscribers = lock(&self.subscribers);
        let keep = !self.limits.history.is_zero() && self.limits.history_bytes > 0;
        if subscribers.is_empty() && !keep {
            // Compressing every upstream's histograms costs about as much
            // as a few hundred requests; nobody would read them.
            return;
        }
        // Encoded under the lock, which only subscribing and leaving take:
        // the data path never waits for it.
        let encoded = encode(&Message::Stats(snapshot.to_message(&self.sidecar)));
        if keep {
            self.remember(snapshot.end, &encoded);
        }
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

    /// Keeps an interval's stats, marked as backfill, and forgets those
    /// past the history's duration or bytes.
    fn remember(&self, end: SystemTime, encoded: &Utf8Bytes) {
        let Some(backfill) = as_backfill(encoded) else {
            return;
        };
        let mut history = lock(&self.history);
        history.bytes += backfill.len();
        history.intervals.push_back((end, backfill));
        let oldest = end.checked_sub(self.limits.history);
        while let Some((first_end, first)) = history.intervals.front() {
            let too_old = oldest.is_some_and(|oldest| *first_end <= oldest);
            if !too_old && history.bytes <= self.limits.history_bytes {
                break;
            }
            history.bytes -= first.len();
            history.intervals.pop_front();
        }
    }

    /// The intervals kept for new subscribers, oldest first.
    pub fn history_len(&self) -> usize {
        lock(&self.history).intervals.len()
    }
}

/// A `stats` message's text marked `"backfill":true`: spliced in after its
/// type, which serde writes first.
fn as_backfill(encoded: &Utf8Bytes) -> Option<Utf8Bytes> {
    const PREFIX: &str = r#"{"type":"stats","#;
    let rest = encoded.as_str().strip_prefix(PREFIX)?;
    Some(Utf8Bytes::from(format!(
        r#"{PREFIX}"backfill":true,{rest}"#
    )))
}

impl Subscriber {
    /// Waits until something is queued.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Takes what is queued: the backfill, stats, then up to `max` events,
    /// then a `dropped` notice if events were missed (the queue has room
    /// again).
    pub fn take(&self, max: usize, sidecar: &str) -> Batch {
        let mut queue = lock(&self.queue);
        let backfill = queue.backfill.drain(..).collect();
        let stats = queue.stats.take().map(|pending| match pending {
            PendingStats::Shared(_, encoded) => encoded,
            PendingStats::Coalesced(merged) => encode(&Message::Stats(merged.to_message(sidecar))),
        });
        let n = queue.events.len().min(max);
        let events: Vec<Utf8Bytes> = queue.events.drain(..n).collect();
        let taken: usize = events.iter().map(|e| e.len()).sum();
        queue.bytes -= taken;
        let dropped = (queue.missed > 0).then(|| {
            let notice = Dropped {
                count: queue.missed,
                total: queue.missed_total,
            };
            queue.missed = 0;
            encode(&Message::Dropped(notice))
        });
        Batch {
            backfill,
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
    use crate::schema::Stats;
    use crate::telemetry::record::Direction;
    use std::time::{Duration, SystemTime};

    fn facts() -> crate::telemetry::RequestRecord {
        crate::telemetry::RequestRecord {
            start: SystemTime::UNIX_EPOCH,
            sidecar: "s".into(),
            direction: Direction::Inbound,
            protocol: crate::telemetry::HttpProtocol::Http1,
            client: ([127, 0, 0, 1], 1000).into(),
            server: None,
            authority: "web".into(),
            method: None,
            path: None,
            status: Some(200),
            grpc_status: None,
            grpc_message: None,
            error: None,
            duration: Duration::from_millis(1),
            ttfb: None,
            req_bytes: 0,
            resp_bytes: 0,
            headers: Vec::new(),
        }
    }

    fn hub() -> Hub {
        let limits = HubLimits {
            subscribers: 2,
            ..HubLimits::default()
        };
        Hub::new("s".into(), limits, Arc::new(Metrics::new()))
    }

    #[test]
    fn a_full_queue_drops_counts_and_reports_once_there_is_room() {
        let hub = hub();
        let sub = hub.subscribe(FilterExpr::default()).expect("room");
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
        let sub = hub.subscribe(FilterExpr::default()).expect("room");
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
    fn a_queue_is_bounded_by_bytes_as_well_as_by_count() {
        let limits = HubLimits {
            queue_bytes: 1 << 20,
            ..HubLimits::default()
        };
        let hub = Hub::new("s".into(), limits, Arc::new(Metrics::new()));
        let sub = hub.subscribe(FilterExpr::default()).expect("room");
        // Events of 60 KB paths: 17 fit in a mebibyte, 4096 would be 245 MB.
        let event = Utf8Bytes::from("x".repeat(60_000));
        for _ in 0..100 {
            hub.publish(&facts(), &event);
        }
        let batch = sub.take(usize::MAX, "s");
        assert_eq!(batch.events.len(), 17);
        let dropped: Message =
            serde_json::from_str(&batch.dropped.expect("a dropped notice")).expect("json");
        assert_eq!(
            dropped,
            Message::Dropped(Dropped {
                count: 83,
                total: 83
            })
        );
        // Taken, the room is there again.
        hub.publish(&facts(), &event);
        assert_eq!(sub.take(usize::MAX, "s").events.len(), 1);
    }

    fn snapshot_at(secs: u64) -> Arc<StatsSnapshot> {
        Arc::new(StatsSnapshot {
            end: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            interval: Duration::from_secs(1),
            upstreams: Vec::new(),
        })
    }

    #[test]
    fn new_subscribers_get_the_history_first_marked_as_backfill() {
        let limits = HubLimits {
            history: Duration::from_secs(5),
            ..HubLimits::default()
        };
        let hub = Hub::new("s".into(), limits, Arc::new(Metrics::new()));
        for secs in 1_000..1_010 {
            hub.publish_stats(snapshot_at(secs));
        }
        assert_eq!(hub.history_len(), 5, "five seconds of history");
        let sub = hub.subscribe(FilterExpr::default()).expect("room");
        hub.publish_stats(snapshot_at(1_010));
        let batch = sub.take(10, "s");
        let backfill: Vec<Stats> = batch
            .backfill
            .iter()
            .map(|text| match serde_json::from_str(text) {
                Ok(Message::Stats(stats)) => stats,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(backfill.iter().all(|s| s.backfill));
        let ends: Vec<&str> = backfill.iter().map(|s| &s.ts[17..19]).collect();
        assert_eq!(ends, ["45", "46", "47", "48", "49"]);
        let live: Message = serde_json::from_str(&batch.stats.expect("live stats")).expect("json");
        assert!(matches!(live, Message::Stats(s) if !s.backfill && s.ts.contains(":16:50")));
    }

    #[test]
    fn the_history_is_bounded_by_bytes() {
        let limits = HubLimits {
            history_bytes: 1000,
            ..HubLimits::default()
        };
        let hub = Hub::new("s".into(), limits, Arc::new(Metrics::new()));
        for secs in 1_000..1_100 {
            hub.publish_stats(snapshot_at(secs));
        }
        let kept = hub.history_len();
        assert!((1..100).contains(&kept), "{kept}");
        let sub = hub.subscribe(FilterExpr::default()).expect("room");
        let bytes: usize = sub.take(0, "s").backfill.iter().map(|e| e.len()).sum();
        assert!(bytes <= 1000);
    }

    #[test]
    fn subscribers_past_the_limit_are_refused() {
        let hub = hub();
        let a = hub.subscribe(FilterExpr::default()).expect("room");
        let _b = hub.subscribe(FilterExpr::default()).expect("room");
        assert!(hub.subscribe(FilterExpr::default()).is_err());
        hub.unsubscribe(&a);
        assert!(hub.subscribe(FilterExpr::default()).is_ok());
    }
}
