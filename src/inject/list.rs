//! Cutting a `List` into items that are injected one at a time.

use std::borrow::Cow;

use saphyr_parser::{Event, Parser};

use super::yaml::line_start;

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
pub(super) fn split_list(text: &str) -> Option<Vec<std::ops::Range<usize>>> {
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
        // Which node is a key: only scalar ones, whose duplicates can be
        // told apart here (a complex key sends the document whole).
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
pub(super) fn plain_event(event: &Event) -> bool {
    match event {
        Event::Alias(_) => false,
        Event::Scalar(_, _, anchor, tag)
        | Event::SequenceStart(anchor, tag)
        | Event::MappingStart(anchor, tag) => *anchor == 0 && tag.is_none(),
        _ => true,
    }
}

pub(super) fn fingerprint_event(event: &Event, hasher: &mut std::hash::DefaultHasher) {
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
pub(super) fn item_fingerprint(text: &str) -> Option<u64> {
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
pub(super) fn end_of_line(text: &str, at: usize) -> usize {
    if at == 0 || text[..at].ends_with('\n') {
        return at;
    }
    text[at..]
        .find('\n')
        .map_or(text.len(), |newline| at + newline + 1)
}

/// Byte offsets of the parser's character indices, counted forward from the
/// last one asked for (the parser's positions mostly grow).
pub(super) struct ByteOffsets<'t> {
    pub(super) text: &'t str,
    pub(super) ascii: bool,
    pub(super) chars: usize,
    pub(super) bytes: usize,
}

impl<'t> ByteOffsets<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        ByteOffsets {
            text,
            ascii: text.is_ascii(),
            chars: 0,
            bytes: 0,
        }
    }

    pub(super) fn at(&mut self, chars: usize) -> Option<usize> {
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
