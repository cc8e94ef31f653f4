//! The HTTP/1.1 relay: requests and responses forwarded as their bytes,
//! pipelining, bodies streaming both ways, the hand-over to hyper in the
//! middle of a connection, and the relay and the upstream agreeing on where
//! every message ends.

mod support;
use support::*;

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use meshtop::telemetry::{ErrorKind, HttpProtocol, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A hyper upstream that logs each request it is given (`METHOD /path`)
/// and the end of each connection (`closed`), and answers `ok N`, N being
/// the request body's length.
struct LoggingBackend {
    addr: SocketAddr,
    log: mpsc::UnboundedReceiver<String>,
    accepted: Arc<AtomicUsize>,
    /// Peers of the connections open now, as far as the log was read.
    open: HashSet<String>,
    /// Requests read from the log and not yet taken.
    requests: VecDeque<String>,
}

async fn logging_backend() -> LoggingBackend {
    let listener = TcpListener::bind(local0()).await.expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    let (tx, log) = mpsc::unbounded_channel();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(format!("accepted {peer}"));
            let tx = tx.clone();
            tokio::spawn(async move {
                let requests = tx.clone();
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let tx = requests.clone();
                    async move {
                        let _ = tx.send(format!("{} {}", req.method(), req.uri()));
                        let body = req.into_body().collect().await?.to_bytes();
                        let answer = Full::new(Bytes::from(format!("ok {}", body.len())));
                        Ok::<_, hyper::Error>(Response::new(answer))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                let _ = tx.send(format!("closed {peer}"));
            });
        }
    });
    LoggingBackend {
        addr,
        log,
        accepted,
        open: HashSet::new(),
        requests: VecDeque::new(),
    }
}

impl LoggingBackend {
    /// Reads one entry of the log; true if it was a connection's end.
    async fn pump(&mut self) -> bool {
        let entry = within("the backend's log", self.log.recv())
            .await
            .expect("the backend runs");
        if let Some(peer) = entry.strip_prefix("accepted ") {
            self.open.insert(peer.to_owned());
        } else if let Some(peer) = entry.strip_prefix("closed ") {
            self.open.remove(peer);
            return true;
        } else {
            self.requests.push_back(entry);
        }
        false
    }

    /// The next request the backend was given.
    async fn next(&mut self) -> String {
        loop {
            if let Some(request) = self.requests.pop_front() {
                return request;
            }
            self.pump().await;
        }
    }

    /// Waits for a connection to end.
    async fn next_close(&mut self) {
        while !self.pump().await {}
    }

    /// The requests not taken yet and those the backend is given until
    /// every connection from a proxy that has stopped is closed. A probe
    /// connection made now is accepted after all of those (accepts are
    /// first come, first served), so once it is, none is missing.
    async fn requests_until_quiet(&mut self) -> Vec<String> {
        let probe = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("probe connects");
        let probe_addr = probe.local_addr().expect("probe address").to_string();
        drop(probe);
        let mut probed = false;
        while !(probed && self.open.is_empty()) {
            self.pump().await;
            probed |= self.open.contains(&probe_addr);
        }
        self.requests.drain(..).collect()
    }
}

/// An upstream that reads each request head (bodies are not expected),
/// hands over its bytes and sends `response`; with `close`, it closes
/// after the first.
async fn capturing_server(
    response: &'static [u8],
    close: bool,
) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind(local0()).await.expect("bind server");
    let addr = listener.local_addr().expect("server address");
    let (tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(head) = read_request_head(&mut stream).await {
                    let _ = tx.send(head);
                    if stream.write_all(response).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Reads until the proxy closes the connection, whether cleanly or not.
async fn drain(raw: &mut RawConn) -> Vec<u8> {
    let mut all = std::mem::take(&mut raw.buf);
    let mut chunk = [0u8; 4096];
    while let Ok(n) = within("the proxy to close", raw.stream.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&chunk[..n]);
    }
    all
}

#[tokio::test]
async fn requests_and_responses_pass_byte_for_byte() {
    let response: &[u8] =
        b"HTTP/1.1 200 OK\r\nX-Odd-Case: Kept\r\nserver: raw\r\nContent-Length: 5\r\n\r\nhello";
    let (server, mut seen) = capturing_server(response, false).await;
    let mut proxy = TestProxy::inbound_to(server).await;
    let mut raw = RawConn::connect(proxy.addr()).await;

    let request: &[u8] =
        b"GET /a/b?c=d HTTP/1.1\r\nHOST: web-svc:8080\r\nx-Mixed-CASE:   spaced  value\r\n\
        Accept: */*\r\nAccept: text/plain\r\n\r\n";
    raw.send(request).await;
    let upstream_saw = within("the request upstream", seen.recv()).await;
    assert_eq!(upstream_saw.as_deref(), Some(request));
    assert_eq!(
        raw.read_exact(response.len()).await,
        response,
        "no field added, none rewritten"
    );

    let record = proxy.next_request().await;
    assert_eq!(record.protocol, HttpProtocol::Http1);
    assert_eq!(&*record.authority, "web-svc:8080");
    assert_eq!(record.method.as_ref().map(|m| m.as_str()), Some("GET"));
    assert_eq!(record.path.as_deref(), Some("/a/b?c=d"));
    assert_eq!((record.status, record.error), (Some(200), None));
    assert_eq!((record.req_bytes, record.resp_bytes), (0, 5));
    assert_eq!(record.server, Some(server));
    assert!(record.ttfb.is_some_and(|ttfb| ttfb <= record.duration));
    proxy.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_each_recorded() {
    let mut backend = logging_backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let mut raw = RawConn::connect(proxy.addr()).await;

    raw.send(
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
          PUT /three HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nxy\r\n0\r\n\r\n",
    )
    .await;
    for expected in ["ok 0", "ok 3", "ok 2"] {
        let (head, body) = raw.read_response().await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, expected.as_bytes());
    }
    for (path, req_bytes) in [("/one", 0), ("/two", 3), ("/three", 2)] {
        let record = proxy.next_request().await;
        assert_eq!(record.path.as_deref(), Some(path));
        assert_eq!((record.req_bytes, record.resp_bytes), (req_bytes, 4));
        assert_eq!((record.status, record.error), (Some(200), None));
    }
    for request in ["GET /one", "POST /two", "PUT /three"] {
        assert_eq!(backend.next().await, request);
    }
    assert_eq!(
        backend.accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_chunked_body_streams_both_ways_while_it_is_sent() {
    // The backend echoes the body as it arrives: the first piece comes back
    // before the client has sent the rest.
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let mut raw = RawConn::connect(proxy.addr()).await;

    raw.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        .await;
    let head = raw.read_head().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(raw.read_line().await, "5");
    assert_eq!(raw.read_exact(7).await, b"first\r\n");

    raw.send(b"6\r\nsecond\r\n0\r\n\r\n").await;
    assert_eq!(raw.read_line().await, "6");
    assert_eq!(raw.read_exact(8).await, b"second\r\n");
    assert_eq!(raw.read_line().await, "0");
    assert_eq!(raw.read_line().await, "");

    let record = proxy.next_request().await;
    assert_eq!((record.req_bytes, record.resp_bytes), (11, 11));
    assert_eq!((record.status, record.error), (Some(200), None));

    // The connection carries the next request as usual.
    raw.send(b"GET /status/204 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    assert!(raw.read_head().await.starts_with("HTTP/1.1 204"));
    assert_eq!(proxy.next_request().await.status, Some(204));
    proxy.stop().await;
}

#[tokio::test]
async fn a_connection_moves_to_hyper_at_a_request_the_relay_leaves_to_it() {
    let backend = backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let mut raw = RawConn::connect(proxy.addr()).await;
    let seen = |head: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix("x-seen-headers: "))
            .map(str::to_owned)
    };

    raw.send(b"GET /echo HTTP/1.1\r\nHost: a\r\nX-End: 1\r\n\r\n")
        .await;
    let (head, _) = raw.read_response().await;
    assert_eq!(seen(&head).as_deref(), Some("host,x-end"));

    // Trailers offered: hyper's forwarder takes over and offers them on
    // its own hop (`TE` is hop-by-hop, so it names it in `Connection`).
    raw.send(b"GET /echo HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nX-End: 1\r\n\r\n")
        .await;
    let (head, _) = raw.read_response().await;
    assert_eq!(seen(&head).as_deref(), Some("connection,host,te,x-end"));

    raw.send(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let (head, _) = raw.read_response().await;
    assert_eq!(seen(&head).as_deref(), Some("host"));

    for _ in 0..3 {
        let record = proxy.next_request().await;
        assert_eq!((record.status, record.error), (Some(200), None));
        assert_eq!(record.path.as_deref(), Some("/echo"));
    }
    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        1,
        "the upstream connection was handed over too"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_clients_hop_by_hop_fields_stay_on_its_hop() {
    let response: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let (server, mut seen) = capturing_server(response, false).await;
    let mut proxy = TestProxy::inbound_to(server).await;
    let mut raw = RawConn::connect(proxy.addr()).await;

    // What Python, Node and Java clients send on every request: the relay
    // takes the fields out and keeps forwarding the rest as it came.
    raw.send(
        b"GET /a HTTP/1.1\r\nHost: web\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
        Keep-Alive: timeout=5\r\nX-End: 2\r\n\r\n",
    )
    .await;
    let upstream_saw = within("the request upstream", seen.recv()).await;
    assert_eq!(
        upstream_saw.as_deref(),
        Some(&b"GET /a HTTP/1.1\r\nHost: web\r\nX-End: 2\r\n\r\n"[..])
    );
    assert_eq!(raw.read_response().await.1, b"ok");

    // `Connection: close` ends the client's connection after the answer.
    raw.send(b"GET /b HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(raw.read_response().await.1, b"ok");
    assert!(drain(&mut raw).await.is_empty(), "then the proxy closes");

    for path in ["/a", "/b"] {
        let record = proxy.next_request().await;
        assert_eq!(record.path.as_deref(), Some(path));
        assert_eq!((record.status, record.error), (Some(200), None));
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_response_that_ends_with_its_connection_ends_the_clients_too() {
    let (server, _seen) =
        capturing_server(b"HTTP/1.1 200 OK\r\nx: y\r\n\r\nuntil close", true).await;
    let mut proxy = TestProxy::inbound_to(server).await;
    let mut raw = RawConn::connect(proxy.addr()).await;

    raw.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let head = raw.read_head().await;
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert_eq!(drain(&mut raw).await, b"until close");

    let record = proxy.next_request().await;
    assert_eq!((record.status, record.error), (Some(200), None));
    assert_eq!(record.resp_bytes, 11);
    proxy.stop().await;
}

#[tokio::test]
async fn informational_responses_reach_the_client_before_the_answer() {
    let (server, _seen) = capturing_server(
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        false,
    )
    .await;
    let mut proxy = TestProxy::inbound_to(server).await;
    let mut raw = RawConn::connect(proxy.addr()).await;

    raw.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let hints = raw.read_head().await;
    assert!(hints.starts_with("HTTP/1.1 103"), "{hints}");
    assert!(hints.contains("Link: </s.css>"));
    let (head, body) = raw.read_response().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"ok");

    let record = proxy.next_request().await;
    assert_eq!((record.status, record.resp_bytes), (Some(200), 2));
    proxy.stop().await;
}

#[tokio::test]
async fn an_answer_before_the_body_is_passed_on_and_ends_the_connection() {
    // The server refuses the upload from its head; the client stops sending.
    let (server, _seen) = capturing_server(
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo big\n",
        false,
    )
    .await;
    let mut proxy = TestProxy::inbound_to(server).await;
    let mut raw = RawConn::connect(proxy.addr()).await;

    raw.send(b"PUT /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n0123456789")
        .await;
    let (head, body) = raw.read_response().await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eq!(body, b"too big\n");
    assert!(
        drain(&mut raw).await.is_empty(),
        "the rest of the body has no message boundary to wait for"
    );

    let record = proxy.next_request().await;
    assert_eq!((record.status, record.error), (Some(413), None));
    assert_eq!((record.req_bytes, record.resp_bytes), (10, 8));
    proxy.stop().await;
}

#[tokio::test]
async fn a_body_that_breaks_its_chunked_coding_midway_is_a_protocol_error() {
    let mut backend = logging_backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let mut raw = RawConn::connect(proxy.addr()).await;

    raw.send(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await;
    assert_eq!(
        backend.next().await,
        "POST /upload",
        "the start went upstream"
    );
    raw.send(b"zz\r\n").await;
    drain(&mut raw).await;

    let record = proxy.next_request().await;
    assert_eq!(record.error, Some(ErrorKind::Protocol));
    assert_eq!(record.req_bytes, 5);
    backend.next_close().await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_leaving_mid_body_is_recorded_and_its_upstream_closed() {
    let mut backend = logging_backend().await;
    let mut proxy = TestProxy::inbound_to(backend.addr).await;
    let mut raw = RawConn::connect(proxy.addr()).await;

    raw.send(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789")
        .await;
    assert_eq!(backend.next().await, "POST /upload");
    drop(raw);

    let record = proxy.next_request().await;
    assert_eq!(record.error, Some(ErrorKind::DownstreamReset));
    assert_eq!((record.req_bytes, record.status), (10, None));
    backend.next_close().await;
    proxy.stop().await;
}

#[tokio::test]
async fn the_proxy_and_the_upstream_agree_where_every_request_ends() {
    // Requests that try to make a proxy and its upstream disagree on where a
    // body ends (request smuggling), and well-formed ones next to them.
    // Whatever each is answered, every request the upstream (hyper, strict)
    // is given must be one the proxy recorded, in the same order: nothing
    // reaches it unseen. Well-formed ones reach it as listed; of the others,
    // at most the request whose body is broken does.
    let cases: [(&[u8], Option<&[&str]>); 13] = [
        // Both framings: Transfer-Encoding wins, and hyper closes after.
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
              0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            None,
        ),
        // Refused with 400: chunked not last, unknown coding, a space
        // before the colon, differing lengths.
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n\
              0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            None,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n\
              0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            None,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n\
              0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            None,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 42\r\n\r\n\
              helloGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            None,
        ),
        // Broken chunked coding: the request goes up, its body fails.
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;a\nxx\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            None,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              0x5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            None,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            None,
        ),
        // Bare LF line ends: a head hyper takes, a body it does not.
        (
            b"POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n0\n\nGET /smuggled HTTP/1.1\nHost: a\n\n",
            None,
        ),
        (
            b"GET / HTTP/1.1\nHost: a\n\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n",
            Some(&["GET /", "GET /second"]),
        ),
        // Well-formed: the second request is a real one, on both sides.
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n\
              0\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n",
            Some(&["POST /", "GET /second"]),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n",
            Some(&["POST /", "GET /second"]),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n\
              0\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n",
            Some(&["POST /", "GET /second"]),
        ),
    ];
    for (case, well_formed) in cases {
        let shown = String::from_utf8_lossy(case);
        let mut backend = logging_backend().await;
        let proxy = TestProxy::inbound_to(backend.addr).await;
        let mut raw = RawConn::connect(proxy.addr()).await;
        raw.send(case).await;
        if let Some(expected) = well_formed {
            for request in expected {
                assert_eq!(backend.next().await, *request, "{shown:?}");
            }
        }
        let _ = raw.stream.shutdown().await;
        drain(&mut raw).await;

        let recorded: Vec<String> = proxy
            .stop_with_records()
            .await
            .into_iter()
            .filter_map(|record| match record {
                Record::Request(r) => Some(format!("{} {}", r.method?, r.path?)),
                Record::Tcp(_) => None,
            })
            .collect();
        let mut given =
            well_formed.map_or_else(Vec::new, |e| e.iter().map(|r| r.to_string()).collect());
        given.extend(backend.requests_until_quiet().await);
        let mut unseen = given.iter();
        for request in &recorded {
            if unseen.as_slice().first() == Some(request) {
                unseen.next();
            }
        }
        assert!(
            unseen.as_slice().is_empty(),
            "{shown:?}: the upstream was given {given:?}, the proxy recorded {recorded:?}"
        );
        assert!(
            given.iter().all(|r| !r.contains("/smuggled")),
            "{shown:?}: {given:?}"
        );
        if let Some(expected) = well_formed {
            assert_eq!(given, expected, "{shown:?}");
        } else {
            assert!(given.len() <= 1, "{shown:?}: {given:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_sends_no_whole_head_within_30_s_is_disconnected() {
    // The clock is paused: it jumps to the next timer whenever every task
    // waits, so the proxy's 30 s header timeout passes at once. (No
    // `within` here: its deadline would jump first.)
    let backend = backend().await;
    let proxy = TestProxy::inbound_to(backend.addr).await;
    let mut raw = RawConn::connect(proxy.addr()).await;

    raw.send(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let started = tokio::time::Instant::now();
    let (head, _) = raw.read_response().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // Idle for 20 s, then half a head: the connection ends 30 s after the
    // wait for this head began, not 30 s after its last byte.
    tokio::time::sleep(Duration::from_secs(20)).await;
    raw.send(b"GET /echo HTTP/1.1\r\n").await;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(60), raw.stream.read(&mut byte))
        .await
        .expect("the proxy closes the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "got {read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "closed after {waited:?}"
    );
    proxy.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_upstream_connection_closed_while_idle_is_replaced_before_a_request() {
    // The server closes each connection after one answer, without saying
    // so. After 200 ms of (paused-clock) idling the proxy notices, and a
    // POST, which is never sent twice, goes out on a new connection.
    let listener = TcpListener::bind(local0()).await.expect("bind");
    let server = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if read_request_head(&mut stream).await.is_none() {
                    return;
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone")
                    .await;
            });
        }
    });
    let mut proxy = TestProxy::inbound_to(server).await;
    let mut raw = RawConn::connect(proxy.addr()).await;

    raw.send(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(raw.read_response().await.1, b"done");
    tokio::time::sleep(Duration::from_millis(200)).await;
    raw.send(b"POST /second HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
        .await;
    let (head, body) = raw.read_response().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"done");

    for path in ["/first", "/second"] {
        let record = proxy.next_request().await;
        assert_eq!(record.path.as_deref(), Some(path));
        assert_eq!((record.status, record.error), (Some(200), None));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    proxy.stop().await;
}
