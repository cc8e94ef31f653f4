//! `meshtop demo`: an emojivoto-compatible application in this process,
//! every service with its own meshtop sidecar, and the UI attached to them.
//!
//! - [`services`]: emoji-svc and voting-svc (gRPC, tonic).
//! - [`web`]: the web service (HTTP/1.1 REST) and its gRPC clients.
//! - [`bot`]: the vote bot.
//! - [`pods`]: `--netns`, every service in a network-namespace pod of its
//!   own with `meshtop init` and a transparent sidecar.
//!
//! Topology, as the pods of the real application: vote-bot → its sidecar
//! (outbound) → web's sidecar (inbound) → web → web's sidecar (outbound) →
//! emoji's / voting's sidecars (inbound) → emoji-svc / voting-svc. The
//! in-cluster names (`web-svc.emojivoto:80`, …) are the authorities, so the
//! UI looks as it would against a cluster.

pub mod bot;
pub mod pods;
pub mod services;
pub mod web;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::netns::Namespace;
use crate::proxy::{BindError, Dest, ListenerConfig, Proxy, ProxyConfig};
use crate::telemetry::Direction;

/// The generated gRPC code of the emojivoto services.
pub mod proto {
    tonic::include_proto!("emojivoto.v1");
}

pub const NAMESPACE: &str = "emojivoto";
pub const WEB_AUTHORITY: &str = "web-svc.emojivoto:80";
pub const EMOJI_AUTHORITY: &str = "emoji-svc.emojivoto:8080";
pub const VOTING_AUTHORITY: &str = "voting-svc.emojivoto:8080";

/// One emoji of the demo: shortcode, the character, and the suffix of its
/// `Vote<Name>` rpc.
pub struct EmojiInfo {
    pub shortcode: &'static str,
    pub unicode: &'static str,
    pub rpc: &'static str,
}

/// The demo's emojis (a subset of emojivoto's, with the same shortcodes and
/// rpc names).
pub const EMOJIS: [EmojiInfo; 22] = [
    EmojiInfo {
        shortcode: ":joy:",
        unicode: "😂",
        rpc: "Joy",
    },
    EmojiInfo {
        shortcode: ":sunglasses:",
        unicode: "😎",
        rpc: "Sunglasses",
    },
    EmojiInfo {
        shortcode: ":relaxed:",
        unicode: "☺️",
        rpc: "Relaxed",
    },
    EmojiInfo {
        shortcode: ":ghost:",
        unicode: "👻",
        rpc: "Ghost",
    },
    EmojiInfo {
        shortcode: ":nerd_face:",
        unicode: "🤓",
        rpc: "NerdFace",
    },
    EmojiInfo {
        shortcode: ":dog:",
        unicode: "🐶",
        rpc: "Dog",
    },
    EmojiInfo {
        shortcode: ":pig:",
        unicode: "🐷",
        rpc: "Pig",
    },
    EmojiInfo {
        shortcode: ":rainbow:",
        unicode: "🌈",
        rpc: "Rainbow",
    },
    EmojiInfo {
        shortcode: ":thumbsup:",
        unicode: "👍",
        rpc: "Thumbsup",
    },
    EmojiInfo {
        shortcode: ":clap:",
        unicode: "👏",
        rpc: "Clap",
    },
    EmojiInfo {
        shortcode: ":pizza:",
        unicode: "🍕",
        rpc: "Pizza",
    },
    EmojiInfo {
        shortcode: ":taco:",
        unicode: "🌮",
        rpc: "Taco",
    },
    EmojiInfo {
        shortcode: ":burrito:",
        unicode: "🌯",
        rpc: "Burrito",
    },
    EmojiInfo {
        shortcode: ":ramen:",
        unicode: "🍜",
        rpc: "Ramen",
    },
    EmojiInfo {
        shortcode: ":doughnut:",
        unicode: "🍩",
        rpc: "Doughnut",
    },
    EmojiInfo {
        shortcode: ":champagne:",
        unicode: "🍾",
        rpc: "Champagne",
    },
    EmojiInfo {
        shortcode: ":beer:",
        unicode: "🍺",
        rpc: "Beer",
    },
    EmojiInfo {
        shortcode: ":rocket:",
        unicode: "🚀",
        rpc: "Rocket",
    },
    EmojiInfo {
        shortcode: ":fire:",
        unicode: "🔥",
        rpc: "Fire",
    },
    EmojiInfo {
        shortcode: ":tada:",
        unicode: "🎉",
        rpc: "Tada",
    },
    EmojiInfo {
        shortcode: ":trophy:",
        unicode: "🏆",
        rpc: "Trophy",
    },
    EmojiInfo {
        shortcode: ":100:",
        unicode: "💯",
        rpc: "100",
    },
];

pub fn emoji_by_shortcode(shortcode: &str) -> Option<&'static EmojiInfo> {
    EMOJIS.iter().find(|e| e.shortcode == shortcode)
}

/// Where a demo service's connections start: in this process's network
/// namespace, or inside the service's pod (`--netns`), where the pod's
/// iptables rules send them through the pod's sidecar.
#[derive(Clone, Debug)]
pub enum Dialer {
    Local,
    Pod(Namespace),
}

impl Dialer {
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = match self {
            Dialer::Local => TcpStream::connect(addr).await?,
            Dialer::Pod(netns) => netns.connect(addr).await?,
        };
        // An RPC's frames go out in several small writes; Nagle's algorithm
        // would hold the later ones for the peer's delayed ACK (~40 ms).
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// How the demo application behaves.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Requests per second the vote bot sends (list and vote alike).
    pub rate: f64,
    /// Share of votes (any emoji) that fail at random, 0–1, on top of the
    /// doughnut votes that always fail.
    pub failure_rate: f64,
    /// Artificial latency of every voting-svc call.
    pub delay: Duration,
    /// The first of the four sidecars' admin ports (vote-bot, web, emoji,
    /// voting); 0 picks free ports.
    pub admin_base: u16,
}

/// The running demo: the sidecars' admin addresses, in the order vote-bot,
/// web, emoji, voting.
pub struct Demo {
    pub admins: Vec<(String, SocketAddr)>,
    /// The web service's own address (behind its sidecar).
    pub web: SocketAddr,
    /// Where `web-svc.emojivoto:80` goes: web's sidecar inbound listener,
    /// or with `--netns` web's pod (whose rules send it to the sidecar).
    pub web_sidecar: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot listen for the demo services: {0}")]
    Listen(#[from] std::io::Error),
    #[error("{0}")]
    Pods(String),
}

fn sidecar_config(name: &str, admin: SocketAddr, listeners: Vec<ListenerConfig>) -> ProxyConfig {
    let mut config = ProxyConfig::new(name, listeners);
    config.admin = admin;
    config.namespace = Some(NAMESPACE.into());
    // The demo's clients keep their connections open; stopping need not wait.
    config.drain_timeout = Duration::from_millis(500);
    // Every demo "pod" is this host's loopback: that is where its calls
    // come from, not the host's interfaces.
    config.pod_ips = vec![std::net::IpAddr::from([127, 0, 0, 1])];
    config
}

fn listener(direction: Direction, target: SocketAddr) -> ListenerConfig {
    ListenerConfig {
        direction,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        target: Some(Dest::Addr(target)),
    }
}

fn admin_addr(base: u16, offset: u16) -> SocketAddr {
    let port = if base == 0 {
        0
    } else {
        base.saturating_add(offset)
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The application, ready to run: the services' listeners, web's clients,
/// and where and how the vote bot connects.
struct App {
    emoji: TcpListener,
    voting: TcpListener,
    web: TcpListener,
    web_clients: web::Clients,
    bot_target: SocketAddr,
    bot_dialer: Dialer,
}

/// Runs emoji-svc, voting-svc, web and the vote bot until `shutdown`.
fn spawn_app(app: App, config: &DemoConfig, shutdown: &CancellationToken) {
    tokio::spawn(services::serve_emoji(app.emoji, shutdown.clone()));
    let behaviour = services::VotingBehaviour {
        failure_rate: config.failure_rate,
        delay: config.delay,
    };
    tokio::spawn(services::serve_voting(
        app.voting,
        behaviour,
        shutdown.clone(),
    ));
    tokio::spawn(web::serve(app.web, app.web_clients, shutdown.clone()));
    tokio::spawn(bot::run(
        app.bot_target,
        app.bot_dialer,
        config.rate,
        shutdown.clone(),
    ));
}

/// Starts the services, their sidecars and the vote bot; everything stops
/// when `shutdown` is cancelled.
pub async fn start(config: &DemoConfig, shutdown: &CancellationToken) -> Result<Demo, DemoError> {
    let emoji_listener = TcpListener::bind("127.0.0.1:0").await?;
    let voting_listener = TcpListener::bind("127.0.0.1:0").await?;
    let web_listener = TcpListener::bind("127.0.0.1:0").await?;
    let emoji_app = emoji_listener.local_addr()?;
    let voting_app = voting_listener.local_addr()?;
    let web_app = web_listener.local_addr()?;

    let emoji = Proxy::bind(sidecar_config(
        "emoji",
        admin_addr(config.admin_base, 2),
        vec![listener(Direction::Inbound, emoji_app)],
    ))
    .await?;
    let voting = Proxy::bind(sidecar_config(
        "voting",
        admin_addr(config.admin_base, 3),
        vec![listener(Direction::Inbound, voting_app)],
    ))
    .await?;
    let emoji_in = emoji.listeners()[0].addr;
    let voting_in = voting.listeners()[0].addr;
    let web = Proxy::bind(sidecar_config(
        "web",
        admin_addr(config.admin_base, 1),
        vec![
            listener(Direction::Inbound, web_app),
            listener(Direction::Outbound, emoji_in),
            listener(Direction::Outbound, voting_in),
        ],
    ))
    .await?;
    let web_in = web.listeners()[0].addr;
    let web_to_emoji = web.listeners()[1].addr;
    let web_to_voting = web.listeners()[2].addr;
    let bot = Proxy::bind(sidecar_config(
        "vote-bot",
        admin_addr(config.admin_base, 0),
        vec![listener(Direction::Outbound, web_in)],
    ))
    .await?;
    let bot_out = bot.listeners()[0].addr;

    let admins = [
        ("vote-bot", &bot),
        ("web", &web),
        ("emoji", &emoji),
        ("voting", &voting),
    ]
    .map(|(name, proxy)| (name.to_owned(), proxy.admin_addr()))
    .to_vec();
    for proxy in [bot, web, emoji, voting] {
        tokio::spawn(proxy.run(shutdown.clone()));
    }

    let app = App {
        emoji: emoji_listener,
        voting: voting_listener,
        web: web_listener,
        web_clients: web::Clients::new(web_to_emoji, web_to_voting, Dialer::Local),
        bot_target: bot_out,
        bot_dialer: Dialer::Local,
    };
    spawn_app(app, config, shutdown);
    Ok(Demo {
        admins,
        web: web_app,
        web_sidecar: web_in,
    })
}
