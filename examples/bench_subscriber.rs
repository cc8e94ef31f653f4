//! The subscriber of the proxy comparison (`benches/run.sh`): reads every
//! message of a sidecar's `/events` stream and counts them, nothing more,
//! so that what the comparison measures is the sidecar's cost of serving a
//! subscriber, not the subscriber's own work (`meshtop record` also parses
//! each event and writes it to a file, on the core the load generator
//! needs).
//!
//! `bench_subscriber ADMIN_ADDR` (e.g. `127.0.0.1:15090`); prints
//! `connected` once subscribed, and on SIGTERM or SIGINT
//! `requests=N dropped=N messages=N`, where `dropped` adds up the `count`
//! of the sidecar's `dropped` notices.

mod common;

use std::process::ExitCode;

use futures_util::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio_tungstenite::tungstenite::Message;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(admin), None) = (args.next(), args.next()) else {
        eprintln!("usage: bench_subscriber ADMIN_ADDR");
        return ExitCode::from(2);
    };
    let runtime = match common::runtime("bench_subscriber") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(run(&admin)) {
        Ok(counts) => {
            println!("{counts}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bench_subscriber: {err}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Default)]
struct Counts {
    requests: u64,
    dropped: u64,
    messages: u64,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "requests={} dropped={} messages={}",
            self.requests, self.dropped, self.messages
        )
    }
}

async fn run(admin: &str) -> Result<Counts, String> {
    let mut term = signal(SignalKind::terminate()).map_err(|err| format!("signals: {err}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|err| format!("signals: {err}"))?;
    let url = format!("ws://{admin}/events");
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .map_err(|err| format!("cannot subscribe to {url}: {err}"))?;
    println!("connected");
    let mut counts = Counts::default();
    loop {
        let message = tokio::select! {
            message = ws.next() => message,
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(format!("the stream failed: {err}")),
        };
        counts.messages += 1;
        // The type is the first field of every message; a look at the
        // prefix is enough and keeps this reader cheap.
        if text.starts_with(r#"{"type":"request""#) {
            counts.requests += 1;
        } else if text.starts_with(r#"{"type":"dropped""#) {
            let count = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("count").and_then(|c| c.as_u64()))
                .unwrap_or(0);
            counts.dropped += count;
        }
    }
    Ok(counts)
}
