//! rk-inject: writes a Rockchip boot loader into a disk image, refusing anything that would
//! touch a partition. The code lives in `flakesmith::rockchip`, which generated repos vendor.

fn main() {
    std::process::exit(flakesmith::rockchip::cli::main());
}
