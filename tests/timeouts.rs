//! Progress timeouts (`--body-timeout`, `--idle-timeout`) and malformed
//! bodies, on every forwarding path: the HTTP/1 byte relay (a transparent
//! listener), hyper (the explicit proxy), the h2 relay (prior knowledge)
//! and opaque tunnels. Finding 7 and part of 15 of issue #15.

mod support;
use support::*;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use meshtop::proxy::{Dest, ListenerConfig, ProxyConfig};
use meshtop::telemetry::{Direction, ErrorKind};

const TIMEOUT: Duration = Duration::from_millis(300);

fn timed(direction: Direction, target: Option<std::net::SocketAddr>) -> ProxyConfig {
    let mut config = config(vec![ListenerConfig {
        direction,
        addr: local0(),
        target: target.map(Dest::Addr),
    }]);
    config.body_timeout = TIMEOUT;
    config.idle_timeout = TIMEOUT;
    config
}

/// A transparent listener in front of `backend` (the byte relay), and an
/// explicit proxy (hyper), with the request line each takes for `path`.
async fn http1_paths(backend: std::net::SocketAddr) -> Vec<(TestProxy, String)> {
    let relay = TestProxy::start(timed(Direction::Inbound, Some(backend))).await;
    let explicit = TestProxy::start(timed(Direction::Outbound, None)).await;
    vec![
        (relay, String::new()),
        (explicit, format!("http://{backend}")),
    ]
}

#[tokio::test]
async fn a_request_body_that_stops_coming_is_ended_as_idle_timeout() {
    // Finding 7: a body never sent after its head was held 90 s and more.
    let backend = backend().await;
    for (mut proxy, prefix) in http1_paths(backend.addr).await {
        let mut raw = RawConn::connect(proxy.addr()).await;
        raw.send(
            format!(
                "POST {prefix}/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789"
            )
            .as_bytes(),
        )
        .await;
        // The proxy gives up on the body and closes the connection.
        within("the proxy to close the connection", raw.read_to_end()).await;
        let record = proxy.next_request().await;
        assert_eq!(record.error, Some(ErrorKind::IdleTimeout), "{prefix:?}");
        assert_eq!(record.req_bytes, 10, "{prefix:?}");
        proxy.stop().await;
    }
}

#[tokio::test]
async fn a_response_body_that_stops_coming_is_ended_as_idle_timeout() {
    let backend = backend().await;
    for (mut proxy, prefix) in http1_paths(backend.addr).await {
        let mut raw = RawConn::connect(proxy.addr()).await;
        raw.send(format!("GET {prefix}/hang HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .await;
        within("the proxy to close the connection", raw.read_to_end()).await;
        let record = proxy.next_request().await;
        assert_eq!(record.status, Some(200), "{prefix:?}");
        assert_eq!(record.error, Some(ErrorKind::IdleTimeout), "{prefix:?}");
        proxy.stop().await;
    }
}

#[tokio::test]
async fn h2_bodies_that_stall_are_reset_and_recorded_as_idle_timeout() {
    let backend = backend().await;
    let mut proxy = TestProxy::start(timed(Direction::Inbound, Some(backend.addr))).await;
    let mut client = http2_conn(proxy.addr()).await;

    // A request body that sends one chunk and then nothing.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    tx.send(Ok(Frame::data(Bytes::from_static(b"0123456789"))))
        .await
        .expect("send");
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let req = http::Request::post("/echo")
        .header("host", "t")
        .body(http_body_util::BodyExt::boxed(
            http_body_util::BodyExt::map_err(
                body,
                |e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) },
            ),
        ))
        .expect("request");
    let sent = client.send_request(req).await;
    if let Ok(resp) = sent {
        // The echo answers at once; its body ends with the reset.
        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
    }
    let record = proxy.next_request().await;
    assert_eq!(record.error, Some(ErrorKind::IdleTimeout));
    assert_eq!(record.req_bytes, 10);
    drop(tx);

    // A response body that stalls.
    let resp = client
        .send_request(get("/hang", "t"))
        .await
        .expect("response head");
    assert!(
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .is_err(),
        "the stream is reset"
    );
    let record = proxy.next_request().await;
    assert_eq!(record.error, Some(ErrorKind::IdleTimeout));
    proxy.stop().await;
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_after_the_idle_timeout() {
    // Finding 7: connections that send nothing were held indefinitely.
    let backend = backend().await;
    let mut config = timed(Direction::Inbound, Some(backend.addr));
    config.opaque_ports = vec![backend.addr.port()];
    let mut proxy = TestProxy::start(config).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    raw.send(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n").await;
    // Traffic first: it moves, so the tunnel stays...
    let (head, _) = raw.read_response().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // ...then nothing moves, and the proxy closes it.
    within("the tunnel to be closed", raw.read_to_end()).await;
    let record = proxy.next_tcp().await;
    assert_eq!(record.error, Some(ErrorKind::IdleTimeout));
    assert!(record.bytes_in > 0 && record.bytes_out > 0);
    proxy.stop().await;
}

#[tokio::test]
async fn a_malformed_chunked_body_is_recorded_as_protocol() {
    // Finding 15: it was recorded as downstream_reset.
    let backend = backend().await;
    for (mut proxy, prefix) in http1_paths(backend.addr).await {
        let mut raw = RawConn::connect(proxy.addr()).await;
        raw.send(
            format!(
                "POST {prefix}/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                 5\r\nhello\r\nZZ\r\n"
            )
            .as_bytes(),
        )
        .await;
        within("the proxy to close the connection", raw.read_to_end()).await;
        let record = proxy.next_request().await;
        assert_eq!(record.error, Some(ErrorKind::Protocol), "{prefix:?}");
        proxy.stop().await;
    }
}
