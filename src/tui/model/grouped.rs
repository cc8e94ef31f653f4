//! The Upstreams table's rows grouped another way than by upstream (`b`,
//! `--group-by`): by route of each upstream, by sidecar, by caller, or by
//! HTTP status class, each figure saying where it comes from.
//!
//! - route and sidecar: exact, from each sidecar's share of each second
//!   ([`Part`]) and its routes, as a filter on sidecars or routes is
//!   counted ([`super::selected`]);
//! - caller: exact, from both ends of each edge ([`Model::edge_ends`]),
//!   each call counted once as the Edges view counts it: at the caller's
//!   end when its sidecar is attached, else at the callee's; under a
//!   filter on routes or request fields, from the events that pass, an
//!   inbound request left out when its caller's outbound one passes too;
//! - status class: requests and rates exact from the status classes of
//!   `stats`; success, latency and failures only from request events, and
//!   labelled so ([`Grouped::label`]); under a filter on routes (whose
//!   `stats` carry no status classes) all from events;
//! - under a filter that only events answer (`status>=500`, `failed`, …),
//!   or routes without route `stats`, every figure is counted from the
//!   events that pass it, as the upstream rows are ([`super::by_events`]).
//!
//! Requests without an HTTP status (connection errors, raw TCP) are the
//! status class `none`, so the classes add up to the upstreams' requests.
//! REQUESTS and FAILURES count the history the model keeps
//! ([`HISTORY_SECONDS`]) from `stats`, or what the tap covers from events.
//!
//! The last result is kept for as long as the same question is asked of
//! the same stats and events: one row per group, so at most the upstreams
//! kept times their routes kept ([`super::ROUTES_PER_UPSTREAM`] + 1).

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use hdrhistogram::Histogram;

use super::edges::{CallerResolver, RequestCaller};
use super::{
    Figures, HISTORY_SECONDS, Model, Part, SortColumn, UpstreamKey, Window, event_micros,
    percentiles, route_of, success_rate,
};
use crate::filter::{FilterExpr, Scope, StatsFacts};
use crate::schema::{RequestEvent, StatusClasses};
use crate::telemetry::Direction;
use crate::telemetry::stats::{add_encoded_histogram, new_latency_histogram};

/// Seconds of each row's trend (the TREND column), the newest last.
pub const TREND_SECONDS: usize = 60;

/// How the Upstreams table groups its rows (`b` cycles them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GroupBy {
    /// One row per upstream (direction, authority): the model's upstream
    /// rows, not computed here.
    #[default]
    Authority,
    /// One row per route of each upstream.
    Route,
    /// One row per sidecar, over every upstream it reports.
    Sidecar,
    /// One row per caller, over every authority it calls, each call
    /// counted once as an edge is (see [`EdgeRow`](super::EdgeRow)).
    Caller,
    /// One row per HTTP status class, over every upstream.
    Status,
}

impl GroupBy {
    pub const ALL: [GroupBy; 5] = [
        GroupBy::Authority,
        GroupBy::Route,
        GroupBy::Sidecar,
        GroupBy::Caller,
        GroupBy::Status,
    ];

    /// The next grouping (`b`: authority → route → sidecar → caller →
    /// status).
    pub fn next(self) -> GroupBy {
        let i = GroupBy::ALL.iter().position(|g| *g == self).unwrap_or(0);
        GroupBy::ALL[(i + 1) % GroupBy::ALL.len()]
    }

    /// As titles say it: `upstreams by sidecar`.
    pub fn label(self) -> &'static str {
        match self {
            GroupBy::Authority => "authority",
            GroupBy::Route => "route",
            GroupBy::Sidecar => "sidecar",
            GroupBy::Caller => "caller",
            GroupBy::Status => "status class",
        }
    }
}

/// An HTTP status class; `None`: no status (the request failed before a
/// response, or was not HTTP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatusClass {
    Informational,
    Success,
    Redirection,
    ClientError,
    ServerError,
    None,
}

impl StatusClass {
    pub const ALL: [StatusClass; 6] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirection,
        StatusClass::ClientError,
        StatusClass::ServerError,
        StatusClass::None,
    ];

    /// The class of a response status, as [`StatusClasses::add`] counts it.
    pub fn of(status: Option<u16>) -> StatusClass {
        match status.map(|s| s / 100) {
            Some(1) => StatusClass::Informational,
            Some(2) => StatusClass::Success,
            Some(3) => StatusClass::Redirection,
            Some(4) => StatusClass::ClientError,
            Some(5) => StatusClass::ServerError,
            _ => StatusClass::None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirection => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::None => "none",
        }
    }

    /// The filter terms that select this class; `None` for requests
    /// without a status, which no filter term names.
    pub fn filter_terms(self) -> Option<&'static str> {
        match self {
            StatusClass::Informational => Some("status>=100 status<200"),
            StatusClass::Success => Some("status>=200 status<300"),
            StatusClass::Redirection => Some("status>=300 status<400"),
            StatusClass::ClientError => Some("status>=400 status<500"),
            StatusClass::ServerError => Some("status>=500 status<600"),
            StatusClass::None => None,
        }
    }

    /// Requests per class of `requests` counted as `classes`; those in no
    /// class are `None`'s.
    fn split(classes: &StatusClasses, requests: u64) -> [(StatusClass, u64); 6] {
        let counted = [
            classes.c1xx,
            classes.c2xx,
            classes.c3xx,
            classes.c4xx,
            classes.c5xx,
        ];
        let sum = counted.iter().fold(0u64, |a, n| a.saturating_add(*n));
        let mut split = [(StatusClass::None, 0); 6];
        for (i, class) in StatusClass::ALL.into_iter().enumerate() {
            let n = counted
                .get(i)
                .copied()
                .unwrap_or(requests.saturating_sub(sum));
            split[i] = (class, n);
        }
        split
    }
}

/// What a grouped row stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    Route {
        upstream: UpstreamKey,
        route: String,
    },
    Sidecar(String),
    /// A calling sidecar's name (`sidecar`), or the client address when no
    /// attached sidecar is known by it.
    Caller {
        name: String,
        sidecar: bool,
    },
    Status(StatusClass),
}

/// A row of the grouped table: the figures of an upstream row, for a group.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupRow {
    pub key: GroupKey,
    /// Requests per second over the window: the sum, over the upstreams
    /// the group has requests in, of its requests there over the seconds
    /// that upstream's figures cover, so groups add up to their upstreams.
    pub rps: f64,
    pub success: Option<f64>,
    /// Latency percentiles and maximum over the window, microseconds.
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
    /// Over the history kept (from `stats`) or what the tap covers (from
    /// events): see the module documentation.
    pub requests: u64,
    pub failures: u64,
    /// Requests in each of the last [`TREND_SECONDS`] seconds, oldest first.
    pub trend: Vec<u64>,
}

/// Where a grouping's figures come from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GroupSource {
    /// Every figure from `stats`: exact.
    Stats,
    /// Every figure from request events.
    Events(Figures),
    /// Requests, rates and trends from `stats`; success, latency and
    /// failures from events.
    CountsFromStats(Figures),
}

/// The rows of one grouping, unsorted, and where their figures come from.
#[derive(Clone, Debug, PartialEq)]
pub struct Grouped {
    pub by: GroupBy,
    pub rows: Vec<GroupRow>,
    pub source: GroupSource,
}

impl Grouped {
    /// How the figures are labelled: nothing when exact, else what comes
    /// from events (`success, latency, failures from events · 0 dropped`).
    pub fn label(&self) -> Option<String> {
        match self.source {
            GroupSource::Stats => None,
            GroupSource::Events(figures) => figures.label(),
            GroupSource::CountsFromStats(figures) => figures
                .label()
                .map(|label| format!("success, latency, failures {label}")),
        }
    }
}

/// The last grouping asked for, and the question it answers.
#[derive(Clone, Debug)]
pub(super) struct Cached {
    question: (GroupBy, Window, String, u64, u64, Option<i64>),
    grouped: Rc<Grouped>,
}

/// One group's running figures.
struct Acc {
    window_requests: u64,
    window_failures: u64,
    latency: Option<Histogram<u64>>,
    rps: f64,
    requests: u64,
    failures: u64,
    trend: Vec<u64>,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            window_requests: 0,
            window_failures: 0,
            latency: None,
            rps: 0.0,
            requests: 0,
            failures: 0,
            trend: vec![0; TREND_SECONDS],
        }
    }

    fn add_latency(&mut self, latency: &Histogram<u64>) {
        let _ = self
            .latency
            .get_or_insert_with(new_latency_histogram)
            .add(latency);
    }

    fn row(self, key: GroupKey) -> GroupRow {
        let [p50, p90, p99, max] = self.latency.as_ref().map_or([None; 4], percentiles);
        GroupRow {
            key,
            rps: self.rps,
            success: success_rate(self.window_requests, self.window_failures),
            p50,
            p90,
            p99,
            max,
            requests: self.requests,
            failures: self.failures,
            trend: self.trend,
        }
    }
}

/// One group's share of one sidecar's part of a second.
struct Share<'a> {
    key: ShareKey<'a>,
    requests: u64,
    failures: u64,
    latency: Vec<&'a str>,
}

/// A group as the model's own names spell it, until its row is made.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum ShareKey<'a> {
    Route(&'a UpstreamKey, &'a str),
    Sidecar(&'a str),
    Status(StatusClass),
}

impl ShareKey<'_> {
    fn owned(self) -> GroupKey {
        match self {
            ShareKey::Route(upstream, route) => GroupKey::Route {
                upstream: upstream.clone(),
                route: route.to_owned(),
            },
            ShareKey::Sidecar(name) => GroupKey::Sidecar(name.to_owned()),
            ShareKey::Status(class) => GroupKey::Status(class),
        }
    }
}

/// What of `part` (of upstream `key`) passes `filter`, by group: a route's
/// share per route, the sidecar's whole share, or a share per status class
/// (without failures or latency: `stats` do not split them by class).
fn shares<'a>(
    by: GroupBy,
    key: &'a UpstreamKey,
    part: &'a Part,
    filter: &FilterExpr,
) -> Vec<Share<'a>> {
    let facts = |route| StatsFacts {
        sidecar: &part.sidecar,
        direction: key.direction,
        authority: &key.authority,
        route,
    };
    let routes = || {
        part.routes
            .iter()
            .filter(move |r| filter.matches(&facts(Some(&r.route))))
    };
    match by {
        // Callers come from both ends of each edge ([`Model::edge_ends`]).
        GroupBy::Authority => Vec::new(),
        GroupBy::Route => routes()
            .map(|r| Share {
                key: ShareKey::Route(key, &r.route),
                requests: r.requests,
                failures: r.failures,
                latency: vec![&*r.latency],
            })
            .collect(),
        GroupBy::Sidecar if filter.names_route() => {
            let mut share = Share {
                key: ShareKey::Sidecar(&part.sidecar),
                requests: 0,
                failures: 0,
                latency: Vec::new(),
            };
            for route in routes() {
                share.requests = share.requests.saturating_add(route.requests);
                share.failures = share.failures.saturating_add(route.failures);
                share.latency.push(&route.latency);
            }
            if share.latency.is_empty() {
                Vec::new()
            } else {
                vec![share]
            }
        }
        GroupBy::Sidecar if filter.matches(&facts(None)) => vec![Share {
            key: ShareKey::Sidecar(&part.sidecar),
            requests: part.requests,
            failures: part.failures,
            latency: part.latency.as_deref().into_iter().collect(),
        }],
        GroupBy::Status if filter.matches(&facts(None)) => {
            StatusClass::split(&part.status, part.requests)
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(class, n)| Share {
                    key: ShareKey::Status(class),
                    requests: n,
                    failures: 0,
                    latency: Vec::new(),
                })
                .collect()
        }
        GroupBy::Sidecar | GroupBy::Caller | GroupBy::Status => Vec::new(),
    }
}

/// What tells the caller of a request event, and whether it is counted:
/// an inbound request is one of a call already counted at its caller's
/// end when that caller's outbound requests to the same authority pass
/// too.
struct EventCallers<'m> {
    resolver: CallerResolver<'m>,
    /// (sidecar, authority) of the outbound requests that pass.
    counted: HashSet<(&'m str, &'m str)>,
}

/// The group of a request event; `None` when it is not counted.
fn group_of(by: GroupBy, event: &RequestEvent, callers: Option<&EventCallers>) -> Option<GroupKey> {
    match by {
        GroupBy::Authority => None,
        GroupBy::Route => Some(GroupKey::Route {
            upstream: UpstreamKey {
                direction: event.direction,
                authority: event.authority.clone(),
            },
            route: route_of(event),
        }),
        GroupBy::Sidecar => Some(GroupKey::Sidecar(event.sidecar.clone())),
        GroupBy::Caller => {
            let callers = callers?;
            match callers.resolver.caller(event) {
                RequestCaller::App => Some(GroupKey::Caller {
                    name: event.sidecar.clone(),
                    sidecar: true,
                }),
                RequestCaller::Sidecar(name)
                    if callers.counted.contains(&(name, event.authority.as_str())) =>
                {
                    None
                }
                RequestCaller::Sidecar(name) => Some(GroupKey::Caller {
                    name: name.to_owned(),
                    sidecar: true,
                }),
                RequestCaller::OneOf(_) | RequestCaller::Unknown => {
                    let ip = event
                        .client
                        .parse::<std::net::SocketAddr>()
                        .map_or_else(|_| event.client.clone(), |addr| addr.ip().to_string());
                    Some(GroupKey::Caller {
                        name: ip,
                        sidecar: false,
                    })
                }
            }
        }
        GroupBy::Status => Some(GroupKey::Status(StatusClass::of(event.status))),
    }
}

impl Model {
    /// The rows grouped `by` over `window` that pass `filter`, from where
    /// the module documentation says; `None` for [`GroupBy::Authority`],
    /// whose rows are [`Model::upstream_rows`].
    pub fn grouped(&self, by: GroupBy, window: Window, filter: &FilterExpr) -> Option<Rc<Grouped>> {
        if by == GroupBy::Authority {
            return None;
        }
        let question = (
            by,
            window,
            filter.as_str().to_owned(),
            self.stats_version,
            self.event_counter,
            self.now_sec,
        );
        if let Some(cached) = &*self.groups_cache.borrow()
            && cached.question == question
        {
            return Some(cached.grouped.clone());
        }
        let grouped = Rc::new(self.count_groups(by, window, filter));
        *self.groups_cache.borrow_mut() = Some(Cached {
            question,
            grouped: grouped.clone(),
        });
        Some(grouped)
    }

    fn count_groups(&self, by: GroupBy, window: Window, filter: &FilterExpr) -> Grouped {
        let from_events = self.scope_of(filter) == Scope::Events
            || (by == GroupBy::Route && !self.has_route_stats)
            || (matches!(by, GroupBy::Status | GroupBy::Caller) && filter.names_route());
        let (rows, source) = if from_events {
            let (groups, figures) = self.groups_from_events(by, window, filter);
            let rows = groups.into_iter().map(|(k, acc)| acc.row(k)).collect();
            (rows, GroupSource::Events(figures))
        } else if by == GroupBy::Status {
            let counts = self.groups_from_stats(by, window, filter);
            let (mut events, figures) = self.groups_from_events(by, window, filter);
            let rows = counts
                .into_iter()
                .map(|(key, acc)| {
                    let mut row = events.remove(&key).unwrap_or_else(Acc::new).row(key);
                    row.rps = acc.rps;
                    row.requests = acc.requests;
                    row.trend = acc.trend;
                    row
                })
                .collect();
            (rows, GroupSource::CountsFromStats(figures))
        } else {
            let groups = if by == GroupBy::Caller {
                self.callers_from_stats(window, filter)
            } else {
                self.groups_from_stats(by, window, filter)
            };
            let rows = groups.into_iter().map(|(k, acc)| acc.row(k)).collect();
            (rows, GroupSource::Stats)
        };
        Grouped { by, rows, source }
    }

    /// Every group's figures from the parts of the seconds kept.
    fn groups_from_stats(
        &self,
        by: GroupBy,
        window: Window,
        filter: &FilterExpr,
    ) -> HashMap<GroupKey, Acc> {
        let now = self.now_sec.unwrap_or(0);
        let since = now - window.seconds();
        // foldhash: hashing the keys with SipHash was a tenth of the work.
        let mut groups: foldhash::HashMap<ShareKey, Acc> = foldhash::HashMap::default();
        for (key, state) in &self.upstreams {
            if !filter.matches_upstream(key.direction, &key.authority) {
                continue;
            }
            let watched = self.watched_seconds(state, window, now) as f64;
            for second in &state.seconds {
                let age = now - second.sec;
                if !(0..HISTORY_SECONDS as i64).contains(&age) {
                    continue;
                }
                let in_window = second.sec > since;
                let trend_at = usize::try_from(age)
                    .ok()
                    .and_then(|age| (TREND_SECONDS - 1).checked_sub(age));
                for part in &second.parts {
                    for share in shares(by, key, part, filter) {
                        let acc = groups.entry(share.key).or_insert_with(Acc::new);
                        acc.requests = acc.requests.saturating_add(share.requests);
                        acc.failures = acc.failures.saturating_add(share.failures);
                        if let Some(at) = trend_at {
                            acc.trend[at] = acc.trend[at].saturating_add(share.requests);
                        }
                        if !in_window {
                            continue;
                        }
                        acc.window_requests = acc.window_requests.saturating_add(share.requests);
                        acc.window_failures = acc.window_failures.saturating_add(share.failures);
                        acc.rps += share.requests as f64 / watched;
                        for encoded in share.latency {
                            let latency = acc.latency.get_or_insert_with(new_latency_histogram);
                            let _ = add_encoded_histogram(encoded, latency);
                        }
                    }
                }
            }
        }
        groups
            .into_iter()
            .map(|(key, acc)| (key.owned(), acc))
            .collect()
    }

    /// Every caller's figures from the ends of its edges: each edge
    /// counted at the caller's end when it is seen, else at the callee's,
    /// as the Edges view counts it.
    fn callers_from_stats(&self, window: Window, filter: &FilterExpr) -> HashMap<GroupKey, Acc> {
        let mut groups: HashMap<GroupKey, Acc> = HashMap::new();
        for ((name, _), (sidecar, out, inn)) in self.edge_ends(window, filter, true, true) {
            let Some(end) = out.or(inn.map(|(end, _)| end)) else {
                continue;
            };
            let key = GroupKey::Caller { name, sidecar };
            let acc = groups.entry(key).or_insert_with(Acc::new);
            acc.window_requests = acc.window_requests.saturating_add(end.requests);
            acc.window_failures = acc.window_failures.saturating_add(end.failures);
            acc.rps += end.requests as f64 / end.watched.max(1) as f64;
            if !end.latency.is_empty() {
                acc.add_latency(&end.latency);
            }
            if let Some(history) = end.history {
                acc.requests = acc.requests.saturating_add(history.requests);
                acc.failures = acc.failures.saturating_add(history.failures);
                for (a, b) in acc.trend.iter_mut().zip(history.trend) {
                    *a = a.saturating_add(b);
                }
            }
        }
        groups
    }

    /// Every group's figures from the events in the tap that pass
    /// `filter`, and how they are labelled.
    fn groups_from_events(
        &self,
        by: GroupBy,
        window: Window,
        filter: &FilterExpr,
    ) -> (HashMap<GroupKey, Acc>, Figures) {
        let now = self.now_sec.unwrap_or(0);
        let complete = self.events_complete_since.unwrap_or(now);
        let (from, figures) = self.events_window(window);
        let covered = match figures {
            Figures::Events { covered, .. } => covered.max(1),
            Figures::Stats => 1,
        };
        let passing = || {
            self.tap.iter().filter(move |entry| {
                entry.sec >= complete
                    && entry.sec <= now
                    && filter.matches_request(&entry.event.sidecar, &entry.event)
            })
        };
        let callers = (by == GroupBy::Caller).then(|| EventCallers {
            resolver: self.caller_resolver(),
            counted: passing()
                .map(|entry| &entry.event)
                .filter(|event| event.direction == Direction::Outbound)
                .map(|event| (event.sidecar.as_str(), event.authority.as_str()))
                .collect(),
        });
        let mut groups: HashMap<GroupKey, Acc> = HashMap::new();
        for entry in passing() {
            let event = &entry.event;
            let Some(key) = group_of(by, event, callers.as_ref()) else {
                continue;
            };
            let failed = event.is_failure();
            let acc = groups.entry(key).or_insert_with(Acc::new);
            acc.requests = acc.requests.saturating_add(1);
            acc.failures = acc.failures.saturating_add(u64::from(failed));
            let age = now - entry.sec;
            if let Some(at) = usize::try_from(age)
                .ok()
                .and_then(|age| (TREND_SECONDS - 1).checked_sub(age))
            {
                acc.trend[at] = acc.trend[at].saturating_add(1);
            }
            if entry.sec >= from {
                acc.window_requests += 1;
                acc.window_failures += u64::from(failed);
                acc.rps += 1.0 / covered as f64;
                let _ = acc
                    .latency
                    .get_or_insert_with(new_latency_histogram)
                    .record(event_micros(event.duration_ms));
            }
        }
        (groups, figures)
    }
}

/// Grouped rows sorted for display as [`super::sort_rows`] sorts upstream
/// rows; DIRECTION and AUTHORITY sort by the group.
pub fn sort_groups(rows: &mut [GroupRow], column: SortColumn, reverse: bool) {
    rows.sort_by(|a, b| {
        let order = match column {
            SortColumn::Authority | SortColumn::Direction => a.key.cmp(&b.key),
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
