//! Widgets that draw the model of `meshtop attach`: header, tabs, the six views and overlays.
//!
//! Every widget reads a [`Model`] and a [`UiState`] and nothing else: no
//! wall clock (ages and uptimes use the model clock), no terminal, no
//! mutation, so a frame is a function of the two and render tests are
//! exact. Tables fit their columns to the width they get, dropping the
//! least important first (`grid`), and every widget draws into any area,
//! down to 0×0.
//!
//! - this file: [`draw`], the screen layout, header, tab bar, status line
//!   and the help overlay;
//! - one file per view: `upstreams` (and `grouped`, its rows grouped by
//!   `b`), `detail`, `errors`, `tap`, `sidecars`, `edges`, and
//!   `inspector`, drawn over the view a request was opened from;
//! - `grid`: the width-fitting table they all use.

mod detail;
mod edges;
mod errors;
mod grid;
mod grouped;
mod histogram;
mod inspector;
mod sidecars;
mod tap;
mod upstreams;

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Tabs, Widget, Wrap};

pub use detail::DetailView;
pub use edges::EdgesView;
pub use errors::ErrorsView;
pub use inspector::{InspectorView, inspector_lines};
pub use sidecars::SidecarsView;
pub use tap::TapView;
pub use upstreams::UpstreamsView;

use super::format::{format_latency, format_rps, format_success};
use super::input::{Tab, UiState};
use super::keys::{self, Context};
use super::model::{Model, SourceState};
use crate::telemetry::Direction;
use grid::text_width;

/// Below this success rate a row is red.
const SUCCESS_RED: f64 = 0.95;
/// Below this success rate a row is yellow.
const SUCCESS_YELLOW: f64 = 0.99;
/// Views narrower than this write directions as `in` / `out`, leaving the
/// columns to authorities.
const WIDE: u16 = 120;
/// At most this many lines of a rejected filter's error are shown.
const FILTER_ERROR_LINES: usize = 3;
const FILTER_PROMPT: &str = "filter> ";

/// Draws one frame: the whole screen, and the terminal cursor in the filter
/// input while it is being edited.
pub fn draw(frame: &mut Frame, model: &Model, ui: &UiState) {
    let area = frame.area();
    frame.render_widget(&Screen { model, ui }, area);
    if let Some(position) = filter_cursor(area, ui) {
        frame.set_cursor_position(position);
    }
}

/// The whole screen: header, tab bar, the current view, the status line,
/// and the help overlay on top when it is open.
pub struct Screen<'a> {
    pub model: &'a Model,
    pub ui: &'a UiState,
}

impl Widget for &Screen<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (model, ui) = (self.model, self.ui);
        let banner = NotLiveBanner::new(model, ui);
        let layout = ScreenLayout::new(area, ui, banner.is_some());
        Widget::render(&Header { model, ui }, layout.header, buf);
        Widget::render(&TabBar { ui }, layout.tabs, buf);
        if let Some(banner) = &banner {
            Widget::render(banner, layout.banner, buf);
        }
        let body = layout.body;
        match &ui.inspector {
            Some(inspector) => {
                Widget::render(
                    &InspectorView {
                        model,
                        ui,
                        inspector,
                    },
                    body,
                    buf,
                );
            }
            None => match ui.tab {
                Tab::Upstreams => Widget::render(&UpstreamsView { model, ui }, body, buf),
                Tab::Detail => Widget::render(&DetailView { model, ui }, body, buf),
                Tab::Errors => Widget::render(&ErrorsView { model, ui }, body, buf),
                Tab::Tap => Widget::render(&TapView { model, ui }, body, buf),
                Tab::Sidecars => Widget::render(&SidecarsView { model, ui }, body, buf),
                Tab::Edges => Widget::render(&EdgesView { model, ui }, body, buf),
            },
        }
        if let Some(progress) = &ui.replay {
            Widget::render(&ReplayBar { progress }, layout.replay, buf);
        }
        Widget::render(&StatusLine { ui }, layout.status, buf);
        if ui.help {
            let help = HelpOverlay {
                context: ui.browse_context(),
            };
            Widget::render(&help, area, buf);
        }
    }
}

/// The rows of the screen: header, tab bar, the view, and the status line
/// (taller while a rejected filter's error is shown under the input).
struct ScreenLayout {
    header: Rect,
    tabs: Rect,
    /// The sidecars that are not live (empty when all are).
    banner: Rect,
    body: Rect,
    /// The replay progress bar (empty when live).
    replay: Rect,
    status: Rect,
}

impl ScreenLayout {
    fn new(area: Rect, ui: &UiState, banner: bool) -> Self {
        let error_lines = match (&ui.filter_input, &ui.filter_error) {
            (Some(_), Some(error)) => {
                let width = usize::from(area.width).max(1);
                text_width(error)
                    .div_ceil(width)
                    .clamp(1, FILTER_ERROR_LINES)
            }
            _ => 0,
        };
        let status_height = u16::try_from(1 + error_lines).unwrap_or(1);
        let replay_height = u16::from(ui.replay.is_some());
        let [header, tabs, banner, body, replay, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(u16::from(banner)),
            Constraint::Min(0),
            Constraint::Length(replay_height),
            Constraint::Length(status_height),
        ])
        .areas(area);
        ScreenLayout {
            header,
            tabs,
            banner,
            body,
            replay,
            status,
        }
    }
}

/// Where the terminal cursor goes while the filter is edited: after the
/// typed text, or at the edge when that is off screen.
fn filter_cursor(area: Rect, ui: &UiState) -> Option<Position> {
    let input = ui.filter_input.as_deref()?;
    let status = ScreenLayout::new(area, ui, false).status;
    if status.is_empty() {
        return None;
    }
    let column = text_width(FILTER_PROMPT) + text_width(input);
    let x = status
        .x
        .saturating_add(u16::try_from(column).unwrap_or(u16::MAX));
    Some(Position::new(x.min(status.right() - 1), status.y))
}

/// The header line: live sidecars out of attached, total rate, success rate
/// and p99 over the window, the window, the filter, and the PAUSED and
/// ● REC markers, which keep their place when the line is too long.
pub struct Header<'a> {
    pub model: &'a Model,
    pub ui: &'a UiState,
}

impl Widget for &Header<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (model, ui) = (self.model, self.ui);
        let summary = model.summary(ui.window, &ui.filter);
        let live = model.live_sidecars();
        let attached = model.sidecars().len();
        let live_style = if live < attached {
            Style::new().yellow()
        } else {
            Style::new().green()
        };
        // A replay is never live: it says where it is instead.
        let source = match &ui.replay {
            Some(p) => {
                let state = if p.finished {
                    "  end"
                } else if p.paused {
                    "  paused"
                } else {
                    ""
                };
                Span::styled(
                    format!(
                        "replay {} / {} {}{state}",
                        replay_clock(p.position),
                        replay_clock(p.length),
                        p.speed.label()
                    ),
                    Style::new().cyan(),
                )
            }
            None => Span::styled(format!("{live}/{attached} live"), live_style),
        };
        let mut figures = vec![
            source,
            Span::raw(format!("  {} rps", format_rps(summary.rps))),
            Span::raw("  "),
            Span::styled(
                format!("{} ok", format_success(summary.success)),
                success_style(summary.success),
            ),
            Span::raw(format!("  p99 {}", format_latency(summary.p99))),
            // Last: the first to shorten when the line is short.
            Span::raw(format!("  window {}", ui.window.label())),
        ];
        // What the figures are (from events, failures only) says more than
        // the filter's whole text: where the line is short, the filter is
        // cut to make room for them (`/` shows it whole).
        let mut notes = Vec::new();
        if let Some(label) = model.figures(ui.window, &ui.filter).label() {
            notes.push(Span::raw(format!("  {label}")).yellow());
        }
        if ui.failures_only {
            notes.push(Span::raw("  failures only").red());
        }
        let mut markers = Vec::new();
        if ui.paused {
            markers.push(Span::raw(" PAUSED ").black().on_yellow().bold());
        }
        if ui.recording {
            markers.push(Span::raw(" ● REC ").red().bold());
        }
        let markers = Line::from(markers);
        let marker_width = markers.width();
        let filter_width = if ui.filter.is_empty() {
            0
        } else {
            "  filter ".len() + text_width(ui.filter.as_str())
        };
        let taken = |figures: &[Span]| {
            figures.iter().chain(&notes).map(Span::width).sum::<usize>() + marker_width + 1
        };
        if taken(&figures) + filter_width > usize::from(area.width) {
            // The window alone, the figures before it still say over what.
            if let Some(window) = figures.last_mut() {
                *window = Span::raw(format!("  {}", ui.window.label()));
            }
        }
        if !ui.filter.is_empty() {
            let room = usize::from(area.width).saturating_sub(taken(&figures) + "  filter ".len());
            let filter = grid::cut(ui.filter.as_str(), room.max(1), false);
            figures.push(Span::raw(format!("  filter {filter}")).cyan());
        }
        figures.extend(notes);
        // The name is the first thing to go when space is short.
        let badge = Span::raw(" meshtop ").bold().reversed();
        let figures_width: usize = figures.iter().map(Span::width).sum();
        if badge.width() + 1 + figures_width + marker_width <= usize::from(area.width) {
            figures.splice(0..0, [badge, Span::raw(" ")]);
        } else {
            figures.insert(0, Span::raw(" "));
        }
        let marker_width = u16::try_from(marker_width).unwrap_or(u16::MAX);
        let [left, right] =
            Layout::horizontal([Constraint::Min(0), Constraint::Length(marker_width)]).areas(area);
        Line::from(figures).render(left, buf);
        markers.right_aligned().render(right, buf);
    }
}

/// One line naming the sidecars that are not live, and why: a source that
/// never connected, or lost its connection, is never silent. Not shown in a
/// replay, whose sources are the recording.
pub struct NotLiveBanner {
    text: String,
}

impl NotLiveBanner {
    pub fn new(model: &Model, ui: &UiState) -> Option<NotLiveBanner> {
        if ui.replay.is_some() {
            return None;
        }
        let down: Vec<String> = model
            .sidecars()
            .iter()
            .filter(|s| s.state != SourceState::Live)
            .map(|s| {
                let why = match &s.state {
                    SourceState::Connecting if s.last_problem.is_none() => "connecting".to_owned(),
                    SourceState::Failed { reason } => format!("gave up: {reason}"),
                    _ => s.why_not_connected(),
                };
                // A sidecar never heard from is known by its target.
                let name = match &s.hello {
                    Some(hello) => hello.sidecar.name.as_str(),
                    None => s.target.as_str(),
                };
                format!("{name} ({why})")
            })
            .collect();
        (!down.is_empty()).then(|| NotLiveBanner {
            text: format!(" not live: {}", down.join(" · ")),
        })
    }
}

impl Widget for &NotLiveBanner {
    fn render(self, area: Rect, buf: &mut Buffer) {
        Line::from(self.text.as_str())
            .black()
            .on_yellow()
            .render(area, buf);
    }
}

/// The tab bar: `1 Upstreams │ 2 Detail │ …`, the current view highlighted;
/// the detail tab is dimmed while no upstream has been chosen.
pub struct TabBar<'a> {
    pub ui: &'a UiState,
}

impl Widget for &TabBar<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let titles = Tab::ALL.map(|tab| {
            let title = Line::from(format!("{} {}", tab.index() + 1, tab.title()));
            if tab == Tab::Detail && self.ui.detail.is_none() {
                title.dim()
            } else {
                title
            }
        });
        Tabs::new(titles)
            .select(self.ui.tab.index())
            .highlight_style(Style::new().bold().reversed())
            .divider("│")
            .render(area, buf);
    }
}

/// The bottom line: the filter input (with its error under it) while
/// editing, a hint after a key that could not act, else the main keys.
pub struct StatusLine<'a> {
    pub ui: &'a UiState,
}

impl Widget for &StatusLine<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let ui = self.ui;
        let [first, rest] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        if let Some(input) = &ui.filter_input {
            Line::from(vec![
                Span::raw(FILTER_PROMPT).cyan().bold(),
                Span::raw(input.as_str()),
            ])
            .render(first, buf);
            if let Some(error) = &ui.filter_error {
                Paragraph::new(error.as_str())
                    .red()
                    .wrap(Wrap { trim: false })
                    .render(rest, buf);
            }
            return;
        }
        if let Some(hint) = &ui.hint {
            Line::from(hint.as_str()).yellow().render(first, buf);
            return;
        }
        // While help is open the line still shows the keys of the view
        // under it, which is where esc returns.
        let toggles = keys::Toggles {
            paused: ui.paused,
            following: ui.tap_follow,
            linear: ui.latency_scale == crate::tui::model::Scale::Linear,
            command: ui.inspector.as_ref().is_some_and(|i| i.command),
        };
        let keys = keys::hints(ui.browse_context(), ui.tab, toggles);
        let mut spans: Vec<Span> = Vec::new();
        if let Some(note) = &ui.note {
            spans.push(Span::raw(note.as_str()).cyan());
            spans.push(Span::raw(" │ ").dim());
        }
        spans.extend(keys.into_iter().flat_map(|hint| {
            [
                Span::raw(hint.keys).bold(),
                Span::raw(format!(" {}  ", hint.text)).dim(),
            ]
        }));
        Line::from(spans).render(first, buf);
    }
}

/// The `?` overlay: every key that does something here (a replay's keys
/// in a replay, the inspector's in the inspector), and the filter syntax.
pub struct HelpOverlay {
    /// Where the keyboard is under the overlay.
    pub context: Context,
}

const HELP_FILTER: [&str; 5] = [
    "filter terms, all must hold, ! negates (docs/filters.md):",
    "  authority~TEXT  path~TEXT  method=GET  sidecar~TEXT  route~TEXT",
    "  client=IP  error=connect_refused  direction=inbound  status>=500",
    "  grpc!=0  latency>100ms  failed   e.g. route=\"GET /users/{id}\"",
    "  authority direction sidecar route: exact; others count events",
];

impl Widget for &HelpOverlay {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let keys = keys::help(self.context);
        let mut lines: Vec<Line> = keys
            .iter()
            .map(|(key, what)| {
                Line::from(vec![
                    Span::raw(format!(
                        " {key}{}",
                        " ".repeat(15usize.saturating_sub(text_width(key)))
                    ))
                    .bold(),
                    Span::raw(*what),
                ])
            })
            .collect();
        lines.push(Line::raw(""));
        lines.extend(
            HELP_FILTER
                .iter()
                .map(|text| Line::raw(format!(" {text}")).dim()),
        );
        let width = lines.iter().map(Line::width).max().unwrap_or(0) + 3;
        let height = lines.len() + 2;
        let popup = centered(area, width, height);
        if popup.is_empty() {
            return;
        }
        Clear.render(popup, buf);
        Paragraph::new(lines)
            .block(
                Block::bordered()
                    .title(" keys ")
                    .title_bottom(Line::from(" esc closes ").right_aligned()),
            )
            .render(popup, buf);
    }
}

/// A `width`×`height` rectangle in the middle of `area`, shrunk to fit.
fn centered(area: Rect, width: usize, height: usize) -> Rect {
    let width = u16::try_from(width).unwrap_or(u16::MAX).min(area.width);
    let height = u16::try_from(height).unwrap_or(u16::MAX).min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

fn success_style(success: Option<f64>) -> Style {
    match success {
        Some(s) if s < SUCCESS_RED => Style::new().red(),
        Some(s) if s < SUCCESS_YELLOW => Style::new().yellow(),
        _ => Style::new(),
    }
}

/// The direction column's header and cell text for a view `width` wide.
fn direction_header(width: u16) -> &'static str {
    if width < WIDE { "DIR" } else { "DIRECTION" }
}

fn direction_label(direction: Direction, width: u16) -> &'static str {
    match (direction, width < WIDE) {
        (Direction::Inbound, true) => "in",
        (Direction::Outbound, true) => "out",
        (direction, false) => direction.as_str(),
    }
}

/// The time of day of an RFC 3339 timestamp (`10:05:01`, or `10:05:01.123`
/// with milliseconds); the text as is when it does not look like one.
fn clock(ts: &str, millis: bool) -> &str {
    let Some((_, time)) = ts.split_once('T') else {
        return ts;
    };
    time.get(..if millis { 12 } else { 8 })
        .filter(|t| t.as_bytes().get(2) == Some(&b':'))
        .unwrap_or(time)
}

/// `950`, `1.2k`, `34k`, `5.6M`.
fn compact_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..10_000 => format!("{:.1}k", n as f64 / 1e3),
        10_000..1_000_000 => format!("{}k", n / 1_000),
        1_000_000..10_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{}M", n / 1_000_000),
    }
}

/// `m:ss` of a place in a recording.
fn replay_clock(d: std::time::Duration) -> String {
    format!("{}:{:02}", d.as_secs() / 60, d.as_secs() % 60)
}

/// The replay progress bar: position, length and speed.
struct ReplayBar<'a> {
    progress: &'a crate::tui::replay::Progress,
}

impl Widget for &ReplayBar<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.is_empty() {
            return;
        }
        let p = self.progress;
        let ratio = if p.length.is_zero() {
            1.0
        } else {
            (p.position.as_secs_f64() / p.length.as_secs_f64()).clamp(0.0, 1.0)
        };
        let state = if p.finished {
            "end"
        } else if p.paused {
            "paused"
        } else {
            "playing"
        };
        let label = format!(
            " {state} {} / {}  {}  (space pause, +/- speed, ←/→ seek 10s, g/G start/end) ",
            replay_clock(p.position),
            replay_clock(p.length),
            p.speed.label()
        );
        ratatui::widgets::LineGauge::default()
            .ratio(ratio)
            .label(label)
            .filled_style(ratatui::style::Style::default().fg(ratatui::style::Color::Cyan))
            .render(area, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_compact() {
        assert_eq!(compact_count(999), "999");
        assert_eq!(compact_count(1_234), "1.2k");
        assert_eq!(compact_count(56_789), "56k");
        assert_eq!(clock("2026-01-15T10:05:01.123456Z", true), "10:05:01.123");
        assert_eq!(clock("2026-01-15T10:05:01.123456Z", false), "10:05:01");
        assert_eq!(clock("2026-01-15T10:05Z", false), "10:05Z");
        assert_eq!(clock("garbage", false), "garbage");
    }

    #[test]
    fn popups_fit_inside_their_area() {
        let area = Rect::new(3, 4, 10, 5);
        assert_eq!(centered(area, 4, 3), Rect::new(6, 5, 4, 3));
        assert_eq!(centered(area, 40, 30), area);
        assert_eq!(centered(Rect::default(), 4, 3), Rect::new(0, 0, 0, 0));
    }
}
