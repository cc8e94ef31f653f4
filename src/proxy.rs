//! The sidecar proxy: listeners that accept connections, find where each one
//! was going, detect its protocol and forward it unchanged while recording
//! every request.
//!
//! Stages of a connection, one module each: [`orig_dst`] (where it was
//! going) → [`detect`] (what it speaks) → HTTP forwarding or [`tunnel`]
//! (opaque bytes); [`upstream`] connects, [`conn`] ties the stages
//! together.
//!
//! HTTP is forwarded by three engines, each for the traffic it does
//! cheapest: [`relay`] (HTTP/1.1 to a fixed destination, as bytes),
//! [`h2_relay`] (HTTP/2 to a fixed destination, frame by frame) and
//! [`http`] (hyper: explicit-proxy connections, and what the relay hands
//! over). They keep only their framing; what a request's record holds, how
//! a failure is classified and answered, and when a request is sent again
//! are decided once, in [`exchange`]. [`body`] streams bodies through
//! hyper and holds each request's record until it is emitted.

pub mod body;
pub mod conn;
pub mod detect;
pub mod exchange;
pub mod h2_relay;
pub mod http;
pub mod io;
pub mod orig_dst;
pub mod relay;
pub mod stall;
pub mod tunnel;
pub mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ::http::header::HeaderName;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, warn};

use crate::telemetry::admin::{self, AdminState, SidecarInfo, TelemetryAccess};
use crate::telemetry::{Direction, RecordReceiver, Recorder, Telemetry, TelemetryConfig};
use conn::{ConnCtx, Route, Shared};
pub use upstream::{Dest, OwnAddrs};

/// The default inbound listener: everything iptables redirects into the pod.
pub const DEFAULT_INBOUND: &str = "0.0.0.0:15006";
/// The default outbound listener: redirected outbound traffic and explicit
/// proxy clients.
pub const DEFAULT_OUTBOUND: &str = "127.0.0.1:15001";
/// How long connections cut off at the end of the drain timeout get to
/// end (they end at their next poll; this only bounds a stuck one).
const CUT_OFF_WAIT: Duration = Duration::from_secs(1);

/// Destination ports of server-speaks-first protocols (SMTP, submission,
/// MySQL, PostgreSQL, Redis, memcached) whose connections skip detection.
pub const DEFAULT_OPAQUE_PORTS: [u16; 6] = [25, 587, 3306, 5432, 6379, 11211];

/// One listener: which way its traffic goes and where it sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    pub direction: Direction,
    pub addr: SocketAddr,
    /// Every connection goes here; `None`: to its original destination.
    pub target: Option<Dest>,
}

/// Everything `meshtop proxy` is configured with.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub listeners: Vec<ListenerConfig>,
    /// The admin server: probes, metrics, and per-request `/events`.
    pub admin: SocketAddr,
    /// A second admin server for the pod network: probes and metrics, and
    /// `/events` only when a token is set (see [`admin::Scope`]).
    pub public_admin: Option<SocketAddr>,
    pub name: String,
    pub namespace: Option<String>,
    pub opaque_ports: Vec<u16>,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub drain_timeout: Duration,
    /// How long resolving and connecting to an upstream may take.
    pub connect_timeout: Duration,
    /// How long detection waits for a client whose bytes so far may still
    /// be HTTP or TLS (or who sent none), while the server is silent.
    pub detect_timeout: Duration,
    /// Upstream connections held for clients that have not sent a byte yet
    /// (dialled at accept, so that a server that speaks first is heard at
    /// once). Past it, a silent client waits for one to be free, so that
    /// idle clients cannot open as many upstream connections as they open
    /// to the proxy. At least 1.
    pub max_eager_dials: usize,
    /// An opaque tunnel in which no byte moved either way for this long is
    /// closed (zero: never).
    pub idle_timeout: Duration,
    /// A request or response body that made no progress for this long is
    /// ended (zero: never).
    pub body_timeout: Duration,
    pub capture_headers: Vec<HeaderName>,
    /// The pod's own addresses, said in `hello`; empty: those of its
    /// network interfaces (see [`pod_addresses`]).
    pub pod_ips: Vec<IpAddr>,
    pub telemetry: TelemetryConfig,
    /// Records that may wait for the telemetry before new ones are dropped.
    pub record_capacity: usize,
    /// An HTTP/1 upstream connection idle at least this long may have been
    /// closed by its server meanwhile: a bodiless request with an
    /// idempotent method sent on it is kept, and sent again on a new
    /// connection if the old one closes before answering. Connections in
    /// steady use skip the copy.
    pub replay_after_idle: Duration,
}

impl ProxyConfig {
    /// A configuration with the given listeners and every default.
    pub fn new(name: impl Into<String>, listeners: Vec<ListenerConfig>) -> Self {
        ProxyConfig {
            listeners,
            admin: SocketAddr::from(([127, 0, 0, 1], 15090)),
            public_admin: None,
            name: name.into(),
            namespace: None,
            opaque_ports: DEFAULT_OPAQUE_PORTS.to_vec(),
            drain_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            detect_timeout: Duration::from_secs(10),
            max_eager_dials: 256,
            idle_timeout: Duration::from_secs(3600),
            body_timeout: Duration::from_secs(60),
            capture_headers: Vec::new(),
            pod_ips: Vec::new(),
            telemetry: TelemetryConfig::default(),
            record_capacity: 16 * 1024,
            replay_after_idle: Duration::from_secs(1),
        }
    }
}

/// The pod's addresses: `given` when any, else every address of its
/// network interfaces but loopback and link-local ones (a sidecar shares
/// its pod's network namespace, so these are the pod's IPs).
pub fn pod_addresses(given: &[IpAddr]) -> Vec<IpAddr> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let mut found: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|interface| interface.ip())
        .filter(|ip| !ip.is_loopback() && !is_link_local(ip))
        .collect();
    found.sort();
    found.dedup();
    found
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {source}")]
pub struct BindError {
    pub what: String,
    pub addr: SocketAddr,
    /// The flag that sets this address (`--admin`, …).
    pub flag: &'static str,
    #[source]
    pub source: std::io::Error,
}

impl BindError {
    /// Whether another socket holds the address already.
    pub fn in_use(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::AddrInUse
    }

    /// What the user can do about it, when anything.
    pub fn way_out(&self) -> Option<String> {
        self.in_use().then(|| {
            format!(
                "another process listens there: give this one another address with {}",
                self.flag
            )
        })
    }
}

/// A bound proxy, ready to run.
pub struct Proxy {
    listeners: Vec<(ListenerConfig, TcpListener)>,
    admin: TcpListener,
    public_admin: Option<TcpListener>,
    admin_state: Arc<AdminState>,
    config: ProxyConfig,
    recorder: Recorder,
    /// The telemetry task's parts; `None` when the caller consumes the
    /// records itself.
    telemetry: Option<(Telemetry, RecordReceiver)>,
}

/// A listener as bound (port 0 resolved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundListener {
    pub direction: Direction,
    pub addr: SocketAddr,
    pub target: Option<Dest>,
}

impl Proxy {
    /// Binds every listener and the admin address, with the telemetry
    /// (events, stats, metrics) on the admin address.
    pub async fn bind(config: ProxyConfig) -> Result<Proxy, BindError> {
        let (recorder, records) = Recorder::channel(config.record_capacity);
        let telemetry = Telemetry::new(&config.name, config.telemetry.clone());
        Proxy::bind_inner(config, recorder, Some((telemetry, records))).await
    }

    /// Binds every listener and the admin address (health only); records go
    /// to `recorder`, for a caller that consumes them itself.
    pub async fn bind_with_recorder(
        config: ProxyConfig,
        recorder: Recorder,
    ) -> Result<Proxy, BindError> {
        Proxy::bind_inner(config, recorder, None).await
    }

    async fn bind_inner(
        config: ProxyConfig,
        recorder: Recorder,
        telemetry: Option<(Telemetry, RecordReceiver)>,
    ) -> Result<Proxy, BindError> {
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            let flag = match listener.direction {
                Direction::Inbound => "--inbound",
                Direction::Outbound => "--outbound",
            };
            let bound = bind(
                listener.addr,
                &format!("{} listener", listener.direction),
                flag,
            )
            .await?;
            listeners.push((listener.clone(), bound));
        }
        let admin = bind(config.admin, "admin", "--admin").await?;
        let public_admin = match config.public_admin {
            Some(addr) => Some(bind(addr, "public admin", "--public-admin").await?),
            None => None,
        };
        let bound = listeners
            .iter()
            .map(|(cfg, l)| BoundListener {
                direction: cfg.direction,
                addr: l.local_addr().unwrap_or(cfg.addr),
                target: cfg.target.clone(),
            })
            .collect();
        let info = SidecarInfo {
            name: config.name.clone(),
            namespace: config.namespace.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: SystemTime::now(),
            addresses: pod_addresses(&config.pod_ips),
        };
        let access = telemetry.as_ref().map(|(t, _)| TelemetryAccess {
            hub: t.hub.clone(),
            metrics: t.metrics.clone(),
            token: t.config.admin_token.clone(),
            handshake_timeout: t.config.handshake_timeout,
            write_timeout: t.config.write_timeout,
        });
        if let Some(access) = &access
            && access.token.is_none()
        {
            let admin = admin.local_addr().unwrap_or(config.admin);
            if !admin.ip().is_loopback() {
                warn!(
                    %admin,
                    "per-request events (paths, client addresses, captured headers) are open \
                     to anyone who can reach {admin}: set --admin-token, or bind --admin to \
                     127.0.0.1 and serve probes and metrics with --public-admin"
                );
            }
        }
        let admin_state = Arc::new(AdminState::new(info, bound, access));
        Ok(Proxy {
            listeners,
            admin,
            public_admin,
            admin_state,
            config,
            recorder,
            telemetry,
        })
    }

    /// The listeners as bound.
    pub fn listeners(&self) -> &[BoundListener] {
        self.admin_state.listeners()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.config.admin)
    }

    /// The public admin server's address, when configured.
    pub fn public_admin_addr(&self) -> Option<SocketAddr> {
        let listener = self.public_admin.as_ref()?;
        listener.local_addr().ok().or(self.config.public_admin)
    }

    /// What the admin server shares with the rest of the proxy.
    pub fn admin_state(&self) -> Arc<AdminState> {
        self.admin_state.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets
    /// in-flight requests and connections finish for up to the drain timeout,
    /// and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let telemetry_shutdown = CancellationToken::new();
        let telemetry_task = self.telemetry.map(|(telemetry, records)| {
            tokio::spawn(Telemetry::run(
                telemetry.hub,
                telemetry.metrics,
                telemetry.config,
                records,
                self.recorder.clone(),
                telemetry_shutdown.clone(),
            ))
        });
        let cut_off = CancellationToken::new();
        let recorder = self.recorder.clone();
        let shared = Arc::new(Shared {
            sidecar: Arc::from(self.config.name.as_str()),
            recorder: self.recorder,
            opaque_ports: self.config.opaque_ports.clone(),
            connect_timeout: self.config.connect_timeout,
            detect_timeout: self.config.detect_timeout,
            eager_dials: Arc::new(tokio::sync::Semaphore::new(
                self.config
                    .max_eager_dials
                    .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            )),
            idle_timeout: self.config.idle_timeout,
            body_timeout: self.config.body_timeout,
            replay_after_idle: self.config.replay_after_idle,
            shutdown: shutdown.clone(),
            cut_off: cut_off.clone(),
            tracker: tracker.clone(),
            capture_headers: self.config.capture_headers.clone(),
            own: OwnAddrs::new(
                self.listeners
                    .iter()
                    .filter_map(|(_, listener)| listener.local_addr().ok())
                    .chain(self.admin.local_addr().ok())
                    .chain(self.public_admin.as_ref().and_then(|l| l.local_addr().ok())),
            ),
        });
        for (config, listener) in self.listeners {
            tracker.spawn(accept_loop(listener, config, shared.clone()));
        }
        // Ready before the admin server starts answering: the listeners are
        // bound and their accept loops spawned, and a probe that was queued
        // on the admin socket while we started must not see "not ready".
        self.admin_state.set_ready(true);
        let admin_shutdown = CancellationToken::new();
        let admin_task = tokio::spawn(admin::serve(
            self.admin,
            admin::Scope::Full,
            self.admin_state.clone(),
            admin_shutdown.clone(),
        ));
        let public_admin_task = self.public_admin.map(|listener| {
            tokio::spawn(admin::serve(
                listener,
                admin::Scope::Public,
                self.admin_state.clone(),
                admin_shutdown.clone(),
            ))
        });

        shutdown.cancelled().await;
        self.admin_state.set_ready(false);
        tracker.close();
        info!(
            connections = tracker.len(),
            timeout = ?self.config.drain_timeout,
            "shutting down: draining connections"
        );
        if tokio::time::timeout(self.config.drain_timeout, tracker.wait())
            .await
            .is_err()
        {
            warn!(
                connections = tracker.len(),
                "drain timeout reached, closing remaining connections"
            );
            // What is still running is recorded as ended by shutdown, so
            // the flag goes first; the cut tasks end at their next poll.
            recorder.cut_off();
            cut_off.cancel();
            if tokio::time::timeout(CUT_OFF_WAIT, tracker.wait())
                .await
                .is_err()
            {
                warn!(
                    connections = tracker.len(),
                    "connections still open after being cut off"
                );
            }
        }
        // The last records (of the drained requests) go out in a final stats
        // message before subscribers are disconnected.
        telemetry_shutdown.cancel();
        if let Some(task) = telemetry_task {
            let _ = task.await;
        }
        admin_shutdown.cancel();
        let _ = admin_task.await;
        if let Some(task) = public_admin_task {
            let _ = task.await;
        }
    }
}

async fn bind(addr: SocketAddr, what: &str, flag: &'static str) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        what: what.to_owned(),
        flag,
        addr,
        source,
    })
}

async fn accept_loop(listener: TcpListener, config: ListenerConfig, shared: Arc<Shared>) {
    let shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, client)) => {
                let span = tracing::debug_span!("conn", direction = %config.direction, %client);
                let task = handle(stream, client, config.clone(), shared.clone()).instrument(span);
                shared.spawn(task);
            }
            Err(err) => {
                // Out of file descriptors and the like: back off briefly rather
                // than spin; the listener itself stays open.
                warn!(error = %err, addr = %config.addr, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(
    stream: TcpStream,
    client: SocketAddr,
    config: ListenerConfig,
    shared: Arc<Shared>,
) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let route = match &config.target {
        Some(target) => Route::Fixed(target.clone()),
        None => match orig_dst::original_dst(&stream) {
            Some(dest) if !same_addr(dest, local) => Route::Fixed(Dest::Addr(dest)),
            _ if config.direction == Direction::Outbound => Route::Explicit,
            _ => Route::Reject,
        },
    };
    debug!(?route, "accepted");
    let ctx = Arc::new(ConnCtx {
        shared,
        direction: config.direction,
        client,
        local,
    });
    conn::serve(Box::new(stream), ctx, route, None).await;
}

/// Compares addresses, treating IPv4-mapped IPv6 addresses as IPv4.
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |addr: SocketAddr| SocketAddr::new(addr.ip().to_canonical(), addr.port());
    canonical(a) == canonical(b)
}
