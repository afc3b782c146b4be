//! How much of an untrusted value a message may repeat back.
//!
//! Every validator that names a bad value formats it with [`quoted`]: at most [`MAX_CHARS`]
//! characters, control characters escaped (a value cannot rewrite the terminal or forge a second
//! line), and a private key never shown at all, only named. [`scrub`] is the last line of defence
//! for messages built elsewhere (serde, clap, I/O errors that quote a path or a value).

use std::borrow::Cow;

use crate::secrets::private_key::{find_fragments, private_key_in};

/// Characters of a bad value echoed before it is cut off with '…'.
pub const MAX_CHARS: usize = 60;

/// Characters of one line of a message, whatever built it.
const MAX_LINE_CHARS: usize = 1000;

/// `value` for an error message: `'short value'`, `'first 60 characters…'`, or, when it holds
/// private key material, `[an age private key, not shown]`.
pub fn quoted(value: &str) -> String {
    match private_key_in(value) {
        Some(kind) => format!("[{}, not shown]", kind.describe()),
        None => format!("'{}'", shortened(value)),
    }
}

/// `value` cut to [`MAX_CHARS`] characters, control characters escaped.
fn shortened(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `message` with every private key (or fragment of one) replaced by its description, control
/// characters other than newlines escaped, and lines capped at [`MAX_LINE_CHARS`].
pub fn scrub(message: &str) -> Cow<'_, str> {
    scrub_quoted_by(message, &[])
}

/// [`scrub`], and every span in one of `quotes` longer than [`MAX_CHARS`] shortened: for
/// messages of other crates that quote a bad value whole (serde: "…" and `…`; clap: '…').
/// flakesmith's own messages quote commands in `…`, so [`scrub`] leaves spans alone.
pub fn scrub_quoted(message: &str, quotes: &[char]) -> String {
    scrub_quoted_by(message, quotes).into_owned()
}

fn scrub_quoted_by<'a>(message: &'a str, quotes: &[char]) -> Cow<'a, str> {
    let fragments = find_fragments(message);
    let needs_work = !fragments.is_empty()
        || (!quotes.is_empty() && message.contains(quotes))
        || message.len() > MAX_LINE_CHARS
        || message.chars().any(|c| c.is_control() && c != '\n');
    if !needs_work {
        return Cow::Borrowed(message);
    }
    let mut redacted = String::with_capacity(message.len().min(4096));
    let mut at = 0;
    for f in fragments {
        redacted.push_str(&message[at..f.start]);
        redacted.push_str(&format!("[{}, not shown]", f.kind.describe()));
        at = f.end;
    }
    redacted.push_str(&message[at..]);
    Cow::Owned(cap_lines(&shorten_quoted_spans(&redacted, quotes)))
}

fn shorten_quoted_spans(message: &str, quotes: &[char]) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(open) = rest.find(quotes).filter(|_| !quotes.is_empty()) {
        let quote = &rest[open..open + 1];
        let after = &rest[open + 1..];
        // An unclosed quote is not a value (an apostrophe, a lone '"' in prose).
        let Some(close) = after.find(quote) else {
            break;
        };
        out.push_str(&escape_controls(&rest[..open]));
        out.push_str(quote);
        out.push_str(&shortened(&after[..close]));
        out.push_str(quote);
        rest = &after[close + 1..];
    }
    out.push_str(&escape_controls(rest));
    out
}

/// Unquoted text can be as long as the value it came from; no useful error line is this long.
fn cap_lines(message: &str) -> String {
    message
        .split('\n')
        .map(|line| {
            if line.chars().count() > MAX_LINE_CHARS {
                format!("{}…", line.chars().take(MAX_LINE_CHARS).collect::<String>())
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n') {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() && c != '\n' {
                    c.escape_default().collect()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn long_values_are_cut_and_controls_escaped() {
        let long = "x".repeat(10_000);
        let q = quoted(&long);
        assert_eq!(q.chars().count(), MAX_CHARS + 3, "{q}");
        assert!(q.ends_with("…'"));
        assert_eq!(quoted("a\nb\u{1b}[2J"), r"'a\nb\u{1b}[2J'");
        assert_eq!(quoted("rk1-node1"), "'rk1-node1'");
    }

    #[test]
    fn private_keys_are_named_not_shown() {
        let id = age::x25519::Identity::generate();
        let secret = id.to_string();
        let secret = secret.expose_secret();
        assert_eq!(quoted(secret), "[an age private key, not shown]");
        let message = format!("invalid type: string \"{secret}\", expected a boolean");
        let scrubbed = scrub(&message);
        assert!(!scrubbed.contains(&secret[16..30]), "{scrubbed}");
        assert!(scrubbed.contains("an age private key"), "{scrubbed}");
    }

    #[test]
    fn scrub_shortens_quoted_spans_and_keeps_short_messages() {
        let message = format!(
            "unknown variant `{}`, expected one of `a`, `b`",
            "y".repeat(5000)
        );
        let scrubbed = scrub_quoted(&message, &['"', '`']);
        assert!(scrubbed.len() < 200, "{scrubbed}");
        assert!(scrubbed.ends_with("expected one of `a`, `b`"), "{scrubbed}");
        assert!(matches!(scrub("short `a command`"), Cow::Borrowed(_)));
    }
}
