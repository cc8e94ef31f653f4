//! Edges: who calls whom, exact from `stats` — the one place that decides
//! who the caller of a request is.
//!
//! An edge is a (caller, callee authority) pair, seen at either end or at
//! both:
//!
//! - leaving the caller: sidecar S's outbound `stats` of authority A are
//!   the edge S → A (caller side);
//! - entering the callee: sidecar T's inbound `stats` of A count requests
//!   per client address (`clients`, issue 10). The caller is the attached
//!   sidecar whose `hello.addresses` holds that address; when several do
//!   (pods sharing an address, as every demo "pod" shares 127.0.0.1), the
//!   one among them with outbound `stats` to A in the window; failing
//!   that, the address itself (callee side, served by T).
//!
//! Both ends of the same calls are one edge: its rate, success and
//! failures are the caller's (what the caller lived through, connect
//! failures included), falling back on the callee's when only it is seen;
//! its latencies are shown for both ends, whose difference is the network
//! plus the two sidecars.
//!
//! A filter selects the `stats` each end is counted from, as in the
//! Upstreams view: `authority`, `direction` and `sidecar` terms apply to
//! each end's sidecar, direction and authority. Terms on routes or single
//! requests (`status`, `latency`, `path`, …) cannot: `stats` count clients
//! per upstream, not per route or request, so such a filter is refused
//! ([`FilterNotForEdges`]) rather than answered from sampled events.
//!
//! Bounded: edges are not stored. They are computed from the seconds the
//! upstreams keep (their clients included, counted within
//! [`UPSTREAM_BYTES`](super::UPSTREAM_BYTES), at most
//! [`CLIENTS_PER_UPSTREAM`](super::CLIENTS_PER_UPSTREAM) + 1 per second),
//! and at most [`MAX_EDGES`] rows are returned, the least recently active
//! left out: about 1 MB of rows at most (each holds a few names cut to the
//! schema's 256-byte limit), twice over for the two answers kept (with
//! latencies, and without for the CALLERS column) for as long as the same
//! question is asked of the same `stats`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use hdrhistogram::Histogram;

use super::grouped::TREND_SECONDS;
use super::{HISTORY_SECONDS, Model, Part, UpstreamKey, Window, success_rate};
use crate::filter::{FilterExpr, Scope, StatsFacts};
use crate::schema::RequestEvent;
use crate::telemetry::Direction;
use crate::telemetry::stats::{add_encoded_histogram, new_latency_histogram};

/// Who sent a request ([`Model::request_caller`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestCaller<'a> {
    /// An outbound request: the app beside the sidecar that recorded it.
    App,
    /// The attached sidecar whose pod has the client address.
    Sidecar(&'a str),
    /// One of these sidecars, whose pods share the client address.
    OneOf(Vec<&'a str>),
    /// No attached sidecar is known by the client address.
    Unknown,
}

/// Edges returned at most; the least recently active are left out past it.
pub const MAX_EDGES: usize = 1_000;

/// One edge over a window: requests from `caller` to `authority`.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeRow {
    /// The calling sidecar's name, or the client address when no attached
    /// sidecar is known by it (see the module documentation).
    pub caller: String,
    /// Whether `caller` names a sidecar (else it is an address).
    pub caller_is_sidecar: bool,
    pub authority: String,
    /// The attached sidecars that served it (their inbound `stats` named
    /// this caller), by name; empty when only the caller's end is seen.
    pub servers: Vec<String>,
    /// Requests per second over the window.
    pub rps: f64,
    /// Share of requests in the window that did not fail, 0–1.
    pub success: Option<f64>,
    /// Failed requests in the window.
    pub failures: u64,
    /// Latency percentiles (µs) at the caller's end, when it is seen.
    pub caller_p50: Option<u64>,
    pub caller_p99: Option<u64>,
    /// Latency percentiles (µs) at the callee's end, when it is seen.
    pub callee_p50: Option<u64>,
    pub callee_p99: Option<u64>,
    /// Whether the caller's end is seen (its sidecar's outbound `stats`).
    pub seen_by_caller: bool,
    /// The last second (model clock) either end counted a request.
    pub last_active: i64,
}

impl EdgeRow {
    /// The upstream `enter` opens: the caller's outbound one when the
    /// caller's end is seen, else the callee's inbound one.
    pub fn upstream(&self) -> UpstreamKey {
        UpstreamKey {
            direction: if self.seen_by_caller {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            authority: self.authority.clone(),
        }
    }
}

/// Why a filter does not apply to edges.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "edges are exact, from stats: filter by authority, direction or sidecar (routes and request fields do not apply)"
)]
pub struct FilterNotForEdges;

/// What one end of an edge counted over the window, and over the history
/// kept when asked (the caller grouping's REQUESTS, FAILURES and TREND).
pub(super) struct End {
    pub(super) requests: u64,
    pub(super) failures: u64,
    pub(super) latency: Histogram<u64>,
    /// Seconds its upstream was watched in the window (the rate's span).
    pub(super) watched: i64,
    last_active: i64,
    pub(super) history: Option<History>,
}

/// An end's counts over the history kept ([`HISTORY_SECONDS`]).
pub(super) struct History {
    pub(super) requests: u64,
    pub(super) failures: u64,
    /// Requests in each of the last [`TREND_SECONDS`] seconds, oldest
    /// first.
    pub(super) trend: Vec<u64>,
}

/// Where a second stands for what an end counts.
#[derive(Clone, Copy)]
struct At {
    sec: i64,
    in_window: bool,
    /// Its place in the trend, when within it.
    trend: Option<usize>,
}

impl End {
    fn new(watched: i64, history: bool) -> End {
        End {
            requests: 0,
            failures: 0,
            latency: new_latency_histogram(),
            watched,
            last_active: i64::MIN,
            history: history.then(|| History {
                requests: 0,
                failures: 0,
                trend: vec![0; TREND_SECONDS],
            }),
        }
    }

    fn add(&mut self, requests: u64, failures: u64, latency: Option<&str>, at: At) {
        if let Some(history) = &mut self.history {
            history.requests = history.requests.saturating_add(requests);
            history.failures = history.failures.saturating_add(failures);
            if let Some(i) = at.trend {
                history.trend[i] = history.trend[i].saturating_add(requests);
            }
        }
        if !at.in_window {
            return;
        }
        self.requests = self.requests.saturating_add(requests);
        self.failures = self.failures.saturating_add(failures);
        if requests > 0 {
            self.last_active = self.last_active.max(at.sec);
        }
        if let Some(latency) = latency {
            let _ = add_encoded_histogram(latency, &mut self.latency);
        }
    }

    /// Another address's counts of the same caller, added.
    fn merge(&mut self, other: End) {
        self.requests = self.requests.saturating_add(other.requests);
        self.failures = self.failures.saturating_add(other.failures);
        let _ = self.latency.add(&other.latency);
        self.last_active = self.last_active.max(other.last_active);
        self.watched = self.watched.max(other.watched);
        if let (Some(mine), Some(theirs)) = (&mut self.history, other.history) {
            mine.requests = mine.requests.saturating_add(theirs.requests);
            mine.failures = mine.failures.saturating_add(theirs.failures);
            for (a, b) in mine.trend.iter_mut().zip(theirs.trend) {
                *a = a.saturating_add(b);
            }
        }
    }

    fn quantile(&self, q: f64) -> Option<u64> {
        (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(q))
    }
}

/// The callee's end of an edge, and the sidecars that served it.
pub(super) type CalleeEnd = (End, BTreeSet<Arc<str>>);

/// An edge's two ends as counted: whether its caller is a sidecar, the
/// caller's end and the callee's, by (caller, authority).
pub(super) type EdgeEnds<'m> = BTreeMap<(String, &'m str), (bool, Option<End>, Option<CalleeEnd>)>;

/// The answer kept: the question's key and the rows.
pub(super) type EdgesCache = Option<(EdgesQuestion, Rc<Result<Vec<EdgeRow>, FilterNotForEdges>>)>;

#[derive(Clone, Debug, PartialEq)]
pub(super) struct EdgesQuestion {
    window: Window,
    filter: String,
    stats_version: u64,
    now: Option<i64>,
}

impl Model {
    /// Every edge over `window` that `filter` selects (see the module
    /// documentation), unsorted; at most [`MAX_EDGES`].
    pub fn edges(
        &self,
        window: Window,
        filter: &FilterExpr,
    ) -> Rc<Result<Vec<EdgeRow>, FilterNotForEdges>> {
        self.edges_kept(window, filter, true)
    }

    /// The edges, asked again of the same `stats` from the one kept;
    /// without `latency` their percentiles are left out (`None`), which
    /// spares decoding every histogram of the window: what the CALLERS
    /// column, drawn on every frame of the Upstreams view, needs.
    fn edges_kept(
        &self,
        window: Window,
        filter: &FilterExpr,
        latency: bool,
    ) -> Rc<Result<Vec<EdgeRow>, FilterNotForEdges>> {
        let question = EdgesQuestion {
            window,
            filter: filter.as_str().to_owned(),
            stats_version: self.stats_version,
            now: self.now_sec,
        };
        let cache = if latency {
            &self.edges_cache
        } else {
            &self.callers_cache
        };
        if let Some((asked, answer)) = &*cache.borrow()
            && *asked == question
        {
            return answer.clone();
        }
        let answer = Rc::new(if filter.scope() == Scope::Events || filter.names_route() {
            Err(FilterNotForEdges)
        } else {
            Ok(self.compute_edges(window, filter, latency))
        });
        *cache.borrow_mut() = Some((question, answer.clone()));
        answer
    }

    /// The callers of each authority over `window` under `filter`, by name
    /// (or address), sorted; `None` when the filter does not apply to
    /// edges.
    pub fn callers(
        &self,
        window: Window,
        filter: &FilterExpr,
    ) -> Option<HashMap<String, Vec<String>>> {
        let answer = self.edges_kept(window, filter, false);
        let rows = answer.as_ref().as_ref().ok()?;
        let mut callers: HashMap<String, BTreeSet<String>> = HashMap::new();
        for row in rows {
            callers
                .entry(row.authority.clone())
                .or_default()
                .insert(row.caller.clone());
        }
        Some(
            callers
                .into_iter()
                .map(|(authority, names)| (authority, names.into_iter().collect()))
                .collect(),
        )
    }

    fn compute_edges(&self, window: Window, filter: &FilterExpr, latency: bool) -> Vec<EdgeRow> {
        let edges = self.edge_ends(window, filter, latency, false);
        let mut rows: Vec<EdgeRow> = edges
            .into_iter()
            .map(|((caller, authority), (is_sidecar, out, inn))| {
                let counted = out.as_ref().or(inn.as_ref().map(|(end, _)| end));
                let (requests, failures, watched) =
                    counted.map_or((0, 0, 1), |e| (e.requests, e.failures, e.watched));
                let last_active = [out.as_ref(), inn.as_ref().map(|(e, _)| e)]
                    .into_iter()
                    .flatten()
                    .map(|e| e.last_active)
                    .max()
                    .unwrap_or(i64::MIN);
                EdgeRow {
                    caller,
                    caller_is_sidecar: is_sidecar,
                    authority: authority.to_owned(),
                    servers: inn
                        .as_ref()
                        .map(|(_, servers)| servers.iter().map(|s| s.to_string()).collect())
                        .unwrap_or_default(),
                    rps: requests as f64 / watched.max(1) as f64,
                    success: success_rate(requests, failures),
                    failures,
                    caller_p50: out.as_ref().and_then(|e| e.quantile(0.5)),
                    caller_p99: out.as_ref().and_then(|e| e.quantile(0.99)),
                    callee_p50: inn.as_ref().and_then(|(e, _)| e.quantile(0.5)),
                    callee_p99: inn.as_ref().and_then(|(e, _)| e.quantile(0.99)),
                    seen_by_caller: out.is_some(),
                    last_active,
                }
            })
            .collect();
        if rows.len() > MAX_EDGES {
            rows.sort_by_key(|row| std::cmp::Reverse(row.last_active));
            rows.truncate(MAX_EDGES);
        }
        rows
    }

    /// Both ends of every edge over `window` that `filter` selects, with
    /// their latencies when `latency`, and their counts over the history
    /// kept when `history` (see the module documentation).
    pub(super) fn edge_ends(
        &self,
        window: Window,
        filter: &FilterExpr,
        latency: bool,
        history: bool,
    ) -> EdgeEnds<'_> {
        let Some(now) = self.now_sec else {
            return EdgeEnds::new();
        };
        let since = now.saturating_sub(window.seconds());
        let passes = |key: &UpstreamKey, part: &Part| {
            filter.matches(&StatsFacts {
                sidecar: &part.sidecar,
                direction: key.direction,
                authority: &key.authority,
                route: None,
            })
        };
        // Caller sides by (sidecar, authority); callee sides by (client
        // address, authority), with the sidecars that served them. And,
        // whatever the filter, which sidecars called which authority in the
        // window: an ambiguous address is resolved by it.
        let mut outbound: foldhash::HashMap<(Arc<str>, &str), End> = Default::default();
        let mut inbound: foldhash::HashMap<(Arc<str>, &str), CalleeEnd> = Default::default();
        let mut calls: HashSet<(&str, &str)> = HashSet::new();
        for (key, state) in &self.upstreams {
            let watched = self.watched_seconds(state, window, now);
            for second in &state.seconds {
                let age = now - second.sec;
                let kept = if history {
                    (0..HISTORY_SECONDS as i64).contains(&age)
                } else {
                    second.sec > since && second.sec <= now
                };
                if !kept {
                    continue;
                }
                let at = At {
                    sec: second.sec,
                    in_window: second.sec > since && second.sec <= now,
                    trend: usize::try_from(age)
                        .ok()
                        .and_then(|age| (TREND_SECONDS - 1).checked_sub(age)),
                };
                for part in &second.parts {
                    if key.direction == Direction::Outbound && part.requests > 0 && at.in_window {
                        calls.insert((&part.sidecar, &key.authority));
                    }
                    if !passes(key, part) {
                        continue;
                    }
                    match key.direction {
                        Direction::Outbound => outbound
                            .entry((part.sidecar.clone(), key.authority.as_str()))
                            .or_insert_with(|| End::new(watched, history))
                            .add(
                                part.requests,
                                part.failures,
                                part.latency.as_deref().filter(|_| latency),
                                at,
                            ),
                        Direction::Inbound => {
                            for client in &part.clients {
                                let (end, servers) = inbound
                                    .entry((client.client.clone(), key.authority.as_str()))
                                    .or_insert_with(|| {
                                        (End::new(watched, history), BTreeSet::new())
                                    });
                                end.add(
                                    client.requests,
                                    client.failures,
                                    client.latency.as_deref().filter(|_| latency),
                                    at,
                                );
                                servers.insert(part.sidecar.clone());
                            }
                        }
                    }
                }
            }
        }

        let addresses = self.sidecars_by_address();
        let mut edges = EdgeEnds::new();
        for ((sidecar, authority), end) in outbound {
            edges
                .entry((sidecar.to_string(), authority))
                .or_insert((true, None, None))
                .1 = Some(end);
        }
        for ((client, authority), callee) in inbound {
            let (caller, is_sidecar) = match caller_of(&client, authority, &addresses, &calls) {
                Some(name) => (name.to_owned(), true),
                None => (client.to_string(), false),
            };
            let entry = edges
                .entry((caller, authority))
                .or_insert((is_sidecar, None, None));
            match &mut entry.2 {
                // Two addresses of one caller: their counts add up.
                Some((end, servers)) => {
                    end.merge(callee.0);
                    servers.extend(callee.1);
                }
                none => *none = Some(callee),
            }
        }
        edges
    }

    /// Who sent `request`, as far as the attached sidecars tell (the
    /// request inspector's question): for an outbound request, the app
    /// beside its sidecar; for an inbound one, the attached sidecar known
    /// by the client address, or of several the one whose outbound `stats`
    /// named the authority, as for edges.
    pub fn request_caller(&self, request: &RequestEvent) -> RequestCaller<'_> {
        self.caller_resolver().caller(request)
    }

    /// What tells the callers of requests: the attached sidecars by
    /// address, and which of them sent outbound requests to which
    /// authority (the upstreams' sources).
    pub(super) fn caller_resolver(&self) -> CallerResolver<'_> {
        let mut calls: HashSet<(&str, &str)> = HashSet::new();
        for (key, state) in &self.upstreams {
            if key.direction != Direction::Outbound {
                continue;
            }
            for (source, _) in &state.sources {
                if let Some(sidecar) = self.sidecars.get(*source) {
                    calls.insert((sidecar.name(), &key.authority));
                }
            }
        }
        CallerResolver {
            addresses: self.sidecars_by_address(),
            calls,
        }
    }

    /// The attached sidecars' names by the addresses their hellos give.
    fn sidecars_by_address(&self) -> HashMap<IpAddr, Vec<&str>> {
        let mut names: HashMap<IpAddr, Vec<&str>> = HashMap::new();
        for sidecar in &self.sidecars {
            let Some(hello) = &sidecar.hello else {
                continue;
            };
            for address in &hello.addresses {
                if let Ok(ip) = address.parse::<IpAddr>() {
                    let known = names.entry(ip).or_default();
                    if !known.contains(&hello.sidecar.name.as_str()) {
                        known.push(&hello.sidecar.name);
                    }
                }
            }
        }
        names
    }
}

/// Tells who sent requests, for many requests at once
/// ([`Model::caller_resolver`]).
pub(super) struct CallerResolver<'m> {
    addresses: HashMap<IpAddr, Vec<&'m str>>,
    calls: HashSet<(&'m str, &'m str)>,
}

impl<'m> CallerResolver<'m> {
    /// Who sent `request` (see [`Model::request_caller`]).
    pub(super) fn caller(&self, request: &RequestEvent) -> RequestCaller<'m> {
        if request.direction == Direction::Outbound {
            return RequestCaller::App;
        }
        let ip = match request.client.parse::<std::net::SocketAddr>() {
            Ok(addr) => addr.ip(),
            Err(_) => match request.client.parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) => return RequestCaller::Unknown,
            },
        };
        let Some(known) = self.addresses.get(&ip) else {
            return RequestCaller::Unknown;
        };
        match caller_of(
            &ip.to_string(),
            &request.authority,
            &self.addresses,
            &self.calls,
        ) {
            Some(name) => RequestCaller::Sidecar(name),
            None => RequestCaller::OneOf(known.clone()),
        }
    }
}

/// The sidecar that called `authority` from `client`: the one attached
/// sidecar known by that address, or of several the one that sent
/// `authority` outbound requests (`calls`); `None` when it cannot be told.
fn caller_of<'a>(
    client: &str,
    authority: &str,
    addresses: &HashMap<IpAddr, Vec<&'a str>>,
    calls: &HashSet<(&str, &str)>,
) -> Option<&'a str> {
    let ip = client.parse::<IpAddr>().ok()?;
    match addresses.get(&ip)?.as_slice() {
        [only] => Some(only),
        several => {
            let mut calling = several
                .iter()
                .filter(|name| calls.contains(&(**name, authority)));
            match (calling.next(), calling.next()) {
                (Some(name), None) => Some(name),
                _ => None,
            }
        }
    }
}
