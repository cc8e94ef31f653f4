//! Cutting a YAML stream into its documents, at its `---` lines.
//!
//! yaml-edit reads a stream too (`YamlFile::documents`), but only whole:
//! one syntax tree of every document, where this cut holds one document
//! (one item of a `List`) at a time, which is what keeps `meshtop inject`
//! linear on a `List` of thousands of pods (docs/benchmarks.md), lets a
//! syntax error name its document, and copies documents without pods byte
//! for byte. Tested by `documents_are_cut_at_marker_lines_only` and
//! `directives_stay_with_their_document` (src/inject.rs).

// ---------------------------------------------------------------------------
// Documents.

/// One document of the stream: from a `---` line (or the start of the
/// input) to the next one.
pub(super) struct Chunk<'a> {
    pub(super) text: &'a str,
    /// Lines of the input before this chunk.
    pub(super) first_line: usize,
    /// Starts with a `---` line.
    pub(super) explicit: bool,
}

pub(super) fn is_marker_line(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

pub(super) fn split_documents(input: &str) -> Vec<Chunk<'_>> {
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
pub(super) fn only_directives(text: &str) -> bool {
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
pub(super) fn has_content(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with('#')
    })
}
