//! Progress timeouts: an exchange in which nothing moves for a while is
//! ended, so that silent clients cannot hold connections (and upstream
//! connections, and memory) for good. `--idle-timeout` applies to opaque
//! tunnels, `--body-timeout` to request and response bodies; both measure
//! the time since the last byte moved, not the exchange's length, so a
//! long download or a quiet database connection that still moves data is
//! never cut.
//!
//! The timer is armed lazily: progress only notes the time, and the timer
//! is reset only when it fires early, so a busy stream costs a clock read
//! per chunk and no timer-wheel work.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The time since the last progress of one stream, and its timeout.
pub struct Stall {
    timeout: Duration,
    last: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Stall {
    /// A zero timeout never expires.
    pub fn new(timeout: Duration) -> Self {
        Stall {
            timeout,
            last: Instant::now(),
            timer: None,
        }
    }

    /// Something moved.
    pub fn progress(&mut self) {
        self.last = Instant::now();
    }

    /// Ready once nothing has moved for the timeout; to be polled while the
    /// stream is pending, so that the task is woken when it expires.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.timeout.is_zero() {
            return Poll::Pending;
        }
        loop {
            // A timeout too long to add (`--idle-timeout 100y`) never ends.
            let Some(deadline) = self.last.checked_add(self.timeout) else {
                return Poll::Pending;
            };
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() > deadline {
                timer.as_mut().reset(deadline);
            }
            ready!(timer.as_mut().poll(cx));
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            // Progress came after the timer was set: wait the rest.
            timer.as_mut().reset(deadline);
        }
    }

    /// Resolves once nothing has moved for the timeout.
    pub async fn expired(&mut self) {
        std::future::poll_fn(|cx| self.poll_expired(cx)).await
    }
}

/// The last progress of a tunnel, noted by its two streams as they move
/// bytes (see [`Metered`](super::io::Metered)) and watched by
/// [`Activity::idle`].
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    /// Milliseconds from `base` to the last progress.
    last: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            base: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Activity {
    pub fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `timeout` (zero: never).
    pub async fn idle(&self, timeout: Duration) {
        if timeout.is_zero() {
            return std::future::pending().await;
        }
        loop {
            let last = self.last.load(Ordering::Relaxed);
            let deadline = self
                .base
                .checked_add(Duration::from_millis(last))
                .and_then(|t| t.checked_add(timeout));
            let Some(deadline) = deadline else {
                return std::future::pending().await;
            };
            tokio::time::sleep_until(deadline).await;
            if self.last.load(Ordering::Relaxed) == last {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_only_after_a_full_timeout_without_progress() {
        let mut stall = Stall::new(Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(6)).await;
        stall.progress();
        let started = Instant::now();
        stall.expired().await;
        // Ten seconds after the progress, not after the start.
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_tunnel_is_idle_a_full_timeout_after_its_last_byte() {
        let activity = Activity::default();
        tokio::time::advance(Duration::from_secs(30)).await;
        activity.touch();
        let started = Instant::now();
        activity.idle(Duration::from_secs(60)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_and_huge_timeouts_never_expire() {
        for timeout in [Duration::ZERO, Duration::MAX] {
            let mut stall = Stall::new(timeout);
            let expired = tokio::time::timeout(Duration::from_secs(3600), stall.expired()).await;
            assert!(expired.is_err(), "{timeout:?}");
        }
    }
}
