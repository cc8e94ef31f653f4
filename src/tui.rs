//! The terminal UI, `meshtop attach`: sources (WebSocket connections to
//! sidecars) feed a model that merges their messages; views draw the model.
//!
//! - [`source`]: targets, connections with reconnect and backoff, the feed.
//! - [`model`]: merged upstream stats, routes, errors, tap and sidecars,
//!   and the edges (who calls whom) computed from them.
//! - [`keys`]: every key binding, its context and help text, in one table.
//! - [`input`]: the UI state and key handling (no terminal needed).
//! - [`format`]: how figures read: units, headers, row cells, `--headless`.
//! - [`inspect`]: one request in words: reasons, error explanations, the
//!   equivalent `curl`/`grpcurl`, the clipboard escape.
//! - [`views`]: widgets that draw the model.
//! - [`replay`]: feeding a recording at its recorded pace.
//! - [`app`]: the attach command: the terminal loop, `--headless`, `--json`.

pub mod app;
pub mod format;
pub mod input;
pub mod inspect;
pub mod keys;
pub mod model;
pub mod replay;
pub mod source;
pub mod views;
