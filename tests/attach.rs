//! `meshtop attach` as a user runs it: the built binary against real
//! sidecars carrying real traffic, in `--headless` and `--json` modes.

mod support;

use support::*;

async fn traffic(addr: std::net::SocketAddr, host: &str, n: u64) {
    let mut client = http1_conn(addr).await;
    for i in 0..n {
        client.ready().await.expect("keep-alive");
        let path = if i % 10 == 0 { "/status/500" } else { "/echo" };
        let resp = client
            .send_request(get(path, host))
            .await
            .expect("response");
        body_bytes(resp).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_prints_exact_merged_tables_from_two_sidecars() {
    let backend = backend().await;
    let a = Sidecar::start(sidecar_config(backend.addr, "web-a")).await;
    let b = Sidecar::start(sidecar_config(backend.addr, "web-b")).await;
    let child = meshtop(&[
        "attach",
        &format!(":{}", a.admin.port()),
        &format!("127.0.0.1:{}", b.admin.port()),
        "--headless",
        "--interval",
        "500ms",
        "--duration",
        "4s",
    ])
    .spawn()
    .expect("attach runs");
    wait_for_subscribers(a.admin, 1).await;
    wait_for_subscribers(b.admin, 1).await;
    traffic(a.addr(), "web-svc.emojivoto:80", 30).await;
    traffic(b.addr(), "web-svc.emojivoto:80", 20).await;
    let output = within("attach to finish", child.wait_with_output())
        .await
        .expect("output");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    // The last table is the final one.
    let last = stdout.trim_end().rsplit("\n\n").next().expect("a table");
    let lines: Vec<&str> = last.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "DIRECTION",
            "AUTHORITY",
            "RPS",
            "SUCCESS",
            "P50",
            "P90",
            "P99",
            "MAX",
            "REQUESTS",
            "FAILURES",
            "STALE",
            "CALLERS"
        ]
    );
    assert_eq!(lines.len(), 2, "{last}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], "inbound");
    assert_eq!(row[1], "web-svc.emojivoto:80");
    assert_eq!(row[8], "50", "requests from both sidecars: {last}");
    assert_eq!(row[9], "5", "failures: {last}");
    assert_eq!(row[10], "-", "both sidecars live to the end: {last}");
    assert_eq!(row[3], "90.0%");
    for latency in &row[4..8] {
        assert!(
            latency.ends_with("ms") || latency.ends_with("µs") || latency.ends_with('s'),
            "{latency}"
        );
    }
    // Periodic tables came before the final one.
    assert!(stdout.matches("DIRECTION").count() >= 2, "{stdout}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_prints_every_message_with_its_source() {
    let backend = backend().await;
    let sidecar = Sidecar::start(sidecar_config(backend.addr, "web")).await;
    let target = format!("ws://{}/events", sidecar.admin);
    let child = meshtop(&["attach", &target, "--json", "--duration", "3s"])
        .spawn()
        .expect("attach runs");
    wait_for_subscribers(sidecar.admin, 1).await;
    traffic(sidecar.addr(), "json.example", 10).await;
    let output = within("attach to finish", child.wait_with_output())
        .await
        .expect("output");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let messages: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    assert_eq!(messages[0]["type"], "hello");
    assert!(messages.iter().all(|m| m["source"] == target.as_str()));
    let requests: Vec<&serde_json::Value> =
        messages.iter().filter(|m| m["type"] == "request").collect();
    assert_eq!(requests.len(), 10);
    assert!(requests.iter().all(|r| r["authority"] == "json.example"));
    let counted: u64 = messages
        .iter()
        .filter(|m| m["type"] == "stats")
        .flat_map(|m| m["upstreams"].as_array().cloned().unwrap_or_default())
        .map(|u| u["requests"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(counted, 10);
    sidecar.stop().await;
}

#[tokio::test]
async fn without_a_terminal_the_ui_suggests_headless() {
    let output = meshtop(&["attach", ":1"]).output().await.expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--headless"), "{stderr}");
}

#[tokio::test]
async fn bad_targets_and_filters_are_one_line_errors() {
    for args in [
        &["nota:target:at:all"][..],
        &[":1", "--filter", "status>>5"],
        &[":1", "--window", "2h"],
    ] {
        let output = meshtop(&[&["attach"][..], args].concat())
            .output()
            .await
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn an_unreachable_sidecar_does_not_block_the_others() {
    let backend = backend().await;
    let sidecar = Sidecar::start(sidecar_config(backend.addr, "web")).await;
    let closed = closed_port();
    let child = meshtop(&[
        "attach",
        &format!(":{}", closed.port()),
        &format!(":{}", sidecar.admin.port()),
        "--headless",
        "--duration",
        "3s",
    ])
    .spawn()
    .expect("attach runs");
    wait_for_subscribers(sidecar.admin, 1).await;
    traffic(sidecar.addr(), "reachable.example", 10).await;
    let output = within("attach to finish", child.wait_with_output())
        .await
        .expect("output");
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let last = stdout.trim_end().rsplit("\n\n").next().expect("a table");
    assert!(last.contains("reachable.example"), "{last}");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_that_never_connect_are_named_with_why_and_exit_1() {
    // Issue #16: nothing listening, or a plain HTTP server, printed empty
    // tables and exited 0 with nothing on stderr; `record` said `wrote 0
    // messages`.
    let closed = format!(":{}", closed_port().port());
    let http = backend().await;
    let not_meshtop = format!("ws://{}/events", http.addr);
    let recording =
        std::env::temp_dir().join(format!("meshtop-never-{}.ndjson", std::process::id()));
    let _ = std::fs::remove_file(&recording);
    let record = recording.to_string_lossy().into_owned();
    let runs: [Vec<&str>; 3] = [
        vec![
            "attach",
            &closed,
            &not_meshtop,
            "--headless",
            "--duration",
            "2s",
        ],
        vec![
            "attach",
            &closed,
            &not_meshtop,
            "--json",
            "--duration",
            "2s",
        ],
        vec![
            "record",
            &closed,
            &not_meshtop,
            "-o",
            &record,
            "--duration",
            "2s",
        ],
    ];
    for args in runs {
        let output = within("the command to end", meshtop(&args).output())
            .await
            .expect("runs");
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("never connected"))
            .collect();
        assert_eq!(lines.len(), 2, "{args:?}: {stderr}");
        assert!(lines[0].contains(&closed), "{stderr}");
        assert!(lines[0].contains("refused"), "{stderr}");
        assert!(lines[1].contains(&http.addr.to_string()), "{stderr}");
    }
    let _ = std::fs::remove_file(&recording);

    // One that connects: exit 0, and the other still named.
    let sidecar = Sidecar::start(sidecar_config(http.addr, "web")).await;
    let live = format!(":{}", sidecar.admin.port());
    let output = within(
        "attach to end",
        meshtop(&["attach", &live, &closed, "--headless", "--duration", "2s"]).output(),
    )
    .await
    .expect("runs");
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("never connected"))
            .count(),
        1,
        "{stderr}"
    );
    sidecar.stop().await;
}
