//! What the sync modules' unit tests share.

use std::path::{Path, PathBuf};

/// A directory in which nothing can be created, removed or renamed until this is dropped (a
/// panicking test included): `chattr +i` as root, who ignores permission bits, mode 0555 for
/// anyone else.
pub(crate) struct Unwritable(PathBuf);

impl Unwritable {
    pub(crate) fn set(dir: &Path) -> Self {
        if cfg!(tests_as_root) {
            let chattr = std::process::Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .output()
                .unwrap();
            assert!(
                chattr.status.success(),
                "chattr +i: {} (this test needs TMPDIR on ext4, xfs or btrfs)",
                String::from_utf8_lossy(&chattr.stderr)
            );
        } else {
            set_mode(dir, 0o555);
        }
        Self(dir.to_owned())
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        if cfg!(tests_as_root) {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.0)
                .status();
        } else {
            set_mode(&self.0, 0o755);
        }
    }
}

fn set_mode(dir: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
}
