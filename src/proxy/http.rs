//! HTTP forwarding with hyper: requests are served in the protocol they
//! arrived in and sent upstream in the same protocol, on one upstream
//! connection per client connection, streaming bodies both ways. It serves
//! explicit-proxy connections (HTTP/1 and HTTP/2), and the HTTP/1
//! connections that [`super::relay`] hands over; HTTP/2 to a destination
//! goes through [`super::h2_relay`].
//!
//! This module keeps hyper's framing: serving the client connection,
//! holding the upstream connection, rewriting heads (hop-by-hop fields,
//! absolute form), upgrades and CONNECT. What a request's record holds,
//! how a failure is classified and answered, and when a request is sent
//! again come from [`super::exchange`], as for the other engines.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1 as client_h1, http2 as client_h2};
use hyper::server::conn::{http1 as server_h1, http2 as server_h2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::Mutex;
use tracing::debug;

use super::body::{InFlight, RequestBody, ResponseBody};
use super::conn::{ConnCtx, Route};
use super::exchange::{
    self, Failure, HEADER_READ_TIMEOUT, Requested, is_grpc, named_authority, shared_authority,
};
use super::io::BoxIo;
use super::tunnel;
use super::upstream::{Connected, Dest};
use crate::telemetry::authority::strip_userinfo;
use crate::telemetry::{HttpProtocol, TcpProtocol};

/// The HTTP version of a client connection, and so of its upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersion {
    Http1,
    Http2,
}

/// A connection attempt started before the protocol was known (so that a
/// server that speaks first is noticed at once).
pub type PendingConnect = Pin<Box<dyn Future<Output = Connected> + Send>>;

/// Serves one client connection that speaks HTTP until it closes or the
/// proxy shuts down (then gracefully: in-flight requests finish).
///
/// Boxed because a CONNECT tunnel serves a connection inside a connection:
/// the future type would otherwise contain itself.
pub fn serve(
    io: BoxIo,
    version: HttpVersion,
    ctx: Arc<ConnCtx>,
    route: Route,
    pending: Option<PendingConnect>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(serve_http(io, version, ctx, route, pending))
}

async fn serve_http(
    io: BoxIo,
    version: HttpVersion,
    ctx: Arc<ConnCtx>,
    route: Route,
    pending: Option<PendingConnect>,
) {
    let forwarder = Arc::new(Forwarder {
        ctx: ctx.clone(),
        version,
        route,
        upstream: Mutex::new(Upstream {
            pending,
            ..Upstream::default()
        }),
        last_authority: std::sync::Mutex::new(None),
    });
    let io = TokioIo::new(io);
    let shutdown = ctx.shared.shutdown.clone();
    let result = match version {
        HttpVersion::Http1 => {
            let conn = server_h1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .preserve_header_case(true)
                .serve_connection(io, service_fn(move |req| forwarder.clone().forward(req)))
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => result,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }
        HttpVersion::Http2 => {
            // Boxed: hyper spawns a task per stream with the request's
            // future and moves it several times on the way; a pointer moves
            // for less than the ~3 KiB future (callgrind: -2 % per request;
            // on HTTP/1, where the future stays in place, boxing costs 2 %).
            let service = service_fn(move |req| Box::pin(forwarder.clone().forward(req)));
            let conn = server_h2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .serve_connection(io, service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => result,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }
    };
    if let Err(err) = result {
        if err.is_parse() {
            // hyper has answered 400 (or 431) and closed the connection.
            let status = if err.is_parse_too_large() { 431 } else { 400 };
            exchange::record_malformed(&ctx, protocol_of(version, false), status);
        }
        debug!(error = %err, "http connection ended with an error");
    }
}

fn protocol_of(version: HttpVersion, grpc: bool) -> HttpProtocol {
    match (version, grpc) {
        (HttpVersion::Http1, _) => HttpProtocol::Http1,
        (HttpVersion::Http2, false) => HttpProtocol::H2,
        (HttpVersion::Http2, true) => HttpProtocol::Grpc,
    }
}

/// Forwards the requests of one client connection.
struct Forwarder {
    ctx: Arc<ConnCtx>,
    version: HttpVersion,
    route: Route,
    /// Held across a connect so concurrent HTTP/2 streams share one upstream
    /// connection instead of racing to open several.
    upstream: Mutex<Upstream>,
    /// The authority of the last request, handed to the next one that names
    /// the same (nearly all of them) instead of a copy per request.
    last_authority: std::sync::Mutex<Option<Arc<str>>>,
}

#[derive(Default)]
struct Upstream {
    pending: Option<PendingConnect>,
    current: Option<UpstreamConn>,
}

struct UpstreamConn {
    dest: Dest,
    server: SocketAddr,
    sender: Sender,
    /// When it last answered (HTTP/1) or was opened.
    last_used: Instant,
}

enum Sender {
    Http1(client_h1::SendRequest<RequestBody>),
    Http2(client_h2::SendRequest<RequestBody>),
}

/// A sender taken for one request.
struct Lease {
    sender: Sender,
    server: SocketAddr,
    /// Whether the connection served earlier requests (a reused connection
    /// may have been closed by the server meanwhile: the request is retried
    /// once on a fresh one when it was not sent at all).
    reused: bool,
    /// How long the connection had been idle.
    idle: Duration,
}

/// A request that failed on its way upstream.
struct SendFailed {
    err: TrySendError<Request<RequestBody>>,
    server: SocketAddr,
    /// The head of a request that may be sent again, kept before sending.
    replay: Option<Box<http::request::Parts>>,
}

/// Why a request could not be sent upstream.
struct Unsent {
    failure: Failure,
    /// The upstream reset the HTTP/2 stream: pass the reset on.
    reset: Option<hyper::Error>,
}

impl From<Failure> for Unsent {
    fn from(failure: Failure) -> Self {
        Unsent {
            failure,
            reset: None,
        }
    }
}

impl Forwarder {
    async fn forward(
        self: Arc<Self>,
        mut req: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, hyper::Error> {
        let started = Instant::now();
        let grpc = self.version == HttpVersion::Http2 && is_grpc(req.headers());
        let requested = Requested::from_head(
            &self.ctx,
            protocol_of(self.version, grpc),
            self.authority_of(&req),
            req.method(),
            req.uri(),
            req.headers(),
        );
        let mut inflight = exchange::begin(&self.ctx, requested, None, started);

        let dest = match &self.route {
            Route::Fixed(dest) => dest.clone(),
            // A target that is this proxy is refused once resolved
            // (`OwnAddrs`), whatever name it was given by.
            Route::Explicit => match explicit_dest(&req) {
                Ok(dest) => dest,
                Err(message) => return Ok(refuse(inflight, grpc, message)),
            },
            Route::Reject => {
                return Ok(refuse(
                    inflight,
                    grpc,
                    "meshtop: this connection was not redirected to the proxy and is not a proxy request",
                ));
            }
        };
        if req.method() == Method::CONNECT && self.route == Route::Explicit {
            // Boxed, like any rare path, to keep the common future small.
            return Ok(Box::pin(self.connect_tunnel(req, dest, inflight)).await);
        }

        let client_upgrade = (self.version == HttpVersion::Http1 && is_upgrade(&req))
            .then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        if self.route == Route::Explicit {
            // HTTP/2 requests name their target in `:scheme` and
            // `:authority`, which the upstream needs too.
            if self.version == HttpVersion::Http1 {
                to_origin_form(&mut parts.uri, &mut parts.headers);
            }
            // Addressed to this proxy, which asks for no credentials:
            // consumed here, never passed to the origin (RFC 9110 §11.7.1).
            parts.headers.remove(header::PROXY_AUTHORIZATION);
        }
        let takes_trailers = list_has(&parts.headers, &header::TE, "trailers");
        strip_hop_by_hop(&mut parts.headers, client_upgrade.is_some());
        if takes_trailers {
            offer_trailers(&mut parts.headers, self.version);
        }
        let body = inflight.request_body(body, self.ctx.shared.body_timeout);
        let upstream_req = Request::from_parts(parts, body);

        let (mut resp, server) = match self.send(&dest, upstream_req).await {
            Ok(sent) => sent,
            Err(failure) => return self.fail(inflight, grpc, failure),
        };
        if let Some(record) = inflight.record() {
            record.server = Some(server);
        }
        let status = resp.status().as_u16();
        exchange::answered(&mut inflight, status, grpc.then(|| resp.headers()));

        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let (Some(client_upgrade), true) = (client_upgrade, switching) {
            let server_upgrade = hyper::upgrade::on(&mut resp);
            inflight.finish(None);
            let ctx = self.ctx.clone();
            let mut record = ctx.tcp_record(TcpProtocol::Tcp, None);
            record.server = Some(server);
            self.ctx.shared.spawn(async move {
                match tokio::try_join!(client_upgrade, server_upgrade) {
                    Ok((client, upstream)) => {
                        let client: BoxIo = Box::new(TokioIo::new(client));
                        let upstream = TokioIo::new(upstream);
                        tunnel::splice(client, upstream, None, record, Instant::now(), &ctx).await;
                    }
                    Err(err) => debug!(error = %err, "upgrade failed"),
                }
            });
            let (parts, _) = resp.into_parts();
            return Ok(Response::from_parts(parts, ResponseBody::empty()));
        }

        strip_hop_by_hop(resp.headers_mut(), false);
        let (parts, body) = resp.into_parts();
        Ok(Response::from_parts(
            parts,
            ResponseBody::upstream(body, inflight, self.ctx.shared.body_timeout),
        ))
    }

    /// The authority a request was meant for, as the client named it.
    fn authority_of(&self, req: &Request<Incoming>) -> Arc<str> {
        let name = match (named_authority(req.uri(), req.headers()), &self.route) {
            (Some(name), _) => name,
            (None, Route::Fixed(dest)) => return dest.to_string().into(),
            (None, _) => return self.ctx.local.to_string().into(),
        };
        let mut last = self
            .last_authority
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shared_authority(&mut last, name)
    }

    /// Sends a request upstream, retrying once on a fresh connection when a
    /// reused one turned out to be closed before the request went out.
    async fn send(
        &self,
        dest: &Dest,
        req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, SocketAddr), Unsent> {
        let lease = self.acquire(dest).await?;
        let reused = lease.reused;
        match self.send_on(lease, dest, req).await {
            Ok(sent) => Ok(sent),
            // Boxed: rare, and its room would be in every request's future.
            Err(failed) => Box::pin(self.recover(dest, failed, reused)).await,
        }
    }

    /// After a failed send: sends the request again on a new connection when
    /// that is safe, else says why it failed.
    async fn recover(
        &self,
        dest: &Dest,
        failed: SendFailed,
        reused: bool,
    ) -> Result<(Response<Incoming>, SocketAddr), Unsent> {
        let SendFailed {
            mut err,
            server,
            replay,
        } = failed;
        match (err.take_message(), replay) {
            // Never sent: a reused connection turned out to be closed.
            (Some(unsent), _) if reused => self.resend(dest, unsent).await,
            (_, Some(head)) if exchange::closed_before_answering(err.error()) => {
                let again = Request::from_parts(*head, RequestBody::empty());
                self.resend(dest, again).await
            }
            _ => Err(unsent(err.into_error(), server)),
        }
    }

    /// Sends a request that a closed connection did not take on a new one.
    async fn resend(
        &self,
        dest: &Dest,
        req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, SocketAddr), Unsent> {
        debug!("reused upstream connection was closed, reconnecting");
        self.upstream.lock().await.current = None;
        let lease = self.acquire(dest).await?;
        self.send_on(lease, dest, req)
            .await
            .map_err(|failed| unsent(failed.err.into_error(), failed.server))
    }

    /// Sends a request on a leased connection and waits for the response
    /// head; an HTTP/1 connection then goes back for the next request.
    async fn send_on(
        &self,
        lease: Lease,
        dest: &Dest,
        req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, SocketAddr), SendFailed> {
        let server = lease.server;
        // A server may close a connection that idled, just as a request
        // goes out on it: keep what is needed to send it again.
        let replay = (self.version == HttpVersion::Http1
            && exchange::may_replay(
                req.method(),
                http_body::Body::is_end_stream(req.body()),
                lease.reused,
                || lease.idle,
                self.ctx.shared.replay_after_idle,
            ))
        .then(|| Box::new(copy_head(&req)));
        let result = match lease.sender {
            Sender::Http1(mut sender) => {
                let result = sender.try_send_request(req).await;
                if !sender.is_closed() {
                    self.release(dest, server, Sender::Http1(sender));
                }
                result
            }
            Sender::Http2(mut sender) => sender.try_send_request(req).await,
        };
        result.map(|resp| (resp, server)).map_err(|err| SendFailed {
            err,
            server,
            replay,
        })
    }

    /// A sender for `dest`: the current connection if it is still usable,
    /// else a new one (the connection started eagerly at accept, if any).
    async fn acquire(&self, dest: &Dest) -> Result<Lease, Unsent> {
        let mut upstream = self.upstream.lock().await;
        if let Some(mut current) = upstream.current.take_if(|c| &c.dest == dest) {
            let usable = match &mut current.sender {
                // Ready once the previous response has been read to its end,
                // which on HTTP/1 precedes the client's next request.
                Sender::Http1(sender) => sender.ready().await.is_ok(),
                Sender::Http2(sender) => !sender.is_closed(),
            };
            if usable {
                let sender = match &current.sender {
                    Sender::Http1(_) => None,
                    Sender::Http2(sender) => Some(Sender::Http2(sender.clone())),
                };
                let server = current.server;
                let idle = current.last_used.elapsed();
                let sender = match sender {
                    // HTTP/2 senders are shared; the connection stays in place.
                    Some(shared) => {
                        upstream.current = Some(current);
                        shared
                    }
                    None => current.sender,
                };
                return Ok(Lease {
                    sender,
                    server,
                    reused: true,
                    idle,
                });
            }
        }
        // Boxed: connecting and the handshakes make a large future, and
        // every request's future would otherwise carry (and move) its room.
        Box::pin(self.open(&mut upstream, dest)).await
    }

    /// Opens a new upstream connection (or finishes the one started at
    /// accept) and keeps it for the next requests.
    async fn open(&self, upstream: &mut Upstream, dest: &Dest) -> Result<Lease, Unsent> {
        let connected = match upstream.pending.take() {
            Some(pending) => pending.await,
            None => self.ctx.shared.dial(dest.clone()).await,
        };
        let (stream, server) = connected.map_err(|err| Failure::connect(&err))?;
        let io = TokioIo::new(stream);
        let handshake_failed = |err: hyper::Error| Failure::handshake(server, err);
        let sender = match self.version {
            HttpVersion::Http1 => {
                let (sender, conn) = client_h1::Builder::new()
                    .preserve_header_case(true)
                    .handshake(io)
                    .await
                    .map_err(handshake_failed)?;
                tokio::spawn(async move {
                    if let Err(err) = conn.with_upgrades().await {
                        debug!(error = %err, "upstream http/1 connection ended");
                    }
                });
                Sender::Http1(sender)
            }
            HttpVersion::Http2 => {
                let (sender, conn) = client_h2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(io)
                    .await
                    .map_err(handshake_failed)?;
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        debug!(error = %err, "upstream h2 connection ended");
                    }
                });
                Sender::Http2(sender)
            }
        };
        let sender = match sender {
            Sender::Http2(sender) => {
                upstream.current = Some(UpstreamConn {
                    dest: dest.clone(),
                    server,
                    sender: Sender::Http2(sender.clone()),
                    last_used: Instant::now(),
                });
                Sender::Http2(sender)
            }
            http1 => http1,
        };
        Ok(Lease {
            sender,
            server,
            reused: false,
            idle: Duration::ZERO,
        })
    }

    /// Keeps an HTTP/1 connection for the client's next request. HTTP/1
    /// serves one request at a time, so nothing else holds the lock now;
    /// were it held, the connection would only not be reused.
    fn release(&self, dest: &Dest, server: SocketAddr, sender: Sender) {
        if let Ok(mut upstream) = self.upstream.try_lock() {
            upstream.current = Some(UpstreamConn {
                dest: dest.clone(),
                server,
                sender,
                last_used: Instant::now(),
            });
        }
    }

    /// Answers a request that could not be forwarded: `502` for HTTP, a
    /// trailers-only `UNAVAILABLE` for gRPC, or a reset passed on.
    fn fail(
        &self,
        mut inflight: InFlight,
        grpc: bool,
        unsent: Unsent,
    ) -> Result<Response<ResponseBody>, hyper::Error> {
        exchange::fail(&mut inflight, &unsent.failure);
        if let Some(reset) = unsent.reset {
            // hyper resets the client's stream with the upstream's reason.
            return Err(reset);
        }
        Ok(local_error(grpc, &unsent.failure))
    }

    /// Handles `CONNECT host:port` on an explicit-proxy connection: the tunnel
    /// is then detected and recorded like any direct connection.
    async fn connect_tunnel(
        &self,
        req: Request<Incoming>,
        dest: Dest,
        mut inflight: InFlight,
    ) -> Response<ResponseBody> {
        let connected = self.ctx.shared.dial(dest.clone()).await;
        let (stream, server) = match connected {
            Ok(connected) => connected,
            Err(err) => {
                let failure = Failure::connect(&err);
                exchange::fail(&mut inflight, &failure);
                return local_error(false, &failure);
            }
        };
        inflight.discard();
        let ctx = self.ctx.clone();
        let on_upgrade = hyper::upgrade::on(req);
        self.ctx.shared.spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let io: BoxIo = Box::new(TokioIo::new(upgraded));
                    let connected: Connected = Ok((stream, server));
                    super::conn::serve(io, ctx, Route::Fixed(dest), Some(connected)).await;
                }
                Err(err) => debug!(error = %err, "CONNECT tunnel was not established"),
            }
        });
        Response::new(ResponseBody::empty())
    }
}

/// A copy of the head of a request that may be sent twice (see
/// [`exchange::may_replay`]).
fn copy_head(req: &Request<RequestBody>) -> http::request::Parts {
    let mut copy = Request::new(());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy.into_parts().0
}

/// Answers `400` (or gRPC UNAVAILABLE) to a request that has no destination.
fn refuse(mut inflight: InFlight, grpc: bool, message: &'static str) -> Response<ResponseBody> {
    let failure = Failure::no_destination(message);
    exchange::fail(&mut inflight, &failure);
    local_error(grpc, &failure)
}

/// The proxy's answer to a request that failed (see [`exchange::local_answer`]).
fn local_error(grpc: bool, failure: &Failure) -> Response<ResponseBody> {
    let (head, body) = exchange::local_answer(grpc, failure);
    let (parts, ()) = head.into_parts();
    let body = body.map_or_else(ResponseBody::empty, ResponseBody::local);
    Response::from_parts(parts, body)
}

/// What a request sent by hyper's client came to: a failure, and an
/// HTTP/2 reset from the upstream to pass on.
fn unsent(err: hyper::Error, server: SocketAddr) -> Unsent {
    let failure = Failure::hyper(&err, server);
    let reset = exchange::h2_error(&err).is_some_and(|e| e.is_reset() && e.is_remote());
    Unsent {
        failure,
        reset: reset.then_some(err),
    }
}

/// An HTTP/1 request asking to switch protocols (`Connection: upgrade` with
/// an `Upgrade` header), e.g. a WebSocket handshake.
fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers().contains_key(header::UPGRADE)
        && list_has(req.headers(), &header::CONNECTION, "upgrade")
}

/// Whether the comma-separated values of `name` include `token`.
fn list_has(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop fields (RFC 9110 §7.6.1): `Connection` and the fields
/// it names, `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding` (each hop
/// frames its own body), `TE` (see [`offer_trailers`]) and `Upgrade` unless
/// the request is switching protocols.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none of these fields. One pass over the names
    // finds that out; each `remove` below hashes its name, and removing all
    // of them cost 7 % of the proxy's instructions per HTTP/1.1 request.
    if !headers.keys().any(is_hop_by_hop) {
        if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !(upgrade && name == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::TE);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Tells the upstream that trailers are welcome, for a client that said so
/// (`TE: trailers`; gRPC requires it on HTTP/2). `TE` is hop-by-hop, so each
/// hop states its own; on HTTP/1 it is named in `Connection` (RFC 9110
/// §10.1.4). Without it, a server may not send trailers (hyper does not).
fn offer_trailers(headers: &mut HeaderMap, version: HttpVersion) {
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    if version == HttpVersion::Http1 {
        headers.append(header::CONNECTION, HeaderValue::from_static("te"));
    }
}

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// A field that [`strip_hop_by_hop`] may remove or rewrite.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::TE
        || name == header::UPGRADE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Where an explicit proxy request goes: the authority of an absolute-form
/// URI (`GET http://host:port/path`) or of `CONNECT host:port`.
fn explicit_dest(req: &Request<Incoming>) -> Result<Dest, &'static str> {
    let authority = req
        .uri()
        .authority()
        .ok_or("meshtop: not a proxy request: expected an absolute URI (http://host/path) or CONNECT host:port")?;
    if req.method() != Method::CONNECT && req.uri().scheme_str() != Some("http") {
        return Err("meshtop: only http:// URIs can be proxied; use CONNECT for https");
    }
    let default_port = if req.method() == Method::CONNECT {
        443
    } else {
        80
    };
    Dest::from_authority(authority.as_str(), default_port)
        .map_err(|_| "meshtop: invalid proxy target")
}

/// Rewrites an absolute-form request target to origin form for the upstream
/// server, which expects `GET /path` and a `Host` header. The `Host` is made
/// from the target, replacing any the client sent (RFC 9112 §3.2.2).
fn to_origin_form(uri: &mut Uri, headers: &mut HeaderMap) {
    if let Some(authority) = uri.authority()
        && let Ok(host) = HeaderValue::from_str(strip_userinfo(authority.as_str()))
    {
        headers.insert(header::HOST, host);
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if let Ok(origin) = Uri::builder().path_and_query(path).build() {
        *uri = origin;
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Route) -> bool {
        match (self, other) {
            (Route::Fixed(a), Route::Fixed(b)) => a == b,
            (Route::Explicit, Route::Explicit) | (Route::Reject, Route::Reject) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).expect("valid name"),
                HeaderValue::from_str(v).expect("valid value"),
            );
        }
        map
    }

    fn output_size<A, B, F: Future>(_: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_request_future_stays_small() {
        // hyper moves each request's future several times, and on HTTP/2
        // spawns a task with it: rare paths (connecting, handshakes, CONNECT,
        // retries) are boxed so that their room is not in every request's
        // future. It was 4,480 bytes before they were, 3,168 now.
        let size = output_size(Forwarder::forward);
        assert!(size <= 3584, "the forward future is {size} bytes");
    }

    #[test]
    fn hop_by_hop_fields_and_those_named_by_connection_are_removed() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("x-end", "2"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("host", "svc"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["host", "x-end"]);
    }

    #[test]
    fn each_hop_by_hop_field_alone_is_removed_and_others_are_kept() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "te",
            "upgrade",
        ] {
            let mut h = headers(&[(name, "x"), ("x-end", "2"), ("host", "svc")]);
            strip_hop_by_hop(&mut h, false);
            let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
            names.sort();
            assert_eq!(names, ["host", "x-end"], "{name}");
        }
        let mut h = headers(&[("x-end", "2"), ("host", "svc")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn trailers_are_offered_upstream_as_the_client_offered_them() {
        let h = headers(&[("te", "gzip, Trailers")]);
        assert!(list_has(&h, &header::TE, "trailers"));
        assert!(!list_has(
            &headers(&[("te", "gzip")]),
            &header::TE,
            "trailers"
        ));

        let mut h2 = HeaderMap::new();
        offer_trailers(&mut h2, HttpVersion::Http2);
        assert_eq!(h2.get("te").map(|v| v.as_bytes()), Some(&b"trailers"[..]));
        assert!(!h2.contains_key("connection"), "no Connection on HTTP/2");

        let mut h1 = headers(&[("connection", "upgrade")]);
        offer_trailers(&mut h1, HttpVersion::Http1);
        assert_eq!(h1.get("te").map(|v| v.as_bytes()), Some(&b"trailers"[..]));
        assert!(list_has(&h1, &header::CONNECTION, "te"));
        assert!(list_has(&h1, &header::CONNECTION, "upgrade"));
    }

    #[test]
    fn upgrade_requests_keep_their_upgrade() {
        let mut h = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(
            h.get("connection").map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
        assert_eq!(
            h.get("upgrade").map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_host() {
        let mut uri: Uri = "http://svc:8080/a/b?c=d".parse().expect("valid uri");
        let mut h = HeaderMap::new();
        to_origin_form(&mut uri, &mut h);
        assert_eq!(uri.to_string(), "/a/b?c=d");
        assert_eq!(h.get("host").map(|v| v.as_bytes()), Some(&b"svc:8080"[..]));
    }
}
