//! Recording sessions and replaying them: the built binary against real
//! sidecars; replay must show exactly what the live session showed.

mod support;

use std::path::PathBuf;

use support::*;

/// A path in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("meshtop-replay-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempFile(path)
    }

    fn as_str(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn traffic(addr: std::net::SocketAddr, host: &str, n: u64) {
    let mut client = http1_conn(addr).await;
    for i in 0..n {
        client.ready().await.expect("keep-alive");
        let path = if i % 4 == 0 {
            "/status/503"
        } else {
            "/bytes/100"
        };
        let resp = client
            .send_request(get(path, host))
            .await
            .expect("response");
        body_bytes(resp).await;
    }
}

/// The last table of a headless run.
fn final_table(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    text.trim_end()
        .rsplit("\n\n")
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn finished(command: tokio::process::Child) -> std::process::Output {
    within("the command to finish", command.wait_with_output())
        .await
        .expect("output")
}

async fn replay_headless(file: &str) -> (String, String) {
    replay_headless_with(file, &[]).await
}

async fn replay_headless_with(file: &str, options: &[&str]) -> (String, String) {
    let mut args = vec!["replay", file, "--headless", "--speed", "max"];
    args.extend_from_slice(options);
    let output = finished(meshtop(&args).spawn().expect("runs")).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        final_table(&output.stdout),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_prints_exactly_the_live_final_table() {
    for name in ["session.ndjson", "session.ndjson.zst"] {
        let file = TempFile::new(name);
        let backend = backend().await;
        let a = Sidecar::start(sidecar_config(backend.addr, "web")).await;
        let b = Sidecar::start(sidecar_config(backend.addr, "voting")).await;
        let live = meshtop(&[
            "attach",
            &format!(":{}", a.admin.port()),
            &format!(":{}", b.admin.port()),
            "--headless",
            "--interval",
            "1s",
            "--duration",
            "4s",
            "--record",
            file.as_str(),
        ])
        .spawn()
        .expect("attach runs");
        wait_for_subscribers(a.admin, 1).await;
        wait_for_subscribers(b.admin, 1).await;
        traffic(a.addr(), "web-svc.emojivoto:80", 40).await;
        traffic(b.addr(), "voting-svc.emojivoto:8080", 24).await;
        let output = finished(live).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let live_table = final_table(&output.stdout);
        assert!(live_table.contains("web-svc.emojivoto:80"), "{live_table}");
        assert!(
            live_table.contains("voting-svc.emojivoto:8080"),
            "{live_table}"
        );

        let (replayed, _) = replay_headless(file.as_str()).await;
        assert_eq!(
            replayed, live_table,
            "replay of {name} must match the live table exactly"
        );
        a.stop().await;
        b.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_across_a_sidecar_restart_replays_every_request_once() {
    let file = TempFile::new("restart.ndjson");
    let backend = backend().await;
    let first = Sidecar::start(sidecar_config(backend.addr, "web")).await;
    let admin = first.admin;
    let recorder = meshtop(&[
        "record",
        &format!(":{}", admin.port()),
        "-o",
        file.as_str(),
        "--duration",
        "6s",
    ])
    .spawn()
    .expect("record runs");
    wait_for_subscribers(admin, 1).await;
    traffic(first.addr(), "web-svc.emojivoto:80", 20).await;
    // Wait until the stats of these requests were delivered, then restart.
    let mut events = Events::connect(admin, "").await;
    let mut counted = 0;
    while counted < 20 {
        if let meshtop::schema::Message::Stats(s) = events.next().await {
            counted += s.upstreams.iter().map(|u| u.counts.requests).sum::<u64>();
        }
    }
    drop(events);
    first.stop().await;
    let mut config = sidecar_config(backend.addr, "web");
    config.admin = admin;
    let second = Sidecar::start(config).await;
    wait_for_subscribers(admin, 1).await;
    traffic(second.addr(), "web-svc.emojivoto:80", 12).await;
    let output = finished(recorder).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("wrote ") && stdout.contains(" messages to "),
        "{stdout}"
    );

    let (table, _) = replay_headless(file.as_str()).await;
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .expect("a row")
        .split_whitespace()
        .collect();
    assert_eq!(row[1], "web-svc.emojivoto:80");
    assert_eq!(
        row[8], "32",
        "every request of both processes, once: {table}"
    );
    assert_eq!(row[9], "8", "{table}");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_recordings_replay_up_to_the_cut() {
    for name in ["cut.ndjson", "cut.ndjson.zst"] {
        let file = TempFile::new(name);
        let backend = backend().await;
        let sidecar = Sidecar::start(sidecar_config(backend.addr, "web")).await;
        let recorder = meshtop(&[
            "record",
            &format!(":{}", sidecar.admin.port()),
            "-o",
            file.as_str(),
            "--duration",
            "3s",
        ])
        .spawn()
        .expect("record runs");
        wait_for_subscribers(sidecar.admin, 1).await;
        traffic(sidecar.addr(), "cut.example", 30).await;
        let output = finished(recorder).await;
        assert_eq!(output.status.code(), Some(0));
        let bytes = std::fs::read(&file.0).expect("recording");
        // Cut off the last third: replay must still work on what is left.
        std::fs::write(&file.0, &bytes[..bytes.len() * 2 / 3]).expect("truncate");
        let (table, stderr) = replay_headless(file.as_str()).await;
        assert!(stderr.contains("truncated"), "{name}: {stderr}");
        assert!(table.starts_with("DIRECTION"), "{table}");
        sidecar.stop().await;
    }
}

#[tokio::test]
async fn files_that_are_not_recordings_are_one_line_errors() {
    let not_json = TempFile::new("garbage.ndjson");
    std::fs::write(&not_json.0, b"this is not a recording\n").expect("write");
    let newer = TempFile::new("newer.ndjson");
    std::fs::write(
        &newer.0,
        br#"{"format":"meshtop-recording","version":99,"created_at":"2026-11-30T00:00:00Z","meshtop_version":"9","sources":[]}
"#,
    )
    .expect("write");
    for (file, mentions) in [
        (not_json.as_str(), "not a"),
        (newer.as_str(), "99"),
        ("/no/such/file.ndjson", "file"),
    ] {
        let output = meshtop(&["replay", file, "--headless"])
            .output()
            .await
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{file}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.to_lowercase().contains(mentions), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_json_prints_the_messages_with_their_source() {
    let file = TempFile::new("json.ndjson");
    let backend = backend().await;
    let sidecar = Sidecar::start(sidecar_config(backend.addr, "web")).await;
    let recorder = meshtop(&[
        "record",
        &format!(":{}", sidecar.admin.port()),
        "-o",
        file.as_str(),
        "--duration",
        "2s",
    ])
    .spawn()
    .expect("record runs");
    wait_for_subscribers(sidecar.admin, 1).await;
    traffic(sidecar.addr(), "json.example", 5).await;
    assert_eq!(finished(recorder).await.status.code(), Some(0));
    let output = finished(
        meshtop(&["replay", file.as_str(), "--json", "--speed", "max"])
            .spawn()
            .expect("runs"),
    )
    .await;
    assert_eq!(output.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines[0]["type"], "hello");
    let source = format!("ws://127.0.0.1:{}/events", sidecar.admin.port());
    assert!(
        lines.iter().all(|l| l["source"] == source.as_str()),
        "{lines:?}"
    );
    assert_eq!(lines.iter().filter(|l| l["type"] == "request").count(), 5);
    // The recording kept every event; the filter applies at replay.
    let output = finished(
        meshtop(&[
            "replay",
            file.as_str(),
            "--json",
            "--speed",
            "max",
            "--filter",
            "authority=nothing.example",
        ])
        .spawn()
        .expect("runs"),
    )
    .await;
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("\"type\":\"request\""), "{stdout}");
    assert!(stdout.contains("\"type\":\"stats\""), "{stdout}");
    sidecar.stop().await;
}

/// The recording shipped in `assets/` replays on a fresh clone.
#[tokio::test]
async fn the_shipped_emojivoto_recording_replays() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/emojivoto.ndjson.zst");
    let (table, stderr) = replay_headless(file).await;
    assert!(!stderr.contains("truncated"), "{stderr}");
    for authority in [
        "web-svc.emojivoto:80",
        "emoji-svc.emojivoto:8080",
        "voting-svc.emojivoto:8080",
    ] {
        assert!(table.contains(authority), "{table}");
    }
    let voting: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("inbound") && l.contains("voting-svc"))
        .expect("voting row")
        .split_whitespace()
        .collect();
    let requests: u64 = voting[8].parse().expect("requests");
    assert!(requests > 500, "a few minutes of votes: {table}");
    assert!(
        std::fs::metadata(file).expect("shipped").len() < 4 * 1024 * 1024,
        "a few MB at most"
    );
    // `--group-by` means in a replay what it means live: the demo's two
    // callers, each call counted once.
    let (table, _) = replay_headless_with(file, &["--group-by", "caller"]).await;
    let mut callers: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    callers.sort_unstable();
    assert!(table.starts_with("CALLER "), "{table}");
    assert_eq!(callers, ["vote-bot", "web"], "{table}");
}

#[tokio::test]
async fn devices_and_directories_are_refused_not_read_for_ever() {
    // Finding 15: `replay /dev/zero` spun for ever.
    let dir = std::env::temp_dir();
    for file in ["/dev/zero", dir.to_str().expect("utf-8")] {
        let output = finished(
            meshtop(&["replay", file, "--headless", "--speed", "max"])
                .spawn()
                .expect("runs"),
        )
        .await;
        assert_eq!(output.status.code(), Some(2), "{file}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("not a regular file"), "{stderr}");
    }
}

#[tokio::test]
async fn a_flood_of_blank_lines_stops_reading_instead_of_grinding() {
    // Finding 15: a 4 KB .zst of 10^8 blank lines cost 17.6 s of CPU.
    let bomb = TempFile::new("blank-lines.ndjson.zst");
    let header = br#"{"format":"meshtop-recording","version":1,"created_at":"2026-11-30T00:00:00Z","meshtop_version":"0.1.0","sources":[{"target":"ws://127.0.0.1:1/events","name":null}]}
"#;
    let mut encoder =
        zstd::Encoder::new(std::fs::File::create(&bomb.0).expect("create"), 19).expect("zstd");
    use std::io::Write;
    encoder.write_all(header).expect("header");
    let blank = vec![b'\n'; 1 << 20];
    for _ in 0..100 {
        encoder.write_all(&blank).expect("blank lines");
    }
    encoder.finish().expect("finish");
    assert!(
        std::fs::metadata(&bomb.0).expect("size").len() < 64 * 1024,
        "a small file"
    );
    let (_, stderr) = replay_headless(bomb.as_str()).await;
    assert!(
        stderr.contains("lines in a row are not messages"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_existing_recording_is_not_overwritten_without_force() {
    // Finding 15: `record -o existing.ndjson` overwrote it without a word.
    let existing = TempFile::new("existing.ndjson");
    std::fs::write(&existing.0, b"precious\n").expect("write");
    let port = closed_port().port().to_string();
    let target = format!(":{port}");
    for args in [
        vec![
            "record",
            &target,
            "-o",
            existing.as_str(),
            "--duration",
            "1s",
        ],
        vec![
            "attach",
            &target,
            "--headless",
            "--record",
            existing.as_str(),
            "--duration",
            "1s",
        ],
        vec![
            "demo",
            "--headless",
            "--admin-base",
            "0",
            "--record",
            existing.as_str(),
            "--duration",
            "1s",
        ],
    ] {
        let output = finished(meshtop(&args).spawn().expect("runs")).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("exists; pass --force"), "{stderr}");
        assert_eq!(std::fs::read(&existing.0).expect("read"), b"precious\n");
    }
    let forced = [
        "record",
        &target,
        "-o",
        existing.as_str(),
        "--duration",
        "1s",
        "--force",
    ];
    let output = finished(meshtop(&forced).spawn().expect("runs")).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("exists"), "{stderr}");
    let written = std::fs::read_to_string(&existing.0).expect("read");
    assert!(
        written.starts_with(r#"{"format":"meshtop-recording""#),
        "{written}"
    );
}

#[tokio::test]
async fn tokens_in_targets_are_not_written_into_recordings() {
    // Finding 10: a `?token=` target was written in clear into the header.
    let file = TempFile::new("token.ndjson");
    let target = format!("ws://user:pw-secret@{}/events?token=s3cret", closed_port());
    let output = finished(
        meshtop(&["record", &target, "-o", file.as_str(), "--duration", "1s"])
            .spawn()
            .expect("runs"),
    )
    .await;
    let written = std::fs::read_to_string(&file.0).expect("read");
    assert!(written.contains("token=<redacted>"), "{written}");
    for secret in ["s3cret", "pw-secret"] {
        assert!(!written.contains(secret), "{written}");
        let logged = String::from_utf8_lossy(&output.stderr);
        assert!(!logged.contains(secret), "{logged}");
    }
}

/// Issue #16: a zstd recording is recognised by its magic bytes, whatever
/// its name; a plain one named `.zst` is read as what it is.
#[tokio::test]
async fn recordings_are_read_by_their_content_not_their_name() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/emojivoto.ndjson.zst");
    let (expected, _) = replay_headless(shipped).await;
    let renamed = TempFile::new("renamed.ndjson");
    std::fs::copy(shipped, &renamed.0).expect("copy");
    let (table, stderr) = replay_headless(renamed.as_str()).await;
    assert_eq!(table, expected, "{stderr}");

    let compressed = std::fs::read(shipped).expect("the shipped recording");
    let plain = zstd::decode_all(compressed.as_slice()).expect("zstd");
    let misnamed = TempFile::new("plain.ndjson.zst");
    std::fs::write(&misnamed.0, plain).expect("write");
    let (table, stderr) = replay_headless(misnamed.as_str()).await;
    assert_eq!(table, expected, "{stderr}");
}

/// Issue #16: `--from` or `--to` outside the recording is a one-line error.
#[tokio::test]
async fn offsets_outside_the_recording_are_refused() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/emojivoto.ndjson.zst");
    for (args, says) in [
        (&["--from", "99m"][..], "past the end"),
        (&["--to", "99m"][..], "past the end"),
        (&["--from", "20s", "--to", "10s"][..], "after --to"),
    ] {
        let mut all = vec!["replay", file, "--headless"];
        all.extend_from_slice(args);
        let output = finished(meshtop(&all).spawn().expect("runs")).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
    // Within it, fine.
    let output = finished(
        meshtop(&[
            "replay",
            file,
            "--headless",
            "--speed",
            "max",
            "--from",
            "10s",
            "--to",
            "20s",
        ])
        .spawn()
        .expect("runs"),
    )
    .await;
    assert_eq!(output.status.code(), Some(0));
}

/// Requests and failures per (direction, authority).
type Counts = std::collections::BTreeMap<(String, String), (u64, u64)>;

/// Replays `file` with `extra` arguments at full speed; its stdout.
async fn replay_output(file: &str, extra: &[&str]) -> String {
    let mut args = vec!["replay", file, "--speed", "max"];
    args.extend_from_slice(extra);
    let output = finished(meshtop(&args).spawn().expect("runs")).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{extra:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Seconds between the first and the last stats of a `--json` replay.
fn header_seconds(json: &str) -> u64 {
    let seconds: Vec<i64> = json
        .lines()
        .filter(|l| l.contains("\"type\":\"stats\""))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["ts"].as_str().and_then(meshtop::tui::model::unix_seconds))
        .collect();
    let (first, last) = (seconds.iter().min(), seconds.iter().max());
    first.zip(last).map_or(1, |(first, last)| {
        u64::try_from(last - first).unwrap_or(1).max(1)
    })
}

/// Every field of the filter language, on the shipped recording of the
/// demo's real sidecars: `--json`, the `--headless` table, and the rows
/// and error groups the Upstreams and Errors views show count the same
/// requests and failures for every upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_output_counts_the_same_traffic_under_every_filter_field() {
    use meshtop::filter::FilterExpr;
    use meshtop::tui::input::UiState;
    use meshtop::tui::model::{Figures, Model, Window};
    use meshtop::tui::source::{FeedItem, FeedKind};

    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/emojivoto.ndjson.zst");
    let (header, entries, _) = meshtop::recording::reader::load(file).expect("the recording loads");
    let origin = humantime::parse_rfc3339(&header.created_at).expect("created_at");
    let mut model = Model::new(header.sources.iter().map(|s| s.target.clone()));
    for entry in entries {
        let Ok(message) = entry.message else { continue };
        model.ingest(&FeedItem {
            source: entry.src,
            kind: FeedKind::Message {
                message,
                raw: entry.raw,
                received: Some(origin + entry.t),
            },
        });
    }
    // One filter per field, each selecting some of the recording's traffic.
    let filters = [
        ("authority~voting", false),
        ("direction=outbound", false),
        ("sidecar=web", false),
        ("path~Vote", true),
        ("method=POST", true),
        ("status>=500", true),
        ("grpc!=0", true),
        ("latency>1ms", true),
        ("failed", true),
        ("route~VoteDoughnut", false),
        ("client~127.0.0.1 direction=inbound", true),
        ("!error~refused !failed", true),
    ];
    for (text, from_events) in filters {
        let filter: FilterExpr = text.parse().expect("a valid filter");
        // --json: the events that pass.
        let json = replay_output(file, &["--json", "--filter", text]).await;
        let mut from_json = Counts::new();
        for line in json.lines() {
            let value: serde_json::Value = serde_json::from_str(line).expect("json");
            if value["type"] == "request" {
                let key = (
                    value["direction"].as_str().expect("direction").to_owned(),
                    value["authority"].as_str().expect("authority").to_owned(),
                );
                let event: meshtop::schema::RequestEvent =
                    serde_json::from_value(value.clone()).expect("a request event");
                let failed = event.is_failure();
                let counts = from_json.entry(key).or_default();
                counts.0 += 1;
                counts.1 += u64::from(failed);
            }
        }
        assert!(!from_json.is_empty(), "{text} selects something");
        // --headless: the final table's REQUESTS and FAILURES.
        let headless =
            replay_output(file, &["--headless", "--window", "5m", "--filter", text]).await;
        let table = final_table(headless.as_bytes());
        let mut from_table = Counts::new();
        for line in table.lines().skip(1).filter(|l| !l.starts_with('(')) {
            let cells: Vec<&str> = line.split_whitespace().collect();
            from_table.insert(
                (cells[0].to_owned(), cells[1].to_owned()),
                (
                    cells[8].parse().expect("requests"),
                    cells[9].parse().expect("failures"),
                ),
            );
        }
        assert_eq!(
            table
                .lines()
                .last()
                .is_some_and(|l| l.starts_with("(from events")),
            from_events,
            "{text}: the table says where its figures come from:\n{table}"
        );
        // The views: the Upstreams view's rows, the Errors view's groups.
        let ui = UiState::new(filter.clone());
        let mut from_view = Counts::new();
        for row in ui.upstream_rows(&model) {
            from_view.insert(
                (row.key.direction.to_string(), row.key.authority.clone()),
                (row.requests, row.failures),
            );
        }
        let mut from_errors = Counts::new();
        for group in model.errors(&filter, None) {
            let key = (
                group.key.upstream.direction.to_string(),
                group.key.upstream.authority.clone(),
            );
            from_errors.entry(key).or_default().1 += group.count;
        }
        assert_eq!(from_table, from_view, "{text}: headless and the view");
        let failures_of = |counts: &Counts| -> Vec<((String, String), u64)> {
            counts
                .iter()
                .filter(|(_, c)| c.1 > 0)
                .map(|(k, c)| (k.clone(), c.1))
                .collect()
        };
        assert_eq!(
            failures_of(&from_errors),
            failures_of(&from_json),
            "{text}: errors and --json"
        );
        if from_events {
            // Counted from the same events: exactly the same.
            assert_eq!(from_view, from_json, "{text}: the view and --json");
            assert!(
                matches!(
                    model.figures(Window::FiveMinutes, &filter),
                    Figures::Events { dropped: 0, .. }
                ),
                "{text}"
            );
        } else {
            // Exact figures from stats: each second's requests are in the
            // `stats` after it, so the events of the recording's last
            // second (and the history sent before its first event) are
            // counted by one and not the other. The same upstreams, and
            // within two seconds of their traffic.
            assert_eq!(
                from_view.keys().collect::<Vec<_>>(),
                from_json.keys().collect::<Vec<_>>(),
                "{text}"
            );
            let seconds = header_seconds(&json);
            for (key, (requests, _)) in &from_json {
                let two_seconds = 2 * requests.div_ceil(seconds) + 1;
                let shown = from_view[key].0;
                assert!(
                    shown.abs_diff(*requests) <= two_seconds,
                    "{text}: {key:?} shows {shown}, --json has {requests}"
                );
            }
            assert_eq!(model.figures(Window::FiveMinutes, &filter), Figures::Stats);
        }
    }
}

/// A recording from a newer sidecar (an error kind and a protocol this
/// build does not know, new fields, a new message type) replays: `--json`
/// prints every message as it was, and the request counts as a failure.
#[tokio::test]
async fn a_recording_from_a_newer_sidecar_replays_whole() {
    let file = TempFile::new("newer.ndjson");
    let lines = [
        r#"{"format":"meshtop-recording","version":1,"created_at":"2026-11-30T00:00:00.000000Z","meshtop_version":"9.9.9","sources":[{"target":"ws://127.0.0.1:15090/events","name":null}]}"#,
        r#"{"t":1000,"src":0,"msg":{"type":"hello","schema":1,"sidecar":{"name":"web","namespace":null,"version":"9.9.9","started_at":"2026-11-30T00:00:00.000000Z"},"listeners":[],"addresses":["10.1.0.7"],"ts":"2026-11-30T00:00:00.001000Z","zone":"eu-1"}}"#,
        r#"{"t":1500,"src":0,"msg":{"type":"request","ts":"2026-11-30T00:00:01.000001Z","sidecar":"web","direction":"outbound","protocol":"h3","client":"10.1.0.7:41234","server":"10.1.0.12:443","authority":"quota.internal:443","method":"GET","path":"/v2/limits","status":null,"grpc_status":null,"grpc_message":null,"error":"quota_exceeded","duration_ms":3.5,"ttfb_ms":null,"req_bytes":0,"resp_bytes":0,"trace_id":"abc"}}"#,
        r#"{"t":1700,"src":0,"msg":{"type":"profile","samples":[1,2,3]}}"#,
        r#"{"t":2000,"src":0,"msg":{"type":"stats","ts":"2026-11-30T00:00:02.000000Z","sidecar":"web","interval_ms":1000,"upstreams":[]}}"#,
    ];
    std::fs::write(&file.0, lines.join("\n") + "\n").expect("written");
    let json = replay_output(file.as_str(), &["--json"]).await;
    let printed: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let types: Vec<&str> = printed.iter().filter_map(|v| v["type"].as_str()).collect();
    assert_eq!(types, ["hello", "request", "profile", "stats"], "{json}");
    assert_eq!(printed[1]["error"], "quota_exceeded");
    assert_eq!(printed[1]["trace_id"], "abc", "new fields are kept");
    let failed = replay_output(
        file.as_str(),
        &["--json", "--filter", "error=quota_exceeded"],
    )
    .await;
    assert!(failed.contains("/v2/limits"), "{failed}");
    let table = replay_output(file.as_str(), &["--headless", "--filter", "failed"]).await;
    let row = table
        .lines()
        .find(|l| l.contains("quota.internal:443"))
        .unwrap_or_else(|| panic!("the request is counted: {table}"));
    assert_eq!(
        row.split_whitespace().nth(9),
        Some("1"),
        "one failure: {table}"
    );
}
