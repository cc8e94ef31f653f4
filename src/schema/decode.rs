//! Text to a [`Message`], or why it is not one, in the order a reader would
//! ask: is it JSON, does it have a type, is it of our schema, does it fit.
//! The live sources and the recording reader both decode here, so a
//! message is refused for the same reason wherever it comes from.

use super::{Message, SCHEMA_VERSION};

/// Why a text is not a message this build can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("a JSON value without a \"type\"")]
    NoType,
    #[error("\"type\" is not a string but {0}")]
    TypeNotString(String),
    /// A `hello` of a newer schema: what follows it is of that schema too.
    #[error("schema {0} is newer than this meshtop's {SCHEMA_VERSION}: upgrade meshtop")]
    NewerSchema(u64),
    /// A message of a known type whose fields do not fit this schema.
    #[error("a {kind} that does not fit schema {SCHEMA_VERSION}: {detail}")]
    DoesNotFit { kind: String, detail: String },
}

/// Decodes one message. Types this build does not know decode as
/// [`Message::Unknown`], which readers count and show rather than refuse
/// (docs/events.md, "Evolving the schema").
pub fn decode(text: &str) -> Result<Message, DecodeError> {
    // The common case takes one parse; the diagnosis runs only for texts
    // that do not decode.
    match serde_json::from_str::<Message>(text) {
        Ok(Message::Hello(hello)) if hello.schema > SCHEMA_VERSION => {
            Err(DecodeError::NewerSchema(u64::from(hello.schema)))
        }
        Ok(message) => Ok(message),
        Err(err) => Err(diagnose(text, &err)),
    }
}

fn diagnose(text: &str, err: &serde_json::Error) -> DecodeError {
    let value = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => value,
        Err(err) => return DecodeError::NotJson(one_line(&err.to_string())),
    };
    let detail = one_line(&err.to_string());
    match value.get("type") {
        None => DecodeError::NoType,
        Some(serde_json::Value::String(kind)) => {
            if kind == "hello"
                && let Some(schema) = value.get("schema").and_then(serde_json::Value::as_u64)
                && schema > u64::from(SCHEMA_VERSION)
            {
                return DecodeError::NewerSchema(schema);
            }
            DecodeError::DoesNotFit {
                kind: one_line(kind),
                detail,
            }
        }
        Some(other) => DecodeError::TypeNotString(one_line(&other.to_string())),
    }
}

/// Keeps a piece of text from outside (a peer's message, a file's line)
/// short and on one line, for a reason shown to the user.
pub fn one_line(s: &str) -> String {
    const MAX: usize = 60;
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(MAX).collect();
    if s.chars().count() > MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_names_what_is_wrong() {
        assert!(matches!(decode("not json"), Err(DecodeError::NotJson(_))));
        assert_eq!(decode(r#"{"count":1}"#), Err(DecodeError::NoType));
        assert_eq!(decode("[1,2]"), Err(DecodeError::NoType));
        assert!(matches!(decode(r#"{"type":7}"#), Err(DecodeError::TypeNotString(t)) if t == "7"));
        assert_eq!(
            decode(r#"{"type":"hello","schema":2}"#),
            Err(DecodeError::NewerSchema(2))
        );
        let Err(DecodeError::DoesNotFit { kind, .. }) = decode(r#"{"type":"dropped","count":"x"}"#)
        else {
            panic!("a dropped with a string count does not fit");
        };
        assert_eq!(kind, "dropped");
        assert_eq!(decode(r#"{"type":"metrics","x":1}"#), Ok(Message::Unknown));
        let long = format!(r#"{{"type":{}}}"#, "1".repeat(500));
        let Err(err) = decode(&long) else {
            panic!("a number type is refused")
        };
        assert!(err.to_string().len() < 120, "{err}");
    }
}
