//! The filter language, one for the whole of meshtop: the sidecar's
//! `/events?filter=EXPR`, `attach --filter`, the UI's `/` key, `--headless`,
//! `--json` and `replay` parse and evaluate it here, so the same words mean
//! the same everywhere. docs/filters.md is its user documentation.
//!
//! An expression is space-separated terms that must all hold, such as
//! `authority~voting status>=500 !method=GET latency>100ms`:
//!
//! | term | holds when |
//! |---|---|
//! | `authority~TEXT` (also `path`, `method`, `sidecar`, `route`, `client`, `error`) | the field contains TEXT, ignoring case |
//! | `authority=TEXT` (the same fields; `!=`) | the field equals TEXT, ignoring case |
//! | `direction=inbound` (`!=`) | the request crossed the pod boundary that way |
//! | `status>=500` (`=`, `!=`, `<`, `>`, `<=`, `>=`) | the upstream's HTTP status compares so |
//! | `grpc!=0` (same operators) | the gRPC status compares so |
//! | `latency>100ms` (same operators; `us`, `ms`, `s`, bare numbers are ms) | the request's duration compares so |
//! | `failed` | the request is a failure ([`is_failure`]) |
//!
//! `route` is the request's route ([`crate::telemetry::route`]), `client`
//! the client's IP address (without its port), `error` the error kind
//! (`connect_refused`, …). Any term may start with `!` to negate it. A
//! comparison with a value the request does not have (no status because
//! meshtop made up the response, no grpc-status on plain HTTP, no path on
//! CONNECT or on an opaque connection) is false, so its negation is true:
//! `!status>=500` keeps requests without a status. The space separates
//! terms; a value with spaces goes in double quotes
//! (`route="GET /users/{id}"`).
//!
//! What a term looks at comes from [`Facts`], which the UI's decoded events
//! and the sidecar's own records both provide.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::schema::Lenient;
use crate::schema::RequestEvent;
use crate::telemetry::{Direction, HttpProtocol};

/// What a filter looks at in one request (or opaque connection, which has
/// no path, method, status or route).
pub trait Facts {
    fn sidecar(&self) -> &str;
    fn direction(&self) -> Direction;
    fn authority(&self) -> &str;
    // The HTTP fields: an opaque connection has none of them.
    fn path(&self) -> Option<&str> {
        None
    }
    fn method(&self) -> Option<&str> {
        None
    }
    fn status(&self) -> Option<u16> {
        None
    }
    fn grpc_status(&self) -> Option<u32> {
        None
    }
    fn duration_ms(&self) -> f64;
    fn failed(&self) -> bool;
    /// The client's IP address, without its port.
    fn client_ip(&self) -> Option<Cow<'_, str>>;
    /// The error kind, as on the wire.
    fn error(&self) -> Option<&str>;
    /// See [`crate::telemetry::route`]; computed only when a term asks.
    fn route(&self) -> Option<String> {
        None
    }
}

/// A request event as the UI has it, with the name of the sidecar it came
/// from (the UI's name for it, which may differ from the event's own).
pub struct EventFacts<'a> {
    pub sidecar: &'a str,
    pub event: &'a RequestEvent,
}

impl Facts for EventFacts<'_> {
    fn sidecar(&self) -> &str {
        self.sidecar
    }
    fn direction(&self) -> Direction {
        self.event.direction
    }
    fn authority(&self) -> &str {
        &self.event.authority
    }
    fn path(&self) -> Option<&str> {
        self.event.path.as_deref()
    }
    fn method(&self) -> Option<&str> {
        self.event.method.as_deref()
    }
    fn status(&self) -> Option<u16> {
        self.event.status
    }
    fn grpc_status(&self) -> Option<u32> {
        self.event.grpc_status
    }
    fn duration_ms(&self) -> f64 {
        self.event.duration_ms
    }
    fn failed(&self) -> bool {
        self.event.is_failure()
    }
    fn client_ip(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(ip_of(&self.event.client)))
    }
    fn error(&self) -> Option<&str> {
        self.event.error.as_ref().map(Lenient::as_str)
    }
    fn route(&self) -> Option<String> {
        Some(crate::telemetry::route::route(
            self.event.protocol == HttpProtocol::Grpc,
            self.event.method.as_deref(),
            self.event.path.as_deref(),
        ))
    }
}

impl Facts for crate::telemetry::RequestRecord {
    fn sidecar(&self) -> &str {
        &self.sidecar
    }
    fn direction(&self) -> Direction {
        self.direction
    }
    fn authority(&self) -> &str {
        &self.authority
    }
    fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }
    fn method(&self) -> Option<&str> {
        self.method.as_ref().map(http::Method::as_str)
    }
    fn status(&self) -> Option<u16> {
        self.status
    }
    fn grpc_status(&self) -> Option<u32> {
        self.grpc_status
    }
    fn duration_ms(&self) -> f64 {
        crate::schema::millis(self.duration)
    }
    fn failed(&self) -> bool {
        self.is_failure()
    }
    fn client_ip(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.client.ip().to_string()))
    }
    fn error(&self) -> Option<&str> {
        self.error.map(|e| e.as_str())
    }
    fn route(&self) -> Option<String> {
        Some(crate::telemetry::route::route(
            self.protocol == HttpProtocol::Grpc,
            self.method.as_ref().map(http::Method::as_str),
            self.path.as_deref(),
        ))
    }
}

/// An opaque connection as the sidecar has it: its authority is its TLS
/// server name, else the server's address, as in its event.
pub struct TcpFacts<'a> {
    pub record: &'a crate::telemetry::TcpRecord,
    pub authority: &'a str,
}

impl Facts for TcpFacts<'_> {
    fn sidecar(&self) -> &str {
        &self.record.sidecar
    }
    fn direction(&self) -> Direction {
        self.record.direction
    }
    fn authority(&self) -> &str {
        self.authority
    }
    fn duration_ms(&self) -> f64 {
        crate::schema::millis(self.record.duration)
    }
    fn failed(&self) -> bool {
        self.record.error.is_some()
    }
    fn client_ip(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.record.client.ip().to_string()))
    }
    fn error(&self) -> Option<&str> {
        self.record.error.map(|e| e.as_str())
    }
}

impl Facts for crate::schema::TcpEvent {
    fn sidecar(&self) -> &str {
        &self.sidecar
    }
    fn direction(&self) -> Direction {
        self.direction
    }
    /// As in the sidecar: the TLS server name, else the server's address.
    fn authority(&self) -> &str {
        self.sni
            .as_deref()
            .or(self.server.as_deref())
            .unwrap_or_default()
    }
    fn duration_ms(&self) -> f64 {
        self.duration_ms
    }
    fn failed(&self) -> bool {
        self.error.is_some()
    }
    fn client_ip(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(ip_of(&self.client)))
    }
    fn error(&self) -> Option<&str> {
        self.error.as_ref().map(Lenient::as_str)
    }
}

/// The address part of `ip:port` or `[ip]:port` (the text itself when it
/// has no port).
pub fn ip_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(ip, _)| ip);
    }
    match addr.rsplit_once(':') {
        // One colon: IPv4 with a port; more: a bare IPv6 address.
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => ip,
        _ => addr,
    }
}

/// What the figures for whole upstreams under a filter are counted from
/// (docs/filters.md, "Exact or from events").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Only `authority` and `direction`: whole upstreams, from `stats`.
    Upstreams,
    /// Also `sidecar` or `route`: from `stats` too, which are per sidecar
    /// and carry each upstream's routes.
    Stats,
    /// Anything else (`status`, `latency`, `failed`, …): from the request
    /// events that pass.
    Events,
}

/// One sidecar's `stats` of an upstream, or of one of its routes, as a
/// filter of [`Scope::Stats`] sees them: no field of single requests.
pub struct StatsFacts<'a> {
    pub sidecar: &'a str,
    pub direction: Direction,
    pub authority: &'a str,
    pub route: Option<&'a str>,
}

impl Facts for StatsFacts<'_> {
    fn sidecar(&self) -> &str {
        self.sidecar
    }
    fn direction(&self) -> Direction {
        self.direction
    }
    fn authority(&self) -> &str {
        self.authority
    }
    // Never asked under a filter of `Scope::Stats`.
    fn duration_ms(&self) -> f64 {
        0.0
    }
    fn failed(&self) -> bool {
        false
    }
    fn client_ip(&self) -> Option<Cow<'_, str>> {
        None
    }
    fn error(&self) -> Option<&str> {
        None
    }
    fn route(&self) -> Option<String> {
        self.route.map(str::to_owned)
    }
}

/// A parsed filter expression. The default (and the empty text) is the
/// filter that keeps everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FilterExpr {
    terms: Vec<Term>,
    /// The expression as typed, trimmed: shown in the header and put back
    /// into the input line when the user edits the filter again.
    text: String,
}

/// Why an expression could not be parsed, naming the offending term.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad filter term '{term}': {kind}")]
pub struct FilterError {
    pub term: String,
    pub kind: FilterErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterErrorKind {
    #[error("unknown field '{0}' (known: {KNOWN_FIELDS})")]
    UnknownField(String),
    #[error("a term needs a field, e.g. authority~TEXT, status>=500 or failed")]
    MissingField,
    #[error("'{field}' needs an operator and a value, e.g. {example}")]
    MissingOperator {
        field: &'static str,
        example: &'static str,
    },
    #[error("'{op}' does not apply to {field} (use {allowed})")]
    BadOperator {
        field: &'static str,
        op: String,
        allowed: &'static str,
    },
    #[error("no value after the operator")]
    EmptyValue,
    #[error("'{value}' is not {expected}")]
    BadValue {
        value: String,
        expected: &'static str,
    },
    #[error("'failed' takes no operator or value (use failed or !failed)")]
    FailedTakesNoValue,
    #[error("a value with spaces goes in double quotes, as a whole: route=\"GET /users/{{id}}\"")]
    UnbalancedQuote,
}

const KNOWN_FIELDS: &str = "authority, path, method, sidecar, route, client, error, direction, \
     status, grpc, latency, failed";
const TEXT_OPERATORS: &str = "~, = or !=";
const EQUALITY_OPERATORS: &str = "= or !=";
const NUMERIC_OPERATORS: &str = "=, !=, <, >, <= or >=";

/// One term, without its negation.
#[derive(Clone, Debug, PartialEq)]
enum Condition {
    Text {
        field: TextField,
        op: TextOp,
        /// Lowercased once at parse time, so matching lowercases only the
        /// event's side.
        value: String,
    },
    Direction {
        equal: bool,
        direction: Direction,
    },
    Status(Compare, u16),
    Grpc(Compare, u32),
    LatencyMs(Compare, f64),
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TextField {
    Authority,
    Path,
    Method,
    Sidecar,
    Route,
    Client,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TextOp {
    Contains,
    Equal,
    NotEqual,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compare {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

impl Compare {
    fn holds<T: PartialOrd>(self, actual: T, wanted: T) -> bool {
        match self {
            Compare::Eq => actual == wanted,
            Compare::Ne => actual != wanted,
            Compare::Lt => actual < wanted,
            Compare::Gt => actual > wanted,
            Compare::Le => actual <= wanted,
            Compare::Ge => actual >= wanted,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Term {
    negated: bool,
    condition: Condition,
}

impl FilterExpr {
    /// Whether this filter keeps everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The expression as typed (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a request event from the sidecar named `sidecar` passes.
    pub fn matches_request(&self, sidecar: &str, event: &RequestEvent) -> bool {
        self.matches(&EventFacts { sidecar, event })
    }

    /// Whether a message passes: request and tcp events by their facts
    /// (named by their own sidecar), every other message always (the
    /// filter selects events; stats, hellos and drops describe the source).
    pub fn keeps_message(&self, message: &crate::schema::Message) -> bool {
        use crate::schema::Message;
        match message {
            Message::Request(event) => self.matches_request(&event.sidecar, event),
            Message::Tcp(event) => self.matches(event),
            _ => true,
        }
    }

    /// Whether a request (or connection) passes.
    pub fn matches<F: Facts + ?Sized>(&self, facts: &F) -> bool {
        self.terms.iter().all(|term| {
            let holds = match &term.condition {
                Condition::Text { field, op, value } => match field {
                    TextField::Authority => text_holds(*op, facts.authority(), value),
                    TextField::Path => facts.path().is_some_and(|a| text_holds(*op, a, value)),
                    TextField::Method => facts.method().is_some_and(|a| text_holds(*op, a, value)),
                    TextField::Sidecar => text_holds(*op, facts.sidecar(), value),
                    TextField::Route => facts.route().is_some_and(|a| text_holds(*op, &a, value)),
                    TextField::Client => facts
                        .client_ip()
                        .is_some_and(|a| text_holds(*op, &a, value)),
                    TextField::Error => facts.error().is_some_and(|a| text_holds(*op, a, value)),
                },
                Condition::Direction { equal, direction } => {
                    (facts.direction() == *direction) == *equal
                }
                Condition::Status(cmp, wanted) => {
                    facts.status().is_some_and(|s| cmp.holds(s, *wanted))
                }
                Condition::Grpc(cmp, wanted) => {
                    facts.grpc_status().is_some_and(|g| cmp.holds(g, *wanted))
                }
                Condition::LatencyMs(cmp, wanted) => cmp.holds(facts.duration_ms(), *wanted),
                Condition::Failed => facts.failed(),
            };
            holds != term.negated
        })
    }

    /// What figures for upstreams under this filter can be counted from.
    pub fn scope(&self) -> Scope {
        let mut scope = Scope::Upstreams;
        for term in &self.terms {
            match term.condition {
                Condition::Text {
                    field: TextField::Authority,
                    ..
                }
                | Condition::Direction { .. } => {}
                Condition::Text {
                    field: TextField::Sidecar | TextField::Route,
                    ..
                } => scope = scope.max(Scope::Stats),
                _ => return Scope::Events,
            }
        }
        scope
    }

    /// Whether a term names something `stats` do not count by (see
    /// [`Scope::Events`]).
    pub fn needs_events(&self) -> bool {
        self.scope() == Scope::Events
    }

    /// Whether a term names the route.
    pub fn names_route(&self) -> bool {
        self.names(TextField::Route)
    }

    /// Whether a term names the sidecar.
    pub fn names_sidecar(&self) -> bool {
        self.names(TextField::Sidecar)
    }

    fn names(&self, wanted: TextField) -> bool {
        self.terms
            .iter()
            .any(|term| matches!(term.condition, Condition::Text { field, .. } if field == wanted))
    }

    /// Whether a sidecar named `name` passes: only `sidecar` terms apply
    /// (the Sidecars view lists the sidecars a filter names).
    pub fn matches_sidecar(&self, name: &str) -> bool {
        self.terms.iter().all(|term| {
            let holds = match &term.condition {
                Condition::Text {
                    field: TextField::Sidecar,
                    op,
                    value,
                } => text_holds(*op, name, value),
                _ => return true,
            };
            holds != term.negated
        })
    }

    /// Whether a whole upstream (merged over sidecars and requests)
    /// passes: only `authority` and `direction` terms apply. The others
    /// describe single requests, so a filter with any of them is counted
    /// from events instead ([`FilterExpr::needs_events`]).
    pub fn matches_upstream(&self, direction: Direction, authority: &str) -> bool {
        self.terms.iter().all(|term| {
            let holds = match &term.condition {
                Condition::Text {
                    field: TextField::Authority,
                    op,
                    value,
                } => text_holds(*op, authority, value),
                Condition::Direction {
                    equal,
                    direction: wanted,
                } => (direction == *wanted) == *equal,
                _ => return true,
            };
            holds != term.negated
        })
    }
}

/// `wanted` is already lowercase.
fn text_holds(op: TextOp, actual: &str, wanted: &str) -> bool {
    match op {
        TextOp::Contains => contains_ignoring_case(actual, wanted),
        TextOp::Equal => equals_ignoring_case(actual, wanted),
        TextOp::NotEqual => !equals_ignoring_case(actual, wanted),
    }
}

fn equals_ignoring_case(actual: &str, wanted_lower: &str) -> bool {
    if actual.is_ascii() {
        actual.eq_ignore_ascii_case(wanted_lower)
    } else {
        actual.to_lowercase() == wanted_lower
    }
}

/// Substring match ignoring case; allocates only when `haystack` is not
/// ASCII, which authorities, paths and methods almost always are.
fn contains_ignoring_case(haystack: &str, needle_lower: &str) -> bool {
    if haystack.is_ascii() && needle_lower.is_ascii() {
        let (h, n) = (haystack.as_bytes(), needle_lower.as_bytes());
        n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
    } else {
        haystack.to_lowercase().contains(needle_lower)
    }
}

impl FromStr for FilterExpr {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<FilterExpr, FilterError> {
        let text = s.trim();
        let terms = split_terms(text)
            .map(|term| {
                parse_term(term).map_err(|kind| FilterError {
                    term: term.to_owned(),
                    kind,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FilterExpr {
            terms,
            text: text.to_owned(),
        })
    }
}

/// The terms of an expression: separated by spaces, except inside double
/// quotes (`route="GET /users/{id}"`).
fn split_terms(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text.trim_start();
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut quoted = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                c.is_whitespace() && !quoted
            })
            .map_or(rest.len(), |(i, _)| i);
        let (term, after) = rest.split_at(end);
        rest = after.trim_start();
        Some(term)
    })
}

impl FilterExpr {
    /// The filter of an `/events` query string: `filter=EXPR`, and the
    /// older parameters as aliases of terms: `direction=D` is
    /// `direction=D`, `authority=TEXT` is `authority~TEXT`, `failures=1` is
    /// `failed` (`0` adds nothing), `min_ms=N` is `latency>N`. Other
    /// parameters (`token`) are not the filter's. An error names the term,
    /// or the parameter it came from.
    pub fn from_query(query: &str) -> Result<FilterExpr, FilterError> {
        let mut terms = Vec::new();
        let mut texts = Vec::new();
        for (key, value) in form_pairs(query) {
            let term = match key.as_str() {
                "filter" => {
                    let expr: FilterExpr = value.parse()?;
                    terms.extend(expr.terms);
                    if !expr.text.is_empty() {
                        texts.push(expr.text);
                    }
                    continue;
                }
                "direction" => format!("direction={value}"),
                "authority" => format!("authority~{value}"),
                "failures" => match value.as_str() {
                    "1" | "true" => "failed".to_owned(),
                    "0" | "false" => continue,
                    _ => {
                        return Err(FilterError {
                            term: format!("failures={value}"),
                            kind: FilterErrorKind::BadValue {
                                value,
                                expected: "1 or 0",
                            },
                        });
                    }
                },
                "min_ms" => format!("latency>{value}"),
                _ => continue,
            };
            // One term, spaces and all: the parameter is one value.
            let parsed = parse_term(&term).map_err(|kind| FilterError {
                term: format!("{key}={value}"),
                kind,
            })?;
            terms.push(parsed);
            texts.push(term);
        }
        Ok(FilterExpr {
            terms,
            text: texts.join(" "),
        })
    }
}

/// `key=value` pairs of a query string, percent-decoded (`+` as space).
pub fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key), decode(value))
    })
}

fn decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

impl fmt::Display for FilterExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_term(term: &str) -> Result<Term, FilterErrorKind> {
    let (negated, rest) = match term.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, term),
    };
    let split = rest.find(['~', '=', '<', '>', '!']).unwrap_or(rest.len());
    let (name, op_and_value) = rest.split_at(split);
    if name.is_empty() {
        return Err(FilterErrorKind::MissingField);
    }
    let name = name.to_ascii_lowercase();
    let field = Field::from_name(&name).ok_or(FilterErrorKind::UnknownField(name))?;
    if field == Field::Failed {
        return if op_and_value.is_empty() {
            Ok(Term {
                negated,
                condition: Condition::Failed,
            })
        } else {
            Err(FilterErrorKind::FailedTakesNoValue)
        };
    }
    if op_and_value.is_empty() {
        return Err(FilterErrorKind::MissingOperator {
            field: field.name(),
            example: field.example(),
        });
    }
    let op_len = match op_and_value.as_bytes() {
        [b'!' | b'<' | b'>', b'=', ..] => 2,
        _ => 1,
    };
    let (op, value) = op_and_value.split_at(op_len);
    let value = match value.strip_prefix('"') {
        Some(quoted) => quoted
            .strip_suffix('"')
            .filter(|inner| !inner.contains('"'))
            .ok_or(FilterErrorKind::UnbalancedQuote)?,
        None if value.contains('"') => return Err(FilterErrorKind::UnbalancedQuote),
        None => value,
    };
    let bad_operator = || FilterErrorKind::BadOperator {
        field: field.name(),
        op: op.to_owned(),
        allowed: field.operators(),
    };
    let condition = match field {
        Field::Text(text_field) => {
            let op = match op {
                "~" => TextOp::Contains,
                "=" => TextOp::Equal,
                "!=" => TextOp::NotEqual,
                _ => return Err(bad_operator()),
            };
            Condition::Text {
                field: text_field,
                op,
                value: nonempty(value)?.to_lowercase(),
            }
        }
        Field::Direction => {
            let equal = match op {
                "=" => true,
                "!=" => false,
                _ => return Err(bad_operator()),
            };
            let direction = match nonempty(value)?.to_ascii_lowercase().as_str() {
                "inbound" => Direction::Inbound,
                "outbound" => Direction::Outbound,
                _ => {
                    return Err(FilterErrorKind::BadValue {
                        value: value.to_owned(),
                        expected: "a direction (inbound or outbound)",
                    });
                }
            };
            Condition::Direction { equal, direction }
        }
        Field::Status | Field::Grpc | Field::Latency => {
            let cmp = match op {
                "=" => Compare::Eq,
                "!=" => Compare::Ne,
                "<" => Compare::Lt,
                ">" => Compare::Gt,
                "<=" => Compare::Le,
                ">=" => Compare::Ge,
                _ => return Err(bad_operator()),
            };
            let value = nonempty(value)?;
            let bad_value = |expected| FilterErrorKind::BadValue {
                value: value.to_owned(),
                expected,
            };
            match field {
                Field::Status => Condition::Status(
                    cmp,
                    value
                        .parse()
                        .map_err(|_| bad_value("an HTTP status code"))?,
                ),
                Field::Grpc => Condition::Grpc(
                    cmp,
                    value.parse().map_err(|_| bad_value("a gRPC status code"))?,
                ),
                _ => Condition::LatencyMs(
                    cmp,
                    parse_latency_ms(value)
                        .ok_or_else(|| bad_value("a latency (a number with us, ms or s)"))?,
                ),
            }
        }
        Field::Failed => return Err(FilterErrorKind::FailedTakesNoValue),
    };
    Ok(Term { negated, condition })
}

fn nonempty(value: &str) -> Result<&str, FilterErrorKind> {
    if value.is_empty() {
        Err(FilterErrorKind::EmptyValue)
    } else {
        Ok(value)
    }
}

/// `250us`, `1.5ms`, `2s`, or a bare number of milliseconds.
fn parse_latency_ms(value: &str) -> Option<f64> {
    let lower = value.to_ascii_lowercase();
    let (number, scale) = if let Some(n) = lower.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = lower.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = lower.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (lower.as_str(), 1.0)
    };
    // `parse::<f64>` accepts `inf` and `nan`; a latency is a plain number.
    if !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    Some(number * scale)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Text(TextField),
    Direction,
    Status,
    Grpc,
    Latency,
    Failed,
}

impl Field {
    fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "authority" => Field::Text(TextField::Authority),
            "path" => Field::Text(TextField::Path),
            "method" => Field::Text(TextField::Method),
            "sidecar" => Field::Text(TextField::Sidecar),
            "route" => Field::Text(TextField::Route),
            "client" => Field::Text(TextField::Client),
            "error" => Field::Text(TextField::Error),
            "direction" => Field::Direction,
            "status" => Field::Status,
            "grpc" => Field::Grpc,
            "latency" => Field::Latency,
            "failed" => Field::Failed,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Field::Text(TextField::Authority) => "authority",
            Field::Text(TextField::Path) => "path",
            Field::Text(TextField::Method) => "method",
            Field::Text(TextField::Sidecar) => "sidecar",
            Field::Text(TextField::Route) => "route",
            Field::Text(TextField::Client) => "client",
            Field::Text(TextField::Error) => "error",
            Field::Direction => "direction",
            Field::Status => "status",
            Field::Grpc => "grpc",
            Field::Latency => "latency",
            Field::Failed => "failed",
        }
    }

    fn operators(self) -> &'static str {
        match self {
            Field::Text(_) => TEXT_OPERATORS,
            Field::Direction => EQUALITY_OPERATORS,
            Field::Status | Field::Grpc | Field::Latency => NUMERIC_OPERATORS,
            Field::Failed => "no operator",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Field::Text(TextField::Authority) => "authority~TEXT",
            Field::Text(TextField::Path) => "path~TEXT",
            Field::Text(TextField::Method) => "method=GET",
            Field::Text(TextField::Sidecar) => "sidecar~TEXT",
            Field::Text(TextField::Route) => "route~/users",
            Field::Text(TextField::Client) => "client=10.1.0.7",
            Field::Text(TextField::Error) => "error=connect_refused",
            Field::Direction => "direction=inbound",
            Field::Status => "status>=500",
            Field::Grpc => "grpc!=0",
            Field::Latency => "latency>100ms",
            Field::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{ErrorKind, HttpProtocol};

    #[test]
    fn the_scope_is_the_widest_any_term_needs() {
        for (text, scope) in [
            ("", Scope::Upstreams),
            ("authority~voting !direction=inbound", Scope::Upstreams),
            ("sidecar=web", Scope::Stats),
            ("authority~voting !route~Pig", Scope::Stats),
            ("route~Vote status>=500", Scope::Events),
            ("failed sidecar=web", Scope::Events),
            ("client=10.0.0.1", Scope::Events),
            ("latency>1ms", Scope::Events),
        ] {
            let filter: FilterExpr = text.parse().expect("valid");
            assert_eq!(filter.scope(), scope, "{text}");
            assert_eq!(filter.needs_events(), scope == Scope::Events, "{text}");
        }
        let route: FilterExpr = "!route~Pig".parse().expect("valid");
        assert!(route.names_route() && !route.names_sidecar());
        let facts = |route| StatsFacts {
            sidecar: "web",
            direction: Direction::Inbound,
            authority: "voting:8080",
            route,
        };
        assert!(route.matches(&facts(Some("/v1/VoteDog"))));
        assert!(!route.matches(&facts(Some("/v1/VotePig"))));
    }

    fn event() -> RequestEvent {
        RequestEvent {
            ts: "2026-11-30T03:42:31.002117Z".into(),
            sidecar: "web-7d4b9c".into(),
            direction: Direction::Outbound,
            protocol: HttpProtocol::Grpc.into(),
            client: "10.1.0.7:52144".into(),
            server: Some("10.1.0.9:8080".into()),
            authority: "Voting-Svc.emojivoto:8080".into(),
            method: Some("POST".into()),
            path: Some("/emojivoto.v1.VotingService/VoteDoughnut".into()),
            status: Some(200),
            grpc_status: Some(2),
            grpc_message: Some("ERROR".into()),
            error: None,
            duration_ms: 1.482,
            ttfb_ms: Some(1.417),
            req_bytes: 5,
            resp_bytes: 0,
            headers: None,
        }
    }

    fn parse(expr: &str) -> FilterExpr {
        expr.parse()
            .unwrap_or_else(|e| panic!("{expr:?} should parse: {e}"))
    }

    fn keeps(expr: &str, event: &RequestEvent) -> bool {
        parse(expr).matches_request("web-7d4b9c", event)
    }

    #[test]
    fn route_client_and_error_terms() {
        let mut e = event();
        assert!(keeps("route=/emojivoto.v1.VotingService/VoteDoughnut", &e));
        assert!(keeps("route~votedoughnut client=10.1.0.7", &e));
        assert!(!keeps("client=10.1.0.70", &e));
        assert!(keeps("client~10.1.", &e));
        // No error: `error` terms are false, their negations true.
        assert!(!keeps("error~connect", &e) && keeps("!error~connect", &e));
        e.error = Some(ErrorKind::ConnectRefused.into());
        assert!(keeps("error=connect_refused", &e));
        e.protocol = HttpProtocol::Http1.into();
        e.method = Some("GET".into());
        e.path = Some("/users/42?x=1".into());
        assert!(keeps("route=\"GET /users/{id}\"", &e));
        assert!(!keeps("route=\"GET /users/42\"", &e));
        e.client = "[fd00::7]:8080".into();
        assert!(keeps("client=fd00::7", &e));
    }

    #[test]
    fn quoted_values_keep_their_spaces() {
        let filter = parse(r#"route="GET /a b"  status=200"#);
        assert_eq!(filter.terms.len(), 2);
        for bad in [r#"route="GET /a"#, r#"route=GET"x"#, r#"route="a"b""#] {
            let err = bad.parse::<FilterExpr>().expect_err(bad);
            assert_eq!(err.kind, FilterErrorKind::UnbalancedQuote, "{bad}");
        }
    }

    #[test]
    fn client_addresses_lose_their_port() {
        assert_eq!(ip_of("10.1.0.7:52144"), "10.1.0.7");
        assert_eq!(ip_of("[fd00::7]:80"), "fd00::7");
        assert_eq!(ip_of("fd00::7"), "fd00::7");
        assert_eq!(ip_of("10.1.0.7"), "10.1.0.7");
    }

    #[test]
    fn query_parameters_are_aliases_of_terms() {
        let e = event();
        let query = |q: &str| FilterExpr::from_query(q).unwrap_or_else(|err| panic!("{q}: {err}"));
        // `authority` was a substring match, and stays one.
        assert!(query("authority=voting&token=x").matches_request("w", &e));
        assert!(query("direction=outbound&min_ms=1").matches_request("w", &e));
        assert!(!query("min_ms=2").matches_request("w", &e));
        assert!(query("failures=1").matches_request("w", &e));
        assert!(query("failures=0").is_empty());
        assert!(query("filter=grpc%3D2%20method%3Dpost&authority=Voting").matches_request("w", &e));
        assert_eq!(
            query("filter=grpc%3D2&failures=1").as_str(),
            "grpc=2 failed"
        );
        for (bad, term) in [
            ("min_ms=fast", "min_ms=fast"),
            ("failures=maybe", "failures=maybe"),
            ("direction=up", "direction=up"),
            ("filter=colour%3Dred", "colour=red"),
        ] {
            let err = FilterExpr::from_query(bad).expect_err(bad);
            assert_eq!(err.term, term);
            assert!(!err.to_string().contains('\n'));
        }
    }

    fn error(expr: &str) -> FilterErrorKind {
        match expr.parse::<FilterExpr>() {
            Ok(filter) => panic!("{expr:?} should not parse, got {filter:?}"),
            Err(e) => e.kind,
        }
    }

    #[test]
    fn the_empty_expression_keeps_everything() {
        for text in ["", "   "] {
            let filter = parse(text);
            assert!(filter.is_empty());
            assert_eq!(filter.as_str(), "");
            assert!(filter.matches_request("any", &event()));
            assert!(filter.matches_upstream(Direction::Inbound, "x"));
        }
        assert_eq!(FilterExpr::default(), parse(""));
    }

    #[test]
    fn the_text_is_kept_as_typed_but_trimmed() {
        let filter = parse("  authority~Voting   status>=500 ");
        assert!(!filter.is_empty());
        assert_eq!(filter.as_str(), "authority~Voting   status>=500");
        assert_eq!(filter.to_string(), filter.as_str());
    }

    #[test]
    fn text_fields_match_substrings_ignoring_case() {
        let e = event();
        assert!(keeps("authority~voting-svc", &e));
        assert!(keeps("authority~VOTING", &e));
        assert!(!keeps("authority~web", &e));
        assert!(keeps("path~votedoughnut", &e));
        assert!(!keeps("path~/api", &e));
        assert!(keeps("method~po", &e));
        assert!(keeps("sidecar~WEB", &e));
        assert!(!keeps("sidecar~api", &e));
        // The sidecar name comes from the argument, the name of the source.
        assert!(parse("sidecar~other").matches_request("other-pod", &e));
    }

    #[test]
    fn case_is_ignored_beyond_ascii_too() {
        let mut e = event();
        e.path = Some("/Straße/ÄPFEL".into());
        assert!(keeps("path~äpfel", &e));
        assert!(keeps("path~STRAßE", &e));
        assert!(keeps("path=/straße/äpfel", &e));
    }

    #[test]
    fn text_fields_compare_whole_values_with_equals() {
        let e = event();
        assert!(keeps("method=POST", &e));
        assert!(keeps("method=post", &e));
        assert!(!keeps("method=GET", &e));
        assert!(keeps("method!=GET", &e));
        assert!(!keeps("method!=post", &e));
        assert!(keeps("authority=voting-svc.emojivoto:8080", &e));
        assert!(!keeps("authority=voting-svc", &e));
    }

    #[test]
    fn absent_text_values_never_match_but_their_negation_does() {
        let mut e = event();
        e.path = None;
        e.method = None;
        assert!(!keeps("path~/", &e));
        assert!(keeps("!path~/", &e));
        assert!(!keeps("method=GET", &e));
        assert!(!keeps("method!=GET", &e));
        assert!(keeps("!method=GET", &e));
    }

    #[test]
    fn direction_selects_inbound_or_outbound() {
        let mut e = event();
        assert!(keeps("direction=outbound", &e));
        assert!(keeps("direction=OUTBOUND", &e));
        assert!(!keeps("direction=inbound", &e));
        assert!(keeps("direction!=inbound", &e));
        e.direction = Direction::Inbound;
        assert!(keeps("direction=inbound", &e));
        assert!(keeps("!direction=outbound", &e));
    }

    #[test]
    fn status_supports_every_comparison() {
        let mut e = event();
        e.status = Some(503);
        for (expr, expected) in [
            ("status=503", true),
            ("status=500", false),
            ("status!=503", false),
            ("status!=200", true),
            ("status<503", false),
            ("status<600", true),
            ("status>500", true),
            ("status>503", false),
            ("status<=503", true),
            ("status<=502", false),
            ("status>=503", true),
            ("status>=504", false),
        ] {
            assert_eq!(keeps(expr, &e), expected, "{expr}");
        }
    }

    #[test]
    fn absent_statuses_never_compare_but_their_negation_does() {
        let mut e = event();
        e.status = None;
        e.grpc_status = None;
        e.error = Some(ErrorKind::ConnectRefused.into());
        for expr in [
            "status>=500",
            "status<500",
            "status!=200",
            "grpc=0",
            "grpc!=0",
        ] {
            assert!(!keeps(expr, &e), "{expr}");
            assert!(keeps(&format!("!{expr}"), &e), "!{expr}");
        }
    }

    #[test]
    fn grpc_status_supports_every_comparison() {
        let e = event();
        assert!(keeps("grpc!=0", &e));
        assert!(keeps("grpc=2", &e));
        assert!(!keeps("grpc=0", &e));
        assert!(keeps("grpc>1", &e));
        assert!(keeps("grpc>=2", &e));
        assert!(keeps("grpc<=2", &e));
        assert!(!keeps("grpc<2", &e));
    }

    #[test]
    fn latency_understands_units_and_bare_milliseconds() {
        let e = event(); // 1.482 ms
        for (expr, expected) in [
            ("latency>1ms", true),
            ("latency>1", true),
            ("latency>1.5", false),
            ("latency>1481us", true),
            ("latency>1483us", false),
            ("latency<1s", true),
            ("latency>0.001s", true),
            ("latency>0.002s", false),
            ("latency>=1.482ms", true),
            ("latency<=1.482", true),
            ("latency=1.482", true),
            ("latency!=1.482", false),
            ("latency>1MS", true),
        ] {
            assert_eq!(keeps(expr, &e), expected, "{expr}");
        }
    }

    #[test]
    fn failed_uses_the_shared_failure_rule() {
        let mut e = event(); // grpc-status 2, UNKNOWN: a failure.
        assert!(keeps("failed", &e));
        assert!(!keeps("!failed", &e));
        e.grpc_status = Some(5); // NOT_FOUND is an answer.
        assert!(!keeps("failed", &e));
        assert!(keeps("!failed", &e));
        e.status = Some(500);
        assert!(keeps("failed", &e));
        e.status = None;
        e.error = Some(ErrorKind::UpstreamReset.into());
        assert!(keeps("FAILED", &e));
    }

    #[test]
    fn negation_inverts_any_term() {
        let e = event();
        assert!(!keeps("!authority~voting", &e));
        assert!(keeps("!authority~web", &e));
        assert!(keeps("!status>=500", &e));
        assert!(!keeps("!latency>1ms", &e));
        assert!(keeps("!status!=200", &e));
    }

    #[test]
    fn every_term_must_hold() {
        let e = event();
        assert!(keeps(
            "authority~voting direction=outbound grpc=2 failed",
            &e
        ));
        assert!(!keeps("authority~voting direction=inbound", &e));
        assert!(!keeps("authority~voting status>=500", &e));
    }

    #[test]
    fn field_names_ignore_case() {
        assert!(keeps("Authority~voting STATUS=200", &event()));
    }

    #[test]
    fn upstream_rows_use_only_authority_and_direction() {
        let filter = parse("authority~voting direction=outbound status>=500 latency>1s failed");
        assert!(filter.matches_upstream(Direction::Outbound, "voting-svc:8080"));
        assert!(!filter.matches_upstream(Direction::Inbound, "voting-svc:8080"));
        assert!(!filter.matches_upstream(Direction::Outbound, "web-svc:80"));
        // Request-level terms are ignored, negated or not.
        let filter = parse("!failed !status>=500 sidecar~nothing path~/x method=GET grpc=0");
        assert!(filter.matches_upstream(Direction::Inbound, "web-svc:80"));
        let filter = parse("!authority~VOTING direction!=inbound");
        assert!(filter.matches_upstream(Direction::Outbound, "web-svc:80"));
        assert!(!filter.matches_upstream(Direction::Outbound, "voting-svc:80"));
        assert!(!filter.matches_upstream(Direction::Inbound, "web-svc:80"));
    }

    #[test]
    fn unknown_fields_are_errors_naming_the_term() {
        let err = "authority~x colour=red"
            .parse::<FilterExpr>()
            .expect_err("colour is not a field");
        assert_eq!(err.term, "colour=red");
        assert_eq!(err.kind, FilterErrorKind::UnknownField("colour".into()));
        let message = err.to_string();
        assert!(message.contains("colour=red"), "{message}");
        assert!(message.contains("unknown field"), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
        assert_eq!(
            error("nonsense"),
            FilterErrorKind::UnknownField("nonsense".into())
        );
    }

    #[test]
    fn bad_operators_are_errors() {
        assert!(matches!(
            error("status~5"),
            FilterErrorKind::BadOperator {
                field: "status",
                ..
            }
        ));
        assert!(matches!(
            error("direction~in"),
            FilterErrorKind::BadOperator {
                field: "direction",
                ..
            }
        ));
        assert!(matches!(
            error("authority>a"),
            FilterErrorKind::BadOperator {
                field: "authority",
                ..
            }
        ));
        assert!(matches!(
            error("status!500"),
            FilterErrorKind::BadOperator {
                field: "status",
                ..
            }
        ));
        assert!(matches!(
            error("authority"),
            FilterErrorKind::MissingOperator {
                field: "authority",
                ..
            }
        ));
        assert_eq!(error("failed=1"), FilterErrorKind::FailedTakesNoValue);
        assert_eq!(error("=500"), FilterErrorKind::MissingField);
        assert_eq!(error("!"), FilterErrorKind::MissingField);
        assert_eq!(error("!!failed"), FilterErrorKind::MissingField);
        let message = error("status~5").to_string();
        assert!(message.contains(">="), "lists the operators: {message}");
    }

    #[test]
    fn non_numeric_values_are_errors() {
        for expr in [
            "status>=abc",
            "status=5xx",
            "status=-1",
            "status=70000",
            "grpc=ok",
            "grpc=-2",
            "latency>fast",
            "latency>10m",
            "latency>-1ms",
            "latency>inf",
            "latency>nan",
            "latency>ms",
            "status==500",
        ] {
            assert!(
                matches!(error(expr), FilterErrorKind::BadValue { .. }),
                "{expr}"
            );
        }
        assert!(matches!(
            error("direction=up"),
            FilterErrorKind::BadValue { .. }
        ));
    }

    #[test]
    fn empty_values_are_errors() {
        for expr in [
            "authority~",
            "status>=",
            "latency<",
            "direction=",
            "!method=",
        ] {
            assert_eq!(error(expr), FilterErrorKind::EmptyValue, "{expr}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any text parses or is refused with the term it stopped at; what
        /// parses matches any event without panicking and shows as typed.
        #[test]
        fn any_text_parses_or_names_its_bad_term(
            text in "[ a-z!=~<>0-9.:*_\"-]{0,40}",
        ) {
            match text.parse::<FilterExpr>() {
                Ok(expr) => {
                    proptest::prop_assert_eq!(expr.to_string(), text.trim());
                    let _ = expr.matches_upstream(Direction::Inbound, "web-svc:80");
                    let _ = expr.matches_request("web", &event());
                }
                Err(err) => proptest::prop_assert!(text.contains(err.term.as_str())),
            }
        }

        /// Any query string gives a filter or a one-line reason naming a
        /// term or parameter.
        #[test]
        fn any_query_gives_a_filter_or_a_reason(query in "[ -~]{0,60}") {
            if let Err(err) = FilterExpr::from_query(&query) {
                proptest::prop_assert!(!err.to_string().contains('\n'));
                proptest::prop_assert!(!err.term.is_empty());
            }
        }
    }
}
