//! One entry point that runs every parser on arbitrary bytes. The cargo-fuzz target
//! (`fuzz/fuzz_targets/parsers.rs`) and the stable property test in `tests/integration/inject.rs`
//! both call it; a panic, or a broken invariant asserted here, is a bug. It lives outside
//! src/rockchip so that generated repositories, which vendor that folder, do not carry it; it
//! names the parsers as `crate::rockchip`, which both flakesmith and the fuzz target declare.

use std::io::Cursor;

use crate::rockchip::fit;
use crate::rockchip::gpt;
use crate::rockchip::header::{self, SOCS};
use crate::rockchip::inject::{self, ImageInfo, Role};
use crate::rockchip::layout::Layout;
use crate::rockchip::mbr;
use crate::rockchip::{Extent, IDBLOADER_OFFSET, ITB_OFFSET};

/// Feeds `data` to the partition-table, loader-header and FIT parsers, to the payload checks,
/// and to `verify` (as a whole image, and placed at sector 64 of one).
pub fn exercise(data: &[u8]) {
    let size = data.len() as u64;

    let _ = mbr::parse(data);
    if data.len() >= 92 {
        if let Ok(header) = gpt::parse_header(&data[..data.len().min(4096)], 1) {
            assert!(header.entries_bytes() <= gpt::MAX_ENTRY_ARRAY);
            let array = &data[data.len().min(1024)..];
            if let Ok(entries) = gpt::parse_entries(array, &header) {
                for entry in entries {
                    assert!(entry.first_lba <= entry.last_lba);
                }
            }
        }
    }

    if let Ok(layout) = Layout::read(&mut Cursor::new(data), size) {
        for partition in &layout.partitions {
            assert!(partition.extent.start <= partition.extent.end);
            assert!(!partition.name().is_empty());
        }
        let probe = Extent::at(IDBLOADER_OFFSET, ITB_OFFSET);
        for conflict in layout.conflicts(&probe) {
            assert!(conflict.overlap > 0 && conflict.overlap <= probe.len());
        }
        let _ = layout.summary();
        let again = Layout::read(&mut Cursor::new(data), size).ok();
        assert_eq!(
            again.as_ref(),
            Some(&layout),
            "reading a table twice must agree"
        );
    }

    if let Ok(loader) = header::parse(data) {
        assert!(!loader.stages.is_empty());
        for stage in &loader.stages {
            assert!(stage.offset + stage.size <= loader.end);
        }
        let _ = loader.describe();
        let _ = loader.header_digest_ok(data);
        let _ = loader.stage_digest_mismatches(&mut Cursor::new(data), 0);
        let fitting = SOCS.iter().filter(|soc| loader.fits(soc)).count();
        assert!(fitting > 0 || loader.family == "RSAK");
    }

    if let Ok(found) = fit::read(&mut Cursor::new(data), 0, size) {
        assert!(found.end >= found.tree_size);
        assert!(found.tree_size <= size);
    }

    for soc in [header::find_soc("rk3588"), header::find_soc("rk3399")]
        .into_iter()
        .flatten()
    {
        for role in [Role::Combined, Role::Idbloader, Role::Itb] {
            if let Ok((loader, fit)) =
                inject::check_payload(&mut Cursor::new(data), size, role, "fuzz", soc)
            {
                if let Some(loader) = loader {
                    assert!(loader.fits(soc));
                    assert!(loader.end <= size);
                }
                if let Some(fit) = fit {
                    assert!(fit.end <= size);
                }
            }
        }
    }

    let rk3588 = header::find_soc("rk3588").expect("rk3588 is in the SoC table");
    let as_image = ImageInfo {
        path: "fuzz-image".into(),
        size,
        block_device: false,
    };
    let report = inject::verify_reader(&mut Cursor::new(data), as_image, rk3588);
    if let Ok(report) = report {
        if report.findings.is_empty() {
            assert!(
                report.loader.is_ok() && report.itb.is_ok(),
                "a clean report has a loader"
            );
        }
        let _ = report.free_before_first_partition();
    }

    let mut image = vec![0u8; IDBLOADER_OFFSET as usize];
    image.extend_from_slice(data);
    let placed = ImageInfo {
        path: "fuzz-image".into(),
        size: image.len() as u64,
        block_device: false,
    };
    if let Ok(report) = inject::verify_reader(&mut Cursor::new(&image[..]), placed, rk3588) {
        if let Ok(found) = &report.loader {
            assert_eq!(found.extent.start, IDBLOADER_OFFSET);
        }
    }
}
