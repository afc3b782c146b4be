//! Every NixOS option a generated module sets exists: the option paths are collected from the
//! syntax trees of the generated modules and looked up in nixos_options.txt, which names for
//! each path the nixpkgs (or sops-nix) file that declares it, checked when it was added.
//! Setting an option that is not in the list fails here, so a new option needs that check.

use std::collections::{BTreeMap, BTreeSet};

use rnix::ast::{self, HasEntry};
use rowan::ast::AstNode;

use crate::support::{all_variants, repo_root};

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
        .map(|attr| match attr {
            ast::Attr::Ident(ident) => ident.syntax().text().to_string(),
            ast::Attr::Str(s) => {
                let text = s.syntax().text().to_string();
                if text.contains("${") {
                    "<name>".to_owned()
                } else {
                    text.trim_matches('"').to_owned()
                }
            }
            ast::Attr::Dynamic(_) => "<name>".to_owned(),
        })
        .collect()
}

/// Every option path a module sets: attribute sets are walked into, anything else is a value.
/// `imports` is not an option; `config = { … }` (the explicit form) is walked without a prefix.
pub fn set_option_paths(source: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let root = rnix::Root::parse(source).tree();
    if let Some(body) = root.expr().and_then(module_body) {
        walk(&body, &mut Vec::new(), &mut paths);
    }
    paths
}

fn walk(set: &ast::AttrSet, prefix: &mut Vec<String>, out: &mut BTreeSet<String>) {
    for entry in set.attrpath_values() {
        let Some(path) = entry.attrpath() else {
            continue;
        };
        let names = attr_names(&path);
        if prefix.is_empty()
            && matches!(
                names.first().map(String::as_str),
                Some("imports" | "options")
            )
        {
            continue;
        }
        let explicit_config = prefix.is_empty() && names == ["config"];
        let depth = prefix.len();
        if !explicit_config {
            prefix.extend(names);
        }
        match entry.value() {
            Some(ast::Expr::AttrSet(inner)) => walk(&inner, prefix, out),
            _ => {
                out.insert(prefix.join("."));
            }
        }
        prefix.truncate(depth);
    }
}

/// nixos_options.txt: option path (with `<name>` for any attribute name) → declaring file.
fn known_options() -> BTreeMap<Vec<String>, String> {
    let path = repo_root().join("tests/integration/nixos_options.txt");
    let text = fs_err::read_to_string(path).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (option, file) = line
                .split_once(char::is_whitespace)
                .unwrap_or_else(|| panic!("nixos_options.txt: '{line}' names no declaring file"));
            (
                option.split('.').map(str::to_owned).collect(),
                file.trim().to_owned(),
            )
        })
        .collect()
}

fn is_known(known: &BTreeMap<Vec<String>, String>, option: &str) -> bool {
    let parts: Vec<&str> = option.split('.').collect();
    known.keys().any(|k| {
        k.len() == parts.len() && k.iter().zip(&parts).all(|(k, p)| k == "<name>" || k == p)
    })
}

#[test]
fn every_option_the_templates_set_is_declared_in_nixpkgs() {
    let known = known_options();
    let mut unknown = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (variant, tree) in all_variants() {
        // flake.nix is not a module; its inline modules are listed in nixos_options.txt by hand.
        for (path, file) in tree
            .iter()
            .filter(|(p, _)| p.ends_with(".nix") && *p != "flake.nix")
        {
            for option in set_option_paths(file.as_text().unwrap()) {
                if !is_known(&known, &option) {
                    unknown.insert(format!("{option} (set in {path}, {variant})"));
                }
                seen.insert(option);
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "options not in tests/integration/nixos_options.txt; confirm each exists in the nixpkgs \
         file that declares it, then add `<option.path> <file>`:\n  {}",
        unknown.into_iter().collect::<Vec<_>>().join("\n  ")
    );
    assert!(
        seen.contains("sdImage.postBuildCommands"),
        "the collector found: {seen:?}"
    );
}

#[test]
fn the_collector_sees_nested_dotted_and_quoted_paths() {
    let paths = set_option_paths(
        r#"{ config, ... }: let x = 1; in {
          imports = [ ./a.nix ];
          services.openssh = { enable = true; settings.PermitRootLogin = "no"; };
          fileSystems."/".options = [ "noatime" ];
          users.users.${x}.isNormalUser = true;
        }"#,
    );
    let expected = [
        "fileSystems./.options",
        "services.openssh.enable",
        "services.openssh.settings.PermitRootLogin",
        "users.users.<name>.isNormalUser",
    ];
    assert_eq!(paths, expected.iter().map(|s| s.to_string()).collect());
    let known = known_options();
    assert!(is_known(&known, "users.users.admin.isNormalUser"));
    assert!(
        !is_known(&known, "hardware.sensor.iio.enable"),
        "FACTS.md: not for RK1 images"
    );
    assert!(
        !is_known(&known, "sdImage.imageBaseName"),
        "renamed to image.baseName"
    );
}
