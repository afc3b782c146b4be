//! Generated Nix takes only the arguments it uses: rnix walks every lambda of every generated
//! `.nix` file (every snapshot case and variant) and fails on a parameter its body never refers
//! to, such as a module's `{ config, lib, pkgs, ... }:` where only `lib` is used. A name that
//! starts with `_` says "unused on purpose" (Nix convention) and is allowed, and so is `self` in
//! a flake's `outputs = { self, nixpkgs, … }:`, which Nix calls with `self` (a set pattern without
//! `...` must name it).

use rnix::{ast, SyntaxKind, SyntaxNode};
use rowan::ast::AstNode;

use crate::support;

/// Whether `name` is referred to as a variable anywhere in `body`: an identifier that is not an
/// attribute name (`x.name`, `name = …`) nor taken from another set (`inherit (x) name;`).
fn refers_to(body: &SyntaxNode, name: &str) -> bool {
    body.descendants()
        .filter_map(ast::Ident::cast)
        .filter(|ident| ident.to_string() == name)
        .any(|ident| {
            let parent = ident.syntax().parent();
            match parent.as_ref().map(|p| p.kind()) {
                Some(SyntaxKind::NODE_ATTRPATH) => false,
                Some(SyntaxKind::NODE_INHERIT) => parent
                    .and_then(ast::Inherit::cast)
                    .is_some_and(|inherit| inherit.from().is_none()),
                _ => true,
            }
        })
}

/// Every unused lambda parameter of a file: (line, name).
fn unused_parameters(text: &str) -> Vec<(usize, String)> {
    let root = rnix::Root::parse(text).syntax();
    let mut unused = Vec::new();
    for lambda in root.descendants().filter_map(ast::Lambda::cast) {
        let (Some(param), Some(body)) = (lambda.param(), lambda.body()) else {
            continue;
        };
        let names: Vec<String> = match param {
            ast::Param::Pattern(pattern) => pattern
                .pat_entries()
                .filter_map(|entry| entry.ident())
                .chain(pattern.pat_bind().and_then(|bind| bind.ident()))
                .map(|ident| ident.to_string())
                .collect(),
            ast::Param::IdentParam(param) => {
                param.ident().map(|i| i.to_string()).into_iter().collect()
            }
        };
        for name in names {
            if !name.starts_with('_') && !refers_to(body.syntax(), &name) {
                let offset = usize::from(lambda.syntax().text_range().start());
                unused.push((text[..offset].matches('\n').count() + 1, name));
            }
        }
    }
    unused
}

#[test]
fn the_checker_sees_unused_and_used_parameters() {
    let text = "{ config, lib, pkgs, ... }:\n{\n  a = lib.mkDefault 1;\n  inherit (config) b;\n  c = { pkgs = 1; }.pkgs;\n  d = map (x: 1) [ ];\n  e = map (_x: 1) [ ];\n  f = { inherit config; };\n}\n";
    assert_eq!(
        unused_parameters(text),
        [(1, "pkgs".to_owned()), (6, "x".to_owned())]
    );
}

#[test]
fn generated_nix_takes_only_the_arguments_it_uses() {
    let mut found = Vec::new();
    for (case, tree) in support::all_variants() {
        for (path, file) in tree.iter().filter(|(p, _)| p.ends_with(".nix")) {
            for (line, name) in unused_parameters(file.as_text().unwrap()) {
                if path == "flake.nix" && name == "self" {
                    continue;
                }
                found.push(format!("{case}: {path}:{line}: `{name}` is not used"));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn generated_comments_fit_the_line_and_say_only_what_holds() {
    let mut found = Vec::new();
    for (case, tree) in support::all_variants() {
        for (path, file) in tree.iter() {
            let text = file.as_text().unwrap_or_default();
            if path.ends_with(".nix") {
                // nixfmt's width; it leaves comments as written, so the template must. (Strings,
                // such as SSH keys and shell lines, nixfmt cannot break either.)
                for (i, line) in text.lines().enumerate() {
                    if line.trim_start().starts_with('#') && line.chars().count() > 100 {
                        found.push(format!(
                            "{case}: {path}:{}: {} columns",
                            i + 1,
                            line.chars().count()
                        ));
                    }
                }
                if text.contains("virtualisation.podman.enable") && text.contains("for k3s") {
                    found.push(format!("{case}: {path}: k3s does not use podman"));
                }
            }
            if path == ".sops.yaml" && !text.contains("&admin_") && text.contains("the admins") {
                found.push(format!("{case}: {path}: speaks of admins it does not list"));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
