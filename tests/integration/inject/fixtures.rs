//! Fixtures made at test time with the real tools: U-Boot's `mkimage` (Debian u-boot-tools) for
//! Rockchip headers and FIT images, `sfdisk`, `mkfs.vfat` and `mkfs.ext4` for images laid out
//! the way nixpkgs' sd-image.nix lays them out.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

pub const MIB: u64 = 1 << 20;
/// `u-boot.itb` inside a combined `u-boot-rockchip.bin`: (16384 - 64) sectors in.
pub const ITB_IN_COMBINED: u64 = (16384 - 64) * 512;
/// sd-image.nix's default `firmwareSize` (MiB).
pub const FIRMWARE_MIB: u64 = 30;
/// A root file system big enough to hold a few files.
pub const ROOT_MIB: u64 = 16;

/// Deterministic filler bytes (xorshift64*), so fixtures are the same on every run.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs a tool and insists that it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the built `rk-inject` binary.
pub fn rk_inject(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rk-inject"))
        .args(args)
        .output()
        .expect("run rk-inject")
}

/// `rk-inject write` of a combined loader (`--bootloader`), then `extra` options.
pub fn write_combined(image: &str, payload: &str, extra: &[&str]) -> Output {
    let mut args = vec!["write", "--image", image, "--bootloader", payload];
    args.extend_from_slice(extra);
    rk_inject(&args)
}

/// `rk-inject write` of a split loader (`--idbloader`, `--itb`), then `extra` options.
pub fn write_split(image: &str, idbloader: &str, itb: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "write",
        "--image",
        image,
        "--idbloader",
        idbloader,
        "--itb",
        itb,
    ];
    args.extend_from_slice(extra);
    rk_inject(&args)
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// U-Boot's mkimage, stamping FITs with a fixed time (SOURCE_DATE_EPOCH) rather than the clock,
/// so a fixture is the same bytes on every run and a failing input reproduces.
pub fn mkimage() -> Command {
    let mut command = Command::new("mkimage");
    command.env("SOURCE_DATE_EPOCH", "1700000000");
    command
}

/// `mkimage -n SOC -T rksd -d tpl:spl`: a real idbloader with two stages.
pub fn idbloader(dir: &Path, soc: &str, tpl_len: usize, spl_len: usize) -> PathBuf {
    let tpl = dir.join(format!("tpl-{soc}.bin"));
    let spl = dir.join(format!("spl-{soc}.bin"));
    fs::write(&tpl, bytes(1, tpl_len)).unwrap();
    fs::write(&spl, bytes(2, spl_len)).unwrap();
    let out = dir.join(format!("idbloader-{soc}.img"));
    let data = format!("{}:{}", path_str(&tpl), path_str(&spl));
    run(mkimage()
        .args(["-n", soc, "-T", "rksd", "-d", &data])
        .arg(&out));
    out
}

/// `mkimage -E -f auto …`: a real FIT with its data outside the tree, like binman's u-boot.itb.
pub fn itb(dir: &Path, payload_len: usize) -> PathBuf {
    let blob = dir.join("u-boot-nodtb.bin");
    fs::write(&blob, bytes(3, payload_len)).unwrap();
    let out = dir.join("u-boot.itb");
    run(mkimage()
        .args([
            "-E", "-f", "auto", "-A", "arm64", "-O", "u-boot", "-T", "firmware",
        ])
        .args([
            "-C", "none", "-a", "0x200000", "-e", "0x200000", "-n", "U-Boot", "-d",
        ])
        .arg(&blob)
        .arg(&out));
    out
}

/// `u-boot-rockchip.bin` as U-Boot's binman lays it out: idbloader at 0, u-boot.itb at
/// (16384 - 64) sectors.
pub fn combined(dir: &Path, idbloader: &Path, itb: &Path) -> PathBuf {
    let mut data = fs::read(idbloader).unwrap();
    assert!(data.len() as u64 <= ITB_IN_COMBINED);
    data.resize(ITB_IN_COMBINED as usize, 0);
    data.extend(fs::read(itb).unwrap());
    let out = dir.join("u-boot-rockchip.bin");
    fs::write(&out, data).unwrap();
    out
}

/// The RK1 payloads every test needs.
pub struct Payloads {
    pub idbloader: PathBuf,
    pub itb: PathBuf,
    pub combined: PathBuf,
}

/// rk3568 stands in for rk3588 here: Debian's mkimage 2023.01 may not know rk3588, and both
/// write the same RKNS v2 header family.
pub fn rk35_payloads(dir: &Path) -> Payloads {
    let idbloader = idbloader(dir, "rk3568", 50_000, 150_000);
    let itb = itb(dir, 1_200_000);
    let combined = combined(dir, &idbloader, &itb);
    Payloads {
        idbloader,
        itb,
        combined,
    }
}

/// An image laid out like nixpkgs' sd-image.nix: MBR with label-id 0x2178694e, FAT partition 1
/// (type b, bootable) of 30 MiB at `gap_mib`, ext4 `NIXOS_SD` partition 2 after it.
pub struct SdImage {
    pub path: PathBuf,
    pub firmware: (u64, u64),
    pub root: (u64, u64),
}

pub fn sd_image(dir: &Path, name: &str, gap_mib: u64) -> SdImage {
    let work = dir.join(format!("{name}.parts"));
    let files = work.join("files/boot/extlinux");
    fs::create_dir_all(&files).unwrap();
    fs::write(files.join("extlinux.conf"), "DEFAULT nixos-default\n").unwrap();
    fs::write(work.join("files/nix-path-registration"), bytes(4, 100_000)).unwrap();

    let root_fs = work.join("root-fs.img");
    fs::File::create(&root_fs)
        .unwrap()
        .set_len(ROOT_MIB * MIB)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "NIXOS_SD", "-E", "root_owner=0:0", "-d"])
        .arg(work.join("files"))
        .arg(&root_fs));

    let firmware_fs = work.join("firmware_part.img");
    fs::File::create(&firmware_fs)
        .unwrap()
        .set_len(FIRMWARE_MIB * MIB)
        .unwrap();
    run(Command::new("mkfs.vfat")
        .args(["--invariant", "-i", "2178694e", "-n", "FIRMWARE"])
        .arg(&firmware_fs));

    let path = dir.join(name);
    let size = (gap_mib + FIRMWARE_MIB + ROOT_MIB) * MIB;
    fs::File::create(&path).unwrap().set_len(size).unwrap();
    let script = format!(
        "label: dos\nlabel-id: 0x2178694e\n\nstart={gap_mib}M, size={}, type=b, bootable\nstart={}M, type=83\n",
        FIRMWARE_MIB * MIB / 512,
        gap_mib + FIRMWARE_MIB
    );
    sfdisk(&path, &script);
    let firmware = (gap_mib * MIB, FIRMWARE_MIB * MIB);
    let root = ((gap_mib + FIRMWARE_MIB) * MIB, ROOT_MIB * MIB);
    copy_into(&firmware_fs, &path, firmware.0);
    copy_into(&root_fs, &path, root.0);
    fs::remove_dir_all(&work).unwrap();
    SdImage {
        path,
        firmware,
        root,
    }
}

/// A blank image of `size_mib` partitioned by an sfdisk script.
pub fn partitioned(dir: &Path, name: &str, size_mib: u64, script: &str) -> PathBuf {
    let path = dir.join(name);
    fs::File::create(&path)
        .unwrap()
        .set_len(size_mib * MIB)
        .unwrap();
    sfdisk(&path, script);
    path
}

pub fn sfdisk(image: &Path, script: &str) {
    let mut child = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(image)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sfdisk");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sfdisk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `sfdisk -d`, without the `device:` line (it names the path).
pub fn sfdisk_dump(image: &Path) -> String {
    let out = run(Command::new("sfdisk").arg("-d").arg(image));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("device:"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn copy_into(part: &Path, image: &Path, offset: u64) {
    let data = fs::read(part).unwrap();
    let mut file = fs::OpenOptions::new().write(true).open(image).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&data).unwrap();
}

/// Bytes `start..start+len` of a file.
pub fn region(path: &Path, start: u64, len: u64) -> Vec<u8> {
    let mut file = fs::File::open(path).unwrap();
    file.seek(SeekFrom::Start(start)).unwrap();
    let mut out = vec![0u8; len as usize];
    file.read_exact(&mut out).unwrap();
    out
}

/// Writes `bytes` at `start` in the file at `path`, in place (the file is not truncated).
pub fn write_region(path: &Path, start: u64, bytes: &[u8]) {
    let mut file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(start)).unwrap();
    file.write_all(bytes).unwrap();
}

/// SHA-256 of a whole file, streamed.
pub fn digest(path: &Path) -> Vec<u8> {
    let mut file = fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.finalize().to_vec()
}

/// `fsck.vfat -n` on the firmware partition and `e2fsck -n -f` on the root partition, each
/// copied out of the image first (neither tool takes an offset).
pub fn fsck_clean(image: &SdImage, dir: &Path) {
    let firmware = dir.join("fsck-firmware.img");
    fs::write(
        &firmware,
        region(&image.path, image.firmware.0, image.firmware.1),
    )
    .unwrap();
    run(Command::new("fsck.vfat").arg("-n").arg(&firmware));
    let root = dir.join("fsck-root.img");
    fs::write(&root, region(&image.path, image.root.0, image.root.1)).unwrap();
    run(Command::new("e2fsck").args(["-n", "-f"]).arg(&root));
    fs::remove_file(firmware).unwrap();
    fs::remove_file(root).unwrap();
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "rk-inject --json printed no JSON ({e}):\n{}\n{}",
            stdout(out),
            stderr(out)
        )
    })
}
