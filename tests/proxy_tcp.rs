//! Opaque traffic through the proxy: server-first protocols, plain TCP, TLS
//! with its SNI, opaque ports, and connections with nowhere to go.

mod support;

use std::time::{Duration, Instant};

use meshtop::proxy::{Dest, ListenerConfig};
use meshtop::telemetry::{Direction, ErrorKind, TcpProtocol};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server that greets every client with a banner, then echoes lines.
async fn banner_server(banner: &'static [u8]) -> std::net::SocketAddr {
    let listener = TcpListener::bind(local0()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if stream.write_all(banner).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A server that echoes whatever it receives until the client half-closes.
async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind(local0()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn server_first_banner_arrives_without_waiting_for_the_client() {
    let server = banner_server(b"220 smtp.example ESMTP ready\r\n").await;
    // A port that is not in --opaque-ports: detection is what must not delay it.
    let mut proxy = TestProxy::inbound_to(server).await;
    let started = Instant::now();
    let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
    let mut banner = [0u8; 30];
    within("the banner", client.read_exact(&mut banner))
        .await
        .expect("banner");
    let waited = started.elapsed();
    assert_eq!(&banner, b"220 smtp.example ESMTP ready\r\n");
    // Generous for a loaded 2-core machine; a proxy waiting for the client
    // to speak first would never deliver the banner at all.
    assert!(
        waited < Duration::from_millis(500),
        "banner took {waited:?}"
    );

    client.write_all(b"EHLO me\r\n").await.expect("write");
    let mut reply = [0u8; 9];
    within("the echo", client.read_exact(&mut reply))
        .await
        .expect("echo");
    assert_eq!(&reply, b"EHLO me\r\n");
    drop(client);

    let record = proxy.next_tcp().await;
    assert_eq!(record.protocol, TcpProtocol::Tcp);
    assert_eq!(record.server, Some(server));
    assert_eq!(record.bytes_in, 9);
    assert_eq!(record.bytes_out, 30 + 9);
    assert_eq!(record.error, None);
    assert_eq!(record.direction, Direction::Inbound);
    assert_eq!(&*record.sidecar, "test-sidecar");
    proxy.stop().await;
}

#[tokio::test]
async fn opaque_bytes_pass_both_ways_with_half_close() {
    let server = echo_server().await;
    let mut proxy = TestProxy::inbound_to(server).await;
    let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    client.write_all(&payload).await.expect("write");
    client.shutdown().await.expect("half-close");
    let mut echoed = Vec::new();
    within("the echo", client.read_to_end(&mut echoed))
        .await
        .expect("read");
    assert_eq!(echoed, payload);

    let record = proxy.next_tcp().await;
    assert_eq!(record.protocol, TcpProtocol::Tcp);
    assert_eq!(record.bytes_in, payload.len() as u64);
    assert_eq!(record.bytes_out, payload.len() as u64);
    assert_eq!(record.sni, None);
    assert_eq!(record.error, None);
    assert!(record.duration > Duration::ZERO);
    proxy.stop().await;
}

#[tokio::test]
async fn tls_client_hello_is_passed_through_and_its_sni_recorded() {
    let server = echo_server().await;
    let mut proxy = TestProxy::inbound_to(server).await;
    let hello = client_hello("payments.internal");
    let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
    client.write_all(&hello).await.expect("write");
    client.shutdown().await.expect("half-close");
    let mut echoed = Vec::new();
    within("the echo", client.read_to_end(&mut echoed))
        .await
        .expect("read");
    assert_eq!(
        echoed, hello,
        "the ClientHello reaches the server byte for byte"
    );

    let record = proxy.next_tcp().await;
    assert_eq!(record.protocol, TcpProtocol::Tls);
    assert_eq!(record.sni.as_deref(), Some("payments.internal"));
    assert_eq!(record.bytes_in, hello.len() as u64);
    proxy.stop().await;
}

#[tokio::test]
async fn opaque_ports_skip_detection() {
    let server = echo_server().await;
    let mut config = config(vec![ListenerConfig {
        direction: Direction::Outbound,
        addr: local0(),
        target: Some(Dest::Addr(server)),
    }]);
    config.opaque_ports = vec![server.port()];
    let mut proxy = TestProxy::start(config).await;
    let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
    // HTTP on an opaque port is not parsed: it is just bytes.
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    client.write_all(request).await.expect("write");
    client.shutdown().await.expect("half-close");
    let mut echoed = Vec::new();
    within("the echo", client.read_to_end(&mut echoed))
        .await
        .expect("read");
    assert_eq!(echoed, request);
    let record = proxy.next_tcp().await;
    assert_eq!(record.protocol, TcpProtocol::Tcp);
    assert_eq!(record.direction, Direction::Outbound);
    assert_eq!(record.bytes_in, request.len() as u64);
    proxy.stop().await;
}

#[tokio::test]
async fn refused_opaque_connection_is_closed_and_recorded() {
    let closed = closed_port();
    let mut proxy = TestProxy::inbound_to(closed).await;
    let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
    client.write_all(b"\x00\x01binary").await.expect("write");
    let mut buf = Vec::new();
    let read = within("the close", client.read_to_end(&mut buf)).await;
    assert!(
        read.map_or(true, |n| n == 0),
        "nothing comes back from a refused upstream"
    );
    let record = proxy.next_tcp().await;
    assert_eq!(record.error, Some(ErrorKind::ConnectRefused));
    assert_eq!(record.server, Some(closed));
    proxy.stop().await;
}

#[tokio::test]
async fn non_http_bytes_to_the_explicit_proxy_have_nowhere_to_go() {
    let mut proxy = TestProxy::explicit().await;
    let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
    client.write_all(b"\x00\x01binary").await.expect("write");
    let mut buf = Vec::new();
    let read = within("the close", client.read_to_end(&mut buf)).await;
    assert!(read.map_or(true, |n| n == 0));
    let record = proxy.next_tcp().await;
    assert_eq!(record.error, Some(ErrorKind::NoDestination));
    assert_eq!(record.server, None);
    proxy.stop().await;
}

#[tokio::test]
async fn stopping_closes_idle_connections_that_never_spoke() {
    let server = echo_server().await;
    let proxy = TestProxy::inbound_to(server).await;
    let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
    // The proxy drains: a connection that never sent a byte is not in flight.
    proxy.stop().await;
    let mut buf = [0u8; 1];
    let read = within("the close", client.read(&mut buf)).await;
    assert!(read.map_or(true, |n| n == 0));
}

/// A minimal TLS ClientHello naming `sni`.
fn client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let list_len = 3 + name.len();
    let mut ext = vec![0x00, 0x00];
    ext.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
    ext.extend_from_slice(&(list_len as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    ext.extend_from_slice(name);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[9u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconsumed_records_are_dropped_and_counted_while_traffic_flows() {
    use meshtop::proxy::Proxy;
    use meshtop::telemetry::Recorder;

    let backend = backend().await;
    let (recorder, _records_nobody_reads) = Recorder::channel(4);
    let proxy = Proxy::bind_with_recorder(
        config(vec![ListenerConfig {
            direction: Direction::Inbound,
            addr: local0(),
            target: Some(Dest::Addr(backend.addr)),
        }]),
        recorder.clone(),
    )
    .await
    .expect("binds");
    let addr = proxy.listeners()[0].addr;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(proxy.run(shutdown.clone()));

    let mut client = http1_conn(addr).await;
    for i in 0..50 {
        client.ready().await.expect("keep-alive");
        let resp = within(
            "a response",
            client.send_request(get(&format!("/echo?i={i}"), "svc")),
        )
        .await
        .expect("every request succeeds with the channel full");
        assert_eq!(resp.status(), 200);
        body_bytes(resp).await;
    }
    // Each record is emitted when its response ends; wait for the last.
    within("the drops to be counted", async {
        while recorder.dropped() < 46 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(recorder.dropped(), 46);
    shutdown.cancel();
    within("the proxy to stop", task).await.expect("clean stop");
}

#[tokio::test]
async fn an_unresponsive_upstream_is_a_502_recorded_as_connect_timeout() {
    let (_listener, _fillers, addr) = unresponsive_upstream();
    // Confirm the kernel really leaves connects hanging here.
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        eprintln!("skipping: this kernel accepts connections beyond the backlog");
        return;
    }
    let mut config = config(vec![ListenerConfig {
        direction: Direction::Outbound,
        addr: local0(),
        target: Some(Dest::Addr(addr)),
    }]);
    config.connect_timeout = Duration::from_millis(300);
    let mut proxy = TestProxy::start(config).await;
    let mut client = http1_conn(proxy.addr()).await;
    let resp = within("a response", client.send_request(get("/", "slow.example")))
        .await
        .expect("a response");
    assert_eq!(resp.status(), 502);
    let record = proxy.next_request().await;
    assert_eq!(record.error, Some(ErrorKind::ConnectTimeout));
    assert_eq!(record.server, Some(addr));
    proxy.stop().await;
}

/// A banner server that counts the connections it accepted.
async fn counting_banner_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind(local0()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if stream.write_all(b"220 hello\r\n").await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// The first line any of `conns` reads, and which one read it.
async fn first_line_of(conns: &mut [RawConn], what: &str) -> (usize, String) {
    within(what, async {
        loop {
            for (i, conn) in conns.iter_mut().enumerate() {
                let line = tokio::time::timeout(Duration::from_millis(20), conn.read_line()).await;
                if let Ok(line) = line {
                    return (i, line);
                }
            }
        }
    })
    .await
}

#[tokio::test]
async fn silent_clients_hold_no_more_upstream_connections_than_the_cap() {
    // Finding 7: 5,000 idle clients made 5,000 backend connections, each
    // dialled at accept. Now at most --max-eager-dials are held for clients
    // that have not sent a byte; server-first protocols still work, and a
    // client that speaks is never held back by the cap. Both ways a waiting
    // client may get its permit: during detection, and after it (a short
    // detect timeout).
    use std::sync::atomic::Ordering;
    for detect_timeout in [Duration::from_secs(10), Duration::from_millis(50)] {
        let (backend, accepted) = counting_banner_server().await;
        let mut config = config(vec![ListenerConfig {
            direction: Direction::Inbound,
            addr: local0(),
            target: Some(Dest::Addr(backend)),
        }]);
        config.max_eager_dials = 2;
        config.detect_timeout = detect_timeout;
        let proxy = TestProxy::start(config).await;

        // Two silent clients hear the server first, through the cap.
        let mut first = RawConn::connect(proxy.addr()).await;
        assert_eq!(first.read_line().await, "220 hello");
        let mut second = RawConn::connect(proxy.addr()).await;
        assert_eq!(second.read_line().await, "220 hello");
        // Three more wait for a permit.
        let mut waiting = Vec::new();
        for _ in 0..3 {
            waiting.push(RawConn::connect(proxy.addr()).await);
        }
        // One that speaks goes through at once, and by the time it is
        // answered the silent ones dialled nothing more.
        let mut talker = RawConn::connect(proxy.addr()).await;
        talker.send(b"EHLO x\r\n").await;
        assert_eq!(talker.read_line().await, "220 hello");
        assert_eq!(talker.read_line().await, "EHLO x");
        assert_eq!(accepted.load(Ordering::SeqCst), 3, "{detect_timeout:?}");

        // A permit is freed when a silent client leaves, and when one
        // speaks: each time one waiting client is dialled.
        drop(first);
        let mut heard = first_line_of(&mut waiting, "a waiting client to be dialled").await;
        assert_eq!(heard.1, "220 hello");
        waiting.remove(heard.0);
        second.send(b"hi\r\n").await;
        assert_eq!(second.read_line().await, "hi");
        heard = first_line_of(&mut waiting, "another waiting client to be dialled").await;
        assert_eq!(heard.1, "220 hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 5, "{detect_timeout:?}");
        drop((second, talker, waiting));
        proxy.stop().await;
    }
}
