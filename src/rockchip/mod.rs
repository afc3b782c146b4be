//! Rockchip boot loader placement: partition tables (MBR, GPT), Rockchip loader headers (RKNS v2
//! and the RC4-scrambled RK33xx header), U-Boot FIT images, and the injector behind `rk-inject`
//! and `flakesmith inject`.
//!
//! This folder uses std only, and its files name each other through `super::` only, never
//! `crate::`: the same files compile as `flakesmith::rockchip` and, copied byte for byte, as the
//! `rk-inject` crate that generated flakes build offline with Nix (see `flakesmith::rockchip_vendor`).

pub mod cli;
pub mod error;
pub mod extent;
pub mod fit;
pub mod gpt;
pub mod header;
pub mod inject;
pub mod json;
pub mod layout;
pub mod mbr;
pub mod sha256;
pub mod signature;

pub use error::{Error, ErrorKind, Result};
pub use extent::Extent;

/// The sector size the Rockchip BootROM counts in, whatever the disk's logical sector size.
pub const SECTOR: u64 = 512;
/// The BootROM reads the first-stage loader (idbloader) from sector 64.
pub const IDBLOADER_SECTOR: u64 = 64;
/// U-Boot SPL loads `u-boot.itb` from sector 16384 (8 MiB).
pub const ITB_SECTOR: u64 = 16384;
/// Byte offset of the idbloader: 32768.
pub const IDBLOADER_OFFSET: u64 = IDBLOADER_SECTOR * SECTOR;
/// Byte offset of `u-boot.itb`: 8 MiB.
pub const ITB_OFFSET: u64 = ITB_SECTOR * SECTOR;
/// Where `u-boot.itb` sits inside a combined `u-boot-rockchip.bin` that is written at sector 64.
pub const ITB_IN_COMBINED: u64 = ITB_OFFSET - IDBLOADER_OFFSET;
/// The first partition of an RK1 image must start here or later (Rockchip's partition map puts
/// loader1 at 64, loader2 at 16384, trust at 24576 and boot at 32768 sectors).
pub const FIRST_PARTITION_MIN: u64 = 16 << 20;

/// `bytes` in the largest binary unit it fills (up to TiB), to one decimal, for messages.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_is_shown_in_the_largest_unit_it_fills_up_to_tib() {
        for (bytes, shown) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (16 << 20, "16.0 MiB"),
            ((1 << 30) - 1, "1024.0 MiB"),
            (3 << 40, "3.0 TiB"),
            // No unit above TiB: a PiB is 1024 of them.
            (1 << 50, "1024.0 TiB"),
            (u64::MAX, "16777216.0 TiB"),
        ] {
            assert_eq!(human(bytes), shown, "{bytes}");
        }
    }
}
