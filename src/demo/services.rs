//! emoji-svc and voting-svc: the gRPC services of the demo (tonic).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::EMOJIS;
use super::proto::emoji_service_server::{EmojiService, EmojiServiceServer};
use super::proto::voting_service_server::{VotingService, VotingServiceServer};
use super::proto::{
    Emoji, FindByShortcodeRequest, FindByShortcodeResponse, ListAllEmojiRequest,
    ListAllEmojiResponse, ResultsRequest, ResultsResponse, VoteRequest, VoteResponse, VotingResult,
};

fn emoji(info: &super::EmojiInfo) -> Emoji {
    Emoji {
        unicode: info.unicode.into(),
        shortcode: info.shortcode.into(),
    }
}

/// The emoji service: the list, and lookups by shortcode (an unknown one
/// answers OK with no emoji, as emojivoto does).
#[derive(Clone, Copy, Default)]
pub struct EmojiSvc;

#[tonic::async_trait]
impl EmojiService for EmojiSvc {
    async fn list_all(
        &self,
        _: Request<ListAllEmojiRequest>,
    ) -> Result<Response<ListAllEmojiResponse>, Status> {
        Ok(Response::new(ListAllEmojiResponse {
            list: EMOJIS.iter().map(emoji).collect(),
        }))
    }

    async fn find_by_shortcode(
        &self,
        request: Request<FindByShortcodeRequest>,
    ) -> Result<Response<FindByShortcodeResponse>, Status> {
        let shortcode = request.into_inner().shortcode;
        Ok(Response::new(FindByShortcodeResponse {
            emoji: super::emoji_by_shortcode(&shortcode).map(emoji),
        }))
    }
}

/// Accepted connections, without Nagle's delay (tonic sets it only on
/// listeners of its own).
fn incoming(
    listener: TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

pub async fn serve_emoji(listener: TcpListener, shutdown: CancellationToken) {
    let result = tonic::transport::Server::builder()
        .add_service(EmojiServiceServer::new(EmojiSvc))
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned())
        .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, "emoji-svc stopped");
    }
}

/// How voting-svc misbehaves on purpose.
#[derive(Clone, Copy, Debug)]
pub struct VotingBehaviour {
    /// Share of votes that fail at random (besides doughnut, which always does).
    pub failure_rate: f64,
    /// Added to every call.
    pub delay: Duration,
}

/// The voting service: votes kept in memory.
#[derive(Clone)]
pub struct VotingSvc {
    votes: Arc<Mutex<HashMap<&'static str, i32>>>,
    behaviour: VotingBehaviour,
}

impl VotingSvc {
    pub fn new(behaviour: VotingBehaviour) -> Self {
        VotingSvc {
            votes: Arc::default(),
            behaviour,
        }
    }

    async fn vote(&self, shortcode: &'static str) -> Result<Response<VoteResponse>, Status> {
        if !self.behaviour.delay.is_zero() {
            tokio::time::sleep(self.behaviour.delay).await;
        }
        // The deliberate failure of emojivoto: nobody may vote for doughnut.
        if shortcode == ":doughnut:" || fastrand::f64() < self.behaviour.failure_rate {
            return Err(Status::unknown("ERROR"));
        }
        let mut votes = self.votes.lock().unwrap_or_else(|p| p.into_inner());
        *votes.entry(shortcode).or_default() += 1;
        Ok(Response::new(VoteResponse {}))
    }
}

/// Implements `VotingService` with one `vote_<name>` per emoji.
macro_rules! voting_service {
    ($($method:ident => $shortcode:literal),* $(,)?) => {
        #[tonic::async_trait]
        impl VotingService for VotingSvc {
            $(
                async fn $method(&self, _: Request<VoteRequest>) -> Result<Response<VoteResponse>, Status> {
                    self.vote($shortcode).await
                }
            )*

            async fn results(&self, _: Request<ResultsRequest>) -> Result<Response<ResultsResponse>, Status> {
                if !self.behaviour.delay.is_zero() {
                    tokio::time::sleep(self.behaviour.delay).await;
                }
                let votes = self.votes.lock().unwrap_or_else(|p| p.into_inner());
                let mut results: Vec<VotingResult> = votes
                    .iter()
                    .map(|(shortcode, votes)| VotingResult { shortcode: (*shortcode).into(), votes: *votes })
                    .collect();
                results.sort_by(|a, b| b.votes.cmp(&a.votes).then_with(|| a.shortcode.cmp(&b.shortcode)));
                Ok(Response::new(ResultsResponse { results }))
            }
        }
    };
}

voting_service! {
    vote_joy => ":joy:",
    vote_sunglasses => ":sunglasses:",
    vote_relaxed => ":relaxed:",
    vote_ghost => ":ghost:",
    vote_nerd_face => ":nerd_face:",
    vote_dog => ":dog:",
    vote_pig => ":pig:",
    vote_rainbow => ":rainbow:",
    vote_thumbsup => ":thumbsup:",
    vote_clap => ":clap:",
    vote_pizza => ":pizza:",
    vote_taco => ":taco:",
    vote_burrito => ":burrito:",
    vote_ramen => ":ramen:",
    vote_doughnut => ":doughnut:",
    vote_champagne => ":champagne:",
    vote_beer => ":beer:",
    vote_rocket => ":rocket:",
    vote_fire => ":fire:",
    vote_tada => ":tada:",
    vote_trophy => ":trophy:",
    vote100 => ":100:",
}

pub async fn serve_voting(
    listener: TcpListener,
    behaviour: VotingBehaviour,
    shutdown: CancellationToken,
) {
    let result = tonic::transport::Server::builder()
        .add_service(VotingServiceServer::new(VotingSvc::new(behaviour)))
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned())
        .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, "voting-svc stopped");
    }
}
