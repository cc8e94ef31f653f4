//! View 5, Sidecars: every attached target (those a `sidecar` filter names)
//! with its connection state, who
//! the sidecar says it is, its uptime, how far its clock is off, event
//! rate, drops, restarts and invalid messages; the selected one in full
//! below.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget, Wrap};

use super::grid::{ALWAYS, Column, Grid, GridRow};
use crate::tui::input::UiState;
use crate::tui::model::{Model, SidecarState, SourceState, unix_seconds};

/// States and invalid-message reasons are cut early: the pane below the
/// table has them in full.
const TEXT_MIN: usize = 12;

pub struct SidecarsView<'a> {
    pub model: &'a Model,
    pub ui: &'a UiState,
}

impl Widget for &SidecarsView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (model, ui) = (self.model, self.ui);
        let sidecars = ui.sidecar_rows(model);
        let selected = sidecars
            .len()
            .checked_sub(1)
            .map(|last| ui.selected.sidecar.min(last));
        let rows = sidecars
            .iter()
            .map(|s| {
                let hello = s.hello.as_ref().map(|h| &h.sidecar);
                let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".into());
                GridRow {
                    cells: vec![
                        short_target(&s.target).to_owned(),
                        s.state.label(),
                        s.name().to_owned(),
                        or_dash(hello.and_then(|h| h.namespace.clone())),
                        or_dash(hello.map(|h| h.version.clone())),
                        uptime(s, model.now_sec()),
                        clock(s),
                        s.events_per_sec.to_string(),
                        s.dropped.to_string(),
                        s.restarts.to_string(),
                        s.invalid.to_string(),
                        or_dash(s.last_invalid.clone()),
                    ],
                    style: state_style(&s.state),
                }
            })
            .collect();
        let (table, detail) = if area.height >= 10 {
            let [table, detail] =
                Layout::vertical([Constraint::Min(0), Constraint::Length(5)]).areas(area);
            (table, Some(detail))
        } else {
            (area, None)
        };
        let columns = vec![
            Column::text("TARGET", ALWAYS),
            Column::text("STATE", ALWAYS).fill(),
            Column::text("NAME", ALWAYS),
            Column::text("NAMESPACE", 4),
            Column::text("VERSION", 3),
            Column::number("UPTIME", 6),
            Column::number("CLOCK", 3),
            Column::number("EVENTS/S", 7),
            Column::number("DROPPED", 8),
            Column::number("RESTARTS", 2),
            Column::number("INVALID", 5),
            Column::text("LAST INVALID", 1).fill(),
        ];
        Grid::new(columns, rows)
            .selected(selected)
            .empty("no sidecar matches the filter")
            .fill_min(TEXT_MIN)
            .render(table, buf);
        if let (Some(detail), Some(sidecar)) = (detail, selected.map(|i| sidecars[i])) {
            sidecar_detail(sidecar, model.evicted_upstreams()).render(detail, buf);
        }
    }
}

/// `127.0.0.1:15090` for the usual `ws://127.0.0.1:15090/events`; other
/// targets as they are.
fn short_target(target: &str) -> &str {
    target
        .strip_prefix("ws://")
        .and_then(|rest| rest.strip_suffix("/events"))
        .unwrap_or(target)
}

fn state_style(state: &SourceState) -> Style {
    match state {
        SourceState::Live => Style::new().green(),
        SourceState::Connecting | SourceState::Reconnecting { .. } => Style::new().yellow(),
        SourceState::Failed { .. } => Style::new().red(),
    }
}

fn sidecar_detail(sidecar: &SidecarState, evicted: u64) -> Paragraph<'_> {
    let mut lines = vec![Line::from(vec![
        Span::raw(format!("{} ", sidecar.target)).bold(),
        Span::styled(sidecar.state.label(), state_style(&sidecar.state)),
    ])];
    // What the subscription selects comes first: it says what the events
    // shown cover.
    match sidecar.subscription.as_deref() {
        Some("") => lines.push(Line::from("subscribed to every event")),
        Some(filter) => lines.push(Line::from(format!(
            "subscribed to the events that match: {filter} (the rest never leave the sidecar)"
        ))),
        None => {}
    }
    if let Some(hello) = &sidecar.hello {
        let listeners: Vec<String> = hello
            .listeners
            .iter()
            .map(|l| {
                let target = l.target.as_deref().unwrap_or("original destination");
                format!("{} {} → {target}", l.direction, l.addr)
            })
            .collect();
        let listeners = if listeners.is_empty() {
            "-".to_owned()
        } else {
            listeners.join(", ")
        };
        lines.push(Line::from(format!(
            "started {}; listeners: {listeners}",
            hello.sidecar.started_at
        )));
    }
    let last_invalid = sidecar
        .last_invalid
        .as_deref()
        .map(|reason| format!(", the last: {reason}"))
        .unwrap_or_default();
    // Types a newer sidecar sends are not invalid: this meshtop is older.
    let newer = if sidecar.newer > 0 {
        let last = sidecar
            .last_newer
            .as_deref()
            .map(|kind| format!(", the last \"{kind}\""))
            .unwrap_or_default();
        format!(
            "; {} of types newer than this meshtop{last} (upgrade to see them)",
            sidecar.newer
        )
    } else {
        String::new()
    };
    lines.push(Line::from(format!(
        "{} events received{newer}; {} invalid messages{last_invalid}",
        sidecar.events, sidecar.invalid
    )));
    if let Some(ms) = sidecar.clock_offset_ms.filter(|_| sidecar.clock_skewed()) {
        let way = if ms > 0 { "ahead of" } else { "behind" };
        lines.push(Line::from(format!(
            "its clock is {:.1}s {way} this machine's: its stats are placed by when they arrive",
            ms.unsigned_abs() as f64 / 1000.0
        )));
    }
    if evicted > 0 {
        lines.push(Line::from(format!(
            "{evicted} least recently active upstreams were dropped to stay within memory"
        )));
    }
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(Block::new().borders(Borders::TOP).title(" selected "))
}

/// Time since the sidecar's `started_at` (its own clock), at the model's
/// time on that clock.
fn uptime(sidecar: &SidecarState, now_sec: Option<i64>) -> String {
    let hello = sidecar.hello.as_ref();
    let started = hello.and_then(|h| unix_seconds(&h.sidecar.started_at));
    let offset = sidecar.clock_offset_ms.unwrap_or(0) / 1000;
    match (started, now_sec.map(|now| now.saturating_add(offset))) {
        (Some(started), Some(now)) if now >= started => format_duration(now - started),
        _ => "-".into(),
    }
}

/// How far the sidecar's clock is off the UI's: `ok` within the
/// tolerance, else the offset (`+120s`, `-4s`).
fn clock(sidecar: &SidecarState) -> String {
    match sidecar.clock_offset_ms {
        None => "-".into(),
        Some(_) if !sidecar.clock_skewed() => "ok".into(),
        Some(ms) => {
            let secs = ms / 1000;
            if secs.unsigned_abs() > 99_999 {
                format!(
                    "{}{}d",
                    if ms > 0 { '+' } else { '-' },
                    secs.unsigned_abs() / 86_400
                )
            } else {
                format!("{secs:+}s")
            }
        }
    }
}

/// `45s`, `12m05s`, `3h04m`, `2d03h`.
fn format_duration(seconds: i64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match seconds {
        ..60 => format!("{s}s"),
        60..3_600 => format!("{m}m{s:02}s"),
        3_600..86_400 => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_compact() {
        assert_eq!(format_duration(59), "59s");
        assert_eq!(format_duration(725), "12m05s");
        assert_eq!(format_duration(3_725), "1h02m");
        assert_eq!(format_duration(2 * 86_400 + 3 * 3_600), "2d03h");
    }

    #[test]
    fn usual_targets_are_shortened() {
        assert_eq!(
            short_target("ws://127.0.0.1:15090/events"),
            "127.0.0.1:15090"
        );
        assert_eq!(short_target("ws://web:15090/other"), "ws://web:15090/other");
    }
}
