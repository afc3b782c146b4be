//! Just enough JSON to write `--json` reports; std only.

use std::fmt::{self, Write};

/// A JSON value. Objects keep their keys in insertion order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i128),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn object() -> Self {
        Json::Object(Vec::new())
    }

    /// Adds `key` to an object (no-op on other values), builder style.
    pub fn with(mut self, key: &str, value: impl Into<Json>) -> Self {
        if let Json::Object(fields) = &mut self {
            fields.push((key.to_string(), value.into()));
        }
        self
    }

    /// Two-space indented text, ending without a newline.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0)
            .expect("writing to a String cannot fail");
        out
    }

    fn write(&self, out: &mut String, indent: usize) -> fmt::Result {
        match self {
            Json::Null => out.write_str("null"),
            Json::Bool(value) => write!(out, "{value}"),
            Json::Int(value) => write!(out, "{value}"),
            Json::Str(value) => write_string(out, value),
            Json::Array(items) if items.is_empty() => out.write_str("[]"),
            Json::Object(fields) if fields.is_empty() => out.write_str("{}"),
            Json::Array(items) => {
                out.write_str("[\n")?;
                for (i, item) in items.iter().enumerate() {
                    pad(out, indent + 1);
                    item.write(out, indent + 1)?;
                    out.write_str(if i + 1 < items.len() { ",\n" } else { "\n" })?;
                }
                pad(out, indent);
                out.write_str("]")
            }
            Json::Object(fields) => {
                out.write_str("{\n")?;
                for (i, (key, value)) in fields.iter().enumerate() {
                    pad(out, indent + 1);
                    write_string(out, key)?;
                    out.write_str(": ")?;
                    value.write(out, indent + 1)?;
                    out.write_str(if i + 1 < fields.len() { ",\n" } else { "\n" })?;
                }
                pad(out, indent);
                out.write_str("}")
            }
        }
    }
}

fn pad(out: &mut String, indent: usize) {
    for _ in 0..indent {
        out.push_str("  ");
    }
}

fn write_string(out: &mut String, value: &str) -> fmt::Result {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(())
}

impl From<bool> for Json {
    fn from(value: bool) -> Self {
        Json::Bool(value)
    }
}

impl From<u64> for Json {
    fn from(value: u64) -> Self {
        Json::Int(value.into())
    }
}

impl From<i64> for Json {
    fn from(value: i64) -> Self {
        Json::Int(value.into())
    }
}

impl From<u32> for Json {
    fn from(value: u32) -> Self {
        Json::Int(value.into())
    }
}

impl From<usize> for Json {
    fn from(value: usize) -> Self {
        Json::Int(value as i128)
    }
}

impl From<&str> for Json {
    fn from(value: &str) -> Self {
        Json::Str(value.to_string())
    }
}

impl From<String> for Json {
    fn from(value: String) -> Self {
        Json::Str(value)
    }
}

impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(value: Option<T>) -> Self {
        value.map_or(Json::Null, Into::into)
    }
}

impl<T: Into<Json>> From<Vec<T>> for Json {
    fn from(value: Vec<T>) -> Self {
        Json::Array(value.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact text: `--json` reports are read by scripts and by people, and serde_json
    /// reading it back (the integration tests) does not see indentation or `[]` written as
    /// `[\n]`.
    #[test]
    fn pretty_text_is_two_space_indented_with_empty_containers_on_one_line() {
        let value = Json::object()
            .with("image", "a.img")
            .with(
                "stages",
                vec![Json::object().with("n", 1u32), Json::object()],
            )
            .with("empty", Vec::<Json>::new())
            .with("nested", vec![vec![true], vec![]])
            .with("none", None::<u32>);
        assert_eq!(
            value.pretty(),
            r#"{
  "image": "a.img",
  "stages": [
    {
      "n": 1
    },
    {}
  ],
  "empty": [],
  "nested": [
    [
      true
    ],
    []
  ],
  "none": null
}"#
        );
    }

    /// Quotes, backslashes and control characters below U+0020 are escaped; a space, DEL and
    /// anything beyond ASCII are written as they are (JSON allows them).
    #[test]
    fn strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(
            Json::from("\"\\\n\r\t\u{0}\u{1f} \u{7f}é").pretty(),
            r#""\"\\\n\r\t\u0000\u001f "#.to_owned() + "\u{7f}é\""
        );
    }
}
