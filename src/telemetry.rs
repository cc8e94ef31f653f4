//! What the sidecar knows about the traffic it carries: the per-request and
//! per-connection records, and the admin server that exposes them.

pub mod admin;
pub mod record;

pub use record::{
    Direction, ErrorKind, HttpProtocol, Record, RecordReceiver, Recorder, RequestRecord,
    TcpProtocol, TcpRecord, is_failure,
};
