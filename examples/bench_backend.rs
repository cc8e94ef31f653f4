//! The backend of the proxy comparison (`benches/run.sh`): answers every
//! request, HTTP/1.1 or h2c with prior knowledge on the same port, with
//! `200 text/plain` "hello, world\n", so what is measured is the proxy in
//! front of it, not the work behind it.
//!
//! `cargo run --release --example bench_backend -- [LISTEN]` (default
//! `127.0.0.1:0`); prints `listening on ADDR` once bound.
//!
//! One current-thread runtime: the script pins the backend to one core
//! (shared with the load generator), where a multi-thread runtime would also
//! have one worker but pay for cross-thread wake-ups; and every candidate
//! proxy talks to this same backend, so its cost is the same for all.

mod common;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

const BODY: &[u8] = b"hello, world\n";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    if args.next().is_some() {
        eprintln!("usage: bench_backend [LISTEN]");
        return ExitCode::from(2);
    }
    let addr: SocketAddr = match listen.parse() {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("bench_backend: invalid address '{listen}': {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match common::runtime("bench_backend") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(serve(addr)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench_backend: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|err| format!("cannot listen on {addr}: {err}"))?;
    let bound = listener
        .local_addr()
        .map_err(|err| format!("cannot read the bound address: {err}"))?;
    // The script waits for this line: it must not sit in a buffer.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {bound}")
        .and_then(|()| stdout.flush())
        .map_err(|err| format!("cannot write to stdout: {err}"))?;
    drop(stdout);

    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: the listener stays
                // open, and the load generator sees the failed connection.
                eprintln!("bench_backend: accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = builder
            .serve_connection(TokioIo::new(stream), service_fn(hello))
            .into_owned();
        tokio::spawn(async move {
            // A client that goes away mid-request is normal under load.
            let _ = conn.await;
        });
    }
}

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}
