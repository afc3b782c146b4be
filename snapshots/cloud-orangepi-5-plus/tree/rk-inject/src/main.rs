//! rk-inject, vendored by flakesmith: src/rockchip is a verbatim copy of flakesmith's, so fix
//! bugs there, not here. Usage: rk-inject --help.

#[allow(dead_code)]
mod rockchip;

fn main() {
    std::process::exit(rockchip::cli::main());
}
