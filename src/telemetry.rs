//! What the sidecar knows about the traffic it carries and how it tells:
//! records from the proxy are folded into exact per-second aggregates and
//! Prometheus metrics, and fanned out as events to WebSocket subscribers —
//! all in one task that the data path never waits for.

pub mod admin;
pub mod authority;
pub mod hub;
pub mod metrics;
pub mod record;
pub mod route;
pub mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use foldhash::HashMap;
use tokio_util::sync::CancellationToken;

pub use record::{
    Direction, ErrorKind, HttpProtocol, Record, RecordReceiver, Recorder, RequestRecord,
    TcpProtocol, TcpRecord, is_failure,
};

use crate::schema::{Message, RequestEncoder, TcpEvent};
use authority::AuthorityCap;
use hub::{Hub, HubLimits};
use metrics::{Metrics, UpstreamMetrics};
use stats::Aggregator;

/// How the telemetry behaves.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// How often a `stats` message is sent.
    pub stats_interval: Duration,
    /// What the subscribers' hub holds at most: subscribers (more are
    /// refused with 503), bytes queued per subscriber, history kept.
    pub hub: HubLimits,
    /// Distinct authorities tracked in aggregates and metrics; more are
    /// counted as `other`.
    pub max_authorities: usize,
    /// Routes and clients per upstream with counts of their own.
    pub breakdown: stats::Limits,
    /// When set, `/events` and `/metrics` require this bearer token.
    pub admin_token: Option<String>,
    /// How long an admin client may take to send its request head (or
    /// WebSocket handshake) before it is disconnected.
    pub handshake_timeout: Duration,
    /// How long a write to a subscriber may stall (and a subscriber stay
    /// silent after a ping) before it is closed and its slot freed.
    pub write_timeout: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            stats_interval: Duration::from_secs(1),
            hub: HubLimits::default(),
            max_authorities: 1000,
            breakdown: stats::Limits::default(),
            admin_token: None,
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// How many records the telemetry task takes from the channel at once.
const RECORD_BATCH: usize = 256;

/// The telemetry of one sidecar: subscribers and metrics, shared with the
/// admin server.
pub struct Telemetry {
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub config: TelemetryConfig,
}

impl Telemetry {
    pub fn new(sidecar: &str, config: TelemetryConfig) -> Telemetry {
        let metrics = Arc::new(Metrics::new());
        let hub = Arc::new(Hub::new(sidecar.to_owned(), config.hub, metrics.clone()));
        Telemetry {
            hub,
            metrics,
            config,
        }
    }

    /// Consumes records until `shutdown`, publishing events as they come and
    /// `stats` every interval (and once more on the way out).
    pub async fn run(
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        config: TelemetryConfig,
        mut records: RecordReceiver,
        recorder: Recorder,
        shutdown: CancellationToken,
    ) {
        let interval = config.stats_interval.max(Duration::from_millis(10));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sink = RecordSink {
            hub: &hub,
            metrics: &metrics,
            authorities: AuthorityCap::new(config.max_authorities),
            aggregator: Aggregator::new(config.breakdown),
            interval_start: Instant::now(),
            records_dropped: 0,
            fields_truncated: 0,
            upstream_metrics: HashMap::default(),
            encoder: RequestEncoder::default(),
        };
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        loop {
            tokio::select! {
                biased;
                _ = ticker.tick() => sink.emit_stats(&recorder),
                n = records.recv_many(&mut batch, RECORD_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    for record in batch.drain(..) {
                        sink.fold(record);
                    }
                }
                _ = shutdown.cancelled() => break,
            }
        }
        while let Ok(record) = records.try_recv() {
            sink.fold(record);
        }
        sink.emit_stats(&recorder);
    }
}

/// Where the telemetry task takes each record: into the event hub, the
/// per-second aggregates and the Prometheus metrics.
struct RecordSink<'a> {
    hub: &'a Hub,
    metrics: &'a Metrics,
    authorities: AuthorityCap,
    aggregator: Aggregator,
    interval_start: Instant,
    records_dropped: u64,
    fields_truncated: u64,
    /// Metrics by authority label, inbound and outbound: at most
    /// `max_authorities` + 1 (`other`) labels, as [`AuthorityCap`] gives.
    upstream_metrics: HashMap<String, [Option<UpstreamMetrics>; 2]>,
    encoder: RequestEncoder,
}

impl RecordSink<'_> {
    fn fold(&mut self, record: Record) {
        match record {
            Record::Request(record) => {
                let admission = self.authorities.admit(&record.authority);
                if let Some(evicted) = admission.evicted
                    && let Some(slots) = self.upstream_metrics.remove(&evicted)
                {
                    for upstream in slots.into_iter().flatten() {
                        self.metrics.forget(upstream);
                    }
                }
                let authority = admission.label;
                if !self.upstream_metrics.contains_key(authority) {
                    self.upstream_metrics
                        .insert(authority.to_owned(), [None, None]);
                }
                if let Some(slots) = self.upstream_metrics.get_mut(authority) {
                    let slot = &mut slots[record.direction as usize];
                    let upstream = slot
                        .get_or_insert_with(|| self.metrics.upstream(record.direction, authority));
                    self.metrics.observe_request(upstream, &record);
                }
                self.aggregator.add(&record, authority);
                if self.hub.has_subscribers() {
                    // Room for a typical event, so encoding does not grow
                    // the buffer step by step.
                    let mut encoded = String::with_capacity(512);
                    self.encoder.encode(&record, &mut encoded);
                    self.hub.publish(&record, &encoded.into());
                }
            }
            Record::Tcp(record) => {
                self.metrics.observe_tcp(&record);
                if self.hub.has_subscribers() {
                    let event = TcpEvent::from(&record);
                    let server = record.server.map(|s| s.to_string()).unwrap_or_default();
                    let facts = crate::filter::TcpFacts {
                        record: &record,
                        authority: record.sni.as_deref().unwrap_or(&server),
                    };
                    self.hub.publish(&facts, &hub::encode(&Message::Tcp(event)));
                }
            }
        }
    }

    fn emit_stats(&mut self, recorder: &Recorder) {
        let now = Instant::now();
        let snapshot = self
            .aggregator
            .take(SystemTime::now(), now.duration_since(self.interval_start));
        self.authorities
            .tick(now.duration_since(self.interval_start));
        self.interval_start = now;
        self.hub.publish_stats(Arc::new(snapshot));
        let dropped = recorder.dropped();
        self.metrics
            .records_dropped
            .inc_by(dropped - self.records_dropped);
        self.records_dropped = dropped;
        let truncated = recorder.truncated();
        self.metrics
            .fields_truncated
            .inc_by(truncated - self.fields_truncated);
        self.fields_truncated = truncated;
    }
}
