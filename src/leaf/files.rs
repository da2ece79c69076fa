//! Writing jobd's own files: whole or not at all, with the mode jobd chooses whatever
//! the umask, and directory entries made durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Whether a replaced file must survive a power cut (an fsync before the rename), or
/// only a crash of jobd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Synced,
    Unsynced,
}

/// Replace `path` with `bytes` so that a reader sees the old file or the whole new one:
/// a hidden temporary file beside it with mode `mode` (the umask does not apply),
/// written, perhaps synced, then renamed over it. The caller syncs the folder when the
/// rename itself must be durable. A failed write leaves no temporary behind.
pub fn replace(path: &Path, bytes: &[u8], mode: u32, durability: Durability) -> io::Result<()> {
    replace_shared(path, bytes, mode, None, durability)
}

/// `replace`, the new file also given to `group` (one jobd's user belongs to): for the
/// files others read through that group, whatever group the folder would give.
pub fn replace_shared(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    group: Option<nix::unistd::Gid>,
    durability: Durability,
) -> io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.tmp"));
    let written = (|| {
        // A temporary left by a crash would keep its old mode: start anew.
        let _ = fs::remove_file(&temporary);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&temporary)?;
        if let Some(group) = group {
            nix::unistd::fchown(&file, None, Some(group))?;
        }
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        if durability == Durability::Synced {
            file.sync_all()?;
        }
        fs::rename(&temporary, path)
    })();
    if written.is_err() {
        // Half a file must not stay behind (a full disk): the next try starts anew.
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// Create `dir` and whichever of its parents are missing, each with exactly `mode`
/// (the umask does not apply). Folders that exist are left as they are.
pub fn create_dirs(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dirs(parent, mode)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(mode)),
        // Made by someone else meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Make a directory's entries (a rename into or out of it) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn a_replaced_file_has_the_chosen_mode_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o000));
        replace(&path, b"one", 0o600, Durability::Synced).unwrap();
        nix::sys::stat::umask(old);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        replace(&path, b"two", 0o640, Durability::Unsynced).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temporary left");
        assert!(
            replace(
                &dir.path().join("no/such/dir"),
                b"x",
                0o600,
                Durability::Synced
            )
            .is_err()
        );
    }

    #[test]
    fn folders_are_made_with_the_chosen_mode_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        create_dirs(&deep, 0o711).unwrap();
        nix::sys::stat::umask(old);
        for made in ["a", "a/b", "a/b/c"] {
            let mode = fs::metadata(dir.path().join(made)).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o711, "{made}");
        }
        fs::set_permissions(&deep, fs::Permissions::from_mode(0o700)).unwrap();
        create_dirs(&deep, 0o711).unwrap();
        assert_eq!(
            fs::metadata(&deep).unwrap().mode() & 0o777,
            0o700,
            "an existing folder is left alone"
        );
    }
}
