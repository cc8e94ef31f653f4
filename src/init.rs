//! `meshtop init`: the pod's iptables rules that redirect its TCP traffic to
//! the sidecar, programmed through `iptables-restore` (and
//! `ip6tables-restore` when the pod has IPv6), in chains of meshtop's own.
//!
//! - `MESHTOP_INBOUND` (from `PREROUTING`): inbound TCP to the inbound port,
//!   except the admin port and `--skip-inbound-ports`.
//! - `MESHTOP_OUTPUT` (from `OUTPUT`): outbound TCP to the outbound port,
//!   except the proxy's own user (its upstream connections must not come
//!   back to it), loopback, `--skip-outbound-ports` and `--skip-subnets`.
//!
//! Running it again replaces meshtop's chains and keeps one jump to each;
//! `--uninstall` removes exactly what it added.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

/// The admin port is never redirected: `kubectl port-forward` and probes
/// must reach the sidecar itself.
pub const ADMIN_PORT: u16 = 15090;

const INBOUND_CHAIN: &str = "MESHTOP_INBOUND";
const OUTPUT_CHAIN: &str = "MESHTOP_OUTPUT";

/// What `meshtop init` was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitOptions {
    pub proxy_uid: u32,
    pub inbound_port: u16,
    pub outbound_port: u16,
    pub skip_inbound_ports: Vec<u16>,
    pub skip_outbound_ports: Vec<u16>,
    pub skip_subnets: Vec<Subnet>,
}

impl InitOptions {
    /// Refuses options whose rules could not work: a port 0, the two
    /// listeners on one port, a listener on the admin port (which is never
    /// redirected), or the sidecar running as root (every root process
    /// would then bypass the proxy).
    pub fn validate(&self) -> Result<(), String> {
        for (flag, port) in [
            ("--inbound-port", self.inbound_port),
            ("--outbound-port", self.outbound_port),
        ] {
            if port == 0 {
                return Err(format!("{flag} 0 is not a port the proxy can listen on"));
            }
            if port == ADMIN_PORT {
                return Err(format!(
                    "{flag} {port} is the admin port, which is never redirected"
                ));
            }
        }
        if self.inbound_port == self.outbound_port {
            return Err(format!(
                "--inbound-port and --outbound-port are both {}: inbound and outbound \
                 traffic need listeners of their own",
                self.inbound_port
            ));
        }
        if self.proxy_uid == 0 {
            return Err(
                "--proxy-uid 0 would exempt every root process from redirection; run the \
                 sidecar as its own user"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            proxy_uid: 1337,
            inbound_port: 15006,
            outbound_port: 15001,
            skip_inbound_ports: Vec::new(),
            skip_outbound_ports: Vec::new(),
            skip_subnets: Vec::new(),
        }
    }
}

/// An address range in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Subnet, String> {
        let invalid = || format!("invalid subnet '{s}': expected CIDR such as 10.0.0.0/8");
        let (addr, prefix) = s.split_once('/').ok_or_else(invalid)?;
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(invalid());
        }
        Ok(Subnet { addr, prefix })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv4 (`iptables-restore`) or IPv6 (`ip6tables-restore`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    fn save(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} is not installed: install iptables (meshtop init programs the nat table with it)")]
    Missing(&'static str),
    #[error("no permission to change iptables: meshtop init needs CAP_NET_ADMIN ({0})")]
    Permission(String),
    #[error("{tool} failed: {message}")]
    Failed { tool: &'static str, message: String },
}

fn jump(chain: &str) -> (String, String) {
    let builtin = if chain == INBOUND_CHAIN {
        "PREROUTING"
    } else {
        "OUTPUT"
    };
    (
        builtin.to_owned(),
        format!("-A {builtin} -p tcp -j {chain}"),
    )
}

/// The `iptables-restore --noflush` input that installs (or replaces)
/// meshtop's rules. `existing` is the current `iptables-save -t nat`, so a
/// jump that is already there is not added twice.
pub fn install_rules(options: &InitOptions, family: Family, existing: &str) -> String {
    let mut out = String::from("*nat\n");
    // Declaring a chain creates it, or flushes it when it exists.
    out.push_str(&format!(
        ":{INBOUND_CHAIN} - [0:0]\n:{OUTPUT_CHAIN} - [0:0]\n"
    ));
    for chain in [INBOUND_CHAIN, OUTPUT_CHAIN] {
        let (_, rule) = jump(chain);
        if !existing.lines().any(|l| l.trim() == rule) {
            out.push_str(&rule);
            out.push('\n');
        }
    }
    let mut skip_in = vec![ADMIN_PORT];
    skip_in.extend(
        options
            .skip_inbound_ports
            .iter()
            .filter(|p| **p != ADMIN_PORT),
    );
    for port in skip_in {
        out.push_str(&format!(
            "-A {INBOUND_CHAIN} -p tcp --dport {port} -j RETURN\n"
        ));
    }
    out.push_str(&format!(
        "-A {INBOUND_CHAIN} -p tcp -j REDIRECT --to-ports {}\n",
        options.inbound_port
    ));
    out.push_str(&format!(
        "-A {OUTPUT_CHAIN} -m owner --uid-owner {} -j RETURN\n",
        options.proxy_uid
    ));
    out.push_str(&format!("-A {OUTPUT_CHAIN} -o lo -j RETURN\n"));
    for port in &options.skip_outbound_ports {
        out.push_str(&format!(
            "-A {OUTPUT_CHAIN} -p tcp --dport {port} -j RETURN\n"
        ));
    }
    for subnet in &options.skip_subnets {
        if subnet.addr.is_ipv4() == (family == Family::V4) {
            out.push_str(&format!("-A {OUTPUT_CHAIN} -d {subnet} -j RETURN\n"));
        }
    }
    out.push_str(&format!(
        "-A {OUTPUT_CHAIN} -p tcp -j REDIRECT --to-ports {}\n",
        options.outbound_port
    ));
    out.push_str("COMMIT\n");
    out
}

/// The input that removes exactly what [`install_rules`] added, as far as
/// it is present in `existing`; `None` when nothing is.
pub fn uninstall_rules(existing: &str) -> Option<String> {
    let mut out = String::from("*nat\n");
    let mut any = false;
    for chain in [INBOUND_CHAIN, OUTPUT_CHAIN] {
        let (builtin, rule) = jump(chain);
        for _ in existing.lines().filter(|l| l.trim() == rule) {
            out.push_str(&format!("-D {builtin} -p tcp -j {chain}\n"));
            any = true;
        }
    }
    for chain in [INBOUND_CHAIN, OUTPUT_CHAIN] {
        if existing
            .lines()
            .any(|l| l.trim().starts_with(&format!(":{chain} ")))
        {
            out.push_str(&format!("-F {chain}\n-X {chain}\n"));
            any = true;
        }
    }
    out.push_str("COMMIT\n");
    any.then_some(out)
}

/// The families to program: IPv4 always, IPv6 when the host has it and
/// `ip6tables-restore` exists.
pub fn families() -> Vec<Family> {
    let mut families = vec![Family::V4];
    let has_ipv6 =
        std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|s| !s.trim().is_empty());
    if has_ipv6 && tool_exists(Family::V6.restore()) {
        families.push(Family::V6);
    }
    families
}

fn tool_exists(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn classify(tool: &'static str, stderr: &str) -> InitError {
    let message = stderr.lines().next().unwrap_or("failed").trim().to_owned();
    let lower = stderr.to_lowercase();
    if lower.contains("permission denied")
        || lower.contains("operation not permitted")
        || lower.contains("must be root")
    {
        InitError::Permission(message)
    } else {
        InitError::Failed { tool, message }
    }
}

/// The current nat table of `family`.
fn save(family: Family) -> Result<String, InitError> {
    let output = Command::new(family.save())
        .args(["-t", "nat"])
        .output()
        .map_err(|_| InitError::Missing(family.save()))?;
    if !output.status.success() {
        return Err(classify(
            family.save(),
            &String::from_utf8_lossy(&output.stderr),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn restore(family: Family, input: &str) -> Result<(), InitError> {
    let tool = family.restore();
    let mut child = Command::new(tool)
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|_| InitError::Missing(tool))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let output = child.wait_with_output().map_err(|e| InitError::Failed {
        tool,
        message: e.to_string(),
    })?;
    if !output.status.success() {
        return Err(classify(tool, &String::from_utf8_lossy(&output.stderr)));
    }
    Ok(())
}

/// Installs the rules (or removes them with `uninstall`). Returns what was
/// applied, for the log.
pub fn apply(options: &InitOptions, uninstall: bool) -> Result<String, InitError> {
    if !tool_exists(Family::V4.restore()) {
        return Err(InitError::Missing(Family::V4.restore()));
    }
    let mut applied = String::new();
    for family in families() {
        let existing = save(family)?;
        let input = if uninstall {
            match uninstall_rules(&existing) {
                Some(input) => input,
                None => continue,
            }
        } else {
            install_rules(options, family, &existing)
        };
        restore(family, &input)?;
        applied.push_str(&format!("# {}\n{input}", family.restore()));
    }
    Ok(applied)
}

/// The rules `apply` would install on a pod with no meshtop rules yet, or
/// (`uninstall`) would remove from a pod with them.
pub fn dry_run(options: &InitOptions, uninstall: bool) -> String {
    let mut out = String::new();
    for family in [Family::V4, Family::V6] {
        out.push_str(&format!("# {} --noflush\n", family.restore()));
        let installed = install_rules(options, family, "");
        if uninstall {
            out.push_str(&uninstall_rules(&installed).unwrap_or_default());
        } else {
            out.push_str(&installed);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_redirect_both_ways_with_every_exception() {
        let options = InitOptions {
            skip_inbound_ports: vec![8443],
            skip_outbound_ports: vec![5432],
            skip_subnets: vec![
                "10.96.0.0/12".parse().expect("valid"),
                "fd00::/8".parse().expect("valid"),
            ],
            ..InitOptions::default()
        };
        let v4 = install_rules(&options, Family::V4, "");
        for line in [
            ":MESHTOP_INBOUND - [0:0]",
            "-A PREROUTING -p tcp -j MESHTOP_INBOUND",
            "-A OUTPUT -p tcp -j MESHTOP_OUTPUT",
            "-A MESHTOP_INBOUND -p tcp --dport 15090 -j RETURN",
            "-A MESHTOP_INBOUND -p tcp --dport 8443 -j RETURN",
            "-A MESHTOP_INBOUND -p tcp -j REDIRECT --to-ports 15006",
            "-A MESHTOP_OUTPUT -m owner --uid-owner 1337 -j RETURN",
            "-A MESHTOP_OUTPUT -o lo -j RETURN",
            "-A MESHTOP_OUTPUT -p tcp --dport 5432 -j RETURN",
            "-A MESHTOP_OUTPUT -d 10.96.0.0/12 -j RETURN",
            "-A MESHTOP_OUTPUT -p tcp -j REDIRECT --to-ports 15001",
        ] {
            assert!(v4.lines().any(|l| l == line), "missing {line:?} in\n{v4}");
        }
        assert!(!v4.contains("fd00::/8"));
        assert!(install_rules(&options, Family::V6, "").contains("-d fd00::/8 -j RETURN"));
        // Exceptions come before the redirect.
        let redirect = v4.find("REDIRECT --to-ports 15001").expect("redirect");
        assert!(v4.find("--uid-owner").expect("owner") < redirect);
    }

    #[test]
    fn existing_jumps_are_not_added_twice() {
        let existing = "*nat\n:MESHTOP_INBOUND - [0:0]\n-A PREROUTING -p tcp -j MESHTOP_INBOUND\n-A OUTPUT -p tcp -j MESHTOP_OUTPUT\nCOMMIT\n";
        let rules = install_rules(&InitOptions::default(), Family::V4, existing);
        assert!(!rules.contains("-A PREROUTING"));
        assert!(!rules.contains("-A OUTPUT -p tcp -j"));
    }

    #[test]
    fn uninstall_removes_exactly_what_install_added() {
        assert_eq!(
            uninstall_rules("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"),
            None
        );
        let existing = "*nat\n:MESHTOP_INBOUND - [0:0]\n:MESHTOP_OUTPUT - [0:0]\n-A PREROUTING -p tcp -j MESHTOP_INBOUND\n-A PREROUTING -p tcp -j OTHER\n-A OUTPUT -p tcp -j MESHTOP_OUTPUT\nCOMMIT\n";
        let rules = uninstall_rules(existing).expect("something to remove");
        assert!(rules.contains("-D PREROUTING -p tcp -j MESHTOP_INBOUND"));
        assert!(rules.contains("-D OUTPUT -p tcp -j MESHTOP_OUTPUT"));
        assert!(rules.contains("-X MESHTOP_INBOUND") && rules.contains("-X MESHTOP_OUTPUT"));
        assert!(!rules.contains("OTHER"));
    }

    #[test]
    fn subnets_parse() {
        assert!("10.0.0.0/8".parse::<Subnet>().is_ok());
        assert!("fd00::/8".parse::<Subnet>().is_ok());
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "::/129"] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }
}
