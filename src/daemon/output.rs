//! What runs write: each line kept in its job's log file (`jobctl logs`), and sent to
//! the clients that wait for the run (`run --wait`) or follow its job (`logs --follow`).

use super::Daemon;
use crate::adapter::control::protocol::{Body, MAX_LOG_LINES};
use crate::adapter::logs;
use crate::adapter::spawner::Spawner;
use crate::model::record::LogLine;

/// How many of the latest runs' jobs `logs` without a job reads.
const RECENT_JOBS: usize = 20;

impl<S: Spawner> Daemon<S> {
    /// Hand on the lines runs wrote since the last turn.
    pub(super) fn pass_output(&mut self) {
        let lines = self.supervisor.take_output();
        if lines.is_empty() {
            return;
        }
        let server = &mut self.server;
        self.waiters.retain(|(client, _)| server.connected(*client));
        self.followers
            .retain(|(client, _)| server.connected(*client));
        for line in lines {
            self.rings.append(&line);
            for (client, _) in self.waiters.iter().filter(|(_, id)| *id == line.run_id) {
                self.server.stream(*client, Body::Line(line.clone()));
            }
            for (client, _) in self
                .followers
                .iter()
                .filter(|(_, job)| job.as_deref().is_none_or(|job| job == line.job))
            {
                self.server.stream(*client, Body::Line(line.clone()));
            }
        }
    }

    /// `jobctl logs [TARGET] [-n N]`: the last lines of a job, task or hook run name,
    /// or of one run by its id, or of the latest runs' jobs; oldest first.
    pub(super) fn logs(&self, target: Option<&str>, lines: usize) -> Result<Vec<LogLine>, String> {
        if lines > MAX_LOG_LINES {
            return Err(format!(
                "`logs` shows at most {MAX_LOG_LINES} lines; {lines} were asked for"
            ));
        }
        let state = &self.config.state_dir;
        let Some(target) = target else {
            // The jobs of the latest runs, and what runs now: bounded however many
            // jobs the jobfile holds.
            let mut jobs: Vec<String> = self
                .history
                .recent(None, RECENT_JOBS)
                .into_iter()
                .map(|run| run.job)
                .chain(self.supervisor.running_names().map(str::to_string))
                .collect();
            jobs.sort();
            jobs.dedup();
            let mut all: Vec<LogLine> = jobs
                .iter()
                .flat_map(|job| logs::last(state, job, None, lines))
                .collect();
            all.sort_by(|a, b| a.at.cmp(&b.at));
            let skip = all.len().saturating_sub(lines);
            return Ok(all.split_off(skip));
        };
        if self.knows(target) {
            return Ok(logs::last(state, target, None, lines));
        }
        let job = self
            .supervisor
            .job_of(target)
            .or_else(|| self.history.job_of(target))
            .ok_or_else(|| {
                format!("`{target}` is neither a job, a task nor the id of a recent run")
            })?;
        Ok(logs::last(state, job, Some(target), lines))
    }
}
