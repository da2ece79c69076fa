//! Claiming due files while workers are free. A file in `new/` is read again through
//! every check, and what was read is written into `running/` as jobd's own file; the
//! writer's file is then removed, if it is still the one read. jobd never runs, nor
//! keeps, a file its writer could still change.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;

use log::{error, info, warn};

use super::inspect::{self, Inspected, Look};
use super::layout::RESULT_SUFFIX;
use super::queue::{Active, Key, Stage};
use super::result::SpoolResult;
use super::{Budget, RETRY_DISK, Spool, Start, printable};
use crate::leaf::files::{self, Durability, sync_dir};
use crate::leaf::now::Now;
use crate::leaf::timestamp;
use crate::model::config::{Config, Task};

/// What became of one claim.
enum Claimed {
    Started(Start),
    /// Not started, and the next file may be tried.
    Not,
    /// The disk refused: nothing more is claimed for a while.
    Blocked,
}

impl Spool {
    /// Claim waiting files while workers are free, first in line first, and say what
    /// to start for each; a file whose task is at its `max_instances`, or named like a
    /// file still in `running/`, waits without holding up the others.
    pub fn dispatch(&mut self, config: &Config, now: Now) -> Vec<Start> {
        let mut starts = Vec::new();
        if self.stopping || self.blocked_until.is_some_and(|until| now.mono < until) {
            return starts;
        }
        let mut index = 0;
        // Refusals write and sync: a reload that removed the task of thousands of
        // waiting files must not stall the loop. The rest waits for the next turn.
        let mut refused = 0;
        self.more_to_dispatch = false;
        while self.queue.counts().running < config.spool.workers as usize {
            if refused >= Budget::BATCH.files {
                self.more_to_dispatch = true;
                break;
            }
            let Some(key) = self.queue.waiting().nth(index) else {
                break;
            };
            let item = self.queue.get(key).expect("a waiting key is held");
            let Some(task) = config.task(&item.task) else {
                let item = self.queue.take(key).expect("held");
                let reason = format!("task `{}` is no longer in the jobfile", item.task);
                if item.claimed {
                    let result = self.progress(&item.name);
                    self.reject_claimed(&item.name, &reason, result);
                } else {
                    self.reject_new(&item.name, &reason, item.inode);
                }
                refused += 1;
                continue;
            };
            let busy = self.queue.running().filter(|r| r.task == task.name).count();
            if task.max_instances.is_some_and(|max| busy >= max as usize)
                || !item.claimed
                    && (self.queue.in_running(&item.name).is_some()
                        || self.layout.running.join(&item.name).exists())
            {
                index += 1;
                continue;
            }
            match self.claim(key, task, config, now) {
                Claimed::Started(start) => starts.push(start),
                Claimed::Not => refused += 1,
                Claimed::Blocked => break,
            }
        }
        if self.blocked_until.is_some_and(|until| now.mono >= until)
            && !self.claim_blocked_by_disk()
        {
            self.blocked_until = None;
        }
        starts
    }

    /// Whether the file first in line is one the disk kept from being claimed.
    fn claim_blocked_by_disk(&self) -> bool {
        self.queue
            .waiting()
            .next()
            .and_then(|key| self.queue.get(key))
            .is_some_and(|item| !item.claimed)
    }

    /// Read the file of `key` again and, if it may run now, make it a running item.
    fn claim(&mut self, key: Key, task: &Task, config: &Config, now: Now) -> Claimed {
        let mut item = self.queue.take(key).expect("a waiting key is held");
        let claimed_before = item.claimed;
        let dir = if item.claimed {
            self.layout.running.clone()
        } else {
            self.layout.new.clone()
        };
        let found = match inspect::inspect(&dir, &item.name, &self.allowed, config) {
            Look::Valid(found) => found,
            Look::Vanished => {
                if item.claimed {
                    error!(
                        "spool: the claimed file {} is gone from running/; nothing left to run",
                        printable(&item.name)
                    );
                }
                return Claimed::Not;
            }
            Look::InPlace(reason) | Look::Refused { reason, .. } if item.claimed => {
                let result = self.progress(&item.name);
                self.reject_claimed(&item.name, &reason, result);
                return Claimed::Not;
            }
            Look::InPlace(reason) => {
                self.refuse_in_place(&item.name, &reason, item.inode);
                return Claimed::Not;
            }
            Look::Refused { reason, inode } => {
                self.reject_new(&item.name, &reason, inode);
                return Claimed::Not;
            }
        };
        let mut result = if item.claimed {
            self.progress(&item.name)
        } else {
            // The writer may have changed its time by replacing the file.
            let due = found.request.due(found.arrived);
            if due > now.wall.max(found.arrived) {
                info!(
                    "spool: {} waits until {}",
                    printable(&item.name),
                    timestamp::precise(due)
                );
                item.due = due;
                item.arrived = found.arrived;
                item.inode = found.inode;
                item.stage = Stage::Delayed;
                self.queue.put(key, item, false);
                return Claimed::Not;
            }
            if let Err(e) = self.copy_in(&item.name, &found, task) {
                // A full or read-only disk: the file waits in new/, first in line, and
                // claiming is tried again in a moment.
                if self.blocked_until.is_none() {
                    error!(
                        "spool: cannot claim {}: {e}; trying again every {}s",
                        printable(&item.name),
                        RETRY_DISK.as_secs()
                    );
                }
                self.blocked_until = Some(now.mono + RETRY_DISK);
                self.queue.put(key, item, true);
                return Claimed::Blocked;
            }
            if self.blocked_until.take().is_some() {
                info!("spool: claiming files works again");
            }
            item.claimed = true;
            item.arrived = found.arrived;
            item.due = found.request.due(found.arrived);
            SpoolResult::new(&item.name)
        };
        result.id = found.request.id.clone();
        result.task = Some(task.name.clone());
        result.received_at = Some(timestamp::precise(item.arrived));
        result.scheduled_at = Some(timestamp::precise(item.due));
        result.next_attempt_at = None;
        let start = Start {
            file: item.name.clone(),
            task: task.name.clone(),
            args: found.request.args,
            env: found.request.env,
            scheduled_at: item.due,
            attempt: result.attempts.len() as u32 + 1,
            claimed_before,
        };
        item.stage = Stage::Running(Box::new(Active {
            result,
            value: None,
        }));
        self.queue.put(key, item, false);
        Claimed::Started(start)
    }

    /// Write what was read of `new/NAME` into `running/NAME`, as jobd's own file, made
    /// durable before the writer's file goes; the writer's file goes only if it is
    /// still the one read.
    fn copy_in(&mut self, name: &str, found: &Inspected, task: &Task) -> io::Result<()> {
        let (mode, group) = self.copy_owner(task);
        files::replace_shared(
            &self.layout.running.join(name),
            &found.bytes,
            mode,
            group,
            Durability::Synced,
        )?;
        sync_dir(&self.layout.running)?;
        let original = self.layout.new.join(name);
        if fs::symlink_metadata(&original).is_ok_and(|m| m.ino() == found.inode)
            && let Err(e) = fs::remove_file(&original).and_then(|()| sync_dir(&self.layout.new))
        {
            warn!(
                "spool: claimed {}, but cannot remove it from new/: {e}",
                printable(name)
            );
        }
        // A refusal of an entry that lay under this name before is old news now.
        let failed = self.layout.failed.join(name);
        if fs::symlink_metadata(&failed).is_err() {
            let _ = fs::remove_file(self.layout.failed.join(format!("{name}{RESULT_SUFFIX}")));
        }
        Ok(())
    }

    /// The progress record of a claimed file, or an empty one.
    pub(super) fn progress(&self, name: &str) -> SpoolResult {
        fs::read(self.layout.running.join(format!("{name}{RESULT_SUFFIX}")))
            .ok()
            .and_then(|bytes| SpoolResult::from_json(&bytes))
            .unwrap_or_else(|| SpoolResult::new(name))
    }
}
