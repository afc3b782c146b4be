//! Every RK1 configuration writes its bootloader with rk-inject in sdImage.postBuildCommands.
//! Without that call an image builds fine and never boots, so this test guards it on the
//! syntax tree of every rendered rk1-base.nix (nix_eval.rs checks the evaluated value too).

use rnix::ast::{self, HasEntry};
use rowan::ast::AstNode;

use crate::support::all_variants;

/// The text of `sdImage.postBuildCommands` (written nested or dotted) in a module's body.
pub fn post_build_commands(source: &str) -> Option<String> {
    let root = rnix::Root::parse(source).tree();
    let body = crate::nixos_options::module_body(root.expr()?)?;
    find(&body, &["sdImage", "postBuildCommands"])
}

fn find(set: &ast::AttrSet, path: &[&str]) -> Option<String> {
    for entry in set.attrpath_values() {
        let names = crate::nixos_options::attr_names(&entry.attrpath()?);
        let matched = names.iter().zip(path).take_while(|(a, b)| a == *b).count();
        if matched == names.len() && matched == path.len() {
            return Some(entry.value()?.syntax().text().to_string());
        }
        if matched == names.len() && matched < path.len() {
            if let Some(ast::Expr::AttrSet(inner)) = entry.value() {
                if let Some(found) = find(&inner, &path[matched..]) {
                    return Some(found);
                }
            }
        }
    }
    None
}

#[test]
fn every_rk1_configuration_injects_its_bootloader_with_rk_inject() {
    for (variant, tree) in all_variants() {
        // rk1-cluster: rk1-base.nix; multi-cloud with rk1 chosen: platforms/rk1.nix.
        let Some(base) = tree
            .get("rk1-base.nix")
            .or_else(|| tree.get("platforms/rk1.nix"))
        else {
            assert!(
                !tree.paths().any(|p| p.starts_with("nodes/")),
                "{variant}: RK1 nodes without rk1-base.nix or platforms/rk1.nix"
            );
            continue;
        };
        let base = base.as_text().unwrap();
        let commands = post_build_commands(base)
            .unwrap_or_else(|| panic!("{variant}: rk1-base.nix sets no sdImage.postBuildCommands"));
        let call = commands
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("${rkInject}/bin/rk-inject write "))
            .unwrap_or_else(|| {
                panic!("{variant}: postBuildCommands does not call rk-inject:\n{commands}")
            });
        for part in ["--image \"$img\"", "--bootloader ${", "--soc rk3588"] {
            assert!(
                call.contains(part),
                "{variant}: rk-inject call lacks {part}: {call}"
            );
        }
        assert!(
            base.contains("rkInject = pkgs.buildPackages.rustPlatform.buildRustPackage {"),
            "{variant}: rk-inject is not built for the build machine"
        );
    }
}

#[test]
fn a_missing_call_is_noticed() {
    let without = "{ ... }: { sdImage.compressImage = false; }";
    assert_eq!(post_build_commands(without), None);
    let dotted = "{ pkgs, ... }: let x = 1; in { sdImage.postBuildCommands = ''echo''; }";
    assert_eq!(post_build_commands(dotted).as_deref(), Some("''echo''"));
}
