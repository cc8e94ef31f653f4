//! The fixed-rate load generator of the proxy comparison
//! (`benches/run.sh`): sends requests at an even rate, spread over its
//! connections, and prints the latency percentiles.
//!
//! `bench_load h1|h2 ADDR CONNECTIONS STREAMS RATE SECONDS`
//!
//! h2load's `--rps` wakes every client on the same timer tick, so 50
//! clients at 100 req/s each send 50 requests at once every 10 ms and the
//! latency measured is mostly the queue of that burst. Here request `k` is
//! due at `k / RATE` seconds and goes to the next lane in turn (a lane is a
//! connection for HTTP/1.1, a stream slot on a shared connection for h2);
//! tokio's timer has a 1 ms tick, so at 5,000 req/s five requests leave
//! together each millisecond, on five different connections.
//!
//! A request's latency runs from when it was sent to the end of its
//! response body. A lane sends its next request when the previous one has
//! finished and it is due; the achieved rate is printed so a run that could
//! not keep up shows it. One second of warm-up is not counted.
//!
//! Prints one line: `requests=N errors=N p50_us=N p90_us=N p99_us=N
//! p999_us=N max_us=N`.

mod common;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::Instant;

const WARM_UP: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Http1,
    Http2,
}

struct Config {
    proto: Proto,
    addr: SocketAddr,
    connections: usize,
    streams: usize,
    rate: f64,
    duration: Duration,
}

/// What a lane sends its requests with: its own HTTP/1.1 connection, or a
/// handle on a shared h2 connection.
enum Sender {
    Http1(http1::SendRequest<Empty<Bytes>>),
    Http2(http2::SendRequest<Empty<Bytes>>),
}

struct Tally {
    errors: u64,
    latency: Option<Histogram<u64>>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse(&args) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("bench_load: {err}");
            eprintln!("usage: bench_load h1|h2 ADDR CONNECTIONS STREAMS RATE SECONDS");
            return ExitCode::from(2);
        }
    };
    let runtime = match common::runtime("bench_load") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(config)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bench_load: {err}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> Result<Config, String> {
    let [proto, addr, connections, streams, rate, seconds] = args else {
        return Err(format!("expected 6 arguments, got {}", args.len()));
    };
    let proto = match proto.as_str() {
        "h1" => Proto::Http1,
        "h2" => Proto::Http2,
        other => return Err(format!("unknown protocol '{other}': h1 or h2")),
    };
    let number = |what: &str, s: &str| -> Result<f64, String> {
        s.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n > 0.0)
            .ok_or_else(|| format!("invalid {what} '{s}': a positive number"))
    };
    let config = Config {
        proto,
        addr: addr
            .parse()
            .map_err(|err| format!("invalid address '{addr}': {err}"))?,
        connections: number("connections", connections)? as usize,
        streams: number("streams", streams)? as usize,
        rate: number("rate", rate)?,
        duration: Duration::from_secs_f64(number("seconds", seconds)?),
    };
    if config.proto == Proto::Http1 && config.streams != 1 {
        return Err("HTTP/1.1 has one stream per connection".into());
    }
    Ok(config)
}

async fn run(config: Config) -> Result<String, String> {
    let mut senders = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        senders.push(connect(&config).await?);
    }
    let lanes = config.connections * config.streams;
    // Lane l sends requests l, l + lanes, l + 2·lanes, …, on connection
    // l mod connections, so consecutive requests use different connections.
    let lane_senders: Vec<Sender> = match config.proto {
        Proto::Http1 => senders,
        Proto::Http2 => {
            let shared: Vec<_> = senders
                .into_iter()
                .filter_map(|sender| match sender {
                    Sender::Http2(h2) => Some(h2),
                    Sender::Http1(_) => None,
                })
                .collect();
            (0..lanes)
                .map(|lane| Sender::Http2(shared[lane % shared.len()].clone()))
                .collect()
        }
    };
    let tally = Rc::new(RefCell::new(Tally {
        errors: 0,
        latency: Some(
            Histogram::new_with_bounds(1, 60_000_000, 3)
                .map_err(|err| format!("cannot make a histogram: {err}"))?,
        ),
    }));
    let start = Instant::now() + Duration::from_millis(10);
    let counted_from = start + WARM_UP;
    let end = counted_from + config.duration;
    let interval = Duration::from_secs_f64(1.0 / config.rate);
    let authority = config.addr.to_string();
    let mut tasks = Vec::with_capacity(lanes);
    for (lane, mut sender) in lane_senders.into_iter().enumerate() {
        let tally = tally.clone();
        let authority = authority.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let mut k = lane as u32;
            loop {
                let due = start + interval * k;
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let sent = Instant::now();
                let ok = send(&mut sender, &authority).await;
                let done = Instant::now();
                if sent >= counted_from {
                    let mut tally = tally.borrow_mut();
                    if ok {
                        let micros = (done - sent).as_micros().max(1) as u64;
                        if let Some(h) = tally.latency.as_mut() {
                            let _ = h.record(micros);
                        }
                    } else {
                        tally.errors += 1;
                    }
                }
                k += lanes as u32;
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|err| format!("a lane failed: {err}"))?;
    }
    let tally = tally.borrow();
    let Some(h) = tally.latency.as_ref() else {
        return Err("no histogram".into());
    };
    Ok(format!(
        "requests={} errors={} p50_us={} p90_us={} p99_us={} p999_us={} max_us={}",
        h.len(),
        tally.errors,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
    ))
}

async fn connect(config: &Config) -> Result<Sender, String> {
    let stream = TcpStream::connect(config.addr)
        .await
        .map_err(|err| format!("cannot connect to {}: {err}", config.addr))?;
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    match config.proto {
        Proto::Http1 => {
            let (sender, conn) = http1::handshake(io)
                .await
                .map_err(|err| format!("HTTP/1.1 handshake failed: {err}"))?;
            tokio::task::spawn_local(async move {
                let _ = conn.await;
            });
            Ok(Sender::Http1(sender))
        }
        Proto::Http2 => {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .map_err(|err| format!("h2 handshake failed: {err}"))?;
            tokio::task::spawn_local(async move {
                let _ = conn.await;
            });
            Ok(Sender::Http2(sender))
        }
    }
}

/// Sends one GET and reads the response to its end; `false` on any failure
/// or a status other than 200.
async fn send(sender: &mut Sender, authority: &str) -> bool {
    let resp = match sender {
        Sender::Http1(h1) => {
            // Origin form with a Host header, as HTTP/1.1 clients send it.
            let Ok(req) = Request::get("/")
                .header(http::header::HOST, authority)
                .body(Empty::<Bytes>::new())
            else {
                return false;
            };
            if h1.ready().await.is_err() {
                return false;
            }
            h1.send_request(req).await
        }
        Sender::Http2(h2) => {
            let Ok(req) = Request::get(format!("http://{authority}/")).body(Empty::<Bytes>::new())
            else {
                return false;
            };
            h2.send_request(req).await
        }
    };
    match resp {
        Ok(resp) if resp.status() == StatusCode::OK => resp.into_body().collect().await.is_ok(),
        _ => false,
    }
}
