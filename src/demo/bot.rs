//! The vote bot: lists the emojis and votes, like emojivoto's vote-bot,
//! through its own sidecar, at a steady rate.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::{Dialer, EMOJIS, WEB_AUTHORITY};

/// Share of votes for `:doughnut:` (which always fail).
const DOUGHNUT_SHARE: f64 = 0.15;

/// Sends `GET /api/list` then `GET /api/vote?choice=X`, over and over, at
/// `rate` requests per second, to `web` (vote-bot's outbound listener, or
/// with `--netns` web's pod).
pub async fn run(web: SocketAddr, dialer: Dialer, rate: f64, shutdown: CancellationToken) {
    let period = Duration::from_secs_f64(1.0 / rate.clamp(0.01, 10_000.0));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sender: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> = None;
    let mut list_next = true;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let path = if list_next {
            "/api/list".to_owned()
        } else {
            let choice = if fastrand::f64() < DOUGHNUT_SHARE {
                ":doughnut:"
            } else {
                EMOJIS[fastrand::usize(..EMOJIS.len())].shortcode
            };
            let encoded: String =
                percent_encoding::utf8_percent_encode(choice, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            format!("/api/vote?choice={encoded}")
        };
        list_next = !list_next;
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            sender = connect(&dialer, web).await;
        }
        let Some(client) = sender.as_mut() else {
            continue;
        };
        if client.ready().await.is_err() {
            sender = None;
            continue;
        }
        let Ok(request) = http::Request::get(path)
            .header("host", WEB_AUTHORITY)
            .body(Empty::new())
        else {
            continue;
        };
        match client.send_request(request).await {
            Ok(resp) => {
                let _ = resp.into_body().collect().await;
            }
            Err(_) => sender = None,
        }
    }
}

async fn connect(
    dialer: &Dialer,
    addr: SocketAddr,
) -> Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let stream = dialer.connect(addr).await.ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}
