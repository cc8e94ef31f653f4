//! The HTTP/2 relay's own cases, beyond what tests/proxy_h2_grpc.rs shows
//! of HTTP/2 forwarding in general: upstream connections that end or go
//! away, requests without `:authority`, answers that come before the
//! request body ends, and a client that does not read.

mod support;
use support::*;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, Version};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};

const MIB: usize = 1024 * 1024;

/// A raw h2 client connection to `addr`, ready to send.
async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = h2::client::handshake(stream).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    within("the h2 connection to be ready", sender.ready())
        .await
        .expect("ready")
}

/// Sends a bodiless GET for `uri` and waits for the response head.
async fn get(
    client: &mut h2::client::SendRequest<Bytes>,
    uri: &str,
    what: &str,
) -> Response<h2::RecvStream> {
    let req = Request::get(uri).body(()).expect("valid request");
    let (resp, _) = client.send_request(req, true).expect("stream opens");
    within(what, resp).await.expect("response")
}

/// Reads an h2 body to its end.
async fn read_all(body: &mut h2::RecvStream) -> Vec<u8> {
    let mut all = Vec::new();
    while let Some(chunk) = within("a body chunk", body.data()).await {
        let chunk = chunk.expect("the body arrives without error");
        let _ = body.flow_control().release_capacity(chunk.len());
        all.extend_from_slice(&chunk);
    }
    all
}

/// An h2c server that answers one stream per connection with `conn N` (its
/// connection's number, from 1) and then closes the connection as a server
/// does when it restarts: GOAWAY, then the socket. Each closed connection's
/// number is sent on the channel.
async fn one_stream_per_connection_backend() -> (SocketAddr, mpsc::UnboundedReceiver<usize>) {
    let listener = TcpListener::bind(local0()).await.expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let (closed_tx, closed) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((stream, _)) = listener.accept().await {
            n += 1;
            let closed = closed_tx.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                if let Some(Ok((_, mut respond))) = conn.accept().await
                    && let Ok(mut body) = respond.send_response(Response::new(()), false)
                {
                    let _ = body.send_data(Bytes::from(format!("conn {n}")), true);
                }
                conn.graceful_shutdown();
                while let Some(Ok(_)) = conn.accept().await {}
                let _ = closed.send(n);
            });
        }
    });
    (addr, closed)
}

#[tokio::test]
async fn an_upstream_connection_its_server_closed_is_replaced_for_later_streams() {
    let (backend, mut closed) = one_stream_per_connection_backend().await;
    let mut proxy = TestProxy::inbound_to(backend).await;
    let mut client = http2_conn(proxy.addr()).await;

    for n in 1..=3 {
        let req = Request::get("http://web-svc/again")
            .body(empty())
            .expect("valid request");
        let resp = within("the response", client.send_request(req))
            .await
            .expect("every request is answered, each on a new upstream connection");
        assert_eq!(resp.status(), 200);
        assert_eq!(body_bytes(resp).await, format!("conn {n}").as_bytes());
        assert_eq!(
            within("the backend to close its connection", closed.recv()).await,
            Some(n)
        );
        let record = proxy.next_request().await;
        assert_eq!(record.status, Some(200));
        assert_eq!(record.error, None, "request {n}");
        assert_eq!(record.resp_bytes, 6);
    }
    proxy.stop().await;
}

/// An h2c server whose first connection answers its first stream with
/// `first ` and then goes away gracefully (GOAWAY first, so the proxy has
/// it before the answer), keeping that stream open until `finish` is
/// notified, when it sends `last`. Later streams on that connection (there
/// should be none) get `503`; other connections answer `conn N`.
async fn going_away_backend(finish: Arc<Notify>) -> SocketAddr {
    let listener = TcpListener::bind(local0()).await.expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((stream, _)) = listener.accept().await {
            n += 1;
            let finish = finish.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                if n == 1 {
                    let Some(Ok((_, mut respond))) = conn.accept().await else {
                        return;
                    };
                    conn.graceful_shutdown();
                    let Ok(mut body) = respond.send_response(Response::new(()), false) else {
                        return;
                    };
                    let _ = body.send_data(Bytes::from_static(b"first "), false);
                    tokio::spawn(async move {
                        finish.notified().await;
                        let _ = body.send_data(Bytes::from_static(b"last"), true);
                    });
                }
                while let Some(Ok((_, mut respond))) = conn.accept().await {
                    let status = if n == 1 { 503 } else { 200 };
                    let resp = Response::builder()
                        .status(status)
                        .body(())
                        .expect("valid response");
                    if let Ok(mut body) = respond.send_response(resp, false) {
                        let _ = body.send_data(Bytes::from(format!("conn {n}")), true);
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn new_streams_go_to_a_new_connection_while_the_old_one_goes_away() {
    let finish = Arc::new(Notify::new());
    let backend = going_away_backend(finish.clone()).await;
    let mut proxy = TestProxy::inbound_to(backend).await;
    let mut client = h2_client(proxy.addr()).await;

    let first = get(&mut client, "http://web-svc/stream", "the first response").await;
    assert_eq!(first.status(), 200);
    let mut first_body = first.into_body();
    let chunk = within("the first chunk", first_body.data())
        .await
        .expect("a chunk")
        .expect("no error");
    assert_eq!(&chunk[..], b"first ");

    // The upstream connection said GOAWAY before that chunk: a new stream
    // must not be refused, or sent there, but go to a new connection.
    let next = get(&mut client, "http://web-svc/next", "the next response").await;
    assert_eq!(next.status(), 200);
    let mut next_body = next.into_body();
    assert_eq!(read_all(&mut next_body).await, b"conn 2");
    let record = proxy.next_request().await;
    assert_eq!(record.path.as_deref(), Some("/next"));
    assert_eq!(record.error, None);

    // The stream on the old connection still ends as its server ends it.
    finish.notify_one();
    assert_eq!(read_all(&mut first_body).await, b"last");
    let record = proxy.next_request().await;
    assert_eq!(record.path.as_deref(), Some("/stream"));
    assert_eq!(record.resp_bytes, 10);
    assert_eq!(record.error, None);
    proxy.stop().await;
}

/// An h2c server on the h2 crate that hands every stream to `answer`, in a
/// task of its own.
async fn h2_server<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(Request<h2::RecvStream>, h2::server::SendResponse<Bytes>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(local0()).await.expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((req, respond))) = conn.accept().await {
                    tokio::spawn(answer(req, respond));
                }
            });
        }
    });
    addr
}

/// An h2c server that answers every stream with its `:authority` (or
/// `none`) as the body.
async fn authority_backend() -> SocketAddr {
    h2_server(|req, mut respond| async move {
        let authority = req
            .uri()
            .authority()
            .map_or("none".to_owned(), |a| a.to_string());
        if let Ok(mut body) = respond.send_response(Response::new(()), false) {
            let _ = body.send_data(Bytes::from(authority), true);
        }
    })
    .await
}

#[tokio::test]
async fn a_request_without_authority_is_sent_upstream_with_its_host() {
    let backend = authority_backend().await;
    let mut proxy = TestProxy::inbound_to(backend).await;
    let mut client = h2_client(proxy.addr()).await;

    // A request in origin form, as forwarded from HTTP/1.1: h2 sends
    // `:scheme` and `:path` and a `host` field, no `:authority`.
    let req = Request::get("/who")
        .version(Version::HTTP_11)
        .header("host", "svc.example:8080")
        .body(())
        .expect("valid request");
    let (resp, _) = client.send_request(req, true).expect("stream opens");
    let resp = within("the response", resp).await.expect("response");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    assert_eq!(read_all(&mut body).await, b"svc.example:8080");
    let record = proxy.next_request().await;
    assert_eq!(&*record.authority, "svc.example:8080");
    assert_eq!(record.path.as_deref(), Some("/who"));
    assert_eq!(record.error, None);

    // With neither, the upstream is named by the proxy's destination.
    let req = Request::get("/who")
        .version(Version::HTTP_11)
        .body(())
        .expect("valid request");
    let (resp, _) = client.send_request(req, true).expect("stream opens");
    let resp = within("the response", resp).await.expect("response");
    let mut body = resp.into_body();
    assert_eq!(read_all(&mut body).await, backend.to_string().as_bytes());
    let record = proxy.next_request().await;
    assert_eq!(&*record.authority, backend.to_string());
    proxy.stop().await;
}

/// An h2c server that allows one stream at a time per connection and
/// answers each with its path, after the request body (if any).
async fn one_at_a_time_backend() -> SocketAddr {
    let listener = TcpListener::bind(local0()).await.expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::Builder::new()
                    .max_concurrent_streams(1)
                    .handshake::<_, Bytes>(stream)
                    .await
                else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    tokio::spawn(async move {
                        let path = req.uri().path().to_owned();
                        let mut body = req.into_body();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                        }
                        if let Ok(mut out) = respond.send_response(Response::new(()), false) {
                            let _ = out.send_data(Bytes::from(path), true);
                        }
                    });
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_wait_for_room_when_the_upstream_allows_fewer_at_once() {
    let backend = one_at_a_time_backend().await;
    let mut proxy = TestProxy::inbound_to(backend).await;
    let client = http2_conn(proxy.addr()).await;

    // One call first: until the upstream's SETTINGS arrive, h2 (like
    // hyper) assumes 100 streams may be open, and a server allowing fewer
    // refuses the extra ones (REFUSED_STREAM, passed on to the client).
    let mut first = client.clone();
    let req = Request::post("http://web-svc/call/first")
        .body(full("first"))
        .expect("valid request");
    let resp = within("the first call", first.send_request(req))
        .await
        .expect("response");
    assert_eq!(body_bytes(resp).await, &b"/call/first"[..]);
    proxy.next_request().await;

    // Then twenty at once from the client, one at a time upstream: each
    // waits for room instead of failing.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mut client = client.clone();
        calls.spawn(async move {
            let req = Request::post(format!("http://web-svc/call/{i}"))
                .body(full(format!("body {i}")))
                .expect("valid request");
            let resp = client.send_request(req).await.expect("response");
            (i, resp.status(), body_bytes(resp).await)
        });
    }
    while let Some(done) = within("the calls", calls.join_next()).await {
        let (i, status, body) = done.expect("call task");
        assert_eq!(status, 200, "call {i}");
        assert_eq!(body, format!("/call/{i}").as_bytes());
    }
    for _ in 0..20 {
        let record = proxy.next_request().await;
        assert_eq!(record.status, Some(200));
        assert_eq!(record.error, None);
    }
    proxy.stop().await;
}

/// An h2c server that answers `413 early` as soon as a request's head
/// arrives, without reading its body.
async fn early_answer_backend() -> SocketAddr {
    h2_server(|_, mut respond| async move {
        let resp = Response::builder()
            .status(413)
            .body(())
            .expect("valid response");
        if let Ok(mut body) = respond.send_response(resp, false) {
            let _ = body.send_data(Bytes::from_static(b"early"), true);
        }
    })
    .await
}

#[tokio::test]
async fn an_answer_before_the_request_body_ends_reaches_the_client_whole() {
    let backend = early_answer_backend().await;
    let mut proxy = TestProxy::inbound_to(backend).await;
    let mut client = h2_client(proxy.addr()).await;

    let req = Request::builder()
        .method(Method::POST)
        .uri("http://web-svc/upload")
        .body(())
        .expect("valid request");
    let (resp, mut upload) = client.send_request(req, false).expect("stream opens");
    upload
        .send_data(Bytes::from_static(b"the first part"), false)
        .expect("data is sent");
    let resp = within("the early response", resp).await.expect("response");
    assert_eq!(resp.status(), 413);
    let mut body = resp.into_body();
    assert_eq!(read_all(&mut body).await, b"early");
    assert!(body.is_end_stream());

    let record = proxy.next_request().await;
    assert_eq!(record.status, Some(413));
    assert_eq!(record.resp_bytes, 5);
    assert_eq!(record.error, None, "a complete answer is not a failure");

    // The connection serves the next stream as usual.
    let resp = get(&mut client, "http://web-svc/next", "the next response").await;
    assert_eq!(resp.status(), 413);
    proxy.stop().await;
}

/// An h2c server that answers one 16 MiB body per stream, sending only as
/// flow control allows, and publishes how much it has sent.
async fn large_body_backend() -> (SocketAddr, watch::Receiver<usize>) {
    let (sent_tx, sent) = watch::channel(0);
    let addr = h2_server(move |_, mut respond| {
        let sent_tx = sent_tx.clone();
        async move {
            let Ok(mut body) = respond.send_response(Response::new(()), false) else {
                return;
            };
            let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
            let mut total = 0;
            while total < 16 * MIB {
                body.reserve_capacity(chunk.len());
                let Some(Ok(room)) = std::future::poll_fn(|cx| body.poll_capacity(cx)).await else {
                    return;
                };
                let n = room.min(chunk.len()).min(16 * MIB - total);
                total += n;
                if body.send_data(chunk.slice(..n), total == 16 * MIB).is_err() {
                    return;
                }
                sent_tx.send_replace(total);
            }
        }
    })
    .await;
    (addr, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_holds_back_the_upstream_through_flow_control() {
    let (backend, mut sent) = large_body_backend().await;
    let mut proxy = TestProxy::inbound_to(backend).await;
    let mut client = h2_client(proxy.addr()).await;

    let resp = get(&mut client, "http://web-svc/large", "the response head").await;
    assert_eq!(resp.status(), 200);

    // The client reads nothing: its 64 KiB window fills, and the proxy
    // reads from the upstream only what it has room to pass on. What the
    // upstream may send is then its window to the proxy (2 MiB) and a
    // little more, never the 16 MiB body.
    within(
        "the upstream to start sending",
        sent.wait_for(|&n| n >= 64 * 1024),
    )
    .await
    .expect("the backend runs");
    let flooded = tokio::time::timeout(Duration::from_secs(2), sent.wait_for(|&n| n > 4 * MIB))
        .await
        .is_ok();
    assert!(
        !flooded,
        "the proxy read {} bytes for a client that read none",
        *sent.borrow()
    );

    // Once the client reads, the whole body comes.
    let mut body = resp.into_body();
    let got = read_all(&mut body).await;
    assert_eq!(got.len(), 16 * MIB);
    let record = proxy.next_request().await;
    assert_eq!(record.resp_bytes, 16 * MIB as u64);
    assert_eq!(record.error, None);
    proxy.stop().await;
}
