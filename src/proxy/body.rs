//! Bodies that stream through the proxy frame by frame while counting bytes
//! and noticing how the exchange ended, and the in-flight request whose
//! record is emitted exactly once, however the exchange ends.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::telemetry::{ErrorKind, Record, Recorder, RequestRecord};

/// What the request body did, shared between the request body (owned by the
/// upstream connection) and the in-flight record (owned by the response).
#[derive(Debug, Default)]
pub struct RequestProgress {
    bytes: AtomicU64,
    /// The client's side of the body broke (reset stream, closed connection).
    aborted: AtomicBool,
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

    /// The request body to send upstream, counting its bytes and noticing
    /// when the client aborts it.
    pub fn request_body(&mut self, body: Incoming) -> RequestBody {
        let progress =
            (!body.is_end_stream()).then(|| self.progress.get_or_insert_with(Arc::default).clone());
        RequestBody {
            inner: Some(body),
            progress,
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
        let (req_bytes, client_aborted) =
            self.progress
                .as_ref()
                .map_or((record.req_bytes, false), |p| {
                    (
                        p.bytes.load(Ordering::Relaxed),
                        p.aborted.load(Ordering::Relaxed),
                    )
                });
        record.req_bytes = req_bytes;
        record.error = record
            .error
            .or(error)
            .or(client_aborted.then_some(ErrorKind::DownstreamReset));
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
}

impl RequestBody {
    /// No body, for a bodiless request sent a second time.
    pub fn empty() -> Self {
        RequestBody {
            inner: None,
            progress: None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(inner).poll_frame(cx));
        if let Some(progress) = &self.progress {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        progress
                            .bytes
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                }
                Some(Err(_)) => progress.aborted.store(true, Ordering::Relaxed),
                None => {}
            }
        }
        Poll::Ready(frame)
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
    Upstream { inner: Incoming, inflight: InFlight },
    Local(Option<Bytes>),
}

impl ResponseBody {
    /// Streams `inner` to the client; the request's record is emitted when it
    /// ends, fails, or is dropped by a departing client.
    pub fn upstream(inner: Incoming, mut inflight: InFlight) -> Self {
        if inner.is_end_stream() {
            // hyper never polls a body that is empty from the start (HEAD,
            // 204, 304, trailers-only gRPC): the exchange is over already.
            inflight.finish(None);
        }
        ResponseBody::Upstream { inner, inflight }
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
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResponseBody::Local(body) => Poll::Ready(body.take().map(|data| Ok(Frame::data(data)))),
            ResponseBody::Upstream { inner, inflight } => {
                let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
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
                    Some(Err(_)) => inflight.finish(Some(ErrorKind::UpstreamReset)),
                    None => inflight.finish(None),
                }
                Poll::Ready(frame)
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

/// Copies `grpc-status` and `grpc-message` from trailers (or from the headers
/// of a trailers-only response) into the record.
pub fn read_grpc_status(headers: &HeaderMap, record: &mut RequestRecord) {
    if let Some(status) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
    {
        record.grpc_status = Some(status);
    }
    if let Some(message) = headers.get("grpc-message") {
        let decoded = percent_encoding::percent_decode(message.as_bytes()).decode_utf8_lossy();
        record.grpc_message = Some(decoded.into_owned());
    }
}
