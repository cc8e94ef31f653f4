//! The `meshtop` binary: argument errors, readiness, draining on signals,
//! and memory under a large streamed body.

mod support;

use std::process::Stdio;

use bytes::Bytes;
use http_body_util::BodyExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Runs `meshtop ARGS` to completion: exit code and stderr.
fn run(args: &[&str]) -> (i32, String) {
    let output = meshtop_bin()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("meshtop runs");
    let code = output.status.code().expect("exited, not killed");
    (code, String::from_utf8_lossy(&output.stderr).into_owned())
}

fn assert_one_line_usage_error(args: &[&str], mentions: &str) {
    let (code, stderr) = run(args);
    assert_eq!(code, 2, "exit code for {args:?}; stderr: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line for {args:?}: {stderr:?}"
    );
    assert!(stderr.starts_with("meshtop: "), "{stderr:?}");
    assert!(
        stderr.contains(mentions),
        "{stderr:?} should mention {mentions:?}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr:?}"
    );
}

#[test]
fn bad_flags_are_one_line_errors_with_exit_code_2() {
    assert_one_line_usage_error(&["proxy", "--no-such-flag"], "--no-such-flag");
    assert_one_line_usage_error(&["proxy", "--inbound", "15006"], "15006");
    assert_one_line_usage_error(&["proxy", "--outbound", "127.0.0.1:1=web"], "web");
    assert_one_line_usage_error(&["proxy", "--admin", "localhost"], "localhost");
    assert_one_line_usage_error(&["proxy", "--opaque-ports", "25,smtp"], "smtp");
    assert_one_line_usage_error(&["proxy", "--drain-timeout", "soon"], "soon");
    assert_one_line_usage_error(&["proxy", "--threads", "0"], "0");
    assert_one_line_usage_error(&["frobnicate"], "frobnicate");
}

#[test]
fn an_address_in_use_is_a_one_line_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let inbound = format!("{addr}=127.0.0.1:9");
    assert_one_line_usage_error(
        &["proxy", "--inbound", &inbound, "--admin", "127.0.0.1:0"],
        &addr,
    );
    assert_one_line_usage_error(
        &[
            "proxy",
            "--inbound",
            "127.0.0.1:0=127.0.0.1:9",
            "--admin",
            &addr,
        ],
        "admin",
    );
}

#[test]
fn help_and_version_exit_zero() {
    let (code, _) = run(&["proxy", "--help"]);
    assert_eq!(code, 0);
    let output = meshtop_bin().arg("--version").output().expect("runs");
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("meshtop "));
}

#[tokio::test]
async fn health_and_readiness_are_served_on_the_admin_address() {
    let proxy = BinProxy::start(&[
        "--inbound",
        "127.0.0.1:0=127.0.0.1:9",
        "--admin",
        "127.0.0.1:0",
    ])
    .await;
    assert_eq!(admin_get(proxy.admin, "/healthz").await.0, 200);
    assert_eq!(admin_get(proxy.admin, "/readyz").await.0, 200);
    assert_eq!(admin_get(proxy.admin, "/nope").await.0, 404);
}

#[tokio::test]
async fn a_target_that_does_not_resolve_is_not_fatal() {
    let proxy = BinProxy::start(&[
        "--outbound",
        "127.0.0.1:0=not-yet-there.invalid:80",
        "--admin",
        "127.0.0.1:0",
    ])
    .await;
    let mut client = http1_conn(proxy.listeners[0]).await;
    let resp = client
        .send_request(get("/", "svc"))
        .await
        .expect("a response");
    assert_eq!(resp.status(), 502);
    assert_eq!(admin_get(proxy.admin, "/healthz").await.0, 200);
}

/// A backend that answers each request only when told to, so a request can
/// be kept in flight across a signal.
async fn held_backend() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<()>>,
) {
    let listener = TcpListener::bind(local0()).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (arrived_tx, arrived) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let arrived_tx = arrived_tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let (release, released) = tokio::sync::oneshot::channel();
                if arrived_tx.send(release).await.is_err() {
                    return;
                }
                let _ = released.await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone")
                    .await;
            });
        }
    });
    (addr, arrived)
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let (backend, mut arrived) = held_backend().await;
    let target = format!("127.0.0.1:0={backend}");
    let mut proxy = BinProxy::start(&[
        "--inbound",
        &target,
        "--admin",
        "127.0.0.1:0",
        "--drain-timeout",
        "20s",
    ])
    .await;
    let mut client = http1_conn(proxy.listeners[0]).await;
    let in_flight = tokio::spawn(async move {
        let resp = client
            .send_request(get("/slow", "svc"))
            .await
            .expect("a response");
        (resp.status(), body_bytes(resp).await)
    });
    let release = within("the request to reach the backend", arrived.recv())
        .await
        .expect("backend running");

    proxy.signal("TERM");
    // Draining: readiness fails so no new traffic is sent, and new
    // connections are no longer accepted.
    within("readiness to fail", async {
        while admin_get(proxy.admin, "/readyz").await.0 != 503 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    within("the listener to close", async {
        while TcpStream::connect(proxy.listeners[0]).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        proxy.child.try_wait().expect("wait").is_none(),
        "still draining"
    );

    release.send(()).expect("backend waiting");
    let (status, body) = within("the in-flight response", in_flight)
        .await
        .expect("client task");
    assert_eq!(status, 200);
    assert_eq!(body, Bytes::from_static(b"done"));
    let exit = within("the proxy to exit", proxy.child.wait())
        .await
        .expect("wait");
    assert_eq!(exit.code(), Some(0));
}

/// `--threads 1` (what a proxy limited to one core gets by default) runs
/// on a current-thread runtime: it forwards, records and drains the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_on_one_thread_forwards_records_and_drains() {
    let backend = backend().await;
    let target = format!("127.0.0.1:0={}", backend.addr);
    let proxy = BinProxy::start(&[
        "--inbound",
        &target,
        "--admin",
        "127.0.0.1:0",
        "--threads",
        "1",
    ])
    .await;
    let threads = std::fs::read_to_string(format!("/proc/{}/status", proxy.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<u32>().ok())
        });
    if let Some(threads) = threads {
        assert_eq!(threads, 1, "one thread serves everything");
    }
    let mut events = Events::connect(proxy.admin, "").await;
    let mut h1 = http1_conn(proxy.listeners[0]).await;
    let mut h2 = http2_conn(proxy.listeners[0]).await;
    for path in ["/status/200", "/bytes/10"] {
        within("the connection to be ready", h1.ready())
            .await
            .expect("open");
        let resp = within("an http/1 response", h1.send_request(get(path, "svc")))
            .await
            .expect("a response");
        assert_eq!(resp.status(), 200);
        body_bytes(resp).await;
    }
    let resp = within(
        "an h2 response",
        h2.send_request(get("http://svc/status/201", "svc")),
    )
    .await
    .expect("a response");
    assert_eq!(resp.status(), 201);
    body_bytes(resp).await;
    let mut paths = Vec::new();
    while paths.len() < 3 {
        let event = events.next_of("request").await;
        paths.push(event["path"].as_str().unwrap_or_default().to_owned());
    }
    paths.sort();
    assert_eq!(paths, ["/bytes/10", "/status/200", "/status/201"]);

    proxy.signal("TERM");
    let mut child = proxy.child;
    let exit = within("the proxy to exit", child.wait())
        .await
        .expect("wait");
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test]
async fn sigint_stops_an_idle_proxy_with_exit_zero() {
    let mut proxy = BinProxy::start(&[
        "--inbound",
        "127.0.0.1:0=127.0.0.1:9",
        "--admin",
        "127.0.0.1:0",
    ])
    .await;
    proxy.signal("INT");
    let exit = within("the proxy to exit", proxy.child.wait())
        .await
        .expect("wait");
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_body_each_way_keeps_proxy_memory_flat() {
    const SIZE: u64 = 256 * 1024 * 1024;
    let backend = backend().await;
    let target = format!("127.0.0.1:0={}", backend.addr);
    let proxy = BinProxy::start(&["--inbound", &target, "--admin", "127.0.0.1:0"]).await;
    // A warm-up request, so the baseline includes the buffers of one exchange.
    let mut client = http1_conn(proxy.listeners[0]).await;
    let resp = client
        .send_request(get("/bytes/1048576", "svc"))
        .await
        .expect("warm-up");
    body_bytes(resp).await;
    let baseline = proxy.memory_kib("VmRSS");
    client.ready().await.expect("connection kept alive");

    let request = http::Request::builder()
        .method("POST")
        .uri("/echo")
        .header("host", "svc")
        .body(TestBody::new(
            Zeros { left: SIZE }.map_err(|never| match never {}),
        ))
        .expect("valid request");
    let resp = client.send_request(request).await.expect("response head");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut received = 0u64;
    while let Some(frame) = within("the echoed body", body.frame()).await {
        let frame = frame.expect("body streams without error");
        if let Some(data) = frame.data_ref() {
            assert!(data.iter().all(|&b| b == 0));
            received += data.len() as u64;
        }
    }
    assert_eq!(received, SIZE);

    let peak = proxy.memory_kib("VmHWM");
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!(
        "proxy RSS: baseline {} MiB, peak {} MiB",
        baseline / 1024,
        peak / 1024
    );
    // 512 MiB crossed the proxy; anything that buffered a body whole would
    // grow by hundreds of MiB.
    assert!(growth_mib < 32, "proxy memory grew by {growth_mib} MiB");
}

#[tokio::test]
async fn identity_and_token_come_from_the_environment() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshtop"))
        .args([
            "proxy",
            "--inbound",
            "127.0.0.1:0=127.0.0.1:9",
            "--admin",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .env("POD_NAME", "web-7d4b9c")
        .env("POD_NAMESPACE", "emojivoto")
        .env("MESHTOP_ADMIN_TOKEN", "s3cret")
        .env_remove("MESHTOP_NAME")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("runs");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("piped")).lines();
    let admin: std::net::SocketAddr = within("the admin address", async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("readable")
                .expect("still running");
            if line.contains("admin listening") {
                let addr = line
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix("addr="))
                    .expect("addr field");
                return addr.parse().expect("an address");
            }
        }
    })
    .await;
    let (status, body) = admin_get(admin, "/").await;
    assert_eq!(status, 200);
    let hello: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(hello["sidecar"]["name"], "web-7d4b9c");
    assert_eq!(hello["sidecar"]["namespace"], "emojivoto");
    // The token guards per-request events; aggregates stay scrapeable.
    assert_eq!(admin_get(admin, "/events").await.0, 401);
    assert_eq!(admin_get(admin, "/metrics").await.0, 200);
}

#[test]
fn the_kubectl_plugin_name_runs_the_same_commands() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-meshtop"))
        .args(["attach", "--help"])
        .output()
        .expect("kubectl-meshtop runs");
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("--headless"));
}

#[test]
fn inject_reads_a_file_or_stdin_and_rejects_invalid_yaml_in_one_line() {
    let manifests = concat!(env!("CARGO_MANIFEST_DIR"), "/demo/k8s/emojivoto.yml");
    let output = meshtop_bin()
        .args(["inject", manifests])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0));
    let injected = String::from_utf8_lossy(&output.stdout);
    assert!(injected.contains("meshtop-proxy") && injected.contains("meshtop-init"));

    let mut child = meshtop_bin()
        .args(["inject", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(b"kind: ConfigMap\n---\nkind: [\n")
            .expect("write");
    }
    let output = child.wait_with_output().expect("waits");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("document 2"), "{stderr}");
    // The output is streamed, but nothing of it is written when any
    // document fails: the first, valid one included.
    assert!(output.stdout.is_empty());
}

#[test]
fn inject_prints_a_warning_for_each_pod_it_leaves_alone() {
    let mut child = meshtop_bin()
        .args(["inject", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    {
        use std::io::Write;
        // A flow mapping over several lines, with a comment, is edited in
        // place; the pod on the host network is left alone, and said so.
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(
                b"kind: ConfigMap # kept\n---\nkind: Pod\nmetadata: {name: web}\n\
                  spec: {\n  # the app\n  containers: [{name: app}]\n}\n---\n\
                  kind: DaemonSet\nmetadata: {name: agent}\nspec:\n  template:\n    spec:\n\
                  \x20     hostNetwork: true\n      containers:\n      - name: agent\n",
            )
            .expect("write");
    }
    let output = child.wait_with_output().expect("waits");
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("kind: ConfigMap # kept\n"), "{stdout}");
    assert!(
        stdout.contains("  # the app\n  initContainers: [{name: meshtop-init, "),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("{name: meshtop-proxy, ").count(),
        1,
        "{stdout}"
    );
    assert!(
        stdout.ends_with("      hostNetwork: true\n      containers:\n      - name: agent\n"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr,
        "meshtop: warning: standard input: document 3, DaemonSet agent: left alone: it runs on \
         the host network (hostNetwork: true), whose iptables meshtop init would rewrite\n"
    );
}

#[test]
fn a_zero_eager_dial_cap_is_refused_in_one_line() {
    let output = meshtop_bin()
        .args([
            "proxy",
            "--inbound",
            "127.0.0.1:0=127.0.0.1:9",
            "--max-eager-dials",
            "0",
        ])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--max-eager-dials"), "{stderr}");
}

#[test]
fn typos_get_a_suggestion_in_their_one_line() {
    for (args, suggested) in [
        (&["atach"][..], "did you mean 'attach'?"),
        (&["demo", "--rat", "5"][..], "did you mean '--rate'?"),
    ] {
        let output = meshtop_bin().args(args).output().expect("runs");
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(suggested), "{stderr}");
    }
}

#[tokio::test]
async fn a_port_in_use_names_the_way_out() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let admin = format!("127.0.0.1:{port}");
    let proxy = meshtop_bin()
        .args([
            "proxy",
            "--inbound",
            "127.0.0.1:0=127.0.0.1:9",
            "--admin",
            &admin,
        ])
        .output()
        .expect("runs");
    let demo = meshtop_bin()
        .args([
            "demo",
            "--headless",
            "--duration",
            "1s",
            "--admin-base",
            &port.to_string(),
        ])
        .output()
        .expect("runs");
    for (output, way_out) in [(proxy, "--admin"), (demo, "--admin-base 0")] {
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("in use"), "{stderr}");
        assert!(stderr.contains(way_out), "{stderr}");
    }
}

#[test]
fn a_view_with_json_is_refused_in_one_line() {
    let output = meshtop_bin()
        .args(["attach", "127.0.0.1:9", "--json", "--view", "edges"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--view"), "{stderr}");
}

/// `--group-by` groups the table, which `--json` has none of: together
/// they are refused in one line, as is a grouping that does not exist.
#[test]
fn group_by_is_refused_with_json_and_unknown_groupings_in_one_line() {
    assert_one_line_usage_error(&["demo", "--json", "--group-by", "sidecar"], "--group-by");
    assert_one_line_usage_error(&["replay", "x.ndjson", "--group-by", "pod"], "pod");
    // The edges table has no groupings either.
    assert_one_line_usage_error(
        &[
            "replay",
            "x.ndjson",
            "--headless",
            "--view",
            "edges",
            "--group-by",
            "route",
        ],
        "--group-by",
    );
}

/// The last table a 4 s headless demo prints grouped `by`, and the first
/// word of each of its rows.
fn headless_demo_grouped(by: &str) -> (String, Vec<String>) {
    let output = meshtop_bin()
        .args([
            "demo",
            "--headless",
            "--duration",
            "4s",
            "--admin-base",
            "0",
        ])
        .args(["--failure-rate", "0", "--group-by", by])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.trim_end().rsplit("\n\n").next().unwrap_or_default();
    let mut names: Vec<String> = last
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    names.sort_unstable();
    (last.to_owned(), names)
}

/// The headless demo grouped by sidecar prints one row per sidecar of the
/// demo, the same grouping the TUI would start with.
#[test]
fn the_headless_demo_groups_its_table_by_sidecar() {
    let (last, sidecars) = headless_demo_grouped("sidecar");
    assert!(last.starts_with("SIDECAR "), "{last}");
    for sidecar in ["web", "emoji", "voting"] {
        assert!(
            sidecars.iter().any(|s| s == sidecar),
            "no {sidecar} row in\n{last}"
        );
    }
}

/// Grouped by caller, the headless demo has exactly its two callers:
/// vote-bot (calling web) and web (calling emoji and voting), each call
/// counted once although both ends are attached.
#[test]
fn the_headless_demo_groups_its_table_by_caller() {
    let (last, callers) = headless_demo_grouped("caller");
    assert!(last.starts_with("CALLER "), "{last}");
    assert_eq!(callers, ["vote-bot", "web"], "{last}");
}
