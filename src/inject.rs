//! `meshtop inject`: adds meshtop's init container and sidecar to every pod
//! of a Kubernetes YAML stream, and changes nothing else.
//!
//! # What every pod gets
//!
//! A pod spec is a Pod's `spec`; the `spec.template.spec` of a Deployment,
//! StatefulSet, DaemonSet, ReplicaSet, ReplicationController or Job; a
//! CronJob's `spec.jobTemplate.spec.template.spec`; and those of the items of
//! a `List`. Other kinds pass through untouched. At the head of each pod
//! spec's `initContainers` go:
//!
//! - `meshtop-init`, running `meshtop init`: it redirects the pod's TCP
//!   traffic to the sidecar with iptables. It runs as root with `NET_ADMIN`
//!   as its only capability (all others dropped), never privileged.
//! - `meshtop-proxy`, running `meshtop proxy` as the proxy UID, whose own
//!   connections `meshtop init` leaves alone: not root, no capability, no
//!   privilege escalation, a read-only root filesystem. It is a *native
//!   sidecar* (an init container with `restartPolicy: Always`, Kubernetes
//!   1.29 and later), not an entry of `containers`: only there is it
//!   listening (its startup probe passed) before any other container starts,
//!   the pod's own init containers included, whose traffic is already
//!   redirected; it stops after them; and a Job's pod completes when its
//!   containers do, where a sidecar in `containers` would keep it running
//!   forever.
//!
//! A pod that already has a container named `meshtop-init` or
//! `meshtop-proxy` (in either list) does not get a second one, so injecting
//! twice changes nothing. Pods with `hostNetwork: true` are left alone:
//! `meshtop init` would rewrite the node's own iptables.
//!
//! # The admin port and readiness
//!
//! `meshtop proxy` binds its admin server to loopback by default so that
//! only `kubectl port-forward` reaches it. The kubelet, however, probes
//! `/readyz` from the node, at the pod's IP, and an `exec` probe would need
//! an HTTP client in an image that holds only meshtop; Prometheus scrapes
//! `/metrics` at the pod's IP too. So the injected sidecar binds its admin
//! server on `127.0.0.1:ADMIN_PORT` (everything, `/events` included, for
//! `kubectl port-forward`) and a public twin on `$(POD_IP):ADMIN_PORT`
//! (`--public-admin`, the pod IP from the downward API), which `meshtop
//! init` exempts from redirection. The public one serves the probes and
//! `/metrics` (aggregates), and `/events` (paths, client addresses,
//! captured headers) only once the optional Secret `meshtop-admin` (key
//! `token`) exists in the pod's namespace: the sidecar reads it into
//! `MESHTOP_ADMIN_TOKEN` and then requires it. So per-request events are
//! closed to other pods by default, and open to them only with a token.
//!
//! # Keeping everything else as it was
//!
//! The stream is cut into documents at its `---` lines (YAML forbids such a
//! line inside any scalar, so the cut is exact). [`saphyr`] parses each one
//! strictly, so a syntax error names its document and line, and with scalars
//! kept as written, so nothing is reinterpreted (Kubernetes reads YAML 1.1:
//! `0644` is octal, `yes` is true). A document with nothing to inject is
//! copied byte for byte. Into one that gets meshtop, the containers are
//! inserted as text, one way for every layout ([`edit`]): at positions read
//! from [`yaml_edit`]'s lossless syntax tree, as block items at the column
//! of the list's items (of `containers` for a new `initContainers`) or as
//! flow mappings inside flow collections. Nothing of the input is removed
//! or moved but the value of an empty `initContainers` (`[]`, `~`), which
//! the new items replace, so comments, key order, quoting, anchors and
//! blank lines all stay. The edited text is parsed again and must equal the same insertion
//! made on the parsed tree; a pod spec whose layout leaves no place to
//! insert, or whose edit fails that check, is refused with an
//! [`InjectError::Unsupported`] naming its document, line and object.
//!
//! A pod left alone is said, not skipped silently: [`injected`] and
//! [`inject_to`] return an [`InjectWarning`] for each one (on the host
//! network, without a `containers` list, with an `initContainers` that is
//! not a list), and `meshtop inject` prints it to stderr as `meshtop:
//! warning: FILE: document 2, DaemonSet node-agent: left alone: …`.
//!
//! # Size
//!
//! Time and memory grow linearly with the input (benches/inject.sh). A
//! `List` is cut into its items, each injected alone ([`split_list`]); an
//! edit is checked with one-line stand-ins for the sidecars, which are most
//! of the output ([`Edit::plan`]); and every document is planned (its
//! insertions found and checked, a few offsets kept) before [`inject_to`]
//! writes anything, as it goes, so that nothing is written when any
//! document would fail.

mod edit;
mod list;
mod pods;
mod sidecars;
mod stream;
mod yaml;

use edit::{Edit, Shape, Splice, all_lines_end_in_crlf};
use list::split_list;
use sidecars::SidecarTexts;
use stream::{Chunk, has_content, split_documents};

/// The name of the init container that programs iptables.
pub const INIT_CONTAINER: &str = "meshtop-init";
/// The name of the sidecar running the proxy.
pub const PROXY_CONTAINER: &str = "meshtop-proxy";

/// The ports `meshtop proxy` listens on by default, which `meshtop init`
/// redirects to by default: the admin port must be neither.
const INBOUND_PORT: u16 = 15006;
const OUTBOUND_PORT: u16 = 15001;

/// What `meshtop inject` puts into pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectOptions {
    /// The image of both containers; `meshtop` must be on its `PATH`.
    pub image: String,
    /// The UID the sidecar runs as: `meshtop init` exempts this UID's
    /// traffic, so the proxy's own upstream connections are not redirected
    /// back to it. Never 0.
    pub proxy_uid: u32,
    /// Inbound ports that bypass the proxy (the admin port always does).
    pub skip_inbound_ports: Vec<u16>,
    /// Outbound destination ports that bypass the proxy.
    pub skip_outbound_ports: Vec<u16>,
    /// The sidecar's admin port, bound on every address of the pod so that
    /// the kubelet's probes reach `/readyz` (see the module documentation).
    pub admin_port: u16,
}

impl Default for InjectOptions {
    fn default() -> Self {
        InjectOptions {
            image: "ghcr.io/meshtop/meshtop:0.1.0".to_owned(),
            proxy_uid: 1337,
            skip_inbound_ports: Vec::new(),
            skip_outbound_ports: Vec::new(),
            admin_port: 15090,
        }
    }
}

/// Why a stream could not be injected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// The input is not valid YAML. Documents are numbered from 1, lines
    /// and columns from 1 in the whole input.
    #[error("invalid YAML in document {document}, line {line}, column {column}: {reason}")]
    InvalidYaml {
        document: usize,
        line: usize,
        column: usize,
        reason: String,
    },
    /// The options cannot make a working pod.
    #[error("{0}")]
    InvalidOptions(String),
    /// A pod spec laid out so that the containers have no place to be
    /// inserted as text (an alias for a pod spec, a `containers` key behind
    /// another node on its line), or whose edit would not mean what adding
    /// them means. Nothing is rewritten instead.
    #[error("cannot inject document {document} (line {line}): {reason}")]
    Unsupported {
        document: usize,
        line: usize,
        reason: String,
    },
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Write(String),
}

/// A pod that `meshtop inject` left without meshtop, said rather than
/// skipped silently; `meshtop inject` prints each one to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectWarning {
    /// The document, numbered as in [`InjectError::InvalidYaml`].
    pub document: usize,
    /// The object, as its kind and name (`Deployment web`).
    pub object: String,
    pub why: LeftAlone,
}

/// Why a pod spec was left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftAlone {
    /// `hostNetwork: true`: `meshtop init` would rewrite the node's own
    /// iptables.
    HostNetwork,
    /// The pod spec has no `containers` list.
    NoContainers,
    /// `initContainers` is neither a list nor empty.
    InitContainersNotAList,
}

impl std::fmt::Display for InjectWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let InjectWarning {
            document, object, ..
        } = self;
        write!(f, "document {document}, {object}: left alone: ")?;
        match self.why {
            LeftAlone::HostNetwork => write!(
                f,
                "it runs on the host network (hostNetwork: true), whose iptables meshtop init \
                 would rewrite"
            ),
            LeftAlone::NoContainers => write!(f, "its pod spec has no containers list"),
            LeftAlone::InitContainersNotAList => write!(f, "its initContainers is not a list"),
        }
    }
}

/// A stream with meshtop added, and what was given up for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub text: String,
    pub warnings: Vec<InjectWarning>,
}

/// Adds meshtop to every pod of `input`, a stream of YAML documents, and
/// returns the stream with everything else as it was, without its warnings:
/// for callers that show them, [`injected`] and [`inject_to`].
pub fn inject(input: &str, options: &InjectOptions) -> Result<String, InjectError> {
    injected(input, options).map(|injected| injected.text)
}

/// Adds meshtop to every pod of `input` and returns the stream with its
/// warnings.
pub fn injected(input: &str, options: &InjectOptions) -> Result<Injected, InjectError> {
    injected_with(input, options, Lists::ByItem)
}

/// [`injected`] with the handling of `List`s chosen (tests compare them).
fn injected_with(
    input: &str,
    options: &InjectOptions,
    lists: Lists,
) -> Result<Injected, InjectError> {
    let mut text = String::with_capacity(input.len() + 4096);
    let warnings = inject_with(input, options, lists, &mut |piece| {
        text.push_str(piece);
        Ok(())
    })?;
    Ok(Injected { text, warnings })
}

/// Adds meshtop to every pod of `input` and writes the stream to `out` as it
/// goes, holding one document (one item of a `List`) at a time, not the
/// whole output, which is many times the input's size. Nothing is written
/// when the input cannot be injected: every document is planned first.
/// Returns the warnings, one per pod left alone.
pub fn inject_to(
    input: &str,
    options: &InjectOptions,
    out: &mut dyn std::io::Write,
) -> Result<Vec<InjectWarning>, InjectError> {
    let warnings = inject_with(input, options, Lists::ByItem, &mut |text| {
        out.write_all(text.as_bytes())
            .map_err(|err| InjectError::Write(err.to_string()))
    })?;
    out.flush()
        .map_err(|err| InjectError::Write(err.to_string()))?;
    Ok(warnings)
}

/// How a `List` document is injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lists {
    /// One item at a time, when its items can be cut apart (see
    /// [`split_list`]).
    ByItem,
    /// Whole, as any document; lets the tests compare the two.
    #[cfg_attr(not(test), allow(dead_code))]
    Whole,
}

/// Where the output goes, a piece at a time.
type Sink<'s> = dyn FnMut(&str) -> Result<(), InjectError> + 's;

/// A piece of the input and the insertions into it (none: copied as is).
struct Part<'i> {
    text: &'i str,
    splices: Vec<Splice>,
    /// Whether the document's lines end with `\r\n`, as the inserted ones
    /// then must.
    crlf: bool,
}

/// Plans every document (each item of a cut `List`), then writes them:
/// what fails, fails before anything is written.
fn inject_with(
    input: &str,
    options: &InjectOptions,
    lists: Lists,
    out: &mut Sink,
) -> Result<Vec<InjectWarning>, InjectError> {
    with_edit(options, |edit| {
        let (parts, warnings) = plan(edit, input, lists)?;
        for part in &parts {
            if part.splices.is_empty() {
                out(part.text)?;
            } else {
                out(&edit.write(part.text, &part.splices, part.crlf))?;
            }
        }
        Ok(warnings)
    })
}

/// Runs `f` with the [`Edit`] that adds the containers `options` make.
fn with_edit<R>(
    options: &InjectOptions,
    f: impl FnOnce(&Edit) -> Result<R, InjectError>,
) -> Result<R, InjectError> {
    check_options(options)?;
    let containers_error = || {
        InjectError::InvalidOptions(format!(
            "cannot build the containers for image {:?}",
            options.image
        ))
    };
    let sidecars = SidecarTexts::new(options).ok_or_else(containers_error)?;
    let stand_ins = SidecarTexts::stand_ins().ok_or_else(containers_error)?;
    let (Some(trees), Some(stand_in_trees)) = (sidecars.trees(), stand_ins.trees()) else {
        return Err(containers_error());
    };
    f(&Edit {
        sidecars: &sidecars,
        trees: &trees,
        stand_ins: &stand_ins,
        stand_in_trees: &stand_in_trees,
        items_checked: Default::default(),
    })
}

/// The input cut into documents (and `List`s into items), each with its
/// insertions found and checked, and the pods left alone.
fn plan<'i>(
    edit: &Edit,
    input: &'i str,
    lists: Lists,
) -> Result<(Vec<Part<'i>>, Vec<InjectWarning>), InjectError> {
    let mut parts = Vec::new();
    let mut warnings = Vec::new();
    let mut plan = |chunk: &Chunk<'_>, document, shape| {
        let planned = edit.plan(chunk, document, shape)?;
        warnings.extend(planned.warnings);
        Ok::<_, InjectError>(planned.splices)
    };
    let mut document = 0;
    for chunk in split_documents(input) {
        if chunk.explicit || has_content(chunk.text) {
            document += 1;
        }
        let crlf = all_lines_end_in_crlf(chunk.text);
        let items = match lists {
            Lists::ByItem => split_list(chunk.text),
            Lists::Whole => None,
        };
        let Some(items) = items else {
            let splices = plan(&chunk, document, Shape::Stream)?;
            parts.push(Part {
                text: chunk.text,
                splices,
                crlf,
            });
            continue;
        };
        let text = chunk.text;
        let first = items.first().map_or(text.len(), |item| item.start);
        let last = items.last().map_or(text.len(), |item| item.end);
        parts.push(Part {
            text: &text[..first],
            splices: Vec::new(),
            crlf,
        });
        let (mut first_line, mut counted) = (chunk.first_line, 0);
        for item in items {
            first_line += text[counted..item.start].matches('\n').count();
            counted = item.start;
            let piece = Chunk {
                text: &text[item],
                first_line,
                explicit: false,
            };
            let splices = plan(&piece, document, Shape::ListItem)?;
            parts.push(Part {
                text: piece.text,
                splices,
                crlf,
            });
        }
        parts.push(Part {
            text: &text[last..],
            splices: Vec::new(),
            crlf,
        });
    }
    Ok((parts, warnings))
}

fn check_options(options: &InjectOptions) -> Result<(), InjectError> {
    if options.proxy_uid == 0 {
        return Err(InjectError::InvalidOptions(
            "invalid proxy UID 0: the sidecar must not run as root".to_owned(),
        ));
    }
    if [0, INBOUND_PORT, OUTBOUND_PORT].contains(&options.admin_port) {
        return Err(InjectError::InvalidOptions(format!(
            "invalid admin port {}: it must not be 0, {INBOUND_PORT} or {OUTBOUND_PORT}",
            options.admin_port
        )));
    }
    if options.image.trim().is_empty() {
        return Err(InjectError::InvalidOptions("the image is empty".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use saphyr::Yaml;
    use sidecars::scalar_text;
    use yaml::load;

    fn run(input: &str, options: &InjectOptions, lists: Lists) -> Result<String, InjectError> {
        injected_with(input, options, lists).map(|injected| injected.text)
    }

    /// What injecting `input` must mean, from its parsed tree alone: the
    /// planned insertions made on it, without the text edit or its check.
    fn meaning<'a>(input: &'a str, trees: &sidecars::SidecarTrees<'a>) -> Vec<Yaml<'a>> {
        let docs = load(input).expect("valid YAML");
        let plans: Vec<pods::Plan> = docs.iter().map(pods::plan_document).collect();
        pods::expect(&docs, &plans, trees)
    }

    const TRICKY: &str = "\
# a comment
apiVersion: v1
kind: Pod
metadata:
  name: 'it''s'
  annotations:
    mode: 0644
    flag: yes
    empty:
    quoted: \"a\\tb\"
    literal: |
      line one
        indented
    folded: >-
      one
      two
spec:
  containers:
  - name: app
    args: [\"--x=1\", '2', three]
    env: []
    ports:
    - - nested
      - list
";

    #[test]
    fn every_scalar_and_comment_is_kept_as_written() {
        let options = InjectOptions::default();
        let output = injected(TRICKY, &options).expect("injects");
        assert_eq!(output.warnings, []);
        let mut output_lines = output.text.lines();
        for line in TRICKY.lines() {
            assert!(
                output_lines.any(|out| out == line),
                "{line:?} lost in\n{}",
                output.text
            );
        }
        let sidecars = SidecarTexts::new(&options).expect("containers");
        let trees = sidecars.trees().expect("trees");
        assert_eq!(load(&output.text).expect("valid"), meaning(TRICKY, &trees));
    }

    /// A pod spec in flow style over several lines, with a comment: the
    /// layout the emitter of earlier versions rewrote in block style.
    #[test]
    fn a_flow_pod_spec_over_several_lines_is_edited_in_place() {
        let input = "kind: Pod\nmetadata: {name: web}\nspec: {\n  # the app\n  containers: [{name: app}]\n}\n";
        let output = injected(input, &InjectOptions::default()).expect("injects");
        assert_eq!(output.warnings, []);
        assert!(
            output
                .text
                .starts_with("kind: Pod\nmetadata: {name: web}\nspec: {\n  # the app\n  initContainers: [{name: meshtop-init, "),
            "{}",
            output.text
        );
        assert!(
            output.text.ends_with("}], containers: [{name: app}]\n}\n"),
            "{}",
            output.text
        );
    }

    #[test]
    fn tagged_nodes_are_kept() {
        let input =
            "kind: Pod\nmetadata:\n  name: !!str app\nspec:\n  containers:\n  - name: app\n";
        let output = inject(input, &InjectOptions::default()).expect("injects");
        assert!(output.contains("name: !!str app\n"), "{output}");
    }

    /// meshtop's containers in flow style mean what they mean in block
    /// style, whatever the options.
    #[test]
    fn the_containers_written_in_flow_style_mean_the_same() {
        for image in [
            "ghcr.io/meshtop/meshtop:0.1.0",
            "registry:5000/x y\"z",
            "a,b[c]{d}#e",
        ] {
            let options = InjectOptions {
                image: image.to_owned(),
                skip_outbound_ports: vec![53, 443],
                ..InjectOptions::default()
            };
            let sidecars = SidecarTexts::new(&options).expect("both styles");
            for sidecar in [sidecars::Sidecar::Init, sidecars::Sidecar::Proxy] {
                let flow = sidecars.flow(sidecar);
                assert!(!flow.contains('\n'), "{flow}");
                assert_eq!(
                    load(flow).expect("valid"),
                    load(sidecars.text(sidecar)).expect("valid"),
                    "{flow}"
                );
            }
        }
    }

    #[test]
    fn scalars_are_quoted_when_yaml_1_1_would_read_them_otherwise() {
        assert_eq!(
            scalar_text("ghcr.io/meshtop/meshtop:0.1.0"),
            "ghcr.io/meshtop/meshtop:0.1.0"
        );
        assert_eq!(scalar_text("--admin"), "--admin");
        assert_eq!(scalar_text("1337"), "\"1337\"");
        assert_eq!(scalar_text("on"), "\"on\"");
        assert_eq!(scalar_text("key:"), "\"key:\"");
        assert_eq!(scalar_text("a b"), "\"a b\"");
        assert_eq!(
            scalar_text("registry:5000/x y\"z"),
            "\"registry:5000/x y\\\"z\""
        );
    }

    /// `List`s laid out as `kubectl get -o yaml` and people write them.
    const LISTS: &[&str] = &[
        // Items at the key's column, a pod, a deployment, a config map.
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n  spec:\n    containers:\n    - name: app\n      image: x\n- apiVersion: apps/v1\n  kind: Deployment\n  spec:\n    template:\n      spec:\n        initContainers:\n        - name: setup\n          image: y\n        containers:\n        - {name: app, image: x}\n- kind: ConfigMap\n  data: {a: b}\n",
        // Items indented, comments between and after them, `kind` last.
        "apiVersion: v1\nitems:\n  # the first\n  - kind: Pod\n    spec:\n      containers:\n        - name: app\n\n  # the second\n  - kind: Pod # inline\n    spec:\n      initContainers: []\n      containers:\n        - name: app\n  # trailing\nkind: List\nmetadata:\n  resourceVersion: \"\"\n",
        // An item in flow style, a literal block, CRLF, non-ASCII.
        "kind: List\r\nitems:\r\n- {kind: Pod, spec: {containers: [{name: app}]}}\r\n- kind: Pod\r\n  metadata:\r\n    annotations:\r\n      note: |\r\n        caf\u{e9} \u{2014} ok\r\n  spec:\r\n    containers:\r\n    - name: \u{e9}t\u{e9}\r\n",
        // An explicit document among others, ending without a newline.
        "kind: Pod\nspec:\n  containers:\n  - name: a\n---\nkind: PodList\nitems:\n- kind: Pod\n  spec:\n    containers:\n    - name: b",
    ];

    #[test]
    fn lists_are_cut_into_items_that_parse_alone() {
        let documents: Vec<&str> = LISTS
            .iter()
            .map(|list| list.rsplit("---\n").next().unwrap_or(list))
            .collect();
        for list in documents {
            let items = split_list(list).expect("a list that can be cut");
            assert!(items.len() >= 2 || list.contains("PodList"), "{list}");
            for item in items {
                assert!(list[item].trim_start().starts_with('-'));
            }
        }
        // Not cut: anchors, a flow sequence, a list of one document among two.
        for whole in [
            "kind: List\nitems:\n- &a {kind: Pod}\n- *a\n",
            "kind: List\nitems: [{kind: Pod}]\n",
            "kind: List\nitems:\n-\n  kind: Pod\n",
            "kind: Deployment\nitems:\n- a\n",
            "kind: List\nitems:\n- a\n---\nkind: List\nitems:\n- b\n",
            // Duplicate keys, which loading the whole document refuses.
            "kind: List\nitems:\n- kind: Pod\n  kind: Pod\n",
            "kind: List\nitems:\n- kind: Pod\nkind: List\n",
        ] {
            assert_eq!(split_list(whole), None, "{whole}");
        }
    }

    #[test]
    fn a_list_injected_item_by_item_is_what_it_is_injected_whole() {
        let options = InjectOptions::default();
        let sidecars = SidecarTexts::new(&options).expect("containers");
        let trees = sidecars.trees().expect("trees");
        for list in LISTS {
            let by_item = run(list, &options, Lists::ByItem).expect("injects");
            let whole = run(list, &options, Lists::Whole).expect("injects");
            // The same insertions, so the same text, in any layout.
            assert_eq!(by_item, whole, "{list}");
            // What the tree says, without the text edit or its check.
            assert_eq!(
                load(&by_item).expect("valid"),
                meaning(list, &trees),
                "{list}"
            );
            assert!(by_item.matches(PROXY_CONTAINER).count() >= 2, "{by_item}");
            for comment in ["# the first", "# the second", "# inline", "# trailing"] {
                assert_eq!(list.contains(comment), by_item.contains(comment));
            }
            // Injecting again changes nothing.
            let again = run(&by_item, &options, Lists::ByItem).expect("injects");
            assert_eq!(again, by_item);
        }
    }

    #[test]
    fn nothing_is_written_when_a_later_document_is_invalid() {
        let input = format!("{}---\nkind: Pod\nspec: [\n", LISTS[0]);
        let mut out = Vec::new();
        let err = inject_to(&input, &InjectOptions::default(), &mut out).expect_err("invalid");
        assert!(
            matches!(err, InjectError::InvalidYaml { document: 2, .. }),
            "{err}"
        );
        assert!(out.is_empty());
        inject_to(LISTS[0], &InjectOptions::default(), &mut out).expect("injects");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            inject(LISTS[0], &InjectOptions::default()).expect("injects")
        );
    }

    #[test]
    fn directives_stay_with_their_document() {
        let input = "%YAML 1.2\n---\nkind: Pod\nspec:\n  containers:\n  - name: app\n";
        let chunks = split_documents(input);
        assert_eq!(chunks.len(), 1);
        let output = inject(input, &InjectOptions::default()).expect("valid YAML");
        assert!(output.starts_with("%YAML 1.2\n---\n"), "{output}");
        assert!(output.contains("- name: meshtop-proxy"), "{output}");
    }

    #[test]
    fn documents_are_cut_at_marker_lines_only() {
        let input = "a: 1\n---\nb: '---'\n--- # c\n---x: 1\n";
        let chunks = split_documents(input);
        let texts: Vec<&str> = chunks.iter().map(|c| c.text).collect();
        assert_eq!(texts, ["a: 1\n", "---\nb: '---'\n", "--- # c\n---x: 1\n"]);
        let lines: Vec<usize> = chunks.iter().map(|c| c.first_line).collect();
        assert_eq!(lines, [0, 1, 3]);
    }

    /// A pod spec laid out in one of the ways people and generators write
    /// them, for [`every_layout_is_edited_by_adding_text`].
    #[derive(Clone, Debug)]
    struct Layout {
        /// Pod, Deployment, or a Pod as an item of a `List`.
        wrapper: u8,
        /// Block style with this indentation (2 or 4) and items this much
        /// further right (0 or 2); else flow style, on one line or several.
        block: Option<(usize, usize)>,
        flow_lines: bool,
        /// Missing, `initContainers:`, `[]`, `~`, items (block or flow), or
        /// (in block style) an empty value on the line below the key.
        init: u8,
        /// The names of the items, when it has some.
        items: Vec<&'static str>,
        init_first: bool,
        comments: bool,
        crlf: bool,
    }

    fn layouts() -> impl proptest::strategy::Strategy<Value = Layout> {
        use proptest::prelude::*;
        let items = proptest::collection::vec(
            proptest::sample::select(vec!["setup", "meshtop-init", "migrate"]),
            1..4,
        );
        (
            0u8..3,
            proptest::option::of((
                proptest::sample::select(vec![2usize, 4]),
                proptest::sample::select(vec![0usize, 2]),
            )),
            any::<bool>(),
            0u8..7,
            items,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(wrapper, block, flow_lines, init, items, init_first, comments, crlf)| Layout {
                    wrapper,
                    block,
                    flow_lines,
                    init,
                    items,
                    init_first,
                    comments,
                    crlf,
                },
            )
    }

    impl Layout {
        fn text(&self) -> String {
            let (head, base) = match self.wrapper {
                0 => ("kind: Pod\nmetadata: {name: p}\nspec:".to_owned(), 2),
                1 => (
                    "kind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:"
                        .to_owned(),
                    6,
                ),
                _ => (
                    "kind: List\nitems:\n- kind: Pod\n  metadata: {name: p}\n  spec:".to_owned(),
                    4,
                ),
            };
            let names = |flow: bool| -> String {
                let items: Vec<String> = self
                    .items
                    .iter()
                    .map(|name| format!("{{name: {name}}}"))
                    .collect();
                if flow {
                    format!("[{}]", items.join(", "))
                } else {
                    String::new()
                }
            };
            let mut text = head;
            match self.block {
                Some((indent, offset)) => {
                    let b = " ".repeat(base - 2 + indent);
                    let item = " ".repeat(base - 2 + indent + offset);
                    let mut init = String::new();
                    if self.comments {
                        init.push_str(&format!("{b}# init\n"));
                    }
                    match self.init {
                        0 => init.clear(),
                        1 => init.push_str(&format!("{b}initContainers:\n")),
                        2 => init.push_str(&format!("{b}initContainers: []  # none\n")),
                        5 => init.push_str(&format!("{b}initContainers:\n{b}  []\n")),
                        6 => init.push_str(&format!("{b}initContainers: # none\n{b}  ~ # yet\n")),
                        3 if self.items.len() > 1 => {
                            init.push_str(&format!("{b}initContainers: {}\n", names(true)));
                        }
                        _ => {
                            init.push_str(&format!("{b}initContainers:\n"));
                            for (index, name) in self.items.iter().enumerate() {
                                if self.comments && index == 0 {
                                    init.push_str(&format!("{item}# the first\n"));
                                }
                                init.push_str(&format!("{item}- name: {name}\n{item}  image: x\n"));
                            }
                        }
                    }
                    let mut containers = String::new();
                    if self.comments {
                        containers.push_str(&format!("{b}# the apps\n"));
                    }
                    containers.push_str(&format!("{b}containers:\n{item}- name: app\n"));
                    text.push('\n');
                    if self.init_first {
                        text.push_str(&init);
                        text.push_str(&containers);
                    } else {
                        text.push_str(&containers);
                        text.push_str(&init);
                    }
                }
                None => {
                    let init = match self.init {
                        0 => None,
                        1 => Some("initContainers: ".to_owned()),
                        2 => Some("initContainers: []".to_owned()),
                        3 => Some("initContainers: ~".to_owned()),
                        _ => Some(format!("initContainers: {}", names(true))),
                    };
                    let containers = "containers: [{name: app}]".to_owned();
                    let mut entries: Vec<String> = init.into_iter().collect();
                    if self.init_first {
                        entries.push(containers);
                    } else {
                        entries.insert(0, containers);
                    }
                    if self.flow_lines {
                        let b = " ".repeat(base);
                        let comment = if self.comments {
                            format!("{b}# the spec\n")
                        } else {
                            String::new()
                        };
                        text.push_str(&format!(
                            " {{\n{comment}{b}{}\n{b}}}\n",
                            entries.join(&format!(",\n{b}"))
                        ));
                    } else {
                        text.push_str(&format!(" {{{}}}\n", entries.join(", ")));
                    }
                }
            }
            if self.crlf {
                text.replace('\n', "\r\n")
            } else {
                text
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Every layout is edited by adding text alone (replacing only an
        /// empty `initContainers`' value), never refused, means what the
        /// insertion on the tree means, and keeps its line endings.
        #[test]
        fn every_layout_is_edited_by_adding_text(layout in layouts()) {
            let input = layout.text();
            let options = InjectOptions::default();
            let sidecars = SidecarTexts::new(&options).expect("containers");
            let trees = sidecars.trees().expect("trees");
            let output = injected(&input, &options);
            proptest::prop_assert!(output.is_ok(), "{output:?}\n{input}");
            let output = output.expect("checked").text;
            let reparsed = load(&output);
            proptest::prop_assert!(reparsed.is_ok(), "{output}");
            proptest::prop_assert_eq!(reparsed.expect("checked"), meaning(&input, &trees), "{}", output);
            // Every insertion replaces nothing, but for the value of an
            // empty `initContainers`, on its line.
            let (parts, _) = with_edit(&options, |edit| plan(edit, &input, Lists::ByItem)).expect("planned");
            for splice in parts.iter().flat_map(|part| {
                part.splices.iter().map(|splice| &part.text[splice.range.clone()])
            }) {
                let replaced_empty_value = [1, 2, 3, 5, 6].contains(&layout.init)
                    && (splice.trim_start().starts_with("initContainers:")
                        || ["[]", "~"].contains(&splice.trim()));
                proptest::prop_assert!(splice.is_empty() || replaced_empty_value, "{splice:?} replaced in\n{input}");
            }
            if layout.crlf {
                proptest::prop_assert_eq!(output.matches('\n').count(), output.matches("\r\n").count());
            }
            let twice = inject(&output, &options);
            proptest::prop_assert_eq!(twice.as_deref(), Ok(output.as_str()));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// A manifest with bytes changed or cut anywhere is injected or
        /// refused with an error, never a panic; what is injected once is
        /// left as it is by a second injection.
        #[test]
        fn damaged_manifests_inject_or_are_refused(
            flips in proptest::collection::vec((0usize..600, proptest::prelude::any::<u8>()), 0..4),
            cut in 1usize..600,
        ) {
            let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      # the app\n      containers:\n      - name: web\n        image: web:1\n---\napiVersion: v1\nkind: List\nitems:\n- kind: Pod\n  apiVersion: v1\n  metadata: {name: p}\n  spec:\n    initContainers: []\n    containers: [{name: a, image: a}]\n";
            let mut bytes = manifest.as_bytes().to_vec();
            for (at, byte) in flips {
                let len = bytes.len();
                bytes[at % len] = byte;
            }
            bytes.truncate(cut);
            let Ok(text) = String::from_utf8(bytes) else {
                return Ok(());
            };
            let options = InjectOptions::default();
            if let Ok(once) = inject(&text, &options) {
                let twice = inject(&once, &options);
                proptest::prop_assert_eq!(twice.as_deref(), Ok(once.as_str()));
            }
        }

        /// A damaged `List`, injected item by item, is what it is injected
        /// whole, and the streamed output is all or nothing.
        #[test]
        fn damaged_lists_inject_item_by_item_as_whole(
            list in 0usize..LISTS.len(),
            flips in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 0..3),
            cut in 1usize..400,
        ) {
            let mut bytes = LISTS[list].as_bytes().to_vec();
            for (at, byte) in flips {
                let len = bytes.len();
                bytes[at % len] = byte;
            }
            bytes.truncate(cut);
            let Ok(text) = String::from_utf8(bytes) else {
                return Ok(());
            };
            let options = InjectOptions::default();
            let by_item = run(&text, &options, Lists::ByItem);
            let whole = run(&text, &options, Lists::Whole);
            let mut streamed = Vec::new();
            let to = inject_to(&text, &options, &mut streamed);
            match (&by_item, &whole) {
                (Ok(by_item), Ok(whole)) => {
                    proptest::prop_assert_eq!(by_item, whole);
                    proptest::prop_assert!(to.is_ok());
                    proptest::prop_assert_eq!(streamed.as_slice(), by_item.as_bytes());
                }
                (Err(_), Err(_)) => {
                    proptest::prop_assert!(to.is_err());
                    proptest::prop_assert!(streamed.is_empty());
                }
                (Ok(_), Err(err)) => proptest::prop_assert!(false, "only whole failed: {err}"),
                (Err(err), Ok(_)) => proptest::prop_assert!(false, "only by item failed: {err}"),
            }
        }
    }
}
