//! Exact per-interval aggregates per (direction, authority): counts, status
//! classes, gRPC statuses, error kinds, bytes, and an HdrHistogram of
//! durations that any HdrHistogram implementation can decode and merge.
//!
//! Histograms also arrive from outside (a sidecar's `stats`, a recording),
//! so [`decode_histogram`] checks every size and bound a histogram declares
//! before anything is allocated for it (see `docs/events.md`, "Limits").
//! Where many are merged (the TUI's windows, groupings and edges),
//! [`add_encoded_histogram`] adds one's counts without building it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use base64::Engine;
// A fast hasher for the per-record lookups by authority; the maps stay
// small (`authority::AuthorityCap`), which bounds the worst case of
// colliding keys.
use base64::engine::general_purpose::STANDARD as BASE64;
use foldhash::HashMap;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

use super::record::{Direction, ErrorKind, HttpProtocol, RequestRecord};
use super::route::route_into;
use crate::schema::{
    ClientStats, Counts, RouteStats, Stats, StatusClasses, UpstreamStats, timestamp,
};

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

/// The V2 compressed (deflate) serialization of `histogram`, base64-encoded:
/// the bytes hdrhistogram's `V2DeflateSerializer` writes, by a
/// [`HistogramEncoder`] kept per thread.
pub fn encode_histogram(histogram: &Histogram<u64>) -> String {
    thread_local! {
        static ENCODER: std::cell::RefCell<HistogramEncoder> =
            std::cell::RefCell::new(HistogramEncoder::new());
    }
    ENCODER.with(|encoder| encoder.borrow_mut().encode(histogram))
}

/// Writes the V2 compressed serialization as hdrhistogram's
/// `V2DeflateSerializer` does, more cheaply: a sidecar encodes one
/// histogram per upstream, route and client every interval
/// (docs/benchmarks.md, "Per-route and per-client stats").
///
/// - It keeps its buffers and its deflate compressor from one histogram to
///   the next (a new compressor's tables cost as much to clear as to
///   allocate, but not the allocation).
/// - A small histogram (under [`STORED_BELOW`] bytes uncompressed) goes in
///   one stored deflate block: a zlib stream every HdrHistogram reader
///   inflates, without the compressor, whose set-up was most of the cost,
///   for a few bytes more.
///
/// Larger histograms are checked byte for byte against the serializer it
/// replaces, smaller ones to decode through hdrhistogram's own reader.
/// Histograms whose uncompressed V2 serialization is shorter than this are
/// stored, not deflated ([`HistogramEncoder`]): under about a hundred
/// distinct durations, deflating saves a hundred bytes or so.
pub const STORED_BELOW: usize = 512;

pub struct HistogramEncoder {
    serializer: V2Serializer,
    compress: flate2::Compress,
    plain: Vec<u8>,
    out: Vec<u8>,
}

impl Default for HistogramEncoder {
    fn default() -> Self {
        HistogramEncoder::new()
    }
}

impl HistogramEncoder {
    pub fn new() -> Self {
        HistogramEncoder {
            serializer: V2Serializer::new(),
            // The level and zlib framing of `V2DeflateSerializer`.
            compress: flate2::Compress::new(flate2::Compression::default(), true),
            plain: Vec::new(),
            out: Vec::new(),
        }
    }

    pub fn encode(&mut self, histogram: &Histogram<u64>) -> String {
        self.plain.clear();
        self.out.clear();
        // Serializing into a Vec, or compressing one into another, cannot
        // fail for a histogram built by this crate.
        if self
            .serializer
            .serialize(histogram, &mut self.plain)
            .is_err()
        {
            return String::new();
        }
        self.out
            .extend_from_slice(&V2_COMPRESSED_COOKIE.to_be_bytes());
        self.out.extend_from_slice(&[0; 4]);
        if self.plain.len() < STORED_BELOW {
            self.store();
        } else if !self.deflate() {
            return String::new();
        }
        let length = u32::try_from(self.out.len() - 8).unwrap_or(u32::MAX);
        self.out[4..8].copy_from_slice(&length.to_be_bytes());
        BASE64.encode(&self.out)
    }

    /// Appends `plain` as a zlib stream of one stored block: the header
    /// (deflate, 32 KiB window, no dictionary, check bits), the block
    /// (final, stored, its length and that length's complement), the
    /// bytes, and their Adler-32.
    fn store(&mut self) {
        let len = u16::try_from(self.plain.len()).unwrap_or(u16::MAX);
        self.out.extend_from_slice(&[0x78, 0x01, 0x01]);
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(&(!len).to_le_bytes());
        self.out.extend_from_slice(&self.plain);
        let checksum = adler2::adler32_slice(&self.plain);
        self.out.extend_from_slice(&checksum.to_be_bytes());
    }

    /// Appends `plain` deflated as `V2DeflateSerializer` does; whether it
    /// could.
    fn deflate(&mut self) -> bool {
        self.compress.reset();
        loop {
            self.out.reserve(self.plain.len() / 2 + 64);
            let consumed = usize::try_from(self.compress.total_in()).unwrap_or(usize::MAX);
            let input = self.plain.get(consumed..).unwrap_or_default();
            match self
                .compress
                .compress_vec(input, &mut self.out, flate2::FlushCompress::Finish)
            {
                Ok(flate2::Status::StreamEnd) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }
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
    let (plain, _) = plain_v2(encoded)?;
    Deserializer::new()
        .deserialize(&mut plain.as_slice())
        .map_err(HistogramDecodeError::Histogram)
}

/// Adds a `latency` field's counts to `into`: what adding
/// [`decode_histogram`]'s histogram to it does, with the same checks and
/// errors, without building that histogram.
///
/// Decoding allocates and zeroes a histogram's whole counts array (16 KiB
/// or more at three digits) and adding walks it, for the few dozen counts
/// a second holds; this reads the counts where they are encoded and
/// records each one. The TUI merges thousands of histograms a window this
/// way (`cargo bench --bench hot_paths -- merge`); a property test checks
/// it against the crate's decoder and [`Histogram::add`].
pub fn add_encoded_histogram(
    encoded: &str,
    into: &mut Histogram<u64>,
) -> Result<(), HistogramDecodeError> {
    let (plain, header) = plain_v2(encoded)?;
    // Read in full first, as the crate's decoder does, so that a damaged
    // histogram adds nothing.
    thread_local! {
        static COUNTS: std::cell::RefCell<Vec<(u64, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    COUNTS.with_borrow_mut(|counts| {
        counts.clear();
        for count in V2Counts::of(&plain, header)? {
            counts.push(count?);
        }
        for &(value, n) in counts.iter() {
            into.record_n(value, n).map_err(|_| {
                HistogramDecodeError::Format("a value beyond the histogram's range")
            })?;
        }
        // A sidecar's histogram of a second has a few dozen counts; one of
        // a long window's thousands is not kept for the next.
        if counts.capacity() > 4096 {
            *counts = Vec::new();
        }
        Ok(())
    })
}

/// Whether a `latency` field decodes, as [`decode_histogram`] would tell,
/// without building its histogram.
pub fn check_encoded_histogram(encoded: &str) -> Result<(), HistogramDecodeError> {
    let (plain, header) = plain_v2(encoded)?;
    V2Counts::of(&plain, header)?.try_for_each(|count| count.map(|_| ()))
}

/// A plain V2 histogram (header and counts) from a `latency` field,
/// inflated if need be, its header checked.
fn plain_v2(encoded: &str) -> Result<(Vec<u8>, V2Header), HistogramDecodeError> {
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
    let header = check_v2_header(&plain)?;
    Ok((plain, header))
}

/// The non-zero counts of a plain V2 histogram whose header
/// [`check_v2_header`] passed, as (lowest value of the bucket, count),
/// read as hdrhistogram's `Deserializer` reads them: ZigZag LEB128 numbers
/// (at most 9 bytes, the ninth taken whole), a negative one skipping that
/// many empty buckets.
#[derive(Clone)]
struct V2Counts<'p> {
    payload: &'p [u8],
    at: usize,
    index: u64,
    /// The bucket layout of the histogram's range and precision (lowest
    /// value 1): buckets below `sub_bucket_half_count` are one apart.
    half_count_magnitude: u32,
    /// The length of its counts array: a count past it is an error.
    len: u64,
}

impl<'p> V2Counts<'p> {
    fn of(plain: &'p [u8], header: V2Header) -> Result<V2Counts<'p>, HistogramDecodeError> {
        // What the crate's decoder does not support either.
        if header.offset != 0 || header.ratio != 1.0 {
            return Err(HistogramDecodeError::Histogram(
                hdrhistogram::serialization::DeserializeError::UnsupportedFeature,
            ));
        }
        let V2Header {
            payload,
            digits,
            highest,
            ..
        } = header;
        let payload =
            plain
                .get(V2_HEADER..V2_HEADER + payload)
                .ok_or(HistogramDecodeError::Format(
                    "payload length beyond the data",
                ))?;
        // As `Histogram::new_with_bounds(1, highest, digits)` lays it out
        // (digits and highest are within bounds: see check_v2_header).
        let largest = 2 * 10u64.pow(digits);
        let count_magnitude = u64::BITS - (largest - 1).leading_zeros();
        let half_count_magnitude = count_magnitude - 1;
        let mut untrackable = 1u64 << count_magnitude;
        let mut buckets = 1u64;
        while untrackable <= highest {
            if untrackable > u64::MAX / 2 {
                buckets += 1;
                break;
            }
            untrackable <<= 1;
            buckets += 1;
        }
        Ok(V2Counts {
            payload,
            at: 0,
            index: 0,
            half_count_magnitude,
            len: (buckets + 1) << half_count_magnitude,
        })
    }

    /// The lowest value of the bucket at `index` (hdrhistogram's
    /// `value_for` with a unit magnitude of 0).
    fn value_at(&self, index: u64) -> u64 {
        let half_count = 1u64 << self.half_count_magnitude;
        let bucket = (index >> self.half_count_magnitude).checked_sub(1);
        let sub_bucket = (index & (half_count - 1)) + half_count;
        match bucket {
            Some(bucket) => sub_bucket << bucket,
            None => sub_bucket - half_count,
        }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..9 {
            let byte = *self.payload.get(self.at)?;
            self.at += 1;
            if i == 8 {
                return Some(value | u64::from(byte) << 56);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        Some(value)
    }
}

impl Iterator for V2Counts<'_> {
    type Item = Result<(u64, u64), HistogramDecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.at < self.payload.len() {
            let Some(zigzag) = self.varint() else {
                return Some(Err(HistogramDecodeError::Format("counts cut short")));
            };
            let number = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
            // As the crate's decoder: an index past `usize` is an error.
            let too_far = || {
                Some(Err(HistogramDecodeError::Histogram(
                    hdrhistogram::serialization::DeserializeError::UsizeTypeTooSmall,
                )))
            };
            let skip = if number < 0 { number.unsigned_abs() } else { 1 };
            let Some(next) = self
                .index
                .checked_add(skip)
                .filter(|next| usize::try_from(*next).is_ok())
            else {
                return too_far();
            };
            let index = std::mem::replace(&mut self.index, next);
            if number < 0 {
                continue;
            }
            if number == 0 {
                continue;
            }
            if index >= self.len {
                return Some(Err(HistogramDecodeError::Histogram(
                    hdrhistogram::serialization::DeserializeError::EncodedArrayTooLong,
                )));
            }
            return Some(Ok((self.value_at(index), number.unsigned_abs())));
        }
        None
    }
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
    if let Some(plain) = stored(compressed) {
        return Ok(plain.to_vec());
    }
    // One inflater per thread, reset for each histogram: making one
    // allocates tens of kilobytes, more than inflating a second's
    // histogram costs.
    thread_local! {
        static INFLATER: std::cell::RefCell<flate2::Decompress> =
            std::cell::RefCell::new(flate2::Decompress::new(true));
    }
    let damaged = || HistogramDecodeError::Format("damaged deflate stream");
    INFLATER.with_borrow_mut(|inflater| {
        inflater.reset(true);
        let mut plain = Vec::with_capacity(compressed.len().saturating_mul(4).min(64 * 1024));
        loop {
            if plain.len() == plain.capacity() {
                plain.reserve(plain.capacity().max(256));
            }
            let (read, written) = (inflater.total_in(), inflater.total_out());
            let rest = usize::try_from(read)
                .ok()
                .and_then(|read| compressed.get(read..))
                .ok_or_else(damaged)?;
            let status = inflater
                .decompress_vec(rest, &mut plain, flate2::FlushDecompress::None)
                .map_err(|_| damaged())?;
            if plain.len() > MAX_HISTOGRAM_PAYLOAD {
                return Err(HistogramDecodeError::OutOfBounds(format!(
                    "more than {MAX_HISTOGRAM_PAYLOAD} bytes once inflated"
                )));
            }
            match status {
                flate2::Status::StreamEnd => return Ok(plain),
                // No progress with room to write: the stream is cut short.
                _ if inflater.total_in() == read
                    && inflater.total_out() == written
                    && plain.len() < plain.capacity() =>
                {
                    return Err(damaged());
                }
                _ => {}
            }
        }
    })
}

/// The bytes of a zlib stream that is one stored deflate block with its
/// checksum right, as [`HistogramEncoder`] writes small histograms; `None`
/// for any other stream, which the inflater reads (or refuses).
fn stored(stream: &[u8]) -> Option<&[u8]> {
    let [cmf, flg, block, l0, l1, n0, n1, rest @ ..] = stream else {
        return None;
    };
    let header_ok = cmf & 0x0f == 8
        && cmf >> 4 <= 7
        && flg & 0x20 == 0
        && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0;
    // The final block, stored (its other bits pad to the byte).
    let len = u16::from_le_bytes([*l0, *l1]);
    if !header_ok || block & 0x07 != 0x01 || len != !u16::from_le_bytes([*n0, *n1]) {
        return None;
    }
    let data = rest.get(..usize::from(len))?;
    let checksum = rest.get(usize::from(len)..usize::from(len) + 4)?;
    (adler2::adler32_slice(data).to_be_bytes() == checksum).then_some(data)
}

/// Checks a plain V2 histogram's header against the bounds of
/// [`decode_histogram`], and its payload length against the bytes there.
fn check_v2_header(plain: &[u8]) -> Result<V2Header, HistogramDecodeError> {
    let out_of_bounds = |what: String| Err(HistogramDecodeError::OutOfBounds(what));
    if read_u32(plain, 0) != Some(V2_COOKIE) {
        return Err(HistogramDecodeError::Format("unknown inner cookie"));
    }
    let (Some(payload), Some(offset), Some(digits), Some(lowest), Some(highest), Some(ratio)) = (
        read_u32(plain, 4),
        read_u32(plain, 8),
        read_u32(plain, 12),
        read_u64(plain, 16),
        read_u64(plain, 24),
        read_u64(plain, 32),
    ) else {
        return Err(HistogramDecodeError::Format("header cut short"));
    };
    let Some(payload) = usize::try_from(payload)
        .ok()
        .filter(|p| *p <= plain.len().saturating_sub(V2_HEADER))
    else {
        return Err(HistogramDecodeError::Format(
            "payload length beyond the data",
        ));
    };
    if !(1..=u32::from(LATENCY_SIGFIG)).contains(&digits) {
        return out_of_bounds(format!("{digits} significant digits"));
    }
    if lowest != 1 {
        return out_of_bounds(format!("lowest value {lowest}"));
    }
    if !(2..=2 * MAX_LATENCY_MICROS).contains(&highest) {
        return out_of_bounds(format!("highest value {highest}"));
    }
    Ok(V2Header {
        payload,
        offset,
        digits,
        highest,
        ratio: f64::from_bits(ratio),
    })
}

/// What [`check_v2_header`] read of a plain V2 histogram's header.
#[derive(Clone, Copy)]
struct V2Header {
    /// The length of the counts after the header, within the bytes there.
    payload: usize,
    /// The normalizing index offset.
    offset: u32,
    /// Significant digits, 1 to [`LATENCY_SIGFIG`].
    digits: u32,
    /// The highest trackable value, 2 to twice [`MAX_LATENCY_MICROS`]
    /// (the lowest is 1).
    highest: u64,
    /// The integer-to-double ratio.
    ratio: f64,
}

/// How many durations [`Latencies`] keeps as plain values before it turns
/// them into a histogram: as many bytes as a histogram's smallest counts.
const FEW_LATENCIES: usize = 1024;

/// The durations of an interval's requests, in microseconds (see
/// [`latency_micros`]): the values themselves while there are few, an
/// HdrHistogram past [`FEW_LATENCIES`]. A histogram's counts take 16 to
/// 90 KB however few requests it holds, and an interval has one for each
/// upstream, route and client that had any: this way what they hold grows
/// with the requests, not with the number of routes and clients.
#[derive(Clone, Debug)]
pub enum Latencies {
    Few(Vec<u64>),
    Many(Box<Histogram<u64>>),
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies::Few(Vec::new())
    }
}

impl Latencies {
    pub fn record(&mut self, micros: u64) {
        match self {
            Latencies::Few(values) if values.len() < FEW_LATENCIES => values.push(micros),
            Latencies::Few(values) => {
                let mut histogram = new_latency_histogram();
                for value in values.iter().chain([&micros]) {
                    // An auto-resizing histogram accepts any value.
                    let _ = histogram.record(*value);
                }
                *self = Latencies::Many(Box::new(histogram));
            }
            Latencies::Many(histogram) => {
                let _ = histogram.record(micros);
            }
        }
    }

    pub fn merge(&mut self, other: &Latencies) {
        match other {
            Latencies::Few(values) => {
                for value in values {
                    self.record(*value);
                }
            }
            Latencies::Many(theirs) => match self {
                Latencies::Many(ours) => {
                    let _ = ours.add(&**theirs);
                }
                Latencies::Few(values) => {
                    let mut histogram = (**theirs).clone();
                    for value in values.iter() {
                        let _ = histogram.record(*value);
                    }
                    *self = Latencies::Many(Box::new(histogram));
                }
            },
        }
    }

    /// How many durations there are.
    pub fn len(&self) -> u64 {
        match self {
            Latencies::Few(values) => values.len() as u64,
            Latencies::Many(histogram) => histogram.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The durations as a histogram.
    pub fn to_histogram(&self) -> Histogram<u64> {
        match self {
            Latencies::Few(values) => {
                let mut histogram = new_latency_histogram();
                for value in values {
                    let _ = histogram.record(*value);
                }
                histogram
            }
            Latencies::Many(histogram) => (**histogram).clone(),
        }
    }

    /// The durations as a `latency` field ([`encode_histogram`]).
    pub fn encode(&self) -> String {
        match self {
            Latencies::Few(_) => encode_histogram(&self.to_histogram()),
            Latencies::Many(histogram) => encode_histogram(histogram),
        }
    }
}

/// What an interval counts of a set of requests: an upstream's, or one of
/// its routes' or clients'.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub requests: u64,
    pub failures: u64,
    pub status: StatusClasses,
    pub grpc_status: BTreeMap<u32, u64>,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub req_bytes: u64,
    pub resp_bytes: u64,
    pub latency: Latencies,
}

impl Counters {
    fn add(&mut self, record: &RequestRecord, micros: u64) {
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
        self.latency.record(micros);
    }

    /// Adds another interval's counts of the same requests' kind.
    pub fn merge(&mut self, other: &Counters) {
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
        self.latency.merge(&other.latency);
    }

    /// The counts as sent; `latency` is given when already encoded.
    fn to_message(&self, latency: Option<&str>) -> Counts {
        Counts {
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
            latency: latency.map_or_else(|| self.latency.encode(), str::to_owned),
        }
    }
}

/// The label of the routes and clients past an upstream's bound.
pub const OTHER: &str = "other";

/// The longest route counted under its own name: longer ones (a path of
/// kilobytes) count as [`OTHER`], so that a route label stays readable and
/// what an interval holds stays small.
pub const MAX_ROUTE: usize = 256;

/// An upstream's counters by route or by client: at most `max` keys of
/// their own, the rest under [`OTHER`].
///
/// While every request has had the same key (an upstream with one route,
/// or one caller), that key's counters are the upstream's own: they are
/// not kept twice, and are copied out of the upstream's only when a second
/// key appears. That is what keeps the breakdown nearly free for most
/// upstreams (docs/benchmarks.md).
#[derive(Clone, Debug)]
pub struct Breakdown<K> {
    /// The one key of every request so far, when `named` and `other` are
    /// empty.
    sole: Option<K>,
    named: HashMap<K, Counters>,
    other: Option<Counters>,
    max: usize,
}

impl<K: std::hash::Hash + Eq + Clone + Ord> Breakdown<K> {
    fn new(max: usize) -> Self {
        Breakdown {
            sole: None,
            named: HashMap::default(),
            other: None,
            max,
        }
    }

    /// Counts a record under `key` (`None`: under [`OTHER`]). `whole` is
    /// the upstream's counters before this record; `room` what the
    /// aggregator as a whole may still name, past which new keys count as
    /// [`OTHER`].
    fn add<Q>(
        &mut self,
        key: Option<&Q>,
        whole: &Counters,
        record: &RequestRecord,
        micros: u64,
        room: &mut usize,
    ) where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.named.is_empty() && self.other.is_none() {
            match (&self.sole, key) {
                (Some(sole), Some(key)) if sole.borrow() == key => return,
                (None, Some(key)) if whole.requests == 0 && self.max > 0 && *room > 0 => {
                    *room -= 1;
                    self.sole = Some(key.to_owned());
                    return;
                }
                _ => self.materialize(whole),
            }
        }
        if let Some(key) = key {
            // One lookup for a known key, the common case.
            if let Some(counters) = self.named.get_mut(key) {
                counters.add(record, micros);
                return;
            }
            if self.named.len() < self.max && *room > 0 {
                *room -= 1;
                let mut counters = Counters::default();
                counters.add(record, micros);
                self.named.insert(key.to_owned(), counters);
                return;
            }
        }
        self.other
            .get_or_insert_with(Counters::default)
            .add(record, micros);
    }

    /// Gives the sole key the counters it shares with the upstream.
    fn materialize(&mut self, whole: &Counters) {
        if let Some(sole) = self.sole.take() {
            self.named.insert(sole, whole.clone());
        }
    }

    /// Keys with counts of their own, `other` aside.
    pub fn named_len(&self) -> usize {
        self.named.len() + usize::from(self.sole.is_some())
    }

    /// Adds a later interval's breakdown (`ours` and `theirs` are the two
    /// upstreams' counters), keeping the bound.
    fn merge(&mut self, ours: &Counters, later: &Breakdown<K>, theirs: &Counters) {
        self.materialize(ours);
        let mut later = later.clone();
        later.materialize(theirs);
        // In key order, so that which keys keep their own counts does not
        // depend on a hash map's order.
        let mut named: Vec<(&K, &Counters)> = later.named.iter().collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        for (key, counters) in named {
            let room = self.named.len() < self.max;
            match self.named.get_mut(key) {
                Some(kept) => kept.merge(counters),
                None if room => {
                    self.named.insert(key.clone(), counters.clone());
                }
                None => self
                    .other
                    .get_or_insert_with(Counters::default)
                    .merge(counters),
            }
        }
        if let Some(other) = &later.other {
            self.other
                .get_or_insert_with(Counters::default)
                .merge(other);
        }
    }

    /// Named entries sorted by key, then [`OTHER`]; `whole` is the
    /// upstream's counters (the sole key's).
    fn entries<'a>(
        &'a self,
        whole: &'a Counters,
    ) -> impl Iterator<Item = (Option<&'a K>, &'a Counters)> {
        let mut named: Vec<(&K, &Counters)> = self.named.iter().collect();
        named.extend(self.sole.iter().map(|sole| (sole, whole)));
        named.sort_by(|a, b| a.0.cmp(b.0));
        named
            .into_iter()
            .map(|(k, c)| (Some(k), c))
            .chain(self.other.iter().map(|c| (None, c)))
    }
}

/// One upstream's aggregate over an interval.
#[derive(Clone, Debug)]
pub struct UpstreamAggregate {
    pub direction: Direction,
    pub authority: String,
    pub counters: Counters,
    pub routes: Breakdown<String>,
    /// Inbound only (outbound, the client is this pod).
    pub clients: Breakdown<IpAddr>,
}

impl UpstreamAggregate {
    fn new(direction: Direction, authority: String, limits: Limits) -> Self {
        UpstreamAggregate {
            direction,
            authority,
            counters: Counters::default(),
            routes: Breakdown::new(limits.routes),
            clients: Breakdown::new(limits.clients),
        }
    }

    /// Adds another interval's aggregate of the same upstream.
    pub fn merge(&mut self, other: &UpstreamAggregate) {
        self.routes
            .merge(&self.counters, &other.routes, &other.counters);
        self.clients
            .merge(&self.counters, &other.clients, &other.counters);
        self.counters.merge(&other.counters);
    }

    fn to_message(&self) -> UpstreamStats {
        let counts = self.counters.to_message(None);
        // A route or client with every request of the upstream has the
        // same durations: its histogram is the upstream's, already encoded
        // (compressing one costs as much as folding a few hundred records).
        let part = |counters: &Counters| {
            let whole = counters.requests == self.counters.requests;
            counters.to_message(whole.then_some(counts.latency.as_str()))
        };
        UpstreamStats {
            direction: self.direction,
            authority: self.authority.clone(),
            routes: self
                .routes
                .entries(&self.counters)
                .map(|(route, counters)| RouteStats {
                    route: route.map_or(OTHER, String::as_str).to_owned(),
                    counts: part(counters),
                })
                .collect(),
            clients: self
                .clients
                .entries(&self.counters)
                .map(|(client, counters)| ClientStats {
                    client: client.map_or_else(|| OTHER.to_owned(), IpAddr::to_string),
                    counts: part(counters),
                })
                .collect(),
            counts,
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

/// How finely an interval's aggregates break an upstream down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Routes per upstream with counts of their own (`--max-routes`).
    pub routes: usize,
    /// Clients per inbound upstream with counts of their own
    /// (`--max-clients`).
    pub clients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            routes: 100,
            clients: 100,
        }
    }
}

/// Routes and clients with counts of their own in one interval, over all
/// upstreams: past it, new ones count as [`OTHER`] until the interval
/// ends. With the authorities' own bound, this bounds what an interval
/// holds (a few MB) however many distinct paths and clients arrive.
pub const MAX_BREAKDOWN_ENTRIES: usize = 20_000;

/// Folds request records into per-upstream aggregates until the interval
/// is taken.
#[derive(Debug)]
pub struct Aggregator {
    /// Inbound and outbound, by authority: looked up by `&str`, so adding
    /// a record to a known upstream allocates nothing.
    upstreams: [HashMap<String, UpstreamAggregate>; 2],
    limits: Limits,
    /// Routes and clients this interval may still name
    /// ([`MAX_BREAKDOWN_ENTRIES`]).
    room: usize,
    /// The route of the last record added, and what it was computed from:
    /// records in a row often share their method and path, and comparing
    /// them costs less than computing the route again.
    route: RouteMemo,
}

#[derive(Debug, Default)]
struct RouteMemo {
    grpc: bool,
    method: Option<String>,
    path: Option<String>,
    route: String,
}

impl RouteMemo {
    fn route(&mut self, grpc: bool, method: Option<&str>, path: Option<&str>) -> &str {
        let same = self.grpc == grpc
            && self.method.as_deref() == method
            && self.path.as_deref() == path
            && !self.route.is_empty();
        if !same {
            self.grpc = grpc;
            remember(&mut self.method, method);
            remember(&mut self.path, path);
            self.route.clear();
            route_into(&mut self.route, grpc, method, path);
        }
        &self.route
    }
}

/// Sets `slot` to `value`, reusing its allocation.
fn remember(slot: &mut Option<String>, value: Option<&str>) {
    match (slot.as_mut(), value) {
        (Some(kept), Some(value)) => {
            kept.clear();
            kept.push_str(value);
        }
        _ => *slot = value.map(str::to_owned),
    }
}

impl Default for Aggregator {
    fn default() -> Self {
        Aggregator::new(Limits::default())
    }
}

impl Aggregator {
    pub fn new(limits: Limits) -> Self {
        Aggregator {
            upstreams: Default::default(),
            limits,
            room: MAX_BREAKDOWN_ENTRIES,
            route: RouteMemo::default(),
        }
    }

    /// Adds a record under `authority` (already capped by
    /// [`AuthorityCap`](super::authority::AuthorityCap)).
    pub fn add(&mut self, record: &RequestRecord, authority: &str) {
        let upstreams = &mut self.upstreams[record.direction as usize];
        let upstream = match upstreams.get_mut(authority) {
            Some(upstream) => upstream,
            None => upstreams.entry(authority.to_owned()).or_insert_with(|| {
                UpstreamAggregate::new(record.direction, authority.to_owned(), self.limits)
            }),
        };
        let micros = latency_micros(record.duration);
        let route = self.route.route(
            record.protocol == HttpProtocol::Grpc,
            record.method.as_ref().map(http::Method::as_str),
            record.path.as_deref(),
        );
        let route = (route.len() <= MAX_ROUTE).then_some(route);
        // The breakdowns first: they take the upstream's counters as they
        // were before this record.
        upstream
            .routes
            .add(route, &upstream.counters, record, micros, &mut self.room);
        if record.direction == Direction::Inbound {
            upstream.clients.add(
                Some(&record.client.ip()),
                &upstream.counters,
                record,
                micros,
                &mut self.room,
            );
        }
        upstream.counters.add(record, micros);
    }

    /// The interval's aggregates; the aggregator starts afresh.
    pub fn take(&mut self, end: SystemTime, interval: Duration) -> StatsSnapshot {
        let mut upstreams: Vec<UpstreamAggregate> = self
            .upstreams
            .iter_mut()
            .flat_map(|by_authority| by_authority.drain().map(|(_, u)| u))
            .collect();
        upstreams.sort_by(|a, b| (a.direction, &a.authority).cmp(&(b.direction, &b.authority)));
        self.room = MAX_BREAKDOWN_ENTRIES;
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
    use std::io::Read;
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
            (a.authority.as_str(), a.counts.requests, a.counts.failures),
            ("a", 100, 10)
        );
        assert_eq!((a.counts.status.c2xx, a.counts.status.c5xx), (90, 10));
        assert_eq!((a.counts.req_bytes, a.counts.resp_bytes), (100, 200));
        let latency = decode_histogram(&a.counts.latency).expect("decodes");
        assert_eq!(latency.len(), 100);
        assert_eq!(latency.max(), latency.highest_equivalent(10_000));
        let b = &stats.upstreams[1];
        assert_eq!(b.counts.grpc_status.get("2"), Some(&1));
        assert_eq!(b.counts.failures, 1);
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
        assert_eq!(first.upstreams[0].counters.requests, 2);
        assert_eq!(first.upstreams[0].counters.failures, 1);
        assert_eq!(first.upstreams[0].counters.latency.len(), 2);
    }

    #[test]
    fn small_histograms_are_stored_and_large_ones_deflated_as_hdrhistogram_does() {
        let mut encoder = HistogramEncoder::new();
        let mut small = new_latency_histogram();
        small.record(1500).expect("in range");
        let mut large = new_latency_histogram();
        for value in 1..3000 {
            large.record(value * 7).expect("in range");
        }
        for histogram in [&small, &large, &small] {
            let mut plain = Vec::new();
            V2Serializer::new()
                .serialize(histogram, &mut plain)
                .expect("serializes");
            let mut deflated = Vec::new();
            hdrhistogram::serialization::V2DeflateSerializer::new()
                .serialize(histogram, &mut deflated)
                .expect("serializes");
            let encoded = encoder.encode(histogram);
            let raw = BASE64.decode(&encoded).expect("base64");
            if plain.len() < STORED_BELOW {
                // Cookie, length, zlib header, a final stored block.
                assert_eq!(raw[8..11], [0x78, 0x01, 0x01]);
                assert_eq!(raw.len(), 8 + 2 + 5 + plain.len() + 4);
            } else {
                assert_eq!(raw, deflated);
            }
            assert_eq!(&decode_histogram(&encoded).expect("decodes"), histogram);
        }
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
        hdrhistogram::serialization::V2DeflateSerializer::new()
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

    fn with(mut record: RequestRecord, path: &str, client: &str) -> RequestRecord {
        record.path = Some(path.into());
        record.client = client.parse().expect("literal");
        record
    }

    #[test]
    fn routes_and_clients_count_like_their_upstream_within_their_bounds() {
        let mut agg = Aggregator::new(Limits {
            routes: 2,
            clients: 1,
        });
        for (path, client, status) in [
            ("/users/1", "10.0.0.1:1", 200),
            ("/users/2?x=1", "10.0.0.1:2", 503),
            ("/health", "10.0.0.2:1", 200),
            ("/other-thing", "10.0.0.3:1", 200),
        ] {
            agg.add(&with(record("a", 100, status, None), path, client), "a");
        }
        let stats = agg
            .take(SystemTime::now(), Duration::from_secs(1))
            .to_message("s");
        let upstream = &stats.upstreams[0];
        let routes: Vec<(&str, u64, u64)> = upstream
            .routes
            .iter()
            .map(|r| (r.route.as_str(), r.counts.requests, r.counts.failures))
            .collect();
        assert_eq!(
            routes,
            [
                ("GET /health", 1, 0),
                ("GET /users/{id}", 2, 1),
                ("other", 1, 0)
            ]
        );
        let users = &upstream.routes[1].counts;
        assert_eq!((users.status.c2xx, users.status.c5xx), (1, 1));
        assert_eq!(decode_histogram(&users.latency).expect("decodes").len(), 2);
        let clients: Vec<(&str, u64)> = upstream
            .clients
            .iter()
            .map(|c| (c.client.as_str(), c.counts.requests))
            .collect();
        assert_eq!(clients, [("10.0.0.1", 2), ("other", 2)]);
        // The parts add up to the whole.
        let sum: u64 = upstream.routes.iter().map(|r| r.counts.requests).sum();
        assert_eq!(sum, upstream.counts.requests);
    }

    #[test]
    fn the_remembered_route_is_the_route_of_each_record() {
        let mut memo = RouteMemo::default();
        let cases = [
            (false, Some("GET"), Some("/users/1")),
            (false, Some("GET"), Some("/users/1")),
            (false, Some("POST"), Some("/users/1")),
            (true, Some("POST"), Some("/users/1")),
            (false, None, Some("/users/1")),
            (false, None, None),
            (false, Some("CONNECT"), None),
            (false, Some("GET"), Some("/a?x=1")),
            (false, Some("GET"), Some("/a?x=2")),
        ];
        for (grpc, method, path) in cases.iter().chain(cases.iter().rev()) {
            assert_eq!(
                memo.route(*grpc, *method, *path),
                crate::telemetry::route::route(*grpc, *method, *path),
                "{grpc} {method:?} {path:?}"
            );
        }
    }

    #[test]
    fn outbound_upstreams_have_no_clients_and_long_routes_are_other() {
        let mut agg = Aggregator::default();
        let mut outbound = with(record("a", 100, 200, None), "/", "10.0.0.1:1");
        outbound.direction = Direction::Outbound;
        agg.add(&outbound, "a");
        let long = format!("/{}", "x".repeat(MAX_ROUTE));
        agg.add(&with(record("a", 100, 200, None), &long, "10.0.0.1:1"), "a");
        let stats = agg
            .take(SystemTime::now(), Duration::from_secs(1))
            .to_message("s");
        let (inbound, outbound) = (&stats.upstreams[0], &stats.upstreams[1]);
        assert_eq!(inbound.routes[0].route, OTHER);
        assert!(outbound.clients.is_empty());
        assert_eq!(outbound.routes[0].route, "GET /");
    }

    #[test]
    fn an_interval_names_at_most_so_many_routes_and_clients_in_all() {
        let mut agg = Aggregator::default();
        let authorities = MAX_BREAKDOWN_ENTRIES / 100 + 10;
        for a in 0..authorities {
            for r in 0..100 {
                let path = format!("/r{r}");
                agg.add(
                    &with(record("x", 100, 200, None), &path, "10.0.0.1:1"),
                    &format!("svc-{a}"),
                );
            }
        }
        let snapshot = agg.take(SystemTime::now(), Duration::from_secs(1));
        let named: usize = snapshot
            .upstreams
            .iter()
            .map(|u| u.routes.named_len() + u.clients.named_len())
            .sum();
        assert_eq!(named, MAX_BREAKDOWN_ENTRIES);
        let requests: u64 = snapshot
            .upstreams
            .iter()
            .flat_map(|u| u.routes.entries(&u.counters))
            .map(|(_, c)| c.requests)
            .sum();
        assert_eq!(requests, authorities as u64 * 100, "nothing is lost");
        // The next interval starts with room again.
        agg.add(&with(record("x", 100, 200, None), "/r", "10.0.0.1:1"), "y");
        let next = agg.take(SystemTime::now(), Duration::from_secs(1));
        assert_eq!(next.upstreams[0].routes.named_len(), 1);
    }

    #[test]
    fn coalesced_breakdowns_keep_their_bound_and_totals() {
        let limits = Limits {
            routes: 2,
            clients: 2,
        };
        let mut agg = Aggregator::new(limits);
        agg.add(&with(record("a", 100, 200, None), "/a", "10.0.0.1:1"), "a");
        agg.add(&with(record("a", 100, 200, None), "/b", "10.0.0.1:1"), "a");
        let mut first = agg.take(SystemTime::now(), Duration::from_secs(1));
        agg.add(&with(record("a", 100, 200, None), "/c", "10.0.0.2:1"), "a");
        agg.add(&with(record("a", 100, 200, None), "/a", "10.0.0.3:1"), "a");
        first.merge(&agg.take(SystemTime::now(), Duration::from_secs(1)));
        let stats = first.to_message("s");
        let routes: Vec<(&str, u64)> = stats.upstreams[0]
            .routes
            .iter()
            .map(|r| (r.route.as_str(), r.counts.requests))
            .collect();
        assert_eq!(routes, [("GET /a", 2), ("GET /b", 1), ("other", 1)]);
        let clients: Vec<(&str, u64)> = stats.upstreams[0]
            .clients
            .iter()
            .map(|c| (c.client.as_str(), c.counts.requests))
            .collect();
        assert_eq!(clients, [("10.0.0.1", 2), ("10.0.0.2", 1), ("other", 1)]);
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
        let latency = decode_histogram(&stats.upstreams[0].counts.latency).expect("decodes");
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

            /// Routes and clients count as a plain tally does: the first
            /// `max` keys of an interval by their own name, the rest as
            /// `other`, with the latencies of their own requests.
            #[test]
            fn breakdowns_count_as_a_plain_tally(
                requests in proptest::collection::vec((0usize..5, 0usize..4, 1u64..2048), 1..200),
            ) {
                let mut agg = Aggregator::new(Limits { routes: 3, clients: 2 });
                let tally = |keys: Vec<String>, max: usize| {
                    let mut named: Vec<String> = Vec::new();
                    let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
                    for (key, micros) in keys.into_iter().zip(requests.iter().map(|r| r.2)) {
                        let name = if named.contains(&key) || named.len() < max {
                            if !named.contains(&key) {
                                named.push(key.clone());
                            }
                            key
                        } else {
                            OTHER.to_owned()
                        };
                        let entry = counts.entry(name).or_default();
                        entry.0 += 1;
                        entry.1 += micros;
                    }
                    counts
                };
                for (route, client, micros) in &requests {
                    let path = format!("/r{route}");
                    let client = format!("10.0.0.{client}:1");
                    agg.add(&with(record("a", *micros, 200, None), &path, &client), "a");
                }
                let stats = agg.take(SystemTime::now(), Duration::from_secs(1)).to_message("s");
                let sum = |counts: &Counts| {
                    let latency = decode_histogram(&counts.latency).expect("decodes");
                    (counts.requests, latency.iter_recorded().map(|v| v.value_iterated_to() * v.count_at_value()).sum::<u64>())
                };
                let routes: BTreeMap<String, (u64, u64)> = stats.upstreams[0]
                    .routes
                    .iter()
                    .map(|r| (r.route.clone(), sum(&r.counts)))
                    .collect();
                let clients: BTreeMap<String, (u64, u64)> = stats.upstreams[0]
                    .clients
                    .iter()
                    .map(|c| (c.client.clone(), sum(&c.counts)))
                    .collect();
                let expected_routes = tally(requests.iter().map(|r| format!("GET /r{}", r.0)).collect(), 3);
                let expected_clients = tally(requests.iter().map(|r| format!("10.0.0.{}", r.1)).collect(), 2);
                // Durations below 2048 µs are exact in a 3-digit histogram.
                prop_assert_eq!(routes, expected_routes);
                prop_assert_eq!(clients, expected_clients);
            }

            /// Kept as values or as a histogram, merged in any order, the
            /// durations encode to exactly the histogram of all of them.
            #[test]
            fn latencies_encode_as_the_histogram_of_their_values(
                first in proptest::collection::vec(1u64..=MAX_LATENCY_MICROS, 0..1500),
                second in proptest::collection::vec(1u64..=MAX_LATENCY_MICROS, 0..1500),
            ) {
                let mut expected = new_latency_histogram();
                let (mut a, mut b) = (Latencies::default(), Latencies::default());
                for value in &first {
                    expected.record(*value).expect("auto-resizing");
                    a.record(*value);
                }
                for value in &second {
                    expected.record(*value).expect("auto-resizing");
                    b.record(*value);
                }
                let mut ab = a.clone();
                ab.merge(&b);
                b.merge(&a);
                prop_assert_eq!(ab.len(), expected.len());
                prop_assert_eq!(ab.to_histogram(), expected.clone());
                prop_assert_eq!(b.to_histogram(), expected.clone());
                prop_assert_eq!(ab.encode(), encode_histogram(&expected));
            }

            /// The kept encoder writes exactly what hdrhistogram's own
            /// serializer writes, histogram after histogram, or for a small
            /// one a stored stream that hdrhistogram's reader (and ours)
            /// read back as the same histogram.
            #[test]
            fn the_kept_encoder_writes_what_the_serializer_writes(
                histograms in proptest::collection::vec(
                    // Small (stored) and large (deflated) histograms.
                    proptest::collection::vec((1u64..=MAX_LATENCY_MICROS, 1u64..1000), 0..400),
                    1..4,
                ),
            ) {
                let mut encoder = HistogramEncoder::new();
                for values in &histograms {
                    let mut histogram = new_latency_histogram();
                    for (value, count) in values {
                        histogram.record_n(*value, *count).expect("auto-resizing");
                    }
                    let mut bytes = Vec::new();
                    hdrhistogram::serialization::V2DeflateSerializer::new()
                        .serialize(&histogram, &mut bytes)
                        .expect("serializes");
                    let mut plain = Vec::new();
                    V2Serializer::new().serialize(&histogram, &mut plain).expect("serializes");
                    let encoded = encoder.encode(&histogram);
                    if plain.len() >= STORED_BELOW {
                        prop_assert_eq!(&encoded, &BASE64.encode(&bytes));
                    }
                    let raw = BASE64.decode(&encoded).expect("base64");
                    let theirs: Histogram<u64> = Deserializer::new()
                        .deserialize(&mut raw.as_slice())
                        .expect("hdrhistogram reads it");
                    prop_assert_eq!(&theirs, &histogram);
                    prop_assert_eq!(&decode_histogram(&encoded).expect("we read it"), &histogram);
                }
            }

            /// Adding a `latency` field's counts is adding the histogram
            /// the crate decodes from it, whatever its precision, range and
            /// encoding.
            #[test]
            fn adding_encoded_counts_is_adding_the_decoded_histogram(
                kept in proptest::collection::vec((1u64..=MAX_LATENCY_MICROS, 1u64..1000), 0..50),
                values in proptest::collection::vec((1u64..=MAX_LATENCY_MICROS, 1u64..1000), 0..200),
                digits in 1u8..=LATENCY_SIGFIG,
                small in any::<bool>(),
                encoding in 0..3,
            ) {
                let mut histogram = Histogram::<u64>::new(digits).expect("valid");
                for (value, count) in &values {
                    let value = if small { value % 5_000 + 1 } else { *value };
                    histogram.record_n(value, *count).expect("auto-resizing");
                }
                let encoded = match encoding {
                    0 => encode_histogram(&histogram),
                    1 => {
                        let mut plain = Vec::new();
                        V2Serializer::new().serialize(&histogram, &mut plain).expect("serializes");
                        BASE64.encode(plain)
                    }
                    _ => {
                        let mut bytes = Vec::new();
                        hdrhistogram::serialization::V2DeflateSerializer::new()
                            .serialize(&histogram, &mut bytes)
                            .expect("serializes");
                        BASE64.encode(bytes)
                    }
                };
                let mut theirs = new_latency_histogram();
                for (value, count) in &kept {
                    theirs.record_n(*value, *count).expect("auto-resizing");
                }
                let mut ours = theirs.clone();
                theirs.add(decode_histogram(&encoded).expect("decodes")).expect("adds");
                add_encoded_histogram(&encoded, &mut ours).expect("adds");
                prop_assert_eq!(ours.len(), theirs.len());
                prop_assert_eq!(ours.max(), theirs.max());
                prop_assert_eq!(ours.min_nz(), theirs.min_nz());
                prop_assert_eq!(ours, theirs);
            }

            /// A damaged histogram is refused as the crate's decoder refuses
            /// it, and then adds nothing.
            #[test]
            fn damaged_counts_are_refused_as_the_decoder_refuses_them(
                compress in any::<bool>(),
                payload in prop_oneof![0u32..80, any::<u32>()],
                digits in 0u32..5,
                highest in prop_oneof![2u64..=4 * MAX_LATENCY_MICROS, any::<u64>()],
                body in proptest::collection::vec(any::<u8>(), 0..80),
            ) {
                let plain = v2(payload, digits, 1, highest, &body);
                let bytes = if compress { compressed(&plain, None) } else { plain };
                let encoded = BASE64.encode(&bytes);
                let before = new_latency_histogram();
                let mut theirs = before.clone();
                let decoded = decode_histogram(&encoded)
                    .and_then(|h| theirs.add(h).map_err(|_| HistogramDecodeError::Format("add")));
                let mut ours = before.clone();
                let added = add_encoded_histogram(&encoded, &mut ours);
                prop_assert_eq!(decoded.is_ok(), added.is_ok(), "{:?} vs {:?}", decoded, added);
                if added.is_ok() {
                    prop_assert_eq!(ours, theirs);
                } else {
                    prop_assert_eq!(ours, before);
                }
            }

            /// The reused inflater reads what a fresh `ZlibDecoder`
            /// reads, and refuses what it refuses.
            #[test]
            fn the_reused_inflater_reads_as_a_fresh_decoder(
                plain in proptest::collection::vec(any::<u8>(), 0..3000),
                store in any::<bool>(),
                cut in any::<proptest::sample::Index>(),
                flip in proptest::option::of((any::<proptest::sample::Index>(), any::<u8>())),
            ) {
                let mut bytes = if store {
                    let plain = &plain[..plain.len().min(600)];
                    let mut encoder = HistogramEncoder::new();
                    encoder.plain = plain.to_vec();
                    encoder.out = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
                    encoder.out.extend_from_slice(&[0; 4]);
                    encoder.store();
                    encoder.out
                } else {
                    compressed(&plain, None)
                };
                if let Some((at, xor)) = flip {
                    let at = 8 + at.index(bytes.len() - 8);
                    bytes[at] ^= xor;
                }
                let end = 8 + cut.index(bytes.len() - 7);
                for bytes in [&bytes[..], &bytes[..end]] {
                    let mut bytes = bytes.to_vec();
                    let len = (bytes.len() - 8) as u32;
                    bytes[4..8].copy_from_slice(&len.to_be_bytes());
                    let fresh = {
                        let mut out = Vec::new();
                        flate2::read::ZlibDecoder::new(&bytes[8..])
                            .take(MAX_HISTOGRAM_PAYLOAD as u64 + 1)
                            .read_to_end(&mut out)
                            .map(|_| out)
                    };
                    match (inflate(&bytes), fresh) {
                        (Ok(ours), Ok(theirs)) => prop_assert_eq!(ours, theirs),
                        (Err(_), Err(_)) => {}
                        (ours, theirs) => prop_assert!(false, "{:?} vs {:?}", ours.map(|o| o.len()), theirs.map(|t| t.len())),
                    }
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
