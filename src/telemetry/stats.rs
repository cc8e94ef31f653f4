//! Exact per-interval aggregates per (direction, authority): counts, status
//! classes, gRPC statuses, error kinds, bytes, and an HdrHistogram of
//! durations that any HdrHistogram implementation can decode and merge.
//!
//! Histograms also arrive from outside (a sidecar's `stats`, a recording),
//! so [`decode_histogram`] checks every size and bound a histogram declares
//! before anything is allocated for it (see `docs/events.md`, "Limits").

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, SystemTime};

use base64::Engine;
// A fast hasher for the per-record lookups by authority; the maps stay
// small (`authority::AuthorityCap`), which bounds the worst case of
// colliding keys.
use base64::engine::general_purpose::STANDARD as BASE64;
use foldhash::HashMap;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

use super::event::{Stats, StatusClasses, UpstreamStats, timestamp};
use super::record::{Direction, ErrorKind, RequestRecord};

/// Significant digits of every latency histogram.
pub const LATENCY_SIGFIG: u8 = 3;

/// The longest duration a latency histogram holds, in microseconds (2^40
/// µs, about 12.7 days): a longer request is counted at this value (its
/// event keeps the exact duration). It bounds the size of every histogram,
/// here and in every reader.
pub const MAX_LATENCY_MICROS: u64 = 1 << 40;

/// The most base64 text a `latency` field may hold. A sidecar's histogram
/// of a second is a few hundred bytes; one of every value up to
/// [`MAX_LATENCY_MICROS`] compresses to well under this.
pub const MAX_ENCODED_HISTOGRAM: usize = 512 * 1024;

/// The most bytes a histogram's counts may take once inflated: 32,768
/// counts (every bucket up to twice [`MAX_LATENCY_MICROS`] at three digits)
/// of at most 9 bytes each, and the header.
const MAX_HISTOGRAM_PAYLOAD: usize = 33 * 1024 * 9 + 64;

/// The V2 cookies (HdrHistogram's serialization formats): plain and
/// deflate-compressed.
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;

/// The header of a plain V2 histogram: cookie, payload length, normalizing
/// offset, significant digits, lowest and highest trackable values and the
/// integer-to-double ratio.
const V2_HEADER: usize = 4 + 4 + 4 + 4 + 8 + 8 + 8;

/// A histogram of durations in microseconds that grows as needed.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new(LATENCY_SIGFIG).expect("3 significant digits is a valid precision")
}

/// A duration as a histogram records it: whole microseconds, at least 1,
/// at most [`MAX_LATENCY_MICROS`].
pub fn latency_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_MICROS)
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
    #[error("latency is longer than {MAX_ENCODED_HISTOGRAM} characters")]
    TooLong,
    #[error("latency is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("latency is not a V2 HdrHistogram: {0}")]
    Format(&'static str),
    #[error("latency is outside what a sidecar writes: {0}")]
    OutOfBounds(String),
    #[error("latency is not a V2 HdrHistogram: {0:?}")]
    Histogram(hdrhistogram::serialization::DeserializeError),
}

/// Decodes a `latency` field: a V2 HdrHistogram, deflate-compressed or
/// not, base64-encoded.
///
/// Everything a histogram declares is checked before anything is
/// allocated for it: its text, compressed and inflated lengths, and a
/// value range and precision within what a sidecar writes (lowest value 1,
/// highest at most twice [`MAX_LATENCY_MICROS`], at most
/// [`LATENCY_SIGFIG`] significant digits). So a decoded histogram holds at
/// most 33,792 counts, and decoding costs at most a few hundred
/// microseconds, whatever the input. (hdrhistogram's own deserializer
/// allocates a declared payload length and a declared value range before
/// reading them: a 40-byte histogram could ask for gigabytes.)
pub fn decode_histogram(encoded: &str) -> Result<Histogram<u64>, HistogramDecodeError> {
    if encoded.len() > MAX_ENCODED_HISTOGRAM {
        return Err(HistogramDecodeError::TooLong);
    }
    let bytes = BASE64.decode(encoded)?;
    let plain = match read_u32(&bytes, 0) {
        Some(V2_COOKIE) => bytes,
        Some(V2_COMPRESSED_COOKIE) => inflate(&bytes)?,
        Some(_) => return Err(HistogramDecodeError::Format("unknown cookie")),
        None => return Err(HistogramDecodeError::Format("too short")),
    };
    check_v2_header(&plain)?;
    Deserializer::new()
        .deserialize(&mut plain.as_slice())
        .map_err(HistogramDecodeError::Histogram)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes(word.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let word = bytes.get(at..at + 8)?;
    Some(u64::from_be_bytes(word.try_into().ok()?))
}

/// The plain V2 histogram inside a compressed one, inflated through a
/// reader that stops at [`MAX_HISTOGRAM_PAYLOAD`].
fn inflate(bytes: &[u8]) -> Result<Vec<u8>, HistogramDecodeError> {
    let declared = read_u32(bytes, 4).ok_or(HistogramDecodeError::Format("too short"))?;
    let compressed = bytes
        .get(8..)
        .filter(|rest| usize::try_from(declared).is_ok_and(|d| d <= rest.len()))
        .ok_or(HistogramDecodeError::Format(
            "compressed length beyond the data",
        ))?;
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(MAX_HISTOGRAM_PAYLOAD as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|_| HistogramDecodeError::Format("damaged deflate stream"))?;
    if plain.len() > MAX_HISTOGRAM_PAYLOAD {
        return Err(HistogramDecodeError::OutOfBounds(format!(
            "more than {MAX_HISTOGRAM_PAYLOAD} bytes once inflated"
        )));
    }
    Ok(plain)
}

/// Checks a plain V2 histogram's header against the bounds of
/// [`decode_histogram`], and its payload length against the bytes there.
fn check_v2_header(plain: &[u8]) -> Result<(), HistogramDecodeError> {
    let out_of_bounds = |what: String| Err(HistogramDecodeError::OutOfBounds(what));
    if read_u32(plain, 0) != Some(V2_COOKIE) {
        return Err(HistogramDecodeError::Format("unknown inner cookie"));
    }
    let (Some(payload), Some(digits), Some(lowest), Some(highest)) = (
        read_u32(plain, 4),
        read_u32(plain, 12),
        read_u64(plain, 16),
        read_u64(plain, 24),
    ) else {
        return Err(HistogramDecodeError::Format("header cut short"));
    };
    if !usize::try_from(payload).is_ok_and(|p| p <= plain.len().saturating_sub(V2_HEADER)) {
        return Err(HistogramDecodeError::Format(
            "payload length beyond the data",
        ));
    }
    if !(1..=u32::from(LATENCY_SIGFIG)).contains(&digits) {
        return out_of_bounds(format!("{digits} significant digits"));
    }
    if lowest != 1 {
        return out_of_bounds(format!("lowest value {lowest}"));
    }
    if !(2..=2 * MAX_LATENCY_MICROS).contains(&highest) {
        return out_of_bounds(format!("highest value {highest}"));
    }
    Ok(())
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
        self.req_bytes = self.req_bytes.saturating_add(record.req_bytes);
        self.resp_bytes = self.resp_bytes.saturating_add(record.resp_bytes);
        // An auto-resizing histogram accepts any value; bounded, its size is.
        let _ = self.latency.record(latency_micros(record.duration));
    }

    /// Adds another interval's aggregate of the same upstream.
    pub fn merge(&mut self, other: &UpstreamAggregate) {
        // Saturating: a sidecar's counts cannot wrap, but nothing is lost by
        // never wrapping.
        self.requests = self.requests.saturating_add(other.requests);
        self.failures = self.failures.saturating_add(other.failures);
        self.status.merge(&other.status);
        for (code, n) in &other.grpc_status {
            let count = self.grpc_status.entry(*code).or_default();
            *count = count.saturating_add(*n);
        }
        for (kind, n) in &other.errors {
            let count = self.errors.entry(*kind).or_default();
            *count = count.saturating_add(*n);
        }
        self.req_bytes = self.req_bytes.saturating_add(other.req_bytes);
        self.resp_bytes = self.resp_bytes.saturating_add(other.resp_bytes);
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
            backfill: false,
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
    /// Adds a record under `authority` (already capped by
    /// [`AuthorityCap`](super::authority::AuthorityCap)).
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
    fn garbage_latency_is_an_error_not_a_panic() {
        assert!(decode_histogram("not base64!").is_err());
        assert!(decode_histogram("AAAA").is_err());
    }

    /// A plain V2 header declaring `payload` bytes of counts, followed by
    /// `body`.
    fn v2(payload: u32, digits: u32, lowest: u64, highest: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&V2_COOKIE.to_be_bytes());
        out.extend_from_slice(&payload.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&digits.to_be_bytes());
        out.extend_from_slice(&lowest.to_be_bytes());
        out.extend_from_slice(&highest.to_be_bytes());
        out.extend_from_slice(&1f64.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn compressed(plain: &[u8], declared: Option<u32>) -> Vec<u8> {
        let mut deflated = Vec::new();
        let mut encoder =
            flate2::write::ZlibEncoder::new(&mut deflated, flate2::Compression::default());
        std::io::Write::write_all(&mut encoder, plain).expect("in memory");
        encoder.finish().expect("in memory");
        let mut out = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
        let len = declared.unwrap_or(deflated.len() as u32);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&deflated);
        out
    }

    fn decode_bytes(bytes: &[u8]) -> Result<Histogram<u64>, HistogramDecodeError> {
        decode_histogram(&BASE64.encode(bytes))
    }

    #[test]
    fn a_declared_payload_length_beyond_the_data_is_refused_before_allocating() {
        // 40 bytes that asked hdrhistogram for a 4 GiB buffer.
        let bomb = v2(u32::MAX, 3, 1, 2, &[]);
        assert_eq!(bomb.len(), 40);
        assert!(matches!(
            decode_bytes(&bomb),
            Err(HistogramDecodeError::Format(_))
        ));
        assert!(decode_bytes(&compressed(&bomb, None)).is_err());
        // A compressed length beyond the data is refused too.
        let good = v2(0, 3, 1, 2, &[]);
        assert!(decode_bytes(&compressed(&good, Some(u32::MAX))).is_err());
        assert!(decode_bytes(&compressed(&good, None)).is_ok());
    }

    #[test]
    fn ranges_and_precisions_beyond_a_sidecars_are_refused() {
        // A valid histogram of 1 to 2^63 at 5 digits: 6 million counts to
        // allocate, for every one of them in a message.
        let wide = Histogram::<u64>::new_with_bounds(1, 1 << 63, 5).expect("valid");
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&wide, &mut bytes)
            .expect("serializes");
        assert!(matches!(
            decode_bytes(&bytes),
            Err(HistogramDecodeError::OutOfBounds(_))
        ));
        for (digits, lowest, highest) in [
            (4, 1, 1000),
            (0, 1, 1000),
            (3, 0, 1000),
            (3, 1000, 1_000_000),
            (3, 1, 4 * MAX_LATENCY_MICROS),
            (3, 1, 1),
        ] {
            let header = v2(0, digits, lowest, highest, &[]);
            assert!(
                matches!(
                    decode_bytes(&header),
                    Err(HistogramDecodeError::OutOfBounds(_))
                ),
                "{digits} {lowest} {highest}"
            );
        }
    }

    #[test]
    fn an_inflation_bomb_stops_at_the_bound() {
        // A megabyte of zeros deflates to about a kilobyte.
        let plain = v2(1 << 20, 3, 1, 1000, &vec![0; 1 << 20]);
        let bomb = compressed(&plain, None);
        assert!(bomb.len() < 4096);
        assert!(matches!(
            decode_bytes(&bomb),
            Err(HistogramDecodeError::OutOfBounds(_))
        ));
        assert!(matches!(
            decode_histogram(&"A".repeat(MAX_ENCODED_HISTOGRAM + 4)),
            Err(HistogramDecodeError::TooLong)
        ));
    }

    #[test]
    fn the_longest_latencies_a_sidecar_records_decode_merged_or_not() {
        let mut agg = Aggregator::default();
        agg.add(&record("a", u64::MAX / 2, 200, None), "a");
        agg.add(&record("a", 1, 200, None), "a");
        let mut first = agg.take(SystemTime::now(), Duration::from_secs(1));
        agg.add(&record("a", MAX_LATENCY_MICROS * 3, 200, None), "a");
        first.merge(&agg.take(SystemTime::now(), Duration::from_secs(1)));
        let stats = first.to_message("s");
        let latency = decode_histogram(&stats.upstreams[0].latency).expect("decodes");
        assert_eq!(latency.len(), 3);
        assert_eq!(
            latency.max(),
            latency.highest_equivalent(MAX_LATENCY_MICROS)
        );
        assert_eq!(latency_micros(Duration::ZERO), 1);
        assert_eq!(latency_micros(Duration::MAX), MAX_LATENCY_MICROS);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            #[test]
            fn any_text_decodes_or_is_refused(text in ".{0,200}") {
                let _ = decode_histogram(&text);
            }

            #[test]
            fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = decode_bytes(&bytes);
            }

            #[test]
            fn any_header_decodes_within_the_bounds_or_is_refused(
                compress in any::<bool>(),
                payload in any::<u32>(),
                digits in 0u32..8,
                lowest in prop_oneof![Just(1u64), any::<u64>()],
                highest in prop_oneof![1u64..=4 * MAX_LATENCY_MICROS, any::<u64>()],
                body in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let plain = v2(payload, digits, lowest, highest, &body);
                let bytes = if compress { compressed(&plain, None) } else { plain };
                if let Ok(histogram) = decode_bytes(&bytes) {
                    prop_assert!(histogram.high() <= 2 * MAX_LATENCY_MICROS);
                    prop_assert!(histogram.distinct_values() <= 34 * 1024);
                }
            }

            #[test]
            fn a_sidecars_histograms_round_trip(
                values in proptest::collection::vec((1u64..=MAX_LATENCY_MICROS, 1u64..1000), 0..50),
            ) {
                let mut histogram = new_latency_histogram();
                for (value, count) in &values {
                    histogram.record_n(*value, *count).expect("auto-resizing");
                }
                let decoded = decode_histogram(&encode_histogram(&histogram)).expect("decodes");
                prop_assert_eq!(decoded, histogram);
            }
        }
    }
}
