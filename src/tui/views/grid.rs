//! The table every view draws with: it fits its columns to the width it
//! gets, so one view reads well at 80 columns and at 200.
//!
//! Each column is as wide as its widest cell; fill columns (authorities,
//! paths) are the ones cut to share the width when it is short. While the columns do not fit, the least
//! important is dropped, and long text is cut with `…` (in the middle for
//! authorities, which keeps the port; at the start for gRPC paths, which
//! keeps the method).

use std::borrow::Cow;
use std::cmp::Reverse;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Cell, HighlightSpacing, Row, StatefulWidget, Table, TableState, Widget};

pub use crate::tui::format::text_width;

/// `keep` of a column that is never dropped.
pub const ALWAYS: u8 = u8::MAX;
/// Fill columns are not squeezed below this while another column can be
/// dropped instead (unless the grid says otherwise).
const FILL_MIN: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// A column of a [`Grid`].
pub struct Column {
    header: String,
    align: Align,
    /// Shares the width the other columns leave.
    fill: bool,
    /// While the table does not fit, columns are dropped lowest `keep`
    /// first; [`ALWAYS`] columns never are.
    keep: u8,
    /// Where long text is cut.
    cut: Cut,
}

/// Where a cell too long for its column loses text (to `…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    End,
    /// Both ends stay: authorities, whose port is at the end.
    Middle,
    /// gRPC method paths (`/pkg.Service/Method`) lose their start, since
    /// the method is what tells calls apart; other paths lose their end.
    Path,
}

impl Column {
    pub fn text(header: &str, keep: u8) -> Column {
        Column {
            header: header.to_owned(),
            align: Align::Left,
            fill: false,
            keep,
            cut: Cut::End,
        }
    }

    /// Right-aligned, so that digits line up.
    pub fn number(header: &str, keep: u8) -> Column {
        Column {
            align: Align::Right,
            ..Column::text(header, keep)
        }
    }

    pub fn fill(self) -> Column {
        Column { fill: true, ..self }
    }

    pub fn middle(self) -> Column {
        Column {
            cut: Cut::Middle,
            ..self
        }
    }

    /// Cut as [`Cut::Path`].
    pub fn path(self) -> Column {
        Column {
            cut: Cut::Path,
            ..self
        }
    }
}

pub struct GridRow {
    pub cells: Vec<String>,
    pub style: Style,
}

/// A table fitted to its width; see the module documentation.
pub struct Grid<'a> {
    pub columns: Vec<Column>,
    pub rows: Vec<GridRow>,
    pub selected: Option<usize>,
    /// Reserves the column of the `>` selection mark.
    pub selectable: bool,
    /// Said under the header when there are no rows.
    pub empty: &'a str,
    /// Overrides [`FILL_MIN`].
    pub fill_min: Option<usize>,
}

impl<'a> Grid<'a> {
    pub fn new(columns: Vec<Column>, rows: Vec<GridRow>) -> Self {
        Grid {
            columns,
            rows,
            selected: None,
            selectable: false,
            empty: "",
            fill_min: None,
        }
    }

    /// With a cursor (a reserved mark column even when nothing is selected,
    /// so that columns do not shift as the selection comes and goes).
    pub fn selected(self, selected: Option<usize>) -> Self {
        Grid {
            selected,
            selectable: true,
            ..self
        }
    }

    pub fn empty(self, empty: &'a str) -> Self {
        Grid { empty, ..self }
    }

    pub fn fill_min(self, fill_min: usize) -> Self {
        Grid {
            fill_min: Some(fill_min),
            ..self
        }
    }

    /// The shown columns and their widths, for a table `width` wide.
    fn fit(&self, width: usize) -> Vec<(usize, usize)> {
        let fill_min = self.fill_min.unwrap_or(FILL_MIN);
        let mut natural: Vec<usize> = self.columns.iter().map(|c| text_width(&c.header)).collect();
        for row in &self.rows {
            for (w, cell) in natural.iter_mut().zip(&row.cells) {
                *w = (*w).max(text_width(cell));
            }
        }
        let mut shown: Vec<usize> = (0..self.columns.len()).collect();
        let needed = |shown: &[usize]| -> usize {
            let widths = shown.iter().map(|&c| {
                if self.columns[c].fill {
                    natural[c].min(fill_min)
                } else {
                    natural[c]
                }
            });
            widths.sum::<usize>() + shown.len().saturating_sub(1)
        };
        while needed(&shown) > width {
            // The least important; of equals, the rightmost.
            let droppable = shown
                .iter()
                .enumerate()
                .filter(|(_, c)| self.columns[**c].keep != ALWAYS)
                .min_by_key(|(_, c)| (self.columns[**c].keep, Reverse(**c)))
                .map(|(position, _)| position);
            let Some(position) = droppable else {
                break;
            };
            shown.remove(position);
        }
        let fixed: usize = shown
            .iter()
            .filter(|&&c| !self.columns[c].fill)
            .map(|&c| natural[c])
            .sum();
        let mut spare = width.saturating_sub(fixed + shown.len().saturating_sub(1));
        // Narrow fill columns take what they need, the widest what is left
        // up to its own width: columns are sized to their content, and the
        // width the table does not need stays blank at its right.
        let mut fills: Vec<usize> = shown
            .iter()
            .copied()
            .filter(|&c| self.columns[c].fill)
            .collect();
        fills.sort_by_key(|&c| (natural[c], c));
        let mut widths = natural;
        let count = fills.len();
        for (i, &c) in fills.iter().enumerate() {
            let share = if i + 1 == count {
                widths[c].min(spare)
            } else {
                widths[c].min(spare / (count - i))
            };
            widths[c] = share;
            spare -= share;
        }
        shown.into_iter().map(|c| (c, widths[c])).collect()
    }
}

impl Widget for Grid<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.is_empty() {
            return;
        }
        let mark = usize::from(self.selectable);
        let layout = self.fit(usize::from(area.width).saturating_sub(mark));
        let cell = |text: &str, column: usize, width: usize| -> Cell<'static> {
            let spec = &self.columns[column];
            let line = Line::from(cut_as(text, width, spec.cut).into_owned());
            Cell::from(if spec.align == Align::Right {
                line.right_aligned()
            } else {
                line
            })
        };
        let header = Row::new(
            layout
                .iter()
                .map(|&(c, w)| cell(&self.columns[c].header, c, w)),
        )
        .style(
            Style::new()
                .add_modifier(Modifier::BOLD)
                .fg(Color::White)
                .bg(Color::DarkGray),
        );
        let rows = self.rows.iter().map(|row| {
            let cells = layout
                .iter()
                .map(|&(c, w)| cell(row.cells.get(c).map_or("", String::as_str), c, w));
            Row::new(cells).style(row.style)
        });
        let widths = layout
            .iter()
            .map(|&(_, w)| Constraint::Length(u16::try_from(w).unwrap_or(u16::MAX)));
        let mut table = Table::new(rows, widths).header(header).column_spacing(1);
        if self.selectable {
            table = table
                .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
                .highlight_symbol(">")
                .highlight_spacing(HighlightSpacing::Always);
        }
        // A fresh state each frame: the table scrolls just enough to show
        // the selected row, which is all the views need.
        let mut state = TableState::default().with_selected(self.selected);
        StatefulWidget::render(table, area, buf, &mut state);
        if self.rows.is_empty() && area.height > 1 {
            let below = Rect {
                y: area.y + 1,
                height: 1,
                ..area
            };
            Line::from(format!(" {}", self.empty))
                .dim()
                .render(below, buf);
        }
    }
}

fn char_width(c: char) -> usize {
    let mut bytes = [0; 4];
    text_width(c.encode_utf8(&mut bytes))
}

/// `text` in at most `width` columns, cut as `how` says.
pub fn cut_as(text: &str, width: usize, how: Cut) -> Cow<'_, str> {
    match how {
        Cut::End => cut(text, width, false),
        Cut::Middle => cut(text, width, true),
        Cut::Path if is_grpc_path(text) => cut_start(text, width),
        Cut::Path => cut(text, width, false),
    }
}

/// `/package.Service/Method`: two segments, a dot in the first, no query.
fn is_grpc_path(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('/') else {
        return false;
    };
    let mut segments = rest.split('/');
    matches!(
        (segments.next(), segments.next(), segments.next()),
        (Some(service), Some(method), None)
            if service.contains('.') && !method.is_empty() && !text.contains('?')
    )
}

/// `text` in at most `width` columns, its start given up to `…`.
fn cut_start(text: &str, width: usize) -> Cow<'_, str> {
    if text_width(text) <= width {
        return Cow::Borrowed(text);
    }
    if width == 0 {
        return Cow::Borrowed("");
    }
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in text.chars().rev() {
        let w = char_width(c);
        if used + w > width - 1 {
            break;
        }
        used += w;
        tail.push(c);
    }
    let mut out = String::from("…");
    out.extend(tail.into_iter().rev());
    Cow::Owned(out)
}

/// `text` in at most `width` columns, cut at the end (or in the middle)
/// with `…`.
pub fn cut(text: &str, width: usize, middle: bool) -> Cow<'_, str> {
    if text_width(text) <= width {
        return Cow::Borrowed(text);
    }
    if width == 0 {
        return Cow::Borrowed("");
    }
    let budget = width - 1;
    let (head_budget, tail_budget) = if middle {
        (budget - budget / 2, budget / 2)
    } else {
        (budget, 0)
    };
    let mut head = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = char_width(c);
        if used + w > head_budget {
            break;
        }
        used += w;
        head.push(c);
    }
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in text.chars().rev() {
        let w = char_width(c);
        if used + w > tail_budget {
            break;
        }
        used += w;
        tail.push(c);
    }
    head.push('…');
    head.extend(tail.into_iter().rev());
    Cow::Owned(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_to_its_width() {
        assert_eq!(cut("voting-svc:8080", 20, false), "voting-svc:8080");
        assert_eq!(cut("voting-svc:8080", 8, false), "voting-…");
        assert_eq!(cut("voting-svc.emojivoto:8080", 11, true), "votin…:8080");
        assert_eq!(cut("漢字漢字", 5, false), "漢字…");
        assert_eq!(cut("abc", 0, true), "");
        assert_eq!(cut("abc", 1, true), "…");
        let grpc = "/emojivoto.v1.VotingService/VoteDoughnut";
        assert_eq!(cut_as(grpc, 27, Cut::Path), "…VotingService/VoteDoughnut");
        assert_eq!(cut_as("/api/vote?choice=x", 10, Cut::Path), "/api/vote…");
        assert_eq!(cut_as("/a.b/c/d", 5, Cut::Path), "/a.b…");
    }

    #[test]
    fn columns_are_dropped_least_important_first() {
        let grid = Grid::new(
            vec![
                Column::text("NAME", ALWAYS).fill(),
                Column::number("A", 1),
                Column::number("B", 2),
            ],
            vec![GridRow {
                cells: vec!["x".repeat(40), "1".into(), "2".into()],
                style: Style::new(),
            }],
        );
        // Room to spare: the fill column is as wide as its widest cell.
        assert_eq!(grid.fit(100), vec![(0, 40), (1, 1), (2, 1)]);
        assert_eq!(grid.fit(43), vec![(0, 39), (1, 1), (2, 1)]);
        assert_eq!(grid.fit(22), vec![(0, 20), (2, 1)]);
        assert_eq!(grid.fit(3), vec![(0, 3)]);
        assert_eq!(grid.fit(0), vec![(0, 0)]);
    }

    #[test]
    fn narrow_fill_columns_take_what_they_need_and_the_widest_what_is_left() {
        let grid = Grid::new(
            vec![
                Column::text("LONG", ALWAYS).fill(),
                Column::text("SHORT", ALWAYS).fill(),
            ],
            vec![GridRow {
                cells: vec!["x".repeat(60), "/health".into()],
                style: Style::new(),
            }],
        );
        assert_eq!(grid.fit(50), vec![(0, 42), (1, 7)]);
    }
}
