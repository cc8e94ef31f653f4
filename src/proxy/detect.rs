//! Protocol detection from the first bytes a client sends.
//!
//! Detection is incremental: [`detect`] either decides or asks for more
//! bytes, and it always decides once it has [`MAX_SNIFF`] bytes, so the
//! buffer it needs is bounded. It asks for more only while the bytes so
//! far are the beginning of an HTTP/1 request line, the HTTP/2 preface or
//! a TLS ClientHello: anything else is opaque at once, and the caller
//! waits for the rest up to `--detect-timeout`, so that a client cannot
//! hide its requests by pausing mid-line.

use tls_parser::{
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_client_hello_extensions,
    parse_tls_plaintext,
};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The length of an HTTP/2 frame header (RFC 9113 §4.1).
pub const H2_FRAME_HEADER: usize = 9;

/// Whether a server's first bytes are the header of an HTTP/2 SETTINGS frame
/// (not an ACK): the server connection preface, which h2 servers send as
/// soon as they accept, without waiting for the client. It is not a sign of
/// a server-first protocol.
pub fn is_h2_settings(head: &[u8]) -> bool {
    let [l0, l1, l2, kind, flags, s0, s1, s2, s3, ..] = *head else {
        return false;
    };
    let len = u32::from_be_bytes([0, l0, l1, l2]);
    kind == 0x4 && flags & 0x1 == 0 && [s0, s1, s2, s3] == [0; 4] && len.is_multiple_of(6)
}

/// A TLS record header plus the largest plaintext record (RFC 8446 §5.1):
/// a ClientHello that fits one record fits this.
pub const MAX_SNIFF: usize = 5 + 16384;

/// The longest HTTP method token taken for one (`OPTIONS`, `CONNECT`, and
/// extension methods such as `PROPPATCH` or `MKCALENDAR` all fit, with room).
const MAX_METHOD: usize = 32;

/// Line-end bytes allowed before a request line.
const MAX_LEADING_EMPTY: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
    Tls { sni: Option<String> },
    Opaque,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detection {
    Done(Protocol),
    NeedMore,
}

/// Decides the protocol of a connection from its first bytes.
pub fn detect(buf: &[u8]) -> Detection {
    if buf.is_empty() {
        return Detection::NeedMore;
    }
    if buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(buf) {
        return Detection::NeedMore;
    }
    if buf.starts_with(H2_PREFACE) {
        return Detection::Done(Protocol::Http2);
    }
    if buf[0] == 0x16 {
        return detect_tls(buf);
    }
    detect_http1(buf)
}

/// Whether `b` is a `tchar` (RFC 9110 §5.6.2), of which methods are made.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// HTTP/1 when `buf` begins with a request line (`method SP target SP
/// HTTP/1.x`, after any empty lines, as RFC 9112 §2.2 lets servers accept);
/// more is needed while `buf` is a prefix of one (see `Detection`), and
/// anything else is opaque at once. Any method token counts, so that a
/// lowercase or extension method cannot make requests invisible.
fn detect_http1(buf: &[u8]) -> Detection {
    // Leading empty lines, within reason: a client that sends only line
    // ends for long is not one to wait for.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    if start > MAX_LEADING_EMPTY {
        return Detection::Done(Protocol::Opaque);
    }
    let line = &buf[start..];
    let need_more = || {
        if buf.len() >= MAX_SNIFF {
            // A request line longer than the sniff (a long path) is
            // HTTP all the same: its beginning is.
            Detection::Done(Protocol::Http1)
        } else {
            Detection::NeedMore
        }
    };
    // The method.
    let method_len = line.iter().take_while(|&&b| is_tchar(b)).count();
    if method_len == line.len() {
        return if method_len > MAX_METHOD {
            Detection::Done(Protocol::Opaque)
        } else {
            need_more()
        };
    }
    if method_len == 0 || method_len > MAX_METHOD || line[method_len] != b' ' {
        return Detection::Done(Protocol::Opaque);
    }
    // The target: visible characters (and obs-text, which servers differ
    // on but which is no reason to hide a request).
    let rest = &line[method_len + 1..];
    let target_len = rest.iter().take_while(|&&b| b > b' ' && b != 0x7f).count();
    if target_len == rest.len() {
        return need_more();
    }
    if target_len == 0 || rest[target_len] != b' ' {
        return Detection::Done(Protocol::Opaque);
    }
    // The version, then the line end.
    let version = &rest[target_len + 1..];
    const HTTP1: &[u8] = b"HTTP/1.";
    let known = version.len().min(HTTP1.len());
    if version[..known] != HTTP1[..known] {
        return Detection::Done(Protocol::Opaque);
    }
    match version.get(HTTP1.len()) {
        None => need_more(),
        Some(digit) if digit.is_ascii_digit() => Detection::Done(Protocol::Http1),
        Some(_) => Detection::Done(Protocol::Opaque),
    }
}

fn detect_tls(buf: &[u8]) -> Detection {
    // Content type handshake (0x16), legacy version 3.x, then a handshake of
    // type ClientHello (1).
    if buf.len() < 6 {
        let plausible = buf.get(1).is_none_or(|&v| v == 0x03) && buf.get(5).is_none_or(|&t| t == 1);
        return if plausible {
            Detection::NeedMore
        } else {
            Detection::Done(Protocol::Opaque)
        };
    }
    if buf[1] != 0x03 || buf[5] != 1 {
        return Detection::Done(Protocol::Opaque);
    }
    let record_len = 5 + usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if buf.len() < record_len && buf.len() < MAX_SNIFF {
        return Detection::NeedMore;
    }
    Detection::Done(Protocol::Tls {
        sni: server_name(&buf[..record_len.min(buf.len())]),
    })
}

/// The SNI host name of the ClientHello in `record`, if it carries one.
fn server_name(record: &[u8]) -> Option<String> {
    let (_, plaintext) = parse_tls_plaintext(record).ok()?;
    plaintext.msg.iter().find_map(|msg| {
        let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) = msg else {
            return None;
        };
        let (_, extensions) = parse_tls_client_hello_extensions(hello.ext?).ok()?;
        extensions.iter().find_map(|ext| match ext {
            TlsExtension::SNI(names) => names
                .iter()
                .find(|(kind, _)| *kind == SNIType::HostName)
                .and_then(|(_, name)| std::str::from_utf8(name).ok())
                .map(str::to_owned),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TLS 1.2/1.3-style ClientHello for `example.com`, built by hand.
    pub(crate) fn client_hello(sni: &str) -> Vec<u8> {
        let name = sni.as_bytes();
        let mut sni_ext = Vec::new();
        let list_len = 3 + name.len();
        sni_ext.extend_from_slice(&[0x00, 0x00]); // extension type server_name
        sni_ext.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
        sni_ext.extend_from_slice(&(list_len as u16).to_be_bytes());
        sni_ext.push(0); // host_name
        sni_ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni_ext.extend_from_slice(name);

        let mut body = Vec::new();
        body.extend_from_slice(&[0x03, 0x03]); // client_version
        body.extend_from_slice(&[7u8; 32]); // random
        body.push(0); // session id
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        body.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&sni_ext);

        let mut handshake = vec![0x01];
        handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend_from_slice(&body);

        let mut record = vec![0x16, 0x03, 0x01];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    #[test]
    fn http2_preface_is_http2_and_its_prefix_waits() {
        assert_eq!(detect(H2_PREFACE), Detection::Done(Protocol::Http2));
        assert_eq!(detect(&H2_PREFACE[..10]), Detection::NeedMore);
        assert_eq!(detect(b"PRI "), Detection::NeedMore);
    }

    #[test]
    fn request_lines_are_http1() {
        for line in [
            "GET / HTTP/1.1\r\n",
            "OPTIONS * HTTP/1.1",
            "CONNECT a:1 HTTP/1.1",
            // Finding 4 of issue #15: each of these hid its requests.
            "\r\nGET / HTTP/1.1\r\n",
            "\n\r\nGET / HTTP/1.0",
            "get / HTTP/1.1",
            "M-SEARCH * HTTP/1.1",
            "purge /x HTTP/1.1",
        ] {
            assert_eq!(
                detect(line.as_bytes()),
                Detection::Done(Protocol::Http1),
                "{line}"
            );
        }
        // A pause anywhere in the request line waits for the rest.
        for prefix in [
            "G",
            "GE",
            "GET",
            "GET ",
            "POST /x",
            "GET / ",
            "GET / HTTP/1",
            "\r\n",
        ] {
            assert_eq!(detect(prefix.as_bytes()), Detection::NeedMore, "{prefix:?}");
        }
        // A request line longer than the sniff is HTTP/1 all the same.
        let mut long = b"GET /".to_vec();
        long.resize(MAX_SNIFF, b'a');
        assert_eq!(detect(&long), Detection::Done(Protocol::Http1));
    }

    #[test]
    fn other_bytes_are_opaque() {
        for bytes in [
            &b"\x00\x01binary"[..],
            b"+PONG\r\n",
            b" GET",
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"GET / HTTP/2.0\r\n",
            b"GET  / HTTP/1.1",
            b"GET /\r\n",
            b"GET / FTP/1.1",
        ] {
            assert_eq!(
                detect(bytes),
                Detection::Done(Protocol::Opaque),
                "{bytes:?}"
            );
        }
        assert_eq!(detect(&[b'A'; 40]), Detection::Done(Protocol::Opaque));
        assert_eq!(detect(&[b'\n'; 65]), Detection::Done(Protocol::Opaque));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn every_prefix_of_a_request_line_waits_and_the_line_is_http1(
            empty in "(\r\n|\n){0,4}",
            method in "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}",
            target in "[!-~]{1,200}",
            minor in 0u8..10,
        ) {
            let line = format!("{empty}{method} {target} HTTP/1.{minor}\r\n");
            let bytes = line.as_bytes();
            let version_at = line.len() - 2;
            for end in 1..version_at {
                proptest::prop_assert_eq!(detect(&bytes[..end]), Detection::NeedMore, "{:?}", &line[..end]);
            }
            proptest::prop_assert_eq!(detect(bytes), Detection::Done(Protocol::Http1));
        }

        #[test]
        fn every_prefix_of_the_h2_preface_waits(end in 1usize..24) {
            proptest::prop_assert_eq!(detect(&H2_PREFACE[..end]), Detection::NeedMore);
        }

        #[test]
        fn any_bytes_decide_or_wait_without_panicking(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let _ = detect(&bytes);
        }
    }

    #[test]
    fn client_hello_is_tls_with_its_server_name() {
        let hello = client_hello("example.com");
        assert_eq!(
            detect(&hello),
            Detection::Done(Protocol::Tls {
                sni: Some("example.com".into())
            })
        );
        for cut in 1..hello.len() {
            assert_eq!(detect(&hello[..cut]), Detection::NeedMore, "cut at {cut}");
        }
    }

    #[test]
    fn an_h2_servers_settings_frame_is_recognised_and_banners_are_not() {
        // What tonic (the h2 crate) sends on accept: SETTINGS with 3 settings.
        assert!(is_h2_settings(
            b"\x00\x00\x12\x04\x00\x00\x00\x00\x00\x00\x04\x00"
        ));
        assert!(is_h2_settings(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"));
        assert!(
            !is_h2_settings(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"),
            "an ACK"
        );
        assert!(
            !is_h2_settings(b"\x00\x00\x12\x04\x00"),
            "too short to tell"
        );
        assert!(!is_h2_settings(b"220 smtp.example ESMTP ready\r\n"));
        // A MySQL greeting: 3-byte length, sequence 0, protocol version 10.
        assert!(!is_h2_settings(b"\x4a\x00\x00\x00\x0a8.0.36\x00"));
    }

    #[test]
    fn handshake_byte_without_tls_framing_is_opaque() {
        assert_eq!(
            detect(b"\x16\x01garbage"),
            Detection::Done(Protocol::Opaque)
        );
    }

    #[test]
    fn a_broken_client_hello_is_tls_without_server_name() {
        let mut hello = client_hello("example.com");
        let len = hello.len();
        hello[len - 12] = 0xff; // corrupt the SNI lengths
        hello[len - 13] = 0xff;
        assert_eq!(detect(&hello), Detection::Done(Protocol::Tls { sni: None }));
    }
}
