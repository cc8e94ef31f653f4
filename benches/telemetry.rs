//! Telemetry throughput (issue targets in brackets):
//!
//! 1. events per second one sidecar delivers to one WebSocket subscriber on
//!    loopback with zero drops [≥ 100,000/s];
//! 2. requests per second through the proxy with 0 and with 1 subscriber
//!    reading every event [with ≥ 95% of without].
//!
//! `cargo bench --bench telemetry`. Runs alternate so machine drift hits both
//! cases alike; compare the ratio, not the absolute numbers, on a shared
//! 2-core machine (where load generator, backend, proxy and subscriber all
//! compete for the same cores: run it on an otherwise idle machine).
//! `MESHTOP_BENCH_FILTERED=1` instead compares no subscriber, a subscriber
//! whose filter matches nothing (the cost of encoding alone) and a reading
//! subscriber.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use meshtop::proxy::{Dest, ListenerConfig, Proxy, ProxyConfig};
use meshtop::telemetry::admin::{self, AdminState, SidecarInfo, TelemetryAccess};
use meshtop::telemetry::{
    Direction, HttpProtocol, Record, Recorder, RequestRecord, Telemetry, TelemetryConfig,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn record(i: u64) -> Record {
    Record::Request(RequestRecord {
        start: SystemTime::now(),
        sidecar: Arc::from("bench"),
        direction: Direction::Outbound,
        protocol: HttpProtocol::Grpc,
        client: "10.1.0.7:52144".parse().expect("literal"),
        server: Some("10.1.0.9:8080".parse().expect("literal")),
        authority: format!("svc-{}.bench:8080", i % 8).into(),
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
    })
}

/// Events/s to one subscriber with zero drops: records are offered as fast
/// as the subscriber keeps up (never more than half its queue ahead).
async fn events_to_one_subscriber(total: u64) -> (f64, u64) {
    let (recorder, records) = Recorder::channel(16 * 1024);
    let telemetry = Telemetry::new("bench", TelemetryConfig::default());
    let access = TelemetryAccess {
        hub: telemetry.hub.clone(),
        metrics: telemetry.metrics.clone(),
        token: None,
        handshake_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(30),
    };
    let info = SidecarInfo {
        name: "bench".into(),
        namespace: None,
        version: "bench".into(),
        started_at: SystemTime::now(),
        addresses: Vec::new(),
    };
    let state = Arc::new(AdminState::new(info, Vec::new(), Some(access)));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(admin::serve(
        listener,
        admin::Scope::Full,
        state,
        shutdown.clone(),
    ));
    tokio::spawn(Telemetry::run(
        telemetry.hub.clone(),
        telemetry.metrics.clone(),
        telemetry.config.clone(),
        records,
        recorder.clone(),
        shutdown.clone(),
    ));

    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/events"))
        .await
        .expect("subscribe");
    let received = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let reader = {
        let (received, dropped) = (received.clone(), dropped.clone());
        tokio::spawn(async move {
            let (_, mut stream) = ws.split();
            while let Some(Ok(frame)) = stream.next().await {
                let text = frame.into_data();
                if text.starts_with(b"{\"type\":\"request\"") {
                    if received.fetch_add(1, Ordering::Relaxed) + 1 == total {
                        return;
                    }
                } else if text.starts_with(b"{\"type\":\"dropped\"") {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    while !telemetry.hub.has_subscribers() {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        // Stay within half the subscriber's queue of what it has read.
        while sent - received.load(Ordering::Relaxed) > 2048 {
            tokio::task::yield_now().await;
        }
        for _ in 0..256.min(total - sent) {
            recorder.record(record(sent));
            sent += 1;
        }
        tokio::task::yield_now().await;
    }
    reader.await.expect("reader");
    let elapsed = started.elapsed();
    shutdown.cancel();
    let drops = dropped.load(Ordering::Relaxed) + recorder.dropped();
    (total as f64 / elapsed.as_secs_f64(), drops)
}

async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"hello"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Requests/s through a fresh sidecar for `duration`, with `subscribers`
/// reading every event.
async fn requests_per_second(backend: SocketAddr, subscribers: usize, duration: Duration) -> f64 {
    requests_per_second_with(backend, subscribers, "", duration).await
}

async fn requests_per_second_with(
    backend: SocketAddr,
    subscribers: usize,
    query: &str,
    duration: Duration,
) -> f64 {
    let mut config = ProxyConfig::new(
        "bench",
        vec![ListenerConfig {
            direction: Direction::Inbound,
            addr: "127.0.0.1:0".parse().expect("literal"),
            target: Some(Dest::Addr(backend)),
        }],
    );
    config.admin = "127.0.0.1:0".parse().expect("literal");
    let proxy = Proxy::bind(config).await.expect("bind");
    let addr = proxy.listeners()[0].addr;
    let admin_addr = proxy.admin_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(proxy.run(shutdown.clone()));
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{admin_addr}/events{query}"))
            .await
            .expect("subscribe");
        readers.push(tokio::spawn(async move {
            let (_, mut stream) = ws.split();
            while stream.next().await.is_some() {}
        }));
    }
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let mut clients = Vec::new();
    for _ in 0..16 {
        let done = done.clone();
        clients.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let _ = stream.set_nodelay(true);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            while Instant::now() < deadline {
                if sender.ready().await.is_err() {
                    return;
                }
                let req = hyper::Request::get("/bench")
                    .header("host", "bench.example")
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let Ok(resp) = sender.send_request(req).await else {
                    return;
                };
                if resp.into_body().collect().await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let started = Instant::now();
    for client in clients {
        let _ = client.await;
    }
    let rps = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = task.await;
    for reader in readers {
        reader.abort();
    }
    rps
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if std::env::var_os("MESHTOP_BENCH_FILTERED").is_some() {
            let backend = backend().await;
            for _ in 0..3 {
                let a = requests_per_second(backend, 0, Duration::from_secs(3)).await;
                let f = requests_per_second_with(backend, 1, "?authority=nomatch", Duration::from_secs(3)).await;
                let b = requests_per_second(backend, 1, Duration::from_secs(3)).await;
                println!("without {a:.0}, filtered-out subscriber {f:.0} ({:.3}), reading subscriber {b:.0} ({:.3})", f / a, b / a);
            }
            return;
        }
        let mut rates = Vec::new();
        for _ in 0..3 {
            let (rate, drops) = events_to_one_subscriber(300_000).await;
            println!("events to one subscriber: {rate:>10.0} events/s, drops {drops}");
            rates.push(rate);
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "events to one subscriber (median of 3): {:.0} events/s [target >= 100000]",
            rates[1]
        );

        let backend = backend().await;
        let (mut without, mut with) = (Vec::new(), Vec::new());
        let mut ratios = Vec::new();
        for round in 0..6 {
            // Alternate which case goes first, so drift hits both alike.
            let (a, b) = if round % 2 == 0 {
                let a = requests_per_second(backend, 0, Duration::from_secs(3)).await;
                (
                    a,
                    requests_per_second(backend, 1, Duration::from_secs(3)).await,
                )
            } else {
                let b = requests_per_second(backend, 1, Duration::from_secs(3)).await;
                (
                    requests_per_second(backend, 0, Duration::from_secs(3)).await,
                    b,
                )
            };
            println!(
                "round {round}: {a:>8.0} req/s without, {b:>8.0} with a subscriber ({:.3})",
                b / a
            );
            without.push(a);
            with.push(b);
            ratios.push(b / a);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (without, with) = (median(&mut without), median(&mut with));
        println!("requests/s through the proxy, no subscriber:  {without:>10.0}");
        println!("requests/s through the proxy, one subscriber: {with:>10.0}");
        println!("ratio of the medians: {:.3}", with / without);
        println!("median of the per-round ratios: {:.3} [target >= 0.95]", median(&mut ratios));
    });
}
