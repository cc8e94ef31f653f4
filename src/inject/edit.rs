//! Editing the YAML text with yaml-edit, and checking each edit against the
//! insertion made on the parsed tree.

use std::str::FromStr;

use saphyr::Yaml;
use yaml_edit::{Document, YamlFile, YamlNode};

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

// ---------------------------------------------------------------------------
// The insertion on the text, with yaml-edit.

/// How many comments `text` holds, as yaml-edit reads it.
fn count_comments(text: &str) -> Option<usize> {
    Some(YamlFile::from_str(text).ok()?.comments().count())
}

/// The chunk with every planned insertion made in place, or `None` when
/// yaml-edit cannot follow the plan.
///
/// yaml-edit always indents a sequence it adds by two more than its key,
/// which looks foreign in the common manifests whose items stand at their
/// key's column. So a new or empty `initContainers` is first written as
/// text, in the layout of the pod's `containers`; yaml-edit's tree inserts
/// into existing lists, which it does in their own layout, and anything the
/// text splice does not recognise.
pub(super) fn edit_lossless(
    text: &str,
    plans: &[Vec<PodEdit>],
    sidecars: &SidecarTexts,
) -> Option<Edited> {
    let mut edited = edit_lossless_lf(text, plans, sidecars)?;
    edited.text = line_endings_as(text, edited.text);
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
    /// When every insertion was a text splice: the splices, from last to
    /// first (see [`Edit::checked`]).
    pub(super) splices: Option<Vec<Splice>>,
}

pub(super) fn edit_lossless_lf(
    text: &str,
    plans: &[Vec<PodEdit>],
    sidecars: &SidecarTexts,
) -> Option<Edited> {
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

/// A replacement of `range` of the chunk's text by `text`.
pub(super) struct Splice {
    pub(super) range: std::ops::Range<usize>,
    /// The `initContainers:` line (with the comment it had, if any).
    pub(super) key_line: String,
    /// The sidecars to write, in order, as block items at `item_column`.
    pub(super) items: Vec<Sidecar>,
    pub(super) item_column: usize,
}

impl Splice {
    pub(super) fn text(&self, sidecars: &SidecarTexts) -> String {
        let mut text = self.key_line.clone();
        for &sidecar in &self.items {
            text.push_str(&block_item(sidecars.text(sidecar), self.item_column));
        }
        text
    }
}

/// `text` with the splices, sorted from last to first, made with these
/// sidecars.
pub(super) fn spliced(text: &str, splices: &[Splice], sidecars: &SidecarTexts) -> String {
    let mut edited = text.to_owned();
    for splice in splices {
        edited.replace_range(splice.range.clone(), &splice.text(sidecars));
    }
    edited
}

/// The text that adds a new `initContainers` before `containers`, or fills
/// an empty one, laid out as `containers` is; `None` when the pod is not
/// laid out in plain block style, or the list has items already.
pub(super) fn init_list_splice(text: &str, document: &Document, edit: &PodEdit) -> Option<Splice> {
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

pub(super) fn offset(position: u32) -> usize {
    usize::try_from(position).unwrap_or(usize::MAX)
}

/// cannot be seen).
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
