//! View 2, Detail: one upstream in depth — its latency histogram with the
//! percentiles marked, requests and failures per second over the last
//! minutes, its routes and its failures.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Bar, BarChart, BarGroup, Block, Borders, Chart, Dataset, GraphType, Paragraph, Widget,
    Wrap,
};

use super::errors::error_grid;
use super::grid::{ALWAYS, Column, Grid, GridRow};
use super::{WIDE, compact_count, success_style};
use crate::tui::format::{format_latency, format_rps, format_success};
use crate::tui::input::UiState;
use crate::tui::model::{LatencyBucket, Model, RouteFigures, UpstreamKey, UpstreamRow};

/// Seconds of history in the rate chart ("the last minutes").
const RATE_CHART_SECONDS: usize = 300;
/// Columns of one histogram bar; bars are merged pairwise while they do
/// not fit, which keeps the whole range in view.
const BAR_WIDTH: u16 = 4;

pub struct DetailView<'a> {
    pub model: &'a Model,
    pub ui: &'a UiState,
}

impl Widget for &DetailView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (model, ui) = (self.model, self.ui);
        let Some(key) = &ui.detail else {
            Paragraph::new("no upstream selected: choose one in Upstreams (1) and press enter")
                .wrap(Wrap { trim: true })
                .render(area, buf);
            return;
        };
        let [title, rest] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        detail_title(key, model.upstream_row(key, ui.window).as_ref()).render(title, buf);

        // Wide: charts side by side over tables side by side. Narrow: all
        // four stacked, the charts kept short.
        let (hist, rates, routes, errors) = if area.width >= WIDE {
            let [top, bottom] = Layout::vertical([Constraint::Fill(1); 2]).areas(rest);
            let halves = Layout::horizontal([Constraint::Fill(1); 2]).spacing(2);
            let [hist, rates] = halves.areas(top);
            let [routes, errors] = halves.areas(bottom);
            (hist, rates, routes, errors)
        } else {
            let chart = (rest.height / 4).max(5);
            let [hist, rates, routes, errors] = Layout::vertical([
                Constraint::Length(chart + 1),
                Constraint::Length(chart),
                Constraint::Fill(1),
                Constraint::Fill(1),
            ])
            .areas(rest);
            (hist, rates, routes, errors)
        };

        let (buckets, quantiles) = model.latency_buckets(key, ui.window);
        LatencyHistogram {
            buckets: &buckets,
            quantiles,
            max: model.upstream_row(key, ui.window).and_then(|row| row.max),
            window: ui.window.label(),
        }
        .render(hist, buf);
        RateChart {
            history: &model.rate_history(key, RATE_CHART_SECONDS),
        }
        .render(rates, buf);

        // Routes over the same window as the latency next to them, and
        // which window that is.
        let figures = model.route_figures(key, ui.window);
        let title = match &figures {
            RouteFigures::Exact(rows) => {
                format!(" routes ({}), last {} ", rows.len(), ui.window.label())
            }
            RouteFigures::FromEvents(rows) => {
                format!(
                    " routes ({}), from request events since attach ",
                    rows.len()
                )
            }
        };
        let inner = section(title, routes, buf);
        route_grid(&figures, ui.selected.route).render(inner, buf);

        let error_rows = model.errors(&ui.filter, Some(key));
        let inner = section(format!(" failures ({}) ", error_rows.len()), errors, buf);
        let now = model.now_sec().unwrap_or(0);
        error_grid(&error_rows, false, inner.width, ui.window, now).render(inner, buf);
    }
}

/// Draws a section rule with its title; returns the area under it.
fn section<'a>(title: impl Into<Line<'a>>, area: Rect, buf: &mut Buffer) -> Rect {
    let block = Block::new().borders(Borders::TOP).title(title);
    let inner = block.inner(area);
    block.render(area, buf);
    inner
}

/// The upstream, its rate and success rate over the window, and its totals
/// (the latencies are in the histogram's title).
fn detail_title<'a>(key: &'a UpstreamKey, row: Option<&UpstreamRow>) -> Line<'a> {
    let mut spans = vec![
        Span::raw(" "),
        Span::raw(key.direction.as_str()).bold(),
        Span::raw(" "),
        Span::raw(key.authority.as_str()).bold(),
    ];
    match row {
        Some(row) => spans.extend([
            Span::raw(format!("  {} rps  ", format_rps(row.rps))),
            Span::styled(
                format!("{} ok", format_success(row.success)),
                success_style(row.success),
            ),
            Span::raw(format!(
                "  {} requests, {} failed since attach",
                row.requests, row.failures
            )),
        ]),
        None => spans.push(Span::raw("  (no stats yet)").dim()),
    }
    Line::from(spans)
}

/// The window's latency distribution over ×2 buckets; the buckets holding
/// p50, p90 and p99 are green, yellow and red, and the title says their
/// values and the maximum.
struct LatencyHistogram<'a> {
    buckets: &'a [LatencyBucket],
    quantiles: [Option<u64>; 3],
    max: Option<u64>,
    window: &'a str,
}

impl Widget for LatencyHistogram<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let [p50, p90, p99] = self.quantiles;
        let title = Line::from(vec![
            Span::raw(format!(" latency ({}): ", self.window)),
            Span::raw(format!("p50 {}", format_latency(p50))).green(),
            Span::raw("  "),
            Span::raw(format!("p90 {}", format_latency(p90))).yellow(),
            Span::raw("  "),
            Span::raw(format!("p99 {}", format_latency(p99))).red(),
            Span::raw(format!("  max {} ", format_latency(self.max))),
        ]);
        let inner = section(title, area, buf);
        if inner.is_empty() {
            return;
        }
        let buckets = fit_buckets(self.buckets, usize::from(inner.width));
        if buckets.is_empty() {
            Line::from(" no requests in this window")
                .dim()
                .render(inner, buf);
            return;
        }
        let bars: Vec<Bar> = buckets
            .iter()
            .map(|&(low, high, count)| {
                let holds = |q: Option<u64>| q.is_some_and(|q| q > low && q <= high);
                let style = if holds(p99) {
                    Style::new().red()
                } else if holds(p90) {
                    Style::new().yellow()
                } else if holds(p50) {
                    Style::new().green()
                } else {
                    Style::new().cyan()
                };
                Bar::default()
                    .value(count)
                    .text_value(compact_count(count))
                    .label(Line::from(bucket_label(high)).style(style))
                    .style(style)
                    .value_style(style.reversed())
            })
            .collect();
        BarChart::default()
            .data(BarGroup::default().bars(&bars))
            .bar_width(BAR_WIDTH.min(inner.width))
            .bar_gap(1)
            .render(inner, buf);
    }
}

/// `(lower, upper, count)` of the buckets from the first to the last that
/// has requests (the empty ones outside say nothing), pairs merged until
/// they fit in `width` columns.
fn fit_buckets(buckets: &[LatencyBucket], width: usize) -> Vec<(u64, u64, u64)> {
    let first = buckets.iter().position(|b| b.count > 0);
    let last = buckets.iter().rposition(|b| b.count > 0);
    let (Some(first), Some(last)) = (first, last) else {
        return Vec::new();
    };
    let mut lower = first
        .checked_sub(1)
        .map_or(0, |previous| buckets[previous].upper_us);
    let mut fitted: Vec<(u64, u64, u64)> = Vec::new();
    for bucket in &buckets[first..=last] {
        fitted.push((lower, bucket.upper_us, bucket.count));
        lower = bucket.upper_us;
    }
    let per_bar = usize::from(BAR_WIDTH) + 1;
    while fitted.len() > 1 && fitted.len() * per_bar > width + 1 {
        fitted = fitted
            .chunks(2)
            .map(|pair| {
                let (low, _, _) = pair[0];
                let (_, high, _) = pair[pair.len() - 1];
                (low, high, pair.iter().map(|(_, _, count)| count).sum())
            })
            .collect();
    }
    fitted
}

/// A bucket's upper bound in at most four columns: `400µ`, `1.6m`, `13m`,
/// `1.6s`, `26s`.
fn bucket_label(micros: u64) -> String {
    match micros {
        0..1_000 => format!("{micros}µ"),
        1_000..10_000 => format!("{:.1}m", micros as f64 / 1e3),
        10_000..1_000_000 => format!("{}m", (micros + 500) / 1_000),
        1_000_000..10_000_000 => format!("{:.1}s", micros as f64 / 1e6),
        _ => format!("{}s", (micros + 500_000) / 1_000_000),
    }
}

/// Requests and failures per second over the last minutes, one line each.
struct RateChart<'a> {
    history: &'a [(u64, u64)],
}

impl Widget for RateChart<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let minutes = RATE_CHART_SECONDS / 60;
        let title = Line::from(vec![
            Span::raw(" requests/s").cyan(),
            Span::raw(" and "),
            Span::raw("failures/s").red(),
            Span::raw(format!(", last {minutes}m ")),
        ]);
        let inner = section(title, area, buf);
        // Axes and labels need room; in less the chart is only noise.
        if inner.width < 16 || inner.height < 3 {
            return;
        }
        let span = self.history.len().saturating_sub(1) as f64;
        let points = |pick: fn(&(u64, u64)) -> u64| -> Vec<(f64, f64)> {
            let points = self.history.iter().enumerate();
            points
                .map(|(i, entry)| (i as f64 - span, pick(entry) as f64))
                .collect()
        };
        let requests = points(|(requests, _)| *requests);
        let failures = points(|(_, failures)| *failures);
        let peak = self
            .history
            .iter()
            .map(|(requests, failures)| (*requests).max(*failures))
            .max()
            .unwrap_or(0)
            .max(1);
        let line = |data| {
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .data(data)
        };
        Chart::new(vec![line(&requests).cyan(), line(&failures).red()])
            .x_axis(
                Axis::default()
                    .bounds([-span, 0.0])
                    .labels([format!("-{minutes}m"), "now".to_owned()])
                    .dark_gray(),
            )
            .y_axis(
                Axis::default()
                    .bounds([0.0, peak as f64])
                    .labels(["0".to_owned(), peak.to_string()])
                    .dark_gray(),
            )
            .render(inner, buf);
    }
}

/// The routes table: with exact figures, requests/s and requests in the
/// window; from events, requests since attach.
fn route_grid(figures: &RouteFigures, selected: usize) -> Grid<'static> {
    let exact = matches!(figures, RouteFigures::Exact(_));
    let mut columns = vec![Column::text("ROUTE", ALWAYS).fill()];
    if exact {
        columns.push(Column::number("RPS", ALWAYS));
    }
    columns.extend([
        Column::number("REQUESTS", ALWAYS),
        Column::number("SUCCESS", ALWAYS),
        Column::number("P50", 1),
        Column::number("P99", 2),
    ]);
    let rows = figures.rows();
    let grid_rows = rows
        .iter()
        .map(|row| {
            let mut cells = vec![row.route.clone()];
            if exact {
                cells.push(format_rps(row.rps.unwrap_or(0.0)));
            }
            cells.extend([
                row.count.to_string(),
                format_success(row.success),
                format_latency(row.p50),
                format_latency(row.p99),
            ]);
            GridRow {
                cells,
                style: success_style(row.success),
            }
        })
        .collect();
    let selected = rows.len().checked_sub(1).map(|last| selected.min(last));
    Grid::new(columns, grid_rows)
        .selected(selected)
        .empty("no requests for this upstream in this window")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(upper_us: u64, count: u64) -> LatencyBucket {
        LatencyBucket { upper_us, count }
    }

    #[test]
    fn bucket_labels_fit_a_bar() {
        assert_eq!(bucket_label(400), "400µ");
        assert_eq!(bucket_label(1_600), "1.6m");
        assert_eq!(bucket_label(12_800), "13m");
        assert_eq!(bucket_label(819_200), "819m");
        assert_eq!(bucket_label(1_638_400), "1.6s");
        assert_eq!(bucket_label(26_214_400), "26s");
    }

    #[test]
    fn empty_buckets_at_the_ends_are_left_out() {
        let buckets = [
            bucket(100, 0),
            bucket(200, 3),
            bucket(400, 0),
            bucket(800, 1),
            bucket(1_600, 0),
        ];
        assert_eq!(
            fit_buckets(&buckets, 80),
            vec![(100, 200, 3), (200, 400, 0), (400, 800, 1)]
        );
        assert_eq!(fit_buckets(&[bucket(100, 0)], 80), Vec::new());
    }

    #[test]
    fn buckets_merge_in_pairs_until_they_fit() {
        let buckets: Vec<LatencyBucket> = (0..8).map(|i| bucket(100 << i, 1)).collect();
        // Eight bars of four columns and a gap take 39 columns.
        assert_eq!(fit_buckets(&buckets, 39).len(), 8);
        let merged = fit_buckets(&buckets, 38);
        assert_eq!(
            merged,
            vec![
                (0, 200, 2),
                (200, 800, 2),
                (800, 3_200, 2),
                (3_200, 12_800, 2)
            ]
        );
        assert_eq!(
            fit_buckets(&buckets, 0).len(),
            1,
            "one bar whatever the width"
        );
    }
}
