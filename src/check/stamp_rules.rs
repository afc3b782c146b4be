//! Stamped images (`flakesmith stamp`) hold a node's SSH host key and age identity: never in
//! git, never readable by other users.

use anyhow::Result;

use super::{files::RepoFiles, Finding};
use crate::model::Answers;

pub fn stamped_images(files: &RepoFiles, _: &Answers) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for path in files.files.iter().filter(|p| p.ends_with(".img")) {
        let full = files.path(path);
        // Reads the partition table and the firmware partition's root only: cheap for an
        // image of any size, and false for anything that is not an sd-image.
        if !crate::stamp::is_stamped(&full) {
            continue;
        }
        if files.is_tracked(path) {
            findings.push(Finding::new(
                path.clone(),
                "a stamped image (it holds a node's private keys) is tracked by git",
                format!("`git rm --cached {path}`, delete it once flashed, and stamp the node again with new keys if the commit was ever pushed (move keys/<host>.ssh_host_ed25519_key* and keys/<host>.age away first)"),
            ));
        } else if files.is_addable(path) {
            findings.push(Finding::new(
                path.clone(),
                "a stamped image (it holds a node's private keys) is not ignored by git",
                "keep stamped images in stamped/ (git-ignored), and delete them once flashed",
            ));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs_err::metadata(&full)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                findings.push(Finding::new(
                    path.clone(),
                    format!("a stamped image with mode {mode:04o}: other users of this machine can read the node's private keys"),
                    format!("chmod 600 {path}, or delete it once flashed"),
                ));
            }
        }
    }
    Ok(findings)
}
