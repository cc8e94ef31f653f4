//! View 2, Detail: one upstream in depth — its latency histogram with the
//! percentiles marked ([`super::histogram`]), requests and failures per second over the last
//! minutes, its routes and its failures.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Stylize;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph, Widget, Wrap};

use super::errors::error_grid;
use super::grid::{ALWAYS, Column, Grid, GridRow};
use super::histogram::{self, LatencyHistogram};
use super::{WIDE, success_style};
use crate::tui::format::{format_latency, format_rps, format_success};
use crate::tui::input::UiState;
use crate::tui::model::{Model, RouteFigures, UpstreamKey, UpstreamRow};

/// Seconds of history in the rate chart ("the last minutes").
const RATE_CHART_SECONDS: usize = 300;

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

        let distribution = model.latency_distribution(
            key,
            ui.window,
            ui.latency_scale,
            histogram::buckets_for(hist.width),
        );
        let title = histogram::title(distribution.as_ref(), ui.window.label());
        let inner = section(title, hist, buf);
        match &distribution {
            Some(distribution) => LatencyHistogram { distribution }.render(inner, buf),
            None => Line::from(" no requests in this window")
                .dim()
                .render(inner, buf),
        }
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
        let title = format!(
            " failures ({}): counts since attach, rates over the last {} ",
            error_rows.len(),
            ui.window.label()
        );
        let inner = section(title, errors, buf);
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
