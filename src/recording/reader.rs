//! Reading a recording: every complete line of a file cut anywhere,
//! malformed lines skipped and counted, and a clear error for a file that is
//! not a recording or is of a newer version.

use std::error::Error as StdError;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Header;
use super::RecordingError;
use super::format::{
    HeaderProblem, Line, MAX_HEADER_BYTES, MAX_LINE_BYTES, parse_header, split_written_line,
};
use crate::schema::{Message, one_line};
use crate::tui::source::{FeedItem, FeedKind};

/// The read buffer: large enough that reading costs few system calls,
/// small against the messages it holds.
const READ_BUFFER: usize = 64 << 10;

/// Skipped lines logged one by one; past that only the count grows, so a
/// file of garbage does not flood the log.
const LOGGED_SKIPS: u64 = 10;

/// One recorded message.
#[derive(Clone, Debug)]
pub struct Entry {
    /// When it was received, from the start of the recording.
    pub t: Duration,
    /// Which source sent it: an index into the header's sources.
    pub src: usize,
    /// Its text exactly as received (and as written in the file).
    pub raw: Arc<str>,
    /// The decoded message, or why it is not one of this build's schema
    /// (the line itself was fine; such a message is shown as invalid, as it
    /// would have been live).
    pub message: Result<Message, String>,
}

impl Entry {
    /// The item the live source would have produced for this message.
    pub fn into_feed_item(self) -> FeedItem {
        let kind = match self.message {
            Ok(message) => FeedKind::Message {
                message,
                raw: self.raw,
                received: None,
            },
            Err(reason) => FeedKind::Invalid { reason },
        };
        FeedItem {
            source: self.src,
            kind,
        }
    }
}

/// What a read found, besides the entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Entries read.
    pub entries: u64,
    /// Lines that were not message lines (not JSON, missing `t`, `src` or
    /// `msg`, a `src` beyond the header's sources, too long): skipped.
    pub skipped: u64,
    /// The file ends early: inside a line, or inside a zstd frame (a
    /// recorder that was killed, a disk that filled up, a partial copy).
    /// Every complete line before the cut was read.
    pub truncated: bool,
}

/// Reads a recording line by line; see [`RecordingReader::open`].
pub struct RecordingReader {
    input: Box<dyn BufRead + Send>,
    path: PathBuf,
    /// How many sources the header lists: a larger `src` is malformed.
    sources: usize,
    /// Reused for every line.
    line: Vec<u8>,
    /// 1-based, the header being line 1, for log messages.
    line_number: u64,
    stats: ReadStats,
    /// Lines skipped since the last entry.
    skipped_run: u64,
    done: bool,
}

impl RecordingReader {
    /// Opens a recording (zstd-compressed when the name ends in `.zst`) and
    /// reads its header. A file that is not a recording, or is of a version
    /// newer than [`VERSION`](super::VERSION), is an error that says so in
    /// one line.
    pub fn open(path: impl AsRef<Path>) -> Result<(Header, RecordingReader), RecordingError> {
        let path = path.as_ref().to_path_buf();
        let open_error = |source| RecordingError::Open {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(open_error)?;
        let not_a_recording = |reason: &str| RecordingError::NotARecording {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        // Said here because an empty `.zst` would otherwise be "an
        // incomplete frame"; pipes and devices report no length at all.
        let metadata = file.metadata().map_err(open_error)?;
        if metadata.is_file() && metadata.len() == 0 {
            return Err(not_a_recording("the file is empty"));
        }
        // A file, or a pipe (`replay <(zstdcat …)`); a device such as
        // /dev/zero would be read for ever, a directory not at all.
        if !metadata.is_file() && !metadata.file_type().is_fifo() {
            return Err(not_a_recording("not a regular file or a pipe"));
        }
        // Compressed or not by its first bytes, whatever its name says; read
        // whole, as a pipe may give them a few at a time.
        let mut file = FileRead(file);
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < magic.len() {
            match file.read(&mut magic[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(open_error(err)),
            }
        }
        let compressed = magic == super::format::ZSTD_MAGIC;
        let file = BufReader::with_capacity(
            READ_BUFFER,
            std::io::Cursor::new(magic[..got].to_vec()).chain(file),
        );
        let input: Box<dyn BufRead + Send> = if compressed {
            let decoder = zstd::Decoder::with_buffer(file).map_err(open_error)?;
            Box::new(BufReader::with_capacity(READ_BUFFER, decoder))
        } else {
            Box::new(file)
        };
        let mut reader = RecordingReader {
            input,
            path,
            sources: 0,
            line: Vec::new(),
            line_number: 1,
            stats: ReadStats::default(),
            skipped_run: 0,
            done: false,
        };
        let header = reader.read_header()?;
        reader.sources = header.sources.len();
        Ok((header, reader))
    }

    /// The next entry; `None` at the end of the file, or at the cut of a
    /// truncated one (see [`stats`](RecordingReader::stats)). An error is
    /// the file failing to read, not its content.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, RecordingError> {
        while !self.done {
            if self.skipped_run >= MAX_SKIPPED_RUN {
                // Past this many lines in a row that are not messages, the
                // rest is not a recording: stop rather than grind through
                // it (a small .zst can hold 10^8 blank lines).
                tracing::warn!(
                    path = %self.path.display(),
                    line = self.line_number,
                    "{MAX_SKIPPED_RUN} lines in a row are not messages; reading stops here"
                );
                self.done = true;
                self.stats.truncated = true;
                return Ok(None);
            }
            self.line_number += 1;
            let read = read_line(&mut *self.input, &mut self.line, MAX_LINE_BYTES);
            let entry = match read {
                Ok(LineRead::Complete) => self.parse_line(),
                Ok(LineRead::TooLong { terminated: true }) => {
                    Err(format!("longer than {MAX_LINE_BYTES} bytes"))
                }
                Ok(LineRead::TooLong { terminated: false }) => {
                    // Cut before its end: a cut all the same.
                    self.done = true;
                    self.stats.truncated = true;
                    return Ok(None);
                }
                Ok(LineRead::Unterminated) => {
                    // The writer ends every line, so a last line without
                    // its newline was cut, unless it still parses whole
                    // (a hand-made file whose editor dropped the newline).
                    self.done = true;
                    match self.parse_line() {
                        Ok(entry) => Ok(entry),
                        Err(_) => {
                            self.stats.truncated = true;
                            return Ok(None);
                        }
                    }
                }
                Ok(LineRead::End) => {
                    self.done = true;
                    return Ok(None);
                }
                Err(err) => {
                    self.done = true;
                    return match file_error(err) {
                        Ok(source) => Err(RecordingError::Read {
                            path: self.path.clone(),
                            source,
                        }),
                        Err(_decompression) => {
                            // The compressed stream stops (or is damaged)
                            // here; whatever it held before is read.
                            self.stats.truncated = true;
                            Ok(None)
                        }
                    };
                }
            };
            match entry {
                Ok(entry) => {
                    self.stats.entries += 1;
                    self.skipped_run = 0;
                    return Ok(Some(entry));
                }
                Err(reason) => {
                    self.stats.skipped += 1;
                    self.skipped_run += 1;
                    if self.stats.skipped <= LOGGED_SKIPS {
                        tracing::warn!(
                            path = %self.path.display(),
                            line = self.line_number,
                            %reason,
                            "skipped a malformed line of a recording"
                        );
                    }
                }
            }
        }
        Ok(None)
    }

    /// What has been read so far; final once `next_entry` returned `None`.
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    fn read_header(&mut self) -> Result<Header, RecordingError> {
        let not_a_recording = |path: &Path, reason: String| RecordingError::NotARecording {
            path: path.to_path_buf(),
            reason,
        };
        match read_line(&mut *self.input, &mut self.line, MAX_HEADER_BYTES) {
            Ok(LineRead::Complete) => {}
            Ok(LineRead::Unterminated) => {
                // A header is flushed whole; a header and nothing else,
                // cut before its newline, is still a (truncated) recording.
                self.done = true;
                self.stats.truncated = true;
            }
            Ok(LineRead::End) => {
                return Err(not_a_recording(&self.path, "the file is empty".into()));
            }
            Ok(LineRead::TooLong { .. }) => {
                return Err(not_a_recording(
                    &self.path,
                    format!("its first line is longer than {MAX_HEADER_BYTES} bytes"),
                ));
            }
            Err(err) => {
                return Err(match file_error(err) {
                    Ok(source) => RecordingError::Read {
                        path: self.path.clone(),
                        source,
                    },
                    Err(err) => not_a_recording(
                        &self.path,
                        format!(
                            "its name ends in .zst but it does not decompress ({})",
                            one_line(&err.to_string())
                        ),
                    ),
                });
            }
        }
        parse_header(&self.line).map_err(|problem| match problem {
            HeaderProblem::NotARecording(reason) => not_a_recording(&self.path, reason),
            HeaderProblem::NewerVersion(version) => RecordingError::NewerVersion {
                path: self.path.clone(),
                version,
            },
        })
    }

    /// The current line as an entry, or why it is not one.
    fn parse_line(&self) -> Result<Entry, String> {
        let text = std::str::from_utf8(&self.line).map_err(|_| "not UTF-8".to_owned())?;
        // Lines as meshtop writes them take one JSON parse, of the message;
        // anything else (other spacing or field order, extra fields, a
        // message we cannot decode) takes the general path.
        let fast = split_written_line(text)
            .and_then(|(t, src, raw)| decode(raw).ok().map(|message| (t, src, raw, Ok(message))));
        let (t, src, raw, message) = match fast {
            Some(parsed) => parsed,
            None => {
                let line: Line<'_> = serde_json::from_str(text)
                    .map_err(|err| format!("not a message line: {err}"))?;
                let raw = line.msg.get();
                (line.t, line.src, raw, decode(raw))
            }
        };
        if src >= self.sources {
            return Err(format!(
                "source {src} but the header lists {}",
                self.sources
            ));
        }
        Ok(Entry {
            t: Duration::from_micros(t),
            src,
            raw: Arc::from(raw),
            message,
        })
    }
}

impl Iterator for RecordingReader {
    type Item = Result<Entry, RecordingError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}

/// Reads a whole recording into memory.
///
/// An entry costs a bit over twice its raw text (the text, the decoded
/// message's strings, and 320 bytes of struct): about 880 bytes for a
/// 400-byte `request`. A busy session of 1,000 requests a second is thus
/// 0.9 MB per second recorded, 3.2 GB for an hour. Replay holds them to
/// seek backwards by rebuilding from the start; a tool that needs less
/// reads with [`RecordingReader`], one entry at a time.
pub fn load(path: impl AsRef<Path>) -> Result<(Header, Vec<Entry>, ReadStats), RecordingError> {
    let (header, mut reader) = RecordingReader::open(path)?;
    let mut entries = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        entries.push(entry);
    }
    Ok((header, entries, reader.stats()))
}

/// A message's text as this build understands it, with the reasons the
/// live source gives for a message it cannot use.
fn decode(raw: &str) -> Result<Message, String> {
    crate::schema::decode(raw).map_err(|err| err.to_string())
}

/// Lines in a row that are not messages after which reading stops.
pub const MAX_SKIPPED_RUN: u64 = 10_000;

/// The most bytes of one over-long line read while looking for its end.
pub const MAX_SKIPPED_LINE: usize = 4 * MAX_LINE_BYTES;

enum LineRead {
    /// A line and its newline; in the buffer without the newline.
    Complete,
    /// The input ended inside a line; the buffer holds what there was.
    Unterminated,
    /// A line longer than the limit, consumed up to its newline (or the
    /// end of the input, when `terminated` is false) and dropped.
    TooLong { terminated: bool },
    /// The input ended at a line boundary.
    End,
}

/// Reads up to and including the next newline into `buf` (without it),
/// holding at most `max` bytes of the line.
/// A line longer than `max` is skipped up to its newline, but only for up
/// to [`MAX_SKIPPED_LINE`] bytes: an input with no newline at all (a pipe
/// from /dev/zero) ends there.
fn read_line(input: &mut dyn BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<LineRead> {
    buf.clear();
    let mut too_long = false;
    let mut consumed = 0usize;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if available.is_empty() {
            return Ok(if too_long {
                LineRead::TooLong { terminated: false }
            } else if buf.is_empty() {
                LineRead::End
            } else {
                LineRead::Unterminated
            });
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let part = &available[..newline.unwrap_or(available.len())];
        if !too_long {
            if buf.len() + part.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(part);
            }
        }
        let used = part.len() + usize::from(newline.is_some());
        input.consume(used);
        consumed = consumed.saturating_add(used);
        if too_long && newline.is_none() && consumed > MAX_SKIPPED_LINE {
            return Ok(LineRead::TooLong { terminated: false });
        }
        if newline.is_some() {
            return Ok(if too_long {
                LineRead::TooLong { terminated: true }
            } else {
                LineRead::Complete
            });
        }
    }
}

/// The file, with its own errors marked, so that they can be told apart
/// from the decompressor's complaints about what it read: those mean a cut
/// or damaged file, these a file that cannot be read.
struct FileRead(File);

#[derive(Debug)]
struct FileError(io::Error);

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for FileError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

impl Read for FileRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|err| io::Error::new(err.kind(), FileError(err)))
    }
}

/// `Ok` with the file's own error, or `Err` with a decompression error.
fn file_error(err: io::Error) -> Result<io::Error, io::Error> {
    if !err.get_ref().is_some_and(|inner| inner.is::<FileError>()) {
        return Err(err);
    }
    let kind = err.kind();
    match err.into_inner().map(|inner| inner.downcast::<FileError>()) {
        Some(Ok(file)) => Ok(file.0),
        _ => Ok(io::Error::from(kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<(String, &'static str)> {
        let mut input = BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let kind = match read_line(&mut input, &mut buf, max) {
                Ok(LineRead::Complete) => "complete",
                Ok(LineRead::Unterminated) => "unterminated",
                Ok(LineRead::TooLong { terminated: true }) => "too long",
                Ok(LineRead::TooLong { terminated: false }) => "too long, cut",
                Ok(LineRead::End) => return out,
                Err(err) => panic!("reading memory: {err}"),
            };
            out.push((String::from_utf8_lossy(&buf).into_owned(), kind));
            if kind == "unterminated" || kind == "too long, cut" {
                return out;
            }
        }
    }

    #[test]
    fn lines_are_split_across_buffer_refills() {
        assert_eq!(
            lines(b"first line\n\nthird", 100),
            [
                ("first line".to_owned(), "complete"),
                (String::new(), "complete"),
                ("third".to_owned(), "unterminated"),
            ]
        );
    }

    #[test]
    fn too_long_lines_are_dropped_up_to_their_newline() {
        assert_eq!(
            lines(b"short\nmuch too long\nok\nlong again", 6),
            [
                ("short".to_owned(), "complete"),
                (String::new(), "too long"),
                ("ok".to_owned(), "complete"),
                (String::new(), "too long, cut"),
            ]
        );
    }

    #[test]
    fn file_errors_are_told_from_decompression_errors() {
        let marked = io::Error::new(
            io::ErrorKind::PermissionDenied,
            FileError(io::Error::from(io::ErrorKind::PermissionDenied)),
        );
        assert!(matches!(file_error(marked), Ok(e) if e.kind() == io::ErrorKind::PermissionDenied));
        let zstd = io::Error::new(io::ErrorKind::UnexpectedEof, "incomplete frame");
        assert!(file_error(zstd).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// A recording with bytes changed, lines cut or doubled, plain or
        /// compressed, opens or is refused in one line, and reads to its
        /// end without panicking, every entry counted once.
        #[test]
        fn damaged_recordings_read_or_are_refused(
            flips in proptest::collection::vec((0usize..4000, proptest::prelude::any::<u8>()), 0..6),
            cut in 1usize..4000,
            zstd in proptest::prelude::any::<bool>(),
        ) {
            let header = r#"{"format":"meshtop-recording","version":1,"created_at":"2026-11-30T00:00:00Z","meshtop_version":"0.1.0","sources":[{"target":"ws://127.0.0.1:1/events","name":null}]}"#;
            let mut plain = format!("{header}\n");
            for t in 0..20 {
                plain.push_str(&format!(
                    r#"{{"t":{t},"src":0,"msg":{{"type":"dropped","count":{t},"total":{t}}}}}"#
                ));
                plain.push('\n');
            }
            let mut bytes = plain.into_bytes();
            for (at, byte) in flips {
                let len = bytes.len();
                bytes[at % len] = byte;
            }
            bytes.truncate(cut);
            let dir = std::env::temp_dir();
            let name = format!("meshtop-prop-{}-{}.ndjson{}", std::process::id(), fastrand::u64(..), if zstd { ".zst" } else { "" });
            let path = dir.join(name);
            let written = if zstd {
                zstd::encode_all(&bytes[..], 3).expect("compress")
            } else {
                bytes.clone()
            };
            std::fs::write(&path, written).expect("write");
            let result = RecordingReader::open(&path);
            if let Ok((_, mut reader)) = result {
                let mut entries = 0;
                while let Ok(Some(_)) = reader.next_entry() {
                    entries += 1;
                    proptest::prop_assert!(entries <= 20);
                }
                proptest::prop_assert_eq!(reader.stats().entries, entries);
            } else if let Err(err) = result {
                proptest::prop_assert!(!err.to_string().contains('\n'));
            }
            let _ = std::fs::remove_file(&path);
        }
    }
}
