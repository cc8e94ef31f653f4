//! Recordings on real files: what is written is read back byte for byte,
//! plain and zstd; cut, damaged, foreign and newer files; flushing while
//! the writer runs; and full disks.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use meshtop::recording::{
    Entry, FLUSH_AFTER, ReadStats, RecordingError, RecordingReader, RecordingWriter, SourceInfo,
    load,
};
use meshtop::schema::Message;
use meshtop::tui::source::FeedKind;

/// A directory of its own under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "meshtop-recording-{test}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn sources() -> Vec<SourceInfo> {
    vec![
        SourceInfo {
            target: "ws://127.0.0.1:15090/events".into(),
            name: None,
        },
        SourceInfo {
            target: "ws://127.0.0.1:15091/events?failures=1".into(),
            name: Some("web".into()),
        },
    ]
}

const HELLO: &str = r#"{"type":"hello","schema":1,"sidecar":{"name":"wéb-7d4b9c","namespace":"emojivoto","version":"0.1.0","started_at":"2026-11-30T03:42:30.123456Z"},"listeners":[{"direction":"inbound","addr":"0.0.0.0:15006","target":null}]}"#;

/// A request event that differs with `i`, so that compression does not
/// make every line free.
fn request(i: usize) -> String {
    format!(
        r#"{{"type":"request","ts":"2026-11-30T03:42:31.{:06}Z","sidecar":"web-7d4b9c","direction":"outbound","protocol":"grpc","client":"10.1.0.7:{}","server":"10.1.0.9:8080","authority":"voting-svc.emojivoto:8080","method":"POST","path":"/emojivoto.v1.VotingService/Vote{}","status":200,"grpc_status":{},"grpc_message":null,"error":null,"duration_ms":{}.{:03},"ttfb_ms":null,"req_bytes":{},"resp_bytes":0}}"#,
        i % 1_000_000,
        40_000 + i % 20_000,
        i.wrapping_mul(2_654_435_761) % 100_003,
        i % 17,
        i % 97,
        (i * 7) % 1000,
        i % 4096,
    )
}

/// Messages whose text a re-encoding would change: odd spacing, key order,
/// escapes, non-ASCII, an unknown field.
fn messages(n: usize) -> Vec<String> {
    let mut out = vec![
        HELLO.to_owned(),
        r#"{ "total" : 7 ,"count":3,  "type":"dropped" }"#.to_owned(),
        r#"{"type":"dropped","count":1,"total":8,"later_field":"caf\u00e9 \"quoted\""}"#.to_owned(),
        r#"{"type":"stats","ts":"2026-11-30T03:42:33.000004Z","sidecar":"web-7d4b9c","interval_ms":1000,"upstreams":[]}"#.to_owned(),
    ];
    out.extend((0..n.saturating_sub(out.len())).map(request));
    out.truncate(n);
    out
}

/// Writes `messages`, alternating sources, 1 ms apart; returns the count
/// `finish` gave.
fn record(path: &Path, messages: &[String]) -> u64 {
    let mut writer = RecordingWriter::create(path, sources()).expect("create the recording");
    for (i, raw) in messages.iter().enumerate() {
        writer
            .write(Duration::from_millis(i as u64), i % 2, raw)
            .expect("write a message");
    }
    writer.finish().expect("finish the recording")
}

fn raws(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| &*e.raw).collect()
}

fn one_line(err: &RecordingError) -> String {
    let text = err.to_string();
    assert!(!text.contains('\n'), "not one line: {text:?}");
    text
}

fn assert_round_trip(name: &str) {
    let dir = TempDir::new("round-trip");
    let path = dir.path(name);
    let written = messages(200);
    assert_eq!(record(&path, &written), 200);

    let (header, entries, stats) = load(&path).expect("load");
    assert_eq!(
        stats,
        ReadStats {
            entries: 200,
            skipped: 0,
            truncated: false
        }
    );
    assert_eq!(header.format, "meshtop-recording");
    assert_eq!(header.version, 1);
    assert_eq!(header.meshtop_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(header.sources, sources());
    let created = humantime::parse_rfc3339(&header.created_at).expect("RFC 3339");
    let age = SystemTime::now()
        .duration_since(created)
        .expect("created in the past");
    assert!(age < Duration::from_secs(60), "created {age:?} ago");

    assert_eq!(raws(&entries), written, "raw text kept byte for byte");
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.t, Duration::from_millis(i as u64));
        assert_eq!(entry.src, i % 2);
        let expected: Message = serde_json::from_str(&written[i]).expect("a valid message");
        assert_eq!(entry.message.as_ref().ok(), Some(&expected));
    }
}

#[test]
fn writers_and_readers_can_move_to_another_thread() {
    fn send<T: Send>() {}
    send::<RecordingWriter>();
    send::<RecordingReader>();
    send::<Entry>();
}

#[test]
fn plain_recordings_round_trip_byte_for_byte() {
    assert_round_trip("session.ndjson");
}

#[test]
fn zst_recordings_round_trip_byte_for_byte() {
    assert_round_trip("session.ndjson.zst");
}

#[test]
fn a_plain_recording_is_a_header_then_one_line_per_message() {
    let dir = TempDir::new("plain-lines");
    let path = dir.path("session.ndjson");
    let written = messages(5);
    record(&path, &written);
    let text = fs::read_to_string(&path).expect("read back");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6);
    assert!(text.ends_with('\n'));

    let header: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON header");
    let keys: Vec<&str> = header
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "created_at",
            "format",
            "meshtop_version",
            "sources",
            "version"
        ]
    );
    assert!(lines[0].starts_with(r#"{"format":"meshtop-recording","version":1,"created_at":""#));
    assert!(lines[0].ends_with(
        r#""sources":[{"target":"ws://127.0.0.1:15090/events","name":null},{"target":"ws://127.0.0.1:15091/events?failures=1","name":"web"}]}"#
    ));
    for (i, (line, raw)) in lines[1..].iter().zip(&written).enumerate() {
        assert_eq!(
            *line,
            format!(r#"{{"t":{},"src":{},"msg":{raw}}}"#, i * 1000, i % 2)
        );
    }
}

#[test]
fn a_zst_recording_is_one_zstd_frame_of_the_same_lines() {
    let dir = TempDir::new("zst-lines");
    let plain = dir.path("a.ndjson");
    let compressed = dir.path("a.ndjson.zst");
    record(&plain, &messages(50));
    record(&compressed, &messages(50));
    let bytes = fs::read(&compressed).expect("read back");
    assert_eq!(bytes[..4], [0x28, 0xB5, 0x2F, 0xFD], "zstd magic");
    let text = zstd::decode_all(&bytes[..]).expect("a complete zstd frame");
    let plain_text = fs::read(&plain).expect("read back");
    // Identical but for created_at.
    let body = |t: &[u8]| t.splitn(2, |&b| b == b'\n').nth(1).map(<[u8]>::to_vec);
    assert_eq!(body(&text), body(&plain_text));
}

#[test]
fn a_plain_file_cut_mid_line_yields_every_complete_line() {
    let dir = TempDir::new("plain-cut");
    let full = dir.path("full.ndjson");
    let written = messages(30);
    record(&full, &written);
    let bytes = fs::read(&full).expect("read back");
    let ends: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    let cut_path = dir.path("cut.ndjson");
    // Inside message lines 1, 2, 15 and 30, at several points of each.
    for line in [1, 2, 15, 30] {
        let (start, end) = (ends[line - 1], ends[line]);
        for cut in [start + 1, (start + end) / 2, end - 3, end - 2] {
            fs::write(&cut_path, &bytes[..cut]).expect("write the cut file");
            let (_, entries, stats) = load(&cut_path).expect("a cut file still loads");
            assert_eq!(raws(&entries), written[..line - 1], "cut at {cut}");
            let expected = ReadStats {
                entries: line as u64 - 1,
                skipped: 0,
                truncated: true,
            };
            assert_eq!(stats, expected, "cut at {cut}");
        }
    }
    // Missing only its newline, the last line is whole and read.
    fs::write(&cut_path, &bytes[..ends[10] - 1]).expect("write the cut file");
    let (_, entries, stats) = load(&cut_path).expect("loads");
    assert_eq!(raws(&entries), written[..10]);
    assert!(!stats.truncated);
    // Cut exactly after a line, the file is a shorter complete recording.
    fs::write(&cut_path, &bytes[..ends[10]]).expect("write the cut file");
    let (_, entries, stats) = load(&cut_path).expect("loads");
    assert_eq!(raws(&entries), written[..10]);
    assert!(!stats.truncated);
}

#[test]
fn a_zst_file_cut_anywhere_yields_every_line_flushed_before_the_cut() {
    let dir = TempDir::new("zst-cut");
    let full = dir.path("full.ndjson.zst");
    let written = messages(400);
    // Flush every 40 messages, noting where each flush left the file: a
    // cut after a flush point keeps exactly what was flushed before it.
    let mut writer = RecordingWriter::create(&full, sources()).expect("create");
    let mut flushed = vec![(fs::metadata(&full).expect("stat").len() as usize, 0)];
    for (i, raw) in written.iter().enumerate() {
        writer
            .write(Duration::from_millis(i as u64), 0, raw)
            .expect("write");
        if (i + 1) % 40 == 0 {
            writer.flush().expect("flush");
            flushed.push((fs::metadata(&full).expect("stat").len() as usize, i + 1));
        }
    }
    assert_eq!(writer.finish().expect("finish"), 400);
    let bytes = fs::read(&full).expect("read back");
    let header_end = flushed[0].0;

    let mut cuts: Vec<usize> = (header_end..bytes.len()).step_by(97).collect();
    for &(offset, _) in &flushed {
        cuts.extend([offset - 1, offset, offset + 1]);
    }
    cuts.extend([bytes.len() - 3, bytes.len() - 2, bytes.len() - 1]);
    cuts.retain(|&cut| cut >= header_end && cut < bytes.len());

    let cut_path = dir.path("cut.ndjson.zst");
    for cut in cuts {
        fs::write(&cut_path, &bytes[..cut]).expect("write the cut file");
        let expected = flushed
            .iter()
            .rev()
            .find(|&&(offset, _)| offset <= cut)
            .map_or(0, |&(_, count)| count);
        let (_, entries, stats) = load(&cut_path).expect("a cut file still loads");
        assert_eq!(raws(&entries), written[..expected], "cut at {cut}");
        let expected = ReadStats {
            entries: expected as u64,
            skipped: 0,
            truncated: true,
        };
        assert_eq!(stats, expected, "cut at {cut} of {}", bytes.len());
    }

    // Cut inside the header's block: a clear error, not a panic.
    for cut in [1, header_end / 2, header_end - 1] {
        fs::write(&cut_path, &bytes[..cut]).expect("write the cut file");
        let err = load(&cut_path).expect_err("no header");
        assert!(matches!(err, RecordingError::NotARecording { .. }), "{err}");
        one_line(&err);
    }
}

#[test]
fn malformed_lines_in_the_middle_are_skipped_and_counted() {
    let dir = TempDir::new("malformed");
    let good = dir.path("good.ndjson");
    record(&good, &messages(3));
    let text = fs::read_to_string(&good).expect("read back");
    let lines: Vec<&str> = text.lines().collect();
    let bad_lines: [&[u8]; 8] = [
        b"not json at all",
        b"",
        br#"{"t":5,"src":0}"#,
        br#"{"t":"soon","src":0,"msg":{}}"#,
        br#"{"t":5,"src":2,"msg":{"type":"dropped","count":1,"total":1}}"#,
        br#"{"t":5,"src":0,"msg":{"type":"dropped""#,
        b"\x1b[31m\x00\x7f",
        b"{\"t\":5,\"src\":0,\"msg\":\"\xff\xfe\"}",
    ];
    // A well-formed line of a message type this build does not know: an
    // entry, read as a newer sidecar's message (`Message::Unknown`), as
    // the live source reads it (docs/events.md, "Evolving the schema").
    let unknown = br#"{"t":9,"src":1,"msg":{"type":"from_the_future","x":1}}"#;
    let mut damaged: Vec<&[u8]> = vec![lines[0].as_bytes(), lines[1].as_bytes()];
    damaged.extend(&bad_lines[..4]);
    damaged.push(lines[2].as_bytes());
    damaged.extend(&bad_lines[4..]);
    damaged.push(unknown);
    damaged.push(lines[3].as_bytes());
    let mut content = damaged.join(&b"\n"[..]);
    content.push(b'\n');

    for name in ["damaged.ndjson", "damaged.ndjson.zst"] {
        let path = dir.path(name);
        let bytes = if name.ends_with(".zst") {
            zstd::encode_all(&content[..], 3).expect("compress")
        } else {
            content.clone()
        };
        fs::write(&path, bytes).expect("write");
        let (_, entries, stats) = load(&path).expect("loads");
        let got: Vec<(&str, bool)> = entries
            .iter()
            .map(|e| (&*e.raw, e.message.is_ok()))
            .collect();
        let expected_msg = |line: &str| {
            let start = line.find(r#""msg":"#).expect("a message line") + 6;
            line[start..line.len() - 1].to_owned()
        };
        assert_eq!(
            got,
            [
                (expected_msg(lines[1]).as_str(), true),
                (expected_msg(lines[2]).as_str(), true),
                (r#"{"type":"from_the_future","x":1}"#, true),
                (expected_msg(lines[3]).as_str(), true),
            ],
            "{name}"
        );
        assert_eq!(
            stats,
            ReadStats {
                entries: 4,
                skipped: 8,
                truncated: false
            },
            "{name}"
        );
    }
}

#[test]
fn lines_written_by_other_tools_are_read_too() {
    let dir = TempDir::new("other-tools");
    let path = dir.path("hand-made.ndjson");
    // Spaces, another field order, a field this build does not know, a
    // CRLF line end, and no newline at the very end.
    let dropped = r#"{ "type" : "dropped", "count":1, "total":2 }"#;
    fs::write(
        &path,
        format!(
            "{}\r\n{{ \"src\": 1, \"msg\": {dropped} , \"t\": 2500, \"note\": \"x\" }}\r\n{{\"t\":3000,\"src\":0,\"msg\":{HELLO}}}",
            r#"{"version":1,"format":"meshtop-recording","sources":[{"target":"a","name":null},{"target":"b","name":"web"}],"created_at":"2026-11-30T03:42:30Z","meshtop_version":"0.0.9"}"#
        ),
    )
    .expect("write");
    let (header, entries, stats) = load(&path).expect("loads");
    assert_eq!(header.sources[1].name.as_deref(), Some("web"));
    assert_eq!(raws(&entries), [dropped, HELLO]);
    assert_eq!(entries[0].t, Duration::from_micros(2500));
    assert_eq!(entries[0].src, 1);
    assert!(entries.iter().all(|e| e.message.is_ok()));
    assert_eq!(
        stats,
        ReadStats {
            entries: 2,
            skipped: 0,
            truncated: false
        }
    );
}

#[test]
fn a_newer_version_is_a_clear_error() {
    let dir = TempDir::new("newer");
    let header = r#"{"format":"meshtop-recording","version":2,"created_at":"2030-01-01T00:00:00Z","meshtop_version":"9.0.0","sources":[],"something_new":true}"#;
    for name in ["newer.ndjson", "newer.ndjson.zst"] {
        let path = dir.path(name);
        let content = format!("{header}\n{{\"t\":0,\"src\":0,\"msg\":{{}}}}\n");
        let bytes = if name.ends_with(".zst") {
            zstd::encode_all(content.as_bytes(), 3).expect("compress")
        } else {
            content.into_bytes()
        };
        fs::write(&path, bytes).expect("write");
        let err = RecordingReader::open(&path)
            .map(|_| ())
            .expect_err("newer version");
        assert!(
            matches!(err, RecordingError::NewerVersion { version: 2, .. }),
            "{err}"
        );
        let text = one_line(&err);
        assert!(text.contains(name), "{text}");
        assert!(text.contains("version 2"), "{text}");
        assert!(text.contains("upgrade meshtop"), "{text}");
    }
}

#[test]
fn files_that_are_not_recordings_are_clear_errors() {
    let dir = TempDir::new("foreign");
    let binary: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let compressed_header = zstd::encode_all(
        &b"{\"format\":\"meshtop-recording\",\"version\":1}\n"[..],
        3,
    )
    .expect("compress");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.ndjson", Vec::new(), "empty"),
        ("empty.ndjson.zst", Vec::new(), "empty"),
        (
            "random.json",
            br#"{"hello":"world"}"#.to_vec(),
            "no \"format\"",
        ),
        ("array.json", b"[1,2,3]\n".to_vec(), "not a JSON object"),
        (
            "other.json",
            b"{\"format\":\"har\",\"version\":1}\n".to_vec(),
            "format is \"har\"",
        ),
        (
            "noversion.ndjson",
            b"{\"format\":\"meshtop-recording\"}\n".to_vec(),
            "version",
        ),
        (
            "incomplete.ndjson",
            b"{\"format\":\"meshtop-recording\",\"version\":1}\n".to_vec(),
            "damaged",
        ),
        ("text.txt", b"hello\nworld\n".to_vec(), "not JSON"),
        ("binary.bin", binary.clone(), "not JSON"),
        // Read by their content, whatever their name says.
        ("binary.zst", binary, "not JSON"),
        ("plain.ndjson.zst", b"{\"format\":1}\n".to_vec(), "format"),
        ("compressed.ndjson", compressed_header, "damaged"),
        // A zstd frame that is cut or damaged after its magic bytes.
        (
            "cut.ndjson",
            vec![0x28, 0xB5, 0x2F, 0xFD, 0xFF],
            "decompress",
        ),
        ("zeros.ndjson", vec![0; 10 << 20], "longer than"),
    ];
    for (name, content, reason) in cases {
        let path = dir.path(name);
        fs::write(&path, content).expect("write");
        let err = load(&path).map(|_| ()).expect_err(name);
        assert!(
            matches!(err, RecordingError::NotARecording { .. }),
            "{name}: {err}"
        );
        let text = one_line(&err);
        assert!(text.contains(name), "{text}");
        assert!(text.contains("not a meshtop recording"), "{text}");
        assert!(
            text.contains(reason),
            "{name}: {text} should say {reason:?}"
        );
    }

    let err = load(dir.path("missing.ndjson"))
        .map(|_| ())
        .expect_err("no such file");
    assert!(matches!(err, RecordingError::Open { .. }), "{err}");
    assert!(one_line(&err).contains("missing.ndjson"));
}

/// Reads the file with a reader of its own until it shows at least `n`
/// entries, calling `tick` between reads; returns how long that took.
fn until_visible(path: &Path, n: u64, mut tick: impl FnMut()) -> Duration {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(5);
    loop {
        let (_, _, stats) = load(path).expect("readable while written");
        if stats.entries >= n {
            return start.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{n} entries never became visible"
        );
        tick();
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_quiet_writer_flushes_on_the_tick(name: &str) {
    let dir = TempDir::new("flush-tick");
    let path = dir.path(name);
    let mut writer = RecordingWriter::create(&path, sources()).expect("create");
    let (_, _, stats) = load(&path).expect("the header is on disk at once");
    assert_eq!(stats.entries, 0);

    let written = Instant::now();
    writer
        .write(writer.elapsed(), 0, HELLO)
        .expect("write a message");
    // Buffered at first: flushing is what the test is about.
    assert_eq!(load(&path).expect("readable").2.entries, 0);

    // A timer ticking every FLUSH_AFTER / 10, as a recorder's loop does.
    let mut last_tick = Instant::now();
    until_visible(&path, 1, || {
        if last_tick.elapsed() >= FLUSH_AFTER / 10 {
            writer.flush_if_due().expect("flush");
            last_tick = Instant::now();
        }
    });
    let age = written.elapsed();
    assert!(age <= Duration::from_secs(1), "visible only after {age:?}");
    let (_, entries, stats) = load(&path).expect("readable while written");
    assert_eq!(raws(&entries), [HELLO]);
    // An open zstd frame reads as cut after its last flushed block.
    assert_eq!(stats.truncated, name.ends_with(".zst"));
    assert_eq!(writer.finish().expect("finish"), 1);
    let (_, _, stats) = load(&path).expect("readable");
    assert!(!stats.truncated);
}

#[test]
fn a_quiet_plain_writer_flushes_within_a_second_on_the_tick() {
    assert_quiet_writer_flushes_on_the_tick("quiet.ndjson");
}

#[test]
fn a_quiet_zst_writer_flushes_within_a_second_on_the_tick() {
    assert_quiet_writer_flushes_on_the_tick("quiet.ndjson.zst");
}

fn assert_busy_writer_flushes_while_writing(name: &str) {
    let dir = TempDir::new("flush-busy");
    let path = dir.path(name);
    let mut writer = RecordingWriter::create(&path, sources()).expect("create");
    let first = Instant::now();
    writer.write(writer.elapsed(), 0, HELLO).expect("write");
    // Keep writing (a message every few ms, far less than a buffer) and
    // never call flush_if_due: writes alone must flush.
    let mut i = 0;
    let took = until_visible(&path, 1, || {
        for _ in 0..3 {
            // Only the first message is waited for; the others keep the
            // writer busy. Their count is checked by the final read.
            i += 1;
            writer
                .write(writer.elapsed(), 1, &request(i))
                .expect("write");
        }
    });
    assert!(
        took <= Duration::from_secs(1),
        "visible only after {took:?}"
    );
    assert!(first.elapsed() < Duration::from_secs(5));
    let total = writer.finish().expect("finish");
    assert_eq!(total, i as u64 + 1);
    let (_, entries, stats) = load(&path).expect("readable");
    assert_eq!(stats.entries, total);
    assert_eq!(&*entries[0].raw, HELLO);
}

#[test]
fn a_busy_plain_writer_flushes_within_a_second() {
    assert_busy_writer_flushes_while_writing("busy.ndjson");
}

#[test]
fn a_busy_zst_writer_flushes_within_a_second() {
    assert_busy_writer_flushes_while_writing("busy.ndjson.zst");
}

#[test]
fn a_dropped_writer_still_ends_its_file() {
    let dir = TempDir::new("dropped");
    for name in ["dropped.ndjson", "dropped.ndjson.zst"] {
        let path = dir.path(name);
        let mut writer = RecordingWriter::create(&path, sources()).expect("create");
        for raw in messages(10) {
            writer.write(writer.elapsed(), 1, &raw).expect("write");
        }
        drop(writer);
        let (_, entries, stats) = load(&path).expect("readable");
        assert_eq!(raws(&entries), messages(10), "{name}");
        assert!(!stats.truncated, "{name}");
    }
}

#[test]
fn entries_become_the_items_the_live_source_gives() {
    let dir = TempDir::new("feed");
    let path = dir.path("feed.ndjson");
    fs::write(
        &path,
        format!(
            "{}\n{{\"t\":1,\"src\":1,\"msg\":{HELLO}}}\n{{\"t\":2,\"src\":0,\"msg\":{{\"type\":\"nope\"}}}}\n",
            r#"{"format":"meshtop-recording","version":1,"created_at":"2026-11-30T03:42:30Z","meshtop_version":"0.1.0","sources":[{"target":"a","name":null},{"target":"b","name":null}]}"#
        ),
    )
    .expect("write");
    let (header, reader) = RecordingReader::open(&path).expect("open");
    assert_eq!(header.sources.len(), 2);
    let items: Vec<_> = reader
        .map(|entry| entry.expect("readable").into_feed_item())
        .collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].source, 1);
    match &items[0].kind {
        FeedKind::Message {
            message: Message::Hello(hello),
            raw,
            ..
        } => {
            assert_eq!(hello.sidecar.name, "wéb-7d4b9c");
            assert_eq!(&**raw, HELLO);
        }
        other => panic!("expected a hello, got {other:?}"),
    }
    assert_eq!(items[1].source, 0);
    // A type this build does not know: a newer sidecar's message.
    assert!(
        matches!(
            &items[1].kind,
            FeedKind::Message {
                message: Message::Unknown,
                ..
            }
        ),
        "{:?}",
        items[1].kind
    );
}

fn assert_disk_full(err: &RecordingError) {
    assert!(matches!(err, RecordingError::Write { .. }), "{err}");
    let kind = err.io_error().map(std::io::Error::kind);
    assert_eq!(kind, Some(std::io::ErrorKind::StorageFull), "{err}");
    assert!(one_line(err).contains("No space left"), "{err}");
}

#[test]
fn writing_to_a_full_device_is_a_typed_error() {
    let full = Path::new("/dev/full");
    if !full.exists() {
        println!("skipped: no /dev/full on this system");
        return;
    }
    let dir = TempDir::new("dev-full");
    // The `.zst` name (a link to /dev/full) makes the writer compress.
    let link = dir.path("full.ndjson.zst");
    std::os::unix::fs::symlink(full, &link).expect("symlink");
    for path in [full, link.as_path()] {
        match RecordingWriter::create(path, sources()) {
            Ok(_) => panic!("{} accepted the header", path.display()),
            Err(err) => assert_disk_full(&err),
        }
    }
}

/// A tmpfs of 64 KiB mounted for one test, unmounted on drop even when
/// the test fails.
struct TinyTmpfs {
    dir: TempDir,
    mounted: bool,
}

impl TinyTmpfs {
    fn mount() -> Result<TinyTmpfs, String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| format!("cannot run id: {e}"))?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("not running as root".into());
        }
        let mut tmpfs = TinyTmpfs {
            dir: TempDir::new("tmpfs"),
            mounted: false,
        };
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&tmpfs.dir.0)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        tmpfs.mounted = true;
        Ok(tmpfs)
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir.0).status();
        }
    }
}

/// Records into a 64 KiB tmpfs until it is full, flushing every 10
/// messages; returns what was written and how many were flushed.
fn record_until_full(path: &Path) -> (Vec<String>, usize) {
    let mut writer = RecordingWriter::create(path, sources()).expect("create");
    let mut written = Vec::new();
    let mut flushed = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        assert!(Instant::now() < deadline, "the tmpfs never filled up");
        let raw = request(written.len());
        if let Err(err) = writer.write(writer.elapsed(), 0, &raw) {
            break err;
        }
        written.push(raw);
        if written.len() % 10 == 0 {
            match writer.flush() {
                Ok(()) => flushed = written.len(),
                Err(err) => break err,
            }
        }
    };
    assert_disk_full(&err);
    // The writer has stopped and says so, without panicking.
    let again = writer.write(writer.elapsed(), 0, HELLO);
    assert!(
        matches!(again, Err(RecordingError::Stopped { .. })),
        "{again:?}"
    );
    assert!(matches!(
        writer.finish(),
        Err(RecordingError::Stopped { .. })
    ));
    (written, flushed)
}

#[test]
fn a_recording_that_fills_the_disk_stays_readable() {
    let tmpfs = match TinyTmpfs::mount() {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    for name in ["full.ndjson", "full.ndjson.zst"] {
        let path = tmpfs.dir.path(name);
        let (written, flushed) = record_until_full(&path);
        let (_, entries, stats) = load(&path).expect("what was written stays readable");
        // Every line that reached the disk, in order, and nothing else.
        assert!(
            entries.len() >= flushed,
            "{name}: {} < {flushed}",
            entries.len()
        );
        assert_eq!(raws(&entries), written[..entries.len()], "{name}");
        assert_eq!(stats.skipped, 0, "{name}");
        if name.ends_with(".zst") {
            assert!(stats.truncated, "{name}: the frame never ended");
        } else {
            let bytes = fs::read(&path).expect("read back");
            let lines = bytes.iter().filter(|&&b| b == b'\n').count();
            assert_eq!(entries.len(), lines - 1, "{name}: every complete line");
            assert_eq!(stats.truncated, !bytes.ends_with(b"\n"), "{name}");
        }
        println!(
            "{name}: {} messages written before the disk filled, {} read back",
            written.len(),
            entries.len()
        );
        fs::remove_file(&path).expect("make room for the next file");
    }
    drop(tmpfs);
}
