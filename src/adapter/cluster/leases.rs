//! Leases on the database's clock: the heartbeat that keeps a host's work its own, and
//! the rescue that acts when a lease runs out.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Operation;
use crate::adapter::postgres::{DecodeError, Query, Rows};

/// Every lease/3: this host is alive, running exactly `runs` and `oneoffs` (their ids).
/// A host whose heartbeat has not succeeded for a whole lease (counted on its own
/// monotonic clock from when it sent the last one that succeeded) must assume all its
/// work fenced: stop claiming, and say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub host_id: String,
    pub jobfile_hash: String,
    pub lease: Duration,
    /// Scheduled runs this host has claimed or runs.
    pub runs: Vec<i64>,
    /// One-offs this host runs.
    pub oneoffs: Vec<i64>,
    /// The first heartbeat of this jobd process (sets the host's `started_at`).
    pub starting: bool,
}

/// What a heartbeat asks of the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// Listed runs no longer this host's (their lease ran out): another host may hold
    /// them now; stop them (their end is not recorded).
    pub lost_runs: Vec<i64>,
    /// Likewise for one-offs, which another host may be running again.
    pub lost_oneoffs: Vec<i64>,
    /// Runs to stop because on_overlap replace wants their slot.
    pub stop: Vec<i64>,
}

impl Operation for Heartbeat {
    type Output = HeartbeatReply;

    fn query(&self) -> Query {
        Query::new(
            "SELECT kind, id FROM jobd.heartbeat(
                $1::text, $2::text, $3::interval, $4::bigint[], $5::bigint[], $6::boolean)",
        )
        .bind(self.host_id.as_str())
        .bind(self.jobfile_hash.as_str())
        .bind(self.lease)
        .bind(&self.runs[..])
        .bind(&self.oneoffs[..])
        .bind(self.starting)
    }

    fn decode(rows: &Rows) -> Result<HeartbeatReply, DecodeError> {
        let mut reply = HeartbeatReply::default();
        for row in rows.iter() {
            let id = row.i64("id")?;
            match row.str("kind")? {
                "lost_run" => reply.lost_runs.push(id),
                "lost_oneoff" => reply.lost_oneoffs.push(id),
                "stop" => reply.stop.push(id),
                other => return Err(DecodeError::new("kind", format!("unknown kind `{other}`"))),
            }
        }
        Ok(reply)
    }
}

/// Any host, every lease/2: act on leases that ran out; what was found comes back, and
/// runs handed to this host are its to start (`StartRun`) or give back (`FinishRun`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescue {
    pub host_id: String,
    pub lease: Duration,
    /// Jobs with `on_host_loss: rerun`.
    pub rerun_jobs: Vec<String>,
    /// At most this many items of each kind per call.
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rescued {
    /// A one-off queued again (`name` is its task, `at` its new run_at).
    Requeued,
    /// A one-off whose host was lost at its last attempt: failed, not run again.
    Abandoned,
    /// A scheduled run recorded lost: run the job's on_failure hook.
    Lost,
    /// A lost run of an on_host_loss: rerun job, now this host's (attempt + 1).
    Rerun,
    /// A claimed run never started, now this host's.
    Takeover,
    /// A queued run given the slot of a lost run, now this host's.
    Promoted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RescuedItem {
    pub kind: Rescued,
    pub id: i64,
    /// The job, or the one-off's task.
    pub name: String,
    /// The run's instant, or the one-off's run_at.
    pub at: DateTime<Utc>,
    pub slot: Option<i32>,
    pub attempt: i32,
    /// The host whose lease ran out.
    pub previous_host: Option<String>,
}

impl Operation for Rescue {
    type Output = Vec<RescuedItem>;

    fn query(&self) -> Query {
        Query::new(
            "SELECT kind, id, name, extract(epoch FROM scheduled_at) AS at, slot, attempt,
                    previous_host
               FROM jobd.rescue($1::text, $2::interval, $3::text[], $4::int)",
        )
        .bind(self.host_id.as_str())
        .bind(self.lease)
        .bind(&self.rerun_jobs[..])
        .bind(self.limit)
    }

    fn decode(rows: &Rows) -> Result<Vec<RescuedItem>, DecodeError> {
        rows.iter()
            .map(|row| {
                let kind = match row.str("kind")? {
                    "requeued" => Rescued::Requeued,
                    "abandoned" => Rescued::Abandoned,
                    "lost" => Rescued::Lost,
                    "rerun" => Rescued::Rerun,
                    "takeover" => Rescued::Takeover,
                    "promoted" => Rescued::Promoted,
                    other => {
                        return Err(DecodeError::new("kind", format!("unknown kind `{other}`")));
                    }
                };
                Ok(RescuedItem {
                    kind,
                    id: row.i64("id")?,
                    name: row.text("name")?,
                    at: row.epoch("at")?,
                    slot: row.opt_i32("slot")?,
                    attempt: row.i32("attempt")?,
                    previous_host: row.opt_text("previous_host")?,
                })
            })
            .collect()
    }
}
