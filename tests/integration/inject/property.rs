//! The fuzz target's stable twin: `flakesmith::rockchip_fuzz::exercise` (what
//! fuzz/fuzz_targets/parsers.rs runs under libFuzzer) fed with deterministic mutations of real
//! seeds (mkimage headers and FITs, sfdisk MBR/EBR and GPT tables). Mutations sometimes repair
//! the GPT CRCs and the RKNS header digest afterwards, so the parsers get past their integrity
//! checks. Unlike libFuzzer it has no coverage feedback; it runs on stable Rust and in CI.
//! RK_INJECT_FUZZ_ITERS sets the number of inputs (default 5000), RK_INJECT_FUZZ_SEED the seed.

use std::fs;
use std::io::Cursor;
use std::path::Path;

use flakesmith::rockchip::gpt::crc32;
use flakesmith::rockchip::layout::Layout;
use flakesmith::rockchip::sha256::Sha256;
use flakesmith::rockchip::{header, layout::Scheme};
use flakesmith::rockchip_fuzz::exercise;

use super::fixtures::{self, run};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: [u32; 12] = [
    0,
    1,
    2,
    4,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0xffff_ffff,
    0x0ff0_aa55,
];

fn seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for soc in ["rk3568", "rk3399"] {
        seeds.push(fs::read(fixtures::idbloader(dir, soc, 2_000, 3_000)).unwrap());
    }
    let spl = dir.join("spl3188.bin");
    fs::write(&spl, fixtures::bytes(5, 3_000)).unwrap();
    let rk3188 = dir.join("rk3188.img");
    run(fixtures::mkimage()
        .args(["-n", "rk3188", "-T", "rksd", "-d"])
        .arg(&spl)
        .arg(&rk3188));
    seeds.push(fs::read(rk3188).unwrap());
    seeds.push(fs::read(fixtures::itb(dir, 3_000)).unwrap());
    let blob = dir.join("blob.bin");
    fs::write(&blob, fixtures::bytes(6, 2_000)).unwrap();
    let embedded = dir.join("embedded.itb");
    run(fixtures::mkimage()
        .args([
            "-f", "auto", "-A", "arm64", "-O", "u-boot", "-T", "firmware", "-C", "none",
        ])
        .args(["-a", "0", "-e", "0", "-n", "U-Boot", "-d"])
        .arg(&blob)
        .arg(&embedded));
    seeds.push(fs::read(embedded).unwrap());
    // Fixed disk and partition ids (sfdisk draws random ones), so the seeds are the same bytes
    // on every run.
    let tables = [
        ("mbr.img", "label: dos\nlabel-id: 0x2178694e\nstart=100, size=200, type=b, bootable\nstart=400, size=100, type=83\n"),
        ("ebr.img", "label: dos\nlabel-id: 0x0eb0eb0e\nstart=100, size=300, type=5\nstart=120, size=50, type=83\nstart=200, size=50, type=82\n"),
        ("gpt.img", "label: gpt\nlabel-id: 6B0C6E0D-3C8A-4F4B-9D55-3B6F6E1A0001\nfirst-lba: 34\nstart=40, size=100, name=firmware, uuid=6B0C6E0D-3C8A-4F4B-9D55-3B6F6E1A0002\nstart=200, size=100, name=nixos, uuid=6B0C6E0D-3C8A-4F4B-9D55-3B6F6E1A0003\n"),
        ("hybrid.img", "label: gpt\nlabel-id: 6B0C6E0D-3C8A-4F4B-9D55-3B6F6E1A0004\nfirst-lba: 34\nstart=40, size=100, name=p1, uuid=6B0C6E0D-3C8A-4F4B-9D55-3B6F6E1A0005\n"),
    ];
    for (name, script) in tables {
        let path = dir.join(name);
        fs::File::create(&path)
            .unwrap()
            .set_len(256 * 1024)
            .unwrap();
        fixtures::sfdisk(&path, script);
        let mut data = fs::read(path).unwrap();
        if name == "hybrid.img" {
            // A hybrid MBR: slot 2 of the protective MBR names GPT partition 1 as FAT.
            let slot = 446 + 16;
            data[slot + 4] = 0x0b;
            data[slot + 8..slot + 12].copy_from_slice(&40u32.to_le_bytes());
            data[slot + 12..slot + 16].copy_from_slice(&100u32.to_le_bytes());
        }
        seeds.push(data);
    }
    // An image with a loader at sector 64 behind a GPT: the verify path end to end.
    let mut image = seeds[seeds.len() - 2].clone();
    let loader = &seeds[0];
    image[32768..32768 + loader.len()].copy_from_slice(loader);
    seeds.push(image);
    seeds
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 => {
                for _ in 0..1 + rng.below(8) {
                    if !data.is_empty() {
                        let at = rng.below(data.len());
                        data[at] ^= 1 << rng.below(8);
                    }
                }
            }
            1 => {
                if data.len() >= 4 {
                    // Aim at header fields: the first 2 KiB, the GPT header, and sector 64.
                    let window = [0usize, 512, 32768][rng.below(3)];
                    let at = (window + rng.below(2048)).min(data.len() - 4) & !3;
                    let value = INTERESTING[rng.below(INTERESTING.len())];
                    let bytes = if rng.below(2) == 0 {
                        value.to_le_bytes()
                    } else {
                        value.to_be_bytes()
                    };
                    data[at..at + 4].copy_from_slice(&bytes);
                }
            }
            2 => {
                let len = rng.below(data.len() + 1);
                data.truncate(len);
            }
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() && !data.is_empty() {
                    let from = rng.below(other.len());
                    let len = rng.below(other.len() - from).min(4096);
                    let at = rng.below(data.len());
                    let end = (at + len).min(data.len());
                    data[at..end].copy_from_slice(&other[from..from + (end - at)]);
                }
            }
            4 => {
                let at = rng.below(data.len() + 1);
                let fill = vec![rng.next() as u8; rng.below(600)];
                data.splice(at..at, fill);
            }
            _ => {
                if !data.is_empty() {
                    let at = rng.below(data.len());
                    data[at] = [0x00, 0xff, 0x55, 0xaa, 0xee, 0x05][rng.below(6)];
                }
            }
        }
    }
    if rng.below(2) == 0 {
        repair(&mut data);
    }
    data
}

/// Recomputes GPT CRCs and the RKNS header digest so that a mutation reaches past them.
fn repair(data: &mut [u8]) {
    let sectors = data.len() / 512;
    for lba in [1, sectors.saturating_sub(1)] {
        let at = lba * 512;
        if lba == 0 || at + 512 > data.len() || &data[at..at + 8] != b"EFI PART" {
            continue;
        }
        let le32 =
            |d: &[u8], i: usize| u32::from_le_bytes(d[i..i + 4].try_into().unwrap()) as usize;
        let entries_lba = u64::from_le_bytes(data[at + 72..at + 80].try_into().unwrap()) as usize;
        let bytes = le32(data, at + 80).saturating_mul(le32(data, at + 84));
        let start = entries_lba.saturating_mul(512);
        if bytes <= 1 << 20 && start.saturating_add(bytes) <= data.len() {
            let crc = crc32(&data[start..start + bytes]);
            data[at + 88..at + 92].copy_from_slice(&crc.to_le_bytes());
        }
        let size = le32(data, at + 12).clamp(92, 512);
        data[at + 16..at + 20].fill(0);
        let crc = crc32(&data[at..at + size]);
        data[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
    }
    for base in [0usize, 32768] {
        if data.len() >= base + 2048 && &data[base..base + 4] == b"RKNS" {
            let digest = Sha256::digest(&data[base..base + 1536]);
            data[base + 1536..base + 1568].copy_from_slice(&digest);
        }
    }
}

#[test]
fn parsers_survive_mutated_real_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = seeds(dir.path());
    let iterations: usize = std::env::var("RK_INJECT_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let seed: u64 = std::env::var("RK_INJECT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1234);
    let mut rng = Rng(seed | 1);

    for data in &seeds {
        exercise(data);
    }
    let (mut headers, mut gpt_tables, mut mbr_tables) = (0, 0, 0);
    for i in 0..iterations {
        let data = mutate(&mut rng, &seeds);
        let outcome = std::panic::catch_unwind(|| exercise(&data));
        if outcome.is_err() {
            let keep = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("rk-inject-fuzz-{seed}-{i}.bin"));
            fs::write(&keep, &data).unwrap();
            panic!(
                "input {i} (seed {seed}) broke a parser; saved to {}",
                keep.display()
            );
        }
        if header::parse(&data).is_ok() {
            headers += 1;
        }
        match Layout::read(&mut Cursor::new(&data[..]), data.len() as u64).map(|l| l.scheme) {
            Ok(Scheme::Gpt) => gpt_tables += 1,
            Ok(Scheme::Mbr) => mbr_tables += 1,
            _ => {}
        }
    }
    eprintln!("{iterations} inputs: {headers} with a loader header, {gpt_tables} with a GPT, {mbr_tables} with an MBR");
    // The mutations must keep reaching past the parsers' first checks, or this test tests little.
    let floor = iterations / 20;
    assert!(
        headers > floor,
        "only {headers} of {iterations} inputs had a loader header"
    );
    assert!(
        gpt_tables > floor,
        "only {gpt_tables} of {iterations} inputs had a usable GPT"
    );
    assert!(
        mbr_tables > floor,
        "only {mbr_tables} of {iterations} inputs had a usable MBR"
    );
}

#[test]
fn the_seeds_are_the_same_bytes_on_every_run() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = seeds(a.path());
    // A FIT stamped with the clock would differ a second later.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = seeds(b.path());
    assert_eq!(first.len(), second.len());
    for (i, (x, y)) in first.iter().zip(&second).enumerate() {
        assert!(x == y, "seed {i} differs between two runs");
    }
}
