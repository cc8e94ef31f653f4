//! The event stream's schema (version 1): one Rust type per message,
//! shared by the sidecar, the terminal UI, the recorder and the tests.
//!
//! Every message is a JSON object with a `"type"`. Absent values are `null`,
//! never omitted (the opt-in `headers` of a request is the one field that
//! only appears when configured). Documented in `docs/events.md`; the JSON
//! Schema is `assets/events.schema.json`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::record::{Direction, ErrorKind, HttpProtocol, RequestRecord, TcpProtocol, TcpRecord};

/// The schema version this build speaks. Clients ignore messages of a newer
/// schema (and say so) rather than misreading them.
pub const SCHEMA_VERSION: u32 = 1;

/// One message of the event stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Hello(Hello),
    Request(RequestEvent),
    Tcp(TcpEvent),
    Stats(Stats),
    Dropped(Dropped),
}

/// Always the first message: who the sidecar is and what it listens on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub schema: u32,
    pub sidecar: SidecarDesc,
    pub listeners: Vec<ListenerDesc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidecarDesc {
    pub name: String,
    pub namespace: Option<String>,
    pub version: String,
    /// RFC 3339; a different value on reconnect means the sidecar restarted.
    pub started_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerDesc {
    pub direction: Direction,
    pub addr: String,
    /// `null` when connections go to their original destination.
    pub target: Option<String>,
}

/// One finished HTTP request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestEvent {
    /// Request start, RFC 3339 UTC with microseconds.
    pub ts: String,
    pub sidecar: String,
    pub direction: Direction,
    pub protocol: HttpProtocol,
    pub client: String,
    pub server: Option<String>,
    pub authority: String,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<u16>,
    pub grpc_status: Option<u32>,
    pub grpc_message: Option<String>,
    pub error: Option<ErrorKind>,
    pub duration_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub req_bytes: u64,
    pub resp_bytes: u64,
    /// Captured request headers (`--capture-header`), secrets redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
}

impl RequestEvent {
    pub fn is_failure(&self) -> bool {
        super::record::is_failure(self.status, self.grpc_status, self.error)
    }
}

/// One finished opaque connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TcpEvent {
    pub ts: String,
    pub sidecar: String,
    pub direction: Direction,
    pub protocol: TcpProtocol,
    pub client: String,
    pub server: Option<String>,
    pub sni: Option<String>,
    /// Bytes from the client to the server.
    pub bytes_in: u64,
    /// Bytes from the server to the client.
    pub bytes_out: u64,
    pub duration_ms: f64,
    pub error: Option<ErrorKind>,
}

/// Exact aggregates of the requests that ended during one interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// End of the interval.
    pub ts: String,
    pub sidecar: String,
    pub interval_ms: u64,
    pub upstreams: Vec<UpstreamStats>,
}

/// One (direction, authority) during one interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpstreamStats {
    pub direction: Direction,
    pub authority: String,
    pub requests: u64,
    pub failures: u64,
    pub status: StatusClasses,
    /// Count per gRPC status code (keys are the codes as strings).
    pub grpc_status: BTreeMap<String, u64>,
    /// Count per error kind.
    pub errors: BTreeMap<String, u64>,
    pub req_bytes: u64,
    pub resp_bytes: u64,
    /// HdrHistogram of durations in microseconds, V2 compressed (deflate)
    /// serialization, base64-encoded.
    pub latency: String,
}

/// Requests per HTTP status class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusClasses {
    #[serde(rename = "1xx")]
    pub c1xx: u64,
    #[serde(rename = "2xx")]
    pub c2xx: u64,
    #[serde(rename = "3xx")]
    pub c3xx: u64,
    #[serde(rename = "4xx")]
    pub c4xx: u64,
    #[serde(rename = "5xx")]
    pub c5xx: u64,
}

impl StatusClasses {
    pub fn add(&mut self, status: u16, n: u64) {
        match status / 100 {
            1 => self.c1xx += n,
            2 => self.c2xx += n,
            3 => self.c3xx += n,
            4 => self.c4xx += n,
            5 => self.c5xx += n,
            _ => {}
        }
    }

    pub fn merge(&mut self, other: &StatusClasses) {
        self.c1xx += other.c1xx;
        self.c2xx += other.c2xx;
        self.c3xx += other.c3xx;
        self.c4xx += other.c4xx;
        self.c5xx += other.c5xx;
    }
}

/// Told to a subscriber once its queue has room again: it missed `count`
/// request/tcp events since the last `dropped`, `total` since it connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub count: u64,
    pub total: u64,
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-30T03:42:30.123456Z`.
pub fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

/// Milliseconds as a float with microsecond precision.
pub fn millis(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
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
            protocol: r.protocol,
            client: addr(r.client),
            server: r.server.map(addr),
            authority: r.authority.clone(),
            method: r.method.clone(),
            path: r.path.clone(),
            status: r.status,
            grpc_status: r.grpc_status,
            grpc_message: r.grpc_message.clone(),
            error: r.error,
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
            protocol: r.protocol,
            client: addr(r.client),
            server: r.server.map(addr),
            sni: r.sni.clone(),
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            duration_ms: millis(r.duration),
            error: r.error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            method: Some("POST".into()),
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
}
