//! Built images on disk: finding the image file in a build output, the `images/` directory of GC
//! roots, and its SHA256SUMS manifest (optionally signed with `ssh-keygen -Y sign`).

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// The directory, inside the repository, that holds one GC-root link per built target and the
/// checksum manifest. The deploy scripts read images from here.
pub const IMAGES_DIR: &str = "images";
pub const SUMS_FILE: &str = "SHA256SUMS";

/// File names that are disk images: sd-image `.img` (raw or zstd), ISO, AWS `.vhd`/raw,
/// GCP `.tar.gz` (`<name>.tar.gz` from the UEFI builder of current nixpkgs, `.raw.tar.gz` from
/// older ones), qcow2.
const IMAGE_SUFFIXES: [&str; 10] = [
    ".img", ".img.zst", ".img.xz", ".iso", ".vhd", ".vhdx", ".vmdk", ".qcow2", ".raw", ".tar.gz",
];

pub fn is_image_name(name: &str) -> bool {
    IMAGE_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The image file of a build output: the output itself when it is one, else the largest image
/// file inside it (`nix-support/` holds metadata, never the image).
pub fn find_image(out: &Path) -> Option<PathBuf> {
    let meta = fs_err::metadata(out).ok()?;
    if meta.is_file() {
        let name = out.file_name()?.to_string_lossy();
        return is_image_name(&name).then(|| out.to_owned());
    }
    walkdir::WalkDir::new(out)
        .into_iter()
        .filter_entry(|e| e.file_name() != "nix-support")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && is_image_name(&e.file_name().to_string_lossy()))
        .filter_map(|e| e.metadata().ok().map(|m| (m.len(), e.into_path())))
        .max_by_key(|(len, _)| *len)
        .map(|(_, path)| path)
}

/// SHA-256 of a file, streaming, with `progress(bytes)` after each chunk.
pub fn sha256_file(path: &Path, mut progress: impl FnMut(u64)) -> Result<String> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        progress(n as u64);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Remove `link` if it is a symbolic link, refuse if it is anything else.
fn replace_link(link: &Path) -> Result<()> {
    if let Ok(meta) = fs_err::symlink_metadata(link) {
        if !meta.file_type().is_symlink() {
            bail!(
                "{} exists and is not a link flakesmith made; move it away",
                link.display()
            );
        }
        fs_err::remove_file(link)?;
    }
    Ok(())
}

/// Make `link` point at `target`, the files of an output of a chroot store.
pub fn link_outside_store(target: &Path, link: &Path) -> Result<()> {
    replace_link(link)?;
    fs_err::os::unix::fs::symlink(target, link)?;
    Ok(())
}

/// Make `link` a GC root for `store_path`, so `nix-collect-garbage` keeps the image.
pub fn add_gc_root(store_path: &Path, link: &Path) -> Result<()> {
    replace_link(link)?;
    if let Some(parent) = link.parent() {
        fs_err::create_dir_all(parent)?;
    }
    let output = Command::new("nix-store")
        .arg("--realise")
        .arg(store_path)
        .arg("--add-root")
        .arg(link)
        .output()
        .context("cannot run nix-store")?;
    if !output.status.success() {
        bail!(
            "nix-store --add-root {} failed: {}",
            link.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// One line of SHA256SUMS: the image path relative to the images directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sum {
    pub sha256: String,
    pub path: String,
}

/// The manifest text, in the format `sha256sum -c` reads.
pub fn sums_text(sums: &[Sum]) -> String {
    sums.iter()
        .map(|s| format!("{}  {}\n", s.sha256, s.path))
        .collect()
}

/// Write `dir/SHA256SUMS` (through a temporary file, so a reader never sees half of it).
pub fn write_sums(dir: &Path, sums: &[Sum]) -> Result<PathBuf> {
    let target = dir.join(SUMS_FILE);
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut temp, sums_text(sums).as_bytes())?;
    // NamedTempFile is 0600; a checksum manifest is for everyone to read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    temp.persist(&target)
        .with_context(|| format!("writing {}", target.display()))?;
    Ok(target)
}

/// The signing command: `ssh-keygen -Y sign -f KEY -n file SHA256SUMS` writes `SHA256SUMS.sig`.
pub fn sign_command(key: &Path, sums: &Path) -> Command {
    let mut command = Command::new("ssh-keygen");
    command
        .args(["-Y", "sign", "-f"])
        .arg(key)
        .args(["-n", "file"])
        .arg(sums);
    command
}

/// Sign the manifest; returns the signature's path.
pub fn sign(key: &Path, sums: &Path) -> Result<PathBuf> {
    let sig = PathBuf::from(format!("{}.sig", sums.display()));
    // ssh-keygen asks before overwriting an old signature; the old one is stale anyway.
    if sig.exists() {
        fs_err::remove_file(&sig)?;
    }
    let status = sign_command(key, sums)
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run ssh-keygen (install OpenSSH)")?;
    if !status.success() {
        bail!("ssh-keygen -Y sign -f {} failed", key.display());
    }
    Ok(sig)
}

/// `1.4 GiB`, `812 KiB`, `17 B`: the injector's formatting, so sizes read the same everywhere.
pub use crate::rockchip::human as human_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_largest_image_outside_nix_support() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        fs_err::create_dir_all(out.join("sd-image")).unwrap();
        fs_err::create_dir_all(out.join("nix-support")).unwrap();
        fs_err::write(out.join("sd-image/small.img"), b"1").unwrap();
        fs_err::write(out.join("sd-image/node.img"), b"12345").unwrap();
        fs_err::write(out.join("nix-support/huge.img"), vec![0; 100]).unwrap();
        fs_err::write(out.join("README"), vec![0; 100]).unwrap();
        assert_eq!(find_image(out), Some(out.join("sd-image/node.img")));
        assert_eq!(find_image(&out.join("README")), None);
        assert_eq!(
            find_image(&out.join("sd-image/small.img")),
            Some(out.join("sd-image/small.img"))
        );
    }

    #[test]
    fn gce_tarballs_of_both_builders_are_images() {
        // The UEFI (systemd-repart) builder names it <name>.tar.gz; older nixpkgs <name>.raw.tar.gz.
        assert!(is_image_name(
            "nixos-image-google-compute-25.11.x86_64-linux.tar.gz"
        ));
        assert!(is_image_name("nixos-image-25.05.x86_64-linux.raw.tar.gz"));
        assert!(!is_image_name("image-info.json"));
    }

    #[test]
    fn sums_are_sha256sum_format() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("x"), b"abc").unwrap();
        let sum = sha256_file(&dir.path().join("x"), |_| {}).unwrap();
        assert_eq!(
            sum,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sums_text(&[Sum {
                sha256: sum,
                path: "a/x".into()
            }]),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a/x\n"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(17), "17 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}
