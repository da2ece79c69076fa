//! One-off jobs in the shared table: submit (and spool ingest by origin), claim with
//! SKIP LOCKED, finish or retry, when the next delayed one is due, and whether the
//! listener still listens.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Operation;
use crate::adapter::postgres::{DecodeError, Query, Rows};

/// Add a one-off (and announce it on `ONEOFF_CHANNEL`). With an `origin` already
/// present nothing is added: spool ingest uses `<host_id>/<file name>`, so a crash
/// between the commit and moving the file only ingests it again, harmlessly.
#[derive(Debug, Clone, PartialEq)]
pub struct Submit {
    pub task: String,
    pub args: Vec<String>,
    pub env: serde_json::Map<String, Value>,
    pub data: Option<Value>,
    /// When it is due; else now + `delay` on the database's clock; else now.
    pub run_at: Option<DateTime<Utc>>,
    pub delay: Option<Duration>,
    /// None: the task's own `retries` + 1, from the jobfile of the host that runs it.
    pub max_attempts: Option<u32>,
    pub origin: Option<String>,
}

impl Submit {
    /// A one-off of `task` with nothing else set.
    pub fn task(task: &str) -> Submit {
        Submit {
            task: task.to_string(),
            args: Vec::new(),
            env: serde_json::Map::new(),
            data: None,
            run_at: None,
            delay: None,
            max_attempts: None,
            origin: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    /// None only if the row of an existing origin was pruned meanwhile.
    pub id: Option<i64>,
    /// False: the origin was already there.
    pub created: bool,
}

impl Operation for Submit {
    type Output = Submitted;

    fn query(&self) -> Query {
        Query::new(
            "SELECT id, created FROM jobd.submit($1::text, $2::jsonb, $3::jsonb, $4::jsonb,
                $5::timestamptz, $6::interval, $7::int, $8::text)",
        )
        .bind(self.task.as_str())
        .bind(Value::from(self.args.clone()))
        .bind(Value::Object(self.env.clone()))
        .bind(self.data.clone())
        .bind(self.run_at)
        .bind(self.delay)
        .bind(self.max_attempts)
        .bind(self.origin.clone())
    }

    fn decode(rows: &Rows) -> Result<Submitted, DecodeError> {
        Ok(match rows.iter().next() {
            Some(row) => Submitted {
                id: row.opt_i64("id")?,
                created: row.bool("created")?,
            },
            None => Submitted {
                id: None,
                created: false,
            },
        })
    }
}

/// Claim up to `limit` due one-offs of `tasks` for this host (free workers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimOneoffs {
    pub host_id: String,
    pub lease: Duration,
    /// The tasks this host's jobfile declares.
    pub tasks: Vec<String>,
    pub limit: u32,
}

/// A one-off this host now runs (under its lease).
#[derive(Debug, Clone, PartialEq)]
pub struct Oneoff {
    pub id: i64,
    pub task: String,
    /// As submitted: the daemon checks them against the task's `accept` rules like a
    /// spool file's before running anything.
    pub args: Value,
    pub env: Value,
    pub data: Value,
    pub run_at: DateTime<Utc>,
    /// JOBD_ATTEMPT: 1 for the first attempt.
    pub attempt: i32,
    pub max_attempts: Option<i32>,
    pub origin: Option<String>,
    pub submitted_at: DateTime<Utc>,
    /// What an earlier attempt recorded (a retry's errors so far), else null.
    pub result: Value,
}

impl Operation for ClaimOneoffs {
    type Output = Vec<Oneoff>;

    fn query(&self) -> Query {
        Query::new(
            "SELECT id, task, args, env, data, extract(epoch FROM run_at) AS run_at, attempt,
                    max_attempts, origin, extract(epoch FROM submitted_at) AS submitted_at,
                    result
               FROM jobd.claim_oneoffs($1::text, $2::interval, $3::text[], $4::int)",
        )
        .bind(self.host_id.as_str())
        .bind(self.lease)
        .bind(&self.tasks[..])
        .bind(self.limit)
    }

    fn decode(rows: &Rows) -> Result<Vec<Oneoff>, DecodeError> {
        rows.iter()
            .map(|row| {
                Ok(Oneoff {
                    id: row.i64("id")?,
                    task: row.text("task")?,
                    args: row.json("args")?,
                    env: row.json("env")?,
                    data: row.json("data")?,
                    run_at: row.epoch("run_at")?,
                    attempt: row.i32("attempt")?,
                    max_attempts: row.opt_i32("max_attempts")?,
                    origin: row.opt_text("origin")?,
                    submitted_at: row.epoch("submitted_at")?,
                    result: row.json("result")?,
                })
            })
            .collect()
    }
}

/// Record a one-off's attempt: done, failed, or (a failure with attempts left) queued
/// again after `retry_delay` × 2^(attempt − 1).
#[derive(Debug, Clone, PartialEq)]
pub struct FinishOneoff {
    pub id: i64,
    pub host_id: String,
    pub success: bool,
    pub result: Value,
    /// The task's `retries` + 1 (a row's own max_attempts wins).
    pub max_attempts: u32,
    pub retry_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneoffFinished {
    Done,
    Failed,
    Retrying {
        run_at: DateTime<Utc>,
    },
    /// No longer this host's (rescued after its lease ran out): nothing recorded.
    Stale,
}

impl Operation for FinishOneoff {
    type Output = OneoffFinished;

    fn query(&self) -> Query {
        Query::new(
            "SELECT state, extract(epoch FROM run_at) AS run_at FROM jobd.finish_oneoff(
                $1::bigint, $2::text, $3::boolean, $4::jsonb, $5::int, $6::interval)",
        )
        .bind(self.id)
        .bind(self.host_id.as_str())
        .bind(self.success)
        .bind(self.result.clone())
        .bind(self.max_attempts)
        .bind(self.retry_delay)
    }

    fn decode(rows: &Rows) -> Result<OneoffFinished, DecodeError> {
        let row = rows.first("jobd.finish_oneoff")?;
        Ok(match row.str("state")? {
            "done" => OneoffFinished::Done,
            "failed" => OneoffFinished::Failed,
            "queued" => OneoffFinished::Retrying {
                run_at: row.epoch("run_at")?,
            },
            "stale" => OneoffFinished::Stale,
            other => {
                return Err(DecodeError::new(
                    "state",
                    format!("unknown state `{other}`"),
                ));
            }
        })
    }
}

/// How long until the next queued one-off of `tasks` is due, on the database's clock
/// (zero: due now; None: nothing queued): arm a timer for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextOneoff {
    pub tasks: Vec<String>,
}

impl Operation for NextOneoff {
    type Output = Option<Duration>;

    fn query(&self) -> Query {
        Query::new("SELECT extract(epoch FROM jobd.next_oneoff($1::text[])) AS due_in")
            .bind(&self.tasks[..])
    }

    fn decode(rows: &Rows) -> Result<Option<Duration>, DecodeError> {
        let Some(text) = rows.first("jobd.next_oneoff")?.opt_str("due_in")? else {
            return Ok(None);
        };
        text.parse::<f64>()
            .ok()
            .and_then(|seconds| Duration::try_from_secs_f64(seconds.max(0.0)).ok())
            .map(Some)
            .ok_or_else(|| DecodeError::new("due_in", format!("`{text}` is not a duration")))
    }
}

/// Whether this session LISTENs to `channel`: the listener's health check (a session
/// can lose its LISTEN without noticing, e.g. behind a pooler that reconnected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    pub channel: String,
}

impl Operation for Listening {
    type Output = bool;

    fn query(&self) -> Query {
        Query::new(
            "SELECT EXISTS (SELECT 1 FROM pg_listening_channels() AS c WHERE c = $1::text)
                 AS listening",
        )
        .bind(self.channel.as_str())
    }

    fn decode(rows: &Rows) -> Result<bool, DecodeError> {
        rows.first("pg_listening_channels")?.bool("listening")
    }
}
