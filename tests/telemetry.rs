//! The telemetry API against a real sidecar carrying real traffic: the
//! `/events` WebSocket, `stats`, filters, auth, redaction and `/metrics`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use meshtop::proxy::{Dest, ListenerConfig};
use meshtop::schema::{Message, RequestEvent};
use meshtop::telemetry::Direction;
use meshtop::telemetry::stats::decode_histogram;
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUEST_FIELDS: [&str; 19] = [
    "type",
    "ts",
    "sidecar",
    "direction",
    "protocol",
    "client",
    "server",
    "authority",
    "method",
    "path",
    "status",
    "grpc_status",
    "grpc_message",
    "error",
    "duration_ms",
    "ttfb_ms",
    "req_bytes",
    "resp_bytes",
    "sidecar",
];

fn assert_fields(json: &Value, fields: &[&str]) {
    let object = json.as_object().expect("an object");
    for field in fields {
        assert!(object.contains_key(*field), "missing {field} in {json}");
    }
}

fn assert_timestamp(value: &Value) {
    let ts = value.as_str().expect("a string");
    humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("{ts} is not RFC 3339: {e}"));
    // Microsecond precision: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    assert_eq!(ts.len(), 27, "{ts}");
    assert!(ts.ends_with('Z'));
}

fn telemetry_config(listeners: Vec<ListenerConfig>) -> meshtop::proxy::ProxyConfig {
    let mut config = config(listeners);
    config.telemetry.stats_interval = Duration::from_millis(200);
    config
}

fn inbound(target: std::net::SocketAddr) -> Vec<ListenerConfig> {
    vec![ListenerConfig {
        direction: Direction::Inbound,
        addr: local0(),
        target: Some(Dest::Addr(target)),
    }]
}

#[tokio::test]
async fn hello_comes_first_and_describes_the_sidecar() {
    let backend = backend().await;
    let sidecar = Sidecar::start(telemetry_config(inbound(backend.addr))).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    let hello = events.next_json().await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["schema"], 1);
    assert_eq!(hello["sidecar"]["name"], "test-sidecar");
    assert_eq!(hello["sidecar"]["namespace"], "testns");
    assert_eq!(hello["sidecar"]["version"], env!("CARGO_PKG_VERSION"));
    assert_timestamp(&hello["sidecar"]["started_at"]);
    assert_eq!(hello["listeners"][0]["direction"], "inbound");
    assert_eq!(hello["listeners"][0]["addr"], sidecar.addr().to_string());
    assert_eq!(hello["listeners"][0]["target"], backend.addr.to_string());
    // The sidecar's clock now, for a reader to compare with its own.
    assert_timestamp(&hello["ts"]);

    // `GET /` describes the sidecar the same way, as of its own moment.
    let (status, body) = admin_get(sidecar.admin, "/").await;
    assert_eq!(status, 200);
    let mut root: Value = serde_json::from_str(&body).expect("json");
    assert_timestamp(&root["ts"]);
    root["ts"] = hello["ts"].clone();
    assert_eq!(root, hello);
    sidecar.stop().await;
}

#[tokio::test]
async fn http1_request_events_carry_every_field() {
    let backend = backend().await;
    let sidecar = Sidecar::start(telemetry_config(inbound(backend.addr))).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    events.next_of("hello").await;
    let mut client = http1_conn(sidecar.addr()).await;
    let req = http::Request::post("/echo?q=1")
        .header("host", "web-svc.emojivoto:80")
        .body(full("hello"))
        .expect("request");
    let resp = client.send_request(req).await.expect("response");
    body_bytes(resp).await;

    let json = events.next_of("request").await;
    assert_fields(&json, &REQUEST_FIELDS);
    assert_timestamp(&json["ts"]);
    assert_eq!(json["sidecar"], "test-sidecar");
    assert_eq!(json["direction"], "inbound");
    assert_eq!(json["protocol"], "http/1.1");
    assert!(
        json["client"]
            .as_str()
            .expect("client")
            .starts_with("127.0.0.1:")
    );
    assert_eq!(json["server"], backend.addr.to_string());
    assert_eq!(json["authority"], "web-svc.emojivoto:80");
    assert_eq!(json["method"], "POST");
    assert_eq!(json["path"], "/echo?q=1");
    assert_eq!(json["status"], 200);
    assert_eq!(json["grpc_status"], Value::Null);
    assert_eq!(json["grpc_message"], Value::Null);
    assert_eq!(json["error"], Value::Null);
    assert!(json["duration_ms"].as_f64().expect("float") > 0.0);
    assert!(
        json["ttfb_ms"].as_f64().expect("float") <= json["duration_ms"].as_f64().expect("float")
    );
    assert_eq!(json["req_bytes"], 5);
    assert_eq!(json["resp_bytes"], 5);
    assert!(json.get("headers").is_none());
    sidecar.stop().await;
}

#[tokio::test]
async fn h2_grpc_and_failing_grpc_requests_are_events() {
    let backend = backend().await;
    let grpc = grpc_backend().await;
    let listeners = vec![
        ListenerConfig {
            direction: Direction::Inbound,
            addr: local0(),
            target: Some(Dest::Addr(backend.addr)),
        },
        ListenerConfig {
            direction: Direction::Outbound,
            addr: local0(),
            target: Some(Dest::Addr(grpc)),
        },
    ];
    let sidecar = Sidecar::start(telemetry_config(listeners)).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    events.next_of("hello").await;

    let mut h2 = http2_conn(sidecar.listeners[0].addr).await;
    let req = http::Request::get(format!("http://{}/status/201", "api.example:8080"))
        .body(empty())
        .expect("request");
    let resp = h2.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 201);
    let json = events.next_of("request").await;
    assert_eq!(json["protocol"], "h2");
    assert_eq!(json["authority"], "api.example:8080");
    assert_eq!(json["status"], 201);
    assert_eq!(json["path"], "/status/201");

    let mut client = grpc_client(sidecar.listeners[1].addr).await;
    let ok = client
        .unary(echo::EchoRequest {
            message: "hi".into(),
            fail_with: 0,
            count: 0,
        })
        .await
        .expect("unary succeeds");
    assert_eq!(ok.into_inner().message, "hi");
    let json = events.next_of("request").await;
    assert_eq!(json["protocol"], "grpc");
    assert_eq!(json["direction"], "outbound");
    assert_eq!(json["path"], "/meshtop.test.v1.Echo/Unary");
    assert_eq!(json["status"], 200);
    assert_eq!(json["grpc_status"], 0);
    assert_eq!(json["error"], Value::Null);

    let failed = client
        .unary(echo::EchoRequest {
            message: "doughnut".into(),
            fail_with: 2,
            count: 0,
        })
        .await
        .expect_err("asked to fail");
    assert_eq!(failed.code(), tonic::Code::Unknown);
    let json = events.next_of("request").await;
    assert_eq!(json["grpc_status"], 2);
    assert_eq!(json["grpc_message"], "failed as asked: doughnut");
    let event: RequestEvent = serde_json::from_value(json).expect("a request event");
    assert!(event.is_failure());
    sidecar.stop().await;
}

#[tokio::test]
async fn refused_upstreams_and_opaque_connections_are_events() {
    let closed = closed_port();
    let sidecar = Sidecar::start(telemetry_config(inbound(closed))).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    events.next_of("hello").await;

    let mut client = http1_conn(sidecar.addr()).await;
    let resp = client
        .send_request(get("/", "down.example"))
        .await
        .expect("response");
    assert_eq!(resp.status(), 502);
    let json = events.next_of("request").await;
    assert_eq!(json["error"], "connect_refused");
    assert_eq!(json["status"], Value::Null);
    assert_eq!(json["server"], closed.to_string());

    let mut raw = TcpStream::connect(sidecar.addr()).await.expect("connect");
    raw.write_all(b"\x00\x01opaque").await.expect("write");
    let mut sink = Vec::new();
    let _ = within("the close", raw.read_to_end(&mut sink)).await;
    let json = events.next_of("tcp").await;
    assert_fields(
        &json,
        &[
            "type",
            "ts",
            "sidecar",
            "direction",
            "protocol",
            "client",
            "server",
            "sni",
            "bytes_in",
            "bytes_out",
            "duration_ms",
            "error",
        ],
    );
    assert_timestamp(&json["ts"]);
    assert_eq!(json["protocol"], "tcp");
    assert_eq!(json["error"], "connect_refused");
    assert_eq!(json["sni"], Value::Null);
    assert_eq!(json["bytes_in"], 0);
    sidecar.stop().await;
}

#[tokio::test]
async fn opaque_tcp_events_count_bytes_each_way() {
    let backend = backend().await;
    let sidecar = Sidecar::start(telemetry_config(inbound(backend.addr))).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    events.next_of("hello").await;
    // Not HTTP: forwarded opaquely to the backend, which closes on garbage.
    let mut raw = TcpStream::connect(sidecar.addr()).await.expect("connect");
    raw.write_all(b"\x00\x01\x02\x03").await.expect("write");
    raw.shutdown().await.expect("half-close");
    let mut sink = Vec::new();
    let _ = within("the close", raw.read_to_end(&mut sink)).await;
    let json = events.next_of("tcp").await;
    assert_eq!(json["bytes_in"], 4);
    assert_eq!(json["bytes_out"], sink.len());
    assert_eq!(json["server"], backend.addr.to_string());
    assert!(json["duration_ms"].as_f64().expect("float") >= 0.0);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_exact_and_their_histograms_decode() {
    let backend = backend().await;
    let sidecar = Sidecar::start(telemetry_config(inbound(backend.addr))).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    events.next_of("hello").await;
    const N: u64 = 300;
    let mut client = http1_conn(sidecar.addr()).await;
    for i in 0..N {
        client.ready().await.expect("keep-alive");
        let path = if i % 10 == 0 { "/status/503" } else { "/echo" };
        let resp = client
            .send_request(get(path, "stats.example"))
            .await
            .expect("response");
        body_bytes(resp).await;
    }
    let (mut requests, mut failures, mut c5xx, mut c2xx) = (0, 0, 0, 0);
    let mut merged = meshtop::telemetry::stats::new_latency_histogram();
    within("stats covering every request", async {
        while requests < N {
            let Message::Stats(stats) = events.next().await else {
                continue;
            };
            assert_eq!(stats.sidecar, "test-sidecar");
            assert!(stats.interval_ms > 0);
            for upstream in stats.upstreams {
                assert_eq!(upstream.authority, "stats.example");
                assert_eq!(upstream.direction, Direction::Inbound);
                let latency =
                    decode_histogram(&upstream.counts.latency).expect("the histogram decodes");
                assert_eq!(
                    latency.len(),
                    upstream.counts.requests,
                    "one sample per request"
                );
                merged.add(&latency).expect("histograms merge");
                requests += upstream.counts.requests;
                failures += upstream.counts.failures;
                c5xx += upstream.counts.status.c5xx;
                c2xx += upstream.counts.status.c2xx;
            }
        }
    })
    .await;
    assert_eq!(requests, N);
    assert_eq!(failures, N / 10);
    assert_eq!(c5xx, N / 10);
    assert_eq!(c2xx, N - N / 10);
    assert_eq!(merged.len(), N);
    sidecar.stop().await;
}

/// `stats` count each route and each client of an upstream as they count
/// the upstream, and `hello` names the pod's addresses.
#[tokio::test]
async fn stats_break_upstreams_down_by_route_and_client() {
    let backend = backend().await;
    let mut config = telemetry_config(inbound(backend.addr));
    config.pod_ips = vec!["10.1.2.3".parse().expect("literal")];
    let sidecar = Sidecar::start(config).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    let Message::Hello(hello) = events.next().await else {
        panic!("hello first");
    };
    assert_eq!(hello.addresses, ["10.1.2.3"]);
    let mut client = http1_conn(sidecar.addr()).await;
    let paths = [
        "/echo",
        "/status/503",
        "/status/500?q=1",
        "/echo",
        "/bytes/7",
    ];
    const N: u64 = 100;
    for i in 0..N {
        client.ready().await.expect("keep-alive");
        let path = paths[i as usize % paths.len()];
        let resp = client
            .send_request(get(path, "routes.example"))
            .await
            .expect("response");
        body_bytes(resp).await;
    }
    let mut routes: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut clients: std::collections::BTreeMap<String, u64> = Default::default();
    let mut requests = 0;
    within("stats covering every request", async {
        while requests < N {
            let Message::Stats(stats) = events.next().await else {
                continue;
            };
            for upstream in stats.upstreams {
                requests += upstream.counts.requests;
                for route in upstream.routes {
                    let latency = decode_histogram(&route.counts.latency).expect("decodes");
                    assert_eq!(latency.len(), route.counts.requests);
                    let entry = routes.entry(route.route).or_default();
                    entry.0 += route.counts.requests;
                    entry.1 += route.counts.failures;
                }
                for client in upstream.clients {
                    *clients.entry(client.client).or_default() += client.counts.requests;
                }
            }
        }
    })
    .await;
    let expected: std::collections::BTreeMap<String, (u64, u64)> = [
        ("GET /bytes/{id}".to_owned(), (20, 0)),
        ("GET /echo".to_owned(), (40, 0)),
        ("GET /status/{id}".to_owned(), (40, 40)),
    ]
    .into();
    assert_eq!(routes, expected);
    assert_eq!(clients, [("127.0.0.1".to_owned(), N)].into());
    sidecar.stop().await;
}

/// Past `--max-routes`, routes are counted as `other`: nothing is lost.
#[tokio::test]
async fn routes_past_the_bound_are_counted_as_other() {
    let backend = backend().await;
    let mut config = telemetry_config(inbound(backend.addr));
    config.telemetry.breakdown.routes = 1;
    let sidecar = Sidecar::start(config).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    let mut client = http1_conn(sidecar.addr()).await;
    const N: u64 = 30;
    for i in 0..N {
        client.ready().await.expect("keep-alive");
        let resp = client
            .send_request(get(
                &format!("/route-{}", ["a", "b", "c"][i as usize % 3]),
                "routes.example",
            ))
            .await
            .expect("response");
        body_bytes(resp).await;
    }
    let (mut requests, mut in_routes) = (0, 0);
    within("stats covering every request", async {
        while requests < N {
            let Message::Stats(stats) = events.next().await else {
                continue;
            };
            for upstream in stats.upstreams {
                requests += upstream.counts.requests;
                assert!(upstream.routes.len() <= 2, "one route and other");
                assert!(upstream.routes.iter().skip(1).all(|r| r.route == "other"));
                in_routes += upstream
                    .routes
                    .iter()
                    .map(|r| r.counts.requests)
                    .sum::<u64>();
            }
        }
    })
    .await;
    assert_eq!(in_routes, N);
    sidecar.stop().await;
}

/// A WebSocket subscriber whose socket is connected but never read.
async fn stalled_subscriber(admin: std::net::SocketAddr) -> WsStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let stream = socket.connect(admin).await.expect("connect");
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{admin}/events"), stream)
        .await
        .expect("handshake");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_does_not_slow_traffic_and_learns_what_it_missed() {
    const CLIENTS: u64 = 8;
    const PER_CLIENT: u64 = 2500;
    const TOTAL: u64 = CLIENTS * PER_CLIENT;
    let backend = backend().await;
    let sidecar = Sidecar::start(telemetry_config(inbound(backend.addr))).await;
    let mut stalled = stalled_subscriber(sidecar.admin).await;
    let mut live = Events::connect(sidecar.admin, "").await;
    live.next_of("hello").await;

    // The live subscriber reads concurrently and counts what it gets.
    let live_reader = tokio::spawn(async move {
        let (mut received, mut missed) = (0u64, 0u64);
        while received + missed < TOTAL {
            match live.next().await {
                Message::Request(_) => received += 1,
                Message::Dropped(d) => missed = d.total,
                _ => {}
            }
        }
        (received, missed)
    });

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let addr = sidecar.addr();
        clients.push(tokio::spawn(async move {
            let mut client = http1_conn(addr).await;
            for i in 0..PER_CLIENT {
                client.ready().await.expect("keep-alive");
                let resp = client
                    .send_request(get(&format!("/echo?c={c}&i={i}"), "busy.example"))
                    .await
                    .expect("every request gets a response");
                assert_eq!(resp.status(), 200);
                body_bytes(resp).await;
            }
        }));
    }
    for client in clients {
        within("the clients", client)
            .await
            .expect("every request succeeded");
    }

    let (received, missed) = within("the live subscriber", live_reader)
        .await
        .expect("reader");
    assert!(received > 0);
    assert_eq!(
        received + missed,
        TOTAL,
        "the live subscriber accounts for every request"
    );

    // Now the stalled subscriber reads: what it got plus what it was told it
    // missed is exactly every request, and its stats (coalesced while it was
    // stalled, never dropped) count every request too.
    let (mut received, mut missed, mut counted) = (0u64, 0u64, 0u64);
    within("the stalled subscriber to catch up", async {
        while received + missed < TOTAL || counted < TOTAL {
            let frame = stalled.next().await.expect("open").expect("frame");
            let tokio_tungstenite::tungstenite::Message::Text(text) = frame else {
                continue;
            };
            match serde_json::from_str::<Message>(&text).expect("schema") {
                Message::Request(_) => received += 1,
                Message::Dropped(d) => missed = d.total,
                Message::Stats(s) => {
                    counted += s.upstreams.iter().map(|u| u.counts.requests).sum::<u64>()
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(
        missed > 0,
        "a stalled subscriber must have missed events (received {received})"
    );
    assert_eq!(received + missed, TOTAL);
    assert_eq!(
        counted, TOTAL,
        "stats are exact even for a stalled subscriber"
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn the_sidecar_filters_with_the_ui_filter_language() {
    // Issue #16: one language, parsed and evaluated by one module in the
    // sidecar and the UI. Every filtered subscriber gets exactly the events
    // the UI's evaluation of the same expression keeps of all of them.
    use meshtop::filter::FilterExpr;
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let backend = backend().await;
    let sidecar = Sidecar::start(telemetry_config(inbound(backend.addr))).await;
    let expressions = [
        "status>=500",
        "authority=SHOP.example !method=GET",
        "route=\"DELETE /status/{id}\"",
        "route~{id} path~503",
        "client=127.0.0.1 direction=inbound",
        "failed latency<60s",
        "error~reset",
        "!status=200 sidecar~test grpc!=0",
    ];
    let mut all = Events::connect(sidecar.admin, "").await;
    let mut filtered = Vec::new();
    for expr in expressions {
        let query = format!("?filter={}", utf8_percent_encode(expr, NON_ALPHANUMERIC));
        filtered.push((expr, Events::connect(sidecar.admin, &query).await));
    }
    let mut client = http1_conn(sidecar.addr()).await;
    for (method, path, host) in [
        ("GET", "/status/200", "shop.example"),
        ("POST", "/status/500", "cart.example"),
        ("DELETE", "/status/503", "shop.example"),
    ] {
        client.ready().await.expect("keep-alive");
        let mut request = get(path, host);
        *request.method_mut() = method.parse().expect("a method");
        let resp = client.send_request(request).await.expect("response");
        body_bytes(resp).await;
    }
    let mut events = Vec::new();
    while events.len() < 3 {
        if let Message::Request(event) = all.next().await {
            events.push(event);
        }
    }
    let mut partial = 0;
    for (expr, subscriber) in &mut filtered {
        let filter: FilterExpr = expr.parse().expect("valid");
        let expected: Vec<String> = events
            .iter()
            .filter(|e| filter.matches_request(&e.sidecar, e))
            .filter_map(|e| e.path.clone())
            .collect();
        // Stats counting all three come after the events they count.
        let (mut got, mut counted) = (Vec::new(), 0);
        while counted < 3 {
            match subscriber.next().await {
                Message::Request(r) => got.push(r.path.unwrap_or_default()),
                Message::Stats(s) => {
                    counted += s.upstreams.iter().map(|u| u.counts.requests).sum::<u64>()
                }
                _ => {}
            }
        }
        assert_eq!(got, expected, "{expr}");
        partial += usize::from((1..3).contains(&expected.len()));
    }
    // Most expressions keep some and drop some: the test is not vacuous.
    assert!(partial >= 5, "{partial}");

    // A bad term is a 400 that names it, from the expression or from an
    // older parameter.
    for (query, term) in [
        ("filter=status%3E%3D5xx", "status>=5xx"),
        ("filter=colour%3Dred", "colour=red"),
        ("min_ms=fast", "min_ms=fast"),
    ] {
        let (status, body) = admin_get(sidecar.admin, &format!("/events?{query}")).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(term), "{body}");
    }
    sidecar.stop().await;
}

#[tokio::test]
async fn filters_select_events_but_never_stats() {
    let backend = backend().await;
    let sidecar = Sidecar::start(telemetry_config(inbound(backend.addr))).await;
    let mut failures = Events::connect(sidecar.admin, "?failures=1&authority=shop").await;
    let mut slow = Events::connect(sidecar.admin, "?min_ms=60000").await;
    let mut outbound = Events::connect(sidecar.admin, "?direction=outbound").await;
    let mut client = http1_conn(sidecar.addr()).await;
    for (path, host) in [
        ("/status/200", "shop.example"),
        ("/status/500", "cart.example"),
        ("/status/503", "shop.example"),
    ] {
        client.ready().await.expect("keep-alive");
        let resp = client
            .send_request(get(path, host))
            .await
            .expect("response");
        body_bytes(resp).await;
    }
    let json = failures.next_of("request").await;
    assert_eq!(
        (json["authority"].as_str(), json["status"].as_u64()),
        (Some("shop.example"), Some(503))
    );
    // The other subscribers see no request, but they still get stats that
    // count all three.
    for events in [&mut slow, &mut outbound] {
        let mut counted = 0;
        while counted < 3 {
            match events.next().await {
                Message::Request(r) => panic!("filtered subscriber got {r:?}"),
                Message::Stats(s) => {
                    counted += s.upstreams.iter().map(|u| u.counts.requests).sum::<u64>()
                }
                _ => {}
            }
        }
    }
    // An invalid filter is explained.
    let (status, body) = admin_get(sidecar.admin, "/events?direction=up").await;
    assert_eq!(status, 400, "{body}");
    sidecar.stop().await;
}

#[tokio::test]
async fn non_websocket_requests_and_unknown_paths_are_refused() {
    let backend = backend().await;
    let sidecar = Sidecar::start(telemetry_config(inbound(backend.addr))).await;
    let (status, body) = admin_get(sidecar.admin, "/events").await;
    assert_eq!(status, 400);
    assert!(body.contains("WebSocket"), "{body}");
    assert_eq!(admin_get(sidecar.admin, "/nothing").await.0, 404);
    sidecar.stop().await;
}

#[tokio::test]
async fn subscribers_past_the_limit_get_503() {
    let backend = backend().await;
    let mut config = telemetry_config(inbound(backend.addr));
    config.telemetry.hub.subscribers = 1;
    let sidecar = Sidecar::start(config).await;
    let mut first = Events::connect(sidecar.admin, "").await;
    first.next_of("hello").await;
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/events", sidecar.admin)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("expected 503, got {other:?}"),
    }
    // Leaving frees the slot.
    first.ws.close(None).await.expect("close");
    drop(first);
    within("the slot to be freed", async {
        loop {
            if tokio_tungstenite::connect_async(format!("ws://{}/events", sidecar.admin))
                .await
                .is_ok()
            {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    sidecar.stop().await;
}

#[tokio::test]
async fn a_token_is_required_when_configured() {
    let backend = backend().await;
    let mut config = telemetry_config(inbound(backend.addr));
    config.telemetry.admin_token = Some("s3cret".into());
    let sidecar = Sidecar::start(config).await;
    // Metrics are aggregates, scrapeable without the token, as Prometheus
    // scrapes a pod; the token guards the per-request events.
    assert_eq!(admin_get(sidecar.admin, "/metrics").await.0, 200);
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/events", sidecar.admin)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let wrong =
        tokio_tungstenite::connect_async(format!("ws://{}/events?token=guess", sidecar.admin))
            .await;
    assert!(wrong.is_err());
    // The query parameter, for clients that cannot set headers.
    let mut events = Events::connect(sidecar.admin, "?token=s3cret").await;
    assert_eq!(events.next_json().await["type"], "hello");
    // The header.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/events", sidecar.admin)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        http::HeaderValue::from_static("Bearer s3cret"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("authorized");
    assert!(ws.next().await.is_some());
    let mut conn = http1_conn(sidecar.admin).await;
    let req = http::Request::get("/metrics")
        .header("host", "admin")
        .header("authorization", "Bearer s3cret")
        .body(empty())
        .expect("request");
    assert_eq!(
        conn.send_request(req).await.expect("response").status(),
        200
    );
    // Health stays open for probes.
    assert_eq!(admin_get(sidecar.admin, "/healthz").await.0, 200);
    sidecar.stop().await;
}

#[tokio::test]
async fn captured_headers_are_redacted_when_secret() {
    let backend = backend().await;
    let mut config = telemetry_config(inbound(backend.addr));
    config.capture_headers = ["x-request-id", "authorization", "cookie"]
        .into_iter()
        .map(http::HeaderName::from_static)
        .collect();
    let sidecar = Sidecar::start(config).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    events.next_of("hello").await;
    let mut client = http1_conn(sidecar.addr()).await;
    let req = http::Request::get("/echo")
        .header("host", "svc")
        .header("x-request-id", "abc-123")
        .header("authorization", "Bearer hunter2")
        .header("cookie", "session=hunter2")
        .header("x-other", "not captured")
        .body(empty())
        .expect("request");
    let resp = client.send_request(req).await.expect("response");
    body_bytes(resp).await;
    let json = events.next_of("request").await;
    let headers: BTreeMap<String, String> =
        serde_json::from_value(json["headers"].clone()).expect("headers");
    assert_eq!(
        headers.get("x-request-id").map(String::as_str),
        Some("abc-123")
    );
    assert_eq!(
        headers.get("authorization").map(String::as_str),
        Some("<redacted>")
    );
    assert_eq!(
        headers.get("cookie").map(String::as_str),
        Some("<redacted>")
    );
    assert!(!headers.contains_key("x-other"));
    assert!(!json.to_string().contains("hunter2"));
    sidecar.stop().await;
}

/// `name{labels} value` lines of an exposition, as (name, labels, value).
fn parse_exposition(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("malformed line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let rest = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                let labels = rest
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair
                            .split_once("=\"")
                            .unwrap_or_else(|| panic!("bad label in {line:?}"));
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line:?}"
        );
        samples.push((name, labels, value));
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_every_request() {
    let backend = backend().await;
    let sidecar = Sidecar::start(telemetry_config(inbound(backend.addr))).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    let mut client = http1_conn(sidecar.addr()).await;
    const N: u64 = 50;
    for i in 0..N {
        client.ready().await.expect("keep-alive");
        let path = if i % 5 == 0 { "/status/500" } else { "/echo" };
        let resp = client
            .send_request(get(path, "metrics.example"))
            .await
            .expect("response");
        body_bytes(resp).await;
    }
    // Stats covering every request mean the telemetry has folded them all.
    let mut seen = 0;
    while seen < N {
        if let Message::Stats(s) = events.next().await {
            seen += s.upstreams.iter().map(|u| u.counts.requests).sum::<u64>();
        }
    }
    let (status, text) = admin_get(sidecar.admin, "/metrics").await;
    assert_eq!(status, 200);
    let samples = parse_exposition(&text);
    let sum = |name: &str, pred: &dyn Fn(&BTreeMap<String, String>) -> bool| -> f64 {
        samples
            .iter()
            .filter(|(n, l, _)| n == name && pred(l))
            .map(|(_, _, v)| v)
            .sum()
    };
    let ours = |l: &BTreeMap<String, String>| {
        l.get("authority").map(String::as_str) == Some("metrics.example")
    };
    assert_eq!(sum("meshtop_requests_total", &ours), N as f64);
    assert_eq!(
        sum("meshtop_requests_total", &|l| ours(l)
            && l.get("status_class").map(String::as_str) == Some("5xx")),
        (N / 5) as f64
    );
    assert_eq!(sum("meshtop_request_failures_total", &ours), (N / 5) as f64);
    assert_eq!(
        sum("meshtop_request_duration_seconds_count", &ours),
        N as f64
    );
    assert!(sum("meshtop_bytes_total", &ours) >= 0.0);
    assert_eq!(sum("meshtop_subscribers", &|_| true), 1.0);
    assert!(
        samples
            .iter()
            .any(|(n, _, _)| n == "meshtop_events_dropped_total")
    );
    assert!(
        samples
            .iter()
            .any(|(n, l, _)| n == "meshtop_request_duration_seconds_bucket"
                && l.get("le").map(String::as_str) == Some("0.0005"))
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn a_subscribers_ping_is_answered_and_its_close_ends_the_stream() {
    use tokio_tungstenite::tungstenite::Message as Frame;
    let backend = backend().await;
    let sidecar = Sidecar::start(telemetry_config(inbound(backend.addr))).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    events.next_of("hello").await;
    events
        .ws
        .send(Frame::Ping(b"are you there".to_vec().into()))
        .await
        .expect("ping");
    within("the pong", async {
        loop {
            match events.ws.next().await {
                Some(Ok(Frame::Pong(payload))) => break assert_eq!(&payload[..], b"are you there"),
                Some(Ok(_)) => continue,
                other => panic!("expected a pong, got {other:?}"),
            }
        }
    })
    .await;
    // Events still flow after the ping.
    let mut client = http1_conn(sidecar.addr()).await;
    let resp = client
        .send_request(get("/echo", "ping.example"))
        .await
        .expect("response");
    body_bytes(resp).await;
    loop {
        if let Message::Request(r) = events.next().await {
            assert_eq!(r.authority, "ping.example");
            break;
        }
    }
    // A close is answered with a close, and the subscriber is gone.
    events.ws.close(None).await.expect("close");
    within("the close to be answered", async {
        while let Some(Ok(_)) = events.ws.next().await {}
    })
    .await;
    within("the subscriber to be removed", async {
        while !admin_get(sidecar.admin, "/metrics")
            .await
            .1
            .contains("\nmeshtop_subscribers 0\n")
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    sidecar.stop().await;
}

#[tokio::test]
async fn garbage_and_huge_frames_disconnect_only_that_subscriber() {
    let backend = backend().await;
    let sidecar = Sidecar::start(telemetry_config(inbound(backend.addr))).await;
    let mut good = Events::connect(sidecar.admin, "").await;
    good.next_of("hello").await;

    // A huge frame from a subscriber closes its connection.
    let mut huge = Events::connect(sidecar.admin, "").await;
    huge.next_of("hello").await;
    let big = "x".repeat(1024 * 1024);
    let _ = huge
        .ws
        .send(tokio_tungstenite::tungstenite::Message::text(big))
        .await;
    within("the huge-frame subscriber to be closed", async {
        while let Some(Ok(_)) = huge.ws.next().await {}
    })
    .await;

    // Bytes that are not WebSocket frames at all after the handshake.
    let mut garbage = TcpStream::connect(sidecar.admin).await.expect("connect");
    garbage
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .expect("write");
    garbage.write_all(&[0xff; 64]).await.expect("write garbage");
    let mut sink = Vec::new();
    let _ = within(
        "the garbage subscriber to be closed",
        garbage.read_to_end(&mut sink),
    )
    .await;

    // The well-behaved subscriber still gets events, and traffic flows.
    let mut client = http1_conn(sidecar.addr()).await;
    let resp = client
        .send_request(get("/echo", "still.example"))
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    let json = good.next_of("request").await;
    assert_eq!(json["authority"], "still.example");
    sidecar.stop().await;
}

#[tokio::test]
async fn a_client_that_never_completes_the_handshake_is_disconnected() {
    let backend = backend().await;
    let mut config = telemetry_config(inbound(backend.addr));
    config.telemetry.handshake_timeout = Duration::from_millis(300);
    let sidecar = Sidecar::start(config).await;
    let mut slow = TcpStream::connect(sidecar.admin).await.expect("connect");
    slow.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut sink = Vec::new();
    // The server closes the connection (read_to_end ends) instead of waiting forever.
    within(
        "the half-open handshake to be closed",
        slow.read_to_end(&mut sink),
    )
    .await
    .expect("closed cleanly");
    // Meanwhile the admin server still answers.
    assert_eq!(admin_get(sidecar.admin, "/healthz").await.0, 200);
    sidecar.stop().await;
}

/// The JSON Schema in `assets/` names exactly the fields the sidecar sends.
#[tokio::test]
async fn the_published_json_schema_matches_the_messages() {
    let schema: Value = serde_json::from_str(include_str!("../assets/events.schema.json"))
        .expect("the schema is valid JSON");
    let required = |kind: &str| -> Vec<String> {
        let mut fields: Vec<String> = schema["$defs"][kind]["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{kind} is defined"))
            .iter()
            .map(|f| f.as_str().expect("field names").to_owned())
            .collect();
        fields.sort();
        fields
    };
    let keys = |json: &Value| -> Vec<String> {
        let mut keys: Vec<String> = json.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        keys
    };

    // Enums and optional fields are checked against the types in
    // tests/schema.rs; this checks what a real sidecar sends.
    let closed = closed_port();
    let backend = backend().await;
    let listeners = vec![
        ListenerConfig {
            direction: Direction::Inbound,
            addr: local0(),
            target: Some(Dest::Addr(backend.addr)),
        },
        ListenerConfig {
            direction: Direction::Outbound,
            addr: local0(),
            target: Some(Dest::Addr(closed)),
        },
    ];
    let sidecar = Sidecar::start(telemetry_config(listeners)).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    let hello = events.next_of("hello").await;
    assert_eq!(keys(&hello), required("hello"));
    let mut client = http1_conn(sidecar.listeners[0].addr).await;
    body_bytes(
        client
            .send_request(get("/echo", "svc"))
            .await
            .expect("response"),
    )
    .await;
    let request = events.next_of("request").await;
    assert_eq!(keys(&request), required("request"));
    let mut raw = TcpStream::connect(sidecar.listeners[1].addr)
        .await
        .expect("connect");
    raw.write_all(b"\x00opaque").await.expect("write");
    let _ = within("the close", raw.read_to_end(&mut Vec::new())).await;
    let tcp = events.next_of("tcp").await;
    assert_eq!(keys(&tcp), required("tcp"));
    let stats = loop {
        let stats = events.next_of("stats").await;
        if !stats["upstreams"].as_array().expect("array").is_empty() {
            break stats;
        }
    };
    assert_eq!(keys(&stats), required("stats"));
    let mut upstream_required: Vec<String> =
        schema["$defs"]["stats"]["properties"]["upstreams"]["items"]["required"]
            .as_array()
            .expect("array")
            .iter()
            .map(|f| f.as_str().expect("names").to_owned())
            .collect();
    upstream_required.sort();
    assert_eq!(keys(&stats["upstreams"][0]), upstream_required);
    // Its routes and clients: the counts' fields and their own name.
    let upstream_schema = &schema["$defs"]["stats"]["properties"]["upstreams"]["items"];
    for (part, name) in [("routes", "route"), ("clients", "client")] {
        let part_schema = &upstream_schema["properties"][part]["items"];
        let mut part_required: Vec<String> = part_schema["required"]
            .as_array()
            .expect("array")
            .iter()
            .map(|f| f.as_str().expect("names").to_owned())
            .collect();
        part_required.sort();
        let mut counts_and_name = required("counts");
        counts_and_name.push(name.to_owned());
        counts_and_name.sort();
        assert_eq!(part_required, counts_and_name, "{part}");
        let entry = &stats["upstreams"][0][part][0];
        assert_eq!(keys(entry), part_required, "{part}: {stats}");
    }
    let dropped = serde_json::to_value(Message::Dropped(meshtop::schema::Dropped {
        count: 1,
        total: 2,
    }))
    .expect("encodes");
    assert_eq!(keys(&dropped), required("dropped"));
    sidecar.stop().await;
}

#[tokio::test]
async fn authorities_past_the_cap_are_counted_as_other() {
    let backend = backend().await;
    let mut config = telemetry_config(inbound(backend.addr));
    config.telemetry.max_authorities = 2;
    let sidecar = Sidecar::start(config).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    let mut client = http1_conn(sidecar.addr()).await;
    for host in ["a.example", "b.example", "c.example", "d.example"] {
        client.ready().await.expect("keep-alive");
        body_bytes(
            client
                .send_request(get("/echo", host))
                .await
                .expect("response"),
        )
        .await;
    }
    let mut authorities = BTreeMap::new();
    let mut named = Vec::new();
    while authorities.values().sum::<u64>() < 4 {
        match events.next().await {
            Message::Stats(s) => {
                for u in s.upstreams {
                    *authorities.entry(u.authority).or_insert(0) += u.counts.requests;
                }
            }
            Message::Request(r) => named.push(r.authority),
            _ => {}
        }
    }
    let expected: BTreeMap<String, u64> = [("a.example", 1), ("b.example", 1), ("other", 2)]
        .map(|(a, n)| (a.to_owned(), n))
        .into();
    assert_eq!(authorities, expected);
    // Events still name the real authority.
    assert_eq!(named, ["a.example", "b.example", "c.example", "d.example"]);
    let (_, text) = admin_get(sidecar.admin, "/metrics").await;
    assert!(text.contains("authority=\"other\""));
    assert!(!text.contains("c.example"));
    sidecar.stop().await;
}

/// Requests served before a subscriber came, counted by its stats.
fn counted(stats: &Value) -> u64 {
    stats["upstreams"]
        .as_array()
        .expect("upstreams")
        .iter()
        .map(|u| u["requests"].as_u64().expect("requests"))
        .sum()
}

async fn send_requests(addr: std::net::SocketAddr, n: usize, host: &str) {
    let mut client = http1_conn(addr).await;
    for i in 0..n {
        client.ready().await.expect("keep-alive");
        let resp = client
            .send_request(get(&format!("/echo?i={i}"), host))
            .await
            .expect("response");
        body_bytes(resp).await;
    }
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_loses_its_slot() {
    // Finding 8: subscribers that never read held their slots for good.
    let backend = backend().await;
    let mut config = telemetry_config(inbound(backend.addr));
    config.telemetry.hub.subscribers = 2;
    config.telemetry.write_timeout = Duration::from_millis(600);
    let sidecar = Sidecar::start(config).await;
    // One subscriber reads all along; the other never does.
    let mut reading = Events::connect(sidecar.admin, "").await;
    let _stalled = stalled_subscriber(sidecar.admin).await;
    wait_for_subscribers(sidecar.admin, 2).await;
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/events", sidecar.admin)).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 503),
        "all slots are taken: {refused:?}"
    );
    // Traffic meanwhile, with long paths, so the stalled one's socket fills.
    let long = "x".repeat(3000);
    let mut client = http1_conn(sidecar.addr()).await;
    let reader = tokio::spawn(async move {
        // The reading subscriber answers pings by reading: it stays.
        let mut stats = 0;
        while stats < 8 {
            if let Message::Stats(_) = reading.next().await {
                stats += 1;
            }
        }
        reading
    });
    let mut freed = false;
    within("the stalled subscriber's slot to be freed", async {
        while !freed {
            client.ready().await.expect("keep-alive");
            let resp = client
                .send_request(get(&format!("/echo?{long}"), "slots.example"))
                .await
                .expect("response");
            body_bytes(resp).await;
            freed = tokio_tungstenite::connect_async(format!("ws://{}/events", sidecar.admin))
                .await
                .is_ok();
        }
    })
    .await;
    // The reading subscriber was never closed (8 stats take 1.6 s, well
    // past the 600 ms timeout).
    let mut reading = within("the reading subscriber", reader)
        .await
        .expect("reader");
    assert!(matches!(
        reading.next().await,
        Message::Stats(_) | Message::Request(_)
    ));
    sidecar.stop().await;
}

#[tokio::test]
async fn shutdown_delivers_the_final_interval_and_every_queued_event() {
    // Finding 3: the last partial interval and queued events were lost.
    const N: usize = 25;
    let backend = backend().await;
    let mut config = telemetry_config(inbound(backend.addr));
    // No interval ends before the shutdown: only the final one counts.
    config.telemetry.stats_interval = Duration::from_secs(3600);
    let sidecar = Sidecar::start(config).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    events.next_of("hello").await;
    send_requests(sidecar.addr(), N, "final.example").await;
    sidecar.shutdown.cancel();
    let (mut requests, mut counted_total, mut reason) = (0, 0, None);
    within("the stream to end", async {
        while let Some(frame) = events.ws.next().await {
            match frame.expect("a valid frame") {
                tokio_tungstenite::tungstenite::Message::Text(text) => {
                    let json: Value = serde_json::from_str(&text).expect("json");
                    match json["type"].as_str() {
                        Some("request") => requests += 1,
                        Some("stats") => counted_total += counted(&json),
                        _ => {}
                    }
                }
                tokio_tungstenite::tungstenite::Message::Close(frame) => {
                    reason = frame.map(|f| f.reason.to_string());
                }
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(requests, N, "every request event arrived");
    assert_eq!(
        counted_total, N as u64,
        "the final stats count every request"
    );
    assert_eq!(reason.as_deref(), Some("the sidecar is shutting down"));
    within("the sidecar to stop", sidecar.task_handle())
        .await
        .expect("clean stop");
}

/// A backend that accepts connections, tells when it has read something,
/// and never answers.
async fn silent_backend() -> (std::net::SocketAddr, tokio::sync::mpsc::Receiver<()>) {
    let listener = tokio::net::TcpListener::bind(local0()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut told = false;
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if !told {
                        told = true;
                        let _ = tx.send(()).await;
                    }
                }
                // Held open until the peer leaves.
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn exchanges_cut_off_by_the_drain_timeout_are_recorded_as_shutdown() {
    // Finding 3: requests still running at the drain timeout were never
    // recorded.
    let (http_backend, mut http_seen) = silent_backend().await;
    let (tcp_backend, mut tcp_seen) = silent_backend().await;
    let mut config = telemetry_config(vec![
        ListenerConfig {
            direction: Direction::Inbound,
            addr: local0(),
            target: Some(meshtop::proxy::Dest::Addr(http_backend)),
        },
        ListenerConfig {
            direction: Direction::Inbound,
            addr: local0(),
            target: Some(meshtop::proxy::Dest::Addr(tcp_backend)),
        },
    ]);
    config.opaque_ports = vec![tcp_backend.port()];
    config.drain_timeout = Duration::from_millis(300);
    let sidecar = Sidecar::start(config).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    events.next_of("hello").await;

    let mut http = RawConn::connect(sidecar.listeners[0].addr).await;
    http.send(b"GET /slow HTTP/1.1\r\nHost: slow.example\r\n\r\n")
        .await;
    within("the backend to get the request", http_seen.recv()).await;
    let mut tcp = RawConn::connect(sidecar.listeners[1].addr).await;
    tcp.send(b"opaque bytes").await;
    within("the backend to get the bytes", tcp_seen.recv()).await;

    sidecar.shutdown.cancel();
    let (mut request, mut connection) = (None, None);
    within("both records", async {
        while request.is_none() || connection.is_none() {
            match events.next().await {
                Message::Request(r) => request = Some(r),
                Message::Tcp(t) => connection = Some(t),
                _ => {}
            }
        }
    })
    .await;
    let request = request.expect("request");
    assert_eq!(request.path.as_deref(), Some("/slow"));
    assert_eq!(
        request.error,
        Some(meshtop::telemetry::ErrorKind::Shutdown.into())
    );
    let connection = connection.expect("connection");
    assert_eq!(
        connection.error,
        Some(meshtop::telemetry::ErrorKind::Shutdown.into())
    );
    assert_eq!(connection.bytes_in, b"opaque bytes".len() as u64);
    within("the sidecar to stop", sidecar.task_handle())
        .await
        .expect("clean stop");
    drop((http, tcp));
}

#[tokio::test]
async fn a_new_subscriber_gets_the_history_first_marked_as_backfill() {
    // Finding 12: what a sidecar counted before a subscriber came was lost
    // to it; now the last `--history` comes first.
    const N: usize = 12;
    let backend = backend().await;
    let sidecar = Sidecar::start(telemetry_config(inbound(backend.addr))).await;
    let mut first = Events::connect(sidecar.admin, "").await;
    send_requests(sidecar.addr(), N, "history.example").await;
    // Once the first subscriber has seen every request in stats, the
    // history holds them too.
    let mut seen = 0;
    while seen < N as u64 {
        let stats = first.next_of("stats").await;
        assert!(stats.get("backfill").is_none(), "live stats are not marked");
        seen += counted(&stats);
    }
    let mut late = Events::connect(sidecar.admin, "").await;
    assert_eq!(late.next_json().await["type"], "hello");
    let mut backfilled = 0;
    loop {
        let json = late.next_json().await;
        if json["type"] != "stats" || json["backfill"] != true {
            break;
        }
        backfilled += counted(&json);
    }
    assert_eq!(backfilled, N as u64, "the history counts every request");
    sidecar.stop().await;
}

/// The status of a WebSocket handshake to `/events{query}` at `admin`.
async fn events_status(admin: std::net::SocketAddr, query: &str) -> u16 {
    match tokio_tungstenite::connect_async(format!("ws://{admin}/events{query}")).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(err) => panic!("handshake failed: {err}"),
    }
}

#[tokio::test]
async fn the_public_admin_serves_probes_and_metrics_but_events_only_behind_a_token() {
    // Finding 9: /events was readable by every pod in the cluster.
    let backend = backend().await;
    let mut config = telemetry_config(inbound(backend.addr));
    config.public_admin = Some("127.0.0.2:0".parse().expect("literal"));
    let sidecar = Sidecar::start(config).await;
    let public = sidecar.public_admin.expect("a public admin");
    assert_eq!(public.ip().to_string(), "127.0.0.2");
    for path in ["/healthz", "/readyz", "/", "/metrics"] {
        assert_eq!(admin_get(public, path).await.0, 200, "{path}");
    }
    let (status, body) = admin_get(public, "/events").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("loopback"), "{body}");
    assert_eq!(events_status(public, "").await, 403);
    // The loopback admin serves them, as kubectl port-forward reaches it.
    assert_eq!(events_status(sidecar.admin, "").await, 101);
    sidecar.stop().await;

    // With a token, the public admin serves events to those who have it.
    let mut config = telemetry_config(inbound(backend.addr));
    config.public_admin = Some("127.0.0.2:0".parse().expect("literal"));
    config.telemetry.admin_token = Some("s3cret".into());
    let sidecar = Sidecar::start(config).await;
    let public = sidecar.public_admin.expect("a public admin");
    assert_eq!(admin_get(public, "/metrics").await.0, 200);
    assert_eq!(events_status(public, "").await, 401);
    assert_eq!(events_status(public, "?token=s3cret").await, 101);
    sidecar.stop().await;
}

/// What `meshtop proxy ARGS` logs on stderr until its admin server listens.
async fn proxy_start_up_log(args: &[&str]) -> String {
    let mut child = meshtop(args).spawn().expect("meshtop runs");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut seen = String::new();
    within("the proxy to start", async {
        let mut buf = [0u8; 4096];
        while !seen.contains("admin listening") {
            let n = stderr.read(&mut buf).await.expect("read");
            assert!(n > 0, "the proxy exited: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    child.kill().await.expect("kill");
    seen
}

#[tokio::test]
async fn the_proxy_warns_when_events_listen_beyond_loopback_without_a_token() {
    let proxy = |admin: &[&'static str]| {
        let mut args = vec!["proxy", "--inbound", "127.0.0.1:0=127.0.0.1:9"];
        args.extend(["--outbound", "127.0.0.1:0"]);
        args.extend_from_slice(admin);
        args
    };
    let stderr = proxy_start_up_log(&proxy(&["--admin", "0.0.0.0:0"])).await;
    assert_eq!(
        stderr.matches("per-request events").count(),
        1,
        "one warning: {stderr}"
    );
    let with_token = proxy(&["--admin", "0.0.0.0:0", "--admin-token", "t"]);
    assert!(
        !proxy_start_up_log(&with_token)
            .await
            .contains("per-request events")
    );
    let loopback = proxy(&["--admin", "127.0.0.1:0", "--public-admin", "127.0.0.2:0"]);
    assert!(
        !proxy_start_up_log(&loopback)
            .await
            .contains("per-request events")
    );
}

/// The values a metric's label takes in `/metrics` text.
fn label_values(metrics: &str, metric: &str, label: &str) -> std::collections::BTreeSet<String> {
    parse_exposition(metrics)
        .into_iter()
        .filter(|(name, _, _)| name == metric)
        .filter_map(|(_, labels, _)| labels.get(label).cloned())
        .collect()
}

#[tokio::test]
async fn junk_hosts_cannot_hold_the_authority_labels_for_good() {
    // Finding 5: junk `Host` headers filled --max-authorities for the life
    // of the process.
    const MAX: usize = 20;
    let backend = backend().await;
    let mut config = telemetry_config(inbound(backend.addr));
    config.telemetry.max_authorities = MAX;
    let sidecar = Sidecar::start(config).await;
    let mut events = Events::connect(sidecar.admin, "").await;
    let mut raw = RawConn::connect(sidecar.addr()).await;
    let mut send = async |host: &str| {
        raw.send(format!("GET /echo HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await;
        raw.read_response().await;
    };
    for i in 0..MAX {
        send(&format!("junk{i}.example")).await;
    }
    // Not a host[:port]: one label for all of them, whatever they are.
    for junk in ["x:y", "a:99999", "[zz]:80"] {
        send(junk).await;
    }
    for _ in 0..5 {
        send("api.example:8080").await;
    }
    let mut by_label = BTreeMap::new();
    while by_label.values().sum::<u64>() < (MAX + 3 + 5) as u64 {
        if let Message::Stats(s) = events.next().await {
            for u in s.upstreams {
                *by_label.entry(u.authority).or_insert(0u64) += u.counts.requests;
            }
        }
    }
    assert_eq!(by_label.get("invalid"), Some(&3), "{by_label:?}");
    // The real host is `other` while it earns a slot, then has its own.
    assert_eq!(by_label.get("api.example:8080"), Some(&3), "{by_label:?}");
    assert_eq!(by_label.get("other"), Some(&2), "{by_label:?}");
    let (_, metrics) = admin_get(sidecar.admin, "/metrics").await;
    let labels = label_values(&metrics, "meshtop_requests_total", "authority");
    assert!(labels.contains("api.example:8080"), "{labels:?}");
    assert!(labels.contains("invalid"), "{labels:?}");
    // The evicted junk's series went with its slot.
    assert!(labels.len() <= MAX + 2, "{} labels", labels.len());
    sidecar.stop().await;
}

#[tokio::test]
async fn grpc_status_labels_are_the_standard_codes_and_other() {
    // Finding 5: grpc_status labels came straight from the upstream.
    let backend = backend().await;
    let sidecar = Sidecar::start(telemetry_config(inbound(backend.addr))).await;
    let mut client = http2_conn(sidecar.addr()).await;
    for code in (0u32..40).chain([1000, 4_000_000_000]) {
        let mut req = get(&format!("/grpc-status/{code}"), "grpc.example");
        req.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/grpc"),
        );
        let resp = client.send_request(req).await.expect("response");
        body_bytes(resp).await;
    }
    let expected: std::collections::BTreeSet<String> = (0..17)
        .map(|c: u32| c.to_string())
        .chain(["other".to_owned()])
        .collect();
    within("every request in /metrics", async {
        loop {
            let (_, metrics) = admin_get(sidecar.admin, "/metrics").await;
            let labels = label_values(&metrics, "meshtop_requests_total", "grpc_status");
            if labels == expected {
                break;
            }
            assert!(labels.is_subset(&expected), "{labels:?}");
            tokio::task::yield_now().await;
        }
    })
    .await;
    sidecar.stop().await;
}
