//! What every HTTP forwarding path shares, whatever frames its messages:
//! beginning a request's record from its head and noting its answer,
//! classifying failures into [`ErrorKind`]s, the responses the proxy makes
//! up itself (their status, and one body format), and when a request may be
//! sent twice.
//!
//! Three engines forward HTTP: the HTTP/1.1 byte relay ([`super::relay`]),
//! hyper's forwarder ([`super::http`]) and the HTTP/2 relay
//! ([`super::h2_relay`]). Each keeps only its framing: how it reads heads
//! and bodies, how it holds its upstream connections, and how it writes
//! what this module decides. So a change to a 502's body, to a record field
//! or to a retry rule is made here, once; tests/proxy_conformance.rs runs
//! the same cases through every path and checks that they still agree.
//!
//! The record itself is an [`InFlight`] (in [`super::body`], whose bodies
//! count into it), emitted exactly once however the exchange ends.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, Uri};
use tracing::debug;

use super::body::InFlight;
use super::conn::ConnCtx;
use super::upstream::ConnectError;
use crate::telemetry::authority::strip_userinfo;
use crate::telemetry::{ErrorKind, HttpProtocol, Record, RequestRecord};

/// How long a client may take to send a request head (and so how long a
/// connection may stay idle between requests).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What a request's head says, as its record keeps it.
pub struct Requested {
    pub protocol: HttpProtocol,
    pub authority: Arc<str>,
    pub method: Method,
    /// Path and query as sent; `None` for CONNECT.
    pub path: Option<String>,
    /// The `--capture-header` values, redacted.
    pub headers: Vec<(String, String)>,
}

impl Requested {
    /// What a head parsed into a header map (by hyper or h2) says.
    pub fn from_head(
        ctx: &ConnCtx,
        protocol: HttpProtocol,
        authority: Arc<str>,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Requested {
        Requested {
            protocol,
            authority,
            method: method.clone(),
            path: (method != Method::CONNECT)
                .then(|| uri.path_and_query().map_or("/", |p| p.as_str()).to_owned()),
            headers: ctx.shared.captured_headers(headers),
        }
    }
}

/// Begins the record of a request whose head arrived at `started`; `server`
/// when its upstream is known already.
pub fn begin(
    ctx: &ConnCtx,
    requested: Requested,
    server: Option<SocketAddr>,
    started: Instant,
) -> InFlight {
    let Requested {
        protocol,
        authority,
        method,
        path,
        headers,
    } = requested;
    let mut record = ctx.request_record(protocol, authority);
    record.method = Some(method);
    record.path = path;
    record.headers = headers;
    record.server = server;
    InFlight::new(record, started, ctx.shared.recorder.clone())
}

/// Notes the final response head: its status, the time to it, and for
/// gRPC (`grpc`: its headers) the status of a trailers-only answer.
pub fn answered(inflight: &mut InFlight, status: u16, grpc: Option<&HeaderMap>) {
    let ttfb = inflight.started().elapsed();
    if let Some(record) = inflight.record() {
        record.status = Some(status);
        record.ttfb = Some(ttfb);
        if let Some(headers) = grpc {
            read_grpc_status(headers, record);
        }
    }
}

/// Records a request too malformed to parse, which the proxy answered
/// `status` (400, or 431 for a head too large) before closing.
pub fn record_malformed(ctx: &ConnCtx, protocol: HttpProtocol, status: u16) {
    let record = RequestRecord {
        status: Some(status),
        error: Some(ErrorKind::Protocol),
        ..ctx.request_record(protocol, ctx.local.to_string().into())
    };
    ctx.shared.recorder.record(Record::Request(record));
}

/// Whether a request is gRPC (`content-type: application/grpc*`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
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

/// The authority a request names: its target's (HTTP/2's `:authority`, an
/// HTTP/1 absolute-form target or CONNECT, RFC 9112 §3.2.2), else `Host`.
pub fn named_authority<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
}

/// `name` as the last request's authority, `last`, when it is the same
/// (nearly always), else as a new one kept in `last`: a connection's
/// records share one string instead of a copy per request. Any
/// `user:password@` is left out: records never hold credentials.
pub fn shared_authority(last: &mut Option<Arc<str>>, name: &str) -> Arc<str> {
    let name = strip_userinfo(name);
    match last {
        Some(authority) if **authority == *name => authority.clone(),
        _ => last.insert(Arc::from(name)).clone(),
    }
}

/// Why an exchange failed before a response head reached the client, who
/// is then answered by the proxy (see [`local_answer`]).
#[derive(Debug)]
pub struct Failure {
    pub kind: ErrorKind,
    /// The upstream address connected to or tried; `None` when none was
    /// (a DNS failure), or when the engine knows it already.
    pub server: Option<SocketAddr>,
    /// What went wrong, as the answer's body says it.
    pub message: Cow<'static, str>,
    /// What the client is answered (gRPC: `UNAVAILABLE` whatever it is,
    /// see [`local_answer`]): `400` for a request that names nowhere to
    /// go, else `502`, whatever the kind (a target that turns out to be
    /// the proxy itself is a `502` with [`ErrorKind::NoDestination`]).
    pub status: StatusCode,
}

impl Failure {
    /// The upstream could not be reached (see [`super::upstream::connect`]
    /// for how its error is classified).
    pub fn connect(err: &ConnectError) -> Failure {
        Failure {
            kind: err.kind,
            server: err.addr,
            message: format!("upstream connect error: {err}").into(),
            status: StatusCode::BAD_GATEWAY,
        }
    }

    /// The upstream was reached but its protocol's handshake failed.
    pub fn handshake(server: SocketAddr, err: impl fmt::Display) -> Failure {
        Failure {
            kind: ErrorKind::Protocol,
            server: Some(server),
            message: format!("upstream handshake failed: {err}").into(),
            status: StatusCode::BAD_GATEWAY,
        }
    }

    /// The upstream closed its connection before a whole response head.
    pub fn no_answer(server: Option<SocketAddr>) -> Failure {
        Failure {
            kind: ErrorKind::UpstreamReset,
            server,
            message: "upstream closed the connection before answering".into(),
            status: StatusCode::BAD_GATEWAY,
        }
    }

    /// The upstream's response head could not be parsed (or was too large).
    pub fn malformed_answer(server: Option<SocketAddr>) -> Failure {
        Failure {
            kind: ErrorKind::Protocol,
            server,
            message: "upstream sent a malformed response head".into(),
            status: StatusCode::BAD_GATEWAY,
        }
    }

    /// The client's request body failed while it was being sent upstream.
    pub fn client_body(server: Option<SocketAddr>) -> Failure {
        Failure {
            kind: ErrorKind::DownstreamReset,
            server,
            message: "the request body failed".into(),
            status: StatusCode::BAD_GATEWAY,
        }
    }

    /// A request with nowhere to go: not redirected, or not a proxy request
    /// on a connection made to the proxy.
    pub fn no_destination(message: &'static str) -> Failure {
        Failure {
            kind: ErrorKind::NoDestination,
            server: None,
            message: message.into(),
            status: StatusCode::BAD_REQUEST,
        }
    }

    /// An HTTP/2 stream that failed upstream (a connection going away or
    /// gone, a stream refused) without a reset to pass on.
    pub fn h2(err: &h2::Error, server: Option<SocketAddr>) -> Failure {
        Failure {
            kind: ErrorKind::UpstreamReset,
            server,
            message: format!("upstream request failed: {err}").into(),
            status: StatusCode::BAD_GATEWAY,
        }
    }

    /// What a request sent by hyper's client came to; HTTP/2 errors read as
    /// from the HTTP/2 relay.
    pub fn hyper(err: &hyper::Error, server: SocketAddr) -> Failure {
        let server = Some(server);
        if err.is_user() {
            return Failure::client_body(server);
        }
        if err.is_parse() {
            return Failure::malformed_answer(server);
        }
        if closed_before_answering(err) {
            return Failure::no_answer(server);
        }
        match h2_error(err) {
            Some(h2) => Failure::h2(h2, server),
            None => Failure {
                kind: ErrorKind::UpstreamReset,
                server,
                message: format!("upstream request failed: {err}").into(),
                status: StatusCode::BAD_GATEWAY,
            },
        }
    }
}

/// Ends the record of a request that failed before its answer, with the
/// failure's kind (unless the client's body failed first, see
/// [`InFlight::finish`]) and the upstream it tried.
pub fn fail(inflight: &mut InFlight, failure: &Failure) {
    debug!(error = %failure.message, kind = %failure.kind, "request failed");
    if let (Some(server), Some(record)) = (failure.server, inflight.record()) {
        record.server = Some(server);
    }
    inflight.finish(Some(failure.kind));
}

/// The upstream connection ended before any answer: end of stream, or a
/// reset or broken pipe while the request was being written.
pub fn closed_before_answering(err: &hyper::Error) -> bool {
    if err.is_incomplete_message() {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            );
        }
        source = cause.source();
    }
    false
}

/// The HTTP/2 error inside a hyper error, if any.
pub fn h2_error(err: &hyper::Error) -> Option<&h2::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            return Some(h2);
        }
        source = cause.source();
    }
    None
}

/// Which way a body goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// From the client to the upstream.
    Request,
    /// From the upstream to the client.
    Response,
}

/// How a body stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFault {
    /// The side it came from closed, reset or failed.
    SourceFailed,
    /// The side it went to did.
    SinkFailed,
    /// It broke its framing (a bad chunk size, say).
    Malformed,
    /// Nothing moved for `--body-timeout`.
    Stalled,
}

/// What a body that stopped before its end is recorded as: a side that
/// failed is that side's reset, whichever way the body went.
pub fn body_error(flow: Flow, fault: BodyFault) -> ErrorKind {
    match (flow, fault) {
        (Flow::Request, BodyFault::SourceFailed) | (Flow::Response, BodyFault::SinkFailed) => {
            ErrorKind::DownstreamReset
        }
        (Flow::Request, BodyFault::SinkFailed) | (Flow::Response, BodyFault::SourceFailed) => {
            ErrorKind::UpstreamReset
        }
        (_, BodyFault::Malformed) => ErrorKind::Protocol,
        (_, BodyFault::Stalled) => ErrorKind::IdleTimeout,
    }
}

/// Whether a request is kept, before it is sent, to be sent again should
/// its upstream connection close without answering: a server may close a
/// connection that idled just as a request goes out on it. Only a
/// bodiless request with an idempotent method (RFC 9110 §9.2.2), on a
/// connection that served earlier requests and has been idle (`idle`,
/// asked last) for at least `--replay-after-idle`: connections in steady
/// use skip the copy.
///
/// The other retry, in every engine: a request that never went out because
/// its (reused, or going away) connection was closed goes to a new
/// connection, once.
pub fn may_replay(
    method: &Method,
    bodiless: bool,
    reused: bool,
    idle: impl FnOnce() -> Duration,
    replay_after_idle: Duration,
) -> bool {
    reused && bodiless && is_idempotent(method) && idle() >= replay_after_idle
}

/// A method whose request may be sent twice (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The head and body (`None` for none: trailers-only gRPC) of the proxy's
/// answer to a request that failed: `failure.status` with the message as
/// a line of text, or for gRPC a valid trailers-only response with
/// `grpc-status: 14` (UNAVAILABLE) and the message in `grpc-message`.
pub fn local_answer(grpc: bool, failure: &Failure) -> (Response<()>, Option<Bytes>) {
    let message: &str = &failure.message;
    let mut resp = Response::new(());
    let headers = resp.headers_mut();
    if grpc {
        let encoded =
            percent_encoding::utf8_percent_encode(message, GRPC_MESSAGE_ENCODE).to_string();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static("14"));
        if let Ok(value) = HeaderValue::from_str(&encoded) {
            headers.insert("grpc-message", value);
        }
        return (resp, None);
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT));
    *resp.status_mut() = failure.status;
    (resp, Some(Bytes::from(text_body(message))))
}

/// [`local_answer`] as the bytes of an HTTP/1.1 response, for the relay,
/// which writes its own heads: without a body for a HEAD request, and
/// saying `connection: close` when the connection ends after it.
pub fn local_answer_http1(failure: &Failure, head_request: bool, close: bool) -> Vec<u8> {
    let status = failure.status;
    let body = text_body(&failure.message);
    let mut response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {TEXT}\r\ncontent-length: {}\r\n{}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default(),
        body.len(),
        if close { "connection: close\r\n" } else { "" },
    );
    if !head_request {
        response.push_str(&body);
    }
    response.into_bytes()
}

/// The content type of the proxy's own answers.
const TEXT: &str = "text/plain; charset=utf-8";

/// The body of the proxy's own answers: the message, as a line.
fn text_body(message: &str) -> String {
    format!("{message}\n")
}

/// gRPC's percent-encoding of `grpc-message`: everything outside printable
/// ASCII, and `%` itself.
const GRPC_MESSAGE_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_side_is_that_sides_reset_whichever_way_the_body_went() {
        use BodyFault::*;
        assert_eq!(
            body_error(Flow::Request, SourceFailed),
            ErrorKind::DownstreamReset
        );
        assert_eq!(
            body_error(Flow::Response, SinkFailed),
            ErrorKind::DownstreamReset
        );
        assert_eq!(
            body_error(Flow::Response, SourceFailed),
            ErrorKind::UpstreamReset
        );
        assert_eq!(
            body_error(Flow::Request, SinkFailed),
            ErrorKind::UpstreamReset
        );
        for flow in [Flow::Request, Flow::Response] {
            assert_eq!(body_error(flow, Malformed), ErrorKind::Protocol);
            assert_eq!(body_error(flow, Stalled), ErrorKind::IdleTimeout);
        }
    }

    #[test]
    fn only_bodiless_idempotent_requests_on_idle_reused_connections_are_kept() {
        let after = Duration::from_secs(1);
        let idle = || Duration::from_secs(2);
        assert!(may_replay(&Method::GET, true, true, idle, after));
        assert!(!may_replay(&Method::POST, true, true, idle, after));
        assert!(!may_replay(&Method::GET, false, true, idle, after));
        assert!(!may_replay(&Method::GET, true, false, idle, after));
        assert!(!may_replay(
            &Method::GET,
            true,
            true,
            || Duration::from_millis(10),
            after
        ));
    }

    #[test]
    fn the_http1_answer_is_the_same_answer_as_hypers() {
        let failure = Failure::no_answer(None);
        let (head, body) = local_answer(false, &failure);
        let bytes = local_answer_http1(&failure, false, true);
        let text = String::from_utf8(bytes).expect("text");
        let body = String::from_utf8(body.expect("a body").to_vec()).expect("text");
        assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{text}");
        assert!(text.contains("content-type: text/plain; charset=utf-8\r\n"));
        assert!(text.contains("connection: close\r\n"));
        assert!(text.ends_with(&format!("\r\n\r\n{body}")), "{text}");
        assert_eq!(head.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            head.headers().get("content-type").map(|v| v.as_bytes()),
            Some(TEXT.as_bytes())
        );
        let head_only = local_answer_http1(&failure, true, false);
        assert!(head_only.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn grpc_answers_are_trailers_only_unavailable_with_an_encoded_message() {
        let failure = Failure {
            kind: ErrorKind::ConnectRefused,
            server: None,
            message: "100% gone\nfor now".into(),
            status: StatusCode::BAD_GATEWAY,
        };
        let (head, body) = local_answer(true, &failure);
        assert_eq!(body, None);
        assert_eq!(head.status(), StatusCode::OK);
        let header = |name| head.headers().get(name).map(|v| v.as_bytes().to_vec());
        assert_eq!(header("grpc-status"), Some(b"14".to_vec()));
        assert_eq!(
            header("grpc-message"),
            Some(b"100%25 gone%0Afor now".to_vec())
        );
    }

    #[test]
    fn requests_naming_nowhere_are_bad_requests_and_failures_upstream_bad_gateways() {
        assert_eq!(
            Failure::no_destination("nowhere").status,
            StatusCode::BAD_REQUEST
        );
        // A target that is the proxy itself is refused once resolved.
        let looping = ConnectError {
            kind: ErrorKind::NoDestination,
            dest: super::super::upstream::Dest::Addr(([127, 0, 0, 1], 15001).into()),
            addr: None,
            source: std::io::Error::other("that is this proxy itself"),
        };
        for failure in [
            Failure::connect(&looping),
            Failure::no_answer(None),
            Failure::malformed_answer(None),
            Failure::client_body(None),
        ] {
            assert_eq!(failure.status, StatusCode::BAD_GATEWAY, "{failure:?}");
        }
    }
}
