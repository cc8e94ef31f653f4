//! The attach command: feeds the model from the sources and shows it, in
//! the terminal UI, as plain tables (`--headless`) or as JSON lines
//! (`--json`). Ingestion never waits for drawing: the loop takes feed items
//! as they come and draws at `--fps`.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use crossterm::event::{Event, EventStream, KeyEventKind};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::format::{headless_edges_table, headless_grouped_table};
use super::input::{Action, Tab, UiState};
use super::keys::PlayerCommand;
use super::model::{GroupBy, Model, Window};
use super::replay::{Control, Progress};
use super::source::{FeedItem, FeedKind, FeedReceiver};
use super::views;
use crate::filter::FilterExpr;
use crate::recording::{RecordingError, RecordingWriter};

/// How the attach command shows what it receives.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// The interactive terminal UI, starting on `view`.
    Tui { fps: u32, view: TableView },
    /// The `view`'s table as plain text every `interval` (if any), and on
    /// exit.
    Headless {
        interval: Option<Duration>,
        view: TableView,
    },
    /// Every message as a JSON line, tagged with its source.
    Json,
    /// Nothing shown: only recorded (`meshtop record`).
    Silent,
}

/// The table `--headless` prints, and the view the UI starts on
/// (`--view`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TableView {
    /// One row per upstream (view 1).
    #[default]
    Upstreams,
    /// One row per caller and callee (view 6).
    Edges,
}

impl TableView {
    fn tab(self) -> Tab {
        match self {
            TableView::Upstreams => Tab::Upstreams,
            TableView::Edges => Tab::Edges,
        }
    }
}

/// What the attach command was asked for.
pub struct ShowOptions {
    pub output: Output,
    pub filter: FilterExpr,
    /// Where a changed filter goes for the sources to subscribe with (see
    /// [`crate::tui::source::subscription`]); `None`: they keep theirs.
    pub subscription: Option<watch::Sender<FilterExpr>>,
    pub window: Window,
    /// How the Upstreams table (and the `--headless` table) groups rows.
    pub group_by: GroupBy,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Every message received is also written here (`--record`).
    pub recording: Option<RecordingWriter>,
    /// Set when the feed is a replay: the UI controls the player.
    pub replay: Option<ReplayHandle>,
    /// Kept at the head of the TUI's status line (see [`UiState::note`]).
    pub note: Option<String>,
}

/// The UI's end of a replay player.
#[derive(Debug)]
pub struct ReplayHandle {
    pub control: watch::Sender<Control>,
    pub progress: watch::Receiver<Progress>,
}

/// What a session ended with.
pub struct SessionEnd {
    pub model: Model,
    /// Messages written to the recording, or why recording stopped.
    pub recorded: Option<Result<u64, RecordingError>>,
}

/// Writes what a session receives to its recording, until the first error.
struct RecordingSink {
    writer: Option<RecordingWriter>,
    failed: Option<RecordingError>,
    /// The `t` last written: lines stay in order of `t`, though sources
    /// hand over what they received a few microseconds apart.
    last_t: Duration,
}

impl RecordingSink {
    fn write(&mut self, item: &FeedItem) -> Option<String> {
        let (Some(writer), FeedKind::Message { raw, received, .. }) =
            (self.writer.as_mut(), &item.kind)
        else {
            return None;
        };
        // When it was received, so that a replay places it where it was.
        let t = received
            .map_or_else(|| writer.elapsed(), |at| writer.t_of(at))
            .max(self.last_t);
        self.last_t = t;
        let result = writer.write(t, item.source, raw);
        self.check(result)
    }

    fn tick(&mut self) -> Option<String> {
        let result = self
            .writer
            .as_mut()
            .map_or(Ok(()), RecordingWriter::flush_if_due);
        self.check(result)
    }

    /// Stops recording on the first error; what was written stays readable.
    fn check(&mut self, result: Result<(), RecordingError>) -> Option<String> {
        let err = result.err()?;
        let message = format!("recording stopped: {err}");
        self.writer = None;
        self.failed = Some(err);
        Some(message)
    }

    fn finish(self) -> Option<Result<u64, RecordingError>> {
        match (self.writer, self.failed) {
            (_, Some(err)) => Some(Err(err)),
            (Some(writer), None) => Some(writer.finish()),
            (None, None) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    #[error("standard output is not a terminal: use --headless (plain tables) or --json")]
    NotATerminal,
    #[error("terminal: {0}")]
    Terminal(#[from] io::Error),
}

/// Feed items are taken for at most this long before the loop looks at
/// keys, signals, the deadline and the frame clock again. Each item's
/// work is bounded (every decoder bounds its input), so a sidecar sending
/// the worst it can delays a key by about this much, never more than a
/// fraction of a second.
const INGEST_SLICE: Duration = Duration::from_millis(20);

/// How long a session that ends takes in what its sources had already
/// received, at most.
const FINAL_DRAIN: Duration = Duration::from_millis(500);

/// How often the recording is given a chance to flush (it flushes what is
/// older than half a second, so a killed recorder loses at most a second).
const TAPE_TICK: Duration = Duration::from_millis(250);

/// Shows the feed of `targets` until the feed ends, `duration` passes,
/// `shutdown` is cancelled or the user quits. Returns the final model.
pub async fn show(
    targets: Vec<String>,
    mut feed: FeedReceiver,
    mut options: ShowOptions,
    shutdown: CancellationToken,
) -> Result<SessionEnd, ShowError> {
    let mut model = Model::new(targets.clone());
    let mut sink = RecordingSink {
        writer: options.recording.take(),
        failed: None,
        last_t: Duration::ZERO,
    };
    let mut tape_tick = tokio::time::interval(TAPE_TICK);
    let deadline = async {
        match options.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    match &options.output {
        Output::Json => {
            let mut out = io::BufWriter::new(io::stdout().lock());
            loop {
                tokio::select! {
                    item = feed.recv() => {
                        let Some(item) = item else { break };
                        if let Some(error) = sink.write(&item) {
                            eprintln!("meshtop: {error}");
                        }
                        if let FeedKind::Message { raw, message, .. } = &item.kind
                            && options.filter.keeps_message(message)
                        {
                            let source = targets.get(item.source).map_or("", String::as_str);
                            if write_json_line(&mut out, source, raw).is_err() {
                                break;
                            }
                            // Flush when the feed is idle, so a reader sees
                            // each message promptly without a write per line
                            // under load.
                            if feed.is_empty() && out.flush().is_err() {
                                break;
                            }
                        }
                        model.ingest(&item);
                    }
                    _ = tape_tick.tick() => {
                        if let Some(error) = sink.tick() {
                            eprintln!("meshtop: {error}");
                        }
                        if options.replay.is_none() {
                            model.tick(SystemTime::now());
                        }
                    }
                    _ = &mut deadline => break,
                    _ = shutdown.cancelled() => break,
                }
            }
            let _ = out.flush();
            Ok(SessionEnd {
                model,
                recorded: sink.finish(),
            })
        }
        Output::Headless { .. } | Output::Silent => {
            let (periodic, final_table, view) = match options.output {
                Output::Headless { interval, view } => (interval, true, view),
                _ => (None, false, TableView::Upstreams),
            };
            // Without periodic tables the ticker never fires in practice.
            let every = periodic.unwrap_or(Duration::from_secs(24 * 3600));
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let print = |model: &Model, periodic_tick: bool| {
                if (periodic_tick && periodic.is_some()) || (!periodic_tick && final_table) {
                    print_table(
                        model,
                        view,
                        options.window,
                        &options.filter,
                        options.group_by,
                    )
                } else {
                    Ok(())
                }
            };
            loop {
                tokio::select! {
                    item = feed.recv() => match item {
                        Some(item) => {
                            if let Some(error) = sink.write(&item) {
                                eprintln!("meshtop: {error}");
                            }
                            model.ingest(&item);
                        }
                        None => break,
                    },
                    _ = ticker.tick() => {
                        if print(&model, true).is_err() {
                            return Ok(SessionEnd { model, recorded: sink.finish() });
                        }
                    }
                    _ = tape_tick.tick() => {
                        if let Some(error) = sink.tick() {
                            eprintln!("meshtop: {error}");
                        }
                        if options.replay.is_none() {
                            model.tick(SystemTime::now());
                        }
                    }
                    _ = &mut deadline => break,
                    _ = shutdown.cancelled() => break,
                }
            }
            // Whatever was already queued belongs to the session too; not
            // what sources still send meanwhile (a flood would never end),
            // and not for longer than a moment.
            let queued = feed.len();
            let draining = Instant::now();
            for _ in 0..queued {
                if draining.elapsed() > FINAL_DRAIN {
                    eprintln!(
                        "meshtop: stopped taking in what was received after {}ms; the table leaves out the rest",
                        FINAL_DRAIN.as_millis()
                    );
                    break;
                }
                let Some(item) = feed.try_recv() else { break };
                if let Some(error) = sink.write(&item) {
                    eprintln!("meshtop: {error}");
                }
                model.ingest(&item);
            }
            let _ = print(&model, false);
            Ok(SessionEnd {
                model,
                recorded: sink.finish(),
            })
        }
        Output::Tui { fps, view } => {
            if !io::stdout().is_terminal() {
                return Err(ShowError::NotATerminal);
            }
            let mut ui = UiState::new(options.filter.clone());
            ui.window = options.window;
            ui.tab = view.tab();
            ui.group_by = options.group_by;
            ui.recording = sink.writer.is_some();
            ui.note = options.note.clone();
            let mut terminal = ratatui::try_init()?;
            let mut session = Session {
                model: &mut model,
                ui: &mut ui,
                sink: &mut sink,
                replay: options.replay.as_ref(),
                subscription: options.subscription.as_ref(),
            };
            let result = tui_loop(
                &mut terminal,
                &mut session,
                &mut feed,
                *fps,
                deadline,
                &shutdown,
            )
            .await;
            ratatui::restore();
            result?;
            Ok(SessionEnd {
                model,
                recorded: sink.finish(),
            })
        }
    }
}

/// What the terminal loop works on.
struct Session<'a> {
    model: &'a mut Model,
    ui: &'a mut UiState,
    sink: &'a mut RecordingSink,
    replay: Option<&'a ReplayHandle>,
    subscription: Option<&'a watch::Sender<FilterExpr>>,
}

async fn tui_loop(
    terminal: &mut ratatui::DefaultTerminal,
    session: &mut Session<'_>,
    feed: &mut FeedReceiver,
    fps: u32,
    deadline: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    let mut deadline = deadline;
    let mut keys = EventStream::new();
    let frame_every = Duration::from_secs(1) / fps.clamp(1, 120);
    let mut frames = tokio::time::interval(frame_every);
    frames.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tape_tick = tokio::time::interval(TAPE_TICK);
    // While paused the screen shows this copy; ingestion goes on.
    let mut frozen: Option<Box<Model>> = None;
    let mut feed_open = true;
    let mut seeks = 0u64;
    loop {
        tokio::select! {
            item = feed.recv(), if feed_open => match item {
                Some(item) => {
                    let slice = Instant::now();
                    session.ingest(&item);
                    while slice.elapsed() < INGEST_SLICE {
                        match feed.try_recv() {
                            Some(item) => session.ingest(&item),
                            None => break,
                        }
                    }
                }
                // Every source ended (a replay finished): keep showing.
                None => feed_open = false,
            },
            _ = frames.tick() => {
                if let Some(replay) = session.replay {
                    session.ui.replay = Some(*replay.progress.borrow());
                }
                let size = terminal.size()?;
                session.ui.page_rows = usize::from(size.height.saturating_sub(6)).max(1);
                session.ui.page_width = size.width;
                let shown = frozen.as_deref().unwrap_or(session.model);
                terminal.draw(|frame| views::draw(frame, shown, session.ui))?;
            }
            _ = tape_tick.tick() => {
                if let Some(error) = session.sink.tick() {
                    session.ui.recording = false;
                    session.ui.hint = Some(error);
                }
                if session.replay.is_none() {
                    session.model.tick(SystemTime::now());
                }
            }
            event = keys.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                    match session.ui.handle_key(key, frozen.as_deref().unwrap_or(session.model)) {
                        Action::Quit => return Ok(()),
                        Action::Player(command) => {
                            if let Some(replay) = session.replay {
                                replay_control(replay, command, &mut seeks);
                            }
                        }
                        Action::None | Action::Redraw => session.push_filter(),
                    }
                    if let Some(text) = session.ui.clipboard.take() {
                        // To the terminal, which puts it on the clipboard.
                        let backend = terminal.backend_mut();
                        backend.write_all(super::inspect::osc52(&text).as_bytes())?;
                        backend.flush()?;
                    }
                    match (session.ui.paused, frozen.is_some()) {
                        (true, false) => frozen = Some(Box::new(session.model.clone())),
                        (false, true) => frozen = None,
                        _ => {}
                    }
                    let shown = frozen.as_deref().unwrap_or(session.model);
                    terminal.draw(|frame| views::draw(frame, shown, session.ui))?;
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err),
                None => return Ok(()),
            },
            _ = &mut deadline => return Ok(()),
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

impl Session<'_> {
    /// Sends the UI's filter to the sources when it changed, for them to
    /// subscribe with.
    fn push_filter(&self) {
        if let Some(subscription) = self.subscription {
            subscription.send_if_modified(|pushed| {
                let changed = *pushed != self.ui.filter;
                if changed {
                    *pushed = self.ui.filter.clone();
                }
                changed
            });
        }
    }

    fn ingest(&mut self, item: &FeedItem) {
        if let Some(error) = self.sink.write(item) {
            self.ui.recording = false;
            self.ui.hint = Some(error);
        }
        self.model.ingest(item);
    }
}

/// How far `←`/`→` seek in a replay.
const SEEK_STEP: Duration = Duration::from_secs(10);

/// Carries out a replay key (`space`, `+`/`-`, `←`/`→`, `g`/`G`; see
/// [`crate::tui::keys`]) on the player.
fn replay_control(replay: &ReplayHandle, command: PlayerCommand, seeks: &mut u64) {
    let progress = *replay.progress.borrow();
    let length = progress.length;
    // Keys pressed faster than the player takes them add up: a seek still
    // on its way is where the next one starts from.
    let position = match replay.control.borrow().seek {
        Some((id, target)) if progress.seeked != Some(id) => target,
        _ => progress.position,
    };
    let mut seek = |to: Duration| {
        *seeks += 1;
        let id = *seeks;
        replay.control.send_modify(|c| c.seek = Some((id, to)));
    };
    match command {
        PlayerCommand::PlayPause => replay.control.send_modify(|c| c.paused = !c.paused),
        PlayerCommand::Faster => replay.control.send_modify(|c| c.speed = c.speed.faster()),
        PlayerCommand::Slower => replay.control.send_modify(|c| c.speed = c.speed.slower()),
        PlayerCommand::SeekBack => seek(position.saturating_sub(SEEK_STEP)),
        PlayerCommand::SeekForward => seek((position + SEEK_STEP).min(length)),
        PlayerCommand::SeekStart => seek(Duration::ZERO),
        PlayerCommand::SeekEnd => seek(length),
    }
}

/// Prints the view's table (and a blank line, separating tables).
fn print_table(
    model: &Model,
    view: TableView,
    window: Window,
    filter: &FilterExpr,
    group_by: GroupBy,
) -> io::Result<()> {
    let table = match view {
        TableView::Upstreams => headless_grouped_table(model, window, filter, group_by),
        TableView::Edges => headless_edges_table(model, window, filter),
    };
    let mut out = io::stdout().lock();
    out.write_all(table.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Writes `raw` (a JSON object) with `"source"` added as its first field.
pub fn write_json_line(out: &mut impl Write, source: &str, raw: &str) -> io::Result<()> {
    let source = serde_json::to_string(source).unwrap_or_else(|_| "\"\"".into());
    match raw.trim_start().strip_prefix('{') {
        Some(rest) if rest.trim_start().starts_with('}') => {
            writeln!(out, "{{\"source\":{source}}}")
        }
        Some(rest) => writeln!(out, "{{\"source\":{source},{rest}"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::replay::Speed;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    /// A player handle at 0:30 of 1:40, playing at 1×, and its other ends.
    fn player_at_30s_of_100s() -> (
        ReplayHandle,
        watch::Receiver<Control>,
        watch::Sender<Progress>,
    ) {
        let (control, control_rx) = watch::channel(Control {
            paused: false,
            speed: Speed::Factor(1.0),
            seek: None,
        });
        let (progress_tx, progress) = watch::channel(Progress {
            position: Duration::from_secs(30),
            length: Duration::from_secs(100),
            speed: Speed::Factor(1.0),
            paused: false,
            finished: false,
            seeked: None,
        });
        (ReplayHandle { control, progress }, control_rx, progress_tx)
    }

    /// Presses `code` in a replay UI, as the app does: a player key goes to
    /// the player. Returns whether it was one.
    fn press(ui: &mut UiState, replay: &ReplayHandle, code: KeyCode, seeks: &mut u64) -> bool {
        ui.replay = Some(*replay.progress.borrow());
        match ui.handle_key(key(code), &Model::new(Vec::new())) {
            Action::Player(command) => {
                replay_control(replay, command, seeks);
                true
            }
            _ => false,
        }
    }

    #[test]
    fn seek_keys_pressed_faster_than_the_player_all_count() {
        let (replay, control_rx, progress_tx) = player_at_30s_of_100s();
        let mut ui = UiState::new(FilterExpr::default());
        let mut seeks = 0;
        for _ in 0..4 {
            assert!(press(&mut ui, &replay, KeyCode::Right, &mut seeks));
        }
        assert_eq!(control_rx.borrow().seek, Some((4, Duration::from_secs(70))));
        // Once the player took it and moved on, seeks start from where it is.
        progress_tx.send_modify(|p| {
            p.position = Duration::from_secs(75);
            p.seeked = Some(4);
        });
        assert!(press(&mut ui, &replay, KeyCode::Left, &mut seeks));
        assert_eq!(control_rx.borrow().seek, Some((5, Duration::from_secs(65))));
        // Never past the end.
        for _ in 0..10 {
            press(&mut ui, &replay, KeyCode::Right, &mut seeks);
        }
        assert_eq!(
            control_rx.borrow().seek.map(|s| s.1),
            Some(Duration::from_secs(100))
        );
    }

    #[test]
    fn replay_keys_drive_the_player() {
        let (replay, control_rx, progress_tx) = player_at_30s_of_100s();
        let mut ui = UiState::new(FilterExpr::default());
        let mut seeks = 0;
        assert!(press(&mut ui, &replay, KeyCode::Char(' '), &mut seeks));
        assert!(control_rx.borrow().paused);
        assert!(!ui.paused, "space drives the player, not the screen");
        assert!(press(&mut ui, &replay, KeyCode::Char('+'), &mut seeks));
        assert_eq!(control_rx.borrow().speed, Speed::Factor(2.0));
        assert!(press(&mut ui, &replay, KeyCode::Char('-'), &mut seeks));
        assert!(press(&mut ui, &replay, KeyCode::Char('-'), &mut seeks));
        assert_eq!(control_rx.borrow().speed, Speed::Factor(0.5));
        assert!(press(&mut ui, &replay, KeyCode::Left, &mut seeks));
        assert_eq!(control_rx.borrow().seek, Some((1, Duration::from_secs(20))));
        assert!(press(&mut ui, &replay, KeyCode::Right, &mut seeks));
        // The left seek is still on its way: right goes on from its target.
        assert_eq!(control_rx.borrow().seek, Some((2, Duration::from_secs(30))));
        assert!(press(&mut ui, &replay, KeyCode::Char('g'), &mut seeks));
        assert_eq!(control_rx.borrow().seek, Some((3, Duration::ZERO)));
        assert!(press(&mut ui, &replay, KeyCode::Char('G'), &mut seeks));
        assert_eq!(
            control_rx.borrow().seek,
            Some((4, Duration::from_secs(100)))
        );
        // Other keys are the UI's, and so is everything while typing a filter.
        assert!(!press(&mut ui, &replay, KeyCode::Char('e'), &mut seeks));
        assert!(ui.failures_only);
        ui.filter_input = Some(String::new());
        assert!(!press(&mut ui, &replay, KeyCode::Char(' '), &mut seeks));
        assert_eq!(ui.filter_input.as_deref(), Some(" "));
        drop(progress_tx);
    }

    #[test]
    fn json_lines_get_their_source_first() {
        let mut out = Vec::new();
        write_json_line(
            &mut out,
            "ws://127.0.0.1:15090/events",
            r#"{"type":"dropped","count":1,"total":1}"#,
        )
        .expect("writes");
        let line = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            line,
            "{\"source\":\"ws://127.0.0.1:15090/events\",\"type\":\"dropped\",\"count\":1,\"total\":1}\n"
        );
        let value: serde_json::Value = serde_json::from_str(&line).expect("valid json");
        assert_eq!(value["type"], "dropped");
    }
}
