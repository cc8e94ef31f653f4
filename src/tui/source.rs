//! Connections to sidecars: each [`Target`] gets a task that holds a
//! WebSocket to its `/events`, turns every frame into a [`FeedItem`] and
//! reconnects on its own with [`Backoff`], so one unreachable or restarting
//! sidecar never blocks the others or the UI.
//!
//! All tasks feed one [`feed`], bounded by items and by bytes. A task waits
//! when it is full, which stops it reading its socket; the sidecar then
//! drops events for this subscriber and says so with a `dropped` message,
//! while `stats` stay exact. Backpressure thus ends at the sidecar, never
//! in our memory.
//!
//! The UI's filter is pushed down to every sidecar (`/events?filter=`), so
//! that filtered-out events never cross the port-forward nor fill a queue:
//! a changed filter re-subscribes each source at once. Stats lose nothing
//! by it: the new subscription starts with the sidecar's history, which the
//! model merges without counting twice. A recording keeps every event (the
//! filter applies at replay), so recording sessions subscribe to all.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use http::{HeaderValue, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::filter::FilterExpr;
use crate::schema::one_line as truncated;
use crate::schema::{DecodeError, Message, decode};

/// A sidecar to attach to: `ws://host:port/events` (any path and query
/// kept), `host:port`, or `:port` (→ `ws://127.0.0.1:port/events`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub url: String,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an empty target (use ws://HOST:PORT/events, HOST:PORT or :PORT)".into());
        }
        if s.chars().any(char::is_whitespace) {
            return Err(format!("target '{s}' contains spaces"));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            if !scheme.eq_ignore_ascii_case("ws") {
                return Err(format!(
                    "target '{s}': only ws:// is supported (reach a remote sidecar through kubectl port-forward)"
                ));
            }
            let uri: http::Uri = s
                .parse()
                .map_err(|e| format!("target '{s}' is not a valid URL: {e}"))?;
            if uri.host().is_none_or(str::is_empty) {
                return Err(format!("target '{s}' has no host"));
            }
            if uri.port_u16() == Some(0) {
                return Err(format!("target '{s}': port 0 cannot be connected to"));
            }
            // `ws://host:port` alone means the sidecar's event stream, like
            // the short forms do; a path given explicitly is kept.
            let rest = &s[scheme.len() + 3..];
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, after) = rest.split_at(authority_end);
            let url = if after.starts_with('/') {
                format!("ws://{rest}")
            } else {
                format!("ws://{authority}/events{after}")
            };
            return Ok(Target { url });
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("target '{s}' has no port (use HOST:PORT or :PORT)"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("target '{s}': '{port}' is not a port number"))?;
        let host = match host {
            "" => "127.0.0.1",
            h if h.contains(':') && !(h.starts_with('[') && h.ends_with(']')) => {
                return Err(format!(
                    "target '{s}': write an IPv6 address in brackets, e.g. [::1]:{port}"
                ));
            }
            h if h.contains(['/', '?', '#', '@']) => {
                return Err(format!("target '{s}' is not HOST:PORT"));
            }
            h => h,
        };
        Ok(Target {
            url: format!("ws://{host}:{port}/events"),
        })
    }
}

impl fmt::Display for Target {
    /// The URL as it may be shown, logged and recorded: a `token` in its
    /// query and a password in its userinfo are `<redacted>`. (Connecting
    /// uses [`Target::url`] itself.)
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.url))
    }
}

/// `url` with the values of `token` query parameters and any userinfo
/// password replaced by `<redacted>`.
pub fn redact_url(url: &str) -> String {
    const REDACTED: &str = "<redacted>";
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    if !scheme.is_empty() {
        out.push_str(scheme);
        out.push_str("://");
    }
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            out.push_str(user);
            if userinfo.contains(':') {
                out.push(':');
                out.push_str(REDACTED);
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    let (before_fragment, fragment) = match after.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (after, None),
    };
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("token") => {
                        format!("{key}={REDACTED}")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
        }
        None => out.push_str(before_fragment),
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// What the sources tell the model, tagged with the index of the target in
/// the list given to [`spawn_sources`].
#[derive(Clone, Debug)]
pub struct FeedItem {
    pub source: usize,
    pub kind: FeedKind,
}

#[derive(Clone, Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "almost every item is a Message, so boxing it would add an allocation per event and save no memory"
)]
pub enum FeedKind {
    /// A connection attempt has begun.
    /// Start over: forget everything received so far (a replay seeking
    /// backwards rebuilds the model from the start).
    Reset,
    Connecting,
    /// The WebSocket handshake succeeded; a `hello` comes next. `filter`:
    /// what the sidecar was asked to select events by (empty: all).
    Live {
        filter: String,
    },
    /// A valid message, and its raw JSON text as received (for `--json` and
    /// recording, which pass it on unchanged).
    Message {
        message: Message,
        raw: Arc<str>,
        /// When it was received, on the UI's own clock (a replay: when it
        /// was received as recorded). `None`: at the time the message itself
        /// gives, for feeds that have no clock of their own.
        received: Option<SystemTime>,
    },
    /// A frame that is not valid JSON, has an unknown `type`, does not fit
    /// the schema, is binary, or comes from a sidecar of a newer schema
    /// than [`SCHEMA_VERSION`]: counted and shown, never a crash.
    Invalid {
        reason: String,
    },
    /// The connection ended or could not be made; the next attempt is in
    /// `retry_in`.
    Reconnecting {
        reason: String,
        retry_in: Duration,
    },
    /// Will not retry: the admin server answered 401/403 (a wrong or missing
    /// token) or 404 (not a meshtop sidecar), or the target cannot be
    /// turned into a request at all. Retrying would only fail the same way.
    Failed {
        reason: String,
    },
}

/// Feed items that may wait for the model.
pub const FEED_ITEMS: usize = 8192;

/// Bytes of feed items that may wait for the model (see [`FeedItem::weight`]):
/// a few seconds of a busy sidecar's events, and room for the largest
/// message a source accepts, so that items, not a sidecar, decide what the
/// UI holds.
pub const FEED_BYTES: usize = 48 << 20;

/// The sending end of a feed; cloned into every source.
#[derive(Clone, Debug)]
pub struct FeedSender {
    tx: mpsc::Sender<(FeedItem, OwnedSemaphorePermit)>,
    /// Room in bytes: an item holds its weight until it is received.
    room: Arc<Semaphore>,
    /// All the room there is: no item waits for more.
    budget: u32,
}

/// The receiving end of a feed: the model's.
#[derive(Debug)]
pub struct FeedReceiver {
    rx: mpsc::Receiver<(FeedItem, OwnedSemaphorePermit)>,
}

/// The feed is closed: its receiver is gone.
#[derive(Debug, thiserror::Error)]
#[error("the feed is closed")]
pub struct FeedClosed;

/// A channel of feed items bounded by [`FEED_ITEMS`] items and by
/// [`FEED_BYTES`]: a sender waits for room of both, so whatever sidecars
/// send, what waits for the model stays within both.
pub fn feed() -> (FeedSender, FeedReceiver) {
    feed_with(FEED_ITEMS, FEED_BYTES)
}

/// A feed with other bounds (tests).
pub fn feed_with(items: usize, bytes: usize) -> (FeedSender, FeedReceiver) {
    let (tx, rx) = mpsc::channel(items.max(1));
    let budget = u32::try_from(bytes.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
    let sender = FeedSender {
        tx,
        room: Arc::new(Semaphore::new(budget as usize)),
        budget,
    };
    (sender, FeedReceiver { rx })
}

impl FeedSender {
    /// Sends an item once there is room for it (an item larger than the
    /// whole budget waits for all of it).
    pub async fn send(&self, item: FeedItem) -> Result<(), FeedClosed> {
        let weight = u32::try_from(item.weight())
            .unwrap_or(u32::MAX)
            .min(self.budget);
        let room = self
            .room
            .clone()
            .acquire_many_owned(weight)
            .await
            .map_err(|_| FeedClosed)?;
        self.tx.send((item, room)).await.map_err(|_| FeedClosed)
    }
}

impl FeedReceiver {
    /// The next item; `None` once every sender is gone and the feed is empty.
    pub async fn recv(&mut self) -> Option<FeedItem> {
        self.rx.recv().await.map(|(item, _room)| item)
    }

    /// The next item if one is waiting.
    pub fn try_recv(&mut self) -> Option<FeedItem> {
        self.rx.try_recv().ok().map(|(item, _room)| item)
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }
}

impl FeedItem {
    /// About what the item holds in memory: a message's text as received,
    /// and decoded, which takes about twice its text (its strings, maps and
    /// their allocations; measured on stats of many upstreams).
    pub fn weight(&self) -> usize {
        match &self.kind {
            FeedKind::Message { raw, .. } => raw.len().saturating_mul(3).saturating_add(512),
            FeedKind::Invalid { reason }
            | FeedKind::Reconnecting { reason, .. }
            | FeedKind::Failed { reason } => reason.len() + 128,
            FeedKind::Reset | FeedKind::Connecting => 64,
            FeedKind::Live { filter } => filter.len() + 64,
        }
    }
}

/// The first delay after a failure.
const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// The longest delay between attempts: a restarted sidecar is seen within
/// seconds, and an absent one costs one refused connection per 5 s.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Each delay is shortened by a random part of up to this fraction, so
/// that many `meshtop attach` (or many targets of one) that lost the same
/// sidecar do not all come back in the same instant. Taking it off (not
/// adding it) keeps delays within the cap and still growing until the cap:
/// the smallest next delay (1.5 × the nominal) exceeds the largest current.
const BACKOFF_JITTER: f64 = 0.25;

/// Exponential backoff: 100 ms doubling up to 5 s, with jitter; reset
/// after a connection that delivered its hello, so a sidecar that restarts
/// is retried quickly rather than at the delay of its last outage.
#[derive(Debug)]
pub struct Backoff {
    /// The delay before jitter for the next attempt.
    nominal: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff {
            nominal: BACKOFF_INITIAL,
            rng: fastrand::Rng::new(),
        }
    }

    /// The delay before the next attempt; each call doubles the next one,
    /// up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.nominal;
        self.nominal = (nominal * 2).min(BACKOFF_MAX);
        nominal.mul_f64(1.0 - BACKOFF_JITTER * self.rng.f64())
    }

    /// Starts again from the shortest delay.
    pub fn reset(&mut self) {
        self.nominal = BACKOFF_INITIAL;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// How long the TCP connect and the WebSocket handshake may take together.
/// A port-forward to a dead pod accepts and then hangs; this turns that
/// into a retry.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest silence after which a connection counts as lost; longer
/// when the sidecar's stats interval is long (see [`PeerState::quiet_limit`]).
const QUIET_LIMIT_MIN: Duration = Duration::from_secs(15);

/// The longest silence tolerated, whatever stats interval a sidecar claims.
const QUIET_LIMIT_MAX: Duration = Duration::from_secs(3600);

/// How long to wait for the close handshake on shutdown before just
/// dropping the connection.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// The largest message accepted. A `stats` message carries one histogram
/// per upstream (at most `--max-authorities` of them, a few hundred bytes
/// each), so even 1000 upstreams fit easily; anything larger is not from a
/// sidecar and ends the connection rather than our memory.
const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// Spawns one task per target. Each connects (sending `Authorization:
/// Bearer TOKEN` when `token` is `Some`), forwards every text frame as a
/// [`FeedItem`] tagged with the target's index, and reconnects on its own
/// with [`Backoff`]. Items wait for room in the feed: a slow consumer slows
/// the reading of the sockets (see the module docs).
///
/// The tasks end when `shutdown` is cancelled, when `tx`'s receiver is
/// dropped, or (one of them) on [`FeedKind::Failed`]. The returned tracker
/// is already closed, so `tracker.wait().await` returns once they all have.
pub fn spawn_sources(
    targets: &[Target],
    token: Option<String>,
    tx: FeedSender,
    shutdown: CancellationToken,
    filter: watch::Receiver<FilterExpr>,
) -> TaskTracker {
    let tracker = TaskTracker::new();
    for (index, target) in targets.iter().enumerate() {
        let source = Source {
            index,
            target: target.clone(),
            token: token.clone(),
            tx: tx.clone(),
            shutdown: shutdown.clone(),
            filter: filter.clone(),
            follows_filter: true,
        };
        let span = tracing::info_span!("source", index, url = %target);
        tracker.spawn(source.run().instrument(span));
    }
    tracker.close();
    tracker
}

/// The filter the sources subscribe with, and the sender that changes it:
/// `None` when recording, whose sources subscribe to every event.
pub fn subscription(
    filter: &FilterExpr,
    recording: bool,
) -> (
    Option<watch::Sender<FilterExpr>>,
    watch::Receiver<FilterExpr>,
) {
    if recording {
        // The sender goes at once: the sources see the filter never change.
        let (_, rx) = watch::channel(FilterExpr::default());
        return (None, rx);
    }
    let (tx, rx) = watch::channel(filter.clone());
    (Some(tx), rx)
}

/// One target's connection loop.
struct Source {
    index: usize,
    target: Target,
    token: Option<String>,
    tx: FeedSender,
    shutdown: CancellationToken,
    /// What to subscribe with; a change re-subscribes.
    filter: watch::Receiver<FilterExpr>,
    /// False once the filter's sender is gone: it cannot change any more.
    follows_filter: bool,
}

/// How one connection ended.
enum Ended {
    /// Shutdown, or nobody listens to the feed any more.
    Stop,
    /// Try again after a delay.
    Retry { reason: String, got_hello: bool },
    /// Do not try again.
    Fail(String),
    /// The filter changed: subscribe again with it, at once.
    Resubscribe,
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Source {
    async fn run(mut self) {
        let mut backoff = Backoff::new();
        loop {
            let (reason, got_hello) = match self.connect_and_read().await {
                Ended::Resubscribe => {
                    tracing::debug!("source subscribes again with a new filter");
                    continue;
                }
                Ended::Stop => {
                    tracing::debug!("source stopped");
                    return;
                }
                Ended::Fail(reason) => {
                    tracing::info!(%reason, "source failed, not retrying");
                    self.emit(FeedKind::Failed { reason }).await;
                    return;
                }
                Ended::Retry { reason, got_hello } => (reason, got_hello),
            };
            if got_hello {
                backoff.reset();
            }
            let retry_in = backoff.next_delay();
            tracing::debug!(%reason, ?retry_in, "source reconnects");
            if !self.emit(FeedKind::Reconnecting { reason, retry_in }).await {
                return;
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(retry_in) => {}
            }
        }
    }

    /// Sends an item, giving up if shutdown comes first or the receiver is
    /// gone; `false` means the task should end.
    async fn emit(&self, kind: FeedKind) -> bool {
        let item = FeedItem {
            source: self.index,
            kind,
        };
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => false,
            sent = self.tx.send(item) => sent.is_ok(),
        }
    }

    async fn connect_and_read(&mut self) -> Ended {
        if !self.emit(FeedKind::Connecting).await {
            return Ended::Stop;
        }
        let filter = self.filter.borrow_and_update().clone();
        let request = match self.request(&filter) {
            Ok(request) => request,
            Err(reason) => return Ended::Fail(reason),
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_SIZE))
            .max_frame_size(Some(MAX_MESSAGE_SIZE));
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let connected = tokio::select! {
            () = self.shutdown.cancelled() => return Ended::Stop,
            connected = tokio::time::timeout(CONNECT_TIMEOUT, connect) => connected,
        };
        let ws = match connected {
            Err(_) => {
                return Ended::Retry {
                    reason: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                    got_hello: false,
                };
            }
            Ok(Err(err)) => return connect_error(err),
            Ok(Ok((ws, _response))) => ws,
        };
        tracing::debug!("source live");
        let filter = filter.to_string();
        if !self.emit(FeedKind::Live { filter }).await {
            return Ended::Stop;
        }
        self.read(ws).await
    }

    /// The WebSocket request: the target's URL with the filter added to its
    /// query (the sidecar keeps what all of its parameters select).
    fn request(&self, filter: &FilterExpr) -> Result<http::Request<()>, String> {
        let mut url = self.target.url.clone();
        if !filter.is_empty() {
            let encoded = percent_encoding::utf8_percent_encode(
                filter.as_str(),
                percent_encoding::NON_ALPHANUMERIC,
            );
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("filter=");
            url.push_str(&encoded.to_string());
        }
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("cannot make a request for {}: {e}", self.target))?;
        if let Some(token) = &self.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| "the token contains characters not allowed in a header".to_owned())?;
            value.set_sensitive(true);
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
        }
        Ok(request)
    }

    async fn read(&mut self, mut ws: WsStream) -> Ended {
        let mut peer = PeerState::default();
        loop {
            let quiet_limit = peer.quiet_limit();
            let next = tokio::select! {
                () = self.shutdown.cancelled() => {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
                    return Ended::Stop;
                }
                changed = self.filter.changed(), if self.follows_filter => {
                    if changed.is_err() {
                        self.follows_filter = false;
                        continue;
                    }
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(None)).await;
                    return Ended::Resubscribe;
                }
                next = tokio::time::timeout(quiet_limit, ws.next()) => next,
            };
            let Ok(next) = next else {
                return Ended::Retry {
                    reason: format!("nothing received for {}s", quiet_limit.as_secs()),
                    got_hello: peer.got_hello,
                };
            };
            let kind = match next {
                None => {
                    return Ended::Retry {
                        reason: "the connection closed".into(),
                        got_hello: peer.got_hello,
                    };
                }
                Some(Err(err)) => {
                    return Ended::Retry {
                        reason: read_error(&err),
                        got_hello: peer.got_hello,
                    };
                }
                Some(Ok(tungstenite::Message::Text(text))) => peer.text(text.as_str()),
                Some(Ok(tungstenite::Message::Binary(bytes))) => FeedKind::Invalid {
                    reason: format!("a binary frame of {} bytes", bytes.len()),
                },
                Some(Ok(tungstenite::Message::Close(frame))) => {
                    let reason = match frame {
                        Some(frame) if !frame.reason.is_empty() => {
                            format!("the sidecar closed the connection: {}", frame.reason)
                        }
                        _ => "the sidecar closed the connection".into(),
                    };
                    return Ended::Retry {
                        reason,
                        got_hello: peer.got_hello,
                    };
                }
                // tungstenite answers pings itself.
                Some(Ok(_)) => continue,
            };
            if !self.emit(kind).await {
                return Ended::Stop;
            }
        }
    }
}

/// What one connection to a sidecar has told us so far: whether it said
/// hello, its schema when newer than ours, and its stats interval.
#[derive(Default)]
struct PeerState {
    /// A valid hello arrived: the connection worked, so the backoff starts
    /// over.
    got_hello: bool,
    /// The schema of the last hello, when newer than ours. Every later
    /// message of that connection is of that schema too, so all of them are
    /// skipped rather than misread.
    newer_schema: Option<u64>,
    /// The `interval_ms` of the latest `stats`, which bounds how long a
    /// working connection can stay silent.
    stats_interval: Option<Duration>,
}

impl PeerState {
    /// How long the connection may stay silent before it counts as lost.
    /// A sidecar sends `stats` every interval even when there was no
    /// traffic, so silence means a hung peer — typically a port-forward
    /// whose pod is gone — which TCP alone may not notice for minutes.
    fn quiet_limit(&self) -> Duration {
        // A peer's claim: its multiple is bounded, never an overflow.
        self.stats_interval.map_or(QUIET_LIMIT_MIN, |interval| {
            interval
                .checked_mul(3)
                .unwrap_or(QUIET_LIMIT_MAX)
                .clamp(QUIET_LIMIT_MIN, QUIET_LIMIT_MAX)
        })
    }

    fn text(&mut self, text: &str) -> FeedKind {
        match decode(text) {
            Ok(message) => {
                if let Message::Hello(_) = &message {
                    self.newer_schema = None;
                    self.got_hello = true;
                }
                if let Message::Stats(stats) = &message {
                    self.stats_interval = Some(Duration::from_millis(stats.interval_ms));
                }
                if let Some(schema) = self.newer_schema {
                    return FeedKind::Invalid {
                        reason: DecodeError::NewerSchema(schema).to_string(),
                    };
                }
                FeedKind::Message {
                    message,
                    raw: Arc::from(text),
                    received: Some(SystemTime::now()),
                }
            }
            Err(err) => {
                if let DecodeError::NewerSchema(schema) = err {
                    // Every later message of this connection is of that
                    // schema too: skipped, not misread.
                    self.newer_schema = Some(schema);
                }
                FeedKind::Invalid {
                    reason: err.to_string(),
                }
            }
        }
    }
}

/// Classifies a failed connect: HTTP answers that retrying cannot change
/// are final; everything else (refused, reset, 503 for too many
/// subscribers, …) is retried.
fn connect_error(err: tungstenite::Error) -> Ended {
    match err {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .and_then(|body| body.lines().next().map(truncated))
                .filter(|line| !line.is_empty());
            let mut reason = format!("HTTP {status}");
            match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    reason.push_str(": wrong or missing token (--token, MESHTOP_ADMIN_TOKEN)");
                    Ended::Fail(reason)
                }
                StatusCode::NOT_FOUND => {
                    reason.push_str(": no event stream here; is this a meshtop admin address?");
                    Ended::Fail(reason)
                }
                _ => {
                    if let Some(body) = body {
                        reason.push_str(": ");
                        reason.push_str(&body);
                    }
                    Ended::Retry {
                        reason,
                        got_hello: false,
                    }
                }
            }
        }
        tungstenite::Error::Url(err) => Ended::Fail(format!("bad URL: {err}")),
        tungstenite::Error::Io(err) => Ended::Retry {
            reason: format!("cannot connect: {err}"),
            got_hello: false,
        },
        err => Ended::Retry {
            reason: format!("handshake failed: {err}"),
            got_hello: false,
        },
    }
}

fn read_error(err: &tungstenite::Error) -> String {
    format!("connection lost: {err}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str) -> String {
        s.parse::<Target>()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
            .url
    }

    fn bad(s: &str) -> String {
        match s.parse::<Target>() {
            Ok(t) => panic!("{s:?} should not parse, got {t}"),
            Err(e) => {
                assert!(!e.contains('\n'), "one line: {e}");
                e
            }
        }
    }

    #[test]
    fn a_port_alone_means_the_local_sidecar() {
        assert_eq!(target(":15090"), "ws://127.0.0.1:15090/events");
    }

    #[test]
    fn host_and_port_mean_its_event_stream() {
        assert_eq!(target("127.0.0.1:15091"), "ws://127.0.0.1:15091/events");
        assert_eq!(target("localhost:9"), "ws://localhost:9/events");
        assert_eq!(target("[::1]:15090"), "ws://[::1]:15090/events");
        assert_eq!(target("  web:80 "), "ws://web:80/events");
    }

    #[test]
    fn urls_keep_their_path_and_query() {
        assert_eq!(
            target("ws://127.0.0.1:15090/events"),
            "ws://127.0.0.1:15090/events"
        );
        assert_eq!(
            target("ws://host:1/events?failures=1&authority=voting"),
            "ws://host:1/events?failures=1&authority=voting"
        );
        assert_eq!(target("ws://host:1/other/path"), "ws://host:1/other/path");
        assert_eq!(target("ws://[::1]:2/events"), "ws://[::1]:2/events");
    }

    #[test]
    fn urls_without_a_path_get_the_event_stream() {
        assert_eq!(target("ws://host:1"), "ws://host:1/events");
        assert_eq!(target("ws://host:1?token=x"), "ws://host:1/events?token=x");
        assert_eq!(target("ws://host"), "ws://host/events");
        // An explicit `/` is a path the user chose.
        assert_eq!(target("ws://host:1/"), "ws://host:1/");
    }

    #[test]
    fn the_display_is_the_url() {
        let t: Target = ":1".parse().expect("valid");
        assert_eq!(t.to_string(), t.url);
    }

    #[test]
    fn bad_targets_are_one_line_errors() {
        assert!(bad("").contains("empty"));
        assert!(bad("   ").contains("empty"));
        assert!(bad("localhost").contains("no port"));
        assert!(bad(":").contains("port"));
        assert!(bad(":0").contains("port"));
        assert!(bad(":99999").contains("port"));
        assert!(bad("host:http").contains("port"));
        assert!(bad("::1:15090").contains("brackets"));
        assert!(bad("wss://host:1/events").contains("ws://"));
        assert!(bad("http://host:1/events").contains("ws://"));
        assert!(bad("ws://").contains("ws://"));
        assert!(bad("ws://host:0/events").contains("port 0"));
        assert!(bad("a b:1").contains("spaces"));
        assert!(bad("host/events:1").contains("HOST:PORT"));
    }

    #[test]
    fn backoff_starts_at_100ms_and_doubles_to_5s() {
        let mut backoff = Backoff::new();
        let nominal = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000];
        for ms in nominal {
            let delay = backoff.next_delay();
            let max = Duration::from_millis(ms);
            assert!(delay <= max, "{delay:?} > {max:?}");
            assert!(
                delay >= max.mul_f64(1.0 - BACKOFF_JITTER),
                "{delay:?} too short for {max:?}"
            );
        }
    }

    #[test]
    fn backoff_delays_grow_until_the_cap_whatever_the_jitter() {
        for _ in 0..200 {
            let mut backoff = Backoff::new();
            let delays: Vec<Duration> = (0..7).map(|_| backoff.next_delay()).collect();
            assert!(delays.windows(2).all(|w| w[0] < w[1]), "{delays:?}");
        }
    }

    #[test]
    fn backoff_never_exceeds_the_cap() {
        let mut backoff = Backoff::new();
        for _ in 0..1000 {
            assert!(backoff.next_delay() <= BACKOFF_MAX);
        }
    }

    #[test]
    fn backoff_jitter_spreads_delays_within_a_quarter() {
        let delays: Vec<Duration> = (0..500).map(|_| Backoff::new().next_delay()).collect();
        let min = delays.iter().min().copied().unwrap_or_default();
        let max = delays.iter().max().copied().unwrap_or_default();
        assert!(min >= Duration::from_millis(75), "{min:?}");
        assert!(max <= Duration::from_millis(100), "{max:?}");
        // 500 draws of a uniform jitter cover most of its 25 ms range.
        assert!(max - min > Duration::from_millis(15), "{min:?}..{max:?}");
    }

    #[test]
    fn backoff_reset_starts_over() {
        let mut backoff = Backoff::new();
        for _ in 0..10 {
            backoff.next_delay();
        }
        backoff.reset();
        assert!(backoff.next_delay() <= BACKOFF_INITIAL);
        assert!(backoff.next_delay() > BACKOFF_INITIAL);
    }

    fn invalid_reason(peer: &mut PeerState, text: &str) -> String {
        match peer.text(text) {
            FeedKind::Invalid { reason } => reason,
            other => panic!("{text} should be invalid, got {other:?}"),
        }
    }

    const HELLO: &str = r#"{"type":"hello","schema":1,"sidecar":{"name":"web","namespace":null,"version":"0.1.0","started_at":"2026-11-30T03:42:30.123456Z"},"listeners":[]}"#;

    #[test]
    fn frames_are_decoded_with_their_raw_text() {
        let mut peer = PeerState::default();
        match peer.text(HELLO) {
            FeedKind::Message {
                message: Message::Hello(hello),
                raw,
                received,
            } => {
                assert!(received.is_some(), "a live message has its receive time");
                assert_eq!(hello.sidecar.name, "web");
                assert_eq!(&*raw, HELLO);
            }
            other => panic!("expected a hello, got {other:?}"),
        }
        assert!(peer.got_hello);
        let dropped = r#"{"type":"dropped","count":1,"total":2,"later_field":true}"#;
        assert!(matches!(
            peer.text(dropped),
            FeedKind::Message {
                message: Message::Dropped(_),
                ..
            }
        ));
    }

    #[test]
    fn bad_frames_say_why() {
        let mut peer = PeerState::default();
        assert!(invalid_reason(&mut peer, "not json").starts_with("not JSON"));
        // A type this build does not know is a newer sidecar's message.
        assert!(matches!(
            peer.text(r#"{"type":"profile","x":1}"#),
            FeedKind::Message {
                message: Message::Unknown,
                ..
            }
        ));
        assert!(invalid_reason(&mut peer, r#"{"count":1}"#).contains("without a \"type\""));
        assert!(invalid_reason(&mut peer, r#"{"type":7}"#).contains("not a string"));
        assert!(invalid_reason(&mut peer, "[1,2]").contains("without a \"type\""));
        let reason = invalid_reason(&mut peer, r#"{"type":"dropped","count":"many"}"#);
        assert!(reason.contains("dropped that does not fit"), "{reason}");
        let reason = invalid_reason(&mut peer, &format!(r#"{{"type":{}}}"#, "7".repeat(500)));
        assert!(reason.len() < 120, "{reason}");
        assert!(!peer.got_hello);
    }

    #[test]
    fn silence_is_tolerated_for_three_stats_intervals_and_at_least_15s() {
        let mut peer = PeerState::default();
        assert_eq!(peer.quiet_limit(), QUIET_LIMIT_MIN);
        let stats = |ms: u64| {
            format!(
                r#"{{"type":"stats","ts":"2026-11-30T03:42:33.000004Z","sidecar":"web","interval_ms":{ms},"upstreams":[]}}"#
            )
        };
        assert!(matches!(peer.text(&stats(1000)), FeedKind::Message { .. }));
        assert_eq!(peer.quiet_limit(), QUIET_LIMIT_MIN);
        peer.text(&stats(60_000));
        assert_eq!(peer.quiet_limit(), Duration::from_secs(180));
    }

    #[test]
    fn a_claimed_stats_interval_never_overflows_the_quiet_limit() {
        let mut peer = PeerState::default();
        let stats = format!(
            r#"{{"type":"stats","ts":"2026-11-30T03:42:33.000004Z","sidecar":"web","interval_ms":{},"upstreams":[]}}"#,
            u64::MAX
        );
        assert!(matches!(peer.text(&stats), FeedKind::Message { .. }));
        assert_eq!(peer.quiet_limit(), QUIET_LIMIT_MAX);
    }

    fn message_of(len: usize) -> FeedItem {
        FeedItem {
            source: 0,
            kind: FeedKind::Message {
                message: Message::Dropped(crate::schema::Dropped { count: 1, total: 1 }),
                raw: Arc::from("x".repeat(len)),
                received: None,
            },
        }
    }

    #[tokio::test]
    async fn a_feed_holds_no_more_bytes_than_its_budget() {
        let weight = message_of(2_000).weight();
        assert!(weight > 4_000, "a message weighs more than its text");
        let (tx, mut rx) = feed_with(1000, 2 * weight + weight / 2);
        // Two fit; a third waits until one is taken.
        tx.send(message_of(2_000)).await.expect("room");
        tx.send(message_of(2_000)).await.expect("room");
        {
            let third = tx.send(message_of(2_000));
            tokio::pin!(third);
            assert!(
                futures_util::poll!(third.as_mut()).is_pending(),
                "no room for a third"
            );
            assert!(rx.recv().await.is_some());
            third.await.expect("room again");
        }
        // One larger than the whole budget takes all of it, and still goes.
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_some());
        tx.send(message_of(1 << 20))
            .await
            .expect("the whole budget");
        assert!(rx.try_recv().is_some());
        drop(tx);
        assert!(rx.recv().await.is_none());
    }

    #[test]
    fn a_newer_schema_is_skipped_until_a_known_hello() {
        let mut peer = PeerState::default();
        // A newer hello that would still decode, and one that would not.
        let newer = HELLO.replace(r#""schema":1"#, r#""schema":2"#);
        assert!(invalid_reason(&mut peer, &newer).contains("schema 2 is newer"));
        assert!(invalid_reason(&mut peer, r#"{"type":"hello","schema":99}"#).contains("schema 99"));
        // Everything of that connection is of the newer schema too.
        let reason = invalid_reason(&mut peer, r#"{"type":"dropped","count":1,"total":2}"#);
        assert!(reason.contains("schema 99"), "{reason}");
        assert!(!peer.got_hello);
        assert!(matches!(peer.text(HELLO), FeedKind::Message { .. }));
        assert!(peer.got_hello);
    }

    #[test]
    fn tokens_and_passwords_are_redacted_for_display() {
        let t: Target = "ws://user:pw@127.0.0.1:15090/events?token=s3cret&authority=x"
            .parse()
            .expect("valid");
        assert_eq!(
            t.to_string(),
            "ws://user:<redacted>@127.0.0.1:15090/events?token=<redacted>&authority=x"
        );
        assert!(t.url.contains("s3cret"), "connecting keeps the token");
        for plain in ["ws://127.0.0.1:1/events", "ws://h:1/events?filter=a#f"] {
            assert_eq!(redact_url(plain), plain);
        }
        assert_eq!(
            redact_url("ws://h:1/e?TOKEN=x#frag"),
            "ws://h:1/e?TOKEN=<redacted>#frag"
        );
    }
}
