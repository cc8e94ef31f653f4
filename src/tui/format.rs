//! How figures read, on screen and in `--headless`: units, column headers,
//! the cells of an upstream row, and the plain-text table. The model holds
//! numbers; this module and the views turn them into text, measured in
//! terminal columns ([`text_width`]) everywhere.

use ratatui::text::Span;

use super::model::{EdgeRow, GroupBy, GroupKey, GroupRow, Model, SortColumn, UpstreamRow, Window};
use crate::filter::FilterExpr;

/// Columns `text` takes on a terminal (wide characters count two).
pub fn text_width(text: &str) -> usize {
    Span::raw(text).width()
}

/// The header of a column of the upstreams table.
pub fn header(column: SortColumn) -> &'static str {
    match column {
        SortColumn::Direction => "DIRECTION",
        SortColumn::Authority => "AUTHORITY",
        SortColumn::Rps => "RPS",
        SortColumn::Success => "SUCCESS",
        SortColumn::P50 => "P50",
        SortColumn::P90 => "P90",
        SortColumn::P99 => "P99",
        SortColumn::Max => "MAX",
        SortColumn::Requests => "REQUESTS",
        SortColumn::Failures => "FAILURES",
    }
}

/// The figures of an upstream row as text, in the order of
/// [`SortColumn::ALL`] after DIRECTION and AUTHORITY: RPS, SUCCESS, P50,
/// P90, P99, MAX, REQUESTS, FAILURES. The Upstreams view and `--headless`
/// both show these.
pub fn figure_cells(row: &UpstreamRow) -> [String; 8] {
    figures_as_text(
        row.rps,
        row.success,
        [row.p50, row.p90, row.p99, row.max],
        (row.requests, row.failures),
    )
}

/// The same cells of a grouped row ([`GroupRow`]): a group has the
/// figures an upstream has.
pub fn group_figure_cells(row: &GroupRow) -> [String; 8] {
    figures_as_text(
        row.rps,
        row.success,
        [row.p50, row.p90, row.p99, row.max],
        (row.requests, row.failures),
    )
}

/// RPS, SUCCESS, P50, P90, P99, MAX, REQUESTS and FAILURES as text.
fn figures_as_text(
    rps: f64,
    success: Option<f64>,
    latencies: [Option<u64>; 4],
    (requests, failures): (u64, u64),
) -> [String; 8] {
    let [p50, p90, p99, max] = latencies.map(format_latency);
    [
        format_rps(rps),
        format_success(success),
        p50,
        p90,
        p99,
        max,
        requests.to_string(),
        failures.to_string(),
    ]
}

/// How long ago a stale row's last `stats` came: `12s`, `3m`, `2h`.
pub fn stale_age(seconds: i64) -> String {
    match seconds {
        ..120 => format!("{seconds}s"),
        120..7200 => format!("{}m", seconds / 60),
        _ => format!("{}h", seconds / 3600),
    }
}

/// A latency in microseconds with units: `850µs`, `3.2ms`, `1.25s`.
pub fn format_latency(micros: Option<u64>) -> String {
    match micros {
        None => "-".into(),
        Some(us) if us < 1_000 => format!("{us}µs"),
        Some(us) if us < 10_000 => format!("{:.2}ms", us as f64 / 1_000.0),
        Some(us) if us < 1_000_000 => format!("{:.1}ms", us as f64 / 1_000.0),
        Some(us) => format!("{:.2}s", us as f64 / 1_000_000.0),
    }
}

/// A success rate as a percentage: `85.1%`, or `-` without requests.
pub fn format_success(success: Option<f64>) -> String {
    success.map_or("-".into(), |s| format!("{:.1}%", s * 100.0))
}

/// A rate: `12.3`, `1234`.
pub fn format_rps(rps: f64) -> String {
    if rps < 100.0 {
        format!("{rps:.1}")
    } else {
        format!("{rps:.0}")
    }
}

/// The plain-text upstream table of `--headless` and replay: a header line,
/// then one aligned line per upstream, sorted by direction and authority
/// (STALE: seconds since the last `stats` of a row whose sidecars are all
/// gone, else `-`; CALLERS: who calls its authority, see [`callers_label`],
/// unless the filter does not apply to edges),
/// and, when the figures are counted from events, a last line saying so
/// (see [`Figures::label`]).
pub fn headless_table(model: &Model, window: Window, filter: &FilterExpr) -> String {
    let mut rows = model.upstream_rows(window, filter, false);
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    let mut header: Vec<&str> = SortColumn::ALL.into_iter().map(header).collect();
    header.push("STALE");
    // Not under a filter edges do not take.
    let callers = model.callers(window, filter);
    if callers.is_some() {
        header.push("CALLERS");
    }
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![r.key.direction.to_string(), r.key.authority.clone()];
            cells.extend(figure_cells(r));
            cells.push(r.stale.map_or_else(|| "-".to_owned(), |s| format!("{s}s")));
            if let Some(callers) = &callers {
                cells.push(callers_label(callers.get(&r.key.authority)));
            }
            cells
        })
        .collect();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    // Text left-aligned, numbers right-aligned.
    let mut out = aligned(&header, &lines, &[0, 1, SortColumn::ALL.len() + 1]);
    if let Some(label) = model.figures(window, filter).label() {
        out.push_str(&format!("({label})\n"));
    }
    out
}

/// The plain-text table of `--headless --group-by`: the grouped rows
/// ([`Model::grouped`]) sorted by group, their names then the figures of
/// [`figure_cells`], and a last line saying what comes from events.
/// Grouped by authority, it is [`headless_table`].
pub fn headless_grouped_table(
    model: &Model,
    window: Window,
    filter: &FilterExpr,
    by: GroupBy,
) -> String {
    let Some(grouped) = model.grouped(by, window, filter) else {
        return headless_table(model, window, filter);
    };
    let mut rows = grouped.rows.clone();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    let names: &[&str] = match by {
        GroupBy::Route => &["DIRECTION", "AUTHORITY", "ROUTE"],
        GroupBy::Sidecar => &["SIDECAR"],
        GroupBy::Caller => &["CALLER"],
        GroupBy::Status | GroupBy::Authority => &["STATUS"],
    };
    let mut header: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    header.extend(SortColumn::ALL[2..].iter().map(|c| header_of(*c)));
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = match &r.key {
                GroupKey::Route { upstream, route } => vec![
                    upstream.direction.to_string(),
                    upstream.authority.clone(),
                    route.clone(),
                ],
                GroupKey::Sidecar(name) | GroupKey::Caller { name, .. } => vec![name.clone()],
                GroupKey::Status(class) => vec![class.label().to_owned()],
            };
            cells.extend(group_figure_cells(r));
            cells
        })
        .collect();
    let text: Vec<usize> = (0..names.len()).collect();
    let mut out = aligned(&header, &lines, &text);
    if let Some(label) = grouped.label() {
        out.push_str(&format!("({label})\n"));
    }
    out
}

fn header_of(column: SortColumn) -> String {
    header(column).to_owned()
}

/// Lines of cells in aligned columns, two spaces apart: the `text`
/// columns left-aligned, numbers right-aligned; trailing spaces trimmed.
fn aligned(header: &[String], lines: &[Vec<String>], text: &[usize]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| text_width(h)).collect();
    for line in lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(text_width(cell));
        }
    }
    let mut out = String::new();
    let mut push = |cells: &[String]| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = widths[i];
            let pad = width.saturating_sub(text_width(cell));
            if text.contains(&i) {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
            if i + 1 < cells.len() {
                line.push_str("  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push(header);
    for line in lines {
        push(line);
    }
    out
}

/// Callers named at most; more read as their count.
const CALLERS_NAMED: usize = 2;

/// The CALLERS cell of an upstream: its callers' names (from the edges),
/// `3 callers` when many, `-` when none is known.
pub fn callers_label(callers: Option<&Vec<String>>) -> String {
    match callers.map(Vec::as_slice) {
        None | Some([]) => "-".into(),
        Some(names) if names.len() <= CALLERS_NAMED => names.join(", "),
        Some(names) => format!("{} callers", names.len()),
    }
}

/// The callee as the Edges view and `--headless --view edges` show it:
/// the authority, and the sidecars that serve it when attached
/// (`web-svc.emojivoto:80 (web)`).
pub fn callee_label(row: &EdgeRow) -> String {
    if row.servers.is_empty() {
        row.authority.clone()
    } else {
        format!("{} ({})", row.authority, row.servers.join(", "))
    }
}

/// The headers of the edges table: OUT is the latency at the caller's
/// sidecar, IN at the callee's.
pub const EDGE_HEADERS: [&str; 9] = [
    "CALLER", "CALLEE", "RPS", "SUCCESS", "P50 OUT", "P99 OUT", "P50 IN", "P99 IN", "FAILURES",
];

/// The cells of an edge row, in the order of [`EDGE_HEADERS`].
pub fn edge_cells(row: &EdgeRow) -> [String; 9] {
    [
        row.caller.clone(),
        callee_label(row),
        format_rps(row.rps),
        format_success(row.success),
        format_latency(row.caller_p50),
        format_latency(row.caller_p99),
        format_latency(row.callee_p50),
        format_latency(row.callee_p99),
        row.failures.to_string(),
    ]
}

/// The plain-text edges table of `--headless --view edges`: the Edges
/// view's columns, one line per edge sorted by caller and callee; a filter
/// edges do not take gives one line saying why instead.
pub fn headless_edges_table(model: &Model, window: Window, filter: &FilterExpr) -> String {
    let mut rows = match &*model.edges(window, filter) {
        Ok(rows) => rows.clone(),
        Err(why) => return format!("({why})\n"),
    };
    rows.sort_by(|a, b| (&a.caller, &a.authority).cmp(&(&b.caller, &b.authority)));
    let header: Vec<String> = EDGE_HEADERS.iter().map(|h| (*h).to_owned()).collect();
    let lines: Vec<Vec<String>> = rows.iter().map(|r| edge_cells(r).to_vec()).collect();
    aligned(&header, &lines, &[0, 1])
}

/// Seconds the TREND column covers.
pub use super::model::TREND_SECONDS;
/// Seconds each character of the TREND column sums.
pub const TREND_STEP: usize = 5;
/// Columns of the failure-share bar beside FAILURES: all of them is 100 %.
pub const FAILURE_BAR_WIDTH: usize = 4;

const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const EIGHTHS: [char; 7] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/// The TREND cell: `per_second` requests (oldest first) summed
/// [`TREND_STEP`] seconds to a character and drawn with `▁`…`█`, each row
/// scaled to its own peak (the RPS column already compares rows; the trend
/// says whether this one is rising, falling or bursty). A step without
/// requests is a blank, so a row without traffic is blank, not a flat bar;
/// any traffic shows at least `▁`.
pub fn trend_cell(per_second: &[u64]) -> String {
    let steps: Vec<u64> = per_second
        .chunks(TREND_STEP)
        .map(|chunk| chunk.iter().fold(0u64, |sum, n| sum.saturating_add(*n)))
        .collect();
    let peak = steps.iter().copied().max().unwrap_or(0);
    steps
        .iter()
        .map(|&n| {
            if n == 0 || peak == 0 {
                ' '
            } else {
                // 1..=8 eighths of the peak, rounded up.
                let level = (u128::from(n) * 8).div_ceil(u128::from(peak)).clamp(1, 8);
                LEVELS[level as usize - 1]
            }
        })
        .collect()
}

/// The bar beside FAILURES: the window's share of failed requests (what
/// SUCCESS leaves), [`FAILURE_BAR_WIDTH`] columns for 100 % in eighths of
/// a column, any failure at least `▏`; blanks without failures or without
/// requests in the window. Always [`FAILURE_BAR_WIDTH`] columns wide, so
/// the bars of a column line up.
pub fn failure_bar(success: Option<f64>) -> String {
    let share = success.map_or(0.0, |s| (1.0 - s).clamp(0.0, 1.0));
    let total = FAILURE_BAR_WIDTH * 8;
    let eighths = if share > 0.0 {
        ((share * total as f64).ceil() as usize).clamp(1, total)
    } else {
        0
    };
    let mut bar: String = "█".repeat(eighths / 8);
    if eighths % 8 > 0 {
        bar.push(EIGHTHS[eighths % 8 - 1]);
    }
    let used = eighths.div_ceil(8);
    bar.push_str(&" ".repeat(FAILURE_BAR_WIDTH - used));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trend_is_scaled_to_its_peak_and_blank_without_traffic() {
        assert_eq!(trend_cell(&[0; 60]), " ".repeat(12));
        let mut rising = vec![0u64; 60];
        for (i, n) in rising.iter_mut().enumerate() {
            *n = (i / 5) as u64;
        }
        assert_eq!(trend_cell(&rising), " ▁▂▃▃▄▅▆▆▇██");
        assert_eq!(trend_cell(&[1, 0, 0, 0, 0, 1000, 0, 0, 0, 0]), "▁█");
    }

    #[test]
    fn the_failure_bar_is_the_failed_share_in_eighths() {
        assert_eq!(failure_bar(None), "    ");
        assert_eq!(failure_bar(Some(1.0)), "    ");
        assert_eq!(failure_bar(Some(0.0)), "████");
        assert_eq!(failure_bar(Some(0.999)), "▏   ");
        assert_eq!(failure_bar(Some(0.85)), "▋   ");
        assert_eq!(failure_bar(Some(0.7)), "█▎  ");
        assert_eq!(failure_bar(Some(0.5)), "██  ");
    }
}
