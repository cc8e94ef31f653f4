//! One accepted connection: where it goes, what it speaks, and handing it to
//! the HTTP forwarder or the opaque tunnel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ::http::HeaderMap;
use ::http::header::HeaderName;
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::detect::{Detection, H2_FRAME_HEADER, MAX_SNIFF, Protocol, detect, is_h2_settings};
use super::http::{self, HttpVersion, PendingConnect};
use super::io::{BoxIo, Prefixed};
use super::tunnel;
use super::upstream::{self, Connected, Dest, OwnAddrs};
use super::{h2_relay, relay};
use crate::telemetry::{
    Direction, ErrorKind, HttpProtocol, Recorder, RequestRecord, TcpProtocol, TcpRecord,
};

/// How long a client is given to send its request after the upstream
/// refused the eager connection, so that an HTTP client gets a `502` rather
/// than a closed connection.
const FAILED_CONNECT_GRACE: Duration = Duration::from_secs(1);

/// Where a connection's traffic goes.
#[derive(Clone, Debug)]
pub enum Route {
    /// A fixed target, or the original destination of a redirected connection.
    Fixed(Dest),
    /// An outbound connection made to the proxy itself: an explicit HTTP proxy
    /// client, whose requests name their destination.
    Explicit,
    /// An inbound connection made to the proxy itself: it has nowhere to go.
    Reject,
}

/// What every connection of a proxy shares.
pub struct Shared {
    pub sidecar: Arc<str>,
    pub recorder: Recorder,
    /// Destination ports whose connections skip protocol detection.
    pub opaque_ports: Vec<u16>,
    pub connect_timeout: Duration,
    /// See [`crate::proxy::ProxyConfig::detect_timeout`].
    pub detect_timeout: Duration,
    /// Permits for upstream connections held for clients that have not
    /// sent a byte: see [`crate::proxy::ProxyConfig::max_eager_dials`].
    pub eager_dials: Arc<tokio::sync::Semaphore>,
    /// See [`crate::proxy::ProxyConfig::idle_timeout`].
    pub idle_timeout: Duration,
    /// See [`crate::proxy::ProxyConfig::body_timeout`].
    pub body_timeout: Duration,
    /// See [`crate::proxy::ProxyConfig::replay_after_idle`].
    pub replay_after_idle: Duration,
    pub shutdown: CancellationToken,
    /// Cancelled when the drain timeout ends: connections still open are
    /// cut, and what they had in flight is recorded as ended by shutdown.
    pub cut_off: CancellationToken,
    /// Every connection task, so shutdown can wait for them to drain.
    pub tracker: TaskTracker,
    /// Request headers copied into records (`--capture-header`).
    pub capture_headers: Vec<HeaderName>,
    /// Where this proxy listens: upstreams there are refused (a loop).
    pub own: OwnAddrs,
}

impl Shared {
    /// Connects to `dest` within the connect timeout, refusing this
    /// proxy's own addresses (see [`OwnAddrs`]).
    pub fn dial(&self, dest: Dest) -> impl Future<Output = Connected> + Send + 'static {
        upstream::connect(dest, self.connect_timeout, self.own.clone())
    }

    /// Runs a connection's task (or a tunnel's, after an upgrade) until it
    /// ends or the drain timeout cuts it off. A task cut off is dropped:
    /// its requests in flight record themselves as ended by shutdown (see
    /// [`InFlight`](super::body::InFlight)), its tunnel likewise.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let cut_off = self.cut_off.clone();
        self.tracker.spawn(async move {
            // The task first: a tunnel that notices the cut itself records
            // what it carried before it is dropped.
            tokio::select! {
                biased;
                () = task => {}
                () = cut_off.cancelled() => {}
            }
        });
    }
}

/// Headers whose values never appear in a record, even when captured.
const REDACTED: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// The values of the headers named in `capture`, in its order, as a
/// record keeps them: `values_of` gives a name's values as they came;
/// secrets are replaced by `<redacted>`. Shared by hyper's forwarder and
/// the HTTP/1.1 relay, so both capture and redact alike.
pub fn capture_headers<'c, 'a, I>(
    capture: &'c [HeaderName],
    values_of: impl Fn(&'c HeaderName) -> I,
) -> Vec<(String, String)>
where
    I: Iterator<Item = &'a [u8]>,
{
    let mut captured = Vec::new();
    for name in capture {
        for value in values_of(name) {
            let value = if REDACTED.contains(&name.as_str()) {
                "<redacted>".to_owned()
            } else {
                String::from_utf8_lossy(value).into_owned()
            };
            captured.push((name.as_str().to_owned(), value));
        }
    }
    captured
}

impl Shared {
    pub fn captured_headers(&self, headers: &HeaderMap) -> Vec<(String, String)> {
        capture_headers(&self.capture_headers, |name| {
            headers.get_all(name).iter().map(|v| v.as_bytes())
        })
    }
}

/// One client connection's identity.
pub struct ConnCtx {
    pub shared: Arc<Shared>,
    pub direction: Direction,
    pub client: SocketAddr,
    /// The proxy's own address for this connection.
    pub local: SocketAddr,
}

impl ConnCtx {
    /// A request record with this connection's identity and nothing else yet.
    pub fn request_record(&self, protocol: HttpProtocol, authority: Arc<str>) -> RequestRecord {
        RequestRecord {
            start: SystemTime::now(),
            sidecar: self.shared.sidecar.clone(),
            direction: self.direction,
            protocol,
            client: self.client,
            server: None,
            authority,
            method: None,
            path: None,
            status: None,
            grpc_status: None,
            grpc_message: None,
            error: None,
            duration: Duration::ZERO,
            ttfb: None,
            req_bytes: 0,
            resp_bytes: 0,
            headers: Vec::new(),
        }
    }

    pub fn tcp_record(&self, protocol: TcpProtocol, sni: Option<String>) -> TcpRecord {
        TcpRecord {
            start: SystemTime::now(),
            sidecar: self.shared.sidecar.clone(),
            direction: self.direction,
            protocol,
            client: self.client,
            server: None,
            sni,
            bytes_in: 0,
            bytes_out: 0,
            duration: Duration::ZERO,
            error: None,
        }
    }
}

/// Serves one connection to the end. `connected` is an upstream connection
/// made already (for a CONNECT tunnel).
pub async fn serve(mut io: BoxIo, ctx: Arc<ConnCtx>, route: Route, connected: Option<Connected>) {
    let start = SystemTime::now();
    let started = Instant::now();

    if let Route::Fixed(dest) = &route
        && ctx.shared.opaque_ports.contains(&dest.port())
    {
        let connected = match connected {
            Some(connected) => connected,
            None => ctx.shared.dial(dest.clone()).await,
        };
        return opaque(
            io,
            BytesMut::new(),
            connected,
            TcpProtocol::Tcp,
            None,
            None,
            &ctx,
            start,
            started,
        )
        .await;
    }

    // Connect eagerly, so a server that speaks first is heard at once; but
    // no more upstream connections are held for clients that have not sent
    // a byte than `--max-eager-dials`: past it, a silent client waits for a
    // permit, or until it speaks. The permit goes with its first byte.
    let mut silent: Option<OwnedSemaphorePermit> = None;
    let mut waiting_for_permit = false;
    let mut connecting: Option<PendingConnect> = None;
    if let (Route::Fixed(dest), None) = (&route, &connected) {
        match ctx.shared.eager_dials.clone().try_acquire_owned() {
            Ok(permit) => {
                silent = Some(permit);
                connecting = Some(Box::pin(ctx.shared.dial(dest.clone())));
            }
            Err(_) => waiting_for_permit = true,
        }
    }
    let mut connected = connected;
    let mut buf = BytesMut::with_capacity(1024);

    enum Event {
        Client(std::io::Result<usize>),
        Permit(Option<OwnedSemaphorePermit>),
        Connected(Connected),
        ServerSpoke,
        ServerSentH2Settings,
        Timeout,
        Shutdown,
    }
    // An h2 server sends SETTINGS on accept: after that, only the client's
    // bytes decide (the eager connect would otherwise race the client).
    let mut server_sent_h2_settings = false;
    // Detection waits while the client's bytes may still be HTTP or TLS
    // (or it sent none) and the server is silent: whichever speaks first
    // decides, so no protocol is delayed, and a client cannot make its
    // requests opaque by pausing. Up to `--detect-timeout` in all, counted
    // from the connection, so that trickling does not extend it.
    let detect_deadline = tokio::time::Instant::now() + ctx.shared.detect_timeout;
    let protocol = loop {
        if let Detection::Done(protocol) = detect(&buf) {
            break protocol;
        }
        let connect_failed = matches!(connected, Some(Err(_)));
        let deadline = if connect_failed {
            detect_deadline.min(tokio::time::Instant::now() + FAILED_CONNECT_GRACE)
        } else {
            detect_deadline
        };
        let event = tokio::select! {
            read = io.read_buf(&mut buf), if buf.len() < MAX_SNIFF => Event::Client(read),
            done = async { connecting.as_mut().expect("guarded by the branch condition").await },
                if connecting.is_some() => Event::Connected(done),
            permit = ctx.shared.eager_dials.clone().acquire_owned(), if waiting_for_permit => {
                Event::Permit(permit.ok())
            }
            h2_settings = async {
                let mut head = [0u8; H2_FRAME_HEADER];
                match &connected {
                    Some(Ok((stream, _))) => {
                        stream.peek(&mut head).await.is_ok_and(|n| is_h2_settings(&head[..n]))
                    }
                    _ => false,
                }
            }, if matches!(connected, Some(Ok(_))) && !server_sent_h2_settings => {
                if h2_settings { Event::ServerSentH2Settings } else { Event::ServerSpoke }
            }
            _ = tokio::time::sleep_until(deadline) => Event::Timeout,
            _ = ctx.shared.shutdown.cancelled() => Event::Shutdown,
        };
        match event {
            Event::Client(Ok(0)) => break Protocol::Opaque,
            Event::Client(Ok(_)) => {
                silent = None;
                if let (true, Route::Fixed(dest)) = (waiting_for_permit, &route) {
                    waiting_for_permit = false;
                    connecting = Some(Box::pin(ctx.shared.dial(dest.clone())));
                }
            }
            Event::Permit(permit) => {
                waiting_for_permit = false;
                if let (Some(permit), Route::Fixed(dest)) = (permit, &route) {
                    silent = Some(permit);
                    connecting = Some(Box::pin(ctx.shared.dial(dest.clone())));
                }
            }
            Event::Client(Err(err)) => {
                tracing::debug!(error = %err, "client failed before its protocol was known");
                let mut record = ctx.tcp_record(TcpProtocol::Tcp, None);
                record.start = start;
                record.server = connected.and_then(|c| c.ok()).map(|(_, addr)| addr);
                tunnel::record_failed(&ctx, record, ErrorKind::DownstreamReset, started);
                return;
            }
            Event::Connected(done) => {
                connecting = None;
                connected = Some(done);
            }
            Event::ServerSentH2Settings => server_sent_h2_settings = true,
            Event::ServerSpoke | Event::Timeout => break Protocol::Opaque,
            Event::Shutdown if buf.is_empty() => return,
            Event::Shutdown => break Protocol::Opaque,
        }
    };

    let version = match protocol {
        Protocol::Http1 => Some(HttpVersion::Http1),
        Protocol::Http2 => Some(HttpVersion::Http2),
        Protocol::Tls { .. } | Protocol::Opaque => None,
    };
    if let Some(version) = version {
        let pending: Option<PendingConnect> = match (connecting, connected) {
            (Some(pending), _) => Some(pending),
            (None, Some(done)) => Some(Box::pin(std::future::ready(done))),
            (None, None) => None,
        };
        if let Route::Fixed(dest) = &route {
            let dest = dest.clone();
            return match version {
                HttpVersion::Http1 => relay::serve(io, buf, ctx, dest, pending).await,
                HttpVersion::Http2 => {
                    let io: BoxIo = Box::new(Prefixed::new(buf.freeze(), io));
                    h2_relay::serve(io, ctx, dest, pending).await
                }
            };
        }
        let io: BoxIo = Box::new(Prefixed::new(buf.freeze(), io));
        return http::serve(io, version, ctx, route, pending).await;
    }

    let (tcp_protocol, sni) = match protocol {
        Protocol::Tls { sni } => (TcpProtocol::Tls, sni),
        _ => (TcpProtocol::Tcp, None),
    };
    let Route::Fixed(dest) = &route else {
        // Not HTTP on a connection that only an explicit proxy request could
        // give a destination to.
        let mut record = ctx.tcp_record(tcp_protocol, sni);
        record.start = start;
        tunnel::record_failed(&ctx, record, ErrorKind::NoDestination, started);
        return;
    };
    let connected = match (connected, connecting) {
        (Some(done), _) => done,
        (None, Some(pending)) => pending.await,
        (None, None) => {
            if buf.is_empty() && silent.is_none() {
                // Still silent, and past detection: it dials under a permit
                // too, or the cap would only delay idle clients.
                match silent_permit(&ctx).await {
                    Ok(permit) => silent = Some(permit),
                    Err(error) => {
                        let mut record = ctx.tcp_record(tcp_protocol, sni);
                        record.start = start;
                        tunnel::record_failed(&ctx, record, error, started);
                        return;
                    }
                }
            }
            ctx.shared.dial(dest.clone()).await
        }
    };
    opaque(
        io,
        buf,
        connected,
        tcp_protocol,
        sni,
        silent,
        &ctx,
        start,
        started,
    )
    .await;
}

/// A permit to hold an upstream connection for a client that has not sent a
/// byte, waited for no longer than the idle timeout (or until shutdown).
async fn silent_permit(ctx: &ConnCtx) -> Result<OwnedSemaphorePermit, ErrorKind> {
    let idle = ctx.shared.idle_timeout;
    tokio::select! {
        permit = ctx.shared.eager_dials.clone().acquire_owned() => {
            permit.map_err(|_| ErrorKind::Shutdown)
        }
        () = tokio::time::sleep(idle), if !idle.is_zero() => Err(ErrorKind::IdleTimeout),
        () = ctx.shared.shutdown.cancelled() => Err(ErrorKind::Shutdown),
    }
}

#[allow(clippy::too_many_arguments)]
async fn opaque(
    io: BoxIo,
    sniffed: BytesMut,
    connected: Connected,
    protocol: TcpProtocol,
    sni: Option<String>,
    silent: Option<OwnedSemaphorePermit>,
    ctx: &ConnCtx,
    start: SystemTime,
    started: Instant,
) {
    let mut record = ctx.tcp_record(protocol, sni);
    record.start = start;
    match connected {
        Ok((stream, server)) => {
            record.server = Some(server);
            let client: BoxIo = Box::new(Prefixed::new(sniffed.freeze(), io));
            tunnel::splice(client, stream, silent, record, started, ctx).await;
        }
        Err(err) => {
            tracing::debug!(error = %err, "opaque connection failed");
            record.server = err.addr;
            tunnel::record_failed(ctx, record, err.kind, started);
        }
    }
}
