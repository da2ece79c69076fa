//! The spool's folders.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `tmp/ new/ running/ done/ failed/` under one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: PathBuf,
    pub tmp: PathBuf,
    pub new: PathBuf,
    pub running: PathBuf,
    pub done: PathBuf,
    pub failed: PathBuf,
}

/// Suffix of the result written beside a finished file.
pub const RESULT_SUFFIX: &str = ".result.json";

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            tmp: root.join("tmp"),
            new: root.join("new"),
            running: root.join("running"),
            done: root.join("done"),
            failed: root.join("failed"),
        }
    }

    /// Create what is missing. Writers drop files into `tmp/` and `new/`, so those are
    /// group-writable (give the folder to the web application's group); the rest is
    /// jobd's alone.
    ///
    /// A folder made here gets its mode exactly, whatever the umask (else 0770 would
    /// become 0750 under the usual 022 and shut out the group's writers), and the owner
    /// of the folder it is made in: `jobctl submit` run by root must not leave a spool
    /// that a jobd running as its own user cannot use.
    pub fn create(&self) -> io::Result<()> {
        let parent = self.root.parent().unwrap_or(Path::new("/"));
        let owner = fs::metadata(parent).ok().map(|m| (m.uid(), m.gid()));
        let made_root = !self.root.exists();
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.root)?;
        if made_root {
            adopt(&self.root, owner)?;
        }
        for (dir, mode) in [
            (&self.tmp, 0o770),
            (&self.new, 0o770),
            (&self.running, 0o750),
            (&self.done, 0o750),
            (&self.failed, 0o750),
        ] {
            match DirBuilder::new().mode(mode).create(dir) {
                Ok(()) => {
                    fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
                    adopt(dir, owner)?;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Take the spool's exclusive lock, on its root folder, without waiting: an error
    /// of kind `WouldBlock` means another process holds it. (A folder opened to read:
    /// no file to create, nothing that keeps the disk from being remounted read-only.)
    pub fn lock(&self) -> io::Result<nix::fcntl::Flock<File>> {
        let folder = File::open(&self.root)?;
        nix::fcntl::Flock::lock(folder, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| io::Error::from(errno))
    }

    /// A folder anyone may write to would let any local user queue work as jobd's user
    /// or remove its results: the reason, or `None` when every folder is safe.
    pub fn unsafe_permissions(&self) -> Option<String> {
        for dir in [
            &self.root,
            &self.tmp,
            &self.new,
            &self.running,
            &self.done,
            &self.failed,
        ] {
            match fs::symlink_metadata(dir) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Some(format!("{} is a symbolic link", dir.display()));
                }
                Ok(meta) if meta.mode() & 0o002 != 0 => {
                    return Some(format!(
                        "{} is writable by every user (mode {:o}); run `chmod o-w {}`",
                        dir.display(),
                        meta.permissions().mode() & 0o7777,
                        dir.display()
                    ));
                }
                Ok(_) => {}
                Err(e) => return Some(format!("{}: {e}", dir.display())),
            }
        }
        None
    }
}

/// Give a folder jobd just made the owner of the folder it was made in, when that
/// differs from who made it (root, in practice; anyone else may not chown).
fn adopt(dir: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    let Some((uid, gid)) = owner else {
        return Ok(());
    };
    let me = nix::unistd::geteuid();
    if !me.is_root() || uid == me.as_raw() {
        return Ok(());
    }
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
}
