//! rk-inject and `flakesmith inject`: real headers from U-Boot's mkimage, real images from
//! sfdisk / mkfs.vfat / mkfs.ext4, and the vendored crate built on its own.

pub(crate) mod fixtures;
mod property;

use std::fs;
use std::path::Path;
use std::process::Command;

use fixtures::*;

const IDB: u64 = 32768;
const ITB: u64 = 8 * MIB;

fn assert_one_line(text: &str) {
    assert_eq!(
        text.trim_end().lines().count(),
        1,
        "expected one line, got:\n{text}"
    );
}

#[test]
fn combined_loader_into_sd_image_with_firmware_at_16_mib() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let sd = sd_image(dir.path(), "nixos-rk1.img", 16);
    let table = sfdisk_dump(&sd.path);
    let firmware = region(&sd.path, sd.firmware.0, sd.firmware.1);
    let root = region(&sd.path, sd.root.0, sd.root.1);
    let mbr = region(&sd.path, 0, IDB);

    let out = rk_inject(&[
        "write",
        "--image",
        path_str(&sd.path),
        "--bootloader",
        path_str(&p.combined),
        "--soc",
        "rk3588",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("fsynced, read back and identical"),
        "{}",
        stdout(&out)
    );

    let payload = fs::read(&p.combined).unwrap();
    assert_eq!(region(&sd.path, IDB, payload.len() as u64), payload);
    assert_eq!(region(&sd.path, 0, IDB), mbr, "sectors 0..64 changed");
    assert_eq!(region(&sd.path, sd.firmware.0, sd.firmware.1), firmware);
    assert_eq!(region(&sd.path, sd.root.0, sd.root.1), root);
    assert_eq!(sfdisk_dump(&sd.path), table);
    fsck_clean(&sd, dir.path());

    let out = rk_inject(&["verify", "--image", path_str(&sd.path), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let report = json(&out);
    assert_eq!(report["ok"], true);
    assert_eq!(report["soc"], "rk3588");
    assert_eq!(report["partition_table"]["scheme"], "mbr");
    assert_eq!(report["partition_table"]["disk_id"], "0x2178694e");
    let loader = &report["loader"];
    assert_eq!(loader["kind"], "rkns-v2");
    assert_eq!(loader["family"], "RK35");
    assert_eq!(loader["hash"], "sha256");
    assert_eq!(loader["header_sha256_ok"], true);
    assert_eq!(loader["stages"].as_array().unwrap().len(), 2);
    assert!(loader["socs"]
        .as_array()
        .unwrap()
        .contains(&"rk3588".into()));
    let itb_len = fs::metadata(&p.itb).unwrap().len();
    assert_eq!(report["itb"]["start"], ITB);
    assert_eq!(report["itb"]["end"], ITB + itb_len);
    assert_eq!(report["loader_end"], ITB + itb_len);
    assert_eq!(report["first_partition"]["start"], 16 * MIB);
    assert_eq!(
        report["free_before_first_partition"],
        16 * MIB - (ITB + itb_len)
    );
}

#[test]
fn combined_loader_is_refused_when_firmware_sits_at_the_nixpkgs_default_8_mib() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let sd = sd_image(dir.path(), "default-offset.img", 8);
    let before = digest(&sd.path);

    let out = write_combined(path_str(&sd.path), path_str(&p.combined), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_one_line(&err);
    let end = IDB + fs::metadata(&p.combined).unwrap().len();
    assert!(err.contains("partition 1 (MBR type 0x0b FAT32)"), "{err}");
    assert!(err.contains(&format!("by {} bytes", end - ITB)), "{err}");
    assert!(
        err.contains("sdImage.firmwarePartitionOffset = 16"),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(
        digest(&sd.path),
        before,
        "a refused write changed the image"
    );
    fsck_clean(&sd, dir.path());
}

#[test]
fn split_loader_goes_to_sectors_64_and_16384() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let sd = sd_image(dir.path(), "split.img", 16);
    let table = sfdisk_dump(&sd.path);
    let args = |image: &Path| {
        vec![
            "write".to_string(),
            "--image".to_string(),
            image.display().to_string(),
            "--idbloader".to_string(),
            p.idbloader.display().to_string(),
            "--itb".to_string(),
            p.itb.display().to_string(),
        ]
    };
    let a = args(&sd.path);
    let out = rk_inject(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let idb = fs::read(&p.idbloader).unwrap();
    let itb = fs::read(&p.itb).unwrap();
    assert_eq!(region(&sd.path, IDB, idb.len() as u64), idb);
    assert_eq!(region(&sd.path, ITB, itb.len() as u64), itb);
    assert!(
        region(
            &sd.path,
            IDB + idb.len() as u64,
            ITB - IDB - idb.len() as u64
        )
        .iter()
        .all(|&b| b == 0),
        "split mode wrote between the idbloader and sector 16384"
    );
    assert_eq!(sfdisk_dump(&sd.path), table);
    fsck_clean(&sd, dir.path());
    let out = rk_inject(&["verify", "--image", path_str(&sd.path)]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    let low = sd_image(dir.path(), "split-8.img", 8);
    let before = digest(&low.path);
    let a = args(&low.path);
    let out = rk_inject(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("u-boot.itb at bytes 8388608.."), "{err}");
    assert!(
        err.contains(&format!(
            "partition 1 (MBR type 0x0b FAT32) at bytes 8388608..{} by {} bytes",
            38 * MIB,
            itb.len()
        )),
        "{err}"
    );
    assert!(
        !err.contains("idbloader-rk3568.img at"),
        "the idbloader alone fits: {err}"
    );
    assert_eq!(digest(&low.path), before);
}

#[test]
fn split_write_reports_each_piece_in_json_and_takes_an_itb_with_bytes_after_its_fit() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let fit_len = fs::metadata(&p.itb).unwrap().len();
    // Padding after the FIT's last data (as a build that rounds files up leaves) is written too.
    let padded = dir.path().join("padded.itb");
    let mut data = fs::read(&p.itb).unwrap();
    data.resize(data.len() + 4096, 0xff);
    fs::write(&padded, &data).unwrap();
    let idb_len = fs::metadata(&p.idbloader).unwrap().len();
    let sd = sd_image(dir.path(), "json.img", 16);
    let out = write_split(
        path_str(&sd.path),
        path_str(&p.idbloader),
        path_str(&padded),
        &["--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(region(&sd.path, ITB, data.len() as u64), data);
    let report = json(&out);
    let pieces: Vec<_> = report["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["role"].as_str().unwrap().to_string(),
                p["start"].as_u64().unwrap(),
                p["end"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
                p["itb"]["size"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        pieces,
        [
            ("idbloader".to_string(), IDB, IDB + idb_len, idb_len, None),
            (
                "itb".to_string(),
                ITB,
                ITB + fit_len + 4096,
                fit_len + 4096,
                Some(fit_len)
            ),
        ]
    );
}

#[test]
fn idbloader_too_long_for_its_slot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let long = dir.path().join("long-idbloader.img");
    let mut data = fs::read(&p.idbloader).unwrap();
    data.resize((ITB - IDB + 512) as usize, 0);
    fs::write(&long, data).unwrap();
    let sd = sd_image(dir.path(), "long.img", 16);
    let before = digest(&sd.path);
    let out = write_split(path_str(&sd.path), path_str(&long), path_str(&p.itb), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("512 bytes into sector 16384"),
        "{}",
        stderr(&out)
    );
    assert_eq!(digest(&sd.path), before);
}

#[test]
fn writing_twice_gives_the_same_image_and_writes_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let sd = sd_image(dir.path(), "twice.img", 16);
    let args = [
        "write",
        "--image",
        path_str(&sd.path),
        "--bootloader",
        path_str(&p.combined),
        "--json",
    ];
    let first = rk_inject(&args);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let after_first = digest(&sd.path);
    assert!(json(&first)["pieces"][0]["written"].as_u64().unwrap() > 0);

    let second = rk_inject(&args);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert_eq!(digest(&sd.path), after_first);
    let report = json(&second);
    assert_eq!(report["pieces"][0]["written"], 0);
    assert_eq!(
        report["pieces"][0]["unchanged"],
        fs::metadata(&p.combined).unwrap().len()
    );
    assert_eq!(report["verified"], true);
}

#[test]
fn dry_run_checks_but_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let sd = sd_image(dir.path(), "dry.img", 16);
    let before = digest(&sd.path);
    let out = write_combined(
        path_str(&sd.path),
        path_str(&p.combined),
        &["--dry-run", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["dry_run"], true);
    assert_eq!(digest(&sd.path), before);

    let low = sd_image(dir.path(), "dry-8.img", 8);
    let out = write_combined(path_str(&low.path), path_str(&p.combined), &["--dry-run"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a dry run refuses what a write would refuse"
    );
}

#[test]
fn rc4_scrambled_rk3399_header_is_checked_against_the_soc() {
    let dir = tempfile::tempdir().unwrap();
    let rk3399 = idbloader(dir.path(), "rk3399", 40_000, 100_000);
    let rk3568 = idbloader(dir.path(), "rk3568", 40_000, 100_000);
    let image = partitioned(
        dir.path(),
        "rk3399.img",
        64,
        "label: dos\nstart=16M, type=83\n",
    );
    let before = digest(&image);

    let out = write_combined(path_str(&image), path_str(&rk3399), &[]);
    assert_eq!(out.status.code(), Some(2), "the default --soc is rk3588");
    let err = stderr(&out);
    assert_one_line(&err);
    assert!(err.contains("rk3588 needs an RKNS v2 header"), "{err}");
    assert!(
        err.contains("RC4-scrambled header (0x0FF0AA55), family RK33"),
        "{err}"
    );
    assert_eq!(digest(&image), before);

    let out = rk_inject(&[
        "write",
        "--image",
        path_str(&image),
        "--bootloader",
        path_str(&rk3568),
        "--soc",
        "rk3399",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("rk3399 needs an RC4-scrambled header tagged RK33"),
        "{}",
        stderr(&out)
    );
    assert_eq!(digest(&image), before);

    let out = rk_inject(&[
        "write",
        "--image",
        path_str(&image),
        "--bootloader",
        path_str(&rk3399),
        "--soc",
        "rk3399",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let data = fs::read(&rk3399).unwrap();
    assert_eq!(region(&image, IDB, data.len() as u64), data);

    let out = rk_inject(&[
        "verify",
        "--image",
        path_str(&image),
        "--soc",
        "rk3399",
        "--json",
    ]);
    let report = json(&out);
    assert_eq!(report["loader"]["kind"], "rc4-v1");
    assert_eq!(report["loader"]["family"], "RK33");
    assert_eq!(report["loader"]["soc_matches"], true);
    assert_eq!(report["loader"]["stages"][0]["size"], 40_960);
    assert_eq!(report["loader"]["stages"][1]["size"], 100_352);
    // No u-boot.itb was written: verify says so and exits 1.
    assert_eq!(out.status.code(), Some(1));
    assert!(
        report["findings"][0]
            .as_str()
            .unwrap()
            .contains("no u-boot.itb"),
        "{report}"
    );

    let out = rk_inject(&["verify", "--image", path_str(&image), "--json"]);
    let report = json(&out);
    assert_eq!(report["loader"]["soc_matches"], false);
    assert!(
        report["findings"]
            .to_string()
            .contains("does not fit --soc rk3588"),
        "{report}"
    );
}

#[test]
fn rc4_scrambled_stage_of_rk3188_is_read() {
    // rk3188's mkimage also scrambles the SPL, tag included.
    let dir = tempfile::tempdir().unwrap();
    let spl = dir.path().join("spl.bin");
    fs::write(&spl, bytes(9, 20_000)).unwrap();
    let out_path = dir.path().join("rk3188.img");
    run(fixtures::mkimage()
        .args(["-n", "rk3188", "-T", "rksd", "-d"])
        .arg(&spl)
        .arg(&out_path));
    let image = partitioned(dir.path(), "img", 32, "label: dos\nstart=16M, type=83\n");
    let out = rk_inject(&[
        "write",
        "--image",
        path_str(&image),
        "--bootloader",
        path_str(&out_path),
        "--soc",
        "rk3188",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["pieces"][0]["loader"]["family"], "RK31");
}

#[test]
fn payload_without_a_rockchip_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    fs::write(&junk, bytes(7, 300_000)).unwrap();
    let sd = sd_image(dir.path(), "junk.img", 16);
    let before = digest(&sd.path);
    let out = write_combined(path_str(&sd.path), path_str(&junk), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_one_line(&err);
    assert!(err.contains("has no valid Rockchip loader header"), "{err}");
    assert_eq!(digest(&sd.path), before);

    let p = rk35_payloads(dir.path());
    let out = write_split(
        path_str(&sd.path),
        path_str(&p.idbloader),
        path_str(&junk),
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a FIT image"),
        "{}",
        stderr(&out)
    );
    assert_eq!(digest(&sd.path), before);
}

#[test]
fn truncated_or_damaged_payloads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let sd = sd_image(dir.path(), "trunc.img", 16);
    let before = digest(&sd.path);
    let combined = fs::read(&p.combined).unwrap();
    let idb_len = fs::metadata(&p.idbloader).unwrap().len() as usize;
    let cases = [
        (
            "cut-in-stage-2.bin",
            combined[..idb_len - 1000].to_vec(),
            "is truncated: its header says the loader runs to byte",
        ),
        (
            "cut-in-itb.bin",
            combined[..combined.len() - 4096].to_vec(),
            "is truncated: its u-boot.itb needs",
        ),
        (
            "flipped-stage-1.bin",
            {
                let mut c = combined.clone();
                c[4096] ^= 1;
                c
            },
            "the SHA-256 of stage 1 does not match",
        ),
        (
            "flipped-header.bin",
            {
                let mut c = combined.clone();
                c[200] ^= 1;
                c
            },
            "the SHA-256 in its RKNS header does not match",
        ),
    ];
    for (name, data, expected) in cases {
        let path = dir.path().join(name);
        fs::write(&path, data).unwrap();
        let out = write_combined(path_str(&sd.path), path_str(&path), &[]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(stderr(&out).contains(expected), "{name}: {}", stderr(&out));
        assert_eq!(digest(&sd.path), before, "{name} changed the image");
    }
    // A u-boot.itb on its own, one byte short of its FIT's last data.
    let itb = fs::read(&p.itb).unwrap();
    let short = dir.path().join("short.itb");
    fs::write(&short, &itb[..itb.len() - 1]).unwrap();
    let out = write_split(
        path_str(&sd.path),
        path_str(&p.idbloader),
        path_str(&short),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "is truncated: its FIT data runs to byte {}, the file has {} bytes",
            itb.len(),
            itb.len() - 1
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(digest(&sd.path), before, "the short itb changed the image");
}

#[test]
fn image_too_small_for_the_payload_is_refused_and_not_grown() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let image = dir.path().join("small.img");
    fs::File::create(&image).unwrap().set_len(4 * MIB).unwrap();
    let out = write_combined(path_str(&image), path_str(&p.combined), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("too small"), "{}", stderr(&out));
    assert_eq!(fs::metadata(&image).unwrap().len(), 4 * MIB);
    assert!(fs::read(&image).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn gpt_image_takes_the_loader_and_keeps_both_tables() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let script = "label: gpt\nlabel-id: 5B2A6A4E-27C1-4E42-9C1F-1C7C0A3E3A11\n\
                  start=16M, size=30M, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=firmware\n\
                  start=46M, name=nixos\n";
    let image = partitioned(dir.path(), "gpt.img", 64, script);
    let table = sfdisk_dump(&image);
    let head = region(&image, 0, 34 * 512);
    let tail = region(&image, 64 * MIB - 33 * 512, 33 * 512);

    let out = write_combined(path_str(&image), path_str(&p.combined), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(sfdisk_dump(&image), table);
    assert_eq!(
        region(&image, 0, 34 * 512),
        head,
        "protective MBR or primary GPT changed"
    );
    assert_eq!(
        region(&image, 64 * MIB - 33 * 512, 33 * 512),
        tail,
        "backup GPT changed"
    );
    run(Command::new("sfdisk").arg("--verify").arg(&image));

    let report = json(&rk_inject(&[
        "verify",
        "--image",
        path_str(&image),
        "--json",
    ]));
    let table = &report["partition_table"];
    assert_eq!(table["scheme"], "gpt");
    assert_eq!(table["disk_id"], "5B2A6A4E-27C1-4E42-9C1F-1C7C0A3E3A11");
    assert_eq!(
        table["partitions"][0]["description"],
        "\"firmware\" Microsoft basic data"
    );
    let last_lba = 64 * MIB / 512 - 1;
    let reserved = table["reserved"].to_string();
    assert!(
        reserved.contains(&format!("the backup GPT header (LBA {last_lba})")),
        "{reserved}"
    );
    assert!(
        reserved.contains("the primary GPT entry array (LBA 2..34)"),
        "{reserved}"
    );
    assert_eq!(report["ok"], true, "{report}");
}

/// `rk-inject write --image IMAGE --bootloader PAYLOAD` refuses (exit 1) and leaves the image
/// byte for byte as it was; returns the refusal for the caller to check its wording.
fn combined_write_is_refused(image: &Path, payload: &Path) -> String {
    let before = digest(image);
    let out = write_combined(path_str(image), path_str(payload), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(digest(image), before, "a refused write changed the image");
    stderr(&out)
}

#[test]
fn gpt_partition_at_8_mib_is_refused_by_number_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let image = partitioned(
        dir.path(),
        "gpt8.img",
        64,
        "label: gpt\nstart=8M, size=30M, name=firmware\nstart=38M, name=nixos\n",
    );
    let err = combined_write_is_refused(&image, &p.combined);
    assert_one_line(&err);
    assert!(
        err.contains("partition 1 (GPT \"firmware\" Linux filesystem) at bytes 8388608.."),
        "{err}"
    );
}

#[test]
fn gpt_entry_array_reaching_sector_64_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    // 512 entries of 128 bytes: the array covers LBA 2..130, past sector 64.
    let image = partitioned(
        dir.path(),
        "longtable.img",
        64,
        "label: gpt\ntable-length: 512\nfirst-lba: 2048\nstart=16M, name=firmware\n",
    );
    let err = combined_write_is_refused(&image, &p.combined);
    assert!(
        err.contains(
            "the primary GPT entry array (LBA 2..130) at bytes 1024..66560 by 33792 bytes"
        ),
        "{err}"
    );
}

#[test]
fn damaged_primary_gpt_falls_back_to_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let image = partitioned(
        dir.path(),
        "damaged.img",
        64,
        "label: gpt\nstart=8M, size=30M, name=firmware\n",
    );
    // Break the primary header's CRC.
    write_region(&image, 512 + 40, &[0xff]);

    let err = combined_write_is_refused(&image, &p.combined);
    assert!(err.contains("partition 1 (GPT \"firmware\""), "{}", err);
    let report = json(&rk_inject(&[
        "verify",
        "--image",
        path_str(&image),
        "--json",
    ]));
    assert!(
        report["partition_table"]["notes"][0]
            .as_str()
            .unwrap()
            .contains("primary GPT header is not usable"),
        "{report}"
    );

    // Both copies broken: nothing can be trusted, so nothing is written.
    let last = 64 * MIB - 512;
    write_region(&image, last + 40, &[0xff]);
    let err = combined_write_is_refused(&image, &p.combined);
    assert!(err.contains("no valid GPT"), "{err}");
}

#[test]
fn logical_partition_in_an_extended_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let image = partitioned(
        dir.path(),
        "ext.img",
        64,
        "label: dos\nstart=4M, size=40M, type=5\nstart=8M, size=10M, type=83\n",
    );
    let err = combined_write_is_refused(&image, &p.combined);
    assert!(
        err.contains("partition 1 (MBR type 0x05 extended)"),
        "{err}"
    );
    assert!(
        err.contains("partition 5 (MBR type 0x83 Linux) at bytes 8388608.."),
        "{err}"
    );
}

#[test]
fn unpartitioned_ext4_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let image = dir.path().join("whole.img");
    fs::File::create(&image).unwrap().set_len(64 * MIB).unwrap();
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
    let err = combined_write_is_refused(&image, &p.combined);
    assert!(
        err.contains("the whole-disk ext2/3/4 volume (signature at byte 1080)"),
        "{}",
        err
    );
    run(Command::new("e2fsck").args(["-n", "-f"]).arg(&image));
}

#[test]
fn verify_shows_what_the_guides_dd_did_to_an_8_mib_layout() {
    // The guide's `dd … seek=64` plus a grep for "RKNS" passes on this image; verify does not.
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let sd = sd_image(dir.path(), "dd.img", 8);
    run(Command::new("dd")
        .arg(format!("if={}", p.combined.display()))
        .arg(format!("of={}", sd.path.display()))
        .args(["conv=notrunc", "seek=64", "bs=512", "status=none"]));
    let out = rk_inject(&["verify", "--image", path_str(&sd.path), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(
        report["loader"]["kind"], "rkns-v2",
        "the header itself is fine"
    );
    let findings = report["findings"].to_string();
    assert!(
        findings.contains("u-boot.itb at bytes 8388608.."),
        "{findings}"
    );
    assert!(
        findings.contains("overlaps partition 1 (MBR type 0x0b FAT32)"),
        "{findings}"
    );
    assert!(report["free_before_first_partition"].as_i64().unwrap() < 0);
    let text = rk_inject(&["verify", "--image", path_str(&sd.path)]);
    assert!(stdout(&text).contains("problem(s)"));
}

#[test]
fn sixteen_gib_sparse_image_stays_sparse() {
    // Memory and I/O follow the payload: a 16 GiB image gets the same few MiB written.
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let image = dir.path().join("big.img");
    fs::File::create(&image).unwrap().set_len(16 << 30).unwrap();
    sfdisk(
        &image,
        "label: dos\nstart=16M, size=30M, type=b\nstart=46M, type=83\n",
    );
    let out = write_combined(path_str(&image), path_str(&p.combined), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    use std::os::unix::fs::MetadataExt;
    let allocated = fs::metadata(&image).unwrap().blocks() * 512;
    assert!(
        allocated < 32 * MIB,
        "{allocated} bytes allocated: the image was copied or filled"
    );
    let out = rk_inject(&["verify", "--image", path_str(&image)]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

/// Detaches a loop device when the test ends, however it ends.
pub(crate) struct Loop(pub(crate) String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
#[cfg_attr(
    not(tests_as_root),
    ignore = "needs root for a loop device (losetup): run the suite as root, as CI does"
)]
fn block_device_through_losetup() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let sd = sd_image(dir.path(), "loop.img", 16);
    let table = sfdisk_dump(&sd.path);
    let out = run(Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&sd.path));
    let device = Loop(stdout(&out).trim().to_string());

    let out = write_combined(&device.0, path_str(&p.combined), &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["image"]["kind"], "block device");
    // While something else holds the device (as a mount does), verify still reads it and write
    // is refused rather than writing under the holder.
    let held = {
        use std::os::unix::fs::OpenOptionsExt;
        const O_EXCL: i32 = 0o200;
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_EXCL)
            .open(&device.0)
            .unwrap()
    };
    let out = rk_inject(&["verify", "--image", &device.0, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(
        json(&out)["image"]["size"],
        fs::metadata(&sd.path).unwrap().len()
    );
    let out = write_combined(&device.0, path_str(&p.combined), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "--image {}: cannot open the device exclusively (Device or resource busy",
            device.0
        )),
        "{}",
        stderr(&out)
    );
    drop(held);
    drop(device);
    let payload = fs::read(&p.combined).unwrap();
    assert_eq!(region(&sd.path, IDB, payload.len() as u64), payload);
    assert_eq!(sfdisk_dump(&sd.path), table);
    fsck_clean(&sd, dir.path());

    let low = sd_image(dir.path(), "loop-8.img", 8);
    let before = digest(&low.path);
    let out = run(Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&low.path));
    let device = Loop(stdout(&out).trim().to_string());
    let out = write_combined(&device.0, path_str(&p.combined), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("partition 1 (MBR type 0x0b FAT32)"));
    drop(device);
    assert_eq!(digest(&low.path), before);
}

#[test]
fn an_image_file_that_cannot_be_opened_for_writing_is_named_as_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let sd = sd_image(dir.path(), "read-only.img", 16);
    let before = digest(&sd.path);
    // Root ignores permission bits: an immutable file refuses root too.
    let _immutable = if cfg!(tests_as_root) {
        Some(crate::support::Immutable::set(&sd.path))
    } else {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&sd.path, fs::Permissions::from_mode(0o444)).unwrap();
        None
    };
    let out = write_combined(path_str(&sd.path), path_str(&p.combined), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_one_line(&err);
    assert!(
        err.contains(&format!("--image {}: cannot open: ", sd.path.display())),
        "{err}"
    );
    assert!(!err.contains("device"), "{err}");
    assert_eq!(digest(&sd.path), before);
}

#[test]
fn flakesmith_inject_runs_the_same_code() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let sd = sd_image(dir.path(), "cmd.img", 16);
    let args: Vec<String> = [
        "write",
        "--image",
        path_str(&sd.path),
        "--bootloader",
        path_str(&p.combined),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(flakesmith::cmd::inject::run(&args), 0);
    let payload = fs::read(&p.combined).unwrap();
    assert_eq!(region(&sd.path, IDB, payload.len() as u64), payload);

    let low = sd_image(dir.path(), "cmd-8.img", 8);
    let before = digest(&low.path);
    let args: Vec<String> = [
        "write",
        "--image",
        path_str(&low.path),
        "--bootloader",
        path_str(&p.combined),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(flakesmith::cmd::inject::run(&args), 1);
    assert_eq!(digest(&low.path), before);

    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = flakesmith::rockchip::cli::run_with(
        "flakesmith inject",
        &["--help".to_string()],
        &mut out,
        &mut err,
    );
    assert_eq!(code, 0);
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("flakesmith inject write --image IMG"));
}

#[test]
fn command_line_mistakes_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let image = partitioned(
        dir.path(),
        "cli.img",
        32,
        "label: dos\nstart=16M, type=83\n",
    );
    let img = path_str(&image);
    let boot = path_str(&p.combined);
    let before = digest(&image);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "no command given"),
        (vec!["flash"], "unknown command \"flash\""),
        (
            vec!["write", "--bootloader", boot],
            "--image IMG is required",
        ),
        (vec!["write", "--image", img], "give --bootloader"),
        (
            vec!["write", "--image", img, "--bootloader", boot, "--itb", boot],
            "excludes --idbloader and --itb",
        ),
        (
            vec!["write", "--image", img, "--idbloader", boot],
            "--idbloader and --itb go together",
        ),
        (
            vec![
                "write",
                "--image",
                img,
                "--bootloader",
                boot,
                "--soc",
                "rk9999",
            ],
            "--soc: unknown SoC \"rk9999\"; allowed: px30,",
        ),
        (
            vec!["write", "--image", img, "--bootloader", boot, "--force"],
            "unknown option --force",
        ),
        (
            vec!["write", "--image", img, "--bootloader"],
            "--bootloader needs a value",
        ),
        (
            vec![
                "write",
                "--image",
                "/nonexistent/x.img",
                "--bootloader",
                boot,
            ],
            "--image /nonexistent/x.img",
        ),
        (
            vec![
                "write",
                "--image",
                img,
                "--bootloader",
                "/nonexistent/u-boot.bin",
            ],
            "--bootloader /nonexistent/u-boot.bin: cannot open",
        ),
        (
            vec!["verify", "--image", img, "extra"],
            "unexpected argument \"extra\"",
        ),
        // Only an option's name is split at `=`; a stray argument is named whole.
        (
            vec!["verify", "--image", img, "a=b"],
            "unexpected argument \"a=b\"",
        ),
        (
            vec!["--image", img],
            "--image: a command comes first: write or verify (see --help)",
        ),
    ];
    for (args, expected) in cases {
        let out = rk_inject(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_one_line(&err);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    assert_eq!(digest(&image), before);

    let out = rk_inject(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("rk-inject verify --image IMG"));
    let out = rk_inject(&["write", "--help"]);
    assert!(stdout(&out).contains("--dry-run"));
    for (command, first_line) in [
        (
            "write",
            "Write a Rockchip boot loader into a disk image or block device.",
        ),
        ("verify", "Report the Rockchip boot loader an image holds."),
    ] {
        let out = rk_inject(&["help", command]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            stdout(&out).lines().next(),
            Some(first_line),
            "help {command}"
        );
    }
    let out = rk_inject(&["--version"]);
    assert_eq!(
        stdout(&out).trim(),
        format!("rk-inject {}", env!("CARGO_PKG_VERSION"))
    );
    // --name=value works too.
    let out = rk_inject(&[
        "write",
        &format!("--image={img}"),
        &format!("--bootloader={boot}"),
        "--soc=rk3588",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn json_refusal_is_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let sd = sd_image(dir.path(), "json.img", 8);
    let out = write_combined(path_str(&sd.path), path_str(&p.combined), &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["ok"], false);
    assert_eq!(report["error"]["kind"], "refused");
    assert_eq!(report["error"]["exit_code"], 1);
    assert!(report["error"]["message"]
        .as_str()
        .unwrap()
        .contains("partition 1"));
}

#[test]
fn vendored_crate_is_our_source_and_builds_and_passes_its_tests_offline_on_its_own() {
    let files = flakesmith::rockchip_vendor::vendored_sources();
    let names: Vec<&str> = files.iter().map(|(p, _, _)| p.as_str()).collect();
    for expected in [
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
        "src/rockchip/mod.rs",
        "src/rockchip/inject.rs",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    // The fuzzing entry point is ours only: generated repositories do not carry it.
    assert!(!names.iter().any(|n| n.contains("fuzz")), "{names:?}");
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/rockchip");
    let mut count = 0;
    for entry in fs::read_dir(&ours).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let vendored = files
            .iter()
            .find(|(p, _, _)| *p == format!("src/rockchip/{name}"))
            .unwrap_or_else(|| panic!("src/rockchip/{name} is not vendored"));
        assert_eq!(
            vendored.1,
            fs::read(&path).unwrap(),
            "src/rockchip/{name} differs from its vendored copy"
        );
        count += 1;
    }
    assert_eq!(files.len(), count + 3);
    let toml = String::from_utf8(
        files
            .iter()
            .find(|f| f.0 == "Cargo.toml")
            .unwrap()
            .1
            .clone(),
    )
    .unwrap();
    assert!(
        toml.contains("[dependencies]\n\n"),
        "the vendored crate must have no dependencies:\n{toml}"
    );

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rk-inject");
    for (path, contents, _) in &files {
        let target = root.join(path);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(target, contents).unwrap();
    }
    let lock_before = fs::read(root.join("Cargo.lock")).unwrap();
    let target_dir = dir.path().join("target");
    // Offline, with the lock file as it is, warnings as errors, in a target directory of its own.
    let cargo = |command: &str| {
        Command::new(env!("CARGO"))
            .args([command, "--offline", "--locked", "--quiet"])
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("RUSTFLAGS", "-D warnings")
            .env_remove("CARGO_BUILD_TARGET_DIR")
            .output()
            .unwrap()
    };
    let out = cargo("build");
    assert!(
        out.status.success(),
        "vendored rk-inject did not build:\n{}",
        stderr(&out)
    );
    assert_eq!(
        fs::read(root.join("Cargo.lock")).unwrap(),
        lock_before,
        "cargo rewrote Cargo.lock"
    );
    // Its unit tests build and pass there too: they may use nothing but std (and programs).
    let out = cargo("test");
    assert!(
        out.status.success(),
        "the vendored crate's tests failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );

    // The vendored binary says exactly what ours says about the same image.
    let p = rk35_payloads(dir.path());
    let sd = sd_image(dir.path(), "vendored.img", 16);
    let vendored = target_dir.join("debug/rk-inject");
    let out = run(Command::new(&vendored).args([
        "write",
        "--image",
        path_str(&sd.path),
        "--bootloader",
        path_str(&p.combined),
    ]));
    assert!(stdout(&out).contains("fsynced, read back and identical"));
    let theirs =
        run(Command::new(&vendored).args(["verify", "--image", path_str(&sd.path), "--json"]));
    let ours = rk_inject(&["verify", "--image", path_str(&sd.path), "--json"]);
    assert_eq!(stdout(&theirs), stdout(&ours));
}

#[test]
fn nix_in_the_book_chapter_parses() {
    // Real Nix (Debian's nix-bin) parses the flake snippet the chapter tells templates to use.
    let chapter =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src/rk1-boot.md"))
            .unwrap();
    let mut blocks = 0;
    let mut rest = chapter.as_str();
    while let Some(start) = rest.find("```nix\n") {
        let body = &rest[start + 7..];
        let end = body.find("```").expect("closed code block");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("snippet.nix");
        fs::write(&file, &body[..end]).unwrap();
        run(Command::new("nix-instantiate").arg("--parse").arg(&file));
        assert!(body[..end].contains(
            "write --image \"$img\" --bootloader ${pkgs.ubootTuringRK1}/u-boot-rockchip.bin"
        ));
        blocks += 1;
        rest = &body[end + 3..];
    }
    assert_eq!(blocks, 1);
}

#[test]
fn leftover_gpt_signature_under_a_valid_mbr_is_ignored_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let image = partitioned(
        dir.path(),
        "stale.img",
        64,
        "label: dos\nstart=16M, type=83\n",
    );
    write_region(&image, 512, b"EFI PART");
    let out = write_combined(path_str(&image), path_str(&p.combined), &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["partition_table"]["scheme"], "mbr");
    assert!(report["partition_table"]["notes"][0]
        .as_str()
        .unwrap()
        .contains("leftover GPT signature"));
}

#[test]
fn verify_of_an_image_without_a_loader_counts_free_space_from_sector_64() {
    let dir = tempfile::tempdir().unwrap();
    let sd = sd_image(dir.path(), "empty.img", 16);
    let out = rk_inject(&["verify", "--image", path_str(&sd.path)]);
    let text = stdout(&out);
    assert!(
        text.contains("between sector 64 (byte 32768) and"),
        "free space is counted from where a loader would start:\n{text}"
    );
    assert!(
        !text.contains("loader's end"),
        "there is no loader:\n{text}"
    );
}

/// The stages an RKNS v2 header lists, as (offset, size) in bytes from the loader's start. Read
/// from the format here (U-Boot's tools/rkcommon.c: the stage count in the high half of word
/// 2; one 88-byte entry per stage from byte 120, whose first word holds the offset in sectors in
/// its low half and the size in its high half), not by rk-inject's parser.
fn rkns_stages(payload: &Path) -> Vec<(u64, u64)> {
    let head = fs::read(payload).unwrap();
    assert_eq!(&head[..4], b"RKNS");
    let word = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().unwrap());
    (0..(word(8) >> 16) as usize)
        .map(|i| {
            let entry = word(120 + i * 88);
            (
                u64::from(entry & 0xffff) * 512,
                u64::from(entry >> 16) * 512,
            )
        })
        .collect()
}

#[test]
fn verify_names_each_stage_by_its_bytes_and_a_damaged_one_by_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let sd = sd_image(dir.path(), "stages.img", 16);
    let out = write_combined(path_str(&sd.path), path_str(&p.combined), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stages = rkns_stages(&p.combined);
    assert_eq!(stages.len(), 2);
    let stage_line = |number: usize, state: &str| {
        let (offset, size) = stages[number - 1];
        let start = IDB + offset;
        format!(
            "  stage {number}    bytes {start}..{} ({size} bytes), sha256 {state}",
            start + size
        )
    };
    let stage_json = |number: usize, ok: bool| {
        let (offset, size) = stages[number - 1];
        serde_json::json!({
            "number": number, "start": IDB + offset, "end": IDB + offset + size,
            "size": size, "sha256_ok": ok,
        })
    };
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "--image", path_str(&sd.path)];
        args.extend(extra);
        let out = rk_inject(&args);
        (out.status.code(), stdout(&out), stderr(&out))
    };
    let has_line = |text: &str, line: &str| text.lines().any(|l| l == line);
    let soc_line = |soc: &str, state: &str| format!("{:<12} {soc}: {state}", "soc");

    let (code, text, err) = verify(&[]);
    assert_eq!((code, err.as_str()), (Some(0), ""), "{text}");
    for line in [
        stage_line(1, "ok"),
        stage_line(2, "ok"),
        soc_line("rk3588", "matches the header"),
    ] {
        assert!(has_line(&text, &line), "no line {line:?} in:\n{text}");
    }
    let (code, text, _) = verify(&["--json"]);
    assert_eq!(code, Some(0));
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        report["loader"]["stages"],
        serde_json::json!([stage_json(1, true), stage_json(2, true)])
    );
    assert_eq!(report["loader"]["soc_matches"], true);

    // A loader for the SoC family before RKNS.
    let (code, text, _) = verify(&["--soc", "rk3399"]);
    assert_eq!(code, Some(1));
    assert!(
        has_line(&text, &soc_line("rk3399", "does NOT match the header")),
        "{text}"
    );

    // One byte of stage 2 changed on the image.
    let at = IDB + stages[1].0 + 100;
    let mut byte = region(&sd.path, at, 1);
    byte[0] ^= 0xff;
    write_region(&sd.path, at, &byte);
    let (code, text, err) = verify(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(err, "rk-inject: the image has problems (listed above)\n");
    for line in [stage_line(1, "ok"), stage_line(2, "MISMATCH")] {
        assert!(has_line(&text, &line), "no line {line:?} in:\n{text}");
    }
    // With --json the report is the whole answer: nothing on stderr.
    let (code, text, err) = verify(&["--json"]);
    assert_eq!((code, err.as_str()), (Some(1), ""));
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        report["loader"]["stages"],
        serde_json::json!([stage_json(1, true), stage_json(2, false)])
    );
}

/// An unpartitioned volume of each kind, made by its own tool, padded to `size_mib` with
/// zeros (so the loader fits and only the volume can stop the write).
fn volume(dir: &Path, name: &str, size_mib: u64, make: impl FnOnce(&Path)) -> std::path::PathBuf {
    let image = dir.join(name);
    fs::File::create(&image)
        .unwrap()
        .set_len(size_mib * MIB)
        .unwrap();
    make(&image);
    let len = fs::metadata(&image).unwrap().len();
    if len < size_mib * MIB {
        fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .unwrap()
            .set_len(size_mib * MIB)
            .unwrap();
    }
    image
}

/// What util-linux's libblkid (the reference for signatures) says `image` holds.
fn blkid_type(image: &Path) -> String {
    let out = run(Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "TYPE"])
        .arg(image));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
#[cfg_attr(
    not(tests_as_root),
    ignore = "needs root for a loop device (LVM's pvcreate): run the suite as root, as CI does"
)]
fn unpartitioned_volumes_of_every_kind_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let files = dir.path().join("files");
    fs::create_dir(&files).unwrap();
    fs::write(files.join("hello.txt"), "hello\n").unwrap();
    let key = dir.path().join("luks.key");
    fs::write(&key, "a test passphrase").unwrap();
    let luks = |kind: &'static str| {
        let key = key.clone();
        move |image: &Path| {
            run(Command::new("cryptsetup")
                .args(["luksFormat", "-q", "--batch-mode", "--type", kind])
                .args(["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"])
                .arg("--key-file")
                .arg(&key)
                .arg(image));
        }
    };
    let simple = |program: &'static str, args: &'static [&'static str]| {
        move |image: &Path| {
            run(Command::new(program).args(args).arg(image));
        }
    };
    type Make = Box<dyn FnOnce(&Path)>;
    // (rk-inject's name, blkid's TYPE, image size in MiB, how it is made)
    let cases: Vec<(&str, &str, u64, Make)> = vec![
        ("exFAT", "exfat", 64, Box::new(simple("mkfs.exfat", &[]))),
        (
            "NTFS",
            "ntfs",
            64,
            Box::new(simple("mkntfs", &["-F", "-Q", "-q"])),
        ),
        (
            "F2FS",
            "f2fs",
            64,
            Box::new(simple("mkfs.f2fs", &["-q", "-f"])),
        ),
        (
            "FAT",
            "vfat",
            64,
            Box::new(simple("mkfs.vfat", &["-F", "32"])),
        ),
        (
            "FAT",
            "vfat",
            16,
            Box::new(simple("mkfs.vfat", &["-F", "12"])),
        ),
        (
            "ext2/3/4",
            "ext2",
            64,
            Box::new(simple("mkfs.ext2", &["-q", "-F"])),
        ),
        (
            "btrfs",
            "btrfs",
            128,
            Box::new(simple("mkfs.btrfs", &["-q", "-f"])),
        ),
        (
            "XFS",
            "xfs",
            64,
            // mkfs.xfs makes file systems under 300 MB only for fstests, which it recognises
            // by these variables; xfs_repair -n accepts the result.
            Box::new(|image: &Path| {
                run(Command::new("mkfs.xfs")
                    .args(["-q", "-f"])
                    .env("TEST_DIR", "/tmp")
                    .env("TEST_DEV", image)
                    .env("QA_CHECK_FS", "1")
                    .arg(image));
            }),
        ),
        ("LUKS", "crypto_LUKS", 64, Box::new(luks("luks1"))),
        ("LUKS", "crypto_LUKS", 64, Box::new(luks("luks2"))),
        ("Linux swap", "swap", 64, Box::new(simple("mkswap", &[]))),
        (
            "ISO 9660",
            "iso9660",
            64,
            Box::new({
                let files = files.clone();
                move |image: &Path| {
                    run(Command::new("xorriso")
                        .args(["-as", "mkisofs", "-quiet", "-o"])
                        .arg(image)
                        .arg(&files));
                }
            }),
        ),
        (
            "squashfs",
            "squashfs",
            64,
            Box::new({
                let files = files.clone();
                move |image: &Path| {
                    fs::remove_file(image).unwrap();
                    run(Command::new("mksquashfs")
                        .arg(&files)
                        .arg(image)
                        .args(["-quiet", "-noappend"]));
                }
            }),
        ),
        ("LVM2", "LVM2_member", 64, Box::new(lvm_physical_volume)),
    ];
    for (i, (name, blkid, size, make)) in cases.into_iter().enumerate() {
        let image = volume(dir.path(), &format!("{i}.img"), size, make);
        assert_eq!(
            blkid_type(&image),
            blkid,
            "{name}: the fixture is not what it claims"
        );
        let err = combined_write_is_refused(&image, &p.combined);
        assert_one_line(&err);
        assert!(
            err.contains(&format!("the whole-disk {name} volume (signature at byte")),
            "{name}: {err}"
        );
        // `write --dry-run` and `verify` read the same layout.
        let out = rk_inject(&[
            "write",
            "--dry-run",
            "--image",
            path_str(&image),
            "--bootloader",
            path_str(&p.combined),
        ]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert_eq!(
            blkid_type(&image),
            blkid,
            "{name}: the volume is still there"
        );
    }
}

/// `pvcreate` takes block devices only: through a loop device, detached again.
fn lvm_physical_volume(image: &Path) {
    let out = run(Command::new("losetup")
        .args(["--find", "--show"])
        .arg(image));
    let device = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let made = Command::new("pvcreate")
        .args(["-q", "-y", "--devicesfile", "", &device])
        .output();
    run(Command::new("losetup").args(["-d", &device]));
    let made = made.unwrap();
    assert!(
        made.status.success(),
        "pvcreate: {}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// A tmpfs of `size` mounted in a temporary directory, unmounted when dropped (needs root).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path()));
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
#[cfg_attr(
    not(tests_as_root),
    ignore = "needs root to mount a small tmpfs: run the suite as root, as CI does"
)]
fn a_full_file_system_refuses_before_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let sd = sd_image(dir.path(), "sd.img", 16);
    // The image in a small tmpfs, sparse where the loader goes, and the rest of it filled up.
    let small = Tmpfs::mount("24m");
    let image = small.path().join("sd.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(&sd.path)
        .arg(&image));
    let filler = small.path().join("filler");
    let out = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "status=none"])
        .arg(format!("of={}", filler.display()))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "dd filled the tmpfs: it fails with ENOSPC"
    );
    // A few blocks stay free: fewer than the loader needs, more than one chunk.
    let free_kib = 1024;
    let len = fs::metadata(&filler).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(len - free_kib * 1024)
        .unwrap();

    use std::os::unix::fs::MetadataExt;
    let blocks = fs::metadata(&image).unwrap().blocks();
    let err = combined_write_is_refused(&image, &p.combined);
    assert_one_line(&err);
    assert!(
        err.contains("its file system has no room for the loader")
            && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(
        fs::metadata(&image).unwrap().blocks(),
        blocks,
        "the refused write allocated blocks in the image"
    );

    // With room made, the same write goes through and verifies.
    fs::remove_file(&filler).unwrap();
    let out = write_combined(path_str(&image), path_str(&p.combined), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = rk_inject(&["verify", "--image", path_str(&image)]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

/// An ext2 file system in a file, loop-mounted in a temporary directory (needs root): sparse
/// files, but no `fallocate`, so rk-inject cannot reserve space ahead there.
struct Ext2Mount {
    dir: tempfile::TempDir,
}

impl Ext2Mount {
    fn new(backing: &Path, size_mib: u64) -> Self {
        fs::File::create(backing)
            .unwrap()
            .set_len(size_mib * MIB)
            .unwrap();
        run(Command::new("mkfs.ext2").args(["-q", "-F"]).arg(backing));
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(backing)
            .arg(dir.path()));
        Self { dir }
    }
}

impl Drop for Ext2Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
#[cfg_attr(
    not(tests_as_root),
    ignore = "needs root to loop-mount ext2: run the suite as root, as CI does"
)]
fn a_write_that_fails_half_way_says_what_changed_and_how_to_finish() {
    let dir = tempfile::tempdir().unwrap();
    let p = rk35_payloads(dir.path());
    let sd = sd_image(dir.path(), "sd.img", 16);
    let small = Ext2Mount::new(&dir.path().join("ext2.img"), 24);
    let image = small.dir.path().join("sd.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(&sd.path)
        .arg(&image));
    let filler = small.dir.path().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64K", "status=none"])
        .arg(format!("of={}", filler.display()))
        .status();
    let len = fs::metadata(&filler).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(len - MIB)
        .unwrap();

    let out = write_combined(path_str(&image), path_str(&p.combined), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_one_line(&err);
    assert!(
        err.contains("sd.img was changed before this: bytes 32768..")
            && err.contains("now hold part of the new loader")
            && err.contains("Run rk-inject again once this is fixed"),
        "{err}"
    );
    // As it says: with room made, running it again finishes the loader.
    fs::remove_file(&filler).unwrap();
    let out = write_combined(path_str(&image), path_str(&p.combined), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = rk_inject(&["verify", "--image", path_str(&image)]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}
