//! `meshtop demo --netns`: the real deployment shape on one machine. Each
//! service runs in a pod of its own — a network namespace on a bridge,
//! like a Kubernetes pod on a node — where `meshtop init` has installed the
//! redirect rules and `meshtop proxy` runs as UID 1337 with no target: it
//! forwards every connection to its original destination. The services
//! dial each other's pod addresses with no proxy settings; only the rules
//! put the sidecars on the path.
//!
//! The services themselves run in this process, on sockets made inside
//! their pods; the sidecars are separate `meshtop proxy` processes, because
//! the rules tell the proxy's connections from the application's by UID.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{App, Demo, DemoConfig, DemoError, Dialer, NAMESPACE, spawn_app, web};
use crate::netns::{Cluster, NetnsError, Pod};

/// The pods, in the order of the sidecars everywhere else in the demo.
pub const PODS: [&str; 4] = ["vote-bot", "web", "emoji", "voting"];
/// The pods' /24 (on a bridge of its own, so it cannot clash with the
/// machine's networks).
const SUBNET: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 0);
/// Every service listens here in its pod, as emojivoto's containers do
/// (web-svc's port 80 maps to web's 8080).
const APP_PORT: u16 = 8080;
/// The sidecars' admin port: `meshtop init` never redirects it.
pub const ADMIN_PORT: u16 = crate::init::ADMIN_PORT;
const PROXY_UID: u32 = 1337;
/// How long the sidecars may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The demo's pods and sidecars; dropping it stops the sidecars and
/// deletes the namespaces.
pub struct DemoPods {
    cluster: Cluster,
    /// The sidecars' logs, kept until the demo ends (they explain a
    /// sidecar that did not start).
    logs: Vec<PathBuf>,
}

impl DemoPods {
    /// The node's namespace: where `meshtop attach` reaches the sidecars.
    pub fn node_netns(&self) -> &str {
        self.cluster.node().name()
    }

    fn pod(&self, name: &str) -> Result<&Pod, DemoError> {
        self.cluster
            .pod(name)
            .ok_or_else(|| DemoError::Pods(format!("no pod {name}")))
    }
}

impl Drop for DemoPods {
    fn drop(&mut self) {
        for log in &self.logs {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// Builds the pods, installs the rules and starts the sidecars, then waits
/// until every sidecar is ready.
///
/// Call it before the tokio runtime is built: it moves the calling thread
/// into the node's namespace, so that the runtime's threads (started from
/// it) and the terminal UI on them reach the pods as a node does.
pub fn prepare(exe: &Path) -> Result<DemoPods, NetnsError> {
    let mut cluster = Cluster::create("meshtop-demo", SUBNET, &PODS)?;
    let mut logs = Vec::new();
    for pod in cluster.pods().to_vec() {
        cluster.run(
            &format!("meshtop init in pod {}", pod.name),
            pod.netns.command(exe).arg("init"),
        )?;
        let log = std::env::temp_dir().join(format!("{}.log", pod.netns.name()));
        let file = std::fs::File::create(&log)?;
        logs.push(log);
        // The UI attaches from the node, standing in for `kubectl
        // port-forward`, so events are served on the pod address here
        // (the demo's own network; a cluster's pods get loopback).
        let admin = format!("0.0.0.0:{ADMIN_PORT}");
        let mut sidecar = pod.netns.command_as(PROXY_UID, exe);
        sidecar
            .args(["proxy", "--name", &pod.name, "--namespace", NAMESPACE])
            .args(["--admin", &admin, "--drain-timeout", "1s"])
            .env_remove("MESHTOP_ADMIN_TOKEN")
            .stdout(Stdio::null())
            .stderr(file);
        cluster.spawn(&pod.name, &mut sidecar)?;
    }
    cluster.node().enter()?;
    let pods = DemoPods { cluster, logs };
    wait_ready(pods)
}

/// Polls every sidecar's `/readyz` from the node until it answers 200, or
/// fails with what the sidecar logged if it exited or took too long.
fn wait_ready(mut pods: DemoPods) -> Result<DemoPods, NetnsError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    for (i, pod) in pods.cluster.pods().to_vec().into_iter().enumerate() {
        loop {
            if ready(SocketAddr::from((pod.ip, ADMIN_PORT))) {
                break;
            }
            let exited = pods.cluster.exited(&pod.name);
            if exited.is_some() || Instant::now() >= deadline {
                let log = std::fs::read_to_string(&pods.logs[i]).unwrap_or_default();
                let last = log.lines().last().unwrap_or("no output").trim().to_owned();
                let what = match exited {
                    Some(status) => format!("exited ({status})"),
                    None => format!("was not ready within {READY_TIMEOUT:?}"),
                };
                return Err(NetnsError::Failed {
                    command: format!("the sidecar of pod {}", pod.name),
                    message: format!(
                        "{what}: {last} (it runs as UID {PROXY_UID}, which must be able to execute this binary)"
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(pods)
}

fn ready(admin: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&admin, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Starts the services in their pods and the vote bot; they stop when
/// `shutdown` is cancelled. The sidecars are already running.
pub async fn start(
    pods: &DemoPods,
    config: &DemoConfig,
    shutdown: &CancellationToken,
) -> Result<Demo, DemoError> {
    let listen = SocketAddr::from(([0, 0, 0, 0], APP_PORT));
    let [bot_pod, web_pod, emoji_pod, voting_pod] = PODS.map(|name| pods.pod(name));
    let (bot_pod, web_pod, emoji_pod, voting_pod) = (bot_pod?, web_pod?, emoji_pod?, voting_pod?);
    let at = |pod: &Pod| SocketAddr::from((pod.ip, APP_PORT));

    let app = App {
        emoji: emoji_pod.netns.listen(listen)?,
        voting: voting_pod.netns.listen(listen)?,
        web: web_pod.netns.listen(listen)?,
        web_clients: web::Clients::new(
            at(emoji_pod),
            at(voting_pod),
            Dialer::Pod(web_pod.netns.clone()),
        ),
        bot_target: at(web_pod),
        bot_dialer: Dialer::Pod(bot_pod.netns.clone()),
    };
    spawn_app(app, config, shutdown);

    let admins = [bot_pod, web_pod, emoji_pod, voting_pod]
        .map(|pod| (pod.name.clone(), SocketAddr::from((pod.ip, ADMIN_PORT))))
        .to_vec();
    Ok(Demo {
        admins,
        web: at(web_pod),
        web_sidecar: at(web_pod),
    })
}
