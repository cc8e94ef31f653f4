//! View 6, Edges: who calls whom. Above, a call tree drawn from the edges
//! (`vote-bot → web-svc (web) → emoji-svc, voting-svc`), each edge with
//! its rate and success; below, one row per (caller, callee) with rates,
//! success, latency at both ends and failures, exact from `stats` (see
//! [`crate::tui::model`]'s `edges`).

use std::collections::BTreeSet;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget, Wrap};

use super::grid::{ALWAYS, Column, Grid, GridRow};
use super::success_style;
use crate::tui::format::{EDGE_HEADERS, callee_label, edge_cells, format_rps, format_success};
use crate::tui::input::UiState;
use crate::tui::model::{EdgeRow, Model};

/// The tree gets at most this share of the view's height (in lines, of
/// the lines left after the table's header and two rows).
const TREE_MAX_SHARE: u16 = 2;
/// Calls deeper than this are not drawn in the tree (the table has them).
const TREE_DEPTH: usize = 8;
/// Callees are what the table is about: columns go before they are
/// squeezed below this.
const CALLEE_MIN: usize = 26;

pub struct EdgesView<'a> {
    pub model: &'a Model,
    pub ui: &'a UiState,
}

impl Widget for &EdgesView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (model, ui) = (self.model, self.ui);
        let window = ui.window.label();
        let answer = model.edges(ui.window, &ui.filter);
        if let Err(why) = &*answer {
            Paragraph::new(why.to_string())
                .yellow()
                .wrap(Wrap { trim: true })
                .block(
                    Block::new()
                        .borders(Borders::TOP)
                        .title(" edges: filter not applied "),
                )
                .render(area, buf);
            return;
        }
        let rows = ui.edge_rows(model);
        let tree = call_tree(&rows);
        let room = area.height.saturating_sub(4) / TREE_MAX_SHARE;
        let tree_height = u16::try_from(tree.len())
            .unwrap_or(u16::MAX)
            .saturating_add(1)
            .min(room);
        let [tree_area, table_area] =
            Layout::vertical([Constraint::Length(tree_height), Constraint::Min(0)]).areas(area);
        if !tree_area.is_empty() {
            Paragraph::new(tree)
                .block(
                    Block::new()
                        .borders(Borders::TOP)
                        .title(format!(" calls, last {window} (exact, from stats) ")),
                )
                .render(tree_area, buf);
        }
        let table_block = Block::new().borders(Borders::TOP).title(format!(
            " edges, last {window}: OUT at the caller's sidecar, IN at the callee's "
        ));
        let inner = table_block.inner(table_area);
        table_block.render(table_area, buf);
        let selected = rows
            .len()
            .checked_sub(1)
            .map(|last| ui.selected.edge.min(last));
        let empty = if model.now_sec().is_none() {
            "waiting for the first stats from the sidecars…"
        } else {
            "no edge matches (see the filter, and e for failures only)"
        };
        edge_grid(&rows)
            .selected(selected)
            .empty(empty)
            .fill_min(CALLEE_MIN)
            .render(inner, buf);
    }
}

fn edge_grid(rows: &[EdgeRow]) -> Grid<'static> {
    // Which go first at narrow widths, in the order of EDGE_HEADERS.
    let keep = [ALWAYS, ALWAYS, ALWAYS, ALWAYS, 2, ALWAYS, 1, 5, 4];
    let columns = EDGE_HEADERS
        .iter()
        .zip(keep)
        .enumerate()
        .map(|(i, (header, keep))| match i {
            0 => Column::text(header, keep),
            1 => Column::text(header, keep).fill().middle(),
            _ => Column::number(header, keep),
        })
        .collect();
    let rows = rows
        .iter()
        .map(|row| GridRow {
            cells: edge_cells(row).to_vec(),
            style: success_style(row.success),
        })
        .collect();
    Grid::new(columns, rows)
}

/// The call tree, a line per edge: callers no attached sidecar serves are
/// the roots, and under each callee the calls its serving sidecars make.
fn call_tree(rows: &[EdgeRow]) -> Vec<Line<'static>> {
    let served: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.servers.iter().map(String::as_str))
        .collect();
    // Sidecars first: their calls are drawn under the first caller that
    // reaches them, and a sidecar is the likelier entry point.
    let callers: BTreeSet<(bool, &str)> = rows
        .iter()
        .map(|r| (!r.caller_is_sidecar, r.caller.as_str()))
        .collect();
    let mut roots: Vec<&str> = callers
        .iter()
        .map(|(_, c)| *c)
        .filter(|c| !served.contains(c))
        .collect();
    if roots.is_empty() {
        // Everyone is called by someone (a cycle): start anywhere.
        roots = callers.into_iter().map(|(_, c)| c).collect();
    }
    let mut lines = Vec::new();
    let mut drawn: BTreeSet<&str> = BTreeSet::new();
    for root in roots {
        lines.push(Line::from(Span::raw(root.to_owned()).bold()));
        drawn.insert(root);
        calls_of(rows, root, "", 0, &mut drawn, &mut lines);
    }
    lines
}

/// The lines of `caller`'s calls, under `prefix`.
fn calls_of<'a>(
    rows: &'a [EdgeRow],
    caller: &str,
    prefix: &str,
    depth: usize,
    drawn: &mut BTreeSet<&'a str>,
    lines: &mut Vec<Line<'static>>,
) {
    if depth >= TREE_DEPTH {
        return;
    }
    let calls: Vec<&EdgeRow> = rows.iter().filter(|r| r.caller == caller).collect();
    for (i, row) in calls.iter().enumerate() {
        let last = i + 1 == calls.len();
        let branch = if last { "└─→ " } else { "├─→ " };
        lines.push(Line::from(vec![
            Span::raw(format!("{prefix}{branch}")).dim(),
            Span::raw(callee_label(row)),
            Span::styled(
                format!(
                    "  {}/s {}",
                    format_rps(row.rps),
                    format_success(row.success)
                ),
                edge_style(row),
            ),
        ]));
        let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
        for server in &row.servers {
            // A sidecar's calls are drawn once, under its first caller.
            if drawn.insert(server.as_str()) {
                calls_of(rows, server, &deeper, depth + 1, drawn, lines);
            }
        }
    }
}

/// The colours rows use for success, for the tree's figures.
fn edge_style(row: &EdgeRow) -> Style {
    match success_style(row.success) {
        style if style == Style::new() => Style::new().dim(),
        style => style.bold(),
    }
}
