//! Exact figures for a filter that names sidecars or routes (besides
//! authorities and directions): each `stats` message is one sidecar's and
//! carries every upstream's routes, so what passes such a filter is counted
//! from `stats` as whole upstreams are, in windows kept up to date as
//! `stats` arrive and seconds leave (docs/filters.md, "Exact or from
//! events").
//!
//! One filter's windows are kept at a time: built from the history the
//! model holds when the filter is first asked about, then kept up to date
//! until another filter is. They hold at most four histograms for each
//! upstream the model keeps (which has three of its own, bounded by
//! [`UPSTREAM_BYTES`](super::UPSTREAM_BYTES)), so they cost about as much
//! again as the upstreams' windows, no more.

use std::collections::HashMap;

use hdrhistogram::Histogram;

use super::{
    HISTORY_SECONDS, Model, Part, Summary, SummaryPart, UpstreamKey, UpstreamRow, UpstreamState,
    Window, WindowAggregate, distinct_calls,
};
use crate::filter::{FilterExpr, StatsFacts};
use crate::telemetry::stats::{add_encoded_histogram, decode_histogram};

/// The spans kept: the three windows, then the whole history (what the
/// REQUESTS and FAILURES columns count under such a filter).
const SPANS: [i64; 4] = [10, 60, 300, HISTORY_SECONDS as i64];

/// What one filter selects of each upstream, per span.
#[derive(Clone, Debug)]
pub(super) struct Selection {
    filter: FilterExpr,
    upstreams: HashMap<UpstreamKey, [WindowAggregate; 4]>,
}

impl Selection {
    /// Built from every second the model holds.
    fn build(model: &Model, filter: &FilterExpr) -> Selection {
        let mut selection = Selection {
            filter: filter.clone(),
            upstreams: HashMap::new(),
        };
        let now = model.now_sec.unwrap_or(0);
        for (key, state) in &model.upstreams {
            for second in &state.seconds {
                for part in &second.parts {
                    selection.add(key, part, second.sec, now);
                }
            }
        }
        selection
    }

    /// Counts what passes of a part of second `sec` (the clock at `now`) in
    /// every span that holds it.
    pub(super) fn add(&mut self, key: &UpstreamKey, part: &Part, sec: i64, now: i64) {
        let age = now.saturating_sub(sec);
        if age >= HISTORY_SECONDS as i64 {
            return;
        }
        let Some((requests, failures, latency)) = passing(&self.filter, key, part) else {
            return;
        };
        let spans = self.upstreams.entry(key.clone()).or_default();
        for (span, aggregate) in SPANS.iter().zip(spans.iter_mut()) {
            if age < *span {
                aggregate.add(requests, failures, Some(&latency));
            }
        }
    }

    /// The clock moved from `previous` to `now`: what passed of the seconds
    /// that left a span leaves it. Called before the upstreams forget the
    /// seconds past the history.
    pub(super) fn expire(
        &mut self,
        upstreams: &hashlink::LinkedHashMap<UpstreamKey, UpstreamState>,
        previous: i64,
        now: i64,
    ) {
        let filter = &self.filter;
        self.upstreams.retain(|key, spans| {
            let Some(state) = upstreams.get(key) else {
                // Evicted from the model: gone from here too.
                return false;
            };
            for (span, aggregate) in SPANS.iter().zip(spans.iter_mut()) {
                let (after, up_to) = (previous.saturating_sub(*span), now.saturating_sub(*span));
                for second in state
                    .seconds
                    .iter()
                    .filter(|s| s.sec > after && s.sec <= up_to)
                {
                    for part in &second.parts {
                        if let Some((requests, failures, latency)) = passing(filter, key, part) {
                            aggregate.subtract(requests, failures, Some(&latency));
                        }
                    }
                }
                aggregate.clear_if_empty();
            }
            spans[3].requests > 0
        });
    }
}

/// What of one sidecar's part passes the filter: the routes that pass when
/// it names the route, else the whole part when it passes.
fn passing(
    filter: &FilterExpr,
    key: &UpstreamKey,
    part: &Part,
) -> Option<(u64, u64, Histogram<u64>)> {
    let facts = |route| StatsFacts {
        sidecar: &part.sidecar,
        direction: key.direction,
        authority: &key.authority,
        route,
    };
    let mut latency = crate::telemetry::stats::new_latency_histogram();
    if !filter.names_route() {
        if !filter.matches(&facts(None)) {
            return None;
        }
        if let Some(decoded) = part
            .latency
            .as_deref()
            .and_then(|l| decode_histogram(l).ok())
        {
            latency = decoded;
        }
        return Some((part.requests, part.failures, latency));
    }
    let (mut requests, mut failures, mut any) = (0u64, 0u64, false);
    for route in part
        .routes
        .iter()
        .filter(|r| filter.matches(&facts(Some(&r.route))))
    {
        any = true;
        requests = requests.saturating_add(route.requests);
        failures = failures.saturating_add(route.failures);
        let _ = add_encoded_histogram(&route.latency, &mut latency);
    }
    any.then_some((requests, failures, latency))
}

impl Model {
    /// Runs `f` on the windows of `filter`, built first if another
    /// filter's (or none) are kept.
    fn with_selection<T>(&self, filter: &FilterExpr, f: impl FnOnce(&Selection) -> T) -> T {
        let mut kept = self.selection.borrow_mut();
        if kept.as_ref().is_none_or(|s| s.filter != *filter) {
            *kept = Some(Selection::build(self, filter));
        }
        let selection = kept.as_ref().expect("built above");
        f(selection)
    }

    /// Rows of what `filter` selects, over `window`.
    pub(super) fn selected_rows(&self, window: Window, filter: &FilterExpr) -> Vec<UpstreamRow> {
        let now = self.now_sec.unwrap_or(0);
        self.with_selection(filter, |selection| {
            selection
                .upstreams
                .iter()
                .filter_map(|(key, spans)| {
                    let state = self.upstreams.get(key)?;
                    Some(spans[window.index()].row(
                        key,
                        self.watched_seconds(state, window, now),
                        (spans[3].requests, spans[3].failures),
                        self.stale_for(state, now),
                    ))
                })
                .collect()
        })
    }

    /// The header's figures of what `filter` selects, over `window`.
    pub(super) fn selected_summary(&self, window: Window, filter: &FilterExpr) -> Summary {
        let now = self.now_sec.unwrap_or(0);
        self.with_selection(filter, |selection| {
            let parts: Vec<SummaryPart> = selection
                .upstreams
                .iter()
                .filter_map(|(key, spans)| {
                    let state = self.upstreams.get(key)?;
                    if self.stale_for(state, now).is_some() {
                        return None;
                    }
                    Some(
                        spans[window.index()]
                            .summary_part(key, self.watched_seconds(state, window, now)),
                    )
                })
                .collect();
            distinct_calls(&parts)
        })
    }
}
