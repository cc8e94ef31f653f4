//! The terminal UI's hot paths (issue targets in brackets):
//!
//! - the model ingesting request events [≥ 300,000 events/s on one core],
//!   also across 5,000 upstreams and past the bound of upstreams kept,
//!   and parsing plus ingesting them as they arrive from a sidecar;
//! - a full frame of each view with 200 upstreams at 200×50 [≤ 3 ms];
//! - replaying a recording as fast as possible (`replay --headless --speed
//!   max`: reading the file, decoding, ingesting) [≥ 200,000 messages/s].
//!
//! `cargo bench --bench tui`.

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meshtop::filter::FilterExpr;
use meshtop::schema::{
    Counts, Message, RequestEvent, RouteStats, Stats, StatusClasses, UpstreamStats, timestamp,
};
use meshtop::telemetry::stats::{encode_histogram, new_latency_histogram};
use meshtop::telemetry::{Direction, HttpProtocol};
use meshtop::tui::input::{Tab, UiState};
use meshtop::tui::model::{GroupBy, Model, UpstreamKey, Window};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const T0: u64 = 1_795_996_800;

fn request(i: u64) -> Message {
    request_to(i, format!("svc-{}.emojivoto:8080", i % 20))
}

fn request_to(i: u64, authority: String) -> Message {
    Message::Request(RequestEvent {
        ts: timestamp(UNIX_EPOCH + Duration::from_micros(T0 * 1_000_000 + i)),
        sidecar: "web".into(),
        direction: Direction::Outbound,
        protocol: HttpProtocol::Grpc.into(),
        client: "10.1.0.7:52144".into(),
        server: Some("10.1.0.9:8080".into()),
        authority,
        method: Some("POST".into()),
        path: Some(format!("/emojivoto.v1.VotingService/Vote{}", i % 50)),
        status: Some(200),
        grpc_status: Some(if i.is_multiple_of(7) { 2 } else { 0 }),
        grpc_message: None,
        error: None,
        duration_ms: 1.0 + (i % 100) as f64 / 10.0,
        ttfb_ms: Some(0.9),
        req_bytes: 5,
        resp_bytes: 12,
        headers: None,
    })
}

fn ingest(c: &mut Criterion) {
    const N: u64 = 10_000;
    let events: Vec<Message> = (0..N).map(request).collect();
    let raw: Vec<String> = events
        .iter()
        .map(|m| serde_json::to_string(m).expect("encodes"))
        .collect();
    let mut group = c.benchmark_group("model");
    group.throughput(Throughput::Elements(N));
    group.bench_function("ingest request events", |b| {
        let mut model = Model::new(["a".to_string()]);
        b.iter(|| {
            for event in &events {
                model.ingest_message(0, black_box(event));
            }
        })
    });
    // Past the model's bounds: 5,000 upstreams kept, and, with 10,000
    // authorities, one evicted per new event.
    for upstreams in [5_000, 10_000] {
        let events: Vec<Message> = (0..N)
            .map(|i| request_to(i, format!("svc-{}.emojivoto:8080", (i * 7_919) % upstreams)))
            .collect();
        group.bench_function(
            format!("ingest request events, {upstreams} upstreams"),
            |b| {
                let mut model = Model::new(["a".to_string()]);
                b.iter(|| {
                    for event in &events {
                        model.ingest_message(0, black_box(event));
                    }
                })
            },
        );
    }
    group.bench_function("parse and ingest request events", |b| {
        let mut model = Model::new(["a".to_string()]);
        b.iter(|| {
            for line in &raw {
                if let Ok(message) = serde_json::from_str::<Message>(black_box(line)) {
                    model.ingest_message(0, &message);
                }
            }
        })
    });
    group.finish();
}

fn model_with_upstreams(n: usize) -> Model {
    let mut model = Model::new(["a".to_string(), "b".to_string()]);
    for sec in 0..60u64 {
        let upstreams = (0..n)
            .map(|u| {
                let mut latency = new_latency_histogram();
                for d in 0..20u64 {
                    latency
                        .record(500 + d * 97 + u as u64 * 13)
                        .expect("in range");
                }
                let mut status = StatusClasses::default();
                status.add(200, 19);
                status.add(503, 1);
                UpstreamStats {
                    direction: if u % 2 == 0 {
                        Direction::Outbound
                    } else {
                        Direction::Inbound
                    },
                    authority: format!("service-{u:03}.namespace-{}.svc.cluster.local:8080", u % 7),
                    counts: Counts {
                        requests: 20,
                        failures: 1,
                        status,
                        grpc_status: Default::default(),
                        errors: Default::default(),
                        req_bytes: 100,
                        resp_bytes: 1000,
                        latency: encode_histogram(&latency),
                    },
                    routes: ["/v1/ListAll", "/v1/FindByShortcode", "/v1/Vote"]
                        .into_iter()
                        .map(|route| RouteStats {
                            route: route.into(),
                            counts: Counts {
                                requests: 7,
                                failures: 0,
                                status: StatusClasses::default(),
                                grpc_status: Default::default(),
                                errors: Default::default(),
                                req_bytes: 30,
                                resp_bytes: 300,
                                latency: encode_histogram(&latency),
                            },
                        })
                        .collect(),
                    clients: Vec::new(),
                }
            })
            .collect();
        let stats = Message::Stats(Stats {
            ts: timestamp(UNIX_EPOCH + Duration::from_secs(T0 + sec)),
            sidecar: "web".into(),
            interval_ms: 1000,
            backfill: false,
            upstreams,
        });
        model.ingest_message(0, &stats);
    }
    model
}

/// A frame of each view with 200 upstreams at 200×50, each its own bench
/// (`cargo bench --bench tui -- view`), with request events in the tap so
/// that Errors and Tap have rows to draw.
fn render(c: &mut Criterion) {
    let mut model = model_with_upstreams(200);
    for i in 0..2_000 {
        model.ingest_message(0, &request(i));
    }
    let mut terminal = Terminal::new(TestBackend::new(200, 50)).expect("test backend");
    let mut group = c.benchmark_group("view");
    for tab in Tab::ALL {
        let mut ui = UiState::new(FilterExpr::default());
        ui.tab = tab;
        if tab == Tab::Detail {
            ui.detail = Some(UpstreamKey {
                direction: Direction::Outbound,
                authority: "service-000.namespace-0.svc.cluster.local:8080".into(),
            });
        }
        let name = format!("{}, 200 upstreams, 200x50", tab.title().to_lowercase());
        group.bench_function(name, |b| {
            b.iter(|| {
                terminal
                    .draw(|frame| meshtop::tui::views::draw(frame, black_box(&model), &ui))
                    .expect("draws");
            })
        });
    }
    // The Upstreams view grouped (`b`): a frame as drawn between two
    // `stats` messages, the grouping computed once and kept.
    for by in [
        GroupBy::Route,
        GroupBy::Sidecar,
        GroupBy::Caller,
        GroupBy::Status,
    ] {
        let mut ui = UiState::new(FilterExpr::default());
        ui.group_by = by;
        let name = format!("upstreams by {}, 200 upstreams, 200x50", by.label());
        group.bench_function(name, |b| {
            b.iter(|| {
                terminal
                    .draw(|frame| meshtop::tui::views::draw(frame, black_box(&model), &ui))
                    .expect("draws");
            })
        });
    }
    group.finish();
    // What a new `stats` message costs the grouping once: computed afresh
    // (two windows in turn, so the kept result never answers).
    let mut group = c.benchmark_group("grouping");
    let filter = FilterExpr::default();
    // Outside the bench's closure, which criterion calls once per sample:
    // restarting the cycle would let a sample's first call hit.
    let mut windows = [Window::TenSeconds, Window::OneMinute].into_iter().cycle();
    for by in [
        GroupBy::Route,
        GroupBy::Sidecar,
        GroupBy::Caller,
        GroupBy::Status,
    ] {
        group.bench_function(format!("by {}, 200 upstreams, computed", by.label()), |b| {
            b.iter(|| {
                let window = windows.next().unwrap_or_default();
                black_box(model.grouped(by, window, &filter));
            })
        });
    }
    // The Edges view's rows, computed afresh in the same way.
    group.bench_function("edges, 200 upstreams, computed", |b| {
        b.iter(|| {
            let window = windows.next().unwrap_or_default();
            black_box(model.edges(window, &filter));
        })
    });
    group.finish();
}

fn replay(c: &mut Criterion) {
    const N: u64 = 50_000;
    let path =
        std::env::temp_dir().join(format!("meshtop-bench-{}.ndjson.zst", std::process::id()));
    let sources = vec![meshtop::recording::SourceInfo {
        target: "ws://127.0.0.1:15090/events".into(),
        name: None,
    }];
    let mut writer =
        meshtop::recording::RecordingWriter::create(&path, sources).expect("recording");
    for i in 0..N {
        let message = if i % 100 == 99 {
            // A stats message now and then, as in a real session.
            model_stats(i / 100)
        } else {
            request(i)
        };
        let raw = serde_json::to_string(&message).expect("encodes");
        writer
            .write(Duration::from_micros(i * 100), 0, &raw)
            .expect("writes");
    }
    writer.finish().expect("finishes");
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(N));
    group.sample_size(10);
    group.bench_function("load and ingest a recording (speed max)", |b| {
        b.iter(|| {
            let (_, entries, _) = meshtop::recording::load(&path).expect("loads");
            let mut model = Model::new(["ws://127.0.0.1:15090/events".to_string()]);
            for entry in entries {
                model.ingest(&entry.into_feed_item());
            }
            black_box(model);
        })
    });
    group.finish();
    let _ = std::fs::remove_file(&path);
}

fn model_stats(sec: u64) -> Message {
    let mut latency = new_latency_histogram();
    for d in 0..100u64 {
        latency.record(800 + d * 31).expect("in range");
    }
    let mut status = StatusClasses::default();
    status.add(200, 100);
    Message::Stats(Stats {
        ts: timestamp(UNIX_EPOCH + Duration::from_secs(T0 + sec)),
        sidecar: "web".into(),
        interval_ms: 1000,
        backfill: false,
        upstreams: vec![UpstreamStats {
            direction: Direction::Outbound,
            authority: "svc-1.emojivoto:8080".into(),
            counts: Counts {
                requests: 100,
                failures: 0,
                status,
                grpc_status: Default::default(),
                errors: Default::default(),
                req_bytes: 500,
                resp_bytes: 1200,
                latency: encode_histogram(&latency),
            },
            routes: Vec::new(),
            clients: Vec::new(),
        }],
    })
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = ingest, render, replay
}
criterion_main!(benches);
