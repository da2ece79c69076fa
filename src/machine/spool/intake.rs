//! Taking files in from `new/`: inotify says which names arrived, a scan of the folder
//! finds them at start-up or when inotify overflowed, and the loop looks at them in
//! bounded batches between its timer checks. At most `spool.max_queued` files are held;
//! more wait in `new/`, untouched, until there is room.

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use log::{error, info, warn};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::inspect::{self, Look};
use super::queue::{Item, Stage};
use super::{MAX_NAME_BYTES, Spool, printable};
use crate::leaf::now::Now;
use crate::leaf::timestamp;
use crate::model::config::Config;

/// How much the loop does between two looks at its timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub files: usize,
    pub time: Duration,
}

impl Budget {
    /// 64 files or 10 ms, whichever comes first: a flood of files costs the scheduled
    /// jobs at most that much lateness per turn.
    pub const BATCH: Budget = Budget {
        files: 64,
        time: Duration::from_millis(10),
    };
}

/// A regular file created in `new/` itself (not renamed into it) is taken in when its
/// writer closes it, or after this long without that (a hard link never is "closed").
const CREATED_GRACE: Duration = Duration::from_secs(1);

/// Names reported by inotify and not looked at yet, and the state of a scan.
pub(super) struct Intake {
    inotify: Inotify,
    /// In the order they arrived.
    arrivals: VecDeque<OsString>,
    /// Regular files created in place and not yet closed, with when to look anyway.
    created: HashMap<OsString, Instant>,
    scan: Option<Scan>,
    /// Files may wait in `new/` that no event will report again (inotify overflowed, or
    /// they came while the spool was full): scan for them when there is room.
    pub(super) rescan: bool,
    /// Files counted waiting in `new/` beyond `spool.max_queued`, untouched.
    pub held: usize,
}

/// One pass over `new/`, a batch at a time, keeping the oldest files not held yet.
struct Scan {
    entries: fs::ReadDir,
    /// At most `room` names, the newest on top: the oldest are taken in first.
    oldest: BinaryHeap<(SystemTime, OsString)>,
    room: usize,
    /// Files found beyond `room`.
    beyond: usize,
}

impl Intake {
    pub fn watch(new: &Path) -> io::Result<Intake> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        inotify.add_watch(
            new,
            AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_CREATE,
        )?;
        Ok(Intake {
            inotify,
            arrivals: VecDeque::new(),
            created: HashMap::new(),
            scan: None,
            rescan: true,
            held: 0,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Whether names wait to be looked at (the loop should not sleep).
    pub fn pending(&self) -> bool {
        !self.arrivals.is_empty() || self.scan.is_some()
    }

    /// When a file created in place is looked at anyway.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.created.values().min().copied()
    }

    /// Read every event inotify has: cheap, and bounded by its own queue. The names
    /// are only noted; looking at them is `Spool::intake`'s work.
    pub fn read_events(&mut self, new: &Path, cap: usize) {
        loop {
            let events = match self.inotify.read_events() {
                Ok(events) if !events.is_empty() => events,
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    error!("spool: reading inotify events failed: {e}; scanning new/");
                    self.rescan = true;
                    return;
                }
            };
            for event in events {
                if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    warn!("spool: too many files at once for inotify; scanning new/");
                    self.rescan = true;
                    continue;
                }
                let Some(name) = event.name else { continue };
                if event.mask.contains(AddWatchFlags::IN_CREATE) {
                    // A regular file created in place is taken in when it is closed;
                    // anything else (a FIFO, a link, a folder) will never be written.
                    if fs::symlink_metadata(new.join(&name)).is_ok_and(|m| m.file_type().is_file())
                    {
                        self.created.insert(name, Instant::now() + CREATED_GRACE);
                        continue;
                    }
                }
                self.created.remove(&name);
                if self.arrivals.len() >= cap {
                    // Found by a scan once there is room.
                    self.rescan = true;
                    continue;
                }
                self.arrivals.push_back(name);
            }
        }
    }

    /// Files created in place whose grace has passed are looked at now.
    pub fn unclosed(&mut self, now: Instant) {
        let due: Vec<OsString> = self
            .created
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            self.created.remove(&name);
            self.arrivals.push_back(name);
        }
    }

    /// Whether a scan is wanted and can start: `room` files can be taken in, and
    /// `min_room` keeps a full spool from scanning a large `new/` for every file it
    /// finishes.
    fn scan_due(&self, room: usize, min_room: usize) -> bool {
        self.rescan && self.scan.is_none() && room >= min_room
    }

    fn start_scan(&mut self, new: &Path, room: usize) {
        match fs::read_dir(new) {
            Ok(entries) => {
                self.rescan = false;
                self.scan = Some(Scan {
                    entries,
                    oldest: BinaryHeap::new(),
                    room,
                    beyond: 0,
                });
            }
            Err(e) => warn!("spool: cannot scan {}: {e}", new.display()),
        }
    }

    /// Go on with the scan until `deadline`; `known` says which names are held already.
    fn step_scan(&mut self, deadline: Instant, known: impl Fn(&OsStr) -> bool) {
        let Some(scan) = &mut self.scan else { return };
        let mut looked = 0usize;
        loop {
            // The clock is read every few entries: a directory entry costs far less.
            looked += 1;
            if looked.is_multiple_of(16) && Instant::now() >= deadline {
                return;
            }
            let Some(entry) = scan.entries.next() else {
                break;
            };
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            if temporary(&name) || known(&name) {
                continue;
            }
            let changed = entry
                .metadata()
                .map(|m| {
                    SystemTime::UNIX_EPOCH
                        + Duration::new(m.ctime().max(0) as u64, m.ctime_nsec().max(0) as u32)
                })
                .unwrap_or(SystemTime::UNIX_EPOCH);
            scan.oldest.push((changed, name));
            if scan.oldest.len() > scan.room {
                scan.oldest.pop();
                scan.beyond += 1;
            }
        }
        let scan = self.scan.take().expect("a scan is going on");
        let mut found = scan.oldest.into_sorted_vec();
        if scan.beyond > 0 {
            // Left in new/: taken in by the next scan, once there is room.
            self.rescan = true;
            info!(
                "spool: {} files wait in new/ beyond spool.max_queued; they are taken in as \
                 the queue drains",
                scan.beyond
            );
        }
        self.held = scan.beyond;
        self.arrivals.extend(found.drain(..).map(|(_, name)| name));
    }
}

/// A writer's temporary file (and jobd's own): not a request.
pub(super) fn temporary(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    bytes.starts_with(b".") && bytes.ends_with(b".tmp")
}

impl Spool {
    /// Note what inotify reports; the files are looked at by `intake`.
    pub fn on_events(&mut self, config: &Config) {
        let cap = config.spool.max_queued as usize;
        self.intake.read_events(&self.layout.new, cap);
    }

    /// Look at the files that arrived, within `budget`; true when more wait (see
    /// `busy`).
    pub fn intake(&mut self, config: &Config, now: Now, budget: Budget) -> bool {
        let started = Instant::now();
        let deadline = started + budget.time;
        let max = config.spool.max_queued as usize;
        let held = self.queue.len() + self.refused.len();
        let room = max.saturating_sub(held);
        let min_room = if held == 0 { 1 } else { (max / 4).max(1) };
        if self.intake.scan_due(room, min_room) {
            // What was refused where it lies and is gone since is forgotten; what is
            // still there is not looked at again.
            let new = &self.layout.new;
            self.refused.retain(|name, inode| {
                fs::symlink_metadata(new.join(name)).is_ok_and(|m| m.ino() == *inode)
            });
            let room = max.saturating_sub(self.queue.len() + self.refused.len());
            self.intake.start_scan(&self.layout.new, room);
        }
        if self.intake.scan.is_some() {
            let (queue, refused) = (&self.queue, &self.refused);
            self.intake.step_scan(deadline, |name| {
                refused.contains_key(name)
                    || name.to_str().is_some_and(|n| queue.in_new(n).is_some())
            });
        }
        let mut files = 0;
        while files < budget.files && Instant::now() < deadline {
            let Some(name) = self.intake.arrivals.pop_front() else {
                break;
            };
            files += 1;
            self.take_in(name, config, now);
        }
        self.busy()
    }

    /// Whether work is left that the loop should come back for without sleeping.
    pub fn busy(&self) -> bool {
        self.intake.pending() || self.more_to_dispatch
    }

    /// Hold, refuse or leave one name that arrived in `new/`.
    fn take_in(&mut self, name: OsString, config: &Config, now: Now) {
        if temporary(&name) {
            return;
        }
        let path = self.layout.new.join(&name);
        let inode = fs::symlink_metadata(&path).ok().map(|m| m.ino());
        let Some(inode) = inode else {
            // Gone already: taken back by its writer, or claimed.
            self.refused.remove(&name);
            return;
        };
        if self.refused.get(&name) == Some(&inode) {
            return;
        }
        self.refused.remove(&name);
        let text = match name.to_str() {
            Some(text) if text.len() <= MAX_NAME_BYTES => text.to_string(),
            Some(_) => {
                let reason = format!("its name is longer than {MAX_NAME_BYTES} bytes");
                return self.refuse_unnamed(&name, &reason, inode);
            }
            None => return self.refuse_unnamed(&name, "its name is not UTF-8", inode),
        };
        if let Some(key) = self.queue.in_new(&text) {
            if self.queue.get(key).is_some_and(|item| item.inode == inode) {
                return;
            }
            // Put in the place of the file held: that one is gone, this one is new.
            self.queue.take(key);
        }
        if self.queue.len() + self.refused.len() >= config.spool.max_queued as usize {
            self.intake.rescan = true;
            self.intake.held += 1;
            return;
        }
        match inspect::inspect(&self.layout.new, &text, &self.allowed, config) {
            Look::Vanished => {}
            Look::InPlace(reason) => self.refuse_in_place(&text, &reason, inode),
            Look::Refused { reason, inode } => {
                let reason = name_problem(&text).map_or(reason, str::to_string);
                self.reject_new(&text, &reason, inode);
            }
            Look::Valid(found) => {
                if let Some(reason) = name_problem(&text) {
                    return self.reject_new(&text, reason, found.inode);
                }
                let due = found.request.due(found.arrived);
                // A file may have arrived after this turn read the clock.
                let stage = if due <= now.wall.max(found.arrived) {
                    Stage::Waiting
                } else {
                    info!(
                        "spool: {} waits until {}",
                        printable(&text),
                        timestamp::precise(due)
                    );
                    Stage::Delayed
                };
                self.queue.add(Item {
                    name: text,
                    task: found.request.task,
                    claimed: false,
                    inode: found.inode,
                    arrived: found.arrived,
                    due,
                    stage,
                });
            }
        }
    }
}

/// Names a spool file may not have: hidden ones are jobd's (and writers' temporary
/// files), and control characters would reach logs and `JOBD_SPOOL_NAME` as they are.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.starts_with('.') {
        return Some("names starting with `.` are kept for temporary files");
    }
    if name.chars().any(char::is_control) {
        return Some("its name contains a control character (a newline, a tab...)");
    }
    None
}
