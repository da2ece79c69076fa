//! Cluster mode's SQL: the schema and its migration (`schema`), and one `Operation` per
//! cluster decision: scheduled instants (`scheduled`), leases (`leases`), one-off jobs
//! (`oneoff`) and what `jobctl status` and housekeeping need (`status`). Each operation
//! is one query, one round trip and one transaction; it pairs the query with the
//! decoding of its rows, so the daemon can send it from its poll loop and decode the
//! `Event::Done` that comes back, and commands and tests can `run_blocking` it.

pub mod history;
pub mod leases;
pub mod oneoff;
pub mod scheduled;
pub mod schema;
pub mod status;

use std::time::Duration;

use crate::adapter::postgres::{self, DecodeError, Query, Rows, Session};

/// The channel `jobd.submit` (and a rescue that re-queues) announces one-offs on.
pub const ONEOFF_CHANNEL: &str = "jobd_oneoff";
/// The channel on which on_overlap replace asks a run's holder to stop it (payload: the
/// run id); heartbeats return the same request, in case the notification is missed.
pub const STOP_CHANNEL: &str = "jobd_stop";

/// A cluster operation: its query, and how to read its result.
pub trait Operation {
    type Output;
    fn query(&self) -> Query;
    fn decode(rows: &Rows) -> Result<Self::Output, DecodeError>;
}

/// Run `operation` and wait for its decoded result (commands, tests, benchmarks).
pub fn run_blocking<O: Operation>(
    session: &mut Session,
    operation: &O,
    timeout: Duration,
) -> Result<O::Output, postgres::Error> {
    let rows = session.exec_blocking(&operation.query(), timeout)?;
    Ok(O::decode(&rows)?)
}
