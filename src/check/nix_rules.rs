//! Rules that read the Nix files: syntax, SSH authentication, the RK3588 partition offset.

use anyhow::Result;
use rnix::{SyntaxKind, SyntaxNode};

use super::{line_of, Finding, RepoFiles};
use crate::model::{Answers, Module, Project};

/// The RK3588 loader occupies the disk up to 16 MiB: `idbloader` at sector 64 and `u-boot.itb`
/// at sector 16384 (8 MiB), so nothing may be partitioned below 16 MiB.
pub const MIN_RK3588_FIRMWARE_OFFSET_MIB: i64 = 16;

/// Every `.nix` file parses. One that holds the markers of an `update` conflict is named as
/// that, as `diff` and `update` name it, not by the parser's first complaint about `<<<<<<<`.
pub fn nix_syntax(files: &RepoFiles, _: &Answers) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for path in files.with_extension(".nix") {
        let text = files.read_text(path)?;
        if crate::sync::has_conflict_markers(&text) {
            let line = text
                .lines()
                .position(|l| l.starts_with("<<<<<<< "))
                .map_or(1, |i| i + 1);
            findings.push(Finding::new(
                format!("{path}:{line}"),
                "unresolved conflict markers from an earlier update",
                "keep the lines you want, remove the <<<<<<< ======= >>>>>>> lines, and run `flakesmith update`",
            ));
            continue;
        }
        if let Err(e) = crate::render::check_text(path, &text) {
            findings.push(Finding::new(
                format!("{path}:{}:{}", e.line, e.column),
                format!("not valid Nix: {}", e.message),
                format!("fix the syntax (`nix-instantiate --parse {path}` shows the same error)"),
            ));
        }
    }
    Ok(findings)
}

/// An sshd setting `check` holds to: enabling it lets a password in.
struct SshdRule {
    /// sshd's keyword as its documentation spells it, then aliases sshd also takes
    /// (servconf.c's keyword table); NixOS's old option names differ only in case.
    names: &'static [&'static str],
    problem: &'static str,
    fix: &'static str,
}

const SSHD_RULES: &[SshdRule] = &[
    SshdRule {
        names: &["PasswordAuthentication"],
        problem: "passwords can be guessed, and fail2ban only slows that down",
        fix: "set services.openssh.settings.PasswordAuthentication = false; and log in with SSH keys (ssh-keys in flakesmith.yaml)",
    },
    SshdRule {
        names: &[
            "KbdInteractiveAuthentication",
            "ChallengeResponseAuthentication",
        ],
        problem: "it is password authentication through PAM",
        fix: "set services.openssh.settings.KbdInteractiveAuthentication = false;",
    },
    SshdRule {
        names: &["PermitRootLogin"],
        problem: "root may log in with a password",
        fix: "set services.openssh.settings.PermitRootLogin = \"prohibit-password\"; (keys only)",
    },
];

/// The rule for a keyword or option name: sshd compares keywords without regard to case
/// (servconf.c, strcasecmp), and NixOS writes `settings` names into sshd_config as they are.
fn sshd_rule(name: &str) -> Option<&'static SshdRule> {
    SSHD_RULES
        .iter()
        .find(|r| r.names.iter().any(|n| n.eq_ignore_ascii_case(name)))
}

/// sshd is key-only: no password or keyboard-interactive authentication, no password root
/// login; whether set as a NixOS option, as sshd_config text in any string (extraConfig,
/// environment.etc."ssh/sshd_config".text, …), or in a file named like sshd_config.
pub fn ssh_auth(files: &RepoFiles, _: &Answers) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for path in files.with_extension(".nix") {
        let text = files.read_text(path)?;
        let Some(root) = parse(&text) else { continue };
        for (name, value, offset) in bindings(&root) {
            let Some(rule) = sshd_rule(&name) else {
                continue;
            };
            // `true` (NixOS writes it as `yes`) or the string "yes" in any case, also inside
            // lib.mkForce, an if, …: a value that may be yes is reported.
            let enabled = has_ident(&value, "true")
                || strings(&value)
                    .iter()
                    .any(|s| s.lines.len() == 1 && s.lines[0].0.trim().eq_ignore_ascii_case("yes"));
            if enabled {
                findings.push(Finding::new(
                    format!("{path}:{}", line_of(&text, offset)),
                    format!("{name} is enabled: {}", rule.problem),
                    rule.fix,
                ));
            }
        }
        for string in strings(&root) {
            for (line, at) in &string.lines {
                if let Some((keyword, rule)) = sshd_enables(line) {
                    findings.push(sshd_text_finding(
                        format!("{path}:{}", line_of(&text, *at)),
                        &keyword,
                        rule,
                    ));
                }
            }
        }
    }
    for path in files.files.iter().filter(|p| {
        !p.ends_with(".nix")
            && p.rsplit('/')
                .next()
                .is_some_and(|n| n.contains("sshd_config"))
    }) {
        let text = files.read_text(path)?;
        for (i, line) in text.lines().enumerate() {
            if let Some((keyword, rule)) = sshd_enables(line) {
                findings.push(sshd_text_finding(
                    format!("{path}:{}", i + 1),
                    &keyword,
                    rule,
                ));
            }
        }
    }
    Ok(findings)
}

fn sshd_text_finding(at: String, keyword: &str, rule: &SshdRule) -> Finding {
    Finding::new(
        at,
        format!(
            "sshd_config text sets {} yes: {}",
            crate::echo::quoted(keyword),
            rule.problem
        ),
        format!("remove the line; {}", rule.fix),
    )
}

/// The keyword and rule of an sshd_config line that turns a rule's setting on, parsed as sshd
/// parses it (openssh-portable misc.c, strdelim and argv_split): leading whitespace, a keyword
/// (optionally in double quotes), whitespace and/or one '=', then arguments that may be quoted
/// ('…' or "…") with backslash escapes; '#' starts a comment.
fn sshd_enables(line: &str) -> Option<(String, &'static SshdRule)> {
    let line = line.trim_matches([' ', '\t', '\r', '\n', '\x0c']);
    let (keyword, rest) = match line.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"')?,
        None => line.split_at(line.find([' ', '\t', '"', '='])?),
    };
    if keyword.starts_with('#') {
        return None;
    }
    let rule = sshd_rule(keyword)?;
    let rest = rest.trim_start_matches([' ', '\t']);
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    first_argument(rest)?
        .eq_ignore_ascii_case("yes")
        .then(|| (keyword.to_owned(), rule))
}

/// The first argument of an sshd_config line, unquoted and unescaped (argv_split).
fn first_argument(s: &str) -> Option<String> {
    let s = s.trim_start_matches([' ', '\t']);
    if s.is_empty() || s.starts_with('#') {
        return None;
    }
    let mut arg = String::new();
    let mut quote = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let escaped = c == '\\'
            && match chars.peek() {
                Some('\'' | '"' | '\\') => true,
                Some(' ') => quote.is_none(),
                _ => false,
            };
        match (c, quote) {
            _ if escaped => arg.extend(chars.next()),
            (' ' | '\t', None) => break,
            ('"' | '\'', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            _ => arg.push(c),
        }
    }
    // sshd refuses a line with an unterminated quote.
    quote.is_none().then_some(arg)
}

/// A Nix string literal, decoded as Nix decodes it, split into lines, each with the offset in
/// the file of the source text it starts at.
struct NixString {
    lines: Vec<(String, usize)>,
}

/// Every string literal under `node`. Interpolations are unknown text, written as U+FFFD so
/// that no keyword or value is made up from them.
fn strings(node: &SyntaxNode) -> Vec<NixString> {
    node.descendants()
        .filter(|n| n.kind() == SyntaxKind::NODE_STRING)
        .map(|string| {
            let start = usize::from(string.text_range().start());
            let indented = string.first_token().is_some_and(|t| t.text() == "''");
            let mut lines = vec![(String::new(), start)];
            for element in string.children_with_tokens() {
                let at = usize::from(element.text_range().start());
                match element {
                    rnix::NodeOrToken::Token(t) if t.kind() == SyntaxKind::TOKEN_STRING_CONTENT => {
                        decode_into(t.text(), indented, at, &mut lines);
                    }
                    // A string's only child nodes are its interpolations (rnix's parse_string;
                    // parse() refuses a tree with error nodes).
                    rnix::NodeOrToken::Node(_) => push(&mut lines, '\u{fffd}'),
                    _ => {}
                }
            }
            NixString { lines }
        })
        .collect()
}

fn push(lines: &mut [(String, usize)], c: char) {
    if let Some((line, _)) = lines.last_mut() {
        line.push(c);
    }
}

/// Appends string content `raw` (found at file offset `at`) to `lines`, unescaped: `\n`, `\t`,
/// `\r` and `\<c>` in "…" strings; `''\<c>`, `''$` and `'''` in indented strings.
fn decode_into(raw: &str, indented: bool, at: usize, lines: &mut Vec<(String, usize)>) {
    let mut chars = raw.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let decoded: &[char] = &match (indented, c) {
            (true, '\'') if raw[i..].starts_with("''") => {
                chars.next();
                match chars.next() {
                    Some((_, '\\')) => chars.next().map(|(_, e)| vec![unescape(e)]),
                    Some((_, '\'')) => Some(vec!['\'', '\'']),
                    Some((_, '$')) => Some(vec!['$']),
                    other => other.map(|(_, c)| vec!['\'', '\'', c]),
                }
            }
            (false, '\\') => chars.next().map(|(_, e)| vec![unescape(e)]),
            _ => Some(vec![c]),
        }
        .unwrap_or_default();
        for &c in decoded {
            if c == '\n' {
                let next = chars.peek().map_or(raw.len(), |(j, _)| *j);
                lines.push((String::new(), at + next));
            } else {
                push(lines, c);
            }
        }
    }
}

fn unescape(c: char) -> char {
    match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        other => other,
    }
}

/// No password in clear text in a module: it would be in the world-readable Nix store, and in
/// every image.
pub fn plaintext_passwords(files: &RepoFiles, _: &Answers) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for path in files.with_extension(".nix") {
        let text = files.read_text(path)?;
        let Some(root) = parse(&text) else { continue };
        for (name, value, offset) in bindings(&root) {
            let is_string = matches!(value.kind(), SyntaxKind::NODE_STRING);
            if is_string && matches!(name.as_str(), "password" | "initialPassword") {
                findings.push(Finding::new(
                    format!("{path}:{}", line_of(&text, offset)),
                    format!("{name} is a clear-text password: it ends up in the world-readable Nix store and in every image"),
                    "use hashedPassword (mkpasswd -m yescrypt) or hashedPasswordFile with a sops secret (neededForUsers = true)",
                ));
            }
        }
    }
    Ok(findings)
}

/// No Nix path literal names a private key: evaluating it copies the file into the
/// world-readable Nix store (and into every image that refers to it).
pub fn keys_in_store(files: &RepoFiles, _: &Answers) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for path in files.with_extension(".nix") {
        let text = files.read_text(path)?;
        let Some(root) = parse(&text) else { continue };
        for node in root.descendants().filter(|n| {
            n.kind() == SyntaxKind::NODE_PATH_REL
                || n.kind() == SyntaxKind::NODE_PATH_ABS
                || n.kind() == SyntaxKind::NODE_PATH_HOME
        }) {
            let literal = node.text().to_string();
            let names_a_key = literal
                .split('/')
                .any(|part| part == crate::secrets::KEYS_DIR)
                || literal.ends_with(".age")
                || literal.rsplit('/').next().is_some_and(|name| {
                    name.starts_with("id_") && !name.ends_with(".pub")
                        || name.starts_with("ssh_host_") && !name.ends_with(".pub")
                        || name == "key.txt"
                        || name == "keys.txt"
                });
            if names_a_key {
                findings.push(Finding::new(
                    format!("{path}:{}", line_of(&text, usize::from(node.text_range().start()))),
                    format!("the path {literal} names a private key: Nix copies it into the world-readable store, and into every image that uses it"),
                    "give the key to the machine at deploy time instead (deploy/post-deploy.sh), and refer to it on the machine by a string such as \"/var/lib/sops-nix/key.txt\"",
                ));
            }
        }
    }
    Ok(findings)
}

/// An image whose RK3588 loader rk-inject writes (an RK1's, an Orange Pi 5 Plus's) keeps its
/// first partition at 16 MiB or more, and the module of each such machine sets it. (A cluster of
/// CM4s writes no loader: nixpkgs' aarch64 SD image and its 8 MiB are right for them.)
pub fn rk3588_firmware_offset(files: &RepoFiles, answers: &Answers) -> Result<Vec<Finding>> {
    let project = Project::from_answers(answers)?;
    // The modules that set the offset, as init writes them: the RK1 hardware module for the
    // slots, the platform module otherwise.
    let modules: Vec<String> = crate::model::machines(&project)
        .into_iter()
        .filter(|m| m.injects_bootloader)
        .map(|m| {
            if m.has_slots {
                Module::Rk1.base_file(project.layout).to_owned()
            } else {
                m.module
            }
        })
        .collect();
    if modules.is_empty() {
        return Ok(Vec::new());
    }
    let mut findings = Vec::new();
    let mut setting_files = Vec::new();
    for path in files.with_extension(".nix") {
        let text = files.read_text(path)?;
        let Some(root) = parse(&text) else { continue };
        for (name, value, offset) in bindings(&root) {
            if name != "firmwarePartitionOffset" {
                continue;
            }
            setting_files.push(path.to_owned());
            let integers: Vec<i64> = value
                .descendants_with_tokens()
                .filter_map(|e| e.into_token())
                .filter(|t| t.kind() == SyntaxKind::TOKEN_INTEGER)
                .filter_map(|t| t.text().parse().ok())
                .collect();
            // An expression without exactly one literal cannot be judged without evaluating it.
            if let [mib] = integers.as_slice() {
                if *mib < MIN_RK3588_FIRMWARE_OFFSET_MIB {
                    findings.push(Finding::new(
                        format!("{path}:{}", line_of(&text, offset)),
                        format!(
                            "sdImage.firmwarePartitionOffset is {mib} MiB: the RK3588 loader is written up to 16 MiB (u-boot.itb at 8 MiB), so the partition would overwrite it or be overwritten"
                        ),
                        format!("set sdImage.firmwarePartitionOffset = {MIN_RK3588_FIRMWARE_OFFSET_MIB}; (or more)"),
                    ));
                }
            }
        }
    }
    // A module the user moved or renamed is not second-guessed: then a setting anywhere counts.
    let present: Vec<&String> = modules
        .iter()
        .filter(|m| files.files.iter().any(|p| p == *m))
        .collect();
    let unset: Vec<&str> = if !present.is_empty() {
        present
            .into_iter()
            .filter(|m| !setting_files.contains(m))
            .map(String::as_str)
            .collect()
    } else if setting_files.is_empty() {
        vec![modules[0].as_str()]
    } else {
        Vec::new()
    };
    for module in unset {
        findings.push(Finding::new(
            module,
            "sdImage.firmwarePartitionOffset is not set: nixpkgs' default of 8 MiB is exactly where the RK3588's u-boot.itb goes",
            format!("set sdImage.firmwarePartitionOffset = {MIN_RK3588_FIRMWARE_OFFSET_MIB}; in {module}"),
        ));
    }
    Ok(findings)
}

fn parse(text: &str) -> Option<SyntaxNode> {
    let parse = rnix::Root::parse(text);
    // Unparsable files are reported by nix_syntax; judging half a tree would mislead.
    parse.errors().is_empty().then(|| parse.syntax())
}

/// Every `a.b.c = value;` binding: the last attribute's name, the value, and where it is.
/// (Walks the raw syntax tree: rnix's typed AST needs rowan's trait, which is not a dependency.)
fn bindings(root: &SyntaxNode) -> Vec<(String, SyntaxNode, usize)> {
    root.descendants()
        .filter(|n| n.kind() == SyntaxKind::NODE_ATTRPATH_VALUE)
        .filter_map(|binding| {
            let mut children = binding.children();
            let path = children
                .next()
                .filter(|p| p.kind() == SyntaxKind::NODE_ATTRPATH)?;
            let value = children.last()?;
            let last = path.children().last()?;
            let name = last.text().to_string().trim_matches('"').to_owned();
            let offset = usize::from(binding.text_range().start());
            Some((name, value, offset))
        })
        .collect()
}

fn has_ident(expr: &SyntaxNode, ident: &str) -> bool {
    expr.descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .any(|t| t.kind() == SyntaxKind::TOKEN_IDENT && t.text() == ident)
}

/// The bootloader blob `bootloader.blob` names is an RK1 loader, checked as `init` checks it
/// (and as rk-inject will when it writes the blob into every image).
pub fn bootloader_blob(files: &RepoFiles, answers: &Answers) -> Result<Vec<Finding>> {
    use crate::model::answers::BLOB_FILE;
    if answers.bootloader.blob.as_deref() != Some(BLOB_FILE) {
        return Ok(Vec::new());
    }
    let fix = "put the RK1's u-boot-rockchip.bin there, or remove bootloader.blob from flakesmith.yaml to build U-Boot from nixpkgs";
    let why = match fs_err::read(files.path(BLOB_FILE)) {
        Err(_) => "named by bootloader.blob in flakesmith.yaml, but missing".to_owned(),
        Ok(bytes) => match crate::answer_files::check_rk1_loader(&bytes) {
            Ok(()) => return Ok(Vec::new()),
            Err(why) => why,
        },
    };
    Ok(vec![Finding::new(BLOB_FILE, why, fix)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_named_like_sshd_config_are_read_as_sshd_config_and_no_others() {
        let (_dir, files) = RepoFiles::of(&[
            ("etc/sshd_config", "UseDNS no\nPasswordAuthentication yes\n"),
            // The same line in prose: not a configuration sshd reads.
            ("notes.md", "Never set\nPasswordAuthentication yes\n"),
        ]);
        assert_eq!(
            ssh_auth(&files, &Answers::default()).unwrap(),
            vec![Finding::new(
                "etc/sshd_config:2",
                "sshd_config text sets 'PasswordAuthentication' yes: passwords can be guessed, and fail2ban only slows that down",
                "remove the line; set services.openssh.settings.PasswordAuthentication = false; and log in with SSH keys (ssh-keys in flakesmith.yaml)",
            )]
        );
    }

    #[test]
    fn the_first_argument_is_read_as_sshd_reads_it() {
        // Each expectation is what OpenSSH 9.2's `sshd -T` printed for `Banner <argument>`.
        for (argument, expected) in [
            ("yes", Some("yes")),
            ("yes # a comment", Some("yes")),
            ("\"ye\"s", Some("yes")),
            ("'yes'", Some("yes")),
            (r"y\'es", Some("y'es")),
            (r#"y\"es"#, Some("y\"es")),
            (r"y\\es", Some(r"y\es")),
            (r"y\ es", Some("y es")),
            // Inside quotes a backslash escapes quotes and backslashes, not a space.
            (r#""y\ es""#, Some(r"y\ es")),
            (r#""y\"es""#, Some("y\"es")),
            (r"'y\'es'", Some("y'es")),
            (r"ye\s", Some(r"ye\s")),
            (r"\yes", Some(r"\yes")),
            // sshd: "invalid quotes"; "missing argument".
            ("\"yes", None),
            ("#yes", None),
            ("  # yes", None),
            ("", None),
        ] {
            assert_eq!(
                first_argument(argument).as_deref(),
                expected,
                "{argument:?}"
            );
        }
    }

    /// The lines of every string literal in `nix`, as [`strings`] decodes them.
    fn decoded(nix: &str) -> Vec<Vec<(String, usize)>> {
        strings(&parse(nix).expect("valid Nix"))
            .into_iter()
            .map(|s| s.lines)
            .collect()
    }

    #[test]
    fn an_interpolation_is_unknown_text_that_makes_up_no_keyword() {
        // Were it dropped, this would read as `PasswordAuthentication yes`.
        assert_eq!(
            decoded(r#"{ a = "Password${x}Authentication yes"; }"#),
            [[("Password\u{fffd}Authentication yes".to_owned(), 6)]]
        );
    }

    #[test]
    fn indented_string_escapes_are_decoded() {
        // Nix: ''$ is $, ''' is '', ''\t is a tab; a lone ' is itself.
        let nix = "{ a = ''\n  a''${b} '''c ''\\td 'e\n''; }";
        assert_eq!(
            decoded(nix),
            [[
                (String::new(), 6),
                ("  a${b} ''c \td 'e".to_owned(), 9),
                (String::new(), 33),
            ]]
        );
    }

    #[test]
    fn every_kind_of_path_literal_that_names_a_private_key_is_found() {
        let nix = "{
  a = ./keys/deploy;
  b = ./n1.age;
  c = /etc/ssh/ssh_host_ed25519_key;
  d = ~/.ssh/id_ed25519;
  e = ./key.txt;
  f = ./secrets/keys.txt;
  g = ./id_ed25519.pub;
  h = /etc/ssh/ssh_host_ed25519_key.pub;
  i = ./hardware.nix;
  j = ./keyslot/id.nix;
}
";
        let (_dir, files) = RepoFiles::of(&[("default.nix", nix)]);
        let found: Vec<String> = keys_in_store(&files, &Answers::default())
            .unwrap()
            .into_iter()
            .map(|f| format!("{}: {}", f.path, f.problem))
            .collect();
        let expected: Vec<String> = [
            (2, "./keys/deploy"),
            (3, "./n1.age"),
            (4, "/etc/ssh/ssh_host_ed25519_key"),
            (5, "~/.ssh/id_ed25519"),
            (6, "./key.txt"),
            (7, "./secrets/keys.txt"),
        ]
        .iter()
        .map(|(line, path)| format!("default.nix:{line}: the path {path} names a private key: Nix copies it into the world-readable store, and into every image that uses it"))
        .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn a_moved_rk1_module_that_sets_the_firmware_offset_is_not_second_guessed() {
        // No rk1-base.nix (where init writes the setting): hardware/rk1.nix has it instead.
        let (_dir, files) = RepoFiles::of(&[
            ("flake.nix", "{ outputs = _: { }; }\n"),
            (
                "hardware/rk1.nix",
                "{ sdImage.firmwarePartitionOffset = 16; }\n",
            ),
        ]);
        assert_eq!(
            rk3588_firmware_offset(&files, &Answers::default()).unwrap(),
            Vec::new()
        );
    }
}
