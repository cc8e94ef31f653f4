mod support;
use support::*;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshtop::telemetry::{ErrorKind, HttpProtocol, Record};
use support::echo::EchoRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

const MIB: u64 = 1024 * 1024;

/// An h2c request to `uri` (absolute: h2 needs `:scheme` and `:authority`).
fn h2_request(method: Method, uri: &str, body: TestBody) -> Request<TestBody> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(body)
        .expect("valid request")
}

/// A request body fed through a channel, so a test decides when each chunk
/// is sent and when the body ends.
fn channel_body() -> (mpsc::Sender<Bytes>, TestBody) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let frames =
        ReceiverStream::new(rx).map(|data| Ok::<_, std::convert::Infallible>(Frame::data(data)));
    let body = StreamBody::new(frames).map_err(Into::into).boxed();
    (tx, body)
}

/// Reads a body to its end, counting bytes without keeping them.
async fn count_body_bytes(resp: Response<Incoming>) -> u64 {
    let mut body = resp.into_body();
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the body streams without error");
        if let Some(data) = frame.data_ref() {
            total += data.len() as u64;
        }
    }
    total
}

/// Reads a body to its end: `Ok` for a clean end, else the error it ended with.
async fn body_end(mut body: Incoming) -> Result<(), hyper::Error> {
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(())
}

/// An h2c client connection to `addr` whose driver task is returned, so a
/// test can see the server close the connection.
async fn http2_conn_with_driver(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<TestBody>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    (sender, tokio::spawn(conn))
}

/// An h2 client straight on the `h2` crate, for frame-level assertions.
async fn raw_h2_conn(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = h2::client::handshake(stream).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// The HTTP/2 reason of a stream error reported by hyper.
fn h2_reason(err: &hyper::Error) -> Option<h2::Reason> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            return h2.reason();
        }
        source = cause.source();
    }
    None
}

/// A TCP relay in front of `server` that reports on `spoke` once the server's
/// first bytes have been passed on: an h2 server such as tonic sends its
/// SETTINGS as soon as it accepts, before the client has said anything.
async fn relay_reporting_first_server_bytes(
    server: SocketAddr,
) -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind(local0()).await.expect("bind relay");
    let addr = listener.local_addr().expect("relay addr");
    let (spoke_tx, spoke) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut downstream, _)) = listener.accept().await {
            let spoke = spoke_tx.clone();
            tokio::spawn(async move {
                let Ok(mut upstream) = tokio::net::TcpStream::connect(server).await else {
                    return;
                };
                let mut first = [0u8; 1024];
                let Ok(n) = upstream.read(&mut first).await else {
                    return;
                };
                if downstream.write_all(&first[..n]).await.is_err() {
                    return;
                }
                let _ = spoke.send(());
                let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
            });
        }
    });
    (addr, spoke)
}

/// A gRPC message frame: uncompressed, length-prefixed.
fn grpc_frame(message: &impl prost::Message) -> Bytes {
    let encoded = message.encode_to_vec();
    let mut frame = Vec::with_capacity(5 + encoded.len());
    frame.push(0);
    frame.extend_from_slice(
        &u32::try_from(encoded.len())
            .expect("small message")
            .to_be_bytes(),
    );
    frame.extend_from_slice(&encoded);
    frame.into()
}

fn echo_request(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
        ..EchoRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_h2_streams_share_one_upstream_connection() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let client = http2_conn(proxy.addr()).await;

    let mut calls = tokio::task::JoinSet::new();
    for i in 0..100 {
        let mut client = client.clone();
        calls.spawn(async move {
            let body = format!("stream body number {i}");
            let req = h2_request(Method::POST, "http://web-svc:80/echo", full(body.clone()));
            let resp = client.send_request(req).await.expect("response");
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.version(), http::Version::HTTP_2);
            assert_eq!(
                body_bytes(resp).await,
                body,
                "stream {i} gets its own body back"
            );
        });
    }
    while let Some(call) = within("100 concurrent streams", calls.join_next()).await {
        call.expect("every stream succeeds");
    }

    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        1,
        "all streams are multiplexed on one upstream connection"
    );
    for _ in 0..100 {
        let record = proxy.next_request().await;
        assert_eq!(record.protocol, HttpProtocol::H2);
        assert_eq!(&*record.authority, "web-svc:80");
        assert_eq!(record.method.as_ref().map(|m| m.as_str()), Some("POST"));
        assert_eq!(record.path.as_deref(), Some("/echo"));
        assert_eq!(record.status, Some(200));
        assert_eq!(record.server, Some(backend.addr));
        assert_eq!(record.error, None);
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_h2_body_streams_both_ways_under_flow_control() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let mut client = http2_conn(proxy.addr()).await;

    let upload: TestBody = Zeros { left: 64 * MIB }.map_err(Into::into).boxed();
    let req = h2_request(Method::POST, "http://web-svc/echo", upload);
    let resp = within("the response head", client.send_request(req))
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    let received = within("64 MiB echoed back", count_body_bytes(resp)).await;
    assert_eq!(received, 64 * MIB);

    let record = proxy.next_request().await;
    assert_eq!(record.protocol, HttpProtocol::H2);
    assert_eq!(record.req_bytes, 64 * MIB);
    assert_eq!(record.resp_bytes, 64 * MIB);
    assert_eq!(record.error, None);
    proxy.stop().await;
}

#[tokio::test]
async fn h2_trailers_reach_the_client_after_the_data() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let mut client = http2_conn(proxy.addr()).await;

    let resp = client
        .send_request(h2_request(Method::GET, "http://web-svc/trailers", empty()))
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = within("a body frame", body.frame()).await {
        frames.push(frame.expect("the body streams without error"));
    }
    let data: Vec<u8> = frames
        .iter()
        .filter_map(|f| f.data_ref())
        .flat_map(|d| d.to_vec())
        .collect();
    assert_eq!(data, b"data");
    let last = frames.last().expect("at least one frame");
    let trailers = last.trailers_ref().expect("the body ends with trailers");
    assert_eq!(
        trailers.get("x-trailer").map(|v| v.as_bytes()),
        Some(&b"done"[..])
    );

    let record = proxy.next_request().await;
    assert_eq!(record.status, Some(200));
    assert_eq!(record.resp_bytes, 4);
    assert_eq!(record.error, None);
    proxy.stop().await;
}

#[tokio::test]
async fn client_dropping_an_h2_response_cancels_the_upstream_stream() {
    let mut backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let mut client = http2_conn(proxy.addr()).await;

    let resp = within(
        "the response head",
        client.send_request(h2_request(Method::GET, "http://web-svc/hang", empty())),
    )
    .await
    .expect("response");
    assert_eq!(resp.status(), 200);
    // Dropping an unfinished h2 response body sends RST_STREAM(CANCEL).
    drop(resp);

    let event = within("the backend to drop /hang", backend.events.recv()).await;
    assert_eq!(event.as_deref(), Some("dropped /hang"));
    let record = proxy.next_request().await;
    assert_eq!(record.protocol, HttpProtocol::H2);
    assert_eq!(record.status, Some(200));
    assert_eq!(record.error, Some(ErrorKind::DownstreamReset));
    assert!(record.is_failure());
    proxy.stop().await;
}

#[tokio::test]
async fn client_rst_stream_during_its_request_body_cancels_the_upstream_stream() {
    let mut backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let client = raw_h2_conn(proxy.addr()).await;

    let mut client = within("the h2 connection to be ready", client.ready())
        .await
        .expect("ready");
    let req = Request::post("http://web-svc/hang")
        .body(())
        .expect("valid request");
    let (resp, mut request_body) = client.send_request(req, false).expect("stream opens");
    request_body
        .send_data(Bytes::from_static(b"some of the body"), false)
        .expect("data is sent");
    let resp = within("the response head", resp).await.expect("response");
    assert_eq!(resp.status(), 200);
    request_body.send_reset(h2::Reason::CANCEL);

    let event = within("the backend to drop /hang", backend.events.recv()).await;
    assert_eq!(event.as_deref(), Some("dropped /hang"));
    let record = proxy.next_request().await;
    assert_eq!(record.error, Some(ErrorKind::DownstreamReset));
    assert_eq!(record.req_bytes, 16);
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_reset_before_the_response_head_resets_the_client_stream() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let client = raw_h2_conn(proxy.addr()).await;
    let mut client = within("the h2 connection to be ready", client.ready())
        .await
        .expect("ready");

    // The backend's `/reset` fails its body in the same poll as it answers,
    // so its h2 connection drops the queued head and only RST_STREAM leaves.
    let req = Request::get("http://web-svc/reset")
        .body(())
        .expect("valid request");
    let (resp, _) = client.send_request(req, true).expect("stream opens");
    let err = within("the response", resp)
        .await
        .expect_err("the stream is reset");
    assert!(
        err.is_reset() && err.is_remote(),
        "expected RST_STREAM, got {err:?}"
    );
    assert_eq!(
        err.reason(),
        Some(h2::Reason::INTERNAL_ERROR),
        "the upstream's reason is passed on"
    );

    let record = proxy.next_request().await;
    assert_eq!(record.protocol, HttpProtocol::H2);
    assert_eq!(record.status, None);
    assert_eq!(record.error, Some(ErrorKind::UpstreamReset));
    assert!(record.is_failure());
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_reset_mid_body_ends_the_client_body_with_an_error() {
    let reset = Arc::new(Notify::new());
    let upstream = resetting_h2_server(reset.clone()).await;
    let mut proxy = TestProxy::inbound_to(upstream).await;

    // Through hyper: the body read ends in an error, not a clean end.
    let mut client = http2_conn(proxy.addr()).await;
    let resp = within(
        "the response head",
        client.send_request(h2_request(Method::GET, "http://web-svc/partial", empty())),
    )
    .await
    .expect("response");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = within("the first chunk", body.frame())
        .await
        .expect("a frame")
        .expect("no error yet");
    assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"partial"[..]));
    reset.notify_one();
    let ended = within("the body to end", body_end(body)).await;
    let err = ended.expect_err("a reset upstream stream must not look like a complete body");
    assert_eq!(h2_reason(&err), Some(h2::Reason::INTERNAL_ERROR), "{err:?}");
    let record = proxy.next_request().await;
    assert_eq!(record.protocol, HttpProtocol::H2);
    assert_eq!(record.status, Some(200));
    assert_eq!(record.resp_bytes, 7);
    assert_eq!(record.error, Some(ErrorKind::UpstreamReset));

    // Frame level: the client's stream receives RST_STREAM.
    let client = raw_h2_conn(proxy.addr()).await;
    let mut client = within("the h2 connection to be ready", client.ready())
        .await
        .expect("ready");
    let req = Request::get("http://web-svc/partial")
        .body(())
        .expect("valid request");
    let (resp, _) = client.send_request(req, true).expect("stream opens");
    let resp = within("the response head", resp).await.expect("response");
    let mut body = resp.into_body();
    let first = within("the first chunk", body.data())
        .await
        .expect("a chunk")
        .expect("no error yet");
    assert_eq!(first, "partial");
    reset.notify_one();
    let err = loop {
        match within("a body frame", body.data()).await {
            Some(Ok(_)) => continue,
            Some(Err(err)) => break err,
            None => panic!("the stream ended cleanly instead of being reset"),
        }
    };
    assert!(
        err.is_reset() && err.is_remote(),
        "expected RST_STREAM, got {err:?}"
    );
    let record = proxy.next_request().await;
    assert_eq!(record.error, Some(ErrorKind::UpstreamReset));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_of_every_kind_pass_through_and_are_recorded() {
    let upstream = grpc_backend().await;
    let mut proxy = TestProxy::inbound_to(upstream).await;
    let mut client = grpc_client(proxy.addr()).await;
    let authority = proxy.addr().to_string();

    let reply = within("unary", client.unary(echo_request("hello")))
        .await
        .expect("unary succeeds");
    assert_eq!(reply.into_inner().message, "hello");

    let request = EchoRequest {
        message: "item".into(),
        count: 5,
        ..EchoRequest::default()
    };
    let stream = within("server stream", client.server_stream(request))
        .await
        .expect("server stream starts")
        .into_inner();
    let items: Vec<String> = within(
        "server stream items",
        stream.map(|r| r.expect("item").message).collect(),
    )
    .await;
    assert_eq!(items, ["item 0", "item 1", "item 2", "item 3", "item 4"]);

    let parts = tokio_stream::iter(["a", "b", "c"].map(echo_request));
    let reply = within("client stream", client.client_stream(parts))
        .await
        .expect("client stream succeeds");
    assert_eq!(reply.into_inner().message, "a,b,c");

    // Interactive: each answer arrives before the next message is sent.
    let (tx, rx) = mpsc::channel(4);
    let mut answers = within("bidi", client.bidi(ReceiverStream::new(rx)))
        .await
        .expect("bidi starts")
        .into_inner();
    for word in ["ping", "pong", "done"] {
        tx.send(echo_request(word))
            .await
            .expect("request stream open");
        let answer = within("a bidi answer", answers.message())
            .await
            .expect("bidi answer")
            .expect("an answer before the end");
        assert_eq!(answer.message, word);
    }
    drop(tx);
    assert!(
        within("bidi end", answers.message())
            .await
            .expect("clean end")
            .is_none()
    );

    for method in ["Unary", "ServerStream", "ClientStream", "Bidi"] {
        let record = proxy.next_request().await;
        assert_eq!(record.protocol, HttpProtocol::Grpc);
        assert_eq!(record.method.as_ref().map(|m| m.as_str()), Some("POST"));
        assert_eq!(record.path, Some(format!("/meshtop.test.v1.Echo/{method}")));
        assert_eq!(&*record.authority, authority);
        assert_eq!(record.status, Some(200));
        assert_eq!(record.grpc_status, Some(0), "{method}");
        assert_eq!(record.error, None, "{method}");
        assert!(!record.is_failure(), "{method}");
        assert!(record.req_bytes > 0 && record.resp_bytes > 0, "{method}");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_server_settings_sent_before_the_client_speaks_do_not_make_grpc_opaque() {
    let (upstream, mut spoke) = relay_reporting_first_server_bytes(grpc_backend().await).await;
    let mut proxy = TestProxy::inbound_to(upstream).await;

    // The proxy connects upstream at accept; the client speaks only after the
    // server's SETTINGS are on their way to the proxy.
    let stream = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("connect");
    within("the upstream h2 server to send its SETTINGS", spoke.recv())
        .await
        .expect("the relay reports");
    let (mut client, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "http://{}/meshtop.test.v1.Echo/Unary",
            proxy.addr()
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(full(grpc_frame(&echo_request("first words"))))
        .expect("valid request");
    let resp = within("the response head", client.send_request(req))
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    let body = within("the response body", resp.into_body().collect())
        .await
        .expect("the body arrives whole");
    let trailers = body.trailers().cloned().expect("grpc trailers");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    let expected = grpc_frame(&support::echo::EchoResponse {
        message: "first words".into(),
    });
    assert_eq!(body.to_bytes(), expected);
    // Closing the connection ends a tunnel too, so either record arrives.
    drop(client);

    let record = match proxy.next_record().await {
        Record::Request(record) => record,
        Record::Tcp(record) => panic!("the h2 connection was treated as opaque: {record:?}"),
    };
    assert_eq!(record.protocol, HttpProtocol::Grpc);
    assert_eq!(record.path.as_deref(), Some("/meshtop.test.v1.Echo/Unary"));
    assert_eq!(record.grpc_status, Some(0));
    proxy.stop().await;
}

#[tokio::test]
async fn grpc_error_statuses_are_recorded_and_only_failing_codes_count_as_failures() {
    let upstream = grpc_backend().await;
    let mut proxy = TestProxy::inbound_to(upstream).await;
    let mut client = grpc_client(proxy.addr()).await;

    // Trailers-only responses: the status is in the response headers.
    let unknown = EchoRequest {
        message: "boom".into(),
        fail_with: 2,
        ..EchoRequest::default()
    };
    let status = within("unary", client.unary(unknown))
        .await
        .expect_err("the call fails");
    assert_eq!(status.code(), tonic::Code::Unknown);
    assert_eq!(status.message(), "failed as asked: boom");
    let record = proxy.next_request().await;
    assert_eq!(record.protocol, HttpProtocol::Grpc);
    assert_eq!(record.status, Some(200));
    assert_eq!(record.grpc_status, Some(2));
    assert_eq!(
        record.grpc_message.as_deref(),
        Some("failed as asked: boom")
    );
    assert_eq!(record.error, None);
    assert!(record.is_failure(), "UNKNOWN is a failure");

    let not_found = EchoRequest {
        message: "no such thing".into(),
        fail_with: 5,
        ..EchoRequest::default()
    };
    let status = within("unary", client.unary(not_found))
        .await
        .expect_err("the call fails");
    assert_eq!(status.code(), tonic::Code::NotFound);
    let record = proxy.next_request().await;
    assert_eq!(record.grpc_status, Some(5));
    assert_eq!(
        record.grpc_message.as_deref(),
        Some("failed as asked: no such thing")
    );
    assert!(
        !record.is_failure(),
        "NOT_FOUND is an answer, not a failure"
    );

    // A failure after messages: the status is in real trailers.
    let (tx, rx) = mpsc::channel(4);
    let mut answers = within("bidi", client.bidi(ReceiverStream::new(rx)))
        .await
        .expect("bidi starts")
        .into_inner();
    tx.send(echo_request("first"))
        .await
        .expect("request stream open");
    let first = within("the first answer", answers.message())
        .await
        .expect("first answer")
        .expect("an answer before the end");
    assert_eq!(first.message, "first");
    let failing = EchoRequest {
        message: "second".into(),
        fail_with: 13,
        ..EchoRequest::default()
    };
    tx.send(failing).await.expect("request stream open");
    drop(tx);
    let status = within("the failing answer", answers.message())
        .await
        .expect_err("the stream fails");
    assert_eq!(status.code(), tonic::Code::Internal);
    assert_eq!(status.message(), "failed as asked: second");
    let record = proxy.next_request().await;
    assert_eq!(record.path.as_deref(), Some("/meshtop.test.v1.Echo/Bidi"));
    assert_eq!(record.grpc_status, Some(13));
    assert_eq!(
        record.grpc_message.as_deref(),
        Some("failed as asked: second")
    );
    assert!(record.resp_bytes > 0, "the first answer was forwarded");
    assert!(record.is_failure());
    proxy.stop().await;
}

#[tokio::test]
async fn grpc_timeout_and_te_trailers_reach_the_upstream() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let mut client = http2_conn(proxy.addr()).await;

    let req = Request::builder()
        .method(Method::POST)
        .uri("http://grpc-svc:50051/echo")
        .header("content-type", "application/grpc")
        .header("grpc-timeout", "5S")
        .header("te", "trailers")
        .body(full("\0\0\0\0\0"))
        .expect("valid request");
    let resp = client.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    let seen = resp
        .headers()
        .get("x-seen-headers")
        .and_then(|v| v.to_str().ok())
        .expect("the backend lists the headers it saw")
        .to_owned();
    let seen: Vec<&str> = seen.split(',').collect();
    assert!(seen.contains(&"grpc-timeout"), "seen: {seen:?}");
    assert!(seen.contains(&"te"), "seen: {seen:?}");
    assert!(seen.contains(&"content-type"), "seen: {seen:?}");
    assert_eq!(body_bytes(resp).await, "\0\0\0\0\0");

    let record = proxy.next_request().await;
    assert_eq!(record.protocol, HttpProtocol::Grpc);
    assert_eq!(&*record.authority, "grpc-svc:50051");
    assert_eq!(record.status, Some(200));
    proxy.stop().await;
}

#[tokio::test]
async fn refused_upstream_is_unavailable_for_grpc_and_502_for_h2() {
    let nowhere = closed_port();
    let mut proxy = TestProxy::inbound_to(nowhere).await;

    let mut grpc = grpc_client(proxy.addr()).await;
    let status = within("unary", grpc.unary(echo_request("anyone?")))
        .await
        .expect_err("no upstream to answer");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("upstream connect error"),
        "the proxy answered, not tonic: {status:?}"
    );
    let record = proxy.next_request().await;
    assert_eq!(record.protocol, HttpProtocol::Grpc);
    assert_eq!(record.path.as_deref(), Some("/meshtop.test.v1.Echo/Unary"));
    assert_eq!(record.error, Some(ErrorKind::ConnectRefused));
    assert_eq!(record.server, Some(nowhere));
    assert!(record.is_failure());

    let mut client = http2_conn(proxy.addr()).await;
    let resp = client
        .send_request(h2_request(Method::GET, "http://web-svc/", empty()))
        .await
        .expect("response");
    assert_eq!(resp.status(), 502);
    let record = proxy.next_request().await;
    assert_eq!(record.protocol, HttpProtocol::H2);
    assert_eq!(record.error, Some(ErrorKind::ConnectRefused));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_h2_request_finish_then_closes() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let (mut client, client_conn) = http2_conn_with_driver(proxy.addr()).await;

    let (upload, body) = channel_body();
    let req = h2_request(Method::POST, "http://web-svc/echo", body);
    upload
        .send(Bytes::from_static(b"before "))
        .await
        .expect("body open");
    let resp = within("the response head", client.send_request(req))
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    let mut echoed = resp.into_body();
    let first = within("the first chunk back", echoed.frame())
        .await
        .expect("a frame")
        .expect("no error");
    assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"before "[..]));

    // The request is mid-body: the proxy must let it finish.
    proxy.shutdown.cancel();
    upload
        .send(Bytes::from_static(b"after shutdown"))
        .await
        .expect("body open");
    drop(upload);
    let mut rest = Vec::new();
    while let Some(frame) = within("the rest of the body", echoed.frame()).await {
        let frame = frame.expect("the in-flight request completes without error");
        if let Some(data) = frame.data_ref() {
            rest.extend_from_slice(data);
        }
    }
    assert_eq!(rest, b"after shutdown");

    let record = proxy.next_request().await;
    assert_eq!(record.error, None);
    assert_eq!(record.req_bytes, 21);
    assert_eq!(record.resp_bytes, 21);
    within("the proxy to close the client connection", client_conn)
        .await
        .expect("driver task")
        .expect("the connection closes gracefully (GOAWAY), not with an error");
    proxy.stop().await;
}

/// The tests' gRPC service is generated here rather than by build.rs, so
/// that production builds do not compile it: the checked-in code must be
/// what tests/proto/echo.proto generates. `MESHTOP_BLESS=1` rewrites it.
#[test]
fn the_generated_test_service_is_fresh() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("meshtop-proto-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("a temp dir");
    let descriptors = protox::compile(
        [root.join("tests/proto/echo.proto")],
        [root.join("tests/proto")],
    )
    .expect("the proto compiles");
    tonic_prost_build::configure()
        .out_dir(&out)
        .compile_fds(descriptors)
        .expect("code is generated");
    let generated = std::fs::read_to_string(out.join("meshtop.test.v1.rs")).expect("generated");
    let _ = std::fs::remove_dir_all(&out);
    let checked_in = root.join("tests/support/generated/meshtop.test.v1.rs");
    if std::env::var_os("MESHTOP_BLESS").is_some() {
        std::fs::write(&checked_in, &generated).expect("written");
    }
    let kept = std::fs::read_to_string(&checked_in).expect("checked in");
    assert!(
        kept == generated,
        "tests/support/generated/meshtop.test.v1.rs is stale: run with MESHTOP_BLESS=1"
    );
}
