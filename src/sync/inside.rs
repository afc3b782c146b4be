//! Paths inside a repository, for every read and write flakesmith makes there.
//!
//! A repository is untrusted input (DESIGN.md, "Trust boundaries"): git can commit a symbolic
//! link anywhere, named like a generated file, its temporary or a directory above it. So a path
//! flakesmith acts on is relative, made of plain names only (no `/` at the start, no `..`, no
//! `.`), and no part of it that exists is a symbolic link: each component is looked at with
//! `symlink_metadata` just before the operation. New files are created exclusively (`O_EXCL`,
//! `O_NOFOLLOW`) and their mode is set on the open descriptor, never by path; renames and
//! removals act on the last component itself, which they never follow.
//!
//! What this does not stop: another local process that swaps a checked directory for a link
//! between the check and the operation. That needs write access to the repository while
//! flakesmith runs, which is already everything such an attack could gain.

use std::{
    io::Write,
    path::{Component, Path, PathBuf},
};

use anyhow::{Context, Result};

use crate::UsageError;

/// Checks that `rel` is a plain relative path (`a/b.nix`): no root, no `..`, no `.`, no empty
/// component.
pub(crate) fn check_relative(rel: &str) -> Result<()> {
    let plain = !rel.is_empty()
        && !rel.contains('\0')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if plain {
        Ok(())
    } else {
        Err(UsageError::new(format!(
            "'{}' is not a path inside the repository (absolute, or with '..')",
            rel.escape_debug()
        ))
        .into())
    }
}

/// `repo/rel`, after checking `rel` ([`check_relative`]) and that no component of it that exists
/// is a symbolic link, the last one included. Directories above it must be directories.
pub(crate) fn resolve(repo: &Path, rel: &str) -> Result<PathBuf> {
    check_relative(rel)?;
    let mut path = repo.to_path_buf();
    let mut parts = rel.split('/').peekable();
    while let Some(part) = parts.next() {
        path.push(part);
        let last = parts.peek().is_none();
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(symlink_error(repo, &path)),
            Ok(meta) if !last && !meta.is_dir() => {
                return Err(UsageError::new(format!(
                    "{} is not a directory, but {rel} is under it",
                    path.display()
                ))
                .into())
            }
            Ok(_) => {}
            // Nothing further down can exist either.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                path.extend(parts);
                return Ok(path);
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("reading {}", path.display())))
            }
        }
    }
    Ok(path)
}

fn symlink_error(repo: &Path, path: &Path) -> anyhow::Error {
    let shown = path.strip_prefix(repo).unwrap_or(path);
    UsageError::new(format!(
        "{} is a symbolic link: flakesmith never reads or writes through a link in the repository; replace it with the real file or directory",
        shown.display()
    ))
    .into()
}

/// `repo/rel` after checking it as [`resolve`] does, except that the last component may be a
/// link: for a rename onto it or a removal of it, which act on the link itself.
pub(crate) fn resolve_parent(repo: &Path, rel: &str) -> Result<PathBuf> {
    check_relative(rel)?;
    match rel.rsplit_once('/') {
        Some((dir, name)) => Ok(resolve(repo, dir)?.join(name)),
        None => Ok(repo.join(rel)),
    }
}

/// Creates the directory `rel` (with `mode`, less the umask) and its missing parents, one
/// component at a time, each checked as [`resolve`] does. Returns the directories it created,
/// parents first, relative to `repo`.
pub(crate) fn create_dirs(repo: &Path, rel: &str, mode: u32) -> Result<Vec<String>> {
    check_relative(rel)?;
    let mut created = Vec::new();
    let mut done = String::new();
    for part in rel.split('/') {
        if !done.is_empty() {
            done.push('/');
        }
        done.push_str(part);
        let path = resolve(repo, &done)?;
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, mode);
        match builder.create(&path) {
            Ok(()) => created.push(done.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // resolve() saw no link; a file there is no directory to write into.
                if !std::fs::symlink_metadata(&path)?.is_dir() {
                    return Err(
                        UsageError::new(format!("{} is not a directory", path.display())).into(),
                    );
                }
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("creating {}", path.display())))
            }
        }
    }
    Ok(created)
}

/// Creates the new file `path` (which must not exist, not even as a dangling link) with `mode`
/// and writes `contents`; returns it, to sync or drop. The caller checked the parents
/// ([`resolve`]).
pub(crate) fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<fs_err::File> {
    let mut file = open_new(path, mode)?;
    file.write_all(contents)?;
    set_mode(&file, mode)?;
    Ok(file)
}

/// Takes group and other permissions off the directory `path` (a `keys/` made by hand with a
/// looser mode), through a descriptor opened without following a link.
pub(crate) fn make_private_dir(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mode = dir.metadata()?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            dir.set_permissions(std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("setting the mode of {}", path.display()))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Opens a new file exclusively: `O_CREAT | O_EXCL | O_NOFOLLOW`, so neither an existing file
/// nor a planted link is ever opened. `mode` applies from the first byte (less the umask).
pub(crate) fn open_new(path: &Path, mode: u32) -> Result<fs_err::File> {
    let mut options = fs_err::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use fs_err::os::unix::fs::OpenOptionsExt;
        options
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    }
    #[cfg(not(unix))]
    let _ = mode;
    Ok(options.open(path)?)
}

/// Sets the mode on the open file (fchmod), never by path, so no link is followed.
fn set_mode(file: &fs_err::File, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", file.path().display()))?;
    }
    #[cfg(not(unix))]
    let _ = (file, mode);
    Ok(())
}

/// Reads the regular file `repo/rel`, or `None` when it does not exist. A link, anywhere on the
/// way, is refused ([`resolve`]), so a planted `common.nix -> ~/.ssh/id_ed25519` is never read
/// (and so never shown in a diff or merged into a file).
pub(crate) fn read_file(repo: &Path, rel: &str) -> Result<Option<Vec<u8>>> {
    read_file_within(repo, rel, u64::MAX)
}

/// [`read_file`] of a file that is never larger than `max` bytes when flakesmith wrote it:
/// a larger one is refused after reading at most `max + 1` bytes, whatever its size.
pub(crate) fn read_file_within(repo: &Path, rel: &str, max: u64) -> Result<Option<Vec<u8>>> {
    let path = resolve(repo, rel)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    }
    let file = match options.open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(symlink_error(repo, &path)),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    };
    if !file.metadata()?.is_file() {
        return Err(UsageError::new(format!("{} is not a regular file", path.display())).into());
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, max.saturating_add(1)),
        &mut bytes,
    )
    .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > max {
        // Not a file flakesmith wrote: bad input in the repo, like any other refused one.
        return Err(
            UsageError::new(format!("{} is larger than {max} bytes", path.display())).into(),
        );
    }
    Ok(Some(bytes))
}

/// Random bytes from the kernel, hex-encoded: names and tokens nobody can guess in advance.
pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::io::Read::read_exact(&mut fs_err::File::open("/dev/urandom")?, &mut buf)?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_read_takes_a_file_of_the_bound_and_refuses_a_byte_more_without_reading_it_all() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("four"), "1234").unwrap();
        assert_eq!(
            read_file_within(repo.path(), "four", 4).unwrap().unwrap(),
            b"1234"
        );
        let e = read_file_within(repo.path(), "four", 3).unwrap_err();
        assert!(
            format!("{e}").ends_with("four is larger than 3 bytes"),
            "{e}"
        );
        // A sparse terabyte: refused after max + 1 bytes, not read into memory.
        let huge = std::fs::File::create(repo.path().join("huge")).unwrap();
        huge.set_len(1 << 40).unwrap();
        assert!(read_file_within(repo.path(), "huge", 1 << 20).is_err());
        assert_eq!(read_file_within(repo.path(), "none", 1).unwrap(), None);
    }

    #[test]
    fn only_plain_relative_paths_pass() {
        for ok in [
            "a",
            "a/b.nix",
            ".flakesmith/base/x",
            "nodes/.x.nix.flakesmith-tmp",
        ] {
            check_relative(ok).unwrap();
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "./a",
            "a\0b",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_file_where_a_directory_should_be_is_bad_input_naming_both() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("nodes"), "not a directory\n").unwrap();
        for result in [
            resolve(repo.path(), "nodes/rk1-node1.nix").map(|_| ()),
            read_file(repo.path(), "nodes/rk1-node1.nix").map(|_| ()),
            create_dirs(repo.path(), "nodes/sub", 0o755).map(|_| ()),
        ] {
            let e = result.unwrap_err();
            assert!(e.is::<UsageError>(), "{e:#}");
        }
        let e = resolve(repo.path(), "nodes/rk1-node1.nix").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{} is not a directory, but nodes/rk1-node1.nix is under it",
                repo.path().join("nodes").display()
            )
        );
        // The last component may be a file, of course.
        assert_eq!(
            resolve(repo.path(), "nodes").unwrap(),
            repo.path().join("nodes")
        );
    }

    #[test]
    fn a_directory_that_cannot_be_looked_at_or_made_is_an_error_naming_it() {
        let repo = tempfile::tempdir().unwrap();
        // Not there is fine; a name the file system cannot even look up is not.
        let long = "x".repeat(300);
        let e = resolve(repo.path(), &format!("{long}/a.nix")).unwrap_err();
        assert!(format!("{e:#}").starts_with("reading "), "{e:#}");

        std::fs::create_dir(repo.path().join("keys")).unwrap();
        let locked = super::super::testing::Unwritable::set(&repo.path().join("keys"));
        let e = create_dirs(repo.path(), "keys/sub", 0o700).unwrap_err();
        assert!(
            format!("{e:#}").starts_with(&format!(
                "creating {}: ",
                repo.path().join("keys/sub").display()
            )),
            "{e:#}"
        );
        drop(locked);
        assert_eq!(
            create_dirs(repo.path(), "keys/sub", 0o700).unwrap(),
            ["keys/sub"]
        );
    }

    #[test]
    fn a_directory_is_made_private_through_no_link_and_only_if_it_is_a_directory() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let repo = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        set(outside.path(), 0o755);
        std::os::unix::fs::symlink(outside.path(), repo.path().join("link")).unwrap();
        assert!(make_private_dir(&repo.path().join("link")).is_err());
        assert_eq!(mode(outside.path()), 0o755);

        let file = repo.path().join("file");
        std::fs::write(&file, "").unwrap();
        set(&file, 0o644);
        assert!(make_private_dir(&file).is_err());
        assert_eq!(mode(&file), 0o644);

        let keys = repo.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        set(&keys, 0o750);
        make_private_dir(&keys).unwrap();
        assert_eq!(mode(&keys), 0o700);
        // Private already: left as it is, sticky bit and all.
        set(&keys, 0o1700);
        make_private_dir(&keys).unwrap();
        assert_eq!(mode(&keys), 0o1700);
    }

    #[test]
    fn a_new_file_gets_exactly_its_mode_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        // The usual umask (022, 002) takes bits off 0o666 at open; a backup must keep them all.
        let repo = tempfile::tempdir().unwrap();
        let path = repo.path().join("backup");
        write_new(&path, b"x", 0o666).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o666);
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_an_error_not_an_absent_file() {
        // open(2) on a socket fails with ENXIO, for root too.
        let repo = tempfile::tempdir().unwrap();
        let _socket =
            std::os::unix::net::UnixListener::bind(repo.path().join("flake.nix")).unwrap();
        let e = read_file(repo.path(), "flake.nix").unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            format!(
                "reading {}: No such device or address (os error 6)",
                repo.path().join("flake.nix").display()
            )
        );
    }

    #[test]
    fn a_link_anywhere_on_the_way_is_refused() {
        let repo = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("f"), "outside\n").unwrap();
        std::os::unix::fs::symlink(outside.path(), repo.path().join("dir")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), repo.path().join("file")).unwrap();
        assert!(resolve(repo.path(), "dir/f").is_err());
        assert!(resolve(repo.path(), "file").is_err());
        assert!(read_file(repo.path(), "file").is_err());
        assert!(read_file(repo.path(), "dir/f").is_err());
        assert!(create_dirs(repo.path(), "dir/sub", 0o755).is_err());
        assert!(write_new(&repo.path().join("file"), b"x", 0o644).is_err());
        assert_eq!(
            std::fs::read_to_string(outside.path().join("f")).unwrap(),
            "outside\n"
        );
        assert!(!outside.path().join("sub").exists());
        assert_eq!(
            create_dirs(repo.path(), "a/b", 0o755).unwrap(),
            ["a", "a/b"]
        );
        assert_eq!(read_file(repo.path(), "a/none").unwrap(), None);
    }
}
