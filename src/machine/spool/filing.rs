//! Where files go when they are finished with: `done/` or `failed/`, each with its
//! result beside it, or refused where they lie when they are not regular files. A
//! disk that refuses a move keeps the file where it is, to be filed again; old files
//! are cleared out of `done/` and `failed/`.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use log::{error, info, warn};

use super::layout::RESULT_SUFFIX;
use super::result::{SpoolResult, State};
use super::{RETRY_DISK, Spool, printable};
use crate::leaf::files::{self, Durability, sync_dir};
use crate::model::config::Retention;

/// A finished file still to be moved, with its result, from `from` to `to`.
#[derive(Debug)]
pub(super) struct Unfiled {
    pub from: PathBuf,
    pub name: String,
    pub to: PathBuf,
    pub result: SpoolResult,
    /// For a writer's file in `new/`: moved only while it is still the regular file
    /// of this inode that jobd looked at.
    pub inode: Option<u64>,
}

impl Spool {
    /// A regular file of `new/` that jobd will not run: to `failed/`, with the reason.
    pub(super) fn reject_new(&mut self, name: &str, reason: &str, inode: u64) {
        let mut result = SpoolResult::new(name);
        result.state = State::Failed;
        result.reason = Some(reason.to_string());
        // The reason may quote the file's own text: it must not write log lines.
        warn!("spool: refusing {}: {}", printable(name), printable(reason));
        let new = self.layout.new.clone();
        let failed = self.layout.failed.clone();
        self.finish_file(Unfiled {
            from: new,
            name: name.to_string(),
            to: failed,
            result,
            inode: Some(inode),
        });
    }

    /// A file jobd had claimed that cannot run (any more): to `failed/`, with its
    /// attempts so far and the reason.
    pub(super) fn reject_claimed(&mut self, name: &str, reason: &str, mut result: SpoolResult) {
        warn!("spool: refusing {}: {}", printable(name), printable(reason));
        result.state = State::Failed;
        result.reason = Some(reason.to_string());
        result.next_attempt_at = None;
        let running = self.layout.running.clone();
        let failed = self.layout.failed.clone();
        self.finish_file(Unfiled {
            from: running,
            name: name.to_string(),
            to: failed,
            result,
            inode: None,
        });
    }

    /// An entry of `new/` that is not a regular file (a folder, a FIFO, a link...):
    /// left where it lies, never moved into jobd's folders. Its reason goes into
    /// `failed/NAME.result.json`, and the log says it once, not at every scan.
    pub(super) fn refuse_in_place(&mut self, name: &str, reason: &str, inode: u64) {
        warn!("spool: refusing {}: {}", printable(name), printable(reason));
        let mut result = SpoolResult::new(name);
        result.state = State::Failed;
        result.reason = Some(reason.to_string());
        let path = self.layout.failed.join(format!("{name}{RESULT_SUFFIX}"));
        if let Err(e) = files::replace_shared(
            &path,
            &result.to_json(),
            self.modes.file,
            self.group,
            Durability::Unsynced,
        ) {
            warn!(
                "spool: cannot record why {} is refused: {e}",
                printable(name)
            );
        }
        self.refused.insert(OsString::from(name), inode);
        self.note_failed();
    }

    /// A name that cannot be reported in a result (not UTF-8, or too long to leave room
    /// for `.NAME.result.json.tmp`): a regular file moves to `failed/` alone, anything
    /// else stays where it lies.
    pub(super) fn refuse_unnamed(&mut self, name: &OsStr, reason: &str, inode: u64) {
        warn!("spool: refusing {name:?}: {reason}");
        let from = self.layout.new.join(name);
        let regular =
            fs::symlink_metadata(&from).is_ok_and(|m| m.file_type().is_file() && m.ino() == inode);
        if !regular {
            self.refused.insert(name.to_os_string(), inode);
            self.note_failed();
            return;
        }
        if fs::rename(&from, self.layout.failed.join(name)).is_ok() {
            let _ = sync_dir(&self.layout.failed);
            let _ = sync_dir(&self.layout.new);
            self.note_failed();
        }
    }

    /// A file that ran and succeeded, or failed for good: its result, then the file,
    /// from `running/` to `to`.
    pub(super) fn finish_claimed(&mut self, name: &str, to: PathBuf, result: SpoolResult) {
        let running = self.layout.running.clone();
        self.finish_file(Unfiled {
            from: running,
            name: name.to_string(),
            to,
            result,
            inode: None,
        });
    }

    /// File it away; a disk that refuses keeps it where it is, tried again every
    /// second, rather than forgotten (and run again at restart).
    fn finish_file(&mut self, file: Unfiled) {
        if let Err(e) = self.file_away(&file) {
            error!(
                "spool: cannot move {} to {}: {e}; trying again every {}s",
                printable(&file.name),
                file.to.display(),
                RETRY_DISK.as_secs()
            );
            self.unfiled.push(file);
        }
    }

    /// Write the result, then move the file beside it: a crash in between leaves the
    /// file where it was, to be handled again.
    fn file_away(&mut self, file: &Unfiled) -> io::Result<()> {
        let Unfiled {
            from,
            name,
            to,
            result,
            inode,
        } = file;
        if let Some(inode) = inode {
            let still = fs::symlink_metadata(from.join(name))
                .is_ok_and(|m| m.file_type().is_file() && m.ino() == *inode);
            if !still {
                // Taken back, or replaced: what is there now comes with its own event.
                return Ok(());
            }
        }
        files::replace_shared(
            &to.join(format!("{name}{RESULT_SUFFIX}")),
            &result.to_json(),
            self.modes.file,
            self.group,
            Durability::Synced,
        )?;
        match fs::rename(from.join(name), to.join(name)) {
            Ok(()) => {}
            // Taken away meanwhile: its result stays, for whoever looks.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Err(e) = sync_dir(to).and_then(|()| sync_dir(from)) {
            warn!(
                "spool: moved {} to {}, but the move may not survive a power loss: {e}",
                printable(name),
                to.display()
            );
        }
        let _ = fs::remove_file(self.layout.running.join(format!("{name}{RESULT_SUFFIX}")));
        if *to == self.layout.done {
            self.finished.0 += 1;
        } else {
            self.note_failed();
        }
        Ok(())
    }

    /// One more file in `failed/`, for the metrics and `jobctl status`.
    fn note_failed(&mut self) {
        self.finished.1 += 1;
        self.failures.push_back(SystemTime::now());
    }

    /// Try again to file what a full or read-only disk held back.
    pub(super) fn refile(&mut self, now: Instant) {
        if self.unfiled.is_empty() || self.refile_at.is_some_and(|at| now < at) {
            return;
        }
        let pending = std::mem::take(&mut self.unfiled);
        let mut failed = Vec::new();
        for file in pending {
            if self.file_away(&file).is_err() {
                failed.push(file);
            } else {
                info!("spool: filed {} at last", printable(&file.name));
            }
        }
        self.unfiled = failed;
        self.refile_at = (!self.unfiled.is_empty()).then(|| now + RETRY_DISK);
    }
}

/// The entries of a folder with their change times; jobd's temporaries left out.
pub(super) fn list(dir: &Path) -> Vec<(String, SystemTime)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if name.starts_with('.') && name.ends_with(".tmp") {
                return None;
            }
            let changed = entry.metadata().ok().map_or(SystemTime::UNIX_EPOCH, |m| {
                SystemTime::UNIX_EPOCH
                    + Duration::new(m.ctime().max(0) as u64, m.ctime_nsec().max(0) as u32)
            });
            Some((name, changed))
        })
        .collect()
}

/// The finished entries of `done/` or `failed/`: each file (with its result), and
/// each result alone (a refusal of an entry left where it lay), newest first.
pub(super) fn finished_entries(dir: &Path) -> Vec<(String, SystemTime)> {
    let entries = list(dir);
    let names: std::collections::HashSet<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let mut kept: Vec<(String, SystemTime)> = entries
        .iter()
        .filter(|(name, _)| match name.strip_suffix(RESULT_SUFFIX) {
            Some(stem) => !names.contains(stem),
            None => true,
        })
        .cloned()
        .collect();
    kept.sort_by_key(|(_, changed)| std::cmp::Reverse(*changed));
    kept
}

/// Remove the oldest finished files (and their results) beyond what `keep` allows.
pub(super) fn sweep(dir: &Path, keep: Retention) {
    if keep.count.is_none() && keep.age.is_none() {
        return;
    }
    let now = SystemTime::now();
    for (index, (name, changed)) in finished_entries(dir).iter().enumerate() {
        let too_many = keep.count.is_some_and(|count| index >= count as usize);
        let too_old = keep
            .age
            .is_some_and(|age| now.duration_since(*changed).unwrap_or_default() > age);
        if !(too_many || too_old) {
            continue;
        }
        let path = dir.join(name);
        // Only an earlier jobd moved folders here.
        let removed = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        if removed.is_ok() && !name.ends_with(RESULT_SUFFIX) {
            let _ = fs::remove_file(dir.join(format!("{name}{RESULT_SUFFIX}")));
        }
    }
}
