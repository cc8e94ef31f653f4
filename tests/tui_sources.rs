//! The terminal UI's sources against real sidecars carrying real traffic:
//! several at once, an unreachable one, a restart on the same address,
//! tokens, and a peer that sends frames that are not the schema.

mod support;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::SinkExt;
use meshtop::filter::FilterExpr;
use meshtop::proxy::{Dest, ListenerConfig, ProxyConfig};
use meshtop::schema::{Hello, Message, RequestEvent};
use meshtop::telemetry::Direction;
use meshtop::tui::source::{FeedKind, FeedReceiver, Target, feed, spawn_sources, subscription};
use support::*;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Sources running in this test, and the channel they feed.
struct Feed {
    rx: FeedReceiver,
    /// Items received while waiting for another source's, kept in order per
    /// source so that no wait loses what a later wait looks for.
    pending: Vec<VecDeque<FeedKind>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Changes the filter the sources subscribe with (`None` when recording).
    filter: Option<tokio::sync::watch::Sender<FilterExpr>>,
}

impl Feed {
    fn attach(targets: &[Target], token: Option<&str>) -> Feed {
        Feed::subscribed(targets, token, &FilterExpr::default(), false)
    }

    fn subscribed(
        targets: &[Target],
        token: Option<&str>,
        filter: &FilterExpr,
        recording: bool,
    ) -> Feed {
        let (tx, rx) = feed();
        let shutdown = CancellationToken::new();
        let (filter, filter_rx) = subscription(filter, recording);
        let tracker = spawn_sources(
            targets,
            token.map(str::to_owned),
            tx,
            shutdown.clone(),
            filter_rx,
        );
        Feed {
            rx,
            pending: vec![VecDeque::new(); targets.len()],
            shutdown,
            tracker,
            filter,
        }
    }

    /// The next item of `source`, in the order that source sent them.
    async fn next_from(&mut self, source: usize) -> FeedKind {
        if let Some(kind) = self.pending[source].pop_front() {
            return kind;
        }
        loop {
            let item = within("a feed item", self.rx.recv())
                .await
                .expect("a source is still running");
            if item.source == source {
                return item.kind;
            }
            self.pending[item.source].push_back(item.kind);
        }
    }

    /// The next message of `source`, skipping its state changes.
    async fn message_from(&mut self, source: usize) -> Message {
        loop {
            if let FeedKind::Message { message, .. } = self.next_from(source).await {
                return message;
            }
        }
    }

    /// The next hello of `source`.
    async fn hello_from(&mut self, source: usize) -> Hello {
        within("a hello", async {
            loop {
                if let Message::Hello(hello) = self.message_from(source).await {
                    return hello;
                }
            }
        })
        .await
    }

    /// The next request event of `source` for `authority`.
    async fn request_from(&mut self, source: usize, authority: &str) -> RequestEvent {
        within("a request event", async {
            loop {
                if let Message::Request(event) = self.message_from(source).await
                    && event.authority == authority
                {
                    return event;
                }
            }
        })
        .await
    }

    /// The next `Reconnecting` of `source`: its reason and delay.
    async fn reconnecting_from(&mut self, source: usize) -> (String, Duration) {
        within("a reconnect", async {
            loop {
                match self.next_from(source).await {
                    FeedKind::Reconnecting { reason, retry_in } => return (reason, retry_in),
                    FeedKind::Failed { reason } => panic!("source {source} failed: {reason}"),
                    _ => {}
                }
            }
        })
        .await
    }

    /// Cancels the sources and waits until every task has ended.
    async fn stop(self) {
        self.shutdown.cancel();
        within("the sources to end", self.tracker.wait()).await;
    }
}

fn target(admin: SocketAddr) -> Target {
    admin
        .to_string()
        .parse()
        .expect("an address is a valid target")
}

/// A sidecar named `name` with one inbound listener in front of `backend`.
fn named(name: &str, backend: SocketAddr) -> ProxyConfig {
    let mut config = config(vec![ListenerConfig {
        direction: Direction::Inbound,
        addr: local0(),
        target: Some(Dest::Addr(backend)),
    }]);
    config.name = name.into();
    config.telemetry.stats_interval = Duration::from_millis(200);
    config
}

/// One GET through `sidecar` with `Host: authority`, read to the end.
async fn request_through(sidecar: &Sidecar, authority: &str) {
    let mut client = http1_conn(sidecar.addr()).await;
    let resp = within(
        "a response through the sidecar",
        client.send_request(get("/status/200", authority)),
    )
    .await
    .expect("the sidecar answers");
    assert_eq!(resp.status(), 200);
    body_bytes(resp).await;
}

#[tokio::test]
async fn two_sidecars_feed_one_channel_tagged_by_source() {
    let backend = backend().await;
    let one = Sidecar::start(named("one", backend.addr)).await;
    let two = Sidecar::start(named("two", backend.addr)).await;
    // Both short forms and the full URL.
    let targets = [
        format!(":{}", one.admin.port())
            .parse()
            .expect("a valid target"),
        format!("ws://{}/events", two.admin)
            .parse()
            .expect("a valid target"),
    ];
    let mut feed = Feed::attach(&targets, None);

    // Each source says Connecting, then Live, then passes on the hello.
    for (source, name) in [(0, "one"), (1, "two")] {
        assert!(matches!(feed.next_from(source).await, FeedKind::Connecting));
        assert!(matches!(
            feed.next_from(source).await,
            FeedKind::Live { .. }
        ));
        match feed.next_from(source).await {
            FeedKind::Message {
                message: Message::Hello(hello),
                raw,
                ..
            } => {
                assert_eq!(hello.sidecar.name, name);
                let json: serde_json::Value = serde_json::from_str(&raw).expect("raw is JSON");
                assert_eq!(json["type"], "hello");
                assert_eq!(json["sidecar"]["name"], name);
            }
            other => panic!("source {source}: expected its hello, got {other:?}"),
        }
    }

    request_through(&one, "one.svc").await;
    request_through(&two, "two.svc").await;
    let event = feed.request_from(0, "one.svc").await;
    assert_eq!(event.sidecar, "one");
    assert_eq!(event.status, Some(200));
    let event = feed.request_from(1, "two.svc").await;
    assert_eq!(event.sidecar, "two");

    // Nothing crossed over: every request source 0 passed on until the
    // newest one is sidecar one's, and likewise for source 1.
    request_through(&one, "one-again.svc").await;
    request_through(&two, "two-again.svc").await;
    for (source, name) in [(0, "one"), (1, "two")] {
        let last = format!("{name}-again.svc");
        within("the newest request", async {
            loop {
                if let Message::Request(event) = feed.message_from(source).await {
                    assert_eq!(event.sidecar, name);
                    if event.authority == last {
                        break;
                    }
                }
            }
        })
        .await;
    }
    feed.stop().await;
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn an_unreachable_sidecar_backs_off_without_blocking_the_others() {
    let backend = backend().await;
    let live = Sidecar::start(named("live", backend.addr)).await;
    let targets = [target(closed_port()), target(live.admin)];
    let mut feed = Feed::attach(&targets, None);

    // The unreachable one retries with growing delays (100 ms, 200 ms, …
    // less jitter of at most a quarter)…
    let mut delays = Vec::new();
    for _ in 0..4 {
        let (reason, retry_in) = feed.reconnecting_from(0).await;
        assert!(reason.contains("cannot connect"), "{reason}");
        delays.push(retry_in);
    }
    assert!(delays.windows(2).all(|w| w[0] < w[1]), "{delays:?}");
    assert!(delays[0] <= Duration::from_millis(100), "{delays:?}");
    assert!(delays[3] >= Duration::from_millis(600), "{delays:?}");

    // …while the other was live all along and still delivers.
    assert_eq!(feed.hello_from(1).await.sidecar.name, "live");
    request_through(&live, "live.svc").await;
    assert_eq!(feed.request_from(1, "live.svc").await.sidecar, "live");

    // Shutdown ends both, the one waiting to retry included.
    feed.stop().await;
    live.stop().await;
}

#[tokio::test]
async fn a_restarted_sidecar_is_reconnected_with_its_new_hello() {
    let backend = backend().await;
    // Attach before anything listens, as after `kubectl port-forward` to a
    // pod that is still starting.
    let admin = free_port();
    let mut feed = Feed::attach(&[target(admin)], None);
    feed.reconnecting_from(0).await;
    feed.reconnecting_from(0).await;

    let mut config = named("web", backend.addr);
    config.admin = admin;
    let first = Sidecar::start(config).await;
    let first_hello = feed.hello_from(0).await;
    request_through(&first, "web.svc").await;
    feed.request_from(0, "web.svc").await;

    first.stop().await;
    let (reason, retry_in) = feed.reconnecting_from(0).await;
    assert!(!reason.is_empty());
    // The connection had worked, so the backoff started over.
    assert!(retry_in <= Duration::from_millis(100), "{retry_in:?}");

    let mut config = named("web", backend.addr);
    config.admin = admin;
    let second = Sidecar::start(config).await;
    let second_hello = feed.hello_from(0).await;
    assert_eq!(second_hello.sidecar.name, "web");
    assert_ne!(
        second_hello.sidecar.started_at, first_hello.sidecar.started_at,
        "a restart shows as a new started_at"
    );
    request_through(&second, "web.svc").await;
    feed.request_from(0, "web.svc").await;

    feed.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn the_token_is_sent_and_a_wrong_one_fails_for_good() {
    let backend = backend().await;
    let mut config = named("guarded", backend.addr);
    config.telemetry.admin_token = Some("s3cret".into());
    let sidecar = Sidecar::start(config).await;
    let targets = [target(sidecar.admin)];

    let mut right = Feed::attach(&targets, Some("s3cret"));
    assert!(matches!(right.next_from(0).await, FeedKind::Connecting));
    assert!(matches!(right.next_from(0).await, FeedKind::Live { .. }));
    assert_eq!(right.hello_from(0).await.sidecar.name, "guarded");

    for token in [Some("guess"), None] {
        let mut wrong = Feed::attach(&targets, token);
        assert!(matches!(wrong.next_from(0).await, FeedKind::Connecting));
        match wrong.next_from(0).await {
            FeedKind::Failed { reason } => {
                assert!(reason.contains("401"), "{reason}");
                assert!(reason.contains("token"), "{reason}");
            }
            other => panic!("token {token:?}: expected Failed, got {other:?}"),
        }
        // No retry: the task ended and with it the channel.
        assert!(
            within("the failed source to end", wrong.rx.recv())
                .await
                .is_none()
        );
        within("the failed source to end", wrong.tracker.wait()).await;
    }

    // The authorized source is unaffected.
    request_through(&sidecar, "guarded.svc").await;
    right.request_from(0, "guarded.svc").await;
    right.stop().await;
    sidecar.stop().await;
}

#[tokio::test]
async fn a_path_that_is_not_an_event_stream_fails_for_good() {
    let backend = backend().await;
    let sidecar = Sidecar::start(named("web", backend.addr)).await;
    let target: Target = format!("ws://{}/nothing-here", sidecar.admin)
        .parse()
        .expect("a valid target");
    let mut feed = Feed::attach(&[target], None);
    loop {
        match feed.next_from(0).await {
            FeedKind::Connecting => {}
            FeedKind::Failed { reason } => {
                assert!(reason.contains("404"), "{reason}");
                break;
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    }
    feed.stop().await;
    sidecar.stop().await;
}

const HELLO: &str = r#"{"type":"hello","schema":1,"sidecar":{"name":"fake","namespace":null,"version":"0.0.0","started_at":"2026-11-30T03:42:30.123456Z"},"listeners":[]}"#;

#[tokio::test]
async fn frames_that_are_not_the_schema_are_reported_not_fatal() {
    let listener = TcpListener::bind(local0()).await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("the source connects");
        let mut ws = tokio_tungstenite::accept_async(stream)
            .await
            .expect("a WebSocket handshake");
        let newer = HELLO.replace(r#""schema":1"#, r#""schema":99"#);
        for text in ["not json", r#"{"type":"profile"}"#, newer.as_str(), HELLO] {
            ws.send(tungstenite::Message::text(text))
                .await
                .expect("send");
        }
        ws.send(tungstenite::Message::binary(vec![1, 2, 3]))
            .await
            .expect("send");
        // Close only once the test saw everything, so the order is certain.
        let _ = done_rx.await;
        let _ = ws.close(None).await;
    });

    let mut feed = Feed::attach(&[target(addr)], None);
    assert!(matches!(feed.next_from(0).await, FeedKind::Connecting));
    assert!(matches!(feed.next_from(0).await, FeedKind::Live { .. }));
    let mut reasons = Vec::new();
    for i in 0..3 {
        match feed.next_from(0).await {
            FeedKind::Invalid { reason } => reasons.push(reason),
            // A type this build does not know is a newer sidecar's, not
            // an invalid message (docs/events.md, "Evolving the schema").
            FeedKind::Message {
                message: Message::Unknown,
                raw,
                ..
            } if i == 1 => assert_eq!(&*raw, r#"{"type":"profile"}"#),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
    assert!(reasons[0].contains("not JSON"), "{reasons:?}");
    assert!(reasons[1].contains("schema 99"), "{reasons:?}");
    match feed.next_from(0).await {
        FeedKind::Message {
            message: Message::Hello(hello),
            raw,
            ..
        } => {
            assert_eq!(hello.sidecar.name, "fake");
            assert_eq!(&*raw, HELLO);
        }
        other => panic!("expected the valid hello, got {other:?}"),
    }
    match feed.next_from(0).await {
        FeedKind::Invalid { reason } => assert!(reason.contains("binary"), "{reason}"),
        other => panic!("expected Invalid for the binary frame, got {other:?}"),
    }

    // The peer closing is a reconnect, not the end of the source.
    done_tx.send(()).expect("the server waits");
    let (reason, _) = feed.reconnecting_from(0).await;
    assert!(reason.contains("closed"), "{reason}");
    within("the fake server to end", server)
        .await
        .expect("the fake server ends cleanly");
    feed.stop().await;
}

/// GETs of these paths through `sidecar`, each read to the end.
async fn requests_through(sidecar: &Sidecar, paths: &[&str]) {
    let mut client = http1_conn(sidecar.addr()).await;
    for path in paths {
        client.ready().await.expect("keep-alive");
        let resp = within("a response", client.send_request(get(path, "shop.svc")))
            .await
            .expect("the sidecar answers");
        body_bytes(resp).await;
    }
}

/// The paths of the request events `source` passes on until live stats
/// (not backfilled) have counted `requests` requests; every item also goes
/// into `model`.
async fn paths_until_counted(
    feed: &mut Feed,
    source: usize,
    requests: u64,
    model: &mut meshtop::tui::model::Model,
) -> Vec<String> {
    within("stats counting the requests", async {
        let (mut paths, mut counted) = (Vec::new(), 0);
        while counted < requests {
            let kind = feed.next_from(source).await;
            model.ingest(&meshtop::tui::source::FeedItem {
                source,
                kind: kind.clone(),
            });
            match kind {
                FeedKind::Message {
                    message: Message::Request(r),
                    ..
                } => paths.push(r.path.unwrap_or_default()),
                FeedKind::Message {
                    message: Message::Stats(s),
                    ..
                } if !s.backfill => {
                    counted += s.upstreams.iter().map(|u| u.counts.requests).sum::<u64>()
                }
                _ => {}
            }
        }
        paths
    })
    .await
}

#[tokio::test]
async fn the_filter_is_pushed_down_and_a_change_resubscribes_without_counting_twice() {
    // Issue #16: the UI's filter goes to the sidecar, so that filtered-out
    // events never cross the port-forward; changing it re-subscribes, and
    // the stats stay exact across the change.
    let backend = backend().await;
    let sidecar = Sidecar::start(named("web", backend.addr)).await;
    let target: Target = format!(":{}", sidecar.admin.port()).parse().expect("valid");
    let filter: FilterExpr = "status>=500".parse().expect("valid");
    let mut feed = Feed::subscribed(std::slice::from_ref(&target), None, &filter, false);
    let mut model = meshtop::tui::model::Model::new([target.to_string()]);
    assert!(matches!(feed.next_from(0).await, FeedKind::Connecting));
    match feed.next_from(0).await {
        FeedKind::Live { filter } => assert_eq!(filter, "status>=500"),
        other => panic!("expected Live, got {other:?}"),
    }
    model.ingest(&meshtop::tui::source::FeedItem {
        source: 0,
        kind: FeedKind::Live {
            filter: "status>=500".into(),
        },
    });
    requests_through(&sidecar, &["/status/200", "/status/500"]).await;
    let paths = paths_until_counted(&mut feed, 0, 2, &mut model).await;
    assert_eq!(paths, ["/status/500"]);

    // A new filter: the source subscribes again with it.
    let sender = feed.filter.as_ref().expect("not recording");
    sender.send_replace("path~200".parse().expect("valid"));
    within("the new subscription", async {
        loop {
            match feed.next_from(0).await {
                FeedKind::Live { filter } => {
                    assert_eq!(filter, "path~200");
                    let kind = FeedKind::Live { filter };
                    model.ingest(&meshtop::tui::source::FeedItem { source: 0, kind });
                    break;
                }
                FeedKind::Reconnecting { reason, .. } => panic!("not a failure: {reason}"),
                _ => {}
            }
        }
    })
    .await;
    requests_through(&sidecar, &["/status/200", "/status/503"]).await;
    let paths = paths_until_counted(&mut feed, 0, 2, &mut model).await;
    assert_eq!(paths, ["/status/200"]);
    // Four requests, counted once each, though the second subscription
    // began with the sidecar's history of the first two.
    let key = meshtop::tui::model::UpstreamKey {
        direction: Direction::Inbound,
        authority: "shop.svc".into(),
    };
    let row = model
        .upstream_row(&key, meshtop::tui::model::Window::FiveMinutes)
        .expect("the upstream");
    assert_eq!((row.requests, row.failures), (4, 2));
    assert_eq!(
        model.sidecars()[0].subscription.as_deref(),
        Some("path~200")
    );
    feed.stop().await;
    sidecar.stop().await;
}

#[tokio::test]
async fn a_recording_subscribes_to_every_event() {
    let backend = backend().await;
    let sidecar = Sidecar::start(named("web", backend.addr)).await;
    let target: Target = format!(":{}", sidecar.admin.port()).parse().expect("valid");
    let filter: FilterExpr = "status>=500".parse().expect("valid");
    let mut feed = Feed::subscribed(std::slice::from_ref(&target), None, &filter, true);
    assert!(feed.filter.is_none());
    assert!(matches!(feed.next_from(0).await, FeedKind::Connecting));
    assert!(matches!(feed.next_from(0).await, FeedKind::Live { filter } if filter.is_empty()));
    requests_through(&sidecar, &["/status/200", "/status/500"]).await;
    let mut model = meshtop::tui::model::Model::new([target.to_string()]);
    let paths = paths_until_counted(&mut feed, 0, 2, &mut model).await;
    assert_eq!(paths, ["/status/200", "/status/500"]);
    feed.stop().await;
    sidecar.stop().await;
}
