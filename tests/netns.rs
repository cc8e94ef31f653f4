//! Transparent interception end to end: a small cluster of pods made of
//! network namespaces on a bridge, each with `meshtop init` and `meshtop
//! proxy` (as the proxy's UID), and unmodified servers and clients that dial
//! each other's pod addresses. Root only: skipped with the reason otherwise.
//!
//! The same clients run twice, before meshtop is installed and after, and
//! must get the same answers; the sidecars' event streams must show every
//! request on both sides with its original destination.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use meshtop::netns::{Cluster, Namespace, Pod};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use support::*;

const HTTP_PORT: u16 = 8080;
const GRPC_PORT: u16 = 50051;
const BANNER_PORT: u16 = 2525;
/// Skipped by the client's `--skip-outbound-ports` and the server's
/// `--skip-inbound-ports`: its traffic must bypass both sidecars.
const SKIPPED_PORT: u16 = 9999;
const BANNER: &[u8] = b"220 banner.test ESMTP ready\r\n";
const PROXY_UID: u32 = 1337;
const ADMIN: &str = "127.0.0.1:15090";

/// The meshtop binary at a path the proxy's UID can execute: the one built
/// for these tests, or, when a directory above it is closed to other users
/// (a checkout under /root), a link to it (else a copy) in
/// `$TMPDIR/meshtop-tests/`, named after the build's size and time so that
/// runs of one build share it. Older ones there are removed: a link to a
/// binary cargo has since replaced would keep the old one's disk space.
/// (`MESHTOP_TESTS_COPY_BINARY=1` forces the link, to try it.)
fn meshtop_for_proxy_uid() -> std::path::PathBuf {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let built = std::path::PathBuf::from(env!("CARGO_BIN_EXE_meshtop"));
        // MESHTOP_TESTS_COPY_BINARY=1 takes the second way anyway, to try it
        // where the proxy's UID can read everything.
        let runs = std::env::var_os("MESHTOP_TESTS_COPY_BINARY").is_none()
            && std::process::Command::new("setpriv")
                .args(["--reuid=1337", "--regid=1337", "--clear-groups"])
                .arg(&built)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
        if runs {
            return built;
        }
        let dir = std::env::temp_dir().join("meshtop-tests");
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        let meta = std::fs::metadata(&built).expect("the built binary");
        let stamp = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let name = format!("meshtop-{}-{stamp}", meta.len());
        let exe = dir.join(&name);
        if !exe.exists() {
            // Made under a name of this process's, then renamed: a run of
            // the same build at the same time never sees half a copy.
            let partial = dir.join(format!("{name}.{}", std::process::id()));
            let _ = std::fs::remove_file(&partial);
            if std::fs::hard_link(&built, &partial).is_err() {
                std::fs::copy(&built, &partial).expect("a copy of the binary");
            }
            std::fs::rename(&partial, &exe).expect("the binary in place");
        }
        // Unlinking a binary that another run is executing is harmless; a
        // partial one (with a `.PID` suffix) may be another run's copy.
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let other = entry.file_name();
            let other = other.to_string_lossy();
            if other != name && !other.contains('.') {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        exe
    })
    .clone()
}

fn skip_reason() -> Option<String> {
    meshtop::netns::preflight().err().map(|err| err.to_string())
}

fn any(port: u16) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], port))
}

fn at(pod: &Pod, port: u16) -> SocketAddr {
    SocketAddr::from((pod.ip, port))
}

// ---- the application: unmodified servers ---------------------------------

/// An HTTP/1.1 server: `GET /hello` (200), `POST /echo` (the body back),
/// anything else 404.
async fn http_server(listener: TcpListener) {
    serve_http1(listener, |req, _peer| async move {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let (status, body) = match (parts.method.as_str(), parts.uri.path()) {
            ("GET", "/hello") => (StatusCode::OK, Bytes::from("hello from the http pod\n")),
            ("POST", "/echo") => (StatusCode::OK, body),
            _ => (StatusCode::NOT_FOUND, Bytes::from("no such page\n")),
        };
        Response::builder()
            .status(status)
            .header("content-type", "text/plain")
            .header("x-app", "http-pod")
            .body(Full::new(body))
            .expect("a valid response")
    })
    .await
}

/// An HTTP/1.1 server answering with the address its client connected from.
async fn peer_server(listener: TcpListener) {
    serve_http1(listener, |_req, peer: SocketAddr| async move {
        Response::new(Full::new(Bytes::from(format!("peer {}", peer.ip()))))
    })
    .await
}

async fn serve_http1<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send,
{
    while let Ok((stream, peer)) = listener.accept().await {
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, std::convert::Infallible>(handler(req, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A server that speaks first, like SMTP: the banner at once, then one
/// answer to one line, then it closes.
async fn banner_server(listener: TcpListener) {
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            if stream.write_all(BANNER).await.is_err() {
                return;
            }
            let mut line = String::new();
            let mut reader = BufReader::new(&mut stream);
            if reader.read_line(&mut line).await.is_ok() {
                let reply = format!("250 ok: {}\r\n", line.trim_end());
                let _ = stream.write_all(reply.as_bytes()).await;
            }
        });
    }
}

async fn grpc_server(listener: TcpListener) {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let _ = tonic::transport::Server::builder()
        .add_service(echo::echo_server::EchoServer::new(EchoService))
        .serve_with_incoming(incoming)
        .await;
}

// ---- the application: unmodified clients --------------------------------

/// One HTTP exchange as the client saw it: status, headers other than
/// `date`, body.
type HttpAnswer = (u16, Vec<(String, String)>, Bytes);

/// What the client pod's programs got back, to compare with and without
/// meshtop.
#[derive(Debug, PartialEq)]
struct Answers {
    http: Vec<HttpAnswer>,
    grpc_ok: String,
    grpc_failure: (tonic::Code, String),
    grpc_stream: Vec<String>,
    banner: Vec<u8>,
    banner_reply: Vec<u8>,
    skipped_port: String,
    /// `curl -i` output without its `Date` line (when curl is installed).
    curl: Option<String>,
}

struct Pods {
    client: Pod,
    http: Pod,
    grpc: Pod,
    banner: Pod,
}

async fn http1_over(
    stream: tokio::net::TcpStream,
) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http/1 handshake");
    tokio::spawn(conn);
    sender
}

async fn http_exchange(
    sender: &mut hyper::client::conn::http1::SendRequest<TestBody>,
    request: Request<TestBody>,
) -> HttpAnswer {
    within("the connection to be ready", sender.ready())
        .await
        .expect("the connection stays open");
    let resp = within("an http response", sender.send_request(request))
        .await
        .expect("the server answers");
    let status = resp.status().as_u16();
    let mut headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    headers.sort();
    (status, headers, body_bytes(resp).await)
}

/// Everything the client pod does; returns the answers and how long the
/// banner took to arrive after the connection was made.
async fn run_clients(pods: &Pods) -> (Answers, Duration) {
    let client = &pods.client.netns;
    let http_addr = at(&pods.http, HTTP_PORT);
    let host = http_addr.to_string();

    let mut sender = http1_over(client.connect(http_addr).await.expect("dial the http pod")).await;
    let mut http = Vec::new();
    http.push(http_exchange(&mut sender, get("/hello", &host)).await);
    http.push(http_exchange(&mut sender, get("/missing", &host)).await);
    let post = Request::post("/echo")
        .header("host", &host)
        .body(full("ping"))
        .expect("a valid request");
    http.push(http_exchange(&mut sender, post).await);

    let grpc_addr = at(&pods.grpc, GRPC_PORT);
    let netns = client.clone();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_addr}"))
        .expect("a valid endpoint")
        .connect_with_connector(tower_service(netns, grpc_addr))
        .await
        .expect("dial the grpc pod");
    let mut grpc = echo::echo_client::EchoClient::new(channel);
    let ok = grpc
        .unary(echo::EchoRequest {
            message: "hi".into(),
            ..Default::default()
        })
        .await
        .expect("unary succeeds");
    let failure = grpc
        .unary(echo::EchoRequest {
            message: "lost".into(),
            fail_with: tonic::Code::NotFound as i32,
            ..Default::default()
        })
        .await
        .expect_err("the server fails as asked");
    let mut stream = grpc
        .server_stream(echo::EchoRequest {
            message: "tick".into(),
            count: 3,
            ..Default::default()
        })
        .await
        .expect("server stream starts")
        .into_inner();
    let mut grpc_stream = Vec::new();
    while let Some(item) = within("a streamed message", stream.message())
        .await
        .expect("the stream completes")
    {
        grpc_stream.push(item.message);
    }

    let banner_addr = at(&pods.banner, BANNER_PORT);
    let mut conn = client
        .connect(banner_addr)
        .await
        .expect("dial the banner pod");
    let connected = Instant::now();
    let mut banner = vec![0; BANNER.len()];
    within("the banner", conn.read_exact(&mut banner))
        .await
        .expect("the banner arrives");
    let banner_delay = connected.elapsed();
    conn.write_all(b"HELO client\r\n").await.expect("write");
    let mut banner_reply = Vec::new();
    within("the reply", conn.read_to_end(&mut banner_reply))
        .await
        .expect("the reply arrives and the server closes");

    let peer_addr = at(&pods.http, SKIPPED_PORT);
    let mut sender = http1_over(
        client
            .connect(peer_addr)
            .await
            .expect("dial the skipped port"),
    )
    .await;
    let (_, _, body) = http_exchange(&mut sender, get("/", &peer_addr.to_string())).await;
    let skipped_port = String::from_utf8_lossy(&body).into_owned();

    let curl = have("curl").then(|| {
        let output = client
            .command("curl")
            .args(["-sS", "-i", &format!("http://{http_addr}/hello?from=curl")])
            .output()
            .expect("curl runs");
        assert!(output.status.success(), "curl: {output:?}");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
            .collect::<Vec<_>>()
            .join("\n")
    });

    // Last, on a fresh connection: once its events are seen, every earlier
    // one has been.
    let mut sender = http1_over(client.connect(http_addr).await.expect("dial the http pod")).await;
    http.push(http_exchange(&mut sender, get("/hello?last", &host)).await);

    let answers = Answers {
        http,
        grpc_ok: ok.into_inner().message,
        grpc_failure: (failure.code(), failure.message().to_owned()),
        grpc_stream,
        banner,
        banner_reply,
        skipped_port,
        curl,
    };
    (answers, banner_delay)
}

/// A tonic connector that dials from inside `netns`.
fn tower_service(
    netns: Namespace,
    addr: SocketAddr,
) -> impl tower::Service<
    http::Uri,
    Response = TokioIo<tokio::net::TcpStream>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |_uri: http::Uri| {
        let netns = netns.clone();
        async move { netns.connect(addr).await.map(TokioIo::new) }
    })
}

// ---- meshtop in every pod -------------------------------------------------

fn log_path(pod: &Pod) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{}.log", pod.netns.name()))
}

/// `meshtop init` (with `init_args`), then `meshtop proxy` as the proxy's
/// UID, in `pod`.
fn install(cluster: &mut Cluster, pod: &Pod, init_args: &[&str]) {
    let bin = meshtop_for_proxy_uid();
    let rules = cluster
        .run(
            "meshtop init",
            pod.netns.command(&bin).arg("init").args(init_args),
        )
        .expect("meshtop init succeeds");
    assert!(rules.contains("MESHTOP_OUTPUT"), "{rules}");
    let log = std::fs::File::create(log_path(pod)).expect("a log file");
    let mut proxy = pod.netns.command_as(PROXY_UID, &bin);
    proxy
        .args(["proxy", "--name", &pod.name, "--drain-timeout", "1s"])
        .args(["--stats-interval", "200ms"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log);
    cluster
        .spawn(&pod.name, &mut proxy)
        .expect("meshtop proxy starts");
}

/// Waits for `/readyz` of the pod's sidecar, asked from inside the pod.
async fn wait_ready(cluster: &mut Cluster, pod: &Pod) {
    let admin: SocketAddr = ADMIN.parse().expect("a valid address");
    within("the sidecar's readiness", async {
        loop {
            if let Some(status) = cluster.exited(&pod.name) {
                let log = std::fs::read_to_string(log_path(pod)).unwrap_or_default();
                panic!("the sidecar of {} exited ({status}): {log}", pod.name);
            }
            if let Ok(stream) = pod.netns.connect(admin).await {
                let mut sender = http1_over(stream).await;
                if let Ok(resp) = sender.send_request(get("/readyz", "localhost")).await
                    && resp.status() == StatusCode::OK
                {
                    return;
                }
            }
            // The proxy is another process: poll, with the deadline above.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A subscriber of the pod's sidecar's `/events`, connected from inside
/// the pod (the admin address is the pod's loopback).
async fn subscribe(pod: &Pod) -> Events {
    let admin: SocketAddr = ADMIN.parse().expect("a valid address");
    let stream = pod.netns.connect(admin).await.expect("dial the admin");
    let (ws, _) = within(
        "the events handshake",
        tokio_tungstenite::client_async(
            format!("ws://{ADMIN}/events"),
            tokio_tungstenite::MaybeTlsStream::Plain(stream),
        ),
    )
    .await
    .expect("events handshake succeeds");
    Events { ws }
}

/// Reads `request` and `tcp` events until `done` holds for those seen.
async fn collect(events: &mut Events, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut seen: Vec<Value> = Vec::new();
    within(what, async {
        while !done(&seen) {
            let message = events.next_json().await;
            if message["type"] == "request" || message["type"] == "tcp" {
                seen.push(message);
            }
        }
    })
    .await;
    seen
}

fn requests_to<'a>(events: &'a [Value], path: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["type"] == "request" && e["path"] == path)
        .collect()
}

fn has_paths(events: &[Value], paths: &[&str]) -> bool {
    paths.iter().all(|p| !requests_to(events, p).is_empty())
}

fn has_tcp_to(events: &[Value], server: SocketAddr) -> bool {
    events
        .iter()
        .any(|e| e["type"] == "tcp" && e["server"] == server.to_string())
}

/// The one request event to `path`, checked against what the application
/// sent and got.
#[allow(clippy::too_many_arguments)]
fn assert_request(
    events: &[Value],
    side: &str,
    direction: &str,
    path: &str,
    method: &str,
    authority: SocketAddr,
    status: u16,
    grpc_status: Option<i32>,
) -> Value {
    let found = requests_to(events, path);
    assert_eq!(found.len(), 1, "{side}: one request to {path}: {events:#?}");
    let event = found[0].clone();
    assert_eq!(event["direction"], direction, "{side} {path}: {event}");
    assert_eq!(event["method"], method, "{side} {path}: {event}");
    assert_eq!(
        event["authority"],
        authority.to_string(),
        "{side} {path}: {event}"
    );
    // The original destination: where the application dialled.
    assert_eq!(
        event["server"],
        authority.to_string(),
        "{side} {path}: {event}"
    );
    assert_eq!(event["status"], status, "{side} {path}: {event}");
    match grpc_status {
        Some(code) => {
            assert_eq!(event["protocol"], "grpc", "{side} {path}: {event}");
            assert_eq!(event["grpc_status"], code, "{side} {path}: {event}");
        }
        None => assert_eq!(event["protocol"], "http/1.1", "{side} {path}: {event}"),
    }
    assert!(event["error"].is_null(), "{side} {path}: {event}");
    event
}

fn client_ip(event: &Value) -> IpAddr {
    event["client"]
        .as_str()
        .and_then(|c| c.parse::<SocketAddr>().ok())
        .map(|c| c.ip())
        .unwrap_or_else(|| panic!("a client address in {event}"))
}

fn leftover_namespaces(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_in_network_namespaces_are_observed_transparently() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipping: {reason}");
        return;
    }
    let mut cluster = Cluster::create(
        "mt-e2e",
        Ipv4Addr::new(10, 213, 0, 0),
        &["client", "http", "grpc", "banner"],
    )
    .expect("the cluster is built");
    let prefix = format!("mt-e2e-{}-", std::process::id());
    let pod = |name: &str| cluster.pod(name).expect("the pod exists").clone();
    let pods = Pods {
        client: pod("client"),
        http: pod("http"),
        grpc: pod("grpc"),
        banner: pod("banner"),
    };

    let listen = |pod: &Pod, port: u16| pod.netns.listen(any(port)).expect("listen in the pod");
    tokio::spawn(http_server(listen(&pods.http, HTTP_PORT)));
    tokio::spawn(peer_server(listen(&pods.http, SKIPPED_PORT)));
    tokio::spawn(grpc_server(listen(&pods.grpc, GRPC_PORT)));
    tokio::spawn(banner_server(listen(&pods.banner, BANNER_PORT)));

    // Without meshtop: what the applications get on their own.
    let (without, banner_direct) = run_clients(&pods).await;
    assert_eq!(without.skipped_port, format!("peer {}", pods.client.ip));

    let skip = SKIPPED_PORT.to_string();
    install(
        &mut cluster,
        &pods.client,
        &["--skip-outbound-ports", &skip],
    );
    install(&mut cluster, &pods.http, &["--skip-inbound-ports", &skip]);
    install(&mut cluster, &pods.grpc, &[]);
    install(&mut cluster, &pods.banner, &[]);
    for pod in [&pods.client, &pods.http, &pods.grpc, &pods.banner] {
        wait_ready(&mut cluster, pod).await;
    }
    let mut client_events = subscribe(&pods.client).await;
    let mut http_events = subscribe(&pods.http).await;
    let mut grpc_events = subscribe(&pods.grpc).await;
    let mut banner_events = subscribe(&pods.banner).await;

    // With meshtop: the same programs, the same answers.
    let (with, banner_proxied) = run_clients(&pods).await;
    assert_eq!(with, without, "the applications' answers changed");
    eprintln!(
        "banner after connect: {banner_direct:?} direct, {banner_proxied:?} through two sidecars"
    );
    assert!(
        banner_proxied < Duration::from_millis(50),
        "the banner took {banner_proxied:?} through the sidecars"
    );

    let http_addr = at(&pods.http, HTTP_PORT);
    let grpc_addr = at(&pods.grpc, GRPC_PORT);
    let banner_addr = at(&pods.banner, BANNER_PORT);
    let unary = "/meshtop.test.v1.Echo/Unary";
    let stream = "/meshtop.test.v1.Echo/ServerStream";
    let mut http_paths = vec!["/hello", "/missing", "/echo", "/hello?last"];
    if with.curl.is_some() {
        http_paths.push("/hello?from=curl");
    }

    let at_client = collect(&mut client_events, "the client's events", |seen| {
        has_paths(seen, &http_paths)
            && requests_to(seen, unary).len() == 2
            && has_paths(seen, &[stream])
            && has_tcp_to(seen, banner_addr)
    })
    .await;
    let at_http = collect(&mut http_events, "the http pod's events", |seen| {
        has_paths(seen, &http_paths)
    })
    .await;
    let at_grpc = collect(&mut grpc_events, "the grpc pod's events", |seen| {
        requests_to(seen, unary).len() == 2 && has_paths(seen, &[stream])
    })
    .await;
    let at_banner = collect(&mut banner_events, "the banner pod's events", |seen| {
        has_tcp_to(seen, banner_addr)
    })
    .await;

    // HTTP/1.1: outbound at the caller, inbound at the callee.
    for (path, method, status) in [
        ("/hello", "GET", 200),
        ("/missing", "GET", 404),
        ("/echo", "POST", 200),
        ("/hello?last", "GET", 200),
    ] {
        assert_request(
            &at_client, "client", "outbound", path, method, http_addr, status, None,
        );
        let inbound = assert_request(
            &at_http, "http", "inbound", path, method, http_addr, status, None,
        );
        assert_eq!(client_ip(&inbound), IpAddr::V4(pods.client.ip), "{inbound}");
    }
    if with.curl.is_some() {
        let path = "/hello?from=curl";
        assert_request(
            &at_client, "client", "outbound", path, "GET", http_addr, 200, None,
        );
        assert_request(
            &at_http, "http", "inbound", path, "GET", http_addr, 200, None,
        );
    }

    // gRPC: the status of each call, on both sides.
    for (side, events, direction) in [
        ("client", &at_client, "outbound"),
        ("grpc", &at_grpc, "inbound"),
    ] {
        let mut codes: Vec<i64> = requests_to(events, unary)
            .iter()
            .map(|e| {
                assert_eq!(e["direction"], direction, "{side}: {e}");
                assert_eq!(e["authority"], grpc_addr.to_string(), "{side}: {e}");
                assert_eq!(e["server"], grpc_addr.to_string(), "{side}: {e}");
                assert_eq!(e["status"], 200, "{side}: {e}");
                e["grpc_status"].as_i64().expect("a grpc-status")
            })
            .collect();
        codes.sort();
        assert_eq!(codes, [0, tonic::Code::NotFound as i64], "{side}");
        assert_request(
            events,
            side,
            direction,
            stream,
            "POST",
            grpc_addr,
            200,
            Some(0),
        );
    }

    // The banner protocol: an opaque connection on both sides.
    for (side, events, direction) in [
        ("client", &at_client, "outbound"),
        ("banner", &at_banner, "inbound"),
    ] {
        let tcp = events
            .iter()
            .find(|e| e["type"] == "tcp" && e["server"] == banner_addr.to_string())
            .expect("a tcp event");
        assert_eq!(tcp["direction"], direction, "{side}: {tcp}");
        assert_eq!(tcp["protocol"], "tcp", "{side}: {tcp}");
        assert_eq!(tcp["bytes_in"], b"HELO client\r\n".len(), "{side}: {tcp}");
        let out = BANNER.len() + with.banner_reply.len();
        assert_eq!(tcp["bytes_out"], out, "{side}: {tcp}");
    }

    // The skipped port went around both sidecars: the server saw the
    // client pod itself, and neither sidecar has an event for it (every
    // event up to the last request has been read).
    assert_eq!(with.skipped_port, format!("peer {}", pods.client.ip));
    for (side, events) in [("client", &at_client), ("http", &at_http)] {
        let skipped = at(&pods.http, SKIPPED_PORT).to_string();
        assert!(
            events.iter().all(|e| e["server"] != skipped),
            "{side} saw the skipped port: {events:#?}"
        );
    }

    // Teardown: the sidecars stop, every namespace (with its interfaces and
    // rules) is deleted.
    for pod in [&pods.client, &pods.http, &pods.grpc, &pods.banner] {
        let _ = std::fs::remove_file(log_path(pod));
    }
    drop(cluster);
    assert_eq!(leftover_namespaces(&prefix), Vec::<String>::new());
}

/// `meshtop demo --netns`: emojivoto in four pods, the sidecars transparent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_each_service_in_a_pod_of_its_own() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipping: {reason}");
        return;
    }
    let mut demo = tokio::process::Command::new(meshtop_for_proxy_uid());
    demo.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = demo
        .args([
            "demo",
            "--netns",
            "--headless",
            "--duration",
            "8s",
            "--interval",
            "8s",
            "--rate",
            "40",
        ])
        .spawn()
        .expect("meshtop runs");
    let pid = child.id().expect("a pid");
    let output = within("the demo to finish", child.wait_with_output())
        .await
        .expect("the demo runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let node = format!("meshtop-demo-{pid}-node");
    assert!(
        stderr.contains(&format!(
            "ip netns exec {node} meshtop attach 10.77.0.2:15090 10.77.0.3:15090 10.77.0.4:15090 10.77.0.5:15090"
        )),
        "the demo says how to attach: {stderr}"
    );

    let stdout = String::from_utf8_lossy(&output.stdout);
    let (table, rows) = last_table(&stdout);
    let row = |direction: &str, authority: &str| {
        rows.iter()
            .find(|r| r[0] == direction && r[1] == authority)
            .unwrap_or_else(|| panic!("missing {direction} {authority} in\n{table}"))
    };
    for direction in ["inbound", "outbound"] {
        for authority in [
            "web-svc.emojivoto:80",
            "emoji-svc.emojivoto:8080",
            "voting-svc.emojivoto:8080",
        ] {
            let requests: f64 = row(direction, authority)[8].parse().expect("requests");
            assert!(requests > 0.0, "{direction} {authority} in\n{table}");
        }
    }
    // Doughnut votes fail at voting-svc and so at web, seen on both sides.
    for direction in ["inbound", "outbound"] {
        for authority in ["web-svc.emojivoto:80", "voting-svc.emojivoto:8080"] {
            let failures: f64 = row(direction, authority)[9].parse().expect("failures");
            assert!(failures > 0.0, "{direction} {authority} in\n{table}");
        }
    }
    assert_eq!(
        leftover_namespaces(&format!("meshtop-demo-{pid}-")),
        Vec::<String>::new(),
        "the demo deletes its namespaces"
    );
}

/// Without root, `demo --netns` says so in one line and exits 2. As root,
/// the test drops to an unprivileged UID to see it.
#[test]
fn the_demo_in_pods_needs_root() {
    let mut command = if is_root() {
        if !have("setpriv") {
            eprintln!("skipping: setpriv is not installed (util-linux)");
            return;
        }
        let mut command = std::process::Command::new("setpriv");
        command.args(["--reuid=1337", "--regid=1337", "--clear-groups"]);
        command.arg(meshtop_for_proxy_uid());
        command
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_meshtop"))
    };
    let output = command
        .args(["demo", "--netns", "--headless", "--duration", "1s"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("meshtop runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("need root"), "{stderr}");
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
