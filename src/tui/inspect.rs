//! What the request inspector says of one request, in words: status
//! reasons, gRPC status names, why an error happened, an equivalent `curl`
//! or `grpcurl` command, and the terminal escape that copies text to the
//! clipboard. Text only; `views::inspector` lays it out.

use base64::Engine;

use crate::schema::{ErrorKind, HttpProtocol, Lenient, RequestEvent};
use crate::tui::model::grpc_code_name;

/// What the sidecar writes in place of a secret header's value
/// (`authorization`, `cookie`, …; see src/proxy/conn.rs).
pub const REDACTED: &str = "<redacted>";

/// `503 Service Unavailable`; the code alone when it has no standard reason.
pub fn status_text(status: u16) -> String {
    match http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

/// `14 UNAVAILABLE`, and the status message after a colon when there is one.
pub fn grpc_text(code: u32, message: Option<&str>) -> String {
    let name = grpc_code_name(code).unwrap_or("(not a standard code)");
    match message.filter(|m| !m.is_empty()) {
        Some(message) => format!("{code} {name}: {message}"),
        None => format!("{code} {name}"),
    }
}

/// One sentence saying why a request failed with `kind`, naming the
/// addresses involved.
pub fn explain(kind: &Lenient<ErrorKind>, event: &RequestEvent) -> String {
    let server = event.server.as_deref().unwrap_or(&event.authority);
    let kind = match kind {
        Lenient::Known(kind) => *kind,
        Lenient::Unknown(name) => {
            return format!(
                "{name}: an error kind this meshtop does not know (sent by a newer sidecar)"
            );
        }
    };
    match kind {
        ErrorKind::ConnectRefused => format!("connect refused: nothing listened on {server}"),
        ErrorKind::ConnectTimeout => {
            format!("connect timeout: {server} did not accept the connection in time")
        }
        ErrorKind::Dns => format!("DNS: the name of {} did not resolve", event.authority),
        ErrorKind::ConnectError => {
            format!("connect error: {server} could not be reached (no route, network down, …)")
        }
        ErrorKind::UpstreamReset => format!(
            "upstream reset: {server} reset or closed the connection before the response ended"
        ),
        ErrorKind::DownstreamReset => format!(
            "client reset: the client {} went away before the response ended",
            event.client
        ),
        ErrorKind::Protocol => {
            "protocol error: a peer sent a malformed request or response".to_owned()
        }
        ErrorKind::NoDestination => "no destination: the connection was neither redirected to \
             the sidecar nor addressed to it as a proxy, so it had nowhere to go"
            .to_owned(),
        ErrorKind::IdleTimeout => "idle timeout: nothing moved for the sidecar's \
             --idle-timeout or --body-timeout, and it closed the exchange"
            .to_owned(),
        ErrorKind::Shutdown => {
            "shutdown: the sidecar stopped while the exchange was still running".to_owned()
        }
    }
}

/// A word or two for a table cell where a status would be: `refused`,
/// `timeout`, `reset`; an unknown kind as its name.
pub fn error_word(kind: &Lenient<ErrorKind>) -> &str {
    let Lenient::Known(kind) = kind else {
        return kind.as_str();
    };
    match kind {
        ErrorKind::ConnectRefused => "refused",
        ErrorKind::ConnectTimeout => "timeout",
        ErrorKind::Dns => "dns",
        ErrorKind::ConnectError => "unreach",
        ErrorKind::UpstreamReset => "reset",
        ErrorKind::DownstreamReset => "cli-reset",
        ErrorKind::Protocol => "protocol",
        ErrorKind::NoDestination => "no-dest",
        ErrorKind::IdleTimeout => "idle",
        ErrorKind::Shutdown => "shutdown",
    }
}

/// Whether the request was a gRPC call.
pub fn is_grpc(event: &RequestEvent) -> bool {
    event.protocol == HttpProtocol::Grpc || event.grpc_status.is_some()
}

/// A command line that sends the same request again: `grpcurl` for gRPC,
/// else `curl`, with every captured header, as lines to show (the command
/// continued with `\`, then `#` notes on what it cannot repeat: bodies are
/// never recorded, and redacted values are not known).
pub fn command_line(event: &RequestEvent) -> Vec<String> {
    let headers: Vec<(&str, &str)> = event
        .headers
        .iter()
        .flatten()
        .filter(|(name, _)| !is_implied_header(name))
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let mut parts: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let path = event.path.as_deref().unwrap_or("/");
    if is_grpc(event) {
        parts.push("grpcurl -plaintext".to_owned());
        for (name, value) in &headers {
            parts.push(format!("-H {}", shell_quote(&format!("{name}: {value}"))));
        }
        // A gRPC message is framed in 5 bytes: an empty one is just that.
        if event.req_bytes > 5 {
            parts.push("-d @".to_owned());
            notes.push(format!(
                "# the {}-byte request is not recorded: give it as JSON on standard input",
                event.req_bytes
            ));
        } else {
            parts.push("-d '{}'".to_owned());
        }
        parts.push(shell_quote(&event.authority));
        parts.push(shell_quote(path.trim_start_matches('/')));
        notes.push(
            "# grpcurl needs the server's reflection service, or the .proto with -proto FILE"
                .to_owned(),
        );
    } else {
        let mut command = "curl".to_owned();
        if event.protocol == HttpProtocol::H2 {
            command.push_str(" --http2-prior-knowledge");
        }
        parts.push(command);
        match event.method.as_deref() {
            None | Some("GET") => {}
            Some("HEAD") => parts.push("--head".to_owned()),
            Some(method) => parts.push(format!("-X {}", shell_quote(method))),
        }
        for (name, value) in &headers {
            parts.push(format!("-H {}", shell_quote(&format!("{name}: {value}"))));
        }
        if event.req_bytes > 0 {
            parts.push("--data-binary @request-body".to_owned());
            notes.push(format!(
                "# the {}-byte request body is not recorded: put it in ./request-body",
                event.req_bytes
            ));
        }
        parts.push(shell_quote(&format!("http://{}{}", event.authority, path)));
    }
    let redacted: Vec<&str> = headers
        .iter()
        .filter(|(_, value)| *value == REDACTED)
        .map(|(name, _)| *name)
        .collect();
    if !redacted.is_empty() {
        notes.push(format!(
            "# the sidecar redacted {}: put the real value in place of {REDACTED}",
            redacted.join(", ")
        ));
    }
    if event.headers.is_none() {
        notes.push(
            "# no headers were captured (the sidecar's --capture-header names which)".to_owned(),
        );
    }
    let last = parts.len() - 1;
    let mut lines: Vec<String> = parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| match (i, i == last) {
            (0, true) => part,
            (0, false) => format!("{part} \\"),
            (_, true) => format!("  {part}"),
            (_, false) => format!("  {part} \\"),
        })
        .collect();
    lines.extend(notes);
    lines
}

/// Headers the command sets itself (the authority and the framing), which
/// repeating would duplicate or contradict.
fn is_implied_header(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "host" | ":authority" | "content-length" | "transfer-encoding" | "te" | "connection"
    )
}

/// `text` as one word for a POSIX shell: single-quoted, with each `'`
/// closed, escaped and reopened; bare when it has nothing a shell reads.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The escape sequence (OSC 52) that asks the terminal to put `text` on
/// the system clipboard. It works over SSH, and in tmux with
/// `set -g set-clipboard on`; terminals that do not support it ignore it.
pub fn osc52(text: &str) -> String {
    format!(
        "\x1b]52;c;{}\x07",
        base64::engine::general_purpose::STANDARD.encode(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_with_their_reason() {
        assert_eq!(status_text(503), "503 Service Unavailable");
        assert_eq!(status_text(200), "200 OK");
        assert_eq!(status_text(599), "599");
        assert_eq!(
            grpc_text(14, Some("no healthy upstream")),
            "14 UNAVAILABLE: no healthy upstream"
        );
        assert_eq!(grpc_text(0, None), "0 OK");
        assert_eq!(grpc_text(42, Some("")), "42 (not a standard code)");
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("emoji-svc:8080"), "emoji-svc:8080");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn osc52_carries_the_text_in_base64() {
        assert_eq!(osc52("hi"), "\x1b]52;c;aGk=\x07");
    }
}
