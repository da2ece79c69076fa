//! `X.result.json`: the state of a spool file, exactly as docs/spool-format.md has it.
//! Present from the claim on, rewritten at each change; what `jobctl spool` and the
//! Python package read.

use serde::{Deserialize, Serialize};

use crate::leaf::timestamp;
use crate::model::record::{Outcome, RunRecord, Verdict, signal_name};

/// The version of the format, for clients.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// An attempt runs.
    #[default]
    Running,
    /// An attempt failed, and the next one starts at `next_attempt_at` (or, when that
    /// is empty, when jobd starts again).
    Retrying,
    /// The last attempt succeeded.
    Done,
    /// The last attempt failed with no retry left, or the file was refused.
    Failed,
    /// Cluster mode: the request went on to the cluster's table, where any host runs it.
    Forwarded,
}

impl State {
    pub fn word(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Retrying => "retrying",
            State::Done => "done",
            State::Failed => "failed",
            State::Forwarded => "forwarded",
        }
    }
}

/// The result of one file. The latest attempt's fields are repeated at the top level,
/// for readers that want only them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpoolResult {
    pub version: u32,
    pub file: String,
    pub id: Option<String>,
    pub task: Option<String>,
    pub state: State,
    /// When it arrived in `new/`, and when it was due.
    pub received_at: Option<String>,
    pub scheduled_at: Option<String>,
    pub attempt: Option<u32>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub next_attempt_at: Option<String>,
    pub outcome: Option<Verdict>,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    /// Why the file failed without running, or why it stopped being retried.
    pub reason: Option<String>,
    pub value: Option<serde_json::Value>,
    pub value_error: Option<String>,
    pub output: Vec<String>,
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attempt {
    pub attempt: u32,
    pub run_id: String,
    pub started_at: String,
    /// None while it runs, and for an attempt jobd did not see end.
    pub ended_at: Option<String>,
    /// None while it runs.
    pub outcome: Option<Verdict>,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    /// Why it could not start, or that jobd stopped while it ran.
    pub error: Option<String>,
    pub value: Option<serde_json::Value>,
    pub value_error: Option<String>,
    pub output: Vec<String>,
}

/// What the child left in its value file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Value {
    pub value: Option<serde_json::Value>,
    pub error: Option<String>,
}

impl Attempt {
    pub fn started(
        attempt: u32,
        run_id: &str,
        started_at: chrono::DateTime<chrono::Utc>,
    ) -> Attempt {
        Attempt {
            attempt,
            run_id: run_id.to_string(),
            started_at: timestamp::precise(started_at),
            ..Attempt::default()
        }
    }

    pub fn ended(record: &RunRecord, value: Value) -> Attempt {
        let mut attempt = Attempt::started(record.attempt, &record.run_id, record.started_at);
        attempt.ended_at = Some(timestamp::precise(record.ended_at));
        attempt.outcome = Some(record.outcome.verdict());
        attempt.exit_code = record.outcome.exit_code();
        attempt.signal = record.outcome.signal().map(signal_name);
        if let Outcome::SpawnError { reason } = &record.outcome {
            attempt.error = Some(reason.clone());
        }
        attempt.value = value.value;
        attempt.value_error = value.error;
        attempt.output = record.output.clone();
        attempt
    }

    /// Whether jobd saw it end (an attempt of an earlier jobd may have been cut off).
    pub fn is_over(&self) -> bool {
        self.outcome.is_some() || self.ended_at.is_some()
    }

    /// An attempt that was running when jobd stopped, as the next jobd records it.
    pub fn interrupt(&mut self) {
        self.outcome = Some(Verdict::Interrupted);
        self.error = Some("jobd stopped while it ran".to_string());
    }
}

impl SpoolResult {
    /// The result of a file before any attempt.
    pub fn new(file: &str) -> SpoolResult {
        SpoolResult {
            version: VERSION,
            file: file.to_string(),
            ..SpoolResult::default()
        }
    }

    /// The record as written: the top-level fields copied from the latest attempt.
    pub fn to_json(&self) -> Vec<u8> {
        let mut whole = self.clone();
        whole.version = VERSION;
        let latest = self.attempts.last().cloned().unwrap_or_default();
        let any = !self.attempts.is_empty();
        whole.attempt = any.then_some(latest.attempt);
        whole.started_at = any.then_some(latest.started_at);
        whole.ended_at = latest.ended_at;
        whole.outcome = latest.outcome;
        whole.exit_code = latest.exit_code;
        whole.signal = latest.signal;
        whole.value = latest.value;
        whole.value_error = latest.value_error;
        whole.output = latest.output;
        let mut bytes = serde_json::to_vec_pretty(&whole).expect("a result always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// A record jobd wrote earlier; a damaged one counts as none.
    pub fn from_json(bytes: &[u8]) -> Option<SpoolResult> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_latest_attempt_is_repeated_at_the_top() {
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 11, 27, 17, 30, 5)
            .unwrap();
        let record = RunRecord {
            job: "long_report".into(),
            run_id: "1a2b3c4d-7".into(),
            attempt: 1,
            scheduled_at: at,
            started_at: at,
            ended_at: at,
            outcome: Outcome::Failure { code: 3 },
            output: vec!["boom".into()],
        };
        let mut result = SpoolResult::new("report-42.json");
        result.state = State::Retrying;
        result.attempts.push(Attempt::ended(
            &record,
            Value {
                value: Some(serde_json::json!({"rows": 12})),
                error: None,
            },
        ));
        let json: serde_json::Value = serde_json::from_slice(&result.to_json()).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["state"], "retrying");
        assert_eq!(json["attempt"], 1);
        assert_eq!(json["outcome"], "failure");
        assert_eq!(json["exit_code"], 3);
        assert_eq!(json["value"]["rows"], 12);
        assert_eq!(json["output"][0], "boom");
        assert_eq!(json["started_at"], "2026-11-27T17:30:05.000000Z");
        assert!(json["next_attempt_at"].is_null() && json["signal"].is_null());
        assert_eq!(json["attempts"][0]["run_id"], "1a2b3c4d-7");
        assert_eq!(
            SpoolResult::from_json(&result.to_json()).unwrap().attempts,
            result.attempts
        );
    }

    #[test]
    fn a_record_of_an_earlier_version_of_jobd_still_counts_its_attempts() {
        let old = br#"{"file": "x", "status": "running", "attempts": [
            {"attempt": 1, "run_id": "r-1", "started_at": "2026-01-01T00:00:00.000000Z",
             "ended_at": null, "exit_code": null, "signal": null, "timed_out": false}]}"#;
        let result = SpoolResult::from_json(old).unwrap();
        assert_eq!(result.attempts.len(), 1);
        assert!(!result.attempts[0].is_over());
    }
}
