//! Every RK1 image writes its bootloader with rk-inject in sdImage.postBuildCommands. Without
//! that step an image builds fine and never boots, and a step that swallows rk-inject's refusal
//! (`… || true`) ships an image without a loader, so the step is run here, not read: the
//! commands are evaluated from the generated flake by real Nix (against the stand-in inputs,
//! tests/fixtures), then run by bash the way nixpkgs' sd-image builder runs them (stdenv's
//! `set -eu -o pipefail`, `$img` the raw image) on an image laid out as sd-image.nix lays it out
//! (sfdisk, mkfs.vfat FIRMWARE at the evaluated firmwarePartitionOffset, mkfs.ext4 NIXOS_SD).
//!
//! What the substitution cannot show: the evaluated string names store paths that are never
//! built here (no nixpkgs, no binary cache). The rk-inject derivation's path is replaced by a
//! directory holding the cargo-built rk-inject (the same source the generated repo vendors;
//! inject.rs checks they are identical), and the bootloader's (pkgs.ubootTuringRK1's output, or
//! the user's blob) by a real RKNS payload made with mkimage. So this shows the step's shell,
//! arguments and exit status; not that the derivation builds, nor what u-boot-rockchip.bin the
//! real ubootTuringRK1 installs (rk-inject's own tests and FACTS.md cover its layout).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::inject::fixtures::{
    self, digest, path_str, region, sd_image, FIRMWARE_MIB, MIB, ROOT_MIB,
};
use crate::nix_eval::Flake;
use crate::support::all_variants;

/// What one RK1 configuration's image step needs, evaluated.
struct ImageStep {
    commands: String,
    offset_mib: u64,
}

/// The postBuildCommands the image derivation carries (what its builder runs), and the
/// firmware partition offset, of the first RK1 configuration (the one with the RK1's device
/// tree) of a generated flake.
fn evaluate(tree: &flakesmith::render::Tree) -> ImageStep {
    let flake = Flake::new(tree);
    let facts = flake.eval(
        "nixosConfigurations",
        r#"cs: let
          isRk1 = c: (c.config.hardware.deviceTree.name or "") == "rockchip/rk3588-turing-rk1.dtb";
          rk1 = builtins.filter isRk1 (builtins.attrValues cs);
          c = builtins.head rk1;
        in {
          commands = c.config.system.build.sdImage.postBuildCommands;
          offset = c.config.sdImage.firmwarePartitionOffset;
        }"#,
    );
    ImageStep {
        commands: facts["commands"].as_str().unwrap().to_owned(),
        offset_mib: facts["offset"].as_u64().unwrap(),
    }
}

/// Replaces each store path in `commands` with a local stand-in: rk-inject's output with a
/// directory holding the cargo-built binary, the bootloader's with `payload` (as
/// `<dir>/u-boot-rockchip.bin` for ubootTuringRK1's output, or the file itself for a blob).
/// Any other store path is a test failure: the step would need something not provided here.
fn substitute(commands: &str, payload: &Path, work: &Path) -> String {
    let store_path = regex::Regex::new(r"/nix/store/[0-9a-z]{32}-([^/\s'\x22]+)").unwrap();
    let mut replacements = BTreeMap::new();
    for found in store_path.captures_iter(commands) {
        let (path, name) = (found[0].to_owned(), &found[1]);
        let local: PathBuf = if name.starts_with("rk-inject-") {
            let dir = work.join("rk-inject-out");
            fs::create_dir_all(dir.join("bin")).unwrap();
            let bin = dir.join("bin/rk-inject");
            if !bin.exists() {
                std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rk-inject"), &bin).unwrap();
            }
            dir
        } else if name.starts_with("uboot-turing-rk1-") {
            let dir = work.join("uboot-out");
            fs::create_dir_all(&dir).unwrap();
            fs::copy(payload, dir.join("u-boot-rockchip.bin")).unwrap();
            dir
        } else if name.ends_with("rk1-bootloader.bin") {
            payload.to_owned()
        } else {
            panic!("postBuildCommands names a store path this test provides no stand-in for: {path}\n{commands}");
        };
        replacements.insert(path, local);
    }
    assert!(
        replacements.keys().any(|p| p.contains("-rk-inject-")),
        "postBuildCommands does not run the rk-inject built by the flake:\n{commands}"
    );
    let mut script = commands.to_owned();
    for (path, local) in replacements {
        script = script.replace(&path, path_str(&local));
    }
    script
}

/// Runs the step as the sd-image builder does: a bash with stdenv's options and `$img` set.
fn run_step(script: &str, image: &Path) -> std::process::Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("set -eu -o pipefail\nimg=\"$1\"\n{script}"))
        .arg("postBuildCommands")
        .arg(image)
        .output()
        .expect("run bash")
}

#[test]
fn every_rk1_image_step_writes_a_good_loader_and_fails_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = fixtures::rk35_payloads(dir.path()).combined;
    // An RK3399 loader (the older scrambled header): a real payload, for the wrong SoC.
    let bad = fixtures::idbloader(dir.path(), "rk3399", 50_000, 150_000);
    let good_bytes = fs::read(&good).unwrap();

    // The step differs between variants in its layout (rk1-base.nix or platforms/rk1.nix) and
    // its bootloader (ubootTuringRK1 or a blob): evaluate each combination once, since an
    // evaluation and two images cost seconds.
    let mut seen = std::collections::BTreeSet::new();
    let mut ran = Vec::new();
    for (variant, tree) in all_variants() {
        let Some((layout, base)) = ["rk1-base.nix", "platforms/rk1.nix"]
            .into_iter()
            .find_map(|name| Some((name, tree.get(name)?.as_text()?)))
        else {
            continue;
        };
        let blob = base.contains("rk1-bootloader.bin");
        if !seen.insert((layout, blob)) {
            continue;
        }
        let step = evaluate(&tree);
        let work = dir.path().join(&variant);
        fs::create_dir_all(&work).unwrap();

        let image = sd_image(&work, "good.img", step.offset_mib);
        let partitions = region(
            &image.path,
            step.offset_mib * MIB,
            (FIRMWARE_MIB + ROOT_MIB) * MIB,
        );
        let out = run_step(&substitute(&step.commands, &good, &work), &image.path);
        assert!(
            out.status.success(),
            "{variant}: the image step failed on a good loader ({}):\n{}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            step.commands
        );
        assert_eq!(
            region(&image.path, 64 * 512, good_bytes.len() as u64),
            good_bytes,
            "{variant}: the loader is not at sector 64"
        );
        assert_eq!(
            region(
                &image.path,
                step.offset_mib * MIB,
                (FIRMWARE_MIB + ROOT_MIB) * MIB
            ),
            partitions,
            "{variant}: the partitions changed"
        );
        fixtures::fsck_clean(&image, &work);

        let image = sd_image(&work, "bad.img", step.offset_mib);
        let before = digest(&image.path);
        let out = run_step(&substitute(&step.commands, &bad, &work), &image.path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{variant}: the image step succeeded with an RK3399 loader (a refusal swallowed?):\n{}",
            step.commands
        );
        assert_eq!(stderr.lines().count(), 1, "{variant}: {stderr}");
        assert!(
            stderr.starts_with("rk-inject: --bootloader /")
                && stderr.ends_with(
                    " is not a loader for --soc rk3588: rk3588 needs an RKNS v2 header, but this \
                     is an RC4-scrambled header (0x0FF0AA55), family RK33 (px30, rk3308, rk3368, \
                     rk3399)\n"
                ),
            "{variant}: not rk-inject's refusal: {stderr}"
        );
        assert_eq!(
            digest(&image.path),
            before,
            "{variant}: a refused write changed the image"
        );
        ran.push(variant);
    }
    // The RK1 cluster with ubootTuringRK1 and with a blob, and multi-cloud's platforms/rk1.nix.
    assert!(ran.len() >= 3, "too few RK1 variants ran: {ran:?}");
}

#[test]
fn the_substitution_refuses_a_store_path_it_cannot_stand_in_for() {
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("p.bin");
    fs::write(&payload, b"x").unwrap();
    let commands = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-rk-inject-0.1.0/bin/rk-inject write --image \"$img\" --bootloader /nix/store/0123456789abcdfghijklmnpqrsvwxyz-uboot-turing-rk1-rk3588_defconfig-2025.10/u-boot-rockchip.bin --soc rk3588\n";
    let script = substitute(commands, &payload, dir.path());
    assert_eq!(
        script,
        format!(
            "{0}/rk-inject-out/bin/rk-inject write --image \"$img\" --bootloader {0}/uboot-out/u-boot-rockchip.bin --soc rk3588\n",
            dir.path().display()
        )
    );
    let other = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-coreutils-9.5/bin/dd if=x of=\"$img\"";
    let refused = std::panic::catch_unwind(|| substitute(other, &payload, dir.path()));
    assert!(refused.is_err());
}
