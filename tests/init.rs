//! `meshtop init` against real iptables, inside a network namespace of the
//! test's own (root only; skipped with the reason otherwise), so the host's
//! rules are never touched.

mod support;

use std::process::Command;

use support::*;

/// A network namespace, deleted on drop (also when an assertion fails).
struct Netns(String);

impl Netns {
    fn create(tag: &str) -> Result<Netns, String> {
        let name = format!("mt-{tag}-{}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("ip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip netns add: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Netns(name))
    }

    fn exec(&self, program: &str, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .output()
            .expect("ip netns exec runs")
    }

    fn nat(&self) -> String {
        String::from_utf8_lossy(&self.exec("iptables-save", &["-t", "nat"]).stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn skip_reason() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".into());
    }
    for tool in ["ip", "iptables-restore", "iptables-save"] {
        if Command::new(tool).arg("-V").output().is_err()
            && Command::new(tool).arg("--version").output().is_err()
        {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

fn count(text: &str, line: &str) -> usize {
    text.lines().filter(|l| l.trim() == line).count()
}

#[test]
fn init_is_idempotent_and_uninstall_removes_exactly_its_rules() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipping: {reason}");
        return;
    }
    let ns = Netns::create("init").expect("a network namespace");
    // A rule of someone else's, which must survive everything.
    let theirs = ns.exec(
        "iptables",
        &["-t", "nat", "-A", "OUTPUT", "-p", "udp", "-j", "RETURN"],
    );
    assert!(theirs.status.success());
    let meshtop = env!("CARGO_BIN_EXE_meshtop");
    for _ in 0..2 {
        let out = ns.exec(
            meshtop,
            &[
                "init",
                "--skip-outbound-ports",
                "5432",
                "--skip-subnets",
                "10.96.0.0/12",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let nat = ns.nat();
    assert_eq!(
        count(&nat, "-A PREROUTING -p tcp -j MESHTOP_INBOUND"),
        1,
        "{nat}"
    );
    assert_eq!(
        count(&nat, "-A OUTPUT -p tcp -j MESHTOP_OUTPUT"),
        1,
        "{nat}"
    );
    assert_eq!(
        count(
            &nat,
            "-A MESHTOP_INBOUND -p tcp -m tcp --dport 15090 -j RETURN"
        ),
        1,
        "{nat}"
    );
    assert_eq!(
        count(
            &nat,
            "-A MESHTOP_INBOUND -p tcp -j REDIRECT --to-ports 15006"
        ),
        1,
        "{nat}"
    );
    assert_eq!(
        count(
            &nat,
            "-A MESHTOP_OUTPUT -m owner --uid-owner 1337 -j RETURN"
        ),
        1,
        "{nat}"
    );
    assert_eq!(
        count(&nat, "-A MESHTOP_OUTPUT -d 10.96.0.0/12 -j RETURN"),
        1,
        "{nat}"
    );
    assert_eq!(
        count(
            &nat,
            "-A MESHTOP_OUTPUT -p tcp -j REDIRECT --to-ports 15001"
        ),
        1,
        "{nat}"
    );

    let out = ns.exec(meshtop, &["init", "--uninstall"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nat = ns.nat();
    assert!(!nat.contains("MESHTOP"), "{nat}");
    assert_eq!(
        count(&nat, "-A OUTPUT -p udp -j RETURN"),
        1,
        "their rule survives: {nat}"
    );
}

#[test]
fn dry_run_prints_the_rules_and_changes_nothing() {
    let output = meshtop_bin()
        .args([
            "init",
            "--dry-run",
            "--skip-inbound-ports",
            "8443",
            "--proxy-uid",
            "2000",
        ])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0));
    let rules = String::from_utf8_lossy(&output.stdout);
    assert!(
        rules.contains("-A MESHTOP_INBOUND -p tcp --dport 8443 -j RETURN"),
        "{rules}"
    );
    assert!(rules.contains("--uid-owner 2000"), "{rules}");
    assert!(rules.contains("# ip6tables-restore"), "{rules}");
}

#[test]
fn without_iptables_restore_it_says_so_in_one_line() {
    let empty = std::env::temp_dir().join(format!("meshtop-empty-path-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("dir");
    let output = meshtop_bin()
        .arg("init")
        .env("PATH", &empty)
        .output()
        .expect("runs");
    let _ = std::fs::remove_dir(&empty);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("iptables-restore"), "{stderr}");
}

#[test]
fn without_net_admin_it_says_so_in_one_line() {
    if skip_reason().is_some() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipping: needs root (to drop to an unprivileged user), iptables and setpriv");
        return;
    }
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            env!("CARGO_BIN_EXE_meshtop"),
            "init",
        ])
        .output()
        .expect("setpriv runs");
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");
}

#[test]
fn dry_run_uninstall_prints_the_removal_not_the_install() {
    // Finding 14: `--dry-run --uninstall` printed the install rules.
    let output = meshtop_bin()
        .args(["init", "--dry-run", "--uninstall"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0));
    let rules = String::from_utf8_lossy(&output.stdout);
    assert!(!rules.contains("-A "), "nothing is added: {rules}");
    for line in [
        "-D PREROUTING -p tcp -j MESHTOP_INBOUND",
        "-D OUTPUT -p tcp -j MESHTOP_OUTPUT",
        "-X MESHTOP_INBOUND",
        "-X MESHTOP_OUTPUT",
    ] {
        assert_eq!(count(&rules, line), 2, "{line} once per family: {rules}");
    }
}

#[test]
fn nonsense_ports_and_uids_are_refused_in_one_line() {
    // Finding 14: port 0 and one port for both listeners were accepted.
    for args in [
        &["--inbound-port", "0"][..],
        &["--outbound-port", "0"],
        &["--inbound-port", "15001"],
        &["--inbound-port", "9000", "--outbound-port", "9000"],
        &["--outbound-port", "15090"],
        &["--proxy-uid", "0"],
    ] {
        for dry_run in [true, false] {
            let mut command = meshtop_bin();
            command.arg("init").args(args);
            if dry_run {
                command.arg("--dry-run");
            }
            let output = command.output().expect("runs");
            assert_eq!(output.status.code(), Some(2), "{args:?}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
            assert!(stderr.starts_with("meshtop: "), "{stderr}");
            assert!(output.stdout.is_empty(), "{args:?}");
        }
    }
}
