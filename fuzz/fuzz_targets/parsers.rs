//! Partition tables (MBR, EBR, GPT), Rockchip loader headers (RKNS v2, RC4), FIT images, the
//! payload checks and `verify`, all on arbitrary bytes. The same entry point runs on stable Rust
//! as the property test in tests/integration/inject/property.rs.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/rockchip/mod.rs"]
mod rockchip;
#[path = "../../src/rockchip_fuzz.rs"]
mod rockchip_fuzz;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rockchip_fuzz::exercise(data);
});
