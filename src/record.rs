//! What is known about a run once it has ended.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The process exited with this code (0 is success).
    Exited(i32),
    /// The process was killed by this signal (not by jobd's timeout).
    Signaled(i32),
    /// jobd stopped it because its `timeout` passed; `signal` is what finally ended it.
    TimedOut { signal: Option<i32> },
    /// It could not be started; the reason names the cause.
    NotStarted(String),
}

impl Outcome {
    pub fn success(&self) -> bool {
        *self == Outcome::Exited(0)
    }

    /// The exit code a shell would report: the code, or 128 + the signal.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Exited(code) => *code,
            Outcome::Signaled(signal) => 128 + signal,
            Outcome::TimedOut { signal } => {
                128 + signal.unwrap_or(nix::sys::signal::Signal::SIGTERM as i32)
            }
            Outcome::NotStarted(_) => 127,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(0) => f.write_str("succeeded"),
            Outcome::Exited(code) => write!(f, "failed with exit code {code}"),
            Outcome::Signaled(signal) => write!(f, "killed by {}", signal_name(*signal)),
            Outcome::TimedOut { signal: Some(s) } => {
                write!(f, "timed out (ended by {})", signal_name(*s))
            }
            Outcome::TimedOut { signal: None } => f.write_str("timed out"),
            Outcome::NotStarted(reason) => write!(f, "could not start: {reason}"),
        }
    }
}

pub fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {signal}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub job: String,
    pub run_id: String,
    pub attempt: u32,
    /// The instant the run stood for.
    pub scheduled_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub outcome: Outcome,
}

/// The most recent runs of each job, newest last.
#[derive(Debug, Default)]
pub struct History {
    by_job: HashMap<String, VecDeque<RunRecord>>,
}

/// Runs kept per job in memory.
pub const RUNS_KEPT: usize = 100;

impl History {
    pub fn push(&mut self, record: RunRecord) {
        let runs = self.by_job.entry(record.job.clone()).or_default();
        if runs.len() == RUNS_KEPT {
            runs.pop_front();
        }
        runs.push_back(record);
    }

    pub fn runs(&self, job: &str) -> impl Iterator<Item = &RunRecord> {
        self.by_job.get(job).into_iter().flatten()
    }
}
