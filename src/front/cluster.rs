//! Cluster mode's commands: `jobd migrate` (the schema, created or upgraded) and
//! `jobctl submit` straight into the cluster's table.

use std::time::Duration;

use crate::adapter::cluster::oneoff::Submit;
use crate::adapter::cluster::run_blocking;
use crate::adapter::cluster::schema::{self, Migrated};
use crate::adapter::postgres::{Libpq, Session, Settings};
use crate::front::submit::{self, Asks, Request, Start, SubmitError};
use crate::model::config::{self, Config};

/// How long a migration may take: a step waits for any other migration (a jobd
/// starting elsewhere) to finish first.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a submission may take, connecting included.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Migrate the database of `config`'s `cluster:`; what was done, or why not.
pub fn migrate(config: &Config) -> Result<String, String> {
    let cluster = settings(config)?;
    let lib = Libpq::system().map_err(|e| e.to_string())?;
    let mut session =
        Session::connect_blocking(lib, Settings::new(&cluster.database_url), MIGRATE_TIMEOUT)
            .map_err(|e| e.to_string())?;
    let migrated = schema::migrate(&mut session, MIGRATE_TIMEOUT).map_err(|e| e.to_string())?;
    Ok(describe(migrated))
}

/// What a migration did, in words.
fn describe(migrated: Migrated) -> String {
    let Migrated { from, to } = migrated;
    match (from, to) {
        (0, to) => format!("created the jobd schema at version {to}"),
        (from, to) if from == to && to > schema::latest() => format!(
            "the jobd schema is at version {to}, from a newer jobd that still works with this \
             one (which knows up to {})",
            schema::latest()
        ),
        (from, to) if from == to => format!("the jobd schema is up to date (version {to})"),
        (from, to) => format!("upgraded the jobd schema from version {from} to {to}"),
    }
}

/// `jobctl submit` in cluster mode: the request, checked as jobd would check a spool
/// file, goes into the table, where any live host claims it. Returns its id (the row's
/// origin, which `jobd.result(id, connection=...)` finds) and the row's number.
pub fn submit(
    config: &Config,
    task: &str,
    start: Start,
    asks: &Asks,
) -> Result<(String, i64), SubmitError> {
    let Request { id, .. } = submit::request(config, task, start, asks)?;
    let cluster = settings(config).map_err(SubmitError::Invalid)?;
    let (run_at, delay) = match start {
        Start::Now => (None, None),
        Start::At(at) => (Some(at), None),
        Start::In(delay) => (None, Some(delay)),
    };
    let submission = Submit {
        task: task.to_string(),
        args: asks.args.clone(),
        env: asks
            .env
            .iter()
            .map(|(name, value)| (name.clone(), value.clone().into()))
            .collect(),
        data: asks.data.clone(),
        run_at,
        delay,
        max_attempts: None,
        origin: Some(id.clone()),
    };
    let unreachable = |e: String| SubmitError::Cluster(e);
    let lib = Libpq::system().map_err(|e| unreachable(e.to_string()))?;
    let mut session =
        Session::connect_blocking(lib, Settings::new(&cluster.database_url), SUBMIT_TIMEOUT)
            .map_err(|e| unreachable(e.to_string()))?;
    let submitted = run_blocking(&mut session, &submission, SUBMIT_TIMEOUT)
        .map_err(|e| unreachable(e.to_string()))?;
    Ok((id, submitted.id.unwrap_or_default()))
}

/// What `jobd check` says about cluster mode on this host: libpq must load.
pub fn warnings(config: &Config) -> Vec<String> {
    match (&config.cluster, Libpq::system()) {
        (Some(_), Err(e)) => vec![format!("cluster: {e}; jobd will not start without it")],
        _ => Vec::new(),
    }
}

fn settings(config: &Config) -> Result<&config::Cluster, String> {
    config.cluster.as_ref().ok_or_else(|| {
        format!(
            "{} has no `cluster:` section: the schema is cluster mode's",
            config.file.display()
        )
    })
}
