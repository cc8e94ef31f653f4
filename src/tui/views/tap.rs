//! View 4, Tap: the latest requests, newest at the bottom, following the
//! newest unless the user scrolled up. Narrow, each row still says which
//! hop it is (`web→` leaving web, `→voting` entering voting), and gRPC
//! paths keep their method.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::grid::{ALWAYS, Column, Grid, GridRow};
use super::{WIDE, clock, compact_count, direction_header, direction_label};
use crate::schema::Direction;
use crate::tui::format::format_latency;
use crate::tui::input::UiState;
use crate::tui::inspect::error_word;
use crate::tui::model::{Model, TapEntry};

/// Authorities and paths share the line with ten columns.
const TEXT_MIN: usize = 16;

pub struct TapView<'a> {
    pub model: &'a Model,
    pub ui: &'a UiState,
}

impl Widget for &TapView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (model, ui) = (self.model, self.ui);
        let entries = ui.tap_entries(model);
        let selected = ui.tap_selected(&entries);
        let [title, table] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        let mode = if ui.tap_follow {
            Span::raw("following the newest (f stops)").green()
        } else {
            let newer = selected.map_or(0, |i| entries.len() - 1 - i);
            Span::raw(format!("scrolled up, {newer} newer (G or f follows)")).yellow()
        };
        let count = format!(
            " tap: {} of {} requests  ",
            entries.len(),
            model.tap().len()
        );
        Line::from(vec![Span::raw(count).bold(), mode]).render(title, buf);

        // Only the rows on screen are built (the tap holds up to 10,000):
        // the last screenful, or from the cursor down once it is above it.
        let visible = usize::from(table.height.saturating_sub(1)).max(1);
        let start = match selected {
            Some(i) if !ui.tap_follow && i + visible < entries.len() => i,
            _ => entries.len().saturating_sub(visible),
        };
        let end = entries.len().min(start + visible);
        let shown: Vec<&TapEntry> = entries[start..end].iter().map(|(_, e)| *e).collect();
        request_grid(&shown, area.width)
            // The cursor shows only once the user moved it.
            .selected(selected.filter(|_| !ui.tap_follow).map(|i| i - start))
            .empty("no requests yet, or none passes the filter")
            .render(table, buf);
    }
}

/// Requests as a table, one per row, failures in red: the tap's, and an
/// error group's in the Errors view. Narrow, SIDECAR and DIR become one HOP
/// cell (`web→` leaving web, `→voting` entering voting), so the two hops of
/// a call stay apart; a request without a status shows its error in a word where there is
/// room.
pub(super) fn request_grid(entries: &[&TapEntry], width: u16) -> Grid<'static> {
    let narrow = width < WIDE;
    let rows = entries
        .iter()
        .map(|entry| {
            let event = &entry.event;
            let micros = (event.duration_ms * 1000.0).round().max(0.0) as u64;
            let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".into());
            let who = if narrow {
                vec![match event.direction {
                    Direction::Outbound => format!("{}→", event.sidecar),
                    Direction::Inbound => format!("→{}", event.sidecar),
                }]
            } else {
                vec![
                    event.sidecar.clone(),
                    direction_label(event.direction, width).to_owned(),
                ]
            };
            let mut cells = vec![clock(&event.ts, true).to_owned()];
            cells.extend(who);
            GridRow {
                cells: [
                    cells,
                    vec![
                        or_dash(event.method.clone()),
                        event.authority.clone(),
                        or_dash(event.path.clone()),
                        or_dash(event.status.map(|s| s.to_string()).or_else(|| {
                            // Wide, why it has none; narrow, the
                            // row's red and `enter` say it.
                            event
                                .error
                                .as_ref()
                                .filter(|_| !narrow)
                                .map(|e| error_word(e).to_owned())
                        })),
                        or_dash(event.grpc_status.map(|s| s.to_string())),
                        format_latency(Some(micros)),
                        format!(
                            "{}/{}",
                            compact_count(event.req_bytes),
                            compact_count(event.resp_bytes)
                        ),
                    ],
                ]
                .concat(),
                style: if event.is_failure() {
                    Style::new().red()
                } else {
                    Style::new()
                },
            }
        })
        .collect();
    let who = if narrow {
        vec![Column::text("HOP", ALWAYS)]
    } else {
        vec![
            Column::text("SIDECAR", 2),
            Column::text(direction_header(width), 3),
        ]
    };
    let mut columns = vec![Column::text("TIME", 6)];
    columns.extend(who);
    columns.extend([
        Column::text("METHOD", 5),
        Column::text("AUTHORITY", ALWAYS).fill().middle(),
        Column::text("PATH", ALWAYS).fill().path(),
        Column::number("STATUS", ALWAYS),
        Column::number("GRPC", 7),
        Column::number("LATENCY", ALWAYS),
        Column::number("BYTES", 4),
    ]);
    Grid::new(columns, rows).fill_min(TEXT_MIN)
}
