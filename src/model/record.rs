//! What is known about a run once it has ended, and the one vocabulary its outcome is
//! said in: the history, `--json`, metrics labels, hook variables and spool results
//! all use `Verdict`'s words.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::leaf::timestamp;

/// Why jobd itself stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Its `timeout` passed.
    Timeout,
    /// `on_overlap: replace` made room for a newer instant.
    Replaced,
    /// A reload removed its job (`removed_jobs: stop`).
    Removed,
    /// jobd is shutting down.
    Shutdown,
    /// Cluster mode: this host's lease on the run ran out, so another host may run it.
    Fenced,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stop::Timeout => "its timeout passed",
            Stop::Replaced => "a newer instant replaced it (on_overlap: replace)",
            Stop::Removed => "its job was removed from the jobfile (removed_jobs: stop)",
            Stop::Shutdown => "jobd was shutting down",
            Stop::Fenced => {
                "this host's lease on it ran out (cluster mode): another host may run it"
            }
        })
    }
}

/// How a run ended, in one word each: the vocabulary of every output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Exit status 0.
    Success,
    /// Exit status not 0.
    Failure,
    /// Ended by a signal jobd did not send.
    Killed,
    /// jobd stopped it when its `timeout` passed.
    Timeout,
    /// It could not be started.
    SpawnError,
    /// jobd stopped it: shutdown, `on_overlap: replace`, `removed_jobs: stop`. Not a
    /// failure of the job's own.
    Stopped,
    /// jobd died while it ran; found and recorded at the next start.
    Interrupted,
    /// Its host died while it ran (cluster mode).
    Lost,
}

impl Verdict {
    pub const ALL: [Verdict; 8] = [
        Verdict::Success,
        Verdict::Failure,
        Verdict::Killed,
        Verdict::Timeout,
        Verdict::SpawnError,
        Verdict::Stopped,
        Verdict::Interrupted,
        Verdict::Lost,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::Failure => "failure",
            Verdict::Killed => "killed",
            Verdict::Timeout => "timeout",
            Verdict::SpawnError => "spawn_error",
            Verdict::Stopped => "stopped",
            Verdict::Interrupted => "interrupted",
            Verdict::Lost => "lost",
        }
    }

    /// A failure of the job's own: it runs `on_failure`, is retried (tasks), and sorts
    /// a job first in `jobctl status`. jobd stopping it, or dying under it, is not.
    pub fn is_failure(self) -> bool {
        match self {
            Verdict::Failure
            | Verdict::Killed
            | Verdict::Timeout
            | Verdict::SpawnError
            | Verdict::Lost => true,
            Verdict::Success | Verdict::Stopped | Verdict::Interrupted => false,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// How a run ended, with what jobd knows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure {
        code: i32,
    },
    Killed {
        signal: i32,
    },
    /// `signal` is what finally ended it, if a signal did.
    Timeout {
        signal: Option<i32>,
    },
    SpawnError {
        reason: String,
    },
    /// `why` is never `Stop::Timeout` (that is `Outcome::Timeout`).
    Stopped {
        why: Stop,
        signal: Option<i32>,
    },
    Interrupted,
    Lost,
}

impl Outcome {
    /// The outcome of a process that exited on its own (`stopped` is None) or after
    /// jobd stopped it.
    pub fn of_exit(status: ExitStatus, stopped: Option<Stop>) -> Outcome {
        let signal = match status {
            ExitStatus::Signal(signal) => Some(signal),
            ExitStatus::Code(_) => None,
        };
        match (stopped, status) {
            (None, ExitStatus::Code(0)) => Outcome::Success,
            (None, ExitStatus::Code(code)) => Outcome::Failure { code },
            (None, ExitStatus::Signal(signal)) => Outcome::Killed { signal },
            (Some(Stop::Timeout), _) => Outcome::Timeout { signal },
            (Some(why), _) => Outcome::Stopped { why, signal },
        }
    }

    pub fn verdict(&self) -> Verdict {
        match self {
            Outcome::Success => Verdict::Success,
            Outcome::Failure { .. } => Verdict::Failure,
            Outcome::Killed { .. } => Verdict::Killed,
            Outcome::Timeout { .. } => Verdict::Timeout,
            Outcome::SpawnError { .. } => Verdict::SpawnError,
            Outcome::Stopped { .. } => Verdict::Stopped,
            Outcome::Interrupted => Verdict::Interrupted,
            Outcome::Lost => Verdict::Lost,
        }
    }

    pub fn success(&self) -> bool {
        *self == Outcome::Success
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Outcome::Success => Some(0),
            Outcome::Failure { code } => Some(*code),
            _ => None,
        }
    }

    pub fn signal(&self) -> Option<i32> {
        match self {
            Outcome::Killed { signal } => Some(*signal),
            Outcome::Timeout { signal } | Outcome::Stopped { signal, .. } => *signal,
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => f.write_str("succeeded"),
            Outcome::Failure { code } => write!(f, "failed with exit code {code}"),
            Outcome::Killed { signal } => write!(f, "killed by {}", signal_name(*signal)),
            Outcome::Timeout { signal: Some(s) } => {
                write!(f, "timed out (ended by {})", signal_name(*s))
            }
            Outcome::Timeout { signal: None } => f.write_str("timed out"),
            Outcome::SpawnError { reason } => write!(f, "could not start: {reason}"),
            Outcome::Stopped { why, .. } => write!(f, "stopped: {why}"),
            Outcome::Interrupted => f.write_str("interrupted: jobd stopped while it ran"),
            Outcome::Lost => f.write_str("lost: its host stopped while it ran"),
        }
    }
}

/// Which of a run's pipes a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn word(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One line a run wrote, as `jobctl logs` and `run --wait` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When jobd read it: RFC 3339 in UTC with microseconds.
    pub at: String,
    pub job: String,
    pub run_id: String,
    pub stream: Stream,
    /// As the run wrote it (invalid UTF-8 replaced), without its newline.
    pub text: String,
}

/// How a process ended, as its parent (or a runtime server) saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

pub fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {signal}"),
    }
}

/// The number of a signal named like `SIGTERM`.
pub fn signal_number(name: &str) -> Option<i32> {
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
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
    /// The record as the history keeps it and the control protocol carries it.
    pub fn info(&self) -> RunInfo {
        RunInfo {
            job: self.job.clone(),
            run_id: self.run_id.clone(),
            attempt: self.attempt,
            scheduled_at: timestamp::precise(self.scheduled_at),
            started_at: timestamp::precise(self.started_at),
            ended_at: timestamp::precise(self.ended_at),
            duration_ms: (self.ended_at - self.started_at).num_milliseconds().max(0) as u64,
            outcome: self.outcome.verdict(),
            exit_code: self.outcome.exit_code(),
            signal: self.outcome.signal().map(signal_name),
            message: self.outcome.to_string(),
            output: self.output.clone(),
            host: None,
        }
    }
}

/// One ended run as the history stores it (a line of `history.jsonl`) and as
/// `jobctl history --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    pub job: String,
    pub run_id: String,
    pub attempt: u32,
    pub scheduled_at: String,
    pub started_at: String,
    pub ended_at: String,
    pub duration_ms: u64,
    pub outcome: Verdict,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    /// What happened, in words.
    pub message: String,
    /// The last lines of output of a run that did not succeed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<String>,
    /// In cluster mode, the host it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl RunInfo {
    /// The status a shell would report for the run (`jobctl run --wait` exits with
    /// it): the exit code, 128 + the signal that ended it, 127 when it could not
    /// start, and 1 for a run whose end jobd did not see.
    pub fn shell_status(&self) -> i32 {
        if let Some(code) = self.exit_code {
            return code;
        }
        if let Some(signal) = self.signal.as_deref().and_then(signal_number) {
            return 128 + signal;
        }
        match self.outcome {
            Verdict::SpawnError => 127,
            Verdict::Timeout | Verdict::Stopped => 128 + nix::sys::signal::Signal::SIGTERM as i32,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verdict_has_one_word_that_serde_writes_and_reads() {
        for verdict in Verdict::ALL {
            let json = serde_json::to_string(&verdict).unwrap();
            assert_eq!(json, format!("\"{}\"", verdict.word()));
            assert_eq!(serde_json::from_str::<Verdict>(&json).unwrap(), verdict);
        }
    }

    #[test]
    fn an_exit_becomes_an_outcome_by_who_stopped_it() {
        use ExitStatus::*;
        assert_eq!(Outcome::of_exit(Code(0), None), Outcome::Success);
        assert_eq!(
            Outcome::of_exit(Code(3), None),
            Outcome::Failure { code: 3 }
        );
        assert_eq!(
            Outcome::of_exit(Signal(9), None),
            Outcome::Killed { signal: 9 }
        );
        assert_eq!(
            Outcome::of_exit(Code(0), Some(Stop::Timeout)),
            Outcome::Timeout { signal: None }
        );
        assert_eq!(
            Outcome::of_exit(Signal(15), Some(Stop::Shutdown)).verdict(),
            Verdict::Stopped
        );
        assert!(!Verdict::Stopped.is_failure());
        assert!(Verdict::Timeout.is_failure());
    }

    #[test]
    fn the_shell_status_follows_the_shell() {
        let record = |outcome| RunRecord {
            job: "j".into(),
            run_id: "r".into(),
            attempt: 1,
            scheduled_at: Utc::now(),
            started_at: Utc::now(),
            ended_at: Utc::now(),
            outcome,
            output: Vec::new(),
        };
        assert_eq!(
            record(Outcome::Failure { code: 3 }).info().shell_status(),
            3
        );
        assert_eq!(
            record(Outcome::Killed { signal: 9 }).info().shell_status(),
            137
        );
        let spawn = Outcome::SpawnError {
            reason: "no".into(),
        };
        assert_eq!(record(spawn).info().shell_status(), 127);
        assert_eq!(
            record(Outcome::Timeout { signal: None })
                .info()
                .shell_status(),
            143
        );
    }
}
