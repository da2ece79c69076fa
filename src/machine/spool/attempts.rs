//! An attempt's life in the spool: recorded (with its value file made) before its
//! process exists, and when it ends, the file finished or scheduled for its next
//! attempt, with what the child handed back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use log::{info, warn};

use super::layout::RESULT_SUFFIX;
use super::queue::{Active, Item, Stage};
use super::result::{Attempt, SpoolResult, State};
use super::{Spool, printable, task_owner, values};
use crate::leaf::files::{self, Durability};
use crate::leaf::now::Now;
use crate::leaf::timestamp;
use crate::model::config::Config;
use crate::model::record::RunRecord;

impl Spool {
    /// The attempt of `file` that `dispatch` handed out is about to start as run
    /// `run_id`: its value file is made and its attempt recorded, before the process
    /// exists, so that if jobd dies at any moment after, the next start counts this
    /// attempt and can find (and stop) its processes by their run id. Returns the
    /// variables the child gets.
    pub fn starting(
        &mut self,
        file: &str,
        run_id: &str,
        now: DateTime<Utc>,
        config: &Config,
    ) -> Vec<(&'static str, String)> {
        let Some(key) = self.queue.in_running(file) else {
            return Vec::new();
        };
        let owner = self
            .queue
            .get(key)
            .and_then(|item| config.task(&item.task))
            .and_then(task_owner);
        let value = values::create(&self.layout.values, run_id, owner);
        let path = self.layout.running.join(file);
        let record = self.layout.running.join(format!("{file}{RESULT_SUFFIX}"));
        let (mode, group) = (self.modes.file, self.group);
        let Some(active) = self.queue.running_mut(key) else {
            return Vec::new();
        };
        let number = active.result.attempts.len() as u32 + 1;
        let mut attempt = Attempt::started(number, run_id, now);
        let value_file = match value {
            Ok(value) => value,
            Err(e) => {
                warn!(
                    "spool: cannot make the value file of {}: {e}",
                    printable(file)
                );
                attempt.value_error = Some(format!("jobd could not make the value file: {e}"));
                self.layout.values.join(format!("{run_id}.json"))
            }
        };
        active.result.attempts.push(attempt);
        active.result.state = State::Running;
        active.result.next_attempt_at = None;
        active.value = Some(value_file.clone());
        // Replaced whole, never truncated; not synced: a power cut loses only the count.
        if let Err(e) = files::replace_shared(
            &record,
            &active.result.to_json(),
            mode,
            group,
            Durability::Unsynced,
        ) {
            warn!(
                "spool: cannot record the attempt of {}: {e}",
                printable(file)
            );
        }
        vec![
            ("JOBD_SPOOL_FILE", path.display().to_string()),
            ("JOBD_SPOOL_NAME", file.to_string()),
            ("JOBD_RESULT_FILE", value_file.display().to_string()),
        ]
    }

    /// A spool run ended: finish the file, or schedule its next attempt. True when the
    /// file has failed for good (its last attempt failed).
    pub fn ended(&mut self, name: &str, record: &RunRecord, config: &Config, now: Now) -> bool {
        let Some(key) = self.queue.in_running(name) else {
            return false;
        };
        let Some(item) = self.queue.take(key) else {
            return false;
        };
        let Item {
            name,
            task,
            claimed,
            inode,
            arrived,
            due,
            stage,
        } = item;
        let Stage::Running(active) = stage else {
            return false;
        };
        let Active { mut result, value } = *active;
        let mut attempt = Attempt::ended(
            record,
            value.as_deref().map(values::take).unwrap_or_default(),
        );
        match result.attempts.last_mut() {
            Some(last) if last.run_id == record.run_id => {
                if attempt.value_error.is_none() {
                    attempt.value_error = last.value_error.take();
                }
                *last = attempt;
            }
            _ => result.attempts.push(attempt),
        }
        if record.outcome.success() {
            result.state = State::Done;
            let done = self.layout.done.clone();
            self.finish_claimed(&name, done, result);
            return false;
        }
        if self.stopping {
            // Stopped by jobd's own shutdown: it stays in running/ and runs again at
            // the next start.
            result.state = State::Retrying;
            result.next_attempt_at = None;
            self.write_progress(&name, &result);
            return false;
        }
        // A task removed by a reload is not retried.
        let (retries, retry_delay) = config
            .task(&task)
            .map_or((0, Duration::ZERO), |task| (task.retries, task.retry_delay));
        let tries = result.attempts.len() as u32;
        if tries <= retries {
            let delay = retry_delay.saturating_mul(1 << (tries - 1).min(20));
            info!(
                "spool: {} failed ({}); attempt {} of {} in {}",
                printable(&name),
                record.outcome,
                tries + 1,
                retries + 1,
                crate::leaf::duration::format(delay)
            );
            result.state = State::Retrying;
            let next =
                now.wall + chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::MAX);
            result.next_attempt_at = Some(timestamp::precise(next));
            self.write_progress(&name, &result);
            self.queue.put(
                key,
                Item {
                    name,
                    task,
                    claimed,
                    inode,
                    arrived,
                    due,
                    stage: Stage::Retrying {
                        at: now.mono + delay,
                    },
                },
                false,
            );
            return false;
        }
        result.state = State::Failed;
        result.reason = Some(format!(
            "{} after {tries} attempt{}",
            record.outcome,
            crate::leaf::words::plural(tries)
        ));
        let failed = self.layout.failed.clone();
        self.finish_claimed(&name, failed, result);
        true
    }

    /// Replace the progress record of a file in `running/`.
    fn write_progress(&self, name: &str, result: &SpoolResult) {
        if let Err(e) = files::replace_shared(
            &self.layout.running.join(format!("{name}{RESULT_SUFFIX}")),
            &result.to_json(),
            self.modes.file,
            self.group,
            Durability::Unsynced,
        ) {
            warn!("spool: cannot record the state of {}: {e}", printable(name));
        }
    }
}
