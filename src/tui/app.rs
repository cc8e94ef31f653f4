//! The attach command: feeds the model from the sources and shows it, in
//! the terminal UI, as plain tables (`--headless`) or as JSON lines
//! (`--json`). Ingestion never waits for drawing: the loop takes feed items
//! as they come and draws at `--fps`.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use crossterm::event::{Event, EventStream, KeyEventKind};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::filter::FilterExpr;
use super::input::{Action, UiState};
use super::model::{Model, Window, headless_table};
use super::source::{FeedItem, FeedKind};
use super::views;

/// How the attach command shows what it receives.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// The interactive terminal UI.
    Tui { fps: u32 },
    /// The upstream table as plain text every `interval`, and on exit.
    Headless { interval: Duration },
    /// Every message as a JSON line, tagged with its source.
    Json,
}

/// What the attach command was asked for.
#[derive(Clone, Debug)]
pub struct ShowOptions {
    pub output: Output,
    pub filter: FilterExpr,
    pub window: Window,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Shows `● REC` in the header.
    pub recording: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    #[error("standard output is not a terminal: use --headless (plain tables) or --json")]
    NotATerminal,
    #[error("terminal: {0}")]
    Terminal(#[from] io::Error),
}

/// Feed items are taken in batches of at most this many before the loop
/// looks at keys and the frame clock again.
const INGEST_BATCH: usize = 4096;

/// Shows the feed of `targets` until the feed ends, `duration` passes,
/// `shutdown` is cancelled or the user quits. Returns the final model.
pub async fn show(
    targets: Vec<String>,
    mut feed: mpsc::Receiver<FeedItem>,
    options: ShowOptions,
    shutdown: CancellationToken,
) -> Result<Model, ShowError> {
    let mut model = Model::new(targets.clone());
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
                        if let FeedKind::Message { raw, .. } = &item.kind {
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
                    _ = &mut deadline => break,
                    _ = shutdown.cancelled() => break,
                }
            }
            let _ = out.flush();
            Ok(model)
        }
        Output::Headless { interval } => {
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + *interval, *interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    item = feed.recv() => match item {
                        Some(item) => model.ingest(&item),
                        None => break,
                    },
                    _ = ticker.tick() => {
                        if print_table(&model, options.window, &options.filter).is_err() {
                            return Ok(model);
                        }
                    }
                    _ = &mut deadline => break,
                    _ = shutdown.cancelled() => break,
                }
            }
            // Whatever is already queued belongs to the session too.
            while let Ok(item) = feed.try_recv() {
                model.ingest(&item);
            }
            let _ = print_table(&model, options.window, &options.filter);
            Ok(model)
        }
        Output::Tui { fps } => {
            if !io::stdout().is_terminal() {
                return Err(ShowError::NotATerminal);
            }
            let mut ui = UiState::new(options.filter.clone());
            ui.window = options.window;
            ui.recording = options.recording;
            let mut terminal = ratatui::try_init()?;
            let result = tui_loop(
                &mut terminal,
                &mut model,
                &mut ui,
                &mut feed,
                *fps,
                deadline,
                &shutdown,
            )
            .await;
            ratatui::restore();
            result.map(|()| model).map_err(ShowError::from)
        }
    }
}

async fn tui_loop(
    terminal: &mut ratatui::DefaultTerminal,
    model: &mut Model,
    ui: &mut UiState,
    feed: &mut mpsc::Receiver<FeedItem>,
    fps: u32,
    deadline: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    let mut deadline = deadline;
    let mut keys = EventStream::new();
    let frame_every = Duration::from_secs(1) / fps.clamp(1, 120);
    let mut frames = tokio::time::interval(frame_every);
    frames.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // While paused the screen shows this copy; ingestion goes on.
    let mut frozen: Option<Box<Model>> = None;
    let mut feed_open = true;
    loop {
        tokio::select! {
            item = feed.recv(), if feed_open => match item {
                Some(item) => {
                    model.ingest(&item);
                    for _ in 0..INGEST_BATCH {
                        match feed.try_recv() {
                            Ok(item) => model.ingest(&item),
                            Err(_) => break,
                        }
                    }
                }
                // Every source ended (a replay finished): keep showing.
                None => feed_open = false,
            },
            _ = frames.tick() => {
                let shown = frozen.as_deref().unwrap_or(model);
                terminal.draw(|frame| views::draw(frame, shown, ui))?;
            }
            event = keys.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                    let action = ui.handle_key(key, frozen.as_deref().unwrap_or(model));
                    if action == Action::Quit {
                        return Ok(());
                    }
                    match (ui.paused, frozen.is_some()) {
                        (true, false) => frozen = Some(Box::new(model.clone())),
                        (false, true) => frozen = None,
                        _ => {}
                    }
                    let shown = frozen.as_deref().unwrap_or(model);
                    terminal.draw(|frame| views::draw(frame, shown, ui))?;
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

/// Prints the upstream table (and a blank line, separating tables).
fn print_table(model: &Model, window: Window, filter: &FilterExpr) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(headless_table(model, window, filter).as_bytes())?;
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
