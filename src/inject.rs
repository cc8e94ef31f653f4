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
//! and must equal the same insertion made on the parsed tree; should
//! yaml-edit ever get an unusual layout wrong, the document is written out
//! from the tree instead: the same content, without its comments.
//!
//! # Size
//!
//! Time and memory grow linearly with the input (benches/inject.sh). A
//! `List` is cut into its items, each injected alone ([`split_list`]); an
//! edit is checked with one-line stand-ins for the sidecars, which are most
//! of the output ([`Edit::checked`]); and [`inject_to`] writes as it goes,
//! after a first pass has found anything that would fail, so that nothing
//! is written then.

use std::borrow::Cow;
use std::str::FromStr;

use saphyr::{Mapping, ScalarStyle, Yaml, YamlLoader};
use saphyr_parser::{Event, Parser, ScanError};
use yaml_edit::{Document, YamlFile, YamlNode};

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

/// Adds meshtop to every pod of `input`, a stream of YAML documents, and
/// returns the stream with everything else as it was.
pub fn inject(input: &str, options: &InjectOptions) -> Result<String, InjectError> {
    let mut out = String::with_capacity(input.len() + 4096);
    inject_with(
        input,
        options,
        Editor::Lossless,
        Lists::ByItem,
        Pass::Write,
        &mut |text| {
            out.push_str(text);
            Ok(())
        },
    )?;
    Ok(out)
}

/// Adds meshtop to every pod of `input` and writes the stream to `out` as it
/// goes, holding one document (one item of a `List`) at a time, not the
/// whole output, which is many times the input's size. Nothing is written
/// when the input cannot be injected: a first pass finds whatever would
/// fail (see [`Pass::Check`]).
pub fn inject_to(
    input: &str,
    options: &InjectOptions,
    out: &mut dyn std::io::Write,
) -> Result<(), InjectError> {
    let (editor, lists) = (Editor::Lossless, Lists::ByItem);
    inject_with(input, options, editor, lists, Pass::Check, &mut |_| Ok(()))?;
    inject_with(input, options, editor, lists, Pass::Write, &mut |text| {
        out.write_all(text.as_bytes())
            .map_err(|err| InjectError::Write(err.to_string()))
    })?;
    out.flush()
        .map_err(|err| InjectError::Write(err.to_string()))
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
    /// Edited in place with yaml-edit, checked, rewritten when the check fails.
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
                edit.document(&piece, document, Shape::ListItem, out)?;
            }
            out(&text[last..])?;
        } else {
            edit.document(&chunk, document, Shape::Stream, out)?;
        }
    }
    Ok(())
}

/// What a piece of text handed to [`Edit::document`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// YAML documents, as they stand in the input.
    Stream,
    /// One item of a `List`'s block sequence `items`, from the start of its
    /// `-` line: parsed alone, a sequence of that one item.
    ListItem,
}

/// What every document is edited with.
struct Edit<'e, 'a> {
    sidecars: &'e SidecarTexts,
    trees: &'e SidecarTrees<'a>,
    /// One-line containers named as the sidecars, standing in for them
    /// where an edit is checked (see [`Edit::checked`]).
    stand_ins: &'e SidecarTexts,
    stand_in_trees: &'e SidecarTrees<'a>,
    /// The columns at which the sidecars, written as block items, were
    /// found to parse alone into their trees.
    items_checked: std::cell::RefCell<Vec<usize>>,
    editor: Editor,
}

impl Edit<'_, '_> {
    /// Writes `chunk` with meshtop added to its pods: edited in place when
    /// the edit checks out, else rewritten from the tree, else as it was
    /// when it has no pod to change.
    fn document(
        &self,
        chunk: &Chunk,
        document: usize,
        shape: Shape,
        out: &mut Sink,
    ) -> Result<(), InjectError> {
        let docs = load(chunk.text).map_err(|err| InjectError::InvalidYaml {
            document: document.max(1),
            line: chunk.first_line + err.marker().line(),
            column: err.marker().col() + 1,
            reason: err.info().to_owned(),
        })?;
        let plans: Vec<Vec<PodEdit>> = match shape {
            Shape::Stream => docs.iter().map(plan_document).collect(),
            Shape::ListItem => docs.iter().map(plan_item).collect(),
        };
        if plans.iter().all(Vec::is_empty) {
            return out(chunk.text);
        }
        let edited = match self.editor {
            Editor::Lossless => self.checked(chunk.text, &docs, &plans),
            Editor::Rewrite => None,
        };
        if let Some(edited) = edited {
            return out(&edited);
        }
        let expected = expect(&docs, &plans, self.trees);
        let unsupported = |reason| InjectError::Unsupported {
            document,
            line: chunk.first_line + 1,
            reason,
        };
        let rewritten = match shape {
            Shape::Stream => rewrite(chunk, &expected).map_err(unsupported)?,
            Shape::ListItem => rewrite_item(chunk.text, &expected).map_err(unsupported)?,
        };
        out(&rewritten)
    }

    /// The lossless edit of `text`, when parsing it again gives what the
    /// plans on the tree give.
    ///
    /// The inserted containers are most of the output, and parsing them
    /// again for every pod is most of the work. So where every insertion
    /// was a text splice (whole lines of block items at a column), the
    /// check is made on the same splices of one-line stand-ins named as the
    /// sidecars, and the sidecars' block items are checked once per column
    /// to parse alone into their trees: lines of one item at one column, in
    /// place of lines of another, mean the same to what surrounds them.
    fn checked(&self, text: &str, docs: &[Yaml], plans: &[Vec<PodEdit>]) -> Option<String> {
        let edited = edit_lossless(text, plans, self.sidecars)?;
        let Some(splices) = &edited.splices else {
            let expected = expect(docs, plans, self.trees);
            return load(&edited.text)
                .is_ok_and(|reparsed| reparsed == expected)
                .then_some(edited.text);
        };
        let stand_in = line_endings_as(text, spliced(text, splices, self.stand_ins));
        let expected = expect(docs, plans, self.stand_in_trees);
        let same = load(&stand_in).is_ok_and(|reparsed| reparsed == expected);
        let items_parse_alone = splices
            .iter()
            .all(|splice| self.items_parse_alone(splice.item_column));
        (same && items_parse_alone).then_some(edited.text)
    }

    /// Whether each sidecar written as a block item at `column` parses
    /// alone into its tree, and its stand-in into the stand-in's.
    fn items_parse_alone(&self, column: usize) -> bool {
        if self.items_checked.borrow().contains(&column) {
            return true;
        }
        let parses = |texts: &SidecarTexts, trees: &SidecarTrees, sidecar| {
            let item = block_item(texts.text(sidecar), column);
            load(&item).is_ok_and(|docs| {
                matches!(docs.as_slice(), [Yaml::Sequence(items)]
                    if items.as_slice() == std::slice::from_ref(trees.tree(sidecar)))
            })
        };
        let all = [Sidecar::Init, Sidecar::Proxy].into_iter().all(|sidecar| {
            parses(self.sidecars, self.trees, sidecar)
                && parses(self.stand_ins, self.stand_in_trees, sidecar)
        });
        if all {
            self.items_checked.borrow_mut().push(column);
        }
        all
    }
}

/// `docs` with the planned insertions made on the tree: what the output
/// must mean.
fn expect<'a>(
    docs: &[Yaml<'a>],
    plans: &[Vec<PodEdit>],
    trees: &SidecarTrees<'a>,
) -> Vec<Yaml<'a>> {
    let mut expected = docs.to_vec();
    for (doc, edits) in expected.iter_mut().zip(plans) {
        for edit in edits {
            apply_to_tree(doc, edit, trees);
        }
    }
    expected
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

// ---------------------------------------------------------------------------
// The two containers, as YAML text: one source for both the lossless edit
// and the parsed tree it is checked against.

struct SidecarTexts {
    init: String,
    proxy: String,
}

struct SidecarTrees<'a> {
    init: Yaml<'a>,
    proxy: Yaml<'a>,
}

impl SidecarTexts {
    fn new(options: &InjectOptions) -> SidecarTexts {
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
        SidecarTexts { init, proxy }
    }

    fn trees(&self) -> Option<SidecarTrees<'_>> {
        Some(SidecarTrees {
            init: load_one(&self.init)?,
            proxy: load_one(&self.proxy)?,
        })
    }

    fn text(&self, sidecar: Sidecar) -> &str {
        match sidecar {
            Sidecar::Init => &self.init,
            Sidecar::Proxy => &self.proxy,
        }
    }
}

impl<'a> SidecarTrees<'a> {
    fn tree(&self, sidecar: Sidecar) -> &Yaml<'a> {
        match sidecar {
            Sidecar::Init => &self.init,
            Sidecar::Proxy => &self.proxy,
        }
    }
}

/// Ports, deduplicated in their order, as `meshtop init` takes them.
fn port_list(ports: &[u16]) -> String {
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

fn flow_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| scalar_text(item)).collect();
    format!("[{}]", items.join(", "))
}

/// A string as a YAML scalar that every YAML version reads as that string:
/// plain when it plainly is one, else double-quoted (a JSON string is a
/// valid YAML double-quoted scalar).
fn scalar_text(s: &str) -> String {
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

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

// ---------------------------------------------------------------------------
// Documents.

/// One document of the stream: from a `---` line (or the start of the
/// input) to the next one.
struct Chunk<'a> {
    text: &'a str,
    /// Lines of the input before this chunk.
    first_line: usize,
    /// Starts with a `---` line.
    explicit: bool,
}

fn is_marker_line(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

fn split_documents(input: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut first_line = 0;
    let mut offset = 0;
    for (line_number, line) in input.split_inclusive('\n').enumerate() {
        if is_marker_line(line) && offset > start && !only_directives(&input[start..offset]) {
            chunks.push(Chunk {
                text: &input[start..offset],
                first_line,
                explicit: is_marker_line(&input[start..]),
            });
            start = offset;
            first_line = line_number;
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        text: &input[start..],
        first_line,
        explicit: is_marker_line(&input[start..]),
    });
    chunks
}

/// Whether the text before a `---` holds directives (`%YAML 1.2`) and
/// nothing else but comments: they belong to the document that follows.
fn only_directives(text: &str) -> bool {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    let mut any = false;
    lines.all(|line| {
        any = true;
        line.starts_with('%')
    }) && any
}

/// Whether a chunk without a `---` holds a document rather than only
/// comments and blank lines.
fn has_content(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with('#')
    })
}

// ---------------------------------------------------------------------------
// A `List`, one item at a time.
//
// `kubectl get -o yaml` answers with a `List` of every object asked for: one
// document that may hold thousands of pods. Parsed, edited and checked
// whole, it takes time and memory many times its size (trees of the input,
// of the expected output and of the output, each node a few allocations).
// Its items are independent, so each is cut out of the text and injected
// alone, and only one item's trees exist at a time. The cut is checked, not
// trusted: each item's text, parsed alone, must give the very events it gave
// in the whole document. Whatever does not fit (a flow sequence, an item not
// starting on its `-` line, anchors, tags) is injected whole, as any other
// document.

/// The byte ranges of a `List` document's items, each from the start of its
/// `-` line to the next one's (comment lines between items go with the item
/// above), when each can be injected on its own; `None` when the document
/// is not such a `List`, or cannot be cut so.
fn split_list(text: &str) -> Option<Vec<std::ops::Range<usize>>> {
    /// Where the walk is relative to `items`.
    #[derive(PartialEq)]
    enum Items {
        Before,
        Inside,
        After,
    }
    let mut starts = ByteOffsets::new(text);
    let mut ends = ByteOffsets::new(text);
    let mut parser = Parser::new_from_str(text);
    // Per open collection, for a mapping: whether its next node is a key,
    // and the keys it has (a duplicate is refused when the whole document is
    // loaded, so it must not pass here).
    let mut open: Vec<Option<(bool, std::collections::HashSet<Cow<str>>)>> = Vec::new();
    let mut documents = 0;
    let mut key: Option<Cow<str>> = None;
    let mut is_list = false;
    let mut items = Items::Before;
    let mut cuts: Vec<usize> = Vec::new();
    let mut fingerprints: Vec<u64> = Vec::new();
    let mut fingerprint = std::hash::DefaultHasher::new();
    let mut last_end = 0;
    let mut items_end = None;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.ok()?;
        if !plain_event(&event) {
            return None;
        }
        let start = starts.at(span.start.index())?;
        let end = ends.at(span.end.index())?;
        let opens = matches!(event, Event::SequenceStart(..) | Event::MappingStart(..));
        let node = opens || matches!(event, Event::Scalar(..));
        let depth = open.len();
        // Which node is a key: only scalar ones, which the rewrite writes.
        let mut is_key = false;
        if let Some(Some((expect_key, keys))) = open.last_mut()
            && node
        {
            is_key = std::mem::replace(expect_key, !*expect_key);
            if is_key {
                let Event::Scalar(name, ..) = &event else {
                    return None;
                };
                if !keys.insert(name.clone()) {
                    return None;
                }
            }
        }
        match depth {
            0 => match event {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return None;
                    }
                }
                // A block mapping: a flow one cannot be cut at lines.
                Event::MappingStart(..) if !text[start..].starts_with('{') => {}
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
                _ => return None,
            },
            1 if node => {
                if is_key {
                    let Event::Scalar(name, ..) = &event else {
                        return None;
                    };
                    key = Some(name.clone());
                } else {
                    match (key.as_deref(), &event) {
                        (Some("kind"), Event::Scalar(kind, ..)) => is_list = kind.ends_with("List"),
                        (Some("items"), Event::SequenceStart(..))
                            if items == Items::Before && !text[start..].starts_with('[') =>
                        {
                            items = Items::Inside;
                        }
                        (Some("items"), _) => return None,
                        _ => {}
                    }
                }
            }
            2 if items == Items::Inside && event == Event::SequenceEnd => {
                items = Items::After;
                fingerprints.push(std::hash::Hasher::finish(&fingerprint));
                items_end = Some(end_of_line(text, last_end));
            }
            _ if items == Items::Inside => {
                if depth == 2 && node {
                    // A new item, which must start on its `-` line.
                    let line = line_start(text, start);
                    if text[line..start].trim() != "-" {
                        return None;
                    }
                    if !cuts.is_empty() {
                        fingerprints.push(std::hash::Hasher::finish(&fingerprint));
                    }
                    fingerprint = std::hash::DefaultHasher::new();
                    cuts.push(line);
                }
                fingerprint_event(&event, &mut fingerprint);
                last_end = last_end.max(end);
            }
            _ => {}
        }
        match event {
            Event::MappingStart(..) => open.push(Some((true, Default::default()))),
            Event::SequenceStart(..) => open.push(None),
            Event::SequenceEnd | Event::MappingEnd => {
                open.pop()?;
            }
            _ => {}
        }
    }
    let items_end = items_end?;
    if !is_list || cuts.is_empty() {
        return None;
    }
    let ranges: Vec<_> = cuts
        .iter()
        .zip(cuts.iter().skip(1).chain([&items_end]))
        .map(|(&start, &end)| start..end)
        .collect();
    let alone = ranges
        .iter()
        .zip(&fingerprints)
        .all(|(range, expected)| item_fingerprint(&text[range.clone()]) == Some(*expected));
    alone.then_some(ranges)
}

/// Whether an event carries no anchor, alias or tag: those tie an item to
/// the rest of the document, or are written back only whole.
fn plain_event(event: &Event) -> bool {
    match event {
        Event::Alias(_) => false,
        Event::Scalar(_, _, anchor, tag)
        | Event::SequenceStart(anchor, tag)
        | Event::MappingStart(anchor, tag) => *anchor == 0 && tag.is_none(),
        _ => true,
    }
}

fn fingerprint_event(event: &Event, hasher: &mut std::hash::DefaultHasher) {
    use std::hash::Hash;
    match event {
        Event::Scalar(value, style, ..) => {
            1u8.hash(hasher);
            value.hash(hasher);
            style.hash(hasher);
        }
        Event::SequenceStart(..) => 2u8.hash(hasher),
        Event::SequenceEnd => 3u8.hash(hasher),
        Event::MappingStart(..) => 4u8.hash(hasher),
        Event::MappingEnd => 5u8.hash(hasher),
        _ => 6u8.hash(hasher),
    }
}

/// The fingerprint of the one item of `text` parsed alone as a sequence.
fn item_fingerprint(text: &str) -> Option<u64> {
    let mut parser = Parser::new_from_str(text);
    let mut events = Vec::new();
    while let Some(next) = parser.next_event() {
        let (event, _) = next.ok()?;
        if !plain_event(&event) {
            return None;
        }
        events.push(event);
    }
    // Stream and document around a sequence of one item.
    let [
        Event::StreamStart,
        Event::DocumentStart(false),
        Event::SequenceStart(..),
        item @ ..,
        Event::SequenceEnd,
        Event::DocumentEnd,
        Event::StreamEnd,
    ] = events.as_slice()
    else {
        return None;
    };
    let mut depth = 0usize;
    let mut fingerprint = std::hash::DefaultHasher::new();
    for (index, event) in item.iter().enumerate() {
        // One node: the item's own events close where they began.
        if index > 0 && depth == 0 {
            return None;
        }
        fingerprint_event(event, &mut fingerprint);
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => depth += 1,
            Event::SequenceEnd | Event::MappingEnd => depth = depth.checked_sub(1)?,
            _ => {}
        }
    }
    Some(std::hash::Hasher::finish(&fingerprint))
}

/// After the line break that ends the line holding `at` (or at `at` when it
/// follows one).
fn end_of_line(text: &str, at: usize) -> usize {
    if at == 0 || text[..at].ends_with('\n') {
        return at;
    }
    text[at..]
        .find('\n')
        .map_or(text.len(), |newline| at + newline + 1)
}

/// Byte offsets of the parser's character indices, counted forward from the
/// last one asked for (the parser's positions mostly grow).
struct ByteOffsets<'t> {
    text: &'t str,
    ascii: bool,
    chars: usize,
    bytes: usize,
}

impl<'t> ByteOffsets<'t> {
    fn new(text: &'t str) -> Self {
        ByteOffsets {
            text,
            ascii: text.is_ascii(),
            chars: 0,
            bytes: 0,
        }
    }

    fn at(&mut self, chars: usize) -> Option<usize> {
        if self.ascii {
            return (chars <= self.text.len()).then_some(chars);
        }
        if chars < self.chars {
            (self.chars, self.bytes) = (0, 0);
        }
        let mut rest = self.text[self.bytes..].chars();
        while self.chars < chars {
            self.bytes += rest.next()?.len_utf8();
            self.chars += 1;
        }
        Some(self.bytes)
    }
}

/// Parses strictly, keeping every scalar as written (style included).
fn load(text: &str) -> Result<Vec<Yaml<'_>>, ScanError> {
    let mut parser = Parser::new_from_str(text);
    let mut loader = YamlLoader::<Yaml>::default();
    loader.early_parse(false);
    parser.load(&mut loader, true)?;
    if let Some(err) = loader.error() {
        return Err(err.clone());
    }
    Ok(loader.into_documents())
}

fn load_one(text: &str) -> Option<Yaml<'_>> {
    load(text).ok()?.into_iter().next()
}

// ---------------------------------------------------------------------------
// Finding the pods, on the parsed tree.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Key(&'static str),
    Index(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sidecar {
    Init,
    Proxy,
}

/// What `initContainers` is before the edit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InitList {
    /// A sequence with items: the sidecars are inserted among them.
    Sequence,
    /// No such key: it is added before `containers`.
    Missing,
    /// Null or `[]`: its value is replaced.
    Empty,
}

/// The insertions into one pod spec.
#[derive(Debug)]
struct PodEdit {
    /// From the document's root to the pod spec.
    path: Vec<Step>,
    init_list: InitList,
    /// Applied in order, each at its index of `initContainers`.
    inserts: Vec<(usize, Sidecar)>,
}

fn plan_document(doc: &Yaml) -> Vec<PodEdit> {
    let mut edits = Vec::new();
    plan_object(doc, &mut Vec::new(), &mut edits);
    edits
}

/// The edits of a `List` item parsed alone: a sequence of that one item.
fn plan_item(doc: &Yaml) -> Vec<PodEdit> {
    let mut edits = Vec::new();
    if let Yaml::Sequence(items) = doc
        && let [item] = items.as_slice()
    {
        plan_object(item, &mut vec![Step::Index(0)], &mut edits);
    }
    edits
}

fn plan_object(object: &Yaml, at: &mut Vec<Step>, edits: &mut Vec<PodEdit>) {
    let Some(kind) = get(object, "kind").and_then(as_str) else {
        return;
    };
    let to_pod_spec: &[&'static str] = match kind {
        "Pod" => &["spec"],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => &["spec", "template", "spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        kind if kind.ends_with("List") => {
            if let Some(Yaml::Sequence(items)) = get(object, "items") {
                for (index, item) in items.iter().enumerate() {
                    at.extend([Step::Key("items"), Step::Index(index)]);
                    plan_object(item, at, edits);
                    at.truncate(at.len() - 2);
                }
            }
            return;
        }
        _ => return,
    };
    let mut spec = object;
    for key in to_pod_spec {
        match get(spec, key) {
            Some(inner) => spec = inner,
            None => return,
        }
    }
    if let Some((init_list, inserts)) = plan_pod(spec) {
        let mut path = at.clone();
        path.extend(to_pod_spec.iter().map(|key| Step::Key(key)));
        edits.push(PodEdit {
            path,
            init_list,
            inserts,
        });
    }
}

fn plan_pod(spec: &Yaml) -> Option<(InitList, Vec<(usize, Sidecar)>)> {
    if get(spec, "hostNetwork")
        .and_then(as_str)
        .is_some_and(|value| ["true", "yes", "on"].contains(&value.to_ascii_lowercase().as_str()))
    {
        return None;
    }
    let Some(Yaml::Sequence(containers)) = get(spec, "containers") else {
        return None;
    };
    let (init_list, init_containers): (InitList, &[Yaml]) = match get(spec, "initContainers") {
        None => (InitList::Missing, &[]),
        Some(Yaml::Sequence(list)) if list.is_empty() => (InitList::Empty, &[]),
        Some(Yaml::Sequence(list)) => (InitList::Sequence, list),
        Some(value) if is_null(value) => (InitList::Empty, &[]),
        Some(_) => return None,
    };
    let name = |container: &Yaml| get(container, "name").and_then(as_str).map(str::to_owned);
    let present: Vec<String> = containers
        .iter()
        .chain(init_containers)
        .filter_map(name)
        .collect();
    let mut list: Vec<Option<String>> = init_containers.iter().map(name).collect();
    let mut inserts = Vec::new();
    if !present.iter().any(|n| n == INIT_CONTAINER) {
        list.insert(0, Some(INIT_CONTAINER.to_owned()));
        inserts.push((0, Sidecar::Init));
    }
    if !present.iter().any(|n| n == PROXY_CONTAINER) {
        let at = list
            .iter()
            .position(|n| n.as_deref() == Some(INIT_CONTAINER))
            .map_or(0, |index| index + 1);
        list.insert(at, Some(PROXY_CONTAINER.to_owned()));
        inserts.push((at, Sidecar::Proxy));
    }
    (!inserts.is_empty()).then_some((init_list, inserts))
}

fn is_key(node: &Yaml, key: &str) -> bool {
    as_str(node) == Some(key)
}

fn get<'y, 'a>(node: &'y Yaml<'a>, key: &str) -> Option<&'y Yaml<'a>> {
    match node {
        Yaml::Mapping(map) => map.iter().find(|(k, _)| is_key(k, key)).map(|(_, v)| v),
        _ => None,
    }
}

fn get_mut<'y, 'a>(node: &'y mut Yaml<'a>, key: &str) -> Option<&'y mut Yaml<'a>> {
    match node {
        Yaml::Mapping(map) => map.iter_mut().find(|(k, _)| is_key(k, key)).map(|(_, v)| v),
        _ => None,
    }
}

fn as_str<'y>(node: &'y Yaml) -> Option<&'y str> {
    match node {
        Yaml::Representation(text, _, None) => Some(text),
        _ => None,
    }
}

fn is_null(node: &Yaml) -> bool {
    matches!(node, Yaml::Representation(text, ScalarStyle::Plain, None)
        if ["", "~", "null", "Null", "NULL"].contains(&text.as_ref()))
}

// ---------------------------------------------------------------------------
// The insertion on the parsed tree: what the output must mean.

fn apply_to_tree<'a>(doc: &mut Yaml<'a>, edit: &PodEdit, trees: &SidecarTrees<'a>) {
    let mut node = doc;
    for step in &edit.path {
        let next = match (step, node) {
            (Step::Key(key), node) => get_mut(node, key),
            (Step::Index(index), Yaml::Sequence(items)) => items.get_mut(*index),
            _ => None,
        };
        let Some(next) = next else { return };
        node = next;
    }
    let Yaml::Mapping(spec) = node else { return };
    let mut list = match edit.init_list {
        InitList::Sequence => match spec
            .iter_mut()
            .find(|(k, _)| is_key(k, "initContainers"))
            .map(|(_, v)| v)
        {
            Some(Yaml::Sequence(list)) => std::mem::take(list),
            _ => return,
        },
        InitList::Missing | InitList::Empty => Vec::new(),
    };
    for &(at, sidecar) in &edit.inserts {
        list.insert(at.min(list.len()), trees.tree(sidecar).clone());
    }
    match edit.init_list {
        InitList::Sequence | InitList::Empty => {
            if let Some((_, value)) = spec.iter_mut().find(|(k, _)| is_key(k, "initContainers")) {
                *value = Yaml::Sequence(list);
            }
        }
        InitList::Missing => insert_before_containers(spec, Yaml::Sequence(list)),
    }
}

/// Adds `initContainers` just before `containers`, where yaml-edit puts it
/// and where a reader looks for it.
fn insert_before_containers<'a>(spec: &mut Mapping<'a>, init_containers: Yaml<'a>) {
    let key = Yaml::Representation(Cow::Borrowed("initContainers"), ScalarStyle::Plain, None);
    let mut pending = Some(init_containers);
    let entries = std::mem::take(spec);
    for (k, v) in entries {
        if is_key(&k, "containers")
            && let Some(value) = pending.take()
        {
            spec.insert(key.clone(), value);
        }
        spec.insert(k, v);
    }
    if let Some(value) = pending {
        spec.insert(key, value);
    }
}

// ---------------------------------------------------------------------------
// The insertion on the text, with yaml-edit.

/// The chunk with every planned insertion made in place, or `None` when
/// yaml-edit cannot follow the plan.
///
/// yaml-edit always indents a sequence it adds by two more than its key,
/// which looks foreign in the common manifests whose items stand at their
/// key's column. So a new or empty `initContainers` is first written as
/// text, in the layout of the pod's `containers`; yaml-edit's tree inserts
/// into existing lists, which it does in their own layout, and anything the
/// text splice does not recognise.
fn edit_lossless(text: &str, plans: &[Vec<PodEdit>], sidecars: &SidecarTexts) -> Option<Edited> {
    let mut edited = edit_lossless_lf(text, plans, sidecars)?;
    edited.text = line_endings_as(text, edited.text);
    Some(edited)
}

/// The insertions end their lines with `\n`; a file whose every line ends
/// with `\r\n` keeps doing so.
fn line_endings_as(input: &str, edited: String) -> String {
    let crlf =
        input.contains("\r\n") && input.matches('\n').count() == input.matches("\r\n").count();
    if crlf {
        edited.replace("\r\n", "\n").replace('\n', "\r\n")
    } else {
        edited
    }
}

/// A chunk's text with meshtop inserted.
struct Edited {
    text: String,
    /// When every insertion was a text splice: the splices, from last to
    /// first (see [`Edit::checked`]).
    splices: Option<Vec<Splice>>,
}

fn edit_lossless_lf(text: &str, plans: &[Vec<PodEdit>], sidecars: &SidecarTexts) -> Option<Edited> {
    let file = YamlFile::from_str(text).ok()?;
    let documents: Vec<Document> = file.documents().collect();
    if documents.len() != plans.len() {
        return None;
    }
    let mut splices = Vec::new();
    let mut done = Vec::new();
    for (d, (document, edits)) in documents.iter().zip(plans).enumerate() {
        for (e, edit) in edits.iter().enumerate() {
            if let Some(splice) = init_list_splice(text, document, edit) {
                splices.push(splice);
                done.push((d, e));
            }
        }
    }
    splices.sort_by_key(|splice| std::cmp::Reverse(splice.range.start));
    let mut end_of_previous = text.len();
    for splice in &splices {
        if splice.range.end > end_of_previous {
            return None;
        }
        end_of_previous = splice.range.start;
    }
    let edited = spliced(text, &splices, sidecars);
    if done.len() == plans.iter().map(Vec::len).sum::<usize>() {
        return Some(Edited {
            text: edited,
            splices: Some(splices),
        });
    }

    let file = YamlFile::from_str(&edited).ok()?;
    let documents: Vec<Document> = file.documents().collect();
    if documents.len() != plans.len() {
        return None;
    }
    for (d, (document, edits)) in documents.iter().zip(plans).enumerate() {
        for (e, edit) in edits.iter().enumerate() {
            if !done.contains(&(d, e)) {
                edit_pod(document, edit, sidecars)?;
            }
        }
    }
    Some(Edited {
        text: file.to_string(),
        splices: None,
    })
}

fn pod_spec(document: &Document, path: &[Step]) -> Option<yaml_edit::Mapping> {
    let mut node = match path.first() {
        Some(Step::Index(_)) => YamlNode::Sequence(document.as_sequence()?),
        _ => YamlNode::Mapping(document.as_mapping()?),
    };
    for step in path {
        node = match step {
            Step::Key(key) => node.as_mapping()?.get(*key)?,
            Step::Index(index) => node.as_sequence()?.get(*index)?,
        };
    }
    node.as_mapping().cloned()
}

/// The sidecars of an edit in their final order, for a list that has none
/// of its own.
fn new_list_order(edit: &PodEdit) -> Vec<Sidecar> {
    let mut order: Vec<Sidecar> = Vec::new();
    for &(at, sidecar) in &edit.inserts {
        order.insert(at.min(order.len()), sidecar);
    }
    order
}

fn edit_pod(document: &Document, edit: &PodEdit, sidecars: &SidecarTexts) -> Option<()> {
    let spec = pod_spec(document, &edit.path)?;
    match edit.init_list {
        InitList::Sequence => {
            let list = spec.get_sequence("initContainers")?;
            for &(at, sidecar) in &edit.inserts {
                let container = Document::from_str(sidecars.text(sidecar)).ok()?;
                list.insert(at, container.as_mapping()?);
            }
        }
        InitList::Missing | InitList::Empty => {
            let items: String = new_list_order(edit)
                .into_iter()
                .map(|sidecar| block_item(sidecars.text(sidecar), 0))
                .collect();
            let list = Document::from_str(&items).ok()?.as_sequence()?;
            if edit.init_list == InitList::Missing {
                if !spec.insert_before("containers", "initContainers", &list) {
                    return None;
                }
            } else {
                spec.set("initContainers", &list);
            }
        }
    }
    Some(())
}

/// A replacement of `range` of the chunk's text by `text`.
struct Splice {
    range: std::ops::Range<usize>,
    /// The `initContainers:` line (with the comment it had, if any).
    key_line: String,
    /// The sidecars to write, in order, as block items at `item_column`.
    items: Vec<Sidecar>,
    item_column: usize,
}

impl Splice {
    fn text(&self, sidecars: &SidecarTexts) -> String {
        let mut text = self.key_line.clone();
        for &sidecar in &self.items {
            text.push_str(&block_item(sidecars.text(sidecar), self.item_column));
        }
        text
    }
}

/// `text` with the splices, sorted from last to first, made with these
/// sidecars.
fn spliced(text: &str, splices: &[Splice], sidecars: &SidecarTexts) -> String {
    let mut edited = text.to_owned();
    for splice in splices {
        edited.replace_range(splice.range.clone(), &splice.text(sidecars));
    }
    edited
}

/// The text that adds a new `initContainers` before `containers`, or fills
/// an empty one, laid out as `containers` is; `None` when the pod is not
/// laid out in plain block style, or the list has items already.
fn init_list_splice(text: &str, document: &Document, edit: &PodEdit) -> Option<Splice> {
    if edit.init_list == InitList::Sequence {
        return None;
    }
    let spec = pod_spec(document, &edit.path)?;
    let containers = offset(
        spec.find_entry_by_key("containers")?
            .key_node()?
            .byte_range()
            .start,
    );
    let (column, item_offset) = block_layout(text, containers)?;
    let items = new_list_order(edit);
    if edit.init_list == InitList::Missing {
        let at = start_of_comments_above(text, line_start(text, containers), column);
        return Some(Splice {
            range: at..at,
            key_line: format!("{}initContainers:\n", " ".repeat(column)),
            items,
            item_column: column + item_offset,
        });
    }

    // `initContainers:`, `initContainers: []` or `initContainers: ~`, with
    // perhaps a comment, all on one line, which becomes the key alone.
    let entry = spec.find_entry_by_key("initContainers")?;
    let key = entry.key_node()?.byte_range();
    let (key_start, key_end) = (offset(key.start), offset(key.end));
    let (key_column, _) = block_layout(text, key_start)?;
    let start = line_start(text, key_start);
    let end = text[key_end..]
        .find('\n')
        .map_or(text.len(), |newline| key_end + newline + 1);
    if let Some(value) = entry.value_node()
        && offset(value.byte_range().end) > end
    {
        return None;
    }
    let rest = text[key_end..end]
        .trim_end()
        .trim_start()
        .strip_prefix(':')?;
    let (value, comment) = match rest.find(" #").or_else(|| rest.find("\t#")) {
        Some(hash) => (&rest[..hash], Some(rest[hash..].trim())),
        None if rest.trim_start().starts_with('#') => ("", Some(rest.trim())),
        None => (rest, None),
    };
    if !["", "[]", "~", "null", "Null", "NULL"].contains(&value.trim()) {
        return None;
    }
    let mut replacement = format!("{}{}:", " ".repeat(key_column), &text[key_start..key_end]);
    if let Some(comment) = comment {
        replacement.push(' ');
        replacement.push_str(comment);
    }
    replacement.push('\n');
    Some(Splice {
        range: start..end,
        key_line: replacement,
        items,
        item_column: column + item_offset,
    })
}

fn offset(position: u32) -> usize {
    usize::try_from(position).unwrap_or(usize::MAX)
}

fn line_start(text: &str, at: usize) -> usize {
    text.get(..at)
        .and_then(|before| before.rfind('\n'))
        .map_or(0, |newline| newline + 1)
}

/// The column of the key at `key`, when only spaces precede it on its line,
/// and how much further right its sequence's items stand (2 when they
/// cannot be seen).
fn block_layout(text: &str, key: usize) -> Option<(usize, usize)> {
    let prefix = text.get(line_start(text, key)..key)?;
    if !prefix.bytes().all(|b| b == b' ') {
        return None;
    }
    let column = prefix.len();
    let item_offset = text[key..]
        .lines()
        .skip(1)
        .map(|line| (line.len() - line.trim_start_matches(' ').len(), line.trim()))
        .find(|(_, content)| !content.is_empty() && !content.starts_with('#'))
        .filter(|(indent, content)| content.starts_with('-') && *indent >= column)
        .map_or(2, |(indent, _)| indent - column);
    Some((column, item_offset))
}

/// Where to insert before the line starting at `line`: above the comment
/// lines at `column` right above it, which speak of what follows them.
fn start_of_comments_above(text: &str, mut line: usize, column: usize) -> usize {
    while line > 0 {
        let previous = line_start(text, line - 1);
        let above = &text[previous..line];
        let content = above.trim_start_matches(' ');
        if !content.starts_with('#') || above.len() - content.len() != column {
            break;
        }
        line = previous;
    }
    line
}

/// A mapping's text as an item of a block sequence whose dashes stand at
/// `column`.
fn block_item(mapping: &str, column: usize) -> String {
    let mut item = String::with_capacity(mapping.len() * 2);
    for (index, line) in mapping.lines().enumerate() {
        item.extend(std::iter::repeat_n(' ', column));
        item.push_str(if index == 0 { "- " } else { "  " });
        item.push_str(line);
        item.push('\n');
    }
    item
}

// ---------------------------------------------------------------------------
// The rewrite, when the lossless edit fails its check: block style, two
// spaces, every scalar as it was written except that quoted and block
// scalars become double-quoted (the same string, in YAML 1.1 and 1.2 alike).

fn rewrite(chunk: &Chunk, docs: &[Yaml]) -> Result<String, String> {
    let mut out = String::with_capacity(chunk.text.len() * 2);
    let first_line = chunk.text.split_inclusive('\n').next().unwrap_or("");
    let marker_stands_alone = first_line
        .get(3..)
        .is_some_and(|rest| rest.trim().is_empty() || rest.trim_start().starts_with('#'));
    if chunk.explicit && marker_stands_alone {
        out.push_str(first_line.trim_end_matches(['\r', '\n']));
        out.push('\n');
    } else if chunk.explicit {
        out.push_str("---\n");
    }
    for (index, doc) in docs.iter().enumerate() {
        if index > 0 {
            out.push_str("---\n");
        }
        match doc {
            Yaml::Mapping(map) if !map.is_empty() => write_entries(map, 0, false, &mut out)?,
            Yaml::Sequence(items) if !items.is_empty() => write_items(items, 0, false, &mut out)?,
            node => {
                out.push_str(&inline(node)?);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// A `List` item's text (see [`Shape::ListItem`]) rewritten from its tree,
/// its `-` where it stood.
fn rewrite_item(text: &str, docs: &[Yaml]) -> Result<String, String> {
    let [Yaml::Sequence(items)] = docs else {
        return Err("a list item that is not one".to_owned());
    };
    let column = text.len() - text.trim_start_matches(' ').len();
    let mut out = String::with_capacity(text.len() * 2);
    write_items(items, column, false, &mut out)?;
    Ok(out)
}

fn indent(out: &mut String, width: usize) {
    out.extend(std::iter::repeat_n(' ', width));
}

/// Writes what follows `key:` or `-`: a scalar or an empty collection on the
/// same line, a collection on the following lines at `width`.
fn write_value(node: &Yaml, width: usize, out: &mut String) -> Result<(), String> {
    match node {
        Yaml::Mapping(map) if !map.is_empty() => {
            out.push('\n');
            write_entries(map, width, false, out)
        }
        Yaml::Sequence(items) if !items.is_empty() => {
            out.push('\n');
            write_items(items, width, false, out)
        }
        node => {
            let text = inline(node)?;
            if !text.is_empty() {
                out.push(' ');
                out.push_str(&text);
            }
            out.push('\n');
            Ok(())
        }
    }
}

fn write_entries(
    map: &Mapping,
    width: usize,
    first_inline: bool,
    out: &mut String,
) -> Result<(), String> {
    for (index, (key, value)) in map.iter().enumerate() {
        if index > 0 || !first_inline {
            indent(out, width);
        }
        if !matches!(key, Yaml::Representation(..)) {
            return Err("a mapping key that is not a scalar".to_owned());
        }
        out.push_str(&inline(key)?);
        out.push(':');
        write_value(value, width + 2, out)?;
    }
    Ok(())
}

fn write_items(
    items: &[Yaml],
    width: usize,
    first_inline: bool,
    out: &mut String,
) -> Result<(), String> {
    for (index, item) in items.iter().enumerate() {
        if index > 0 || !first_inline {
            indent(out, width);
        }
        out.push('-');
        match item {
            Yaml::Mapping(map) if !map.is_empty() => {
                out.push(' ');
                write_entries(map, width + 2, true, out)?;
            }
            Yaml::Sequence(inner) if !inner.is_empty() => {
                out.push(' ');
                write_items(inner, width + 2, true, out)?;
            }
            node => write_value(node, width + 2, out)?,
        }
    }
    Ok(())
}

fn inline(node: &Yaml) -> Result<String, String> {
    match node {
        Yaml::Representation(_, _, Some(_)) | Yaml::Tagged(..) => Err("a tagged node".to_owned()),
        Yaml::Representation(text, ScalarStyle::Plain, None) if !text.contains('\n') => {
            Ok(text.to_string())
        }
        Yaml::Representation(text, ScalarStyle::SingleQuoted, None) if !text.contains('\n') => {
            Ok(format!("'{}'", text.replace('\'', "''")))
        }
        Yaml::Representation(text, _, None) => Ok(quoted(text)),
        Yaml::Mapping(map) if map.is_empty() => Ok("{}".to_owned()),
        Yaml::Sequence(items) if items.is_empty() => Ok("[]".to_owned()),
        _ => Err("a node it cannot write".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inject_with(
        input: &str,
        options: &InjectOptions,
        editor: Editor,
    ) -> Result<String, InjectError> {
        run(input, options, editor, Lists::ByItem)
    }

    fn run(
        input: &str,
        options: &InjectOptions,
        editor: Editor,
        lists: Lists,
    ) -> Result<String, InjectError> {
        let mut out = String::new();
        super::inject_with(input, options, editor, lists, Pass::Write, &mut |text| {
            out.push_str(text);
            Ok(())
        })?;
        Ok(out)
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
        let rewritten = rewrite(&chunk, &docs).expect("nothing unsupported");
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
    fn the_rewrite_injects_as_the_lossless_edit_does() {
        let options = InjectOptions::default();
        let lossless = inject_with(TRICKY, &options, Editor::Lossless).expect("injects");
        let rewritten = inject_with(TRICKY, &options, Editor::Rewrite).expect("injects");
        assert_ne!(lossless, rewritten, "the rewrite drops comments");
        let lossless = load(&lossless).expect("valid");
        let rewritten = load(&rewritten).expect("valid");
        assert_eq!(strip_styles(&lossless[0]), strip_styles(&rewritten[0]));
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
            let rewritten = run(list, &options, Editor::Rewrite, Lists::Whole).expect("injects");
            assert_eq!(trees(&by_item), trees(&rewritten), "{list}");
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
