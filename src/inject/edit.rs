//! Editing the YAML text with yaml-edit, and checking each edit against the
//! insertion made on the parsed tree.
//!
//! Every edit goes through yaml-edit: items join an existing list through
//! its sequence API, and a new or empty `initContainers` is parsed by it
//! and grafted into the pod spec's syntax tree ([`NewList`]), or, where the
//! graft does not recognise the layout, added through its mapping API.

use std::str::FromStr;

use rowan::ast::AstNode;
use saphyr::Yaml;
use yaml_edit::{Document, Lang, SyntaxKind, YamlFile, YamlNode};

use super::pods::{InitList, PodEdit, Step, describe, expect, plan_document, plan_item};
use super::rewrite::{rewrite, rewrite_item};
use super::sidecars::{Sidecar, SidecarTexts, SidecarTrees, block_item};
use super::stream::Chunk;
use super::yaml::{line_start, load};
use super::{Editor, InjectError, InjectWarning, Loss, Sink};

/// What a piece of text handed to [`Edit::document`] is.
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
    /// where an edit is checked (see [`Edit::checked`]).
    pub(super) stand_ins: &'e SidecarTexts,
    pub(super) stand_in_trees: &'e SidecarTrees<'a>,
    /// The columns at which the sidecars, written as block items, were
    /// found to parse alone into their trees.
    pub(super) items_checked: std::cell::RefCell<Vec<usize>>,
    /// The new `initContainers` entries parsed to graft, by their text.
    pub(super) entries: ParsedEntries,
    pub(super) editor: Editor,
}

impl Edit<'_, '_> {
    /// Writes `chunk` with meshtop added to its pods, as it was when it has
    /// none to change, and says what was given up, if anything.
    ///
    /// Every edit is made with yaml-edit, and kept only when parsing its
    /// output again gives what the insertion on the parsed tree gives (see
    /// [`Edit::checked`]). Should yaml-edit get a layout wrong, the
    /// document is written out again from that tree ([`super::rewrite`]),
    /// and a warning says that its comments and layout were lost.
    pub(super) fn document(
        &self,
        chunk: &Chunk,
        document: usize,
        shape: Shape,
        out: &mut Sink,
    ) -> Result<Option<InjectWarning>, InjectError> {
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
            out(chunk.text)?;
            return Ok(None);
        }
        if self.editor == Editor::Lossless
            && let Some(edited) = self.checked(chunk.text, &docs, &plans)
        {
            out(&edited)?;
            return Ok(None);
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
        out(&rewritten)?;
        let object = match shape {
            Shape::Stream => docs.iter().zip(&plans).find(|(_, plan)| !plan.is_empty()),
            Shape::ListItem => docs.first().zip(plans.first()),
        }
        .map_or_else(|| "an object".to_owned(), |(doc, plan)| describe(doc, plan));
        Ok(Some(InjectWarning {
            document,
            object,
            loss: Loss::Rewritten {
                comments: count_comments(chunk.text),
            },
        }))
    }

    /// The lossless edit of `text`, when parsing it again gives what the
    /// plans on the tree give.
    ///
    /// The inserted containers are most of the output, and parsing them
    /// again for every pod is most of the work. So where every insertion
    /// was a new list grafted in (whole lines of block items at a column,
    /// see [`NewList`]), the check is made on the same edit with one-line
    /// stand-ins named as the sidecars in their place, and the sidecars'
    /// block items are checked once per column to parse alone into their
    /// trees: lines of one item at one column, in place of lines of
    /// another, mean the same to what surrounds them.
    fn checked(&self, text: &str, docs: &[Yaml], plans: &[Vec<PodEdit>]) -> Option<String> {
        let edited = edit_lossless(text, plans, self.sidecars, self.stand_ins, &self.entries)?;
        let Some(stand_in) = &edited.stand_in else {
            let expected = expect(docs, plans, self.trees);
            return load(&edited.text)
                .is_ok_and(|reparsed| reparsed == expected)
                .then_some(edited.text);
        };
        let expected = expect(docs, plans, self.stand_in_trees);
        let same = load(&stand_in.text).is_ok_and(|reparsed| reparsed == expected);
        let items_parse_alone = stand_in
            .item_columns
            .iter()
            .all(|&column| self.items_parse_alone(column));
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

// ---------------------------------------------------------------------------
// The insertion on the text, with yaml-edit.

/// How many comments `text` holds, as yaml-edit reads it.
fn count_comments(text: &str) -> Option<usize> {
    Some(YamlFile::from_str(text).ok()?.comments().count())
}

/// The chunk with every planned insertion made in place, or `None` when
/// yaml-edit cannot follow the plan.
///
/// yaml-edit's mapping API always indents a sequence it adds by two more
/// than its key, which looks foreign in the common manifests whose items
/// stand at their key's column. So a new or empty `initContainers` is
/// parsed by yaml-edit in the layout of the pod's `containers` and grafted
/// into the pod spec's syntax tree ([`NewList`]); yaml-edit's sequence API
/// inserts into existing lists, which it does in their own layout, and its
/// mapping API adds whatever list the graft does not recognise.
pub(super) fn edit_lossless(
    text: &str,
    plans: &[Vec<PodEdit>],
    sidecars: &SidecarTexts,
    stand_ins: &SidecarTexts,
    entries: &ParsedEntries,
) -> Option<Edited> {
    let mut edited = edit_lossless_lf(text, plans, sidecars, stand_ins, entries)?;
    edited.text = line_endings_as(text, edited.text);
    if let Some(stand_in) = &mut edited.stand_in {
        stand_in.text = line_endings_as(text, std::mem::take(&mut stand_in.text));
    }
    Some(edited)
}

/// The insertions end their lines with `\n`; a file whose every line ends
/// with `\r\n` keeps doing so.
pub(super) fn line_endings_as(input: &str, edited: String) -> String {
    let crlf =
        input.contains("\r\n") && input.matches('\n').count() == input.matches("\r\n").count();
    if crlf {
        edited.replace("\r\n", "\n").replace('\n', "\r\n")
    } else {
        edited
    }
}

/// A chunk's text with meshtop inserted.
pub(super) struct Edited {
    pub(super) text: String,
    /// When every insertion was a new list grafted in: the same edit with
    /// the stand-ins (see [`Edit::checked`]).
    pub(super) stand_in: Option<StandIn>,
}

/// The edit with the one-line stand-ins in place of the sidecars.
pub(super) struct StandIn {
    pub(super) text: String,
    /// The columns of the new lists' items.
    pub(super) item_columns: Vec<usize>,
}

pub(super) fn edit_lossless_lf(
    text: &str,
    plans: &[Vec<PodEdit>],
    sidecars: &SidecarTexts,
    stand_ins: &SidecarTexts,
    entries: &ParsedEntries,
) -> Option<Edited> {
    let file = YamlFile::from_str(text).ok()?;
    let documents: Vec<Document> = file.documents().collect();
    if documents.len() != plans.len() {
        return None;
    }
    // Every new list is found on the tree as parsed, before any graft
    // changes it.
    let mut new_lists = Vec::new();
    let mut done = Vec::new();
    for (d, (document, edits)) in documents.iter().zip(plans).enumerate() {
        for (e, edit) in edits.iter().enumerate() {
            if let Some(new_list) = NewList::find(text, document, edit) {
                new_lists.push(new_list);
                done.push((d, e));
            }
        }
    }
    new_lists.sort_by_key(|new_list| std::cmp::Reverse(new_list.range.start));
    let mut end_of_previous = text.len();
    for new_list in &new_lists {
        if new_list.range.end > end_of_previous {
            return None;
        }
        end_of_previous = new_list.range.start;
    }
    let mut grafted = Vec::with_capacity(new_lists.len());
    for new_list in &new_lists {
        grafted.push(new_list.graft(entries.entry(&new_list.text(sidecars))?));
    }
    if done.len() == plans.iter().map(Vec::len).sum::<usize>() {
        let edited = file.to_string();
        for (new_list, entry) in new_lists.iter().zip(&grafted) {
            let parent = entry.parent()?;
            let at = entry.index();
            let stand_in = entries.entry(&new_list.text(stand_ins))?;
            parent.splice_children(at..at + 1, [stand_in.into()]);
        }
        return Some(Edited {
            text: edited,
            stand_in: Some(StandIn {
                text: file.to_string(),
                item_columns: new_lists.iter().map(|l| l.item_column).collect(),
            }),
        });
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
        stand_in: None,
    })
}

pub(super) fn pod_spec(document: &Document, path: &[Step]) -> Option<yaml_edit::Mapping> {
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
pub(super) fn new_list_order(edit: &PodEdit) -> Vec<Sidecar> {
    let mut order: Vec<Sidecar> = Vec::new();
    for &(at, sidecar) in &edit.inserts {
        order.insert(at.min(order.len()), sidecar);
    }
    order
}

pub(super) fn edit_pod(document: &Document, edit: &PodEdit, sidecars: &SidecarTexts) -> Option<()> {
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

// ---------------------------------------------------------------------------
// A new or empty `initContainers`, grafted into the pod spec's syntax tree.

/// An `initContainers` entry to add to a pod spec before `containers`, or
/// to put in place of an empty one, laid out as `containers` is: its key at
/// their key's column, its items at theirs.
///
/// Found on the text and tree as parsed, it is parsed by yaml-edit alone
/// ([`ParsedEntries`]) and grafted in with rowan, the syntax tree library
/// yaml-edit is built on and exposes ([`yaml_edit::advanced`]), where the
/// parser would have put it: a block mapping's first entry has its
/// indentation outside the mapping, every other entry the one before it,
/// and comment lines between entries belong to the mapping. In a flow
/// mapping over several lines whose `containers` starts a line, block lines
/// do not belong: the check refuses them, and the document is written out
/// again from its tree (`a_pod_spec_yaml_edit_cannot_edit_is_rewritten_with_a_warning`
/// in src/inject.rs).
pub(super) struct NewList {
    /// The text the entry takes the place of: nothing, where a new one
    /// goes, or the empty one's line.
    range: std::ops::Range<usize>,
    place: Place,
    /// The `initContainers:` line (with the comment it had, if any).
    key_line: String,
    /// The sidecars to write, in order, as block items at `item_column`.
    items: Vec<Sidecar>,
    item_column: usize,
}

enum Place {
    /// Before `containers`, and above the comment lines right above it,
    /// which speak of what follows them.
    Before {
        spec: SyntaxNode,
        containers: SyntaxNode,
        /// From the start of those lines to `containers`' key: comments,
        /// line breaks and indentation.
        lines_above: Vec<SyntaxToken>,
        column: usize,
        /// The mapping starts with `containers`: the parser puts the
        /// indentation of its line, and the comment lines above it, before
        /// the mapping.
        first: bool,
    },
    /// In place of the entry of an empty `initContainers`, which spans the
    /// whole of its line but its indentation.
    Replacing(SyntaxNode),
}

type SyntaxNode = rowan::SyntaxNode<Lang>;
type SyntaxToken = rowan::SyntaxToken<Lang>;

impl NewList {
    /// The new list of `edit`; `None` when the pod spec is not laid out in
    /// plain block style, or its list has items already.
    fn find(text: &str, document: &Document, edit: &PodEdit) -> Option<NewList> {
        if edit.init_list == InitList::Sequence {
            return None;
        }
        let spec = pod_spec(document, &edit.path)?;
        let containers = spec.find_entry_by_key("containers")?;
        let containers_key = offset(containers.key_node()?.byte_range().start);
        let (column, item_offset) = block_layout(text, containers_key)?;
        let items = new_list_order(edit);
        let item_column = column + item_offset;
        if edit.init_list == InitList::Missing {
            let containers = containers.syntax().clone();
            let at = start_of_comments_above(text, line_start(text, containers_key), column);
            let lines_above = tokens_between(document.syntax(), at, containers_key)?;
            let first = spec.syntax().text_range().start() == containers.text_range().start();
            if offset(containers.text_range().start().into()) != containers_key
                || (first && spec.syntax().parent().is_none())
            {
                return None;
            }
            return Some(NewList {
                range: at..at,
                place: Place::Before {
                    spec: spec.syntax().clone(),
                    containers,
                    lines_above,
                    column,
                    first,
                },
                key_line: format!("{}initContainers:\n", " ".repeat(column)),
                items,
                item_column,
            });
        }

        // `initContainers:`, `initContainers: []` or `initContainers: ~`,
        // with perhaps a comment, all on one line, which becomes the key
        // alone.
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
        // The entry, its indentation aside, is the line.
        let range = entry.syntax().text_range();
        if (offset(range.start().into()), offset(range.end().into())) != (key_start, end)
            || entry.syntax().parent().is_none()
        {
            return None;
        }
        let mut key_line = format!("{}{}:", " ".repeat(key_column), &text[key_start..key_end]);
        if let Some(comment) = comment {
            key_line.push(' ');
            key_line.push_str(comment);
        }
        key_line.push('\n');
        Some(NewList {
            range: start..end,
            place: Place::Replacing(entry.syntax().clone()),
            key_line,
            items,
            item_column,
        })
    }

    /// The entry's text, with these sidecars, from the start of its line.
    fn text(&self, sidecars: &SidecarTexts) -> String {
        let mut text = self.key_line.clone();
        for &sidecar in &self.items {
            text.push_str(&block_item(sidecars.text(sidecar), self.item_column));
        }
        text
    }

    /// Puts `entry` in place and returns it.
    fn graft(&self, entry: SyntaxNode) -> SyntaxNode {
        match &self.place {
            Place::Replacing(old) => {
                if let Some(parent) = old.parent() {
                    let at = old.index();
                    parent.splice_children(at..at + 1, [entry.clone().into()]);
                }
            }
            Place::Before {
                spec,
                containers,
                lines_above,
                column,
                first,
            } => {
                for token in lines_above {
                    token.detach();
                }
                let indent = (*column > 0).then(|| indent_token(*column));
                let mut elements: Vec<rowan::SyntaxElement<Lang>> = Vec::new();
                match (*first, spec.parent()) {
                    (true, Some(parent)) => {
                        let at = spec.index();
                        parent.splice_children(at..at, indent.map(Into::into));
                    }
                    _ => elements.extend(indent.map(Into::into)),
                }
                elements.push(entry.clone().into());
                elements.extend(lines_above.iter().cloned().map(Into::into));
                let at = containers.index();
                spec.splice_children(at..at, elements);
            }
        }
        entry
    }
}

/// The tokens of `node` from the line starting at `start` to `end`, when
/// they hold only comments, line breaks and indentation.
fn tokens_between(node: &SyntaxNode, start: usize, end: usize) -> Option<Vec<SyntaxToken>> {
    let range = node.text_range();
    let (first, last) = (offset(range.start().into()), offset(range.end().into()));
    if !(first <= start && start <= end && end <= last) {
        return None;
    }
    let mut token = node
        .token_at_offset(u32::try_from(start).ok()?.into())
        .right_biased();
    let mut tokens = Vec::new();
    while let Some(current) = token {
        let range = current.text_range();
        let (from, to) = (offset(range.start().into()), offset(range.end().into()));
        if from >= end {
            break;
        }
        let trivia = matches!(
            current.kind(),
            SyntaxKind::COMMENT | SyntaxKind::NEWLINE | SyntaxKind::INDENT | SyntaxKind::WHITESPACE
        );
        if !trivia || from < start || to > end {
            return None;
        }
        token = current.next_token();
        tokens.push(current);
    }
    Some(tokens)
}

/// `column` spaces of indentation, a token of its own.
fn indent_token(column: usize) -> SyntaxToken {
    let mut builder = rowan::GreenNodeBuilder::new();
    builder.start_node(SyntaxKind::ROOT.into());
    builder.token(SyntaxKind::INDENT.into(), &" ".repeat(column));
    builder.finish_node();
    let root = SyntaxNode::new_root_mut(builder.finish());
    let token = root
        .first_token()
        .expect("a node built with one token has it");
    token.detach();
    token
}

/// The `initContainers` entries yaml-edit parsed alone, by their text: a
/// `List` of many pods laid out alike parses its one once, where parsing
/// the sidecars for every pod would take longer than the rest of the edit.
/// At most [`ParsedEntries::BOUND`]; past that, an entry is parsed again
/// for every pod.
#[derive(Default)]
pub(super) struct ParsedEntries(std::cell::RefCell<Vec<(String, rowan::GreenNode)>>);

impl ParsedEntries {
    const BOUND: usize = 16;

    /// The entry of a mapping whose text is `text` (from the start of its
    /// line), as a new tree of its own to graft.
    fn entry(&self, text: &str) -> Option<SyntaxNode> {
        let cached = self
            .0
            .borrow()
            .iter()
            .find(|(parsed, _)| parsed == text)
            .map(|(_, green)| green.clone());
        let green = match cached {
            Some(green) => green,
            None => {
                let file = YamlFile::from_str(text).ok()?;
                let entry = file
                    .syntax()
                    .descendants()
                    .find(|node| node.kind() == SyntaxKind::MAPPING_ENTRY)?;
                if entry.text() != text.trim_start_matches(' ') {
                    return None;
                }
                let green = entry.green().into_owned();
                let mut parsed = self.0.borrow_mut();
                if parsed.len() < Self::BOUND {
                    parsed.push((text.to_owned(), green.clone()));
                }
                green
            }
        };
        Some(SyntaxNode::new_root_mut(green))
    }
}

pub(super) fn offset(position: u32) -> usize {
    usize::try_from(position).unwrap_or(usize::MAX)
}

/// The column of the key at `key`, when only spaces precede it on its line,
/// and how much further right its sequence's items stand (2 when they
/// cannot be seen).
pub(super) fn block_layout(text: &str, key: usize) -> Option<(usize, usize)> {
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
pub(super) fn start_of_comments_above(text: &str, mut line: usize, column: usize) -> usize {
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

#[cfg(test)]
mod tests {
    use yaml_edit::debug::tree_to_string;

    use super::*;
    use crate::inject::InjectOptions;
    use crate::inject::pods::plan_document;

    /// The graft's layouts: a first entry with a comment above it, an
    /// entry after others with comment and blank lines above it, an empty
    /// list with a comment, and an empty list ending the input.
    #[test]
    fn a_grafted_list_is_the_tree_yaml_edit_parses_from_its_text() {
        let sidecars = SidecarTexts::new(&InjectOptions::default());
        for text in [
            "kind: Pod\nspec:\n  # The application.\n  containers:\n  - name: app\n",
            "kind: Pod\nspec:\n  volumes:\n  - name: v\n  # one\n\n  # two\n  containers: # apps\n    - name: app\n",
            "kind: Pod\nspec:\n  initContainers: [] # keep\n  containers:\n  - name: app\n",
            "kind: Job\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n      initContainers: ~",
        ] {
            let docs = load(text).expect("valid YAML");
            let plans: Vec<Vec<PodEdit>> = docs.iter().map(plan_document).collect();
            let file = YamlFile::from_str(text).expect("valid YAML");
            let new_lists: Vec<NewList> = file
                .documents()
                .zip(&plans)
                .flat_map(|(document, edits)| {
                    edits
                        .iter()
                        .map(move |edit| NewList::find(text, &document, edit))
                })
                .map(|new_list| new_list.expect("a layout the graft recognises"))
                .collect();
            let entries = ParsedEntries::default();
            for new_list in &new_lists {
                let entry = entries.entry(&new_list.text(&sidecars));
                new_list.graft(entry.expect("the entry parses"));
            }
            let edited = file.to_string();
            assert!(edited.contains("- name: meshtop-proxy\n"), "{edited}");
            let reparsed = YamlFile::from_str(&edited).expect("valid YAML");
            assert_eq!(
                tree_to_string(file.syntax()),
                tree_to_string(reparsed.syntax()),
                "{edited}"
            );
        }
    }
}
