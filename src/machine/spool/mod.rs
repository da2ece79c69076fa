//! One-off jobs: files dropped into `new/`, claimed into `running/`, finished into
//! `done/` or `failed/` with a result beside them. Nothing that arrives is lost: a file
//! jobd cannot run goes to `failed/` with the reason.

pub mod layout;
pub mod request;
pub mod result;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use log::{error, info, warn};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::unistd::{Gid, Uid};

use crate::leaf::files::{self, Durability};
use crate::leaf::{account, timestamp};
use crate::model::config::{Config, Retention};
use crate::model::record::RunRecord;
use files::sync_dir;
use layout::{Layout, RESULT_SUFFIX};
use request::{Request, When};
use result::{Attempt, SpoolResult};

/// The state of a file whose request went on to the cluster's table (cluster mode).
pub const FORWARDED: &str = "forwarded";
/// A spool file larger than this is refused unread.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// How often old results are cleared out of `done/` (and `failed/`, if asked).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// A regular file created in `new/` itself (not renamed into it) is picked up when its
/// writer closes it, or after this long without that (a hard link never is "closed").
const CREATED_GRACE: Duration = Duration::from_secs(1);

/// Why the spool cannot be used; jobd does not start.
#[derive(Debug)]
pub enum SpoolError {
    Create {
        dir: String,
        error: io::Error,
    },
    Unsafe(String),
    UnknownUser(String),
    UnknownGroup(String),
    Watch(io::Error),
    /// Another jobd holds the spool.
    InUse(String),
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Create { dir, error } => {
                write!(f, "cannot create the spool directory {dir}: {error}")
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
            SpoolError::Watch(error) => write!(f, "cannot watch the spool directory: {error}"),
            SpoolError::InUse(dir) => write!(
                f,
                "another jobd is using the spool directory {dir} (it holds its lock)"
            ),
        }
    }
}

impl std::error::Error for SpoolError {}

/// Who may drop files: jobd's own user and root always, plus the configured ones.
#[derive(Debug, Clone, Default)]
struct Allowed {
    uids: Vec<Uid>,
    gids: Vec<Gid>,
}

impl Allowed {
    fn resolve(config: &Config) -> Result<Allowed, SpoolError> {
        let mut allowed = Allowed {
            uids: vec![Uid::effective(), Uid::from_raw(0)],
            gids: Vec::new(),
        };
        for name in &config.spool.allow_users {
            let uid = account::uid(name).ok_or_else(|| SpoolError::UnknownUser(name.clone()))?;
            allowed.uids.push(uid);
        }
        for name in &config.spool.allow_groups {
            let gid = account::gid(name).ok_or_else(|| SpoolError::UnknownGroup(name.clone()))?;
            allowed.gids.push(gid);
        }
        Ok(allowed)
    }

    fn permits(&self, uid: u32, gid: u32) -> bool {
        self.uids.contains(&Uid::from_raw(uid)) || self.gids.contains(&Gid::from_raw(gid))
    }
}

/// What to start for a claimed file: the daemon starts it as a run of `task`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub file: String,
    pub task: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub scheduled_at: DateTime<Utc>,
    pub attempt: u32,
}

/// A file jobd has accepted, waiting or running.
#[derive(Debug, Clone)]
struct Item {
    name: String,
    request: Request,
    scheduled_at: DateTime<Utc>,
    /// In `running/` (claimed) rather than `new/`.
    claimed: bool,
    result: SpoolResult,
}

/// The spool's files as the loop sees them.
pub struct Spool {
    layout: Layout,
    /// Held for jobd's life: two jobds on one spool would each take the other's
    /// running files for leftovers of a crash.
    _lock: nix::fcntl::Flock<std::fs::File>,
    inotify: Inotify,
    allowed: Allowed,
    /// Due files, oldest first: in `new/`, or in `running/` waiting for a retry.
    ready: VecDeque<Item>,
    /// Files in `new/` waiting for their `run_at` or `delay`.
    delayed: BTreeMap<(DateTime<Utc>, u64), Item>,
    /// Names in `new/` already accepted (ready or delayed), so that a second event for
    /// one file does not queue it twice.
    seen: HashSet<String>,
    /// Files whose run is going on, by name.
    running: HashMap<String, Item>,
    /// Failed files waiting to be tried again.
    retrying: BTreeMap<(Instant, u64), Item>,
    /// Regular files created in `new/` and not yet closed, with when to look anyway.
    created: HashMap<String, Instant>,
    sequence: u64,
    next_sweep: Instant,
    stopping: bool,
    /// Files moved to `done/` and to `failed/` since jobd started, for the metrics.
    finished: (u64, u64),
    /// Finished files a full or read-only disk kept from being filed, and when to try
    /// again.
    unfiled: Vec<Unfiled>,
    refile_at: Option<Instant>,
    /// A claim failed for lack of disk: no file is started before then.
    blocked_until: Option<Instant>,
}

/// A finished file still to be moved, with its result, from `from` to `to`.
#[derive(Debug)]
struct Unfiled {
    from: PathBuf,
    name: String,
    to: PathBuf,
    result: SpoolResult,
}

/// How often jobd tries again to claim or file a spool file when the disk refused.
const RETRY_DISK: Duration = Duration::from_secs(1);

impl Spool {
    /// Create the layout if missing, check it, and take up what an earlier jobd left:
    /// files in `running/` run again (their attempt counted), files in `new/` in the
    /// order they arrived.
    pub fn open(config: &Config, now: Instant) -> Result<Spool, SpoolError> {
        let layout = Layout::new(&config.spool.dir);
        layout.create().map_err(|error| SpoolError::Create {
            dir: layout.root.display().to_string(),
            error,
        })?;
        if let Some(reason) = layout.unsafe_permissions() {
            return Err(SpoolError::Unsafe(reason));
        }
        let lock = layout.lock().map_err(|error| match error.kind() {
            io::ErrorKind::WouldBlock => SpoolError::InUse(layout.root.display().to_string()),
            _ => SpoolError::Create {
                dir: layout.root.display().to_string(),
                error,
            },
        })?;
        let allowed = Allowed::resolve(config)?;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| SpoolError::Watch(e.into()))?;
        inotify
            .add_watch(
                &layout.new,
                AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_CREATE,
            )
            .map_err(|e| SpoolError::Watch(e.into()))?;
        let mut spool = Spool {
            layout,
            _lock: lock,
            inotify,
            allowed,
            ready: VecDeque::new(),
            delayed: BTreeMap::new(),
            seen: HashSet::new(),
            running: HashMap::new(),
            retrying: BTreeMap::new(),
            created: HashMap::new(),
            sequence: 0,
            next_sweep: now,
            stopping: false,
            finished: (0, 0),
            unfiled: Vec::new(),
            refile_at: None,
            blocked_until: None,
        };
        spool.recover(config);
        spool.scan(config);
        Ok(spool)
    }

    /// Take on a reloaded jobfile's spool settings (the folder itself stays).
    /// What `reload` would refuse in `config`, without applying it.
    pub fn check(config: &Config) -> Result<(), SpoolError> {
        Allowed::resolve(config).map(|_| ())
    }

    pub fn reload(&mut self, config: &Config) -> Result<(), SpoolError> {
        if config.spool.dir != self.layout.root {
            warn!(
                "spool.dir changed to {}: jobd keeps using {} until it restarts",
                config.spool.dir.display(),
                self.layout.root.display()
            );
        }
        self.allowed = Allowed::resolve(config)?;
        Ok(())
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Files in `running/` when jobd starts were running when it stopped: they run
    /// again, their interrupted attempt counted.
    fn recover(&mut self, config: &Config) {
        let mut names = list(&self.layout.running);
        names.sort_by_key(|(_, changed)| *changed);
        let files: HashSet<String> = names.iter().map(|(name, _)| name.clone()).collect();
        for (name, _) in names {
            if name.starts_with('.') && name.ends_with(".tmp") {
                continue;
            }
            if let Some(stem) = name.strip_suffix(RESULT_SUFFIX) {
                if !files.contains(stem) {
                    // The file finished; its progress record was left behind.
                    let _ = fs::remove_file(self.layout.running.join(&name));
                }
                continue;
            }
            let progress = fs::read(self.layout.running.join(format!("{name}{RESULT_SUFFIX}")))
                .ok()
                .and_then(|bytes| SpoolResult::from_json(&bytes));
            match self.inspect(&self.layout.running, &name, config) {
                Ok(mut item) => {
                    item.claimed = true;
                    if let Some(mut progress) = progress {
                        for attempt in progress
                            .attempts
                            .iter_mut()
                            .filter(|a| a.ended_at.is_none())
                        {
                            attempt.error = Some("jobd stopped while it ran".to_string());
                            stop_leftovers(&name, &attempt.run_id, config, &item);
                        }
                        item.result.attempts = progress.attempts;
                        // The file's ctime in running/ is when it was claimed; the
                        // progress record kept when it arrived.
                        if let Some(arrived) = progress
                            .received_at
                            .as_deref()
                            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
                        {
                            item.scheduled_at = due(&item.request.when, arrived.to_utc());
                            item.result.received_at = progress.received_at;
                        }
                    }
                    info!(
                        "spool: {} was running when jobd stopped; running it again (attempt {})",
                        name.escape_debug(),
                        item.result.attempts.len() + 1
                    );
                    self.ready.push_back(item);
                }
                Err(reason) => self.reject(&self.layout.running.clone(), &name, &reason, progress),
            }
        }
    }

    /// Pick up every file in `new/`, oldest first (start-up, or after the event queue
    /// overflowed).
    fn scan(&mut self, config: &Config) {
        let mut names = list(&self.layout.new);
        names.sort_by_key(|(_, changed)| *changed);
        for (name, _) in names {
            self.pick_up(&name, config);
        }
    }

    /// Read what inotify reports and pick up the files that arrived.
    pub fn on_events(&mut self, config: &Config) {
        loop {
            let events = match self.inotify.read_events() {
                Ok(events) if !events.is_empty() => events,
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    error!("spool: reading inotify events failed: {e}; rescanning");
                    self.scan(config);
                    return;
                }
            };
            for event in events {
                if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    warn!("spool: too many files at once for inotify; rescanning new/");
                    self.scan(config);
                    continue;
                }
                let Some(name) = event.name else { continue };
                let Some(name) = name.to_str().map(str::to_string) else {
                    self.reject_unnamed(&name);
                    continue;
                };
                if event.mask.contains(AddWatchFlags::IN_CREATE) {
                    // A regular file created in place is picked up when it is closed;
                    // anything else (a FIFO, a link, a folder) will never be written.
                    let path = self.layout.new.join(&name);
                    if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file()) {
                        self.created.insert(name, Instant::now() + CREATED_GRACE);
                        continue;
                    }
                }
                self.created.remove(&name);
                self.pick_up(&name, config);
            }
        }
    }

    /// Accept or refuse one file in `new/`.
    fn pick_up(&mut self, name: &str, config: &Config) {
        if self.seen.contains(name) || name.starts_with('.') && name.ends_with(".tmp") {
            return;
        }
        let new = self.layout.new.clone();
        if name.len() > MAX_NAME_BYTES {
            // No room beside it for its result: it moves on alone, like a name that
            // is not UTF-8.
            warn!(
                "spool: refusing {}: its name is longer than {MAX_NAME_BYTES} bytes",
                printable(name)
            );
            self.move_unreported(std::ffi::OsStr::new(name));
            return;
        }
        if let Some(reason) = name_problem(name) {
            self.reject(&new, name, reason, None);
            return;
        }
        match self.inspect(&new, name, config) {
            Ok(item) => {
                self.seen.insert(name.to_string());
                match item.request.when {
                    When::Now => self.ready.push_back(item),
                    _ if item.scheduled_at <= Utc::now() => self.ready.push_back(item),
                    _ => {
                        info!(
                            "spool: {} waits until {}",
                            name.escape_debug(),
                            timestamp::precise(item.scheduled_at)
                        );
                        self.sequence += 1;
                        self.delayed
                            .insert((item.scheduled_at, self.sequence), item);
                    }
                }
            }
            Err(reason) if reason == VANISHED => {}
            Err(reason) => self.reject(&new, name, &reason, None),
        }
    }

    /// Check a file before anything else touches it: what it is, who owns it, what it
    /// says. Never blocks, never follows a link.
    fn inspect(&self, dir: &Path, name: &str, config: &Config) -> Result<Item, String> {
        if name.ends_with(RESULT_SUFFIX) {
            return Err(format!(
                "names ending in {RESULT_SUFFIX} are kept for results"
            ));
        }
        let path = dir.join(name);
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(&path);
        let file = match file {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
                return Err("it is a symbolic link, not a file".to_string());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(VANISHED.to_string()),
            Err(e) => return Err(format!("cannot open it: {e}")),
        };
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read it: {e}"))?;
        let kind = meta.file_type();
        if !kind.is_file() {
            let what = if kind.is_dir() {
                "a directory"
            } else if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_socket() {
                "a socket"
            } else {
                "a device"
            };
            return Err(format!("it is {what}, not a regular file"));
        }
        if !self.allowed.permits(meta.uid(), meta.gid()) {
            return Err(format!(
                "it is owned by uid {} (gid {}), who may not submit jobs (see spool.allow_users and spool.allow_groups)",
                meta.uid(),
                meta.gid()
            ));
        }
        if meta.nlink() > 1 {
            return Err(format!(
                "it has {} hard links; submit a file of its own",
                meta.nlink()
            ));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!(
                "it is {} bytes, more than the {MAX_FILE_BYTES} a spool file may have",
                meta.len()
            ));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read it: {e}"))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err("it grew past the size limit while being read".to_string());
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            format!(
                "it is not UTF-8 text (byte {})",
                e.utf8_error().valid_up_to()
            )
        })?;
        let request = request::parse(&text)?;
        let Some(task) = config.task(&request.task) else {
            let known: Vec<&str> = config.tasks.iter().map(|t| t.name.as_str()).collect();
            return Err(format!(
                "unknown task `{}` (the jobfile's tasks: {})",
                request.task,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        // The moment the file arrived: renaming it into new/ set its ctime.
        // Microseconds: what JOBD_SCHEDULED_AT and the result carry.
        let arrived =
            DateTime::<Utc>::from_timestamp(meta.ctime(), (meta.ctime_nsec() as u32 / 1000) * 1000)
                .unwrap_or_else(Utc::now);
        let scheduled_at = due(&request.when, arrived);
        Ok(Item {
            name: name.to_string(),
            result: SpoolResult {
                file: name.to_string(),
                id: request.id.clone(),
                task: Some(task.name.clone()),
                status: "running".to_string(),
                reason: None,
                received_at: Some(timestamp::precise(arrived)),
                attempts: Vec::new(),
            },
            request,
            scheduled_at,
            claimed: false,
        })
    }

    /// Move a file jobd will not run to `failed/`, with the reason in its result.
    fn reject(&mut self, from: &Path, name: &str, reason: &str, progress: Option<SpoolResult>) {
        // The reason may quote the file's own text: it must not write log lines.
        warn!("spool: refusing {}: {}", printable(name), printable(reason));
        let mut result = progress.unwrap_or_else(|| SpoolResult {
            file: name.to_string(),
            ..SpoolResult::default()
        });
        result.status = "failed".to_string();
        result.reason = Some(reason.to_string());
        self.finish_file(from, name, &self.layout.failed.clone(), &result);
    }

    /// A name that is not UTF-8 cannot be reported in JSON or passed on in
    /// `JOBD_SPOOL_FILE`: it moves to `failed/` under its own name, with no result.
    fn reject_unnamed(&mut self, name: &std::ffi::OsStr) {
        warn!("spool: refusing {name:?}: its name is not UTF-8");
        self.move_unreported(name);
    }

    /// Move a file from `new/` to `failed/` with no result beside it.
    fn move_unreported(&mut self, name: &std::ffi::OsStr) {
        self.finished.1 += 1;
        let _ = fs::rename(self.layout.new.join(name), self.layout.failed.join(name));
        let _ = sync_dir(&self.layout.failed);
        let _ = sync_dir(&self.layout.new);
    }

    /// Write the result, then move the file beside it: a crash in between leaves the
    /// file where it was, to be handled again.
    fn finish_file(&mut self, from: &Path, name: &str, to: &Path, result: &SpoolResult) {
        let unfiled = Unfiled {
            from: from.to_path_buf(),
            name: name.to_string(),
            to: to.to_path_buf(),
            result: result.clone(),
        };
        if let Err(e) = self.file_away(&unfiled) {
            // A full or read-only disk: the file stays where it is and is filed once
            // the disk takes it, rather than forgotten (and run again at restart).
            error!(
                "spool: cannot move {} to {}: {e}; trying again every {}s",
                name.escape_debug(),
                to.display(),
                RETRY_DISK.as_secs()
            );
            self.unfiled.push(unfiled);
        }
    }

    /// Write the result, then move the file beside it.
    fn file_away(&mut self, file: &Unfiled) -> std::io::Result<()> {
        let Unfiled {
            from,
            name,
            to,
            result,
        } = file;
        files::replace(
            &to.join(format!("{name}{RESULT_SUFFIX}")),
            &result.to_json(),
            0o640,
            Durability::Synced,
        )?;
        match fs::rename(from.join(name), to.join(name)) {
            Ok(()) => {}
            // Taken away meanwhile: its result stays, for whoever looks.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Err(e) = sync_dir(to).and_then(|()| sync_dir(from)) {
            warn!(
                "spool: moved {} to {}, but the move may not survive a power loss: {e}",
                name.escape_debug(),
                to.display()
            );
        }
        let _ = fs::remove_file(self.layout.running.join(format!("{name}{RESULT_SUFFIX}")));
        if *to == self.layout.done {
            self.finished.0 += 1;
        } else {
            self.finished.1 += 1;
        }
        Ok(())
    }

    /// Try again to file what a full or read-only disk held back.
    fn refile(&mut self, now: Instant) {
        if self.unfiled.is_empty() || self.refile_at.is_some_and(|at| now < at) {
            return;
        }
        let pending = std::mem::take(&mut self.unfiled);
        let mut failed = Vec::new();
        for file in pending {
            if self.file_away(&file).is_err() {
                failed.push(file);
            } else {
                info!("spool: filed {} at last", file.name.escape_debug());
            }
        }
        self.unfiled = failed;
        self.refile_at = (!self.unfiled.is_empty()).then(|| now + RETRY_DISK);
    }

    /// When a delayed file is next due, for the wall-clock timer.
    pub fn next_instant(&self) -> Option<DateTime<Utc>> {
        self.delayed.keys().next().map(|(at, _)| *at)
    }

    /// When a retry or a clean-up is next due, for the poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        let retry = self.retrying.keys().next().map(|(at, _)| *at);
        let created = self.created.values().min().copied();
        let refile =
            (!self.unfiled.is_empty()).then(|| self.refile_at.unwrap_or_else(Instant::now));
        // A claim retry that is due waits for the next dispatch (a free worker); as a
        // deadline in the past it would make poll spin.
        let claim = self.blocked_until.filter(|until| *until > Instant::now());
        [retry, created, refile, claim, Some(self.next_sweep)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Move what has come due into the ready queue; clean up old results.
    pub fn tick(&mut self, now: DateTime<Utc>, mono: Instant, config: &Config) {
        self.refile(mono);
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            self.ready.push_back(entry.remove());
        }
        while let Some(entry) = self.retrying.first_entry() {
            if entry.key().0 > mono {
                break;
            }
            self.ready.push_back(entry.remove());
        }
        let unclosed: Vec<String> = self
            .created
            .iter()
            .filter(|(_, at)| **at <= mono)
            .map(|(name, _)| name.clone())
            .collect();
        for name in unclosed {
            self.created.remove(&name);
            self.pick_up(&name, config);
        }
        if mono >= self.next_sweep {
            self.next_sweep = mono + SWEEP_EVERY;
            sweep(&self.layout.done, config.spool.keep_done);
            sweep(&self.layout.failed, config.spool.keep_failed);
        }
    }

    /// Claim ready files while workers are free, oldest first, and say what to start
    /// for each; a file whose task is at its `max_instances` waits without holding up
    /// the others.
    pub fn dispatch(&mut self, config: &Config, now: Instant) -> Vec<Start> {
        let mut starts = Vec::new();
        if self.stopping || self.blocked_until.is_some_and(|until| now < until) {
            return starts;
        }
        let mut index = 0;
        while self.running.len() < config.spool.workers as usize
            && index < self.ready.len()
            && self.blocked_until.is_none_or(|until| now >= until)
        {
            let task_name = self.ready[index].request.task.clone();
            let Some(task) = config.task(&task_name) else {
                let item = self.ready.remove(index).expect("index is in range");
                let from = self.dir_of(&item);
                self.seen.remove(&item.name);
                self.reject(
                    &from,
                    &item.name,
                    &format!("task `{task_name}` is no longer in the jobfile"),
                    Some(item.result),
                );
                continue;
            };
            let busy = self
                .running
                .values()
                .filter(|item| item.request.task == task_name)
                .count();
            if task.max_instances.is_some_and(|max| busy >= max as usize)
                || self.name_in_use(&self.ready[index])
            {
                index += 1;
                continue;
            }
            let item = self.ready.remove(index).expect("index is in range");
            starts.extend(self.claim(item, now));
        }
        // The file a full or read-only disk kept from being claimed is gone: nothing
        // is held back any more.
        if self.blocked_until.is_some() && self.ready.iter().all(|item| item.claimed) {
            self.blocked_until = None;
        }
        starts
    }

    /// A file in `new/` named like one still in `running/` (running, or waiting for a
    /// retry) waits: claiming it would replace the other.
    fn name_in_use(&self, item: &Item) -> bool {
        !item.claimed
            && (self.running.contains_key(&item.name)
                || self.layout.running.join(&item.name).exists())
    }

    fn dir_of(&self, item: &Item) -> std::path::PathBuf {
        if item.claimed {
            self.layout.running.clone()
        } else {
            self.layout.new.clone()
        }
    }

    /// Move a ready file into `running/` (if it is not there yet) and say what to start.
    fn claim(&mut self, mut item: Item, now: Instant) -> Option<Start> {
        if !item.claimed {
            let renamed = fs::rename(
                self.layout.new.join(&item.name),
                self.layout.running.join(&item.name),
            );
            match renamed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Gone from new/ (taken away by its writer): nothing left to run.
                    warn!("spool: cannot claim {}: {e}", item.name.escape_debug());
                    self.seen.remove(&item.name);
                    return None;
                }
                Err(e) => {
                    // A full or read-only disk: the file waits in new/, first in line,
                    // and claiming is tried again in a moment.
                    if self.blocked_until.is_none() {
                        error!(
                            "spool: cannot claim {}: {e}; trying again every {}s",
                            item.name.escape_debug(),
                            RETRY_DISK.as_secs()
                        );
                    }
                    self.blocked_until = Some(now + RETRY_DISK);
                    self.ready.push_front(item);
                    return None;
                }
            }
            if self.blocked_until.take().is_some() {
                info!("spool: claiming files works again");
            }
            self.seen.remove(&item.name);
            if let Err(e) = sync_dir(&self.layout.running).and_then(|()| sync_dir(&self.layout.new))
            {
                warn!(
                    "spool: claimed {}, but the claim may not survive a power loss: {e}",
                    item.name.escape_debug()
                );
            }
            item.claimed = true;
        }
        let start = Start {
            file: item.name.clone(),
            task: item.request.task.clone(),
            args: item.request.args.clone(),
            env: item.request.env.clone(),
            scheduled_at: item.scheduled_at,
            attempt: item.result.attempts.len() as u32 + 1,
        };
        self.running.insert(item.name.clone(), item);
        Some(start)
    }

    /// The attempt of `file` that `dispatch` handed out is about to start as run
    /// `run_id`. Recorded before the process exists: if jobd dies at any moment
    /// after, the next start counts this attempt and can find (and stop) its processes
    /// by their run id. Replaced whole, never truncated; not synced: a power cut loses
    /// only the count.
    pub fn starting(&mut self, file: &str, run_id: &str, now: DateTime<Utc>) {
        let Some(item) = self.running.get_mut(file) else {
            return;
        };
        let attempt = item.result.attempts.len() as u32 + 1;
        item.result
            .attempts
            .push(Attempt::started(attempt, run_id, now));
        if let Err(e) = files::replace(
            &self.layout.running.join(format!("{file}{RESULT_SUFFIX}")),
            &item.result.to_json(),
            0o640,
            Durability::Unsynced,
        ) {
            warn!(
                "spool: cannot record the attempt of {}: {e}",
                file.escape_debug()
            );
        }
    }

    /// A spool run ended: finish the file, or schedule its next attempt. True when the
    /// file has failed for good (its last attempt failed).
    pub fn ended(&mut self, name: &str, record: &RunRecord, config: &Config, now: Instant) -> bool {
        let Some(mut item) = self.running.remove(name) else {
            return false;
        };
        // A task removed by a reload is not retried.
        let (retries, retry_delay) = config
            .task(&item.request.task)
            .map_or((0, Duration::ZERO), |task| (task.retries, task.retry_delay));
        let attempt = Attempt::ended(record);
        match item.result.attempts.last_mut() {
            Some(last) if last.run_id == record.run_id => *last = attempt,
            _ => item.result.attempts.push(attempt),
        }
        let running = self.layout.running.clone();
        if record.outcome.success() {
            item.result.status = "done".to_string();
            self.finish_file(&running, name, &self.layout.done.clone(), &item.result);
            return false;
        }
        if self.stopping {
            // Stopped by jobd's own shutdown: it stays in running/ and runs again at
            // the next start.
            let _ = files::replace(
                &running.join(format!("{name}{RESULT_SUFFIX}")),
                &item.result.to_json(),
                0o640,
                Durability::Unsynced,
            );
            return false;
        }
        let tries = item.result.attempts.len() as u32;
        if tries <= retries {
            let delay = retry_delay.saturating_mul(1 << (tries - 1).min(20));
            info!(
                "spool: {} failed ({}); attempt {} of {} in {}",
                name.escape_debug(),
                record.outcome,
                tries + 1,
                retries + 1,
                crate::leaf::duration::format(delay)
            );
            let _ = files::replace(
                &running.join(format!("{name}{RESULT_SUFFIX}")),
                &item.result.to_json(),
                0o640,
                Durability::Unsynced,
            );
            self.sequence += 1;
            self.retrying.insert((now + delay, self.sequence), item);
            return false;
        }
        item.result.status = "failed".to_string();
        item.result.reason = Some(format!(
            "{} after {tries} attempt{}",
            record.outcome,
            crate::leaf::words::plural(tries)
        ));
        self.finish_file(&running, name, &self.layout.failed.clone(), &item.result);
        true
    }

    /// Cluster mode: a claimed file's request went to the cluster's table (`Ok`, with
    /// what to say about it in the result's `reason`), or could not (`Err`, why). Filed
    /// to done/ with the state `forwarded`, or to failed/.
    pub fn forwarded(&mut self, name: &str, outcome: Result<String, String>) {
        let Some(mut item) = self.running.remove(name) else {
            return;
        };
        let running = self.layout.running.clone();
        let to = match outcome {
            Ok(reason) => {
                item.result.status = FORWARDED.to_string();
                item.result.reason = Some(reason);
                self.layout.done.clone()
            }
            Err(reason) => {
                item.result.status = "failed".to_string();
                item.result.reason = Some(reason);
                self.layout.failed.clone()
            }
        };
        self.finish_file(&running, name, &to, &item.result);
    }

    /// Start nothing more: jobd is shutting down. Files waiting stay where they are.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Files queued (due), delayed, running and waiting for a retry.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.ready.len(),
            self.delayed.len(),
            // Files held back by a full disk are still in running/.
            self.running.len() + self.unfiled.len(),
            self.retrying.len(),
        )
    }

    /// What the disk keeps the spool from doing now, in words.
    pub fn problems(&self) -> Vec<String> {
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
        problems
    }

    /// Files moved to `done/` and to `failed/` since jobd started.
    pub fn finished(&self) -> (u64, u64) {
        self.finished
    }

    /// Files that went to `failed/` in the last 24 hours.
    pub fn failed_recently(&self) -> usize {
        let day_ago = SystemTime::now() - Duration::from_secs(86_400);
        list(&self.layout.failed)
            .iter()
            .filter(|(name, changed)| {
                !name.ends_with(RESULT_SUFFIX) && !name.starts_with('.') && *changed >= day_ago
            })
            .count()
    }
}

/// Marks a file that disappeared before jobd could look at it.
const VANISHED: &str = "vanished";

/// The entries of a folder with their change times, results and temporaries left out.
fn list(dir: &Path) -> Vec<(String, SystemTime)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let changed = entry
                .metadata()
                .ok()
                .map(|m| {
                    SystemTime::UNIX_EPOCH
                        + Duration::new(m.ctime().max(0) as u64, m.ctime_nsec().max(0) as u32)
                })
                .unwrap_or(SystemTime::UNIX_EPOCH);
            Some((name, changed))
        })
        .collect()
}

/// Remove the oldest finished files (and their results) beyond what `keep` allows.
fn sweep(dir: &Path, keep: Retention) {
    if keep.count.is_none() && keep.age.is_none() {
        return;
    }
    let mut files: Vec<(String, SystemTime)> = list(dir)
        .into_iter()
        .filter(|(name, _)| !name.ends_with(RESULT_SUFFIX) && !name.starts_with('.'))
        .collect();
    files.sort_by_key(|(_, changed)| std::cmp::Reverse(*changed));
    let now = SystemTime::now();
    for (index, (name, changed)) in files.iter().enumerate() {
        let too_many = keep.count.is_some_and(|count| index >= count as usize);
        let too_old = keep
            .age
            .is_some_and(|age| now.duration_since(*changed).unwrap_or_default() > age);
        if too_many || too_old {
            let path = dir.join(name);
            let removed = if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            if removed.is_ok() {
                let _ = fs::remove_file(dir.join(format!("{name}{RESULT_SUFFIX}")));
            }
        }
    }
}

/// When a file that arrived at `arrived` is due: its `run_at`, its `delay` after it
/// arrived, or its arrival.
fn due(when: &When, arrived: DateTime<Utc>) -> DateTime<Utc> {
    match when {
        When::Now => arrived,
        When::At(at) => *at,
        When::Delay(delay) => {
            arrived + chrono::TimeDelta::from_std(*delay).unwrap_or(chrono::TimeDelta::MAX)
        }
    }
}

/// Longer names leave no room for `.NAME.result.json.tmp` within the 255 bytes a file
/// name may have.
const MAX_NAME_BYTES: usize = 200;

/// Names a spool file may not have: hidden ones are jobd's (and writers' temporary
/// files), and control characters would reach logs and `JOBD_SPOOL_FILE` as they are.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.starts_with('.') {
        return Some("names starting with `.` are kept for temporary files");
    }
    if name.chars().any(char::is_control) {
        return Some("its name contains a control character (a newline, a tab...)");
    }
    None
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

/// A jobd killed outright leaves the attempt it was running behind, alive: stop it
/// before the file runs again, so that the two never run at the same time.
fn stop_leftovers(name: &str, run_id: &str, config: &Config, item: &Item) {
    let leftovers = crate::adapter::orphans::of_run(run_id, None);
    if leftovers.is_empty() {
        return;
    }
    let grace = config
        .task(&item.request.task)
        .map_or(crate::model::config::DEFAULT_KILL_GRACE, |task| {
            task.run.kill_grace
        })
        // It blocks the start: a task's long kill_grace is not worth waiting out here.
        .min(crate::model::config::DEFAULT_KILL_GRACE);
    warn!(
        "spool: the interrupted attempt of {} (run {run_id}) is still running as pid {}; \
         stopping it before running the file again",
        name.escape_debug(),
        leftovers
            .iter()
            .map(|pid| pid.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    crate::adapter::orphans::stop(&leftovers, grace);
}
