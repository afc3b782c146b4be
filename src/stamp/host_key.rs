//! A node's SSH host key: made by flakesmith before the node first boots, so its public half can
//! be pinned in `deploy/known_hosts` (strict host key checking, no trust on first use) and its
//! private half written into the node's stamped image.
//!
//! `keys/<host>.ssh_host_ed25519_key` (0600, created exclusively, OpenSSH format as sshd reads it)
//! and `keys/<host>.ssh_host_ed25519_key.pub`, in the git-ignored keys/ beside the node's age
//! identity. Made with the `ssh-key` crate (RustCrypto), not by calling ssh-keygen.

use std::{io::Write, path::Path};

use anyhow::{bail, Context, Result};
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::secrets::KEYS_DIR;

/// The file name sshd uses, which the first-boot script installs under /etc/ssh.
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";

/// A node's host key pair, as the texts of its two files.
pub struct HostKey {
    pub host: String,
    /// `ssh-ed25519 AAAA… root@host`: one line, no newline.
    pub public: String,
    /// The OpenSSH private key file. Secret.
    private: zeroize::Zeroizing<String>,
}

impl HostKey {
    pub fn private_text(&self) -> &str {
        &self.private
    }

    fn from_private(host: &str, key: &PrivateKey) -> Result<Self> {
        if key.algorithm() != Algorithm::Ed25519 {
            bail!("the host key of {host} is {}, not ed25519", key.algorithm());
        }
        if key.is_encrypted() {
            bail!("the host key of {host} is encrypted: sshd needs it without a passphrase");
        }
        let private = key
            .to_openssh(LineEnding::LF)
            .context("encoding the host key")?;
        let public = key
            .public_key()
            .to_openssh()
            .context("encoding the public host key")?;
        Ok(Self {
            host: host.to_owned(),
            public,
            private: zeroize::Zeroizing::new(private.to_string()),
        })
    }
}

impl std::fmt::Debug for HostKey {
    // Never print the private half, not even in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey")
            .field("host", &self.host)
            .field("public", &self.public)
            .finish()
    }
}

/// `keys/<host>.ssh_host_ed25519_key` in `repo`.
pub fn host_key_path(repo: &Path, host: &str) -> std::path::PathBuf {
    repo.join(KEYS_DIR).join(format!("{host}.{HOST_KEY_FILE}"))
}

/// Reads the host key of `host`, or makes one (0600, never overwriting a file that appeared in
/// the meantime). Returns the key and whether it is new.
pub fn ensure_host_key(repo: &Path, host: &str) -> Result<(HostKey, bool)> {
    let path = host_key_path(repo, host);
    if let Some(key) = read_host_key(&path, host)? {
        return Ok((key, false));
    }
    let mut key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519)
        .context("making an ed25519 host key")?;
    key.set_comment(format!("root@{host}"));
    let made = HostKey::from_private(host, &key)?;
    crate::secrets::create_private_dir(&repo.join(KEYS_DIR))?;
    let mut file = crate::secrets::private_file(&path)?;
    file.write_all(made.private.as_bytes())?;
    file.sync_all()?;
    // Public, but in keys/ like the rest: 0600, as `flakesmith check` holds keys/ to. Made anew
    // (create_new, so a symlink planted there is not followed).
    let public_path = path.with_file_name(format!("{host}.{HOST_KEY_FILE}.pub"));
    match fs_err::remove_file(&public_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let mut public = crate::secrets::private_file(&public_path)?;
    public.write_all(format!("{}\n", made.public).as_bytes())?;
    Ok((made, true))
}

/// The host key in `path`, if the file exists. Refuses a file that is not an unencrypted ed25519
/// OpenSSH key, or one that others can read, naming the file but never its content.
fn read_host_key(path: &Path, host: &str) -> Result<Option<HostKey>> {
    let meta = match fs_err::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "{} is readable by others (mode {:o}): chmod 600 it first",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    let text = zeroize::Zeroizing::new(fs_err::read_to_string(path)?);
    let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|_| {
        anyhow::anyhow!(
            "{} is not an OpenSSH private key; move it away and run flakesmith stamp again to make a new one",
            path.display()
        )
    })?;
    HostKey::from_private(host, &key)
        .with_context(|| format!("reading {}", path.display()))
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_key_is_made_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (made, new) = ensure_host_key(dir.path(), "n1").unwrap();
        assert!(new);
        assert!(made.public.starts_with("ssh-ed25519 AAAA"));
        assert!(made
            .private_text()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        let (read, new) = ensure_host_key(dir.path(), "n1").unwrap();
        assert!(!new, "an existing key is kept");
        assert_eq!(read.public, made.public);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = host_key_path(dir.path(), "n1");
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = ensure_host_key(dir.path(), "n1").unwrap_err().to_string();
            assert!(err.contains("readable by others"), "{err}");
        }
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = ensure_host_key(dir.path(), "n1").unwrap();
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }
}
