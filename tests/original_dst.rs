//! Original-destination forwarding after an iptables REDIRECT (needs root
//! and iptables; skips itself with the reason otherwise).

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use meshtop::proxy::ListenerConfig;
use meshtop::telemetry::{Direction, HttpProtocol};
use support::*;

/// A source address only this test's client uses, so the rule below matches
/// the client's connection and never the proxy's own upstream connection.
const CLIENT_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// One nat OUTPUT rule, removed again on drop (also when an assertion fails).
struct RedirectRule {
    spec: Vec<String>,
}

impl RedirectRule {
    fn add(backend: SocketAddr, proxy_port: u16) -> Result<RedirectRule, String> {
        let spec: Vec<String> = [
            "OUTPUT",
            "-p",
            "tcp",
            "-s",
            &CLIENT_SOURCE.to_string(),
            "-d",
            &backend.ip().to_string(),
            "--dport",
            &backend.port().to_string(),
            "-j",
            "REDIRECT",
            "--to-ports",
            &proxy_port.to_string(),
            "-m",
            "comment",
            "--comment",
            "meshtop-test",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = Command::new("iptables")
            .args(["-t", "nat", "-A"])
            .args(&spec)
            .output()
            .map_err(|e| format!("iptables: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "iptables: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(RedirectRule { spec })
    }
}

impl Drop for RedirectRule {
    fn drop(&mut self) {
        let _ = Command::new("iptables")
            .args(["-t", "nat", "-D"])
            .args(&self.spec)
            .status();
    }
}

fn skip_reason() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".into());
    }
    let listed = Command::new("iptables")
        .args(["-t", "nat", "-L", "OUTPUT", "-n"])
        .output();
    match listed {
        Err(_) => Some("iptables is not installed".into()),
        Ok(out) if !out.status.success() => Some(format!(
            "iptables nat table unusable: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

#[tokio::test]
async fn redirected_connections_go_to_their_original_destination() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipping: {reason}");
        return;
    }
    let backend = backend().await;
    let mut proxy = TestProxy::start(config(vec![ListenerConfig {
        direction: Direction::Outbound,
        addr: local0(),
        target: None,
    }]))
    .await;
    let _rule = RedirectRule::add(backend.addr, proxy.addr().port()).expect("iptables rule");

    // The client dials the backend directly, with no proxy settings.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((CLIENT_SOURCE, 0)))
        .expect("bind client source");
    let stream = socket.connect(backend.addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let authority = format!("svc.example:{}", backend.addr.port());
    let resp = sender
        .send_request(get("/echo?via=iptables", &authority))
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("x-backend").map(|v| v.as_bytes()),
        Some(&b"yes"[..])
    );

    let record = proxy.next_request().await;
    assert_eq!(record.direction, Direction::Outbound);
    assert_eq!(record.protocol, HttpProtocol::Http1);
    assert_eq!(
        record.server,
        Some(backend.addr),
        "forwarded to the original destination"
    );
    assert_eq!(&*record.authority, authority);
    assert_eq!(record.path.as_deref(), Some("/echo?via=iptables"));
    assert_eq!(record.client.ip(), CLIENT_SOURCE);
    assert_eq!(record.status, Some(200));
    proxy.stop().await;
}

#[tokio::test]
async fn a_connection_that_was_not_redirected_is_never_forwarded_to_itself() {
    // Works without iptables: with no conntrack entry, or one that names the
    // proxy itself, an inbound connection has nowhere to go.
    let mut proxy = TestProxy::start(config(vec![ListenerConfig {
        direction: Direction::Inbound,
        addr: local0(),
        target: None,
    }]))
    .await;
    let mut client = http1_conn(proxy.addr()).await;
    let resp = client
        .send_request(get("/", "svc"))
        .await
        .expect("response");
    assert_eq!(resp.status(), 400);
    let record = proxy.next_request().await;
    assert_eq!(
        record.error,
        Some(meshtop::telemetry::ErrorKind::NoDestination)
    );
    proxy.stop().await;
}

/// An HTTP/1.1 server on `[::1]` that answers every request with its path.
async fn ipv6_backend() -> Option<SocketAddr> {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("[::1]:0").await.ok()?;
    let addr = listener.local_addr().ok()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let body = format!("v6 {}", req.uri().path());
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from(body)),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Some(addr)
}

#[tokio::test]
async fn redirected_ipv6_connections_go_to_their_original_destination() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipping: {reason}");
        return;
    }
    let usable = |program: &str| Command::new(program).arg("--version").output().is_ok();
    for program in ["ip6tables", "setpriv", "curl"] {
        if !usable(program) {
            eprintln!("skipping: {program} is not installed");
            return;
        }
    }
    let Some(backend) = ipv6_backend().await else {
        eprintln!("skipping: no IPv6 loopback");
        return;
    };
    let mut proxy = TestProxy::start(config(vec![ListenerConfig {
        direction: Direction::Outbound,
        addr: "[::1]:0".parse().expect("literal"),
        target: None,
    }]))
    .await;
    // Only connections of user `nobody` (the client below) are redirected, so
    // the proxy's own upstream connection goes straight to the backend.
    let spec: Vec<String> = [
        "OUTPUT",
        "-p",
        "tcp",
        "-d",
        "::1",
        "--dport",
        &backend.port().to_string(),
        "-m",
        "owner",
        "--uid-owner",
        "65534",
        "-j",
        "REDIRECT",
        "--to-ports",
        &proxy.addr().port().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let added = Command::new("ip6tables")
        .args(["-t", "nat", "-A"])
        .args(&spec)
        .output()
        .expect("ip6tables");
    if !added.status.success() {
        eprintln!(
            "skipping: ip6tables nat unusable: {}",
            String::from_utf8_lossy(&added.stderr).trim()
        );
        return;
    }
    struct Remove(Vec<String>);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = Command::new("ip6tables")
                .args(["-t", "nat", "-D"])
                .args(&self.0)
                .status();
        }
    }
    let _rule = Remove(spec);

    let url = format!("http://[::1]:{}/v6path", backend.port());
    let output = tokio::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "curl",
            "-sS",
            "--noproxy",
            "*",
            &url,
        ])
        .output()
        .await
        .expect("curl runs");
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "v6 /v6path");
    let record = proxy.next_request().await;
    assert_eq!(
        record.server,
        Some(backend),
        "forwarded to the original IPv6 destination"
    );
    assert_eq!(record.path.as_deref(), Some("/v6path"));
    assert_eq!(record.status, Some(200));
    proxy.stop().await;
}
