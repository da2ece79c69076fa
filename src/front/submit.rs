//! `jobctl submit`: the writer's side of the spool hand-off. What jobd would refuse is
//! refused here first, in the same words.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::leaf::files::sync_dir;
use crate::machine::spool::{self, request};
use crate::model::config::Config;

/// When the run should start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Now,
    At(DateTime<Utc>),
    In(Duration),
}

/// What a submission asks for beyond its task and time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Asks {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    pub data: Option<serde_json::Value>,
}

#[derive(Debug)]
#[non_exhaustive]
pub enum SubmitError {
    UnknownTask {
        task: String,
        known: Vec<String>,
    },
    /// What jobd would refuse (a forbidden variable, an argument the task does not
    /// accept, …).
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

/// Write a spool file for `task` and hand it to jobd: created in `tmp/` (mode 0640,
/// the spool's group), synced, then renamed into `new/`. Returns the file's name:
/// its id, plus `.json`.
pub fn submit(
    config: &Config,
    task: &str,
    start: Start,
    asks: &Asks,
) -> Result<String, SubmitError> {
    let Request { id, text } = request(config, task, start, asks)?;
    let io = |what: String| move |error| SubmitError::Io { what, error };
    let layout = spool::make_layout(config).map_err(io(format!(
        "create the spool directory {}",
        config.spool.dir.display()
    )))?;
    let name = format!("{id}.json");
    let staged = layout.tmp.join(&name);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&staged)
        .map_err(io(format!("create {}", staged.display())))?;
    // Whatever the umask; and the group of new/, so that jobd (a member) reads it even
    // where the folder's setgid bit could not be set.
    let _ = file.set_permissions(fs::Permissions::from_mode(0o640));
    if let Ok(folder) = fs::metadata(&layout.new) {
        let _ = nix::unistd::fchown(&file, None, Some(nix::unistd::Gid::from_raw(folder.gid())));
    }
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(format!("write {}", staged.display())))?;
    fs::rename(&staged, layout.new.join(&name))
        .and_then(|()| sync_dir(&layout.new))
        .map_err(io(format!("move {} into {}", name, layout.new.display())))?;
    Ok(name)
}

/// A spool request: its id, and its JSON text.
pub struct Request {
    pub id: String,
    pub text: String,
}

/// The spool request for `task`, refused here with jobd's reason when jobd would
/// refuse it.
pub fn request(
    config: &Config,
    task: &str,
    start: Start,
    asks: &Asks,
) -> Result<Request, SubmitError> {
    let Some(found) = config.task(task) else {
        return Err(SubmitError::UnknownTask {
            task: task.to_string(),
            known: config.tasks.iter().map(|t| t.name.clone()).collect(),
        });
    };
    // Each variable alone first, so that a refusal names it as typed on the command
    // line rather than a place in the JSON that jobctl writes.
    for (name, value) in &asks.env {
        let alone = serde_json::json!({"task": task, "env": {name: value}}).to_string();
        if let Err(reason) = request::parse(&alone) {
            return Err(SubmitError::Invalid(format!(
                "--env {name}: {}",
                unplaced(&reason)
            )));
        }
    }
    let id = unique_id(task);
    let mut body = serde_json::Map::new();
    body.insert("task".into(), task.into());
    body.insert("id".into(), id.clone().into());
    if !asks.args.is_empty() {
        body.insert("args".into(), asks.args.clone().into());
    }
    if !asks.env.is_empty() {
        let env: BTreeMap<&str, &str> = asks
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        body.insert(
            "env".into(),
            serde_json::to_value(env).expect("a map serializes"),
        );
    }
    if let Some(data) = &asks.data {
        body.insert("data".into(), data.clone());
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
    if text.len() as u64 > spool::MAX_FILE_BYTES {
        return Err(SubmitError::Invalid(format!(
            "the request takes {} bytes, more than the {} a spool file may have",
            text.len(),
            spool::MAX_FILE_BYTES
        )));
    }
    // Refuse here, with jobd's reason, what jobd would move to failed/.
    let request = request::parse(&text).map_err(SubmitError::Invalid)?;
    request
        .check(found)
        .map_err(|refusal| SubmitError::Invalid(refusal.to_string()))?;
    Ok(Request { id, text })
}

/// A spool file's refusal without its `line L, column C: env:` prefix.
fn unplaced(reason: &str) -> &str {
    let reason = match reason.split_once(": ") {
        Some((place, rest)) if place.starts_with("line ") => rest,
        _ => reason,
    };
    reason.strip_prefix("env: ").unwrap_or(reason)
}

/// `TASK.<UTC time>.<pid>.<random>`: sorts by submission time, never collides, and is
/// a valid id (a long task name is cut to fit).
fn unique_id(task: &str) -> String {
    let mut random = [0u8; 4];
    if let Ok(mut urandom) = fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut urandom, &mut random);
    }
    let rest = format!(
        ".{}.{}.{:08x}",
        Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
        std::process::id(),
        u32::from_ne_bytes(random)
    );
    // Task names are ASCII: bytes are characters.
    let room = request::MAX_ID_CHARS.saturating_sub(rest.len());
    format!("{}{rest}", &task[..task.len().min(room)])
}
