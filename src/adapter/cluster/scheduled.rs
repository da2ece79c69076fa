//! Scheduled instants across hosts: claim, start, finish, and the cluster's last run of
//! a job. Every host computes the same instants; the first to claim one owns it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Operation;
use crate::adapter::postgres::{DecodeError, Query, Rows};

/// A job's `on_overlap`, as the claim applies it across hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    Skip,
    Queue,
    Replace,
}

impl Overlap {
    fn sql(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Replace => "replace",
        }
    }
}

/// Claim the instant `scheduled_at` of `job` for `host_id` (at the fire decision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimInstant {
    pub job: String,
    pub scheduled_at: DateTime<Utc>,
    pub host_id: String,
    pub lease: Duration,
    pub max_instances: u32,
    pub on_overlap: Overlap,
    /// How old an instant may be and still be claimed, on the database's clock: a few
    /// seconds normally, back to the missed instant for `catch_up: once`.
    pub window: Duration,
}

/// What to do with a claimed instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This host owns the run in `slot`: `StartRun`, then fork.
    Start { run_id: i64, slot: i32 },
    /// The run waits for a slot; the host that frees one starts it.
    Queued { run_id: i64 },
    /// As `Queued`, and `stop_run` on `stop_host` is asked to stop (on_overlap replace):
    /// when `stop_host` is this host, stop it now.
    Replace {
        run_id: i64,
        stop_run: i64,
        stop_host: String,
    },
    /// No free slot and on_overlap skip: recorded as skipped.
    Skipped { run_id: i64 },
    /// Another host claimed this instant.
    Taken,
    /// Older than the window: nobody runs it now.
    TooLate,
    /// More than a second ahead of the database's clock: this host's clock is ahead.
    TooEarly,
}

impl Operation for ClaimInstant {
    type Output = Claim;

    fn query(&self) -> Query {
        Query::new(
            "SELECT action, run_id, slot, stop_run, stop_host FROM jobd.claim_instant(
                $1::text, $2::timestamptz, $3::text, $4::interval, $5::int, $6::text,
                $7::interval)",
        )
        .bind(self.job.as_str())
        .bind(self.scheduled_at)
        .bind(self.host_id.as_str())
        .bind(self.lease)
        .bind(self.max_instances)
        .bind(self.on_overlap.sql())
        .bind(self.window)
    }

    fn decode(rows: &Rows) -> Result<Claim, DecodeError> {
        let row = rows.first("jobd.claim_instant")?;
        Ok(match row.str("action")? {
            "start" => Claim::Start {
                run_id: row.i64("run_id")?,
                slot: row.i32("slot")?,
            },
            "queued" => Claim::Queued {
                run_id: row.i64("run_id")?,
            },
            "replace" => Claim::Replace {
                run_id: row.i64("run_id")?,
                stop_run: row.i64("stop_run")?,
                stop_host: row.text("stop_host")?,
            },
            "skipped" => Claim::Skipped {
                run_id: row.i64("run_id")?,
            },
            "taken" => Claim::Taken,
            "too_late" => Claim::TooLate,
            "too_early" => Claim::TooEarly,
            other => {
                return Err(DecodeError::new(
                    "action",
                    format!("unknown action `{other}`"),
                ));
            }
        })
    }
}

/// Claimed → running, just before fork; true when the run is still this host's. Fork
/// only then: it is what makes "started at most once" hold when a host stalls past its
/// lease between claim and start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRun {
    pub run_id: i64,
    pub host_id: String,
    pub lease: Duration,
}

impl Operation for StartRun {
    type Output = bool;

    fn query(&self) -> Query {
        Query::new("SELECT jobd.start_run($1::bigint, $2::text, $3::interval) AS started")
            .bind(self.run_id)
            .bind(self.host_id.as_str())
            .bind(self.lease)
    }

    fn decode(rows: &Rows) -> Result<bool, DecodeError> {
        rows.first("jobd.start_run")?.bool("started")
    }
}

/// Record the end of a run (or give back a claimed run not started, with an outcome
/// saying why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishRun {
    pub run_id: i64,
    pub host_id: String,
    /// How it ended, in jobd's words (`success`, `failed`, `timeout`, `replaced`, …).
    pub outcome: String,
    pub exit_code: Option<i32>,
    /// The lease for the queued run handed over, if any.
    pub lease: Duration,
}

/// A run handed to this host to start (its slot is held): from a finish, or a rescue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handed {
    pub run_id: i64,
    pub job: String,
    pub scheduled_at: DateTime<Utc>,
    pub slot: i32,
    pub attempt: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// False when the run was no longer this host's (declared lost after its lease ran
    /// out): nothing was changed.
    pub recorded: bool,
    /// The job's queued run, now this host's to start (`StartRun`).
    pub next: Option<Handed>,
}

impl Operation for FinishRun {
    type Output = Finished;

    fn query(&self) -> Query {
        Query::new(
            "SELECT recorded, next_run, next_job,
                    extract(epoch FROM next_scheduled_at) AS next_scheduled_at,
                    next_slot, next_attempt
               FROM jobd.finish_run($1::bigint, $2::text, $3::text, $4::int, $5::interval)",
        )
        .bind(self.run_id)
        .bind(self.host_id.as_str())
        .bind(self.outcome.as_str())
        .bind(self.exit_code)
        .bind(self.lease)
    }

    fn decode(rows: &Rows) -> Result<Finished, DecodeError> {
        let row = rows.first("jobd.finish_run")?;
        let next = match row.opt_i64("next_run")? {
            Some(run_id) => Some(Handed {
                run_id,
                job: row.text("next_job")?,
                scheduled_at: row.epoch("next_scheduled_at")?,
                slot: row.i32("next_slot")?,
                attempt: row.i32("next_attempt")?,
            }),
            None => None,
        };
        Ok(Finished {
            recorded: row.bool("recorded")?,
            next,
        })
    }
}

/// The newest instant of `job` any host claimed (`catch_up: once` starts after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRun {
    pub job: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastInstant {
    pub run_id: i64,
    pub scheduled_at: DateTime<Utc>,
    /// claimed, queued, running, finished, skipped or lost.
    pub state: String,
    pub host_id: String,
}

impl Operation for LastRun {
    type Output = Option<LastInstant>;

    fn query(&self) -> Query {
        Query::new(
            "SELECT id, extract(epoch FROM scheduled_at) AS scheduled_at, state, host_id
               FROM jobd.last_run($1::text)",
        )
        .bind(self.job.as_str())
    }

    fn decode(rows: &Rows) -> Result<Option<LastInstant>, DecodeError> {
        rows.iter()
            .next()
            .map(|row| {
                Ok(LastInstant {
                    run_id: row.i64("id")?,
                    scheduled_at: row.epoch("scheduled_at")?,
                    state: row.text("state")?,
                    host_id: row.text("host_id")?,
                })
            })
            .transpose()
    }
}
