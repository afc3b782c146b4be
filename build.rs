// include_dir! embeds scaffolds/ and src/rockchip/ at compile time but cannot tell cargo about
// files added later; these lines make a new template or source file trigger a rebuild.
fn main() {
    println!("cargo:rerun-if-changed=scaffolds");
    println!("cargo:rerun-if-changed=src/rockchip");
    // The deploy journey tests make user accounts and network namespaces, which needs root: built
    // by another user they are marked ignored, with that reason (tests/integration/deploy_journey.rs).
    println!("cargo:rustc-check-cfg=cfg(tests_as_root)");
    if built_by_root() {
        println!("cargo:rustc-cfg=tests_as_root");
    }
}

fn built_by_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    })
}
