//! What the relay needs to know of an HTTP/1.1 message, read from its bytes:
//! the request heads it forwards unchanged (and which ones it leaves to
//! hyper), the response heads it forwards or rewrites, and where each body
//! ends.
//!
//! Pure functions over byte slices: no I/O, so every case is unit-tested,
//! split at every byte where it matters.

use std::mem::MaybeUninit;
use std::ops::Range;

use http::Method;
use http::header::HeaderName;

/// Header lines per message, as hyper allows by default.
const MAX_HEADERS: usize = 100;

/// Bytes of chunk extensions, and of trailers, per body (as hyper allows).
const CHUNKED_SIDE_LIMIT: usize = 16 * 1024;

/// How a body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the sender closes (responses only).
    ToClose,
}

/// A request head the relay forwards as it is.
#[derive(Debug, PartialEq)]
pub struct RequestHead {
    /// Bytes of the head, up to and including its empty line.
    pub len: usize,
    pub method: Method,
    /// The request target (origin form).
    pub path: String,
    /// The `Host` value, where the buffer holds it, when it is visible ASCII.
    pub host: Option<Range<usize>>,
    pub body: Framing,
    /// Values of the captured headers, in the order of `capture`.
    pub captured: Vec<(String, String)>,
    /// The head to send instead, without the hop-by-hop fields the client
    /// sent (`Connection`, the fields it names, `Keep-Alive`,
    /// `Proxy-Connection`); `None`: send it as it is.
    pub rewritten: Option<Vec<u8>>,
    /// The client said `Connection: close`: its connection ends after the
    /// response (the upstream's need not).
    pub close: bool,
}

/// What the bytes at the start of a client buffer are.
#[derive(Debug, PartialEq)]
pub enum Request {
    /// A complete head the relay can forward unchanged.
    Plain(RequestHead),
    /// Not all of the head yet.
    Partial,
    /// A head that hyper must handle: malformed (hyper answers 400), or one
    /// that a proxy must rewrite or act on (hop-by-hop fields, an upgrade,
    /// `Expect`, HTTP/1.0, an absolute or odd target, unusual framing).
    Unusual,
}

/// Reads the request head at the start of `buf`.
pub fn request(buf: &[u8], capture: &[HeaderName]) -> Request {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Request::Partial,
        Err(_) => return Request::Unusual,
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Request::Unusual;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Request::Unusual;
    };
    // httparse takes a bare LF for a line end, as hyper does; an upstream
    // that does not could read other fields (and another body end) in the
    // same bytes. hyper writes such heads anew, with CRLF.
    if method == Method::CONNECT
        || !is_plain_origin_form(path.as_bytes())
        || has_bare_lf(&buf[..len])
    {
        return Request::Unusual;
    }

    let mut host = None;
    let mut seen_host = false;
    let mut hop_by_hop = false;
    let mut close = false;
    let mut length = None;
    let mut chunked = false;
    for field in req.headers.iter() {
        let name = field.name.as_bytes();
        let value = field.value;
        match name.len() {
            // A visible-ASCII `Host` names the authority, as with
            // `HeaderValue::to_str`; two of them are hyper's to refuse.
            4 if name.eq_ignore_ascii_case(b"host") => {
                if seen_host {
                    return Request::Unusual;
                }
                seen_host = true;
                let visible = value
                    .iter()
                    .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
                host = visible.then(|| range_of(buf, value));
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                if length.is_some() {
                    return Request::Unusual;
                }
                match digits(value) {
                    Some(n) => length = Some(n),
                    None => return Request::Unusual,
                }
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                if chunked || !value.eq_ignore_ascii_case(b"chunked") {
                    return Request::Unusual;
                }
                chunked = true;
            }
            // What a proxy acts on: trailers offered (`TE`), a protocol
            // switch, an expectation. hyper does.
            2 | 6 | 7
                if name.eq_ignore_ascii_case(b"te")
                    || name.eq_ignore_ascii_case(b"expect")
                    || name.eq_ignore_ascii_case(b"upgrade") =>
            {
                return Request::Unusual;
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                hop_by_hop = true;
                for token in value.split(|&b| b == b',').map(trim) {
                    // Naming a field that frames or routes the request
                    // would change its meaning when removed: hyper's case.
                    if FRAMING_FIELDS.iter().any(|f| token.eq_ignore_ascii_case(f)) {
                        return Request::Unusual;
                    }
                    close |= token.eq_ignore_ascii_case(b"close");
                }
            }
            _ if is_hop_by_hop(name) => hop_by_hop = true,
            _ => {}
        }
    }
    let body = match (length, chunked) {
        (Some(_), true) => return Request::Unusual,
        (Some(0) | None, false) => Framing::Empty,
        (Some(n), false) => Framing::Length(n),
        (None, true) => Framing::Chunked,
    };
    let captured = captured(req.headers, capture);
    let rewritten = hop_by_hop.then(|| {
        // The request line as it came (CRLF-terminated: bare LFs went to
        // hyper above), without the empty lines that may precede it, then
        // the end-to-end fields.
        let start = buf[..len]
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(0);
        let line = buf[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(start, |i| start + i + 1);
        let mut head = Vec::with_capacity(len);
        head.extend_from_slice(&buf[start..line]);
        write_end_to_end(&mut head, req.headers, false);
        head
    });
    Request::Plain(RequestHead {
        len,
        method,
        path: path.to_owned(),
        host,
        body,
        captured,
        rewritten,
        close,
    })
}

/// Fields a `Connection` header must not name for the relay to take the
/// request: removing them would change how it is framed or routed.
const FRAMING_FIELDS: [&[u8]; 4] = [b"content-length", b"transfer-encoding", b"host", b"upgrade"];

/// Hop-by-hop fields (RFC 9110 §7.6.1) apart from `Transfer-Encoding`:
/// where one is present, hyper's forwarder rewrites the head.
fn is_hop_by_hop(name: &[u8]) -> bool {
    match name.len() {
        2 => name.eq_ignore_ascii_case(b"te"),
        7 => name.eq_ignore_ascii_case(b"upgrade"),
        10 => name.eq_ignore_ascii_case(b"connection") || name.eq_ignore_ascii_case(b"keep-alive"),
        16 => name.eq_ignore_ascii_case(b"proxy-connection"),
        _ => false,
    }
}

/// An origin-form target (`/path?query`) that `http::Uri` accepts as it is:
/// no fragment (hyper drops it), nothing but ASCII, no character the URI
/// parser refuses. Anything else is left to hyper.
fn is_plain_origin_form(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') || path.len() >= usize::from(u16::MAX) {
        return false;
    }
    let mut in_query = false;
    path.iter().all(|&b| {
        in_query |= b == b'?';
        matches!(b, b'!'..=b'~') && !matches!(b, b'#' | b'<' | b'>') && (in_query || b != b'`')
    })
}

/// Whether a line of `head` ends in LF alone.
fn has_bare_lf(head: &[u8]) -> bool {
    // memchr finds the few LFs with SIMD: a look at each byte cost ~400
    // more instructions per request (callgrind).
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r')
}

/// A `Content-Length` value: decimal digits only, no sign, no list.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Where `part` (a slice of `buf`) lies in `buf`.
fn range_of(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    start..start + part.len()
}

fn captured(headers: &[httparse::Header<'_>], capture: &[HeaderName]) -> Vec<(String, String)> {
    super::super::conn::capture_headers(capture, |name| {
        headers
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name.as_str()))
            .map(|f| f.value)
    })
}

/// A response head, as the relay passes it on.
#[derive(Debug, PartialEq)]
pub struct ResponseHead {
    /// Bytes of the head in the upstream's buffer.
    pub len: usize,
    pub status: u16,
    pub body: Framing,
    /// The upstream connection can carry another request after this one.
    pub reusable: bool,
    /// The head to send instead of the upstream's, which had hop-by-hop
    /// fields, HTTP/1.0, or conflicting framing; `None`: send it as it is.
    pub rewritten: Option<Vec<u8>>,
}

/// Why a response head cannot be passed on.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadResponse {
    #[error("upstream sent an invalid response head: {0}")]
    Parse(httparse::Error),
    #[error("upstream sent an invalid Content-Length")]
    ContentLength,
    #[error("upstream switched protocols without being asked to")]
    UnaskedSwitch,
}

/// Reads the response head at the start of `buf`; `Ok(None)` while it is
/// incomplete. `head_request`: the request was `HEAD`, so no body follows.
pub fn response(buf: &[u8], head_request: bool) -> Result<Option<ResponseHead>, BadResponse> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(BadResponse::Parse(err)),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return Err(BadResponse::Parse(httparse::Error::Status));
    };
    if status == 101 {
        return Err(BadResponse::UnaskedSwitch);
    }

    let mut length = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut hop_by_hop = false;
    let mut close = version == 0;
    for field in resp.headers.iter() {
        let name = field.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = digits(field.value).ok_or(BadResponse::ContentLength)?;
            if length.is_some_and(|m| m != n) {
                return Err(BadResponse::ContentLength);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Several fields make one list; its last coding is what counts.
            transfer_encoding = Some(field.value);
        } else if is_hop_by_hop(name) {
            hop_by_hop = true;
            if name.eq_ignore_ascii_case(b"connection") && has_token(field.value, b"close") {
                close = true;
            }
        }
    }
    let body = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if let Some(codings) = transfer_encoding {
        if last_token_is(codings, b"chunked") {
            Framing::Chunked
        } else {
            Framing::ToClose
        }
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::ToClose,
        }
    };
    let drop_length = transfer_encoding.is_some() && length.is_some();
    let reusable = !close && body != Framing::ToClose;
    let rewritten = (hop_by_hop
        || version == 0
        || drop_length
        || body == Framing::ToClose
        || has_bare_lf(&buf[..len]))
    .then(|| rewrite(&resp, status, drop_length, body == Framing::ToClose));
    Ok(Some(ResponseHead {
        len,
        status,
        body,
        reusable,
        rewritten,
    }))
}

/// The head of `resp` as HTTP/1.1 without hop-by-hop fields (and those that
/// `Connection` names), and without `Content-Length` where
/// `Transfer-Encoding` frames the body. `Connection: close` is added for a
/// body that only the end of the connection delimits.
fn rewrite(
    resp: &httparse::Response<'_, '_>,
    status: u16,
    drop_length: bool,
    close: bool,
) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    head.push(b' ');
    head.extend_from_slice(resp.reason.unwrap_or_default().as_bytes());
    head.extend_from_slice(b"\r\n");
    write_end_to_end(&mut head, resp.headers, drop_length);
    if close {
        // Before the blank line that `write_end_to_end` ended with.
        head.truncate(head.len() - 2);
        head.extend_from_slice(b"connection: close\r\n\r\n");
    }
    head
}

/// Writes `headers` without the hop-by-hop ones (RFC 9110 §7.6.1:
/// `Connection`, the fields it names, `Keep-Alive`, `Proxy-Connection`,
/// `TE`, `Upgrade`), and without `Content-Length` if `drop_length`; then
/// the blank line that ends a head.
fn write_end_to_end(head: &mut Vec<u8>, headers: &[httparse::Header<'_>], drop_length: bool) {
    let named: Vec<&[u8]> = headers
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("connection"))
        .flat_map(|f| f.value.split(|&b| b == b','))
        .map(trim)
        .collect();
    for field in headers {
        let name = field.name.as_bytes();
        let dropped = is_hop_by_hop(name)
            || named.iter().any(|n| n.eq_ignore_ascii_case(name))
            || (drop_length && name.eq_ignore_ascii_case(b"content-length"));
        if !dropped {
            head.extend_from_slice(name);
            head.extend_from_slice(b": ");
            head.extend_from_slice(field.value);
            head.extend_from_slice(b"\r\n");
        }
    }
    head.extend_from_slice(b"\r\n");
}

fn trim(token: &[u8]) -> &[u8] {
    let start = token.iter().position(|b| !b.is_ascii_whitespace());
    let end = token.iter().rposition(|b| !b.is_ascii_whitespace());
    match (start, end) {
        (Some(start), Some(end)) => &token[start..=end],
        _ => &[],
    }
}

fn has_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}

fn last_token_is(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .map(trim)
        .rfind(|t| !t.is_empty())
        .is_some_and(|t| t.eq_ignore_ascii_case(token))
}

/// Where a chunked body ends, found byte by byte as it streams, and how
/// many bytes of data it carries. Strict as hyper's decoder: CRLF line
/// ends, hex sizes that fit in 64 bits, bounded extensions and trailers.
#[derive(Debug)]
pub struct Chunked {
    state: ChunkState,
    size: u64,
    /// Bytes of extensions and trailers so far.
    side: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// The first hex digit of a chunk size.
    SizeStart,
    Size,
    /// Whitespace after the size.
    SizeLws,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// The start of a trailer line, or of the final empty line.
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// Bytes that cannot be a chunked body.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked body")]
pub struct BadChunk;

/// What [`Chunked::advance`] found in the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub struct Advanced {
    /// Bytes that belong to the body (all of them unless it ended).
    pub consumed: usize,
    /// Of which chunk data.
    pub data: u64,
    pub done: bool,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: ChunkState::SizeStart,
            size: 0,
            side: 0,
        }
    }
}

impl Chunked {
    /// Reads on through `buf`, the next bytes of the body, up to its end.
    pub fn advance(&mut self, buf: &[u8]) -> Result<Advanced, BadChunk> {
        use ChunkState::*;
        let mut i = 0;
        let mut data = 0;
        while i < buf.len() && self.state != Done {
            if self.state == Data {
                let n = (buf.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                i += n;
                data += n as u64;
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = DataCr;
                }
                continue;
            }
            let b = buf[i];
            i += 1;
            self.state = match (self.state, b) {
                (SizeStart | Size, _) if b.is_ascii_hexdigit() => {
                    if self.size > u64::MAX >> 4 {
                        return Err(BadChunk);
                    }
                    let digit = (b as char).to_digit(16).map_or(0, u64::from);
                    self.size = self.size << 4 | digit;
                    Size
                }
                (Size | SizeLws, b' ' | b'\t') => SizeLws,
                (Size | SizeLws, b';') => Extension,
                (Size | SizeLws | Extension, b'\r') => SizeLf,
                (Extension, b'\n') => return Err(BadChunk),
                (Extension, _) => {
                    self.side += 1;
                    if self.side > CHUNKED_SIDE_LIMIT {
                        return Err(BadChunk);
                    }
                    Extension
                }
                (SizeLf, b'\n') if self.size == 0 => TrailerStart,
                (SizeLf, b'\n') => Data,
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => SizeStart,
                (TrailerStart, b'\r') => EndLf,
                (TrailerStart | Trailer, b'\n') => return Err(BadChunk),
                (Trailer, b'\r') => TrailerLf,
                (TrailerStart | Trailer, _) => {
                    self.side += 1;
                    if self.side > CHUNKED_SIDE_LIMIT {
                        return Err(BadChunk);
                    }
                    Trailer
                }
                (TrailerLf, b'\n') => TrailerStart,
                (EndLf, b'\n') => Done,
                _ => return Err(BadChunk),
            };
        }
        Ok(Advanced {
            consumed: i,
            data,
            done: self.state == Done,
        })
    }
}

/// How far a body has come, whatever its framing.
#[derive(Debug)]
pub enum BodyProgress {
    Length(u64),
    Chunked(Chunked),
    ToClose,
    Done,
}

impl BodyProgress {
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => BodyProgress::Done,
            Framing::Length(n) => BodyProgress::Length(n),
            Framing::Chunked => BodyProgress::Chunked(Chunked::default()),
            Framing::ToClose => BodyProgress::ToClose,
        }
    }

    /// Reads on through `buf`, the next bytes of the body.
    pub fn advance(&mut self, buf: &[u8]) -> Result<Advanced, BadChunk> {
        let advanced = match self {
            BodyProgress::Done => Advanced {
                consumed: 0,
                data: 0,
                done: true,
            },
            BodyProgress::Length(remaining) => {
                let n = (buf.len() as u64).min(*remaining);
                *remaining -= n;
                Advanced {
                    consumed: n as usize,
                    data: n,
                    done: *remaining == 0,
                }
            }
            BodyProgress::Chunked(chunked) => chunked.advance(buf)?,
            BodyProgress::ToClose => Advanced {
                consumed: buf.len(),
                data: buf.len() as u64,
                done: false,
            },
        };
        if advanced.done {
            *self = BodyProgress::Done;
        }
        Ok(advanced)
    }

    pub fn is_done(&self) -> bool {
        matches!(self, BodyProgress::Done)
    }

    /// Whether the sender closing ends the body rather than breaking it.
    pub fn ends_at_close(&self) -> bool {
        matches!(self, BodyProgress::ToClose)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(buf: &[u8]) -> RequestHead {
        match request(buf, &[]) {
            Request::Plain(head) => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn an_ordinary_request_is_forwarded_as_it_is() {
        let buf = b"GET /a?b=c HTTP/1.1\r\nHost: web:80\r\nUser-Agent: x\r\n\r\nGET /next";
        let head = plain(buf);
        assert_eq!(head.len, buf.len() - "GET /next".len());
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.path, "/a?b=c");
        assert_eq!(head.host.map(|r| &buf[r]), Some(&b"web:80"[..]));
        assert_eq!(head.body, Framing::Empty);

        let post = plain(b"POST / HTTP/1.1\r\ncontent-length: 12\r\n\r\n");
        assert_eq!((post.body, post.host), (Framing::Length(12), None));
        let chunked = plain(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(chunked.body, Framing::Chunked);
        let zero = plain(b"PUT / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(zero.body, Framing::Empty);
    }

    #[test]
    fn a_rewritten_request_starts_at_its_request_line() {
        let head = b"\r\n\r\nGET /a HTTP/1.1\r\nHost: t\r\nConnection: x-foo\r\nX-Foo: 1\r\n\r\n";
        let Request::Plain(parsed) = request(head, &[]) else {
            panic!("a plain request");
        };
        assert_eq!(parsed.len, head.len());
        assert_eq!(
            parsed.rewritten.as_deref(),
            Some(&b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"[..])
        );
    }

    #[test]
    fn hop_by_hop_fields_are_rewritten_out_of_a_request() {
        let head = plain(
            b"GET /a HTTP/1.1\r\nHost: web\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
              Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-End: 2\r\n\r\n",
        );
        assert_eq!(
            head.rewritten.as_deref(),
            Some(&b"GET /a HTTP/1.1\r\nHost: web\r\nX-End: 2\r\n\r\n"[..])
        );
        assert!(!head.close);
        let close = plain(b"POST /b HTTP/1.1\r\nconnection: Close\r\ncontent-length: 3\r\n\r\n");
        assert!(
            close.close,
            "the client's connection ends after this request"
        );
        assert_eq!(close.body, Framing::Length(3));
        assert_eq!(
            close.rewritten.as_deref(),
            Some(&b"POST /b HTTP/1.1\r\ncontent-length: 3\r\n\r\n"[..])
        );
        let plain_one = plain(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n");
        assert_eq!((plain_one.rewritten, plain_one.close), (None, false));
    }

    #[test]
    fn every_prefix_of_a_head_is_partial() {
        let buf = b"GET /a HTTP/1.1\r\nHost: web\r\n\r\n";
        for end in 0..buf.len() {
            assert_eq!(request(&buf[..end], &[]), Request::Partial, "{end}");
        }
        assert!(matches!(request(buf, &[]), Request::Plain(_)));
    }

    #[test]
    fn heads_that_hyper_must_handle_are_unusual() {
        for head in [
            // What a proxy acts on.
            "GET / HTTP/1.1\r\nTE: trailers\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: content-length\r\ncontent-length: 0\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: Host\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\ncontent-length: 1\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "CONNECT web:443 HTTP/1.1\r\n\r\n",
            "GET http://web/ HTTP/1.1\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n\r\n",
            "GET /a#frag HTTP/1.1\r\n\r\n",
            "GET /a<b HTTP/1.1\r\n\r\n",
            "GET /a`b HTTP/1.1\r\n\r\n",
            // Ambiguous or unusual framing: hyper refuses or decides.
            "POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 1, 1\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
            // Malformed: hyper answers 400.
            "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            "GET / HTTP/1.1\nHost: a\n\n",
            "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(request(head.as_bytes(), &[]), Request::Unusual, "{head:?}");
        }
        // A backtick is refused in the path only.
        assert_eq!(plain(b"GET /a?c`d HTTP/1.1\r\n\r\n").path, "/a?c`d");
    }

    #[test]
    fn captured_headers_are_copied_and_secrets_redacted() {
        let capture = [
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("authorization"),
        ];
        let buf = b"GET / HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nX-Request-Id: 1\r\nx-request-id: 2\r\n\r\n";
        let Request::Plain(head) = request(buf, &capture) else {
            panic!("plain request expected");
        };
        assert_eq!(
            head.captured,
            [
                ("x-request-id".to_owned(), "1".to_owned()),
                ("x-request-id".to_owned(), "2".to_owned()),
                ("authorization".to_owned(), "<redacted>".to_owned()),
            ]
        );
    }

    fn parsed(buf: &[u8]) -> ResponseHead {
        match response(buf, false) {
            Ok(Some(head)) => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn an_ordinary_response_is_passed_on_as_it_is() {
        let head = parsed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(head.len, 38);
        assert_eq!(
            (head.status, head.body, head.reusable),
            (200, Framing::Length(5), true)
        );
        assert_eq!(head.rewritten, None);
        let chunked = parsed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!((chunked.body, chunked.rewritten), (Framing::Chunked, None));
        for status in ["204 No Content", "304 Not Modified", "103 Early Hints"] {
            let buf = format!("HTTP/1.1 {status}\r\ncontent-length: 9\r\n\r\n");
            assert_eq!(parsed(buf.as_bytes()).body, Framing::Empty, "{status}");
        }
        let head = response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", true);
        assert_eq!(head.map(|h| h.map(|h| h.body)), Ok(Some(Framing::Empty)));
        for end in 0..38 {
            let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
            assert_eq!(response(&buf[..end], false), Ok(None), "{end}");
        }
    }

    #[test]
    fn hop_by_hop_fields_are_rewritten_out_of_a_response() {
        let head = parsed(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-End: 2\r\ncontent-length: 0\r\n\r\n",
        );
        assert!(head.reusable);
        assert_eq!(
            head.rewritten.as_deref(),
            Some(&b"HTTP/1.1 200 OK\r\nX-End: 2\r\ncontent-length: 0\r\n\r\n"[..])
        );
        let close = parsed(b"HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 0\r\n\r\n");
        assert!(!close.reusable, "the upstream said it closes");
        assert_eq!(
            close.rewritten.as_deref(),
            Some(&b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..]),
            "the client's connection stays open"
        );
    }

    #[test]
    fn framing_conflicts_and_old_versions_are_resolved() {
        let both =
            parsed(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(both.body, Framing::Chunked);
        assert_eq!(
            both.rewritten.as_deref(),
            Some(&b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"[..])
        );
        let until_close = parsed(b"HTTP/1.1 200 OK\r\nx: y\r\n\r\nbody...");
        assert_eq!(
            (until_close.body, until_close.reusable),
            (Framing::ToClose, false)
        );
        assert_eq!(
            until_close.rewritten.as_deref(),
            Some(&b"HTTP/1.1 200 OK\r\nx: y\r\nconnection: close\r\n\r\n"[..])
        );
        let old = parsed(b"HTTP/1.0 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        assert!(!old.reusable);
        assert_eq!(
            old.rewritten.as_deref(),
            Some(&b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"[..])
        );
        let bare = parsed(b"HTTP/1.1 200 OK\nx: y\ncontent-length: 0\n\n");
        assert_eq!(
            bare.rewritten.as_deref(),
            Some(&b"HTTP/1.1 200 OK\r\nx: y\r\ncontent-length: 0\r\n\r\n"[..])
        );
        let same = parsed(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\n");
        assert_eq!(same.body, Framing::Length(2));
    }

    #[test]
    fn bad_responses_are_refused() {
        for (buf, err) in [
            (
                &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n"[..],
                BadResponse::ContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
                BadResponse::ContentLength,
            ),
            (
                b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
                BadResponse::UnaskedSwitch,
            ),
        ] {
            assert_eq!(response(buf, false), Err(err));
        }
        assert!(matches!(
            response(b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", false),
            Err(BadResponse::Parse(_))
        ));
    }

    /// Feeds `body` split at `split`, and returns the bytes consumed and
    /// the data counted.
    fn feed(body: &[u8], split: usize) -> Result<(usize, u64, bool), BadChunk> {
        let mut chunked = Chunked::default();
        let first = chunked.advance(&body[..split])?;
        assert!(first.done || first.consumed == split);
        if first.done {
            return Ok((first.consumed, first.data, true));
        }
        let rest = chunked.advance(&body[split..])?;
        Ok((split + rest.consumed, first.data + rest.data, rest.done))
    }

    #[test]
    fn a_chunked_body_ends_where_it_ends_however_it_is_split() {
        let body = b"5;name=value\r\nhello\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..=body.len() {
            assert_eq!(feed(body, split), Ok((end, 31, true)), "split at {split}");
        }
        let empty = b"0\r\n\r\n";
        assert_eq!(feed(empty, 2), Ok((5, 0, true)));
    }

    #[test]
    fn malformed_chunked_bodies_are_refused() {
        for body in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5;ext\nhello",
            b"0\r\nbad\ntrailer\r\n\r\n",
            b"1ffffffffffffffff\r\n",
            b" 5\r\n",
        ] {
            let result = (0..=body.len())
                .map(|split| feed(body, split))
                .collect::<Vec<_>>();
            assert!(
                result.iter().all(|r| r.is_err()),
                "{:?}: {result:?}",
                String::from_utf8_lossy(body)
            );
        }
        let long_extension = format!("1;{}\r\n", "e".repeat(CHUNKED_SIDE_LIMIT + 1));
        assert_eq!(
            Chunked::default().advance(long_extension.as_bytes()),
            Err(BadChunk)
        );
    }

    #[test]
    fn no_input_makes_the_readers_panic() {
        // Mutations of real messages (bytes changed, inserted, cut), fed
        // to every reader whole and split: none may panic, whatever comes.
        let seeds: [&[u8]; 4] = [
            b"POST /a?b HTTP/1.1\r\nHost: web:80\r\nContent-Length: 5\r\nX-Request-Id: 1\r\n\r\nhello",
            b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.0 103 Early\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
        ];
        let capture = [HeaderName::from_static("x-request-id")];
        let special = b"\r\n :;,0123456789abcdefABCDEF\t\x00\xff";
        let mut rng = fastrand::Rng::with_seed(8);
        for _ in 0..20_000 {
            let mut input = seeds[rng.usize(..seeds.len())].to_vec();
            for _ in 0..rng.usize(1..6) {
                let at = rng.usize(..=input.len());
                let byte = special[rng.usize(..special.len())];
                match rng.u8(..3) {
                    0 if at < input.len() => input[at] = byte,
                    1 => input.insert(at, byte),
                    _ => input.truncate(at),
                }
            }
            let _ = request(&input, &capture);
            let _ = response(&input, rng.bool());
            let split = rng.usize(..=input.len());
            for framing in [Framing::Chunked, Framing::Length(7), Framing::ToClose] {
                let mut body = BodyProgress::new(framing);
                if let Ok(first) = body.advance(&input[..split]) {
                    assert!(first.consumed <= split);
                    if !first.done {
                        let _ = body.advance(&input[split..]);
                    }
                }
            }
        }
    }

    #[test]
    fn lengths_and_the_end_of_the_connection_delimit_bodies_too() {
        let mut length = BodyProgress::new(Framing::Length(5));
        let first = length.advance(b"abc");
        assert_eq!(
            first,
            Ok(Advanced {
                consumed: 3,
                data: 3,
                done: false
            })
        );
        let rest = length.advance(b"deGET");
        assert_eq!(
            rest,
            Ok(Advanced {
                consumed: 2,
                data: 2,
                done: true
            })
        );
        assert!(length.is_done());
        let mut to_close = BodyProgress::new(Framing::ToClose);
        assert_eq!(to_close.advance(b"abc").map(|a| a.done), Ok(false));
        assert!(to_close.ends_at_close());
        assert!(BodyProgress::new(Framing::Empty).is_done());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever arrives, the head parsers decide without panicking.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            head_request in proptest::prelude::any::<bool>(),
        ) {
            let _ = request(&bytes, &[]);
            let _ = response(&bytes, head_request);
        }

        /// A generated head that the relay forwards as it is has the method,
        /// target and length that httparse (hyper's parser) reads.
        #[test]
        fn plain_heads_are_what_httparse_reads(
            empty in "(\r\n){0,2}",
            method in "[A-Za-z]{1,10}",
            path in "/[a-zA-Z0-9/._~%-]{0,60}(\\?[a-z0-9=&]{0,20})?",
            host in "[a-z0-9.-]{1,30}(:[0-9]{1,5})?",
            extra in proptest::collection::vec(("x-[a-z]{1,10}", "[ -~]{0,40}"), 0..6),
            length in proptest::option::of(0u32..100_000),
            connection in proptest::option::of("keep-alive|keep-alive, x-a|x-b"),
        ) {
            let mut head = format!("{empty}{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
            for (name, value) in &extra {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            // Hop-by-hop fields, which make the relay write the head anew.
            if let Some(connection) = &connection {
                head.push_str(&format!("Connection: {connection}\r\n"));
            }
            if let Some(length) = length {
                head.push_str(&format!("Content-Length: {length}\r\n"));
            }
            head.push_str("\r\n");
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut theirs = httparse::Request::new(&mut headers);
            let Ok(httparse::Status::Complete(their_len)) = theirs.parse(head.as_bytes()) else {
                return Err(proptest::test_runner::TestCaseError::fail(format!("httparse refused {head:?}")));
            };
            let ours = request(head.as_bytes(), &[]);
            // Forwarded as it is, leading empty lines included (which the
            // upstream skips as httparse does).
            proptest::prop_assert!(matches!(ours, Request::Plain(_)), "{:?}", head);
            if let Request::Plain(ours) = ours {
                proptest::prop_assert_eq!(ours.len, their_len);
                proptest::prop_assert_eq!(ours.method.as_str(), theirs.method.unwrap_or_default());
                proptest::prop_assert_eq!(ours.path.as_str(), theirs.path.unwrap_or_default());
                let host_range = ours.host.clone().expect("a host");
                proptest::prop_assert_eq!(&head[host_range], host.as_str());
                // A head written anew says the same request.
                if let Some(rewritten) = &ours.rewritten {
                    let mut fields = [httparse::EMPTY_HEADER; 64];
                    let mut again = httparse::Request::new(&mut fields);
                    let parsed = again.parse(rewritten);
                    proptest::prop_assert!(matches!(parsed, Ok(httparse::Status::Complete(n)) if n == rewritten.len()), "{:?}", String::from_utf8_lossy(rewritten));
                    proptest::prop_assert_eq!(again.method, theirs.method);
                    proptest::prop_assert_eq!(again.path, theirs.path);
                }
            }
        }
    }
}
