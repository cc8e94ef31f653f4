//! The web service of the demo: emojivoto's REST API over HTTP/1.1, calling
//! emoji-svc and voting-svc over gRPC through its sidecar.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use super::proto::emoji_service_client::EmojiServiceClient;
use super::proto::voting_service_client::VotingServiceClient;
use super::proto::{
    FindByShortcodeRequest, ListAllEmojiRequest, ResultsRequest, VoteRequest, VoteResponse,
};
use super::{Dialer, EMOJI_AUTHORITY, VOTING_AUTHORITY};
use crate::filter::form_pairs;

/// web's gRPC clients. They dial web's sidecar (outbound), or with
/// `--netns` the other pods (through the sidecar by the pod's rules), and
/// name the in-cluster services as `:authority`, as the real web does.
#[derive(Clone)]
pub struct Clients {
    emoji: EmojiServiceClient<Channel>,
    voting: Channel,
}

fn channel(addr: SocketAddr, authority: &str, dialer: Dialer) -> Channel {
    let origin: http::Uri = format!("http://{authority}")
        .parse()
        .expect("the demo's authorities are valid URIs");
    let connector = tower::service_fn(move |_: http::Uri| {
        let dialer = dialer.clone();
        async move { dialer.connect(addr).await.map(TokioIo::new) }
    });
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid endpoint")
        .origin(origin)
        .connect_with_connector_lazy(connector)
}

impl Clients {
    /// Clients that reach emoji-svc at `emoji` and voting-svc at `voting`.
    pub fn new(emoji: SocketAddr, voting: SocketAddr, dialer: Dialer) -> Self {
        Clients {
            emoji: EmojiServiceClient::new(channel(emoji, EMOJI_AUTHORITY, dialer.clone())),
            voting: channel(voting, VOTING_AUTHORITY, dialer),
        }
    }

    /// Calls `Vote<Name>` for an emoji of the demo's list.
    async fn vote(&self, rpc: &str) -> Result<(), tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(self.voting.clone());
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("voting-svc not ready: {e}")))?;
        let path =
            http::uri::PathAndQuery::try_from(format!("/emojivoto.v1.VotingService/Vote{rpc}"))
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<VoteRequest, VoteResponse>::default();
        grpc.unary(tonic::Request::new(VoteRequest {}), path, codec)
            .await
            .map(|_| ())
    }
}

pub async fn serve(listener: TcpListener, clients: Clients, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            _ = shutdown.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let clients = clients.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let clients = clients.clone();
                async move { Ok::<_, Infallible>(route(&clients, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

async fn route(clients: &Clients, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let query = req.uri().query().unwrap_or("").to_owned();
    match req.uri().path() {
        "/api/list" => list(clients).await,
        "/api/vote" => {
            let choice = form_pairs(&query)
                .find(|(k, _)| k == "choice")
                .map(|(_, v)| v)
                .unwrap_or_default();
            vote(clients, &choice).await
        }
        "/api/leaderboard" => leaderboard(clients).await,
        "/" | "/index.html" => html(INDEX),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn list(clients: &Clients) -> Response<Full<Bytes>> {
    match clients.emoji.clone().list_all(ListAllEmojiRequest {}).await {
        Ok(resp) => {
            let list: Vec<_> = resp
                .into_inner()
                .list
                .into_iter()
                .map(|e| json!({"shortcode": e.shortcode, "unicode": e.unicode}))
                .collect();
            ok_json(&json!(list))
        }
        Err(status) => error(StatusCode::INTERNAL_SERVER_ERROR, status.message()),
    }
}

async fn vote(clients: &Clients, choice: &str) -> Response<Full<Bytes>> {
    if choice.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "emoji choice is required: /api/vote?choice=:shortcode:",
        );
    }
    let found = clients
        .emoji
        .clone()
        .find_by_shortcode(FindByShortcodeRequest {
            shortcode: choice.into(),
        })
        .await;
    let emoji = match found {
        Ok(resp) => resp.into_inner().emoji,
        Err(status) => return error(StatusCode::INTERNAL_SERVER_ERROR, status.message()),
    };
    let Some(info) = emoji.and_then(|e| super::emoji_by_shortcode(&e.shortcode)) else {
        return error(StatusCode::BAD_REQUEST, &format!("unknown emoji {choice}"));
    };
    match clients.vote(info.rpc).await {
        Ok(()) => ok_json(&json!({})),
        Err(status) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("voting for {choice} failed: {}", status.message()),
        ),
    }
}

async fn leaderboard(clients: &Clients) -> Response<Full<Bytes>> {
    let results = match VotingServiceClient::new(clients.voting.clone())
        .results(ResultsRequest {})
        .await
    {
        Ok(resp) => resp.into_inner().results,
        Err(status) => return error(StatusCode::INTERNAL_SERVER_ERROR, status.message()),
    };
    let mut board = Vec::with_capacity(results.len());
    for result in results {
        let found = clients
            .emoji
            .clone()
            .find_by_shortcode(FindByShortcodeRequest {
                shortcode: result.shortcode.clone(),
            })
            .await;
        if let Ok(Some(emoji)) = found.map(|r| r.into_inner().emoji) {
            board.push(json!({"shortcode": emoji.shortcode, "unicode": emoji.unicode, "votes": result.votes}));
        }
    }
    ok_json(&json!(board))
}

fn ok_json(value: &serde_json::Value) -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, value)
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({"error": message}))
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn html(body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

const INDEX: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Emoji Vote (meshtop demo)</title></head>
<body>
<h1>🗳 Emoji Vote</h1>
<p>Pick your favourite emoji. (Doughnut votes fail, on purpose.)</p>
<div id="emojis"></div>
<h2>Leaderboard</h2>
<ol id="board"></ol>
<script>
async function load() {
  const list = await (await fetch('/api/list')).json();
  document.getElementById('emojis').innerHTML = list.map(e =>
    `<button title="${e.shortcode}" onclick="vote('${e.shortcode}')">${e.unicode}</button>`).join(' ');
  board();
}
async function vote(code) { await fetch('/api/vote?choice=' + encodeURIComponent(code)); board(); }
async function board() {
  const rows = await (await fetch('/api/leaderboard')).json();
  document.getElementById('board').innerHTML = rows.map(r => `<li>${r.unicode} ${r.votes}</li>`).join('');
}
load();
</script>
</body></html>
"#;
