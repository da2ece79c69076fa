//! What `jobctl status` shows of the cluster, and the pruning of old history.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Operation;
use crate::adapter::postgres::{DecodeError, Query, Rows};

/// The hosts, with their jobfile hash (a host on another jobfile stands out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostList;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub host_id: String,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
    pub jobfile_hash: String,
    /// Its lease still runs.
    pub alive: bool,
    /// Since its last heartbeat, on the database's clock.
    pub seen_ago: Duration,
}

impl Operation for HostList {
    type Output = Vec<Host>;

    fn query(&self) -> Query {
        Query::new(
            "SELECT host_id, extract(epoch FROM started_at) AS started_at,
                    extract(epoch FROM last_seen) AS last_seen,
                    extract(epoch FROM lease_until) AS lease_until, jobfile_hash, alive,
                    (extract(epoch FROM seen_ago) * 1000000)::bigint AS seen_ago_us
               FROM jobd.host_list()",
        )
    }

    fn decode(rows: &Rows) -> Result<Vec<Host>, DecodeError> {
        rows.iter()
            .map(|row| {
                Ok(Host {
                    host_id: row.text("host_id")?,
                    started_at: row.epoch("started_at")?,
                    last_seen: row.epoch("last_seen")?,
                    lease_until: row.epoch("lease_until")?,
                    jobfile_hash: row.text("jobfile_hash")?,
                    alive: row.bool("alive")?,
                    seen_ago: Duration::from_micros(row.i64("seen_ago_us")?.max(0) as u64),
                })
            })
            .collect()
    }
}

/// Delete history older than `keep` (at least a day; the database refuses less), at
/// most `limit` rows per table: call it again while it deletes a full batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prune {
    pub keep: Duration,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub runs: i64,
    pub oneoffs: i64,
    pub hosts: i64,
}

impl Operation for Prune {
    type Output = Pruned;

    fn query(&self) -> Query {
        Query::new("SELECT runs, oneoffs, hosts FROM jobd.prune($1::interval, $2::int)")
            .bind(self.keep)
            .bind(self.limit)
    }

    fn decode(rows: &Rows) -> Result<Pruned, DecodeError> {
        let row = rows.first("jobd.prune")?;
        Ok(Pruned {
            runs: row.i64("runs")?,
            oneoffs: row.i64("oneoffs")?,
            hosts: row.i64("hosts")?,
        })
    }
}
