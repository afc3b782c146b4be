//! `flakesmith stamp` on images made with the real tools (sfdisk, mkfs.vfat -n FIRMWARE,
//! mkfs.ext4 -L NIXOS_SD, a bootloader written by rk-inject), read back with an independent FAT
//! implementation (mtools), checked with fsck.vfat, and compared by digest outside the FAT.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::{
    inject::fixtures::{
        self, digest, fsck_clean, path_str, region, rk35_payloads, rk_inject, run, SdImage,
    },
    support::{Project, TestRepo},
};

/// A 4-node sops repo (age identities in keys/) whose nodes have static addresses.
fn sops_repo() -> TestRepo {
    let answers = Project::default()
        .with_sops()
        .with_static_addresses()
        .answers()
        .to_yaml();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("answers.yaml");
    fs::write(&file, answers).unwrap();
    TestRepo::init(&["--answers", path_str(&file)])
}

/// An RK1 identical image: sd-image layout at 16 MiB with U-Boot written by rk-inject.
fn rk1_image(dir: &Path) -> SdImage {
    let image = fixtures::sd_image(dir, "nixos-rk1.img", 16);
    let payloads = rk35_payloads(dir);
    let out = rk_inject(&[
        "write",
        "--image",
        path_str(&image.path),
        "--bootloader",
        path_str(&payloads.combined),
        "--soc",
        "rk3588",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    image
}

/// What `flakesmith build rk1` records for an image it built.
fn record(repo: &TestRepo, image: &Path) {
    record_as(repo, "rk1", image);
}

/// What `flakesmith build <target>` records for an image it built: the same library call.
fn record_as(repo: &TestRepo, target: &str, image: &Path) {
    use flakesmith::stamp::record::{remember, Recorded};
    fs::create_dir_all(repo.dir.join("images")).unwrap();
    let recorded = Recorded::of(image, "sd-image/image.img", hex::encode(digest(image))).unwrap();
    remember(&repo.dir, target, recorded).unwrap();
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// An identity file, read with mtools from the image at the FAT's offset.
fn mread(image: &Path, fat_offset: u64, name: &str) -> Vec<u8> {
    mread_file(image, fat_offset, &format!("flakesmith-identity.{name}"))
}

/// A file of the FAT's root folder, read with mtools.
fn mread_file(image: &Path, fat_offset: u64, name: &str) -> Vec<u8> {
    run(Command::new("mcopy")
        .arg("-n")
        .arg("-i")
        .arg(format!("{}@@{fat_offset}", image.display()))
        .arg(format!("::/{name}"))
        .arg("-"))
    .stdout
}

fn stamp(repo: &TestRepo, args: &[&str]) -> Output {
    let mut all = vec!["stamp"];
    all.extend_from_slice(args);
    repo.run(&all)
}

#[track_caller]
fn stamp_ok(repo: &TestRepo, args: &[&str]) -> Output {
    let out = stamp(repo, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[track_caller]
fn refused(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
    assert!(!err.contains("PRIVATE KEY") && !err.contains("AGE-SECRET-KEY"));
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_stamp_changes_the_fat_partition_only_and_carries_the_nodes_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = sops_repo();
    let image = rk1_image(tmp.path());
    record(&repo, &image.path);
    let before = digest(&image.path);

    stamp_ok(
        &repo,
        &["rk1-node1", "rk1-node2", "--image", path_str(&image.path)],
    );
    assert_eq!(
        digest(&image.path),
        before,
        "the identical image is untouched"
    );

    let stamped_dir = repo.dir.join("stamped");
    assert_eq!(
        files_in(&stamped_dir),
        ["rk1-node1.img", "rk1-node2.img"],
        "no partial file is left"
    );
    assert_eq!(mode(&stamped_dir), 0o700);
    let (fat_start, fat_len) = image.firmware;
    let size = fs::metadata(&image.path).unwrap().len();
    for (i, host) in ["rk1-node1", "rk1-node2"].into_iter().enumerate() {
        let stamped = stamped_dir.join(format!("{host}.img"));
        assert_eq!(mode(&stamped), 0o600);
        assert_eq!(fs::metadata(&stamped).unwrap().len(), size);
        // Partition table, bootloader region and root partition: byte-identical.
        assert!(region(&stamped, 0, fat_start) == region(&image.path, 0, fat_start));
        let after = fat_start + fat_len;
        assert!(region(&stamped, after, size - after) == region(&image.path, after, size - after));
        assert!(region(&stamped, fat_start, fat_len) != region(&image.path, fat_start, fat_len));
        fsck_clean(
            &SdImage {
                path: stamped.clone(),
                firmware: image.firmware,
                root: image.root,
            },
            tmp.path(),
        );

        // Read back with mtools, compared with the repository's keys.
        assert_eq!(
            mread(&stamped, fat_start, "hostname"),
            format!("{host}\n").as_bytes()
        );
        let key = repo.dir.join(format!("keys/{host}.ssh_host_ed25519_key"));
        assert_eq!(mode(&key), 0o600);
        assert_eq!(
            mread(&stamped, fat_start, "ssh_host_ed25519_key"),
            fs::read(&key).unwrap()
        );
        let public =
            fs::read_to_string(key.with_file_name(format!("{host}.ssh_host_ed25519_key.pub")))
                .unwrap();
        assert_eq!(
            mread(&stamped, fat_start, "ssh_host_ed25519_key.pub"),
            public.as_bytes()
        );
        // OpenSSH itself reads the private key and derives the same public key.
        let derived = run(Command::new("ssh-keygen").arg("-y").arg("-f").arg(&key)).stdout;
        assert_eq!(
            String::from_utf8(derived)
                .unwrap()
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>(),
            public.split_whitespace().take(2).collect::<Vec<_>>()
        );
        assert_eq!(
            mread(&stamped, fat_start, "age-key.txt"),
            fs::read(repo.dir.join(format!("keys/{host}.age"))).unwrap()
        );
        let network =
            String::from_utf8(mread(&stamped, fat_start, "40-flakesmith-static.network")).unwrap();
        assert!(
            network.contains(&format!("Address=10.0.0.{}/24\n", 11 + i)),
            "{network}"
        );
        assert!(network.contains("Gateway=10.0.0.1\n"), "{network}");

        // Pinned under its name and its address, for ssh's strict checking.
        let address = format!("10.0.0.{}", 11 + i);
        for name in [host, address.as_str()] {
            let found = Command::new("ssh-keygen")
                .args(["-F", name, "-f"])
                .arg(repo.dir.join("deploy/known_hosts"))
                .output()
                .unwrap();
            assert!(found.status.success(), "{name} is not pinned");
            assert!(String::from_utf8_lossy(&found.stdout)
                .contains(public.split_whitespace().nth(1).unwrap()));
        }
    }
    let first = fs::read(repo.dir.join("keys/rk1-node1.ssh_host_ed25519_key")).unwrap();

    // Stamping again keeps the keys and replaces the image.
    stamp_ok(&repo, &["rk1-node1", "--image", path_str(&image.path)]);
    assert_eq!(
        fs::read(repo.dir.join("keys/rk1-node1.ssh_host_ed25519_key")).unwrap(),
        first
    );
    assert_eq!(files_in(&stamped_dir), ["rk1-node1.img", "rk1-node2.img"]);
}

#[test]
fn all_stamps_every_node_into_a_chosen_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = sops_repo();
    let image = rk1_image(tmp.path());
    record(&repo, &image.path);
    let out_dir = tmp.path().join("out");
    stamp_ok(
        &repo,
        &[
            "--all",
            "--image",
            path_str(&image.path),
            "--out",
            path_str(&out_dir),
        ],
    );
    assert_eq!(
        files_in(&out_dir),
        [
            "rk1-node1.img",
            "rk1-node2.img",
            "rk1-node3.img",
            "rk1-node4.img"
        ]
    );
}

/// Every refusal: exit 2, one line naming the problem, no output file, no key echoed.
#[test]
fn stamp_refuses_what_it_does_not_recognise_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = sops_repo();
    let image = rk1_image(tmp.path());
    let stamped_dir = repo.dir.join("stamped");
    let image_arg = path_str(&image.path);

    // Not recorded by `flakesmith build`: not this repository's identical image. The way out
    // names the identical images this repository has (RK1 nodes only: no cm4, no generic-arm64).
    refused(
        &stamp(&repo, &["rk1-node1", "--image", image_arg]),
        "(images/identical-images.json): build it with `flakesmith build rk1`\n",
    );
    record(&repo, &image.path);

    refused(
        &stamp(&repo, &["nosuch", "--image", image_arg]),
        "HOST 'nosuch' is not a node",
    );
    refused(&stamp(&repo, &["--image", image_arg]), "--all");
    refused(
        &stamp(&repo, &["rk1-node1", "--image", "/dev/null"]),
        "not a regular file",
    );

    // No partition table.
    let blank = tmp.path().join("blank.img");
    fs::File::create(&blank).unwrap().set_len(64 << 20).unwrap();
    record(&repo, &blank);
    refused(
        &stamp(&repo, &["rk1-node1", "--image", path_str(&blank)]),
        "no MBR or GPT",
    );

    // A FAT partition with another label.
    let other = fixtures::sd_image(tmp.path(), "other.img", 16);
    run(Command::new("mlabel")
        .arg("-i")
        .arg(format!("{}@@{}", other.path.display(), other.firmware.0))
        .arg("::BOOT"));
    record(&repo, &other.path);
    refused(
        &stamp(&repo, &["rk1-node1", "--image", path_str(&other.path)]),
        "no FAT partition labelled FIRMWARE",
    );

    // Two partitions labelled FIRMWARE.
    let two = fixtures::sd_image(tmp.path(), "two.img", 16);
    let fat = region(&two.path, two.firmware.0, two.firmware.1);
    {
        use std::os::unix::fs::FileExt;
        let file = fs::OpenOptions::new().write(true).open(&two.path).unwrap();
        file.write_all_at(&fat, two.root.0).unwrap();
    }
    fixtures::sfdisk(
        &two.path,
        &format!(
            "label: dos\nstart={}, size={}, type=b\nstart={}, size={}, type=b\n",
            two.firmware.0 / 512,
            two.firmware.1 / 512,
            two.root.0 / 512,
            two.firmware.1 / 512
        ),
    );
    record(&repo, &two.path);
    refused(
        &stamp(&repo, &["rk1-node1", "--image", path_str(&two.path)]),
        "2 FAT partitions labelled FIRMWARE",
    );

    // A FAT partition too full for the identity: refused after the copy began, which is removed.
    let full = fixtures::sd_image(tmp.path(), "full.img", 16);
    let filler = tmp.path().join("filler");
    // Fill all but one cluster (2 KiB) with one file: the identity needs five.
    let fat = format!("{}@@{}", full.path.display(), full.firmware.0);
    let listing = run(Command::new("mdir").arg("-i").arg(&fat).arg("::")).stdout;
    let listing = String::from_utf8_lossy(&listing);
    let free: usize = listing
        .lines()
        .find(|l| l.contains("bytes free"))
        .map(|l| l.split("bytes").next().unwrap().replace(' ', ""))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("mdir reports no free space: {listing}"));
    fs::write(&filler, fixtures::bytes(9, free - 2048)).unwrap();
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&fat)
        .arg(&filler)
        .arg("::filler"));
    record(&repo, &full.path);
    refused(
        &stamp(&repo, &["rk1-node1", "--image", path_str(&full.path)]),
        "does not fit",
    );

    // Already stamped (its digest recorded, to get past that check): refused, not stamped twice.
    record(&repo, &image.path);
    let out_dir = tmp.path().join("first");
    stamp_ok(
        &repo,
        &[
            "rk1-node1",
            "--image",
            path_str(&image.path),
            "--out",
            path_str(&out_dir),
        ],
    );
    let stamped_once = out_dir.join("rk1-node1.img");
    record(&repo, &stamped_once);
    refused(
        &stamp(&repo, &["rk1-node2", "--image", path_str(&stamped_once)]),
        "already holds flakesmith-identity.",
    );
    assert!(
        files_in(&stamped_dir).is_empty(),
        "refusals leave no output: {:?}",
        files_in(&stamped_dir)
    );
}

#[test]
fn an_out_folder_inside_the_repository_must_be_git_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = sops_repo();
    let image = rk1_image(tmp.path());
    record(&repo, &image.path);
    run(Command::new("git").args(["init", "-q"]).arg(&repo.dir));
    let out = stamp(
        &repo,
        &[
            "rk1-node1",
            "--image",
            path_str(&image.path),
            "--out",
            path_str(&repo.dir.join("secrets-out")),
        ],
    );
    refused(&out, "not git-ignored");
    let out = stamp(&repo, &["rk1-node1", "--image", path_str(&image.path)]);
    assert!(
        out.status.success(),
        "stamped/ is git-ignored: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The generated first-boot script, written out to run against directories standing in for the
/// mounted FAT partition and the node's root. What the directories cannot show: the mount of
/// /dev/disk/by-label/FIRMWARE and the activation order, which firmware-identity.nix owns.
fn first_boot_script(dir: &Path) -> PathBuf {
    let tree = Project::default().with_sops().render();
    let script = dir.join("identity-from-firmware.sh");
    fs::write(
        &script,
        &tree.get("identity-from-firmware.sh").unwrap().contents,
    )
    .unwrap();
    script
}

fn run_script(script: &Path, fat: &Path, root: &Path) -> Output {
    Command::new("bash")
        .arg(script)
        .arg(fat)
        .arg(root)
        .output()
        .unwrap()
}

/// Every file under `dir` with its mode, owner and bytes.
fn tree(dir: &Path) -> Vec<(String, u32, u32, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    let mut out: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let meta = e.metadata().unwrap();
            let bytes = if meta.is_file() {
                fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                meta.mode(),
                meta.uid(),
                bytes,
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
#[cfg_attr(
    not(tests_as_root),
    ignore = "needs root to give the installed files to root:root: run the suite as root, as CI does"
)]
fn the_first_boot_script_installs_the_stamped_identity_then_erases_it() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = sops_repo();
    let image = rk1_image(tmp.path());
    record(&repo, &image.path);
    stamp_ok(&repo, &["rk1-node2", "--image", path_str(&image.path)]);
    let stamped = repo.dir.join("stamped/rk1-node2.img");

    // The FAT's files, copied out with mtools, are what the node's activation sees mounted.
    let fat = tmp.path().join("fat");
    fs::create_dir(&fat).unwrap();
    run(Command::new("mcopy")
        .arg("-n")
        .arg("-i")
        .arg(format!("{}@@{}", stamped.display(), image.firmware.0))
        .arg("::/flakesmith-identity.*")
        .arg(&fat));
    // A second name for the key's bytes shows that they are overwritten, not only unlinked.
    fs::hard_link(
        fat.join("flakesmith-identity.ssh_host_ed25519_key"),
        tmp.path().join("key-cells"),
    )
    .unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let script = first_boot_script(tmp.path());

    let out = run_script(&script, &fat, &root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "rk1-node2\n"
    );
    let key = root.join("etc/ssh/ssh_host_ed25519_key");
    assert_eq!(
        fs::read(&key).unwrap(),
        fs::read(repo.dir.join("keys/rk1-node2.ssh_host_ed25519_key")).unwrap()
    );
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&root.join("etc/ssh/ssh_host_ed25519_key.pub")), 0o644);
    let age = root.join("var/lib/sops-nix/key.txt");
    assert_eq!(
        fs::read(&age).unwrap(),
        fs::read(repo.dir.join("keys/rk1-node2.age")).unwrap()
    );
    assert_eq!(mode(&age), 0o600);
    assert_eq!(mode(&root.join("var/lib/sops-nix")), 0o700);
    let network =
        fs::read_to_string(root.join("etc/systemd/network/40-flakesmith-static.network")).unwrap();
    assert!(network.contains("Address=10.0.0.12/24"), "{network}");
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&key).unwrap().uid(), 0);
        assert_eq!(fs::metadata(&key).unwrap().gid(), 0);
    }
    // Erased from the FAT: unlinked, and the bytes overwritten first.
    assert!(
        files_in(&fat).is_empty(),
        "left on the FAT: {:?}",
        files_in(&fat)
    );
    assert!(fs::read(tmp.path().join("key-cells"))
        .unwrap()
        .iter()
        .all(|&b| b == 0));

    // Idempotent: a second boot changes nothing.
    let before = tree(&root);
    let out = run_script(&script, &fat, &root);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing changed"));
    assert_eq!(tree(&root), before);
}

/// Unmounts a folder when the test ends, however it ends (before its loop device is detached).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Attaches a loop device over the FAT partition of `image`.
fn loop_over_fat(image: &Path, (start, len): (u64, u64)) -> crate::inject::Loop {
    let out = run(Command::new("losetup")
        .args(["--find", "--show", "--offset"])
        .arg(start.to_string())
        .arg("--sizelimit")
        .arg(len.to_string())
        .arg(image));
    crate::inject::Loop(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// An image with a loop device over it (over any part of it) may be mounted: not stamped from.
#[test]
#[cfg_attr(
    not(tests_as_root),
    ignore = "needs root for a loop device (losetup): run the suite as root, as CI does"
)]
fn stamp_refuses_an_image_with_a_loop_device_over_it() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = sops_repo();
    let image = rk1_image(tmp.path());
    record(&repo, &image.path);
    let device = loop_over_fat(&image.path, image.firmware);
    refused(
        &stamp(&repo, &["rk1-node1", "--image", path_str(&image.path)]),
        &format!("is attached to {}", device.0),
    );
    assert!(files_in(&repo.dir.join("stamped")).is_empty());
    drop(device);
    stamp_ok(&repo, &["rk1-node1", "--image", path_str(&image.path)]);
}

/// The stamped FAT partition read by the kernel's own vfat driver, through a loop device over
/// the partition, as a third reader beside fatfs and mtools; then the first-boot script run
/// against that mount (as firmware-identity.nix mounts it: rw, fmask/dmask 0077) and a fake root.
/// What this cannot show: the /dev/disk/by-label/FIRMWARE link udev makes, and the activation
/// order.
#[test]
#[cfg_attr(
    not(all(tests_as_root, tests_with_vfat)),
    ignore = "needs root (a loop device, a mount) and a kernel with vfat in /proc/filesystems, which this CI kernel lacks (mtools reads the FAT back in the other stamp tests): run the suite as root on such a kernel"
)]
fn a_stamp_mounted_by_the_kernel_reads_back_and_the_first_boot_moves_it() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = sops_repo();
    let image = rk1_image(tmp.path());
    record(&repo, &image.path);
    stamp_ok(&repo, &["rk1-node3", "--image", path_str(&image.path)]);
    let stamped = repo.dir.join("stamped/rk1-node3.img");
    let start = image.firmware.0;
    let device = loop_over_fat(&stamped, image.firmware);

    let fat = tmp.path().join("firmware");
    fs::create_dir(&fat).unwrap();
    run(Command::new("mount")
        .args([
            "-t",
            "vfat",
            "-o",
            "rw,nosuid,nodev,noexec,fmask=0077,dmask=0077",
        ])
        .arg(&device.0)
        .arg(&fat));
    let mount = Mount(fat.clone());
    let keys = |name: &str| fs::read(repo.dir.join("keys").join(name)).unwrap();
    let on_fat = |name: &str| fs::read(fat.join(format!("flakesmith-identity.{name}"))).unwrap();
    assert_eq!(on_fat("hostname"), b"rk1-node3\n");
    assert_eq!(
        on_fat("ssh_host_ed25519_key"),
        keys("rk1-node3.ssh_host_ed25519_key")
    );
    assert_eq!(
        on_fat("ssh_host_ed25519_key.pub"),
        keys("rk1-node3.ssh_host_ed25519_key.pub")
    );
    assert_eq!(on_fat("age-key.txt"), keys("rk1-node3.age"));
    assert!(String::from_utf8(on_fat("40-flakesmith-static.network"))
        .unwrap()
        .contains("Address=10.0.0.13/24\n"));

    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let out = run_script(&first_boot_script(tmp.path()), &fat, &root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read(root.join("etc/ssh/ssh_host_ed25519_key")).unwrap(),
        keys("rk1-node3.ssh_host_ed25519_key")
    );
    assert_eq!(mode(&root.join("etc/ssh/ssh_host_ed25519_key")), 0o600);
    assert_eq!(
        fs::read(root.join("var/lib/sops-nix/key.txt")).unwrap(),
        keys("rk1-node3.age")
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "rk1-node3\n"
    );
    assert!(
        files_in(&fat).is_empty(),
        "left on the FAT: {:?}",
        files_in(&fat)
    );
    drop(mount);
    drop(device);

    // After the kernel's writes the FAT is clean, and no reader finds the identity.
    fsck_clean(
        &SdImage {
            path: stamped.clone(),
            firmware: image.firmware,
            root: image.root,
        },
        tmp.path(),
    );
    assert!(!flakesmith::stamp::is_stamped(&stamped));
    let listing = run(Command::new("mdir")
        .args(["-b", "-i"])
        .arg(format!("{}@@{start}", stamped.display()))
        .arg("::"))
    .stdout;
    assert!(
        !String::from_utf8_lossy(&listing).contains("flakesmith-identity"),
        "{}",
        String::from_utf8_lossy(&listing)
    );
}

#[test]
fn an_unstamped_or_tampered_firmware_partition_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let script = first_boot_script(tmp.path());
    let fat = tmp.path().join("fat");
    let root = tmp.path().join("root");
    fs::create_dir_all(fat.join("extlinux")).unwrap();
    fs::create_dir_all(root.join("etc/ssh")).unwrap();
    fs::write(root.join("etc/ssh/sshd_config"), "x").unwrap();
    let before = tree(&root);

    // Unstamped: says so, exit 0 (the boot goes on as today's), nothing changed.
    let out = run_script(&script, &fat, &root);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no stamped identity"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tree(&root), before);

    // A host name that is not one (anyone with the card can write the FAT): refused whole.
    fs::write(
        fat.join("flakesmith-identity.hostname"),
        "../../etc/shadow\n",
    )
    .unwrap();
    fs::write(
        fat.join("flakesmith-identity.ssh_host_ed25519_key"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = run_script(&script, &fat, &root);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(tree(&root), before);
    // A key file that is not a key: refused whole.
    fs::write(fat.join("flakesmith-identity.hostname"), "node1\n").unwrap();
    fs::write(
        fat.join("flakesmith-identity.ssh_host_ed25519_key"),
        "not a key\n",
    )
    .unwrap();
    let out = run_script(&script, &fat, &root);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(tree(&root), before);
}

/// What the identical image's first-boot module sets, as evaluated by real Nix against the
/// stand-in inputs (tests/fixtures). They cannot show that real nixpkgs and sops-nix define
/// setupSecrets as the module expects (the module's comment names the files read), or the order
/// nixpkgs' activation script gives the snippets.
/// An activation script that every definition of left undefined (mkIf false) is absent in
/// nixpkgs (attrsOf); the stand-in module system says "used but not defined": both read as null.
const FIRST_BOOT_FACTS: &str = r#"c: let
  s = c.config.system.activationScripts or { };
  depsOf = name: let t = builtins.tryEval (s.${name}.deps or null); in if t.success then t.value else null;
in {
  hostName = c.config.networking.hostName;
  deps = s.identityFromFirmware.deps or null;
  runsScript = builtins.match ".*identity-from-firmware.sh.*" (s.identityFromFirmware.text or "") != null;
  initrd = c.config.boot.initrd.kernelModules or [ ];
  networkd = c.config.networking.useNetworkd or false;
  compressImage = c.config.sdImage.compressImage or null;
  setupSecrets = depsOf "setupSecrets";
  setupSecretsForUsers = depsOf "setupSecretsForUsers";
}"#;

#[test]
fn the_identical_image_imports_the_first_boot_module_and_orders_it_before_sops_nix() {
    use crate::nix_eval::Flake;
    use serde_json::json;

    let mut tree = Project::default().with_sops().render();
    let flake = Flake::new(&tree);
    let rk1 = flake.eval("nixosConfigurations.rk1", FIRST_BOOT_FACTS);
    assert_eq!(rk1["hostName"], "");
    assert_eq!(rk1["deps"], json!(["specialfs"]));
    assert_eq!(rk1["runsScript"], true);
    assert_eq!(rk1["initrd"], json!(["vfat", "nls_cp437", "nls_iso8859-1"]));
    assert_eq!(rk1["networkd"], true);
    // No secrets defined: sops-nix defines no setupSecrets, and neither does the module.
    assert_eq!(rk1["setupSecrets"], json!(null));
    // A node's own image is not stamped: no first-boot module.
    let node = flake.eval("nixosConfigurations.rk1-node1", FIRST_BOOT_FACTS);
    assert_eq!(node["deps"], json!(null));
    assert_eq!(node["hostName"], "rk1-node1");

    // With secrets (one needed for users), both of sops-nix's scripts wait for the identity.
    let common = tree
        .get("common.nix")
        .unwrap()
        .as_text()
        .unwrap()
        .to_owned();
    let common = common.replacen(
        "  sops.age.keyFile",
        "  sops.secrets.example = { neededForUsers = false; };\n  sops.secrets.password = { neededForUsers = true; };\n  sops.age.keyFile",
        1,
    );
    assert!(
        common.contains("sops.secrets.example"),
        "common.nix sets sops.age.keyFile"
    );
    tree.insert("common.nix", flakesmith::render::TreeFile::text(common));
    let rk1 = Flake::new(&tree).eval("nixosConfigurations.rk1", FIRST_BOOT_FACTS);
    assert_eq!(rk1["setupSecrets"], json!(["identityFromFirmware"]));
    assert_eq!(rk1["setupSecretsForUsers"], json!(["identityFromFirmware"]));
}

/// post-deploy.sh --stamped trusts only the pin `flakesmith stamp` wrote and sends no identity:
/// the stand-ins of secrets.rs, without ssh-keyscan (a scan would fail the run).
#[test]
fn post_deploy_of_a_stamped_node_uses_the_pin_and_sends_no_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = sops_repo();
    let image = rk1_image(tmp.path());
    record(&repo, &image.path);
    stamp_ok(&repo, &["rk1-node1", "--image", path_str(&image.path)]);
    let pinned = fs::read_to_string(repo.dir.join("deploy/known_hosts")).unwrap();

    let tools = crate::secrets::StandIns::new(0).without("ssh-keyscan");
    let out = tools.run(&repo.dir, &["--stamped", "--host", "rk1-node1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Whole calls: root's login checked with the pin, the switch, root and the admin checked
    // after it; no ssh-keyscan (its stand-in is gone) and no identity sent.
    let known = format!(
        "-o UserKnownHostsFile={}/deploy/known_hosts -o StrictHostKeyChecking=yes",
        repo.dir.display()
    );
    let check = |user: &str| format!("ssh {known} -o BatchMode=yes {user}@10.0.0.11 true");
    assert_eq!(
        tools.log(),
        vec![
            check("root"),
            format!(
                "nixos-rebuild switch --flake {}#rk1-node1 --target-host root@10.0.0.11{} NIX_SSHOPTS={known}",
                repo.dir.display(),
                crate::secrets::build_host("root@10.0.0.11")
            ),
            check("root"),
            check("admin"),
        ]
    );
    assert_eq!(
        fs::read_to_string(repo.dir.join("deploy/known_hosts")).unwrap(),
        pinned
    );

    // A node that was not stamped has no pin: refused, nothing sent.
    let out = tools.run(&repo.dir, &["--stamped", "--host", "rk1-node2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pinned host key"));
    assert_eq!(tools.log().len(), 4);
}

#[test]
fn check_flags_a_stamped_image_that_is_tracked_or_readable_by_others() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = sops_repo();
    let image = rk1_image(tmp.path());
    record(&repo, &image.path);
    run(Command::new("git").args(["init", "-q"]).arg(&repo.dir));
    stamp_ok(&repo, &["rk1-node1", "--image", path_str(&image.path)]);
    let stamped_findings = || {
        let out = repo.run(&["check"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("stamped image"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(
        stamped_findings().is_empty(),
        "stamped/ is ignored and 0600"
    );

    let stamped = repo.dir.join("stamped/rk1-node1.img");
    fs::set_permissions(&stamped, fs::Permissions::from_mode(0o644)).unwrap();
    let found = stamped_findings();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("stamped/rk1-node1.img: a stamped image with mode 0644"),
        "{found:?}"
    );

    // Tracked (forced past .gitignore), next to an unstamped image that is tracked too.
    fs::set_permissions(&stamped, fs::Permissions::from_mode(0o600)).unwrap();
    fs::copy(&image.path, repo.dir.join("identical.img")).unwrap();
    run(Command::new("git").arg("-C").arg(&repo.dir).args([
        "add",
        "-f",
        "stamped/rk1-node1.img",
        "identical.img",
    ]));
    let found = stamped_findings();
    assert_eq!(found.len(), 1, "only the stamped one: {found:?}");
    assert!(found[0].starts_with("stamped/rk1-node1.img: a stamped image (it holds a node's private keys) is tracked by git"), "{found:?}");
}

#[test]
fn a_failed_or_interrupted_stamp_leaves_no_partial_image() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = sops_repo();
    let image = rk1_image(tmp.path());
    record(&repo, &image.path);
    let args = [
        "stamp",
        "rk1-node1",
        "rk1-node2",
        "--image",
        path_str(&image.path),
    ];

    // The second node's write fails (as a full disk would): the first is done, the second gone.
    let out = repo.run_env(&args, &[("FLAKESMITH_FAILPOINT", "stamp:written#2")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files_in(&repo.dir.join("stamped")), ["rk1-node1.img"]);

    // A crash leaves the partial file; the next stamp removes it before anything else.
    let out = repo.run_env(&args, &[("FLAKESMITH_FAILPOINT", "stamp:written#2:abort")]);
    assert!(!out.status.success());
    let left = files_in(&repo.dir.join("stamped"));
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.iter()
            .any(|f| f.starts_with(".rk1-node2.") && f.ends_with(".partial")),
        "{left:?}"
    );
    let out = stamp_ok(&repo, &["rk1-node3", "--image", path_str(&image.path)]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("removed 1 partial"));
    assert_eq!(
        files_in(&repo.dir.join("stamped")),
        ["rk1-node1.img", "rk1-node3.img"]
    );
}

/// A multi-cloud repository with two RK1 nodes (sops, age identities in keys/) and the generic
/// aarch64 platform, made by `flakesmith init` in its own git repository (staged, as init does).
fn multi_cloud_repo() -> TestRepo {
    use flakesmith::model::{Layout, Platform};
    let mut answers = Project::default()
        .with_sops()
        .with_nodes(2)
        .answers()
        .clone();
    answers.layout = Layout::MultiCloud;
    answers.platforms = vec![Platform::Rk1, Platform::GenericArm64];
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("answers.yaml");
    fs::write(&file, answers.to_yaml()).unwrap();
    TestRepo::init_with_git(&["--answers", path_str(&file)])
}

/// nixpkgs' generic aarch64 SD image (sd-image-aarch64.nix): the FAT partition at 8 MiB, no
/// loader in front of it, and the Raspberry Pi firmware in it (stand-in files of its sizes).
fn generic_image(dir: &Path) -> SdImage {
    let image = fixtures::sd_image(dir, "nixos-generic.img", 8);
    for (name, len) in [
        ("config.txt", 300),
        ("start4.elf", 2_200_000),
        ("fixup4.dat", 5_400),
        ("u-boot-rpi4.bin", 600_000),
    ] {
        let file = dir.join(name);
        fs::write(&file, fixtures::bytes(len as u64, len)).unwrap();
        run(Command::new("mcopy")
            .arg("-i")
            .arg(format!("{}@@{}", image.path.display(), image.firmware.0))
            .arg(&file)
            .arg(format!("::{name}")));
    }
    image
}

/// A generic-arm64 image is stamped for the boards named on the command line (flakesmith.yaml
/// lists none): each copy carries the board's name and its own pinned host key, no age identity
/// (a generic board decrypts with its host key) and no address (DHCP); the firmware files and
/// everything outside the FAT stay as they were. Node names, the flake's image names, --all, and
/// board names for the rk1 image are refused.
#[test]
fn a_generic_arm64_image_is_stamped_for_the_boards_named() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = multi_cloud_repo();
    let image = generic_image(tmp.path());
    record_as(&repo, "generic-arm64", &image.path);
    let image_arg = path_str(&image.path);

    refused(&stamp(&repo, &["--all", "--image", image_arg]), "--all");
    refused(
        &stamp(&repo, &["rk1-node1", "--image", image_arg]),
        "HOST 'rk1-node1' is a node of this repository",
    );
    refused(&stamp(&repo, &["Board_A", "--image", image_arg]), "HOST:");
    // Names of the flake's images and configurations: nixos-rebuild would pick that system.
    for taken in ["rk1", "generic-arm64"] {
        refused(
            &stamp(&repo, &[taken, "--image", image_arg]),
            &format!("HOST '{taken}' is the name of an image and configuration in this flake"),
        );
    }
    assert!(!repo.dir.join("keys/rk1.ssh_host_ed25519_key").exists());
    // The rk1 image is for the RK1 nodes only.
    let rk1 = rk1_image(tmp.path());
    record_as(&repo, "rk1", &rk1.path);
    refused(
        &stamp(&repo, &["board-a", "--image", path_str(&rk1.path)]),
        "HOST 'board-a' is not a node",
    );
    assert!(files_in(&repo.dir.join("stamped")).is_empty());

    let out = stamp_ok(&repo, &["board-a", "board-b", "--image", image_arg]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("ssh-to-age < keys/<board>.ssh_host_ed25519_key.pub"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = fs::metadata(&image.path).unwrap().len();
    let (start, len) = image.firmware;
    for board in ["board-a", "board-b"] {
        let stamped = repo.dir.join(format!("stamped/{board}.img"));
        assert_eq!(mode(&stamped), 0o600);
        assert!(region(&stamped, 0, start) == region(&image.path, 0, start));
        assert!(
            region(&stamped, start + len, size - start - len)
                == region(&image.path, start + len, size - start - len)
        );
        fsck_clean(
            &SdImage {
                path: stamped.clone(),
                firmware: image.firmware,
                root: image.root,
            },
            tmp.path(),
        );
        assert_eq!(
            mread(&stamped, start, "hostname"),
            format!("{board}\n").as_bytes()
        );
        assert_eq!(
            mread(&stamped, start, "ssh_host_ed25519_key"),
            fs::read(repo.dir.join(format!("keys/{board}.ssh_host_ed25519_key"))).unwrap()
        );
        let listing = run(Command::new("mdir")
            .args(["-b", "-i"])
            .arg(format!("{}@@{start}", stamped.display()))
            .arg("::"))
        .stdout;
        let mut names: Vec<String> = String::from_utf8_lossy(&listing)
            .lines()
            .map(|l| l.trim_start_matches("::/").to_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "config.txt",
                "fixup4.dat",
                "flakesmith-identity.hostname",
                "flakesmith-identity.ssh_host_ed25519_key",
                "flakesmith-identity.ssh_host_ed25519_key.pub",
                "start4.elf",
                "u-boot-rpi4.bin",
            ],
            "no age identity, no network file; the firmware kept"
        );
        assert_eq!(
            mread_file(&stamped, start, "start4.elf"),
            fixtures::bytes(2_200_000, 2_200_000)
        );
        let found = Command::new("ssh-keygen")
            .args(["-F", board, "-f"])
            .arg(repo.dir.join("deploy/known_hosts"))
            .output()
            .unwrap();
        assert!(found.status.success(), "{board} is not pinned");
    }
    assert!(!repo.dir.join("keys/board-a.age").exists());

    // check's stamped-images rule knows a stamped generic image as it knows an RK1 one.
    fs::set_permissions(
        repo.dir.join("stamped/board-a.img"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = repo.run(&["check"]);
    let findings = String::from_utf8_lossy(&out.stdout);
    assert!(
        findings.contains("stamped/board-a.img: a stamped image with mode 0644"),
        "{findings}"
    );
    // The keys stamp made are 0600, the public one too: check finds nothing in keys/.
    assert_eq!(
        mode(&repo.dir.join("keys/board-a.ssh_host_ed25519_key.pub")),
        0o600
    );
    assert!(!findings.contains("keys/"), "{findings}");
}

/// The multi-cloud flake, evaluated in place as the git flake `flakesmith init` left (so the
/// first-boot module and its script must be tracked), against the stand-in inputs: the
/// generic-arm64 and rk1 configurations import the first-boot module with no host name of their
/// own and build raw images; the nodes' own configurations do not import it. What the stand-ins
/// cannot show is listed at FIRST_BOOT_FACTS.
#[test]
fn the_multi_cloud_identical_images_import_the_first_boot_module() {
    use crate::nix_eval::{nix_with_stand_ins, stand_in_inputs};
    use serde_json::json;
    let repo = multi_cloud_repo();
    let overrides = stand_in_inputs(&fs::read_to_string(repo.dir.join("flake.nix")).unwrap());
    let eval = |attr: &str| -> serde_json::Value {
        let out = crate::support::run_ok(&mut nix_with_stand_ins(
            &overrides,
            &[
                "eval",
                "--json",
                &format!("git+file://{}#{attr}", repo.dir.display()),
                "--apply",
                FIRST_BOOT_FACTS,
            ],
        ));
        serde_json::from_str(&out).unwrap()
    };
    for machine in ["generic-arm64", "rk1"] {
        let facts = eval(&format!("nixosConfigurations.{machine}"));
        assert_eq!(facts["hostName"], "", "{machine}");
        assert_eq!(facts["deps"], json!(["specialfs"]), "{machine}");
        assert_eq!(facts["runsScript"], true, "{machine}");
        assert_eq!(
            facts["initrd"],
            json!(["vfat", "nls_cp437", "nls_iso8859-1"]),
            "{machine}"
        );
        assert_eq!(facts["networkd"], true, "{machine}");
        assert_eq!(
            facts["compressImage"], false,
            "{machine}: stamp takes raw images"
        );
    }
    let node = eval("nixosConfigurations.rk1-node1");
    assert_eq!(node["deps"], json!(null));
    assert_eq!(node["hostName"], "rk1-node1");
}

/// The identical image is recognised by its bytes, whichever file holds them and however they
/// are laid out: a dense copy (its holes written as zeros) is accepted; one changed byte of the
/// root partition is refused.
#[test]
fn the_identical_image_is_recognised_by_its_bytes() {
    use std::os::unix::fs::FileExt;
    let tmp = tempfile::tempdir().unwrap();
    let repo = sops_repo();
    let image = rk1_image(tmp.path());
    record(&repo, &image.path);
    let dense = tmp.path().join("dense.img");
    run(Command::new("cp")
        .arg("--sparse=never")
        .arg(&image.path)
        .arg(&dense));
    stamp_ok(&repo, &["rk1-node1", "--image", path_str(&dense)]);

    let file = fs::OpenOptions::new().write(true).open(&dense).unwrap();
    file.write_all_at(b"x", image.root.0 + 4096).unwrap();
    drop(file);
    refused(
        &stamp(&repo, &["rk1-node2", "--image", path_str(&dense)]),
        "not the identical image",
    );
}

/// A board mixing RK1s and CM4s: without --image each node is stamped into a copy of its own
/// module's recorded identical image (the RK1's with U-Boot in front at 16 MiB, the CM4's laid
/// out as sd-image-aarch64.nix makes it, FAT at 8 MiB); with --image, nodes of two modules are
/// refused, as one image cannot be both.
#[test]
fn a_mixed_board_stamps_each_node_from_its_modules_image() {
    let tmp = tempfile::tempdir().unwrap();
    let mut answers = flakesmith::model::Answers::default();
    answers.set_hosts(["rk1-a", "cm4-a", "rk1-b"].map(String::from).to_vec());
    let answers = Project::from_answers(answers)
        .with_cm4(&["cm4-a"])
        .answers()
        .to_yaml();
    let file = tmp.path().join("answers.yaml");
    fs::write(&file, answers).unwrap();
    let repo = TestRepo::init(&["--answers", path_str(&file)]);

    let rk1 = rk1_image(tmp.path());
    let cm4 = fixtures::sd_image(tmp.path(), "nixos-cm4.img", 8);
    // Each where `flakesmith build` leaves it, recorded as build records it.
    for (target, image) in [("rk1", &rk1), ("cm4", &cm4)] {
        use flakesmith::stamp::record::{remember, Recorded};
        let path = format!("{target}/sd-image/nixos-{target}.img");
        let inside = repo.dir.join("images").join(&path);
        fs::create_dir_all(inside.parent().unwrap()).unwrap();
        fs::copy(&image.path, &inside).unwrap();
        let recorded = Recorded::of(&inside, &path, hex::encode(digest(&inside))).unwrap();
        remember(&repo.dir, target, recorded).unwrap();
    }

    let out = stamp(&repo, &["--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (host, source) in [("rk1-a", &rk1), ("cm4-a", &cm4), ("rk1-b", &rk1)] {
        let stamped = repo.dir.join(format!("stamped/{host}.img"));
        assert_eq!(
            fs::metadata(&stamped).unwrap().len(),
            fs::metadata(&source.path).unwrap().len(),
            "{host}"
        );
        // Everything in front of the FAT partition (the RK1's U-Boot, the CM4's bare MBR) is the
        // source's, and the identity is in the FAT partition.
        assert_eq!(
            region(&stamped, 0, source.firmware.0),
            region(&source.path, 0, source.firmware.0),
            "{host}"
        );
        assert_eq!(
            mread(&stamped, source.firmware.0, "hostname"),
            format!("{host}\n").as_bytes()
        );
    }

    refused(
        &stamp(&repo, &["rk1-a", "cm4-a", "--image", path_str(&rk1.path)]),
        "--image: these nodes hold different compute modules (rk1, cm4)",
    );
}
