//! Pods made of Linux network namespaces on one machine: what `meshtop demo
//! --netns` runs emojivoto in, and what the end-to-end tests of transparent
//! interception build.
//!
//! A [`Cluster`] is a *node* namespace holding a bridge, and one namespace
//! per pod joined to the bridge by a veth pair, each pod with its own
//! address in a private /24 that exists only on that bridge. Namespaces are
//! made with `ip` (iproute2) and programs run inside them with `ip netns
//! exec`. This process's own sockets are made inside a namespace by a
//! short-lived thread that enters it ([`Namespace::listen`],
//! [`Namespace::connect`]): a socket stays in the namespace it was made in,
//! so servers and clients written for one host work unchanged.
//!
//! Dropping a cluster stops the processes it started and deletes every
//! namespace, and with them their interfaces and iptables rules. Namespaces
//! left by a process that was killed before it could clean up are deleted
//! by the next cluster of the same family.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use socket2::{Domain, Protocol, Socket, Type};

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";
/// The bridge in the node namespace.
const BRIDGE: &str = "br0";
/// How long a stopped process may take to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network-namespace pods need root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run as root")]
    NotRoot,
    #[error("{tool} is not installed: install {package}")]
    Missing {
        tool: &'static str,
        package: &'static str,
    },
    #[error("{command} failed: {message}")]
    Failed { command: String, message: String },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The tools a cluster and its pods need, with the Debian package of each.
pub const TOOLS: [(&str, &str); 3] = [
    ("ip", "iproute2"),
    ("iptables-restore", "iptables"),
    ("setpriv", "util-linux"),
];

/// Checks that this process can build a cluster: root, and every tool of
/// [`TOOLS`] on the `PATH`.
pub fn preflight() -> Result<(), NetnsError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(NetnsError::NotRoot);
    }
    for (tool, package) in TOOLS {
        if !on_path(tool) {
            return Err(NetnsError::Missing { tool, package });
        }
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(tool).is_file())
}

/// A named network namespace (`ip netns`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves the calling thread into this namespace. Threads it starts
    /// afterwards are in it too; other threads are not.
    pub fn enter(&self) -> io::Result<()> {
        let file = File::open(format!("{NETNS_DIR}/{}", self.name))?;
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
    }

    /// Runs `f` on a new thread inside this namespace and returns what it
    /// returns. Blocks the caller for as long as `f` runs.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let namespace = self.clone();
        std::thread::Builder::new()
            .name(format!("netns {}", self.name))
            .spawn(move || {
                namespace.enter()?;
                f()
            })?
            .join()
            .map_err(|_| io::Error::other("a thread entering a network namespace panicked"))?
    }

    /// A listener bound to `addr` inside this namespace. Must be called
    /// within a tokio runtime.
    pub fn listen(&self, addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
        let listener = self.run(move || {
            let listener = std::net::TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })?;
        tokio::net::TcpListener::from_std(listener)
    }

    /// A TCP connection to `addr` from inside this namespace, as a program
    /// running in it would make: its packets go through the namespace's
    /// routes and iptables rules.
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<tokio::net::TcpStream> {
        let socket = self.run(move || {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })?;
        let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
        socket.connect(addr).await
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Like [`command`](Self::command), with the program running as `uid`
    /// (and group `uid`, no supplementary groups), as a sidecar container
    /// runs under its `runAsUser`. The program gets SIGTERM if the thread
    /// that started it ends, so that it cannot outlive a process that was
    /// killed before it could stop it.
    pub fn command_as(&self, uid: u32, program: impl AsRef<OsStr>) -> Command {
        let mut command = self.command("setpriv");
        command
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg("--pdeathsig=TERM")
            .arg(program);
        command
    }
}

/// A pod: a namespace with one interface, `eth0`, on the cluster's bridge.
#[derive(Clone, Debug)]
pub struct Pod {
    pub name: String,
    pub netns: Namespace,
    pub ip: Ipv4Addr,
}

/// A node namespace with a bridge, and pods on it.
pub struct Cluster {
    node: Namespace,
    node_ip: Ipv4Addr,
    pods: Vec<Pod>,
    /// Every namespace made so far, deleted on drop (also after a failure
    /// half-way through [`Cluster::create`]).
    created: Vec<Namespace>,
    children: Vec<(String, Child)>,
}

impl Cluster {
    /// Builds a cluster whose namespaces are named `FAMILY-PID-node` and
    /// `FAMILY-PID-POD`; the node is `SUBNET.1` and the pods follow from
    /// `SUBNET.2`, in a /24. `subnet` is any address of that /24 (its last
    /// octet is ignored). Clusters do not share a bridge, so two of them may
    /// use the same subnet.
    pub fn create(family: &str, subnet: Ipv4Addr, pods: &[&str]) -> Result<Cluster, NetnsError> {
        preflight()?;
        if pods.len() > 250 {
            return Err(NetnsError::Failed {
                command: "creating pods".into(),
                message: "a /24 holds at most 250 pods".into(),
            });
        }
        sweep(family);
        let [a, b, c, _] = subnet.octets();
        let prefix = format!("{family}-{}", std::process::id());
        let mut cluster = Cluster {
            node: Namespace {
                name: format!("{prefix}-node"),
            },
            node_ip: Ipv4Addr::new(a, b, c, 1),
            pods: Vec::new(),
            created: Vec::new(),
            children: Vec::new(),
        };
        let node = cluster.node.name.clone();
        cluster.add_namespace(&node)?;
        ip(&["-n", &node, "link", "set", "lo", "up"])?;
        ip(&["-n", &node, "link", "add", BRIDGE, "type", "bridge"])?;
        let node_cidr = format!("{}/24", cluster.node_ip);
        ip(&["-n", &node, "addr", "add", &node_cidr, "dev", BRIDGE])?;
        ip(&["-n", &node, "link", "set", BRIDGE, "up"])?;
        for (i, name) in pods.iter().enumerate() {
            let netns = format!("{prefix}-{name}");
            cluster.add_namespace(&netns)?;
            let host = u8::try_from(i + 2).expect("at most 250 pods");
            let pod_ip = Ipv4Addr::new(a, b, c, host);
            let veth = format!("veth{i}");
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", &node, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                &netns,
            ])?;
            ip(&["-n", &node, "link", "set", &veth, "master", BRIDGE, "up"])?;
            let pod_cidr = format!("{pod_ip}/24");
            ip(&["-n", &netns, "addr", "add", &pod_cidr, "dev", "eth0"])?;
            ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
            let gateway = cluster.node_ip.to_string();
            ip(&["-n", &netns, "route", "add", "default", "via", &gateway])?;
            cluster.pods.push(Pod {
                name: (*name).to_owned(),
                netns: Namespace { name: netns },
                ip: pod_ip,
            });
        }
        Ok(cluster)
    }

    fn add_namespace(&mut self, name: &str) -> Result<(), NetnsError> {
        ip(&["netns", "add", name])?;
        self.created.push(Namespace { name: name.into() });
        Ok(())
    }

    /// The node's namespace: it reaches every pod, as a Kubernetes node does.
    pub fn node(&self) -> &Namespace {
        &self.node
    }

    /// The node's address on the bridge.
    pub fn node_ip(&self) -> Ipv4Addr {
        self.node_ip
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods.iter().find(|pod| pod.name == name)
    }

    /// Runs `command` to completion; a failure carries its stderr.
    pub fn run(&self, what: &str, command: &mut Command) -> Result<String, NetnsError> {
        let output = command.stdin(Stdio::null()).output()?;
        if !output.status.success() {
            return Err(NetnsError::Failed {
                command: what.to_owned(),
                message: one_line(&output.stderr),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Starts `command` in the background; the cluster stops it (SIGTERM,
    /// then SIGKILL after a grace period) when it is dropped.
    pub fn spawn(&mut self, what: &str, command: &mut Command) -> Result<u32, NetnsError> {
        let child = command.stdin(Stdio::null()).spawn()?;
        let pid = child.id();
        self.children.push((what.to_owned(), child));
        Ok(pid)
    }

    /// Whether a process started with [`spawn`](Self::spawn) has exited,
    /// and how.
    pub fn exited(&mut self, what: &str) -> Option<std::process::ExitStatus> {
        let (_, child) = self.children.iter_mut().find(|(name, _)| name == what)?;
        child.try_wait().ok().flatten()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &self.children {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for (what, child) in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        tracing::warn!(process = %what, "did not stop in time; killed");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        for netns in self.created.iter().rev() {
            if let Err(err) = ip(&["netns", "del", &netns.name]) {
                tracing::warn!(netns = %netns.name, error = %err, "cannot delete");
            }
        }
    }
}

/// Deletes the namespaces of this family left by processes that no longer
/// run.
fn sweep(family: &str) {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    let prefix = format!("{family}-");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !running(pid) {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// Whether process `pid` exists and has not exited (a zombie has).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        state != Some("Z") && state != Some("X")
    })
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => NetnsError::Missing {
                tool: "ip",
                package: "iproute2",
            },
            _ => NetnsError::Io(err),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Failed {
            command: format!("ip {}", args.join(" ")),
            message: one_line(&output.stderr),
        })
    }
}

fn one_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).filter(|l| !l.is_empty());
    line.collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_or_missing_process_is_not_running() {
        assert!(running(std::process::id()));
        assert!(!running(u32::MAX));
        let mut child = Command::new("true").spawn().expect("true runs");
        // Not reaped yet: once it exits it is a zombie.
        let deadline = Instant::now() + Duration::from_secs(20);
        while running(child.id()) {
            assert!(Instant::now() < deadline, "true did not exit");
            std::thread::yield_now();
        }
        child.wait().expect("reaped");
    }
}
