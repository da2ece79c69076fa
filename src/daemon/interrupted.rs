//! Runs a killed jobd left behind: found at start-up from the journal, their processes
//! stopped before anything fires again (so that a job never runs twice at once), and
//! recorded as `interrupted`.

use log::warn;
use nix::unistd::Pid;

use super::Daemon;
use crate::adapter::journal::{Entry, Journal};
use crate::adapter::orphans;
use crate::adapter::spawner::Spawner;
use crate::leaf::now::Now;
use crate::machine::supervisor::{Ended, Origin};
use crate::model::config::DEFAULT_KILL_GRACE;
use crate::model::record::{Outcome, RunRecord};

/// Stop the processes of the runs the journal holds: SIGTERM, then SIGKILL after the
/// longest of their kill_graces (at most the default 10 s: it holds up the start).
/// /proc is read once for all of them. Blocks; runs once, before the loop.
pub(super) fn stop_left_behind(journal: &Journal) -> Vec<Entry> {
    let entries = journal.left_behind();
    if entries.is_empty() {
        return entries;
    }
    let ids: Vec<&str> = entries.iter().map(|e| e.run_id.as_str()).collect();
    let found = orphans::of_runs(&ids, None);
    let mut pids: Vec<Pid> = Vec::new();
    for entry in &entries {
        if let Some(alive) = found.get(&entry.run_id) {
            warn!(
                "{}[{}]: still running from before jobd stopped (pid {}); stopping it \
                 before anything starts",
                entry.name,
                entry.run_id,
                alive
                    .iter()
                    .map(|pid| pid.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            pids.extend(alive);
        }
    }
    if !pids.is_empty() {
        let grace = entries
            .iter()
            .map(Entry::kill_grace)
            .max()
            .unwrap_or(DEFAULT_KILL_GRACE)
            .min(DEFAULT_KILL_GRACE);
        orphans::stop(&pids, grace);
    }
    entries
}

impl<S: Spawner> Daemon<S> {
    /// Record each run a killed jobd left behind as ended, `interrupted`.
    pub(super) fn record_interrupted(&mut self, entries: Vec<Entry>, now: Now) {
        for entry in entries {
            warn!(
                "{}[{}]: was running when jobd stopped; recorded as interrupted",
                entry.name, entry.run_id
            );
            let origin = match entry.origin.split_once(':') {
                Some(("spool", file)) => Origin::Spool(file.to_string()),
                Some(("oneoff", id)) => id.parse().map_or(Origin::Job, Origin::Oneoff),
                _ if entry.origin == "hook" => Origin::Hook(
                    entry
                        .name
                        .strip_suffix(crate::model::config::HOOK_SUFFIX)
                        .unwrap_or(&entry.name)
                        .to_string(),
                ),
                _ => Origin::Job,
            };
            self.ended(
                Ended {
                    origin,
                    record: RunRecord {
                        job: entry.name,
                        run_id: entry.run_id,
                        attempt: entry.attempt,
                        scheduled_at: entry.scheduled_at,
                        started_at: entry.started_at,
                        ended_at: now.wall,
                        outcome: Outcome::Interrupted,
                        output: Vec::new(),
                    },
                },
                now,
            );
        }
    }
}

/// How a journal entry names what started a run.
pub(super) fn origin_word(origin: &Origin) -> String {
    match origin {
        Origin::Job => "job".to_string(),
        Origin::Hook(_) => "hook".to_string(),
        Origin::Spool(file) => format!("spool:{file}"),
        Origin::Oneoff(id) => format!("oneoff:{id}"),
    }
}
