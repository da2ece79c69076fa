//! The spool's folders, and who may do what in them: the modes jobd gives them
//! whatever the umask, and the group they belong to.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};

/// `tmp/ new/ running/ done/ failed/ values/` and `tasks.json` under one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: PathBuf,
    pub tmp: PathBuf,
    pub new: PathBuf,
    pub running: PathBuf,
    pub done: PathBuf,
    pub failed: PathBuf,
    pub values: PathBuf,
    pub tasks: PathBuf,
}

/// Suffix of the result written beside a file.
pub const RESULT_SUFFIX: &str = ".result.json";

/// The setgid bit: files made in the folder take its group, the submitters'.
const SETGID: u32 = 0o2000;
/// The sticky bit: a submitter may rename or remove only its own files.
const STICKY: u32 = 0o1000;

/// The modes of the spool's folders and of the files jobd writes there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    /// The spool folder, and `running/`: listed by the group; with `reach`, others may
    /// pass through (a task's own user, to its file and its value file).
    pub root: u32,
    pub running: u32,
    /// `tmp/` and `new/`: written by the group, each file renamed or removed by its
    /// owner alone, made with the folder's group.
    pub drop: u32,
    /// `done/` and `failed/`: read by the group.
    pub finished: u32,
    /// `values/`: passed through by anyone, listed by nobody but jobd.
    pub values: u32,
    /// The files jobd writes for the submitters (results, its copies of their files,
    /// `tasks.json`): read by the group, written by jobd alone.
    pub file: u32,
}

impl Modes {
    /// `shared`: others than jobd's user and root submit (through `spool.group`, or
    /// `allow_users` and `allow_groups` with the folders' own group). `reach`: a
    /// task's process running as a user outside the group must get to its file in
    /// `running/` and its value file in `values/`.
    pub fn new(shared: bool, reach: bool) -> Modes {
        let through = if reach { 0o011 } else { 0 };
        if !shared {
            return Modes {
                root: 0o700 | through,
                running: 0o700 | through,
                drop: 0o700,
                finished: 0o700,
                values: 0o711,
                file: 0o600,
            };
        }
        Modes {
            root: 0o750 | through,
            running: 0o750 | through,
            drop: SETGID | STICKY | 0o770,
            finished: 0o750,
            values: 0o711,
            file: 0o640,
        }
    }
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            tmp: root.join("tmp"),
            new: root.join("new"),
            running: root.join("running"),
            done: root.join("done"),
            failed: root.join("failed"),
            values: root.join("values"),
            tasks: root.join("tasks.json"),
        }
    }

    fn folders(&self, modes: Modes) -> [(&Path, u32); 7] {
        [
            (&self.root, modes.root),
            (&self.tmp, modes.drop),
            (&self.new, modes.drop),
            (&self.running, modes.running),
            (&self.done, modes.finished),
            (&self.failed, modes.finished),
            (&self.values, modes.values),
        ]
    }

    /// Create what is missing and give jobd's folders their modes and `group`. A
    /// folder jobd does not own (and, not being root, cannot change) is left as it is
    /// and only checked (`unsafe_permissions`). A folder made here gets the owner of
    /// the folder it is made in: `jobctl submit` run by root must not leave a spool
    /// that a jobd running as its own user cannot use.
    ///
    /// Returns what was changed or could not be done exactly, in words, for a warning:
    /// a folder whose mode someone changed, or the setgid bit refused (systemd's
    /// `RestrictSUIDSGID=`), so that files dropped keep their writer's group.
    pub fn prepare(&self, modes: Modes, group: Option<Gid>) -> io::Result<Vec<String>> {
        let parent = self.root.parent().unwrap_or(Path::new("/"));
        let owner = fs::metadata(parent).ok().map(|m| (m.uid(), m.gid()));
        // Folders above the spool made here are only passed through: jobd's state
        // directory, when the spool lies in it, is the state's to set up.
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
        let mut notes = Vec::new();
        for (dir, mode) in self.folders(modes) {
            let made = match DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(e),
            };
            let meta = fs::symlink_metadata(dir)?;
            if !meta.is_dir() {
                // A link or a file in its place: `unsafe_permissions` says so.
                continue;
            }
            let me = Uid::effective();
            if made {
                adopt(dir, owner)?;
            }
            if !(me.is_root() || meta.uid() == me.as_raw()) {
                continue;
            }
            if let Some(gid) = group
                && meta.gid() != gid.as_raw()
            {
                std::os::unix::fs::chown(dir, None, Some(gid.as_raw()))?;
            }
            let now = fs::symlink_metadata(dir)?.mode() & 0o7777;
            if now != mode {
                if !made {
                    notes.push(format!(
                        "{} had mode {now:o}; giving it mode {mode:o}",
                        dir.display()
                    ));
                }
                match fs::set_permissions(dir, fs::Permissions::from_mode(mode)) {
                    Err(e) if e.raw_os_error() == Some(nix::libc::EPERM) && mode & SETGID != 0 => {
                        let without = mode & !SETGID;
                        if now != without {
                            fs::set_permissions(dir, fs::Permissions::from_mode(without))?;
                        }
                        notes.push(format!(
                            "cannot set the setgid bit on {} ({e}; under systemd, RestrictSUIDSGID= \
                             forbids it): files dropped there keep their writer's group, so \
                             jobd can read them only if they are readable by others or owned \
                             by jobd's group; create the folder beforehand as root with \
                             `install -d -m 3770 -g GROUP {}`",
                            dir.display(),
                            dir.display()
                        ));
                    }
                    other => other?,
                }
            }
        }
        Ok(notes)
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
        for (dir, _) in self.folders(Modes::new(false, false)) {
            match fs::symlink_metadata(dir) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Some(format!("{} is a symbolic link", dir.display()));
                }
                Ok(meta) if !meta.is_dir() => {
                    return Some(format!("{} is not a folder", dir.display()));
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

    /// The folders above the root that members of `group` cannot pass through: they
    /// could not reach the spool at all.
    pub fn unreachable_by(&self, group: Gid) -> Option<PathBuf> {
        self.root.ancestors().skip(1).find_map(|dir| {
            let meta = fs::metadata(dir).ok()?;
            let mode = meta.mode();
            let passes = mode & 0o001 != 0 || (meta.gid() == group.as_raw() && mode & 0o010 != 0);
            (!passes).then(|| dir.to_path_buf())
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_get_their_modes_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(&dir.path().join("spool"));
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        let prepared = layout.prepare(Modes::new(true, false), None);
        nix::sys::stat::umask(old);
        prepared.unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&layout.root), 0o750);
        assert_eq!(mode(&layout.new), 0o3770);
        assert_eq!(mode(&layout.tmp), 0o3770);
        assert_eq!(mode(&layout.running), 0o750);
        assert_eq!(mode(&layout.done), 0o750);
        assert_eq!(mode(&layout.values), 0o711);
        // A folder whose mode was changed by hand gets its mode back.
        fs::set_permissions(&layout.done, fs::Permissions::from_mode(0o775)).unwrap();
        layout.prepare(Modes::new(true, true), None).unwrap();
        assert_eq!(mode(&layout.done), 0o750);
        assert_eq!(mode(&layout.running), 0o751);
        // For jobd alone (nobody else submits): nothing for the group.
        layout.prepare(Modes::new(false, false), None).unwrap();
        assert_eq!(mode(&layout.new), 0o700);
        assert_eq!(mode(&layout.done), 0o700);
        assert_eq!(mode(&layout.root), 0o700);
        assert!(layout.unsafe_permissions().is_none());
        fs::set_permissions(&layout.new, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            layout
                .unsafe_permissions()
                .unwrap()
                .contains("writable by every user")
        );
    }
}
