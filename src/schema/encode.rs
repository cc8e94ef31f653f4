//! The fast path from the proxy's records to event text: a hand-written
//! encoder, checked against serde over thousands of random records (the
//! tests below), because encoding every request is on the data path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::telemetry::record::{RequestRecord, TcpRecord};

/// RFC 3339 UTC with microseconds, e.g. `2026-11-30T03:42:30.123456Z`.
pub fn timestamp(time: SystemTime) -> String {
    match Rfc3339Micros::new(time) {
        Some(ts) => ts.as_str().to_owned(),
        None => humantime::format_rfc3339_micros(time).to_string(),
    }
}

/// A timestamp written as [`timestamp`] writes it, on the stack: every
/// request event carries one, and `humantime`'s `Display` through the
/// formatting machinery was a tenth of the cost of encoding an event.
struct Rfc3339Micros([u8; 27]);

impl Rfc3339Micros {
    /// `None` before 1970 or after 9999, which `humantime` handles (or
    /// rejects) itself.
    fn new(time: SystemTime) -> Option<Rfc3339Micros> {
        let since_epoch = time.duration_since(SystemTime::UNIX_EPOCH).ok()?;
        let secs = since_epoch.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Days to a civil date (Howard Hinnant's algorithm), for days ≥ 0.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        if year > 9999 {
            return None;
        }
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut value: u64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, rem / 3600);
        put(14, 2, rem % 3600 / 60);
        put(17, 2, rem % 60);
        put(20, 6, u64::from(since_epoch.subsec_micros()));
        Some(Rfc3339Micros(out))
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// Writes an address as a JSON string, as its `Display` writes it; IPv4
/// ones digit by digit with itoa, without the formatting machinery (which
/// was a fifth of the cost of encoding an event, which carries two).
fn write_addr(out: &mut String, addr: SocketAddr) {
    let SocketAddr::V4(v4) = addr else {
        // `[v6]:port` needs no escaping.
        out.push('"');
        out.push_str(&addr.to_string());
        out.push('"');
        return;
    };
    let mut digits = itoa::Buffer::new();
    out.push('"');
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(digits.format(octet));
    }
    out.push(':');
    out.push_str(digits.format(v4.port()));
    out.push('"');
}

/// Milliseconds as a float with microsecond precision.
pub fn millis(duration: Duration) -> f64 {
    let micros = duration.as_micros();
    // A u64 converts in one instruction, a u128 in a library call; both
    // round the same integer to the same double.
    match u64::try_from(micros) {
        Ok(micros) => micros as f64 / 1000.0,
        Err(_) => micros as f64 / 1000.0,
    }
}

fn addr(addr: SocketAddr) -> String {
    addr.to_string()
}

impl From<&RequestRecord> for RequestEvent {
    fn from(r: &RequestRecord) -> Self {
        RequestEvent {
            ts: timestamp(r.start),
            sidecar: r.sidecar.to_string(),
            direction: r.direction,
            protocol: r.protocol.into(),
            client: addr(r.client),
            server: r.server.map(addr),
            authority: r.authority.to_string(),
            method: r.method.as_ref().map(|m| m.as_str().to_owned()),
            path: r.path.clone(),
            status: r.status,
            grpc_status: r.grpc_status,
            grpc_message: r.grpc_message.clone(),
            error: r.error.map(Into::into),
            duration_ms: millis(r.duration),
            ttfb_ms: r.ttfb.map(millis),
            req_bytes: r.req_bytes,
            resp_bytes: r.resp_bytes,
            headers: (!r.headers.is_empty()).then(|| r.headers.iter().cloned().collect()),
        }
    }
}

impl From<&TcpRecord> for TcpEvent {
    fn from(r: &TcpRecord) -> Self {
        TcpEvent {
            ts: timestamp(r.start),
            sidecar: r.sidecar.to_string(),
            direction: r.direction,
            protocol: r.protocol.into(),
            client: addr(r.client),
            server: r.server.map(addr),
            sni: r.sni.clone(),
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            duration_ms: millis(r.duration),
            error: r.error.map(Into::into),
        }
    }
}

/// A `request` message encoded straight from a record, without building
/// the owned [`RequestEvent`] first: the sidecar encodes one per request
/// while anyone subscribes. [`RequestMessageRef::encode`] writes exactly
/// what serde_json writes for `Message::Request(RequestEvent::from(record))`
/// (tests compare them over random records).
pub struct RequestMessageRef<'a>(pub &'a RequestRecord);

impl RequestMessageRef<'_> {
    /// Appends the message's JSON to `out`, with nothing cached: the
    /// sidecar keeps a [`RequestEncoder`] instead, whose caches make each
    /// message after the first cheaper.
    pub fn encode(&self, out: &mut String) {
        let mut encoder = RequestEncoder {
            second: None,
            connections: ConnectionCache::none(),
        };
        encoder.encode(self.0, out);
    }
}

/// Encodes `request` messages one after another, remembering what repeats
/// from one to the next: the timestamp's second, and the text of the
/// fields that stay the same for all the requests of a connection.
///
/// Written by hand: through serde, every field name went through
/// serde_json's escaping loop byte by byte, and a field cost a call chain;
/// here names are constants and strings that need no escaping (nearly all)
/// are copied whole. An event took 7,200 instructions through serde, 2,500
/// by hand without the caches (see docs/benchmarks.md for with them).
/// It writes into a `String`, so that the text goes to subscribers
/// without being checked for UTF-8 again.
#[derive(Default)]
pub struct RequestEncoder {
    /// The last second written, and its text up to the fraction
    /// (`2026-11-30T03:42:30.`).
    second: Option<(u64, String)>,
    connections: ConnectionCache,
}

impl RequestEncoder {
    /// Appends the message's JSON to `out`.
    pub fn encode(&mut self, r: &RequestRecord, out: &mut String) {
        out.push_str(r#"{"type":"request","ts":"#);
        self.write_timestamp(out, r.start);
        self.connections.write(out, r);
        out.push_str(r#","method":"#);
        write_opt_str(out, r.method.as_ref().map(http::Method::as_str));
        out.push_str(r#","path":"#);
        write_opt_str(out, r.path.as_deref());
        out.push_str(r#","status":"#);
        write_opt_uint(out, r.status.map(u64::from));
        out.push_str(r#","grpc_status":"#);
        write_opt_uint(out, r.grpc_status.map(u64::from));
        out.push_str(r#","grpc_message":"#);
        write_opt_str(out, r.grpc_message.as_deref());
        out.push_str(r#","error":"#);
        match r.error {
            Some(error) => {
                out.push('"');
                out.push_str(error.as_str());
                out.push('"');
            }
            None => out.push_str("null"),
        }
        out.push_str(r#","duration_ms":"#);
        write_millis(out, r.duration);
        out.push_str(r#","ttfb_ms":"#);
        match r.ttfb {
            Some(ttfb) => write_millis(out, ttfb),
            None => out.push_str("null"),
        }
        out.push_str(r#","req_bytes":"#);
        write_uint(out, r.req_bytes);
        out.push_str(r#","resp_bytes":"#);
        write_uint(out, r.resp_bytes);
        if !r.headers.is_empty() {
            // Sorted, and the last of a repeated name kept, like the
            // BTreeMap of the owned event.
            let sorted: BTreeMap<&str, &str> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            out.push_str(r#","headers":{"#);
            for (i, (name, value)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, name);
                out.push(':');
                write_str(out, value);
            }
            out.push('}');
        }
        out.push('}');
    }

    /// Writes a timestamp as [`timestamp`] does, working out the date only
    /// when the second changes.
    fn write_timestamp(&mut self, out: &mut String, time: SystemTime) {
        let Ok(since_epoch) = time.duration_since(SystemTime::UNIX_EPOCH) else {
            return write_str(out, &timestamp(time));
        };
        let secs = since_epoch.as_secs();
        let prefix = match &self.second {
            Some((second, prefix)) if *second == secs => prefix,
            _ => match Rfc3339Micros::new(time) {
                Some(ts) => {
                    let prefix = ts.as_str()[..20].to_owned();
                    &self.second.insert((secs, prefix)).1
                }
                None => return write_str(out, &timestamp(time)),
            },
        };
        out.push('"');
        out.push_str(prefix);
        let mut micros = [b'0'; 6];
        let mut value = since_epoch.subsec_micros();
        for digit in micros.iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
        push_ascii(out, &micros);
        out.push_str("Z\"");
    }
}

/// The text of a request's fields from `sidecar` to `authority`, the same
/// for every request of a connection, for the connections seen last: 256
/// slots chosen by the client's port. A hit costs a few comparisons
/// instead of two addresses and two strings written.
struct ConnectionCache {
    slots: Vec<Option<ConnectionText>>,
}

struct ConnectionText {
    sidecar: Arc<str>,
    direction: Direction,
    protocol: HttpProtocol,
    client: SocketAddr,
    server: Option<SocketAddr>,
    authority: Arc<str>,
    text: String,
}

impl ConnectionText {
    fn is_of(&self, r: &RequestRecord) -> bool {
        self.client == r.client
            && self.server == r.server
            && self.direction == r.direction
            && self.protocol == r.protocol
            && (Arc::ptr_eq(&self.authority, &r.authority) || self.authority == r.authority)
            && (Arc::ptr_eq(&self.sidecar, &r.sidecar) || self.sidecar == r.sidecar)
    }
}

impl Default for ConnectionCache {
    fn default() -> Self {
        ConnectionCache {
            slots: std::iter::repeat_with(|| None).take(256).collect(),
        }
    }
}

impl ConnectionCache {
    /// A cache without slots, which writes the fields every time.
    fn none() -> Self {
        ConnectionCache { slots: Vec::new() }
    }

    fn write(&mut self, out: &mut String, r: &RequestRecord) {
        // Fibonacci hashing: ports that differ by a step (as the kernel
        // hands them out) land far apart.
        let slot = (u32::from(r.client.port()).wrapping_mul(0x9E37_79B9) >> 24) as usize;
        let Some(slot) = self.slots.get_mut(slot) else {
            return write_connection_fields(out, r);
        };
        if let Some(cached) = slot
            && cached.is_of(r)
        {
            out.push_str(&cached.text);
            return;
        }
        let start = out.len();
        write_connection_fields(out, r);
        let text = out[start..].to_owned();
        *slot = Some(ConnectionText {
            sidecar: r.sidecar.clone(),
            direction: r.direction,
            protocol: r.protocol,
            client: r.client,
            server: r.server,
            authority: r.authority.clone(),
            text,
        });
    }
}

/// The fields of a request from `sidecar` to `authority`.
fn write_connection_fields(out: &mut String, r: &RequestRecord) {
    out.push_str(r#","sidecar":"#);
    write_str(out, &r.sidecar);
    out.push_str(r#","direction":""#);
    out.push_str(r.direction.as_str());
    out.push_str(r#"","protocol":""#);
    out.push_str(r.protocol.as_str());
    out.push_str(r#"","client":"#);
    write_addr(out, r.client);
    out.push_str(r#","server":"#);
    match r.server {
        Some(server) => write_addr(out, server),
        None => out.push_str("null"),
    }
    out.push_str(r#","authority":"#);
    write_str(out, &r.authority);
}

/// Writes a JSON string. One that needs escaping (a control character, a
/// quote or a backslash) goes through serde_json, so the escapes are its.
fn write_str(out: &mut String, value: &str) {
    if value.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        // Serializing a string cannot fail.
        out.push_str(&serde_json::to_string(value).unwrap_or_default());
        return;
    }
    out.push('"');
    out.push_str(value);
    out.push('"');
}

fn write_opt_str(out: &mut String, value: Option<&str>) {
    match value {
        Some(value) => write_str(out, value),
        None => out.push_str("null"),
    }
}

fn write_uint(out: &mut String, value: u64) {
    out.push_str(itoa::Buffer::new().format(value));
}

fn write_opt_uint(out: &mut String, value: Option<u64>) {
    match value {
        Some(value) => write_uint(out, value),
        None => out.push_str("null"),
    }
}

/// Writes [`millis`] of a duration as serde_json writes that float (its
/// shortest round-trip form). Below 10¹² µs, where a double's spacing is
/// far finer than 0.001, that form is the number of microseconds with the
/// point moved three places and trailing zeros dropped (`1.5`, `0.001`,
/// `3.0`), written here with integers; larger ones go through serde_json.
fn write_millis(out: &mut String, duration: Duration) {
    let micros = duration.as_micros();
    if micros >= 1_000_000_000_000 {
        out.push_str(&serde_json::to_string(&millis(duration)).unwrap_or_default());
        return;
    }
    let micros = micros as u64;
    write_uint(out, micros / 1000);
    let fraction = (micros % 1000) as u16;
    let text = [
        b'.',
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ];
    // At least one digit after the point, no trailing zeros after it.
    let len = if fraction.is_multiple_of(100) {
        2
    } else if fraction.is_multiple_of(10) {
        3
    } else {
        4
    };
    push_ascii(out, &text[..len]);
}

/// Appends text made here from digits and punctuation, without checking
/// it as UTF-8 again.
fn push_ascii(out: &mut String, text: &[u8]) {
    out.reserve(text.len());
    for &byte in text {
        out.push(char::from(byte));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_from_a_sidecar_saturate_instead_of_wrapping() {
        let mut classes = StatusClasses::default();
        classes.add(503, u64::MAX);
        classes.add(500, 2);
        let mut other = StatusClasses::default();
        other.add(200, u64::MAX);
        classes.merge(&other);
        classes.merge(&other);
        assert_eq!((classes.c5xx, classes.c2xx), (u64::MAX, u64::MAX));
    }
    use std::sync::Arc;

    fn record() -> RequestRecord {
        RequestRecord {
            start: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_474_150_123_456),
            sidecar: Arc::from("web"),
            direction: Direction::Outbound,
            protocol: HttpProtocol::Grpc,
            client: "10.0.0.1:5000".parse().expect("literal"),
            server: None,
            authority: "voting-svc.emojivoto:8080".into(),
            method: Some(http::Method::POST),
            path: Some("/emojivoto.v1.VotingService/VoteDoughnut".into()),
            status: Some(200),
            grpc_status: Some(2),
            grpc_message: Some("ERROR".into()),
            error: None,
            duration: Duration::from_micros(1234),
            ttfb: Some(Duration::from_micros(1000)),
            req_bytes: 5,
            resp_bytes: 0,
            headers: Vec::new(),
        }
    }

    #[test]
    fn request_events_have_every_field_and_nulls_for_absent_values() {
        let json =
            serde_json::to_value(Message::Request(RequestEvent::from(&record()))).expect("encodes");
        let object = json.as_object().expect("an object");
        for field in [
            "type",
            "ts",
            "sidecar",
            "direction",
            "protocol",
            "client",
            "server",
            "authority",
            "method",
            "path",
            "status",
            "grpc_status",
            "grpc_message",
            "error",
            "duration_ms",
            "ttfb_ms",
            "req_bytes",
            "resp_bytes",
        ] {
            assert!(object.contains_key(field), "missing {field}");
        }
        assert!(
            !object.contains_key("headers"),
            "headers only when captured"
        );
        assert_eq!(json["type"], "request");
        assert_eq!(json["ts"], "2025-11-30T03:42:30.123456Z");
        assert_eq!(json["server"], serde_json::Value::Null);
        assert_eq!(json["protocol"], "grpc");
        assert_eq!(json["direction"], "outbound");
        assert_eq!(json["duration_ms"], 1.234);
        assert_eq!(json["ttfb_ms"], 1.0);
    }

    fn owned(r: &RequestRecord) -> String {
        serde_json::to_string(&Message::Request(RequestEvent::from(r))).expect("encodes")
    }

    fn borrowed(r: &RequestRecord) -> String {
        let mut out = String::new();
        RequestMessageRef(r).encode(&mut out);
        out
    }

    #[test]
    fn the_borrowing_encoder_writes_exactly_the_owned_message() {
        let mut record = record();
        assert_eq!(borrowed(&record), owned(&record));
        record.server = Some("[::1]:8080".parse().expect("literal"));
        record.error = Some(ErrorKind::UpstreamReset);
        record.headers = vec![
            ("x-b".into(), "2".into()),
            ("x-a".into(), "1 \"quoted\"".into()),
        ];
        assert_eq!(borrowed(&record), owned(&record));
    }

    /// A string of characters that JSON escapes or that are easy to get
    /// wrong: controls, quotes, backslashes, DEL, multi-byte UTF-8.
    fn random_text() -> String {
        const PIECES: [&str; 14] = [
            "a", "Z", "/", "-", ".", "\"", "\\", "\n", "\t", "\u{1}", "\u{1f}", "\u{7f}", "é", "🍩",
        ];
        (0..fastrand::usize(0..12))
            .map(|_| PIECES[fastrand::usize(..PIECES.len())])
            .collect()
    }

    fn random_addr() -> SocketAddr {
        // Often one of a few, sharing ports, so the encoder's address
        // cache is hit and its slots are contended.
        if fastrand::bool() {
            let ip = [[10, 0, 0, 1], [10, 0, 0, 2], [127, 0, 0, 1]][fastrand::usize(..3)];
            return SocketAddr::from((ip, [80, 144, 8080][fastrand::usize(..3)]));
        }
        if fastrand::bool() {
            SocketAddr::from((fastrand::u32(..).to_be_bytes(), fastrand::u16(..)))
        } else {
            SocketAddr::from((fastrand::u128(..).to_be_bytes(), fastrand::u16(..)))
        }
    }

    #[test]
    fn the_borrowing_encoder_matches_serde_on_random_records() {
        let maybe = |text: String| fastrand::bool().then_some(text);
        // One encoder for all, as the sidecar keeps one: its caches carry
        // from record to record.
        let mut encoder = RequestEncoder::default();
        let mut last_micros = 0;
        for _ in 0..5_000 {
            let micros = match fastrand::u8(..5) {
                0 => 0,
                // Within the second of the last one, or the next.
                4 => last_micros / 1_000_000 * 1_000_000 + fastrand::u64(..2_000_000),
                // Past year 9999, where humantime takes over (or refuses).
                1 => fastrand::u64(253_402_300_800_000_000..300_000_000_000_000_000),
                _ => fastrand::u64(..253_402_300_799_999_999),
            };
            let record = RequestRecord {
                start: SystemTime::UNIX_EPOCH + Duration::from_micros(micros),
                sidecar: random_text().into(),
                direction: if fastrand::bool() {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                },
                protocol: [HttpProtocol::Http1, HttpProtocol::H2, HttpProtocol::Grpc]
                    [fastrand::usize(..3)],
                client: random_addr(),
                server: fastrand::bool().then(random_addr),
                authority: random_text().into(),
                method: match fastrand::u8(..3) {
                    0 => None,
                    1 => Some(http::Method::GET),
                    _ => http::Method::from_bytes(b"PURGE").ok(),
                },
                path: maybe(random_text()),
                status: fastrand::bool().then(|| fastrand::u16(..)),
                grpc_status: fastrand::bool().then(|| fastrand::u32(..)),
                grpc_message: maybe(random_text()),
                error: fastrand::bool()
                    .then(|| ErrorKind::ALL[fastrand::usize(..ErrorKind::ALL.len())]),
                duration: Duration::from_micros(fastrand::u64(..1 << 50)),
                ttfb: fastrand::bool().then(|| Duration::from_micros(fastrand::u64(..1 << 40))),
                req_bytes: fastrand::u64(..),
                resp_bytes: fastrand::u64(..),
                headers: (0..fastrand::usize(0..4))
                    .map(|_| {
                        (
                            ["x-a", "x-b", "x-c"][fastrand::usize(..3)].into(),
                            random_text(),
                        )
                    })
                    .collect(),
            };
            // Not past what SystemTime and humantime can represent.
            if std::panic::catch_unwind(|| owned(&record)).is_err() {
                continue;
            }
            last_micros = micros;
            assert_eq!(borrowed(&record), owned(&record), "{record:?}");
            let mut out = String::new();
            encoder.encode(&record, &mut out);
            assert_eq!(out, owned(&record), "{record:?}");
        }
    }

    #[test]
    fn milliseconds_are_written_as_serde_writes_them() {
        let mut micros: Vec<u64> = (0..200_000).collect();
        for power in 0..=13 {
            let p = 10u64.pow(power);
            micros.extend([p - 1, p, p + 1, p * 3 / 2]);
        }
        micros.extend((0..100_000).map(|_| fastrand::u64(..1 << 45)));
        micros.extend([u64::MAX / 1000, 999_999_999_999, 1_000_000_000_000]);
        for micros in micros {
            let duration = Duration::from_micros(micros);
            assert_eq!(millis(duration), duration.as_micros() as f64 / 1000.0);
            let mut out = String::new();
            write_millis(&mut out, duration);
            assert_eq!(
                out,
                serde_json::to_string(&millis(duration)).expect("encodes"),
                "{micros}"
            );
        }
    }

    #[test]
    fn durations_beyond_u64_microseconds_keep_their_value() {
        for duration in [Duration::MAX, Duration::from_secs(u64::MAX / 1000)] {
            assert_eq!(millis(duration), duration.as_micros() as f64 / 1000.0);
            let mut out = String::new();
            write_millis(&mut out, duration);
            assert_eq!(
                out,
                serde_json::to_string(&millis(duration)).expect("encodes")
            );
        }
    }

    #[test]
    fn timestamps_are_written_as_humantime_writes_them() {
        let mut micros: u64 = 0;
        // Every day boundary and leap rule from 1970 to 2400, at a few times
        // of day, and some random instants.
        let mut instants = Vec::new();
        while micros < 13_569_465_600_000_000 {
            instants.push(micros);
            instants.push(micros + 86_399_999_999);
            instants.push(micros + 43_210_987_654);
            micros += 86_400_000_000 * 7 + 86_400_000_000 / 3;
        }
        for _ in 0..10_000 {
            instants.push(fastrand::u64(..253_402_300_799_999_999));
        }
        for micros in instants {
            let time = SystemTime::UNIX_EPOCH + Duration::from_micros(micros);
            assert_eq!(
                timestamp(time),
                humantime::format_rfc3339_micros(time).to_string(),
                "{micros}"
            );
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0:0",
            "10.0.0.1:5000",
            "255.255.255.255:65535",
            "127.0.0.1:80",
            "[::1]:8080",
            "[fe80::1:2]:9",
        ] {
            let addr: SocketAddr = text.parse().expect("literal");
            let mut out = String::new();
            write_addr(&mut out, addr);
            assert_eq!(out, format!("\"{text}\""));
        }
    }

    #[test]
    fn messages_round_trip() {
        let message = Message::Request(RequestEvent::from(&record()));
        let json = serde_json::to_string(&message).expect("encodes");
        let back: Message = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back, message);
        let dropped = Message::Dropped(Dropped {
            count: 3,
            total: 10,
        });
        assert_eq!(
            serde_json::to_string(&dropped).expect("encodes"),
            r#"{"type":"dropped","count":3,"total":10}"#
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// A message with bytes changed anywhere decodes or is refused,
        /// never panics; what decodes encodes again.
        #[test]
        fn mutated_messages_decode_or_are_refused(
            at in proptest::collection::vec((0usize..2000, proptest::prelude::any::<u8>()), 0..8),
            cut in 0usize..2000,
        ) {
            let mut text = serde_json::to_string(&Message::Request(RequestEvent::from(&record())))
                .expect("encodes")
                .into_bytes();
            for (i, byte) in at {
                let len = text.len();
                text[i % len] = byte;
            }
            text.truncate(cut.max(1).min(text.len()));
            if let Ok(message) = serde_json::from_slice::<Message>(&text) {
                proptest::prop_assert!(serde_json::to_string(&message).is_ok());
            }
        }
    }
}
