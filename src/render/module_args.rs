//! A module takes only the arguments it uses. A template declares every argument some project's
//! output of it may use (`{ config, lib, pkgs, ... }:`); which ones a given output uses depends
//! on the answers, so the others are dropped here, after rendering, and the set is written the
//! way nixfmt writes it: `{ ... }:`, `{ lib, ... }:`, or one name per line for two or more.

use rnix::{ast, SyntaxKind, SyntaxNode};
use rowan::ast::AstNode;

/// `text` with the unused names of its top-level module argument set removed. Only a file that
/// is a function of a `{ …, ... }` set without defaults or `@` binding is touched; anything else
/// (including text that does not parse, which the syntax check reports) is returned as it is.
pub(crate) fn drop_unused(text: &str) -> String {
    let parse = rnix::Root::parse(text);
    if !parse.errors().is_empty() {
        return text.to_owned();
    }
    let Some(ast::Expr::Lambda(lambda)) = parse.tree().expr() else {
        return text.to_owned();
    };
    let (Some(ast::Param::Pattern(pattern)), Some(body)) = (lambda.param(), lambda.body()) else {
        return text.to_owned();
    };
    if pattern.ellipsis_token().is_none()
        || pattern.pat_bind().is_some()
        || pattern.pat_entries().any(|e| e.default().is_some())
    {
        return text.to_owned();
    }
    let names: Vec<String> = pattern
        .pat_entries()
        .filter_map(|e| e.ident())
        .map(|i| i.to_string())
        .collect();
    let kept: Vec<&String> = names
        .iter()
        .filter(|name| refers_to(body.syntax(), name))
        .collect();
    if kept.len() == names.len() {
        return text.to_owned();
    }
    let set = match kept.as_slice() {
        [] => "{ ... }".to_owned(),
        [name] => format!("{{ {name}, ... }}"),
        names => {
            let lines: String = names.iter().map(|n| format!("  {n},\n")).collect();
            format!("{{\n{lines}  ...\n}}")
        }
    };
    let range = pattern.syntax().text_range();
    format!(
        "{}{set}{}",
        &text[..usize::from(range.start())],
        &text[usize::from(range.end())..]
    )
}

/// Whether `name` is used as a variable in `body`: an identifier that is not an attribute name
/// (`x.name`, `name = …`) nor taken from another set (`inherit (x) name;`).
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

#[cfg(test)]
mod tests {
    use super::drop_unused;

    #[test]
    fn keeps_what_the_body_uses_in_nixfmt_form() {
        let module = "# c\n{\n  config,\n  lib,\n  pkgs,\n  ...\n}:\n{\n  a = lib.mkDefault pkgs.hello;\n  b.config = 1;\n}\n";
        assert_eq!(
            drop_unused(module),
            "# c\n{\n  lib,\n  pkgs,\n  ...\n}:\n{\n  a = lib.mkDefault pkgs.hello;\n  b.config = 1;\n}\n"
        );
        assert_eq!(
            drop_unused("{ config, lib, ... }:\n{\n  inherit (config) lib;\n}\n"),
            "{ config, ... }:\n{\n  inherit (config) lib;\n}\n"
        );
        assert_eq!(drop_unused("{ lib, ... }:\n{ }\n"), "{ ... }:\n{ }\n");
        // Not a module argument set: left alone.
        for other in [
            "{ self, nixpkgs }: { }\n",
            "x: { }\n",
            "{ a ? 1, ... }: { }\n",
            "{ }\n",
        ] {
            assert_eq!(drop_unused(other), other);
        }
    }
}
