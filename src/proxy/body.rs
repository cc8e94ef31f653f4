//! Bodies that stream through the proxy frame by frame while counting bytes
//! and noticing how the exchange ended, and the in-flight request whose
//! record is emitted exactly once, however the exchange ends. What a
//! broken body is recorded as is decided in [`super::exchange`].

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::exchange::{BodyFault, Flow, body_error, read_grpc_status};
use super::stall::Stall;
use crate::telemetry::{ErrorKind, Record, Recorder, RequestRecord};

/// What a body's error becomes: hyper's, or [`BodyStalled`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the request body did, shared between the request body (owned by the
/// upstream connection) and the in-flight record (owned by the response).
#[derive(Debug, Default)]
pub struct RequestProgress {
    bytes: AtomicU64,
    /// The client's side of the body broke (reset stream, closed connection).
    aborted: AtomicBool,
    /// The client sent something that is not a body (a malformed chunk).
    malformed: AtomicBool,
    /// The client sent nothing for `--body-timeout`.
    stalled: AtomicBool,
}

/// A request between its head arriving and its record being emitted.
///
/// The record is emitted by [`InFlight::finish`], or on drop: a request
/// dropped unfinished was abandoned by the client (hyper drops the service
/// future or the response body when the client goes away), or cut off by
/// the sidecar's shutdown.
pub struct InFlight {
    record: Option<RequestRecord>,
    started: Instant,
    /// Shared with the request body; `None` while no body streams (most
    /// requests have none, and this saves an allocation for them).
    progress: Option<Arc<RequestProgress>>,
    recorder: Recorder,
}

impl InFlight {
    pub fn new(record: RequestRecord, started: Instant, recorder: Recorder) -> Self {
        InFlight {
            record: Some(record),
            started,
            progress: None,
            recorder,
        }
    }

    /// The request body to send upstream, counting its bytes, noticing
    /// when the client aborts or breaks it, and ending it when nothing
    /// came for `stall` (`--body-timeout`).
    pub fn request_body(&mut self, body: Incoming, stall: Duration) -> RequestBody {
        let progress =
            (!body.is_end_stream()).then(|| self.progress.get_or_insert_with(Arc::default).clone());
        RequestBody {
            inner: Some(body),
            progress,
            stall: Stall::new(stall),
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// The record being filled in; `None` once emitted.
    pub fn record(&mut self) -> Option<&mut RequestRecord> {
        self.record.as_mut()
    }

    /// Emits the record (once), closing it with `error` unless an earlier
    /// error was already noted.
    pub fn finish(&mut self, error: Option<ErrorKind>) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.duration = self.started.elapsed();
        // Without a shared counter, the record's own count stands (the
        // HTTP/1 relay counts as it forwards).
        let (req_bytes, client_error) =
            self.progress
                .as_ref()
                .map_or((record.req_bytes, None), |p| {
                    let fault = if p.malformed.load(Ordering::Relaxed) {
                        Some(BodyFault::Malformed)
                    } else if p.stalled.load(Ordering::Relaxed) {
                        Some(BodyFault::Stalled)
                    } else {
                        p.aborted
                            .load(Ordering::Relaxed)
                            .then_some(BodyFault::SourceFailed)
                    };
                    let error = fault.map(|fault| body_error(Flow::Request, fault));
                    (p.bytes.load(Ordering::Relaxed), error)
                });
        record.req_bytes = req_bytes;
        // What broke the client's body explains what followed (an upstream
        // that gave up on it, a client stream cut).
        record.error = record.error.or(client_error).or(error);
        self.recorder.record(Record::Request(record));
    }

    /// Forgets the request without a record (a successful CONNECT, whose
    /// tunnel is recorded as a connection of its own).
    pub fn discard(&mut self) {
        self.record = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Dropped unfinished: the client went away, unless the drain
        // timeout is cutting connections off.
        let error = if self.recorder.is_cut_off() {
            ErrorKind::Shutdown
        } else {
            ErrorKind::DownstreamReset
        };
        self.finish(Some(error));
    }
}

/// The client's request body on its way upstream.
pub struct RequestBody {
    /// `None` for a request sent again without its (empty) body.
    inner: Option<Incoming>,
    /// `None` for a body that was empty from the start.
    progress: Option<Arc<RequestProgress>>,
    stall: Stall,
}

impl RequestBody {
    /// No body, for a bodiless request sent a second time.
    pub fn empty() -> Self {
        RequestBody {
            inner: None,
            progress: None,
            stall: Stall::new(Duration::ZERO),
        }
    }
}

/// Whether a body's error is the peer's malformed body (a bad chunk size,
/// say) rather than its stream breaking. hyper reports a body it cannot
/// decode as an `InvalidInput` or `InvalidData` I/O error inside its own.
fn is_malformed(err: &hyper::Error) -> bool {
    if err.is_parse() {
        return true;
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
            );
        }
        source = cause.source();
    }
    false
}

/// A body that made no progress for `--body-timeout`.
#[derive(Debug, thiserror::Error)]
#[error("no body data for the body timeout")]
pub struct BodyStalled;

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                ready!(this.stall.poll_expired(cx));
                if let Some(progress) = &this.progress {
                    progress.stalled.store(true, Ordering::Relaxed);
                }
                return Poll::Ready(Some(Err(BodyStalled.into())));
            }
        };
        this.stall.progress();
        if let Some(progress) = &this.progress {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        progress
                            .bytes
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                }
                Some(Err(err)) if is_malformed(err) => {
                    progress.malformed.store(true, Ordering::Relaxed);
                }
                Some(Err(_)) => progress.aborted.store(true, Ordering::Relaxed),
                None => {}
            }
        }
        Poll::Ready(frame.map(|frame| frame.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// The body of a response sent to the client: the upstream's, streamed and
/// recorded, or a short one made up by the proxy.
// Nearly every response is `Upstream`; boxing it to shrink the rare `Local`
// would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum ResponseBody {
    Upstream {
        inner: Incoming,
        inflight: InFlight,
        stall: Stall,
    },
    Local(Option<Bytes>),
}

impl ResponseBody {
    /// Streams `inner` to the client; the request's record is emitted when it
    /// ends, fails, stalls for `stall` (`--body-timeout`), or is dropped by a
    /// departing client.
    pub fn upstream(inner: Incoming, mut inflight: InFlight, stall: Duration) -> Self {
        if inner.is_end_stream() {
            // hyper never polls a body that is empty from the start (HEAD,
            // 204, 304, trailers-only gRPC): the exchange is over already.
            inflight.finish(None);
        }
        ResponseBody::Upstream {
            inner,
            inflight,
            stall: Stall::new(stall),
        }
    }

    pub fn local(body: impl Into<Bytes>) -> Self {
        let body = body.into();
        ResponseBody::Local((!body.is_empty()).then_some(body))
    }

    pub fn empty() -> Self {
        ResponseBody::Local(None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseBody::Local(body) => Poll::Ready(body.take().map(|data| Ok(Frame::data(data)))),
            ResponseBody::Upstream {
                inner,
                inflight,
                stall,
            } => {
                let frame = match Pin::new(&mut *inner).poll_frame(cx) {
                    Poll::Ready(frame) => frame,
                    Poll::Pending => {
                        ready!(stall.poll_expired(cx));
                        inflight.finish(Some(body_error(Flow::Response, BodyFault::Stalled)));
                        return Poll::Ready(Some(Err(BodyStalled.into())));
                    }
                };
                stall.progress();
                match &frame {
                    Some(Ok(frame)) => {
                        if let Some(record) = inflight.record() {
                            if let Some(data) = frame.data_ref() {
                                record.resp_bytes += data.len() as u64;
                            } else if let Some(trailers) = frame.trailers_ref() {
                                read_grpc_status(trailers, record);
                            }
                        }
                        // Trailers end a body, though an HTTP/1 body does
                        // not say so: hyper writes them and stops polling.
                        if frame.is_trailers() || inner.is_end_stream() {
                            inflight.finish(None);
                        }
                    }
                    Some(Err(err)) => {
                        let fault = if is_malformed(err) {
                            BodyFault::Malformed
                        } else {
                            BodyFault::SourceFailed
                        };
                        inflight.finish(Some(body_error(Flow::Response, fault)));
                    }
                    None => inflight.finish(None),
                }
                Poll::Ready(frame.map(|frame| frame.map_err(BoxError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Local(body) => body.is_none(),
            ResponseBody::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Local(body) => {
                SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseBody::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}
