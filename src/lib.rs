//! meshtop: live observability for microservices without a service mesh.
//!
//! - [`proxy`]: the sidecar. Listeners accept connections, find their
//!   original destination, detect the protocol and forward HTTP/1.1, HTTP/2,
//!   gRPC and opaque TCP/TLS unchanged, recording every request.
//! - [`schema`]: the one definition of every message on the wire and in
//!   recordings: types, enum names, the fast encoder, the decoder.
//! - [`telemetry`]: the records the proxy emits, aggregates, metrics and the
//!   admin server.
//! - [`filter`]: the filter language, one for the sidecar and the UI.
//! - [`tui`]: `meshtop attach`, the terminal UI over one or many sidecars.
//! - [`recording`]: recordings of sessions: the file format, writing, reading.
//! - [`demo`]: `meshtop demo`, emojivoto with a sidecar per service.
//! - [`init`]: `meshtop init`, the pod's iptables rules that redirect to the sidecar.
//! - [`netns`]: pods made of network namespaces, for `demo --netns` and tests.
//! - [`inject`]: `meshtop inject`, meshtop's init container and sidecar in manifests.
//! - [`cli`]: the `meshtop` command line.
//!
//! Two words are kept apart throughout: a *record* is the facts of one
//! finished request or connection, as the proxy emits them
//! ([`telemetry::record`]); a *recording* is a file of a session's messages
//! ([`recording`]).

#![forbid(unsafe_code)]

pub mod cli;
pub mod demo;
pub mod filter;
pub mod init;
pub mod inject;
pub mod netns;
pub mod proxy;
pub mod recording;
pub mod schema;
pub mod telemetry;
pub mod tui;
