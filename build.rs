//! include_dir! does not notice new or changed files by itself on stable Rust: rerun (and so
//! recompile the crate) when the embedded folders change.

fn main() {
    println!("cargo:rerun-if-changed=scaffolds");
    println!("cargo:rerun-if-changed=src/rockchip");
}
