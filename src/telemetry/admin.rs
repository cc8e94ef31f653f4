//! The admin server (loopback by default): health and readiness, the sidecar
//! description, the `/events` WebSocket and Prometheus `/metrics`; and its
//! public twin for the pod network (`--public-admin`), which serves
//! `/events` only behind a token (see [`Scope`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::hub::{self, Hub, Subscriber};
use super::metrics::Metrics;
use crate::filter::{FilterExpr, form_pairs};
use crate::proxy::BoundListener;
use crate::schema::{Hello, ListenerDesc, Message, SCHEMA_VERSION, SidecarDesc, timestamp};

/// How long a client may take to send its request head when the telemetry
/// is not configured.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Events sent to a subscriber per write batch.
const SEND_BATCH: usize = 512;

/// After a partial batch, a subscriber's connection waits this long before
/// writing again, so that at high request rates events go out in batches
/// (one write for many events) instead of one system call per event. The
/// added delay is invisible to a person watching, and the sidecar's CPU
/// stays with the traffic.
const FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// How long the admin server waits at shutdown for subscribers to take
/// what is queued for them (at most their write timeout).
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// The largest frame a subscriber may send; subscribers only need to send
/// pings and a close.
const MAX_CLIENT_FRAME: usize = 64 * 1024;

/// Frames of a batch are written out whenever this much has gathered, so a
/// subscriber's buffer stays near this size whatever the batch.
const WRITE_CHUNK: usize = 64 * 1024;

/// Who this sidecar is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SidecarInfo {
    pub name: String,
    pub namespace: Option<String>,
    pub version: String,
    /// Lets a client notice a restarted sidecar.
    pub started_at: SystemTime,
    /// The pod's own addresses.
    pub addresses: Vec<std::net::IpAddr>,
}

/// The parts of the telemetry the admin server serves.
pub struct TelemetryAccess {
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub token: Option<String>,
    pub handshake_timeout: Duration,
    /// How long a write to a subscriber may stall, and how long a
    /// subscriber may stay silent after a ping, before it is closed.
    pub write_timeout: Duration,
}

/// What the admin server knows about the proxy.
pub struct AdminState {
    info: SidecarInfo,
    listeners: Vec<BoundListener>,
    /// True once every listener is bound and accepting, false again while
    /// draining so that Kubernetes stops sending new traffic.
    ready: AtomicBool,
    /// The `hello` message, without its `ts` (set as each is sent).
    hello: Hello,
    telemetry: Option<TelemetryAccess>,
    /// The `/events` sessions, waited for at shutdown so that what they
    /// have queued goes out.
    sessions: TaskTracker,
}

impl AdminState {
    pub fn new(
        info: SidecarInfo,
        listeners: Vec<BoundListener>,
        telemetry: Option<TelemetryAccess>,
    ) -> Self {
        let hello = hello_message(&info, &listeners);
        AdminState {
            info,
            listeners,
            ready: AtomicBool::new(false),
            hello,
            telemetry,
            sessions: TaskTracker::new(),
        }
    }

    pub fn info(&self) -> &SidecarInfo {
        &self.info
    }

    pub fn listeners(&self) -> &[BoundListener] {
        &self.listeners
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The `hello` message as of now: with the sidecar's clock, so that a
    /// reader can tell how far its own is off.
    fn hello_now(&self) -> Utf8Bytes {
        let mut hello = self.hello.clone();
        hello.ts = Some(timestamp(SystemTime::now()));
        hub::encode(&Message::Hello(hello))
    }
}

fn hello_message(info: &SidecarInfo, listeners: &[BoundListener]) -> Hello {
    Hello {
        schema: SCHEMA_VERSION,
        sidecar: SidecarDesc {
            name: info.name.clone(),
            namespace: info.namespace.clone(),
            version: info.version.clone(),
            started_at: timestamp(info.started_at),
        },
        listeners: listeners
            .iter()
            .map(|l| ListenerDesc {
                direction: l.direction,
                addr: l.addr.to_string(),
                target: l.target.as_ref().map(|t| t.to_string()),
            })
            .collect(),
        addresses: info.addresses.iter().map(ToString::to_string).collect(),
        ts: None,
    }
}

/// What an admin server serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything (`--admin`, loopback by default).
    Full,
    /// Probes, the description and `/metrics` (aggregates only), for the
    /// pod network (`--public-admin`): kubelet and Prometheus reach it.
    /// `/events` carries paths, client addresses and captured headers, so
    /// it is served here only when a token guards it.
    Public,
}

/// Serves the admin endpoints until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    scope: Scope,
    state: Arc<AdminState>,
    shutdown: CancellationToken,
) {
    let handshake_timeout = state
        .telemetry
        .as_ref()
        .map_or(DEFAULT_HANDSHAKE_TIMEOUT, |t| t.handshake_timeout);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service_shutdown = shutdown.clone();
            let service = service_fn(move |req| {
                let state = state.clone();
                let shutdown = service_shutdown.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&state, scope, req, shutdown)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(handshake_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::select! {
                result = conn => if let Err(err) = result {
                    debug!(error = %err, %peer, "admin connection ended with an error");
                },
                _ = shutdown.cancelled() => {}
            }
        });
    }
    // Sessions send what they have queued, then close; one stuck on a
    // subscriber that stopped reading is not waited for past its write
    // timeout.
    state.sessions.close();
    let flush = state
        .telemetry
        .as_ref()
        .map_or(Duration::ZERO, |t| t.write_timeout.min(SHUTDOWN_FLUSH));
    if tokio::time::timeout(flush, state.sessions.wait())
        .await
        .is_err()
    {
        warn!(
            sessions = state.sessions.len(),
            "subscribers did not take the last events in time"
        );
    }
}

type AdminResponse = Response<Full<Bytes>>;

fn route(
    state: &Arc<AdminState>,
    scope: Scope,
    req: Request<Incoming>,
    shutdown: CancellationToken,
) -> AdminResponse {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok"),
        "/readyz" if state.is_ready() => text(StatusCode::OK, "ready"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready"),
        "/" => json(state.hello_now().into()),
        "/metrics" | "/events" => {
            let Some(telemetry) = &state.telemetry else {
                return text(StatusCode::NOT_FOUND, "not found");
            };
            if req.uri().path() == "/events" {
                // Metrics are aggregates, scrapeable as they are; events
                // name paths, clients and headers, so the token guards them.
                if scope == Scope::Public && telemetry.token.is_none() {
                    return text(
                        StatusCode::FORBIDDEN,
                        "/events is served on the loopback admin address only \
                         (kubectl port-forward reaches it), unless --admin-token is set",
                    );
                }
                if !authorized(telemetry, &req) {
                    return unauthorized();
                }
                return events(state, telemetry, req, shutdown);
            }
            let mut resp = Response::new(Full::new(Bytes::from(telemetry.metrics.encode())));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Checks the bearer token (header, or `?token=` for WebSocket clients that
/// cannot set headers), in constant time.
fn authorized(telemetry: &TelemetryAccess, req: &Request<Incoming>) -> bool {
    let Some(expected) = &telemetry.token else {
        return true;
    };
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let from_query = || {
        form_pairs(req.uri().query().unwrap_or(""))
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
    };
    let given = from_header.or_else(from_query).unwrap_or_default();
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

fn unauthorized() -> AdminResponse {
    let mut resp = text(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// Answers the WebSocket handshake of `/events` and starts the session.
fn events(
    state: &Arc<AdminState>,
    telemetry: &TelemetryAccess,
    mut req: Request<Incoming>,
    shutdown: CancellationToken,
) -> AdminResponse {
    // First, so that a bad filter is explained to any client, curl too.
    let filter = match FilterExpr::from_query(req.uri().query().unwrap_or("")) {
        Ok(filter) => filter,
        Err(reason) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("invalid filter: {reason} (see docs/filters.md)"),
            );
        }
    };
    let headers = req.headers();
    let upgrade = headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let (true, true, Some(key)) = (upgrade, connection_upgrade, key) else {
        return text(
            StatusCode::BAD_REQUEST,
            "/events is a WebSocket: connect with a WebSocket client, e.g. websocat ws://127.0.0.1:15090/events",
        );
    };
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return text(
            StatusCode::BAD_REQUEST,
            "unsupported WebSocket version: 13 is required",
        );
    }
    let subscriber = match telemetry.hub.subscribe(filter) {
        Ok(subscriber) => subscriber,
        Err(err) => return text(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let hub = telemetry.hub.clone();
    let hello = state.hello_now();
    let write_timeout = telemetry.write_timeout;
    state.sessions.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_frame_size(Some(MAX_CLIENT_FRAME))
                    .max_message_size(Some(MAX_CLIENT_FRAME));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                session(ws, &subscriber, &hub, hello, write_timeout, shutdown).await;
            }
            Err(err) => debug!(error = %err, "events upgrade failed"),
        }
        hub.unsubscribe(&subscriber);
    });
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    resp
}

/// Sends `hello`, then whatever the subscriber's queue holds (backfill,
/// then stats, then events), until the client leaves or the sidecar stops.
///
/// A subscriber holds one of a few slots, so one that stops reading loses
/// it: a write that makes no progress for `write_timeout` closes the
/// session, and so does a subscriber that answers nothing (not even a
/// ping) for as long. When the sidecar stops, everything already queued
/// (the final partial interval included) is sent before the close.
async fn session<S>(
    mut ws: WebSocketStream<S>,
    subscriber: &Subscriber,
    hub: &Hub,
    hello: Utf8Bytes,
    write_timeout: Duration,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // Reading and sending never overlap, so the stream is not split (which
    // would put a lock between its two halves).
    let hello = ws.send(tungstenite::Message::Text(hello));
    if !matches!(tokio::time::timeout(write_timeout, hello).await, Ok(Ok(()))) {
        return;
    }
    let mut liveness = Liveness::new(write_timeout);
    let mut stopping = false;
    // The frames of a batch, gathered for one write (see `write_batch`).
    let mut out = Vec::new();
    loop {
        // What the subscriber sent meanwhile (pongs, a close), without
        // waiting: a busy session must hear its pongs too.
        while let Some(message) = ws.next().now_or_never() {
            match liveness.heard(message) {
                Heard::Alive => {}
                Heard::Gone => return,
            }
        }
        match liveness.check() {
            Check::Fine => {}
            Check::Ping => {
                // Queued in tungstenite; the next write flushes it.
                if ws
                    .feed(tungstenite::Message::Ping(Bytes::new()))
                    .now_or_never()
                    .is_some_and(|fed| fed.is_err())
                {
                    return;
                }
                // Best effort: a socket too full to take it now is the
                // write timeout's business.
                let _ = ws.flush().now_or_never();
            }
            Check::Silent => {
                debug!("subscriber answered no ping, closing");
                close(&mut ws, "no answer to ping", write_timeout).await;
                return;
            }
        }
        let batch = subscriber.take(SEND_BATCH, hub.sidecar());
        if batch.is_empty() {
            if stopping {
                close(&mut ws, "the sidecar is shutting down", write_timeout).await;
                return;
            }
            let wake = liveness.next_check();
            tokio::select! {
                _ = subscriber.ready() => {}
                message = ws.next() => match liveness.heard(message) {
                    Heard::Alive => {}
                    Heard::Gone => return,
                },
                _ = tokio::time::sleep_until(wake) => {}
                _ = shutdown.cancelled(), if !stopping => stopping = true,
            }
            continue;
        }
        let partial = batch.events.len() < SEND_BATCH;
        let sent = tokio::time::timeout(
            write_timeout,
            write_batch(&mut ws, batch.into_texts(), &mut out),
        )
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                debug!(error = %err, "subscriber went away");
                return;
            }
            Err(_) => {
                // A write stuck mid-frame cannot be followed by a close frame.
                warn!(
                    timeout = ?write_timeout,
                    "a subscriber stopped reading; closing it to free its slot"
                );
                return;
            }
        }
        if partial && !stopping {
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_INTERVAL) => {}
                _ = shutdown.cancelled() => stopping = true,
            }
        }
    }
}

/// Sends a close frame with `reason`, giving up after `timeout`.
async fn close<S>(ws: &mut WebSocketStream<S>, reason: &str, timeout: Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: reason.into(),
    };
    let closing = ws.send(tungstenite::Message::Close(Some(frame)));
    let _ = tokio::time::timeout(timeout, closing).await;
}

/// When a subscriber was last heard from, and whether it owes a pong.
struct Liveness {
    timeout: Duration,
    /// A ping is sent after this much silence...
    ping_after: Duration,
    last_heard: tokio::time::Instant,
    /// ...and the subscriber is closed `timeout` after it went unanswered.
    pinged: Option<tokio::time::Instant>,
}

enum Heard {
    Alive,
    Gone,
}

enum Check {
    Fine,
    Ping,
    Silent,
}

impl Liveness {
    fn new(timeout: Duration) -> Self {
        Liveness {
            timeout,
            ping_after: timeout / 3,
            last_heard: tokio::time::Instant::now(),
            pinged: None,
        }
    }

    fn heard(
        &mut self,
        message: Option<Result<tungstenite::Message, tungstenite::Error>>,
    ) -> Heard {
        match message {
            Some(Ok(tungstenite::Message::Close(_))) | None => Heard::Gone,
            Some(Err(err)) => {
                debug!(error = %err, "subscriber sent something invalid");
                Heard::Gone
            }
            // Pings are answered by tungstenite; anything else is ignored,
            // but shows that the subscriber is there.
            Some(Ok(_)) => {
                self.last_heard = tokio::time::Instant::now();
                self.pinged = None;
                Heard::Alive
            }
        }
    }

    fn check(&mut self) -> Check {
        let now = tokio::time::Instant::now();
        match self.pinged {
            Some(at) if now >= at + self.timeout => Check::Silent,
            Some(_) => Check::Fine,
            None if now >= self.last_heard + self.ping_after => {
                self.pinged = Some(now);
                Check::Ping
            }
            None => Check::Fine,
        }
    }

    /// When [`Liveness::check`] has something to do next.
    fn next_check(&self) -> tokio::time::Instant {
        match self.pinged {
            Some(at) => at + self.timeout,
            None => self.last_heard + self.ping_after,
        }
    }
}

/// Writes a batch of text messages as WebSocket frames.
///
/// A server's frames are not masked, so a message's frame is its header
/// (tungstenite's `FrameHeader`) followed by its text as it is. Framing the
/// batch here into one buffer written at once costs a small part of what
/// handing tungstenite each message did (`docs/benchmarks.md`, fifth
/// round), which matters at one message per request. tungstenite still does everything
/// else: the handshake's `hello`, answering pings, closing. What it has
/// buffered (a pong) is flushed first, so frames never interleave.
async fn write_batch<S>(
    ws: &mut WebSocketStream<S>,
    texts: impl Iterator<Item = Utf8Bytes>,
    out: &mut Vec<u8>,
) -> Result<(), tungstenite::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.flush().await?;
    let io = ws.get_mut();
    out.clear();
    for text in texts {
        push_text_frame(out, text.as_bytes());
        if out.len() >= WRITE_CHUNK {
            io.write_all(out).await?;
            out.clear();
        }
    }
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    io.flush().await?;
    Ok(())
}

/// Appends one unmasked, unfragmented text frame.
fn push_text_frame(out: &mut Vec<u8>, text: &[u8]) {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    // Formatting into a Vec cannot fail.
    let _ = header.format(text.len() as u64, out);
    out.extend_from_slice(text);
}

fn text(status: StatusCode, body: &str) -> AdminResponse {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json(body: Bytes) -> AdminResponse {
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn text_frames_are_what_tungstenite_reads() {
        // Every length format: 7 bits, 16 bits, 64 bits, and their edges.
        for len in [0, 1, 125, 126, 65_535, 65_536, 100_000] {
            let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut out = vec![0xAA]; // something before, as in a batch
            push_text_frame(&mut out, &text);
            let mut cursor = Cursor::new(&out[1..]);
            let (header, length) = FrameHeader::parse(&mut cursor)
                .expect("a valid header")
                .expect("a whole header");
            assert!(header.is_final);
            assert_eq!(header.opcode, OpCode::Data(Data::Text));
            assert_eq!(header.mask, None, "a server's frames are not masked");
            assert!(!header.rsv1 && !header.rsv2 && !header.rsv3);
            assert_eq!(length, len as u64);
            let start = 1 + cursor.position() as usize;
            assert_eq!(&out[start..], &text[..], "{len}");
        }
    }
}
