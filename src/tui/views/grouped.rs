//! View 1, Upstreams, grouped by route, sidecar or status class (`b`): the
//! same figures as the upstream rows, one row per group, under a title
//! that names the grouping, the window and what is counted from events.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Stylize;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::grid::{ALWAYS, Column, Grid, GridRow};
use super::{direction_header, direction_label, success_style};
use crate::tui::format::{failure_bar, group_figure_cells, header, trend_cell};
use crate::tui::input::UiState;
use crate::tui::model::{GroupBy, GroupKey, GroupRow, Model, SortColumn};

/// Names are what a grouped table is about: columns go before they are
/// squeezed below this.
const NAME_MIN: usize = 20;

pub struct GroupedView<'a> {
    pub model: &'a Model,
    pub ui: &'a UiState,
}

impl Widget for &GroupedView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (model, ui) = (self.model, self.ui);
        let [title, table] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        let label = model
            .grouped(ui.group_by, ui.window, &ui.filter)
            .and_then(|grouped| grouped.label());
        title_line(ui, label.as_deref()).render(title, buf);
        let rows = ui.group_rows(model);
        let selected = ui.selected_group(&rows);
        // Only the rows on screen are formatted, scrolled as the table
        // would scroll them: by route there is a row per route of every
        // upstream, and formatting 600 of them took 5 ms a frame (the
        // budget is 3 ms). The columns fit the rows shown.
        let visible = usize::from(table.height.saturating_sub(1)).max(1);
        let start = selected.map_or(0, |s| (s + 1).saturating_sub(visible));
        let shown = &rows[start.min(rows.len())..(start + visible).min(rows.len())];
        let selected = selected.map(|s| s - start);
        let empty = if model.now_sec().is_none() {
            "waiting for the first stats from the sidecars…"
        } else {
            "nothing matches (see the filter, and e for failures only)"
        };
        group_grid(shown, ui, area.width)
            .selected(selected)
            .empty(empty)
            .fill_min(NAME_MIN)
            .render(table, buf);
    }
}

/// `upstreams by sidecar, last 10s`, and what comes from events.
pub fn title_line(ui: &UiState, label: Option<&str>) -> Line<'static> {
    let mut spans = vec![
        Span::raw(format!(
            " upstreams by {}, last {}",
            ui.group_by.label(),
            ui.window.label()
        ))
        .bold(),
        Span::raw("  (b groups)").dim(),
    ];
    if let Some(label) = label {
        spans.push(Span::raw(format!("  {label}")).yellow());
    }
    Line::from(spans)
}

/// The name columns of a grouping, left of the figures; `mark` (the sort
/// mark, when sorted by name) after the first one's header.
fn name_columns(by: GroupBy, width: u16, mark: &str) -> Vec<Column> {
    match by {
        GroupBy::Route => vec![
            Column::text(&format!("{}{mark}", direction_header(width)), ALWAYS),
            Column::text("AUTHORITY", ALWAYS).fill().middle(),
            Column::text("ROUTE", ALWAYS).fill().path(),
        ],
        GroupBy::Sidecar => vec![Column::text(&format!("SIDECAR{mark}"), ALWAYS).fill()],
        GroupBy::Caller => vec![Column::text(&format!("CALLER{mark}"), ALWAYS).fill()],
        GroupBy::Status | GroupBy::Authority => {
            vec![Column::text(&format!("STATUS{mark}"), ALWAYS)]
        }
    }
}

/// `▲` or `▼` when rows are sorted by `column`.
fn sort_mark(ui: &UiState, column: SortColumn) -> &'static str {
    if column != ui.sort {
        ""
    } else if super::upstreams::ascending(column) != ui.reverse {
        "▲"
    } else {
        "▼"
    }
}

fn name_cells(key: &GroupKey, width: u16) -> Vec<String> {
    match key {
        GroupKey::Route { upstream, route } => vec![
            direction_label(upstream.direction, width).to_owned(),
            upstream.authority.clone(),
            route.clone(),
        ],
        GroupKey::Sidecar(name) | GroupKey::Caller { name, .. } => vec![name.clone()],
        GroupKey::Status(class) => vec![class.label().to_owned()],
    }
}

/// The figures' columns, as the upstream rows have them (TREND after RPS,
/// the failure bar beside FAILURES), dropped in the same order.
const FIGURES: [(SortColumn, u8); 8] = [
    (SortColumn::Rps, ALWAYS),
    (SortColumn::Success, ALWAYS),
    (SortColumn::P50, 4),
    (SortColumn::P90, 2),
    (SortColumn::P99, ALWAYS),
    (SortColumn::Max, 1),
    (SortColumn::Requests, 3),
    (SortColumn::Failures, 5),
];

fn group_grid(rows: &[GroupRow], ui: &UiState, width: u16) -> Grid<'static> {
    // DIRECTION and AUTHORITY sort by the group: its name columns.
    let by_name = match ui.sort {
        SortColumn::Direction | SortColumn::Authority => sort_mark(ui, ui.sort),
        _ => "",
    };
    let mut columns = name_columns(ui.group_by, width, by_name);
    for (column, keep) in FIGURES {
        let mark = sort_mark(ui, column);
        let keep = if mark.is_empty() { keep } else { ALWAYS };
        columns.push(Column::number(&format!("{}{mark}", header(column)), keep));
        if column == SortColumn::Rps {
            columns.push(Column::text("TREND", 0));
        }
    }
    let rows = rows
        .iter()
        .map(|row| {
            let mut cells = name_cells(&row.key, width);
            let mut figures = group_figure_cells(row).to_vec();
            figures.insert(1, trend_cell(&row.trend));
            if let Some(failures) = figures.last_mut() {
                *failures = format!("{failures} {}", failure_bar(row.success));
            }
            cells.extend(figures);
            GridRow {
                cells,
                // Red below 95 % success, yellow below 99 %, as upstream
                // rows are.
                style: success_style(row.success),
            }
        })
        .collect();
    Grid::new(columns, rows)
}
