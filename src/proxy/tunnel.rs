//! Opaque forwarding: bytes copied both ways until both sides are done (or
//! nothing moved for `--idle-timeout`), with half-closes passed on, and one
//! record per connection.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;

use super::conn::ConnCtx;
use super::io::{BoxIo, Metered};
use super::stall::Activity;
use crate::telemetry::{ErrorKind, Record, TcpRecord};

/// Copies between the client and the upstream until both directions end,
/// then emits `record` (which names the server) with what was carried.
/// `silent`, the permit of a client that has not sent a byte yet, goes with
/// its first byte.
pub async fn splice<U>(
    client: BoxIo,
    upstream: U,
    silent: Option<OwnedSemaphorePermit>,
    mut record: TcpRecord,
    started: Instant,
    ctx: &ConnCtx,
) where
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Arc::new(Activity::default());
    let mut client = Metered::new(client)
        .watched(activity.clone())
        .holding_until_read(silent);
    let mut upstream = Metered::new(upstream).watched(activity.clone());
    let copied = tokio::select! {
        result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match result {
            Ok(_) => None,
            Err(_) if upstream.failed => Some(ErrorKind::UpstreamReset),
            Err(_) => Some(ErrorKind::DownstreamReset),
        },
        () = activity.idle(ctx.shared.idle_timeout) => Some(ErrorKind::IdleTimeout),
        () = ctx.shared.cut_off.cancelled() => Some(ErrorKind::Shutdown),
    };
    record.error = copied;
    record.bytes_in = client.read;
    record.bytes_out = client.written;
    record.duration = started.elapsed();
    ctx.shared.recorder.record(Record::Tcp(record));
}

/// Records a connection that ended before it was spliced.
pub fn record_failed(ctx: &ConnCtx, mut record: TcpRecord, error: ErrorKind, started: Instant) {
    record.error = Some(error);
    record.duration = started.elapsed();
    ctx.shared.recorder.record(Record::Tcp(record));
}
