//! A latency histogram you can read: counts on a y-axis, round bucket
//! bounds with their units on the x-axis, and p50, p90 and p99 marked
//! under the buckets that hold them, over the panel's whole width.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::compact_count;
use crate::tui::format::{format_latency, text_width};
use crate::tui::model::{Distribution, Scale};

/// Columns per bucket the panel asks the model for: room for a bar, a gap
/// and most bound labels.
pub const COLUMNS_PER_BUCKET: u16 = 6;

/// Bar heights in eighths of a row.
const EIGHTHS: [char; 8] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇'];

/// The buckets a panel of `width` columns has room for.
pub fn buckets_for(width: u16) -> usize {
    usize::from(width.saturating_sub(6) / COLUMNS_PER_BUCKET).max(1)
}

/// The quantiles' names and colours, in the order of
/// [`Distribution::quantiles`].
const MARKERS: [(&str, Color); 3] = [
    ("p50", Color::Green),
    ("p90", Color::Yellow),
    ("p99", Color::Red),
];

/// A histogram's title: the window it covers, how many requests, and
/// their percentiles and maximum.
pub fn title(distribution: Option<&Distribution>, window: &str) -> Line<'static> {
    let Some(d) = distribution else {
        return Line::from(format!(" latency, last {window} "));
    };
    let mut spans = vec![Span::raw(format!(
        " latency, last {window}, {} requests: ",
        d.total
    ))];
    for ((name, color), q) in MARKERS.iter().zip(d.quantiles) {
        spans.push(Span::styled(
            format!("{name} {}", format_latency(Some(q))),
            Style::new().fg(*color),
        ));
        spans.push(Span::raw(" "));
    }
    spans.push(Span::raw(format!("max {} ", format_latency(Some(d.max)))));
    Line::from(spans)
}

pub struct LatencyHistogram<'a> {
    pub distribution: &'a Distribution,
}

impl Widget for LatencyHistogram<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let d = self.distribution;
        if area.height < 3 || area.width < 12 || d.buckets.is_empty() {
            return;
        }
        let peak = d.buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1);
        let peak_label = compact_count(peak);
        let gutter = text_width(&peak_label) as u16 + 1;
        let plot = Rect {
            x: area.x + gutter,
            y: area.y,
            width: area.width - gutter,
            height: area.height - 2,
        };
        let axis_y = plot.y + plot.height;
        let markers_y = axis_y + 1;

        // The y-axis: the peak at the top, half of it midway, zero at the
        // foot.
        let rows = u64::from(plot.height);
        for row in 0..plot.height {
            let y = plot.y + row;
            let label = if row == 0 {
                Some(peak_label.clone())
            } else if rows >= 4 && u64::from(row) == rows / 2 {
                Some(compact_count(peak - peak * u64::from(row) / rows))
            } else {
                None
            };
            let tick = if label.is_some() { "┤" } else { "│" };
            if let Some(label) = label {
                let x = area.x + gutter - 1 - text_width(&label) as u16;
                buf.set_string(x, y, &label, Style::new().dim());
            }
            buf.set_string(area.x + gutter - 1, y, tick, Style::new().dim());
        }

        let columns = bucket_columns(d, plot);
        let holder = d.quantiles.map(|q| d.bucket_of(q));
        for (i, (bucket, &(start, end))) in d.buckets.iter().zip(&columns).enumerate() {
            let style = match holder.iter().rposition(|h| *h == Some(i)) {
                Some(marker) => Style::new().fg(MARKERS[marker].1),
                None => Style::new().cyan(),
            };
            // A gap after each bar when there is room for one.
            let bar_end = if end - start >= 2 { end - 1 } else { end };
            let eighths = bucket.count * rows * 8 / peak;
            // A bucket with requests shows at least a sliver.
            let eighths = if bucket.count > 0 { eighths.max(1) } else { 0 };
            for row in 0..plot.height {
                let from_bottom = u64::from(plot.height - 1 - row);
                let fill = eighths.saturating_sub(from_bottom * 8).min(8) as usize;
                let glyph = if fill == 8 { '█' } else { EIGHTHS[fill] };
                if glyph == ' ' {
                    continue;
                }
                for x in start..bar_end {
                    buf[(x, plot.y + row)].set_char(glyph).set_style(style);
                }
            }
        }

        // The x-axis: each bucket's lower bound where it fits, and the last
        // bucket's upper bound at the end.
        buf.set_string(area.x + gutter - 1, axis_y, "└", Style::new().dim());
        let mut free_from = plot.x;
        let right = plot.x + plot.width;
        let mut labels: Vec<(u16, String)> = d
            .buckets
            .iter()
            .zip(&columns)
            .map(|(b, &(start, _))| (start, bound_label(b.lower_us)))
            .collect();
        if let Some(last) = d.buckets.last() {
            let label = bound_label(last.upper_us);
            labels.push((right.saturating_sub(text_width(&label) as u16), label));
        }
        for (x, label) in labels {
            let width = text_width(&label) as u16;
            if x >= free_from && x + width <= right {
                buf.set_string(x, axis_y, &label, Style::new().dim());
                free_from = x + width + 1;
            }
        }

        // The markers: ▲ under the column of each quantile, inside its
        // bucket (moved a column when two would share one), then each name
        // beside its ▲ where there is room, right or else left.
        let mut placed: Vec<(u16, &str, Style)> = Vec::new();
        for ((name, color), (q, bucket)) in MARKERS.iter().zip(d.quantiles.iter().zip(holder)) {
            let Some(bucket) = bucket else { continue };
            let (start, end) = columns[bucket];
            let mut x = marker_column(d, &columns, bucket, *q);
            let taken = |x: u16| placed.iter().any(|(at, _, _)| *at == x);
            if taken(x) {
                if x + 1 < end && !taken(x + 1) {
                    x += 1;
                } else if x > start && !taken(x - 1) {
                    x -= 1;
                }
            }
            let style = Style::new().fg(*color).bold();
            buf.set_string(x, markers_y, "▲", style);
            placed.push((x, name, style));
        }
        let mut occupied: Vec<(u16, u16)> = placed.iter().map(|(x, _, _)| (*x, *x + 1)).collect();
        let right_edge = area.x + area.width;
        for (x, name, style) in &placed {
            let len = name.len() as u16;
            let free = |from: u16, occupied: &[(u16, u16)]| {
                occupied.iter().all(|&(a, b)| from + len <= a || from >= b)
            };
            let at = if x + 1 + len <= right_edge && free(x + 1, &occupied) {
                Some(x + 1)
            } else if *x >= area.x + len && free(x - len, &occupied) {
                Some(x - len)
            } else {
                None
            };
            if let Some(at) = at {
                buf.set_string(at, markers_y, *name, *style);
                occupied.push((at, at + len));
            }
        }

        // How the buckets are laid out, at the right of the top row, or
        // else of the markers' row, wherever nothing is drawn there yet.
        let mut scale = d.scale.label().to_owned();
        if d.below + d.above > 0 {
            scale = format!("{scale}, {} below, {} above", d.below, d.above);
        }
        let width = text_width(&scale) as u16;
        if let Some(x) = right_edge.checked_sub(width)
            && x > plot.x
        {
            let blank = |y: u16, buf: &Buffer| {
                (x.saturating_sub(1)..right_edge).all(|at| buf[(at, y)].symbol() == " ")
            };
            if let Some(y) = [plot.y, markers_y].into_iter().find(|&y| blank(y, buf)) {
                buf.set_string(x, y, &scale, Style::new().dim());
            }
        }
    }
}

/// Each bucket's columns `[start, end)`, sharing the plot's whole width.
pub fn bucket_columns(d: &Distribution, plot: Rect) -> Vec<(u16, u16)> {
    let n = d.buckets.len().max(1) as u32;
    let width = u32::from(plot.width);
    (0..n)
        .map(|i| {
            let start = plot.x + (width * i / n) as u16;
            let end = plot.x + (width * (i + 1) / n) as u16;
            (start, end.max(start + 1))
        })
        .collect()
}

/// The column of `q` inside its bucket's columns: where it falls between
/// the bucket's bounds (log or linear, as the scale), never outside them.
pub fn marker_column(d: &Distribution, columns: &[(u16, u16)], bucket: usize, q: u64) -> u16 {
    let (start, end) = columns[bucket];
    let b = d.buckets[bucket];
    let share = match d.scale {
        Scale::Log => {
            let (low, high, q) = (
                (b.lower_us.max(1) as f64).ln(),
                (b.upper_us.max(2) as f64).ln(),
                (q.max(1) as f64).ln(),
            );
            (q - low) / (high - low).max(f64::EPSILON)
        }
        Scale::Linear => {
            (q.saturating_sub(b.lower_us)) as f64 / (b.upper_us - b.lower_us).max(1) as f64
        }
    };
    let span = f64::from(end - start - 1);
    start + (share.clamp(0.0, 1.0) * span).round() as u16
}

/// A bucket bound with an unambiguous unit: `100µs`, `1.5ms`, `20ms`, `2s`.
pub fn bound_label(micros: u64) -> String {
    let trim = |value: f64, unit: &str| {
        let text = format!("{value:.2}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text}{unit}")
    };
    match micros {
        0..1_000 => format!("{micros}µs"),
        1_000..1_000_000 => trim(micros as f64 / 1e3, "ms"),
        _ => trim(micros as f64 / 1e6, "s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::stats::new_latency_histogram;
    use crate::tui::model::distribution::distribution;

    /// The rendered text of row `y`.
    fn row(buf: &Buffer, y: u16) -> String {
        (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect()
    }

    #[test]
    fn each_marker_sits_under_the_bucket_that_holds_its_quantile() {
        for scale in [Scale::Log, Scale::Linear] {
            let mut h = new_latency_histogram();
            for i in 0..1_000u64 {
                // Most near 2 ms, a tail to 80 ms.
                let v = if i % 50 == 0 {
                    80_000 - i
                } else {
                    1_500 + i * 3
                };
                h.record(v).expect("in range");
            }
            let area = Rect::new(0, 0, 90, 12);
            let d = distribution(&h, scale, buckets_for(area.width)).expect("requests");
            let mut buf = Buffer::empty(area);
            LatencyHistogram { distribution: &d }.render(area, &mut buf);
            let markers = row(&buf, area.height - 1);
            let peak = compact_count(d.buckets.iter().map(|b| b.count).max().unwrap_or(1));
            let gutter = text_width(&peak) as u16 + 1;
            let plot = Rect::new(gutter, 0, area.width - gutter, area.height - 2);
            let columns = bucket_columns(&d, plot);
            for (i, name) in ["p50", "p90", "p99"].iter().enumerate() {
                let bucket = d.bucket_of(d.quantiles[i]).expect("held");
                let x = marker_column(&d, &columns, bucket, d.quantiles[i]);
                let (start, end) = columns[bucket];
                assert!((start..end).contains(&x), "{scale:?} {name}");
                // Its ▲, in its colour, there or beside it when two
                // quantiles share a column.
                let color = MARKERS[i].1;
                let near = [x.saturating_sub(1), x, x + 1];
                assert!(
                    near.iter().any(|&at| (start..end).contains(&at)
                        && buf[(at, area.height - 1)].symbol() == "▲"
                        && buf[(at, area.height - 1)].fg == color),
                    "{scale:?} {name}:\n{markers}"
                );
            }
            // Counts on the y-axis, bounds with units on the x-axis.
            assert!(row(&buf, 0).starts_with(&peak), "{}", row(&buf, 0));
            let axis = row(&buf, area.height - 2);
            assert!(axis.contains("ms"), "{axis}");
        }
    }

    #[test]
    fn bounds_say_their_unit_and_never_m_alone() {
        assert_eq!(bound_label(100), "100µs");
        assert_eq!(bound_label(1_000), "1ms");
        assert_eq!(bound_label(1_500), "1.5ms");
        assert_eq!(bound_label(20_000), "20ms");
        assert_eq!(bound_label(2_000_000), "2s");
        assert_eq!(bound_label(21_337), "21.34ms");
    }
}
