//! Taking up what an earlier jobd left in `running/`: each file runs again, its
//! interrupted attempt counted; a retry it was waiting for keeps its time. An attempt
//! still running (a jobd killed outright cannot stop its children) is stopped first,
//! so that two attempts of one file never run at once: /proc is read once for all.

use std::fs;
use std::time::Duration;

use chrono::{DateTime, Utc};
use log::{info, warn};

use super::filing::list;
use super::inspect::{self, Look};
use super::layout::RESULT_SUFFIX;
use super::queue::{Item, Stage};
use super::result::{SpoolResult, State};
use super::{Spool, printable};
use crate::adapter::orphans;
use crate::leaf::files::{self, Durability};
use crate::leaf::now::Now;
use crate::leaf::timestamp;
use crate::model::config::{self, Config};

/// A file found in `running/`, before it is held.
struct Found {
    name: String,
    result: SpoolResult,
    task: String,
    arrived: DateTime<Utc>,
    due: DateTime<Utc>,
}

impl Spool {
    pub(super) fn recover(&mut self, config: &Config, now: Now) {
        let mut names = list(&self.layout.running);
        names.sort_by_key(|(_, changed)| *changed);
        let files: std::collections::HashSet<&str> =
            names.iter().map(|(name, _)| name.as_str()).collect();
        let mut found = Vec::new();
        for (name, _) in &names {
            if let Some(stem) = name.strip_suffix(RESULT_SUFFIX) {
                if !files.contains(stem) {
                    // The file finished; its progress record was left behind.
                    let _ = fs::remove_file(self.layout.running.join(name));
                }
                continue;
            }
            let result = self.progress(name);
            let known = recorded_due(&result).zip(result.task.clone());
            let (arrived, due, task) = match known {
                Some(((arrived, due), task)) => (arrived, due, task),
                // Claimed, and jobd stopped before it wrote the first record.
                None => match inspect::inspect(&self.layout.running, name, &self.allowed, config) {
                    Look::Valid(read) => {
                        let due = read.request.due(read.arrived);
                        (read.arrived, due, read.request.task)
                    }
                    Look::Vanished => continue,
                    Look::InPlace(reason) | Look::Refused { reason, .. } => {
                        self.reject_claimed(name, &reason, result);
                        continue;
                    }
                },
            };
            self.forget_unclaimed_copy(name);
            found.push(Found {
                name: name.clone(),
                result,
                task,
                arrived,
                due,
            });
        }
        self.stop_leftovers(&found, config);
        for file in found {
            self.hold_recovered(file, now);
        }
    }

    /// A claim copies `new/NAME` into `running/NAME`, then removes the original: a jobd
    /// that died in between left both. The same bytes are the same request.
    fn forget_unclaimed_copy(&self, name: &str) {
        let original = self.layout.new.join(name);
        let same = fs::read(&original).ok().is_some_and(|bytes| {
            fs::read(self.layout.running.join(name)).is_ok_and(|c| c == bytes)
        });
        if same {
            let _ = fs::remove_file(original);
        }
    }

    /// Attempts without an end were cut off: their processes, if any still run, are
    /// stopped before the files run again.
    fn stop_leftovers(&self, found: &[Found], config: &Config) {
        let cut: Vec<(&Found, &str)> = found
            .iter()
            .flat_map(|file| {
                file.result
                    .attempts
                    .iter()
                    .filter(|a| !a.is_over())
                    .map(move |a| (file, a.run_id.as_str()))
            })
            .collect();
        let ids: Vec<&str> = cut.iter().map(|(_, id)| *id).collect();
        let mut alive = orphans::of_runs(&ids, None);
        for (file, run_id) in cut {
            let Some(pids) = alive.remove(run_id) else {
                continue;
            };
            let grace = config
                .task(&file.task)
                .map_or(config::DEFAULT_KILL_GRACE, |task| task.run.kill_grace)
                // It blocks the start: a task's long kill_grace is not worth waiting out.
                .min(config::DEFAULT_KILL_GRACE);
            warn!(
                "spool: the interrupted attempt of {} (run {run_id}) is still running as pid {}; \
                 stopping it before running the file again",
                printable(&file.name),
                pids.iter()
                    .map(|pid| pid.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            orphans::stop(&pids, grace);
        }
    }

    /// Hold a recovered file: it runs again now, or at the retry it was waiting for.
    fn hold_recovered(&mut self, file: Found, now: Now) {
        let Found {
            name,
            mut result,
            task,
            arrived,
            due,
        } = file;
        let mut interrupted = false;
        for attempt in result.attempts.iter_mut().filter(|a| !a.is_over()) {
            attempt.interrupt();
            interrupted = true;
        }
        let retry_at = match (result.state, result.next_attempt_at.as_deref()) {
            (State::Retrying, Some(at)) => DateTime::parse_from_rfc3339(at)
                .ok()
                .map(|at| at.to_utc())
                .filter(|at| *at > now.wall),
            _ => None,
        };
        result.state = State::Retrying;
        result.next_attempt_at = Some(timestamp::precise(retry_at.unwrap_or(now.wall)));
        if let Err(e) = files::replace_shared(
            &self.layout.running.join(format!("{name}{RESULT_SUFFIX}")),
            &result.to_json(),
            self.modes.file,
            self.group,
            Durability::Unsynced,
        ) {
            warn!(
                "spool: cannot record the state of {}: {e}",
                printable(&name)
            );
        }
        let stage = match retry_at {
            Some(at) => {
                let wait = (at - now.wall).to_std().unwrap_or(Duration::ZERO);
                info!(
                    "spool: {} waits for its next attempt at {}",
                    printable(&name),
                    timestamp::precise(at)
                );
                Stage::Retrying {
                    at: now.mono + wait,
                }
            }
            None => {
                let why = if interrupted {
                    "was running when jobd stopped; running it again"
                } else {
                    "is due again"
                };
                info!(
                    "spool: {} {why} (attempt {})",
                    printable(&name),
                    result.attempts.len() + 1
                );
                Stage::Waiting
            }
        };
        self.queue.add(Item {
            name,
            task,
            claimed: true,
            inode: 0,
            arrived,
            due,
            stage,
        });
    }
}

/// When a file arrived and when it was due, from its progress record.
fn recorded_due(result: &SpoolResult) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let parse = |at: &Option<String>| {
        at.as_deref()
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.to_utc())
    };
    Some((parse(&result.received_at)?, parse(&result.scheduled_at)?))
}
