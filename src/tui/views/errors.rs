//! View 3, Errors: every failure grouped by upstream, route and how it
//! failed (HTTP status, gRPC status or error, with their names), with its
//! count, its rate over the window, when it was first and last seen, and
//! the last grpc-message; the selected group in full below. `enter` on a
//! group lists its newest failing requests (kept by the model, at most
//! [`FAILURES_PER_GROUP`]); `enter` on one of them inspects it.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget, Wrap};

use super::clock;
use super::grid::{ALWAYS, Column, Grid, GridRow};
use super::tap::request_grid;
use super::{direction_header, direction_label};
use crate::tui::input::UiState;
use crate::tui::model::{ErrorRow, FAILURES_PER_GROUP, Model, TapEntry, Window};

/// Paths and messages are cut sooner than authorities.
const TEXT_MIN: usize = 16;

pub struct ErrorsView<'a> {
    pub model: &'a Model,
    pub ui: &'a UiState,
}

impl Widget for &ErrorsView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if self.ui.failures_of.is_some() {
            return self.render_failures(area, buf);
        }
        let rows = self.model.errors(&self.ui.filter, None);
        let selected = rows
            .len()
            .checked_sub(1)
            .map(|last| self.ui.selected.error.min(last));
        let [title, area] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        Line::from(vec![
            Span::raw(format!(" failures: {} groups ", rows.len())).bold(),
            Span::raw(format!(
                "· COUNT since attach, RATE over the last {} · enter lists a group's requests",
                self.ui.window.label()
            )),
        ])
        .render(title, buf);
        let (table, detail) = if area.height >= 10 {
            let [table, detail] =
                Layout::vertical([Constraint::Min(0), Constraint::Length(5)]).areas(area);
            (table, Some(detail))
        } else {
            (area, None)
        };
        let now = self.model.now_sec().unwrap_or(0);
        error_grid(&rows, true, area.width, self.ui.window, now)
            .selected(selected)
            .render(table, buf);
        let (Some(detail), Some(row)) = (detail, selected.map(|i| &rows[i])) else {
            return;
        };
        let upstream = &row.key.upstream;
        let lines = vec![
            Line::from(format!(
                "{} {} {}",
                upstream.direction, upstream.authority, row.key.route
            ))
            .bold(),
            Line::from(format!(
                "{} × {} since attach, {:.2}/s over the last {}; first at {}, the last at {}",
                row.key.kind,
                row.count,
                row.per_second(self.ui.window, now),
                self.ui.window.label(),
                row.first_seen,
                row.last_seen
            )),
            Line::from(format!(
                "last path: {}",
                row.example_path.as_deref().unwrap_or("-")
            )),
            Line::from(format!(
                "grpc-message: {}",
                row.example_message.as_deref().unwrap_or("-")
            )),
        ];
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::new().borders(Borders::TOP).title(" selected "))
            .render(detail, buf);
    }
}

impl ErrorsView<'_> {
    /// The failing requests kept of the group opened, oldest first, the
    /// cursor on the newest at first.
    fn render_failures(&self, area: Rect, buf: &mut Buffer) {
        let Some(group) = &self.ui.failures_of else {
            return;
        };
        let entries = self.ui.failure_entries(self.model);
        let [title, table] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        Line::from(vec![
            Span::raw(format!(
                " {} · {} {} {} ",
                group.kind, group.upstream.direction, group.upstream.authority, group.route
            ))
            .bold(),
            Span::raw(format!(
                "· the newest {} failing requests kept (at most {FAILURES_PER_GROUP}) · esc back",
                entries.len()
            )),
        ])
        .render(title, buf);
        let visible = usize::from(table.height.saturating_sub(1)).max(1);
        let selected = entries
            .len()
            .checked_sub(1)
            .map(|last| self.ui.selected.failure.min(last));
        let start = selected.map_or(0, |i| (i + 1).saturating_sub(visible));
        let shown: Vec<&TapEntry> = entries
            .iter()
            .skip(start)
            .take(visible)
            .map(|(_, e)| *e)
            .collect();
        request_grid(&shown, area.width)
            .selected(selected.map(|i| i - start))
            .empty("none kept: they were evicted, or none passes the filter")
            .render(table, buf);
    }
}

/// Failure groups as a table; `with_upstream` adds the upstream's columns
/// (this view lists every upstream, the detail view one). RATE is over
/// `window`, ending at `now_sec`; COUNT since attach.
pub fn error_grid(
    rows: &[ErrorRow],
    with_upstream: bool,
    width: u16,
    window: Window,
    now_sec: i64,
) -> Grid<'static> {
    let mut columns = Vec::new();
    if with_upstream {
        columns.push(Column::text(direction_header(width), 4));
        columns.push(Column::text("UPSTREAM", ALWAYS).fill().middle());
    }
    columns.extend([
        Column::text("ROUTE", ALWAYS).fill().middle(),
        Column::text("FAILURE", ALWAYS),
        Column::number("COUNT", ALWAYS),
        Column::number("RATE/S", 3),
        Column::text("FIRST", 5),
        Column::text("LAST", 3),
        Column::text("GRPC-MESSAGE", 1).fill(),
    ]);
    let grid_rows = rows
        .iter()
        .map(|row| {
            let mut cells = Vec::new();
            if with_upstream {
                let upstream = &row.key.upstream;
                cells.push(direction_label(upstream.direction, width).to_owned());
                cells.push(upstream.authority.clone());
            }
            cells.extend([
                row.key.route.clone(),
                row.key.kind.to_string(),
                row.count.to_string(),
                format!("{:.2}", row.per_second(window, now_sec)),
                clock(&row.first_seen, false).to_owned(),
                clock(&row.last_seen, false).to_owned(),
                row.example_message.clone().unwrap_or_else(|| "-".into()),
            ]);
            GridRow {
                cells,
                style: Style::new().red(),
            }
        })
        .collect();
    Grid::new(columns, grid_rows)
        .empty("no failures")
        .fill_min(TEXT_MIN)
}
