//! Pins in `deploy/known_hosts`, the file every deploy script checks nodes against with
//! `StrictHostKeyChecking=yes`. `flakesmith stamp` writes a node's pin before the node has ever
//! booted, so no deploy step trusts a key on first use; post-deploy.sh finds it pinned.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Relative to the repository; committed (public keys only).
pub const KNOWN_HOSTS: &str = "deploy/known_hosts";

/// Replaces the lines of `deploy/known_hosts` for `names` (a host name and its static address)
/// with one line per name for `public` (`ssh-ed25519 AAAA… comment`). Other lines are kept as
/// they are. Returns whether the file changed.
pub fn pin(repo: &Path, names: &[String], public: &str) -> Result<bool> {
    let path = repo.join(KNOWN_HOSTS);
    let old = match fs_err::symlink_metadata(&path) {
        Ok(meta) if !meta.is_file() => bail!("{KNOWN_HOSTS} is not a regular file"),
        Ok(_) => fs_err::read_to_string(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    // `type key`, without the comment: known_hosts compares type and key only.
    let mut fields = public.split_whitespace();
    let (Some(kind), Some(key)) = (fields.next(), fields.next()) else {
        bail!("not a public key line");
    };
    let mut lines: Vec<String> = old
        .lines()
        .filter(|line| {
            let patterns = line.split_whitespace().next().unwrap_or("");
            !patterns.split(',').any(|p| names.iter().any(|n| n == p))
        })
        .map(str::to_owned)
        .collect();
    lines.extend(names.iter().map(|name| format!("{name} {kind} {key}")));
    let new = lines.join("\n") + "\n";
    if new == old {
        return Ok(false);
    }
    let dir = path.parent().expect("deploy/ has a parent");
    if fs_err::symlink_metadata(dir).is_ok_and(|m| !m.is_dir()) {
        bail!("deploy/ is not a folder");
    }
    fs_err::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut temp, new.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    temp.persist(&path)
        .with_context(|| format!("writing {KNOWN_HOSTS}"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_replaces_the_hosts_old_lines_and_keeps_others() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("deploy")).unwrap();
        fs_err::write(
            dir.path().join(KNOWN_HOSTS),
            "other ssh-ed25519 AAAAother\n10.0.0.11 ssh-ed25519 AAAAold\nn1,10.0.0.11 ssh-rsa AAAAold\n",
        )
        .unwrap();
        let names = ["n1".to_string(), "10.0.0.11".to_string()];
        assert!(pin(dir.path(), &names, "ssh-ed25519 AAAAnew root@n1").unwrap());
        assert_eq!(
            fs_err::read_to_string(dir.path().join(KNOWN_HOSTS)).unwrap(),
            "other ssh-ed25519 AAAAother\nn1 ssh-ed25519 AAAAnew\n10.0.0.11 ssh-ed25519 AAAAnew\n"
        );
        assert!(!pin(dir.path(), &names, "ssh-ed25519 AAAAnew root@n1").unwrap());
    }
}
