//! Prometheus metrics (`GET /metrics`, OpenMetrics text via the
//! `prometheus-client` crate), updated by the telemetry task, never on the
//! data path.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::record::{Direction, HttpProtocol, RequestRecord, TcpRecord};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    direction: &'static str,
    authority: String,
    protocol: &'static str,
    status_class: &'static str,
    grpc_status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    direction: &'static str,
    authority: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    direction: &'static str,
    authority: String,
    flow: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TcpLabels {
    direction: &'static str,
    protocol: &'static str,
}

/// The `grpc_status` label of a code: the 17 codes gRPC defines, else
/// `other` (an upstream may send any number; labels must stay few).
fn grpc_label(code: u32) -> &'static str {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| CODES.get(i))
        .copied()
        .unwrap_or("other")
}

fn duration_histogram() -> Histogram {
    // 0.5 ms doubling to 65 s: 18 buckets spanning 0.5 ms to 60 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// The metrics of one (direction, authority), looked up once and kept by
/// the telemetry task: counting a request then builds no label set and
/// hashes nothing. The request counters of an upstream are few (one per
/// protocol, status class and gRPC status seen), so a list will do.
pub struct UpstreamMetrics {
    direction: Direction,
    authority: String,
    durations: Histogram,
    failures: Counter,
    sent: Counter,
    received: Counter,
    requests: Vec<(RequestKey, Counter)>,
}

/// What tells an upstream's request counters apart: protocol, status class
/// and gRPC status.
type RequestKey = (HttpProtocol, &'static str, Option<&'static str>);

/// The sidecar's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    failures: Family<UpstreamLabels, Counter>,
    bytes: Family<BytesLabels, Counter>,
    tcp: Family<TcpLabels, Counter>,
    pub events_dropped: Counter,
    pub records_dropped: Counter,
    pub fields_truncated: Counter,
    pub subscribers: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations =
            Family::<UpstreamLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        let failures = Family::<UpstreamLabels, Counter>::default();
        let bytes = Family::<BytesLabels, Counter>::default();
        let tcp = Family::<TcpLabels, Counter>::default();
        let events_dropped = Counter::default();
        let records_dropped = Counter::default();
        let fields_truncated = Counter::default();
        let subscribers = Gauge::default();
        registry.register(
            "meshtop_requests",
            "HTTP requests that ended",
            requests.clone(),
        );
        registry.register(
            "meshtop_request_duration_seconds",
            "Duration of HTTP requests, from the request head to the end of the response",
            durations.clone(),
        );
        registry.register(
            "meshtop_request_failures",
            "Failed HTTP requests (an error, a 5xx, or gRPC status 2, 4, 13, 14 or 15)",
            failures.clone(),
        );
        registry.register("meshtop_bytes", "Body bytes forwarded", bytes.clone());
        registry.register(
            "meshtop_tcp_connections",
            "Opaque connections that ended",
            tcp.clone(),
        );
        registry.register(
            "meshtop_events_dropped",
            "Events not delivered to slow subscribers",
            events_dropped.clone(),
        );
        registry.register(
            "meshtop_records_dropped",
            "Records lost because the telemetry fell behind",
            records_dropped.clone(),
        );
        registry.register(
            "meshtop_fields_truncated",
            "Requests and connections recorded with a field cut to the event schema's limits",
            fields_truncated.clone(),
        );
        registry.register(
            "meshtop_subscribers",
            "Connected event subscribers",
            subscribers.clone(),
        );
        Metrics {
            registry,
            requests,
            durations,
            failures,
            bytes,
            tcp,
            events_dropped,
            records_dropped,
            fields_truncated,
            subscribers,
        }
    }

    /// The metrics of one upstream, for the telemetry task to keep and
    /// count its requests with.
    pub fn upstream(&self, direction: Direction, authority: &str) -> UpstreamMetrics {
        let upstream = UpstreamLabels {
            direction: direction.as_str(),
            authority: authority.to_owned(),
        };
        let bytes = |flow| {
            self.bytes
                .get_or_create(&BytesLabels {
                    direction: direction.as_str(),
                    authority: authority.to_owned(),
                    flow,
                })
                .clone()
        };
        UpstreamMetrics {
            direction,
            authority: authority.to_owned(),
            durations: self.durations.get_or_create(&upstream).clone(),
            failures: self.failures.get_or_create(&upstream).clone(),
            sent: bytes("sent"),
            received: bytes("received"),
            requests: Vec::new(),
        }
    }

    /// Counts a request of `upstream`.
    pub fn observe_request(&self, upstream: &mut UpstreamMetrics, record: &RequestRecord) {
        let status_class = match record.status.map(|s| s / 100) {
            Some(1) => "1xx",
            Some(2) => "2xx",
            Some(3) => "3xx",
            Some(4) => "4xx",
            Some(5) => "5xx",
            _ => "none",
        };
        let key = (
            record.protocol,
            status_class,
            record.grpc_status.map(grpc_label),
        );
        match upstream.requests.iter().find(|(k, _)| *k == key) {
            Some((_, counter)) => {
                counter.inc();
            }
            None => {
                let counter = self
                    .requests
                    .get_or_create(&RequestLabels {
                        direction: upstream.direction.as_str(),
                        authority: upstream.authority.clone(),
                        protocol: record.protocol.as_str(),
                        status_class,
                        grpc_status: key.2.unwrap_or_default().to_owned(),
                    })
                    .clone();
                counter.inc();
                upstream.requests.push((key, counter));
            }
        }
        upstream.durations.observe(record.duration.as_secs_f64());
        if record.is_failure() {
            upstream.failures.inc();
        }
        upstream.sent.inc_by(record.req_bytes);
        upstream.received.inc_by(record.resp_bytes);
    }

    /// Removes an upstream's series (its authority lost its label to a
    /// busier one): what the exposition holds stays bounded.
    pub fn forget(&self, upstream: UpstreamMetrics) {
        let labels = UpstreamLabels {
            direction: upstream.direction.as_str(),
            authority: upstream.authority,
        };
        self.durations.remove(&labels);
        self.failures.remove(&labels);
        for flow in ["sent", "received"] {
            self.bytes.remove(&BytesLabels {
                direction: labels.direction,
                authority: labels.authority.clone(),
                flow,
            });
        }
        for ((protocol, status_class, grpc_status), _) in upstream.requests {
            self.requests.remove(&RequestLabels {
                direction: labels.direction,
                authority: labels.authority.clone(),
                protocol: protocol.as_str(),
                status_class,
                grpc_status: grpc_status.unwrap_or_default().to_owned(),
            });
        }
    }

    pub fn observe_tcp(&self, record: &TcpRecord) {
        self.tcp
            .get_or_create(&TcpLabels {
                direction: record.direction.as_str(),
                protocol: record.protocol.as_str(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
