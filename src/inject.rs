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
//! copied byte for byte. One that gets meshtop is edited with [`yaml_edit`],
//! a lossless syntax tree: comments, key order, quoting, indentation and
//! blank lines around the insertions survive (a new `initContainers` is
//! written as text, laid out like the pod's `containers`). The edited text is parsed again
//! and must equal the same insertion made on the parsed tree. Where
//! yaml-edit gets a layout wrong (a pod spec that is a flow mapping over
//! several lines), the document is written out from the tree instead, the
//! same content in block style without its comments, and an
//! [`InjectWarning`] says so: `meshtop inject` prints it to stderr as
//! `meshtop: warning: FILE: document 2, Pod web: 1 comment could not be
//! kept (…)`. Nothing is dropped silently.
//!
//! # Size
//!
//! Time and memory grow linearly with the input (benches/inject.sh). A
//! `List` is cut into its items, each injected alone ([`split_list`]); an
//! edit is checked with one-line stand-ins for the sidecars, which are most
//! of the output ([`Edit::checked`]); and [`inject_to`] writes as it goes,
//! after a first pass has found anything that would fail, so that nothing
//! is written then.

mod edit;
mod list;
mod pods;
mod rewrite;
mod sidecars;
mod stream;
mod yaml;

use edit::{Edit, Shape};
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
    /// A document that needed rewriting holds something the rewriter does
    /// not write (a tag, a complex key). Only reached when yaml-edit could
    /// not edit that document in place.
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

/// Something given up to add meshtop to an object, said rather than done
/// silently; `meshtop inject` prints each one to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectWarning {
    /// The document, numbered as in [`InjectError::InvalidYaml`].
    pub document: usize,
    /// The object, as its kind and name (`Deployment web`).
    pub object: String,
    pub loss: Loss,
}

/// What an [`InjectWarning`] says was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// yaml-edit could not edit the object in place (a pod spec that is a
    /// flow mapping over several lines, say), so its document was written
    /// out again from its parsed tree: the same content, in block style,
    /// without these many comments (`None` when yaml-edit cannot read it to
    /// count them).
    Rewritten { comments: Option<usize> },
}

impl std::fmt::Display for InjectWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let InjectWarning {
            document, object, ..
        } = self;
        write!(f, "document {document}, {object}: ")?;
        match self.loss {
            Loss::Rewritten { comments: Some(0) } => write!(f, "its layout could not be kept")?,
            Loss::Rewritten { comments: Some(1) } => write!(f, "1 comment could not be kept")?,
            Loss::Rewritten { comments: Some(n) } => write!(f, "{n} comments could not be kept")?,
            Loss::Rewritten { comments: None } => write!(f, "its comments could not be kept")?,
        }
        write!(
            f,
            " (yaml-edit could not edit it in place; written out again in block style)"
        )
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
    injected_with(input, options, Editor::Lossless, Lists::ByItem)
}

/// [`injected`] with the editor and the handling of `List`s chosen (tests
/// compare them).
fn injected_with(
    input: &str,
    options: &InjectOptions,
    editor: Editor,
    lists: Lists,
) -> Result<Injected, InjectError> {
    let mut text = String::with_capacity(input.len() + 4096);
    let mut warnings = Vec::new();
    let mut out = |piece: &str| {
        text.push_str(piece);
        Ok(())
    };
    inject_with(
        input,
        options,
        editor,
        lists,
        Pass::Write,
        &mut out,
        &mut warnings,
    )?;
    Ok(Injected { text, warnings })
}

/// Adds meshtop to every pod of `input` and writes the stream to `out` as it
/// goes, holding one document (one item of a `List`) at a time, not the
/// whole output, which is many times the input's size. Nothing is written
/// when the input cannot be injected: a first pass finds whatever would
/// fail (see [`Pass::Check`]). Returns the warnings, one at most per
/// document or item of a `List`.
pub fn inject_to(
    input: &str,
    options: &InjectOptions,
    out: &mut dyn std::io::Write,
) -> Result<Vec<InjectWarning>, InjectError> {
    let (editor, lists) = (Editor::Lossless, Lists::ByItem);
    let mut warnings = Vec::new();
    let mut nowhere = |_: &str| Ok(());
    inject_with(
        input,
        options,
        editor,
        lists,
        Pass::Check,
        &mut nowhere,
        &mut warnings,
    )?;
    warnings.clear();
    let mut write = |text: &str| {
        out.write_all(text.as_bytes())
            .map_err(|err| InjectError::Write(err.to_string()))
    };
    inject_with(
        input,
        options,
        editor,
        lists,
        Pass::Write,
        &mut write,
        &mut warnings,
    )?;
    out.flush()
        .map_err(|err| InjectError::Write(err.to_string()))?;
    Ok(warnings)
}

/// What a run over the input does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// Finds what would fail, writing nothing, and skips the items of the
    /// `List`s that are cut apart: each was checked to parse alone into
    /// what it was, with no anchor, alias, tag or complex key, so it is
    /// edited in place or rewritten, and cannot fail.
    Check,
    /// Writes the output.
    Write,
}

/// How a document that gets meshtop is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Editor {
    /// Edited in place with yaml-edit and checked; rewritten, with a
    /// warning, when the check fails (see [`Edit::document`]).
    Lossless,
    /// Always rewritten from the parsed tree; lets the tests exercise the
    /// path that is otherwise only taken when yaml-edit gets a layout wrong.
    #[cfg_attr(not(test), allow(dead_code))]
    Rewrite,
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

fn inject_with(
    input: &str,
    options: &InjectOptions,
    editor: Editor,
    lists: Lists,
    pass: Pass,
    out: &mut Sink,
    warnings: &mut Vec<InjectWarning>,
) -> Result<(), InjectError> {
    check_options(options)?;
    let sidecars = SidecarTexts::new(options);
    let stand_ins = SidecarTexts {
        init: format!("name: {INIT_CONTAINER}\n"),
        proxy: format!("name: {PROXY_CONTAINER}\n"),
    };
    let (Some(trees), Some(stand_in_trees)) = (sidecars.trees(), stand_ins.trees()) else {
        return Err(InjectError::InvalidOptions(format!(
            "cannot build the containers for image {:?}",
            options.image
        )));
    };
    let edit = Edit {
        sidecars: &sidecars,
        trees: &trees,
        stand_ins: &stand_ins,
        stand_in_trees: &stand_in_trees,
        items_checked: Default::default(),
        editor,
    };

    let mut document = 0;
    for chunk in split_documents(input) {
        if chunk.explicit || has_content(chunk.text) {
            document += 1;
        }
        let items = match lists {
            Lists::ByItem => split_list(chunk.text),
            Lists::Whole => None,
        };
        if let Some(items) = items {
            if pass == Pass::Check {
                continue;
            }
            let text = chunk.text;
            let first = items.first().map_or(text.len(), |item| item.start);
            let last = items.last().map_or(text.len(), |item| item.end);
            out(&text[..first])?;
            let (mut first_line, mut counted) = (chunk.first_line, 0);
            for item in items {
                first_line += text[counted..item.start].matches('\n').count();
                counted = item.start;
                let piece = Chunk {
                    text: &text[item],
                    first_line,
                    explicit: false,
                };
                warnings.extend(edit.document(&piece, document, Shape::ListItem, out)?);
            }
            out(&text[last..])?;
        } else {
            warnings.extend(edit.document(&chunk, document, Shape::Stream, out)?);
        }
    }
    Ok(())
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
    use saphyr::{ScalarStyle, Yaml};
    use sidecars::scalar_text;
    use yaml::load;

    fn inject_with(
        input: &str,
        options: &InjectOptions,
        editor: Editor,
    ) -> Result<Injected, InjectError> {
        injected_with(input, options, editor, Lists::ByItem)
    }

    fn run(
        input: &str,
        options: &InjectOptions,
        editor: Editor,
        lists: Lists,
    ) -> Result<String, InjectError> {
        injected_with(input, options, editor, lists).map(|injected| injected.text)
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
    fn the_rewrite_means_what_the_input_meant() {
        let docs = load(TRICKY).expect("valid YAML");
        let chunk = Chunk {
            text: TRICKY,
            first_line: 0,
            explicit: false,
        };
        let rewritten = rewrite::rewrite(&chunk, &docs).expect("nothing unsupported");
        let reparsed = load(&rewritten).expect("the rewrite is valid YAML");
        assert_eq!(reparsed.len(), 1);
        assert_eq!(
            strip_styles(&reparsed[0]),
            strip_styles(&docs[0]),
            "{rewritten}"
        );
        assert!(rewritten.contains("mode: 0644"), "{rewritten}");
        assert!(rewritten.contains("flag: yes"), "{rewritten}");
        assert!(rewritten.contains("name: 'it''s'"), "{rewritten}");
    }

    #[test]
    fn the_rewrite_injects_as_the_lossless_edit_does_and_says_what_it_lost() {
        let options = InjectOptions::default();
        let lossless = inject_with(TRICKY, &options, Editor::Lossless).expect("injects");
        assert_eq!(lossless.warnings, []);
        let rewritten = inject_with(TRICKY, &options, Editor::Rewrite).expect("injects");
        assert_ne!(lossless.text, rewritten.text, "the rewrite drops comments");
        assert_eq!(
            rewritten.warnings,
            [InjectWarning {
                document: 1,
                object: "Pod it's".to_owned(),
                loss: Loss::Rewritten { comments: Some(1) },
            }]
        );
        let lossless = load(&lossless.text).expect("valid");
        let rewritten = load(&rewritten.text).expect("valid");
        assert_eq!(strip_styles(&lossless[0]), strip_styles(&rewritten[0]));
    }

    /// yaml-edit cannot insert into a flow mapping that spans lines: the
    /// one layout for which the rewrite is kept.
    #[test]
    fn a_pod_spec_yaml_edit_cannot_edit_is_rewritten_with_a_warning() {
        let input = "kind: Pod\nmetadata: {name: web}\nspec: {\n  # the app\n  containers: [{name: app}]\n}\n";
        let output = injected(input, &InjectOptions::default()).expect("injects");
        assert!(
            output.text.contains("- name: meshtop-proxy\n"),
            "{}",
            output.text
        );
        assert!(!output.text.contains("# the app"), "{}", output.text);
        assert_eq!(output.warnings.len(), 1);
        assert_eq!(
            output.warnings[0].to_string(),
            "document 1, Pod web: 1 comment could not be kept \
             (yaml-edit could not edit it in place; written out again in block style)"
        );
    }

    #[test]
    fn tagged_nodes_are_not_rewritten() {
        let input =
            "kind: Pod\nmetadata:\n  name: !!str app\nspec:\n  containers:\n  - name: app\n";
        let err = inject_with(input, &InjectOptions::default(), Editor::Rewrite)
            .expect_err("a tag cannot be rewritten");
        assert!(
            matches!(err, InjectError::Unsupported { document: 1, .. }),
            "{err}"
        );
        // yaml-edit edits it in place.
        let output = inject(input, &InjectOptions::default()).expect("injects");
        assert!(output.contains("name: !!str app\n"), "{output}");
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
        for list in LISTS {
            let by_item = run(list, &options, Editor::Lossless, Lists::ByItem).expect("injects");
            let whole = run(list, &options, Editor::Lossless, Lists::Whole).expect("injects");
            fn trees(text: &str) -> Vec<Yaml<'_>> {
                load(text)
                    .expect("valid")
                    .iter()
                    .map(strip_styles)
                    .collect()
            }
            assert_eq!(trees(&by_item), trees(&whole), "{list}");
            // And what the tree says, written out from it without any
            // stand-in check.
            let bare = run(list, &options, Editor::Rewrite, Lists::Whole).expect("injects");
            assert_eq!(trees(&by_item), trees(&bare), "{list}");
            assert!(by_item.matches(PROXY_CONTAINER).count() >= 2, "{by_item}");
            // Laid out as the input; only what cannot be edited in place is
            // rewritten, and then only its item.
            if !list.contains('{') || list.contains("ConfigMap") {
                assert_eq!(by_item, whole, "{list}");
            }
            for comment in ["# the first", "# the second", "# inline", "# trailing"] {
                assert_eq!(list.contains(comment), by_item.contains(comment));
            }
            // Injecting again changes nothing.
            let again = run(&by_item, &options, Editor::Lossless, Lists::ByItem).expect("injects");
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

    /// The tree with block scalars as the double-quoted ones the rewrite
    /// makes of them: the same strings.
    fn strip_styles<'a>(node: &Yaml<'a>) -> Yaml<'a> {
        match node {
            Yaml::Representation(text, ScalarStyle::Literal | ScalarStyle::Folded, tag) => {
                Yaml::Representation(text.clone(), ScalarStyle::DoubleQuoted, tag.clone())
            }
            Yaml::Sequence(items) => Yaml::Sequence(items.iter().map(strip_styles).collect()),
            Yaml::Mapping(map) => Yaml::Mapping(
                map.iter()
                    .map(|(k, v)| (strip_styles(k), strip_styles(v)))
                    .collect(),
            ),
            other => other.clone(),
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

        /// A damaged `List`, injected item by item, means what it means
        /// injected whole, and the streamed output is all or nothing.
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
            let by_item = run(&text, &options, Editor::Lossless, Lists::ByItem);
            let whole = run(&text, &options, Editor::Lossless, Lists::Whole);
            let mut streamed = Vec::new();
            let to = inject_to(&text, &options, &mut streamed);
            match (&by_item, &whole) {
                (Ok(by_item), Ok(whole)) => {
                    let trees = |text: &str| load(text).map(|docs| docs.iter().map(strip_styles).map(|d| format!("{d:?}")).collect::<Vec<_>>());
                    proptest::prop_assert_eq!(trees(by_item), trees(whole));
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
