//! Nix's `--log-format internal-json`: one `@nix {…}` object per stderr line, describing
//! activities (start/stop), their results (log lines, progress counters) and messages.
//!
//! The numeric activity and result types are Nix's `ActivityType` / `ResultType` enums
//! (`src/libutil/logging.hh`); they have been stable since Nix 2.0.

use serde::Deserialize;
use serde_json::Value;

/// Activity types flakesmith shows.
pub mod activity {
    pub const COPY_PATH: u64 = 100;
    pub const BUILDS: u64 = 104;
    pub const BUILD: u64 = 105;
    pub const SUBSTITUTE: u64 = 108;
}

/// Result types flakesmith reads.
pub mod result {
    pub const BUILD_LOG_LINE: u64 = 101;
    pub const SET_PHASE: u64 = 104;
    pub const PROGRESS: u64 = 105;
}

/// One line of nix's stderr.
#[derive(Debug, Clone, PartialEq)]
pub enum LogLine {
    Start {
        id: u64,
        kind: u64,
        text: String,
        fields: Vec<Value>,
    },
    Stop {
        id: u64,
    },
    Result {
        id: u64,
        kind: u64,
        fields: Vec<Value>,
    },
    /// A message (`level` 0 = error, 1 = warning, 2 = notice, 3 = info, …).
    Msg {
        level: u64,
        text: String,
    },
    /// Anything that is not an `@nix` object (older tools, a builder writing to the terminal).
    Plain(String),
}

#[derive(Deserialize)]
struct Raw {
    action: String,
    #[serde(default)]
    id: u64,
    #[serde(default, rename = "type")]
    kind: u64,
    #[serde(default)]
    text: String,
    #[serde(default)]
    fields: Vec<Value>,
    #[serde(default)]
    level: u64,
    #[serde(default)]
    msg: String,
}

impl LogLine {
    pub fn parse(line: &str) -> LogLine {
        let Some(json) = line.strip_prefix("@nix ") else {
            return LogLine::Plain(line.to_owned());
        };
        let Ok(raw) = serde_json::from_str::<Raw>(json) else {
            return LogLine::Plain(line.to_owned());
        };
        match raw.action.as_str() {
            "start" => LogLine::Start {
                id: raw.id,
                kind: raw.kind,
                text: raw.text,
                fields: raw.fields,
            },
            "stop" => LogLine::Stop { id: raw.id },
            "result" => LogLine::Result {
                id: raw.id,
                kind: raw.kind,
                fields: raw.fields,
            },
            "msg" => LogLine::Msg {
                level: raw.level,
                text: raw.msg,
            },
            _ => LogLine::Plain(line.to_owned()),
        }
    }
}

/// The string field at `index`, if there is one.
pub fn field_str(fields: &[Value], index: usize) -> Option<&str> {
    fields.get(index).and_then(Value::as_str)
}

/// The integer field at `index`, 0 when absent.
pub fn field_u64(fields: &[Value], index: usize) -> u64 {
    fields.get(index).and_then(Value::as_u64).unwrap_or(0)
}

/// `/nix/store/<hash>-<name>.drv` → `<name>`; other store paths → their name part.
pub fn store_name(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.strip_suffix(".drv").unwrap_or(base);
    match base.split_once('-') {
        Some((hash, name)) if hash.len() == 32 => name,
        _ => base,
    }
}

/// Every `/nix/store/….drv` path mentioned in a text (nix names failed derivations this way).
pub fn drv_paths_in(text: &str) -> Vec<String> {
    let text = console::strip_ansi_codes(text);
    let mut found = Vec::new();
    let mut rest: &str = &text;
    while let Some(start) = rest.find("/nix/store/") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || "/+-._?=".contains(c)))
            .unwrap_or(tail.len());
        let path = &tail[..end];
        if path.ends_with(".drv") && !found.iter().any(|p| p == path) {
            found.push(path.to_owned());
        }
        rest = &tail[end..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_actions_nix_2_8_emits() {
        let start = LogLine::parse(
            r#"@nix {"action":"start","fields":["/nix/store/ciywi80z7pcsn19c3cpfjbhh0f82581h-aa.drv","",1,1],"id":7,"level":3,"text":"building '/nix/store/ciywi80z7pcsn19c3cpfjbhh0f82581h-aa.drv'","type":105}"#,
        );
        let LogLine::Start {
            id, kind, fields, ..
        } = start
        else {
            panic!("not a start: {start:?}")
        };
        assert_eq!((id, kind), (7, activity::BUILD));
        assert_eq!(field_str(&fields, 0).map(store_name), Some("aa"));

        assert_eq!(
            LogLine::parse(r#"@nix {"action":"result","fields":[1,3,2,0],"id":8,"type":105}"#),
            LogLine::Result {
                id: 8,
                kind: result::PROGRESS,
                fields: vec![1.into(), 3.into(), 2.into(), 0.into()]
            }
        );
        assert_eq!(
            LogLine::parse(r#"@nix {"action":"stop","id":8}"#),
            LogLine::Stop { id: 8 }
        );
        let LogLine::Msg { level, text } = LogLine::parse(
            r#"@nix {"action":"msg","column":null,"file":null,"level":0,"line":null,"msg":"\u001b[31;1merror:\u001b[0m builder for '\u001b[35;1m/nix/store/1qh0f25lgm2fq72cmi2i45g0kp57snw3-bad.drv\u001b[0m' failed with exit code 3"}"#,
        ) else {
            panic!("not a msg")
        };
        assert_eq!(level, 0);
        assert_eq!(
            drv_paths_in(&text),
            ["/nix/store/1qh0f25lgm2fq72cmi2i45g0kp57snw3-bad.drv"]
        );
        assert_eq!(
            LogLine::parse("warning: Git tree is dirty"),
            LogLine::Plain("warning: Git tree is dirty".into())
        );
    }

    #[test]
    fn store_names() {
        assert_eq!(
            store_name(
                "/nix/store/ph9j3q3c41n9izinja6cm94hsb2sqqsi-nixos-sd-image-aarch64-linux.img.drv"
            ),
            "nixos-sd-image-aarch64-linux.img"
        );
        assert_eq!(store_name("weird"), "weird");
    }
}
