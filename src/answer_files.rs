//! Files an answer names on the user's machine (outside any repository): SSH public keys and the
//! bootloader blob. Read for `init`'s flags and for the prompt's answers alike.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::{
    echo::quoted,
    model::{SshPublicKey, SSH_PUBLIC_KEY_HINT},
    secrets::private_key::private_key_in,
};

/// The RK3588 loader is written at 32 KiB and the first partition starts at 16 MiB.
const MAX_BLOB_SIZE: u64 = 16 * 1024 * 1024 - 32 * 1024;

/// Keys given as text or as files (`.pub`, or an authorized_keys file with several).
pub(crate) fn read_ssh_keys(items: &[String]) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let looks_like_key = item.split_whitespace().count() >= 2;
        let text = if looks_like_key || private_key_in(item).is_some() {
            item.to_owned()
        } else {
            let path = expand_home(item);
            // std's error, not fs_err's: that one repeats the path whole.
            let text = std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!(
                    "{} is neither an SSH public key nor a readable file ({e})",
                    quoted(item)
                )
            })?;
            // Named, never quoted: the first line that fails to parse would be the secret.
            if let Some(kind) = private_key_in(&text) {
                bail!(
                    "{} holds {}; give {SSH_PUBLIC_KEY_HINT}",
                    quoted(item),
                    kind.describe()
                );
            }
            text
        };
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let key = SshPublicKey::parse(line).map_err(anyhow::Error::msg)?;
            keys.push(key.as_str().to_owned());
        }
    }
    Ok(keys)
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// The bootloader blob at `path` (`~/` expanded), if it is an RK1 loader; the prompt's check too.
pub(crate) fn read_blob(path: &str) -> Result<Vec<u8>, String> {
    let path = expand_home(path);
    let bytes = fs_err::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.is_empty() || bytes.len() as u64 > MAX_BLOB_SIZE {
        return Err(format!(
            "{} is {} bytes; an RK1 loader written at 32 KiB must be 1 to {MAX_BLOB_SIZE} bytes to end before the first partition at 16 MiB",
            path.display(),
            bytes.len()
        ));
    }
    check_rk1_loader(&bytes).map_err(|why| format!("{} {why}", path.display()))?;
    Ok(bytes)
}

/// Whether `bytes` are a `u-boot-rockchip.bin` for the RK1, checked by the code rk-inject runs
/// before it writes one (the RKNS header and its SHA-256 digests, the idbloader's size, the FIT
/// at sector 16384), for the RK1's SoC, and with the u-boot.itb present: an idbloader alone
/// boots no U-Boot. Anything else (an SSH key, a password file) is refused without a byte of
/// it in the message: a file named by mistake may be a secret.
pub(crate) fn check_rk1_loader(bytes: &[u8]) -> Result<(), String> {
    use crate::rockchip::{cli::DEFAULT_SOC, header, inject, ITB_IN_COMBINED};
    let soc = header::find_soc(DEFAULT_SOC).expect("the RK1's SoC is in the table");
    if !bytes.starts_with(b"RKNS") {
        return Err(format!(
            "is not an RK1 loader: no RKNS header at byte 0 (the {DEFAULT_SOC} u-boot-rockchip.bin that U-Boot builds starts with one)"
        ));
    }
    let mut reader = std::io::Cursor::new(bytes);
    const NAME: &str = "blob";
    let role = inject::Role::Combined;
    let (_, fit) = inject::check_payload(&mut reader, bytes.len() as u64, role, NAME, soc)
        .map_err(|e| {
            let why = e.message.replace(&format!("{} {NAME} ", role.option()), "");
            // The injector shows a few bytes where a magic number was expected; not here.
            let why = why
                .split(" (found ")
                .next()
                .unwrap_or_default()
                .split(" (first bytes")
                .next()
                .unwrap_or_default()
                .to_owned();
            format!("is not an RK1 loader: {why}")
        })?;
    if fit.is_none() {
        return Err(format!(
            "is not a whole RK1 loader: it ends before byte {ITB_IN_COMBINED}, where u-boot.itb (sector 16384 once written) belongs"
        ));
    }
    Ok(())
}
