//! Tera filters that quote values for the languages flakesmith writes.

use std::collections::HashMap;

use tera::{to_value, try_get_value, Result, Value};

/// `{{ x | nix_str }}`: a Nix string literal, with `"`, `\` and `${` escaped.
pub fn nix_str(value: &Value, _: &HashMap<String, Value>) -> Result<Value> {
    let s = value_as_string(value);
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(to_value(out)?)
}

/// `{{ x | sh }}`: a single-quoted POSIX shell word.
pub fn sh(value: &Value, _: &HashMap<String, Value>) -> Result<Value> {
    // The same quoting as the commands flakesmith prints (`build --dry-run`).
    Ok(to_value(shell_word(&value_as_string(value)))?)
}

/// Quote a word for a POSIX shell when it needs it.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,^".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `{{ x | yaml_str }}`: a double-quoted YAML scalar.
pub fn yaml_str(value: &Value, _: &HashMap<String, Value>) -> Result<Value> {
    let s = try_get_value!("yaml_str", "value", String, value);
    Ok(to_value(serde_json::to_string(&s)?)?)
}

fn value_as_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(f: fn(&Value, &HashMap<String, Value>) -> Result<Value>, s: &str) -> String {
        f(&Value::String(s.into()), &HashMap::new())
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn nix_strings_cannot_escape_or_interpolate() {
        assert_eq!(apply(nix_str, r#"a"b\c${d}$e"#), r#""a\"b\\c\${d}$e""#);
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(apply(sh, "turingpi.local"), "turingpi.local");
        assert_eq!(apply(sh, "it's"), r"'it'\''s'");
        assert_eq!(apply(sh, ""), "''");
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("nix"), "nix");
        assert_eq!(shell_word("nix-command flakes"), "'nix-command flakes'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
