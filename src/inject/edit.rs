//! The one way `meshtop inject` edits YAML: each insertion is placed in the
//! text at a position read from yaml-edit's lossless syntax tree, and the
//! whole edit is kept only when parsing its output again gives what the
//! insertion made on the parsed tree gives.
//!
//! Only text is added (but for the value of an empty `initContainers`,
//! `[]` or `~`, which the items replace), so every other byte of the input
//! stays where it was: comments, key order, quoting, anchors, tags, blank
//! lines, line endings.
//! The containers are written in the style of where they go: as block items
//! at the column of the list's own items (of `containers` for a new list),
//! or as flow mappings on one line inside a flow collection. A pod spec
//! whose layout gives no place to insert (its `containers` key behind
//! another node on its line, say) or whose edit fails the check is refused
//! with an error naming its document, line and object; nothing is rewritten.

use std::ops::Range;
use std::str::FromStr;

use saphyr::Yaml;
use yaml_edit::{Document, Mapping, Sequence, YamlFile, YamlNode};

use super::pods::{InitList, Plan, PodEdit, Step, describe, expect, plan_document, plan_item};
use super::sidecars::{Sidecar, SidecarTexts, SidecarTrees, block_item};
use super::stream::Chunk;
use super::yaml::{line_start, load};
use super::{InjectError, InjectWarning};

/// What a piece of text handed to [`Edit::plan`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    /// YAML documents, as they stand in the input.
    Stream,
    /// One item of a `List`'s block sequence `items`, from the start of its
    /// `-` line: parsed alone, a sequence of that one item.
    ListItem,
}

/// What every document is edited with.
pub(super) struct Edit<'e, 'a> {
    pub(super) sidecars: &'e SidecarTexts,
    pub(super) trees: &'e SidecarTrees<'a>,
    /// One-line containers named as the sidecars, standing in for them
    /// where an edit is checked (see [`Edit::plan`]).
    pub(super) stand_ins: &'e SidecarTexts,
    pub(super) stand_in_trees: &'e SidecarTrees<'a>,
    /// The columns at which the sidecars, written as block items, were
    /// found to parse alone into their trees.
    pub(super) items_checked: std::cell::RefCell<Vec<usize>>,
}

/// What adding meshtop to a piece of text takes.
pub(super) struct Planned {
    /// The insertions, in the order of the text; none when the text has no
    /// pod to change and is copied as it is.
    pub(super) splices: Vec<Splice>,
    /// The pods left alone, and why.
    pub(super) warnings: Vec<InjectWarning>,
}

impl Edit<'_, '_> {
    /// Finds where meshtop goes in `chunk`, checks the edit, and says which
    /// pods are left alone. Nothing is written: [`Edit::write`] does that
    /// once every document of the input has been planned.
    ///
    /// The inserted containers are most of the output, and parsing them
    /// again for every pod would be most of the work. So the check is made
    /// on the same splices of one-line stand-ins named as the sidecars, and
    /// the sidecars' block items are checked once per column to parse alone
    /// into their trees (their flow forms were checked when they were
    /// written, see [`SidecarTexts`]): lines of one item at one column in
    /// place of lines of another, or one flow mapping on a line in place of
    /// another, mean the same to what surrounds them.
    pub(super) fn plan(
        &self,
        chunk: &Chunk,
        document: usize,
        shape: Shape,
    ) -> Result<Planned, InjectError> {
        let docs = load(chunk.text).map_err(|err| InjectError::InvalidYaml {
            document: document.max(1),
            line: chunk.first_line + err.marker().line(),
            column: err.marker().col() + 1,
            reason: err.info().to_owned(),
        })?;
        let plans: Vec<Plan> = match shape {
            Shape::Stream => docs.iter().map(plan_document).collect(),
            Shape::ListItem => docs.iter().map(plan_item).collect(),
        };
        let warnings = docs
            .iter()
            .zip(&plans)
            .flat_map(|(doc, plan)| {
                plan.left_alone
                    .iter()
                    .map(move |(path, why)| InjectWarning {
                        document,
                        object: describe(doc, path),
                        why: *why,
                    })
            })
            .collect();
        if plans.iter().all(|plan| plan.edits.is_empty()) {
            return Ok(Planned {
                splices: Vec::new(),
                warnings,
            });
        }
        let unsupported = |at: usize, path: &[Step], reason: String| {
            let object = docs
                .iter()
                .zip(&plans)
                .find(|(_, plan)| plan.edits.iter().any(|edit| edit.path == path))
                .map_or_else(|| "an object".to_owned(), |(doc, _)| describe(doc, path));
            InjectError::Unsupported {
                document,
                line: chunk.first_line
                    + 1
                    + chunk.text[..at.min(chunk.text.len())].matches('\n').count(),
                reason: format!("{object}: {reason}"),
            }
        };
        let splices = locate(chunk.text, &plans)
            .map_err(|NotPlaced { at, path, reason }| unsupported(at, &path, reason.to_owned()))?;

        let stand_in = spliced(chunk.text, &splices, self.stand_ins);
        let expected = expect(&docs, &plans, self.stand_in_trees);
        let same = load(&stand_in).is_ok_and(|reparsed| reparsed == expected);
        let items_parse_alone = splices
            .iter()
            .flat_map(|splice| &splice.pieces)
            .all(|piece| match piece {
                Piece::Block(_, column) => self.items_parse_alone(*column),
                Piece::Text(_) | Piece::Flow(_) => true,
            });
        if !(same && items_parse_alone) {
            return Err(unsupported(
                0,
                first_path(&plans),
                "the edit would not mean what adding the containers means, so it is not \
                 made (please report this document)"
                    .to_owned(),
            ));
        }
        Ok(Planned { splices, warnings })
    }

    /// `text` with `splices` (from [`Edit::plan`]) made, its lines ending
    /// with `\r\n` when `crlf` (see [`all_lines_end_in_crlf`]).
    pub(super) fn write(&self, text: &str, splices: &[Splice], crlf: bool) -> String {
        let edited = spliced(text, splices, self.sidecars);
        if crlf {
            edited.replace("\r\n", "\n").replace('\n', "\r\n")
        } else {
            edited
        }
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

/// Whether every line of a document ends with `\r\n`, and so must the
/// lines inserted into it, which end with `\n`.
pub(super) fn all_lines_end_in_crlf(document: &str) -> bool {
    document.contains("\r\n") && document.matches('\n').count() == document.matches("\r\n").count()
}

// ---------------------------------------------------------------------------
// Splices.

/// A replacement of `range` of a chunk's text (empty for an insertion).
#[derive(Debug)]
pub(super) struct Splice {
    pub(super) range: Range<usize>,
    pub(super) pieces: Vec<Piece>,
}

/// A piece of a splice's text.
#[derive(Debug)]
pub(super) enum Piece {
    Text(String),
    /// The sidecar as an item of a block sequence whose dashes stand at
    /// this column, whole lines.
    Block(Sidecar, usize),
    /// The sidecar as a flow mapping.
    Flow(Sidecar),
}

impl Splice {
    fn write(&self, sidecars: &SidecarTexts, out: &mut String) {
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Block(sidecar, column) => {
                    out.push_str(&block_item(sidecars.text(*sidecar), *column));
                }
                Piece::Flow(sidecar) => out.push_str(sidecars.flow(*sidecar)),
            }
        }
    }
}

/// `text` with the splices, in the order of the text and apart, made with
/// these sidecars.
pub(super) fn spliced(text: &str, splices: &[Splice], sidecars: &SidecarTexts) -> String {
    let mut out = String::with_capacity(
        text.len() + splices.len() * 2 * (sidecars.text(Sidecar::Init).len() + 64),
    );
    let mut copied = 0;
    for splice in splices {
        out.push_str(&text[copied..splice.range.start]);
        splice.write(sidecars, &mut out);
        copied = splice.range.end;
    }
    out.push_str(&text[copied..]);
    out
}

// ---------------------------------------------------------------------------
// Where the containers go, read from yaml-edit's syntax tree.

/// Why a pod's insertion has no place in the text.
struct NotPlaced {
    /// Where in the text the trouble is, for the error's line.
    at: usize,
    path: Vec<Step>,
    reason: &'static str,
}

/// The splices that make every planned insertion in `text`, in the order
/// of the text.
fn locate(text: &str, plans: &[Plan]) -> Result<Vec<Splice>, NotPlaced> {
    let not_read = |reason| NotPlaced {
        at: 0,
        path: first_path(plans).to_vec(),
        reason,
    };
    let file = YamlFile::from_str(text).map_err(|_| not_read("yaml-edit cannot read it"))?;
    let documents: Vec<Document> = file.documents().collect();
    if documents.len() != plans.len() {
        return Err(not_read("yaml-edit reads its documents differently"));
    }
    let mut splices = Vec::new();
    for (document, plan) in documents.iter().zip(plans) {
        for edit in &plan.edits {
            splices.extend(pod_splices(text, document, edit).map_err(|(at, reason)| {
                NotPlaced {
                    at,
                    path: edit.path.clone(),
                    reason,
                }
            })?);
        }
    }
    splices.sort_by_key(|splice| splice.range.start);
    if splices
        .windows(2)
        .any(|pair| pair[0].range.end > pair[1].range.start)
    {
        return Err(not_read("two of its pod specs overlap"));
    }
    Ok(splices)
}

/// The path of the first pod spec to edit, for errors about the whole
/// text.
fn first_path(plans: &[Plan]) -> &[Step] {
    plans
        .iter()
        .flat_map(|plan| &plan.edits)
        .next()
        .map_or(&[], |edit| edit.path.as_slice())
}

type Placed = Result<Vec<Splice>, (usize, &'static str)>;

/// The splices adding one pod's containers.
fn pod_splices(text: &str, document: &Document, edit: &PodEdit) -> Placed {
    let spec = pod_spec(document, &edit.path).map_err(|at| {
        (
            at,
            "its pod spec is not a mapping written in place (an alias?), which meshtop does not \
             edit",
        )
    })?;
    let at = offset(spec.byte_range().start);
    match edit.init_list {
        InitList::Sequence => sequence_splices(text, &spec, edit),
        _ if spec.is_flow_style() => flow_mapping_splices(text, &spec, edit).ok_or((
            at,
            "meshtop cannot place its containers in this flow-style pod spec",
        )),
        InitList::Missing | InitList::Empty => {
            new_list_splices(text, &spec, edit).map_err(|reason| (at, reason))
        }
    }
}

/// The splices into an existing `initContainers` with items, block or flow.
fn sequence_splices(text: &str, spec: &Mapping, edit: &PodEdit) -> Placed {
    let at = offset(spec.byte_range().start);
    let list = spec
        .get_sequence("initContainers")
        .filter(|list| list.len() == edit.existing && list.values().count() == edit.existing)
        .ok_or((
            at,
            "its initContainers is not a list yaml-edit reads item by item",
        ))?;
    let at = offset(list.byte_range().start);
    if list.is_flow_style() {
        flow_sequence_splices(&list, edit).ok_or((
            at,
            "meshtop cannot place items in its flow-style initContainers",
        ))
    } else {
        block_sequence_splices(text, &list, edit).ok_or((
            at,
            "meshtop cannot place items in its initContainers (an item's `-` not alone at the \
             start of its line?)",
        ))
    }
}

/// The pod spec at `path` in yaml-edit's tree, or the offset of the last
/// node found on the way (an alias, say) when it is not a mapping there.
fn pod_spec(document: &Document, path: &[Step]) -> Result<Mapping, usize> {
    let start = offset(document.byte_range().start);
    let mut node = match path.first() {
        Some(Step::Index(_)) => document.as_sequence().map(YamlNode::Sequence),
        _ => document.as_mapping().map(YamlNode::Mapping),
    }
    .ok_or(start)?;
    for step in path {
        let at = offset(node.byte_range().start);
        node = match step {
            Step::Key(key) => node.as_mapping().and_then(|map| map.get(*key)),
            Step::Index(index) => node.as_sequence().and_then(|list| list.get(*index)),
        }
        .ok_or(at)?;
    }
    let at = offset(node.byte_range().start);
    node.as_mapping().cloned().ok_or(at)
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

/// The sidecars to insert into a list of `edit.existing` items, grouped by
/// the index of the item they go before (`existing` for the end).
fn insertion_groups(edit: &PodEdit) -> Vec<(usize, Vec<Sidecar>)> {
    enum Slot {
        Existing(usize),
        New(Sidecar),
    }
    let mut slots: Vec<Slot> = (0..edit.existing).map(Slot::Existing).collect();
    for &(at, sidecar) in &edit.inserts {
        slots.insert(at.min(slots.len()), Slot::New(sidecar));
    }
    let mut groups = Vec::new();
    let mut pending = Vec::new();
    for slot in slots {
        match slot {
            Slot::New(sidecar) => pending.push(sidecar),
            Slot::Existing(index) if !pending.is_empty() => {
                groups.push((index, std::mem::take(&mut pending)));
            }
            Slot::Existing(_) => {}
        }
    }
    if !pending.is_empty() {
        groups.push((edit.existing, pending));
    }
    groups
}

/// Block items among the existing ones, at their column: before an item
/// (and the comment lines above it, at its column), or after the last.
fn block_sequence_splices(text: &str, list: &Sequence, edit: &PodEdit) -> Option<Vec<Splice>> {
    let dash = |index: usize| -> Option<(usize, usize)> {
        let value = offset(list.get(index)?.byte_range().start);
        let dash = text[..value]
            .trim_end_matches([' ', '\t', '\r', '\n'])
            .len()
            .checked_sub(1)?;
        let column = block_column(text, dash)?;
        (text.as_bytes()[dash] == b'-').then_some((dash, column))
    };
    let (_, column) = dash(0)?;
    let mut splices = Vec::new();
    for (before, sidecars) in insertion_groups(edit) {
        let mut pieces = Vec::new();
        let at = if before < edit.existing {
            let (dash, column) = dash(before)?;
            start_of_comments_above(text, line_start(text, dash), column)
        } else {
            let last = list.get(edit.existing - 1)?.byte_range();
            let (start, end) = (offset(last.start), offset(last.end));
            let content_end = start + text.get(start..end)?.trim_end().len();
            match text[content_end..].find('\n') {
                Some(newline) => content_end + newline + 1,
                None => {
                    pieces.push(Piece::Text("\n".to_owned()));
                    text.len()
                }
            }
        };
        pieces.extend(
            sidecars
                .into_iter()
                .map(|sidecar| Piece::Block(sidecar, column)),
        );
        splices.push(Splice {
            range: at..at,
            pieces,
        });
    }
    Some(splices)
}

/// Flow mappings among the existing items: before an item, or after the
/// last.
fn flow_sequence_splices(list: &Sequence, edit: &PodEdit) -> Option<Vec<Splice>> {
    let mut splices = Vec::new();
    for (before, sidecars) in insertion_groups(edit) {
        let (at, pieces) = if before < edit.existing {
            let at = offset(list.get(before)?.byte_range().start);
            let pieces = sidecars
                .into_iter()
                .flat_map(|sidecar| [Piece::Flow(sidecar), Piece::Text(", ".to_owned())])
                .collect();
            (at, pieces)
        } else {
            let at = offset(list.get(edit.existing - 1)?.byte_range().end);
            let pieces = sidecars
                .into_iter()
                .flat_map(|sidecar| [Piece::Text(", ".to_owned()), Piece::Flow(sidecar)])
                .collect();
            (at, pieces)
        };
        splices.push(Splice {
            range: at..at,
            pieces,
        });
    }
    Some(splices)
}

/// A flow sequence of the sidecars, as a new list's value.
fn flow_list(sidecars: Vec<Sidecar>) -> Vec<Piece> {
    let mut pieces = vec![Piece::Text("[".to_owned())];
    for (index, sidecar) in sidecars.into_iter().enumerate() {
        if index > 0 {
            pieces.push(Piece::Text(", ".to_owned()));
        }
        pieces.push(Piece::Flow(sidecar));
    }
    pieces.push(Piece::Text("]".to_owned()));
    pieces
}

/// Into a pod spec in flow style: a new `initContainers: [...]` entry
/// before `containers`, or a value for an empty one.
fn flow_mapping_splices(text: &str, spec: &Mapping, edit: &PodEdit) -> Option<Vec<Splice>> {
    match edit.init_list {
        InitList::Missing => {
            let key = offset(
                spec.find_entry_by_key("containers")?
                    .key_node()?
                    .byte_range()
                    .start,
            );
            // Before the key itself, not before an anchor or a tag of it.
            let before = text[line_start(text, key)..key].trim_end();
            if !(before.is_empty() || before.ends_with(['{', ','])) {
                return None;
            }
            let mut pieces = vec![Piece::Text("initContainers: ".to_owned())];
            pieces.extend(flow_list(new_list_order(edit)));
            pieces.push(Piece::Text(", ".to_owned()));
            Some(vec![Splice {
                range: key..key,
                pieces,
            }])
        }
        InitList::Empty => {
            let entry = spec.find_entry_by_key("initContainers")?;
            let value = entry.value_node()?.byte_range();
            let range = offset(value.start)..offset(value.end);
            if !is_empty_value(text.get(range.clone())?) {
                return None;
            }
            let mut pieces = Vec::new();
            if text[..range.start].ends_with(':') {
                pieces.push(Piece::Text(" ".to_owned()));
            }
            pieces.extend(flow_list(new_list_order(edit)));
            Some(vec![Splice { range, pieces }])
        }
        // Into an existing list: see `sequence_splices`.
        InitList::Sequence => None,
    }
}

/// Whether a value, as written, is null or an empty list.
fn is_empty_value(value: &str) -> bool {
    ["", "[]", "~", "null", "Null", "NULL"].contains(&value.trim())
}

/// The splices that add a new `initContainers` before `containers`, or
/// fill an empty one, laid out as `containers` is, in a pod spec in block
/// style.
fn new_list_splices(
    text: &str,
    spec: &Mapping,
    edit: &PodEdit,
) -> Result<Vec<Splice>, &'static str> {
    const CONTAINERS: &str = "a new initContainers goes before `containers`, whose key is not \
                              alone at the start of its line";
    const INIT_CONTAINERS: &str = "its empty initContainers is not a key alone at the start of \
                                   its line, with its value";
    let containers = spec
        .find_entry_by_key("containers")
        .and_then(|entry| entry.key_node())
        .map(|key| offset(key.byte_range().start))
        .ok_or(CONTAINERS)?;
    let (column, item_offset) = block_layout(text, containers).ok_or(CONTAINERS)?;
    let items = new_list_order(edit)
        .into_iter()
        .map(|sidecar| Piece::Block(sidecar, column + item_offset));
    if edit.init_list == InitList::Missing {
        let at = start_of_comments_above(text, line_start(text, containers), column);
        let mut pieces = vec![Piece::Text(format!(
            "{}initContainers:\n",
            " ".repeat(column)
        ))];
        pieces.extend(items);
        return Ok(vec![Splice {
            range: at..at,
            pieces,
        }]);
    }

    // `initContainers:`, `initContainers: []` or `initContainers: ~`, with
    // perhaps a comment, on one line, which becomes the key alone; or the
    // key alone, and its `[]` or `~` alone on a line below, which goes.
    let entry = spec
        .find_entry_by_key("initContainers")
        .ok_or(INIT_CONTAINERS)?;
    let key = entry.key_node().ok_or(INIT_CONTAINERS)?.byte_range();
    let (key_start, key_end) = (offset(key.start), offset(key.end));
    let (key_column, _) = block_layout(text, key_start).ok_or(INIT_CONTAINERS)?;
    let line_end = |at: usize| {
        text[at..]
            .find('\n')
            .map_or(text.len(), |newline| at + newline + 1)
    };
    let (start, end) = (line_start(text, key_start), line_end(key_end));
    let rest = text[key_end..end]
        .trim_end()
        .trim_start()
        .strip_prefix(':')
        .ok_or(INIT_CONTAINERS)?;
    let (value, comment) = match rest.find(" #").or_else(|| rest.find("\t#")) {
        Some(hash) => (&rest[..hash], Some(rest[hash..].trim())),
        None if rest.trim_start().starts_with('#') => ("", Some(rest.trim())),
        None => (rest, None),
    };
    if !is_empty_value(value) {
        return Err(INIT_CONTAINERS);
    }
    let mut splices = Vec::new();
    if let Some(below) = entry.value_node().map(|value| value.byte_range())
        && offset(below.start) >= end
        && below.end > below.start
    {
        // The value's line goes, or only the value when a comment follows.
        let (below_start, below_end) = (offset(below.start), offset(below.end));
        let after = &text[below_end..line_end(below_end)];
        let range = if after.trim().is_empty() {
            line_start(text, below_start)..line_end(below_end)
        } else if after.trim_start().starts_with('#') {
            below_start..below_end + (after.len() - after.trim_start().len())
        } else {
            return Err(INIT_CONTAINERS);
        };
        if block_column(text, below_start).is_none()
            || !is_empty_value(&text[below_start..below_end])
        {
            return Err(INIT_CONTAINERS);
        }
        splices.push(Splice {
            range,
            pieces: Vec::new(),
        });
    }
    let mut key_line = format!("{}{}:", " ".repeat(key_column), &text[key_start..key_end]);
    if let Some(comment) = comment {
        key_line.push(' ');
        key_line.push_str(comment);
    }
    key_line.push('\n');
    let mut pieces = vec![Piece::Text(key_line)];
    pieces.extend(items);
    splices.insert(
        0,
        Splice {
            range: start..end,
            pieces,
        },
    );
    Ok(splices)
}

fn offset(position: u32) -> usize {
    usize::try_from(position).unwrap_or(usize::MAX)
}

/// The column of the node at `at`, when only spaces precede it on its line.
fn block_column(text: &str, at: usize) -> Option<usize> {
    let prefix = text.get(line_start(text, at)..at)?;
    prefix.bytes().all(|b| b == b' ').then_some(prefix.len())
}

/// The column of the key at `key`, when only spaces precede it on its line,
/// and how much further right its sequence's items stand (2 when they
/// cannot be seen).
fn block_layout(text: &str, key: usize) -> Option<(usize, usize)> {
    let column = block_column(text, key)?;
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
