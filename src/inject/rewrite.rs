//! Writing a document out from its parsed tree, when the lossless edit
//! fails its check; `meshtop inject` then warns that the document's
//! comments and layout were lost.
//!
//! It stays because yaml-edit does not cover every layout: it cannot insert
//! into a pod spec that is a flow mapping over several lines
//! (`spec: {\n  containers: [...]\n}`), with or without comments, where
//! this writes the pod in block style (the test
//! `a_pod_spec_yaml_edit_cannot_edit_is_rewritten_with_a_warning`).
use saphyr::{Mapping, ScalarStyle, Yaml};

use super::sidecars::quoted;
use super::stream::Chunk;

// ---------------------------------------------------------------------------
// The rewrite, when the lossless edit fails its check: block style, two
// spaces, every scalar as it was written except that quoted and block
// scalars become double-quoted (the same string, in YAML 1.1 and 1.2 alike).

pub(super) fn rewrite(chunk: &Chunk, docs: &[Yaml]) -> Result<String, String> {
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
pub(super) fn rewrite_item(text: &str, docs: &[Yaml]) -> Result<String, String> {
    let [Yaml::Sequence(items)] = docs else {
        return Err("a list item that is not one".to_owned());
    };
    let column = text.len() - text.trim_start_matches(' ').len();
    let mut out = String::with_capacity(text.len() * 2);
    write_items(items, column, false, &mut out)?;
    Ok(out)
}

pub(super) fn indent(out: &mut String, width: usize) {
    out.extend(std::iter::repeat_n(' ', width));
}

/// Writes what follows `key:` or `-`: a scalar or an empty collection on the
/// same line, a collection on the following lines at `width`.
pub(super) fn write_value(node: &Yaml, width: usize, out: &mut String) -> Result<(), String> {
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

pub(super) fn write_entries(
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

pub(super) fn write_items(
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

pub(super) fn inline(node: &Yaml) -> Result<String, String> {
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
