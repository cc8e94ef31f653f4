//! Shared test helpers: an in-process proxy with its record channel, real
//! HTTP/1.1 + h2c and gRPC backends, and waiting with deadlines.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use meshtop::proxy::{BoundListener, Dest, ListenerConfig, Proxy, ProxyConfig};
use meshtop::telemetry::{Direction, Record, RecordReceiver, Recorder, RequestRecord, TcpRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub mod echo {
    tonic::include_proto!("meshtop.test.v1");
}

/// How long any single wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`DEADLINE`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A proxy running in this process, with its records.
pub struct TestProxy {
    pub listeners: Vec<BoundListener>,
    pub admin: SocketAddr,
    pub records: RecordReceiver,
    pub shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TestProxy {
    pub async fn start(config: ProxyConfig) -> TestProxy {
        let (recorder, records) = Recorder::channel(100_000);
        let proxy = Proxy::bind_with_recorder(config, recorder)
            .await
            .expect("proxy binds");
        let listeners = proxy.listeners().to_vec();
        let admin = proxy.admin_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(proxy.run(shutdown.clone()));
        TestProxy {
            listeners,
            admin,
            records,
            shutdown,
            task,
        }
    }

    /// A proxy with one listener of `direction` sending everything to `target`.
    pub async fn to(direction: Direction, target: Dest) -> TestProxy {
        TestProxy::start(config(vec![ListenerConfig {
            direction,
            addr: local0(),
            target: Some(target),
        }]))
        .await
    }

    /// A proxy with one inbound listener in front of `backend`.
    pub async fn inbound_to(backend: SocketAddr) -> TestProxy {
        TestProxy::to(Direction::Inbound, Dest::Addr(backend)).await
    }

    /// A proxy with one outbound listener and no target: an explicit proxy.
    pub async fn explicit() -> TestProxy {
        TestProxy::start(config(vec![ListenerConfig {
            direction: Direction::Outbound,
            addr: local0(),
            target: None,
        }]))
        .await
    }

    /// The address of the first listener.
    pub fn addr(&self) -> SocketAddr {
        self.listeners[0].addr
    }

    pub async fn next_record(&mut self) -> Record {
        within("a record", self.records.recv())
            .await
            .expect("the proxy keeps the record channel open")
    }

    /// The next request record, skipping connection records.
    pub async fn next_request(&mut self) -> RequestRecord {
        loop {
            if let Record::Request(record) = self.next_record().await {
                return record;
            }
        }
    }

    /// The next connection record, skipping request records.
    pub async fn next_tcp(&mut self) -> TcpRecord {
        loop {
            if let Record::Tcp(record) = self.next_record().await {
                return record;
            }
        }
    }

    /// Stops the proxy and returns every record not taken yet.
    pub async fn stop_with_records(mut self) -> Vec<Record> {
        self.shutdown.cancel();
        within("the proxy to stop", &mut self.task)
            .await
            .expect("proxy task ends cleanly");
        let mut records = Vec::new();
        while let Ok(record) = self.records.try_recv() {
            records.push(record);
        }
        records
    }

    /// Asks the proxy to stop and waits until it has drained.
    pub async fn stop(self) {
        self.shutdown.cancel();
        within("the proxy to stop", self.task)
            .await
            .expect("proxy task ends cleanly");
    }
}

pub fn local0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A test configuration: the admin on an ephemeral port, short timeouts.
pub fn config(listeners: Vec<ListenerConfig>) -> ProxyConfig {
    let mut config = ProxyConfig::new("test-sidecar", listeners);
    config.admin = local0();
    config.namespace = Some("testns".into());
    config.connect_timeout = Duration::from_secs(5);
    config.drain_timeout = Duration::from_secs(5);
    config
}

/// A port that was free a moment ago, for a server the test starts later
/// (another test could take it meanwhile: use [`closed_port`] when only
/// refusal matters).
pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr")
}

/// An address where nothing listens: connections are refused. The port
/// stays bound (without listening) for the rest of the test process, so no
/// other test's server can take it meanwhile.
pub fn closed_port() -> SocketAddr {
    static RESERVED: std::sync::Mutex<Vec<socket2::Socket>> = std::sync::Mutex::new(Vec::new());
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&local0().into()).expect("bind");
    let addr = socket
        .local_addr()
        .expect("local addr")
        .as_socket()
        .expect("an inet address");
    RESERVED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(socket);
    addr
}

/// A real HTTP/1.1 + h2c server (hyper's auto builder) with test routes:
///
/// - `/echo`: streams the request body (and its trailers) back; `x-seen-host`
///   and `x-seen-headers` tell what arrived, and the request's `Trailer`
///   declaration is repeated (HTTP/1 sends only declared trailers).
/// - `/status/N`: answers status N with an empty body.
/// - `/bytes/N`: streams N bytes in 64 KiB chunks.
/// - `/grpc-status/N`: a trailers-only gRPC answer with `grpc-status: N`.
/// - `/trailers`: a body followed by trailers `x-trailer: done` (declared in
///   `Trailer`).
/// - `/reset`: sends part of a body and then fails it (an h2 reset, or a
///   truncated HTTP/1 body).
/// - `/hang`: a body that never ends; reports `dropped /hang` on `events`
///   when the server drops it (the stream was cancelled).
pub struct Backend {
    pub addr: SocketAddr,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    pub events: mpsc::UnboundedReceiver<String>,
}

pub async fn backend() -> Backend {
    let listener = TcpListener::bind(local0()).await.expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let (events_tx, events) = mpsc::unbounded_channel();
    let accepted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            let events = events_tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| route(req, events.clone()));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Backend {
        addr,
        connections,
        events,
    }
}

pub type TestBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn boxed<B>(body: B) -> TestBody
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    body.map_err(Into::into).boxed()
}

async fn route(
    req: Request<Incoming>,
    events: mpsc::UnboundedSender<String>,
) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let mut resp = if path == "/echo" {
        let host = req.headers().get("host").cloned();
        let declared = req.headers().get("trailer").cloned();
        let mut names: Vec<String> = req
            .headers()
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect();
        names.sort();
        let mut resp = Response::new(boxed(req.into_body()));
        if let Some(host) = host {
            resp.headers_mut().insert("x-seen-host", host);
        }
        if let Some(declared) = declared {
            resp.headers_mut().insert("trailer", declared);
        }
        let names = HeaderValue::from_str(&names.join(",")).expect("header names are valid values");
        resp.headers_mut().insert("x-seen-headers", names);
        resp
    } else if let Some(code) = path.strip_prefix("/status/") {
        let mut resp = Response::new(boxed(Full::new(Bytes::new())));
        *resp.status_mut() = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        resp
    } else if let Some(code) = path.strip_prefix("/grpc-status/") {
        // A trailers-only gRPC answer with any status, standard or not.
        let mut resp = Response::new(boxed(Full::new(Bytes::new())));
        let headers = resp.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        if let Ok(code) = HeaderValue::from_str(code) {
            headers.insert("grpc-status", code);
        }
        resp
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        let total: u64 = n.parse().unwrap_or(0);
        Response::new(boxed(Zeros { left: total }))
    } else if path == "/trailers" {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-trailer", HeaderValue::from_static("done"));
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"data"))),
            Ok(Frame::trailers(trailers)),
        ];
        let mut resp = Response::new(boxed(StreamBody::new(futures_util::stream::iter(frames))));
        resp.headers_mut()
            .insert("trailer", HeaderValue::from_static("x-trailer"));
        resp
    } else if path == "/reset" {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"partial"))),
            Err(std::io::Error::other("backend gives up mid-body")),
        ];
        let mut resp = Response::new(boxed(StreamBody::new(futures_util::stream::iter(frames))));
        resp.headers_mut()
            .insert("content-length", HeaderValue::from_static("1000"));
        resp
    } else if path == "/hang" {
        Response::new(boxed(Hang {
            events: events.clone(),
        }))
    } else {
        let mut resp = Response::new(boxed(Full::new(Bytes::from_static(b"not found"))));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        resp
    };
    resp.headers_mut()
        .insert("x-backend", HeaderValue::from_static("yes"));
    Ok(resp)
}

/// A body of `left` zero bytes, produced in 64 KiB chunks as it is read.
pub struct Zeros {
    pub left: u64,
}

static ZEROS: [u8; 65536] = [0; 65536];

impl Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(ZEROS.len() as u64);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            &ZEROS[..n as usize],
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

struct Hang {
    events: mpsc::UnboundedSender<String>,
}

impl Body for Hang {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}

impl Drop for Hang {
    fn drop(&mut self) {
        let _ = self.events.send("dropped /hang".into());
    }
}

/// A tonic server for the test `Echo` service with every call type. A
/// request with `fail_with` set is answered with that status at once (a
/// trailers-only response).
pub async fn grpc_backend() -> SocketAddr {
    use echo::echo_server::EchoServer;
    let listener = TcpListener::bind(local0())
        .await
        .expect("bind grpc backend");
    let addr = listener.local_addr().expect("grpc addr");
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoServer::new(EchoService))
            .serve_with_incoming(incoming),
    );
    addr
}

pub struct EchoService;

type ResponseStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<echo::EchoResponse, tonic::Status>> + Send>>;

fn check(req: &echo::EchoRequest) -> Result<(), tonic::Status> {
    if req.fail_with != 0 {
        return Err(tonic::Status::new(
            tonic::Code::from_i32(req.fail_with),
            format!("failed as asked: {}", req.message),
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl echo::echo_server::Echo for EchoService {
    async fn unary(
        &self,
        request: tonic::Request<echo::EchoRequest>,
    ) -> Result<tonic::Response<echo::EchoResponse>, tonic::Status> {
        let req = request.into_inner();
        check(&req)?;
        Ok(tonic::Response::new(echo::EchoResponse {
            message: req.message,
        }))
    }

    type ServerStreamStream = ResponseStream;

    async fn server_stream(
        &self,
        request: tonic::Request<echo::EchoRequest>,
    ) -> Result<tonic::Response<Self::ServerStreamStream>, tonic::Status> {
        let req = request.into_inner();
        check(&req)?;
        let items = (0..req.count).map(move |i| {
            Ok(echo::EchoResponse {
                message: format!("{} {i}", req.message),
            })
        });
        Ok(tonic::Response::new(Box::pin(futures_util::stream::iter(
            items,
        ))))
    }

    async fn client_stream(
        &self,
        request: tonic::Request<tonic::Streaming<echo::EchoRequest>>,
    ) -> Result<tonic::Response<echo::EchoResponse>, tonic::Status> {
        let mut stream = request.into_inner();
        let mut parts = Vec::new();
        while let Some(req) = stream.message().await? {
            check(&req)?;
            parts.push(req.message);
        }
        Ok(tonic::Response::new(echo::EchoResponse {
            message: parts.join(","),
        }))
    }

    type BidiStream = ResponseStream;

    async fn bidi(
        &self,
        request: tonic::Request<tonic::Streaming<echo::EchoRequest>>,
    ) -> Result<tonic::Response<Self::BidiStream>, tonic::Status> {
        let stream = request.into_inner();
        let output = futures_util::stream::unfold(stream, |mut stream| async move {
            let item = match stream.message().await {
                Ok(Some(req)) => check(&req).map(|()| echo::EchoResponse {
                    message: req.message,
                }),
                Ok(None) => return None,
                Err(status) => Err(status),
            };
            Some((item, stream))
        });
        Ok(tonic::Response::new(Box::pin(output)))
    }
}

/// A gRPC client for the test service through `addr`.
pub async fn grpc_client(
    addr: SocketAddr,
) -> echo::echo_client::EchoClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid endpoint")
        .connect()
        .await
        .expect("grpc channel connects");
    echo::echo_client::EchoClient::new(channel)
}

/// An HTTP/1.1 client connection to `addr`.
pub async fn http1_conn(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http/1 handshake");
    tokio::spawn(conn.with_upgrades());
    sender
}

/// An HTTP/2 (prior knowledge, h2c) client connection to `addr`.
pub async fn http2_conn(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<TestBody> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

pub fn empty() -> TestBody {
    boxed(Full::new(Bytes::new()))
}

pub fn full(data: impl Into<Bytes>) -> TestBody {
    boxed(Full::new(data.into()))
}

/// A GET request for `uri` with the given `Host`.
pub fn get(uri: &str, host: &str) -> Request<TestBody> {
    Request::builder()
        .uri(uri)
        .header("host", host)
        .body(empty())
        .expect("valid request")
}

/// Reads a whole response body.
pub async fn body_bytes(resp: Response<Incoming>) -> Bytes {
    within("a response body", resp.into_body().collect())
        .await
        .expect("the body arrives whole")
        .to_bytes()
}

/// Whether `program` can be run here.
pub fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// The `meshtop` binary built for these tests.
pub fn meshtop_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_meshtop"))
}

/// `meshtop proxy` running as its own process, with the addresses it bound.
pub struct BinProxy {
    pub child: tokio::process::Child,
    /// Listener addresses in the order they were logged.
    pub listeners: Vec<SocketAddr>,
    pub admin: SocketAddr,
    /// The rest of the process's log, line by line.
    pub log: mpsc::UnboundedReceiver<String>,
}

impl BinProxy {
    /// Starts `meshtop proxy ARGS` and waits until it logged its addresses
    /// (listeners given as `127.0.0.1:0` get an ephemeral port).
    pub async fn start(args: &[&str]) -> BinProxy {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshtop"))
            .arg("proxy")
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("meshtop runs");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut listeners = Vec::new();
        let admin = within("the proxy to log its addresses", async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .expect("stderr readable")
                    .unwrap_or_else(|| panic!("meshtop exited before listening"));
                let addr = line
                    .split_whitespace()
                    .find_map(|field| field.strip_prefix("addr="))
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                match addr {
                    Some(addr) if line.contains("admin listening") => return addr,
                    Some(addr) if line.contains("listening") => listeners.push(addr),
                    _ => {}
                }
            }
        })
        .await;
        let (log_tx, log) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = log_tx.send(line);
            }
        });
        BinProxy {
            child,
            listeners,
            admin,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the proxy is running")
    }

    /// Sends a signal (`TERM`, `INT`) to the proxy.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("procfs");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/PID/status"))
    }
}

/// A GET on the admin address: status and body.
pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut conn = http1_conn(admin).await;
    let resp = within(
        "an admin response",
        conn.send_request(get(path, "localhost")),
    )
    .await
    .expect("admin answers");
    let status = resp.status().as_u16();
    let body = body_bytes(resp).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A full sidecar in this process: proxy plus telemetry on the admin address.
pub struct Sidecar {
    pub listeners: Vec<BoundListener>,
    pub admin: SocketAddr,
    pub public_admin: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Sidecar {
    pub async fn start(config: ProxyConfig) -> Sidecar {
        let proxy = Proxy::bind(config).await.expect("sidecar binds");
        let listeners = proxy.listeners().to_vec();
        let admin = proxy.admin_addr();
        let public_admin = proxy.public_admin_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(proxy.run(shutdown.clone()));
        Sidecar {
            listeners,
            admin,
            public_admin,
            shutdown,
            task,
        }
    }

    /// A sidecar with one inbound listener in front of `backend`.
    pub async fn inbound_to(backend: SocketAddr) -> Sidecar {
        Sidecar::start(config(vec![ListenerConfig {
            direction: Direction::Inbound,
            addr: local0(),
            target: Some(Dest::Addr(backend)),
        }]))
        .await
    }

    pub fn addr(&self) -> SocketAddr {
        self.listeners[0].addr
    }

    /// The sidecar's task, to wait for after cancelling `shutdown` here.
    pub fn task_handle(self) -> tokio::task::JoinHandle<()> {
        self.task
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        within("the sidecar to stop", self.task)
            .await
            .expect("sidecar task ends cleanly");
    }
}

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket subscriber of `/events`.
pub struct Events {
    pub ws: WsStream,
}

impl Events {
    /// Subscribes with `query` (e.g. `?direction=inbound`, or empty).
    pub async fn connect(admin: SocketAddr, query: &str) -> Events {
        let url = format!("ws://{admin}/events{query}");
        let (ws, _) = within(
            "the events handshake",
            tokio_tungstenite::connect_async(url),
        )
        .await
        .expect("events handshake succeeds");
        Events { ws }
    }

    /// The next message of the stream, decoded.
    pub async fn next(&mut self) -> meshtop::telemetry::event::Message {
        use futures_util::StreamExt;
        loop {
            let frame = within("an event", self.ws.next())
                .await
                .expect("the stream stays open")
                .expect("a valid frame");
            if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
                return serde_json::from_str(&text).expect("a schema message");
            }
        }
    }

    /// The next message as raw JSON, to check fields by name.
    pub async fn next_json(&mut self) -> serde_json::Value {
        use futures_util::StreamExt;
        loop {
            let frame = within("an event", self.ws.next())
                .await
                .expect("the stream stays open")
                .expect("a valid frame");
            if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
                return serde_json::from_str(&text).expect("json");
            }
        }
    }

    /// The next JSON message whose `type` is `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> serde_json::Value {
        loop {
            let json = self.next_json().await;
            if json["type"] == kind {
                return json;
            }
        }
    }
}

/// `meshtop ARGS` as a child process with piped output, killed on drop.
pub fn meshtop(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshtop"));
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A sidecar configuration named `name` with one inbound listener in front
/// of `backend`, sending stats five times a second.
pub fn sidecar_config(backend: SocketAddr, name: &str) -> ProxyConfig {
    let mut config = config(vec![ListenerConfig {
        direction: Direction::Inbound,
        addr: local0(),
        target: Some(Dest::Addr(backend)),
    }]);
    config.name = name.into();
    config.telemetry.stats_interval = Duration::from_millis(200);
    config
}

/// Waits until the sidecar at `admin` has at least `n` event subscribers
/// (read from its metrics).
pub async fn wait_for_subscribers(admin: SocketAddr, n: u64) {
    within("the subscribers", async {
        loop {
            let (_, metrics) = admin_get(admin, "/metrics").await;
            let count = metrics
                .lines()
                .find_map(|l| l.strip_prefix("meshtop_subscribers "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            if count as u64 >= n {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// The last table a `--headless` run printed, and its rows (after the
/// header) split into columns.
pub fn last_table(stdout: &str) -> (&str, Vec<Vec<&str>>) {
    let table = stdout.trim_end().rsplit("\n\n").next().expect("a table");
    let rows = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    (table, rows)
}

/// A client that speaks HTTP/1.1 by hand, for what a library client would
/// hide or refuse to send: interim responses, malformed requests, CONNECT.
pub struct RawConn {
    pub stream: TcpStream,
    /// Bytes read past what has been handed out.
    pub buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = within("connecting to the proxy", TcpStream::connect(addr))
            .await
            .expect("connect");
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        within("a raw write", self.stream.write_all(bytes))
            .await
            .expect("the proxy accepts the bytes");
    }

    /// Reads more bytes into `buf`; false at the end of the stream.
    pub async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = within("bytes from the proxy", self.stream.read(&mut chunk))
            .await
            .expect("the connection reads cleanly");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// One response head (status line and fields, without the blank line).
    pub async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return String::from_utf8(head[..end].to_vec()).expect("the head is text");
            }
            assert!(
                self.fill().await,
                "the connection closed inside a response head"
            );
        }
    }

    pub async fn read_line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).collect();
                return String::from_utf8(line[..end].to_vec()).expect("the line is text");
            }
            assert!(self.fill().await, "the connection closed inside a line");
        }
    }

    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "the connection closed inside a body");
        }
        self.buf.drain(..n).collect()
    }

    /// A whole response: its head, and its body framed by Content-Length or
    /// chunked coding.
    pub async fn read_response(&mut self) -> (String, Vec<u8>) {
        let head = self.read_head().await;
        let field = |name: &str| {
            head.lines().skip(1).find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let body = if field("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            let mut body = Vec::new();
            loop {
                let line = self.read_line().await;
                let size = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16).expect("a chunk size");
                if size == 0 {
                    while !self.read_line().await.is_empty() {}
                    break body;
                }
                body.extend(self.read_exact(size).await);
                assert_eq!(self.read_exact(2).await, b"\r\n", "a chunk ends with CRLF");
            }
        } else {
            let len = field("content-length").map_or(0, |l| l.parse().expect("a content length"));
            self.read_exact(len).await
        };
        (head, body)
    }

    /// Everything until the proxy closes the connection.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }
}

/// Reads one request head from `stream`, a byte at a time so that nothing
/// after it is taken; `None` when the stream ends first.
pub async fn read_request_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => head.push(byte[0]),
        }
    }
    Some(head)
}

/// A hello a fake sidecar sends first.
pub const FAKE_HELLO: &str = r#"{"type":"hello","schema":1,"sidecar":{"name":"fake","namespace":null,"version":"0.0.0","started_at":"2026-11-30T03:42:30.123456Z"},"listeners":[]}"#;

/// A fake sidecar: a WebSocket server that says [`FAKE_HELLO`] to every
/// connection and then sends the texts `next(n)` gives for n = 0, 1, … as
/// fast as the client reads, until `next` gives `None` or the client goes.
pub struct FakeSidecar {
    pub addr: SocketAddr,
    /// Messages sent after the hello, over all connections.
    pub sent: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeSidecar {
    pub async fn start(next: impl Fn(usize) -> Option<String> + Send + Sync + 'static) -> Self {
        use futures_util::SinkExt;
        let listener = TcpListener::bind(local0()).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let sent = Arc::new(AtomicUsize::new(0));
        let next = Arc::new(next);
        let counter = sent.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (next, counter) = (next.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    let hello = tokio_tungstenite::tungstenite::Message::text(FAKE_HELLO);
                    if ws.send(hello).await.is_err() {
                        return;
                    }
                    let mut n = 0;
                    while let Some(text) = next(n) {
                        let message = tokio_tungstenite::tungstenite::Message::text(text);
                        if ws.send(message).await.is_err() {
                            return;
                        }
                        counter.fetch_add(1, Ordering::Relaxed);
                        n += 1;
                    }
                    // Then silence, as a hung peer.
                    std::future::pending::<()>().await;
                });
            }
        });
        FakeSidecar { addr, sent, task }
    }

    /// Waits until at least `n` messages were sent.
    pub async fn wait_sent(&self, n: usize) {
        within("the fake sidecar to send", async {
            while self.sent.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

impl Drop for FakeSidecar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Peak and current memory of a running process, from `/proc/PID/status`
/// (`VmHWM`, `VmRSS`), in KiB.
pub fn process_memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Sends a signal (`TERM`, `INT`) to a process.
pub fn kill(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid} failed");
}
