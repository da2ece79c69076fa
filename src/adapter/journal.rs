//! Runs in flight, on disk: each run is written to `state_dir/runs/RUN_ID.json` before
//! its process exists and removed when it ends. What a jobd killed outright (SIGKILL,
//! a crash) leaves there are the runs it never saw end: the next jobd finds their
//! processes by their `JOBD_RUN_ID`, stops them before their job fires again, and
//! records them as interrupted.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use log::{error, warn};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::leaf::files::{self, Durability};

const DIR: &str = "runs";
/// A record is a few hundred bytes; anything larger is not one of jobd's.
const MAX_RECORD: u64 = 64 * 1024;

/// One run in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub run_id: String,
    /// The job's or task's name as the history shows it (`JOB.on_failure` for a hook).
    pub name: String,
    /// What started it: `job`, `hook`, or `spool:FILE`.
    pub origin: String,
    pub attempt: u32,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    /// How long its processes get between SIGTERM and SIGKILL.
    pub kill_grace_ms: u64,
}

impl Entry {
    pub fn kill_grace(&self) -> Duration {
        Duration::from_millis(self.kill_grace_ms)
    }
}

#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// Set while writing fails, so that the error is logged once.
    failing: bool,
    /// Held for jobd's life: a second jobd on the same state directory would take the
    /// first one's runs for leftovers of a crash and stop them.
    _lock: Option<Flock<File>>,
}

/// Another jobd holds the journal of this state directory.
#[derive(Debug)]
pub struct InUse(pub PathBuf);

impl std::fmt::Display for InUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "another jobd is using the state directory {} (it holds the lock of {})",
            self.0.parent().unwrap_or(&self.0).display(),
            self.0.display()
        )
    }
}

impl std::error::Error for InUse {}

impl Journal {
    /// Open (and lock) the journal in `state_dir`. A folder that cannot be made or
    /// locked for another reason is logged and the journal goes on without its lock:
    /// jobs must run even on a broken disk.
    pub fn open(state_dir: &Path) -> Result<Journal, InUse> {
        let dir = state_dir.join(DIR);
        if let Err(e) = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
        {
            error!("cannot create {}: {e}", dir.display());
        }
        // The folder itself is locked: a file held open for writing would keep the
        // state directory from being remounted read-only.
        let lock = match File::open(&dir) {
            Ok(file) => match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => Some(lock),
                Err((_, Errno::EWOULDBLOCK)) => return Err(InUse(dir)),
                Err((_, errno)) => {
                    error!("cannot lock {}: {errno}", dir.display());
                    None
                }
            },
            Err(e) => {
                error!("cannot open {}: {e}", dir.display());
                None
            }
        };
        Ok(Journal {
            dir,
            failing: false,
            _lock: lock,
        })
    }

    /// Record a run about to start. A run is not held back when its record cannot be
    /// written: it is logged (once while writing fails) and the run goes on.
    pub fn starting(&mut self, entry: &Entry) {
        let bytes = serde_json::to_vec(entry).expect("an entry serializes");
        match files::replace(
            &self.path(&entry.run_id),
            &bytes,
            0o600,
            Durability::Unsynced,
        ) {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                error!(
                    "cannot record run {} in {}: {e}; if jobd is killed while it runs, \
                     the next jobd will not find it",
                    entry.run_id,
                    self.dir.display()
                );
            }
            Err(_) => {}
        }
    }

    /// A run ended: forget it.
    pub fn ended(&mut self, run_id: &str) {
        match fs::remove_file(self.path(run_id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!("cannot remove the record of run {run_id}: {e}"),
        }
    }

    /// The runs an earlier jobd left: started and never seen to end. Records that
    /// cannot be read are removed and logged.
    pub fn left_behind(&self) -> Vec<Entry> {
        let Ok(names) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut entries = Vec::new();
        for dirent in names.flatten() {
            let path = dirent.path();
            let name = dirent.file_name();
            if name.to_string_lossy().starts_with('.') {
                // A temporary a crash left behind.
                let _ = fs::remove_file(&path);
                continue;
            }
            match read(&path) {
                Some(entry) => entries.push(entry),
                None => {
                    warn!("removing {}: not a run record", path.display());
                    let _ = fs::remove_file(&path);
                }
            }
        }
        entries.sort_by_key(|e| e.started_at);
        entries
    }

    fn path(&self, run_id: &str) -> PathBuf {
        self.dir.join(format!("{run_id}.json"))
    }
}

fn read(path: &Path) -> Option<Entry> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_RECORD {
        return None;
    }
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, secs: i64) -> Entry {
        let at = DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
        Entry {
            run_id: id.into(),
            name: "job".into(),
            origin: "job".into(),
            attempt: 1,
            scheduled_at: at,
            started_at: at,
            kill_grace_ms: 10_000,
        }
    }

    #[test]
    fn what_started_and_never_ended_is_left_behind_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.starting(&entry("b-2", 2));
        journal.starting(&entry("b-1", 1));
        journal.starting(&entry("b-3", 3));
        journal.ended("b-3");
        journal.ended("no-such-run");
        fs::write(dir.path().join("runs/garbage.json"), "{").unwrap();
        assert!(Journal::open(dir.path()).is_err(), "locked by the first");
        let left = journal.left_behind();
        let ids: Vec<_> = left.iter().map(|e| e.run_id.as_str()).collect();
        assert_eq!(ids, ["b-1", "b-2"]);
        assert!(!dir.path().join("runs/garbage.json").exists());
        assert_eq!(left[0].kill_grace(), Duration::from_secs(10));
    }
}
