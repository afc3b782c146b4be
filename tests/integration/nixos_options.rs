//! Every NixOS option the generated modules set is one that exists.
//!
//! nixpkgs is not on this machine, so the option declarations cannot be evaluated here. Instead
//! tests/integration/nixos_options.txt lists every option path the templates set, each with the
//! nixpkgs (or sops-nix) file that declares it, confirmed by reading that file. This test parses
//! every generated module with rnix, collects the option paths it sets, and fails on any path
//! that is not in the list (a new option must be checked and listed) and on any listed path no
//! template sets any more (the list stays the truth, not a pile of old entries).
//!
//! What it cannot show: that an option's value has the right type, or that a listed option still
//! exists in the nixpkgs a user pins; that is what the list's review against nixpkgs is for.

use std::collections::{BTreeMap, BTreeSet};

use rnix::ast::{self, HasEntry};
use rowan::ast::AstNode;

use crate::support;

/// The attribute set a module file defines: under `{ … }:` and `let … in`, if any.
pub fn module_body(expr: ast::Expr) -> Option<ast::AttrSet> {
    match expr {
        ast::Expr::Lambda(lambda) => module_body(lambda.body()?),
        ast::Expr::LetIn(let_in) => module_body(let_in.body()?),
        ast::Expr::Paren(paren) => module_body(paren.expr()?),
        ast::Expr::AttrSet(set) => Some(set),
        _ => None,
    }
}

/// The names of an attribute path; interpolated ones become `<name>`.
pub fn attr_names(path: &ast::Attrpath) -> Vec<String> {
    path.attrs()
        .map(|attr| match attr_name(&attr) {
            name if name == "<dynamic>" => "<name>".to_owned(),
            name => name,
        })
        .collect()
}

/// One line of nixos_options.txt.
#[derive(Debug, Clone)]
struct Listed {
    path: Vec<String>,
    file: String,
}

fn listed() -> Vec<Listed> {
    let text = include_str!("nixos_options.txt");
    text.lines()
        .map(|line| line.split('#').next().unwrap().trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let path = words.next().unwrap();
            let file = words
                .next()
                .unwrap_or_else(|| panic!("nixos_options.txt: `{line}` names no declaring file"));
            assert!(
                file.starts_with("nixos/")
                    || file.starts_with("pkgs/")
                    || file.starts_with("sops-nix:"),
                "nixos_options.txt: `{file}` is not a nixpkgs (nixos/…, pkgs/…) or sops-nix file"
            );
            Listed {
                path: path.split('.').map(str::to_owned).collect(),
                file: file.to_owned(),
            }
        })
        .collect()
}

fn matches(pattern: &[String], path: &[String]) -> bool {
    match pattern.last().map(String::as_str) {
        Some("*") => {
            let head = &pattern[..pattern.len() - 1];
            path.len() > head.len() && segments_match(head, &path[..head.len()])
        }
        _ => pattern.len() == path.len() && segments_match(pattern, path),
    }
}

fn segments_match(pattern: &[String], path: &[String]) -> bool {
    pattern
        .iter()
        .zip(path)
        .all(|(p, s)| p == s || p == "<name>")
}

/// The option paths one generated file sets. Module files are modules; in flake.nix, the inline
/// modules of every `modules = …` list are.
pub fn option_paths(file: &str, text: &str) -> BTreeSet<Vec<String>> {
    let root = rnix::Root::parse(text)
        .ok()
        .unwrap_or_else(|e| panic!("{file} does not parse: {e}"));
    let mut paths = BTreeSet::new();
    let expr = root.expr().expect("a file has an expression");
    if file == "flake.nix" || file.ends_with("/flake.nix") {
        for node in expr.syntax().descendants() {
            let Some(binding) = ast::AttrpathValue::cast(node) else {
                continue;
            };
            let is_modules = binding
                .attrpath()
                .and_then(|p| p.attrs().last())
                .is_some_and(|a| attr_name(&a) == "modules");
            if is_modules {
                if let Some(value) = binding.value() {
                    inline_modules(&value, &mut paths);
                }
            }
        }
    } else {
        module(&expr, &mut paths);
    }
    paths
}

/// Items of a `modules` value: lists, `++`, `lib.optional(s) cond x`.
fn inline_modules(expr: &ast::Expr, paths: &mut BTreeSet<Vec<String>>) {
    match expr {
        ast::Expr::List(list) => list.items().for_each(|item| inline_modules(&item, paths)),
        ast::Expr::BinOp(op) => {
            op.lhs().iter().for_each(|e| inline_modules(e, paths));
            op.rhs().iter().for_each(|e| inline_modules(e, paths));
        }
        ast::Expr::Paren(p) => p.expr().iter().for_each(|e| inline_modules(e, paths)),
        ast::Expr::Apply(apply) => {
            if let Some(arg) = apply.argument() {
                inline_modules(&arg, paths);
            }
        }
        ast::Expr::AttrSet(_) | ast::Expr::Lambda(_) => module(expr, paths),
        // Paths and names of module files, which are checked as files of their own.
        _ => {}
    }
}

/// A module: `{ … }: { … }`, possibly under `let`/`with`, setting options directly or under
/// `config`.
fn module(expr: &ast::Expr, paths: &mut BTreeSet<Vec<String>>) {
    match expr {
        ast::Expr::Lambda(l) => l.body().iter().for_each(|b| module(b, paths)),
        ast::Expr::LetIn(l) => l.body().iter().for_each(|b| module(b, paths)),
        ast::Expr::With(w) => w.body().iter().for_each(|b| module(b, paths)),
        ast::Expr::Paren(p) => p.expr().iter().for_each(|b| module(b, paths)),
        ast::Expr::AttrSet(set) => {
            let explicit_config = set
                .attrpath_values()
                .any(|b| first_attr(&b).as_deref() == Some("config"));
            for binding in set.attrpath_values() {
                let path = attrpath(&binding);
                let first = path.first().map(String::as_str);
                match first {
                    Some("imports" | "disabledModules" | "_file" | "key" | "meta") => {}
                    Some("options") if explicit_config => {}
                    Some("config") if explicit_config => {
                        let rest = path[1..].to_vec();
                        if let Some(value) = binding.value() {
                            definitions(rest, &value, paths);
                        }
                    }
                    _ => {
                        if let Some(value) = binding.value() {
                            definitions(path, &value, paths);
                        }
                    }
                }
            }
            inherited(set, &[], paths);
        }
        other => panic!(
            "not a module shape the option check knows: {}",
            other.syntax()
        ),
    }
}

/// Definitions under `prefix`: nested attribute sets are followed (also through lib.mkIf,
/// mkDefault, mkForce, mkOverride, mkMerge), anything else is a value of the option `prefix`.
fn definitions(prefix: Vec<String>, value: &ast::Expr, paths: &mut BTreeSet<Vec<String>>) {
    match unwrap_priority(value) {
        Some(ast::Expr::AttrSet(set)) if !prefix.is_empty() => {
            let bindings: Vec<_> = set.attrpath_values().collect();
            let inherits = set.entries().any(|e| matches!(e, ast::Entry::Inherit(_)));
            if bindings.is_empty() && !inherits {
                // `{ }` as a value: the option itself is set.
                paths.insert(prefix);
                return;
            }
            for binding in bindings {
                let mut path = prefix.clone();
                path.extend(attrpath(&binding));
                if let Some(v) = binding.value() {
                    definitions(path, &v, paths);
                }
            }
            inherited(&set, &prefix, paths);
        }
        Some(ast::Expr::List(list)) if is_mk_merge(value) => {
            for item in list.items() {
                definitions(prefix.clone(), &item, paths);
            }
        }
        _ => {
            paths.insert(prefix);
        }
    }
}

fn inherited(set: &ast::AttrSet, prefix: &[String], paths: &mut BTreeSet<Vec<String>>) {
    for entry in set.entries() {
        if let ast::Entry::Inherit(inherit) = entry {
            for attr in inherit.attrs() {
                let mut path = prefix.to_vec();
                path.push(attr_name(&attr));
                paths.insert(path);
            }
        }
    }
}

const PRIORITY_FUNCTIONS: [&str; 7] = [
    "mkIf",
    "mkDefault",
    "mkForce",
    "mkOverride",
    "mkBefore",
    "mkAfter",
    "mkImageMediaOverride",
];

/// The value under `lib.mkIf c v`, `lib.mkDefault v`, …, `lib.mkMerge [ … ]` (the list).
fn unwrap_priority(expr: &ast::Expr) -> Option<ast::Expr> {
    match expr {
        ast::Expr::Paren(p) => p.expr().and_then(|e| unwrap_priority(&e)),
        ast::Expr::Apply(apply) => {
            let name = function_name(apply)?;
            if PRIORITY_FUNCTIONS.contains(&name.as_str()) || name == "mkMerge" {
                apply.argument().and_then(|a| unwrap_priority(&a))
            } else {
                Some(expr.clone())
            }
        }
        other => Some(other.clone()),
    }
}

fn is_mk_merge(expr: &ast::Expr) -> bool {
    match expr {
        ast::Expr::Paren(p) => p.expr().is_some_and(|e| is_mk_merge(&e)),
        ast::Expr::Apply(apply) => function_name(apply).as_deref() == Some("mkMerge"),
        _ => false,
    }
}

/// `lib.mkIf c` in `lib.mkIf c v` → "mkIf"; the innermost function of curried applications.
fn function_name(apply: &ast::Apply) -> Option<String> {
    let mut f = apply.lambda()?;
    loop {
        match f {
            ast::Expr::Apply(inner) => f = inner.lambda()?,
            ast::Expr::Select(select) => {
                return select.attrpath()?.attrs().last().map(|a| attr_name(&a));
            }
            ast::Expr::Ident(ident) => return Some(ident.ident_token()?.text().to_owned()),
            _ => return None,
        }
    }
}

fn first_attr(binding: &ast::AttrpathValue) -> Option<String> {
    binding.attrpath()?.attrs().next().map(|a| attr_name(&a))
}

fn attrpath(binding: &ast::AttrpathValue) -> Vec<String> {
    binding
        .attrpath()
        .map(|p| p.attrs().map(|a| attr_name(&a)).collect())
        .unwrap_or_default()
}

/// An attribute name; an interpolated one is `<dynamic>`, which no list entry names.
fn attr_name(attr: &ast::Attr) -> String {
    match attr {
        ast::Attr::Ident(ident) => ident
            .syntax()
            .first_token()
            .map(|t| t.text().to_owned())
            .unwrap_or_default(),
        ast::Attr::Str(s) => {
            let parts = s.normalized_parts();
            match parts.as_slice() {
                [ast::InterpolPart::Literal(text)] => text.clone(),
                [] => String::new(),
                _ => "<dynamic>".to_owned(),
            }
        }
        ast::Attr::Dynamic(_) => "<dynamic>".to_owned(),
    }
}

/// Option path → the generated files (of which case) that set it.
fn collect(
    trees: &[(String, flakesmith::render::Tree)],
) -> BTreeMap<Vec<String>, BTreeSet<String>> {
    let mut found: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for (case, tree) in trees {
        for (path, file) in tree.iter().filter(|(p, _)| p.ends_with(".nix")) {
            // rk-inject is vendored Rust, and its Nix (if any) is not a NixOS module.
            if path.starts_with("rk-inject/") {
                continue;
            }
            let text = file.as_text().expect("generated Nix is UTF-8");
            for option in option_paths(path, text) {
                found
                    .entry(option)
                    .or_default()
                    .insert(format!("{case}: {path}"));
            }
        }
    }
    found
}

#[test]
fn every_option_the_templates_set_is_listed_with_its_declaring_file() {
    let list = listed();
    let trees = support::all_variants();
    assert!(
        trees
            .iter()
            .any(|(_, t)| t.get("common/security.nix").is_some()),
        "the variants include no multi-cloud repository"
    );
    let found = collect(&trees);
    assert!(
        found.keys().any(|p| p.join(".") == "system.stateVersion"),
        "the collector found no system.stateVersion: it is not looking at the modules"
    );

    let unlisted: Vec<String> = found
        .iter()
        .filter(|(path, _)| !list.iter().any(|l| matches(&l.path, path)))
        .map(|(path, files)| {
            format!(
                "  {}  (set in {})",
                path.join("."),
                files.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            )
        })
        .collect();
    assert!(
        unlisted.is_empty(),
        "options set by generated modules but not in tests/integration/nixos_options.txt; \
         confirm each in the nixpkgs file that declares it, then list it:\n{}",
        unlisted.join("\n")
    );

    let stale: Vec<String> = list
        .iter()
        .filter(|l| !found.keys().any(|path| matches(&l.path, path)))
        .map(|l| format!("  {}  ({})", l.path.join("."), l.file))
        .collect();
    assert!(
        stale.is_empty(),
        "listed in nixos_options.txt but set by no generated module (remove them, or render a \
         case that sets them in support::all_variants):\n{}",
        stale.join("\n")
    );
}

#[test]
fn the_collector_sees_nested_sets_priorities_and_inline_modules() {
    let module = r#"
      { config, lib, pkgs, ... }:
      let x = 1; in
      {
        imports = [ ./a.nix ];
        services.openssh = {
          enable = true;
          settings.PermitRootLogin = lib.mkDefault "no";
        };
        users.users.admin = lib.mkIf true { isNormalUser = true; };
        systemd.services."a-b".serviceConfig.Type = "oneshot";
        fileSystems."/".options = [ "noatime" ];
        networking = lib.mkMerge [ { hostName = "a"; } { useDHCP = false; } ];
      }
    "#;
    let got: Vec<String> = option_paths("m.nix", module)
        .into_iter()
        .map(|p| p.join("."))
        .collect();
    assert_eq!(
        got,
        [
            "fileSystems./.options",
            "networking.hostName",
            "networking.useDHCP",
            "services.openssh.enable",
            "services.openssh.settings.PermitRootLogin",
            "systemd.services.a-b.serviceConfig.Type",
            "users.users.admin.isNormalUser",
        ]
    );

    let flake = r#"
      {
        outputs = { self, nixpkgs }: {
          x = nixpkgs.lib.nixosSystem {
            modules = [ ./a.nix { isoImage.makeEfiBootable = true; } ]
              ++ lib.optional true { nixpkgs.buildPlatform = "x"; };
          };
        };
      }
    "#;
    let got: Vec<String> = option_paths("flake.nix", flake)
        .into_iter()
        .map(|p| p.join("."))
        .collect();
    assert_eq!(got, ["isoImage.makeEfiBootable", "nixpkgs.buildPlatform"]);
}

#[test]
fn list_patterns_match_names_and_free_form_sections_only() {
    let p = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
    assert!(matches(
        &p("users.users.<name>.isNormalUser"),
        &p("users.users.admin.isNormalUser")
    ));
    assert!(!matches(
        &p("users.users.<name>.isNormalUser"),
        &p("users.users.admin.isNormalUsr")
    ));
    assert!(matches(
        &p("nix.settings.*"),
        &p("nix.settings.experimental-features")
    ));
    assert!(!matches(&p("nix.settings.*"), &p("nix.settings")));
    assert!(!matches(
        &p("services.openssh.enable"),
        &p("services.openssh.enable.x")
    ));
}

#[test]
fn the_guides_mistakes_are_not_in_the_list() {
    let listed: Vec<String> = listed().iter().map(|l| l.path.join(".")).collect();
    for wrong in [
        // FACTS.md: phone sensors, not for servers or RK1 images.
        "hardware.sensor.iio.enable",
        // FACTS.md: nixpkgs wires the guest agent and shutdown scripts as plain systemd units.
        "services.google-guest-agent.enable",
        "services.google-shutdown-scripts.enable",
        // Renamed to image.baseName; the guide's sdImage.image.baseName never existed.
        "sdImage.imageBaseName",
        "sdImage.image.baseName",
    ] {
        assert!(!listed.iter().any(|l| l == wrong), "{wrong} is listed");
    }
}
