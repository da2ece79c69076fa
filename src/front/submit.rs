//! `jobctl submit`: the writer's side of the spool hand-off.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::leaf::files::sync_dir;
use crate::machine::spool::layout::Layout;
use crate::machine::spool::request;
use crate::model::config::Config;

/// When the run should start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Now,
    At(DateTime<Utc>),
    In(Duration),
}

#[derive(Debug)]
#[non_exhaustive]
pub enum SubmitError {
    UnknownTask {
        task: String,
        known: Vec<String>,
    },
    /// What jobd would refuse (a forbidden variable, …).
    Invalid(String),
    Io {
        what: String,
        error: std::io::Error,
    },
    /// Cluster mode: the cluster's table could not take it.
    Cluster(String),
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::UnknownTask { task, known } if known.is_empty() => {
                write!(f, "unknown task `{task}`: the jobfile has no `tasks:`")
            }
            SubmitError::UnknownTask { task, known } => {
                write!(
                    f,
                    "unknown task `{task}` (the jobfile's tasks: {})",
                    known.join(", ")
                )
            }
            SubmitError::Invalid(reason) => write!(f, "jobd would refuse this request: {reason}"),
            SubmitError::Io { what, error } => write!(f, "cannot {what}: {error}"),
            SubmitError::Cluster(reason) => write!(
                f,
                "cannot submit to the cluster: {reason}; `jobctl submit --spool` leaves it \
                 in this host's spool instead, for jobd to forward"
            ),
        }
    }
}

impl std::error::Error for SubmitError {}

/// Write a spool file for `task` and hand it to jobd: created in `tmp/`, synced, then
/// renamed into `new/`. Returns the file's name.
pub fn submit(
    config: &Config,
    task: &str,
    start: Start,
    env: &[(String, String)],
    args: &[String],
) -> Result<String, SubmitError> {
    let text = request(config, task, start, env, args)?;
    let layout = Layout::new(&config.spool.dir);
    let io = |what: String| move |error| SubmitError::Io { what, error };
    layout.create().map_err(io(format!(
        "create the spool directory {}",
        layout.root.display()
    )))?;
    let name = unique_name(task);
    let staged = layout.tmp.join(&name);
    let mut file = fs::File::create(&staged).map_err(io(format!("create {}", staged.display())))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(format!("write {}", staged.display())))?;
    fs::rename(&staged, layout.new.join(&name))
        .and_then(|()| sync_dir(&layout.new))
        .map_err(io(format!("move {} into {}", name, layout.new.display())))?;
    Ok(name)
}

/// The spool request for `task`, as JSON text, refused here with the reason when jobd
/// would refuse it.
pub fn request(
    config: &Config,
    task: &str,
    start: Start,
    env: &[(String, String)],
    args: &[String],
) -> Result<String, SubmitError> {
    if config.task(task).is_none() {
        return Err(SubmitError::UnknownTask {
            task: task.to_string(),
            known: config.tasks.iter().map(|t| t.name.clone()).collect(),
        });
    }
    // Each variable alone first, so that a refusal names it as typed on the command
    // line rather than a place in the JSON that jobctl writes.
    for (name, value) in env {
        let alone = serde_json::json!({"task": task, "env": {name: value}}).to_string();
        if let Err(reason) = request::parse(&alone) {
            return Err(SubmitError::Invalid(format!(
                "--env {name}: {}",
                unplaced(&reason)
            )));
        }
    }
    let mut body = serde_json::Map::new();
    body.insert("task".into(), task.into());
    if !args.is_empty() {
        body.insert("args".into(), args.into());
    }
    if !env.is_empty() {
        let env: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        body.insert(
            "env".into(),
            serde_json::to_value(env).expect("a map serializes"),
        );
    }
    match start {
        Start::Now => {}
        Start::At(at) => {
            body.insert(
                "run_at".into(),
                at.to_rfc3339_opts(SecondsFormat::AutoSi, true).into(),
            );
        }
        Start::In(delay) => {
            body.insert("delay".into(), crate::leaf::duration::format(delay).into());
        }
    }
    let mut text = serde_json::to_string(&body).expect("JSON serializes");
    text.push('\n');
    // Refuse here, with the reason, what jobd would move to failed/.
    request::parse(&text).map_err(SubmitError::Invalid)?;
    Ok(text)
}

/// A spool file's refusal without its `line L, column C: env:` prefix.
fn unplaced(reason: &str) -> &str {
    let reason = match reason.split_once(": ") {
        Some((place, rest)) if place.starts_with("line ") => rest,
        _ => reason,
    };
    reason.strip_prefix("env: ").unwrap_or(reason)
}

/// `TASK.<UTC time>.<pid>.<random>.json`: sorts by submission time, never collides.
pub fn unique_name(task: &str) -> String {
    let mut random = [0u8; 4];
    if let Ok(mut urandom) = fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut urandom, &mut random);
    }
    format!(
        "{task}.{}.{}.{:08x}.json",
        Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
        std::process::id(),
        u32::from_ne_bytes(random)
    )
}
