//! The admin server on the loopback admin address: health and readiness.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::proxy::BoundListener;

/// Who this sidecar is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SidecarInfo {
    pub name: String,
    pub namespace: Option<String>,
    pub version: String,
    /// Lets a client notice a restarted sidecar.
    pub started_at: SystemTime,
}

/// What the admin server knows about the proxy.
#[derive(Debug)]
pub struct AdminState {
    info: SidecarInfo,
    listeners: Vec<BoundListener>,
    /// True once every listener is bound and accepting, false again while
    /// draining so that Kubernetes stops sending new traffic.
    ready: AtomicBool,
}

impl AdminState {
    pub fn new(info: SidecarInfo, listeners: Vec<BoundListener>) -> Self {
        AdminState {
            info,
            listeners,
            ready: AtomicBool::new(false),
        }
    }

    pub fn info(&self) -> &SidecarInfo {
        &self.info
    }

    pub fn listeners(&self) -> &[BoundListener] {
        &self.listeners
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Serves the admin endpoints until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, shutdown: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, "admin accept failed");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req)) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = conn => if let Err(err) = result {
                    debug!(error = %err, %peer, "admin connection ended with an error");
                },
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

fn route(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") if state.is_ready() => text(StatusCode::OK, "ready"),
        (&Method::GET, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready"),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
