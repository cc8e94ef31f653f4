//! The HTTP/1.1 relay: how nearly every HTTP/1.1 connection with a fixed
//! destination (every redirected one) is forwarded. Requests and responses
//! go through as the bytes they arrived as, on one upstream connection per
//! client connection, in one task; [`parse`] reads each head for its record
//! and for where its body ends, and each body streams by that framing.
//!
//! A head's hop-by-hop fields (`Connection` and what it names,
//! `Keep-Alive`, `Proxy-Connection`) are taken out by writing the head anew,
//! the rest of it as it came. hyper's forwarder ([`super::http`]) serves
//! whatever else the relay does not forward as it is. From the first head
//! that is malformed, or that a proxy has to act on (`TE`, an upgrade,
//! `Expect`, HTTP/1.0, unusual framing), or whose upstream could not be
//! reached, the connection is handed to hyper at that message boundary,
//! with the bytes read so far. So those requests get what they got before
//! (400, 431, 502 from hyper), and the relay only forwards heads that mean
//! the same to hyper, to the relay and to the upstream. What it answers
//! itself (a 502 when the upstream fails before answering), what it
//! records, and when it sends a request again come from
//! [`super::exchange`], so they read as hyper's.
//!
//! Why not hyper for everything: a request through hyper costs a parse into
//! a header map and a copy of its case, a channel hop to a second task for
//! the upstream connection, and a parse and serialisation on each side.
//! Forwarding the bytes keeps header case and order for free and does a
//! quarter of the work (see docs/benchmarks.md).

pub mod parse;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use http::Method;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tracing::debug;

use super::body::InFlight;
use super::conn::{ConnCtx, Route};
use super::exchange::{
    self, BodyFault, Failure, Flow, HEADER_READ_TIMEOUT, Requested, body_error, shared_authority,
};
use super::http::{self as forwarder, HttpVersion, PendingConnect};
use super::io::{BoxIo, Prefixed};
use super::upstream::{ConnectError, Connected, Dest};
use crate::telemetry::{ErrorKind, HttpProtocol};
use parse::{BodyProgress, Framing, Request, RequestHead};

/// The longest head the relay reads; a longer one goes to hyper, which
/// allows more before answering 431.
const MAX_HEAD: usize = 64 * 1024;

/// Room made in a buffer before each read, and so the most read at once.
const READ_ROOM: usize = 8 * 1024;

/// An upstream connection idle this long is checked for having been closed
/// by its server before a request goes out on it. Sooner, a server that
/// closes without saying so is raced, as by any proxy; a check costs a
/// system call, so connections in steady use skip it.
const CHECK_IDLE_AFTER: Duration = Duration::from_millis(100);

/// Serves an HTTP/1.1 connection whose first bytes, `sniffed`, were read
/// during detection.
pub async fn serve(
    client: BoxIo,
    sniffed: BytesMut,
    ctx: Arc<ConnCtx>,
    dest: Dest,
    pending: Option<PendingConnect>,
) {
    let mut cbuf = sniffed;
    cbuf.reserve(READ_ROOM);
    let mut relay = Relay {
        ctx,
        dest,
        client,
        cbuf,
        ubuf: BytesMut::new(),
        upstream: pending.map_or(Upstream::None, Upstream::Pending),
        last_authority: None,
        head_timer: Box::pin(tokio::time::sleep(HEADER_READ_TIMEOUT)),
    };
    if relay.run().await == Next::Handoff {
        relay.handoff().await;
    }
}

struct Relay {
    ctx: Arc<ConnCtx>,
    dest: Dest,
    client: BoxIo,
    /// Bytes from the client not forwarded yet.
    cbuf: BytesMut,
    /// Bytes from the upstream not forwarded yet.
    ubuf: BytesMut,
    upstream: Upstream,
    /// The authority of the last request, shared with the next one that
    /// names the same.
    last_authority: Option<Arc<str>>,
    /// Ends the wait for a request head; armed once per connection and
    /// moved on only when it fires early (see [`Relay::read_head`]), not
    /// once per request.
    head_timer: Pin<Box<Sleep>>,
}

enum Upstream {
    /// Not connected (yet, or any more).
    None,
    /// The connection started at accept.
    Pending(PendingConnect),
    Failed(ConnectError),
    Open(Conn),
}

struct Conn {
    stream: TcpStream,
    server: SocketAddr,
    /// Whether it answered a request already (so its server may have closed
    /// it since).
    served: bool,
    /// tokio's clock, so that tests can let it idle on a paused clock.
    last_used: tokio::time::Instant,
}

impl Conn {
    /// Whether the server has not closed the connection (nor sent anything
    /// unasked), without waiting.
    fn still_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Next {
    Close,
    Handoff,
}

/// How one exchange left the connection.
enum Outcome {
    KeepAlive,
    Close,
    Handoff,
}

/// How a response went through.
struct Answered {
    /// The upstream connection can carry the next request.
    reusable: bool,
    /// The client's connection can carry the next request (not after a body
    /// that only the end of the connection delimits).
    keep_client: bool,
}

/// Why an exchange failed, and so whether the client can still be
/// answered.
enum Failed {
    /// The upstream closed the connection without sending a byte: a
    /// request kept for it is sent again (else as `BeforeHead`).
    NoAnswer,
    /// Before a final response head reached the client, which can still be
    /// answered by the proxy.
    BeforeHead(Failure),
    /// After the head: the client's connection ends with the response cut.
    MidBody(ErrorKind),
}

impl Relay {
    async fn run(&mut self) -> Next {
        loop {
            let head = match self.read_head().await {
                Some(Request::Plain(head)) => head,
                Some(_) => return Next::Handoff,
                None => return Next::Close,
            };
            match self.exchange(head).await {
                Outcome::KeepAlive if !self.ctx.shared.shutdown.is_cancelled() => {}
                Outcome::KeepAlive | Outcome::Close => return Next::Close,
                Outcome::Handoff => return Next::Handoff,
            }
        }
    }

    /// The next request head (or `Unusual`: the connection goes to hyper).
    /// `None` when the client closed, took longer than the header timeout,
    /// or the proxy is shutting down while the connection is idle.
    async fn read_head(&mut self) -> Option<Request> {
        let waiting_since = tokio::time::Instant::now();
        loop {
            if !self.cbuf.is_empty() {
                match parse::request(&self.cbuf, &self.ctx.shared.capture_headers) {
                    Request::Partial if self.cbuf.len() < MAX_HEAD => {}
                    Request::Partial => return Some(Request::Unusual),
                    parsed => return Some(parsed),
                }
            }
            make_room(&mut self.cbuf);
            let shutdown = &self.ctx.shared.shutdown;
            tokio::select! {
                biased;
                read = self.client.read_buf(&mut self.cbuf) => match read {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                },
                () = shutdown.cancelled(), if self.cbuf.is_empty() => return None,
                () = self.head_timer.as_mut() => {
                    let due = waiting_since + HEADER_READ_TIMEOUT;
                    if tokio::time::Instant::now() >= due {
                        debug!("no request head within the header timeout");
                        return None;
                    }
                    self.head_timer.as_mut().reset(due);
                }
            }
        }
    }

    /// Forwards one request and its response.
    async fn exchange(&mut self, head: RequestHead) -> Outcome {
        let started = Instant::now();
        let RequestHead {
            len,
            method,
            path,
            host,
            body: framing,
            captured,
            rewritten,
            close,
        } = head;
        // The body bytes read with the head: a malformed start goes to hyper
        // before anything was sent.
        let mut body = BodyProgress::new(framing);
        let Ok(first) = body.advance(&self.cbuf[len..]) else {
            return Outcome::Handoff;
        };
        let Some(mut conn) = self.connect().await else {
            return Outcome::Handoff;
        };

        // Never `user:password@`, whatever the client put in `Host`.
        let authority = match host.map(|range| std::str::from_utf8(&self.cbuf[range])) {
            Some(Ok(host)) => shared_authority(&mut self.last_authority, host),
            _ => self.dest.to_string().into(),
        };
        let head_request = method == Method::HEAD;
        // A server may close a connection that idled just as a request goes
        // out on it: keep what is needed to send it again.
        let replayable = exchange::may_replay(
            &method,
            framing == Framing::Empty,
            conn.served,
            || conn.last_used.elapsed(),
            self.ctx.shared.replay_after_idle,
        );
        let requested = Requested {
            protocol: HttpProtocol::Http1,
            authority,
            method,
            path: Some(path),
            headers: captured,
        };
        let mut inflight = exchange::begin(&self.ctx, requested, Some(conn.server), started);

        let mut replay = replayable.then(|| {
            rewritten
                .clone()
                .unwrap_or_else(|| self.cbuf[..len].to_vec())
        });

        let sent = len + first.consumed;
        let mut req_bytes = first.data;
        let wrote = match rewritten {
            Some(mut head) => {
                head.extend_from_slice(&self.cbuf[len..sent]);
                write(&mut conn.stream, &head).await
            }
            None => write(&mut conn.stream, &self.cbuf[..sent]).await,
        };
        self.cbuf.advance(sent);

        let (answer, body_sent) = if body.is_done() {
            let mut answer = match wrote {
                Ok(()) => self.answer(&mut conn, head_request, &mut inflight).await,
                Err(_) => Err(Failed::NoAnswer),
            };
            // Sent again once, on a new connection, when the old one closed
            // without answering. Boxed: rare, and its room would be in
            // every exchange's future.
            if let (Err(Failed::NoAnswer), Some(head)) = (&answer, replay.take()) {
                answer = match Box::pin(self.send_again(&head, head_request, &mut inflight)).await {
                    Ok((new, again)) => {
                        conn = new;
                        again
                    }
                    Err(failure) => Err(failure),
                };
            }
            (answer, true)
        } else if wrote.is_err() {
            // The client's body cannot go on; its rest is still coming.
            (Err(Failed::NoAnswer), false)
        } else {
            Box::pin(self.stream_both_ways(
                &mut conn,
                &mut body,
                &mut req_bytes,
                head_request,
                &mut inflight,
            ))
            .await
        };
        if let Some(record) = inflight.record() {
            record.req_bytes = req_bytes;
        }

        match answer {
            Ok(answered) => {
                inflight.finish(None);
                if answered.reusable && body_sent && self.ubuf.is_empty() {
                    conn.served = true;
                    conn.last_used = tokio::time::Instant::now();
                    self.upstream = Upstream::Open(conn);
                } else {
                    self.ubuf.clear();
                }
                if answered.keep_client && body_sent && !close {
                    Outcome::KeepAlive
                } else {
                    Outcome::Close
                }
            }
            Err(failure) => {
                self.ubuf.clear();
                match self.fail(inflight, failure, body_sent, head_request).await {
                    Outcome::KeepAlive if close => Outcome::Close,
                    outcome => outcome,
                }
            }
        }
    }

    /// Sends a bodiless request head again on a new connection and reads
    /// the answer; `Err` when no new connection could be made.
    async fn send_again(
        &mut self,
        head: &[u8],
        head_request: bool,
        inflight: &mut InFlight,
    ) -> Result<(Conn, Result<Answered, Failed>), Failed> {
        debug!("an idle upstream connection closed on a request; sending it again");
        self.upstream = Upstream::None;
        self.ubuf.clear();
        let Some(mut conn) = self.connect().await else {
            return Err(
                match std::mem::replace(&mut self.upstream, Upstream::None) {
                    Upstream::Failed(err) => {
                        if let Some(record) = inflight.record() {
                            record.server = err.addr;
                        }
                        Failed::BeforeHead(Failure::connect(&err))
                    }
                    _ => Failed::NoAnswer,
                },
            );
        };
        if let Some(record) = inflight.record() {
            record.server = Some(conn.server);
        }
        let answer = match write(&mut conn.stream, head).await {
            Ok(()) => self.answer(&mut conn, head_request, inflight).await,
            Err(_) => Err(Failed::NoAnswer),
        };
        Ok((conn, answer))
    }

    /// Forwards the rest of a request body while the response comes back
    /// (a server may answer before it has read the whole body). Returns the
    /// answer, and whether the whole body went upstream.
    async fn stream_both_ways(
        &mut self,
        conn: &mut Conn,
        body: &mut BodyProgress,
        req_bytes: &mut u64,
        head_request: bool,
        inflight: &mut InFlight,
    ) -> (Result<Answered, Failed>, bool) {
        let (mut client_read, mut client_write) = tokio::io::split(&mut self.client);
        let (mut up_read, mut up_write) = conn.stream.split();
        let stall = self.ctx.shared.body_timeout;
        let sending = relay_message(
            &mut client_read,
            &mut self.cbuf,
            &mut up_write,
            HeadOut {
                prefix: 0,
                lead: None,
            },
            body,
            req_bytes,
            stall,
        );
        let answering = answer(
            &mut up_read,
            &mut self.ubuf,
            &mut client_write,
            head_request,
            inflight,
            stall,
        );
        tokio::pin!(sending, answering);
        // Until the answer is complete: a server that has answered needs no
        // more of the body (a client may never send the rest of a body
        // refused early), so an unfinished body then ends the connection.
        let mut sent = None;
        let mut answer = None;
        while answer.is_none() {
            tokio::select! {
                result = &mut sending, if sent.is_none() => {
                    let client_failed = matches!(result, Err(fault) if fault != BodyFault::SinkFailed);
                    sent = Some(result);
                    if client_failed {
                        break;
                    }
                }
                result = &mut answering => answer = Some(result),
            }
        }
        match (sent, answer) {
            // The client failed its body; an upstream that stopped taking it
            // says why in its answer.
            (Some(Err(fault)), _) if fault != BodyFault::SinkFailed => {
                let error = body_error(Flow::Request, fault);
                (Err(Failed::MidBody(error)), false)
            }
            (sent, Some(answer)) => (answer, matches!(sent, Some(Ok(())))),
            // The loop ends with an answer, or with a failure handled above.
            (sent, None) => (Err(Failed::NoAnswer), matches!(sent, Some(Ok(())))),
        }
    }

    /// Reads the response on `conn` and forwards it to the client.
    async fn answer(
        &mut self,
        conn: &mut Conn,
        head_request: bool,
        inflight: &mut InFlight,
    ) -> Result<Answered, Failed> {
        let mut client = Client {
            io: &mut self.client,
            pipelined: &mut self.cbuf,
        };
        answer(
            &mut conn.stream,
            &mut self.ubuf,
            &mut client,
            head_request,
            inflight,
            self.ctx.shared.body_timeout,
        )
        .await
    }

    /// Records a failed exchange and answers it where the client can still
    /// be answered.
    async fn fail(
        &mut self,
        mut inflight: InFlight,
        failed: Failed,
        body_sent: bool,
        head_request: bool,
    ) -> Outcome {
        let failure = match failed {
            Failed::NoAnswer => Failure::no_answer(None),
            Failed::BeforeHead(failure) => failure,
            Failed::MidBody(kind) => {
                inflight.finish(Some(kind));
                return Outcome::Close;
            }
        };
        exchange::fail(&mut inflight, &failure);
        let answer = exchange::local_answer_http1(&failure, head_request, !body_sent);
        let replied = write(&mut self.client, &answer).await;
        if replied.is_ok() && body_sent {
            Outcome::KeepAlive
        } else {
            Outcome::Close
        }
    }

    /// An open upstream connection: the one kept from the last request if
    /// its server has not closed it, else a new one. `None` when connecting
    /// failed (the error is kept in `self.upstream` for hyper to answer).
    async fn connect(&mut self) -> Option<Conn> {
        loop {
            self.upstream = match std::mem::replace(&mut self.upstream, Upstream::None) {
                Upstream::Open(conn)
                    if !conn.served
                        || conn.last_used.elapsed() < CHECK_IDLE_AFTER
                        || conn.still_open() =>
                {
                    return Some(conn);
                }
                Upstream::Open(_) => {
                    debug!("the upstream closed an idle connection; reconnecting");
                    Upstream::None
                }
                Upstream::Pending(pending) => connected(pending.await),
                Upstream::None => {
                    connected(Box::pin(self.ctx.shared.dial(self.dest.clone())).await)
                }
                failed @ Upstream::Failed(_) => {
                    self.upstream = failed;
                    return None;
                }
            };
        }
    }

    /// Hands the connection to hyper's forwarder, with the client's bytes
    /// not forwarded yet and the upstream connection, at a message boundary.
    async fn handoff(self) {
        let pending: Option<PendingConnect> = match self.upstream {
            Upstream::None => None,
            Upstream::Pending(pending) => Some(pending),
            Upstream::Failed(err) => Some(Box::pin(std::future::ready(Err(err)))),
            // hyper takes it as new, and would not notice that its server
            // closed it while it idled.
            Upstream::Open(conn) if self.ubuf.is_empty() && conn.still_open() => {
                let connected: Connected = Ok((conn.stream, conn.server));
                Some(Box::pin(std::future::ready(connected)))
            }
            Upstream::Open(_) => None,
        };
        let client: BoxIo = Box::new(Prefixed::new(self.cbuf.freeze(), self.client));
        let route = Route::Fixed(self.dest);
        forwarder::serve(client, HttpVersion::Http1, self.ctx, route, pending).await;
    }
}

fn connected(connected: Connected) -> Upstream {
    match connected {
        Ok((stream, server)) => Upstream::Open(Conn {
            stream,
            server,
            served: false,
            last_used: tokio::time::Instant::now(),
        }),
        Err(err) => Upstream::Failed(err),
    }
}

/// Reads a response (after any informational ones) from `upstream` and
/// forwards it to `client`, recording its status, time to first byte and
/// body bytes.
async fn answer<R, W>(
    upstream: &mut R,
    ubuf: &mut BytesMut,
    client: &mut W,
    head_request: bool,
    inflight: &mut InFlight,
    stall: Duration,
) -> Result<Answered, Failed>
where
    R: AsyncRead + Unpin,
    W: Sink,
{
    let mut answered_anything = false;
    loop {
        let head = loop {
            if !ubuf.is_empty() {
                answered_anything = true;
                match parse::response(ubuf, head_request) {
                    Ok(Some(head)) => break head,
                    Ok(None) if ubuf.len() < MAX_HEAD => {}
                    Ok(None) => {
                        debug!("upstream response head too large");
                        return Err(Failed::BeforeHead(Failure::malformed_answer(None)));
                    }
                    Err(err) => {
                        debug!(error = %err, "malformed upstream response head");
                        return Err(Failed::BeforeHead(Failure::malformed_answer(None)));
                    }
                }
            }
            match read_unless_departed(upstream, ubuf, client).await {
                Read::Data => {}
                Read::Departed => {
                    let error = body_error(Flow::Response, BodyFault::SinkFailed);
                    return Err(Failed::MidBody(error));
                }
                // Part of an answer: it cannot be sent again.
                Read::End if answered_anything => {
                    return Err(Failed::BeforeHead(Failure::no_answer(None)));
                }
                Read::End => return Err(Failed::NoAnswer),
            }
        };
        let informational = head.status < 200;
        if !informational {
            exchange::answered(inflight, head.status, None);
        }
        let mut body = BodyProgress::new(head.body);
        let (prefix, lead) = match head.rewritten {
            Some(rewritten) => {
                ubuf.advance(head.len);
                (0, Some(rewritten))
            }
            None => (head.len, None),
        };
        let mut resp_bytes = 0;
        let relayed = relay_message(
            upstream,
            ubuf,
            client,
            HeadOut { prefix, lead },
            &mut body,
            &mut resp_bytes,
            stall,
        )
        .await;
        if let Some(record) = inflight.record() {
            record.resp_bytes += resp_bytes;
        }
        match relayed {
            Ok(()) if informational => {}
            Ok(()) => {
                return Ok(Answered {
                    reusable: head.reusable,
                    keep_client: head.body != Framing::ToClose,
                });
            }
            Err(fault) => return Err(Failed::MidBody(body_error(Flow::Response, fault))),
        }
    }
}

/// How a message's head goes out: the first `prefix` bytes of the buffer
/// as they came, or `lead` written instead of them.
struct HeadOut {
    prefix: usize,
    lead: Option<Vec<u8>>,
}

/// Forwards one message from `src` to `dst` as it came: its head (see
/// [`HeadOut`]; nothing when the head went already) and then
/// its body, up to the end that `body` finds. Counts the body's data bytes
/// into `data` as they go, so that a broken body is counted too. Bytes
/// after the end (a pipelined request) stay in `buf`. A read or a write
/// that makes no progress for `stall` (`--body-timeout`; zero: never) ends
/// it.
async fn relay_message<R, W>(
    src: &mut R,
    buf: &mut BytesMut,
    dst: &mut W,
    head: HeadOut,
    body: &mut BodyProgress,
    data: &mut u64,
    stall: Duration,
) -> Result<(), BodyFault>
where
    R: AsyncRead + Unpin,
    W: Sink,
{
    let HeadOut {
        mut prefix,
        mut lead,
    } = head;
    loop {
        let advanced = body
            .advance(&buf[prefix..])
            .map_err(|_| BodyFault::Malformed)?;
        let n = prefix + advanced.consumed;
        *data += advanced.data;
        prefix = 0;
        let written = match lead.take() {
            Some(mut lead) => {
                lead.extend_from_slice(&buf[..n]);
                within(stall, write(dst, &lead)).await
            }
            None if n > 0 => within(stall, write(dst, &buf[..n])).await,
            None => Some(Ok(())),
        };
        written
            .ok_or(BodyFault::Stalled)?
            .map_err(|_| BodyFault::SinkFailed)?;
        buf.advance(n);
        if advanced.done {
            return Ok(());
        }
        match within(stall, read_unless_departed(src, buf, dst))
            .await
            .ok_or(BodyFault::Stalled)?
        {
            Read::Data => {}
            Read::End if body.ends_at_close() => return Ok(()),
            Read::End => return Err(BodyFault::SourceFailed),
            Read::Departed => return Err(BodyFault::SinkFailed),
        }
    }
}

/// Where a message goes: a stream to write to, which may also tell when
/// its reader has gone.
trait Sink: AsyncWrite + Unpin {
    /// Resolves when the reader has gone; pending while it is there.
    async fn departed(&mut self) {
        std::future::pending().await
    }
}

impl Sink for tokio::net::tcp::WriteHalf<'_> {}
impl<T: AsyncRead + AsyncWrite> Sink for tokio::io::WriteHalf<T> {}

/// The client's connection as a response goes to it, watched meanwhile: a
/// client that leaves cancels its request upstream at once, as with
/// hyper. What it sends meanwhile (a pipelined request) is kept.
struct Client<'a> {
    io: &'a mut BoxIo,
    pipelined: &'a mut BytesMut,
}

impl Sink for Client<'_> {
    async fn departed(&mut self) {
        while self.pipelined.len() < MAX_HEAD {
            make_room(self.pipelined);
            match self.io.read_buf(self.pipelined).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        // Enough is waiting; the client is read again after this response.
        std::future::pending().await
    }
}

impl AsyncWrite for Client<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_shutdown(cx)
    }
}

enum Read {
    /// More bytes are in the buffer.
    Data,
    /// The source closed (or failed).
    End,
    /// The destination's reader left.
    Departed,
}

/// Reads more of a message from `src`, unless `dst`'s reader leaves first.
async fn read_unless_departed<R, W>(src: &mut R, buf: &mut BytesMut, dst: &mut W) -> Read
where
    R: AsyncRead + Unpin,
    W: Sink,
{
    make_room(buf);
    tokio::select! {
        biased;
        read = src.read_buf(buf) => match read {
            Ok(0) | Err(_) => Read::End,
            Ok(_) => Read::Data,
        },
        () = dst.departed() => Read::Departed,
    }
}

/// `step`, unless it takes longer than `stall` (zero: no limit).
async fn within<F: Future>(stall: Duration, step: F) -> Option<F::Output> {
    if stall.is_zero() {
        return Some(step.await);
    }
    tokio::time::timeout(stall, step).await.ok()
}

async fn write<W: AsyncWrite + Unpin>(dst: &mut W, bytes: &[u8]) -> io::Result<()> {
    dst.write_all(bytes).await?;
    dst.flush().await
}

/// Makes room for a read. An emptied buffer starts again at the front of
/// its allocation, so a connection reads into the same memory throughout.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_ROOM / 2 {
        buf.reserve(READ_ROOM);
    }
}
