//! The request inspector: `enter` on a Tap row or on an error group's
//! failing request opens the request whole; `n`/`p` step through the list
//! it came from, `c` shows an equivalent command line (run here against a
//! real server with curl), `y` copies it as the JSON the sidecar sent, and
//! `esc` goes back to where `enter` was pressed. Insta snapshots at 80×24
//! and 160×48; the failing requests the model keeps per error group and
//! their bounds.

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use meshtop::filter::FilterExpr;
use meshtop::schema::{
    Counts, Hello, Message, RequestEvent, SidecarDesc, Stats, UpstreamStats, decode,
};
use meshtop::telemetry::stats::{encode_histogram, new_latency_histogram};
use meshtop::telemetry::{Direction, ErrorKind, HttpProtocol};
use meshtop::tui::input::{Action, RequestList, Tab, UiState};
use meshtop::tui::inspect::command_line;
use meshtop::tui::model::{
    ErrorKey, FAILURE_SAMPLE_BYTES, FAILURES_PER_GROUP, Model, RequestCaller, TAP_CAPACITY,
};
use meshtop::tui::views::draw;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const VOTING: &str = "voting-svc.emojivoto:8080";
const WEB: &str = "web-svc.emojivoto:80";
const LEDGER: &str = "ledger.internal:9000";

fn hello(name: &str, address: &str) -> Message {
    Message::Hello(Hello {
        schema: 1,
        sidecar: SidecarDesc {
            name: name.into(),
            namespace: Some("emojivoto".into()),
            version: "0.1.0".into(),
            started_at: "2026-11-30T00:00:00Z".into(),
        },
        listeners: Vec::new(),
        addresses: vec![address.into()],
        ts: None,
    })
}

/// A request of web's at second `sec`: an outbound one unless changed.
fn event(sec: u64, authority: &str, path: &str) -> RequestEvent {
    RequestEvent {
        ts: format!("2026-11-30T00:00:{sec:02}.250000Z"),
        sidecar: "web".into(),
        direction: Direction::Outbound,
        protocol: HttpProtocol::Http1.into(),
        client: "127.0.0.1:41234".into(),
        server: Some("10.1.0.9:8080".into()),
        authority: authority.into(),
        method: Some("GET".into()),
        path: Some(path.into()),
        status: Some(200),
        grpc_status: None,
        grpc_message: None,
        error: None,
        duration_ms: 4.0,
        ttfb_ms: Some(3.0),
        req_bytes: 0,
        resp_bytes: 1_337,
        headers: None,
    }
}

/// The list call entering web from vote-bot's pod, with captured headers.
fn list_call() -> RequestEvent {
    let mut list = event(1, WEB, "/api/list?page=2");
    list.direction = Direction::Inbound;
    list.client = "10.1.0.5:40000".into();
    list.headers = Some(BTreeMap::from([
        ("authorization".to_owned(), "<redacted>".to_owned()),
        ("x-request-id".to_owned(), "7f3a-42".to_owned()),
    ]));
    list
}

/// A doughnut vote: gRPC, failing with UNKNOWN.
fn doughnut() -> RequestEvent {
    let mut vote = event(2, VOTING, "/emojivoto.v1.VotingService/VoteDoughnut");
    vote.protocol = HttpProtocol::Grpc.into();
    vote.method = Some("POST".into());
    vote.grpc_status = Some(2);
    vote.grpc_message = Some("doughnut is not allowed".into());
    vote.req_bytes = 5;
    vote
}

/// A call to the ledger that nothing answered.
fn refused(sec: u64) -> RequestEvent {
    let mut call = event(sec, LEDGER, "/v1/entries");
    call.method = Some("POST".into());
    call.server = Some("10.0.0.7:8080".into());
    call.status = None;
    call.ttfb_ms = None;
    call.error = Some(ErrorKind::ConnectRefused.into());
    call.duration_ms = 0.088;
    call.req_bytes = 120;
    call.resp_bytes = 0;
    call
}

/// vote-bot and web attached; the list call, the doughnut vote, three
/// refused ledger calls and a last list call.
fn fixture() -> Model {
    let mut model = Model::new(["ws://vote-bot/events".into(), "ws://web/events".into()]);
    model.ingest_message(0, &hello("vote-bot", "10.1.0.5"));
    model.ingest_message(1, &hello("web", "10.1.0.7"));
    model.ingest_message(1, &Message::Request(list_call()));
    model.ingest_message(1, &Message::Request(doughnut()));
    for sec in 3..6 {
        model.ingest_message(1, &Message::Request(refused(sec)));
    }
    model.ingest_message(1, &Message::Request(event(6, WEB, "/api/list")));
    model
}

fn press(ui: &mut UiState, model: &Model, code: KeyCode) -> Action {
    ui.handle_key(KeyEvent::new(code, KeyModifiers::NONE), model)
}

fn screen(model: &Model, ui: &UiState, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    terminal
        .draw(|frame| draw(frame, model, ui))
        .expect("the test backend cannot fail");
    terminal.backend().to_string()
}

/// The screen's text with each line's quotes and padding gone, joined.
fn text(screen: &str) -> String {
    screen
        .lines()
        .map(|line| line.trim_matches('"').trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Tap, with the cursor `up` rows above the newest, and `enter`.
fn inspect_tap(model: &Model, up: usize) -> UiState {
    let mut ui = UiState::new(FilterExpr::default());
    press(&mut ui, model, KeyCode::Char('4'));
    for _ in 0..up {
        press(&mut ui, model, KeyCode::Up);
    }
    assert_eq!(press(&mut ui, model, KeyCode::Enter), Action::Redraw);
    ui
}

fn shown(ui: &UiState) -> &RequestEvent {
    &ui.inspector
        .as_ref()
        .expect("a request is open")
        .entry
        .event
}

#[test]
fn enter_on_a_tap_row_opens_that_request_and_esc_returns_to_it() {
    let model = fixture();
    let mut ui = inspect_tap(&model, 5);
    assert_eq!(shown(&ui), &list_call());
    assert_eq!(
        ui.inspector.as_ref().map(|i| &i.list),
        Some(&RequestList::Tap)
    );
    // Keys of the views do nothing here.
    for key in ['1', '3', 'w', 's', 'e', '/'] {
        assert_eq!(press(&mut ui, &model, KeyCode::Char(key)), Action::None);
    }
    press(&mut ui, &model, KeyCode::Esc);
    assert!(ui.inspector.is_none());
    assert_eq!(ui.tab, Tab::Tap);
    let entries = ui.tap_entries(&model);
    let cursor = ui.tap_selected(&entries).expect("a row is selected");
    assert_eq!(
        entries[cursor].1.event,
        list_call(),
        "the cursor stays on it"
    );
}

#[test]
fn the_inspector_shows_every_field_of_the_request() {
    let model = fixture();
    let ui = inspect_tap(&model, 5);
    let wide = text(&screen(&model, &ui, 160, 48));
    for expected in [
        "request 1 of 6 in the tap",
        "2026-11-30T00:00:01.250000Z",
        "web, inbound (entering web's pod)",
        "http/1.1",
        "10.1.0.5:40000 (vote-bot's pod)",
        "10.1.0.9:8080",
        "GET web-svc.emojivoto:80",
        "/api/list?page=2",
        "200 OK",
        "4.00ms in all; the first byte of the response after 3.00ms",
        "0 B sent, 1.3k B received",
        "authorization: <redacted> (a secret: the sidecar never records it)",
        "x-request-id: 7f3a-42",
    ] {
        assert!(wide.contains(expected), "{expected}:\n{wide}");
    }
    // The timeline: three quarters waiting for the first byte.
    let bar = wide
        .lines()
        .find(|line| line.contains('█'))
        .expect("a timeline");
    let waited = bar.chars().filter(|&c| c == '█').count();
    let rest = bar.chars().filter(|&c| c == '░').count();
    assert_eq!((waited, rest), (45, 15), "{bar}");

    let mut ui = inspect_tap(&model, 4);
    let grpc = text(&screen(&model, &ui, 160, 48));
    assert!(
        grpc.contains("2 UNKNOWN: doughnut is not allowed"),
        "{grpc}"
    );
    assert!(grpc.contains("127.0.0.1:41234 (web's app)"), "{grpc}");
    press(&mut ui, &model, KeyCode::Char('p'));
    press(&mut ui, &model, KeyCode::Char('n'));
    press(&mut ui, &model, KeyCode::Char('n'));
    let refused = text(&screen(&model, &ui, 160, 48));
    for expected in [
        "connect refused: nothing listened on 10.0.0.7:8080",
        "- (no response)",
        "88µs in all; no response came",
        "none captured (the sidecar's --capture-header names which)",
    ] {
        assert!(refused.contains(expected), "{expected}:\n{refused}");
    }
}

#[test]
fn inspector_snapshots() {
    let model = fixture();
    let ui = inspect_tap(&model, 5);
    insta::assert_snapshot!("inspector_80x24", screen(&model, &ui, 80, 24));
    insta::assert_snapshot!("inspector_160x48", screen(&model, &ui, 160, 48));
    let mut ui = inspect_tap(&model, 3);
    insta::assert_snapshot!("inspector_refused_80x24", screen(&model, &ui, 80, 24));
    press(&mut ui, &model, KeyCode::Char('c'));
    insta::assert_snapshot!("inspector_curl_80x24", screen(&model, &ui, 80, 24));
    insta::assert_snapshot!("inspector_curl_160x48", screen(&model, &ui, 160, 48));
    let mut ui = UiState::new(FilterExpr::default());
    press(&mut ui, &model, KeyCode::Char('3'));
    press(&mut ui, &model, KeyCode::Enter);
    insta::assert_snapshot!("error_failures_80x24", screen(&model, &ui, 80, 24));
    insta::assert_snapshot!("error_failures_160x48", screen(&model, &ui, 160, 48));
}

#[test]
fn a_long_path_wraps_whole_and_scrolls() {
    let mut model = fixture();
    let path = format!("/api/{}", "segment-".repeat(120));
    model.ingest_message(1, &Message::Request(event(7, WEB, &path)));
    let mut ui = inspect_tap(&model, 0);
    ui.page_rows = 18;
    let narrow = screen(&model, &ui, 80, 24);
    let joined: String = narrow
        .lines()
        .map(|line| line.trim_matches('"').trim_end())
        .filter_map(|line| line.get(11..))
        .collect();
    assert!(joined.contains(&path), "the whole path, wrapped:\n{narrow}");
    assert!(!narrow.contains("headers"), "the end is below:\n{narrow}");
    // Scrolled to the end, the last line shows; further does nothing.
    press(&mut ui, &model, KeyCode::End);
    let end = screen(&model, &ui, 80, 24);
    assert!(end.contains("headers"), "{end}");
    let scroll = ui.inspector.as_ref().map(|i| i.scroll);
    assert_eq!(press(&mut ui, &model, KeyCode::Down), Action::Redraw);
    assert_eq!(ui.inspector.as_ref().map(|i| i.scroll), scroll);
    press(&mut ui, &model, KeyCode::Up);
    assert_eq!(
        ui.inspector.as_ref().map(|i| i.scroll),
        scroll.map(|s| s - 1),
        "one key up moves one line up"
    );
}

/// One second of `sidecar`'s outbound stats: a request to `authority`.
fn outbound_stats(sidecar: &str, authority: &str) -> Message {
    let mut histogram = new_latency_histogram();
    histogram.record(1_000).expect("in range");
    Message::Stats(Stats {
        ts: "2026-11-30T00:00:02Z".into(),
        sidecar: sidecar.into(),
        interval_ms: 1_000,
        upstreams: vec![UpstreamStats {
            direction: Direction::Outbound,
            authority: authority.into(),
            counts: Counts {
                requests: 1,
                latency: encode_histogram(&histogram),
                ..Counts::default()
            },
            routes: Vec::new(),
            clients: Vec::new(),
        }],
        backfill: false,
    })
}

#[test]
fn the_caller_of_an_inbound_request_is_told_by_address_then_by_who_calls() {
    let mut model = Model::new(["ws://a".into(), "ws://b".into(), "ws://c".into()]);
    // Three pods on one address, as in the demo.
    for (source, name) in ["vote-bot", "web", "emoji"].into_iter().enumerate() {
        model.ingest_message(source, &hello(name, "127.0.0.1"));
    }
    let mut call = list_call();
    call.client = "127.0.0.1:40000".into();
    assert_eq!(
        model.request_caller(&call),
        RequestCaller::OneOf(vec!["vote-bot", "web", "emoji"])
    );
    // vote-bot's stats name web's authority: it is the caller.
    model.ingest_message(0, &outbound_stats("vote-bot", WEB));
    assert_eq!(
        model.request_caller(&call),
        RequestCaller::Sidecar("vote-bot")
    );
    model.ingest_message(1, &Message::Request(call.clone()));
    let ui = inspect_tap(&model, 0);
    let screen = screen(&model, &ui, 160, 48);
    assert!(
        screen.contains("127.0.0.1:40000 (vote-bot's pod)"),
        "{screen}"
    );
    // An address no sidecar has, and an outbound request.
    call.client = "10.9.9.9:1".into();
    assert_eq!(model.request_caller(&call), RequestCaller::Unknown);
    assert_eq!(model.request_caller(&doughnut()), RequestCaller::App);
}

#[test]
fn n_and_p_step_through_the_tap_and_stop_at_its_ends() {
    let model = fixture();
    let mut ui = inspect_tap(&model, 5);
    press(&mut ui, &model, KeyCode::Char('p'));
    assert_eq!(shown(&ui), &list_call(), "nothing older");
    assert!(ui.hint.as_deref().is_some_and(|h| h.contains("no older")));
    press(&mut ui, &model, KeyCode::Char('n'));
    assert_eq!(shown(&ui), &doughnut());
    for _ in 0..10 {
        press(&mut ui, &model, KeyCode::Char('n'));
    }
    assert_eq!(shown(&ui).path.as_deref(), Some("/api/list"));
    assert!(ui.hint.as_deref().is_some_and(|h| h.contains("no newer")));
    // `esc` lands on the request last shown.
    press(&mut ui, &model, KeyCode::Char('p'));
    press(&mut ui, &model, KeyCode::Esc);
    let entries = ui.tap_entries(&model);
    let cursor = ui.tap_selected(&entries).expect("a row is selected");
    assert_eq!(entries[cursor].1.event, refused(5));

    // Under a filter, only what passes.
    let mut ui = UiState::new("failed".parse::<FilterExpr>().expect("a valid filter"));
    press(&mut ui, &model, KeyCode::Char('4'));
    press(&mut ui, &model, KeyCode::Char('g'));
    press(&mut ui, &model, KeyCode::Enter);
    assert_eq!(shown(&ui), &doughnut());
    press(&mut ui, &model, KeyCode::Char('n'));
    assert_eq!(shown(&ui), &refused(3));
}

#[test]
fn a_request_the_tap_let_go_stays_open_and_still_steps() {
    let mut model = fixture();
    let mut ui = inspect_tap(&model, 5);
    for _ in 0..TAP_CAPACITY {
        model.ingest_message(1, &Message::Request(event(8, WEB, "/api/list")));
    }
    assert_eq!(shown(&ui), &list_call());
    let screen = screen(&model, &ui, 160, 48);
    assert!(
        screen.contains("request no longer kept in the tap"),
        "{screen}"
    );
    press(&mut ui, &model, KeyCode::Char('n'));
    assert_eq!(
        shown(&ui),
        &event(8, WEB, "/api/list"),
        "the oldest still kept"
    );
}

#[test]
fn an_error_group_lists_its_newest_failures_and_enter_inspects_one() {
    let mut model = fixture();
    for sec in 10..40 {
        model.ingest_message(1, &Message::Request(refused(sec)));
    }
    let group = model.errors(&FilterExpr::default(), None)[0].key.clone();
    assert_eq!(group.upstream.authority, LEDGER);
    let kept = model.failures(&group);
    assert_eq!(kept.len(), FAILURES_PER_GROUP);
    assert_eq!(kept.last().map(|(_, e)| &e.event), Some(&refused(39)));
    assert_eq!(kept[0].1.event, refused(39 - FAILURES_PER_GROUP as u64 + 1));

    let mut ui = UiState::new(FilterExpr::default());
    press(&mut ui, &model, KeyCode::Char('3'));
    press(&mut ui, &model, KeyCode::Enter);
    assert_eq!(ui.failures_of.as_ref(), Some(&group));
    let list = screen(&model, &ui, 160, 48);
    assert!(
        list.contains("the newest 20 failing requests kept"),
        "{list}"
    );
    press(&mut ui, &model, KeyCode::Up);
    press(&mut ui, &model, KeyCode::Enter);
    assert_eq!(shown(&ui), &refused(38));
    assert_eq!(
        ui.inspector.as_ref().map(|i| &i.list),
        Some(&RequestList::Failures(group.clone()))
    );
    press(&mut ui, &model, KeyCode::Char('n'));
    assert_eq!(shown(&ui), &refused(39));
    press(&mut ui, &model, KeyCode::Char('n'));
    assert_eq!(shown(&ui), &refused(39), "the newest of the group");
    press(&mut ui, &model, KeyCode::Esc);
    assert_eq!(ui.failures_of.as_ref(), Some(&group));
    press(&mut ui, &model, KeyCode::Esc);
    assert_eq!((ui.tab, ui.failures_of.clone()), (Tab::Errors, None));

    // A group without kept requests says so rather than showing an
    // empty list as if nothing failed.
    let mut empty = UiState::new("sidecar=nobody".parse::<FilterExpr>().expect("valid"));
    empty.tab = Tab::Errors;
    empty.failures_of = Some(group);
    let screen = screen(&model, &empty, 80, 24);
    assert!(screen.contains("none kept"), "{screen}");
}

#[test]
fn failing_requests_are_kept_within_their_byte_bound() {
    let mut model = Model::new(["ws://web/events".to_string()]);
    let long = "x".repeat(4_000);
    for i in 0..20_000u64 {
        // 500 groups (upstreams) of 40 requests each, with long paths.
        let mut call = refused(i % 60);
        call.authority = format!("ledger-{}:9000", i % 500);
        call.path = Some(format!("/v1/{long}"));
        model.ingest_message(0, &Message::Request(call));
        assert!(model.failure_bytes() <= FAILURE_SAMPLE_BYTES + 8_192);
    }
    let groups = model.errors(&FilterExpr::default(), None);
    let kept: usize = groups.iter().map(|g| model.failures(&g.key).len()).sum();
    assert!(
        kept > 1_000 && kept * 4_000 <= FAILURE_SAMPLE_BYTES + 8_192,
        "{kept}"
    );
    // The newest group keeps its newest request.
    let newest: &ErrorKey = &groups
        .iter()
        .find(|g| g.key.upstream.authority == "ledger-499:9000")
        .expect("the newest group")
        .key;
    assert!(!model.failures(newest).is_empty());
}

#[test]
fn y_copies_the_request_as_the_json_the_sidecar_sent() {
    let model = fixture();
    let mut ui = inspect_tap(&model, 5);
    assert_eq!(press(&mut ui, &model, KeyCode::Char('y')), Action::Redraw);
    let json = ui.clipboard.take().expect("text to copy");
    assert_eq!(
        decode(&json).expect("it decodes"),
        Message::Request(list_call())
    );
    assert!(json.starts_with(r#"{"type":"request""#), "{json}");
    assert!(ui.hint.as_deref().is_some_and(|h| h.contains("copied")));
}

#[test]
fn c_writes_curl_for_http_and_grpcurl_for_grpc() {
    assert_eq!(
        command_line(&list_call()),
        [
            "curl \\",
            "  -H 'authorization: <redacted>' \\",
            "  -H 'x-request-id: 7f3a-42' \\",
            "  'http://web-svc.emojivoto:80/api/list?page=2'",
            "# the sidecar redacted authorization: put the real value in place of <redacted>",
        ]
    );
    assert_eq!(
        command_line(&doughnut()),
        [
            "grpcurl -plaintext \\",
            "  -d '{}' \\",
            "  voting-svc.emojivoto:8080 \\",
            "  emojivoto.v1.VotingService/VoteDoughnut",
            "# grpcurl needs the server's reflection service, or the .proto with -proto FILE",
            "# no headers were captured (the sidecar's --capture-header names which)",
        ]
    );
    let post = command_line(&refused(3));
    assert_eq!(post[0], "curl \\");
    assert!(post.contains(&"  -X POST \\".to_owned()), "{post:?}");
    assert!(post.contains(&"  --data-binary @request-body \\".to_owned()));
    assert!(
        post.iter()
            .any(|l| l.contains("120-byte request body is not recorded"))
    );
}

/// What a server saw of one request: method, target and headers.
type Seen = (String, String, Vec<(String, String)>);

/// A server that reports the head of each request it answers.
async fn recording_server() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen_tx.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect();
                let _ = seen.send((req.method().to_string(), req.uri().to_string(), headers));
                async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn the_curl_command_repeats_the_request_against_a_real_server() {
    if !support::have("curl") {
        eprintln!("skipped: curl is not installed (.ci/run installs it)");
        return;
    }
    let (addr, mut seen) = recording_server().await;
    let mut call = list_call();
    call.authority = addr.to_string();
    call.method = Some("DELETE".into());
    call.path = Some("/api/votes/it's%20mine?x=1&y=$HOME".into());
    call.headers = Some(BTreeMap::from([
        ("x-note".to_owned(), "a 'quoted' $value; `ls`".to_owned()),
        ("x-request-id".to_owned(), "7f3a-42".to_owned()),
    ]));
    let script: Vec<String> = command_line(&call)
        .into_iter()
        .filter(|line| !line.starts_with('#'))
        .collect();
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{} -s -o /dev/null", script.join("\n")))
        .output()
        .await
        .expect("sh runs");
    assert!(output.status.success(), "{output:?}\n{}", script.join("\n"));
    let (method, target, headers) = support::within("the request", seen.recv())
        .await
        .expect("the server saw it");
    assert_eq!(method, "DELETE");
    assert_eq!(target, "/api/votes/it's%20mine?x=1&y=$HOME");
    for (name, value) in call.headers.iter().flatten() {
        assert!(
            headers.contains(&(name.clone(), value.clone())),
            "{name}: {value} in {headers:?}"
        );
    }
}
