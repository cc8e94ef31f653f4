//! The records the proxy emits, one per finished HTTP request and one per
//! finished opaque connection, and the bounded channel that carries them.
//!
//! The data path never waits for telemetry: [`Recorder::record`] uses
//! `try_send`, and a full channel drops the record and counts the drop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

pub use crate::schema::{
    Direction, ErrorKind, FAILING_GRPC_STATUSES, HttpProtocol, TcpProtocol, is_failure,
};

/// One finished HTTP request as the proxy saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    /// Wall-clock time the request head arrived.
    pub start: SystemTime,
    pub sidecar: Arc<str>,
    pub direction: Direction,
    pub protocol: HttpProtocol,
    pub client: SocketAddr,
    /// The upstream address connected to (or tried, when connecting failed);
    /// `None` when no address was reached, e.g. a DNS failure.
    pub server: Option<SocketAddr>,
    /// `Host` (HTTP/1) or `:authority` (HTTP/2), else the server address.
    /// Shared: a connection's requests nearly always name one authority,
    /// and the proxy keeps the last one instead of copying it per request.
    pub authority: Arc<str>,
    /// `None` only for a request too malformed to parse. (`http::Method`
    /// holds the standard methods without allocating.)
    pub method: Option<http::Method>,
    /// Path and query as sent; `None` for CONNECT and unparsable requests.
    pub path: Option<String>,
    /// The status the upstream answered. A response made up by meshtop (for
    /// a failed connect, say) has no status; its `error` says what happened.
    pub status: Option<u16>,
    pub grpc_status: Option<u32>,
    pub grpc_message: Option<String>,
    pub error: Option<ErrorKind>,
    /// From the request head to the end of the response (or the failure).
    pub duration: Duration,
    /// From the request head to the upstream's response head.
    pub ttfb: Option<Duration>,
    /// Request body bytes forwarded upstream.
    pub req_bytes: u64,
    /// Response body bytes forwarded to the client.
    pub resp_bytes: u64,
    /// Request headers captured on request (`--capture-header`), already
    /// redacted; empty unless configured.
    pub headers: Vec<(String, String)>,
}

impl RequestRecord {
    pub fn is_failure(&self) -> bool {
        is_failure(self.status, self.grpc_status, self.error)
    }

    /// Cuts fields longer than the schema's limits (see
    /// [`MAX_PATH`](crate::schema::MAX_PATH) and the others beside it);
    /// whether any was cut. A few comparisons for an ordinary request.
    pub fn bound_fields(&mut self) -> bool {
        use crate::schema::{
            MAX_AUTHORITY, MAX_GRPC_MESSAGE, MAX_HEADER_VALUE, MAX_HEADERS, MAX_METHOD, MAX_PATH,
            truncate_field,
        };
        let mut cut = false;
        if let Some(path) = &mut self.path {
            cut |= truncate_field(path, MAX_PATH);
        }
        if self.authority.len() > MAX_AUTHORITY {
            let mut authority = self.authority.to_string();
            truncate_field(&mut authority, MAX_AUTHORITY);
            self.authority = authority.into();
            cut = true;
        }
        if let Some(method) = &self.method
            && method.as_str().len() > MAX_METHOD
        {
            self.method = http::Method::from_bytes(&method.as_str().as_bytes()[..MAX_METHOD]).ok();
            cut = true;
        }
        if let Some(message) = &mut self.grpc_message {
            cut |= truncate_field(message, MAX_GRPC_MESSAGE);
        }
        if self.headers.len() > MAX_HEADERS {
            self.headers.truncate(MAX_HEADERS);
            cut = true;
        }
        for (_, value) in &mut self.headers {
            cut |= truncate_field(value, MAX_HEADER_VALUE);
        }
        cut
    }
}

/// One finished opaque (TCP or TLS) connection.
#[derive(Clone, Debug, PartialEq)]
pub struct TcpRecord {
    pub start: SystemTime,
    pub sidecar: Arc<str>,
    pub direction: Direction,
    pub protocol: TcpProtocol,
    pub client: SocketAddr,
    pub server: Option<SocketAddr>,
    /// The server name of a TLS ClientHello.
    pub sni: Option<String>,
    /// Bytes received from the client (and forwarded to the server).
    pub bytes_in: u64,
    /// Bytes received from the server (and forwarded to the client).
    pub bytes_out: u64,
    pub duration: Duration,
    pub error: Option<ErrorKind>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Request(RequestRecord),
    Tcp(TcpRecord),
}

/// The sending half of the record channel, cloned into every connection.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::Sender<Record>,
    /// Records lost because the channel was full; the telemetry reports it.
    dropped: Arc<AtomicU64>,
    /// Records with a field cut to the schema's limits.
    truncated: Arc<AtomicU64>,
    /// Set when the drain timeout cut the remaining connections off: a
    /// request dropped unfinished then ended by shutdown, not by its client.
    cut_off: Arc<AtomicBool>,
}

/// The receiving half of the record channel.
pub type RecordReceiver = mpsc::Receiver<Record>;

impl Recorder {
    /// A channel holding at most `capacity` records not yet consumed; past
    /// that, new records are dropped and counted.
    pub fn channel(capacity: usize) -> (Recorder, RecordReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let recorder = Recorder {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            truncated: Arc::new(AtomicU64::new(0)),
            cut_off: Arc::new(AtomicBool::new(false)),
        };
        (recorder, rx)
    }

    /// Notes that the drain timeout ended and connections are being cut.
    pub fn cut_off(&self) {
        self.cut_off.store(true, Ordering::Release);
    }

    /// Whether [`Recorder::cut_off`] was called: what ends unfinished from
    /// now on ends by shutdown.
    pub fn is_cut_off(&self) -> bool {
        self.cut_off.load(Ordering::Acquire)
    }

    /// Hands a record to the telemetry without ever waiting. Every record
    /// passes here, so this is where fields are cut to the schema's limits:
    /// what waits in the channel is bounded too.
    pub fn record(&self, mut record: Record) {
        let cut = match &mut record {
            Record::Request(request) => request.bound_fields(),
            Record::Tcp(tcp) => tcp.sni.as_mut().is_some_and(|sni| {
                crate::schema::truncate_field(sni, crate::schema::MAX_AUTHORITY)
            }),
        };
        if cut {
            self.truncated.fetch_add(1, Ordering::Relaxed);
        }
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many records had a field cut to the schema's limits.
    pub fn truncated(&self) -> u64 {
        self.truncated.load(Ordering::Relaxed)
    }

    /// How many records were dropped because the channel was full (or its
    /// receiver gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_record() -> Record {
        Record::Tcp(TcpRecord {
            start: SystemTime::now(),
            sidecar: Arc::from("test"),
            direction: Direction::Inbound,
            protocol: TcpProtocol::Tcp,
            client: "127.0.0.1:1".parse().expect("literal address"),
            server: None,
            sni: None,
            bytes_in: 0,
            bytes_out: 0,
            duration: Duration::ZERO,
            error: None,
        })
    }

    #[test]
    fn full_channel_drops_and_counts_instead_of_waiting() {
        let (recorder, mut rx) = Recorder::channel(2);
        for _ in 0..5 {
            recorder.record(tcp_record());
        }
        assert_eq!(recorder.dropped(), 3);
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn failure_rule_matches_the_documented_definition() {
        assert!(!is_failure(Some(200), None, None));
        assert!(!is_failure(Some(404), None, None));
        assert!(is_failure(Some(500), None, None));
        assert!(is_failure(Some(503), None, None));
        assert!(!is_failure(Some(200), Some(0), None));
        assert!(!is_failure(Some(200), Some(5), None));
        for code in [2, 4, 13, 14, 15] {
            assert!(is_failure(Some(200), Some(code), None), "grpc {code}");
        }
        assert!(is_failure(None, None, Some(ErrorKind::ConnectRefused)));
    }
}
