//! The terminal UI's views and keys: every view rendered from fixed fixture
//! messages at 80×24 and 160×48 (insta snapshots), colours where they carry
//! meaning, any area down to 0×0 without a panic, and key handling as a
//! state machine without a terminal.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use meshtop::filter::FilterExpr;
use meshtop::schema::{
    ClientStats, Counts, Dropped, Hello, ListenerDesc, Message, RequestEvent, SidecarDesc, Stats,
    StatusClasses, UpstreamStats,
};
use meshtop::telemetry::stats::{encode_histogram, new_latency_histogram};
use meshtop::telemetry::{Direction, ErrorKind, HttpProtocol};
use meshtop::tui::input::{Action, Tab, UiState};
use meshtop::tui::keys::{self, Command, Context};
use meshtop::tui::model::{Model, SortColumn, TAP_CAPACITY, UpstreamKey, Window};
use meshtop::tui::source::{FeedItem, FeedKind};
use meshtop::tui::views::{Screen, UpstreamsView, draw};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::widgets::Widget;

const VOTING: &str = "voting-svc.emojivoto:8080";
const EMOJI: &str = "emoji-svc.emojivoto:8080";
const WEB: &str = "web-svc.emojivoto:80";
const LEDGER: &str = "ledger.internal:9000";
const LONG: &str =
    "payments-gateway-with-a-very-long-service-name.payments-namespace.svc.cluster.local:8443";

/// `2026-11-30T00:MM:SS.micros Z` for `sec` seconds (under an hour) after
/// 00:00:00: fixture time is written out, never taken from the clock.
fn ts(sec: u64, micros: u32) -> String {
    format!("2026-11-30T00:{:02}:{:02}.{micros:06}Z", sec / 60, sec % 60)
}

fn hello(name: &str, started_at: &str, listeners: Vec<ListenerDesc>) -> Message {
    Message::Hello(Hello {
        schema: 1,
        sidecar: SidecarDesc {
            name: name.into(),
            namespace: Some("emojivoto".into()),
            version: "0.1.0".into(),
            started_at: started_at.into(),
        },
        listeners,
        addresses: Vec::new(),
        ts: None,
    })
}

/// One upstream's second: these durations (µs), the last `failures` of
/// them failed with `failure_status`.
struct Upstream<'a> {
    direction: Direction,
    authority: &'a str,
    durations: Vec<u64>,
    failures: u64,
    failure_status: u16,
}

fn stats(sidecar: &str, sec: u64, upstreams: &[Upstream]) -> Message {
    let upstreams = upstreams
        .iter()
        .map(|u| {
            let mut latency = new_latency_histogram();
            for d in &u.durations {
                latency.record(*d).expect("durations are in range");
            }
            let requests = u.durations.len() as u64;
            let mut status = StatusClasses::default();
            status.add(200, requests - u.failures);
            status.add(u.failure_status, u.failures);
            UpstreamStats {
                direction: u.direction,
                authority: u.authority.into(),
                counts: Counts {
                    requests,
                    failures: u.failures,
                    status,
                    grpc_status: Default::default(),
                    errors: Default::default(),
                    req_bytes: requests * 120,
                    resp_bytes: requests * 800,
                    latency: encode_histogram(&latency),
                },
                routes: Vec::new(),
                clients: Vec::new(),
            }
        })
        .collect();
    Message::Stats(Stats {
        ts: ts(sec, 0),
        sidecar: sidecar.into(),
        interval_ms: 1000,
        backfill: false,
        upstreams,
    })
}

struct Request<'a> {
    sidecar: &'a str,
    sec: u64,
    direction: Direction,
    authority: &'a str,
    method: &'a str,
    path: &'a str,
    status: Option<u16>,
    grpc: Option<(u32, &'a str)>,
    error: Option<ErrorKind>,
    duration_ms: f64,
}

fn request(r: Request) -> Message {
    Message::Request(RequestEvent {
        ts: ts(r.sec, 250_000),
        sidecar: r.sidecar.into(),
        direction: r.direction,
        protocol: if r.grpc.is_some() {
            HttpProtocol::Grpc
        } else {
            HttpProtocol::Http1
        }
        .into(),
        client: "10.1.0.7:41234".into(),
        server: Some("10.1.0.9:8080".into()),
        authority: r.authority.into(),
        method: Some(r.method.into()),
        path: Some(r.path.into()),
        status: r.status,
        grpc_status: r.grpc.map(|(code, _)| code),
        grpc_message: r.grpc.filter(|(code, _)| *code != 0).map(|(_, m)| m.into()),
        error: r.error.map(Into::into),
        duration_ms: r.duration_ms,
        ttfb_ms: Some(r.duration_ms / 2.0),
        req_bytes: 42,
        resp_bytes: 1_337,
        headers: None,
    })
}

fn vote_doughnut(sidecar: &str, sec: u64, direction: Direction) -> Message {
    request(Request {
        sidecar,
        sec,
        direction,
        authority: VOTING,
        method: "POST",
        path: "/emojivoto.v1.VotingService/VoteDoughnut",
        status: Some(200),
        grpc: Some((2, "ERROR")),
        error: None,
        duration_ms: 2.125,
    })
}

/// Two sidecars (web and voting) live for ten seconds of stats and a few
/// sampled requests, and a third target that never answered.
fn fixture() -> Model {
    let mut model = Model::new([
        "ws://127.0.0.1:15090/events".to_string(),
        "ws://127.0.0.1:15091/events".to_string(),
        "ws://127.0.0.1:15092/events".to_string(),
    ]);
    model.ingest(&FeedItem {
        source: 0,
        kind: FeedKind::Live {
            filter: String::new(),
        },
    });
    model.ingest_message(
        0,
        &hello(
            "web-7d9f8b",
            "2026-11-29T22:58:00Z",
            vec![
                ListenerDesc {
                    direction: Direction::Inbound,
                    addr: "0.0.0.0:15006".into(),
                    target: Some("127.0.0.1:8080".into()),
                },
                ListenerDesc {
                    direction: Direction::Outbound,
                    addr: "0.0.0.0:15001".into(),
                    target: None,
                },
            ],
        ),
    );
    model.ingest_message(1, &hello("voting-5c4b", "2026-11-29T23:59:30Z", Vec::new()));
    model.ingest(&FeedItem {
        source: 1,
        kind: FeedKind::Invalid {
            reason: "unknown message type 'metrics'".into(),
        },
    });
    model.ingest_message(
        1,
        &Message::Dropped(Dropped {
            count: 7,
            total: 42,
        }),
    );
    model.ingest(&FeedItem {
        source: 2,
        kind: FeedKind::Reconnecting {
            reason: "connection refused".into(),
            retry_in: std::time::Duration::from_millis(800),
        },
    });

    for sec in 1..=10 {
        let web = [
            // 85% success: red.
            Upstream {
                direction: Direction::Outbound,
                authority: VOTING,
                durations: (0..20).map(|i| 800 + i * 150).chain([45_000]).collect(),
                failures: 3,
                failure_status: 200,
            },
            // 96.7% success: yellow.
            Upstream {
                direction: Direction::Outbound,
                authority: EMOJI,
                durations: (0..30).map(|i| 400 + i * 40).collect(),
                failures: 1,
                failure_status: 503,
            },
            // All fine but a p99 over a second: yellow.
            Upstream {
                direction: Direction::Inbound,
                authority: WEB,
                durations: (0..10).map(|i| 5_000 + i * i * 16_000).collect(),
                failures: u64::from(sec == 4),
                failure_status: 500,
            },
            Upstream {
                direction: Direction::Outbound,
                authority: LONG,
                durations: vec![12_000, 14_500],
                failures: 0,
                failure_status: 500,
            },
            // Nothing gets through: red.
            Upstream {
                direction: Direction::Outbound,
                authority: LEDGER,
                durations: vec![150],
                failures: 1,
                failure_status: 502,
            },
        ];
        model.ingest_message(0, &stats("web-7d9f8b", sec, &web));
        let voting = [Upstream {
            direction: Direction::Inbound,
            authority: VOTING,
            durations: (0..20).map(|i| 600 + i * 90).collect(),
            failures: 3,
            failure_status: 200,
        }];
        model.ingest_message(1, &stats("voting-5c4b", sec, &voting));

        match sec {
            3 => {
                model.ingest_message(0, &vote_doughnut("web-7d9f8b", 3, Direction::Outbound));
                model.ingest_message(1, &vote_doughnut("voting-5c4b", 3, Direction::Inbound));
                model.ingest_message(
                    0,
                    &request(Request {
                        sidecar: "web-7d9f8b",
                        sec: 3,
                        direction: Direction::Outbound,
                        authority: VOTING,
                        method: "POST",
                        path: "/emojivoto.v1.VotingService/VotePoop",
                        status: Some(200),
                        grpc: Some((0, "")),
                        error: None,
                        duration_ms: 1.25,
                    }),
                );
            }
            4 => {
                model.ingest_message(
                    0,
                    &request(Request {
                        sidecar: "web-7d9f8b",
                        sec: 4,
                        direction: Direction::Inbound,
                        authority: WEB,
                        method: "GET",
                        path: "/api/vote?choice=:doughnut:",
                        status: Some(500),
                        grpc: None,
                        error: None,
                        duration_ms: 1_250.5,
                    }),
                );
                model.ingest_message(
                    0,
                    &request(Request {
                        sidecar: "web-7d9f8b",
                        sec: 4,
                        direction: Direction::Inbound,
                        authority: WEB,
                        method: "GET",
                        path: "/api/list?page=2",
                        status: Some(200),
                        grpc: None,
                        error: None,
                        duration_ms: 8.5,
                    }),
                );
            }
            6 => {
                model.ingest_message(
                    0,
                    &request(Request {
                        sidecar: "web-7d9f8b",
                        sec: 6,
                        direction: Direction::Outbound,
                        authority: LEDGER,
                        method: "POST",
                        path: "/v1/entries",
                        status: None,
                        grpc: None,
                        error: Some(ErrorKind::ConnectRefused),
                        duration_ms: 0.15,
                    }),
                );
                model.ingest_message(
                    0,
                    &request(Request {
                        sidecar: "web-7d9f8b",
                        sec: 6,
                        direction: Direction::Outbound,
                        authority: EMOJI,
                        method: "POST",
                        path: "/emojivoto.v1.EmojiService/ListAll",
                        status: Some(200),
                        grpc: Some((0, "")),
                        error: None,
                        duration_ms: 0.9,
                    }),
                );
            }
            8 => {
                model.ingest_message(0, &vote_doughnut("web-7d9f8b", 8, Direction::Outbound));
                model.ingest_message(
                    0,
                    &request(Request {
                        sidecar: "web-7d9f8b",
                        sec: 8,
                        direction: Direction::Outbound,
                        authority: LONG,
                        method: "GET",
                        path: "/health",
                        status: Some(200),
                        grpc: None,
                        error: None,
                        duration_ms: 13.0,
                    }),
                );
            }
            9 => {
                model.ingest_message(
                    0,
                    &request(Request {
                        sidecar: "web-7d9f8b",
                        sec: 9,
                        direction: Direction::Inbound,
                        authority: WEB,
                        method: "GET",
                        path: "/api/list",
                        status: Some(200),
                        grpc: None,
                        error: None,
                        duration_ms: 6.75,
                    }),
                );
            }
            _ => {}
        }
    }
    model
}

fn voting_outbound() -> UpstreamKey {
    UpstreamKey {
        direction: Direction::Outbound,
        authority: VOTING.into(),
    }
}

fn ui() -> UiState {
    UiState::new(FilterExpr::default())
}

fn ui_on(tab: Tab) -> UiState {
    let mut ui = ui();
    ui.tab = tab;
    if tab == Tab::Detail {
        ui.detail = Some(voting_outbound());
    }
    ui
}

/// Draws through the same entry point as the app.
fn terminal(model: &Model, ui: &UiState, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal =
        Terminal::new(TestBackend::new(width, height)).expect("the test backend cannot fail");
    terminal
        .draw(|frame| draw(frame, model, ui))
        .expect("the test backend cannot fail");
    terminal
}

/// The screen as text.
fn screen(model: &Model, ui: &UiState, width: u16, height: u16) -> String {
    terminal(model, ui, width, height).backend().to_string()
}

fn press(ui: &mut UiState, model: &Model, code: KeyCode) -> Action {
    ui.handle_key(KeyEvent::new(code, KeyModifiers::NONE), model)
}

fn type_text(ui: &mut UiState, model: &Model, text: &str) {
    for c in text.chars() {
        press(ui, model, KeyCode::Char(c));
    }
}

fn snapshot_both_sizes(name: &str, model: &Model, ui: &UiState) {
    insta::assert_snapshot!(format!("{name}_80x24"), screen(model, ui, 80, 24));
    insta::assert_snapshot!(format!("{name}_160x48"), screen(model, ui, 160, 48));
}

#[test]
fn upstreams_view() {
    snapshot_both_sizes("upstreams", &fixture(), &ui_on(Tab::Upstreams));
}

#[test]
fn upstream_detail_view() {
    snapshot_both_sizes("detail", &fixture(), &ui_on(Tab::Detail));
}

#[test]
fn a_narrow_tap_keeps_the_hop_and_the_grpc_method() {
    let model = fixture();
    let ui = ui_on(Tab::Tap);
    let text = screen(&model, &ui, 80, 24);
    // The two hops of one call: leaving web, entering voting.
    assert!(
        text.contains("web-7d9f8b→") && text.contains("→voting-5c4b"),
        "{text}"
    );
    assert!(text.contains("/VoteDoughnut"), "the method stays:\n{text}");
    let wide = screen(&model, &ui, 160, 48);
    assert!(
        wide.contains("SIDECAR") && !wide.contains(" HOP "),
        "{wide}"
    );
}

#[test]
fn the_latency_histogram_on_a_linear_scale() {
    let model = fixture();
    let mut ui = ui_on(Tab::Detail);
    assert_eq!(
        ui.handle_key(
            KeyEvent::new(KeyCode::Char('h'), KeyModifiers::NONE),
            &model
        ),
        Action::Redraw
    );
    snapshot_both_sizes("detail_linear", &model, &ui);
    let text = screen(&model, &ui, 160, 48);
    assert!(text.contains("linear p1–p99.9"), "{text}");
    assert!(
        text.contains("h log"),
        "the hint offers the way back:\n{text}"
    );
}

#[test]
fn errors_view() {
    snapshot_both_sizes("errors", &fixture(), &ui_on(Tab::Errors));
}

#[test]
fn tap_view() {
    snapshot_both_sizes("tap", &fixture(), &ui_on(Tab::Tap));
}

#[test]
fn sidecars_view() {
    snapshot_both_sizes("sidecars", &fixture(), &ui_on(Tab::Sidecars));
}

#[test]
fn help_overlay() {
    let mut ui = ui();
    ui.help = true;
    snapshot_both_sizes("help", &fixture(), &ui);
}

fn replaying(ui: &mut UiState) {
    ui.replay = Some(meshtop::tui::replay::Progress {
        position: std::time::Duration::from_secs(25),
        length: std::time::Duration::from_secs(180),
        speed: meshtop::tui::replay::Speed::Factor(8.0),
        paused: false,
        finished: false,
        seeked: None,
    });
}

#[test]
fn a_replay_says_it_is_one_and_helps_with_its_own_keys() {
    // Issue #16: the header said `4/4 live` and `?` listed `g G first/last
    // row` and `space pause the screen`, which act on the player there.
    let model = fixture();
    let mut ui = ui();
    replaying(&mut ui);
    let text = screen(&model, &ui, 80, 24);
    let header = text.lines().next().expect("a header");
    assert!(header.contains("replay 0:25 / 3:00 8×"), "{header}");
    assert!(!header.contains("live"), "{header}");
    ui.help = true;
    snapshot_both_sizes("replay_help", &model, &ui);
    let help = screen(&model, &ui, 160, 48);
    assert!(help.contains("play / pause the replay"), "{help}");
    assert!(!help.contains("pause the screen"), "{help}");
    assert!(!help.contains("g G, Home End"), "{help}");
}

#[test]
fn header_markers_filter_and_sort_column() {
    let model = fixture();
    let mut ui = ui();
    ui.paused = true;
    ui.recording = true;
    ui.failures_only = true;
    ui.sort = SortColumn::P99;
    ui.window = Window::OneMinute;
    ui.filter = "direction=outbound".parse().expect("a valid filter");
    insta::assert_snapshot!("header_markers_80x24", screen(&model, &ui, 80, 24));
}

/// A sidecar that went away: the banner says why, its rows are dimmed and
/// say how long ago their last stats came, and the header leaves them out.
#[test]
fn a_gone_sidecars_rows_are_stale_under_the_banner() {
    let mut model = fixture();
    let before = model.summary(Window::TenSeconds, &FilterExpr::default());
    model.ingest(&FeedItem {
        source: 1,
        kind: FeedKind::Reconnecting {
            reason: "connection reset by peer".into(),
            retry_in: std::time::Duration::from_secs(2),
        },
    });
    let ui = ui();
    let stale: Vec<String> = ui
        .upstream_rows(&model)
        .iter()
        .filter(|r| r.stale.is_some())
        .map(|r| r.key.authority.clone())
        .collect();
    assert!(!stale.is_empty(), "voting's sidecar sent stats");
    // voting's inbound row left the header; the calls to it now count at
    // their caller's outbound row, which the header had left out for
    // being the same calls.
    let after = model.summary(Window::TenSeconds, &FilterExpr::default());
    assert_ne!(after, before);
    let text = screen(&model, &ui, 160, 48);
    assert!(text.contains("· stale"), "{text}");
    assert!(text.contains("connection reset by peer"), "{text}");
    insta::assert_snapshot!("stale_rows_160x48", text);
    insta::assert_snapshot!("stale_rows_80x24", screen(&model, &ui, 80, 24));
}

/// A `sidecar` term applies in every view: the Upstreams rows count what
/// that sidecar's stats say, the Errors and Tap views its requests, the
/// Sidecars view lists it alone.
#[test]
fn every_view_applies_a_sidecar_filter() {
    let model = fixture();
    let mut ui = ui();
    ui.filter = "sidecar~voting".parse().expect("a valid filter");
    let all = ui_on(Tab::Upstreams).upstream_rows(&model);
    let rows = ui.upstream_rows(&model);
    assert!(!rows.is_empty() && rows.len() < all.len(), "{rows:?}");
    for tab in [Tab::Upstreams, Tab::Errors, Tab::Tap, Tab::Sidecars] {
        ui.tab = tab;
        let text = screen(&model, &ui, 160, 48);
        assert!(!text.contains("web-7d9f8b"), "{tab:?}: {text}");
        assert!(!text.contains("from events"), "{tab:?}: exact: {text}");
    }
    ui.tab = Tab::Sidecars;
    assert!(screen(&model, &ui, 160, 48).contains("voting-5c4b"));
    assert_eq!(ui.sidecar_rows(&model).len(), 1);
}

/// What a newer sidecar may send within schema 1 (docs/events.md, "Evolving
/// the schema"): an error kind and a protocol this build does not know, new
/// fields, a new message type. The request is shown as it came, counted as
/// a failure under its own name; the new message type is counted, not
/// called invalid.
#[test]
fn a_newer_sidecars_messages_are_shown_not_dropped() {
    let mut model = fixture();
    let texts = [
        r#"{"type":"request","ts":"2026-11-30T00:00:09.000001Z","sidecar":"web-7d9f8b","direction":"outbound","protocol":"h3","client":"10.1.0.7:41234","server":"10.1.0.12:443","authority":"quota.internal:443","method":"GET","path":"/v2/limits","status":null,"grpc_status":null,"grpc_message":null,"error":"quota_exceeded","duration_ms":3.5,"ttfb_ms":null,"req_bytes":0,"resp_bytes":0,"trace_id":"abc","retries":2}"#,
        r#"{"type":"tcp","ts":"2026-11-30T00:00:09.000002Z","sidecar":"web-7d9f8b","direction":"outbound","protocol":"quic","client":"10.1.0.7:41235","server":"10.1.0.12:443","sni":null,"bytes_in":1,"bytes_out":2,"duration_ms":1.0,"error":"quota_exceeded"}"#,
        r#"{"type":"profile","ts":"2026-11-30T00:00:09.5Z","samples":[1,2,3]}"#,
    ];
    for text in texts {
        let message: Message = serde_json::from_str(text).expect("a newer sidecar's message reads");
        model.ingest(&FeedItem {
            source: 0,
            kind: FeedKind::Message {
                message,
                raw: text.into(),
                received: None,
            },
        });
    }
    let sidecar = &model.sidecars()[0];
    assert_eq!((sidecar.invalid, sidecar.newer), (0, 1));
    let event = &model.tap().back().expect("in the tap").event;
    assert_eq!(event.protocol.as_str(), "h3");
    assert_eq!(
        event.error.as_ref().map(|e| e.as_str()),
        Some("quota_exceeded")
    );
    // It writes back as it came.
    let written = serde_json::to_value(Message::Request(event.clone())).expect("encodes");
    assert_eq!(written["protocol"], "h3");
    assert_eq!(written["error"], "quota_exceeded");
    let mut ui = ui();
    ui.tab = Tab::Errors;
    let errors = screen(&model, &ui, 160, 48);
    assert!(errors.contains("quota exceeded"), "{errors}");
    ui.tab = Tab::Tap;
    let tap = screen(&model, &ui, 160, 48);
    assert!(tap.contains("/v2/limits"), "{tap}");
    ui.tab = Tab::Sidecars;
    let sidecars = screen(&model, &ui, 160, 48);
    assert!(sidecars.contains("the last \"profile\""), "{sidecars}");
    // The filter names it too.
    let quota: FilterExpr = "error=quota_exceeded".parse().expect("a valid filter");
    assert_eq!(
        model.upstream_rows(Window::TenSeconds, &quota, false).len(),
        1
    );
}

/// A filter on what single requests have: the rows and the header are
/// counted from the events that pass, and the header says so.
#[test]
fn figures_from_events_are_labelled_in_the_header() {
    let model = fixture();
    let mut ui = ui();
    ui.filter = "failed".parse().expect("a valid filter");
    let text = screen(&model, &ui, 160, 48);
    assert!(text.contains("from events"), "{text}");
    insta::assert_snapshot!("figures_from_events_160x48", text);
    ui.filter = "direction=outbound".parse().expect("a valid filter");
    assert!(!screen(&model, &ui, 160, 48).contains("from events"));
    // At 80 columns a long filter is cut, not what the figures are.
    ui.filter = "failed direction=outbound authority~emojivoto !method=GET"
        .parse()
        .expect("a valid filter");
    let text = screen(&model, &ui, 80, 24);
    let header = text.lines().next().expect("a header");
    assert!(header.contains("filter f…"), "{header}");
    assert!(
        header.contains("  10s  "),
        "the window, shortened: {header}"
    );
    assert!(header.contains("from events · 0 dropped"), "{header}");
}

#[test]
fn a_rejected_filter_shows_its_error_under_the_input() {
    let model = fixture();
    let mut ui = ui();
    press(&mut ui, &model, KeyCode::Char('/'));
    type_text(&mut ui, &model, "authority~voting colour=red");
    press(&mut ui, &model, KeyCode::Enter);
    let text = screen(&model, &ui, 80, 24);
    insta::assert_snapshot!("filter_error_80x24", text);
}

#[test]
fn empty_model_says_it_is_waiting() {
    let model = Model::new(["ws://127.0.0.1:15090/events".to_string()]);
    let ui = ui();
    let text = screen(&model, &ui, 80, 24);
    assert!(text.contains("waiting for the first stats"), "{text}");
    assert!(text.contains("0/1 live"), "{text}");
}

/// The text of row `y` of a buffer.
fn line(buf: &Buffer, y: u16) -> String {
    (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect()
}

/// The foreground colour of the row showing `direction` + `authority`.
fn row_colour(buf: &Buffer, direction: &str, authority: &str) -> Option<Color> {
    (0..buf.area.height).find_map(|y| {
        let text = line(buf, y);
        let x = text.find(authority)?;
        if !text.contains(direction) {
            return None;
        }
        let column = u16::try_from(text[..x].chars().count()).ok()?;
        Some(buf[(column, y)].fg)
    })
}

#[test]
fn rows_are_coloured_by_success_rate_and_latency() {
    let model = fixture();
    let mut ui = ui();
    // Keep the cursor off the rows looked at: the highlight reverses them.
    ui.selected.upstream_key = Some(UpstreamKey {
        direction: Direction::Outbound,
        authority: LONG.into(),
    });
    let area = Rect::new(0, 0, 200, 20);
    let mut buf = Buffer::empty(area);
    UpstreamsView {
        model: &model,
        ui: &ui,
    }
    .render(area, &mut buf);
    assert_eq!(
        row_colour(&buf, "outbound", VOTING),
        Some(Color::Red),
        "85% success"
    );
    assert_eq!(
        row_colour(&buf, "outbound", LEDGER),
        Some(Color::Red),
        "0% success"
    );
    assert_eq!(
        row_colour(&buf, "outbound", EMOJI),
        Some(Color::Yellow),
        "96.7% success"
    );
    assert_eq!(
        row_colour(&buf, "inbound", WEB),
        Some(Color::Yellow),
        "p99 over 1s"
    );
    assert_eq!(
        row_colour(&buf, "inbound", VOTING),
        Some(Color::Red),
        "85% success"
    );
}

/// A model with text far wider than any terminal, and wide characters.
fn unwieldy() -> Model {
    let mut model = fixture();
    let authority = format!("{}.example:443", "x".repeat(1_000));
    let path = format!("/{}", "漢字ü".repeat(200));
    let message = request(Request {
        sidecar: "web-7d9f8b",
        sec: 10,
        direction: Direction::Outbound,
        authority: &authority,
        method: "PROPFIND",
        path: &path,
        status: Some(599),
        grpc: Some((14, "unavailable")),
        error: None,
        duration_ms: 123_456.789,
    });
    model.ingest_message(0, &message);
    model.ingest_message(
        0,
        &stats(
            "web-7d9f8b",
            10,
            &[Upstream {
                direction: Direction::Outbound,
                authority: &authority,
                durations: vec![1, 3_600_000_000],
                failures: 2,
                failure_status: 599,
            }],
        ),
    );
    model
}

#[test]
fn any_area_renders_without_panicking() {
    let models = [
        Model::new(Vec::new()),
        Model::new(["a".to_string()]),
        fixture(),
        unwieldy(),
    ];
    let sizes = [
        (0, 0),
        (1, 1),
        (0, 5),
        (5, 0),
        (2, 1),
        (1, 3),
        (7, 4),
        (12, 6),
        (20, 10),
        (33, 11),
        (40, 8),
        (80, 3),
        (3, 80),
        (119, 30),
        (120, 30),
        (300, 100),
    ];
    for model in &models {
        for tab in Tab::ALL {
            for (help, editing) in [(false, false), (true, false), (false, true)] {
                let mut ui = ui_on(tab);
                ui.help = help;
                if editing {
                    ui.filter_input = Some("authority~".repeat(50));
                    ui.filter_error = Some("bad filter term 'x': unknown field".repeat(10));
                }
                ui.tap_follow = false;
                for (width, height) in sizes {
                    // Through the terminal, as the app draws (the test
                    // backend cannot print a zero-width screen, so it is
                    // not turned into text).
                    terminal(model, &ui, width, height);
                    // Into an area that does not start at the origin.
                    let outer = Rect::new(0, 0, width + 7, height + 3);
                    let mut buf = Buffer::empty(outer);
                    Screen { model, ui: &ui }.render(Rect::new(5, 2, width, height), &mut buf);
                }
            }
        }
    }
}

#[test]
fn long_authorities_are_cut_in_the_middle_keeping_the_port() {
    let model = fixture();
    let text = screen(&model, &ui(), 80, 24);
    assert!(text.contains(" payments-gatew…ter.local:8443 "), "{text}");
}

#[test]
fn number_keys_and_tab_switch_views() {
    let model = fixture();
    let mut ui = ui();
    for (key, tab) in [
        ('3', Tab::Errors),
        ('4', Tab::Tap),
        ('5', Tab::Sidecars),
        ('6', Tab::Edges),
        ('1', Tab::Upstreams),
    ] {
        assert_eq!(press(&mut ui, &model, KeyCode::Char(key)), Action::Redraw);
        assert_eq!(ui.tab, tab);
    }
    // From the table, tab goes on to the detail of the row under the cursor.
    press(&mut ui, &model, KeyCode::Tab);
    assert_eq!(ui.tab, Tab::Detail);
    assert!(ui.detail.is_some());
    for tab in [
        Tab::Errors,
        Tab::Tap,
        Tab::Sidecars,
        Tab::Edges,
        Tab::Upstreams,
    ] {
        press(&mut ui, &model, KeyCode::Tab);
        assert_eq!(ui.tab, tab);
    }
    press(&mut ui, &model, KeyCode::BackTab);
    assert_eq!(ui.tab, Tab::Edges);
    assert_eq!(press(&mut ui, &model, KeyCode::Char('9')), Action::None);
    assert_eq!(ui.tab, Tab::Edges);
}

#[test]
fn detail_needs_an_upstream_and_says_so() {
    let empty = Model::new(["a".to_string()]);
    let mut ui = ui();
    press(&mut ui, &empty, KeyCode::Char('2'));
    assert_eq!(ui.tab, Tab::Upstreams);
    let text = screen(&empty, &ui, 100, 10);
    assert!(text.contains("no upstream selected"), "{text}");
    // Any key clears the hint.
    press(&mut ui, &empty, KeyCode::Char('w'));
    assert_eq!(ui.hint, None);

    let model = fixture();
    press(&mut ui, &model, KeyCode::Char('2'));
    assert_eq!(ui.tab, Tab::Detail);
}

#[test]
fn s_cycles_the_sort_column_and_shift_s_reverses_it() {
    let model = fixture();
    let mut ui = ui();
    let authorities = |ui: &UiState| -> Vec<String> {
        ui.upstream_rows(&model)
            .into_iter()
            .map(|r| format!("{} {}", r.key.direction, r.key.authority))
            .collect()
    };
    assert_eq!(ui.sort, SortColumn::Authority);
    assert_eq!(
        authorities(&ui)[0],
        format!("outbound {EMOJI}"),
        "authorities ascending"
    );
    press(&mut ui, &model, KeyCode::Char('s'));
    assert_eq!(ui.sort, SortColumn::Rps);
    assert_eq!(
        authorities(&ui)[0],
        format!("outbound {EMOJI}"),
        "the busiest first"
    );
    assert!(screen(&model, &ui, 160, 48).contains("RPS▼"));
    press(&mut ui, &model, KeyCode::Char('S'));
    assert!(ui.reverse);
    assert_eq!(
        authorities(&ui)[0],
        format!("outbound {LEDGER}"),
        "the quietest first"
    );
    assert!(screen(&model, &ui, 160, 48).contains("RPS▲"));
    for _ in 0..SortColumn::ALL.len() {
        press(&mut ui, &model, KeyCode::Char('s'));
    }
    assert_eq!(ui.sort, SortColumn::Rps, "s comes round again");
}

#[test]
fn the_cursor_stays_on_its_upstream_when_rows_reorder() {
    let model = fixture();
    let mut ui = ui();
    press(&mut ui, &model, KeyCode::Char('j'));
    press(&mut ui, &model, KeyCode::Char('j'));
    let rows = ui.upstream_rows(&model);
    let chosen = rows[ui.selected_upstream(&rows).expect("a selection")]
        .key
        .clone();
    press(&mut ui, &model, KeyCode::Char('s'));
    let rows = ui.upstream_rows(&model);
    assert_eq!(
        rows[ui.selected_upstream(&rows).expect("a selection")].key,
        chosen
    );
    press(&mut ui, &model, KeyCode::Enter);
    assert_eq!(ui.detail, Some(chosen));
}

#[test]
fn movement_keys_stay_within_the_rows() {
    let model = fixture();
    let mut ui = ui();
    let rows = ui.upstream_rows(&model).len();
    press(&mut ui, &model, KeyCode::Char('G'));
    assert_eq!(ui.selected.upstream, rows - 1);
    press(&mut ui, &model, KeyCode::Down);
    assert_eq!(ui.selected.upstream, rows - 1);
    press(&mut ui, &model, KeyCode::Char('g'));
    assert_eq!(ui.selected.upstream, 0);
    press(&mut ui, &model, KeyCode::Up);
    assert_eq!(ui.selected.upstream, 0);
    press(&mut ui, &model, KeyCode::PageDown);
    assert_eq!(
        ui.selected.upstream,
        rows - 1,
        "a page is longer than the table"
    );
    press(&mut ui, &model, KeyCode::PageUp);
    assert_eq!(ui.selected.upstream, 0);

    press(&mut ui, &model, KeyCode::Char('5'));
    press(&mut ui, &model, KeyCode::Char('j'));
    press(&mut ui, &model, KeyCode::Char('j'));
    press(&mut ui, &model, KeyCode::Char('j'));
    assert_eq!(ui.selected.sidecar, 2);
    press(&mut ui, &model, KeyCode::Char('k'));
    assert_eq!(ui.selected.sidecar, 1);
}

#[test]
fn a_valid_filter_applies_on_enter() {
    let model = fixture();
    let mut ui = ui();
    press(&mut ui, &model, KeyCode::Char('/'));
    assert_eq!(ui.filter_input.as_deref(), Some(""));
    type_text(&mut ui, &model, "authority~votinx");
    press(&mut ui, &model, KeyCode::Backspace);
    type_text(&mut ui, &model, "g");
    assert_eq!(press(&mut ui, &model, KeyCode::Enter), Action::Redraw);
    assert_eq!(ui.filter.as_str(), "authority~voting");
    assert_eq!(ui.filter_input, None);
    assert_eq!(ui.filter_error, None);
    let rows = ui.upstream_rows(&model);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.key.authority == VOTING));
    assert!(screen(&model, &ui, 80, 24).contains("filter authority~voting"));

    // Editing again starts from the filter in force.
    press(&mut ui, &model, KeyCode::Char('/'));
    assert_eq!(ui.filter_input.as_deref(), Some("authority~voting"));
}

#[test]
fn an_invalid_filter_keeps_the_previous_one_and_shows_why() {
    let model = fixture();
    let mut ui = UiState::new("direction=inbound".parse().expect("a valid filter"));
    press(&mut ui, &model, KeyCode::Char('/'));
    type_text(&mut ui, &model, " colour=red");
    press(&mut ui, &model, KeyCode::Enter);
    assert_eq!(
        ui.filter.as_str(),
        "direction=inbound",
        "the previous filter stays"
    );
    assert_eq!(
        ui.filter_input.as_deref(),
        Some("direction=inbound colour=red"),
        "still editing"
    );
    let error = ui.filter_error.clone().expect("an error");
    assert!(error.contains("colour"), "{error}");
    assert!(screen(&model, &ui, 120, 24).contains("unknown field 'colour'"));

    // Esc cancels editing; the filter in force is unchanged.
    assert_eq!(press(&mut ui, &model, KeyCode::Esc), Action::Redraw);
    assert_eq!(ui.filter_input, None);
    assert_eq!(ui.filter_error, None);
    assert_eq!(ui.filter.as_str(), "direction=inbound");
}

#[test]
fn keys_while_editing_the_filter_are_text_not_commands() {
    let model = fixture();
    let mut ui = ui();
    press(&mut ui, &model, KeyCode::Char('/'));
    for key in ['q', 'e', 'w', ' ', '3', '?'] {
        assert_ne!(press(&mut ui, &model, KeyCode::Char(key)), Action::Quit);
    }
    assert_eq!(ui.filter_input.as_deref(), Some("qew 3?"));
    assert_eq!(ui.tab, Tab::Upstreams);
    assert!(!ui.failures_only && !ui.paused && !ui.help);
    assert_eq!(ui.window, Window::TenSeconds);
    // Ctrl-C still quits.
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(ui.handle_key(ctrl_c, &model), Action::Quit);
}

#[test]
fn space_pauses_and_the_header_says_so() {
    let model = fixture();
    let mut ui = ui();
    press(&mut ui, &model, KeyCode::Char(' '));
    assert!(ui.paused);
    assert!(screen(&model, &ui, 80, 24).contains("PAUSED"));
    press(&mut ui, &model, KeyCode::Char(' '));
    assert!(!ui.paused);
    assert!(!screen(&model, &ui, 80, 24).contains("PAUSED"));
}

#[test]
fn recording_shows_rec() {
    let model = fixture();
    let mut ui = ui();
    assert!(!screen(&model, &ui, 80, 24).contains("● REC"));
    ui.recording = true;
    assert!(screen(&model, &ui, 80, 24).contains("● REC"));
}

#[test]
fn w_cycles_the_window() {
    let model = fixture();
    let mut ui = ui();
    for window in [Window::OneMinute, Window::FiveMinutes, Window::TenSeconds] {
        press(&mut ui, &model, KeyCode::Char('w'));
        assert_eq!(ui.window, window);
        assert!(screen(&model, &ui, 80, 24).contains(&format!("window {}", window.label())));
    }
}

#[test]
fn e_shows_failures_only() {
    let model = fixture();
    let mut ui = ui();
    let all = ui.upstream_rows(&model).len();
    press(&mut ui, &model, KeyCode::Char('e'));
    assert!(ui.failures_only);
    let failing = ui.upstream_rows(&model);
    assert!(failing.len() < all);
    assert!(failing.iter().all(|r| r.failures > 0));
    // The tap keeps only failed requests.
    let tap = ui.tap_entries(&model);
    assert!(!tap.is_empty());
    assert!(tap.iter().all(|(_, entry)| entry.event.is_failure()));
}

#[test]
fn enter_drills_in_and_esc_goes_back() {
    let model = fixture();
    let mut ui = ui();
    press(&mut ui, &model, KeyCode::Char('j'));
    let rows = ui.upstream_rows(&model);
    let second = rows[1].key.clone();
    press(&mut ui, &model, KeyCode::Enter);
    assert_eq!(ui.tab, Tab::Detail);
    assert_eq!(ui.detail, Some(second.clone()));
    assert!(screen(&model, &ui, 160, 48).contains(&second.authority));
    press(&mut ui, &model, KeyCode::Esc);
    assert_eq!(ui.tab, Tab::Upstreams);

    // From the errors view, into a group's failing requests, into one of
    // them, and back out one level at a time.
    press(&mut ui, &model, KeyCode::Char('3'));
    let first_error = model.errors(&ui.filter, None)[0].key.clone();
    press(&mut ui, &model, KeyCode::Enter);
    assert_eq!(ui.failures_of, Some(first_error));
    press(&mut ui, &model, KeyCode::Enter);
    assert!(ui.inspector.is_some());
    press(&mut ui, &model, KeyCode::Esc);
    assert!(ui.inspector.is_none());
    assert!(ui.failures_of.is_some());
    press(&mut ui, &model, KeyCode::Esc);
    assert_eq!((ui.tab, ui.failures_of.is_none()), (Tab::Errors, true));

    // `2` returns to the upstream last drilled into.
    press(&mut ui, &model, KeyCode::Char('2'));
    assert_eq!(ui.tab, Tab::Detail);
    assert_eq!(ui.detail, Some(second));
}

#[test]
fn help_opens_with_question_mark_and_closes_with_esc() {
    let model = fixture();
    let mut ui = ui();
    press(&mut ui, &model, KeyCode::Char('?'));
    assert!(ui.help);
    let text = screen(&model, &ui, 80, 24);
    for key in ["q, ctrl-c", "PgUp", "space", "enter", "esc", "tap: follow"] {
        assert!(text.contains(key), "help lists {key}:\n{text}");
    }
    // Other keys do nothing under the overlay.
    press(&mut ui, &model, KeyCode::Char('j'));
    press(&mut ui, &model, KeyCode::Char('3'));
    assert_eq!(ui.tab, Tab::Upstreams);
    assert_eq!(ui.selected.upstream, 0);
    press(&mut ui, &model, KeyCode::Esc);
    assert!(!ui.help);
    press(&mut ui, &model, KeyCode::Char('?'));
    press(&mut ui, &model, KeyCode::Char('?'));
    assert!(!ui.help);
}

#[test]
fn q_and_ctrl_c_quit() {
    let model = fixture();
    let mut ui = ui();
    assert_eq!(press(&mut ui, &model, KeyCode::Char('q')), Action::Quit);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(ui.handle_key(ctrl_c, &model), Action::Quit);
    ui.help = true;
    assert_eq!(press(&mut ui, &model, KeyCode::Char('q')), Action::Quit);
}

/// The fixture with `n` more requests in its tap, numbered in their path.
fn tap_model(n: u64) -> Model {
    let mut model = fixture();
    tap_model_more(&mut model, 0, n);
    model
}

fn tap_selected_path(ui: &UiState, model: &Model) -> String {
    let entries = ui.tap_entries(model);
    let i = ui.tap_selected(&entries).expect("a request");
    entries[i].1.event.path.clone().unwrap_or_default()
}

#[test]
fn the_tap_follows_until_scrolled_up_and_f_toggles_it() {
    let mut model = tap_model(50);
    let mut ui = ui_on(Tab::Tap);
    assert!(ui.tap_follow);
    assert_eq!(tap_selected_path(&ui, &model), "/item/49");
    assert!(screen(&model, &ui, 120, 24).contains("/item/49"));

    // Scrolling up stops following and stays on the same request while
    // newer ones arrive.
    press(&mut ui, &model, KeyCode::Char('k'));
    assert!(!ui.tap_follow);
    assert_eq!(tap_selected_path(&ui, &model), "/item/48");
    press(&mut ui, &model, KeyCode::PageUp);
    assert_eq!(tap_selected_path(&ui, &model), "/item/38");
    tap_model_more(&mut model, 50, 10);
    assert_eq!(tap_selected_path(&ui, &model), "/item/38");
    let text = screen(&model, &ui, 120, 24);
    assert!(
        text.contains("/item/38") && !text.contains("/item/59"),
        "{text}"
    );
    assert!(text.contains("21 newer"), "{text}");

    // G, or scrolling down to the newest, follows again.
    press(&mut ui, &model, KeyCode::Char('G'));
    assert!(ui.tap_follow);
    assert_eq!(tap_selected_path(&ui, &model), "/item/59");
    press(&mut ui, &model, KeyCode::Char('k'));
    press(&mut ui, &model, KeyCode::Char('j'));
    assert!(ui.tap_follow);

    // f stops following where the view is, and f again resumes.
    press(&mut ui, &model, KeyCode::Char('f'));
    assert!(!ui.tap_follow);
    assert_eq!(tap_selected_path(&ui, &model), "/item/59");
    press(&mut ui, &model, KeyCode::Char('f'));
    assert!(ui.tap_follow);

    // f means nothing outside the tap.
    press(&mut ui, &model, KeyCode::Char('1'));
    assert_eq!(press(&mut ui, &model, KeyCode::Char('f')), Action::None);
}

#[test]
fn the_tap_applies_the_filter() {
    let model = fixture();
    let mut ui = ui_on(Tab::Tap);
    ui.filter = "status>=500".parse().expect("a valid filter");
    let entries = ui.tap_entries(&model);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].1.event.status, Some(500));
    ui.filter = "sidecar~voting".parse().expect("a valid filter");
    assert_eq!(ui.tap_entries(&model).len(), 1);
}

#[test]
fn a_scrolled_tap_stays_on_its_request_while_old_ones_are_evicted() {
    let full = TAP_CAPACITY as u64;
    let mut model = tap_model(full);
    let mut ui = ui_on(Tab::Tap);
    press(&mut ui, &model, KeyCode::Char('k'));
    assert_eq!(
        tap_selected_path(&ui, &model),
        format!("/item/{}", full - 2)
    );
    tap_model_more(&mut model, full, 100);
    assert_eq!(model.tap().len(), TAP_CAPACITY);
    assert_eq!(
        tap_selected_path(&ui, &model),
        format!("/item/{}", full - 2)
    );
}

/// Adds `n` requests numbered from `from`.
fn tap_model_more(model: &mut Model, from: u64, n: u64) {
    for i in from..from + n {
        let path = format!("/item/{i}");
        model.ingest_message(
            0,
            &request(Request {
                sidecar: "web-7d9f8b",
                sec: 10,
                direction: Direction::Outbound,
                authority: EMOJI,
                method: "GET",
                path: &path,
                status: Some(200),
                grpc: None,
                error: None,
                duration_ms: 1.0,
            }),
        );
    }
}

#[test]
fn the_demo_says_where_emojivoto_answers_in_the_status_line() {
    let model = fixture();
    let mut ui = ui();
    ui.note = Some("emojivoto: http://127.0.0.1:40711".into());
    for (width, height) in [(80, 24), (160, 48)] {
        let text = screen(&model, &ui, width, height);
        let status = text.lines().last().expect("a status line");
        assert!(
            status.contains("emojivoto: http://127.0.0.1:40711 │ ? help"),
            "{status}"
        );
    }
}

/// A UI in `context`, placed where `binding` has something to do: in its
/// view, with cursors mid-list, a view to switch to, a detail to leave.
fn ui_for(
    binding: &keys::Binding,
    context: Context,
    digit: Option<char>,
    model: &Model,
) -> UiState {
    let mut ui = UiState::new(FilterExpr::default());
    ui.tab = binding.tab.unwrap_or(Tab::Upstreams);
    // One row down: every movement moves, up or down.
    ui.handle_key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE), model);
    match binding.command {
        Command::Back => {
            ui.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE), model);
            assert_eq!(ui.tab, Tab::Detail);
        }
        Command::View if digit == Some('1') => ui.tab = Tab::Sidecars,
        _ => {}
    }
    match context {
        Context::Live => {}
        Context::Replay => {
            ui.replay = Some(meshtop::tui::replay::Progress {
                position: std::time::Duration::from_secs(30),
                length: std::time::Duration::from_secs(100),
                speed: meshtop::tui::replay::Speed::Factor(1.0),
                paused: false,
                finished: false,
                seeked: None,
            })
        }
        Context::Help => ui.help = true,
        Context::FilterInput => ui.filter_input = Some("failed".into()),
        Context::Inspector => {
            // A request with an older and a newer one in the tap, scrolled
            // one line so that every movement moves.
            ui = UiState::new(FilterExpr::default());
            ui.tab = Tab::Tap;
            press(&mut ui, model, KeyCode::Up);
            press(&mut ui, model, KeyCode::Up);
            press(&mut ui, model, KeyCode::Enter);
            assert!(ui.inspector.is_some());
            press(&mut ui, model, KeyCode::Down);
        }
    }
    ui
}

#[test]
fn every_key_of_the_table_acts_in_every_context_it_names() {
    let model = fixture();
    assert!(
        UiState::new(FilterExpr::default())
            .upstream_rows(&model)
            .len()
            >= 3,
        "the fixture lists enough rows for every movement to move"
    );
    let mut pressed = 0;
    for binding in keys::BINDINGS {
        for &context in binding.contexts {
            for chord in binding.chords {
                let digit = match chord.code {
                    KeyCode::Char(c) => Some(c),
                    _ => None,
                };
                let mut ui = ui_for(binding, context, digit, &model);
                assert_eq!(ui.context(), context);
                let key = KeyEvent::new(chord.code, chord.modifiers);
                let found = keys::lookup(context, ui.tab, key).expect("the key is bound");
                assert!(
                    std::ptr::eq(found, binding),
                    "{chord:?} in {context:?} is bound twice: {:?} shadows {:?}",
                    found.command,
                    binding.command
                );
                let before = format!("{ui:?}");
                let action = ui.handle_key(key, &model);
                match binding.command {
                    Command::Quit => assert_eq!(action, Action::Quit),
                    Command::Player(command) => assert_eq!(action, Action::Player(command)),
                    command => {
                        assert_eq!(
                            action,
                            Action::Redraw,
                            "{chord:?} ({command:?}) in {context:?}"
                        );
                        assert_ne!(
                            format!("{ui:?}"),
                            before,
                            "{chord:?} ({command:?}) in {context:?} changed nothing"
                        );
                    }
                }
                pressed += 1;
            }
        }
    }
    assert!(pressed > keys::BINDINGS.len());
}

#[test]
fn keys_outside_the_table_do_nothing() {
    let model = fixture();
    let mut others: Vec<KeyCode> = (' '..='~').map(KeyCode::Char).collect();
    others.extend([
        KeyCode::F(1),
        KeyCode::Insert,
        KeyCode::Delete,
        KeyCode::Left,
        KeyCode::Right,
        KeyCode::Backspace,
    ]);
    for context in Context::ALL {
        for tab in Tab::ALL {
            for &code in &others {
                let key = KeyEvent::new(code, KeyModifiers::NONE);
                if keys::lookup(context, tab, key).is_some() {
                    continue;
                }
                let binding = &keys::BINDINGS[0];
                let mut ui = ui_for(binding, context, None, &model);
                ui.tab = tab;
                let before = format!("{ui:?}");
                let action = ui.handle_key(key, &model);
                if context == Context::FilterInput && matches!(code, KeyCode::Char(_)) {
                    // Typed text: the one input the table leaves out.
                    assert_eq!(action, Action::Redraw);
                    continue;
                }
                assert_eq!(action, Action::None, "{code:?} in {context:?} on {tab:?}");
                assert_eq!(
                    format!("{ui:?}"),
                    before,
                    "{code:?} in {context:?} on {tab:?}"
                );
            }
        }
    }
}

#[test]
fn help_and_hints_list_exactly_the_keys_that_work() {
    for context in [Context::Live, Context::Replay, Context::Inspector] {
        let help = keys::help(context);
        let text: String = help
            .iter()
            .map(|(k, what)| format!("{k} {what}\n"))
            .collect();
        for binding in keys::BINDINGS
            .iter()
            .filter(|b| b.contexts.contains(&context))
        {
            let listed = help.iter().any(|(k, _)| {
                let named: Vec<&str> = k.split([' ', ',']).collect();
                binding
                    .keys
                    .split([' ', ','])
                    .filter(|w| !w.is_empty())
                    .all(|w| named.contains(&w))
            });
            assert!(
                listed,
                "{:?} ({}) works in {context:?} but help does not list it:\n{text}",
                binding.command, binding.keys
            );
        }
        // And the overlay shows them.
        let model = fixture();
        let mut ui = UiState::new(FilterExpr::default());
        if context != Context::Live {
            ui = ui_for(&keys::BINDINGS[0], context, None, &model);
        }
        ui.help = true;
        let screen = screen(&model, &ui, 160, 48);
        for (keys, what) in &help {
            assert!(
                screen.contains(keys) && screen.contains(what),
                "{keys} {what}:\n{screen}"
            );
        }
        for tab in Tab::ALL {
            for hint in keys::hints(context, tab, keys::Toggles::default()) {
                assert!(
                    keys::BINDINGS
                        .iter()
                        .any(|b| b.hint.is_some_and(|h| h.keys == hint.keys)
                            && b.contexts.contains(&context)
                            && b.tab.is_none_or(|only| only == tab)),
                    "{hint:?} is shown in {context:?} on {tab:?}, where it does not work"
                );
            }
        }
    }
}

// The Edges view (issue 18 §2).

/// The demo's four sidecars, every "pod" on 127.0.0.1, for ten seconds:
/// vote-bot → web, web → emoji and web → voting seen at both ends (votes
/// for the doughnut fail), and a client no sidecar claims calling web.
fn edges_fixture() -> Model {
    let names = ["vote-bot", "web", "emoji", "voting"];
    let mut model = Model::new(names.map(|n| format!("ws://{n}:15090/events")));
    for (i, name) in names.iter().enumerate() {
        let Message::Hello(mut hello) = hello(name, "2026-11-29T23:00:00Z", Vec::new()) else {
            unreachable!("hello() builds a hello");
        };
        hello.addresses = vec!["127.0.0.1".into()];
        model.ingest_message(i, &Message::Hello(hello));
    }
    let edge_counts = |durations: &[u64], failures: u64| {
        let mut latency = new_latency_histogram();
        for d in durations {
            latency.record(*d).expect("durations are in range");
        }
        let requests = durations.len() as u64;
        let mut status = StatusClasses::default();
        status.add(200, requests);
        Counts {
            requests,
            failures,
            status,
            grpc_status: Default::default(),
            errors: Default::default(),
            req_bytes: 0,
            resp_bytes: 0,
            latency: encode_histogram(&latency),
        }
    };
    let upstream = |direction,
                    authority: &str,
                    durations: &[u64],
                    failures,
                    clients: &[(&str, &[u64], u64)]| UpstreamStats {
        direction,
        authority: authority.into(),
        counts: edge_counts(durations, failures),
        routes: Vec::new(),
        clients: clients
            .iter()
            .map(|(client, durations, failures)| ClientStats {
                client: (*client).into(),
                counts: edge_counts(durations, *failures),
            })
            .collect(),
    };
    let local = "127.0.0.1";
    let bot_calls: Vec<u64> = (0..20).map(|i| 3_000 + i * 100).collect();
    let web_serves: Vec<u64> = (0..20).map(|i| 2_500 + i * 100).collect();
    let stranger: Vec<u64> = vec![4_000, 4_100];
    let web_serves_all: Vec<u64> = web_serves.iter().chain(&stranger).copied().collect();
    let emoji_calls: Vec<u64> = (0..20).map(|i| 900 + i * 20).collect();
    let emoji_serves: Vec<u64> = (0..20).map(|i| 600 + i * 20).collect();
    let vote_calls: Vec<u64> = (0..10).map(|i| 1_200 + i * 30).collect();
    let vote_serves: Vec<u64> = (0..10).map(|i| 800 + i * 30).collect();
    for sec in 1..=10 {
        let message = |sidecar: &str, upstreams: Vec<UpstreamStats>| {
            Message::Stats(Stats {
                ts: ts(sec, 0),
                sidecar: sidecar.into(),
                interval_ms: 1000,
                backfill: false,
                upstreams,
            })
        };
        model.ingest_message(
            0,
            &message(
                "vote-bot",
                vec![upstream(Direction::Outbound, WEB, &bot_calls, 1, &[])],
            ),
        );
        model.ingest_message(
            1,
            &message(
                "web",
                vec![
                    upstream(
                        Direction::Inbound,
                        WEB,
                        &web_serves_all,
                        1,
                        &[(local, &web_serves, 1), ("10.9.0.4", &stranger, 0)],
                    ),
                    upstream(Direction::Outbound, EMOJI, &emoji_calls, 0, &[]),
                    upstream(Direction::Outbound, VOTING, &vote_calls, 1, &[]),
                ],
            ),
        );
        model.ingest_message(
            2,
            &message(
                "emoji",
                vec![upstream(
                    Direction::Inbound,
                    EMOJI,
                    &emoji_serves,
                    0,
                    &[(local, &emoji_serves, 0)],
                )],
            ),
        );
        model.ingest_message(
            3,
            &message(
                "voting",
                vec![upstream(
                    Direction::Inbound,
                    VOTING,
                    &vote_serves,
                    1,
                    &[(local, &vote_serves, 1)],
                )],
            ),
        );
    }
    model
}

#[test]
fn edges_view_with_its_call_tree() {
    snapshot_both_sizes("edges", &edges_fixture(), &ui_on(Tab::Edges));
}

#[test]
fn the_call_tree_highlights_failing_edges_with_the_rows_colours() {
    let model = edges_fixture();
    let buf = terminal(&model, &ui_on(Tab::Edges), 160, 48)
        .backend()
        .buffer()
        .clone();
    let colour_of = |needle: &str| {
        (0..buf.area.height).find_map(|y| {
            let text = line(&buf, y);
            let x = text.find(needle)?;
            let x = text[..x].chars().count();
            Some(buf[(u16::try_from(x).ok()?, y)].fg)
        })
    };
    // web → voting: 90% success, red; vote-bot → web 95%: yellow.
    assert_eq!(colour_of("/s 90.0%"), Some(Color::Red));
    assert_eq!(colour_of("/s 95.0%"), Some(Color::Yellow));
    assert_eq!(colour_of("/s 100.0%"), Some(Color::Reset));
}

#[test]
fn enter_on_an_edge_opens_the_callees_outbound_upstream() {
    let model = edges_fixture();
    let mut ui = ui_on(Tab::Edges);
    // Sorted by caller: 10.9.0.4 → web, vote-bot → web, web → emoji, web → voting.
    for _ in 0..3 {
        press(&mut ui, &model, KeyCode::Down);
    }
    press(&mut ui, &model, KeyCode::Enter);
    assert_eq!(ui.tab, Tab::Detail);
    assert_eq!(ui.detail, Some(voting_outbound()));
    press(&mut ui, &model, KeyCode::Esc);
    assert_eq!(ui.tab, Tab::Edges);
    // The unclaimed client is only seen by web: its inbound upstream.
    press(&mut ui, &model, KeyCode::Home);
    press(&mut ui, &model, KeyCode::Enter);
    assert_eq!(
        ui.detail,
        Some(UpstreamKey {
            direction: Direction::Inbound,
            authority: WEB.into()
        })
    );
}

#[test]
fn a_filter_on_request_fields_is_refused_by_the_edges_view() {
    let model = edges_fixture();
    let mut ui = ui_on(Tab::Edges);
    ui.filter = "status>=500".parse().expect("a valid filter");
    let text = screen(&model, &ui, 80, 24);
    assert!(text.contains("filter not applied"), "{text}");
    assert!(!text.contains("vote-bot"), "{text}");
}

/// `b` cycles the Upstreams table's grouping, the title names it, and
/// it does nothing in another view.
#[test]
fn b_cycles_the_grouping_and_the_title_names_it() {
    use meshtop::tui::model::GroupBy;
    let model = fixture();
    let mut ui = ui();
    assert!(screen(&model, &ui, 160, 48).contains("upstreams by authority, last 10s"));
    for (expected, title) in [
        (GroupBy::Route, "upstreams by route, last 10s"),
        (GroupBy::Sidecar, "upstreams by sidecar, last 10s"),
        (GroupBy::Caller, "upstreams by caller, last 10s"),
        (GroupBy::Status, "upstreams by status class, last 10s"),
        (GroupBy::Authority, "upstreams by authority, last 10s"),
    ] {
        assert_eq!(press(&mut ui, &model, KeyCode::Char('b')), Action::Redraw);
        assert_eq!(ui.group_by, expected);
        assert!(screen(&model, &ui, 160, 48).contains(title), "{title}");
    }
    let mut tap = ui_on(Tab::Tap);
    assert_eq!(press(&mut tap, &model, KeyCode::Char('b')), Action::None);
    assert_eq!(tap.group_by, GroupBy::Authority);
}

/// Enter on a route opens its upstream; on a sidecar or a status class it
/// filters by it and groups by authority again, showing what it selects.
#[test]
fn enter_on_a_group_opens_its_upstream_or_filters_by_it() {
    use meshtop::tui::model::{GroupBy, GroupKey};
    let model = fixture();
    let mut ui = ui();
    ui.group_by = GroupBy::Route;
    let rows = ui.group_rows(&model);
    let Some(GroupKey::Route { upstream, .. }) = rows.first().map(|r| r.key.clone()) else {
        panic!("route rows: {rows:?}")
    };
    press(&mut ui, &model, KeyCode::Enter);
    assert_eq!((ui.tab, ui.detail.as_ref()), (Tab::Detail, Some(&upstream)));

    let mut ui = UiState::new(FilterExpr::default());
    ui.group_by = GroupBy::Sidecar;
    press(&mut ui, &model, KeyCode::Down);
    let rows = ui.group_rows(&model);
    let GroupKey::Sidecar(name) = &rows[1].key else {
        panic!("sidecar rows: {rows:?}")
    };
    press(&mut ui, &model, KeyCode::Enter);
    assert_eq!(ui.filter.as_str(), format!("sidecar=\"{name}\""));
    assert_eq!((ui.tab, ui.group_by), (Tab::Upstreams, GroupBy::Authority));

    let mut ui = UiState::new(FilterExpr::default());
    ui.group_by = GroupBy::Status;
    let rows = ui.group_rows(&model);
    let five = rows
        .iter()
        .position(|r| format!("{:?}", r.key).contains("ServerError"))
        .expect("the fixture has 5xx");
    for _ in 0..five {
        press(&mut ui, &model, KeyCode::Down);
    }
    press(&mut ui, &model, KeyCode::Enter);
    assert_eq!(ui.filter.as_str(), "status>=500 status<600");
    assert_eq!(ui.group_by, GroupBy::Authority);
}

#[test]
fn grouped_tables() {
    use meshtop::tui::model::GroupBy;
    let model = fixture();
    for (by, name) in [
        (GroupBy::Route, "grouped_by_route"),
        (GroupBy::Sidecar, "grouped_by_sidecar"),
        (GroupBy::Status, "grouped_by_status"),
    ] {
        let mut ui = ui();
        ui.group_by = by;
        snapshot_both_sizes(name, &model, &ui);
    }
    // Callers need hellos and per-client stats: the edges' fixture.
    let mut ui = ui();
    ui.group_by = GroupBy::Caller;
    snapshot_both_sizes("grouped_by_caller", &edges_fixture(), &ui);
}

/// Enter on a calling sidecar shows its outbound upstreams; on a client
/// address no sidecar claims, what that address called.
#[test]
fn enter_on_a_caller_filters_by_what_it_called() {
    use meshtop::tui::model::{GroupBy, GroupKey};
    let model = edges_fixture();
    let select = |name: &str| {
        let mut ui = ui();
        ui.group_by = GroupBy::Caller;
        let rows = ui.group_rows(&model);
        let at = rows
            .iter()
            .position(|r| matches!(&r.key, GroupKey::Caller { name: n, .. } if n == name))
            .unwrap_or_else(|| panic!("no caller {name} in {rows:?}"));
        for _ in 0..at {
            press(&mut ui, &model, KeyCode::Down);
        }
        press(&mut ui, &model, KeyCode::Enter);
        ui
    };
    let mut web = select("web");
    assert_eq!(web.filter.as_str(), "sidecar=\"web\" direction=outbound");
    assert_eq!(web.group_by, GroupBy::Authority);
    let authorities: Vec<String> = web
        .upstream_rows(&model)
        .iter()
        .map(|r| r.key.authority.clone())
        .collect();
    assert_eq!(authorities.len(), 2, "emoji and voting: {authorities:?}");
    // Esc goes back to the callers, the row enter was pressed on selected.
    assert_eq!(press(&mut web, &model, KeyCode::Esc), Action::Redraw);
    assert_eq!((web.filter.as_str(), web.group_by), ("", GroupBy::Caller));
    let rows = web.group_rows(&model);
    let selected = web.selected_group(&rows).map(|i| rows[i].key.clone());
    assert_eq!(
        selected,
        Some(GroupKey::Caller {
            name: "web".into(),
            sidecar: true
        })
    );
    // Once the filter is changed otherwise, esc no longer restores it.
    let mut web = select("web");
    press(&mut web, &model, KeyCode::Char('/'));
    press(&mut web, &model, KeyCode::Enter);
    assert_eq!(press(&mut web, &model, KeyCode::Esc), Action::None);
    assert_eq!(web.group_by, GroupBy::Authority);
    let rows = {
        let mut ui = ui();
        ui.group_by = GroupBy::Caller;
        ui.group_rows(&model)
    };
    let stranger = rows
        .iter()
        .find_map(|r| match &r.key {
            GroupKey::Caller {
                name,
                sidecar: false,
            } => Some(name.clone()),
            _ => None,
        })
        .expect("the fixture has a caller no sidecar claims");
    assert_eq!(
        select(&stranger).filter.as_str(),
        format!("client={stranger}")
    );
}
