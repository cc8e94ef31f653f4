//! The model: everything received from every attached sidecar, merged.
//!
//! Two channels of truth (see `docs/events.md`): rates, success rates and
//! percentiles come from `stats` (exact, merged across sidecars by adding
//! their HdrHistograms); routes, errors and the tap come from `request`
//! events (best effort: a slow reader loses some, and the sidecars view
//! shows how many).
//!
//! The model's clock is the UI's own: the time each message was received
//! (as recorded, in a replay, so the same recording always gives the same
//! numbers). A sidecar's `stats` are placed at the second their timestamp
//! gives, unless that sidecar's clock is more than [`CLOCK_TOLERANCE_SECS`]
//! off the UI's, measured on its `hello` and on every live `stats`: then
//! they are placed by the offset measured, and the sidecar is flagged. So a
//! sidecar with a wrong clock, or a hostile one, cannot move the windows of
//! the others. Backfilled `stats` (sent by a sidecar to a new subscriber)
//! that were received before are skipped.
//!
//! Who calls whom (the Edges view, the CALLERS column) is decided in one
//! place, `edges`, from the same `stats`: outbound parts per sidecar and
//! inbound parts per client address.
//!
//! Memory is bounded by bytes whatever the sources send: fields of events
//! are cut to the schema's limits, upstream state (window histograms,
//! per-second history kept compressed, routes) within [`UPSTREAM_BYTES`],
//! the tap within [`TAP_BYTES`] and the failing requests kept per error
//! group (for the inspector) within [`FAILURE_SAMPLE_BYTES`], with the
//! least recently active evicted first; error groups, routes and upstreams
//! also have caps by count.

use hashlink::LinkedHashMap;
use hashlink::linked_hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use hdrhistogram::Histogram;

use super::source::{FeedItem, FeedKind};
use crate::filter::{FilterExpr, Scope, StatsFacts};
use crate::schema::{
    ClientStats, Hello, MAX_AUTHORITY, Message, RequestEvent, RouteStats, Stats, StatusClasses,
    one_line, truncate_field,
};
use crate::telemetry::Direction;
use crate::telemetry::stats::{
    MAX_LATENCY_MICROS, add_encoded_histogram, check_encoded_histogram, decode_histogram,
    new_latency_histogram,
};

mod by_events;
pub mod distribution;
mod edges;
mod grouped;
mod selected;
pub use by_events::Figures;
pub use distribution::{Distribution, LatencyBucket, Scale};
pub use edges::{EdgeRow, FilterNotForEdges, MAX_EDGES, RequestCaller};
pub use grouped::{
    GroupBy, GroupKey, GroupRow, GroupSource, Grouped, StatusClass, TREND_SECONDS, sort_groups,
};

/// Seconds of per-upstream history kept (charts and the largest window).
pub const HISTORY_SECONDS: usize = 600;
/// Requests kept for the tap view.
pub const TAP_CAPACITY: usize = 10_000;
/// Routes kept per upstream; the least recently seen is evicted past it.
pub const ROUTES_PER_UPSTREAM: usize = 100;
/// Clients kept per inbound upstream and second, as a sidecar sends them
/// (its default `--max-clients`, plus `other`); a longer list is not a
/// sidecar's, and its tail is not kept.
pub const CLIENTS_PER_UPSTREAM: usize = 100;
/// Error groups kept; the least recently seen is evicted past it.
pub const ERROR_GROUPS: usize = 1_000;
/// Failing requests kept per error group, the newest, for the inspector.
pub const FAILURES_PER_GROUP: usize = 20;
/// Bytes of failing requests kept for the error groups; past it the
/// samples of the least recently failing groups go first.
pub const FAILURE_SAMPLE_BYTES: usize = 8 << 20;
/// Upstreams kept; the least recently active are evicted past it.
pub const MAX_UPSTREAMS: usize = 5_000;
/// Bytes of upstream state kept (its window histograms, its per-second
/// history and its routes); past it, the least recently active upstreams
/// are evicted, and counted.
pub const UPSTREAM_BYTES: usize = 64 << 20;
/// Bytes of requests kept for the tap; past it the oldest go.
pub const TAP_BYTES: usize = 24 << 20;
/// A sidecar whose clock is more than this many seconds off the UI's is
/// flagged, and its `stats` are placed on the UI's timeline.
pub const CLOCK_TOLERANCE_SECS: i64 = 3;
/// Histogram counts one `stats` message may make the model decode (a
/// sidecar's 1,000 upstreams take a few million): past it, the rest of the
/// message is skipped and counted as invalid, so no message holds the UI
/// for more than a fraction of a second.
const COUNTS_PER_STATS: usize = 32 << 20;
/// What an upstream costs besides its histograms, history and routes: its
/// key, its map entry and its fixed fields.
const UPSTREAM_OVERHEAD: usize = 1024;
/// What a second of history costs besides its histograms' text.
const SECOND_OVERHEAD: usize = 64;
/// What a route costs besides its name and histogram.
const ROUTE_OVERHEAD: usize = 128;
/// What a client's second costs besides its address and histogram.
const CLIENT_OVERHEAD: usize = 96;

/// The time window rates and percentiles are computed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Window {
    #[default]
    TenSeconds,
    OneMinute,
    FiveMinutes,
}

impl Window {
    pub const ALL: [Window; 3] = [Window::TenSeconds, Window::OneMinute, Window::FiveMinutes];

    pub fn seconds(self) -> i64 {
        match self {
            Window::TenSeconds => 10,
            Window::OneMinute => 60,
            Window::FiveMinutes => 300,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Window::TenSeconds => "10s",
            Window::OneMinute => "1m",
            Window::FiveMinutes => "5m",
        }
    }

    /// The next window (`w` cycles 10s → 1m → 5m → 10s).
    pub fn next(self) -> Window {
        match self {
            Window::TenSeconds => Window::OneMinute,
            Window::OneMinute => Window::FiveMinutes,
            Window::FiveMinutes => Window::TenSeconds,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An upstream: one direction of traffic to one authority, merged across
/// every sidecar.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamKey {
    pub direction: Direction,
    pub authority: String,
}

/// One second of one upstream.
#[derive(Clone, Debug)]
struct Second {
    sec: i64,
    requests: u64,
    failures: u64,
    /// What each sidecar's `stats` said of this second, as sent.
    parts: Vec<Part>,
}

/// One sidecar's `stats` of an upstream for a second, still compressed:
/// decoded again only when the second leaves a window, or when a filter on
/// sidecars or routes ([`selected`]) or the Detail view's routes
/// ([`Model::route_figures`]) ask.
#[derive(Clone, Debug)]
struct Part {
    /// The sidecar's name, as its `stats` give it.
    sidecar: Arc<str>,
    requests: u64,
    failures: u64,
    /// `None` when it did not decode: it would only fail again.
    latency: Option<Arc<str>>,
    routes: Vec<RouteSecond>,
    /// Requests per HTTP status class (the group-by `status` counts them).
    status: StatusClasses,
    /// Inbound only: who called, per client address, for the Edges view
    /// ([`edges`]); at most [`CLIENTS_PER_UPSTREAM`] + 1.
    clients: Vec<ClientSecond>,
}

/// One client address's share of one sidecar's inbound `stats` of a second.
#[derive(Clone, Debug)]
struct ClientSecond {
    /// An IP address, or `other` past the sidecar's bound.
    client: Arc<str>,
    requests: u64,
    failures: u64,
    /// Shared with the part's when it is the same text (a single client
    /// has every request of the upstream, and the sidecar sends the same
    /// histogram); `None` when it did not decode.
    latency: Option<Arc<str>>,
}

/// One route's share of one sidecar's `stats` of a second.
#[derive(Clone, Debug)]
struct RouteSecond {
    route: Arc<str>,
    requests: u64,
    failures: u64,
    latency: Arc<str>,
}

/// A window's running aggregate: what entered minus what left.
#[derive(Clone, Debug, Default)]
struct WindowAggregate {
    requests: u64,
    failures: u64,
    /// Allocated with the first latency added, and freed when the window
    /// empties: an empty histogram still holds 16 KiB of counts, and most
    /// upstreams known only from request events never get one.
    latency: Option<Histogram<u64>>,
    /// p50, p90, p99 and the maximum of `latency`, once read, until it
    /// changes: walking every upstream's counts on every frame was most of
    /// the Upstreams view's time, and a `stats` message changes only the
    /// windows of the upstreams it names.
    read: std::cell::Cell<Option<[Option<u64>; 4]>>,
}

/// What an aggregate without latencies lends its readers.
static NO_LATENCY: std::sync::LazyLock<Histogram<u64>> =
    std::sync::LazyLock::new(new_latency_histogram);

#[derive(Clone, Debug)]
struct UpstreamState {
    /// Ordered by second, oldest first.
    seconds: VecDeque<Second>,
    windows: [WindowAggregate; 3],
    total_requests: u64,
    total_failures: u64,
    /// First second this upstream was seen (for rates before a window
    /// fills, when no sidecar's `stats` named it yet).
    first_sec: i64,
    /// The sidecars whose `stats` named it, and the last second each did.
    sources: Vec<(usize, i64)>,
    last_seen_sec: i64,
    routes: HashMap<String, RouteState>,
    /// Bytes held by `seconds` (their histograms' text and overhead).
    seconds_bytes: usize,
    /// Bytes held by `routes` (names, histograms and overhead).
    routes_bytes: usize,
}

#[derive(Clone, Debug)]
struct RouteState {
    count: u64,
    failures: u64,
    /// Durations in microseconds from request events (2 significant digits:
    /// routes are estimates from the sampled event stream anyway).
    latency: Histogram<u32>,
    last_seen: u64,
}

/// A row of the upstreams table.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamRow {
    pub key: UpstreamKey,
    /// Requests per second over the window.
    pub rps: f64,
    /// Share of requests in the window that did not fail, 0–1; `None`
    /// without requests.
    pub success: Option<f64>,
    /// Latency percentiles and maximum over the window, microseconds.
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
    /// Totals since attach.
    pub requests: u64,
    pub failures: u64,
    /// Seconds since its last `stats` when none of the sidecars that send
    /// them is live any more: its figures are history, and the header's
    /// totals leave it out.
    pub stale: Option<i64>,
}

/// The header line's figures, over all rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub rps: f64,
    pub success: Option<f64>,
    pub p99: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteRow {
    /// See [`crate::telemetry::route`].
    pub route: String,
    /// Requests: in the window for exact figures, since attach for those
    /// from events (see [`RouteFigures`]).
    pub count: u64,
    /// Requests per second over the window (exact figures only).
    pub rps: Option<f64>,
    pub success: Option<f64>,
    pub p50: Option<u64>,
    pub p99: Option<u64>,
}

/// An upstream's routes, and where their figures come from.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteFigures {
    /// From the routes in `stats`, over the window asked for.
    Exact(Vec<RouteRow>),
    /// From request events since attach: no `stats` in the window had
    /// routes (a sidecar from before they were added).
    FromEvents(Vec<RouteRow>),
}

impl RouteFigures {
    pub fn rows(&self) -> &[RouteRow] {
        match self {
            RouteFigures::Exact(rows) | RouteFigures::FromEvents(rows) => rows,
        }
    }
}

/// What a failure was: an error kind, a gRPC status, or an HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    Error(String),
    Grpc(u32),
    Status(u16),
}

impl std::fmt::Display for FailureKind {
    /// Codes with their names: `UNKNOWN (2)`, `500 Internal Server Error`,
    /// `connect refused`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureKind::Error(kind) => f.write_str(&kind.replace('_', " ")),
            FailureKind::Grpc(code) => match grpc_code_name(*code) {
                Some(name) => write!(f, "{name} ({code})"),
                None => write!(f, "gRPC {code}"),
            },
            FailureKind::Status(0) => f.write_str("no status"),
            FailureKind::Status(status) => {
                let reason = http::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason());
                match reason {
                    Some(reason) => write!(f, "{status} {reason}"),
                    None => write!(f, "HTTP {status}"),
                }
            }
        }
    }
}

/// The name of a standard gRPC status code.
pub fn grpc_code_name(code: u32) -> Option<&'static str> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(usize::try_from(code).ok()?).copied()
}

/// A failure group: one upstream, one route, one way of failing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorKey {
    pub upstream: UpstreamKey,
    /// See [`crate::telemetry::route`].
    pub route: String,
    pub kind: FailureKind,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ErrorRow {
    pub key: ErrorKey,
    pub count: u64,
    /// `ts` of the first and the latest such failure.
    pub first_seen: String,
    pub last_seen: String,
    pub example_path: Option<String>,
    pub example_message: Option<String>,
    /// Failures per second of the model clock, the newest last, for at most
    /// the longest window.
    seconds: VecDeque<(i64, u64)>,
    /// The first second of the model clock: before it nothing was watched,
    /// so a window reaching further back is shorter.
    watched_since: i64,
}

impl ErrorRow {
    fn new(key: ErrorKey, event: &RequestEvent, watched_since: i64) -> ErrorRow {
        ErrorRow {
            key,
            count: 0,
            first_seen: event.ts.clone(),
            last_seen: String::new(),
            example_path: None,
            example_message: None,
            seconds: VecDeque::new(),
            watched_since,
        }
    }

    /// Counts one more failure of this group, seen at second `now`.
    fn add(&mut self, event: &RequestEvent, now: i64) {
        self.count = self.count.saturating_add(1);
        self.last_seen.clone_from(&event.ts);
        self.example_path.clone_from(&event.path);
        if event.grpc_message.is_some() {
            self.example_message.clone_from(&event.grpc_message);
        }
        match self.seconds.back_mut() {
            Some((sec, n)) if *sec == now => *n = n.saturating_add(1),
            _ => self.seconds.push_back((now, 1)),
        }
        let longest = Window::FiveMinutes.seconds();
        while self
            .seconds
            .front()
            .is_some_and(|(sec, _)| *sec <= now - longest)
        {
            self.seconds.pop_front();
        }
    }

    /// Failures per second over `window` ending at `now_sec`, or over the
    /// part of it since the session began watching.
    pub fn per_second(&self, window: Window, now_sec: i64) -> f64 {
        let span = window
            .seconds()
            .min(now_sec.saturating_sub(self.watched_since).saturating_add(1))
            .max(1);
        let since = now_sec - span;
        let count: u64 = self
            .seconds
            .iter()
            .filter(|(sec, _)| *sec > since && *sec <= now_sec)
            .map(|(_, n)| n)
            .sum();
        count as f64 / span as f64
    }
}

/// A request in the tap.
#[derive(Clone, Debug, PartialEq)]
pub struct TapEntry {
    pub source: usize,
    /// The second of the model clock it was received at.
    pub sec: i64,
    pub event: RequestEvent,
}

/// The connection state of an attached sidecar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceState {
    Connecting,
    Live,
    Reconnecting { reason: String, retry_in_ms: u64 },
    Failed { reason: String },
}

impl SourceState {
    pub fn label(&self) -> String {
        match self {
            SourceState::Connecting => "connecting".into(),
            SourceState::Live => "live".into(),
            SourceState::Reconnecting {
                reason,
                retry_in_ms,
            } => {
                format!(
                    "reconnecting in {:.1}s ({reason})",
                    *retry_in_ms as f64 / 1000.0
                )
            }
            SourceState::Failed { reason } => format!("failed: {reason}"),
        }
    }
}

/// One attached sidecar (one target).
#[derive(Clone, Debug)]
pub struct SidecarState {
    pub target: String,
    pub state: SourceState,
    pub hello: Option<Hello>,
    /// Times a different `started_at` was seen after the first hello.
    pub restarts: u32,
    pub events: u64,
    /// Events per second over the last complete second of the model clock.
    pub events_per_sec: u64,
    events_this_second: u64,
    /// Events the sidecar could not deliver to us (`dropped`), all connections.
    pub dropped: u64,
    dropped_before: u64,
    /// Messages of a type this build does not know (from a newer sidecar),
    /// and the last such type.
    pub newer: u64,
    pub last_newer: Option<String>,
    /// Messages that were not valid JSON, of an unknown type or a newer schema.
    pub invalid: u64,
    pub last_invalid: Option<String>,
    /// The sidecar's clock minus the UI's, in milliseconds, as last
    /// measured (on its `hello` or a live `stats`); `None` until measured.
    pub clock_offset_ms: Option<i64>,
    /// The end of the newest interval of `stats` taken from the sidecar's
    /// current run: backfilled ones up to it were taken before.
    stats_through: Option<SystemTime>,
    /// The filter the sidecar selects our events by (empty: every event),
    /// as of the latest connection; `None` before one (and in a replay).
    pub subscription: Option<String>,
    /// Why the latest connection attempt failed, if one did.
    pub last_problem: Option<String>,
    /// The seconds of the model clock its `stats` were placed at, oldest
    /// first, for [`HISTORY_SECONDS`]: the time it was watched. A rate is
    /// requests over the seconds watched, so an outage does not read as a
    /// time without traffic.
    covered: VecDeque<i64>,
}

impl SidecarState {
    fn new(target: String) -> Self {
        SidecarState {
            target,
            state: SourceState::Connecting,
            hello: None,
            restarts: 0,
            events: 0,
            events_per_sec: 0,
            events_this_second: 0,
            dropped: 0,
            dropped_before: 0,
            newer: 0,
            last_newer: None,
            invalid: 0,
            last_invalid: None,
            clock_offset_ms: None,
            stats_through: None,
            subscription: None,
            last_problem: None,
            covered: VecDeque::new(),
        }
    }

    /// Notes that `stats` of second `sec` arrived.
    fn cover(&mut self, sec: i64) {
        match self.covered.iter().rposition(|s| *s <= sec) {
            Some(i) if self.covered[i] == sec => {}
            Some(i) => self.covered.insert(i + 1, sec),
            None => self.covered.push_front(sec),
        }
    }

    /// Whether it was live and is not any more.
    fn gone(&self) -> bool {
        self.hello.is_some() && self.state != SourceState::Live
    }

    /// Why no hello came from this sidecar: the last failure, the last
    /// message that was not ours, or that it is still trying.
    pub fn why_not_connected(&self) -> String {
        match (&self.last_problem, &self.last_invalid) {
            (Some(problem), _) => problem.clone(),
            (None, Some(invalid)) => format!("it sent what no meshtop sidecar sends: {invalid}"),
            (None, None) => "no answer yet".into(),
        }
    }

    pub fn name(&self) -> &str {
        self.hello.as_ref().map_or("?", |h| h.sidecar.name.as_str())
    }

    /// Whether the sidecar's clock is more than [`CLOCK_TOLERANCE_SECS`]
    /// off the UI's.
    pub fn clock_skewed(&self) -> bool {
        self.clock_offset_ms
            .is_some_and(|ms| ms.unsigned_abs() > CLOCK_TOLERANCE_SECS.unsigned_abs() * 1000)
    }

    /// Seconds to take off this sidecar's timestamps to place them on the
    /// UI's timeline: its offset when flagged, else nothing.
    fn clock_shift(&self) -> i64 {
        match self.clock_offset_ms {
            Some(ms) if self.clock_skewed() => (ms as f64 / 1000.0).round() as i64,
            _ => 0,
        }
    }

    fn note_invalid(&mut self, reason: String) {
        self.invalid = self.invalid.saturating_add(1);
        self.last_invalid = Some(reason);
    }
}

/// Everything the UI shows, merged from every source.
#[derive(Clone, Debug)]
pub struct Model {
    sidecars: Vec<SidecarState>,
    /// In order of activity, the least recently active first: eviction
    /// takes the front in O(1), and every change moves its upstream to the
    /// back in O(1).
    upstreams: LinkedHashMap<UpstreamKey, UpstreamState>,
    /// In order of the last failure seen, the oldest first, as `upstreams`.
    errors: LinkedHashMap<ErrorKey, ErrorRow>,
    /// The newest failing requests of each error group (at most
    /// [`FAILURES_PER_GROUP`], within [`FAILURE_SAMPLE_BYTES`] in all), each
    /// with its tap sequence number, kept apart from the rows that
    /// [`Model::errors`] copies for every frame.
    failures: HashMap<ErrorKey, VecDeque<(u64, Arc<TapEntry>)>>,
    /// Bytes held by `failures` (see [`FAILURE_SAMPLE_BYTES`]).
    failure_bytes: usize,
    tap: VecDeque<TapEntry>,
    /// The model clock: the newest `stats` second seen (Unix seconds).
    now_sec: Option<i64>,
    /// The first second the clock was set to.
    clock_start: Option<i64>,
    /// Increases with every request event; orders "least recently seen".
    event_counter: u64,
    /// Increases with every stats message and every change of a sidecar's
    /// connection: what the summary depends on.
    stats_version: u64,
    /// The last summary, for as long as the same question is asked of the
    /// same stats (merging every upstream's histogram on each frame would
    /// take most of a frame's time).
    summary_cache: std::cell::RefCell<Option<(SummaryKey, Summary)>>,
    /// Bytes held by all upstreams (see [`UPSTREAM_BYTES`]).
    upstream_bytes: usize,
    /// Bytes held by the tap (see [`TAP_BYTES`]).
    tap_bytes: usize,
    /// Upstreams evicted to stay within [`MAX_UPSTREAMS`] and [`UPSTREAM_BYTES`].
    evicted_upstreams: u64,
    /// The first second from which the tap holds every request event the
    /// sidecars delivered for the current subscriptions: later than the
    /// clock's start once the tap lost events to its bounds, or a
    /// subscription narrowed from one filter to another (see
    /// [`by_events`]).
    events_complete_since: Option<i64>,
    /// Events the sidecars said they dropped, per second of the model
    /// clock, for the longest window.
    drops: VecDeque<(i64, u64)>,
    /// The last routes asked for, for as long as the same question is asked
    /// of the same stats.
    #[allow(clippy::type_complexity)]
    routes_cache:
        std::cell::RefCell<Option<((UpstreamKey, Window, u64, Option<i64>), RouteFigures)>>,
    /// The windows of the last filter on sidecars or routes asked about
    /// ([`selected`]).
    selection: std::cell::RefCell<Option<selected::Selection>>,
    /// Whether any `stats` carried routes (sidecars before they were added
    /// send none: a filter on routes is then counted from events).
    has_route_stats: bool,
    /// The last figures counted from events, for as long as the same
    /// question is asked of the same events.
    events_cache: std::cell::RefCell<Option<std::rc::Rc<by_events::EventFigures>>>,
    /// The last edges asked for, for as long as the same question is asked
    /// of the same stats.
    edges_cache: std::cell::RefCell<edges::EdgesCache>,
    /// The same without latencies, for the CALLERS column.
    callers_cache: std::cell::RefCell<edges::EdgesCache>,
    /// The last grouped rows (`b`), for as long as the same question is
    /// asked of the same stats and events ([`grouped`]).
    groups_cache: std::cell::RefCell<Option<grouped::Cached>>,
}

#[derive(Clone, Debug, PartialEq)]
struct SummaryKey {
    window: Window,
    filter: String,
    stats_version: u64,
}

impl Model {
    /// A model for these targets (one per source index).
    pub fn new(targets: impl IntoIterator<Item = String>) -> Model {
        Model {
            sidecars: targets.into_iter().map(SidecarState::new).collect(),
            upstreams: LinkedHashMap::new(),
            errors: LinkedHashMap::new(),
            failures: HashMap::new(),
            failure_bytes: 0,
            tap: VecDeque::new(),
            now_sec: None,
            clock_start: None,
            event_counter: 0,
            stats_version: 0,
            summary_cache: std::cell::RefCell::new(None),
            upstream_bytes: 0,
            tap_bytes: 0,
            evicted_upstreams: 0,
            events_complete_since: None,
            drops: VecDeque::new(),
            routes_cache: std::cell::RefCell::new(None),
            selection: std::cell::RefCell::new(None),
            has_route_stats: false,
            events_cache: std::cell::RefCell::new(None),
            edges_cache: std::cell::RefCell::new(None),
            callers_cache: std::cell::RefCell::new(None),
            groups_cache: std::cell::RefCell::new(None),
        }
    }

    /// Takes in one item from a source.
    pub fn ingest(&mut self, item: &FeedItem) {
        if let FeedKind::Reset = item.kind {
            let targets = self.sidecars.iter().map(|s| s.target.clone());
            *self = Model::new(targets.collect::<Vec<_>>());
            return;
        }
        let Some(sidecar) = self.sidecars.get_mut(item.source) else {
            return;
        };
        if matches!(
            item.kind,
            FeedKind::Live { .. } | FeedKind::Reconnecting { .. } | FeedKind::Failed { .. }
        ) {
            // Whether a sidecar is live decides which rows are stale, and
            // stale rows leave the header.
            self.stats_version += 1;
        }
        match &item.kind {
            FeedKind::Reset => {}
            FeedKind::Connecting => sidecar.state = SourceState::Connecting,
            FeedKind::Live { filter } => {
                sidecar.state = SourceState::Live;
                // Events received under another non-empty filter are not
                // all the events the new one selects (under none, they
                // are).
                let narrowed = sidecar
                    .subscription
                    .as_ref()
                    .is_some_and(|before| !before.is_empty() && before != filter);
                sidecar.subscription = Some(filter.clone());
                if narrowed && let Some(now) = self.now_sec {
                    self.events_complete_since = Some(
                        self.events_complete_since
                            .map_or(now, |since| since.max(now)),
                    );
                }
            }
            FeedKind::Reconnecting { reason, retry_in } => {
                sidecar.last_problem = Some(reason.clone());
                sidecar.state = SourceState::Reconnecting {
                    reason: reason.clone(),
                    retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
                }
            }
            FeedKind::Failed { reason } => {
                sidecar.last_problem = Some(reason.clone());
                sidecar.state = SourceState::Failed {
                    reason: reason.clone(),
                }
            }
            FeedKind::Invalid { reason } => sidecar.note_invalid(reason.clone()),
            FeedKind::Message {
                message: Message::Unknown,
                raw,
                ..
            } => {
                sidecar.newer = sidecar.newer.saturating_add(1);
                sidecar.last_newer = message_type(raw);
            }
            FeedKind::Message {
                message, received, ..
            } => self.ingest_message_at(item.source, message, *received),
        }
    }

    /// Moves the clock on to `now` (the UI's clock) while a sidecar is not
    /// live: no message marks the time then, yet a stale row's age and the
    /// windows must go on. While every sidecar is live their messages move
    /// the clock, exactly as in a replay of the session.
    pub fn tick(&mut self, now: SystemTime) {
        if self.sidecars.iter().all(|s| s.state == SourceState::Live) {
            return;
        }
        if let (Some(sec), Some(clock)) = (system_seconds(now), self.now_sec)
            && sec > clock
        {
            self.advance_clock(sec);
            self.stats_version += 1;
        }
    }

    /// Takes in one message from source `source`, as received at the time
    /// it gives itself (see [`Model::ingest_message_at`]).
    pub fn ingest_message(&mut self, source: usize, message: &Message) {
        self.ingest_message_at(source, message, None);
    }

    /// Takes in one message from source `source`, received at `received`
    /// on the UI's clock; `None`: at the time the message gives (a `stats`
    /// at its `ts`), for feeds without a clock of their own.
    pub fn ingest_message_at(
        &mut self,
        source: usize,
        message: &Message,
        received: Option<SystemTime>,
    ) {
        if source >= self.sidecars.len() {
            return;
        }
        let received_sec = received.and_then(system_seconds);
        if let Some(sec) = received_sec
            && self.now_sec.is_none_or(|now| sec > now)
        {
            self.advance_clock(sec);
        }
        let sidecar = &mut self.sidecars[source];
        match message {
            Message::Hello(hello) => {
                if let Some(previous) = &sidecar.hello
                    && previous.sidecar.started_at != hello.sidecar.started_at
                {
                    sidecar.restarts = sidecar.restarts.saturating_add(1);
                    sidecar.stats_through = None;
                }
                // A new connection counts its drops from zero again.
                sidecar.dropped_before = sidecar.dropped;
                if let (Some(ts), Some(received)) = (&hello.ts, received) {
                    sidecar.clock_offset_ms = clock_offset_ms(ts, received);
                }
                sidecar.hello = Some(bounded_hello(hello));
                sidecar.state = SourceState::Live;
            }
            Message::Dropped(dropped) => {
                let total = sidecar.dropped_before.saturating_add(dropped.total);
                let more = total.saturating_sub(sidecar.dropped);
                sidecar.dropped = total;
                let now = self.now_sec.unwrap_or(0);
                match self.drops.back_mut() {
                    Some((sec, n)) if *sec == now => *n = n.saturating_add(more),
                    _ => self.drops.push_back((now, more)),
                }
            }
            Message::Tcp(_) => {
                sidecar.events = sidecar.events.saturating_add(1);
                sidecar.events_this_second += 1;
            }
            Message::Request(event) => {
                sidecar.events = sidecar.events.saturating_add(1);
                sidecar.events_this_second += 1;
                self.ingest_request(source, event);
            }
            Message::Stats(stats) => self.ingest_stats(source, stats, received),
            Message::Unknown => sidecar.newer = sidecar.newer.saturating_add(1),
        }
    }

    fn ingest_request(&mut self, source: usize, event: &RequestEvent) {
        // What is kept of an event from anywhere is bounded.
        let mut event = event.clone();
        event.bound_fields();
        self.event_counter += 1;
        let order = self.event_counter;
        let key = UpstreamKey {
            direction: event.direction,
            authority: event.authority.clone(),
        };
        let failed = event.is_failure();
        let micros = event_micros(event.duration_ms);
        let (upstream, before) = match self.upstreams.entry(key.clone()) {
            Entry::Occupied(mut upstream) => {
                upstream.to_back();
                let upstream = upstream.into_mut();
                let before = upstream.weight();
                (upstream, before)
            }
            // A new upstream's own weight (its empty windows) counts too.
            Entry::Vacant(vacant) => (vacant.insert(UpstreamState::new()), 0),
        };
        upstream.count_route(route_of(&event), failed, micros, order);
        let after = upstream.weight();
        self.upstream_bytes = self
            .upstream_bytes
            .saturating_add(after)
            .saturating_sub(before);
        self.enforce_upstream_bounds();

        let sec = self.now_sec.unwrap_or(0);
        let entry = TapEntry { source, sec, event };
        if failed {
            self.record_failure(key, order, &entry);
        }
        let weight = tap_weight(&entry.event);
        self.tap_bytes += weight;
        self.tap.push_back(entry);
        while self.tap.len() > TAP_CAPACITY || (self.tap_bytes > TAP_BYTES && self.tap.len() > 1) {
            match self.tap.pop_front() {
                Some(gone) => {
                    self.tap_bytes = self.tap_bytes.saturating_sub(tap_weight(&gone.event));
                    // Part of that second is gone: figures from events
                    // begin after it.
                    let after = gone.sec.saturating_add(1);
                    self.events_complete_since = Some(
                        self.events_complete_since
                            .map_or(after, |since| since.max(after)),
                    );
                }
                None => break,
            }
        }
    }

    /// Counts a failing request in its group, and keeps it among the
    /// group's newest ([`Model::failures`]); `seq` is its tap sequence
    /// number.
    fn record_failure(&mut self, upstream: UpstreamKey, seq: u64, entry: &TapEntry) {
        let event = &entry.event;
        let key = error_key(upstream, event);
        let now = self.now_sec.unwrap_or(0);
        if let Some(row) = self.errors.to_back(&key) {
            row.add(event, now);
        } else {
            if self.errors.len() >= ERROR_GROUPS {
                // The least recently seen group, and its requests.
                if let Some((gone, _)) = self.errors.pop_front() {
                    self.forget_failures(&gone);
                }
            }
            let clock_start = self.clock_start;
            self.errors
                .entry(key.clone())
                .or_insert_with(|| ErrorRow::new(key.clone(), event, clock_start.unwrap_or(now)))
                .add(event, now);
        }
        self.failure_bytes += tap_weight(event);
        let kept = self.failures.entry(key).or_default();
        kept.push_back((seq, Arc::new(entry.clone())));
        if kept.len() > FAILURES_PER_GROUP
            && let Some((_, gone)) = kept.pop_front()
        {
            self.failure_bytes = self.failure_bytes.saturating_sub(tap_weight(&gone.event));
        }
        // Past the bytes, the oldest requests of the least recently
        // failing groups go (the newest group keeps at least its newest).
        let mut groups = self.errors.keys();
        while self.failure_bytes > FAILURE_SAMPLE_BYTES {
            let Some(group) = groups.next() else { break };
            let Some(kept) = self.failures.get_mut(group) else {
                continue;
            };
            let keep = usize::from(self.errors.back().is_some_and(|(k, _)| k == group));
            while kept.len() > keep && self.failure_bytes > FAILURE_SAMPLE_BYTES {
                if let Some((_, gone)) = kept.pop_front() {
                    self.failure_bytes = self.failure_bytes.saturating_sub(tap_weight(&gone.event));
                }
            }
            if kept.is_empty() {
                self.failures.remove(group);
            }
        }
    }

    fn forget_failures(&mut self, group: &ErrorKey) {
        for (_, gone) in self.failures.remove(group).unwrap_or_default() {
            self.failure_bytes = self.failure_bytes.saturating_sub(tap_weight(&gone.event));
        }
    }

    fn ingest_stats(&mut self, source: usize, stats: &Stats, received: Option<SystemTime>) {
        self.stats_version += 1;
        let Some(end) = humantime::parse_rfc3339(&stats.ts).ok() else {
            self.sidecars[source].note_invalid(format!(
                "a stats message with an invalid ts \"{}\"",
                one_line(&stats.ts)
            ));
            return;
        };
        let Some(ts_sec) = system_seconds(end) else {
            return;
        };
        let sidecar = &mut self.sidecars[source];
        if stats.backfill && sidecar.stats_through.is_some_and(|through| end <= through) {
            // Sent again to a new connection: taken from an earlier one.
            return;
        }
        sidecar.stats_through = Some(sidecar.stats_through.map_or(end, |t| t.max(end)));
        if !stats.backfill
            && let Some(received) = received
        {
            sidecar.clock_offset_ms = clock_offset_ms(&stats.ts, received);
        }
        let sec = match received.and_then(system_seconds) {
            // Never further ahead of the UI's clock than the tolerance,
            // whatever the sidecar says.
            Some(received_sec) => ts_sec
                .saturating_sub(sidecar.clock_shift())
                .min(received_sec.saturating_add(CLOCK_TOLERANCE_SECS)),
            None => {
                if self.now_sec.is_none_or(|now| ts_sec > now) {
                    self.advance_clock(ts_sec);
                }
                ts_sec
            }
        };
        let now = self.now_sec.unwrap_or(sec);
        self.sidecars[source].cover(sec);
        let mut name = stats.sidecar.clone();
        truncate_field(&mut name, MAX_AUTHORITY);
        let sidecar_name: Arc<str> = Arc::from(name);
        let mut counts = 0usize;
        for (i, upstream) in stats.upstreams.iter().enumerate() {
            let latency = decode_histogram(&upstream.counts.latency).ok();
            counts += latency.as_ref().map_or(0, Histogram::distinct_values);
            let mut authority = upstream.authority.clone();
            truncate_field(&mut authority, MAX_AUTHORITY);
            let key = UpstreamKey {
                direction: upstream.direction,
                authority,
            };
            self.has_route_stats |= !upstream.routes.is_empty();
            let selected_key = self.selection.get_mut().is_some().then(|| key.clone());
            let (state, before) = match self.upstreams.entry(key) {
                Entry::Occupied(mut state) => {
                    state.to_back();
                    let state = state.into_mut();
                    let before = state.weight();
                    (state, before)
                }
                Entry::Vacant(vacant) => (vacant.insert(UpstreamState::new()), 0),
            };
            match state.sources.iter_mut().find(|(s, _)| *s == source) {
                Some((_, last)) => *last = (*last).max(sec),
                None => state.sources.push((source, sec)),
            }
            state.add_second(
                sec,
                now,
                upstream.counts.requests,
                upstream.counts.failures.min(upstream.counts.requests),
                &upstream.counts.latency,
                latency.as_ref(),
                &upstream.routes,
                &upstream.clients,
                sidecar_name.clone(),
                upstream.counts.status,
            );
            if let (Some(selection), Some(key)) = (self.selection.get_mut(), selected_key)
                && let Some(part) = state
                    .seconds
                    .iter()
                    .rev()
                    .find(|s| s.sec == sec)
                    .and_then(|s| s.parts.last())
            {
                selection.add(&key, part, sec, now);
            }
            let after = state.weight();
            self.upstream_bytes = self
                .upstream_bytes
                .saturating_add(after)
                .saturating_sub(before);
            self.enforce_upstream_bounds();
            if counts > COUNTS_PER_STATS && i + 1 < stats.upstreams.len() {
                self.sidecars[source].note_invalid(format!(
                    "a stats message too large to take whole: {} of its {} upstreams skipped",
                    stats.upstreams.len() - i - 1,
                    stats.upstreams.len()
                ));
                break;
            }
        }
    }

    /// Evicts the least recently active upstreams, one at a time in O(1),
    /// while there are more than [`MAX_UPSTREAMS`] or they hold
    /// more than [`UPSTREAM_BYTES`].
    fn enforce_upstream_bounds(&mut self) {
        while self.upstreams.len() > MAX_UPSTREAMS
            || (self.upstream_bytes > UPSTREAM_BYTES && self.upstreams.len() > 1)
        {
            let Some((_, gone)) = self.upstreams.pop_front() else {
                break;
            };
            self.evicted_upstreams = self.evicted_upstreams.saturating_add(1);
            self.upstream_bytes = self.upstream_bytes.saturating_sub(gone.weight());
            self.summary_cache.borrow_mut().take();
        }
    }

    /// Moves the clock to `sec`: seconds that leave a window are taken out
    /// of its aggregate, and history older than [`HISTORY_SECONDS`] goes.
    fn advance_clock(&mut self, sec: i64) {
        let previous = self.now_sec.replace(sec);
        self.clock_start.get_or_insert(sec);
        self.events_complete_since.get_or_insert(sec);
        let longest = Window::FiveMinutes.seconds();
        while self.drops.front().is_some_and(|(s, _)| *s <= sec - longest) {
            self.drops.pop_front();
        }
        for sidecar in &mut self.sidecars {
            sidecar.events_per_sec = std::mem::take(&mut sidecar.events_this_second);
            while sidecar
                .covered
                .front()
                .is_some_and(|s| sec.saturating_sub(*s) >= HISTORY_SECONDS as i64)
            {
                sidecar.covered.pop_front();
            }
        }
        let Some(previous) = previous else {
            return;
        };
        if let Some(selection) = self.selection.get_mut() {
            selection.expire(&self.upstreams, previous, sec);
        }
        let mut bytes = 0usize;
        for upstream in self.upstreams.values_mut() {
            upstream.expire(previous, sec);
            bytes = bytes.saturating_add(upstream.weight());
        }
        self.upstream_bytes = bytes;
    }

    /// Bytes the model holds, as it counts them against its bounds: its
    /// upstreams, its tap and its error groups' failing requests.
    pub fn held_bytes(&self) -> usize {
        self.upstream_bytes
            .saturating_add(self.tap_bytes)
            .saturating_add(self.failure_bytes)
    }

    /// Upstreams evicted so far to stay within the model's bounds.
    pub fn evicted_upstreams(&self) -> u64 {
        self.evicted_upstreams
    }

    pub fn sidecars(&self) -> &[SidecarState] {
        &self.sidecars
    }

    /// The sidecars no hello ever came from, with why (see
    /// [`SidecarState::why_not_connected`]).
    pub fn never_connected(&self) -> Vec<(&str, String)> {
        self.sidecars
            .iter()
            .filter(|s| s.hello.is_none())
            .map(|s| (s.target.as_str(), s.why_not_connected()))
            .collect()
    }

    pub fn live_sidecars(&self) -> usize {
        self.sidecars
            .iter()
            .filter(|s| s.state == SourceState::Live)
            .count()
    }

    /// The model clock (Unix seconds of the newest stats), if any arrived.
    pub fn now_sec(&self) -> Option<i64> {
        self.now_sec
    }

    /// What the figures under `filter` are counted from here: as
    /// [`FilterExpr::scope`] says, except that a filter on routes is
    /// counted from events while no `stats` carried routes.
    pub fn scope_of(&self, filter: &FilterExpr) -> Scope {
        match filter.scope() {
            Scope::Stats if filter.names_route() && !self.has_route_stats => Scope::Events,
            scope => scope,
        }
    }

    /// Every upstream's row over `window` that passes the filter (unsorted),
    /// counted as [`Model::scope_of`] says; with `failures_only`, only
    /// upstreams with failures in the window.
    pub fn upstream_rows(
        &self,
        window: Window,
        filter: &FilterExpr,
        failures_only: bool,
    ) -> Vec<UpstreamRow> {
        let mut rows = match self.scope_of(filter) {
            Scope::Events => self.event_figures(filter).rows[window.index()].clone(),
            Scope::Stats => self.selected_rows(window, filter),
            Scope::Upstreams => self
                .upstreams
                .iter()
                .filter(|(key, _)| filter.matches_upstream(key.direction, &key.authority))
                .map(|(key, state)| self.row_of(key, state, window))
                .collect(),
        };
        if failures_only {
            rows.retain(|row| row.failures > 0 && row.success.is_some_and(|s| s < 1.0));
        }
        rows
    }

    /// The row of one upstream.
    pub fn upstream_row(&self, key: &UpstreamKey, window: Window) -> Option<UpstreamRow> {
        self.upstreams
            .get(key)
            .map(|state| self.row_of(key, state, window))
    }

    fn row_of(&self, key: &UpstreamKey, state: &UpstreamState, window: Window) -> UpstreamRow {
        let now = self.now_sec.unwrap_or(0);
        state.row(
            key,
            window,
            self.watched_seconds(state, window, now),
            self.stale_for(state, now),
        )
    }

    /// The seconds of `window`, ending at `now`, in which a sidecar whose
    /// `stats` name this upstream delivered `stats`: the time its figures
    /// cover. A sidecar that was down (or not yet attached) for part of the
    /// window did not see zero traffic; it was not watched.
    fn watched_seconds(&self, state: &UpstreamState, window: Window, now: i64) -> i64 {
        let since = now.saturating_sub(window.seconds());
        let in_window = |source: usize| {
            self.sidecars[source]
                .covered
                .iter()
                .rev()
                .skip_while(move |s| **s > now)
                .take_while(move |s| **s > since)
        };
        let watched = match state.sources.as_slice() {
            [] => state.span(window, now),
            [(source, _)] => in_window(*source).count() as i64,
            sources => {
                let mut seconds: Vec<i64> = sources
                    .iter()
                    .flat_map(|(s, _)| in_window(*s).copied())
                    .collect();
                seconds.sort_unstable();
                seconds.dedup();
                seconds.len() as i64
            }
        };
        watched.max(1)
    }

    /// [`UpstreamRow::stale`].
    fn stale_for(&self, state: &UpstreamState, now: i64) -> Option<i64> {
        let mut last = None;
        for (source, sec) in &state.sources {
            if !self.sidecars[*source].gone() {
                return None;
            }
            last = last.max(Some(*sec));
        }
        last.map(|last| now.saturating_sub(last).max(0))
    }

    /// Totals over the given rows' window aggregates: summed rates, the
    /// merged success rate and the p99 of all their latencies together, of
    /// distinct calls: an outbound row whose authority an attached sidecar
    /// serves (it has an inbound row too) is the same calls again, and is
    /// left out.
    pub fn summary(&self, window: Window, filter: &FilterExpr) -> Summary {
        let key = SummaryKey {
            window,
            filter: filter.as_str().to_owned(),
            stats_version: self.stats_version,
        };
        if let Some((cached_key, summary)) = &*self.summary_cache.borrow()
            && *cached_key == key
        {
            return summary.clone();
        }
        let summary = self.compute_summary(window, filter);
        *self.summary_cache.borrow_mut() = Some((key, summary.clone()));
        summary
    }

    fn compute_summary(&self, window: Window, filter: &FilterExpr) -> Summary {
        match self.scope_of(filter) {
            Scope::Events => return self.event_figures(filter).summary[window.index()].clone(),
            Scope::Stats => return self.selected_summary(window, filter),
            Scope::Upstreams => {}
        }
        let now = self.now_sec.unwrap_or(0);
        // Stale rows are history: the header says what flows now.
        let parts: Vec<SummaryPart> = self
            .upstreams
            .iter()
            .filter(|(key, _)| filter.matches_upstream(key.direction, &key.authority))
            .filter(|(_, state)| self.stale_for(state, now).is_none())
            .map(|(key, state)| {
                state.windows[window.index()]
                    .summary_part(key, self.watched_seconds(state, window, now))
            })
            .collect();
        distinct_calls(&parts)
    }

    /// Requests and failures per second for the last `seconds` seconds of
    /// the clock, oldest first (seconds without stats count zero).
    pub fn rate_history(&self, key: &UpstreamKey, seconds: usize) -> Vec<(u64, u64)> {
        let mut history = vec![(0, 0); seconds];
        let (Some(now), Some(state)) = (self.now_sec, self.upstreams.get(key)) else {
            return history;
        };
        // Newest first, stopping at the first second too old: the TREND
        // column asks for 60 s of each row on every frame, out of 600 kept.
        for second in state.seconds.iter().rev() {
            let age = now - second.sec;
            if age < 0 {
                continue;
            }
            if age as usize >= seconds {
                break;
            }
            history[seconds - 1 - age as usize] = (second.requests, second.failures);
        }
        history
    }

    /// The window's latency distribution, in at most `max_buckets`
    /// buckets on `scale` (see [`distribution`](mod@distribution)); `None`
    /// without requests in the window.
    pub fn latency_distribution(
        &self,
        key: &UpstreamKey,
        window: Window,
        scale: Scale,
        max_buckets: usize,
    ) -> Option<Distribution> {
        let state = self.upstreams.get(key)?;
        distribution::distribution(state.windows[window.index()].latency(), scale, max_buckets)
    }

    /// An upstream's routes over `window`: exact, from the routes in the
    /// sidecars' `stats`, when they carry any in the window; else counted
    /// from request events since attach (sidecars before routes were
    /// added to `stats`, or recordings of them). Most requested first.
    pub fn route_figures(&self, key: &UpstreamKey, window: Window) -> RouteFigures {
        let question = (key.clone(), window, self.stats_version, self.now_sec);
        if let Some((asked, figures)) = &*self.routes_cache.borrow()
            && *asked == question
        {
            return figures.clone();
        }
        let figures = match self.exact_routes(key, window) {
            Some(rows) => RouteFigures::Exact(rows),
            None => RouteFigures::FromEvents(self.routes(key)),
        };
        *self.routes_cache.borrow_mut() = Some((question, figures.clone()));
        figures
    }

    fn exact_routes(&self, key: &UpstreamKey, window: Window) -> Option<Vec<RouteRow>> {
        let state = self.upstreams.get(key)?;
        let now = self.now_sec.unwrap_or(0);
        let since = now - window.seconds();
        let mut routes: HashMap<&str, (u64, u64, Histogram<u64>)> = HashMap::new();
        for second in state
            .seconds
            .iter()
            .filter(|s| s.sec > since && s.sec <= now)
        {
            for part in second.parts.iter().flat_map(|p| &p.routes) {
                let entry = routes
                    .entry(&part.route)
                    .or_insert_with(|| (0, 0, new_latency_histogram()));
                entry.0 = entry.0.saturating_add(part.requests);
                entry.1 = entry.1.saturating_add(part.failures);
                let _ = add_encoded_histogram(&part.latency, &mut entry.2);
            }
        }
        if routes.is_empty() {
            return None;
        }
        let span = self.watched_seconds(state, window, now) as f64;
        let mut rows: Vec<RouteRow> = routes
            .into_iter()
            .map(|(route, (requests, failures, latency))| RouteRow {
                route: route.to_owned(),
                count: requests,
                rps: Some(requests as f64 / span),
                success: success_rate(requests, failures),
                p50: (!latency.is_empty()).then(|| latency.value_at_quantile(0.5)),
                p99: (!latency.is_empty()).then(|| latency.value_at_quantile(0.99)),
            })
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.route.cmp(&b.route)));
        Some(rows)
    }

    /// The routes seen in request events of an upstream, most requested first.
    pub fn routes(&self, key: &UpstreamKey) -> Vec<RouteRow> {
        let Some(state) = self.upstreams.get(key) else {
            return Vec::new();
        };
        let mut rows: Vec<RouteRow> = state
            .routes
            .iter()
            .map(|(route, r)| RouteRow {
                route: route.clone(),
                count: r.count,
                rps: None,
                success: success_rate(r.count, r.failures),
                p50: (!r.latency.is_empty()).then(|| r.latency.value_at_quantile(0.5)),
                p99: (!r.latency.is_empty()).then(|| r.latency.value_at_quantile(0.99)),
            })
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.route.cmp(&b.route)));
        rows
    }

    /// Failure groups passing the filter, most frequent first; for one
    /// upstream with `only`.
    pub fn errors(&self, filter: &FilterExpr, only: Option<&UpstreamKey>) -> Vec<ErrorRow> {
        let scope = self.scope_of(filter);
        let mut rows: Vec<ErrorRow> =
            if scope == Scope::Events || (scope == Scope::Stats && filter.names_sidecar()) {
                // Error groups are not kept per sidecar, nor per request.
                self.event_figures(filter)
                    .errors
                    .iter()
                    .filter(|e| only.is_none_or(|k| &e.key.upstream == k))
                    .cloned()
                    .collect()
            } else {
                self.errors
                    .values()
                    .filter(|e| only.is_none_or(|k| &e.key.upstream == k))
                    .filter(|e| {
                        filter.matches(&StatsFacts {
                            sidecar: "",
                            direction: e.key.upstream.direction,
                            authority: &e.key.upstream.authority,
                            route: Some(&e.key.route),
                        })
                    })
                    .cloned()
                    .collect()
            };
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        rows
    }

    /// The tap, oldest first.
    pub fn tap(&self) -> &VecDeque<TapEntry> {
        &self.tap
    }

    /// The newest failing requests of an error group (at most
    /// [`FAILURES_PER_GROUP`]), oldest first, each with its tap sequence
    /// number, whether or not the tap still holds them.
    pub fn failures(&self, group: &ErrorKey) -> Vec<(u64, &TapEntry)> {
        self.failures.get(group).map_or_else(Vec::new, |kept| {
            kept.iter().map(|(seq, entry)| (*seq, &**entry)).collect()
        })
    }

    /// Bytes held by the error groups' failing requests (see
    /// [`FAILURE_SAMPLE_BYTES`]).
    pub fn failure_bytes(&self) -> usize {
        self.failure_bytes
    }
}

impl UpstreamState {
    fn new() -> Self {
        UpstreamState {
            seconds: VecDeque::new(),
            windows: Default::default(),
            total_requests: 0,
            total_failures: 0,
            // Set by the first stats; an upstream known only from request
            // events has no rate yet.
            first_sec: i64::MAX,
            sources: Vec::new(),
            last_seen_sec: i64::MIN,
            routes: HashMap::new(),
            seconds_bytes: 0,
            routes_bytes: 0,
        }
    }

    /// The bytes this upstream holds, as counted against [`UPSTREAM_BYTES`]:
    /// its window histograms' counts, its history and its routes.
    fn weight(&self) -> usize {
        let windows: usize = self.windows.iter().map(WindowAggregate::weight).sum();
        UPSTREAM_OVERHEAD + windows + self.seconds_bytes + self.routes_bytes
    }

    /// Counts a request event under its route; past [`ROUTES_PER_UPSTREAM`]
    /// the least recently seen route goes.
    fn count_route(&mut self, route: String, failed: bool, micros: u64, order: u64) {
        if !self.routes.contains_key(route.as_str())
            && self.routes.len() >= ROUTES_PER_UPSTREAM
            && let Some(oldest) = self
                .routes
                .iter()
                .min_by_key(|(_, r)| r.last_seen)
                .map(|(k, _)| k.clone())
            && let Some(gone) = self.routes.remove(&oldest)
        {
            self.routes_bytes = self
                .routes_bytes
                .saturating_sub(route_weight(&oldest, &gone));
        }
        let len = route.len();
        let state = self.routes.entry(route).or_insert_with(RouteState::new);
        let before = if state.count == 0 {
            // A new route: its name now, its histogram as it grows.
            self.routes_bytes += len + ROUTE_OVERHEAD;
            0
        } else {
            state.latency.distinct_values()
        };
        state.count = state.count.saturating_add(1);
        state.failures = state.failures.saturating_add(u64::from(failed));
        state.last_seen = order;
        let _ = state.latency.record(micros);
        let grown = state.latency.distinct_values().saturating_sub(before);
        self.routes_bytes += grown * std::mem::size_of::<u32>();
    }

    /// Adds one sidecar's stats for second `sec` (the clock is at `now`).
    #[allow(clippy::too_many_arguments)]
    fn add_second(
        &mut self,
        sec: i64,
        now: i64,
        requests: u64,
        failures: u64,
        encoded: &str,
        latency: Option<&Histogram<u64>>,
        routes: &[RouteStats],
        clients: &[ClientStats],
        sidecar: Arc<str>,
        status: StatusClasses,
    ) {
        self.total_requests = self.total_requests.saturating_add(requests);
        self.total_failures = self.total_failures.saturating_add(failures);
        self.first_sec = self.first_sec.min(sec);
        self.last_seen_sec = self.last_seen_sec.max(sec);
        if now.saturating_sub(sec) >= HISTORY_SECONDS as i64 {
            return;
        }
        for window in Window::ALL {
            if now.saturating_sub(sec) < window.seconds() {
                self.windows[window.index()].add(requests, failures, latency);
            }
        }
        // A histogram that did not decode is not kept: it would only fail
        // to decode again when its second leaves a window.
        let kept: Option<Arc<str>> = latency.map(|_| Arc::from(encoded));
        // What a sidecar sends at most (its bound and `other`); a longer
        // list is not a sidecar's, and its tail is not kept.
        let routes: Vec<RouteSecond> = routes
            .iter()
            .take(ROUTES_PER_UPSTREAM + 1)
            .map(|r| {
                let mut route = r.route.clone();
                truncate_field(&mut route, MAX_AUTHORITY);
                RouteSecond {
                    route: Arc::from(route),
                    requests: r.counts.requests,
                    failures: r.counts.failures.min(r.counts.requests),
                    latency: Arc::from(r.counts.latency.as_str()),
                }
            })
            .collect();
        let clients: Vec<ClientSecond> = clients
            .iter()
            .take(CLIENTS_PER_UPSTREAM + 1)
            .map(|c| {
                let mut client = c.client.clone();
                truncate_field(&mut client, MAX_AUTHORITY);
                let latency = match &kept {
                    Some(whole) if **whole == *c.counts.latency => Some(whole.clone()),
                    _ => check_encoded_histogram(&c.counts.latency)
                        .is_ok()
                        .then(|| Arc::from(c.counts.latency.as_str())),
                };
                ClientSecond {
                    client: Arc::from(client),
                    requests: c.counts.requests,
                    failures: c.counts.failures.min(c.counts.requests),
                    latency,
                }
            })
            .collect();
        let part = Part {
            sidecar,
            requests,
            failures,
            latency: kept,
            routes,
            clients,
            status,
        };
        self.seconds_bytes += SECOND_OVERHEAD + part_weight(&part);
        let position = self.seconds.iter().rposition(|s| s.sec <= sec);
        match position {
            Some(i) if self.seconds[i].sec == sec => {
                let second = &mut self.seconds[i];
                second.requests = second.requests.saturating_add(requests);
                second.failures = second.failures.saturating_add(failures);
                second.parts.push(part);
            }
            _ => {
                let at = position.map_or(0, |i| i + 1);
                self.seconds.insert(
                    at,
                    Second {
                        sec,
                        requests,
                        failures,
                        parts: vec![part],
                    },
                );
            }
        }
    }

    /// The clock moved from `previous` to `now`: take out of each window the
    /// seconds that left it, and forget history past the longest.
    fn expire(&mut self, previous: i64, now: i64) {
        for window in Window::ALL {
            let w = window.seconds();
            // Seconds in (previous - w, now - w] leave this window.
            let (after, up_to) = (previous.saturating_sub(w), now.saturating_sub(w));
            let aggregate = &mut self.windows[window.index()];
            for second in self
                .seconds
                .iter()
                .filter(|s| s.sec > after && s.sec <= up_to)
            {
                aggregate.subtract(second.requests, second.failures, None);
                for encoded in second.parts.iter().filter_map(|p| p.latency.as_ref()) {
                    if let Ok(latency) = decode_histogram(encoded) {
                        aggregate.subtract(0, 0, Some(&latency));
                    }
                }
            }
            aggregate.clear_if_empty();
        }
        while self
            .seconds
            .front()
            .is_some_and(|s| now.saturating_sub(s.sec) >= HISTORY_SECONDS as i64)
        {
            if let Some(gone) = self.seconds.pop_front() {
                self.seconds_bytes = self.seconds_bytes.saturating_sub(second_weight(&gone));
            }
        }
    }

    /// Seconds the window covers for this upstream, when no sidecar's
    /// `stats` named it: the whole window, or less while it has not been
    /// seen that long.
    fn span(&self, window: Window, now: i64) -> i64 {
        now.saturating_sub(self.first_sec)
            .saturating_add(1)
            .clamp(1, window.seconds())
    }

    /// `watched`: the seconds of the window its figures cover
    /// ([`Model::watched_seconds`]); `stale`: see [`UpstreamRow::stale`].
    fn row(
        &self,
        key: &UpstreamKey,
        window: Window,
        watched: i64,
        stale: Option<i64>,
    ) -> UpstreamRow {
        self.windows[window.index()].row(
            key,
            watched,
            (self.total_requests, self.total_failures),
            stale,
        )
    }
}

impl WindowAggregate {
    /// The window's latencies; an empty histogram when there are none.
    fn latency(&self) -> &Histogram<u64> {
        self.latency.as_ref().unwrap_or(&NO_LATENCY)
    }

    fn add(&mut self, requests: u64, failures: u64, latency: Option<&Histogram<u64>>) {
        self.read.set(None);
        self.requests = self.requests.saturating_add(requests);
        self.failures = self.failures.saturating_add(failures);
        if let Some(latency) = latency {
            let _ = self
                .latency
                .get_or_insert_with(new_latency_histogram)
                .add(latency);
        }
    }

    fn subtract(&mut self, requests: u64, failures: u64, latency: Option<&Histogram<u64>>) {
        self.read.set(None);
        self.requests = self.requests.saturating_sub(requests);
        self.failures = self.failures.saturating_sub(failures);
        if let (Some(aggregate), Some(latency)) = (self.latency.as_mut(), latency) {
            let _ = aggregate.subtract(latency);
        }
    }

    /// Starts afresh once the window holds no request, so that no rounding
    /// residue outlives the data.
    fn clear_if_empty(&mut self) {
        if self.requests == 0 {
            self.read.set(None);
            self.latency = None;
            self.failures = 0;
        }
    }

    /// The bytes its histogram's counts may hold (twice the counts: a
    /// histogram grows them as a `Vec` does).
    fn weight(&self) -> usize {
        self.latency
            .as_ref()
            .map_or(0, |l| 2 * l.distinct_values() * std::mem::size_of::<u64>())
    }

    /// A row of these figures: rates over the `watched` seconds, `totals`
    /// (requests, failures) for its REQUESTS and FAILURES.
    fn row(
        &self,
        key: &UpstreamKey,
        watched: i64,
        totals: (u64, u64),
        stale: Option<i64>,
    ) -> UpstreamRow {
        let [p50, p90, p99, max] = self.percentiles();
        UpstreamRow {
            key: key.clone(),
            rps: self.requests as f64 / watched.max(1) as f64,
            success: success_rate(self.requests, self.failures),
            p50,
            p90,
            p99,
            max,
            requests: totals.0,
            failures: totals.1,
            stale,
        }
    }

    /// p50, p90, p99 and the maximum, as last read while the window has not
    /// changed since.
    fn percentiles(&self) -> [Option<u64>; 4] {
        if let Some(read) = self.read.get() {
            return read;
        }
        let read = percentiles(self.latency());
        self.read.set(Some(read));
        read
    }

    /// Its share of the header's figures, over the `watched` seconds.
    fn summary_part<'a>(&'a self, key: &'a UpstreamKey, watched: i64) -> SummaryPart<'a> {
        SummaryPart {
            key,
            requests: self.requests,
            failures: self.failures,
            rps: self.requests as f64 / watched.max(1) as f64,
            latency: self.latency(),
        }
    }
}

impl RouteState {
    fn new() -> Self {
        RouteState {
            count: 0,
            failures: 0,
            latency: Histogram::new(2).expect("2 significant digits is a valid precision"),
            last_seen: 0,
        }
    }
}

/// p50, p90, p99 and the maximum of `latency`, every row's latency
/// columns; all `None` when it is empty.
fn percentiles(latency: &Histogram<u64>) -> [Option<u64>; 4] {
    if latency.is_empty() {
        return [None; 4];
    }
    // One pass over the counts for all three percentiles.
    let mut values = latency.value_at_quantiles([0.5, 0.9, 0.99]).map(Some);
    let [p50, p90, p99] = [(); 3].map(|()| values.next().flatten());
    [p50, p90, p99, Some(latency.max())]
}

/// One upstream's share of the header's figures.
struct SummaryPart<'a> {
    key: &'a UpstreamKey,
    requests: u64,
    failures: u64,
    rps: f64,
    latency: &'a Histogram<u64>,
}

/// The header's figures over upstreams, counting each call once: one seen
/// both leaving its caller's pod and entering its callee's (both sidecars
/// attached) counts at the callee, whose inbound row carries the same
/// authority.
fn distinct_calls(parts: &[SummaryPart]) -> Summary {
    let served: std::collections::HashSet<&str> = parts
        .iter()
        .filter(|p| p.key.direction == Direction::Inbound)
        .map(|p| p.key.authority.as_str())
        .collect();
    let mut merged = new_latency_histogram();
    let (mut requests, mut failures, mut rps) = (0u64, 0u64, 0.0);
    for part in parts {
        if part.key.direction == Direction::Outbound && served.contains(part.key.authority.as_str())
        {
            continue;
        }
        requests = requests.saturating_add(part.requests);
        failures = failures.saturating_add(part.failures);
        rps += part.rps;
        let _ = merged.add(part.latency);
    }
    Summary {
        rps,
        success: success_rate(requests, failures),
        p99: (!merged.is_empty()).then(|| merged.value_at_quantile(0.99)),
    }
}

fn success_rate(requests: u64, failures: u64) -> Option<f64> {
    (requests > 0).then(|| 1.0 - failures.min(requests) as f64 / requests as f64)
}

/// The group a failed request counts in: its upstream, its route and what
/// the failure was.
fn error_key(upstream: UpstreamKey, event: &RequestEvent) -> ErrorKey {
    let kind = if let Some(error) = &event.error {
        FailureKind::Error(error.as_str().to_owned())
    } else if let Some(code) = event.grpc_status.filter(|c| *c != 0) {
        FailureKind::Grpc(code)
    } else {
        FailureKind::Status(event.status.unwrap_or(0))
    };
    ErrorKey {
        upstream,
        route: route_of(event),
        kind,
    }
}

/// The route of a request ([`crate::telemetry::route`]).
pub fn route_of(event: &RequestEvent) -> String {
    crate::telemetry::route::route(
        event.protocol == crate::telemetry::HttpProtocol::Grpc,
        event.method.as_deref(),
        event.path.as_deref(),
    )
}

/// What a second of history holds.
fn second_weight(second: &Second) -> usize {
    // Each part was counted with an overhead of a second when it came.
    second
        .parts
        .iter()
        .map(|p| SECOND_OVERHEAD + part_weight(p))
        .sum()
}

fn part_weight(part: &Part) -> usize {
    part.sidecar.len()
        + part.latency.as_ref().map_or(0, |l| l.len())
        + part.routes.iter().map(route_second_weight).sum::<usize>()
        + part.clients.iter().map(client_second_weight).sum::<usize>()
}

/// A shared histogram counts again: what it costs is an upper bound.
fn client_second_weight(client: &ClientSecond) -> usize {
    CLIENT_OVERHEAD + client.client.len() + client.latency.as_ref().map_or(0, |l| l.len())
}

fn route_second_weight(route: &RouteSecond) -> usize {
    ROUTE_OVERHEAD + route.route.len() + route.latency.len()
}

/// What a route holds.
fn route_weight(name: &str, route: &RouteState) -> usize {
    name.len() + ROUTE_OVERHEAD + route.latency.distinct_values() * std::mem::size_of::<u32>()
}

/// What a request in the tap holds: its text and its structure.
fn tap_weight(event: &RequestEvent) -> usize {
    let text = [&event.ts, &event.sidecar, &event.client, &event.authority]
        .iter()
        .map(|s| s.len())
        .sum::<usize>()
        + [
            &event.server,
            &event.method,
            &event.path,
            &event.grpc_message,
        ]
        .iter()
        .map(|s| s.as_ref().map_or(0, String::len))
        .sum::<usize>()
        + event.headers.as_ref().map_or(0, |h| {
            h.iter().map(|(k, v)| k.len() + v.len() + 64).sum::<usize>()
        });
    text + std::mem::size_of::<TapEntry>()
}

/// A latency from an event, in microseconds as histograms record them.
fn event_micros(duration_ms: f64) -> u64 {
    let micros = (duration_ms * 1000.0).round();
    if micros.is_nan() {
        return 1;
    }
    // A float-to-integer cast saturates; the histogram bound applies after.
    (micros as u64).clamp(1, MAX_LATENCY_MICROS)
}

/// Whole Unix seconds of a time, or `None` before 1970 or far beyond.
fn system_seconds(time: SystemTime) -> Option<i64> {
    let secs = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// A sidecar's timestamp `ts` minus the UI's `received`, in milliseconds.
fn clock_offset_ms(ts: &str, received: SystemTime) -> Option<i64> {
    let theirs = humantime::parse_rfc3339(ts).ok()?;
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    Some(match theirs.duration_since(received) {
        Ok(ahead) => ms(ahead),
        Err(behind) => -ms(behind.duration()),
    })
}

/// What the model keeps of a hello: its strings and listeners bounded.
fn bounded_hello(hello: &Hello) -> Hello {
    /// More listeners than any sidecar has; the rest are not kept.
    const LISTENERS: usize = 64;
    let mut hello = Hello {
        schema: hello.schema,
        sidecar: hello.sidecar.clone(),
        listeners: hello.listeners.iter().take(LISTENERS).cloned().collect(),
        addresses: hello.addresses.iter().take(LISTENERS).cloned().collect(),
        ts: hello.ts.clone(),
    };
    for address in &mut hello.addresses {
        truncate_field(address, MAX_AUTHORITY);
    }
    let desc = &mut hello.sidecar;
    for field in [&mut desc.name, &mut desc.version, &mut desc.started_at] {
        truncate_field(field, MAX_AUTHORITY);
    }
    if let Some(namespace) = &mut desc.namespace {
        truncate_field(namespace, MAX_AUTHORITY);
    }
    for listener in &mut hello.listeners {
        truncate_field(&mut listener.addr, MAX_AUTHORITY);
        if let Some(target) = &mut listener.target {
            truncate_field(target, MAX_AUTHORITY);
        }
    }
    if let Some(ts) = &mut hello.ts {
        truncate_field(ts, MAX_AUTHORITY);
    }
    hello
}

/// The `type` of a message's text, short and on one line.
fn message_type(raw: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        r#type: String,
    }
    serde_json::from_str::<Typed>(raw)
        .ok()
        .map(|typed| one_line(&typed.r#type))
}

/// Unix seconds of an RFC 3339 timestamp.
pub fn unix_seconds(ts: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339(ts).ok()?;
    let secs = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// Rows sorted for display: by `column`, descending for numbers unless
/// `reverse`, ties broken by direction and authority.
pub fn sort_rows(rows: &mut [UpstreamRow], column: SortColumn, reverse: bool) {
    rows.sort_by(|a, b| {
        let order = match column {
            SortColumn::Authority => a.key.authority.cmp(&b.key.authority),
            SortColumn::Direction => a.key.direction.cmp(&b.key.direction),
            SortColumn::Rps => b.rps.total_cmp(&a.rps),
            SortColumn::Success => a
                .success
                .unwrap_or(2.0)
                .total_cmp(&b.success.unwrap_or(2.0)),
            SortColumn::P50 => b.p50.cmp(&a.p50),
            SortColumn::P90 => b.p90.cmp(&a.p90),
            SortColumn::P99 => b.p99.cmp(&a.p99),
            SortColumn::Max => b.max.cmp(&a.max),
            SortColumn::Requests => b.requests.cmp(&a.requests),
            SortColumn::Failures => b.failures.cmp(&a.failures),
        };
        let order = if reverse { order.reverse() } else { order };
        order.then_with(|| a.key.cmp(&b.key))
    });
}

/// Columns of the upstreams table, in display order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortColumn {
    Direction,
    #[default]
    Authority,
    Rps,
    Success,
    P50,
    P90,
    P99,
    Max,
    Requests,
    Failures,
}

impl SortColumn {
    pub const ALL: [SortColumn; 10] = [
        SortColumn::Direction,
        SortColumn::Authority,
        SortColumn::Rps,
        SortColumn::Success,
        SortColumn::P50,
        SortColumn::P90,
        SortColumn::P99,
        SortColumn::Max,
        SortColumn::Requests,
        SortColumn::Failures,
    ];

    /// The next column (`s` cycles).
    pub fn next(self) -> SortColumn {
        let i = SortColumn::ALL.iter().position(|c| *c == self).unwrap_or(0);
        SortColumn::ALL[(i + 1) % SortColumn::ALL.len()]
    }
}

// Added for the views:
impl Model {
    /// The sequence number of the tap's oldest entry. Requests are numbered
    /// from 1 in arrival order (every request event bumps `event_counter`
    /// and enters the tap exactly once), so `tap()[i]` is number
    /// `tap_first_seq() + i` however many were evicted before it: the tap
    /// view anchors a scrolled-up cursor on these numbers so that it stays
    /// on the same request while new ones arrive.
    pub fn tap_first_seq(&self) -> u64 {
        (self.event_counter + 1).saturating_sub(self.tap.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(authority: &str) -> Message {
        serde_json::from_value(serde_json::json!({
            "type": "request", "ts": "2026-11-30T03:42:31.002117Z", "sidecar": "web",
            "direction": "outbound", "protocol": "http/1.1", "client": "10.1.0.7:52144",
            "server": "10.1.0.9:8080", "authority": authority, "method": "GET",
            "path": "/", "status": 200, "duration_ms": 1.5, "ttfb_ms": 1.0,
            "req_bytes": 0, "resp_bytes": 0
        }))
        .expect("a valid request event")
    }

    /// What the model counts against its bound is what its upstreams weigh:
    /// a new upstream's empty windows and bookkeeping included.
    #[test]
    fn the_counted_bytes_are_the_upstreams_weight() {
        let mut model = Model::new(["a".to_owned()]);
        for i in 0..500 {
            model.ingest_message(0, &request(&format!("svc-{i}:80")));
            model.ingest_message(0, &request("svc-0:80"));
        }
        let mut latency = crate::telemetry::stats::new_latency_histogram();
        latency.record(1500).expect("in range");
        let upstreams = (0..500)
            .map(|i| crate::schema::UpstreamStats {
                direction: Direction::Inbound,
                authority: format!("in-{i}:80"),
                counts: crate::schema::Counts {
                    requests: 1,
                    failures: 0,
                    status: Default::default(),
                    grpc_status: Default::default(),
                    errors: Default::default(),
                    req_bytes: 0,
                    resp_bytes: 0,
                    latency: crate::telemetry::stats::encode_histogram(&latency),
                },
                routes: Vec::new(),
                clients: Vec::new(),
            })
            .collect();
        let stats = Stats {
            ts: "2026-11-30T03:42:31Z".into(),
            sidecar: "web".into(),
            interval_ms: 1000,
            backfill: false,
            upstreams,
        };
        model.ingest_message(0, &Message::Stats(stats));
        let weighed: usize = model.upstreams.values().map(UpstreamState::weight).sum();
        assert_eq!(model.upstream_bytes, weighed);
    }
}
