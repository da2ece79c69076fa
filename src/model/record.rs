//! What is known about a run once it has ended.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::adapter::control::protocol::RunInfo;
use crate::machine::supervisor::child_time;

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
    /// The last lines of output, kept when the run did not succeed.
    pub output: Vec<String>,
}

impl RunRecord {
    /// The record as the control protocol and the state file carry it.
    pub fn info(&self) -> RunInfo {
        let (outcome, exit_code, signal) = match &self.outcome {
            Outcome::Exited(0) => ("succeeded", Some(0), None),
            Outcome::Exited(code) => ("failed", Some(*code), None),
            Outcome::Signaled(s) => ("killed", None, Some(signal_name(*s))),
            Outcome::TimedOut { signal } => ("timed_out", None, signal.map(signal_name)),
            Outcome::NotStarted(_) => ("not_started", None, None),
        };
        RunInfo {
            job: self.job.clone(),
            run_id: self.run_id.clone(),
            attempt: self.attempt,
            scheduled_at: child_time(self.scheduled_at),
            started_at: child_time(self.started_at),
            ended_at: child_time(self.ended_at),
            duration_ms: (self.ended_at - self.started_at).num_milliseconds().max(0) as u64,
            outcome: outcome.to_string(),
            exit_code,
            signal,
            message: self.outcome.to_string(),
            output: self.output.clone(),
        }
    }
}
