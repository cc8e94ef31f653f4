//! HTTP/1.1 through the proxy against real peers: keep-alive, bodies,
//! bodiless responses, `Expect: 100-continue`, header invisibility, WebSocket
//! upgrades, upstream and downstream failures, the explicit proxy with
//! CONNECT, and curl — each checked from the client's side and in the record.

mod support;
use support::*;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use meshtop::proxy::{Dest, ListenerConfig};
use meshtop::telemetry::{Direction, ErrorKind, HttpProtocol, RequestRecord, TcpProtocol};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An HTTP/1.1 client connection to `addr`, with the client's own address
/// (what the proxy records as `client`).
async fn client_conn(addr: SocketAddr) -> (SendRequest<TestBody>, SocketAddr) {
    let stream = within("connecting to the proxy", TcpStream::connect(addr))
        .await
        .expect("connect");
    let local = stream.local_addr().expect("client address");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http/1 handshake");
    tokio::spawn(conn.with_upgrades());
    (sender, local)
}

/// Sends `req` once the connection can take it.
async fn send(client: &mut SendRequest<TestBody>, req: Request<TestBody>) -> Response<Incoming> {
    within("the connection to be ready", client.ready())
        .await
        .expect("the connection stays open");
    within("a response head", client.send_request(req))
        .await
        .expect("a response")
}

fn request(method: &str, uri: &str, host: &str, body: TestBody) -> Request<TestBody> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host)
        .body(body)
        .expect("valid request")
}

/// The header names the backend's `/echo` saw, from `x-seen-headers`.
fn seen_headers(resp: &Response<Incoming>) -> Vec<String> {
    let seen = resp
        .headers()
        .get("x-seen-headers")
        .expect("the echo route lists the headers it saw")
        .to_str()
        .expect("header names are ASCII");
    seen.split(',')
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

fn header<'a>(resp: &'a Response<Incoming>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Checks what every forwarded request's record carries.
fn assert_forwarded(record: &RequestRecord, direction: Direction, server: SocketAddr) {
    assert_eq!(record.direction, direction);
    assert_eq!(record.protocol, HttpProtocol::Http1);
    assert_eq!(record.server, Some(server));
    assert_eq!(record.sidecar.as_ref(), "test-sidecar");
    let ttfb = record
        .ttfb
        .expect("a forwarded request has a time to first byte");
    assert!(
        ttfb <= record.duration,
        "ttfb {ttfb:?} > duration {:?}",
        record.duration
    );
}

#[tokio::test]
async fn keep_alive_requests_share_one_upstream_connection_and_each_is_recorded() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let (mut client, client_addr) = client_conn(proxy.addr()).await;

    for i in 0..3 {
        let body = format!("request number {i}");
        let path = format!("/echo?n={i}&keep=alive");
        let resp = send(
            &mut client,
            request("POST", &path, "web-svc:80", full(body.clone())),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-seen-host"), Some("web-svc:80"));
        assert_eq!(body_bytes(resp).await, body.as_bytes());

        let record = proxy.next_request().await;
        assert_forwarded(&record, Direction::Inbound, backend.addr);
        assert_eq!(record.method.as_ref().map(|m| m.as_str()), Some("POST"));
        assert_eq!(record.path.as_deref(), Some(path.as_str()));
        assert_eq!(record.status, Some(200));
        assert_eq!(record.error, None);
        assert_eq!(&*record.authority, "web-svc:80");
        assert_eq!(record.client, client_addr);
        assert_eq!(record.req_bytes, body.len() as u64);
        assert_eq!(record.resp_bytes, body.len() as u64);
    }
    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        1,
        "three requests on one client connection use one upstream connection"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn each_request_on_a_connection_is_recorded_under_its_own_host() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let (mut client, _) = client_conn(proxy.addr()).await;

    // The proxy keeps a connection's last authority for the next request:
    // a change of Host must still show.
    for host in ["a-svc:80", "a-svc:80", "b-svc:80", "a-svc:8080", "a-svc:80"] {
        let resp = send(&mut client, request("GET", "/echo", host, empty())).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-seen-host"), Some(host));
        body_bytes(resp).await;
        let record = proxy.next_request().await;
        assert_eq!(&*record.authority, host);
        assert_eq!(record.req_bytes, 0);
        assert_eq!(record.error, None);
    }
    proxy.stop().await;
}

/// The body's data, and its trailers if it ended with some.
async fn data_and_trailers(resp: Response<Incoming>) -> (Vec<u8>, Option<http::HeaderMap>) {
    let collected = within("the whole body", resp.into_body().collect())
        .await
        .expect("the body arrives");
    let trailers = collected.trailers().cloned();
    (collected.to_bytes().to_vec(), trailers)
}

#[tokio::test]
async fn declared_trailers_pass_through_both_ways() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let (mut client, _) = client_conn(proxy.addr()).await;

    // Response trailers, to a client that takes them.
    let mut req = request("GET", "/trailers", "web-svc:80", empty());
    req.headers_mut()
        .insert("te", http::HeaderValue::from_static("trailers"));
    let resp = send(&mut client, req).await;
    assert_eq!(resp.status(), 200);
    let (data, trailers) = data_and_trailers(resp).await;
    assert_eq!(data, b"data");
    let trailers = trailers.expect("the upstream's trailers reach the client");
    assert_eq!(
        trailers.get("x-trailer").map(|v| v.as_bytes()),
        Some(&b"done"[..])
    );
    let record = proxy.next_request().await;
    assert_eq!(record.resp_bytes, 4);
    assert_eq!(record.error, None);

    // Request trailers go upstream; /echo sends them back.
    let mut sent_trailers = http::HeaderMap::new();
    sent_trailers.insert("x-sum", http::HeaderValue::from_static("42"));
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
        Ok(Frame::data(Bytes::from_static(b"payload"))),
        Ok(Frame::trailers(sent_trailers)),
    ];
    let body = BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)));
    let mut req = request("POST", "/echo", "web-svc:80", body);
    req.headers_mut()
        .insert("te", http::HeaderValue::from_static("trailers"));
    req.headers_mut()
        .insert("trailer", http::HeaderValue::from_static("x-sum"));
    let resp = send(&mut client, req).await;
    assert_eq!(resp.status(), 200);
    let (data, trailers) = data_and_trailers(resp).await;
    assert_eq!(data, b"payload");
    let trailers = trailers.expect("the client's trailers made the round trip");
    assert_eq!(
        trailers.get("x-sum").map(|v| v.as_bytes()),
        Some(&b"42"[..])
    );
    let record = proxy.next_request().await;
    assert_eq!((record.req_bytes, record.resp_bytes), (7, 7));
    assert_eq!(record.error, None);

    // A client that did not offer to take trailers gets none (and the body).
    let resp = send(
        &mut client,
        request("GET", "/trailers", "web-svc:80", empty()),
    )
    .await;
    let (data, trailers) = data_and_trailers(resp).await;
    assert_eq!(data, b"data");
    assert_eq!(trailers, None);
    proxy.next_request().await;
    proxy.stop().await;
}

#[tokio::test]
async fn content_length_request_body_is_echoed_intact() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let (mut client, _) = client_conn(proxy.addr()).await;

    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let resp = send(
        &mut client,
        request("PUT", "/echo", "web-svc", full(body.clone())),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen = seen_headers(&resp);
    assert!(
        seen.contains(&"content-length".to_owned()),
        "seen: {seen:?}"
    );
    assert!(
        !seen.contains(&"transfer-encoding".to_owned()),
        "seen: {seen:?}"
    );
    assert_eq!(body_bytes(resp).await, body);

    let record = proxy.next_request().await;
    assert_eq!(record.method.as_ref().map(|m| m.as_str()), Some("PUT"));
    assert_eq!(record.status, Some(200));
    assert_eq!(record.error, None);
    assert_eq!(record.req_bytes, body.len() as u64);
    assert_eq!(record.resp_bytes, body.len() as u64);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_body_streams_through_piece_by_piece() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let (mut client, _) = client_conn(proxy.addr()).await;

    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
    let body = BodyExt::boxed(StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    let resp = send(&mut client, request("POST", "/echo", "web-svc", body)).await;
    assert_eq!(resp.status(), 200);
    let seen = seen_headers(&resp);
    assert!(
        seen.contains(&"transfer-encoding".to_owned()),
        "seen: {seen:?}"
    );
    assert!(
        !seen.contains(&"content-length".to_owned()),
        "seen: {seen:?}"
    );

    // Each piece comes back before the next is sent: nothing is buffered
    // until the end of the body.
    let mut echoed = resp.into_body();
    let pieces = [
        "first piece;",
        "second, longer piece;",
        &"x".repeat(70_000),
        "last",
    ];
    let mut total = 0;
    for piece in pieces {
        within(
            "the body to take a piece",
            tx.send(Ok(Frame::data(Bytes::from(piece.to_owned())))),
        )
        .await
        .expect("the request body is still being read");
        let mut got = Vec::new();
        while got.len() < piece.len() {
            let frame = within("an echoed piece", echoed.frame())
                .await
                .expect("the response body goes on")
                .expect("the response body is intact");
            if let Ok(data) = frame.into_data() {
                got.extend_from_slice(&data);
            }
        }
        assert_eq!(got, piece.as_bytes());
        total += piece.len() as u64;
    }
    drop(tx);
    let rest = within("the end of the response", echoed.collect())
        .await
        .expect("the response ends cleanly")
        .to_bytes();
    assert!(rest.is_empty(), "unexpected trailing bytes: {rest:?}");

    let record = proxy.next_request().await;
    assert_eq!(record.status, Some(200));
    assert_eq!(record.error, None);
    assert_eq!(record.req_bytes, total);
    assert_eq!(record.resp_bytes, total);
    proxy.stop().await;
}

#[tokio::test]
async fn head_204_and_304_responses_have_no_body_and_complete_their_records() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let (mut client, _) = client_conn(proxy.addr()).await;

    let resp = send(
        &mut client,
        request("HEAD", "/bytes/1000", "web-svc", empty()),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-length"),
        Some("1000"),
        "HEAD keeps the length of the GET"
    );
    assert!(body_bytes(resp).await.is_empty());
    let record = proxy.next_request().await;
    assert_eq!(record.method.as_ref().map(|m| m.as_str()), Some("HEAD"));
    assert_eq!(
        (record.status, record.error, record.resp_bytes),
        (Some(200), None, 0)
    );

    for status in [204u16, 304] {
        let path = format!("/status/{status}");
        let resp = send(&mut client, get(&path, "web-svc")).await;
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(header(&resp, "x-backend"), Some("yes"));
        assert!(body_bytes(resp).await.is_empty());
        let record = proxy.next_request().await;
        assert_eq!(record.path.as_deref(), Some(path.as_str()));
        assert_eq!(
            (record.status, record.error, record.resp_bytes),
            (Some(status), None, 0)
        );
        assert!(record.ttfb.expect("ttfb") <= record.duration);
    }

    // The connection is still framed right after the bodiless responses.
    let resp = send(
        &mut client,
        request("POST", "/echo", "web-svc", full("after")),
    )
    .await;
    assert_eq!(body_bytes(resp).await, "after");
    assert_eq!(proxy.next_request().await.status, Some(200));
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let mut raw = RawConn::connect(proxy.addr()).await;

    raw.send(b"POST /echo HTTP/1.1\r\nHost: web-svc\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let interim = raw.read_head().await;
    assert!(
        interim.starts_with("HTTP/1.1 100"),
        "expected 100 Continue, got {interim:?}"
    );

    raw.send(b"hello world").await;
    let (head, body) = raw.read_response().await;
    assert!(head.starts_with("HTTP/1.1 200"), "got {head:?}");
    assert_eq!(body, b"hello world");

    let record = proxy.next_request().await;
    assert_eq!(record.status, Some(200));
    assert_eq!(record.error, None);
    assert_eq!((record.req_bytes, record.resp_bytes), (11, 11));
    proxy.stop().await;
}

#[tokio::test]
async fn proxy_adds_no_headers_keeps_host_and_removes_hop_by_hop_ones() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let (mut client, _) = client_conn(proxy.addr()).await;

    let req = Request::builder()
        .uri("/echo")
        .header("host", "web-svc.prod:8080")
        .header("connection", "x-custom")
        .header("x-custom", "hop")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("x-end-to-end", "kept")
        .header("user-agent", "meshtop-test")
        .body(empty())
        .expect("valid request");
    let resp = send(&mut client, req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-seen-host"), Some("web-svc.prod:8080"));
    let seen = seen_headers(&resp);
    assert_eq!(
        seen,
        ["host", "user-agent", "x-end-to-end"],
        "the backend saw {seen:?}"
    );
    for name in &seen {
        assert!(
            !(name == "via" || name == "forwarded" || name.starts_with("x-forwarded")),
            "the proxy revealed itself with {name}"
        );
    }
    body_bytes(resp).await;

    let record = proxy.next_request().await;
    assert_eq!(&*record.authority, "web-svc.prod:8080");
    assert_eq!(record.status, Some(200));
    proxy.stop().await;
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_removed_and_end_to_end_ones_kept() {
    let server = raw_server(
        b"HTTP/1.1 200 OK\r\nConnection: x-resp-hop\r\nx-resp-hop: 1\r\nKeep-Alive: timeout=5\r\n\
          x-resp-end: kept\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    let mut proxy = TestProxy::inbound_to(server).await;
    let (mut client, _) = client_conn(proxy.addr()).await;

    let resp = send(&mut client, get("/", "web-svc")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-resp-end"), Some("kept"));
    for hop in ["x-resp-hop", "keep-alive", "connection"] {
        assert_eq!(header(&resp, hop), None, "{hop} reached the client");
    }
    assert_eq!(body_bytes(resp).await, "ok");
    assert_eq!(proxy.next_request().await.status, Some(200));
    proxy.stop().await;
}

/// A server whose first connection answers one request, then takes the
/// next one and closes without answering (as a server closing an idle
/// connection does when a request crosses its close); later connections
/// answer `retried`.
async fn closes_on_second_request() -> SocketAddr {
    let listener = TcpListener::bind(local0()).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut stream, _)) = listener.accept().await {
            let is_first = std::mem::take(&mut first);
            tokio::spawn(async move {
                if is_first {
                    if read_request_head(&mut stream).await.is_some() {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
                            .await;
                    }
                    let _ = read_request_head(&mut stream).await;
                    return;
                }
                while read_request_head(&mut stream).await.is_some() {
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nretried";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A proxy (sending a request again after `replay_after_idle`) in front of
/// [`closes_on_second_request`], and a client connection whose first
/// request has been answered and recorded.
async fn answered_once_by_a_closing_server(
    replay_after_idle: Duration,
) -> (TestProxy, SendRequest<TestBody>) {
    let server = closes_on_second_request().await;
    let mut config = config(vec![ListenerConfig {
        direction: Direction::Inbound,
        addr: local0(),
        target: Some(Dest::Addr(server)),
    }]);
    config.replay_after_idle = replay_after_idle;
    let mut proxy = TestProxy::start(config).await;
    let (mut client, _) = client_conn(proxy.addr()).await;
    let resp = send(&mut client, request("GET", "/a", "web-svc", empty())).await;
    assert_eq!(body_bytes(resp).await, "first");
    proxy.next_request().await;
    (proxy, client)
}

#[tokio::test]
async fn an_idempotent_request_is_sent_again_when_an_idle_upstream_closes_on_it() {
    // Every reused connection counts as idle long enough.
    let (mut proxy, mut client) = answered_once_by_a_closing_server(Duration::ZERO).await;

    let resp = send(&mut client, request("GET", "/b", "web-svc", empty())).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body_bytes(resp).await, "retried");
    let record = proxy.next_request().await;
    assert_eq!(record.status, Some(200));
    assert_eq!(record.error, None);
    assert_eq!(record.path.as_deref(), Some("/b"));
    proxy.stop().await;
}

#[tokio::test]
async fn a_connection_in_steady_use_is_not_replayed() {
    // Idle for less than this: the request is not copied, and its failure
    // is the client's answer.
    let (mut proxy, mut client) =
        answered_once_by_a_closing_server(Duration::from_secs(3600)).await;
    let resp = send(&mut client, request("GET", "/b", "web-svc", empty())).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(
        proxy.next_request().await.error,
        Some(ErrorKind::UpstreamReset)
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_request_with_a_body_is_not_sent_twice() {
    let (mut proxy, mut client) = answered_once_by_a_closing_server(Duration::ZERO).await;

    // POST is not idempotent: the server may have acted on it.
    let resp = send(&mut client, request("POST", "/b", "web-svc", full("x"))).await;
    assert_eq!(resp.status(), 502);
    let record = proxy.next_request().await;
    assert_eq!(record.status, None);
    assert_eq!(record.error, Some(ErrorKind::UpstreamReset));
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_closing_after_a_response_keeps_the_client_connection() {
    // Each upstream connection serves one response and closes; the client's
    // connection is its own hop and stays open for the next request.
    let server =
        raw_server(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 4\r\n\r\ndone").await;
    let mut proxy = TestProxy::inbound_to(server).await;
    let (mut client, client_addr) = client_conn(proxy.addr()).await;

    for i in 0..3 {
        let path = format!("/once?n={i}");
        let resp = send(&mut client, get(&path, "web-svc")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "connection"), None);
        assert_eq!(body_bytes(resp).await, "done");
        let record = proxy.next_request().await;
        assert_eq!(record.path.as_deref(), Some(path.as_str()));
        assert_eq!((record.status, record.error), (Some(200), None));
        assert_eq!(
            record.client, client_addr,
            "one client connection throughout"
        );
    }
    proxy.stop().await;
}

/// A WebSocket server that greets each client, then echoes text and binary
/// messages until the client closes.
async fn websocket_echo_server() -> SocketAddr {
    let listener = TcpListener::bind(local0())
        .await
        .expect("bind websocket server");
    let addr = listener.local_addr().expect("websocket server address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                if ws.send(Message::text("welcome")).await.is_err() {
                    return;
                }
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled_and_recorded() {
    let server = websocket_echo_server().await;
    let mut proxy = TestProxy::inbound_to(server).await;
    let stream = within("connecting to the proxy", TcpStream::connect(proxy.addr()))
        .await
        .expect("connect");
    let client_addr = stream.local_addr().expect("client address");
    let (mut ws, resp) = within(
        "the websocket handshake",
        tokio_tungstenite::client_async("ws://chat.local/chat?room=1", stream),
    )
    .await
    .expect("the handshake succeeds through the proxy");
    assert_eq!(resp.status(), 101);

    let request = proxy.next_request().await;
    assert_forwarded(&request, Direction::Inbound, server);
    assert_eq!(request.status, Some(101));
    assert_eq!(request.error, None);
    assert_eq!(request.method.as_ref().map(|m| m.as_str()), Some("GET"));
    assert_eq!(request.path.as_deref(), Some("/chat?room=1"));
    assert_eq!(&*request.authority, "chat.local");
    assert_eq!(request.client, client_addr);

    let greeting = within("the server's greeting", ws.next()).await;
    assert_eq!(
        greeting.expect("a message").expect("a valid message"),
        Message::text("welcome")
    );
    let messages = [
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text("ünïcödé ✓"),
        Message::binary(vec![7u8; 100_000]),
    ];
    for msg in messages {
        within("sending a message", ws.send(msg.clone()))
            .await
            .expect("sent");
        let echoed = within("the echo", ws.next()).await;
        assert_eq!(echoed.expect("a message").expect("a valid message"), msg);
    }
    within("closing", ws.close(None))
        .await
        .expect("the close is sent");
    while let Some(msg) = within("the close handshake", ws.next()).await {
        match msg {
            Ok(Message::Close(_)) => {}
            Ok(other) => panic!("unexpected message after close: {other:?}"),
            Err(_) => break,
        }
    }
    drop(ws);

    let tunnel = proxy.next_tcp().await;
    assert_eq!(tunnel.protocol, TcpProtocol::Tcp);
    assert_eq!(tunnel.direction, Direction::Inbound);
    assert_eq!(tunnel.client, client_addr);
    assert_eq!(tunnel.server, Some(server));
    assert_eq!(tunnel.error, None);
    assert!(tunnel.bytes_in > 100_000, "bytes_in = {}", tunnel.bytes_in);
    assert!(
        tunnel.bytes_out > 100_000,
        "bytes_out = {}",
        tunnel.bytes_out
    );
    proxy.stop().await;
}

#[tokio::test]
async fn refused_upstream_connection_is_a_502_recorded_as_connect_refused() {
    let refused = closed_port();
    let mut proxy = TestProxy::inbound_to(refused).await;
    let (mut client, _) = client_conn(proxy.addr()).await;

    let resp = send(&mut client, get("/echo", "web-svc:80")).await;
    assert_eq!(resp.status(), 502);
    assert!(header(&resp, "content-type").is_some_and(|ct| ct.starts_with("text/plain")));
    let body = body_bytes(resp).await;
    assert!(
        !body.is_empty() && body.len() < 1024,
        "a short text body: {body:?}"
    );

    let record = proxy.next_request().await;
    assert_eq!(record.error, Some(ErrorKind::ConnectRefused));
    assert_eq!(
        record.status, None,
        "a response made up by the proxy has no upstream status"
    );
    assert_eq!(record.server, Some(refused));
    assert_eq!(&*record.authority, "web-svc:80");
    assert_eq!(record.path.as_deref(), Some("/echo"));
    assert_eq!(record.ttfb, None);
    proxy.stop().await;
}

#[tokio::test]
async fn unresolvable_upstream_name_is_a_502_recorded_as_dns() {
    let target = Dest::Name {
        host: "no-such-host.invalid".into(),
        port: 80,
    };
    let mut proxy = TestProxy::to(Direction::Outbound, target).await;
    let (mut client, _) = client_conn(proxy.addr()).await;

    let resp = send(&mut client, get("/", "no-such-host.invalid")).await;
    assert_eq!(resp.status(), 502);
    assert!(!body_bytes(resp).await.is_empty());

    let record = proxy.next_request().await;
    assert_eq!(record.error, Some(ErrorKind::Dns));
    assert_eq!(record.status, None);
    assert_eq!(record.server, None, "no address was reached");
    assert_eq!(record.direction, Direction::Outbound);
    proxy.stop().await;
}

#[tokio::test]
async fn malformed_request_gets_400_and_later_connections_are_served() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;

    let mut raw = RawConn::connect(proxy.addr()).await;
    raw.send(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n")
        .await;
    let answer = raw.read_to_end().await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "got {answer:?}");

    let record = proxy.next_request().await;
    assert_eq!(record.error, Some(ErrorKind::Protocol));
    assert_eq!(record.status, Some(400));
    assert_eq!(record.protocol, HttpProtocol::Http1);
    assert_eq!(record.method, None, "the request could not be parsed");

    let (mut client, _) = client_conn(proxy.addr()).await;
    let resp = send(&mut client, get("/echo", "web-svc")).await;
    assert_eq!(resp.status(), 200);
    body_bytes(resp).await;
    let record = proxy.next_request().await;
    assert_eq!((record.status, record.error), (Some(200), None));
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_failing_mid_body_truncates_the_response_and_is_recorded() {
    // The support backend's `/reset` cannot serve here: over HTTP/1 hyper
    // drops its buffered head and "partial" when the body fails, so nothing
    // reaches the wire. This server really sends 7 of the 1000 bytes.
    let server = raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial").await;
    let mut proxy = TestProxy::inbound_to(server).await;
    let (mut client, _) = client_conn(proxy.addr()).await;

    let resp = send(&mut client, get("/download", "web-svc")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-length"), Some("1000"));
    let mut body = resp.into_body();
    let mut received = Vec::new();
    let ended = loop {
        match within("the body to go on or fail", body.frame()).await {
            Some(Ok(frame)) => received.extend_from_slice(&frame.into_data().unwrap_or_default()),
            Some(Err(err)) => break Err(err),
            None => break Ok(()),
        }
    };
    assert!(
        ended.is_err(),
        "the client must not see a complete body, got {received:?}"
    );
    assert!(received.len() < 1000);

    let record = proxy.next_request().await;
    assert_eq!(record.error, Some(ErrorKind::UpstreamReset));
    assert_eq!(record.status, Some(200));
    assert_eq!(record.resp_bytes, "partial".len() as u64);
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_closing_without_an_answer_is_a_502_recorded_as_upstream_reset() {
    let server = raw_server(b"").await;
    let mut proxy = TestProxy::inbound_to(server).await;
    let (mut client, _) = client_conn(proxy.addr()).await;

    let resp = send(&mut client, get("/reset", "web-svc")).await;
    assert_eq!(resp.status(), 502);
    assert!(!body_bytes(resp).await.is_empty());

    let record = proxy.next_request().await;
    assert_eq!(record.error, Some(ErrorKind::UpstreamReset));
    assert_eq!(record.status, None);
    assert_eq!(record.server, Some(server));
    proxy.stop().await;
}

#[tokio::test]
async fn explicit_proxy_forwards_absolute_form_in_origin_form() {
    let backend = backend().await;
    let mut proxy = TestProxy::explicit().await;
    let (mut client, client_addr) = client_conn(proxy.addr()).await;
    let authority = backend.addr.to_string();

    let uri = format!("http://{authority}/echo?x=1");
    let resp = send(
        &mut client,
        request("POST", &uri, &authority, full("via proxy")),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-seen-host"), Some(authority.as_str()));
    assert_eq!(body_bytes(resp).await, "via proxy");

    let record = proxy.next_request().await;
    assert_forwarded(&record, Direction::Outbound, backend.addr);
    assert_eq!(&*record.authority, authority);
    assert_eq!(record.path.as_deref(), Some("/echo?x=1"));
    assert_eq!(record.status, Some(200));
    assert_eq!(record.client, client_addr);
    assert_eq!((record.req_bytes, record.resp_bytes), (9, 9));
    proxy.stop().await;
}

#[tokio::test]
async fn absolute_form_target_overrides_a_conflicting_host() {
    // RFC 9112 §3.2.2: a proxy ignores the Host of an absolute-form request
    // and generates one from the request target.
    let backend = backend().await;
    let mut proxy = TestProxy::explicit().await;
    let (mut client, _) = client_conn(proxy.addr()).await;
    let authority = backend.addr.to_string();

    let uri = format!("http://{authority}/echo");
    let resp = send(&mut client, get(&uri, "stale.example:81")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-seen-host"), Some(authority.as_str()));
    body_bytes(resp).await;

    let record = proxy.next_request().await;
    assert_eq!(&*record.authority, authority);
    assert_eq!(record.server, Some(backend.addr));
    proxy.stop().await;
}

#[tokio::test]
async fn explicit_proxy_refuses_origin_form_requests() {
    let mut proxy = TestProxy::explicit().await;
    let (mut client, _) = client_conn(proxy.addr()).await;

    let resp = send(&mut client, get("/echo", "somewhere")).await;
    assert_eq!(resp.status(), 400);
    assert!(!body_bytes(resp).await.is_empty());

    let record = proxy.next_request().await;
    assert_eq!(record.error, Some(ErrorKind::NoDestination));
    assert_eq!(record.status, None);
    assert_eq!(record.server, None);
    proxy.stop().await;
}

#[tokio::test]
async fn connect_tunnel_carries_http_that_is_recorded_as_requests() {
    let backend = backend().await;
    let mut proxy = TestProxy::explicit().await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    let target = backend.addr.to_string();

    raw.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await;
    let head = raw.read_head().await;
    assert!(head.starts_with("HTTP/1.1 200"), "got {head:?}");
    assert!(
        raw.buf.is_empty(),
        "nothing follows the CONNECT response until the client speaks"
    );

    let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(raw.stream))
        .await
        .expect("http/1 handshake inside the tunnel");
    tokio::spawn(conn);
    for i in 0..2 {
        let path = format!("/echo?inside=tunnel&n={i}");
        let resp = send(
            &mut client,
            request("POST", &path, "inner-svc:8080", full("tunnelled")),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-seen-host"), Some("inner-svc:8080"));
        assert_eq!(body_bytes(resp).await, "tunnelled");

        // The CONNECT itself leaves no request record: the tunnel's requests do.
        let record = proxy.next_request().await;
        assert_forwarded(&record, Direction::Outbound, backend.addr);
        assert_eq!(record.method.as_ref().map(|m| m.as_str()), Some("POST"));
        assert_eq!(record.path.as_deref(), Some(path.as_str()));
        assert_eq!(&*record.authority, "inner-svc:8080");
        assert_eq!((record.status, record.error), (Some(200), None));
        assert_eq!((record.req_bytes, record.resp_bytes), (9, 9));
    }
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn connect_to_a_closed_port_is_a_502_recorded_as_connect_refused() {
    let refused = closed_port();
    let mut proxy = TestProxy::explicit().await;
    let mut raw = RawConn::connect(proxy.addr()).await;

    raw.send(format!("CONNECT {refused} HTTP/1.1\r\nHost: {refused}\r\n\r\n").as_bytes())
        .await;
    let (head, body) = raw.read_response().await;
    assert!(head.starts_with("HTTP/1.1 502"), "got {head:?}");
    assert!(!body.is_empty());

    let record = proxy.next_request().await;
    assert_eq!(record.method.as_ref().map(|m| m.as_str()), Some("CONNECT"));
    assert_eq!(record.path, None);
    assert_eq!(record.error, Some(ErrorKind::ConnectRefused));
    assert_eq!(record.status, None);
    assert_eq!(record.server, Some(refused));
    proxy.stop().await;
}

/// Runs curl with `args`, ignoring any proxy settings of the environment.
async fn curl(args: &[&str]) -> String {
    let mut command = tokio::process::Command::new("curl");
    command.args(["-sS", "--max-time", "15"]).args(args);
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        command.env_remove(var);
    }
    let output = within("curl", command.output()).await.expect("curl runs");
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("curl printed text")
}

#[tokio::test]
async fn curl_posts_through_the_explicit_proxy() {
    if !have("curl") {
        println!("skipping: curl not installed");
        return;
    }
    let backend = backend().await;
    let mut proxy = TestProxy::explicit().await;
    let proxy_url = format!("http://{}", proxy.addr());
    let url = format!("http://{}/echo", backend.addr);

    let out = curl(&["-x", &proxy_url, &url, "-d", "hello"]).await;
    assert_eq!(out, "hello");

    let record = proxy.next_request().await;
    assert_forwarded(&record, Direction::Outbound, backend.addr);
    assert_eq!(record.method.as_ref().map(|m| m.as_str()), Some("POST"));
    assert_eq!(record.path.as_deref(), Some("/echo"));
    assert_eq!(&*record.authority, backend.addr.to_string());
    assert_eq!((record.status, record.error), (Some(200), None));
    assert_eq!((record.req_bytes, record.resp_bytes), (5, 5));
    proxy.stop().await;
}

#[tokio::test]
async fn curl_gets_through_an_inbound_proxy_unchanged() {
    if !have("curl") {
        println!("skipping: curl not installed");
        return;
    }
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let url = format!("http://{}/echo", proxy.addr());

    let out = curl(&["-i", &url]).await;
    assert!(out.starts_with("HTTP/1.1 200"), "curl printed {out:?}");
    let out = out.to_ascii_lowercase();
    assert!(out.contains("x-backend: yes"), "curl printed {out:?}");
    let host = format!("x-seen-host: {}", proxy.addr());
    assert!(out.contains(&host), "the Host curl sent is kept: {out:?}");
    assert!(
        out.contains("x-seen-headers: accept,host,user-agent"),
        "curl printed {out:?}"
    );

    let record = proxy.next_request().await;
    assert_forwarded(&record, Direction::Inbound, backend.addr);
    assert_eq!(record.method.as_ref().map(|m| m.as_str()), Some("GET"));
    assert_eq!(record.path.as_deref(), Some("/echo"));
    assert_eq!(&*record.authority, proxy.addr().to_string());
    assert_eq!((record.status, record.error), (Some(200), None));
    proxy.stop().await;
}

#[tokio::test]
async fn client_leaving_mid_response_cancels_the_upstream_and_is_recorded() {
    let mut backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let mut raw = RawConn::connect(proxy.addr()).await;

    raw.send(b"GET /hang HTTP/1.1\r\nHost: web-svc\r\n\r\n")
        .await;
    let head = raw.read_head().await;
    assert!(head.starts_with("HTTP/1.1 200"), "got {head:?}");
    drop(raw);

    let record = proxy.next_request().await;
    assert_eq!(record.path.as_deref(), Some("/hang"));
    assert_eq!(record.status, Some(200));
    assert_eq!(record.error, Some(ErrorKind::DownstreamReset));
    let event = within("the backend to drop /hang", backend.events.recv()).await;
    assert_eq!(event.as_deref(), Some("dropped /hang"));
    proxy.stop().await;
}

#[tokio::test]
async fn credentials_never_reach_records_and_proxy_authorization_is_consumed() {
    // Finding 10: userinfo landed in authorities; Proxy-Authorization
    // was forwarded to the origin.
    let backend = backend().await;
    let mut proxy = TestProxy::explicit().await;
    let target = backend.addr.to_string();

    // An absolute URI with userinfo, and Proxy-Authorization for us.
    let mut raw = RawConn::connect(proxy.addr()).await;
    raw.send(
        format!(
            "GET http://user:SECRET@{target}/echo HTTP/1.1\r\nHost: user:SECRET@{target}\r\n\
             Proxy-Authorization: Basic U0VDUkVU\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let (head, _) = raw.read_response().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen = head.to_ascii_lowercase();
    assert!(!seen.contains("proxy-authorization"), "forwarded: {head}");
    assert!(!seen.contains("secret"), "{head}");
    let record = proxy.next_request().await;
    assert_eq!(&*record.authority, target);

    // CONNECT with userinfo.
    let mut raw = RawConn::connect(proxy.addr()).await;
    raw.send(format!("CONNECT user:SECRET@{target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await;
    let head = raw.read_head().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    raw.send(b"GET /echo HTTP/1.1\r\nHost: user:SECRET@inner:80\r\n\r\n")
        .await;
    raw.read_response().await;
    let record = proxy.next_request().await;
    assert_eq!(&*record.authority, "inner:80");
    proxy.stop().await;

    // A transparent listener: `Host` with userinfo.
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    raw.send(b"GET /echo HTTP/1.1\r\nHost: user:SECRET@t.example\r\n\r\n")
        .await;
    raw.read_response().await;
    let record = proxy.next_request().await;
    assert_eq!(&*record.authority, "t.example");
    proxy.stop().await;
}

#[tokio::test]
async fn the_proxy_refuses_itself_by_any_name() {
    // Finding 15: only the literal listen address was recognised.
    let mut proxy = TestProxy::explicit().await;
    let port = proxy.addr().port();
    let v4 = u32::from(std::net::Ipv4Addr::LOCALHOST);
    for target in [
        format!("localhost:{port}"),
        format!("127.1:{port}"),
        format!("{v4}:{port}"),
        format!("0.0.0.0:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("127.0.0.1:{port}"),
    ] {
        let mut raw = RawConn::connect(proxy.addr()).await;
        raw.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await;
        let (head, _) = raw.read_response().await;
        assert!(head.starts_with("HTTP/1.1 502"), "{target}: {head}");
        let record = proxy.next_request().await;
        assert_eq!(record.error, Some(ErrorKind::NoDestination), "{target}");
        let mut raw = RawConn::connect(proxy.addr()).await;
        raw.send(format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await;
        let (head, _) = raw.read_response().await;
        assert!(head.starts_with("HTTP/1.1 502"), "{target}: {head}");
        let record = proxy.next_request().await;
        assert_eq!(record.error, Some(ErrorKind::NoDestination), "{target}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn requests_cannot_hide_from_detection() {
    // Finding 4 of issue #15: a leading empty line, a lowercase method, or
    // a pause after the first byte made the connection opaque, and every
    // request on it unrecorded.
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    for (first, rest, method) in [
        (
            &b"\r\nGET /echo?dodge=crlf HTTP/1.1\r\nHost: t\r\n\r\n"[..],
            &b""[..],
            "GET",
        ),
        // The same, with hop-by-hop fields: the head is written anew
        // without them, from its request line, not from its first byte.
        (
            b"\r\n\r\nGET /echo?dodge=crlf-rewritten HTTP/1.1\r\nHost: t\r\n\
              Connection: keep-alive, x-foo\r\nX-Foo: 1\r\n\r\n",
            b"",
            "GET",
        ),
        (
            b"get /echo?dodge=lowercase HTTP/1.1\r\nHost: t\r\n\r\n",
            b"",
            "get",
        ),
        (
            b"G",
            b"ET /echo?dodge=pause HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET",
        ),
    ] {
        let mut raw = RawConn::connect(proxy.addr()).await;
        raw.send(first).await;
        if !rest.is_empty() {
            // The attack itself: a pause longer than detection used to
            // wait (1 s), shorter than --detect-timeout (10 s).
            tokio::time::sleep(Duration::from_millis(1500)).await;
            raw.send(rest).await;
        }
        let (head, _) = raw.read_response().await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let record = proxy.next_request().await;
        assert_eq!(record.method.as_ref().map(|m| m.as_str()), Some(method));
        assert!(
            record
                .path
                .as_deref()
                .is_some_and(|p| p.starts_with("/echo?dodge="))
        );
        assert_eq!(record.status, Some(200));
    }
    proxy.stop().await;
}
