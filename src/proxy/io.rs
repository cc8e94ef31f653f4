//! Stream adapters: a boxed stream type for downstream connections (TCP or a
//! tunnel inside an HTTP CONNECT), replaying bytes read during detection, and
//! counting what an opaque tunnel carries.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::stall::Activity;

/// Any bidirectional byte stream a connection can arrive on.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

pub type BoxIo = Box<dyn Io>;

/// A stream whose first bytes were already read (to detect the protocol) and
/// are handed out again before anything else.
pub struct Prefixed<I> {
    prefix: Bytes,
    inner: I,
}

impl<I> Prefixed<I> {
    pub fn new(prefix: Bytes, inner: I) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts the bytes read from and written to a stream, and remembers whether
/// the stream itself failed, so a broken tunnel can be blamed on the right side.
pub struct Metered<I> {
    inner: I,
    pub read: u64,
    pub written: u64,
    pub failed: bool,
    /// Told of every byte read, for an idle timeout.
    activity: Option<Arc<Activity>>,
    /// Released with the first byte read.
    until_read: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<I> Metered<I> {
    pub fn new(inner: I) -> Self {
        Metered {
            inner,
            read: 0,
            written: 0,
            failed: false,
            activity: None,
            until_read: None,
        }
    }

    /// Holds `permit` until the first byte is read.
    pub fn holding_until_read(mut self, permit: Option<tokio::sync::OwnedSemaphorePermit>) -> Self {
        self.until_read = permit;
        self
    }

    /// Tells `activity` whenever bytes are read.
    pub fn watched(mut self, activity: Arc<Activity>) -> Self {
        self.activity = Some(activity);
        self
    }

    fn note<T>(&mut self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(_)) = &result {
            self.failed = true;
        }
        result
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Metered<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let n = buf.filled().len() - before;
            self.read += n as u64;
            if n > 0 {
                self.until_read = None;
                if let Some(activity) = &self.activity {
                    activity.touch();
                }
            }
        }
        self.note(result)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Metered<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.written += n as u64;
        }
        self.note(result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        // A peer that already went away cannot be shut down; that is not a
        // failure of the tunnel.
        if let Poll::Ready(Err(err)) = &result
            && err.kind() == io::ErrorKind::NotConnected
        {
            return Poll::Ready(Ok(()));
        }
        self.note(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn prefixed_replays_the_prefix_then_reads_the_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b" world").await.expect("duplex write");
        drop(a);
        let mut stream = Prefixed::new(Bytes::from_static(b"hello"), b);
        let mut out = String::new();
        stream.read_to_string(&mut out).await.expect("duplex read");
        assert_eq!(out, "hello world");
    }

    #[tokio::test]
    async fn metered_counts_both_ways() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut metered = Metered::new(a);
        metered.write_all(b"abc").await.expect("write");
        b.write_all(b"hello").await.expect("write");
        let mut buf = [0u8; 5];
        metered.read_exact(&mut buf).await.expect("read");
        assert_eq!(
            (metered.read, metered.written, metered.failed),
            (5, 3, false)
        );
    }
}
