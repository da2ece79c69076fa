//! One-off jobs: files dropped into `new/`, claimed into `running/`, finished into
//! `done/` or `failed/` with a result beside them. The spool is a trust boundary: a
//! file can only ask for a declared task, when, and with what that task accepts, and
//! it can never slow the loop or hold up another file. Nothing that arrives is lost: a
//! file jobd cannot run goes to `failed/` with the reason, and an entry that is not a
//! file is refused where it lies.
//!
//! Each concern has its file: `layout` (folders and modes), `intake` (from `new/`, in
//! bounded batches), `inspect` (the checks every file passes), `queue` (the files held
//! and their stages), `claim` (into `running/`, by copy), `attempts` (an attempt
//! recorded, ended, retried), `values` (what a child hands back), `filing` (into
//! `done/` and `failed/`), `recover` (what an earlier jobd left),
//! `tasks` (`tasks.json`), `listing` (what `jobctl spool` shows), `request` and
//! `result` (the formats).

pub mod layout;
pub mod listing;
pub mod request;
pub mod result;

mod attempts;
mod claim;
mod filing;
mod inspect;
mod intake;
mod queue;
mod recover;
mod tasks;
pub mod values;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use log::warn;
use nix::unistd::{Gid, Uid};

use crate::leaf::account;
use crate::leaf::now::Now;
use crate::model::config::{Config, Task};
use filing::Unfiled;
use inspect::Allowed;
use intake::Intake;
use layout::{Layout, Modes};
use queue::{Queue, Stage};

pub use inspect::MAX_FILE_BYTES;
pub use intake::Budget;
pub use queue::Counts;
pub use values::MAX_VALUE_BYTES;

/// How often old results are cleared out of `done/` and `failed/`.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How often jobd tries again to claim or file a spool file when the disk refused.
const RETRY_DISK: Duration = Duration::from_secs(1);
/// Longer names leave no room for `.NAME.result.json.tmp` within the 255 bytes a file
/// name may have.
const MAX_NAME_BYTES: usize = 200;

/// Why the spool cannot be used; jobd does not start (or a reload is refused).
#[derive(Debug)]
pub enum SpoolError {
    Create {
        dir: String,
        error: io::Error,
    },
    Unsafe(String),
    UnknownUser(String),
    UnknownGroup(String),
    UnknownSpoolGroup(String),
    /// jobd's own user is not in `spool.group`: it could not read the files, nor give
    /// the group its results.
    NotMember {
        group: String,
        user: String,
    },
    Watch(io::Error),
    /// Another jobd holds the spool.
    InUse(String),
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Create { dir, error } => {
                write!(f, "cannot set up the spool directory {dir}: {error}")
            }
            SpoolError::Unsafe(reason) => write!(f, "refusing an unsafe spool directory: {reason}"),
            SpoolError::UnknownUser(name) => {
                write!(
                    f,
                    "spool.allow_users: there is no user `{name}` on this system"
                )
            }
            SpoolError::UnknownGroup(name) => {
                write!(
                    f,
                    "spool.allow_groups: there is no group `{name}` on this system"
                )
            }
            SpoolError::UnknownSpoolGroup(name) => write!(
                f,
                "spool.group: there is no group `{name}` on this system (create it: groupadd {name})"
            ),
            SpoolError::NotMember { group, user } => write!(
                f,
                "spool.group: jobd's user `{user}` is not a member of group `{group}`, so it \
                 could not read the files submitted nor share their results; add it \
                 (`adduser {user} {group}` or `usermod -aG {group} {user}`) and restart jobd"
            ),
            SpoolError::Watch(error) => write!(f, "cannot watch the spool directory: {error}"),
            SpoolError::InUse(dir) => write!(
                f,
                "another jobd is using the spool directory {dir} (it holds its lock)"
            ),
        }
    }
}

impl std::error::Error for SpoolError {}

/// What to start for a claimed file: the daemon starts it as a run of `task`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub file: String,
    pub task: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub scheduled_at: DateTime<Utc>,
    pub attempt: u32,
    /// Claimed before this dispatch: by an earlier jobd (found in `running/` at start)
    /// or by an earlier attempt.
    pub claimed_before: bool,
}

/// The spool's files as the loop sees them.
pub struct Spool {
    layout: Layout,
    /// Held for jobd's life: two jobds on one spool would each take the other's
    /// running files for leftovers of a crash.
    _lock: nix::fcntl::Flock<std::fs::File>,
    intake: Intake,
    allowed: Allowed,
    /// `spool.group`: the group of the folders and of the files jobd writes there.
    group: Option<Gid>,
    /// The modes of the folders and of the files jobd writes there.
    modes: Modes,
    queue: Queue,
    /// Entries of `new/` refused where they lie, by inode: not looked at again.
    refused: HashMap<OsString, u64>,
    next_sweep: Instant,
    stopping: bool,
    /// Files moved to `done/` and to `failed/` since jobd started, for the metrics.
    finished: (u64, u64),
    /// When files went to `failed/`, for `jobctl status`: the last day's.
    failures: VecDeque<SystemTime>,
    /// Finished files a full or read-only disk kept from being filed, and when to try
    /// again.
    unfiled: Vec<Unfiled>,
    refile_at: Option<Instant>,
    /// A claim failed for lack of disk: no file is started before then.
    blocked_until: Option<Instant>,
    /// `dispatch` stopped at its budget with files left to look at.
    more_to_dispatch: bool,
}

impl Spool {
    /// Set up the layout, write `tasks.json`, and take up what an earlier jobd left:
    /// files in `running/` run again (their attempt counted); files in `new/` are
    /// taken in by the first turns of the loop, oldest first.
    pub fn open(config: &Config, now: Now) -> Result<Spool, SpoolError> {
        let layout = Layout::new(&config.spool.dir);
        let group = resolve_group(config)?;
        let create = |error| SpoolError::Create {
            dir: layout.root.display().to_string(),
            error,
        };
        let modes = modes(config);
        for note in layout.prepare(modes, group).map_err(create)? {
            warn!("spool: {note}");
        }
        if let Some(reason) = layout.unsafe_permissions() {
            return Err(SpoolError::Unsafe(reason));
        }
        warn_unreachable(&layout, config, group);
        warn_without_group(config);
        let lock = layout.lock().map_err(|error| match error.kind() {
            io::ErrorKind::WouldBlock => SpoolError::InUse(layout.root.display().to_string()),
            _ => SpoolError::Create {
                dir: layout.root.display().to_string(),
                error,
            },
        })?;
        let allowed = Allowed::resolve(config)?;
        // Watched before anything is read: a file arriving meanwhile is not missed.
        let intake = Intake::watch(&layout.new).map_err(SpoolError::Watch)?;
        values::clear(&layout.values);
        if let Err(e) = tasks::write(&layout.tasks, config, modes.file, group) {
            warn!("spool: cannot write {}: {e}", layout.tasks.display());
        }
        let day_ago = SystemTime::now() - Duration::from_secs(86_400);
        let mut failures: Vec<SystemTime> = filing::finished_entries(&layout.failed)
            .into_iter()
            .map(|(_, changed)| changed)
            .filter(|changed| *changed >= day_ago)
            .collect();
        failures.sort();
        let mut spool = Spool {
            layout,
            _lock: lock,
            intake,
            allowed,
            group,
            modes,
            queue: Queue::default(),
            refused: HashMap::new(),
            next_sweep: now.mono,
            stopping: false,
            finished: (0, 0),
            failures: failures.into(),
            unfiled: Vec::new(),
            refile_at: None,
            blocked_until: None,
            more_to_dispatch: false,
        };
        spool.recover(config, now);
        Ok(spool)
    }

    /// What `reload` would refuse in `config`, without applying it.
    pub fn check(config: &Config) -> Result<(), SpoolError> {
        resolve_group(config)?;
        Allowed::resolve(config).map(|_| ())
    }

    /// Take on a reloaded jobfile's spool settings (the folder itself stays).
    pub fn reload(&mut self, config: &Config) -> Result<(), SpoolError> {
        if config.spool.dir != self.layout.root {
            warn!(
                "spool.dir changed to {}: jobd keeps using {} until it restarts",
                config.spool.dir.display(),
                self.layout.root.display()
            );
        }
        let group = resolve_group(config)?;
        self.allowed = Allowed::resolve(config)?;
        let modes = modes(config);
        if (group, modes) != (self.group, self.modes) {
            match self.layout.prepare(modes, group) {
                Ok(notes) => notes.iter().for_each(|note| warn!("spool: {note}")),
                Err(e) => warn!("spool: cannot give the spool its new modes: {e}"),
            }
            warn_unreachable(&self.layout, config, group);
            warn_without_group(config);
        }
        self.group = group;
        self.modes = modes;
        if let Err(e) = tasks::write(&self.layout.tasks, config, modes.file, group) {
            warn!("spool: cannot write {}: {e}", self.layout.tasks.display());
        }
        Ok(())
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.intake.fd()
    }

    /// When a delayed file is next due, for the wall-clock timer.
    pub fn next_instant(&self) -> Option<DateTime<Utc>> {
        self.queue.next_delayed()
    }

    /// When a retry, a file created in place, a refiling or a clean-up is next due,
    /// for the poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        let refile =
            (!self.unfiled.is_empty()).then(|| self.refile_at.unwrap_or_else(Instant::now));
        // A claim retry that is due waits for the next dispatch (a free worker); as a
        // deadline in the past it would make poll spin.
        let claim = self.blocked_until.filter(|until| *until > Instant::now());
        [
            self.queue.next_retry(),
            self.intake.next_deadline(),
            refile,
            claim,
            Some(self.next_sweep),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Make what has come due wait for a worker; clean up old results.
    pub fn tick(&mut self, now: Now, config: &Config) {
        self.refile(now.mono);
        while let Some(key) = self.queue.due_delayed(now.wall) {
            self.queue.restage(key, Stage::Waiting, false);
        }
        while let Some(key) = self.queue.due_retry(now.mono) {
            self.queue.restage(key, Stage::Waiting, false);
        }
        self.intake.unclosed(now.mono);
        if now.mono >= self.next_sweep {
            self.next_sweep = now.mono + SWEEP_EVERY;
            filing::sweep(&self.layout.done, config.spool.keep_done);
            filing::sweep(&self.layout.failed, config.spool.keep_failed);
        }
    }

    /// Cluster mode: a claimed file's request went to the cluster's table (`Ok`, with
    /// what to say about it in the result's `reason`), or could not (`Err`, why). Filed
    /// to done/ with the state `forwarded`, or to failed/.
    pub fn forwarded(&mut self, name: &str, outcome: Result<String, String>) {
        let Some(item) = self
            .queue
            .in_running(name)
            .and_then(|key| self.queue.take(key))
        else {
            return;
        };
        let Stage::Running(active) = item.stage else {
            return;
        };
        let mut result = active.result;
        let to = match outcome {
            Ok(reason) => {
                result.state = result::State::Forwarded;
                result.reason = Some(reason);
                self.layout.done.clone()
            }
            Err(reason) => {
                result.state = result::State::Failed;
                result.reason = Some(reason);
                self.layout.failed.clone()
            }
        };
        self.finish_claimed(name, to, result);
    }

    /// Start nothing more: jobd is shutting down. Files waiting stay where they are.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Files held by stage; those a full disk keeps in `running/` count as running.
    pub fn counts(&self) -> Counts {
        let mut counts = self.queue.counts();
        counts.running += self.unfiled.len();
        counts
    }

    /// What keeps the spool from doing its work now, in words.
    pub fn problems(&self, config: &Config) -> Vec<String> {
        let mut problems = Vec::new();
        if self.blocked_until.is_some() {
            problems.push(format!(
                "spool: cannot claim files in {} (see the log); retrying",
                self.layout.new.display()
            ));
        }
        if !self.unfiled.is_empty() {
            problems.push(format!(
                "spool: {} finished file{} cannot be moved out of running/ (see the log); retrying",
                self.unfiled.len(),
                crate::leaf::words::plural(self.unfiled.len())
            ));
        }
        if self.intake.held > 0 {
            problems.push(format!(
                "spool: {} file{} wait in {}, untouched, beyond spool.max_queued ({}); they are \
                 taken in as the queue drains",
                self.intake.held,
                crate::leaf::words::plural(self.intake.held),
                self.layout.new.display(),
                config.spool.max_queued
            ));
        }
        problems
    }

    /// Files moved to `done/` and to `failed/` since jobd started.
    pub fn finished(&self) -> (u64, u64) {
        self.finished
    }

    /// Files that went to `failed/` in the last 24 hours.
    pub fn failed_recently(&mut self) -> usize {
        let day_ago = SystemTime::now() - Duration::from_secs(86_400);
        while self.failures.front().is_some_and(|at| *at < day_ago) {
            self.failures.pop_front();
        }
        self.failures.len()
    }

    /// The mode and group jobd gives the copy it runs of a file of `task`: those of
    /// every file it writes, or, for a task that runs as another user, readable by
    /// that user's group, so that the child can read its `data`.
    fn copy_owner(&self, task: &Task) -> (u32, Option<Gid>) {
        match task_owner(task) {
            Some((_, gid)) => (0o640, Some(gid)),
            None => (self.modes.file, self.group),
        }
    }
}

/// The spool's folders for a client that finds none (`jobctl submit` before jobd ever
/// ran): made as jobd would make them.
pub fn make_layout(config: &Config) -> io::Result<Layout> {
    let layout = Layout::new(&config.spool.dir);
    if !layout.new.is_dir() {
        let group = config.spool.group.as_deref().and_then(account::gid);
        layout.prepare(modes(config), group)?;
    }
    Ok(layout)
}

/// `spool.group`, and that jobd's user is in it (root may give files to any group).
fn resolve_group(config: &Config) -> Result<Option<Gid>, SpoolError> {
    let Some(name) = &config.spool.group else {
        return Ok(None);
    };
    let gid = account::gid(name).ok_or_else(|| SpoolError::UnknownSpoolGroup(name.clone()))?;
    let me = Uid::effective();
    let member = me.is_root()
        || Gid::effective() == gid
        || nix::unistd::getgroups().is_ok_and(|groups| groups.contains(&gid));
    if !member {
        let user = nix::unistd::User::from_uid(me)
            .ok()
            .flatten()
            .map_or_else(|| me.to_string(), |u| u.name);
        return Err(SpoolError::NotMember {
            group: name.clone(),
            user,
        });
    }
    Ok(Some(gid))
}

/// The folders' modes: shared with a group when others than jobd's user and root
/// submit; others may pass through to `running/` and `values/` only when some task
/// runs as another user (which needs jobd to run as root).
fn modes(config: &Config) -> Modes {
    let spool = &config.spool;
    let shared =
        spool.group.is_some() || !spool.allow_users.is_empty() || !spool.allow_groups.is_empty();
    let reach = Uid::effective().is_root() && config.tasks.iter().any(|t| t.run.user.is_some());
    Modes::new(shared, reach)
}

/// Submitters listed without `spool.group` can drop files only as members of the
/// folders' own group (jobd's, usually): say how to do better.
fn warn_without_group(config: &Config) {
    let spool = &config.spool;
    if spool.group.is_none() && !(spool.allow_users.is_empty() && spool.allow_groups.is_empty()) {
        warn!(
            "spool: allow_users or allow_groups is set, but spool.group is not: those users \
             can drop files only as members of the spool folders' group (jobd's own, \
             usually), which gives them whatever else that group may; create a group for \
             them, add them and jobd's user to it, and set spool.group (see jobd.yaml(5))"
        );
    }
}

/// The user and group a task's process runs as, when jobd gives them files: only when
/// jobd runs as root and the task names a user.
fn task_owner(task: &Task) -> Option<(Uid, Gid)> {
    if !Uid::effective().is_root() {
        return None;
    }
    let user = account::user(task.run.user.as_deref()?)?;
    let gid = match &task.run.group {
        Some(group) => account::gid(group)?,
        None => user.gid,
    };
    Some((user.uid, gid))
}

/// Members of `spool.group` who cannot even reach the spool cannot submit: say so at
/// once rather than leave them to guess from a permission error.
fn warn_unreachable(layout: &Layout, config: &Config, group: Option<Gid>) {
    if let (Some(gid), Some(name)) = (group, &config.spool.group)
        && let Some(dir) = layout.unreachable_by(gid)
    {
        warn!(
            "spool: members of spool.group `{name}` cannot reach {}: {} lets neither them \
             nor others pass; give it o+x (chmod o+x {}) or move spool.dir",
            layout.root.display(),
            dir.display(),
            dir.display()
        );
    }
}

/// Text from a spool file, or its name, as one safe log line: control characters are
/// escaped, everything else kept.
fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
