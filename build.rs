// include_dir! embeds scaffolds/ and src/rockchip/ at compile time but cannot tell cargo about
// files added later; these lines make a new template or source file trigger a rebuild.
fn main() {
    println!("cargo:rerun-if-changed=scaffolds");
    println!("cargo:rerun-if-changed=src/rockchip");
}
