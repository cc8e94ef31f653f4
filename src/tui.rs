//! The terminal UI, `meshtop attach`: sources (WebSocket connections to
//! sidecars) feed a model that merges their messages; views draw the model.
//!
//! - [`source`]: targets, connections with reconnect and backoff, the feed.
//! - [`filter`]: filter expressions (`--filter`, `/`).
//! - [`model`]: merged upstream stats, routes, errors, tap and sidecars.

pub mod filter;
pub mod model;
pub mod source;
