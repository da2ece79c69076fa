//! `X.result.json`: what became of a spool file.

use serde::{Deserialize, Serialize};

use crate::leaf::timestamp;
use crate::model::record::{Outcome, RunRecord, Verdict, signal_name};

/// The result of one file, written beside it in `done/` or `failed/`; while the file
/// runs, the same record in `running/` counts its attempts across restarts of jobd.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolResult {
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// `running`, `done` or `failed`.
    pub status: String,
    /// Why the file failed without running, or why it stopped being retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it arrived in `new/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub run_id: String,
    pub started_at: String,
    /// None while it runs, and for an attempt jobd did not see end (it was stopped).
    #[serde(default)]
    pub ended_at: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<String>,
    #[serde(default)]
    pub timed_out: bool,
    /// Why it could not start, or that jobd stopped while it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

    pub fn ended(record: &RunRecord) -> Attempt {
        let mut attempt = Attempt::started(record.attempt, &record.run_id, record.started_at);
        attempt.ended_at = Some(timestamp::precise(record.ended_at));
        attempt.exit_code = record.outcome.exit_code();
        attempt.signal = record.outcome.signal().map(signal_name);
        attempt.timed_out = record.outcome.verdict() == Verdict::Timeout;
        if let Outcome::SpawnError { reason } = &record.outcome {
            attempt.error = Some(reason.clone());
        }
        attempt
    }
}

impl SpoolResult {
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a result always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// A record left in `running/` by an earlier jobd; damaged ones count as empty.
    pub fn from_json(bytes: &[u8]) -> Option<SpoolResult> {
        serde_json::from_slice(bytes).ok()
    }
}
