//! Recordings of sessions: the file format, writing and reading.
//!
//! A recording is newline-delimited JSON, zstd-compressed when its name
//! ends in `.zst`: a header line, then one line per message received, with
//! the message's text exactly as it came (`docs/recording.md`).
//!
//! - [`format`](mod@format): the header, the lines, and what decides compression.
//! - [`writer`]: [`RecordingWriter`], flushed at least every second so a
//!   killed recorder loses at most the last second.
//! - [`reader`]: [`RecordingReader`] and [`load`], which read every
//!   complete line of a truncated file, skip and count malformed ones, and
//!   refuse files that are not recordings or are of a newer version.

pub mod format;
pub mod reader;
pub mod writer;

use std::io;
use std::path::PathBuf;

pub use format::{FORMAT, Header, SourceInfo, VERSION};
pub use reader::{Entry, ReadStats, RecordingReader, load};
pub use writer::{FLUSH_AFTER, RecordingWriter};

/// What went wrong with a recording, in one line that names the file.
///
/// Callers branch on it: [`NotARecording`](RecordingError::NotARecording)
/// and [`NewerVersion`](RecordingError::NewerVersion) are the user's
/// mistake (exit 2), [`Write`](RecordingError::Write) stops a recorder
/// cleanly with what it wrote still readable.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("cannot create {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    /// The file exists and was not to be overwritten.
    #[error("{} exists; pass --force to overwrite it", path.display())]
    Exists { path: PathBuf },
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    /// A write or flush failed, e.g. the disk is full (`ENOSPC`). The
    /// writer stops: later writes return [`RecordingError::Stopped`].
    #[error("cannot write to {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    /// The file itself could not be read (not a truncation, which is
    /// reported in [`ReadStats::truncated`]).
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is not a meshtop recording: {reason}", path.display())]
    NotARecording { path: PathBuf, reason: String },
    #[error(
        "{} is a recording of version {version}, newer than the version {VERSION} this meshtop reads: upgrade meshtop",
        path.display()
    )]
    NewerVersion { path: PathBuf, version: u64 },
    /// A write after an earlier [`RecordingError::Write`].
    #[error("the recording to {} stopped after an earlier write error", path.display())]
    Stopped { path: PathBuf },
}

impl RecordingError {
    /// The I/O error underneath, if any: `kind()` tells a full disk
    /// ([`io::ErrorKind::StorageFull`]) from other failures.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            RecordingError::Create { source, .. }
            | RecordingError::Open { source, .. }
            | RecordingError::Write { source, .. }
            | RecordingError::Read { source, .. } => Some(source),
            RecordingError::NotARecording { .. }
            | RecordingError::Exists { .. }
            | RecordingError::NewerVersion { .. }
            | RecordingError::Stopped { .. } => None,
        }
    }
}
