// include_dir! embeds scaffolds/ and src/rockchip/ at compile time but cannot tell cargo about
// files added later; these lines make a new template or source file trigger a rebuild.
//
// Tests that need root (loop devices, user accounts for sshd) are built as ignored, with the
// reason, when the suite is compiled by a normal user: `cfg(tests_as_root)` says the build runs
// as root, as `cargo test` then runs the tests too. `cfg(tests_with_vfat)` says the kernel
// mounts vfat (a container's kernel may lack it), for the test that mounts a stamped FAT.
fn main() {
    println!("cargo:rerun-if-changed=scaffolds");
    println!("cargo:rerun-if-changed=src/rockchip");
    println!("cargo::rustc-check-cfg=cfg(tests_as_root)");
    if is_root() {
        println!("cargo::rustc-cfg=tests_as_root");
    }
    println!("cargo::rustc-check-cfg=cfg(tests_with_vfat)");
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("vfat"))
    {
        println!("cargo::rustc-cfg=tests_with_vfat");
    }
}

/// `id -u` is 0 (build scripts stay std-only and need no libc binding for this).
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}
