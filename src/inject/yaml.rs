//! Reading YAML: strict parsing with saphyr, and positions in text.

use saphyr::{Yaml, YamlLoader};
use saphyr_parser::{Parser, ScanError};

/// Parses strictly, keeping every scalar as written (style included).
pub(super) fn load(text: &str) -> Result<Vec<Yaml<'_>>, ScanError> {
    let mut parser = Parser::new_from_str(text);
    let mut loader = YamlLoader::<Yaml>::default();
    loader.early_parse(false);
    parser.load(&mut loader, true)?;
    if let Some(err) = loader.error() {
        return Err(err.clone());
    }
    Ok(loader.into_documents())
}

pub(super) fn load_one(text: &str) -> Option<Yaml<'_>> {
    load(text).ok()?.into_iter().next()
}

pub(super) fn line_start(text: &str, at: usize) -> usize {
    text.get(..at)
        .and_then(|before| before.rfind('\n'))
        .map_or(0, |newline| newline + 1)
}
