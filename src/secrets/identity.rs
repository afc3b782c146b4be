//! A node's age identity file: `keys/<host>.age`, in the format `age-keygen` writes, so `age -d
//! -i`, `sops` (`SOPS_AGE_KEY_FILE`) and sops-nix (`sops.age.keyFile`) all read it.

use std::{path::Path, str::FromStr};

use age::secrecy::ExposeSecret;
use anyhow::{bail, Context, Result};

use crate::model::AgeRecipient;

/// The git-ignored folder of private keys, relative to the repo root.
pub const KEYS_DIR: &str = "keys";

/// What `keys/.gitignore` says: ignore everything here, this file included, so the keys stay
/// out of git even if the top-level `.gitignore` is edited.
pub(crate) const KEYS_GITIGNORE: &str =
    "# Private keys: never commit anything in this folder.\n*\n";

pub struct NodeIdentity {
    pub host: String,
    pub recipient: AgeRecipient,
    identity: age::x25519::Identity,
}

impl NodeIdentity {
    pub fn generate(host: &str) -> Self {
        let identity = age::x25519::Identity::generate();
        Self::from_identity(host, identity)
    }

    fn from_identity(host: &str, identity: age::x25519::Identity) -> Self {
        let recipient = AgeRecipient::parse(&identity.to_public().to_string())
            .expect("the age crate's own recipients parse");
        Self {
            host: host.to_owned(),
            recipient,
            identity,
        }
    }

    /// The file's text. Secret: only ever written to a 0600 file.
    pub(crate) fn file_text(&self) -> String {
        format!(
            "# age identity of node {host}, made by flakesmith. Secret: keep it in keys/ (git-ignored);\n\
             # deploy/post-deploy.sh copies it to the node's sops.age.keyFile.\n\
             # public key: {recipient}\n\
             {secret}\n",
            host = self.host,
            recipient = self.recipient,
            secret = self.identity.to_string().expose_secret()
        )
    }
}

/// Reads `path` (an age-keygen style file with one X25519 identity).
pub fn read_identity(path: &Path, host: &str) -> Result<NodeIdentity> {
    let text = fs_err::read_to_string(path)?;
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"));
    let (Some(line), None) = (lines.next(), lines.next()) else {
        bail!(
            "{} must hold exactly one age identity (AGE-SECRET-KEY-1…); move it away and run flakesmith again to make a new one",
            path.display()
        );
    };
    let identity = age::x25519::Identity::from_str(line)
        .map_err(|e| anyhow::anyhow!("{}: not a valid age identity: {e}", path.display()))?;
    Ok(NodeIdentity::from_identity(host, identity))
}

/// Creates `keys/<host>.age` (0600) in `repo`, and `keys/` (0700, with its `.gitignore`) when
/// missing. Refuses to overwrite an existing identity, and to write through a link.
pub fn write_identity(repo: &Path, identity: &NodeIdentity) -> Result<()> {
    use crate::sync::inside;
    inside::create_dirs(repo, KEYS_DIR, 0o700)?;
    // An existing keys/ may have been made by hand with a looser mode.
    inside::make_private_dir(&inside::resolve(repo, KEYS_DIR)?)?;
    let ignore = inside::resolve(repo, &format!("{KEYS_DIR}/.gitignore"))?;
    if ignore.symlink_metadata().is_err() {
        inside::write_new(&ignore, KEYS_GITIGNORE.as_bytes(), 0o644)?;
    }
    let path = inside::resolve(repo, &format!("{KEYS_DIR}/{}.age", identity.host))?;
    let file = inside::write_new(&path, identity.file_text().as_bytes(), 0o600)
        .with_context(|| format!("creating the node identity {}", path.display()))?;
    file.sync_all()?;
    Ok(())
}

// One function with a cfg block per platform, not two functions: cargo-mutants then mutates
// only code the tests compile.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !dir.exists() {
            // fs_err has no DirBuilder; the context names the path instead.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        // An existing keys/ may have been made by hand with a looser mode.
        let mode = fs_err::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    #[cfg(not(unix))]
    fs_err::create_dir_all(dir)?;
    Ok(())
}

/// Opens a new file that is 0600 from its first byte (no window in which it is readable).
pub(crate) fn private_file(path: &Path) -> Result<fs_err::File> {
    let mut options = fs_err::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use fs_err::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .with_context(|| format!("creating the node identity {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_survives_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let made = NodeIdentity::generate("n1");
        write_identity(dir.path(), &made).unwrap();
        let path = dir.path().join("keys/n1.age");
        let read = read_identity(&path, "n1").unwrap();
        assert_eq!(read.recipient, made.recipient);
        assert!(
            write_identity(dir.path(), &made).is_err(),
            "an identity is never overwritten"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir.path().join("keys")), 0o700);
        }
    }

    // cargo-mutants: only `stamp` calls these, and its tests did not look at the modes.
    #[cfg(unix)]
    #[test]
    fn private_dirs_are_made_or_tightened_to_0700_and_private_files_are_new_and_0600() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let root = tempfile::tempdir().unwrap();
        let made = root.path().join("a/b");
        create_private_dir(&made).unwrap();
        assert_eq!(mode(&made), 0o700);
        // Group or others may have any bit: each is taken away, the owner's kept.
        for loose in [0o755, 0o740, 0o704, 0o710, 0o701] {
            std::fs::set_permissions(&made, std::fs::Permissions::from_mode(loose)).unwrap();
            create_private_dir(&made).unwrap();
            assert_eq!(mode(&made), 0o700, "{loose:o}");
        }
        // A private dir is left as it is, even when stricter than 0700.
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o500)).unwrap();
        create_private_dir(&made).unwrap();
        assert_eq!(mode(&made), 0o500);
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o700)).unwrap();

        let file = made.join("key");
        drop(private_file(&file).unwrap());
        assert_eq!(mode(&file), 0o600);
        assert!(
            private_file(&file).is_err(),
            "an existing file is never reopened"
        );
    }
}
