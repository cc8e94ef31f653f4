//! Exact per-interval aggregates per (direction, authority): counts, status
//! classes, gRPC statuses, error kinds, bytes, and an HdrHistogram of
//! durations that any HdrHistogram implementation can decode and merge.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
// A fast hasher for the per-record lookups by authority; the maps stay
// small (`AuthorityCap`), which bounds the worst case of colliding keys.
use base64::engine::general_purpose::STANDARD as BASE64;
use foldhash::{HashMap, HashSet};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

use super::event::{Stats, StatusClasses, UpstreamStats, timestamp};
use super::record::{Direction, ErrorKind, RequestRecord};

/// Significant digits of every latency histogram.
pub const LATENCY_SIGFIG: u8 = 3;

/// A histogram of durations in microseconds that grows as needed.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new(LATENCY_SIGFIG).expect("3 significant digits is a valid precision")
}

/// The V2 compressed (deflate) serialization of `histogram`, base64-encoded.
pub fn encode_histogram(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Serializing into a Vec cannot fail for a histogram built by this crate.
    if V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .is_err()
    {
        bytes.clear();
    }
    BASE64.encode(bytes)
}

#[derive(Debug, thiserror::Error)]
pub enum HistogramDecodeError {
    #[error("latency is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("latency is not a V2 HdrHistogram: {0:?}")]
    Histogram(hdrhistogram::serialization::DeserializeError),
}

/// Decodes a `latency` field.
pub fn decode_histogram(encoded: &str) -> Result<Histogram<u64>, HistogramDecodeError> {
    let bytes = BASE64.decode(encoded)?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(HistogramDecodeError::Histogram)
}

/// Maps authorities to metric and aggregate labels, keeping at most `max`
/// distinct ones: past that, new authorities are counted as `other`, so
/// memory and label cardinality stay bounded whatever the traffic.
#[derive(Debug)]
pub struct AuthorityCap {
    seen: HashSet<String>,
    max: usize,
}

pub const OTHER_AUTHORITY: &str = "other";

impl AuthorityCap {
    pub fn new(max: usize) -> Self {
        AuthorityCap {
            seen: HashSet::default(),
            max,
        }
    }

    pub fn label<'a>(&mut self, authority: &'a str) -> &'a str {
        if self.seen.contains(authority) {
            return authority;
        }
        if self.seen.len() < self.max {
            self.seen.insert(authority.to_owned());
            return authority;
        }
        OTHER_AUTHORITY
    }
}

/// One upstream's aggregate over an interval.
#[derive(Clone, Debug)]
pub struct UpstreamAggregate {
    pub direction: Direction,
    pub authority: String,
    pub requests: u64,
    pub failures: u64,
    pub status: StatusClasses,
    pub grpc_status: BTreeMap<u32, u64>,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub req_bytes: u64,
    pub resp_bytes: u64,
    pub latency: Histogram<u64>,
}

impl UpstreamAggregate {
    fn new(direction: Direction, authority: String) -> Self {
        UpstreamAggregate {
            direction,
            authority,
            requests: 0,
            failures: 0,
            status: StatusClasses::default(),
            grpc_status: BTreeMap::new(),
            errors: BTreeMap::new(),
            req_bytes: 0,
            resp_bytes: 0,
            latency: new_latency_histogram(),
        }
    }

    fn add(&mut self, record: &RequestRecord) {
        self.requests += 1;
        self.failures += u64::from(record.is_failure());
        if let Some(status) = record.status {
            self.status.add(status, 1);
        }
        if let Some(code) = record.grpc_status {
            *self.grpc_status.entry(code).or_default() += 1;
        }
        if let Some(error) = record.error {
            *self.errors.entry(error).or_default() += 1;
        }
        self.req_bytes += record.req_bytes;
        self.resp_bytes += record.resp_bytes;
        let micros = u64::try_from(record.duration.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        // An auto-resizing histogram accepts any value.
        let _ = self.latency.record(micros);
    }

    /// Adds another interval's aggregate of the same upstream.
    pub fn merge(&mut self, other: &UpstreamAggregate) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.status.merge(&other.status);
        for (code, n) in &other.grpc_status {
            *self.grpc_status.entry(*code).or_default() += n;
        }
        for (kind, n) in &other.errors {
            *self.errors.entry(*kind).or_default() += n;
        }
        self.req_bytes += other.req_bytes;
        self.resp_bytes += other.resp_bytes;
        let _ = self.latency.add(&other.latency);
    }

    fn to_message(&self) -> UpstreamStats {
        UpstreamStats {
            direction: self.direction,
            authority: self.authority.clone(),
            requests: self.requests,
            failures: self.failures,
            status: self.status,
            grpc_status: self
                .grpc_status
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors: self
                .errors
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), *v))
                .collect(),
            req_bytes: self.req_bytes,
            resp_bytes: self.resp_bytes,
            latency: encode_histogram(&self.latency),
        }
    }
}

/// The aggregates of one (or, coalesced, several consecutive) intervals.
#[derive(Clone, Debug)]
pub struct StatsSnapshot {
    /// End of the (last) interval.
    pub end: SystemTime,
    pub interval: Duration,
    /// Sorted by direction, then authority.
    pub upstreams: Vec<UpstreamAggregate>,
}

impl StatsSnapshot {
    /// Folds a later snapshot into this one: counts summed, histograms
    /// merged, so totals stay exact.
    pub fn merge(&mut self, later: &StatsSnapshot) {
        self.end = later.end;
        self.interval += later.interval;
        for upstream in &later.upstreams {
            let key = (upstream.direction, upstream.authority.as_str());
            match self
                .upstreams
                .binary_search_by(|u| (u.direction, u.authority.as_str()).cmp(&key))
            {
                Ok(i) => self.upstreams[i].merge(upstream),
                Err(i) => self.upstreams.insert(i, upstream.clone()),
            }
        }
    }

    pub fn to_message(&self, sidecar: &str) -> Stats {
        Stats {
            ts: timestamp(self.end),
            sidecar: sidecar.to_owned(),
            interval_ms: u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
            upstreams: self
                .upstreams
                .iter()
                .map(UpstreamAggregate::to_message)
                .collect(),
        }
    }
}

/// Folds request records into per-upstream aggregates until the interval
/// is taken.
#[derive(Debug, Default)]
pub struct Aggregator {
    /// Inbound and outbound, by authority: looked up by `&str`, so adding
    /// a record to a known upstream allocates nothing.
    upstreams: [HashMap<String, UpstreamAggregate>; 2],
}

impl Aggregator {
    /// Adds a record under `authority` (already capped by [`AuthorityCap`]).
    pub fn add(&mut self, record: &RequestRecord, authority: &str) {
        let upstreams = &mut self.upstreams[record.direction as usize];
        match upstreams.get_mut(authority) {
            Some(upstream) => upstream.add(record),
            None => {
                let mut upstream = UpstreamAggregate::new(record.direction, authority.to_owned());
                upstream.add(record);
                upstreams.insert(authority.to_owned(), upstream);
            }
        }
    }

    /// The interval's aggregates; the aggregator starts afresh.
    pub fn take(&mut self, end: SystemTime, interval: Duration) -> StatsSnapshot {
        let mut upstreams: Vec<UpstreamAggregate> = self
            .upstreams
            .iter_mut()
            .flat_map(|by_authority| by_authority.drain().map(|(_, u)| u))
            .collect();
        upstreams.sort_by(|a, b| (a.direction, &a.authority).cmp(&(b.direction, &b.authority)));
        StatsSnapshot {
            end,
            interval,
            upstreams,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::record::HttpProtocol;
    use std::sync::Arc;

    fn record(authority: &str, micros: u64, status: u16, grpc: Option<u32>) -> RequestRecord {
        RequestRecord {
            start: SystemTime::now(),
            sidecar: Arc::from("s"),
            direction: Direction::Inbound,
            protocol: HttpProtocol::Http1,
            client: "127.0.0.1:1".parse().expect("literal"),
            server: None,
            authority: authority.into(),
            method: Some(http::Method::GET),
            path: Some("/".into()),
            status: Some(status),
            grpc_status: grpc,
            grpc_message: None,
            error: None,
            duration: Duration::from_micros(micros),
            ttfb: None,
            req_bytes: 1,
            resp_bytes: 2,
            headers: Vec::new(),
        }
    }

    #[test]
    fn aggregates_count_exactly_and_histograms_round_trip() {
        let mut agg = Aggregator::default();
        for i in 1..=100 {
            agg.add(
                &record("a", i * 100, if i % 10 == 0 { 503 } else { 200 }, None),
                "a",
            );
        }
        agg.add(&record("b", 5, 200, Some(2)), "b");
        let snapshot = agg.take(SystemTime::now(), Duration::from_secs(1));
        let stats = snapshot.to_message("s");
        assert_eq!(stats.upstreams.len(), 2);
        let a = &stats.upstreams[0];
        assert_eq!(
            (a.authority.as_str(), a.requests, a.failures),
            ("a", 100, 10)
        );
        assert_eq!((a.status.c2xx, a.status.c5xx), (90, 10));
        assert_eq!((a.req_bytes, a.resp_bytes), (100, 200));
        let latency = decode_histogram(&a.latency).expect("decodes");
        assert_eq!(latency.len(), 100);
        assert_eq!(latency.max(), latency.highest_equivalent(10_000));
        let b = &stats.upstreams[1];
        assert_eq!(b.grpc_status.get("2"), Some(&1));
        assert_eq!(b.failures, 1);
        assert!(
            agg.take(SystemTime::now(), Duration::from_secs(1))
                .upstreams
                .is_empty()
        );
    }

    #[test]
    fn coalesced_snapshots_keep_totals_exact() {
        let mut agg = Aggregator::default();
        agg.add(&record("a", 100, 200, None), "a");
        let mut first = agg.take(SystemTime::now(), Duration::from_secs(1));
        agg.add(&record("a", 300, 500, None), "a");
        agg.add(&record("c", 300, 200, None), "c");
        let second = agg.take(SystemTime::now(), Duration::from_secs(1));
        first.merge(&second);
        assert_eq!(first.interval, Duration::from_secs(2));
        assert_eq!(first.upstreams.len(), 2);
        assert_eq!(first.upstreams[0].requests, 2);
        assert_eq!(first.upstreams[0].failures, 1);
        assert_eq!(first.upstreams[0].latency.len(), 2);
    }

    #[test]
    fn authorities_past_the_cap_are_other() {
        let mut cap = AuthorityCap::new(2);
        assert_eq!(cap.label("a"), "a");
        assert_eq!(cap.label("b"), "b");
        assert_eq!(cap.label("c"), OTHER_AUTHORITY);
        assert_eq!(cap.label("a"), "a");
    }

    #[test]
    fn garbage_latency_is_an_error_not_a_panic() {
        assert!(decode_histogram("not base64!").is_err());
        assert!(decode_histogram("AAAA").is_err());
    }
}
