//! `meshtop demo`: the embedded emojivoto behaves like emojivoto, and its
//! sidecars show what they carry.

mod support;

use std::process::Stdio;
use std::time::Duration;

use meshtop::demo::{DemoConfig, WEB_AUTHORITY};
use support::*;
use tokio_util::sync::CancellationToken;

async fn web_get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value, String) {
    let mut client = http1_conn(addr).await;
    let resp = within("web", client.send_request(get(path, WEB_AUTHORITY)))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let body = String::from_utf8_lossy(&body_bytes(resp).await).into_owned();
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    (status, json, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_answers_as_emojivoto_documents() {
    let shutdown = CancellationToken::new();
    let config = DemoConfig {
        rate: 0.01,
        failure_rate: 0.0,
        delay: Duration::ZERO,
        admin_base: 0,
    };
    let demo = meshtop::demo::start(&config, &shutdown)
        .await
        .expect("the demo starts");
    // Through web's sidecar, as the vote bot's traffic goes.
    let web = demo.web_sidecar;

    let (status, list, _) = web_get(web, "/api/list").await;
    assert_eq!(status, 200);
    let list = list.as_array().expect("a JSON array");
    assert_eq!(list.len(), meshtop::demo::EMOJIS.len());
    assert!(
        list.iter()
            .all(|e| e["shortcode"].is_string() && e["unicode"].is_string())
    );
    assert!(
        list.iter()
            .any(|e| e["shortcode"] == ":doughnut:" && e["unicode"] == "🍩")
    );

    let (status, body, _) = web_get(web, "/api/vote?choice=").await;
    assert_eq!(status, 400);
    assert!(body["error"].is_string());
    let (status, body, _) = web_get(web, "/api/vote?choice=:no_such_emoji:").await;
    assert_eq!(status, 400);
    assert!(body["error"].is_string());
    for _ in 0..3 {
        assert_eq!(web_get(web, "/api/vote?choice=:joy:").await.0, 200);
    }
    assert_eq!(web_get(web, "/api/vote?choice=%3Arocket%3A").await.0, 200);
    let (status, body, _) = web_get(web, "/api/vote?choice=:doughnut:").await;
    assert_eq!(status, 500, "doughnut votes fail, as in emojivoto");
    assert!(body["error"].as_str().expect("error").contains("ERROR"));

    let (status, board, _) = web_get(web, "/api/leaderboard").await;
    assert_eq!(status, 200);
    let board = board.as_array().expect("a JSON array");
    assert_eq!(board[0]["shortcode"], ":joy:", "highest first: {board:?}");
    assert_eq!(board[0]["votes"], 3);
    assert_eq!(board[0]["unicode"], "😂");
    assert!(
        board
            .iter()
            .any(|e| e["shortcode"] == ":rocket:" && e["votes"] == 1)
    );
    assert!(!board.iter().any(|e| e["shortcode"] == ":doughnut:"));

    let (status, _, html) = web_get(web, "/").await;
    assert_eq!(status, 200);
    assert!(html.contains("<html"));
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_headless_demo_shows_every_upstream_and_the_doughnut_failures() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshtop"))
        .args([
            "demo",
            "--headless",
            "--duration",
            "10s",
            "--interval",
            "5s",
            "--admin-base",
            "0",
            "--rate",
            "40",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = within("the demo to finish", output).await.expect("runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("meshtop attach :"),
        "the demo prints how to attach: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (table, rows) = last_table(&stdout);
    for direction in ["inbound", "outbound"] {
        for authority in [
            "web-svc.emojivoto:80",
            "emoji-svc.emojivoto:8080",
            "voting-svc.emojivoto:8080",
        ] {
            assert!(
                rows.iter().any(|r| r[0] == direction && r[1] == authority),
                "missing {direction} {authority} in\n{table}"
            );
        }
    }
    let voting = rows
        .iter()
        .find(|r| r[0] == "inbound" && r[1] == "voting-svc.emojivoto:8080")
        .expect("voting row");
    let votes: f64 = voting[8].parse().expect("requests");
    let failures: f64 = voting[9].parse().expect("failures");
    assert!(votes >= 100.0, "{table}");
    let success = 1.0 - failures / votes;
    // 15% of votes are for doughnut, and so is one in 22 of the others:
    // about 81% succeed. Within four standard deviations of that (a
    // narrower band failed about one run in a hundred).
    let expected = 1.0 - (0.15 + 0.85 / meshtop::demo::EMOJIS.len() as f64);
    let sigma = (expected * (1.0 - expected) / votes).sqrt();
    assert!(
        (success - expected).abs() <= 4.0 * sigma,
        "voting success {success}, expected {expected:.3} ± {:.3}, in\n{table}",
        4.0 * sigma
    );
    let web = rows
        .iter()
        .find(|r| r[0] == "inbound" && r[1] == "web-svc.emojivoto:80")
        .expect("web row");
    // Every failed vote is a 500 at web. The sidecars' last stats intervals
    // end at different moments, so the totals at exit may differ by the
    // last second's votes.
    let web_failures: f64 = web[9].parse().expect("failures");
    assert!(web_failures > 0.0, "{table}");
    assert!((web_failures - failures).abs() <= 8.0, "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doughnut_failures_are_500_at_web_and_grpc_2_at_voting() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshtop"))
        .args([
            "demo",
            "--json",
            "--duration",
            "5s",
            "--admin-base",
            "0",
            "--rate",
            "40",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = within("the demo to finish", output).await.expect("runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let messages: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let hellos: Vec<&str> = messages
        .iter()
        .filter(|m| m["type"] == "hello")
        .filter_map(|m| m["sidecar"]["name"].as_str())
        .collect();
    for name in ["vote-bot", "web", "emoji", "voting"] {
        assert!(hellos.contains(&name), "{hellos:?}");
    }
    let requests: Vec<&serde_json::Value> =
        messages.iter().filter(|m| m["type"] == "request").collect();
    let doughnut_at_web = requests.iter().any(|r| {
        r["sidecar"] == "web"
            && r["direction"] == "inbound"
            && r["status"] == 500
            && r["path"].as_str().is_some_and(|p| p.contains("doughnut"))
    });
    assert!(doughnut_at_web, "a failed doughnut vote at web");
    let doughnut_at_voting = requests.iter().any(|r| {
        r["sidecar"] == "voting"
            && r["direction"] == "inbound"
            && r["protocol"] == "grpc"
            && r["grpc_status"] == 2
            && r["grpc_message"] == "ERROR"
            && r["path"] == "/emojivoto.v1.VotingService/VoteDoughnut"
    });
    assert!(doughnut_at_voting, "a failed VoteDoughnut at voting");
}

#[tokio::test]
async fn the_demo_shows_only_what_the_filter_matches() {
    let output = meshtop(&[
        "demo",
        "--headless",
        "--duration",
        "3s",
        "--admin-base",
        "0",
        "--rate",
        "40",
        "--filter",
        "authority~voting",
    ])
    .output();
    let output = within("the demo to finish", output).await.expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (table, rows) = last_table(&stdout);
    assert!(!rows.is_empty(), "{table}");
    assert!(
        rows.iter().all(|r| r[1] == "voting-svc.emojivoto:8080"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_prints_only_the_events_the_filter_keeps() {
    // Issue #16: `demo --json --filter failed` printed successes, and
    // `authority~voting` other services' events. The filter applies to the
    // events printed whether the sidecars filtered them (the default) or
    // sent everything (a recording session).
    let recording =
        std::env::temp_dir().join(format!("meshtop-json-filter-{}.ndjson", std::process::id()));
    let _ = std::fs::remove_file(&recording);
    let record = recording.to_string_lossy().into_owned();
    for extra in [&[][..], &["--record", record.as_str()][..]] {
        let mut args = vec![
            "demo",
            "--json",
            "--filter",
            "failed authority~voting",
            "--duration",
            "4s",
            "--admin-base",
            "0",
            "--rate",
            "40",
        ];
        args.extend_from_slice(extra);
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshtop"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let output = within("the demo to finish", output).await.expect("runs");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let messages: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let requests: Vec<&serde_json::Value> =
            messages.iter().filter(|m| m["type"] == "request").collect();
        assert!(
            !requests.is_empty(),
            "{extra:?}: no failure to voting shown"
        );
        for request in &requests {
            let failed = request["status"].as_u64().is_some_and(|s| s >= 500)
                || request["grpc_status"].as_u64().is_some_and(|g| g != 0)
                || !request["error"].is_null();
            assert!(failed, "{extra:?}: {request}");
            let authority = request["authority"].as_str().unwrap_or_default();
            assert!(authority.contains("voting"), "{extra:?}: {request}");
        }
        // Stats are never filtered.
        assert!(messages.iter().any(|m| m["type"] == "stats"));
    }
    // The recording kept everything: successes and other services too.
    let recorded = std::fs::read_to_string(&recording).expect("the recording");
    assert!(recorded.contains("emoji-svc"));
    let _ = std::fs::remove_file(&recording);
}

/// The demo's calls as the Edges view counts them, from its four sidecars'
/// `stats` (issue 18 §2): exactly vote-bot → web, web → emoji and
/// web → voting, each seen at both ends, with the success rates the
/// caller's sidecar measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_has_exactly_three_edges_with_their_success_rates() {
    use meshtop::demo::{EMOJI_AUTHORITY, VOTING_AUTHORITY};
    use meshtop::filter::FilterExpr;
    use meshtop::telemetry::Direction;
    use meshtop::tui::model::{EdgeRow, Model, UpstreamKey, Window};

    let shutdown = CancellationToken::new();
    let config = DemoConfig {
        rate: 40.0,
        failure_rate: 0.0,
        delay: Duration::ZERO,
        admin_base: 0,
    };
    let demo = meshtop::demo::start(&config, &shutdown)
        .await
        .expect("the demo starts");
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    for (i, (_, admin)) in demo.admins.iter().enumerate() {
        let mut events = Events::connect(*admin, "").await;
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                let message = events.next().await;
                if tx.send((i, message)).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut model = Model::new(demo.admins.iter().map(|(name, _)| name.clone()));
    let window = Window::OneMinute;
    let outbound = |authority: &str| UpstreamKey {
        direction: Direction::Outbound,
        authority: authority.into(),
    };
    let expected = [
        ("vote-bot", WEB_AUTHORITY, "web"),
        ("web", EMOJI_AUTHORITY, "emoji"),
        ("web", VOTING_AUTHORITY, "voting"),
    ];
    let shape = |rows: &[EdgeRow]| {
        let mut shape: Vec<(String, String, Vec<String>)> = rows
            .iter()
            .map(|r| (r.caller.clone(), r.authority.clone(), r.servers.clone()))
            .collect();
        shape.sort();
        shape
    };
    let want: Vec<(String, String, Vec<String>)> = expected
        .iter()
        .map(|(caller, authority, server)| {
            (
                (*caller).into(),
                (*authority).into(),
                vec![(*server).into()],
            )
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let Ok(Some((source, message))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            panic!(
                "no three edges, each with a doughnut failure, within 30 s: {:?}",
                model.edges(window, &FilterExpr::default())
            );
        };
        model.ingest_message(source, &message);
        if !matches!(message, meshtop::schema::Message::Stats(_)) {
            continue;
        }
        let Ok(rows) = &*model.edges(window, &FilterExpr::default()) else {
            unreachable!("no filter is refused");
        };
        let voting_failed = rows
            .iter()
            .any(|r| r.authority == VOTING_AUTHORITY && r.failures > 0);
        let both_ends = rows
            .iter()
            .all(|r| r.caller_p50.is_some() && r.callee_p50.is_some());
        if shape(rows) == want && voting_failed && both_ends {
            break rows.clone();
        }
    };
    let success = |caller: &str, authority: &str| {
        rows.iter()
            .find(|r| r.caller == caller && r.authority == authority)
            .and_then(|r| r.success)
    };
    let upstream_success = |authority: &str| {
        model
            .upstream_row(&outbound(authority), window)
            .and_then(|row| row.success)
    };
    assert_eq!(success("web", EMOJI_AUTHORITY), Some(1.0), "{rows:?}");
    // Only doughnut votes fail: at voting, and so at web, which answers 500.
    assert_eq!(
        success("web", VOTING_AUTHORITY),
        upstream_success(VOTING_AUTHORITY)
    );
    assert!(success("web", VOTING_AUTHORITY).is_some_and(|s| s < 1.0));
    assert_eq!(
        success("vote-bot", WEB_AUTHORITY),
        upstream_success(WEB_AUTHORITY)
    );
    assert!(success("vote-bot", WEB_AUTHORITY).is_some_and(|s| s < 1.0));
    shutdown.cancel();
}

#[tokio::test]
async fn the_headless_demo_prints_its_edges_with_view_edges() {
    let output = meshtop(&[
        "demo",
        "--headless",
        "--duration",
        "4s",
        "--admin-base",
        "0",
        "--rate",
        "40",
        "--failure-rate",
        "0",
        "--view",
        "edges",
    ])
    .output();
    let output = within("the demo to finish", output).await.expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (table, rows) = last_table(&stdout);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "CALLER", "CALLEE", "RPS", "SUCCESS", "P50", "OUT", "P99", "OUT", "P50", "IN", "P99",
            "IN", "FAILURES"
        ],
        "{table}"
    );
    let edges: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[0], r[1], r[2])).collect();
    assert_eq!(
        edges,
        [
            ("vote-bot", "web-svc.emojivoto:80", "(web)"),
            ("web", "emoji-svc.emojivoto:8080", "(emoji)"),
            ("web", "voting-svc.emojivoto:8080", "(voting)"),
        ],
        "{table}"
    );
    // Seen at both ends: both latencies.
    assert!(
        rows.iter()
            .all(|r| r.len() == 10 && !r[5..9].contains(&"-")),
        "{table}"
    );
    assert_eq!(rows[1][4], "100.0%", "web → emoji never fails: {table}");
}
