//! The command line: argument types, their parsing, and running each
//! subcommand. Errors in arguments are one line and exit code 2.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use http::header::HeaderName;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::filter::FilterExpr;
use crate::proxy::{DEFAULT_INBOUND, DEFAULT_OUTBOUND, Dest, ListenerConfig, Proxy, ProxyConfig};
use crate::recording::{RecordingWriter, SourceInfo};
use crate::telemetry::Direction;
use crate::tui::app::{Output, ReplayHandle, SessionEnd, ShowError, ShowOptions, TableView, show};
use crate::tui::model::{GroupBy, Window};
use crate::tui::replay::{Control, Playback, Progress, Speed, play};
use crate::tui::source::{Target, feed, spawn_sources, subscription};

/// Exit code for bad arguments and for failing to start.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "meshtop",
    version,
    about = "Live observability for microservices, without a mesh"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar proxy: forward every connection unchanged and record every request
    #[command(after_help = EXAMPLES_PROXY)]
    Proxy(Box<ProxyArgs>),
    /// Attach to one or many sidecars and show their traffic live
    #[command(after_help = EXAMPLES_ATTACH)]
    Attach(AttachArgs),
    /// Record what one or many sidecars send to a file, without a UI
    #[command(after_help = EXAMPLES_RECORD)]
    Record(RecordArgs),
    /// Replay a recording in the same UI as attach
    #[command(after_help = EXAMPLES_REPLAY)]
    Replay(ReplayArgs),
    /// Run emojivoto with a sidecar per service, and attach to them
    #[command(after_help = EXAMPLES_DEMO)]
    Demo(DemoArgs),
    /// Add meshtop's init container and sidecar to the pods of Kubernetes manifests
    #[command(after_help = EXAMPLES_INJECT)]
    Inject(InjectArgs),
    /// Program the pod's iptables to redirect its TCP traffic to the sidecar (an init container)
    #[command(after_help = EXAMPLES_INIT)]
    Init(InitArgs),
}

const EXAMPLES_PROXY: &str = "\
Examples:
  meshtop proxy --inbound 127.0.0.1:8081=127.0.0.1:8080
      put a sidecar in front of a service on :8080
  meshtop proxy
      in a pod after `meshtop init`: inbound on :15006, outbound on :15001
  meshtop attach :15090
      then watch it";

const EXAMPLES_ATTACH: &str = "\
Examples:
  kubectl port-forward deploy/web 15090 & meshtop attach :15090
  meshtop attach :15090 :15091 --filter 'failed route~vote'
  meshtop attach :15090 --headless --duration 30s --window 1m
  meshtop attach :15090 --json --filter 'status>=500' | jq .path
  meshtop attach :15090 --record session.ndjson.zst
Filters: docs/filters.md";

const EXAMPLES_RECORD: &str = "\
Examples:
  meshtop record :15090 :15091 -o incident.ndjson.zst --duration 10m
  meshtop replay incident.ndjson.zst";

const EXAMPLES_REPLAY: &str = "\
Examples:
  meshtop replay incident.ndjson.zst
  meshtop replay incident.ndjson.zst --speed 4 --filter failed
  meshtop replay incident.ndjson.zst --headless --speed max";

const EXAMPLES_DEMO: &str = "\
Examples:
  meshtop demo
  meshtop demo --admin-base 0 --failure-rate 0.1
  meshtop demo --headless --duration 10s";

const EXAMPLES_INJECT: &str = "\
Examples:
  meshtop inject deploy.yml | kubectl apply -f -
  kubectl get deploy -o yaml | meshtop inject - | kubectl apply -f -";

const EXAMPLES_INIT: &str = "\
Examples:
  meshtop init --dry-run
      print the iptables rules without applying them
  meshtop init --dry-run --uninstall";

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The sidecar's user: its own connections are not redirected
    #[arg(long, value_name = "UID", default_value_t = 1337)]
    pub proxy_uid: u32,
    /// The sidecar's inbound listener port
    #[arg(long, value_name = "PORT", default_value_t = 15006)]
    pub inbound_port: u16,
    /// The sidecar's outbound listener port
    #[arg(long, value_name = "PORT", default_value_t = 15001)]
    pub outbound_port: u16,
    /// Inbound ports not redirected (the admin port 15090 never is)
    #[arg(long, value_name = "PORTS", default_value = "")]
    pub skip_inbound_ports: PortList,
    /// Outbound ports not redirected
    #[arg(long, value_name = "PORTS", default_value = "")]
    pub skip_outbound_ports: PortList,
    /// Destination subnets not redirected, e.g. 10.96.0.0/12,fd00::/8
    #[arg(long, value_name = "CIDRS", value_delimiter = ',')]
    pub skip_subnets: Vec<crate::init::Subnet>,
    /// Print the rules and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Remove exactly the rules meshtop init added
    #[arg(long)]
    pub uninstall: bool,
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// Manifests to read; - or nothing reads standard input
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The meshtop image for the init container and the sidecar
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// The user the sidecar runs as (its own traffic is not redirected)
    #[arg(long, value_name = "UID", default_value_t = 1337)]
    pub proxy_uid: u32,
    /// Inbound ports that bypass the sidecar
    #[arg(long, value_name = "PORTS", default_value = "")]
    pub skip_inbound_ports: PortList,
    /// Outbound ports that bypass the sidecar
    #[arg(long, value_name = "PORTS", default_value = "")]
    pub skip_outbound_ports: PortList,
    /// The sidecar's admin port
    #[arg(long, value_name = "PORT", default_value_t = 15090)]
    pub admin_port: u16,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Requests per second the vote bot sends
    #[arg(long, value_name = "N", default_value_t = 10.0)]
    pub rate: f64,
    /// Share of votes that fail at random (0-1), besides doughnut votes
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_share)]
    pub failure_rate: f64,
    /// Artificial latency added to every voting-svc call
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub delay: Duration,
    /// Admin port of the first sidecar (vote-bot); the others follow; 0 picks free ports
    #[arg(long, value_name = "PORT", default_value_t = 15090)]
    pub admin_base: u16,
    /// Exit after this long
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Also record the session to FILE
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Overwrite the --record file if it exists
    #[arg(long, requires = "record")]
    pub force: bool,
    /// Run every service in a network-namespace pod of its own, with `meshtop init` and a transparent sidecar (root)
    #[arg(long, conflicts_with = "admin_base")]
    pub netns: bool,
    #[command(flatten)]
    pub display: DisplayArgs,
}

fn parse_share(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| format!("invalid share '{s}': a number from 0 to 1"))
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub sources: SourceArgs,
    /// The recording to write (zstd-compressed when it ends in .zst)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Overwrite FILE if it exists
    #[arg(long)]
    pub force: bool,
    /// Stop after this long (else on Ctrl-C or SIGTERM)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

/// The sidecars a live command (attach, record) connects to.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Sidecars: ws://host:port/events, host:port or :port [default: 127.0.0.1:15090]
    #[arg(value_name = "TARGET")]
    pub targets: Vec<Target>,
    /// Bearer token sent to every sidecar (their --admin-token)
    #[arg(
        long,
        env = "MESHTOP_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

impl SourceArgs {
    /// The targets given, or the default sidecar.
    fn targets(&self) -> Vec<Target> {
        if self.targets.is_empty() {
            vec![DEFAULT_TARGET.parse().expect("the default target is valid")]
        } else {
            self.targets.clone()
        }
    }

    /// The token, unless empty.
    fn token(&self) -> Option<String> {
        self.token.clone().filter(|t| !t.is_empty())
    }
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A recording made with `attach --record` or `record`
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Playback speed: a factor from 0.25 to 64, or max
    #[arg(long, value_name = "X", default_value = "1")]
    pub speed: Speed,
    /// Start this far into the recording (what came before is applied at once)
    #[arg(long, value_name = "OFFSET", value_parser = parse_duration)]
    pub from: Option<Duration>,
    /// Stop this far into the recording
    #[arg(long, value_name = "OFFSET", value_parser = parse_duration)]
    pub to: Option<Duration>,
    #[command(flatten)]
    pub display: DisplayArgs,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Exit after this long
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Also write every message received to FILE (zstd-compressed when it ends in .zst)
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Overwrite the --record file if it exists
    #[arg(long, requires = "record")]
    pub force: bool,
    #[command(flatten)]
    pub display: DisplayArgs,
}

/// How the showing commands (attach, replay, demo) show what they receive.
#[derive(Debug, Args)]
pub struct DisplayArgs {
    /// No UI: print the upstream table as plain text every --interval, and on exit
    #[arg(long, conflicts_with = "json")]
    pub headless: bool,
    /// How often --headless prints the table
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration, requires = "headless")]
    pub interval: Duration,
    /// No UI: print every message received as a JSON line, with its "source"
    #[arg(long)]
    pub json: bool,
    /// Show only what matches, e.g. 'authority~voting status>=500' (the language: docs/filters.md, or `?` in the UI)
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<FilterExpr>,
    /// Window of rates and percentiles: 10s, 1m or 5m (`w` cycles in the UI)
    #[arg(long, value_name = "WINDOW", default_value = "1m", value_parser = parse_window)]
    pub window: Window,
    /// Rows of the Upstreams table (and of --headless): one per authority, route, sidecar, caller or status class (`b` cycles in the UI)
    #[arg(
        long,
        value_name = "GROUPING",
        value_enum,
        default_value = "authority",
        conflicts_with = "json"
    )]
    pub group_by: GroupByArg,
    /// Frames drawn per second
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=120))]
    pub fps: u32,
    /// The table --headless prints, or the view the UI starts on (not with --json) [default: upstreams]
    #[arg(long, value_enum, value_name = "VIEW")]
    pub view: Option<TableView>,
}

impl DisplayArgs {
    /// The output asked for; the UI needs a terminal, else one line and
    /// exit code 2.
    fn output(&self) -> Result<Output, CliError> {
        let view = self.view.unwrap_or_default();
        let output = if self.json {
            if self.view.is_some() {
                return Err(CliError::usage(
                    "--view chooses a table or a view, and --json prints events: use one of them",
                ));
            }
            Output::Json
        } else if self.headless {
            if view == TableView::Edges && self.group_by != GroupByArg::Authority {
                return Err(CliError::usage(
                    "--group-by groups the upstreams table, and --headless --view edges prints edges: use one of them",
                ));
            }
            Output::Headless {
                interval: Some(self.interval),
                view,
            }
        } else {
            Output::Tui {
                fps: self.fps,
                view,
            }
        };
        if matches!(output, Output::Tui { .. }) && !std::io::stdout().is_terminal() {
            return Err(CliError::usage(ShowError::NotATerminal.to_string()));
        }
        Ok(output)
    }
}

/// `--group-by`: the command line's names of [`GroupBy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupByArg {
    Authority,
    Route,
    Sidecar,
    Caller,
    Status,
}

impl From<GroupByArg> for GroupBy {
    fn from(arg: GroupByArg) -> GroupBy {
        match arg {
            GroupByArg::Authority => GroupBy::Authority,
            GroupByArg::Route => GroupBy::Route,
            GroupByArg::Sidecar => GroupBy::Sidecar,
            GroupByArg::Caller => GroupBy::Caller,
            GroupByArg::Status => GroupBy::Status,
        }
    }
}

fn parse_window(s: &str) -> Result<Window, String> {
    Window::ALL
        .into_iter()
        .find(|w| w.label() == s)
        .ok_or_else(|| format!("invalid window '{s}': expected 10s, 1m or 5m"))
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Listener for traffic entering the pod; without =TARGET each connection goes to its original destination
    #[arg(long, value_name = "LISTEN[=TARGET]")]
    pub inbound: Vec<ListenerSpec>,
    /// Listener for traffic leaving the pod, also an explicit HTTP proxy (absolute URIs and CONNECT)
    #[arg(long, value_name = "LISTEN[=TARGET]")]
    pub outbound: Vec<ListenerSpec>,
    /// Admin address: health, readiness, metrics and per-request events (/events)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:15090", value_parser = parse_socket_addr)]
    pub admin: SocketAddr,
    /// A second admin address, for the pod network: health, readiness and metrics; /events only with --admin-token. A bare IPv6 address may end in :PORT (for $(POD_IP):15090)
    #[arg(long, value_name = "ADDR", value_parser = parse_socket_addr)]
    pub public_admin: Option<SocketAddr>,
    /// This sidecar's name in every record [default: $POD_NAME, else the host name]
    #[arg(long, env = "MESHTOP_NAME")]
    pub name: Option<String>,
    /// This sidecar's namespace
    #[arg(long, env = "POD_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// Destination ports forwarded without protocol detection
    #[arg(
        long,
        value_name = "PORTS",
        default_value = "25,587,3306,5432,6379,11211"
    )]
    pub opaque_ports: PortList,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// How long resolving and connecting to an upstream may take
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// How long protocol detection waits for a client whose first bytes may still be HTTP or TLS (or who sent none) while the server is silent; then the connection is opaque
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub detect_timeout: Duration,
    /// Upstream connections dialled ahead for clients that have not sent a byte (so that servers that speak first are heard at once); past it, silent clients wait for one to be free
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_eager_dials: u32,
    /// An opaque tunnel (TCP, TLS, an upgraded connection) in which no byte moved either way for this long is closed; 0 never
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// A request or response body from which no byte came for this long is ended (both sides reset); 0 never
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// An HTTP/1 upstream connection idle at least this long may have been
    /// closed by its server: a bodiless idempotent request sent on it is sent
    /// again on a new connection if it closes before answering
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub replay_after_idle: Duration,
    /// How often exact per-upstream aggregates (`stats`) are sent
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub stats_interval: Duration,
    /// Event subscribers beyond this many are refused (503)
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_subscribers: usize,
    /// Events a subscriber may have waiting, in bytes; past it, events are dropped for it (and it is told how many)
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = parse_size)]
    pub subscriber_queue: usize,
    /// How far back stats are kept for new subscribers (at most 8 MiB of them); 0 keeps none
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub history: Duration,
    /// Distinct authorities in aggregates and metrics; more are counted as "other"
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_authorities: usize,
    /// Routes per upstream with stats of their own each interval; more are counted as "other"
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_routes: usize,
    /// Client addresses per inbound upstream with stats of their own each interval; more are counted as "other"
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_clients: usize,
    /// The pod's own IP addresses, said in `hello` so that a UI can name the caller (default: the addresses of its network interfaces but loopback)
    #[arg(long, env = "POD_IP", value_name = "IP", value_delimiter = ',')]
    pub pod_ip: Vec<std::net::IpAddr>,
    /// Require `Authorization: Bearer TOKEN` (or ?token=) on /events; metrics stay scrapeable
    #[arg(
        long,
        env = "MESHTOP_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Add this request header to request events (repeatable); credentials are always redacted
    #[arg(long, value_name = "NAME", value_parser = parse_header_name)]
    pub capture_header: Vec<HeaderName>,
    /// Threads that serve connections [default: the cores this process may use, after its CPU affinity and cgroup quota]; 1 runs everything on one thread
    #[arg(long, env = "MESHTOP_THREADS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
}

fn parse_header_name(s: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("invalid header name '{s}'"))
}

/// `LISTEN[=TARGET]`: an address to listen on, and optionally where every
/// connection goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    pub listen: SocketAddr,
    pub target: Option<Dest>,
}

impl FromStr for ListenerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (listen, target) = match s.split_once('=') {
            Some((listen, target)) => (listen, Some(target)),
            None => (s, None),
        };
        let listen = parse_socket_addr(listen)?;
        let target = target
            .map(|t| t.parse::<Dest>().map_err(|e| e.to_string()))
            .transpose()?;
        Ok(ListenerSpec { listen, target })
    }
}

/// A comma-separated list of ports.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PortList(pub Vec<u16>);

impl FromStr for PortList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("invalid port '{p}'"))
            })
            .collect::<Result<_, _>>()
            .map(PortList)
    }
}

/// `IP:PORT` or `[IPv6]:PORT`; also a bare IPv6 address followed by
/// `:PORT` (split at the last colon), which is what `$(POD_IP):15090`
/// becomes in a Kubernetes manifest on an IPv6 pod.
fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    let bare_v6 = || {
        let (ip, port) = s.rsplit_once(':')?;
        let ip: std::net::Ipv6Addr = ip.parse().ok()?;
        Some(SocketAddr::from((ip, port.parse::<u16>().ok()?)))
    };
    s.parse()
        .ok()
        .or_else(bare_v6)
        .ok_or_else(|| format!("invalid address '{s}': expected IP:PORT, e.g. 127.0.0.1:15001"))
}

/// A size in bytes: `4MiB`, `512KiB`, `1048576`, `2 MB`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid size '{s}': expected e.g. 4MiB, 512KiB or 1048576"))?;
    usize::try_from(size.as_u64())
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("invalid size '{s}': between 1 byte and the memory there is"))
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration '{s}': {e} (e.g. 5s, 250ms)"))
}

/// Parses the command line; a usage error becomes one line and exit code 2.
pub fn parse() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    Cli::try_parse().map_err(|err| match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ExitCode::from(EXIT_USAGE)
        }
        _ => {
            let rendered = err.render().to_string();
            let line = rendered.lines().next().unwrap_or("invalid arguments");
            let line = line.trim_start_matches("error: ");
            match suggestion(&err) {
                Some(suggested) => error_line(&format!("{line} (did you mean '{suggested}'?)")),
                None => error_line(line),
            }
            ExitCode::from(EXIT_USAGE)
        }
    })
}

/// What clap suggests for a typo (a subcommand, a flag, a value), kept in
/// the one line a usage error gets.
fn suggestion(err: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    [
        ContextKind::SuggestedSubcommand,
        ContextKind::SuggestedArg,
        ContextKind::SuggestedValue,
    ]
    .into_iter()
    .find_map(|kind| match err.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(all) => all.first().cloned(),
        _ => None,
    })
}

/// The whole program: parses the command line, sets up logging and runs
/// the command. Shared by `meshtop` and `kubectl-meshtop` (the kubectl
/// plugin name, so that `kubectl meshtop attach …` works).
pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // The sidecar logs what it does; the interactive commands stay quiet
    // unless something is wrong, so logs never draw over the UI.
    let default_level = match cli.command {
        Command::Proxy(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    run(cli)
}

/// The runtime a command runs on. The proxy sizes it to the cores it may
/// use: with one (a sidecar limited to one CPU, or pinned to one core) a
/// current-thread runtime serves every connection, the telemetry and the
/// admin without waking other threads, which took 10–14% less CPU per
/// request than a one-worker multi-thread runtime (docs/benchmarks.md).
fn runtime_for(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = match command {
        Command::Proxy(args) => args.threads.map(usize::from).or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .map(std::num::NonZeroUsize::get)
        }),
        _ => None,
    };
    match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
}

/// Runs a parsed command to completion; how it failed, if it did, is
/// printed here and only here (see [`CliError`]).
pub fn run(cli: Cli) -> ExitCode {
    match run_command(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => err.report(),
    }
}

fn run_command(cli: Cli) -> Result<(), CliError> {
    // `demo --netns` builds its pods before the runtime, whose threads must
    // start in the node's network namespace (see `demo::pods::prepare`).
    // Declared before the runtime, the pods outlive it: the sidecars stop
    // and the namespaces go once the services have stopped.
    let pods = match &cli.command {
        Command::Demo(args) if args.netns => {
            Some(demo_pods().map_err(|err| CliError::usage(format!("demo --netns: {err}")))?)
        }
        _ => None,
    };
    let runtime = runtime_for(&cli.command)
        .map_err(|err| CliError::failed(format!("cannot start the runtime: {err}")))?;
    match cli.command {
        Command::Proxy(args) => runtime.block_on(run_proxy(*args)),
        Command::Attach(args) => runtime.block_on(run_attach(args)),
        Command::Record(args) => runtime.block_on(run_record(args)),
        Command::Replay(args) => runtime.block_on(run_replay(args)),
        Command::Demo(args) => runtime.block_on(run_demo(args, pods.as_ref())),
        Command::Inject(args) => run_inject(args),
        Command::Init(args) => run_init(args),
    }
}

/// How a command failed: the line it prints on stderr, if any, and its
/// exit code — 2 ([`EXIT_USAGE`]) for bad arguments and for failing to
/// start, 1 for "ran, but failed or had nothing to show".
#[derive(Debug)]
pub struct CliError {
    message: Option<String>,
    code: u8,
}

impl CliError {
    /// Bad arguments, or the command could not start: exit code 2.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            message: Some(message.into()),
            code: EXIT_USAGE,
        }
    }

    /// The command ran and failed: exit code 1.
    pub fn failed(message: impl Into<String>) -> CliError {
        CliError {
            message: Some(message.into()),
            code: 1,
        }
    }

    /// Exit code 1 with nothing more to say: what went wrong was already
    /// reported as it happened (targets that never connected, one line
    /// each), or cannot be (standard output is gone).
    pub fn quiet() -> CliError {
        CliError {
            message: None,
            code: 1,
        }
    }

    pub fn code(&self) -> u8 {
        self.code
    }

    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// Prints the error's line and gives its exit code.
    fn report(self) -> ExitCode {
        if let Some(message) = &self.message {
            error_line(message);
        }
        ExitCode::from(self.code)
    }
}

/// The one way meshtop says something is wrong on stderr.
fn error_line(message: &str) {
    eprintln!("meshtop: {message}");
}

/// The one way meshtop warns on stderr: the command goes on.
fn warning_line(message: &str) {
    eprintln!("meshtop: warning: {message}");
}

impl ProxyArgs {
    pub fn config(&self) -> ProxyConfig {
        let mut listeners: Vec<ListenerConfig> = Vec::new();
        let specs = [
            (Direction::Inbound, &self.inbound),
            (Direction::Outbound, &self.outbound),
        ];
        for (direction, specs) in specs {
            listeners.extend(specs.iter().map(|spec| ListenerConfig {
                direction,
                addr: spec.listen,
                target: spec.target.clone(),
            }));
        }
        if listeners.is_empty() {
            for (direction, addr) in [
                (Direction::Inbound, DEFAULT_INBOUND),
                (Direction::Outbound, DEFAULT_OUTBOUND),
            ] {
                listeners.push(ListenerConfig {
                    direction,
                    addr: addr.parse().expect("default listen addresses are valid"),
                    target: None,
                });
            }
        }
        let name = self
            .name
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()))
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
        let mut config = ProxyConfig::new(name, listeners);
        config.admin = self.admin;
        config.public_admin = self.public_admin;
        config.namespace = self.namespace.clone().filter(|n| !n.is_empty());
        config.opaque_ports = self.opaque_ports.0.clone();
        config.drain_timeout = self.drain_timeout;
        config.connect_timeout = self.connect_timeout;
        config.detect_timeout = self.detect_timeout;
        config.max_eager_dials = self.max_eager_dials as usize;
        config.idle_timeout = self.idle_timeout;
        config.body_timeout = self.body_timeout;
        config.replay_after_idle = self.replay_after_idle;
        config.capture_headers = self.capture_header.clone();
        config.telemetry.stats_interval = self.stats_interval;
        config.telemetry.hub.subscribers = self.max_subscribers;
        config.telemetry.hub.queue_bytes = self.subscriber_queue;
        config.telemetry.hub.history = self.history;
        config.telemetry.max_authorities = self.max_authorities;
        config.telemetry.breakdown = crate::telemetry::stats::Limits {
            routes: self.max_routes,
            clients: self.max_clients,
        };
        config.pod_ips = self.pod_ip.clone();
        config.telemetry.admin_token = self.admin_token.clone().filter(|t| !t.is_empty());
        config
    }
}

async fn run_proxy(args: ProxyArgs) -> Result<(), CliError> {
    let signals = stop_signals()?;
    let config = args.config();
    let proxy = Proxy::bind(config)
        .await
        .map_err(|err| match err.way_out() {
            Some(way_out) => CliError::usage(format!("{err}; {way_out}")),
            None => CliError::usage(err.to_string()),
        })?;
    for listener in proxy.listeners() {
        let target = listener
            .target
            .as_ref()
            .map_or("original destination".to_owned(), |t| t.to_string());
        info!(direction = %listener.direction, addr = %listener.addr, %target, "listening");
    }
    info!(addr = %proxy.admin_addr(), "admin listening");
    let shutdown = CancellationToken::new();
    tokio::spawn(signals.cancel_on_signal(shutdown.clone()));
    proxy.run(shutdown).await;
    info!("stopped");
    Ok(())
}

async fn run_attach(args: AttachArgs) -> Result<(), CliError> {
    let output = args.display.output()?;
    let targets = args.sources.targets();
    let shutdown = CancellationToken::new();
    stop_on_signals(&shutdown)?;
    let recording = open_recording(args.record.as_deref(), args.force, &targets)?;
    let session = LiveSession {
        targets,
        token: args.sources.token(),
        output,
        filter: args.display.filter.clone().unwrap_or_default(),
        window: args.display.window,
        group_by: args.display.group_by.into(),
        duration: args.duration,
        recording,
        note: None,
    };
    session_result(session.show(&shutdown).await, true)
}

/// What `attach`, `record` and `demo` share: a source per target feeding
/// one session that shows (or only records) what they send.
struct LiveSession {
    targets: Vec<Target>,
    token: Option<String>,
    output: Output,
    filter: FilterExpr,
    window: Window,
    group_by: GroupBy,
    duration: Option<Duration>,
    recording: Option<RecordingWriter>,
    note: Option<String>,
}

impl LiveSession {
    /// Runs the session until it ends (a key, `--duration`, a signal), then
    /// stops the sources.
    async fn show(self, shutdown: &CancellationToken) -> Result<SessionEnd, ShowError> {
        let (tx, rx) = feed();
        let (subscription, filter_rx) = subscription(&self.filter, self.recording.is_some());
        let _sources = spawn_sources(&self.targets, self.token, tx, shutdown.clone(), filter_rx);
        let options = ShowOptions {
            output: self.output,
            filter: self.filter,
            subscription,
            window: self.window,
            group_by: self.group_by,
            duration: self.duration,
            recording: self.recording,
            replay: None,
            note: self.note,
        };
        let names = self.targets.iter().map(|t| t.to_string()).collect();
        let result = show(names, rx, options, shutdown.clone()).await;
        shutdown.cancel();
        result
    }
}

/// How a showing command ends: fine, 2 without a terminal, 1 when the
/// terminal or the recording failed, or (`live`) when no target ever
/// connected (see [`report_unconnected`]).
fn session_result(result: Result<SessionEnd, ShowError>, live: bool) -> Result<(), CliError> {
    let shown = result.map_err(|err| match err {
        ShowError::NotATerminal => CliError::usage(err.to_string()),
        err => CliError::failed(err.to_string()),
    })?;
    let connected = !live || report_unconnected(&shown.model);
    match shown.recorded {
        Some(Err(err)) => Err(CliError::failed(err.to_string())),
        _ if !connected => Err(CliError::quiet()),
        _ => Ok(()),
    }
}

/// Names on stderr, one line each, the targets that never connected (no
/// `hello` came) and why; returns whether any target did connect. A session
/// in which none did ran, but has nothing to show: its command exits 1.
fn report_unconnected(model: &crate::tui::model::Model) -> bool {
    let never = model.never_connected();
    for (target, why) in &never {
        error_line(&format!("{target} never connected: {why}"));
    }
    never.len() < model.sidecars().len()
}

/// The recording asked for with `--record`, created with its header.
fn open_recording(
    path: Option<&std::path::Path>,
    force: bool,
    targets: &[Target],
) -> Result<Option<RecordingWriter>, CliError> {
    let Some(path) = path else {
        return Ok(None);
    };
    create_recording(path, force, targets).map(Some)
}

/// A new recording at `path`; one that exists only with `force`.
fn create_recording(
    path: &std::path::Path,
    force: bool,
    targets: &[Target],
) -> Result<RecordingWriter, CliError> {
    let created = if force {
        RecordingWriter::create(path, source_infos(targets))
    } else {
        RecordingWriter::create_new(path, source_infos(targets))
    };
    created.map_err(|err| CliError::usage(err.to_string()))
}

fn source_infos(targets: &[Target]) -> Vec<SourceInfo> {
    targets
        .iter()
        .map(|t| SourceInfo {
            target: t.to_string(),
            name: None,
        })
        .collect()
}

async fn run_record(args: RecordArgs) -> Result<(), CliError> {
    let targets = args.sources.targets();
    let writer = create_recording(&args.output, args.force, &targets)?;
    let shutdown = CancellationToken::new();
    stop_on_signals(&shutdown)?;
    let session = LiveSession {
        targets,
        token: args.sources.token(),
        output: Output::Silent,
        filter: FilterExpr::default(),
        window: Window::default(),
        group_by: GroupBy::default(),
        duration: args.duration,
        recording: Some(writer),
        note: None,
    };
    let shown = session
        .show(&shutdown)
        .await
        .map_err(|err| CliError::failed(err.to_string()))?;
    let connected = report_unconnected(&shown.model);
    match shown.recorded {
        Some(Ok(messages)) => {
            println!("wrote {messages} messages to {}", args.output.display());
            if connected {
                Ok(())
            } else {
                Err(CliError::quiet())
            }
        }
        Some(Err(err)) => Err(CliError::failed(err.to_string())),
        None => Ok(()),
    }
}

async fn run_replay(args: ReplayArgs) -> Result<(), CliError> {
    let output = args.display.output()?;
    let (header, entries, stats) =
        crate::recording::load(&args.file).map_err(|err| CliError::usage(err.to_string()))?;
    if stats.truncated {
        warning_line(&format!(
            "{} is truncated: replaying the {} complete messages before the cut",
            args.file.display(),
            stats.entries
        ));
    }
    if stats.skipped > 0 {
        warning_line(&format!("skipped {} malformed lines", stats.skipped));
    }
    check_playback(args.from, args.to, entries.last().map(|e| e.t))
        .map_err(|reason| CliError::usage(format!("{}: {reason}", args.file.display())))?;
    let targets: Vec<String> = header.sources.iter().map(|s| s.target.clone()).collect();
    let shutdown = CancellationToken::new();
    stop_on_signals(&shutdown)?;
    let interactive = matches!(output, Output::Tui { .. });
    let (tx, rx) = feed();
    let (control, control_rx) = tokio::sync::watch::channel(Control {
        paused: false,
        speed: args.speed,
        seek: None,
    });
    let (progress_tx, progress) = tokio::sync::watch::channel(Progress {
        position: Duration::ZERO,
        length: Duration::ZERO,
        speed: args.speed,
        paused: false,
        finished: false,
        seeked: None,
    });
    let playback = Playback {
        from: args.from.unwrap_or_default(),
        to: args.to,
        exit_when_done: !interactive,
        origin: humantime::parse_rfc3339(&header.created_at).ok(),
    };
    tokio::spawn(play(
        std::sync::Arc::new(entries),
        playback,
        tx,
        control_rx,
        progress_tx,
    ));
    let options = ShowOptions {
        output,
        filter: args.display.filter.clone().unwrap_or_default(),
        subscription: None,
        window: args.display.window,
        group_by: args.display.group_by.into(),
        duration: None,
        recording: None,
        replay: Some(ReplayHandle { control, progress }),
        note: None,
    };
    session_result(show(targets, rx, options, shutdown).await, false)
}

fn demo_pods() -> Result<crate::demo::pods::DemoPods, crate::netns::NetnsError> {
    let exe = std::env::current_exe()?;
    crate::demo::pods::prepare(&exe)
}

async fn run_demo(
    args: DemoArgs,
    pods: Option<&crate::demo::pods::DemoPods>,
) -> Result<(), CliError> {
    let output = args.display.output()?;
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err(CliError::usage("--rate must be a positive number"));
    }
    let shutdown = CancellationToken::new();
    stop_on_signals(&shutdown)?;
    let config = crate::demo::DemoConfig {
        rate: args.rate,
        failure_rate: args.failure_rate,
        delay: args.delay,
        admin_base: args.admin_base,
    };
    let started = match pods {
        Some(pods) => crate::demo::pods::start(pods, &config, &shutdown).await,
        None => crate::demo::start(&config, &shutdown).await,
    };
    let demo = started.map_err(|err| match err {
        crate::demo::DemoError::Bind(err) if err.in_use() => CliError::usage(format!(
            "{err}; another demo or sidecar may be running: --admin-base 0 picks free ports"
        )),
        err => CliError::usage(err.to_string()),
    })?;
    let targets: Vec<Target> = demo
        .admins
        .iter()
        .filter_map(|(_, addr)| format!("{addr}").parse().ok())
        .collect();
    // Printed before the UI opens, and kept at the head of its status line.
    let note = match pods {
        Some(pods) => format!(
            "emojivoto: http://{} (netns {})",
            demo.web,
            pods.node_netns()
        ),
        None => format!("emojivoto: http://{}", demo.web_sidecar),
    };
    match pods {
        Some(pods) => {
            let addrs: Vec<String> = demo.admins.iter().map(|(_, a)| a.to_string()).collect();
            let node = pods.node_netns();
            eprintln!(
                "meshtop demo: emojivoto is running in network-namespace pods (web on http://{} in namespace {node}); attach from another terminal with: ip netns exec {node} meshtop attach {}",
                demo.web,
                addrs.join(" ")
            );
        }
        None => {
            let ports: Vec<String> = demo
                .admins
                .iter()
                .map(|(_, a)| format!(":{}", a.port()))
                .collect();
            eprintln!(
                "meshtop demo: emojivoto is running (web on http://{}); attach from another terminal with: meshtop attach {}",
                demo.web_sidecar,
                ports.join(" ")
            );
        }
    }
    let recording = match open_recording(args.record.as_deref(), args.force, &targets) {
        Ok(recording) => recording,
        Err(err) => {
            shutdown.cancel();
            return Err(err);
        }
    };
    let session = LiveSession {
        targets,
        token: None,
        output,
        filter: args.display.filter.clone().unwrap_or_default(),
        window: args.display.window,
        group_by: args.display.group_by.into(),
        duration: args.duration,
        recording,
        note: Some(note),
    };
    session_result(session.show(&shutdown).await, true)
}

fn run_init(args: InitArgs) -> Result<(), CliError> {
    let options = crate::init::InitOptions {
        proxy_uid: args.proxy_uid,
        inbound_port: args.inbound_port,
        outbound_port: args.outbound_port,
        skip_inbound_ports: args.skip_inbound_ports.0,
        skip_outbound_ports: args.skip_outbound_ports.0,
        skip_subnets: args.skip_subnets,
    };
    options
        .validate()
        .map_err(|err| CliError::usage(err.to_string()))?;
    if args.dry_run {
        print!("{}", crate::init::dry_run(&options, args.uninstall));
        return Ok(());
    }
    let applied = crate::init::apply(&options, args.uninstall)
        .map_err(|err| CliError::usage(err.to_string()))?;
    print!("{applied}");
    Ok(())
}

fn run_inject(args: InjectArgs) -> Result<(), CliError> {
    use std::io::Read;
    let (name, input) = match args.file.as_deref().filter(|p| p.as_os_str() != "-") {
        Some(path) => (path.display().to_string(), std::fs::read_to_string(path)),
        None => {
            let mut input = String::new();
            let read = std::io::stdin().read_to_string(&mut input).map(|_| input);
            ("standard input".to_owned(), read)
        }
    };
    let input = input.map_err(|err| CliError::usage(format!("cannot read {name}: {err}")))?;
    let mut options = crate::inject::InjectOptions::default();
    if let Some(image) = args.image {
        options.image = image;
    }
    options.proxy_uid = args.proxy_uid;
    options.skip_inbound_ports = args.skip_inbound_ports.0;
    options.skip_outbound_ports = args.skip_outbound_ports.0;
    options.admin_port = args.admin_port;
    // Streamed: the output is many times the input, and only one document
    // (one item of a `List`) is held at a time. Nothing is written unless
    // all of it can be. What had to be given up for it (comments yaml-edit
    // could not keep) is said on stderr, once the output is out.
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    match crate::inject::inject_to(&input, &options, &mut stdout) {
        Ok(warnings) => {
            for warning in warnings {
                warning_line(&format!("{name}: {warning}"));
            }
            Ok(())
        }
        // Standard output is gone (a closed pipe): nowhere to say more.
        Err(crate::inject::InjectError::Write(_)) => Err(CliError::quiet()),
        Err(err) => Err(CliError::usage(format!("{name}: {err}"))),
    }
}

/// `--from` and `--to` must fall within the recording (`length`: the time
/// of its last message) and in that order.
fn check_playback(
    from: Option<Duration>,
    to: Option<Duration>,
    length: Option<Duration>,
) -> Result<(), String> {
    let length = length.unwrap_or_default();
    // Whole seconds, or milliseconds below one.
    let show = |d: Duration| {
        let d = if d >= Duration::from_secs(1) {
            Duration::from_secs(d.as_secs())
        } else {
            Duration::from_millis(d.subsec_millis().into())
        };
        humantime::format_duration(d).to_string()
    };
    for (flag, offset) in [("--from", from), ("--to", to)] {
        if let Some(offset) = offset
            && offset > length
        {
            return Err(format!(
                "{flag} {} is past the end of the recording ({} long)",
                show(offset),
                show(length)
            ));
        }
    }
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(format!("--from {} is after --to {}", show(from), show(to)));
    }
    Ok(())
}

/// The sidecar `meshtop attach` attaches to when given no target.
pub const DEFAULT_TARGET: &str = "127.0.0.1:15090";

/// The stop signals, or, when they cannot be handled, the error every
/// command gives: a command that could not be stopped cleanly does not
/// start.
fn stop_signals() -> Result<StopSignals, CliError> {
    StopSignals::register().map_err(|err| CliError::failed(format!("cannot handle signals: {err}")))
}

/// Cancels `shutdown` on SIGTERM or SIGINT (see [`stop_signals`]).
fn stop_on_signals(shutdown: &CancellationToken) -> Result<(), CliError> {
    let signals = stop_signals()?;
    tokio::spawn(signals.cancel_on_signal(shutdown.clone()));
    Ok(())
}

/// The signals that stop the process, registered before anything is
/// announced so that a signal sent right after start-up is never missed.
pub struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn register() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Cancels `shutdown` on SIGTERM or SIGINT.
    pub async fn cancel_on_signal(mut self, shutdown: CancellationToken) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        info!("signal received");
        shutdown.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words of a command line, with single quotes as the shell reads
    /// them (all the examples need).
    fn words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '\'' => quoted = !quoted,
                ' ' if !quoted => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
        words
    }

    #[test]
    fn a_session_without_a_terminal_is_a_usage_error_and_a_failed_one_exits_1() {
        let err = session_result(Err(ShowError::NotATerminal), true).expect_err("an error");
        assert_eq!(err.code(), EXIT_USAGE);
        assert_eq!(
            err.message(),
            Some(ShowError::NotATerminal.to_string().as_str())
        );
        let io = std::io::Error::other("the terminal went away");
        let err = session_result(Err(ShowError::Terminal(io)), true).expect_err("an error");
        assert_eq!(err.code(), 1);
        assert!(
            err.message()
                .is_some_and(|m| m.contains("the terminal went away"))
        );
        assert_eq!(CliError::quiet().message(), None);
    }

    #[test]
    fn every_example_in_help_parses() {
        let mut parsed = 0;
        for examples in [
            EXAMPLES_PROXY,
            EXAMPLES_ATTACH,
            EXAMPLES_RECORD,
            EXAMPLES_REPLAY,
            EXAMPLES_DEMO,
            EXAMPLES_INJECT,
            EXAMPLES_INIT,
        ] {
            for line in examples.lines() {
                // Each `meshtop …` of the line, up to a pipe or `&`.
                for part in line.split(['|', '&']) {
                    let command = part.trim();
                    if !command.starts_with("meshtop ") {
                        continue;
                    }
                    if let Err(err) = Cli::try_parse_from(words(command)) {
                        panic!("{command:?}: {err}");
                    }
                    parsed += 1;
                }
            }
        }
        assert!(parsed >= 15, "{parsed}");
    }

    #[test]
    fn listener_specs_parse() {
        let spec: ListenerSpec = "127.0.0.1:15001".parse().expect("valid");
        assert_eq!(spec.target, None);
        let spec: ListenerSpec = "0.0.0.0:80=web-svc.emojivoto:80".parse().expect("valid");
        assert_eq!(spec.listen, "0.0.0.0:80".parse().expect("literal"));
        assert_eq!(
            spec.target,
            Some(Dest::Name {
                host: "web-svc.emojivoto".into(),
                port: 80
            })
        );
        for bad in ["15001", "localhost:1", "127.0.0.1:1=web", "127.0.0.1:99999"] {
            assert!(bad.parse::<ListenerSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn port_lists_parse() {
        assert_eq!(
            "25, 587,3306".parse::<PortList>(),
            Ok(PortList(vec![25, 587, 3306]))
        );
        assert_eq!("".parse::<PortList>(), Ok(PortList(vec![])));
        assert!("25,x".parse::<PortList>().is_err());
        assert!("0".parse::<PortList>().is_err());
    }

    #[test]
    fn no_listener_flags_means_the_default_pair() {
        let cli = Cli::try_parse_from(["meshtop", "proxy"]).expect("valid");
        let Command::Proxy(args) = cli.command else {
            panic!("parsed as proxy");
        };
        let listeners = args.config().listeners;
        assert_eq!(listeners.len(), 2);
        assert_eq!(listeners[0].addr, DEFAULT_INBOUND.parse().expect("literal"));
        assert_eq!(
            listeners[1].addr,
            DEFAULT_OUTBOUND.parse().expect("literal")
        );
        assert_eq!(args.config().replay_after_idle, Duration::from_secs(1));
    }

    #[test]
    fn replay_after_idle_reaches_the_configuration() {
        let cli = Cli::try_parse_from(["meshtop", "proxy", "--replay-after-idle", "250ms"])
            .expect("valid");
        let Command::Proxy(args) = cli.command else {
            panic!("parsed as proxy");
        };
        assert_eq!(args.config().replay_after_idle, Duration::from_millis(250));
        assert!(
            Cli::try_parse_from(["meshtop", "proxy", "--replay-after-idle", "soon"]).is_err(),
            "not a duration"
        );
    }

    #[test]
    fn admin_addresses_parse_as_a_manifest_writes_them() {
        let parse = |s: &str| parse_socket_addr(s);
        assert_eq!(
            parse("10.1.2.3:15090"),
            Ok(SocketAddr::from(([10, 1, 2, 3], 15090)))
        );
        let v6: SocketAddr = "[fd00::7]:15090".parse().expect("literal");
        assert_eq!(parse("[fd00::7]:15090"), Ok(v6));
        // `$(POD_IP):15090` on an IPv6 pod.
        assert_eq!(parse("fd00::7:15090"), Ok(v6));
        for bad in ["10.1.2.3", "fd00::7", "host:80", "10.1.2.3:99999", ":15090"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let cli = Cli::try_parse_from(["meshtop", "proxy", "--public-admin", "fd00::7:15090"])
            .expect("valid");
        let Command::Proxy(args) = cli.command else {
            panic!("parsed as proxy");
        };
        assert_eq!(args.config().public_admin, Some(v6));
    }
}
