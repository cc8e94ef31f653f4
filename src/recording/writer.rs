//! Writing a recording: buffered, flushed at least every second, and
//! stopped (with what was written still readable) at the first error.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::RecordingError;
use super::format::{Header, SourceInfo, encode_line, is_zstd};

/// Data older than this is flushed to the OS at the next
/// [`RecordingWriter::write`] or [`RecordingWriter::flush_if_due`]. A caller
/// that also calls `flush_if_due` at least this often (a timer tick) bounds
/// what a killed recorder loses to twice this: one second.
pub const FLUSH_AFTER: Duration = Duration::from_millis(500);

/// The plain writer's buffer: a few hundred messages, so a busy recording
/// makes one `write` call per few hundred messages rather than one each.
const PLAIN_BUFFER: usize = 64 << 10;

/// zstd's default level: compresses several times faster than a busy
/// session produces messages, to about a tenth of their size.
const ZSTD_LEVEL: i32 = 3;

/// Writes a recording. Lines go through a buffer (for `.zst`, through the
/// compressor) that is flushed once its oldest data is [`FLUSH_AFTER`] old,
/// and on [`finish`](RecordingWriter::finish).
///
/// Flushing hands the data to the OS (for zstd, as a complete block that a
/// reader can decode): it survives the process being killed, not a power
/// loss, since nothing is fsynced.
///
/// The first failed write or flush (a full disk, say) is returned and stops
/// the writer: everything before it stays readable, and later calls return
/// [`RecordingError::Stopped`]. Dropping the writer without `finish`
/// flushes (and for zstd, ends the frame) as well as it can.
pub struct RecordingWriter {
    /// `None` once finished or stopped by an error.
    sink: Option<Sink>,
    path: PathBuf,
    /// The origin of [`elapsed`](RecordingWriter::elapsed): when the header
    /// was made.
    started: Instant,
    /// The header's `created_at`, as written.
    created_at: SystemTime,
    /// When the oldest data not yet flushed was written; `None` when
    /// everything is flushed.
    pending_since: Option<Instant>,
    messages: u64,
    /// Reused for every line, so writing does not allocate.
    line: Vec<u8>,
}

enum Sink {
    Plain(BufWriter<File>),
    Zstd(zstd::Encoder<'static, File>),
}

impl Sink {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Plain(w) => w,
            Sink::Zstd(w) => w,
        }
    }

    /// Ends the file: flushes the buffer, or ends the zstd frame (its
    /// encoder writes what it holds straight to the file).
    fn finish(self) -> io::Result<()> {
        match self {
            Sink::Plain(mut w) => w.flush(),
            Sink::Zstd(w) => w.finish().map(drop),
        }
    }

    /// Drops without writing anything more.
    fn abandon(self) {
        match self {
            Sink::Plain(w) => drop(w.into_parts()),
            Sink::Zstd(w) => drop(w),
        }
    }
}

impl RecordingWriter {
    /// Creates (or truncates) `path` and writes the header, flushed at once
    /// so that the file is a valid recording from the start.
    pub fn create(
        path: impl AsRef<Path>,
        sources: Vec<SourceInfo>,
    ) -> Result<RecordingWriter, RecordingError> {
        RecordingWriter::create_with(path.as_ref(), sources, true)
    }

    /// Like [`RecordingWriter::create`], but a file that exists is left
    /// alone: [`RecordingError::Exists`]. (The check and the creation are
    /// one step, so no file made meanwhile is overwritten either.)
    pub fn create_new(
        path: impl AsRef<Path>,
        sources: Vec<SourceInfo>,
    ) -> Result<RecordingWriter, RecordingError> {
        RecordingWriter::create_with(path.as_ref(), sources, false)
    }

    fn create_with(
        path: &Path,
        sources: Vec<SourceInfo>,
        overwrite: bool,
    ) -> Result<RecordingWriter, RecordingError> {
        let path = path.to_path_buf();
        let create_error = |source| RecordingError::Create {
            path: path.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true);
        if overwrite {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        let file = match options.open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RecordingError::Exists { path });
            }
            Err(err) => return Err(create_error(err)),
        };
        let sink = if is_zstd(&path) {
            Sink::Zstd(zstd::Encoder::new(file, ZSTD_LEVEL).map_err(create_error)?)
        } else {
            Sink::Plain(BufWriter::with_capacity(PLAIN_BUFFER, file))
        };
        let header = Header::new(sources);
        let mut line = serde_json::to_vec(&header).map_err(|err| create_error(err.into()))?;
        line.push(b'\n');
        let started = Instant::now();
        // As a reader will read it back, to the microsecond.
        let created_at =
            humantime::parse_rfc3339(&header.created_at).unwrap_or_else(|_| SystemTime::now());
        let mut writer = RecordingWriter {
            sink: Some(sink),
            path,
            started,
            created_at,
            pending_since: Some(started),
            messages: 0,
            line,
        };
        writer.write_line()?;
        writer.flush()?;
        Ok(writer)
    }

    /// Records one message received `t` after the start (see
    /// [`elapsed`](RecordingWriter::elapsed)) from source `src` (an index
    /// into the header's sources). `raw` is the message's text as received,
    /// written verbatim; it should be valid JSON (a reader skips and counts
    /// a line that is not).
    pub fn write(&mut self, t: Duration, src: usize, raw: &str) -> Result<(), RecordingError> {
        self.line.clear();
        encode_line(&mut self.line, t, src, raw);
        self.write_line()?;
        self.messages += 1;
        self.flush_if_due()
    }

    /// Flushes if the oldest unflushed data is [`FLUSH_AFTER`] old. Call it
    /// at least every [`FLUSH_AFTER`] while recording, so that messages
    /// written just before a quiet spell do not wait for the next one.
    pub fn flush_if_due(&mut self) -> Result<(), RecordingError> {
        match self.pending_since {
            Some(since) if since.elapsed() >= FLUSH_AFTER => self.flush(),
            _ => Ok(()),
        }
    }

    /// Hands everything written so far to the OS; for zstd, as a complete
    /// block a reader can decode while the frame goes on.
    pub fn flush(&mut self) -> Result<(), RecordingError> {
        if self.pending_since.is_none() && self.sink.is_some() {
            return Ok(());
        }
        self.with_sink(|sink| sink.writer().flush())?;
        self.pending_since = None;
        Ok(())
    }

    /// Ends the recording (for zstd, the frame) and returns how many
    /// messages it holds.
    pub fn finish(mut self) -> Result<u64, RecordingError> {
        let Some(sink) = self.sink.take() else {
            return Err(self.stopped());
        };
        sink.finish().map_err(|source| RecordingError::Write {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.messages)
    }

    /// How long ago recording started: the `t` of a message received now.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The `t` of a message received at `received` on the wall clock: so
    /// that a replay feeds it as received at exactly that time (the header's
    /// `created_at` plus `t`). Never before the start.
    pub fn t_of(&self, received: SystemTime) -> Duration {
        received
            .duration_since(self.created_at)
            .unwrap_or(Duration::ZERO)
    }

    /// The messages written so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_line(&mut self) -> Result<(), RecordingError> {
        let line = std::mem::take(&mut self.line);
        let written = self.with_sink(|sink| sink.writer().write_all(&line));
        self.line = line;
        written?;
        self.pending_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Runs `op` on the sink; an error stops the writer for good, since a
    /// half-written line or block must stay the last thing in the file.
    fn with_sink(
        &mut self,
        op: impl FnOnce(&mut Sink) -> io::Result<()>,
    ) -> Result<(), RecordingError> {
        let Some(sink) = self.sink.as_mut() else {
            return Err(self.stopped());
        };
        if let Err(source) = op(sink) {
            if let Some(sink) = self.sink.take() {
                sink.abandon();
            }
            tracing::warn!(path = %self.path.display(), error = %source, "recording stopped");
            return Err(RecordingError::Write {
                path: self.path.clone(),
                source,
            });
        }
        Ok(())
    }

    fn stopped(&self) -> RecordingError {
        RecordingError::Stopped {
            path: self.path.clone(),
        }
    }
}

impl Drop for RecordingWriter {
    /// A writer dropped on an early return or a panic still leaves a
    /// complete file when it can; errors here have nobody to go to.
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            let _ = sink.finish();
        }
    }
}
