//! `on_failure:`: whether a failure runs its job's hook now (repeated failures are
//! rate-limited and counted), and what the hook is told about it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::leaf::timestamp;
use crate::model::config::{Hook, RunSpec};
use crate::model::record::{RunRecord, signal_name};

/// A failure worth telling a hook about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub job: String,
    /// The failed run's id; empty for an overdue job, which has no run.
    pub run_id: String,
    /// The failed run's outcome word (`failure`, `killed`, `timeout`, `spawn_error`,
    /// `lost`), or `overdue`.
    pub outcome: String,
    /// The failed run's exit code, or the signal that ended it, if any.
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub message: String,
    pub at: DateTime<Utc>,
    /// The last lines of the failed run's output, given to the hook on stdin.
    pub output: Vec<String>,
}

impl Failure {
    pub fn of_run(record: &RunRecord) -> Failure {
        Failure {
            job: record.job.clone(),
            run_id: record.run_id.clone(),
            outcome: record.outcome.verdict().word().to_string(),
            exit_code: record.outcome.exit_code(),
            signal: record.outcome.signal().map(signal_name),
            message: format!("{} {}", record.job, record.outcome),
            at: record.ended_at,
            output: record.output.clone(),
        }
    }

    pub fn overdue(job: &str, since: DateTime<Utc>, now: DateTime<Utc>) -> Failure {
        let late = (now - since).to_std().unwrap_or_default();
        Failure {
            job: job.to_string(),
            run_id: String::new(),
            outcome: "overdue".to_string(),
            exit_code: None,
            signal: None,
            message: format!(
                "{job} has not succeeded for {} (since {})",
                crate::leaf::duration::format(Duration::from_secs(late.as_secs())),
                timestamp::precise(since)
            ),
            at: now,
            output: Vec::new(),
        }
    }

    /// The variables the hook gets, `suppressed` being the failures that ran no hook
    /// since the last one that did.
    pub fn vars(&self, suppressed: u64) -> BTreeMap<String, String> {
        [
            ("JOBD_FAILED_JOB", self.job.clone()),
            ("JOBD_FAILED_RUN_ID", self.run_id.clone()),
            ("JOBD_FAILED_OUTCOME", self.outcome.clone()),
            (
                "JOBD_FAILED_EXIT_CODE",
                self.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            ),
            (
                "JOBD_FAILED_SIGNAL",
                self.signal.clone().unwrap_or_default(),
            ),
            ("JOBD_FAILED_MESSAGE", self.message.clone()),
            ("JOBD_FAILED_AT", timestamp::precise(self.at)),
            ("JOBD_FAILED_SUPPRESSED", suppressed.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The hook's stdin: the failed run's last lines.
    pub fn stdin(&self) -> Vec<u8> {
        let mut text = self.output.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        text.into_bytes()
    }
}

/// The process a hook runs: its own command and timeout, with the job's workdir, env,
/// user and kill_grace; in `fallback` (the jobfile's folder) when the job's workdir is
/// missing, or a job failing for that reason could not be reported.
pub fn spec(hook: &Hook, job: &RunSpec, fallback: &Path) -> RunSpec {
    RunSpec {
        command: hook.command.clone(),
        timeout: Some(hook.timeout),
        workdir: if job.workdir.is_dir() {
            job.workdir.clone()
        } else {
            fallback.to_path_buf()
        },
        // A hook runs cold: its command is a program, not what a runtime runs.
        runtime: None,
        ..job.clone()
    }
}

/// What a job's name becomes for its hook's runs, in logs and the history.
pub fn run_name(job: &str) -> String {
    format!("{job}{}", crate::model::config::HOOK_SUFFIX)
}

/// What to do with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    /// Run the hook; `suppressed` failures ran none since the last hook.
    Run { suppressed: u64 },
    /// A hook ran for this job less than `repeat_after` ago: count this one.
    Suppress,
}

#[derive(Debug, Clone, Copy, Default)]
struct Limit {
    last: Option<DateTime<Utc>>,
    suppressed: u64,
}

/// Per job, when its hook last ran and how many failures it has not been told about.
#[derive(Debug, Default)]
pub struct Limiter {
    jobs: HashMap<String, Limit>,
}

impl Limiter {
    /// A run of `job` failed at `now`. Overdue alerts come once per period already and
    /// are not limited (`limit: false`), but they do carry the count.
    pub fn failed(
        &mut self,
        job: &str,
        repeat_after: Duration,
        limit: bool,
        now: DateTime<Utc>,
    ) -> Alert {
        let entry = self.jobs.entry(job.to_string()).or_default();
        let recent = entry.last.is_some_and(|last| {
            now < last + chrono::Duration::from_std(repeat_after).unwrap_or(chrono::TimeDelta::MAX)
        });
        if limit && recent {
            entry.suppressed += 1;
            return Alert::Suppress;
        }
        let suppressed = std::mem::take(&mut entry.suppressed);
        entry.last = Some(now);
        Alert::Run { suppressed }
    }

    /// A failure of `job` that runs no hook for another reason (one is still
    /// running): counted for the next hook.
    pub fn suppress(&mut self, job: &str) -> Alert {
        self.jobs.entry(job.to_string()).or_default().suppressed += 1;
        Alert::Suppress
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::Outcome;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn repeated_failures_run_one_hook_per_period_and_pass_on_the_count() {
        let mut limiter = Limiter::default();
        let period = Duration::from_secs(60);
        assert_eq!(
            limiter.failed("a", period, true, at(0)),
            Alert::Run { suppressed: 0 }
        );
        for s in 1..60 {
            assert_eq!(limiter.failed("a", period, true, at(s)), Alert::Suppress);
        }
        // Another job has its own period.
        assert_eq!(
            limiter.failed("b", period, true, at(30)),
            Alert::Run { suppressed: 0 }
        );
        assert_eq!(
            limiter.failed("a", period, true, at(60)),
            Alert::Run { suppressed: 59 }
        );
        assert_eq!(limiter.failed("a", period, true, at(61)), Alert::Suppress);
        // An overdue alert is not held back, and carries the count.
        assert_eq!(
            limiter.failed("a", period, false, at(62)),
            Alert::Run { suppressed: 1 }
        );
    }

    #[test]
    fn a_failure_is_described_for_the_hook() {
        let record = RunRecord {
            job: "import".into(),
            run_id: "r-1".into(),
            attempt: 1,
            scheduled_at: at(0),
            started_at: at(0),
            ended_at: at(5),
            outcome: Outcome::Killed { signal: 9 },
            output: vec!["one".into(), "two".into()],
        };
        let failure = Failure::of_run(&record);
        let vars = failure.vars(3);
        assert_eq!(vars["JOBD_FAILED_OUTCOME"], "killed");
        assert_eq!(vars["JOBD_FAILED_SIGNAL"], "SIGKILL");
        assert_eq!(vars["JOBD_FAILED_EXIT_CODE"], "");
        assert_eq!(vars["JOBD_FAILED_SUPPRESSED"], "3");
        assert_eq!(vars["JOBD_FAILED_AT"], "2027-01-15T08:00:05.000000Z");
        assert_eq!(failure.stdin(), b"one\ntwo\n");
        let exit = Failure::of_run(&RunRecord {
            outcome: Outcome::Failure { code: 3 },
            ..record.clone()
        });
        assert_eq!(exit.outcome, "failure");
        assert_eq!(exit.vars(0)["JOBD_FAILED_EXIT_CODE"], "3");
        let overdue = Failure::overdue("import", at(0), at(90_000));
        assert_eq!(overdue.outcome, "overdue");
        assert!(overdue.message.contains("1d1h"), "{}", overdue.message);
    }
}
