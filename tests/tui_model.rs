//! The model merges what several sidecars send: exact rates, success rates
//! and percentiles from their `stats`, and routes, errors and the tap from
//! their request events; it survives restarts and invalid input.

use std::time::{Duration, UNIX_EPOCH};

use meshtop::filter::FilterExpr;
use meshtop::schema::{
    Counts, Dropped, Hello, Message, RequestEvent, SidecarDesc, Stats, StatusClasses,
    UpstreamStats, timestamp,
};
use meshtop::telemetry::stats::{encode_histogram, new_latency_histogram};
use meshtop::telemetry::{Direction, ErrorKind, HttpProtocol};
use meshtop::tui::format::{headless_edges_table, headless_table};
use meshtop::tui::model::{FailureKind, Model, SourceState, UpstreamKey, Window};
use meshtop::tui::source::{FeedItem, FeedKind};

/// 2026-11-30T00:00:00Z.
const T0: u64 = 1_795_996_800;

fn ts(sec: u64) -> String {
    timestamp(UNIX_EPOCH + Duration::from_secs(sec))
}

fn hello(name: &str, started_at: u64) -> Message {
    Message::Hello(Hello {
        schema: 1,
        sidecar: SidecarDesc {
            name: name.into(),
            namespace: Some("emojivoto".into()),
            version: "0.1.0".into(),
            started_at: ts(started_at),
        },
        listeners: Vec::new(),
        addresses: Vec::new(),
        ts: None,
    })
}

/// Stats for one upstream at second `sec` with these durations (µs) and
/// this many failures.
fn stats(sidecar: &str, sec: u64, authority: &str, durations: &[u64], failures: u64) -> Message {
    let mut latency = new_latency_histogram();
    for d in durations {
        latency.record(*d).expect("in range");
    }
    let mut status = StatusClasses::default();
    status.add(200, durations.len() as u64 - failures);
    status.add(500, failures);
    Message::Stats(Stats {
        ts: ts(sec),
        sidecar: sidecar.into(),
        interval_ms: 1000,
        backfill: false,
        upstreams: vec![UpstreamStats {
            direction: Direction::Outbound,
            authority: authority.into(),
            counts: Counts {
                requests: durations.len() as u64,
                failures,
                status,
                grpc_status: Default::default(),
                errors: Default::default(),
                req_bytes: 0,
                resp_bytes: 0,
                latency: encode_histogram(&latency),
            },
            routes: Vec::new(),
            clients: Vec::new(),
        }],
    })
}

fn request(
    sidecar: &str,
    authority: &str,
    path: &str,
    status: u16,
    grpc: Option<u32>,
    error: Option<ErrorKind>,
) -> Message {
    Message::Request(RequestEvent {
        ts: ts(T0),
        sidecar: sidecar.into(),
        direction: Direction::Outbound,
        protocol: if grpc.is_some() {
            HttpProtocol::Grpc
        } else {
            HttpProtocol::Http1
        }
        .into(),
        client: "10.0.0.1:1000".into(),
        server: Some("10.0.0.2:8080".into()),
        authority: authority.into(),
        method: Some(if grpc.is_some() { "POST" } else { "GET" }.into()),
        path: Some(path.into()),
        status: Some(status),
        grpc_status: grpc,
        grpc_message: grpc.filter(|g| *g != 0).map(|_| "ERROR".into()),
        error: error.map(Into::into),
        duration_ms: 1.5,
        ttfb_ms: Some(1.0),
        req_bytes: 0,
        resp_bytes: 10,
        headers: None,
    })
}

const VOTING: &str = "voting-svc.emojivoto:8080";

fn voting() -> UpstreamKey {
    UpstreamKey {
        direction: Direction::Outbound,
        authority: "voting-svc.emojivoto:8080".into(),
    }
}

#[test]
fn stats_from_several_sidecars_merge_into_exact_rates_and_percentiles() {
    let mut model = Model::new(["a".to_string(), "b".to_string()]);
    model.ingest_message(0, &hello("web-1", T0 - 100));
    model.ingest_message(1, &hello("web-2", T0 - 100));
    let mut all = new_latency_histogram();
    let mut total = 0u64;
    for s in 0..10u64 {
        // Sidecar a: fast requests; sidecar b: slow ones and failures.
        let fast: Vec<u64> = (0..20).map(|i| 500 + i * 37 + s).collect();
        let slow: Vec<u64> = (0..5).map(|i| 40_000 + i * 1_013 + s * 7).collect();
        model.ingest_message(
            0,
            &stats("web-1", T0 + s, "voting-svc.emojivoto:8080", &fast, 0),
        );
        model.ingest_message(
            1,
            &stats("web-2", T0 + s, "voting-svc.emojivoto:8080", &slow, 1),
        );
        for d in fast.iter().chain(&slow) {
            all.record(*d).expect("in range");
        }
        total += 25;
    }
    let row = model
        .upstream_row(&voting(), Window::TenSeconds)
        .expect("a row");
    assert_eq!(row.requests, total);
    assert_eq!(row.failures, 10);
    assert_eq!(row.rps, 25.0);
    assert_eq!(row.success, Some(1.0 - 10.0 / 250.0));
    assert_eq!(
        row.p50,
        Some(all.value_at_quantile(0.5)),
        "exact p50 across sidecars"
    );
    assert_eq!(row.p90, Some(all.value_at_quantile(0.9)));
    assert_eq!(row.p99, Some(all.value_at_quantile(0.99)));
    assert_eq!(row.max, Some(all.max()));

    // Five more seconds: the 10 s window drops the first five, exactly.
    let mut recent = new_latency_histogram();
    for s in 10..15u64 {
        let durations: Vec<u64> = (0..10).map(|i| 2_000 + i * 11).collect();
        model.ingest_message(
            0,
            &stats("web-1", T0 + s, "voting-svc.emojivoto:8080", &durations, 0),
        );
        for d in &durations {
            recent.record(*d).expect("in range");
        }
    }
    for s in 5..10u64 {
        let fast: Vec<u64> = (0..20).map(|i| 500 + i * 37 + s).collect();
        let slow: Vec<u64> = (0..5).map(|i| 40_000 + i * 1_013 + s * 7).collect();
        for d in fast.iter().chain(&slow) {
            recent.record(*d).expect("in range");
        }
    }
    let row = model
        .upstream_row(&voting(), Window::TenSeconds)
        .expect("a row");
    assert_eq!(
        row.requests,
        total + 50,
        "totals count everything since attach"
    );
    assert_eq!(row.rps, (5.0 * 25.0 + 50.0) / 10.0);
    assert_eq!(row.p99, Some(recent.value_at_quantile(0.99)));
    assert_eq!(row.max, Some(recent.max()));
    // The 1 m window still holds everything.
    let row = model
        .upstream_row(&voting(), Window::OneMinute)
        .expect("a row");
    assert_eq!(
        row.p50,
        Some({
            let mut everything = all.clone();
            everything.add(&recent).expect("merge");
            everything
                .subtract(&{
                    let mut overlap = new_latency_histogram();
                    for s in 5..10u64 {
                        for d in (0..20)
                            .map(|i| 500 + i * 37 + s)
                            .chain((0..5).map(|i| 40_000 + i * 1_013 + s * 7))
                        {
                            overlap.record(d).expect("in range");
                        }
                    }
                    overlap
                })
                .expect("subtract");
            everything.value_at_quantile(0.5)
        })
    );
}

#[test]
fn request_events_build_routes_errors_and_the_tap() {
    let mut model = Model::new(["a".to_string()]);
    model.ingest_message(0, &hello("web", T0));
    let vote = "/emojivoto.v1.VotingService/VoteDoughnut";
    for _ in 0..3 {
        model.ingest_message(
            0,
            &request("web", "voting-svc.emojivoto:8080", vote, 200, Some(2), None),
        );
    }
    model.ingest_message(
        0,
        &request(
            "web",
            "voting-svc.emojivoto:8080",
            "/emojivoto.v1.VotingService/VoteJoy",
            200,
            Some(0),
            None,
        ),
    );
    model.ingest_message(
        0,
        &request(
            "web",
            "web-svc.emojivoto:80",
            "/api/vote?choice=x",
            500,
            None,
            None,
        ),
    );
    model.ingest_message(
        0,
        &request(
            "web",
            "web-svc.emojivoto:80",
            "/api/list",
            200,
            None,
            Some(ErrorKind::ConnectRefused),
        ),
    );

    let routes = model.routes(&voting());
    assert_eq!(routes[0].route, "/emojivoto.v1.VotingService/VoteDoughnut");
    assert_eq!((routes[0].count, routes[0].success), (3, Some(0.0)));
    assert_eq!(routes[1].route, "/emojivoto.v1.VotingService/VoteJoy");
    let web = UpstreamKey {
        direction: Direction::Outbound,
        authority: "web-svc.emojivoto:80".into(),
    };
    let web_routes: Vec<String> = model.routes(&web).into_iter().map(|r| r.route).collect();
    assert!(
        web_routes.contains(&"GET /api/vote".to_string()),
        "{web_routes:?}"
    );

    let errors = model.errors(&FilterExpr::default(), None);
    assert_eq!(errors.len(), 3);
    assert_eq!(errors[0].key.kind, FailureKind::Grpc(2));
    assert_eq!(errors[0].count, 3);
    assert_eq!(errors[0].example_message.as_deref(), Some("ERROR"));
    assert_eq!(errors[0].example_path.as_deref(), Some(vote));
    let kinds: Vec<FailureKind> = errors.iter().map(|e| e.key.kind.clone()).collect();
    assert!(kinds.contains(&FailureKind::Status(500)));
    assert!(kinds.contains(&FailureKind::Error("connect_refused".into())));

    assert_eq!(model.tap().len(), 6);
    let filter: FilterExpr = "authority~voting".parse().expect("valid");
    assert_eq!(model.errors(&filter, None).len(), 1);
}

#[test]
fn the_tap_and_routes_are_bounded() {
    let mut model = Model::new(["a".to_string()]);
    for i in 0..12_000 {
        model.ingest_message(
            0,
            &request("web", "svc:80", &format!("/item/x{i}"), 200, None, None),
        );
    }
    assert_eq!(model.tap().len(), meshtop::tui::model::TAP_CAPACITY);
    let key = UpstreamKey {
        direction: Direction::Outbound,
        authority: "svc:80".into(),
    };
    let routes = model.routes(&key);
    assert_eq!(routes.len(), meshtop::tui::model::ROUTES_PER_UPSTREAM);
    // The least recently seen were evicted: the newest route is kept.
    assert!(routes.iter().any(|r| r.route == "GET /item/x11999"));
}

#[test]
fn a_restarted_sidecar_is_noticed_and_nothing_is_counted_twice() {
    let mut model = Model::new(["a".to_string()]);
    model.ingest(&FeedItem {
        source: 0,
        kind: FeedKind::Live {
            filter: String::new(),
        },
    });
    model.ingest_message(0, &hello("web", T0 - 10));
    model.ingest_message(
        0,
        &stats("web", T0, "voting-svc.emojivoto:8080", &[1000; 5], 0),
    );
    model.ingest_message(0, &Message::Dropped(Dropped { count: 3, total: 3 }));
    model.ingest(&FeedItem {
        source: 0,
        kind: FeedKind::Reconnecting {
            reason: "connection refused".into(),
            retry_in: Duration::from_millis(200),
        },
    });
    assert!(matches!(
        model.sidecars()[0].state,
        SourceState::Reconnecting { .. }
    ));
    assert_eq!(model.live_sidecars(), 0);
    // The sidecar came back as a new process: its counters start from zero.
    model.ingest(&FeedItem {
        source: 0,
        kind: FeedKind::Live {
            filter: String::new(),
        },
    });
    model.ingest_message(0, &hello("web", T0 + 1));
    model.ingest_message(
        0,
        &stats("web", T0 + 1, "voting-svc.emojivoto:8080", &[1000; 7], 0),
    );
    model.ingest_message(0, &Message::Dropped(Dropped { count: 2, total: 2 }));
    let sidecar = &model.sidecars()[0];
    assert_eq!(sidecar.restarts, 1);
    assert_eq!(sidecar.dropped, 5, "drops of both processes");
    assert_eq!(model.live_sidecars(), 1);
    let row = model
        .upstream_row(&voting(), Window::OneMinute)
        .expect("a row");
    assert_eq!(row.requests, 12);
}

#[test]
fn invalid_messages_are_counted_not_fatal() {
    let mut model = Model::new(["a".to_string(), "b".to_string()]);
    model.ingest(&FeedItem {
        source: 1,
        kind: FeedKind::Invalid {
            reason: "unknown type 'x'".into(),
        },
    });
    model.ingest(&FeedItem {
        source: 7,
        kind: FeedKind::Live {
            filter: String::new(),
        },
    });
    assert_eq!(model.sidecars()[1].invalid, 1);
    assert_eq!(
        model.sidecars()[1].last_invalid.as_deref(),
        Some("unknown type 'x'")
    );
    // Stats with a broken histogram still count requests.
    let mut broken = stats("web", T0, "svc:80", &[1000; 3], 0);
    if let Message::Stats(s) = &mut broken {
        s.upstreams[0].counts.latency = "garbage".into();
    }
    model.ingest_message(0, &broken);
    let key = UpstreamKey {
        direction: Direction::Outbound,
        authority: "svc:80".into(),
    };
    let row = model.upstream_row(&key, Window::TenSeconds).expect("a row");
    assert_eq!((row.requests, row.p50), (3, None));
}

#[test]
fn the_headless_table_is_aligned_with_units() {
    let mut model = Model::new(["a".to_string()]);
    model.ingest_message(
        0,
        &stats(
            "web",
            T0,
            "voting-svc.emojivoto:8080",
            &[800, 1200, 3200, 150_000],
            1,
        ),
    );
    model.ingest_message(
        0,
        &stats("web", T0, "emoji-svc.emojivoto:8080", &[300; 10], 0),
    );
    let table = headless_table(&model, Window::OneMinute, &FilterExpr::default());
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("DIRECTION  AUTHORITY"));
    for column in [
        "RPS", "SUCCESS", "P50", "P90", "P99", "MAX", "REQUESTS", "FAILURES", "STALE",
    ] {
        assert!(lines[0].contains(column), "{column}");
    }
    assert!(
        lines[1].starts_with("outbound   emoji-svc.emojivoto:8080"),
        "{table}"
    );
    assert!(lines[2].contains("75.0%"), "{table}");
    assert!(
        lines[2].contains("150ms") || lines[2].contains("150.0ms"),
        "{table}"
    );
    assert!(lines[1].contains("300µs"), "{table}");
    // Columns line up (in characters): numbers end where their header ends.
    let chars: Vec<Vec<char>> = lines.iter().map(|l| l.chars().collect()).collect();
    let header: String = chars[0].iter().collect();
    let end = header.find("REQUESTS").expect("column") + "REQUESTS".len();
    for row in &chars[1..] {
        assert!(row[end - 1].is_ascii_digit(), "{table}");
        assert_eq!(row[end], ' ', "{table}");
    }
}

#[test]
fn the_headless_table_aligns_wide_characters_by_terminal_columns() {
    use meshtop::tui::format::text_width;
    let mut model = Model::new(["a".to_string()]);
    model.ingest_message(
        0,
        &stats("web", T0, "投票-svc.emojivoto:8080", &[800; 4], 0),
    );
    model.ingest_message(
        0,
        &stats("web", T0, "emoji-svc.emojivoto:8080", &[300; 10], 0),
    );
    let table = headless_table(&model, Window::OneMinute, &FilterExpr::default());
    let lines: Vec<&str> = table.lines().collect();
    // RPS, right-aligned, ends at the same terminal column on every line.
    let end = |line: &str| {
        let rps = line.find("RPS").unwrap_or_else(|| {
            let after = line.find(":8080").expect("an authority") + ":8080".len();
            after
                + line[after..]
                    .find(|c: char| c.is_ascii_digit())
                    .expect("a rate")
        });
        let token = line[rps..].split(' ').next().unwrap_or("");
        text_width(&line[..rps]) + text_width(token)
    };
    let header = end(lines[0]);
    for line in &lines[1..] {
        assert_eq!(end(line), header, "{table}");
    }
}

/// The UI's clock at second `sec`.
fn at(sec: u64) -> Option<std::time::SystemTime> {
    Some(UNIX_EPOCH + Duration::from_secs(sec) + Duration::from_millis(5))
}

fn web() -> UpstreamKey {
    UpstreamKey {
        direction: Direction::Outbound,
        authority: "web-svc.emojivoto:80".into(),
    }
}

/// Stats of `sec` for one upstream with `requests`, `failures` of them.
fn simple_stats(sidecar: &str, sec: u64, authority: &str, requests: u64, failures: u64) -> Message {
    let durations = vec![1000; requests as usize];
    stats(sidecar, sec, authority, &durations, failures)
}

#[test]
fn a_sidecar_dated_in_the_far_future_cannot_blank_the_others() {
    let mut model = Model::new(["a".to_owned(), "b".to_owned()]);
    for sec in T0..T0 + 20 {
        model.ingest_message_at(
            0,
            &simple_stats("web", sec, "web-svc.emojivoto:80", 10, 1),
            at(sec),
        );
        // Dated 9999: placed by when it arrived, and flagged.
        let mut hostile = simple_stats("bad", sec, "evil:80", 5, 0);
        if let Message::Stats(stats) = &mut hostile {
            stats.ts = "9999-12-31T23:59:59.000000Z".into();
        }
        model.ingest_message_at(1, &hostile, at(sec));
    }
    assert_eq!(model.now_sec(), Some((T0 + 19) as i64), "the UI's clock");
    let row = model.upstream_row(&web(), Window::TenSeconds).expect("web");
    assert_eq!(row.rps, 10.0);
    assert_eq!(row.success, Some(0.9));
    assert!(row.p50.is_some());
    assert!(model.sidecars()[1].clock_skewed());
    assert!(!model.sidecars()[0].clock_skewed());
    let evil = UpstreamKey {
        direction: Direction::Outbound,
        authority: "evil:80".into(),
    };
    let evil = model
        .upstream_row(&evil, Window::TenSeconds)
        .expect("placed");
    assert_eq!(evil.rps, 5.0, "its own stats are placed where they arrived");
}

#[test]
fn a_sidecar_whose_clock_is_two_minutes_off_is_placed_by_its_offset() {
    for offset in [120i64, -120] {
        let mut model = Model::new(["a".to_owned(), "b".to_owned()]);
        let mut hello_b = hello("voting", T0 - 1000);
        if let Message::Hello(hello) = &mut hello_b {
            hello.ts = Some(ts((T0 as i64 + offset) as u64));
        }
        model.ingest_message_at(1, &hello_b, at(T0));
        assert!(
            model.sidecars()[1].clock_skewed(),
            "{offset}: from its hello"
        );
        for sec in T0..T0 + 30 {
            let theirs = (sec as i64 + offset) as u64;
            model.ingest_message_at(
                0,
                &simple_stats("web", sec, "web-svc.emojivoto:80", 10, 0),
                at(sec),
            );
            model.ingest_message_at(
                1,
                &simple_stats("voting", theirs, "voting-svc.emojivoto:8080", 10, 1),
                at(sec),
            );
        }
        for key in [web(), voting()] {
            let row = model.upstream_row(&key, Window::TenSeconds).expect("row");
            assert_eq!(row.rps, 10.0, "{offset} {key:?}");
        }
        let voting_row = model
            .upstream_row(&voting(), Window::TenSeconds)
            .expect("row");
        assert_eq!(voting_row.success, Some(0.9), "{offset}: its failures show");
        assert_eq!(model.now_sec(), Some((T0 + 29) as i64));
    }
}

#[test]
fn backfilled_stats_taken_before_are_skipped_and_new_ones_are_taken() {
    let mut model = Model::new(["a".to_owned()]);
    model.ingest_message_at(0, &hello("web", T0 - 100), at(T0));
    let backfill = |sec: u64| {
        let mut message = simple_stats("web", sec, "web-svc.emojivoto:80", 10, 0);
        if let Message::Stats(stats) = &mut message {
            stats.backfill = true;
        }
        message
    };
    // Attached: the sidecar's history first, then live.
    for sec in T0 - 5..T0 {
        model.ingest_message_at(0, &backfill(sec), at(T0));
    }
    for sec in T0..T0 + 5 {
        model.ingest_message_at(
            0,
            &simple_stats("web", sec, "web-svc.emojivoto:80", 10, 0),
            at(sec),
        );
    }
    let requests = |model: &Model| {
        model
            .upstream_row(&web(), Window::OneMinute)
            .map(|r| r.requests)
    };
    assert_eq!(requests(&model), Some(100));
    // Reconnected to the same run: its history again, of which only the
    // last two seconds are new (served while we were away).
    model.ingest_message_at(0, &hello("web", T0 - 100), at(T0 + 7));
    for sec in T0 - 5..T0 + 7 {
        model.ingest_message_at(0, &backfill(sec), at(T0 + 7));
    }
    assert_eq!(
        requests(&model),
        Some(120),
        "nothing counted twice, nothing lost"
    );
    // Restarted: its history is all new.
    model.ingest_message_at(0, &hello("web", T0 + 8), at(T0 + 9));
    model.ingest_message_at(0, &backfill(T0 + 8), at(T0 + 9));
    assert_eq!(requests(&model), Some(130));
}

#[test]
fn totals_saturate_instead_of_wrapping() {
    let mut model = Model::new(["a".to_owned()]);
    for sec in T0..T0 + 3 {
        let mut message = simple_stats("web", sec, "web-svc.emojivoto:80", 1, 0);
        if let Message::Stats(stats) = &mut message {
            stats.upstreams[0].counts.requests = u64::MAX;
            stats.upstreams[0].counts.failures = u64::MAX;
        }
        model.ingest_message(0, &message);
    }
    let row = model.upstream_row(&web(), Window::OneMinute).expect("row");
    assert_eq!(row.requests, u64::MAX);
    assert_eq!(row.failures, u64::MAX);
    let dropped = Message::Dropped(Dropped {
        count: u64::MAX,
        total: u64::MAX,
    });
    model.ingest_message(0, &hello("web", T0));
    model.ingest_message(0, &dropped);
    model.ingest_message(0, &hello("web", T0));
    model.ingest_message(0, &dropped);
    assert_eq!(model.sidecars()[0].dropped, u64::MAX);
}

#[test]
fn requests_with_huge_fields_are_kept_cut_and_within_the_tap_bound() {
    use meshtop::schema::MAX_PATH;
    use meshtop::tui::model::{TAP_BYTES, UPSTREAM_BYTES};
    let mut model = Model::new(["a".to_owned()]);
    let path = format!("/{}", "x".repeat(50_000));
    for i in 0..12_000 {
        let mut message = request("web", "web-svc.emojivoto:80", &path, 500, None, None);
        if let Message::Request(event) = &mut message {
            event.path = Some(format!("{path}{i}"));
        }
        model.ingest_message(0, &message);
    }
    let longest = model
        .tap()
        .iter()
        .filter_map(|t| t.event.path.as_ref())
        .map(String::len)
        .max();
    assert_eq!(longest, Some(MAX_PATH));
    assert!(model.held_bytes() <= TAP_BYTES + UPSTREAM_BYTES);
    assert!(
        model.tap().len() < 12_000,
        "the tap is bounded by bytes too"
    );
}

#[test]
fn upstreams_with_the_widest_histograms_are_evicted_to_stay_within_the_bound() {
    use meshtop::telemetry::stats::MAX_LATENCY_MICROS;
    use meshtop::tui::model::UPSTREAM_BYTES;
    let mut model = Model::new(["a".to_owned()]);
    for sec in T0..T0 + 4 {
        let message = stats("web", sec, "x", &[1, MAX_LATENCY_MICROS], 0);
        let Message::Stats(mut stats) = message else {
            unreachable!()
        };
        let template = stats.upstreams[0].clone();
        stats.upstreams = (0..400)
            .map(|i| UpstreamStats {
                authority: format!("svc-{sec}-{i}:80"),
                ..template.clone()
            })
            .collect();
        model.ingest_message(0, &Message::Stats(stats));
        assert!(model.held_bytes() <= UPSTREAM_BYTES + 1_000_000);
    }
    assert!(model.evicted_upstreams() > 0);
    // The newest are kept.
    let newest = UpstreamKey {
        direction: Direction::Outbound,
        authority: format!("svc-{}-399:80", T0 + 3),
    };
    assert!(model.upstream_row(&newest, Window::TenSeconds).is_some());
}

#[test]
fn errors_are_grouped_by_route_and_named() {
    // Issue #16: grouped by (upstream, kind) with the latest path, the
    // Errors view blamed /VoteDoughnut for the failures of VoteDog,
    // VoteClap and VotePig; codes showed as bare numbers.
    let mut model = Model::new(["a".to_owned()]);
    model.ingest_message(
        0,
        &stats("web", T0, "voting-svc.emojivoto:8080", &[1000], 0),
    );
    let methods = ["VoteDog", "VoteClap", "VotePig", "VoteDog"];
    for method in methods {
        let path = format!("/emojivoto.v1.VotingService/{method}");
        let message = request(
            "web",
            "voting-svc.emojivoto:8080",
            &path,
            200,
            Some(2),
            None,
        );
        model.ingest_message(0, &message);
    }
    model.ingest_message(
        0,
        &request(
            "web",
            "web-svc.emojivoto:80",
            "/api/vote?choice=1",
            500,
            None,
            None,
        ),
    );
    model.ingest_message(
        0,
        &request(
            "web",
            "web-svc.emojivoto:80",
            "/api/vote?choice=2",
            200,
            None,
            Some(ErrorKind::ConnectRefused),
        ),
    );
    let errors = model.errors(&FilterExpr::default(), Some(&voting()));
    let rows: Vec<(String, String, u64)> = errors
        .iter()
        .map(|e| (e.key.route.clone(), e.key.kind.to_string(), e.count))
        .collect();
    assert_eq!(
        rows,
        [
            (
                "/emojivoto.v1.VotingService/VoteDog".to_owned(),
                "UNKNOWN (2)".to_owned(),
                2
            ),
            (
                "/emojivoto.v1.VotingService/VoteClap".to_owned(),
                "UNKNOWN (2)".to_owned(),
                1
            ),
            (
                "/emojivoto.v1.VotingService/VotePig".to_owned(),
                "UNKNOWN (2)".to_owned(),
                1
            ),
        ]
    );
    // Two failures in the one second watched so far: 2/s, not 2 over a
    // 10 s window that the session did not watch; once 10 s are watched,
    // 0.2/s.
    let dog = &errors[0];
    assert!((dog.per_second(Window::TenSeconds, T0 as i64) - 2.0).abs() < 1e-9);
    assert!((dog.per_second(Window::TenSeconds, T0 as i64 + 9) - 0.2).abs() < 1e-9);
    assert!((dog.per_second(Window::TenSeconds, T0 as i64 + 10)).abs() < 1e-9);
    assert_eq!(dog.first_seen, dog.last_seen);
    let all = model.errors(&FilterExpr::default(), None);
    let names: Vec<String> = all.iter().map(|e| e.key.kind.to_string()).collect();
    assert!(
        names.contains(&"500 Internal Server Error".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"connect refused".to_owned()), "{names:?}");
    // The two web failures are one route: the query is not part of it.
    let web: Vec<&str> = all
        .iter()
        .filter(|e| e.key.upstream.authority.starts_with("web"))
        .map(|e| e.key.route.as_str())
        .collect();
    assert_eq!(web, ["GET /api/vote", "GET /api/vote"]);
}

#[test]
fn the_header_counts_each_call_once_not_once_per_hop() {
    // Issue #16: the bot sends 10 rps and the header said 50. A call seen
    // leaving the caller's pod and entering the callee's is one call.
    let mut model = Model::new(["a".to_owned()]);
    let rows = [
        (Direction::Outbound, "web-svc.emojivoto:80", 10),
        (Direction::Inbound, "web-svc.emojivoto:80", 10),
        (Direction::Outbound, "emoji-svc.emojivoto:8080", 10),
        (Direction::Inbound, "emoji-svc.emojivoto:8080", 10),
        (Direction::Outbound, "voting-svc.emojivoto:8080", 5),
        (Direction::Inbound, "voting-svc.emojivoto:8080", 5),
        // Called, but by no attached sidecar's pod's callee: counted.
        (Direction::Outbound, "api.github.com:443", 2),
    ];
    for sec in T0..T0 + 10 {
        for (direction, authority, n) in rows {
            let Message::Stats(mut stats) = stats("s", sec, authority, &vec![1000; n], 0) else {
                unreachable!()
            };
            stats.upstreams[0].direction = direction;
            model.ingest_message(0, &Message::Stats(stats));
        }
    }
    let summary = model.summary(Window::TenSeconds, &FilterExpr::default());
    assert!((summary.rps - 27.0).abs() < 1e-9, "{}", summary.rps);
    // Seen only leaving (the inbound rows filtered out), a call counts there.
    let outbound: FilterExpr = "direction=outbound".parse().expect("valid");
    let summary = model.summary(Window::TenSeconds, &outbound);
    assert!((summary.rps - 27.0).abs() < 1e-9, "{}", summary.rps);
    let inbound: FilterExpr = "direction=inbound".parse().expect("valid");
    let summary = model.summary(Window::TenSeconds, &inbound);
    assert!((summary.rps - 25.0).abs() < 1e-9, "{}", summary.rps);
}

/// Under a filter on what single requests have, rows, the header and the
/// error groups are counted from the events that pass, and say how much of
/// the window they cover and how many events the sidecars dropped.
#[test]
fn figures_from_events_say_what_they_cover_and_what_was_dropped() {
    use meshtop::tui::model::Figures;
    let mut model = Model::new(["a".to_string()]);
    let feed = |model: &mut Model, kind: FeedKind| model.ingest(&FeedItem { source: 0, kind });
    let message = |message: Message, sec: u64| FeedKind::Message {
        raw: "{}".into(),
        message,
        received: at(T0 + sec),
    };
    feed(&mut model, message(hello("web", T0), 0));
    feed(
        &mut model,
        FeedKind::Live {
            filter: String::new(),
        },
    );
    for sec in 0..30 {
        for status in [200, 200, 503] {
            let event = request(
                "web",
                "voting-svc.emojivoto:8080",
                "/vote",
                status,
                None,
                None,
            );
            feed(&mut model, message(event, sec));
        }
        feed(
            &mut model,
            message(
                simple_stats("web", T0 + sec, "voting-svc.emojivoto:8080", 3, 1),
                sec,
            ),
        );
    }
    feed(
        &mut model,
        message(Message::Dropped(Dropped { count: 4, total: 4 }), 29),
    );
    let failed: FilterExpr = "failed".parse().expect("valid");
    let rows = model.upstream_rows(Window::OneMinute, &failed, false);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].requests, rows[0].failures), (30, 30));
    assert!(
        (rows[0].rps - 1.0).abs() < 1e-9,
        "30 failures in 30 s: {}",
        rows[0].rps
    );
    assert_eq!(rows[0].success, Some(0.0));
    let summary = model.summary(Window::OneMinute, &failed);
    assert!((summary.rps - 1.0).abs() < 1e-9);
    assert_eq!(
        model.figures(Window::OneMinute, &failed),
        Figures::Events {
            covered: 30,
            window: 60,
            dropped: 4
        }
    );
    assert_eq!(
        model
            .figures(Window::TenSeconds, &failed)
            .label()
            .as_deref(),
        Some("from events · 4 dropped")
    );
    assert_eq!(
        model.figures(Window::OneMinute, &failed).label().as_deref(),
        Some("from events · 30s of 1m · 4 dropped")
    );
    let errors = model.errors(&failed, None);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].count, 30);
    // An exact filter keeps exact figures.
    let exact: FilterExpr = "authority~voting".parse().expect("valid");
    assert_eq!(model.figures(Window::OneMinute, &exact), Figures::Stats);
    assert_eq!(
        model.upstream_rows(Window::OneMinute, &exact, false)[0].requests,
        90
    );

    // The sidecar now sends only failures (the filter pushed down), then
    // only slow requests: what came under the first filter is not all
    // the second selects, so the second's figures begin anew.
    feed(
        &mut model,
        FeedKind::Live {
            filter: "failed".into(),
        },
    );
    assert_eq!(
        model.upstream_rows(Window::OneMinute, &failed, false)[0].requests,
        30
    );
    feed(
        &mut model,
        message(
            simple_stats("web", T0 + 31, "voting-svc.emojivoto:8080", 0, 0),
            31,
        ),
    );
    feed(
        &mut model,
        FeedKind::Live {
            filter: "latency>1ms".into(),
        },
    );
    let slow: FilterExpr = "latency>1ms".parse().expect("valid");
    assert!(
        model
            .upstream_rows(Window::OneMinute, &slow, false)
            .is_empty()
    );
    assert_eq!(
        model.figures(Window::OneMinute, &slow),
        Figures::Events {
            covered: 1,
            window: 60,
            dropped: 0
        }
    );
}

/// The tap's bound ends what events can tell: figures then cover only the
/// seconds it holds whole.
#[test]
fn figures_from_events_cover_only_what_the_tap_holds() {
    use meshtop::tui::model::{Figures, TAP_CAPACITY};
    let mut model = Model::new(["a".to_string()]);
    let per_second = TAP_CAPACITY as u64 / 20 + 10;
    for sec in 0..40 {
        for _ in 0..per_second {
            let event = request("web", "voting-svc.emojivoto:8080", "/vote", 503, None, None);
            model.ingest(&FeedItem {
                source: 0,
                kind: FeedKind::Message {
                    raw: "{}".into(),
                    message: event,
                    received: at(T0 + sec),
                },
            });
        }
    }
    let failed: FilterExpr = "failed".parse().expect("valid");
    // 40 s of events, a little over 19 s of them held: the first second
    // held is partly gone, so the 19 whole seconds after it are counted.
    assert_eq!(
        model.figures(Window::OneMinute, &failed),
        Figures::Events {
            covered: 19,
            window: 60,
            dropped: 0
        }
    );
    let rows = model.upstream_rows(Window::OneMinute, &failed, false);
    assert_eq!(rows[0].requests, 19 * per_second);
    assert!((rows[0].rps - per_second as f64).abs() < 1e-9);
}

/// The Detail view's routes: exact, from the routes in `stats`, over the
/// window asked for; from request events when the sidecars send none.
#[test]
fn routes_come_from_stats_over_the_window_when_sidecars_send_them() {
    use meshtop::tui::model::RouteFigures;
    let mut model = Model::new(["a".to_string(), "b".to_string()]);
    let with_routes = stats_with_routes;
    // 20 s of two sidecars' stats: VoteDog twice a second from each, with
    // a failure every other second from one; VotePig once, 15 s ago.
    for sec in 0..20u64 {
        let mut routes: Vec<(&str, &[u64], u64)> = vec![("/v1/VoteDog", &[1000, 3000], sec % 2)];
        if sec == 5 {
            routes.push(("/v1/VotePig", &[50_000], 0));
        }
        let now = at(T0 + sec);
        model.ingest_message_at(0, &with_routes("web", T0 + sec, &routes), now);
        model.ingest_message_at(1, &with_routes("bot", T0 + sec, &routes[..1]), now);
    }
    let key = voting();
    let RouteFigures::Exact(rows) = model.route_figures(&key, Window::OneMinute) else {
        panic!("exact routes")
    };
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].route.as_str(), rows[0].count), ("/v1/VoteDog", 80));
    assert_eq!(rows[0].rps, Some(4.0));
    assert_eq!(rows[0].success, Some(1.0 - 20.0 / 80.0));
    assert_eq!(rows[0].p50.map(|p| p / 100), Some(10));
    assert_eq!((rows[1].route.as_str(), rows[1].count), ("/v1/VotePig", 1));
    // The last 10 s: VotePig is outside.
    let RouteFigures::Exact(rows) = model.route_figures(&key, Window::TenSeconds) else {
        panic!("exact routes")
    };
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].count, 40);

    // A sidecar that sends no routes: the routes of its request events.
    let mut old = Model::new(["a".to_string()]);
    old.ingest_message(0, &simple_stats("web", T0, VOTING, 3, 0));
    old.ingest_message(
        0,
        &request("web", VOTING, "/v1/VoteDog", 200, Some(0), None),
    );
    match old.route_figures(&key, Window::OneMinute) {
        RouteFigures::FromEvents(rows) => assert_eq!(rows[0].route, "/v1/VoteDog"),
        other => panic!("{other:?}"),
    }
}

/// A sidecar's stats of second `sec` for voting, with these routes:
/// (route, durations, failures).
fn stats_with_routes(sidecar: &str, sec: u64, routes: &[(&str, &[u64], u64)]) -> Message {
    use meshtop::schema::RouteStats;
    let durations: Vec<u64> = routes.iter().flat_map(|r| r.1.iter().copied()).collect();
    let failures = routes.iter().map(|r| r.2).sum();
    let Message::Stats(mut stats) = stats(sidecar, sec, VOTING, &durations, failures) else {
        unreachable!()
    };
    stats.upstreams[0].routes = routes
        .iter()
        .map(|(route, durations, failures)| {
            let Message::Stats(part) = stats_of(durations, *failures) else {
                unreachable!()
            };
            RouteStats {
                route: (*route).into(),
                counts: part.upstreams[0].counts.clone(),
            }
        })
        .collect();
    Message::Stats(stats)
}

/// Stats of one upstream with these durations, for their counts.
fn stats_of(durations: &[u64], failures: u64) -> Message {
    stats("x", T0, VOTING, durations, failures)
}

/// A sidecar that goes away leaves its rows marked stale and out of the
/// header; its rates are over the time it was watched, so the outage does
/// not read as a time without traffic; and nothing is counted twice when
/// it comes back.
#[test]
fn rows_of_a_gone_sidecar_are_stale_and_outages_are_not_zero_traffic() {
    let mut model = Model::new(["web".to_string(), "bot".to_string()]);
    let feed =
        |model: &mut Model, source: usize, kind: FeedKind| model.ingest(&FeedItem { source, kind });
    let message = |message: Message, sec: u64| FeedKind::Message {
        raw: "{}".into(),
        message,
        received: at(T0 + sec),
    };
    // A second of stats: vote-bot's, and web's while it is there.
    let second = |model: &mut Model, sec: u64, web: bool| {
        if web {
            let stats = simple_stats("web", T0 + sec, VOTING, 10, 0);
            feed(model, 0, message(stats, sec));
        }
        let stats = simple_stats("vote-bot", T0 + sec, "web-svc.emojivoto:80", 5, 0);
        feed(model, 1, message(stats, sec));
    };
    feed(&mut model, 0, message(hello("web", T0), 0));
    feed(&mut model, 1, message(hello("vote-bot", T0), 0));
    for sec in 0..30 {
        second(&mut model, sec, true);
    }
    let live_rps = model.summary(Window::OneMinute, &FilterExpr::default()).rps;
    assert!((live_rps - 15.0).abs() < 1e-9, "{live_rps}");

    // web goes away; vote-bot's stats keep the clock going.
    feed(
        &mut model,
        0,
        FeedKind::Reconnecting {
            reason: "connection refused".into(),
            retry_in: Duration::from_secs(1),
        },
    );
    for sec in 30..45 {
        second(&mut model, sec, false);
    }
    let row = model
        .upstream_row(&voting(), Window::OneMinute)
        .expect("row");
    assert_eq!(
        row.stale,
        Some(15),
        "14 s after its last stats, as the clock reads"
    );
    assert!(
        (row.rps - 10.0).abs() < 1e-9,
        "over the 30 s watched: {}",
        row.rps
    );
    let bot = model.upstream_row(&web(), Window::OneMinute).expect("row");
    assert_eq!(bot.stale, None);
    let summary = model.summary(Window::OneMinute, &FilterExpr::default());
    assert!(
        (summary.rps - 5.0).abs() < 1e-9,
        "the stale row left the header: {}",
        summary.rps
    );
    let table = headless_table(&model, Window::OneMinute, &FilterExpr::default());
    let voting_line = table.lines().find(|l| l.contains(VOTING)).expect("voting");
    assert!(voting_line.contains(" 15s "), "{table}");

    // web comes back, restarted: 15 s more at 10 requests/s.
    feed(&mut model, 0, message(hello("web", T0 + 45), 45));
    feed(
        &mut model,
        0,
        FeedKind::Live {
            filter: String::new(),
        },
    );
    for sec in 45..60 {
        second(&mut model, sec, true);
    }
    let row = model
        .upstream_row(&voting(), Window::OneMinute)
        .expect("row");
    assert_eq!(row.stale, None);
    assert_eq!(row.requests, 450, "every second once");
    assert!(
        (row.rps - 10.0).abs() < 1e-9,
        "450 requests over the 45 s watched, not the 60 s of the window: {}",
        row.rps
    );
}

/// With no sidecar live no message marks the time: the clock goes on with
/// the UI's own, so a stale row's age grows. While every sidecar is live,
/// only their messages move it, as in a replay.
#[test]
fn the_clock_goes_on_while_a_sidecar_is_gone() {
    let mut model = Model::new(["web".to_string()]);
    let message = |message: Message, sec: u64| FeedItem {
        source: 0,
        kind: FeedKind::Message {
            raw: "{}".into(),
            message,
            received: at(T0 + sec),
        },
    };
    model.ingest(&message(hello("web", T0), 0));
    for sec in 0..10 {
        model.ingest(&message(simple_stats("web", T0 + sec, VOTING, 10, 0), sec));
    }
    model.tick(UNIX_EPOCH + Duration::from_secs(T0 + 30));
    assert_eq!(model.now_sec(), Some((T0 + 9) as i64), "all live: no tick");
    model.ingest(&FeedItem {
        source: 0,
        kind: FeedKind::Failed {
            reason: "connection refused".into(),
        },
    });
    model.tick(UNIX_EPOCH + Duration::from_secs(T0 + 30));
    let row = model
        .upstream_row(&voting(), Window::OneMinute)
        .expect("row");
    assert_eq!(row.stale, Some(21));
    assert!((row.rps - 10.0).abs() < 1e-9, "{}", row.rps);
}

/// A filter on sidecars or routes is counted exactly from `stats`, in
/// windows kept up to date as stats arrive and seconds leave: the same
/// figures as windows built afresh from the history.
#[test]
fn filters_on_sidecars_and_routes_are_exact_from_stats() {
    use meshtop::filter::Scope;
    use meshtop::tui::model::Figures;
    let mut model = Model::new(["a".to_string(), "b".to_string()]);
    let web: FilterExpr = "sidecar=web".parse().expect("valid");
    let dog: FilterExpr = "route~dog".parse().expect("valid");
    let second = |model: &mut Model, sec: u64| {
        let web_routes: [(&str, &[u64], u64); 2] = [
            ("/v1/VoteDog", &[1000, 3000], sec % 2),
            ("/v1/VotePig", &[50_000], 0),
        ];
        let now = at(T0 + sec);
        model.ingest_message_at(0, &stats_with_routes("web", T0 + sec, &web_routes), now);
        let bot_routes: [(&str, &[u64], u64); 1] = [("/v1/VoteDog", &[2000], 0)];
        model.ingest_message_at(1, &stats_with_routes("bot", T0 + sec, &bot_routes), now);
    };
    second(&mut model, 0);
    // Asked early: the windows are kept from here on.
    assert_eq!(model.upstream_rows(Window::OneMinute, &web, false).len(), 1);
    for sec in 1..40 {
        second(&mut model, sec);
    }
    assert_eq!(model.scope_of(&web), Scope::Stats);
    assert_eq!(model.figures(Window::OneMinute, &web), Figures::Stats);
    let kept = |model: &Model, filter: &FilterExpr, window: Window| {
        let rows = model.upstream_rows(window, filter, false);
        assert_eq!(rows.len(), 1, "{}", filter.as_str());
        rows[0].clone()
    };
    let web_10s = kept(&model, &web, Window::TenSeconds);
    assert_eq!(web_10s.rps, 3.0, "web's three requests a second");
    assert_eq!(web_10s.requests, 120, "its every request in the history");
    assert_eq!(web_10s.failures, 20);
    assert_eq!(web_10s.max.map(|m| m / 1000), Some(50));
    let web_1m = kept(&model, &web, Window::OneMinute);
    // Asked about another filter, then again: built afresh, the same.
    let dog_1m = kept(&model, &dog, Window::OneMinute);
    assert_eq!(dog_1m.requests, 120, "VoteDog from both sidecars");
    assert_eq!(dog_1m.rps, 3.0);
    assert_eq!(dog_1m.max.map(|m| m / 100), Some(30), "no VotePig in it");
    assert_eq!(kept(&model, &web, Window::TenSeconds), web_10s);
    assert_eq!(kept(&model, &web, Window::OneMinute), web_1m);
    let both: FilterExpr = "sidecar=bot route~pig".parse().expect("valid");
    assert!(
        model
            .upstream_rows(Window::OneMinute, &both, false)
            .is_empty()
    );
    // The header counts what the filter selects.
    let summary = model.summary(Window::TenSeconds, &dog);
    assert_eq!(summary.rps, 3.0);
}

#[test]
fn ten_thousand_authorities_keep_the_most_recently_active_within_the_bounds() {
    use meshtop::tui::model::{ERROR_GROUPS, MAX_UPSTREAMS};
    let mut model = Model::new(["a".to_string()]);
    let keep = "keep.emojivoto:80";
    for i in 0..10_000 {
        // Each authority fails once: one error group per authority too.
        model.ingest_message(
            0,
            &request("web", &format!("svc-{i}:80"), "/", 503, None, None),
        );
        if i % 100 == 0 {
            model.ingest_message(0, &request("web", keep, "/", 503, None, None));
        }
    }
    let rows = model.upstream_rows(Window::OneMinute, &FilterExpr::default(), false);
    let names: std::collections::HashSet<&str> =
        rows.iter().map(|r| r.key.authority.as_str()).collect();
    assert_eq!(rows.len(), MAX_UPSTREAMS);
    assert_eq!(model.evicted_upstreams(), 10_001 - MAX_UPSTREAMS as u64);
    // Exactly the least recently active went, one at a time: the one used
    // every hundred events stayed, and so did the newest.
    assert!(names.contains(keep));
    assert!(names.contains("svc-9999:80") && names.contains("svc-5001:80"));
    assert!(!names.contains("svc-5000:80") && !names.contains("svc-0:80"));

    let errors = model.errors(&FilterExpr::default(), None);
    assert_eq!(errors.len(), ERROR_GROUPS);
    let failing: std::collections::HashSet<&str> = errors
        .iter()
        .map(|e| e.key.upstream.authority.as_str())
        .collect();
    assert!(failing.contains(keep));
    assert!(failing.contains("svc-9999:80") && failing.contains("svc-9001:80"));
    assert!(!failing.contains("svc-9000:80"));
}

// Edges: who calls whom (issue 18 §2).

use meshtop::schema::ClientStats;
use meshtop::tui::model::{EdgeRow, FilterNotForEdges, MAX_EDGES};

const WEB: &str = "web-svc.emojivoto:80";

fn hello_from(name: &str, addresses: &[&str]) -> Message {
    let Message::Hello(mut hello) = hello(name, T0 - 60) else {
        unreachable!("hello() builds a hello");
    };
    hello.addresses = addresses.iter().map(|a| (*a).to_owned()).collect();
    Message::Hello(hello)
}

fn counts(durations: &[u64], failures: u64) -> Counts {
    let mut latency = new_latency_histogram();
    for d in durations {
        latency.record(*d).expect("in range");
    }
    Counts {
        requests: durations.len() as u64,
        failures,
        status: StatusClasses::default(),
        grpc_status: Default::default(),
        errors: Default::default(),
        req_bytes: 0,
        resp_bytes: 0,
        latency: encode_histogram(&latency),
    }
}

/// Requests from one client address: durations (µs) and failures.
type FromClient<'a> = (&'a str, &'a [u64], u64);

/// One second of a sidecar's `stats`: outbound calls to an authority, and
/// inbound calls to an authority by client address.
fn calls(
    sidecar: &str,
    sec: u64,
    outbound: &[(&str, &[u64], u64)],
    inbound: &[(&str, &[FromClient])],
) -> Message {
    let mut upstreams: Vec<UpstreamStats> = outbound
        .iter()
        .map(|(authority, durations, failures)| UpstreamStats {
            direction: Direction::Outbound,
            authority: (*authority).into(),
            counts: counts(durations, *failures),
            routes: Vec::new(),
            clients: Vec::new(),
        })
        .collect();
    for (authority, clients) in inbound {
        let all: Vec<u64> = clients.iter().flat_map(|c| c.1.iter().copied()).collect();
        let failures = clients.iter().map(|c| c.2).sum();
        upstreams.push(UpstreamStats {
            direction: Direction::Inbound,
            authority: (*authority).into(),
            counts: counts(&all, failures),
            routes: Vec::new(),
            clients: clients
                .iter()
                .map(|(client, durations, failures)| ClientStats {
                    client: (*client).into(),
                    counts: counts(durations, *failures),
                })
                .collect(),
        });
    }
    Message::Stats(Stats {
        ts: ts(sec),
        sidecar: sidecar.into(),
        interval_ms: 1000,
        backfill: false,
        upstreams,
    })
}

fn edges(model: &Model, filter: &str) -> Result<Vec<EdgeRow>, FilterNotForEdges> {
    let filter: FilterExpr = filter.parse().expect("a valid filter");
    let mut rows = model.edges(Window::TenSeconds, &filter).as_ref().clone()?;
    rows.sort_by(|a, b| (&a.caller, &a.authority).cmp(&(&b.caller, &b.authority)));
    Ok(rows)
}

/// web (10.0.0.1) calls voting (10.0.0.2), both attached: web sees 2 ms,
/// voting 1 ms, one call in ten fails.
fn web_calls_voting() -> Model {
    let mut model = Model::new(["web".to_string(), "voting".to_string()]);
    model.ingest_message(0, &hello_from("web", &["10.0.0.1"]));
    model.ingest_message(1, &hello_from("voting", &["10.0.0.2"]));
    for sec in T0..T0 + 5 {
        model.ingest_message(0, &calls("web", sec, &[(VOTING, &[2_000; 10], 1)], &[]));
        model.ingest_message(
            1,
            &calls(
                "voting",
                sec,
                &[],
                &[(VOTING, &[("10.0.0.1", &[1_000; 10], 1)])],
            ),
        );
    }
    model
}

#[test]
fn a_call_seen_at_both_ends_is_one_edge_with_both_latencies() {
    let rows = edges(&web_calls_voting(), "").expect("no filter");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let edge = &rows[0];
    assert_eq!(
        (edge.caller.as_str(), edge.authority.as_str()),
        ("web", VOTING)
    );
    assert!(edge.caller_is_sidecar && edge.seen_by_caller);
    assert_eq!(edge.servers, ["voting"]);
    assert_eq!(edge.rps, 10.0);
    assert_eq!(edge.success, Some(0.9));
    assert_eq!(edge.failures, 5);
    let near =
        |micros: Option<u64>, want: u64| micros.is_some_and(|m| m.abs_diff(want) < want / 50);
    assert!(
        near(edge.caller_p50, 2_000) && near(edge.caller_p99, 2_000),
        "{edge:?}"
    );
    assert!(
        near(edge.callee_p50, 1_000) && near(edge.callee_p99, 1_000),
        "{edge:?}"
    );
    assert_eq!(edge.upstream(), voting());
}

#[test]
fn the_caller_is_the_sidecar_known_by_the_client_address() {
    let mut model = Model::new(["bot".to_string(), "web".to_string()]);
    // vote-bot's sidecar is attached but sends no stats of its calls.
    model.ingest_message(0, &hello_from("vote-bot", &["10.0.0.3", "fd00::3"]));
    model.ingest_message(1, &hello_from("web", &["10.0.0.1"]));
    model.ingest_message(
        1,
        &calls("web", T0, &[], &[(WEB, &[("fd00::3", &[5_000; 4], 0)])]),
    );
    let rows = edges(&model, "").expect("no filter");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].caller, "vote-bot");
    assert!(rows[0].caller_is_sidecar && !rows[0].seen_by_caller);
    assert_eq!(rows[0].caller_p50, None);
    assert_eq!(rows[0].servers, ["web"]);
    assert_eq!(
        rows[0].upstream(),
        UpstreamKey {
            direction: Direction::Inbound,
            authority: WEB.into()
        },
        "only the callee's end is seen: enter opens it"
    );
}

#[test]
fn a_shared_address_is_resolved_by_who_calls_the_authority() {
    // As in the demo: every pod is 127.0.0.1.
    let mut model = Model::new(["bot", "web", "voting"].map(String::from));
    for (i, name) in ["vote-bot", "web", "voting"].iter().enumerate() {
        model.ingest_message(i, &hello_from(name, &["127.0.0.1"]));
    }
    let local = "127.0.0.1";
    model.ingest_message(0, &calls("vote-bot", T0, &[(WEB, &[9_000; 2], 0)], &[]));
    model.ingest_message(
        1,
        &calls(
            "web",
            T0,
            &[(VOTING, &[2_000; 2], 0)],
            &[(WEB, &[(local, &[8_000; 2], 0)])],
        ),
    );
    model.ingest_message(
        2,
        &calls("voting", T0, &[], &[(VOTING, &[(local, &[1_000; 2], 0)])]),
    );
    let rows = edges(&model, "").expect("no filter");
    let pairs: Vec<(&str, &str, &[String])> = rows
        .iter()
        .map(|r| {
            (
                r.caller.as_str(),
                r.authority.as_str(),
                r.servers.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("vote-bot", WEB, &["web".to_string()][..]),
            ("web", VOTING, &["voting".to_string()][..]),
        ]
    );
    assert!(
        rows.iter()
            .all(|r| r.caller_p50.is_some() && r.callee_p50.is_some())
    );

    // Two of the sidecars sharing the address call voting: it cannot be
    // told which, so the address is the caller.
    model.ingest_message(0, &calls("vote-bot", T0 + 1, &[(VOTING, &[2_000], 0)], &[]));
    let rows = edges(&model, "authority~voting").expect("an authority filter");
    assert!(
        rows.iter()
            .any(|r| r.caller == local && !r.caller_is_sidecar && r.callee_p50.is_some()),
        "{rows:?}"
    );
}

#[test]
fn a_client_no_attached_sidecar_claims_is_shown_as_its_address() {
    let mut model = Model::new(["web".to_string()]);
    model.ingest_message(0, &hello_from("web", &["10.0.0.1"]));
    model.ingest_message(
        0,
        &calls(
            "web",
            T0,
            &[],
            &[(WEB, &[("10.9.9.9", &[1_000; 3], 3), ("other", &[1_000], 0)])],
        ),
    );
    let rows = edges(&model, "").expect("no filter");
    let callers: Vec<(&str, bool, Option<f64>)> = rows
        .iter()
        .map(|r| (r.caller.as_str(), r.caller_is_sidecar, r.success))
        .collect();
    assert_eq!(
        callers,
        [("10.9.9.9", false, Some(0.0)), ("other", false, Some(1.0))]
    );
}

#[test]
fn a_filter_selects_the_ends_it_names_and_refuses_request_fields() {
    let model = web_calls_voting();
    let only = |filter: &str| {
        let rows = edges(&model, filter).expect("a filter edges take");
        rows.iter()
            .map(|r| (r.caller_p50.is_some(), r.callee_p50.is_some()))
            .collect::<Vec<_>>()
    };
    assert_eq!(only("sidecar=voting"), [(false, true)], "voting's end only");
    assert_eq!(
        only("direction=outbound"),
        [(true, false)],
        "web's end only"
    );
    assert_eq!(only("authority~voting"), [(true, true)]);
    assert_eq!(only("authority~web-svc"), []);
    for refused in [
        "status>=500",
        "latency>1ms",
        "route~Vote",
        "path~/api",
        "failed",
    ] {
        assert_eq!(edges(&model, refused), Err(FilterNotForEdges), "{refused}");
        let filter: FilterExpr = refused.parse().expect("a valid filter");
        let table = headless_edges_table(&model, Window::TenSeconds, &filter);
        assert_eq!(table, format!("({FilterNotForEdges})\n"), "{refused}");
    }
}

#[test]
fn edges_are_bounded_keeping_the_most_recently_active() {
    let mut model = Model::new(["web".to_string()]);
    model.ingest_message(0, &hello_from("web", &["10.0.0.1"]));
    // Clients no sidecar claims, each an edge of its own: eleven inbound
    // upstreams of a hundred clients each.
    let addresses: Vec<String> = (0..1_100)
        .map(|i| format!("10.1.{}.{}", i / 100, i % 100))
        .collect();
    let authorities: Vec<String> = (0..11).map(|i| format!("svc-{i}.ns:80")).collect();
    let clients: Vec<Vec<FromClient>> = addresses
        .chunks(100)
        .map(|chunk| {
            chunk
                .iter()
                .map(|a| (a.as_str(), &[1_000u64][..], 0))
                .collect()
        })
        .collect();
    let inbound: Vec<(&str, &[FromClient])> = authorities
        .iter()
        .zip(&clients)
        .map(|(authority, clients)| (authority.as_str(), clients.as_slice()))
        .collect();
    assert!(addresses.len() > MAX_EDGES);
    model.ingest_message(0, &calls("web", T0, &[], &inbound));
    model.ingest_message(
        0,
        &calls("web", T0 + 1, &[], &[(WEB, &[("10.2.0.1", &[1_000], 0)])]),
    );
    let rows = edges(&model, "").expect("no filter");
    assert_eq!(rows.len(), MAX_EDGES);
    assert!(rows.iter().any(|r| r.caller == "10.2.0.1"));
}

#[test]
fn the_headless_table_names_the_callers_or_counts_them_when_many() {
    let mut model = web_calls_voting();
    model.ingest_message(
        1,
        &calls(
            "voting",
            T0 + 5,
            &[],
            &[(
                WEB,
                &[
                    ("10.0.0.7", &[1_000], 0),
                    ("10.0.0.8", &[1_000], 0),
                    ("10.0.0.9", &[1_000], 0),
                ],
            )],
        ),
    );
    let table = headless_table(&model, Window::TenSeconds, &FilterExpr::default());
    let header = table.lines().next().expect("a header");
    assert!(header.ends_with("STALE  CALLERS"), "{table}");
    let row = |direction: &str, authority: &str| {
        table
            .lines()
            .find(|l| l.starts_with(direction) && l.contains(authority))
            .unwrap_or_else(|| panic!("no {direction} {authority} in\n{table}"))
            .to_owned()
    };
    assert!(row("outbound", VOTING).ends_with(" web"), "{table}");
    assert!(row("inbound", VOTING).ends_with(" web"), "{table}");
    assert!(row("inbound", WEB).ends_with(" 3 callers"), "{table}");
    // A filter edges do not take leaves the column out.
    let failed: FilterExpr = "failed".parse().expect("a valid filter");
    let table = headless_table(&model, Window::TenSeconds, &failed);
    assert!(!table.contains("CALLERS"), "{table}");
}

/// Grouped by route, sidecar or status class, the rows are exact from
/// `stats` and add up to the upstream they split: requests, rates and the
/// trend; the latency of a route is its own.
#[test]
fn grouped_figures_are_the_sums_of_their_parts() {
    use meshtop::tui::model::{GroupBy, GroupKey, GroupSource, StatusClass};
    let mut model = Model::new(["a".to_string(), "b".to_string()]);
    for sec in 0..20u64 {
        let routes: Vec<(&str, &[u64], u64)> = vec![
            ("/v1/VoteDog", &[1000, 3000], sec % 2),
            ("/v1/VotePig", &[50_000], 0),
        ];
        let now = at(T0 + sec);
        model.ingest_message_at(0, &stats_with_routes("web", T0 + sec, &routes), now);
        model.ingest_message_at(1, &stats_with_routes("bot", T0 + sec, &routes[..1]), now);
    }
    let filter = FilterExpr::default();
    let window = Window::TenSeconds;
    let upstream = model.upstream_row(&voting(), window).expect("voting");
    let sum = |by: GroupBy| {
        let grouped = model.grouped(by, window, &filter).expect("grouped");
        let rps: f64 = grouped.rows.iter().map(|r| r.rps).sum();
        let requests: u64 = grouped.rows.iter().map(|r| r.requests).sum();
        let trend: u64 = grouped.rows.iter().flat_map(|r| &r.trend).sum();
        (grouped, rps, requests, trend)
    };
    for by in [GroupBy::Route, GroupBy::Sidecar, GroupBy::Status] {
        let (grouped, rps, requests, trend) = sum(by);
        assert!(
            (rps - upstream.rps).abs() < 1e-9,
            "{by:?}: {rps} ≠ {}",
            upstream.rps
        );
        assert_eq!(requests, upstream.requests, "{by:?}");
        assert_eq!(trend, upstream.requests, "{by:?}: 20 s, all in the trend");
        let exact = match by {
            GroupBy::Status => matches!(grouped.source, GroupSource::CountsFromStats(_)),
            _ => grouped.source == GroupSource::Stats,
        };
        assert!(exact, "{by:?}: {:?}", grouped.source);
    }
    let (routes, ..) = sum(GroupBy::Route);
    let pig = routes
        .rows
        .iter()
        .find(|r| matches!(&r.key, GroupKey::Route { route, .. } if route == "/v1/VotePig"))
        .expect("VotePig");
    assert_eq!((pig.requests, pig.success), (20, Some(1.0)));
    assert!((pig.rps - 1.0).abs() < 1e-9, "{}", pig.rps);
    assert_eq!(pig.p50.map(|p| p / 1000), Some(50));
    let (sidecars, ..) = sum(GroupBy::Sidecar);
    let web = sidecars
        .rows
        .iter()
        .find(|r| r.key == GroupKey::Sidecar("web".into()))
        .expect("web");
    // Three requests a second, a failure every other second.
    assert_eq!((web.requests, web.failures), (60, 10));
    assert!((web.rps - 3.0).abs() < 1e-9, "{}", web.rps);
    let (classes, ..) = sum(GroupBy::Status);
    let errors = classes
        .rows
        .iter()
        .find(|r| r.key == GroupKey::Status(StatusClass::ServerError))
        .expect("5xx");
    assert_eq!(errors.requests, upstream.failures);
    // A filter on a sidecar applies to the groups too.
    let bot: FilterExpr = "sidecar=bot".parse().expect("valid");
    let (grouped, rps) = {
        let g = model
            .grouped(GroupBy::Route, window, &bot)
            .expect("grouped");
        let rps: f64 = g.rows.iter().map(|r| r.rps).sum();
        (g, rps)
    };
    assert_eq!(grouped.rows.len(), 1, "bot calls VoteDog only");
    assert!((rps - 2.0).abs() < 1e-9);
}

/// Grouped by caller, each call counts once: at the caller's end when its
/// sidecar is attached (web's 2 ms, not voting's 1 ms), else at the
/// callee's (a client no sidecar claims, by its address); the callers add
/// up to the edges. Under a filter only events answer, an inbound request
/// whose caller's outbound request passes too is that same call.
#[test]
fn grouped_by_caller_counts_each_call_once() {
    use meshtop::tui::model::{GroupBy, GroupKey, GroupSource};
    let mut model = web_calls_voting();
    let emoji = "emoji-svc.emojivoto:8080";
    for sec in T0..T0 + 5 {
        model.ingest_message(0, &calls("web", sec, &[(emoji, &[3_000; 4], 0)], &[]));
        model.ingest_message(
            1,
            &calls(
                "voting",
                sec,
                &[],
                &[(VOTING, &[("10.9.9.9", &[500, 500], 1)])],
            ),
        );
    }
    let window = Window::TenSeconds;
    let grouped = model
        .grouped(GroupBy::Caller, window, &FilterExpr::default())
        .expect("grouped");
    assert_eq!(grouped.source, GroupSource::Stats);
    let row = |name: &str| {
        grouped
            .rows
            .iter()
            .find(|r| matches!(&r.key, GroupKey::Caller { name: n, .. } if n == name))
            .unwrap_or_else(|| panic!("no {name} in {:?}", grouped.rows))
    };
    let web = row("web");
    assert_eq!(
        web.key,
        GroupKey::Caller {
            name: "web".into(),
            sidecar: true
        }
    );
    // Ten calls a second to voting (one failing) and four to emoji.
    assert_eq!((web.requests, web.failures), (70, 5));
    assert_eq!(web.trend.iter().sum::<u64>(), 70);
    let p50 = web.p50.expect("latency");
    assert!((1_990..=2_010).contains(&p50), "web's own end: {p50}");
    let p99 = web.p99.expect("latency");
    assert!((2_990..=3_010).contains(&p99), "emoji calls: {p99}");
    let stranger = row("10.9.9.9");
    assert_eq!(
        stranger.key,
        GroupKey::Caller {
            name: "10.9.9.9".into(),
            sidecar: false
        }
    );
    assert_eq!((stranger.requests, stranger.failures), (10, 5));
    assert_eq!(
        grouped.rows.len(),
        2,
        "voting calls nobody: {:?}",
        grouped.rows
    );
    let edges = edges(&model, "").expect("no filter");
    let by_edges: f64 = edges.iter().map(|e| e.rps).sum();
    let by_callers: f64 = grouped.rows.iter().map(|r| r.rps).sum();
    assert!(
        (by_edges - by_callers).abs() < 1e-9,
        "{by_edges} ≠ {by_callers}"
    );

    // A failing call seen at both ends, and one from the stranger: two
    // failed requests by caller, not three.
    let mut out = request("web", VOTING, "/vote", 500, None, None);
    let mut inn = request("voting", VOTING, "/vote", 500, None, None);
    let mut other = request("voting", VOTING, "/vote", 500, None, None);
    for (message, direction, client) in [
        (&mut out, Direction::Outbound, "10.0.0.1:4000"),
        (&mut inn, Direction::Inbound, "10.0.0.1:4000"),
        (&mut other, Direction::Inbound, "10.9.9.9:5000"),
    ] {
        let Message::Request(event) = message else {
            unreachable!("request() builds a request");
        };
        event.ts = ts(T0 + 4);
        event.direction = direction;
        event.client = client.into();
    }
    for message in [out, inn, other] {
        model.ingest_message(0, &message);
    }
    let failed: FilterExpr = "failed".parse().expect("valid");
    let grouped = model
        .grouped(GroupBy::Caller, window, &failed)
        .expect("grouped");
    assert!(matches!(grouped.source, GroupSource::Events(_)));
    let mut counted: Vec<(String, u64)> = grouped
        .rows
        .iter()
        .map(|r| match &r.key {
            GroupKey::Caller { name, .. } => (name.clone(), r.requests),
            other => panic!("not a caller: {other:?}"),
        })
        .collect();
    counted.sort();
    assert_eq!(counted, [("10.9.9.9".into(), 1), ("web".into(), 1)]);
    // Inbound only: the caller's end does not pass, so the callee's counts.
    let inbound: FilterExpr = "failed direction=inbound".parse().expect("valid");
    let grouped = model
        .grouped(GroupBy::Caller, window, &inbound)
        .expect("grouped");
    let mut names: Vec<&str> = grouped
        .rows
        .iter()
        .filter_map(|r| match &r.key {
            GroupKey::Caller { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    names.sort();
    assert_eq!(names, ["10.9.9.9", "web"]);
}

/// A row's percentiles, read once and kept while its window is unchanged,
/// follow every change: a second entering the window, and one leaving it.
#[test]
fn percentiles_follow_the_window_after_being_read() {
    let mut model = Model::new(["web".to_string()]);
    let window = Window::TenSeconds;
    let p99 = |model: &Model| {
        model
            .upstream_row(&voting(), window)
            .and_then(|row| row.p99)
            .map(|p| p / 1000)
    };
    model.ingest_message_at(0, &stats("web", T0, VOTING, &[1_000; 10], 0), at(T0));
    assert_eq!(p99(&model), Some(1));
    model.ingest_message_at(
        0,
        &stats("web", T0 + 1, VOTING, &[50_000; 10], 0),
        at(T0 + 1),
    );
    assert_eq!(p99(&model), Some(50), "the new second is in");
    model.ingest_message_at(
        0,
        &stats("web", T0 + 6, VOTING, &[2_000; 10], 0),
        at(T0 + 6),
    );
    assert_eq!(p99(&model), Some(50));
    // Only another upstream's stats: the clock moves on, and VOTING's
    // window loses its first two seconds with nothing added to it.
    let emoji = "emoji-svc.emojivoto:8080";
    model.ingest_message_at(
        0,
        &stats("web", T0 + 11, emoji, &[9_000; 10], 0),
        at(T0 + 11),
    );
    assert_eq!(p99(&model), Some(2), "both earlier seconds left the window");
    model.ingest_message_at(
        0,
        &stats("web", T0 + 30, emoji, &[9_000; 10], 0),
        at(T0 + 30),
    );
    assert_eq!(p99(&model), None, "nothing left in the window");
}
