//! The cluster schema (`jobd.*`) and its migration: numbered steps, each applied once,
//! in one transaction under an advisory transaction lock, so that several hosts
//! starting at once (or `jobd migrate` beside them) apply each step exactly once and
//! the losers simply find the work done. The lock is released with the transaction,
//! which keeps it safe behind PgBouncer's transaction pooling.

use std::fmt;
use std::time::Duration;

use crate::adapter::postgres::{self, Query, Session};

/// One migration step.
pub struct Step {
    pub version: i32,
    /// The oldest schema version a jobd must know to work on a database at this
    /// version: a step that only adds leaves it unchanged, so hosts on the previous
    /// release keep working during a rolling upgrade; a step that changes a function's
    /// signature or meaning raises it to its own version.
    pub compatible_from: i32,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every step, in order. Never edit a released step: add the next one.
pub const STEPS: &[Step] = &[Step {
    version: 1,
    compatible_from: 1,
    description: "hosts, runs, slots, one-offs and their operations",
    sql: include_str!("v1.sql"),
}];

/// The schema version this jobd is built for.
pub fn latest() -> i32 {
    STEPS.last().map_or(0, |s| s.version)
}

/// The key of the advisory lock that serialises migrations ("jobdmigr" in ASCII).
const MIGRATION_LOCK: i64 = 0x6a6f_6264_6d69_6772;

/// What `migrate` found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The version found (0: no schema yet).
    pub from: i32,
    /// The version now in place; above `latest()` when a newer jobd migrated it.
    pub to: i32,
}

/// Why the schema could not be brought up to date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrateError {
    /// The database was unreachable or refused a statement.
    Database {
        doing: String,
        error: postgres::Error,
    },
    /// A newer jobd migrated the schema to a version this one cannot work with.
    TooNew { found: i32, needs: i32, known: i32 },
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::Database { doing, error } => {
                write!(f, "migrating the jobd schema: {doing}: {error}")
            }
            MigrateError::TooNew {
                found,
                needs,
                known,
            } => write!(
                f,
                "the jobd schema in the database is at version {found}, which needs a jobd \
                 that knows version {needs} or later; this jobd knows up to {known}: \
                 upgrade jobd on this host"
            ),
        }
    }
}

impl std::error::Error for MigrateError {}

/// Bring the schema up to `latest()`; each statement may take up to `timeout` (a
/// concurrent migration holds the lock for as long as its own steps take).
pub fn migrate(session: &mut Session, timeout: Duration) -> Result<Migrated, MigrateError> {
    let outcome = migrate_in_transaction(session, timeout);
    if outcome.is_err() && session.is_idle() {
        // The transaction failed part-way: end it, so the session stays usable. If even
        // this fails the connection is broken and the server rolls back on its own.
        let _ = session.exec_blocking(&Query::new("ROLLBACK"), timeout);
    }
    outcome
}

fn migrate_in_transaction(
    session: &mut Session,
    timeout: Duration,
) -> Result<Migrated, MigrateError> {
    let mut exec = |doing: &str, query: Query| {
        session
            .exec_blocking(&query, timeout)
            .map_err(|error| MigrateError::Database {
                doing: doing.to_string(),
                error,
            })
    };
    exec("beginning", Query::new("BEGIN"))?;
    exec(
        "waiting for other migrations (advisory lock)",
        Query::new("SELECT pg_advisory_xact_lock($1::bigint)").bind(MIGRATION_LOCK),
    )?;
    exec(
        "creating schema jobd",
        Query::script(
            "CREATE SCHEMA IF NOT EXISTS jobd;
             CREATE TABLE IF NOT EXISTS jobd.schema_version (
                 version         int PRIMARY KEY,
                 compatible_from int NOT NULL,
                 description     text NOT NULL,
                 applied_at      timestamptz NOT NULL DEFAULT now())",
        ),
    )?;
    let rows = exec(
        "reading the schema version",
        Query::new(
            "SELECT version, compatible_from FROM jobd.schema_version
              ORDER BY version DESC LIMIT 1",
        ),
    )?;
    let (from, needs) = match rows.iter().next() {
        Some(row) => (row.i32("version"), row.i32("compatible_from")),
        None => (Ok(0), Ok(0)),
    };
    let decode = |e: postgres::DecodeError| MigrateError::Database {
        doing: "reading the schema version".to_string(),
        error: postgres::Error::Decode(e),
    };
    let (from, needs) = (from.map_err(decode)?, needs.map_err(decode)?);
    if needs > latest() {
        return Err(MigrateError::TooNew {
            found: from,
            needs,
            known: latest(),
        });
    }
    for step in STEPS.iter().filter(|s| s.version > from) {
        let doing = format!("step {} ({})", step.version, step.description);
        exec(&doing, Query::script(step.sql))?;
        exec(
            &doing,
            Query::new(
                "INSERT INTO jobd.schema_version (version, compatible_from, description)
                 VALUES ($1::int, $2::int, $3::text)",
            )
            .bind(step.version)
            .bind(step.compatible_from)
            .bind(step.description),
        )?;
    }
    exec("committing", Query::new("COMMIT"))?;
    Ok(Migrated {
        from,
        to: from.max(latest()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_one_by_one_and_never_claim_compatibility_ahead() {
        for (index, step) in STEPS.iter().enumerate() {
            assert_eq!(step.version, index as i32 + 1);
            assert!(step.compatible_from >= 1 && step.compatible_from <= step.version);
            assert!(!step.sql.trim().is_empty());
        }
        let mut floors: Vec<i32> = STEPS.iter().map(|s| s.compatible_from).collect();
        floors.dedup();
        assert!(
            floors.windows(2).all(|w| w[0] <= w[1]),
            "compatible_from never goes down"
        );
    }
}
