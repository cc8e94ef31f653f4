//! The messages of the event stream and of recordings: one serde type per
//! message. Absent values are `null`, never omitted (the opt-in `headers`
//! of a request is the one field that only appears when configured).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;

/// One message of the event stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Hello(Hello),
    Request(RequestEvent),
    Tcp(TcpEvent),
    Stats(Stats),
    Dropped(Dropped),
    /// A type this build does not know, from a newer sidecar: its fields
    /// are not read, its text is kept (`--json` prints it, a recording
    /// keeps it) and readers count it rather than call it invalid.
    #[serde(other)]
    Unknown,
}

/// Always the first message: who the sidecar is and what it listens on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub schema: u32,
    pub sidecar: SidecarDesc,
    pub listeners: Vec<ListenerDesc>,
    /// The pod's own IP addresses (`--pod-ip`, else its interfaces'), so
    /// that a reader can name the sidecar a request came from by its
    /// client address. Absent from sidecars before it was added.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The sidecar's clock when it said hello, RFC 3339 (absent from
    /// sidecars before it was added): a reader compares it with its own to
    /// tell how far the sidecar's clock is off before any `stats` arrive.
    #[serde(default)]
    pub ts: Option<String>,
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
    pub protocol: Lenient<HttpProtocol>,
    pub client: String,
    pub server: Option<String>,
    pub authority: String,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<u16>,
    pub grpc_status: Option<u32>,
    pub grpc_message: Option<String>,
    pub error: Option<Lenient<ErrorKind>>,
    pub duration_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub req_bytes: u64,
    pub resp_bytes: u64,
    /// Captured request headers (`--capture-header`), secrets redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
}

impl RequestEvent {
    /// [`is_failure`](super::record::is_failure): an error of any kind,
    /// known to this build or not, is a failure.
    pub fn is_failure(&self) -> bool {
        self.error.is_some() || super::is_failure(self.status, self.grpc_status, None)
    }

    /// Cuts fields longer than the schema's limits, as the sidecar does, so
    /// that what a reader keeps of an event from anywhere is bounded;
    /// whether any was cut. The addresses, `ts` and `sidecar` are bounded
    /// at [`MAX_AUTHORITY`] too.
    pub fn bound_fields(&mut self) -> bool {
        let mut cut = false;
        for (field, max) in [
            (&mut self.authority, MAX_AUTHORITY),
            (&mut self.sidecar, MAX_AUTHORITY),
            (&mut self.client, MAX_AUTHORITY),
            (&mut self.ts, MAX_AUTHORITY),
        ] {
            cut |= truncate_field(field, max);
        }
        for (field, max) in [
            (&mut self.server, MAX_AUTHORITY),
            (&mut self.method, MAX_METHOD),
            (&mut self.path, MAX_PATH),
            (&mut self.grpc_message, MAX_GRPC_MESSAGE),
        ] {
            if let Some(text) = field {
                cut |= truncate_field(text, max);
            }
        }
        if let Some(headers) = &mut self.headers {
            if headers.len() > MAX_HEADERS {
                while headers.len() > MAX_HEADERS {
                    headers.pop_last();
                }
                cut = true;
            }
            if headers
                .iter()
                .any(|(k, v)| k.len() > MAX_AUTHORITY || v.len() > MAX_HEADER_VALUE)
            {
                *headers = std::mem::take(headers)
                    .into_iter()
                    .map(|(mut k, mut v)| {
                        truncate_field(&mut k, MAX_AUTHORITY);
                        truncate_field(&mut v, MAX_HEADER_VALUE);
                        (k, v)
                    })
                    .collect();
                cut = true;
            }
        }
        cut
    }
}

/// One finished opaque connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TcpEvent {
    pub ts: String,
    pub sidecar: String,
    pub direction: Direction,
    pub protocol: Lenient<TcpProtocol>,
    pub client: String,
    pub server: Option<String>,
    pub sni: Option<String>,
    /// Bytes from the client to the server.
    pub bytes_in: u64,
    /// Bytes from the server to the client.
    pub bytes_out: u64,
    pub duration_ms: f64,
    pub error: Option<Lenient<ErrorKind>>,
}

/// Exact aggregates of the requests that ended during one interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// End of the interval.
    pub ts: String,
    pub sidecar: String,
    pub interval_ms: u64,
    pub upstreams: Vec<UpstreamStats>,
    /// An interval from before the subscription, sent first to a new
    /// subscriber (the sidecar's `--history`); only present when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backfill: bool,
}

/// One (direction, authority) during one interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpstreamStats {
    pub direction: Direction,
    pub authority: String,
    #[serde(flatten)]
    pub counts: Counts,
    /// The same counts per route ([`crate::telemetry::route`]): at most
    /// the sidecar's `--max-routes`, the rest under `other`. Absent from
    /// sidecars before it was added.
    #[serde(default)]
    pub routes: Vec<RouteStats>,
    /// Inbound only: the same counts per client IP address, at most the
    /// sidecar's `--max-clients`, the rest under `other`. Absent from
    /// sidecars before it was added.
    #[serde(default)]
    pub clients: Vec<ClientStats>,
}

/// What `stats` count of a set of requests: an upstream's, or those of
/// one of its routes or clients.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
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

/// One route of an upstream during one interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteStats {
    /// The route, or `other` for the routes past the sidecar's bound.
    pub route: String,
    #[serde(flatten)]
    pub counts: Counts,
}

/// One client of an inbound upstream during one interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientStats {
    /// The client's IP address (no port), or `other` for the clients past
    /// the sidecar's bound.
    pub client: String,
    #[serde(flatten)]
    pub counts: Counts,
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
            1 => self.c1xx = self.c1xx.saturating_add(n),
            2 => self.c2xx = self.c2xx.saturating_add(n),
            3 => self.c3xx = self.c3xx.saturating_add(n),
            4 => self.c4xx = self.c4xx.saturating_add(n),
            5 => self.c5xx = self.c5xx.saturating_add(n),
            _ => {}
        }
    }

    pub fn merge(&mut self, other: &StatusClasses) {
        self.c1xx = self.c1xx.saturating_add(other.c1xx);
        self.c2xx = self.c2xx.saturating_add(other.c2xx);
        self.c3xx = self.c3xx.saturating_add(other.c3xx);
        self.c4xx = self.c4xx.saturating_add(other.c4xx);
        self.c5xx = self.c5xx.saturating_add(other.c5xx);
    }
}

/// Told to a subscriber once its queue has room again: it missed `count`
/// request/tcp events since the last `dropped`, `total` since it connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub count: u64,
    pub total: u64,
}
