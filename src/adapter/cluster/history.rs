//! The cluster's past runs, for `jobctl history`: scheduled runs of every host (from
//! `jobd.runs`) and one-off jobs (from `jobd.oneoffs`), newest first.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Operation;
use crate::adapter::postgres::{DecodeError, Query, Rows};

/// The newest ended runs and one-offs, of one job or task or of all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentRuns {
    pub job: Option<String>,
    /// At most this many of each kind.
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PastKind {
    /// An instant of a scheduled job.
    Run,
    /// A one-off job's last attempt.
    Oneoff,
}

/// One ended run, as the database has it.
#[derive(Debug, Clone, PartialEq)]
pub struct PastRun {
    pub kind: PastKind,
    pub id: i64,
    /// The job, or the one-off's task.
    pub name: String,
    /// Where it ran (its last attempt, for a one-off).
    pub host_id: Option<String>,
    pub attempt: i32,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    /// jobd's word for how it ended (`success`, `lost`, …).
    pub outcome: Option<String>,
    pub exit_code: Option<i32>,
    /// A one-off's result (docs/spool-format.md), else null.
    pub result: Value,
}

impl Operation for RecentRuns {
    type Output = Vec<PastRun>;

    fn query(&self) -> Query {
        // Each side walks its own index newest first and stops at the limit.
        Query::new(
            "(SELECT 'run' AS kind, r.id, r.job AS name, r.host_id, r.attempt,
                     extract(epoch FROM r.scheduled_at) AS scheduled_at,
                     extract(epoch FROM r.started_at) AS started_at,
                     extract(epoch FROM r.finished_at) AS finished_at,
                     r.outcome, r.exit_code, NULL::jsonb AS result
                FROM jobd.runs r
               WHERE ($1::text IS NULL OR r.job = $1::text)
                 AND r.state IN ('finished', 'lost') AND r.started_at IS NOT NULL
               ORDER BY r.scheduled_at DESC LIMIT $2::int)
             UNION ALL
             (SELECT 'oneoff', o.id, o.task, o.host_id, o.attempt,
                     extract(epoch FROM o.run_at), extract(epoch FROM o.started_at),
                     extract(epoch FROM o.finished_at),
                     o.result ->> 'outcome', (o.result ->> 'exit_code')::int, o.result
                FROM jobd.oneoffs o
               WHERE ($1::text IS NULL OR o.task = $1::text)
                 AND o.state IN ('done', 'failed')
               ORDER BY o.finished_at DESC LIMIT $2::int)",
        )
        .bind(self.job.clone())
        .bind(self.limit)
    }

    fn decode(rows: &Rows) -> Result<Vec<PastRun>, DecodeError> {
        rows.iter()
            .map(|row| {
                Ok(PastRun {
                    kind: match row.str("kind")? {
                        "run" => PastKind::Run,
                        _ => PastKind::Oneoff,
                    },
                    id: row.i64("id")?,
                    name: row.text("name")?,
                    host_id: row.opt_text("host_id")?,
                    attempt: row.i32("attempt")?,
                    scheduled_at: row.epoch("scheduled_at")?,
                    started_at: row.opt_epoch("started_at")?,
                    finished_at: row.epoch("finished_at")?,
                    outcome: row.opt_text("outcome")?,
                    exit_code: row.opt_i32("exit_code")?,
                    result: row.json("result")?,
                })
            })
            .collect()
    }
}

/// When `job` last succeeded on any host, among its instants after `after` (its last
/// success known here): a job's success elsewhere keeps it from being overdue here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastSuccess {
    pub job: String,
    pub after: DateTime<Utc>,
}

impl Operation for LastSuccess {
    type Output = Option<DateTime<Utc>>;

    fn query(&self) -> Query {
        // Newest first along (job, scheduled_at), stopping at the first success.
        Query::new(
            "SELECT extract(epoch FROM r.finished_at) AS at FROM jobd.runs r
              WHERE r.job = $1::text AND r.scheduled_at > $2::timestamptz
                AND r.state = 'finished' AND r.outcome = 'success'
              ORDER BY r.scheduled_at DESC LIMIT 1",
        )
        .bind(self.job.as_str())
        .bind(self.after)
    }

    fn decode(rows: &Rows) -> Result<Option<DateTime<Utc>>, DecodeError> {
        rows.iter().next().map(|row| row.epoch("at")).transpose()
    }
}
