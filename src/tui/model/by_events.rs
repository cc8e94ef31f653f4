//! Figures counted from request events, for a filter that names what only
//! single requests have (`status`, `latency`, `failed`, `method`, `path`,
//! `client`, `error`, `grpc`): the sidecars' `stats` count upstreams, their
//! routes and their clients, not these, so under such a filter the rows,
//! the header and the error groups are counted from the events in the tap
//! that pass it (docs/filters.md, "Exact or from events").
//!
//! Such figures are as complete as the event stream, and say so
//! ([`Figures::Events`]): how much of the window the tap still covers (it
//! holds [`TAP_CAPACITY`](super::TAP_CAPACITY) requests; a subscription
//! changed from one filter to another starts afresh), and how many events
//! the sidecars dropped in that time.

use std::collections::HashMap;
use std::rc::Rc;

use hdrhistogram::Histogram;

use super::{
    ErrorKey, ErrorRow, Model, Summary, SummaryPart, UpstreamKey, UpstreamRow, Window,
    distinct_calls, error_key, event_micros, percentiles, success_rate,
};
use crate::filter::FilterExpr;
use crate::telemetry::stats::new_latency_histogram;

/// Where the figures shown under a filter come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figures {
    /// The sidecars' `stats`: exact.
    Stats,
    /// The request events that pass the filter: `covered` seconds of a
    /// window of `window` seconds (less while the session or the tap does
    /// not reach back so far), during which the sidecars dropped `dropped`
    /// events meant for this session.
    Events {
        covered: i64,
        window: i64,
        dropped: u64,
    },
}

impl Figures {
    /// How the figures are labelled: nothing when exact, else
    /// `from events · 0 dropped` (`· 40s of 1m` while the events cover
    /// less than the window).
    pub fn label(&self) -> Option<String> {
        match *self {
            Figures::Stats => None,
            Figures::Events {
                covered,
                window,
                dropped,
            } => {
                let part = if covered < window {
                    format!(" · {} of {}", seconds_label(covered), seconds_label(window))
                } else {
                    String::new()
                };
                Some(format!("from events{part} · {dropped} dropped"))
            }
        }
    }
}

fn seconds_label(seconds: i64) -> String {
    if seconds >= 60 && seconds % 60 == 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// Everything counted from one pass over the tap, for every window.
#[derive(Debug)]
pub(super) struct EventFigures {
    /// What it was counted for: the filter, the events and the clock.
    question: (String, u64, Option<i64>),
    pub rows: [Vec<UpstreamRow>; 3],
    pub summary: [Summary; 3],
    pub figures: [Figures; 3],
    /// Failure groups of every event the tap covers.
    pub errors: Vec<ErrorRow>,
}

/// One upstream's counts in one window.
struct Counts {
    requests: u64,
    failures: u64,
    latency: Histogram<u64>,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            requests: 0,
            failures: 0,
            latency: new_latency_histogram(),
        }
    }
}

impl Model {
    /// Where the figures under `filter` come from, over `window`.
    pub fn figures(&self, window: Window, filter: &FilterExpr) -> Figures {
        if self.scope_of(filter) == crate::filter::Scope::Events {
            self.event_figures(filter).figures[window.index()]
        } else {
            Figures::Stats
        }
    }

    /// The figures of the events that pass `filter`, counted again only
    /// when an event arrived or the clock moved.
    pub(super) fn event_figures(&self, filter: &FilterExpr) -> Rc<EventFigures> {
        let question = (filter.as_str().to_owned(), self.event_counter, self.now_sec);
        if let Some(cached) = &*self.events_cache.borrow()
            && cached.question == question
        {
            return cached.clone();
        }
        let figures = Rc::new(self.count_events(filter, question));
        *self.events_cache.borrow_mut() = Some(figures.clone());
        figures
    }

    fn count_events(
        &self,
        filter: &FilterExpr,
        question: (String, u64, Option<i64>),
    ) -> EventFigures {
        let now = self.now_sec.unwrap_or(0);
        let complete = self.events_complete_since.unwrap_or(now);
        // The first second each window counts: the window's, or the first
        // one the tap holds whole.
        let from = Window::ALL.map(|w| (now - w.seconds() + 1).max(complete));
        let mut windows: [HashMap<UpstreamKey, Counts>; 3] = Default::default();
        let mut totals: HashMap<UpstreamKey, (u64, u64)> = HashMap::new();
        let mut errors: HashMap<ErrorKey, ErrorRow> = HashMap::new();
        for entry in &self.tap {
            let event = &entry.event;
            if entry.sec < complete || !filter.matches_request(&event.sidecar, event) {
                continue;
            }
            let key = UpstreamKey {
                direction: event.direction,
                authority: event.authority.clone(),
            };
            let failed = event.is_failure();
            let total = totals.entry(key.clone()).or_default();
            total.0 = total.0.saturating_add(1);
            total.1 = total.1.saturating_add(u64::from(failed));
            for (w, from) in from.iter().enumerate() {
                if entry.sec >= *from && entry.sec <= now {
                    let counts = windows[w].entry(key.clone()).or_default();
                    counts.requests += 1;
                    counts.failures += u64::from(failed);
                    let _ = counts.latency.record(event_micros(event.duration_ms));
                }
            }
            if failed {
                let error = error_key(key, event);
                errors
                    .entry(error.clone())
                    .or_insert_with(|| ErrorRow::new(error, event, complete))
                    .add(event, entry.sec);
            }
        }
        let covered = from.map(|from| (now - from + 1).max(0));
        let rows = [0, 1, 2].map(|w| {
            totals
                .iter()
                .map(|(key, &(requests, failures))| {
                    let counts = windows[w].get(key);
                    row(key, counts, covered[w], requests, failures)
                })
                .collect::<Vec<_>>()
        });
        let summary = [0, 1, 2].map(|w| {
            let parts: Vec<SummaryPart> = windows[w]
                .iter()
                .map(|(key, counts)| SummaryPart {
                    key,
                    requests: counts.requests,
                    failures: counts.failures,
                    rps: counts.requests as f64 / covered[w].max(1) as f64,
                    latency: &counts.latency,
                })
                .collect();
            distinct_calls(&parts)
        });
        let figures = [0, 1, 2].map(|w| Figures::Events {
            covered: covered[w],
            window: Window::ALL[w].seconds(),
            dropped: self
                .drops
                .iter()
                .filter(|(sec, _)| *sec >= from[w] && *sec <= now)
                .map(|(_, n)| n)
                .sum(),
        });
        EventFigures {
            question,
            rows,
            summary,
            figures,
            errors: errors.into_values().collect(),
        }
    }
}

/// An upstream's row from its events: rates and latency over the covered
/// part of the window, totals over all the tap covers.
fn row(
    key: &UpstreamKey,
    counts: Option<&Counts>,
    covered: i64,
    requests: u64,
    failures: u64,
) -> UpstreamRow {
    let [p50, p90, p99, max] = counts.map_or([None; 4], |c| percentiles(&c.latency));
    let (window_requests, window_failures) = counts.map_or((0, 0), |c| (c.requests, c.failures));
    UpstreamRow {
        key: key.clone(),
        rps: window_requests as f64 / covered.max(1) as f64,
        success: success_rate(window_requests, window_failures),
        p50,
        p90,
        p99,
        max,
        requests,
        failures,
        stale: None,
    }
}

impl Model {
    /// What counting `window` from events covers: its first second the tap
    /// holds whole, and the figures' label ([`Figures::Events`]), as
    /// [`Model::figures`] gives them. For the grouped rows ([`super::grouped`]).
    pub(super) fn events_window(&self, window: Window) -> (i64, Figures) {
        let now = self.now_sec.unwrap_or(0);
        let complete = self.events_complete_since.unwrap_or(now);
        let from = (now - window.seconds() + 1).max(complete);
        let dropped = self
            .drops
            .iter()
            .filter(|(sec, _)| *sec >= from && *sec <= now)
            .map(|(_, n)| n)
            .sum();
        let figures = Figures::Events {
            covered: (now - from + 1).max(0),
            window: window.seconds(),
            dropped,
        };
        (from, figures)
    }
}
