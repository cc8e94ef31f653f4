//! The recording file format (version 1): the header line, the message
//! lines, and the rule that a `.zst` name means zstd compression.
//! Documented in `docs/recording.md`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::schema::{one_line, timestamp};

/// The value of the header's `format`: what tells a recording from any
/// other JSON file.
pub const FORMAT: &str = "meshtop-recording";

/// The version this build writes and the newest it reads.
pub const VERSION: u32 = 1;

/// The longest message line read. A sidecar sends messages of at most
/// 16 MiB (the attach client refuses larger ones); the rest is the line's
/// `t`, `src` and braces. A longer line is skipped and counted, so a
/// damaged file cannot make the reader hold an unbounded line in memory.
pub const MAX_LINE_BYTES: usize = (16 << 20) + 1024;

/// The longest header line read: enough for thousands of sources, and it
/// bounds what is read of a file that is not a recording at all.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// The first four bytes of a zstd frame, for telling a user who named a
/// compressed file without `.zst` what is wrong.
pub(crate) const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// The first line of a recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    pub version: u32,
    /// When recording started (the origin of every line's `t`), RFC 3339
    /// UTC with microseconds.
    pub created_at: String,
    /// The meshtop that wrote the file, for bug reports.
    pub meshtop_version: String,
    /// The sidecars recorded; a line's `src` is an index into this list.
    pub sources: Vec<SourceInfo>,
}

impl Header {
    /// The header of a recording starting now.
    pub fn new(sources: Vec<SourceInfo>) -> Header {
        Header {
            format: FORMAT.to_owned(),
            version: VERSION,
            created_at: timestamp(SystemTime::now()),
            meshtop_version: env!("CARGO_PKG_VERSION").to_owned(),
            sources,
        }
    }
}

/// One recorded sidecar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The target as given to `attach`/`record`, e.g. `ws://127.0.0.1:15090/events`.
    pub target: String,
    /// The sidecar's name when known as the header was written; usually
    /// `null`, since names arrive later in each source's `hello` (which is
    /// recorded like any other message).
    pub name: Option<String>,
}

/// Whether `path` is written zstd-compressed: exactly when its name ends in
/// `.zst`. A reader goes by the content instead ([`ZSTD_MAGIC`]), so that a
/// renamed recording still replays.
pub fn is_zstd(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "zst")
}

/// Appends one message line, `{"t":…,"src":…,"msg":RAW}` and a newline, to
/// `out`. `raw` is copied byte for byte, except that line breaks become
/// spaces: valid JSON only has them as whitespace between tokens (inside
/// strings they must be escaped), so the message means the same and the
/// line stays one line.
pub fn encode_line(out: &mut Vec<u8>, t: Duration, src: usize, raw: &str) {
    let micros = u64::try_from(t.as_micros()).unwrap_or(u64::MAX);
    // Writing to a Vec cannot fail.
    let _ = std::io::Write::write_fmt(out, format_args!("{{\"t\":{micros},\"src\":{src},\"msg\":"));
    let start = out.len();
    out.extend_from_slice(raw.as_bytes());
    if raw.contains(['\n', '\r']) {
        for byte in &mut out[start..] {
            if matches!(*byte, b'\n' | b'\r') {
                *byte = b' ';
            }
        }
    }
    out.extend_from_slice(b"}\n");
}

/// The parts of a line exactly as [`encode_line`] writes it (without its
/// newline): `t`, `src`, and the text between `"msg":` and the final `}`,
/// which is the message if and only if it parses as one JSON value. `None`
/// for any other shape, which a full JSON parse then handles.
pub(crate) fn split_written_line(line: &str) -> Option<(u64, usize, &str)> {
    fn number(s: &str) -> Option<(u64, &str)> {
        let end = s.find(|c: char| !c.is_ascii_digit())?;
        let (digits, rest) = s.split_at(end);
        if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
            return None;
        }
        Some((digits.parse().ok()?, rest))
    }
    let rest = line.strip_prefix("{\"t\":")?;
    let (t, rest) = number(rest)?;
    let rest = rest.strip_prefix(",\"src\":")?;
    let (src, rest) = number(rest)?;
    let raw = rest.strip_prefix(",\"msg\":")?.strip_suffix('}')?;
    Some((t, usize::try_from(src).ok()?, raw))
}

/// A message line as read, borrowing the message's text.
#[derive(Deserialize)]
pub(crate) struct Line<'a> {
    pub t: u64,
    pub src: usize,
    #[serde(borrow)]
    pub msg: &'a RawValue,
}

/// Why a first line is not a header this build can use.
pub(crate) enum HeaderProblem {
    NotARecording(String),
    NewerVersion(u64),
}

/// Checks a first line in the order a reader would ask: is it JSON, is it
/// a recording, of a version we read, with the fields we need.
pub(crate) fn parse_header(line: &[u8]) -> Result<Header, HeaderProblem> {
    let not = |reason: String| HeaderProblem::NotARecording(reason);
    if line.starts_with(&ZSTD_MAGIC) {
        // Only reached through a zstd frame inside the decompressed text.
        return Err(not("it holds a zstd frame inside another".to_owned()));
    }
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|err| not(format!("its first line is not JSON ({err})")))?;
    let Some(object) = value.as_object() else {
        return Err(not("its first line is not a JSON object".to_owned()));
    };
    match object.get("format") {
        Some(serde_json::Value::String(format)) if format == FORMAT => {}
        Some(other) => {
            return Err(not(format!(
                "its format is {}, not \"{FORMAT}\"",
                one_line(&other.to_string())
            )));
        }
        None => {
            return Err(not(format!(
                "its first line has no \"format\":\"{FORMAT}\""
            )));
        }
    }
    match object.get("version").and_then(serde_json::Value::as_u64) {
        Some(version) if version > u64::from(VERSION) => {
            return Err(HeaderProblem::NewerVersion(version));
        }
        Some(version) if version >= 1 => {}
        _ => return Err(not("its header has no valid \"version\"".to_owned())),
    }
    serde_json::from_value(value).map_err(|err| not(format!("its header is damaged ({err})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: Duration, src: usize, raw: &str) -> String {
        let mut out = Vec::new();
        encode_line(&mut out, t, src, raw);
        String::from_utf8(out).expect("ASCII around UTF-8")
    }

    #[test]
    fn lines_carry_microseconds_the_source_and_the_raw_message() {
        assert_eq!(
            line(
                Duration::from_micros(1_500_001),
                2,
                r#"{"type":"dropped", "count":1}"#
            ),
            "{\"t\":1500001,\"src\":2,\"msg\":{\"type\":\"dropped\", \"count\":1}}\n"
        );
    }

    #[test]
    fn line_breaks_in_a_message_become_spaces() {
        assert_eq!(
            line(Duration::ZERO, 0, "{\"a\":\r\n1}"),
            "{\"t\":0,\"src\":0,\"msg\":{\"a\":  1}}\n"
        );
    }

    #[test]
    fn written_lines_split_into_their_parts() {
        let written = line(Duration::from_micros(42), 3, r#"{"type":"x"}"#);
        assert_eq!(
            split_written_line(written.trim_end()),
            Some((42, 3, r#"{"type":"x"}"#))
        );
        for other in [
            r#"{"t": 1,"src":0,"msg":{}}"#,
            r#"{"src":0,"t":1,"msg":{}}"#,
            r#"{"t":01,"src":0,"msg":{}}"#,
            r#"{"t":-1,"src":0,"msg":{}}"#,
            r#"{"t":99999999999999999999,"src":0,"msg":{}}"#,
            r#"{"t":1,"src":0}"#,
        ] {
            assert_eq!(split_written_line(other), None, "{other}");
        }
    }

    #[test]
    fn only_a_zst_extension_means_compressed() {
        assert!(is_zstd(Path::new("a.ndjson.zst")));
        assert!(!is_zstd(Path::new("a.ndjson")));
        assert!(!is_zstd(Path::new("zst")));
        assert!(!is_zstd(Path::new("a.zstd")));
    }

    #[test]
    fn headers_round_trip() {
        let header = Header::new(vec![SourceInfo {
            target: "ws://127.0.0.1:1/events".into(),
            name: None,
        }]);
        let json = serde_json::to_vec(&header).expect("encodes");
        assert!(matches!(parse_header(&json), Ok(h) if h == header));
    }
}
