//! The model: everything received from every attached sidecar, merged.
//!
//! Two channels of truth (see `docs/events.md`): rates, success rates and
//! percentiles come from `stats` (exact, merged across sidecars by adding
//! their HdrHistograms); routes, errors and the tap come from `request`
//! events (best effort: a slow reader loses some, and the sidecars view
//! shows how many). The model's clock is the newest `stats` timestamp, so
//! the same messages always give the same numbers, live or replayed.
//!
//! Memory is bounded whatever the traffic: per-second history is kept for
//! [`HISTORY_SECONDS`], histograms per second are kept compressed, and
//! routes, error groups, upstreams and the tap have caps with the least
//! recently seen evicted first.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use hdrhistogram::Histogram;

use super::filter::FilterExpr;
use super::source::{FeedItem, FeedKind};
use crate::telemetry::Direction;
use crate::telemetry::event::{Hello, Message, RequestEvent, Stats};
use crate::telemetry::stats::{decode_histogram, new_latency_histogram};

/// Seconds of per-upstream history kept (charts and the largest window).
pub const HISTORY_SECONDS: usize = 600;
/// Requests kept for the tap view.
pub const TAP_CAPACITY: usize = 10_000;
/// Routes kept per upstream; the least recently seen is evicted past it.
pub const ROUTES_PER_UPSTREAM: usize = 100;
/// Error groups kept; the least recently seen is evicted past it.
pub const ERROR_GROUPS: usize = 1_000;
/// Upstreams kept; the least recently seen is evicted past it.
pub const MAX_UPSTREAMS: usize = 5_000;

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
    /// The `latency` fields received for this second (one per sidecar),
    /// still compressed: decoded again only when the second leaves a window.
    latency: Vec<Arc<str>>,
}

/// A window's running aggregate: what entered minus what left.
#[derive(Clone, Debug)]
struct WindowAggregate {
    requests: u64,
    failures: u64,
    latency: Histogram<u64>,
}

impl Default for WindowAggregate {
    fn default() -> Self {
        WindowAggregate {
            requests: 0,
            failures: 0,
            latency: new_latency_histogram(),
        }
    }
}

#[derive(Clone, Debug)]
struct UpstreamState {
    /// Ordered by second, oldest first.
    seconds: VecDeque<Second>,
    windows: [WindowAggregate; 3],
    total_requests: u64,
    total_failures: u64,
    /// First second this upstream was seen (for rates before a window fills).
    first_sec: i64,
    last_seen_sec: i64,
    routes: HashMap<String, RouteState>,
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
}

/// The header line's figures, over all rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub rps: f64,
    pub success: Option<f64>,
    pub p99: Option<u64>,
}

/// One bar of a latency histogram: requests with a duration up to
/// `upper_us` (and above the previous bar's bound).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyBucket {
    pub upper_us: u64,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteRow {
    /// `METHOD /path` for HTTP, `service/method` for gRPC.
    pub route: String,
    pub count: u64,
    pub success: Option<f64>,
    pub p50: Option<u64>,
    pub p99: Option<u64>,
}

/// What a failure was: an error kind, a gRPC status, or an HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    Error(String),
    Grpc(u32),
    Status(u16),
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureKind::Error(kind) => f.write_str(kind),
            FailureKind::Grpc(code) => write!(f, "grpc {code}"),
            FailureKind::Status(status) => write!(f, "HTTP {status}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorKey {
    pub upstream: UpstreamKey,
    pub kind: FailureKind,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ErrorRow {
    pub key: ErrorKey,
    pub count: u64,
    /// `ts` of the latest such failure.
    pub last_seen: String,
    pub example_path: Option<String>,
    pub example_message: Option<String>,
    seen_order: u64,
}

/// A request in the tap.
#[derive(Clone, Debug, PartialEq)]
pub struct TapEntry {
    pub source: usize,
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
    /// Messages that were not valid JSON, of an unknown type or a newer schema.
    pub invalid: u64,
    pub last_invalid: Option<String>,
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
            invalid: 0,
            last_invalid: None,
        }
    }

    pub fn name(&self) -> &str {
        self.hello.as_ref().map_or("?", |h| h.sidecar.name.as_str())
    }
}

/// Everything the UI shows, merged from every source.
#[derive(Clone, Debug)]
pub struct Model {
    sidecars: Vec<SidecarState>,
    upstreams: HashMap<UpstreamKey, UpstreamState>,
    errors: HashMap<ErrorKey, ErrorRow>,
    tap: VecDeque<TapEntry>,
    /// The model clock: the newest `stats` second seen (Unix seconds).
    now_sec: Option<i64>,
    /// Increases with every request event; orders "least recently seen".
    event_counter: u64,
    /// Increases with every stats message: what the summary depends on.
    stats_version: u64,
    /// The last summary, for as long as the same question is asked of the
    /// same stats (merging every upstream's histogram on each frame would
    /// take most of a frame's time).
    summary_cache: std::cell::RefCell<Option<(SummaryKey, Summary)>>,
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
            upstreams: HashMap::new(),
            errors: HashMap::new(),
            tap: VecDeque::new(),
            now_sec: None,
            event_counter: 0,
            stats_version: 0,
            summary_cache: std::cell::RefCell::new(None),
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
        match &item.kind {
            FeedKind::Reset => {}
            FeedKind::Connecting => sidecar.state = SourceState::Connecting,
            FeedKind::Live => sidecar.state = SourceState::Live,
            FeedKind::Reconnecting { reason, retry_in } => {
                sidecar.state = SourceState::Reconnecting {
                    reason: reason.clone(),
                    retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
                }
            }
            FeedKind::Failed { reason } => {
                sidecar.state = SourceState::Failed {
                    reason: reason.clone(),
                }
            }
            FeedKind::Invalid { reason } => {
                sidecar.invalid += 1;
                sidecar.last_invalid = Some(reason.clone());
            }
            FeedKind::Message { message, .. } => self.ingest_message(item.source, message),
        }
    }

    /// Takes in one message from source `source`.
    pub fn ingest_message(&mut self, source: usize, message: &Message) {
        let Some(sidecar) = self.sidecars.get_mut(source) else {
            return;
        };
        match message {
            Message::Hello(hello) => {
                if let Some(previous) = &sidecar.hello
                    && previous.sidecar.started_at != hello.sidecar.started_at
                {
                    sidecar.restarts += 1;
                }
                // A new connection counts its drops from zero again.
                sidecar.dropped_before = sidecar.dropped;
                sidecar.hello = Some(hello.clone());
                sidecar.state = SourceState::Live;
            }
            Message::Dropped(dropped) => {
                sidecar.dropped = sidecar.dropped_before + dropped.total;
            }
            Message::Tcp(_) => {
                sidecar.events += 1;
                sidecar.events_this_second += 1;
            }
            Message::Request(event) => {
                sidecar.events += 1;
                sidecar.events_this_second += 1;
                self.ingest_request(source, event);
            }
            Message::Stats(stats) => self.ingest_stats(stats),
        }
    }

    fn ingest_request(&mut self, source: usize, event: &RequestEvent) {
        self.event_counter += 1;
        let order = self.event_counter;
        let key = UpstreamKey {
            direction: event.direction,
            authority: event.authority.clone(),
        };
        let failed = event.is_failure();
        let micros = (event.duration_ms * 1000.0).round().max(1.0) as u64;
        if !self.upstreams.contains_key(&key) {
            self.evict_upstreams_for_one_more();
        }
        let upstream = self
            .upstreams
            .entry(key.clone())
            .or_insert_with(UpstreamState::new);
        let route = route_of(event);
        let state = match upstream.routes.get_mut(route.as_str()) {
            Some(state) => state,
            None => {
                if upstream.routes.len() >= ROUTES_PER_UPSTREAM
                    && let Some(oldest) = upstream
                        .routes
                        .iter()
                        .min_by_key(|(_, r)| r.last_seen)
                        .map(|(k, _)| k.clone())
                {
                    upstream.routes.remove(&oldest);
                }
                upstream.routes.entry(route).or_insert_with(RouteState::new)
            }
        };
        state.count += 1;
        state.failures += u64::from(failed);
        state.last_seen = order;
        let _ = state.latency.record(micros);

        if failed {
            self.record_failure(key, event, order);
        }
        if self.tap.len() >= TAP_CAPACITY {
            self.tap.pop_front();
        }
        self.tap.push_back(TapEntry {
            source,
            event: event.clone(),
        });
    }

    fn record_failure(&mut self, upstream: UpstreamKey, event: &RequestEvent, order: u64) {
        let kind = if let Some(error) = event.error {
            FailureKind::Error(error.as_str().to_owned())
        } else if let Some(code) = event.grpc_status.filter(|c| *c != 0) {
            FailureKind::Grpc(code)
        } else {
            FailureKind::Status(event.status.unwrap_or(0))
        };
        let key = ErrorKey { upstream, kind };
        if !self.errors.contains_key(&key)
            && self.errors.len() >= ERROR_GROUPS
            && let Some(oldest) = self
                .errors
                .values()
                .min_by_key(|e| e.seen_order)
                .map(|e| e.key.clone())
        {
            self.errors.remove(&oldest);
        }
        let row = self.errors.entry(key.clone()).or_insert_with(|| ErrorRow {
            key,
            count: 0,
            last_seen: String::new(),
            example_path: None,
            example_message: None,
            seen_order: 0,
        });
        row.count += 1;
        row.last_seen.clone_from(&event.ts);
        row.seen_order = order;
        row.example_path.clone_from(&event.path);
        if event.grpc_message.is_some() {
            row.example_message.clone_from(&event.grpc_message);
        }
    }

    fn ingest_stats(&mut self, stats: &Stats) {
        self.stats_version += 1;
        let Some(sec) = unix_seconds(&stats.ts) else {
            return;
        };
        if self.now_sec.is_none_or(|now| sec > now) {
            self.advance_clock(sec);
        }
        let now = self.now_sec.unwrap_or(sec);
        for upstream in &stats.upstreams {
            let key = UpstreamKey {
                direction: upstream.direction,
                authority: upstream.authority.clone(),
            };
            let latency = decode_histogram(&upstream.latency).ok();
            if !self.upstreams.contains_key(&key) {
                self.evict_upstreams_for_one_more();
            }
            let state = self.upstreams.entry(key).or_insert_with(UpstreamState::new);
            state.add_second(
                sec,
                now,
                upstream.requests,
                upstream.failures,
                &upstream.latency,
                latency.as_ref(),
            );
        }
    }

    fn evict_upstreams_for_one_more(&mut self) {
        if self.upstreams.len() < MAX_UPSTREAMS {
            return;
        }
        if let Some(oldest) = self
            .upstreams
            .iter()
            .min_by_key(|(_, u)| u.last_seen_sec)
            .map(|(k, _)| k.clone())
        {
            self.upstreams.remove(&oldest);
        }
    }

    /// Moves the clock to `sec`: seconds that leave a window are taken out
    /// of its aggregate, and history older than [`HISTORY_SECONDS`] goes.
    fn advance_clock(&mut self, sec: i64) {
        let previous = self.now_sec.replace(sec);
        for sidecar in &mut self.sidecars {
            sidecar.events_per_sec = std::mem::take(&mut sidecar.events_this_second);
        }
        let Some(previous) = previous else {
            return;
        };
        for upstream in self.upstreams.values_mut() {
            upstream.expire(previous, sec);
        }
    }

    pub fn sidecars(&self) -> &[SidecarState] {
        &self.sidecars
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

    /// Every upstream's row over `window` that passes the filter (unsorted);
    /// with `failures_only`, only upstreams with failures in the window.
    pub fn upstream_rows(
        &self,
        window: Window,
        filter: &FilterExpr,
        failures_only: bool,
    ) -> Vec<UpstreamRow> {
        let now = self.now_sec.unwrap_or(0);
        self.upstreams
            .iter()
            .filter(|(key, _)| filter.matches_upstream(key.direction, &key.authority))
            .map(|(key, state)| state.row(key, window, now))
            .filter(|row| {
                !failures_only || row.failures > 0 && row.success.is_some_and(|s| s < 1.0)
            })
            .collect()
    }

    /// The row of one upstream.
    pub fn upstream_row(&self, key: &UpstreamKey, window: Window) -> Option<UpstreamRow> {
        let now = self.now_sec.unwrap_or(0);
        self.upstreams
            .get(key)
            .map(|state| state.row(key, window, now))
    }

    /// Totals over the given rows' window aggregates: summed rates, the
    /// merged success rate and the p99 of all their latencies together.
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
        let now = self.now_sec.unwrap_or(0);
        let mut merged = new_latency_histogram();
        let (mut requests, mut failures, mut rps) = (0u64, 0u64, 0.0);
        for (key, state) in &self.upstreams {
            if !filter.matches_upstream(key.direction, &key.authority) {
                continue;
            }
            let aggregate = &state.windows[window.index()];
            requests += aggregate.requests;
            failures += aggregate.failures;
            rps += aggregate.requests as f64 / state.span(window, now) as f64;
            let _ = merged.add(&aggregate.latency);
        }
        Summary {
            rps,
            success: success_rate(requests, failures),
            p99: (!merged.is_empty()).then(|| merged.value_at_quantile(0.99)),
        }
    }

    /// Requests and failures per second for the last `seconds` seconds of
    /// the clock, oldest first (seconds without stats count zero).
    pub fn rate_history(&self, key: &UpstreamKey, seconds: usize) -> Vec<(u64, u64)> {
        let mut history = vec![(0, 0); seconds];
        let (Some(now), Some(state)) = (self.now_sec, self.upstreams.get(key)) else {
            return history;
        };
        for second in &state.seconds {
            let age = now - second.sec;
            if age >= 0 && (age as usize) < seconds {
                history[seconds - 1 - age as usize] = (second.requests, second.failures);
            }
        }
        history
    }

    /// The window's latency distribution in logarithmic buckets (×2 from
    /// 100 µs), and its p50, p90 and p99.
    pub fn latency_buckets(
        &self,
        key: &UpstreamKey,
        window: Window,
    ) -> (Vec<LatencyBucket>, [Option<u64>; 3]) {
        let Some(state) = self.upstreams.get(key) else {
            return (Vec::new(), [None; 3]);
        };
        let latency = &state.windows[window.index()].latency;
        if latency.is_empty() {
            return (Vec::new(), [None; 3]);
        }
        let mut buckets = vec![LatencyBucket {
            upper_us: 100,
            count: 0,
        }];
        for recorded in latency.iter_recorded() {
            let value = recorded.value_iterated_to();
            while buckets.last().is_some_and(|b| b.upper_us < value) {
                let upper = buckets.last().map_or(100, |b| b.upper_us.saturating_mul(2));
                buckets.push(LatencyBucket {
                    upper_us: upper,
                    count: 0,
                });
            }
            if let Some(bucket) = buckets.iter_mut().find(|b| b.upper_us >= value) {
                bucket.count += recorded.count_at_value();
            }
        }
        let quantiles = [0.5, 0.9, 0.99].map(|q| Some(latency.value_at_quantile(q)));
        (buckets, quantiles)
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
        let mut rows: Vec<ErrorRow> = self
            .errors
            .values()
            .filter(|e| only.is_none_or(|k| &e.key.upstream == k))
            .filter(|e| {
                filter.matches_upstream(e.key.upstream.direction, &e.key.upstream.authority)
            })
            .cloned()
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        rows
    }

    /// The tap, oldest first.
    pub fn tap(&self) -> &VecDeque<TapEntry> {
        &self.tap
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
            last_seen_sec: i64::MIN,
            routes: HashMap::new(),
        }
    }

    /// Adds one sidecar's stats for second `sec` (the clock is at `now`).
    fn add_second(
        &mut self,
        sec: i64,
        now: i64,
        requests: u64,
        failures: u64,
        encoded: &str,
        latency: Option<&Histogram<u64>>,
    ) {
        self.total_requests += requests;
        self.total_failures += failures;
        self.first_sec = self.first_sec.min(sec);
        self.last_seen_sec = self.last_seen_sec.max(sec);
        if now - sec >= HISTORY_SECONDS as i64 {
            return;
        }
        for window in Window::ALL {
            if now - sec < window.seconds() {
                let aggregate = &mut self.windows[window.index()];
                aggregate.requests += requests;
                aggregate.failures += failures;
                if let Some(latency) = latency {
                    let _ = aggregate.latency.add(latency);
                }
            }
        }
        let position = self.seconds.iter().rposition(|s| s.sec <= sec);
        let encoded: Arc<str> = Arc::from(encoded);
        match position {
            Some(i) if self.seconds[i].sec == sec => {
                let second = &mut self.seconds[i];
                second.requests += requests;
                second.failures += failures;
                second.latency.push(encoded);
            }
            _ => {
                let at = position.map_or(0, |i| i + 1);
                self.seconds.insert(
                    at,
                    Second {
                        sec,
                        requests,
                        failures,
                        latency: vec![encoded],
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
            let aggregate = &mut self.windows[window.index()];
            for second in self
                .seconds
                .iter()
                .filter(|s| s.sec > previous - w && s.sec <= now - w)
            {
                aggregate.requests = aggregate.requests.saturating_sub(second.requests);
                aggregate.failures = aggregate.failures.saturating_sub(second.failures);
                for encoded in &second.latency {
                    if let Ok(latency) = decode_histogram(encoded) {
                        let _ = aggregate.latency.subtract(&latency);
                    }
                }
            }
            if aggregate.requests == 0 {
                // Start afresh so that no rounding residue outlives the data.
                aggregate.latency.reset();
                aggregate.failures = 0;
            }
        }
        while self
            .seconds
            .front()
            .is_some_and(|s| now - s.sec >= HISTORY_SECONDS as i64)
        {
            self.seconds.pop_front();
        }
    }

    /// Seconds the window covers for this upstream: the whole window, or
    /// less while it has not been seen that long.
    fn span(&self, window: Window, now: i64) -> i64 {
        now.saturating_sub(self.first_sec)
            .saturating_add(1)
            .clamp(1, window.seconds())
    }

    fn row(&self, key: &UpstreamKey, window: Window, now: i64) -> UpstreamRow {
        let aggregate = &self.windows[window.index()];
        let latency = &aggregate.latency;
        // One pass over the counts for all three percentiles.
        let [p50, p90, p99] = if latency.is_empty() {
            [None; 3]
        } else {
            let mut values = latency.value_at_quantiles([0.5, 0.9, 0.99]).map(Some);
            [(); 3].map(|()| values.next().flatten())
        };
        UpstreamRow {
            key: key.clone(),
            rps: aggregate.requests as f64 / self.span(window, now) as f64,
            success: success_rate(aggregate.requests, aggregate.failures),
            p50,
            p90,
            p99,
            max: (!latency.is_empty()).then(|| latency.max()),
            requests: self.total_requests,
            failures: self.total_failures,
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

fn success_rate(requests: u64, failures: u64) -> Option<f64> {
    (requests > 0).then(|| 1.0 - failures.min(requests) as f64 / requests as f64)
}

/// The route of a request: `service/method` for gRPC, else the method and
/// the path without its query.
pub fn route_of(event: &RequestEvent) -> String {
    let path = event.path.as_deref().unwrap_or("");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if event.protocol == crate::telemetry::HttpProtocol::Grpc {
        return path.trim_start_matches('/').to_owned();
    }
    format!("{} {}", event.method.as_deref().unwrap_or("-"), path)
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

    pub fn header(self) -> &'static str {
        match self {
            SortColumn::Direction => "DIRECTION",
            SortColumn::Authority => "AUTHORITY",
            SortColumn::Rps => "RPS",
            SortColumn::Success => "SUCCESS",
            SortColumn::P50 => "P50",
            SortColumn::P90 => "P90",
            SortColumn::P99 => "P99",
            SortColumn::Max => "MAX",
            SortColumn::Requests => "REQUESTS",
            SortColumn::Failures => "FAILURES",
        }
    }
}

/// A latency in microseconds with units: `850µs`, `3.2ms`, `1.25s`.
pub fn format_latency(micros: Option<u64>) -> String {
    match micros {
        None => "-".into(),
        Some(us) if us < 1_000 => format!("{us}µs"),
        Some(us) if us < 10_000 => format!("{:.2}ms", us as f64 / 1_000.0),
        Some(us) if us < 1_000_000 => format!("{:.1}ms", us as f64 / 1_000.0),
        Some(us) => format!("{:.2}s", us as f64 / 1_000_000.0),
    }
}

/// A success rate as a percentage: `85.1%`, or `-` without requests.
pub fn format_success(success: Option<f64>) -> String {
    success.map_or("-".into(), |s| format!("{:.1}%", s * 100.0))
}

/// A rate: `12.3`, `1234`.
pub fn format_rps(rps: f64) -> String {
    if rps < 100.0 {
        format!("{rps:.1}")
    } else {
        format!("{rps:.0}")
    }
}

/// The plain-text upstream table of `--headless` and replay: a header line,
/// then one aligned line per upstream, sorted by direction and authority.
pub fn headless_table(model: &Model, window: Window, filter: &FilterExpr) -> String {
    let mut rows = model.upstream_rows(window, filter, false);
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    let header = [
        "DIRECTION",
        "AUTHORITY",
        "RPS",
        "SUCCESS",
        "P50",
        "P90",
        "P99",
        "MAX",
        "REQUESTS",
        "FAILURES",
    ];
    let lines: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.key.direction.to_string(),
                r.key.authority.clone(),
                format_rps(r.rps),
                format_success(r.success),
                format_latency(r.p50),
                format_latency(r.p90),
                format_latency(r.p99),
                format_latency(r.max),
                r.requests.to_string(),
                r.failures.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push = |cells: &[String]| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = widths[i];
            let pad = width - cell.chars().count();
            // Text left-aligned, numbers right-aligned.
            if i < 2 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
            if i + 1 < cells.len() {
                line.push_str("  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push(&header.map(String::from));
    for line in &lines {
        push(line);
    }
    out
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
