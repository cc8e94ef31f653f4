//! Micro-benchmarks of the sidecar's hot paths (targets from the issues in
//! brackets where they set one):
//!
//! - protocol detection of a connection's first bytes;
//! - reading an HTTP/1.1 request head and response head as the relay does
//!   (per request, on the proxy's core);
//! - building and encoding one `request` event [one encode per request,
//!   shared by every subscriber; 100,000 events/s to one subscriber
//!   end to end, see `benches/telemetry.rs`];
//! - folding records into the per-second aggregates;
//! - merging `stats` histograms as the TUI does [exact percentiles across
//!   sidecars].
//!
//! `cargo bench --bench hot_paths`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meshtop::proxy::detect::{H2_PREFACE, detect};
use meshtop::proxy::relay::parse;
use meshtop::schema::{RequestEncoder, RequestMessageRef};
use meshtop::telemetry::stats::{
    Aggregator, add_encoded_histogram, decode_histogram, encode_histogram, new_latency_histogram,
};
use meshtop::telemetry::{Direction, HttpProtocol, RequestRecord};

fn record(i: u64) -> RequestRecord {
    RequestRecord {
        start: SystemTime::now(),
        sidecar: Arc::from("web"),
        direction: Direction::Outbound,
        protocol: HttpProtocol::Grpc,
        client: "10.1.0.7:52144".parse().expect("literal"),
        server: Some("10.1.0.9:8080".parse().expect("literal")),
        authority: format!("svc-{}.emojivoto:8080", i % 8).into(),
        method: Some(http::Method::POST),
        path: Some("/emojivoto.v1.VotingService/VoteJoy".into()),
        status: Some(200),
        grpc_status: Some(0),
        grpc_message: None,
        error: None,
        duration: Duration::from_micros(800 + i % 1000),
        ttfb: Some(Duration::from_micros(700)),
        req_bytes: 5,
        resp_bytes: 12,
        headers: Vec::new(),
    }
}

fn detection(c: &mut Criterion) {
    let http1 = b"GET /api/list HTTP/1.1\r\nHost: web-svc.emojivoto:80\r\n\r\n";
    let mut group = c.benchmark_group("detect");
    group.bench_function("http/1.1 request line", |b| {
        b.iter(|| detect(black_box(http1)))
    });
    group.bench_function("h2 preface", |b| b.iter(|| detect(black_box(H2_PREFACE))));
    group.bench_function("opaque bytes", |b| {
        b.iter(|| detect(black_box(b"\x00\x01\x02binary")))
    });
    group.finish();
}

fn relay_heads(c: &mut Criterion) {
    let request = b"GET /api/vote?choice=%3Adoughnut%3A HTTP/1.1\r\nHost: web-svc.emojivoto:80\r\n\
        User-Agent: Go-http-client/1.1\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\n\r\n";
    let response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
        Date: Mon, 30 Nov 2026 11:00:00 GMT\r\nContent-Length: 2\r\n\r\nok";
    let mut group = c.benchmark_group("relay");
    group.bench_function("read a request head", |b| {
        b.iter(|| parse::request(black_box(request), &[]))
    });
    // What Python's requests sends: the relay writes the head anew
    // without `Connection`.
    let keep_alive = b"GET /api/list HTTP/1.1\r\nHost: web-svc.emojivoto:80\r\n\
        User-Agent: python-requests/2.32.3\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\n\
        Connection: keep-alive\r\n\r\n";
    group.bench_function("read a request head with Connection: keep-alive", |b| {
        b.iter(|| parse::request(black_box(keep_alive), &[]))
    });
    group.bench_function("read a response head", |b| {
        b.iter(|| parse::response(black_box(response), false))
    });
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let record = record(1);
    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode one request event", |b| {
        b.iter(|| {
            let mut out = String::with_capacity(512);
            RequestMessageRef(black_box(&record)).encode(&mut out);
            out
        })
    });
    // As the sidecar encodes: one encoder for every event, whose caches of
    // the second and of addresses are hit.
    let mut encoder = RequestEncoder::default();
    group.bench_function("encode one request event, encoder kept", |b| {
        b.iter(|| {
            let mut out = String::with_capacity(512);
            encoder.encode(black_box(&record), &mut out);
            out
        })
    });
    group.finish();
}

fn aggregation(c: &mut Criterion) {
    const N: u64 = 10_000;
    let records: Vec<RequestRecord> = (0..N).map(record).collect();
    let mut group = c.benchmark_group("stats");
    group.throughput(Throughput::Elements(N));
    group.bench_function("fold records into aggregates", |b| {
        b.iter(|| {
            let mut aggregator = Aggregator::default();
            for r in &records {
                aggregator.add(r, &r.authority);
            }
            aggregator.take(SystemTime::now(), Duration::from_secs(1))
        })
    });
    group.finish();

    let encoded: Vec<String> = (0..50u64)
        .map(|s| {
            let mut h = new_latency_histogram();
            for d in 0..100u64 {
                h.record(500 + d * 37 + s * 11).expect("in range");
            }
            encode_histogram(&h)
        })
        .collect();
    let mut group = c.benchmark_group("histograms");
    group.throughput(Throughput::Elements(encoded.len() as u64));
    group.bench_function("decode and merge 50 stats histograms", |b| {
        b.iter(|| {
            let mut merged = new_latency_histogram();
            for e in &encoded {
                if let Ok(h) = decode_histogram(black_box(e)) {
                    merged.add(&h).expect("merges");
                }
            }
            merged.value_at_quantile(0.99)
        })
    });
    // The same, each histogram's counts added where they are encoded.
    group.bench_function("merge 50 stats histograms, counts added", |b| {
        b.iter(|| {
            let mut merged = new_latency_histogram();
            for e in &encoded {
                let _ = add_encoded_histogram(black_box(e), &mut merged);
            }
            merged.value_at_quantile(0.99)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = detection, relay_heads, encoding, aggregation
}
criterion_main!(benches);
