//! What every pod gets: meshtop's two containers, as YAML text (block and
//! flow style) and as the parsed trees the edits are checked against.

use saphyr::{ScalarStyle, Yaml};

use super::yaml::load_one;
use super::{INIT_CONTAINER, InjectOptions, PROXY_CONTAINER};

// ---------------------------------------------------------------------------
// The two containers, as YAML text: one source for both the lossless edit
// and the parsed tree it is checked against.

/// The two containers as block mappings, written once, and as flow
/// mappings, written from them, for pod specs and lists in flow style.
pub(super) struct SidecarTexts {
    init: String,
    proxy: String,
    init_flow: String,
    proxy_flow: String,
}

pub(super) struct SidecarTrees<'a> {
    pub(super) init: Yaml<'a>,
    pub(super) proxy: Yaml<'a>,
}

impl SidecarTexts {
    /// The containers `options` describe; `None` when they cannot be
    /// written in both styles with the same meaning.
    pub(super) fn new(options: &InjectOptions) -> Option<SidecarTexts> {
        let image = scalar_text(&options.image);
        let uid = options.proxy_uid;
        let admin = options.admin_port;

        // `meshtop init` always skips the default admin port; naming the
        // admin port skips a different one too, and shows in the manifest
        // why the kubelet's probes reach the sidecar directly.
        let mut skip_inbound = options.skip_inbound_ports.clone();
        skip_inbound.push(admin);
        let mut init_args = vec![
            "init".to_owned(),
            "--proxy-uid".to_owned(),
            uid.to_string(),
            "--skip-inbound-ports".to_owned(),
            port_list(&skip_inbound),
        ];
        if !options.skip_outbound_ports.is_empty() {
            init_args.push("--skip-outbound-ports".to_owned());
            init_args.push(port_list(&options.skip_outbound_ports));
        }
        let init_args = flow_list(&init_args);
        let proxy_args = flow_list(&[
            "proxy".to_owned(),
            "--admin".to_owned(),
            format!("127.0.0.1:{admin}"),
            "--public-admin".to_owned(),
            format!("$(POD_IP):{admin}"),
        ]);

        let init = format!(
            "\
name: {INIT_CONTAINER}
image: {image}
command: [meshtop]
args: {init_args}
resources:
  requests: {{cpu: 10m, memory: 10Mi}}
  limits: {{cpu: 100m, memory: 50Mi}}
securityContext:
  runAsUser: 0
  runAsNonRoot: false
  privileged: false
  allowPrivilegeEscalation: false
  capabilities:
    add: [NET_ADMIN]
    drop: [ALL]
  seccompProfile: {{type: RuntimeDefault}}
"
        );
        let proxy = format!(
            "\
name: {PROXY_CONTAINER}
image: {image}
command: [meshtop]
args: {proxy_args}
restartPolicy: Always
ports:
- name: meshtop-admin
  containerPort: {admin}
env:
- name: POD_NAME
  valueFrom:
    fieldRef: {{fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef: {{fieldPath: metadata.namespace}}
- name: POD_IP
  valueFrom:
    fieldRef: {{fieldPath: status.podIP}}
- name: MESHTOP_ADMIN_TOKEN
  valueFrom:
    secretKeyRef: {{name: meshtop-admin, key: token, optional: true}}
startupProbe:
  httpGet: {{path: /readyz, port: {admin}}}
  periodSeconds: 1
  failureThreshold: 30
readinessProbe:
  httpGet: {{path: /readyz, port: {admin}}}
  periodSeconds: 5
resources:
  requests: {{cpu: 10m, memory: 20Mi}}
  limits: {{cpu: \"1\", memory: 128Mi}}
securityContext:
  runAsUser: {uid}
  runAsNonRoot: true
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
  seccompProfile: {{type: RuntimeDefault}}
"
        );
        SidecarTexts::from_block(init, proxy)
    }

    /// One-line containers named as the sidecars, which stand in for them
    /// where an edit is checked (see `Edit::plan`).
    pub(super) fn stand_ins() -> Option<SidecarTexts> {
        SidecarTexts::from_block(
            format!("name: {INIT_CONTAINER}\n"),
            format!("name: {PROXY_CONTAINER}\n"),
        )
    }

    /// Both containers from their block mappings, with their flow forms,
    /// each checked to parse, as an item of a flow sequence, into the very
    /// tree of its block form.
    fn from_block(init: String, proxy: String) -> Option<SidecarTexts> {
        let flow = |block: &str| {
            let tree = load_one(block)?;
            let flow = flow_text(&tree)?;
            let as_item = format!("[{flow}]");
            let parsed = load_one(&as_item)?;
            (parsed == Yaml::Sequence(vec![tree])).then_some(flow)
        };
        Some(SidecarTexts {
            init_flow: flow(&init)?,
            proxy_flow: flow(&proxy)?,
            init,
            proxy,
        })
    }

    pub(super) fn trees(&self) -> Option<SidecarTrees<'_>> {
        Some(SidecarTrees {
            init: load_one(&self.init)?,
            proxy: load_one(&self.proxy)?,
        })
    }

    /// The container as a block mapping.
    pub(super) fn text(&self, sidecar: Sidecar) -> &str {
        match sidecar {
            Sidecar::Init => &self.init,
            Sidecar::Proxy => &self.proxy,
        }
    }

    /// The container as a flow mapping on one line.
    pub(super) fn flow(&self, sidecar: Sidecar) -> &str {
        match sidecar {
            Sidecar::Init => &self.init_flow,
            Sidecar::Proxy => &self.proxy_flow,
        }
    }
}

/// A tree of meshtop's own containers in flow style on one line, every
/// scalar in the style it was written in; `None` for what that cannot keep
/// (a block scalar, a tag), which the caller's check would refuse anyway.
fn flow_text(node: &Yaml) -> Option<String> {
    Some(match node {
        Yaml::Representation(text, ScalarStyle::Plain, None) if !text.contains('\n') => {
            text.to_string()
        }
        Yaml::Representation(text, ScalarStyle::SingleQuoted, None) if !text.contains('\n') => {
            format!("'{}'", text.replace('\'', "''"))
        }
        Yaml::Representation(text, ScalarStyle::DoubleQuoted, None) => quoted(text),
        Yaml::Mapping(map) => {
            let entries: Option<Vec<String>> = map
                .iter()
                .map(|(key, value)| Some(format!("{}: {}", flow_text(key)?, flow_text(value)?)))
                .collect();
            format!("{{{}}}", entries?.join(", "))
        }
        Yaml::Sequence(items) => {
            let items: Option<Vec<String>> = items.iter().map(flow_text).collect();
            format!("[{}]", items?.join(", "))
        }
        _ => return None,
    })
}

impl<'a> SidecarTrees<'a> {
    pub(super) fn tree(&self, sidecar: Sidecar) -> &Yaml<'a> {
        match sidecar {
            Sidecar::Init => &self.init,
            Sidecar::Proxy => &self.proxy,
        }
    }
}

/// Ports, deduplicated in their order, as `meshtop init` takes them.
pub(super) fn port_list(ports: &[u16]) -> String {
    let mut seen = Vec::with_capacity(ports.len());
    for &port in ports {
        if !seen.contains(&port) {
            seen.push(port);
        }
    }
    seen.iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn flow_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| scalar_text(item)).collect();
    format!("[{}]", items.join(", "))
}

/// A string as a YAML scalar that every YAML version reads as that string:
/// plain when it plainly is one, else double-quoted (a JSON string is a
/// valid YAML double-quoted scalar).
pub(super) fn scalar_text(s: &str) -> String {
    const YAML_1_1_WORDS: &[&str] = &[
        "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~",
    ];
    let starts_well = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        || (s.starts_with("--") && s[2..].starts_with(|c: char| c.is_ascii_alphabetic()));
    let plain = starts_well
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "./:_@-".contains(c))
        && !s.ends_with(':')
        && !YAML_1_1_WORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain { s.to_owned() } else { quoted(s) }
}

pub(super) fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sidecar {
    Init,
    Proxy,
}

/// A mapping's text as an item of a block sequence whose dashes stand at
/// `column`.
pub(super) fn block_item(mapping: &str, column: usize) -> String {
    let mut item = String::with_capacity(mapping.len() * 2);
    for (index, line) in mapping.lines().enumerate() {
        item.extend(std::iter::repeat_n(' ', column));
        item.push_str(if index == 0 { "- " } else { "  " });
        item.push_str(line);
        item.push('\n');
    }
    item
}
