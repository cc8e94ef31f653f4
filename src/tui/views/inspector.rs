//! The request inspector, over the view `enter` was pressed in: one
//! request whole — when, where, who called, what was asked and answered,
//! why it failed, its timing as a small timeline, its bytes and captured
//! headers — or (`c`) an equivalent command line. Long values wrap under
//! their label; nothing is cut.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::compact_count;
use crate::schema::{Direction, RequestEvent};
use crate::tui::format::{format_latency, text_width};
use crate::tui::input::{Inspector, RequestList, UiState};
use crate::tui::inspect::{REDACTED, command_line, explain, grpc_text, status_text};
use crate::tui::model::{Model, RequestCaller};

/// Columns of the labels, and the indent of the values and their wraps.
const LABEL: usize = 11;
/// The timeline's widest.
const TIMELINE: usize = 60;

pub struct InspectorView<'a> {
    pub model: &'a Model,
    pub ui: &'a UiState,
    pub inspector: &'a Inspector,
}

impl Widget for &InspectorView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.is_empty() {
            return;
        }
        let inspector = self.inspector;
        let [title, body] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        Line::from(self.title())
            .style(Style::new().reversed())
            .render(title, buf);
        let lines = lines(self.model, inspector, body.width);
        // Scrolled no further than the last line.
        let visible = usize::from(body.height);
        let scroll = inspector
            .scroll
            .min(lines.len().saturating_sub(visible.max(1)));
        let shown: Vec<Line> = lines.into_iter().skip(scroll).collect();
        Paragraph::new(shown).render(body, buf);
    }
}

/// The inspector's lines for a body `width` columns wide.
fn lines(model: &Model, inspector: &Inspector, width: u16) -> Vec<Line<'static>> {
    let width = usize::from(width);
    if inspector.command {
        let mut lines = vec![
            Line::from(
                "an equivalent command (c: back to the fields; y copies the request as JSON)",
            )
            .dim(),
            Line::raw(""),
        ];
        lines.extend(
            command_line(&inspector.entry.event)
                .into_iter()
                .flat_map(|line| wrap(&line, width, 4))
                .map(|line| {
                    if line.starts_with('#') {
                        Line::from(line).dim()
                    } else {
                        Line::from(line)
                    }
                }),
        );
        lines
    } else {
        fields(model, &inspector.entry.event, width)
    }
}

/// How many lines the inspector has at this screen width: how far it
/// scrolls.
pub fn inspector_lines(model: &Model, inspector: &Inspector, width: u16) -> usize {
    lines(model, inspector, width).len()
}

impl InspectorView<'_> {
    /// Which request of which list, and whether it is still in that list.
    fn title(&self) -> String {
        let inspector = self.inspector;
        let list = match &inspector.list {
            RequestList::Tap => "the tap".to_owned(),
            RequestList::Failures(group) => format!(
                "failures of {} {} {}",
                group.upstream.authority, group.route, group.kind
            ),
        };
        let entries = self.ui.request_list(&inspector.list, self.model);
        let place = match entries.iter().position(|(seq, _)| *seq == inspector.seq) {
            Some(i) => format!("{} of {}", i + 1, entries.len()),
            None => "no longer kept".to_owned(),
        };
        format!(" request {place} in {list} ")
    }
}

/// The request's fields, a label and its value per line, values wrapped
/// under themselves.
fn fields(model: &Model, event: &RequestEvent, width: usize) -> Vec<Line<'static>> {
    let mut lines: Vec<Line<'static>> = Vec::new();
    let field = |lines: &mut Vec<Line<'static>>, label: &str, value: String, style: Style| {
        let value_width = width.saturating_sub(LABEL).max(8);
        for (i, piece) in wrap(&value, value_width, 0).into_iter().enumerate() {
            let label = if i == 0 { label } else { "" };
            lines.push(Line::from(vec![
                Span::raw(format!(" {label:<width$}", width = LABEL - 1)).bold(),
                Span::styled(piece, style),
            ]));
        }
    };
    let plain = Style::new();
    let failed = if event.is_failure() {
        Style::new().red()
    } else {
        plain
    };
    field(&mut lines, "time", event.ts.clone(), plain);
    let hop = match event.direction {
        Direction::Outbound => format!(
            "{}, outbound (leaving {}'s pod)",
            event.sidecar, event.sidecar
        ),
        Direction::Inbound => format!(
            "{}, inbound (entering {}'s pod)",
            event.sidecar, event.sidecar
        ),
    };
    field(&mut lines, "sidecar", hop, plain);
    field(&mut lines, "protocol", event.protocol.to_string(), plain);
    field(&mut lines, "client", client_text(model, event), plain);
    field(
        &mut lines,
        "server",
        event
            .server
            .clone()
            .unwrap_or_else(|| "- (not connected)".into()),
        plain,
    );
    field(
        &mut lines,
        "request",
        format!(
            "{} {}",
            event.method.as_deref().unwrap_or("-"),
            event.authority
        ),
        plain,
    );
    field(
        &mut lines,
        "path",
        event.path.clone().unwrap_or_else(|| "-".into()),
        plain,
    );
    let status = event
        .status
        .map_or_else(|| "- (no response)".to_owned(), status_text);
    let status_style = if event.status.is_some_and(|s| s >= 500) {
        failed
    } else {
        plain
    };
    field(&mut lines, "status", status, status_style);
    if let Some(code) = event.grpc_status {
        let style = if code == 0 { plain } else { failed };
        field(
            &mut lines,
            "grpc",
            grpc_text(code, event.grpc_message.as_deref()),
            style,
        );
    } else if let Some(message) = &event.grpc_message {
        field(&mut lines, "grpc", message.clone(), plain);
    }
    if let Some(kind) = &event.error {
        field(&mut lines, "error", explain(kind, event), failed);
    }
    let (duration, ttfb) = (micros(event.duration_ms), event.ttfb_ms.map(micros));
    let timing = match ttfb {
        Some(ttfb) => format!(
            "{} in all; the first byte of the response after {}",
            format_latency(Some(duration)),
            format_latency(Some(ttfb))
        ),
        None => format!(
            "{} in all; no response came",
            format_latency(Some(duration))
        ),
    };
    field(&mut lines, "duration", timing, plain);
    let bar_width = width.saturating_sub(LABEL + 1).min(TIMELINE);
    if bar_width >= 10 {
        for line in timeline(duration, ttfb, bar_width) {
            let mut spans = vec![Span::raw(" ".repeat(LABEL))];
            spans.extend(line.spans);
            lines.push(Line::from(spans));
        }
    }
    field(
        &mut lines,
        "bytes",
        format!(
            "{} sent, {} received (bodies are not recorded)",
            bytes(event.req_bytes),
            bytes(event.resp_bytes)
        ),
        plain,
    );
    match &event.headers {
        None => field(
            &mut lines,
            "headers",
            "none captured (the sidecar's --capture-header names which)".into(),
            Style::new().dim(),
        ),
        Some(headers) if headers.is_empty() => field(
            &mut lines,
            "headers",
            "none of those the sidecar captures were sent".into(),
            Style::new().dim(),
        ),
        Some(headers) => {
            for (i, (name, value)) in headers.iter().enumerate() {
                let label = if i == 0 { "headers" } else { "" };
                if value == REDACTED {
                    field(
                        &mut lines,
                        label,
                        format!("{name}: {REDACTED} (a secret: the sidecar never records it)"),
                        Style::new().dim(),
                    );
                } else {
                    field(&mut lines, label, format!("{name}: {value}"), plain);
                }
            }
        }
    }
    lines
}

/// The client address, and who it is when the sidecars say (see
/// [`Model::request_caller`]).
fn client_text(model: &Model, event: &RequestEvent) -> String {
    let who = match model.request_caller(event) {
        RequestCaller::App => format!("{}'s app", event.sidecar),
        RequestCaller::Sidecar(name) => format!("{name}'s pod"),
        RequestCaller::OneOf(names) => format!("the pod of one of {}", names.join(", ")),
        RequestCaller::Unknown => return event.client.clone(),
    };
    format!("{} ({who})", event.client)
}

/// Milliseconds to whole microseconds.
fn micros(ms: f64) -> u64 {
    (ms * 1000.0).round().max(0.0) as u64
}

/// `312 B`, `1.2k B`.
fn bytes(n: u64) -> String {
    format!("{} B", compact_count(n))
}

/// The request's time drawn to scale: waiting for the first byte (`█`),
/// then the rest of the response (`░`), with a legend.
fn timeline(duration: u64, ttfb: Option<u64>, width: usize) -> Vec<Line<'static>> {
    let waited = match ttfb {
        Some(ttfb) if duration > 0 => {
            ((ttfb.min(duration) as f64 / duration as f64) * width as f64).round() as usize
        }
        Some(_) => width,
        None => width,
    };
    let rest = width - waited.min(width);
    let bar = Line::from(vec![
        Span::raw("█".repeat(waited.min(width))).cyan(),
        Span::raw("░".repeat(rest)).cyan(),
    ]);
    let legend = match ttfb {
        Some(ttfb) => format!(
            "█ until the first byte {}   ░ the rest {}",
            format_latency(Some(ttfb)),
            format_latency(Some(duration.saturating_sub(ttfb)))
        ),
        None => "█ waiting: no response came".to_owned(),
    };
    vec![bar, Line::from(legend).dim()]
}

/// `text` in pieces of at most `width` terminal columns, the pieces after
/// the first indented by `indent` (within the width).
fn wrap(text: &str, width: usize, indent: usize) -> Vec<String> {
    let width = width.max(indent + 8);
    let mut pieces = Vec::new();
    let mut piece = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = text_width(c.encode_utf8(&mut [0; 4]));
        if used + w > width && !piece.is_empty() {
            pieces.push(std::mem::take(&mut piece));
            piece.push_str(&" ".repeat(indent));
            used = indent;
        }
        piece.push(c);
        used += w;
    }
    pieces.push(piece);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_wrap_whole() {
        let path = "/emojivoto.v1.VotingService/VoteDoughnut";
        let pieces = wrap(path, 16, 0);
        assert_eq!(pieces.concat(), path);
        assert!(pieces.iter().all(|p| text_width(p) <= 16));
        let indented = wrap("abcdefghijklmnopqrstuvwxyz", 10, 2);
        assert!(indented[1].starts_with("  "));
        assert_eq!(
            indented.concat().replace(' ', ""),
            "abcdefghijklmnopqrstuvwxyz"
        );
    }

    #[test]
    fn the_timeline_is_to_scale() {
        let lines = timeline(20_000, Some(15_000), 40);
        let bar: String = lines[0].spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(bar.chars().filter(|&c| c == '█').count(), 30);
        assert_eq!(bar.chars().filter(|&c| c == '░').count(), 10);
    }
}
