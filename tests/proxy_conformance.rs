//! One table of exchanges, run through every HTTP forwarding path, each of
//! which must answer the client and record the request alike: the policy
//! they share lives in one module (src/proxy/exchange.rs), and this is what
//! keeps their framing from drifting apart.
//!
//! The paths, and how a test picks one:
//! - [`Path::Relay`]: HTTP/1.1 to a listener with a target, the byte relay
//!   (which hands to hyper what it does not forward itself: a refused
//!   upstream, a malformed head, `TE`, an upgrade);
//! - [`Path::Hyper1`]: HTTP/1.1 to the explicit proxy, hyper's forwarder;
//! - [`Path::H2Relay`]: HTTP/2 (prior knowledge) to a listener with a
//!   target, the HTTP/2 relay;
//! - [`Path::Hyper2`]: HTTP/2 to the explicit proxy, hyper's forwarder.
//!
//! | case                | relay | hyper/1 | h2 relay | hyper/2 |
//! |---------------------|-------|---------|----------|---------|
//! | refused             |   ✓   |    ✓    |    ✓     |    ✓    |
//! | refused, gRPC       |       |         |    ✓     |    ✓    |
//! | connect timeout     |   ✓   |    ✓    |    ✓     |    ✓    |
//! | DNS failure         |   ✓   |    ✓    |    ✓     |    ✓    |
//! | no answer           |   ✓   |    ✓    |          |         |
//! | malformed answer    |   ✓   |    ✓    |          |         |
//! | reset mid-body      |   ✓   |    ✓    |    ✓     |    ✓    |
//! | malformed head      |   ✓   |    ✓    |          |         |
//! | trailers            |   ✓   |    ✓    |    ✓     |    ✓    |
//! | gRPC status         |       |         |    ✓     |    ✓    |
//! | 1xx                 |   ✓   |    ✓    |          |         |
//! | HEAD                |   ✓   |    ✓    |          |         |
//! | 204, 304            |   ✓   |    ✓    |    ✓     |    ✓    |
//! | upgrade             |   ✓   |    ✓    |          |         |
//!
//! Why a case skips a path: gRPC needs HTTP/2. Interim responses and
//! upgrades are HTTP/1 only (HTTP/2 has extended CONNECT instead). An
//! HTTP/2 upstream that closes or breaks its framing fails its whole
//! connection rather than one answer, and a malformed HTTP/2 head is
//! refused by the h2 codec before any engine sees it: the HTTP/2 relay's
//! own tests (tests/proxy_h2_relay.rs) cover those. HEAD runs on HTTP/1
//! only because the test backend, hyper's HTTP/2 server, sends the body
//! of a HEAD response as DATA, which h2 refuses as malformed whatever is
//! in between.

mod support;
use support::*;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use meshtop::proxy::{Dest, ListenerConfig};
use meshtop::telemetry::{Direction, ErrorKind, HttpProtocol, RequestRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Relay,
    Hyper1,
    H2Relay,
    Hyper2,
}

use Path::*;

const ALL: &[Path] = &[Relay, Hyper1, H2Relay, Hyper2];
const HTTP1: &[Path] = &[Relay, Hyper1];
const HTTP2: &[Path] = &[H2Relay, Hyper2];

impl Path {
    fn http2(self) -> bool {
        matches!(self, H2Relay | Hyper2)
    }

    /// A proxy on which a request to `upstream` takes this path.
    async fn proxy(self, upstream: &Dest, connect_timeout: Duration) -> TestProxy {
        let target = matches!(self, Relay | H2Relay).then(|| upstream.clone());
        let mut config = config(vec![ListenerConfig {
            direction: Direction::Outbound,
            addr: local0(),
            target,
        }]);
        config.connect_timeout = connect_timeout;
        TestProxy::start(config).await
    }

    /// The request target for `path` on `upstream`: origin form to the
    /// relay, absolute form to the explicit proxy, and always on HTTP/2,
    /// whose requests carry their authority.
    fn target(self, upstream: &Dest, path: &str) -> String {
        match self {
            Relay => path.to_owned(),
            _ => format!("http://{upstream}{path}"),
        }
    }
}

/// What the client saw.
#[derive(Debug, Default, PartialEq)]
struct Answer {
    status: u16,
    /// Interim (1xx) responses before the answer.
    interim: Vec<u16>,
    content_type: Option<String>,
    /// From the headers of a trailers-only answer, or from its trailers.
    grpc_status: Option<String>,
    /// As text, with the upstream's address as `<upstream>`.
    body: String,
    trailers: Vec<(String, String)>,
    /// The body ended in an error (a reset, a connection cut short).
    cut: bool,
}

/// What the proxy recorded (protocol and direction aside, which differ by
/// path and are checked apart).
#[derive(Debug, PartialEq)]
struct Recorded {
    method: Option<String>,
    path: Option<String>,
    authority: String,
    server: Option<String>,
    status: Option<u16>,
    grpc_status: Option<u32>,
    error: Option<ErrorKind>,
    req_bytes: u64,
    resp_bytes: u64,
}

impl Recorded {
    /// What `record` says, with the addresses of the proxy and of the
    /// upstream, which each path has its own of, as `<proxy>` and
    /// `<upstream>`.
    fn of(path: Path, record: &RequestRecord, proxy: SocketAddr, upstream: &Dest) -> Recorded {
        let h2 = matches!(record.protocol, HttpProtocol::H2 | HttpProtocol::Grpc);
        assert_eq!(h2, path.http2(), "protocol {:?}", record.protocol);
        let (proxy, upstream) = (proxy.to_string(), upstream.to_string());
        let name = |addr: String| {
            if addr == proxy {
                "<proxy>".to_owned()
            } else if addr == upstream {
                "<upstream>".to_owned()
            } else {
                addr
            }
        };
        Recorded {
            method: record.method.as_ref().map(|m| m.to_string()),
            path: record.path.clone(),
            authority: name(record.authority.to_string()),
            server: record.server.map(|server| name(server.to_string())),
            status: record.status,
            grpc_status: record.grpc_status,
            error: record.error,
            req_bytes: record.req_bytes,
            resp_bytes: record.resp_bytes,
        }
    }
}

/// One case on one path.
#[derive(Debug, PartialEq)]
struct Seen {
    answer: Answer,
    record: Recorded,
}

type Run = fn(Path) -> Pin<Box<dyn Future<Output = Option<Seen>> + Send>>;

struct Case {
    name: &'static str,
    paths: &'static [Path],
    /// Runs the case on a path: `None` when this host cannot stage it.
    run: Run,
    /// What every path must come to.
    expect: fn(&Seen),
}

static CASES: &[Case] = &[
    Case {
        name: "refused",
        paths: ALL,
        run: |path| Box::pin(refused(path)),
        expect: |seen| {
            bad_gateway(seen, ErrorKind::ConnectRefused);
            let body = &seen.answer.body;
            assert!(
                body.starts_with("upstream connect error: connect_refused connecting to"),
                "{body}"
            );
        },
    },
    Case {
        name: "refused, gRPC",
        paths: HTTP2,
        run: |path| Box::pin(refused_grpc(path)),
        expect: |seen| {
            assert_eq!(seen.answer.status, 200, "gRPC errors travel in grpc-status");
            assert_eq!(seen.answer.grpc_status.as_deref(), Some("14"));
            assert_eq!(
                seen.answer.content_type.as_deref(),
                Some("application/grpc")
            );
            assert!(seen.answer.body.is_empty(), "a trailers-only answer");
            assert_eq!(seen.record.error, Some(ErrorKind::ConnectRefused));
            assert_eq!(seen.record.status, None);
        },
    },
    Case {
        name: "connect timeout",
        paths: ALL,
        run: |path| Box::pin(connect_timeout(path)),
        expect: |seen| bad_gateway(seen, ErrorKind::ConnectTimeout),
    },
    Case {
        name: "DNS failure",
        paths: ALL,
        run: |path| Box::pin(dns_failure(path)),
        expect: |seen| {
            bad_gateway(seen, ErrorKind::Dns);
            assert_eq!(seen.record.server, None, "no address was reached");
        },
    },
    Case {
        name: "no answer",
        paths: HTTP1,
        run: |path| Box::pin(raw_upstream(path, b"")),
        expect: |seen| {
            bad_gateway(seen, ErrorKind::UpstreamReset);
            assert_eq!(
                seen.answer.body,
                "upstream closed the connection before answering\n"
            );
        },
    },
    Case {
        name: "malformed answer",
        paths: HTTP1,
        run: |path| Box::pin(raw_upstream(path, b"HTTP/1.1 abc\r\n\r\n")),
        expect: |seen| {
            bad_gateway(seen, ErrorKind::Protocol);
            assert_eq!(
                seen.answer.body,
                "upstream sent a malformed response head\n"
            );
        },
    },
    Case {
        name: "reset mid-body",
        paths: ALL,
        run: |path| Box::pin(reset_mid_body(path)),
        expect: |seen| {
            assert_eq!(seen.answer.status, 200);
            assert_eq!(seen.answer.body, "partial");
            assert!(seen.answer.cut, "the client must not see a complete body");
            assert_eq!(seen.record.status, Some(200));
            assert_eq!(seen.record.error, Some(ErrorKind::UpstreamReset));
            assert_eq!(seen.record.resp_bytes, 7);
        },
    },
    Case {
        name: "malformed head",
        paths: HTTP1,
        run: |path| Box::pin(malformed_head(path)),
        expect: |seen| {
            assert_eq!(seen.answer.status, 400);
            assert_eq!(seen.record.status, Some(400));
            assert_eq!(seen.record.error, Some(ErrorKind::Protocol));
            assert_eq!(seen.record.method, None, "the request could not be parsed");
        },
    },
    Case {
        name: "trailers",
        paths: ALL,
        run: |path| Box::pin(from_backend(path, Method::GET, "/trailers", false)),
        expect: |seen| {
            assert_eq!(seen.answer.body, "data");
            assert_eq!(
                seen.answer.trailers,
                [("x-trailer".to_owned(), "done".to_owned())]
            );
            assert_eq!(seen.record.status, Some(200));
            assert_eq!(seen.record.error, None);
            assert_eq!(seen.record.resp_bytes, 4);
        },
    },
    Case {
        name: "gRPC status",
        paths: HTTP2,
        run: |path| Box::pin(from_backend(path, Method::POST, "/grpc-status/13", true)),
        expect: |seen| {
            assert_eq!(seen.answer.grpc_status.as_deref(), Some("13"));
            assert_eq!(seen.record.grpc_status, Some(13));
            assert_eq!(seen.record.status, Some(200));
            assert_eq!(seen.record.error, None);
        },
    },
    Case {
        name: "1xx",
        paths: HTTP1,
        run: |path| Box::pin(interim(path)),
        expect: |seen| {
            assert_eq!(seen.answer.status, 200);
            assert_eq!(seen.answer.body, "ok");
            assert_eq!(seen.record.status, Some(200), "the final status");
            assert_eq!(seen.record.resp_bytes, 2);
        },
    },
    Case {
        name: "HEAD",
        paths: HTTP1,
        run: |path| Box::pin(from_backend(path, Method::HEAD, "/bytes/1000", false)),
        expect: |seen| bodiless(seen, 200),
    },
    Case {
        name: "204",
        paths: ALL,
        run: |path| Box::pin(from_backend(path, Method::GET, "/status/204", false)),
        expect: |seen| bodiless(seen, 204),
    },
    Case {
        name: "304",
        paths: ALL,
        run: |path| Box::pin(from_backend(path, Method::GET, "/status/304", false)),
        expect: |seen| bodiless(seen, 304),
    },
    Case {
        name: "upgrade",
        paths: HTTP1,
        run: |path| Box::pin(upgrade(path)),
        expect: |seen| {
            assert_eq!(seen.answer.status, 101);
            assert_eq!(
                seen.answer.body, "ping",
                "the tunnel carries bytes both ways"
            );
            assert_eq!(seen.record.status, Some(101));
            assert_eq!(seen.record.error, None);
        },
    },
];

/// The proxy's own 502 for a request it could not forward.
fn bad_gateway(seen: &Seen, error: ErrorKind) {
    assert_eq!(seen.answer.status, 502);
    assert_eq!(
        seen.answer.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert!(seen.answer.body.ends_with('\n'), "a line of text");
    assert!(!seen.answer.cut);
    assert_eq!(seen.record.error, Some(error));
    assert_eq!(
        seen.record.status, None,
        "a response made up by the proxy has no upstream status"
    );
}

fn bodiless(seen: &Seen, status: u16) {
    assert_eq!(seen.answer.status, status);
    assert!(seen.answer.body.is_empty());
    assert!(!seen.answer.cut);
    assert_eq!(
        (
            seen.record.status,
            seen.record.error,
            seen.record.resp_bytes
        ),
        (Some(status), None, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_answers_and_records_every_case_alike() {
    let mut runs = Vec::new();
    for case in CASES {
        for &path in case.paths {
            let run = tokio::spawn(async move {
                let seen = (case.run)(path).await?;
                (case.expect)(&seen);
                Some(seen)
            });
            runs.push((case, path, run));
        }
    }
    let mut failures = Vec::new();
    let mut first: Option<(&str, Path, Seen)> = None;
    for (case, path, run) in runs {
        let seen = match run.await {
            Ok(Some(seen)) => seen,
            Ok(None) => {
                eprintln!(
                    "{}: skipped on {path:?}: this host cannot stage it",
                    case.name
                );
                continue;
            }
            Err(err) => {
                failures.push(format!("{} on {path:?}: {}", case.name, panic_text(err)));
                continue;
            }
        };
        match &first {
            Some((name, other, expected)) if *name == case.name => {
                if seen != *expected {
                    failures.push(format!(
                        "{} differs between {other:?} and {path:?}:\n  {expected:?}\n  {seen:?}",
                        case.name
                    ));
                }
            }
            _ => first = Some((case.name, path, seen)),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn panic_text(err: tokio::task::JoinError) -> String {
    match err.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".to_owned()),
        Err(err) => err.to_string(),
    }
}

/// A request as the client sends it.
struct Ask<'a> {
    method: Method,
    path: &'a str,
    grpc: bool,
    /// Says `TE: trailers`: without it, no trailers come back. (gRPC
    /// always says it; on HTTP/1 the relay leaves such requests to hyper.)
    te: bool,
    /// Told when the first byte of the answer's body arrived.
    first_data: Option<Arc<Notify>>,
}

impl Ask<'_> {
    fn get(path: &str) -> Ask<'_> {
        Ask {
            method: Method::GET,
            path,
            grpc: false,
            te: false,
            first_data: None,
        }
    }
}

/// Sends one request through a proxy started for `path` and returns what
/// the client saw and the proxy recorded.
async fn exchange(path: Path, upstream: &Dest, ask: Ask<'_>, connect_timeout: Duration) -> Seen {
    let mut proxy = path.proxy(upstream, connect_timeout).await;
    let mut req = Request::builder()
        .method(ask.method.clone())
        .uri(path.target(upstream, ask.path));
    if !path.http2() {
        req = req.header("host", upstream.to_string());
    }
    if ask.te || ask.grpc {
        req = req.header("te", "trailers");
    }
    if ask.grpc {
        req = req.header("content-type", "application/grpc");
    }
    let req = req.body(empty()).expect("a valid request");
    let resp = if path.http2() {
        let mut client = http2_conn(proxy.addr()).await;
        within("a response head", client.send_request(req)).await
    } else {
        let mut client = http1_conn(proxy.addr()).await;
        within("a response head", client.send_request(req)).await
    };
    let resp = resp.expect("a response head");
    let mut answer = read_answer(resp, ask.first_data.as_deref()).await;
    answer.body = answer.body.replace(&upstream.to_string(), "<upstream>");
    let record = proxy.next_request().await;
    let record = Recorded::of(path, &record, proxy.addr(), upstream);
    proxy.stop().await;
    Seen { answer, record }
}

async fn read_answer(resp: Response<hyper::body::Incoming>, first_data: Option<&Notify>) -> Answer {
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let mut answer = Answer {
        status: resp.status().as_u16(),
        content_type: header("content-type"),
        grpc_status: header("grpc-status"),
        ..Answer::default()
    };
    let mut body = resp.into_body();
    let mut data = Vec::new();
    while let Some(frame) = within("the answer's body", body.frame()).await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(_) => {
                answer.cut = true;
                break;
            }
        };
        match frame.into_data() {
            Ok(chunk) => {
                if data.is_empty()
                    && !chunk.is_empty()
                    && let Some(notify) = first_data
                {
                    notify.notify_one();
                }
                data.extend_from_slice(&chunk);
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    for (name, value) in &trailers {
                        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                        if name == "grpc-status" {
                            answer.grpc_status = Some(value.clone());
                        }
                        answer.trailers.push((name.to_string(), value));
                    }
                }
            }
        }
    }
    answer.body = String::from_utf8_lossy(&data).into_owned();
    answer.trailers.sort();
    answer
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

async fn refused(path: Path) -> Option<Seen> {
    let upstream = Dest::Addr(closed_port());
    Some(exchange(path, &upstream, Ask::get("/"), CONNECT_TIMEOUT).await)
}

async fn refused_grpc(path: Path) -> Option<Seen> {
    let upstream = Dest::Addr(closed_port());
    let ask = Ask {
        method: Method::POST,
        path: "/meshtop.test.v1.Echo/Unary",
        grpc: true,
        te: true,
        first_data: None,
    };
    Some(exchange(path, &upstream, ask, CONNECT_TIMEOUT).await)
}

async fn connect_timeout(path: Path) -> Option<Seen> {
    let (_listener, _fillers, addr) = unresponsive_upstream();
    // Confirm the kernel really leaves connects hanging here.
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        return None;
    }
    let upstream = Dest::Addr(addr);
    let timeout = Duration::from_millis(300);
    Some(exchange(path, &upstream, Ask::get("/"), timeout).await)
}

async fn dns_failure(path: Path) -> Option<Seen> {
    let upstream = Dest::Name {
        host: "no-such-host.invalid".into(),
        port: 80,
    };
    Some(exchange(path, &upstream, Ask::get("/"), CONNECT_TIMEOUT).await)
}

async fn raw_upstream(path: Path, response: &'static [u8]) -> Option<Seen> {
    let upstream = Dest::Addr(raw_server(response).await);
    Some(exchange(path, &upstream, Ask::get("/"), CONNECT_TIMEOUT).await)
}

async fn reset_mid_body(path: Path) -> Option<Seen> {
    let reset = Arc::new(Notify::new());
    let server = if path.http2() {
        resetting_h2_server(reset.clone()).await
    } else {
        // 7 of 1000 bytes, then the connection closes.
        raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial").await
    };
    let ask = Ask {
        first_data: Some(reset),
        ..Ask::get("/")
    };
    Some(exchange(path, &Dest::Addr(server), ask, CONNECT_TIMEOUT).await)
}

async fn from_backend(path: Path, method: Method, target: &str, grpc: bool) -> Option<Seen> {
    let backend = backend().await;
    let ask = Ask {
        method,
        path: target,
        grpc,
        te: target == "/trailers",
        first_data: None,
    };
    Some(exchange(path, &Dest::Addr(backend.addr), ask, CONNECT_TIMEOUT).await)
}

/// The status of an HTTP/1 head read by hand.
fn status_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"))
}

async fn malformed_head(path: Path) -> Option<Seen> {
    let backend = backend().await;
    let upstream = Dest::Addr(backend.addr);
    let mut proxy = path.proxy(&upstream, CONNECT_TIMEOUT).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    let target = path.target(&upstream, "/");
    raw.send(format!("GET {target} HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n").as_bytes())
        .await;
    let answer = raw.read_to_end().await;
    let answer = String::from_utf8_lossy(&answer);
    let answer = Answer {
        status: status_of(&answer),
        ..Answer::default()
    };
    let record = proxy.next_request().await;
    let record = Recorded::of(path, &record, proxy.addr(), &upstream);
    proxy.stop().await;
    Some(Seen { answer, record })
}

/// Reads responses until a final one: its head and body, and the statuses
/// of the interim ones before it.
async fn read_final(raw: &mut RawConn) -> (Answer, String) {
    let mut interim = Vec::new();
    loop {
        let (head, body) = raw.read_response().await;
        let status = status_of(&head);
        if status >= 200 || status == 101 {
            let content_type = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-type")
                    .then(|| value.trim().to_owned())
            });
            let answer = Answer {
                status,
                interim,
                content_type,
                body: String::from_utf8_lossy(&body).into_owned(),
                ..Answer::default()
            };
            return (answer, head);
        }
        interim.push(status);
    }
}

async fn interim(path: Path) -> Option<Seen> {
    let server = raw_server(
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    let upstream = Dest::Addr(server);
    let mut proxy = path.proxy(&upstream, CONNECT_TIMEOUT).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    let target = path.target(&upstream, "/");
    raw.send(format!("GET {target} HTTP/1.1\r\nHost: {upstream}\r\n\r\n").as_bytes())
        .await;
    let (mut answer, _) = read_final(&mut raw).await;
    // The one difference left between the paths: the relay passes interim
    // responses on as they came, while hyper's client takes them in and
    // shows the forwarder only the final one.
    let expected: &[u16] = if path == Relay { &[103] } else { &[] };
    assert_eq!(answer.interim, expected, "interim responses on {path:?}");
    answer.interim.clear();
    drop(raw);
    let record = proxy.next_request().await;
    let record = Recorded::of(path, &record, proxy.addr(), &upstream);
    proxy.stop().await;
    Some(Seen { answer, record })
}

/// An upstream that switches every request to a protocol that echoes.
async fn echo_upgrade_server() -> SocketAddr {
    let listener = TcpListener::bind(local0())
        .await
        .expect("bind upgrade server");
    let addr = listener.local_addr().expect("upgrade server address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if read_request_head(&mut stream).await.is_none() {
                    return;
                }
                let switched = b"HTTP/1.1 101 Switching Protocols\r\n\
                    connection: upgrade\r\nupgrade: echo\r\n\r\n";
                if stream.write_all(switched).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn upgrade(path: Path) -> Option<Seen> {
    let server = echo_upgrade_server().await;
    let upstream = Dest::Addr(server);
    let mut proxy = path.proxy(&upstream, CONNECT_TIMEOUT).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    let target = path.target(&upstream, "/chat");
    raw.send(
        format!(
            "GET {target} HTTP/1.1\r\nHost: {upstream}\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let (mut answer, _) = read_final(&mut raw).await;
    raw.send(b"ping").await;
    answer.body = String::from_utf8_lossy(&raw.read_exact(4).await).into_owned();
    let record = proxy.next_request().await;
    let record = Recorded::of(path, &record, proxy.addr(), &upstream);
    drop(raw);
    // The tunnel is recorded as a connection of its own when it ends.
    let tunnel = proxy.next_tcp().await;
    assert_eq!(tunnel.server, Some(server));
    assert_eq!(
        (tunnel.bytes_in, tunnel.bytes_out, tunnel.error),
        (4, 4, None)
    );
    proxy.stop().await;
    Some(Seen { answer, record })
}
