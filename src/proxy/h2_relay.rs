//! The HTTP/2 relay: how every HTTP/2 connection with a fixed destination
//! (every redirected one, gRPC included) is forwarded. It speaks HTTP/2 on
//! both sides with the h2 crate, hyper's own HTTP/2, and forwards each
//! stream to one upstream connection that the client connection's streams
//! share, as hyper's forwarder did: heads, DATA, trailers and resets pass on
//! as they came, and flow control passes back, so a slow reader holds back
//! its writer instead of filling the proxy's memory.
//!
//! Everything a client connection needs is polled in one task: the client
//! connection, its upstream connections and every stream. hyper spawns two
//! tasks per stream and wraps both connections in its service and body
//! layers; with them gone a request costs about half the instructions (see
//! docs/benchmarks.md). Explicit-proxy connections (rare over HTTP/2) still
//! go to hyper's forwarder in [`super::http`].
//!
//! What a stream does, in order:
//! - It waits for the upstream connection, opened at the first stream (or
//!   at accept, eagerly) and again after it closes; streams that arrive
//!   meanwhile wait with it. When the connection cannot be made, each gets
//!   `502` (`UNAVAILABLE` for gRPC), made and recorded by
//!   [`super::exchange`] as for hyper's forwarder.
//! - An upstream connection whose server said GOAWAY keeps its streams to
//!   their end, and one that closed is dropped; the streams that come after
//!   go to a new one. A stream given to a connection found going away
//!   before anything was sent on it goes to the next one, once.
//! - The request's head goes upstream with its body streaming after it,
//!   while the response is awaited; then the response streams back.
//! - A reset on either side is passed to the other with its reason; a
//!   client that leaves cancels the upstream stream.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, Request, Response, Uri};
use tracing::debug;

use super::body::InFlight;
use super::conn::ConnCtx;
use super::exchange::{
    self, BodyFault, Failure, Flow, Requested, body_error, is_grpc, named_authority,
    read_grpc_status, shared_authority,
};
use super::http::PendingConnect;
use super::io::BoxIo;
use super::stall::Stall;
use super::upstream::Dest;
use crate::telemetry::{ErrorKind, HttpProtocol};

// The settings hyper's forwarder used, so that moving to the relay changes
// nothing a peer can see: hyper's defaults for a server and for a client.
const SERVER_STREAM_WINDOW: u32 = 1024 * 1024;
const SERVER_CONN_WINDOW: u32 = 1024 * 1024;
const SERVER_SEND_BUFFER: usize = 400 * 1024;
const SERVER_MAX_STREAMS: u32 = 200;
const CLIENT_STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CLIENT_CONN_WINDOW: u32 = 5 * 1024 * 1024;
const CLIENT_SEND_BUFFER: usize = 1024 * 1024;
const CLIENT_INITIAL_MAX_STREAMS: usize = 100;
const MAX_HEADER_LIST: u32 = 16 * 1024;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// Serves an HTTP/2 connection (its preface already in `io`) to the end,
/// forwarding its streams to `dest`. `pending` is the upstream connection
/// started at accept, if any.
pub async fn serve(io: BoxIo, ctx: Arc<ConnCtx>, dest: Dest, pending: Option<PendingConnect>) {
    let shutdown = ctx.shared.shutdown.clone();
    let handshake = h2::server::Builder::new()
        .initial_window_size(SERVER_STREAM_WINDOW)
        .initial_connection_window_size(SERVER_CONN_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .max_send_buffer_size(SERVER_SEND_BUFFER)
        .max_concurrent_streams(SERVER_MAX_STREAMS)
        .handshake::<_, Bytes>(io);
    let mut server = tokio::select! {
        done = handshake => match done {
            Ok(server) => server,
            Err(err) => {
                debug!(error = %err, "h2 handshake with the client failed");
                return;
            }
        },
        _ = shutdown.cancelled() => return,
    };
    let mut relay = Relay {
        ctx,
        dest,
        pending,
        current: None,
        connecting: None,
        generations: 0,
        waiting: Vec::new(),
        drivers: FuturesUnordered::new(),
        streams: FuturesUnordered::new(),
        last_authority: None,
    };
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let mut shutting_down = false;
    poll_fn(|cx| {
        if !shutting_down && cancelled.as_mut().poll(cx).is_ready() {
            // In-flight streams finish; new ones are refused with GOAWAY.
            shutting_down = true;
            server.graceful_shutdown();
        }
        relay.poll(cx, &mut server)
    })
    .await;
    // Streams still here belong to a connection that failed: they are
    // dropped, and their records say the client went away.
}

type ServerConn = h2::server::Connection<BoxIo, Bytes>;
type Sender = h2::client::SendRequest<Bytes>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One client connection's streams and their upstream connections.
struct Relay {
    ctx: Arc<ConnCtx>,
    dest: Dest,
    /// The upstream connection started at accept, until a stream needs it.
    pending: Option<PendingConnect>,
    /// The upstream connection new streams go to.
    current: Option<Upstream>,
    /// An upstream connection being made, for the streams in `waiting`.
    connecting: Option<BoxFuture<Result<Opened, Failure>>>,
    /// How many upstream connections were opened: each one's number.
    generations: u64,
    waiting: Vec<Accepted>,
    /// Upstream connections, each driven until it closes (one that is no
    /// longer `current` still serves its streams). Each ends with its number.
    drivers: FuturesUnordered<BoxFuture<u64>>,
    streams: FuturesUnordered<BoxFuture<StreamEnd>>,
    last_authority: Option<Arc<str>>,
}

/// An upstream connection streams are sent on, and its number.
#[derive(Clone)]
struct Upstream {
    sender: Sender,
    server: SocketAddr,
    generation: u64,
}

/// A new upstream connection and what drives it.
struct Opened {
    sender: Sender,
    server: SocketAddr,
    driver: h2::client::Connection<tokio::net::TcpStream, Bytes>,
}

/// A client stream, from its arrival until it is forwarded.
struct Accepted {
    req: Request<RecvStream>,
    respond: SendResponse<Bytes>,
    authority: Arc<str>,
    started: Instant,
    /// Whether it was given to a connection that was going away already.
    retried: bool,
}

enum StreamEnd {
    Done,
    /// The stream's upstream connection (this generation) was going away
    /// before anything was sent: the stream goes to the next one, once.
    Retry(Box<Accepted>, u64),
}

impl Relay {
    /// Drives everything until the client connection ends.
    ///
    /// Each pass takes everything the client sent first, then lets every
    /// stream act, then drives the upstream connections: the frames of all
    /// the streams ready at once leave in one write to each side (taking
    /// one stream at a time and driving the connections after each cost a
    /// write per request).
    fn poll(&mut self, cx: &mut Context<'_>, server: &mut ServerConn) -> Poll<()> {
        loop {
            loop {
                match server.poll_accept(cx) {
                    Poll::Ready(Some(Ok((req, respond)))) => {
                        let authority = self.authority_of(&req);
                        self.dispatch(Accepted {
                            req,
                            respond,
                            authority,
                            started: Instant::now(),
                            retried: false,
                        });
                    }
                    Poll::Ready(Some(Err(err))) => {
                        debug!(error = %err, "h2 client connection failed");
                        return Poll::Ready(());
                    }
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Pending => break,
                }
            }
            let mut again = false;
            if let Some(connecting) = self.connecting.as_mut()
                && let Poll::Ready(opened) = connecting.as_mut().poll(cx)
            {
                self.connecting = None;
                self.connected(opened);
                again = true;
            }
            while let Poll::Ready(Some(end)) = self.streams.poll_next_unpin(cx) {
                if let StreamEnd::Retry(accepted, generation) = end {
                    self.going_away(generation);
                    self.dispatch(*accepted);
                    again = true;
                }
            }
            while let Poll::Ready(Some(generation)) = self.drivers.poll_next_unpin(cx) {
                self.going_away(generation);
            }
            // Streams woken by what the connections read, and the frames
            // they send, are taken on the next pass: the task was woken.
            if !again {
                return Poll::Pending;
            }
        }
    }

    /// New streams no longer go to upstream connection `generation`.
    fn going_away(&mut self, generation: u64) {
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.generation == generation)
        {
            self.current = None;
        }
    }

    fn authority_of(&mut self, req: &Request<RecvStream>) -> Arc<str> {
        match named_authority(req.uri(), req.headers()) {
            Some(name) => shared_authority(&mut self.last_authority, name),
            None => self.dest.to_string().into(),
        }
    }

    /// Forwards a stream on the current upstream connection, or has it wait
    /// for one.
    fn dispatch(&mut self, accepted: Accepted) {
        match &self.current {
            Some(upstream) => {
                let forward = forward(
                    self.ctx.clone(),
                    self.dest.clone(),
                    upstream.clone(),
                    accepted,
                );
                self.streams.push(Box::pin(forward));
            }
            None => {
                self.waiting.push(accepted);
                if self.connecting.is_none() {
                    let pending = self.pending.take();
                    let connect = open(pending, self.dest.clone(), self.ctx.clone());
                    self.connecting = Some(Box::pin(connect));
                }
            }
        }
    }

    /// The end of a connection attempt: the waiting streams are forwarded,
    /// or answered with why not.
    fn connected(&mut self, opened: Result<Opened, Failure>) {
        match opened {
            Ok(opened) => {
                self.generations += 1;
                let generation = self.generations;
                let driver = opened.driver;
                self.drivers.push(Box::pin(async move {
                    if let Err(err) = driver.await {
                        debug!(error = %err, "upstream h2 connection ended");
                    }
                    generation
                }));
                self.current = Some(Upstream {
                    sender: opened.sender,
                    server: opened.server,
                    generation,
                });
                for accepted in std::mem::take(&mut self.waiting) {
                    self.dispatch(accepted);
                }
            }
            Err(failure) => {
                debug!(error = %failure.message, "upstream h2 connection failed");
                for accepted in std::mem::take(&mut self.waiting) {
                    let Begun {
                        mut respond,
                        mut inflight,
                        grpc,
                        ..
                    } = begin(&self.ctx, accepted, failure.server);
                    not_forwarded(&mut respond, &mut inflight, grpc, &failure);
                }
            }
        }
    }
}

/// Connects and shakes hands with the upstream.
async fn open(
    pending: Option<PendingConnect>,
    dest: Dest,
    ctx: Arc<ConnCtx>,
) -> Result<Opened, Failure> {
    let connected = match pending {
        Some(pending) => pending.await,
        None => ctx.shared.dial(dest).await,
    };
    let (stream, server) = connected.map_err(|err| Failure::connect(&err))?;
    let (sender, driver) = h2::client::Builder::new()
        .initial_max_send_streams(CLIENT_INITIAL_MAX_STREAMS)
        .initial_window_size(CLIENT_STREAM_WINDOW)
        .initial_connection_window_size(CLIENT_CONN_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(CLIENT_SEND_BUFFER)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .enable_push(false)
        .handshake::<_, Bytes>(stream)
        .await
        .map_err(|err| Failure::handshake(server, err))?;
    Ok(Opened {
        sender,
        server,
        driver,
    })
}

/// A stream whose record has begun.
struct Begun {
    req: Request<RecvStream>,
    respond: SendResponse<Bytes>,
    inflight: InFlight,
    grpc: bool,
}

/// Begins a stream's record: its identity, request head and the upstream
/// server it goes to (or failed to reach).
fn begin(ctx: &ConnCtx, accepted: Accepted, server: Option<SocketAddr>) -> Begun {
    let Accepted {
        req,
        respond,
        authority,
        started,
        ..
    } = accepted;
    let grpc = is_grpc(req.headers());
    let protocol = if grpc {
        HttpProtocol::Grpc
    } else {
        HttpProtocol::H2
    };
    let requested = Requested::from_head(
        ctx,
        protocol,
        authority,
        req.method(),
        req.uri(),
        req.headers(),
    );
    let inflight = exchange::begin(ctx, requested, server, started);
    Begun {
        req,
        respond,
        inflight,
        grpc,
    }
}

/// Answers a stream that could not be forwarded, and records why.
fn not_forwarded(
    respond: &mut SendResponse<Bytes>,
    inflight: &mut InFlight,
    grpc: bool,
    failure: &Failure,
) {
    answer_locally(respond, grpc, failure);
    exchange::fail(inflight, failure);
}

/// Answers a stream that could not be forwarded (see
/// [`exchange::local_answer`]).
fn answer_locally(respond: &mut SendResponse<Bytes>, grpc: bool, failure: &Failure) {
    let (head, body) = exchange::local_answer(grpc, failure);
    match respond.send_response(head, body.is_none()) {
        Ok(mut stream) => {
            if let Some(body) = body {
                // A few bytes: h2 holds them until the window allows.
                let _ = stream.send_data(body, true);
            }
        }
        Err(err) => debug!(error = %err, "the client stream is gone"),
    }
}

/// What the first part of an exchange came to.
enum Head {
    Response(Result<Response<RecvStream>, h2::Error>),
    /// The client reset its stream or its request body failed.
    ClientGone,
}

/// Forwards one stream: the request upstream, its body after it, the
/// response back, and its record when the response is over.
async fn forward(
    ctx: Arc<ConnCtx>,
    dest: Dest,
    upstream: Upstream,
    accepted: Accepted,
) -> StreamEnd {
    let Upstream {
        mut sender,
        server,
        generation,
    } = upstream;
    // Waits while the upstream has as many streams open as it allows. An
    // error means nothing was sent: the connection is going away (its
    // server sent GOAWAY, and it stays only for the streams it has) or
    // gone. The stream goes to a new one.
    let ready = poll_fn(|cx| sender.poll_ready(cx)).await;
    if let Err(err) = &ready
        && !accepted.retried
    {
        debug!(error = %err, "upstream h2 connection is going away, opening another");
        let retry = Accepted {
            retried: true,
            ..accepted
        };
        return StreamEnd::Retry(Box::new(retry), generation);
    }
    let Begun {
        req,
        mut respond,
        mut inflight,
        grpc,
    } = begin(&ctx, accepted, Some(server));
    let fail = |respond: &mut SendResponse<Bytes>, inflight: &mut InFlight, err: h2::Error| {
        not_forwarded(respond, inflight, grpc, &Failure::h2(&err, None));
        StreamEnd::Done
    };
    if let Err(err) = ready {
        return fail(&mut respond, &mut inflight, err);
    }
    let (parts, body) = req.into_parts();
    let end_of_stream = body.is_end_stream();
    let mut head = Request::from_parts(parts, ());
    if head.uri().authority().is_none() {
        give_authority(&mut head, &dest);
    }
    let (response, request_body) = match sender.send_request(head, end_of_stream) {
        Ok(sent) => sent,
        Err(err) => return fail(&mut respond, &mut inflight, err),
    };
    drop(sender);

    let mut request = Upload::new(
        (!end_of_stream)
            .then(|| Pipe::new(body, request_body, Reason::CANCEL, ctx.shared.body_timeout)),
    );
    let mut response = std::pin::pin!(response);
    let head = poll_fn(|cx| {
        if request.poll(cx, &mut |_| {}).is_ready() && request.client_failed {
            return Poll::Ready(Head::ClientGone);
        }
        if let Poll::Ready(response) = response.as_mut().poll(cx) {
            return Poll::Ready(Head::Response(response));
        }
        if respond.poll_reset(cx).is_ready() {
            return Poll::Ready(Head::ClientGone);
        }
        Poll::Pending
    })
    .await;

    let response = match head {
        Head::Response(Ok(response)) => response,
        Head::Response(Err(err)) => {
            let failure = Failure::h2(&err, None);
            if err.is_reset() && err.is_remote() {
                // The upstream reset the stream: so is the client's.
                respond.send_reset(err.reason().unwrap_or(Reason::INTERNAL_ERROR));
            } else {
                answer_locally(&mut respond, grpc, &failure);
            }
            request.close(&mut inflight, Some(failure.kind));
            return StreamEnd::Done;
        }
        Head::ClientGone => {
            request.close(&mut inflight, Some(request.client_error()));
            return StreamEnd::Done;
        }
    };

    let (parts, body) = response.into_parts();
    exchange::answered(
        &mut inflight,
        parts.status.as_u16(),
        grpc.then_some(&parts.headers),
    );
    let end_of_stream = body.is_end_stream();
    let to_client = match respond.send_response(Response::from_parts(parts, ()), end_of_stream) {
        Ok(to_client) => to_client,
        Err(err) => {
            debug!(error = %err, "the client stream is gone");
            let error = body_error(Flow::Response, BodyFault::SinkFailed);
            request.close(&mut inflight, Some(error));
            return StreamEnd::Done;
        }
    };
    if end_of_stream {
        request.close(&mut inflight, None);
    } else {
        let mut pipe = Pipe::new(
            body,
            to_client,
            Reason::INTERNAL_ERROR,
            ctx.shared.body_timeout,
        );
        let ended = poll_fn(|cx| {
            if request.poll(cx, &mut |_| {}).is_ready() && request.client_failed {
                return Poll::Ready(PipeEnd::ClientFailed);
            }
            pipe.poll(cx, &mut |trailers| {
                if let Some(record) = inflight.record() {
                    read_grpc_status(trailers, record);
                }
            })
        })
        .await;
        if let Some(record) = inflight.record() {
            record.resp_bytes = pipe.bytes;
        }
        let error = match ended {
            PipeEnd::Done => None,
            PipeEnd::ClientFailed => Some(request.client_error()),
            PipeEnd::FromFailed => Some(body_error(Flow::Response, BodyFault::SourceFailed)),
            PipeEnd::ToFailed => Some(body_error(Flow::Response, BodyFault::SinkFailed)),
            PipeEnd::Stalled => Some(body_error(Flow::Response, BodyFault::Stalled)),
        };
        request.close(&mut inflight, error);
        if error.is_some() {
            return StreamEnd::Done;
        }
    }
    // The response is over; the rest of the request body, if any, still
    // goes upstream until it ends or the upstream stops it.
    poll_fn(|cx| request.poll(cx, &mut |_| {})).await;
    StreamEnd::Done
}

/// Gives a request without `:authority` the one HTTP/2 requires upstream:
/// its `Host`, else the destination.
fn give_authority(head: &mut Request<()>, dest: &Dest) {
    let authority =
        named_authority(head.uri(), head.headers()).map_or_else(|| dest.to_string(), str::to_owned);
    let path = head.uri().path_and_query().map_or("/", |p| p.as_str());
    let scheme = head.uri().scheme_str().unwrap_or("http");
    if let Ok(uri) = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
    {
        *head.uri_mut() = uri;
    }
}

/// A request body on its way upstream, and what it came to.
struct Upload {
    pipe: Option<Pipe>,
    /// Bytes passed on by a pipe that has ended.
    bytes: u64,
    /// The client reset its stream or its connection failed.
    client_failed: bool,
    /// ...by sending nothing for `--body-timeout`.
    client_stalled: bool,
}

impl Upload {
    fn new(pipe: Option<Pipe>) -> Self {
        Upload {
            pipe,
            bytes: 0,
            client_failed: false,
            client_stalled: false,
        }
    }

    /// Streams the body; ready once it has ended, however. A body that ends
    /// lets go of both streams: the client's data then no longer holds its
    /// connection's flow-control window.
    fn poll(&mut self, cx: &mut Context<'_>, on_trailers: &mut dyn FnMut(&HeaderMap)) -> Poll<()> {
        let Some(pipe) = self.pipe.as_mut() else {
            return Poll::Ready(());
        };
        let ended = ready!(pipe.poll(cx, on_trailers));
        self.bytes = pipe.bytes;
        self.pipe = None;
        // An upstream that stops the body (it answered already, or it
        // failed) says why in its response.
        self.client_failed = matches!(ended, PipeEnd::FromFailed | PipeEnd::Stalled);
        self.client_stalled = matches!(ended, PipeEnd::Stalled);
        Poll::Ready(())
    }

    /// How the client failed the exchange: it went away (or reset its
    /// stream), or its body stalled.
    fn client_error(&self) -> ErrorKind {
        let fault = if self.client_stalled {
            BodyFault::Stalled
        } else {
            BodyFault::SourceFailed
        };
        body_error(Flow::Request, fault)
    }

    /// Emits the record with the body's bytes so far.
    fn close(&self, inflight: &mut InFlight, error: Option<ErrorKind>) {
        if let Some(record) = inflight.record() {
            record.req_bytes = self.pipe.as_ref().map_or(self.bytes, |p| p.bytes);
        }
        inflight.finish(error);
    }
}

/// One direction of a stream: DATA and trailers from `from` to `to`. Data
/// is read from `from` only while `to` has room for it; each chunk read is
/// released to `from`'s window at once, as hyper does, so what one stream
/// holds is bounded by `to`'s send buffer.
struct Pipe {
    from: RecvStream,
    to: SendStream<Bytes>,
    /// A chunk read and waiting for room in `to`, and whether it ends the body.
    held: Option<(Bytes, bool)>,
    /// Data bytes read from `from`.
    bytes: u64,
    /// The reason `to` is reset with when `from` fails without one (a
    /// connection that dropped).
    default_reason: Reason,
    /// Since data last moved; `--body-timeout`.
    stall: Stall,
}

enum PipeEnd {
    /// The body, and its trailers if any, were passed on.
    Done,
    /// `from` failed: `to` was reset with its reason.
    FromFailed,
    /// `to` was reset by its peer, or its connection failed.
    ToFailed,
    /// Nothing moved for `--body-timeout`: both streams were reset.
    Stalled,
    /// The client failed the request body while the response streamed.
    ClientFailed,
}

impl Pipe {
    fn new(
        from: RecvStream,
        to: SendStream<Bytes>,
        default_reason: Reason,
        stall: Duration,
    ) -> Self {
        Pipe {
            from,
            to,
            held: None,
            bytes: 0,
            default_reason,
            stall: Stall::new(stall),
        }
    }

    /// Streams until the body ends, fails, or stalls.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        on_trailers: &mut dyn FnMut(&HeaderMap),
    ) -> Poll<PipeEnd> {
        if let Poll::Ready(end) = self.poll_moving(cx, on_trailers) {
            return Poll::Ready(end);
        }
        ready!(self.stall.poll_expired(cx));
        debug!("a body stalled; resetting its stream");
        self.to.send_reset(Reason::CANCEL);
        Poll::Ready(PipeEnd::Stalled)
    }

    fn poll_moving(
        &mut self,
        cx: &mut Context<'_>,
        on_trailers: &mut dyn FnMut(&HeaderMap),
    ) -> Poll<PipeEnd> {
        loop {
            // Registers for the peer's RST_STREAM while the body waits.
            if let Poll::Ready(reset) = self.to.poll_reset(cx) {
                debug!(?reset, "the stream was reset by the receiving side");
                return Poll::Ready(PipeEnd::ToFailed);
            }
            if let Some((chunk, end_of_stream)) = self.held.take() {
                while self.to.capacity() == 0 {
                    match self.to.poll_capacity(cx) {
                        Poll::Pending => {
                            self.held = Some((chunk, end_of_stream));
                            return Poll::Pending;
                        }
                        Poll::Ready(Some(Ok(0))) => {}
                        Poll::Ready(Some(Ok(_))) => break,
                        Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(PipeEnd::ToFailed),
                    }
                }
                if self.to.send_data(chunk, end_of_stream).is_err() {
                    return Poll::Ready(PipeEnd::ToFailed);
                }
                self.stall.progress();
                if end_of_stream {
                    return Poll::Ready(PipeEnd::Done);
                }
                continue;
            }
            match ready!(self.from.poll_data(cx)) {
                Some(Ok(chunk)) => {
                    self.stall.progress();
                    let len = chunk.len();
                    let _ = self.from.flow_control().release_capacity(len);
                    self.bytes += len as u64;
                    let end_of_stream = self.from.is_end_stream();
                    if len == 0 {
                        // Needs no room: an empty DATA frame, often the end.
                        if self.to.send_data(chunk, end_of_stream).is_err() {
                            return Poll::Ready(PipeEnd::ToFailed);
                        }
                        if end_of_stream {
                            return Poll::Ready(PipeEnd::Done);
                        }
                        continue;
                    }
                    // A claim of one byte: h2 raises it to the chunk's length
                    // when the chunk is sent, and a larger claim made while
                    // waiting could hold the connection's window from other
                    // streams (hyper#4003).
                    self.to.reserve_capacity(1);
                    self.held = Some((chunk, end_of_stream));
                }
                Some(Err(err)) => return Poll::Ready(self.pass_on_failure(&err)),
                None => {
                    return Poll::Ready(match ready!(self.from.poll_trailers(cx)) {
                        Ok(Some(trailers)) => {
                            on_trailers(&trailers);
                            self.to.reserve_capacity(0);
                            match self.to.send_trailers(trailers) {
                                Ok(()) => PipeEnd::Done,
                                Err(_) => PipeEnd::ToFailed,
                            }
                        }
                        Ok(None) => match self.to.send_data(Bytes::new(), true) {
                            Ok(()) => PipeEnd::Done,
                            Err(_) => PipeEnd::ToFailed,
                        },
                        Err(err) => self.pass_on_failure(&err),
                    });
                }
            }
        }
    }

    /// Passes a failure of `from` on to `to`, with its reason.
    fn pass_on_failure(&mut self, err: &h2::Error) -> PipeEnd {
        debug!(error = %err, "the stream failed on the sending side");
        self.to
            .send_reset(err.reason().unwrap_or(self.default_reason));
        PipeEnd::FromFailed
    }
}
