//! View 1, Upstreams: one row per (direction, authority) with rates,
//! success and latency over the window and who calls it, and under the table the selected
//! row's requests per second and, when wide, its latency histogram.
//!
//! TREND draws each row's requests/s over the last minute, 5 s to a
//! character, scaled to the row's own peak (blank without traffic); the
//! bar beside FAILURES is the window's share of failed requests (4
//! columns for 100 %), in the row's colour like the rest of the row.

use std::collections::HashMap;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::widgets::{Block, Borders, Sparkline, SparklineBar, Widget};

use super::grid::{ALWAYS, Column, Grid, GridRow};
use super::grouped::{GroupedView, title_line};
use super::histogram::{self, LatencyHistogram};
use super::{WIDE, direction_header, direction_label, success_style};
use crate::tui::format::{
    TREND_SECONDS, callers_label, failure_bar, figure_cells, header, stale_age, trend_cell,
};
use crate::tui::input::UiState;
use crate::tui::model::{GroupBy, HISTORY_SECONDS, Model, SortColumn, UpstreamRow};

/// Above this p99 (microseconds) a row is yellow.
const SLOW_P99_US: u64 = 1_000_000;
/// Authorities are what the table is about: columns go before they are
/// squeezed below this.
const AUTHORITY_MIN: usize = 26;

pub struct UpstreamsView<'a> {
    pub model: &'a Model,
    pub ui: &'a UiState,
}

impl Widget for &UpstreamsView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (model, ui) = (self.model, self.ui);
        if ui.group_by != GroupBy::Authority {
            Widget::render(&GroupedView { model, ui }, area, buf);
            return;
        }
        let [title, area] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        title_line(ui, None).render(title, buf);
        let rows = ui.upstream_rows(model);
        let selected = ui.selected_upstream(&rows);
        // Under the table, the selected row's charts: the table keeps the
        // rows it has (and a third of the height at least, for rows to
        // come), the charts take the rest instead of blank lines.
        let (table_area, charts_area) = if area.height >= 10 {
            let wanted = u16::try_from(rows.len())
                .unwrap_or(u16::MAX)
                .saturating_add(2);
            let table = wanted.clamp(area.height / 3, area.height - 4);
            let charts = area.height - table;
            let [table, charts] =
                Layout::vertical([Constraint::Min(0), Constraint::Length(charts)]).areas(area);
            (table, Some(charts))
        } else {
            (area, None)
        };
        let empty = if model.now_sec().is_none() {
            "waiting for the first stats from the sidecars…"
        } else {
            "no upstream matches (see the filter, and e for failures only)"
        };
        let callers = model.callers(ui.window, &ui.filter);
        upstream_grid(model, &rows, callers.as_ref(), ui, area.width)
            .selected(selected)
            .empty(empty)
            .fill_min(AUTHORITY_MIN)
            .render(table_area, buf);
        let Some(charts_area) = charts_area else {
            return;
        };
        let row = selected.map(|i| &rows[i]);
        // Wide: the rate and the latency histogram side by side.
        let (rate_area, latency_area) = if area.width >= WIDE {
            let [rate, latency] = Layout::horizontal([Constraint::Fill(1); 2])
                .spacing(2)
                .areas(charts_area);
            (rate, Some(latency))
        } else {
            (charts_area, None)
        };
        RateSparkline { model, row }.render(rate_area, buf);
        if let (Some(latency_area), Some(row)) = (latency_area, row) {
            let distribution = model.latency_distribution(
                &row.key,
                ui.window,
                ui.latency_scale,
                histogram::buckets_for(latency_area.width),
            );
            let block = Block::new()
                .borders(Borders::TOP)
                .title(histogram::title(distribution.as_ref(), ui.window.label()));
            let inner = block.inner(latency_area);
            block.render(latency_area, buf);
            if let Some(distribution) = &distribution {
                LatencyHistogram { distribution }.render(inner, buf);
            }
        }
    }
}

/// Where TREND goes: after RPS, whose recent past it draws.
const TREND_COLUMN: usize = 3;
/// TREND is the first column to go when the width is short: the numbers
/// say more.
const TREND_KEEP: u8 = 0;

/// The table; TREND after RPS, a failure bar beside FAILURES, and after
/// the sortable columns CALLERS (who calls each authority, from the edges;
/// `None` under a filter edges do not take), dropped first when narrow.
fn upstream_grid(
    model: &Model,
    rows: &[UpstreamRow],
    callers: Option<&HashMap<String, Vec<String>>>,
    ui: &UiState,
    width: u16,
) -> Grid<'static> {
    let mut columns: Vec<Column> = SortColumn::ALL
        .iter()
        .map(|&column| {
            let keep = match column {
                SortColumn::Direction => 6,
                SortColumn::P50 => 4,
                SortColumn::P90 => 2,
                SortColumn::Max => 1,
                SortColumn::Requests => 3,
                SortColumn::Failures => 5,
                SortColumn::Authority | SortColumn::Rps | SortColumn::Success | SortColumn::P99 => {
                    ALWAYS
                }
            };
            // The column the rows are sorted by stays in view, marked.
            let (keep, mark) = if column == ui.sort {
                let up = ascending(column) != ui.reverse;
                (ALWAYS, if up { "▲" } else { "▼" })
            } else {
                (keep, "")
            };
            let header = match column {
                SortColumn::Direction => direction_header(width),
                column => header(column),
            };
            let header = format!("{header}{mark}");
            match column {
                SortColumn::Direction => Column::text(&header, keep),
                SortColumn::Authority => Column::text(&header, keep).fill().middle(),
                _ => Column::number(&header, keep),
            }
        })
        .collect();
    columns.insert(TREND_COLUMN, Column::text("TREND", TREND_KEEP));
    if callers.is_some() {
        columns.push(Column::text("CALLERS", 0));
    }
    let rows = rows
        .iter()
        .map(|row| {
            let mut cells = vec![
                direction_label(row.key.direction, width).to_owned(),
                match row.stale {
                    // At the end, which a cut keeps in view.
                    Some(seconds) => {
                        format!("{} · stale {}", row.key.authority, stale_age(seconds))
                    }
                    None => row.key.authority.clone(),
                },
            ];
            cells.extend(figure_cells(row));
            let history: Vec<u64> = model
                .rate_history(&row.key, TREND_SECONDS)
                .into_iter()
                .map(|(requests, _)| requests)
                .collect();
            cells.insert(TREND_COLUMN, trend_cell(&history));
            if let Some(failures) = cells.last_mut() {
                // The count since attach, then the window's share.
                *failures = format!("{failures} {}", failure_bar(row.success));
            }
            if let Some(callers) = callers {
                cells.push(callers_label(callers.get(&row.key.authority)));
            }
            GridRow {
                cells,
                style: upstream_style(row),
            }
        })
        .collect();
    Grid::new(columns, rows)
}

/// Whether `sort_rows` puts the smallest first for this column (unreversed).
pub(super) fn ascending(column: SortColumn) -> bool {
    matches!(
        column,
        SortColumn::Direction | SortColumn::Authority | SortColumn::Success
    )
}

/// Dim when stale; else red below 95 % success, yellow below 99 % or with
/// a p99 over a second.
fn upstream_style(row: &UpstreamRow) -> Style {
    if row.stale.is_some() {
        return Style::new().dim();
    }
    match success_style(row.success) {
        plain if plain == Style::new() && row.p99.is_some_and(|p| p > SLOW_P99_US) => {
            Style::new().yellow()
        }
        style => style,
    }
}

/// Requests per second of one upstream, a bar per second up to the model
/// clock, seconds with failures in red.
struct RateSparkline<'a> {
    model: &'a Model,
    row: Option<&'a UpstreamRow>,
}

impl Widget for RateSparkline<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let Some(row) = self.row else {
            Block::new()
                .borders(Borders::TOP)
                .title(" requests/s: no upstream selected ")
                .render(area, buf);
            return;
        };
        let seconds = usize::from(area.width).min(HISTORY_SECONDS);
        let history = self.model.rate_history(&row.key, seconds);
        let peak = history
            .iter()
            .map(|(requests, _)| *requests)
            .max()
            .unwrap_or(0);
        let title = format!(
            " requests/s {} {}, last {seconds}s, peak {peak} ",
            row.key.direction, row.key.authority
        );
        let bars = history.iter().map(|&(requests, failures)| {
            let bar = SparklineBar::from(requests);
            if failures > 0 {
                bar.style(Some(Style::new().red()))
            } else {
                bar
            }
        });
        Sparkline::default()
            .block(Block::new().borders(Borders::TOP).title(title))
            .data(bars)
            .cyan()
            .render(area, buf);
    }
}
