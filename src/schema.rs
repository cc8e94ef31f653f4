//! The event schema (version 1): the one definition of every message on
//! the wire and in recordings, shared by the sidecar, the terminal UI,
//! recordings and the tests.
//!
//! - [`enums`]: the wire's enums, each name written once, and [`Lenient`],
//!   which keeps values a newer sidecar sends instead of rejecting them.
//! - [`messages`]: one serde type per message ([`Message`]).
//! - [`encode`]: the fast encoder from the proxy's records to JSON text.
//! - [`decode`]: text to a [`Message`], or why it is not one.
//!
//! Every message is a JSON object with a `"type"`. Documented in
//! `docs/events.md` (with what may be added within version 1); the JSON
//! Schema is `assets/events.schema.json`, checked against these types by
//! `tests/schema.rs`.

pub mod decode;
pub mod encode;
pub mod enums;
pub mod messages;

pub use decode::{DecodeError, decode, one_line};
pub use encode::{RequestEncoder, RequestMessageRef, millis, timestamp};
pub use enums::{Direction, ErrorKind, HttpProtocol, Lenient, TcpProtocol, WireName};
pub use messages::*;

/// The schema version this build speaks. Clients ignore messages of a newer
/// schema (and say so) rather than misreading them.
pub const SCHEMA_VERSION: u32 = 1;

/// The longest path (with its query) a request's record and event carry,
/// in bytes. These limits are the same in the sidecar and in every reader
/// (`docs/events.md`, "Limits"): a longer field is cut at a character
/// boundary and ends in [`TRUNCATED`], and the sidecar counts the requests
/// it cut (`meshtop_fields_truncated`).
pub const MAX_PATH: usize = 4096;
/// The longest authority (a valid `host:port` is at most 261 bytes).
pub const MAX_AUTHORITY: usize = 512;
/// The longest method: longer ones are cut to this, without a marker (a
/// method is a token, and stays one).
pub const MAX_METHOD: usize = 64;
/// The longest `grpc_message`.
pub const MAX_GRPC_MESSAGE: usize = 1024;
/// The longest value of a captured header.
pub const MAX_HEADER_VALUE: usize = 1024;
/// The most captured headers a request carries.
pub const MAX_HEADERS: usize = 32;
/// What ends a field that was cut.
pub const TRUNCATED: &str = "…";

/// Cuts `text` to at most `max` bytes at a character boundary, ending in
/// [`TRUNCATED`]; whether it had to.
pub fn truncate_field(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max.saturating_sub(TRUNCATED.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(TRUNCATED);
    // What is kept is the cut text, not the allocation of the whole one.
    text.shrink_to_fit();
    true
}

/// gRPC status codes that count as failures: UNKNOWN, DEADLINE_EXCEEDED,
/// INTERNAL, UNAVAILABLE and DATA_LOSS. Codes such as NOT_FOUND or
/// INVALID_ARGUMENT are answers, not failures of the service.
pub const FAILING_GRPC_STATUSES: [u32; 5] = [2, 4, 13, 14, 15];

/// The one definition of a failed request, shared by the sidecar's
/// aggregates, its metrics and the terminal UI: it has an error, or an HTTP
/// status of 500 or more, or one of [`FAILING_GRPC_STATUSES`].
pub fn is_failure(status: Option<u16>, grpc_status: Option<u32>, error: Option<ErrorKind>) -> bool {
    error.is_some()
        || status.is_some_and(|s| s >= 500)
        || grpc_status.is_some_and(|g| FAILING_GRPC_STATUSES.contains(&g))
}
