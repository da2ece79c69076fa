//! What `jobctl spool` shows: every file of the spool by state, read from the folders
//! themselves, so that it works the same whether jobd runs or not.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::inspect::MAX_FILE_BYTES;
use super::layout::{Layout, RESULT_SUFFIX};
use super::request;
use super::result::{SpoolResult, State};
use crate::leaf::timestamp;

/// The state of a file, as `jobctl spool` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Listed {
    /// In `new/`, due.
    Queued,
    /// In `new/`, until its `run_at` (or arrival + `delay`).
    Delayed,
    Running,
    Retrying,
    Done,
    Failed,
    /// Cluster mode: handed on to the cluster's table.
    Forwarded,
}

impl Listed {
    pub fn word(self) -> &'static str {
        match self {
            Listed::Queued => "queued",
            Listed::Delayed => "delayed",
            Listed::Running => "running",
            Listed::Retrying => "retrying",
            Listed::Done => "done",
            Listed::Failed => "failed",
            Listed::Forwarded => "forwarded",
        }
    }
}

/// One file of the spool.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub state: Listed,
    pub file: String,
    pub id: Option<String>,
    pub task: Option<String>,
    /// What its time says for its state: when it arrived (queued), is due (delayed),
    /// started (running), is tried again (retrying) or ended (done, failed).
    pub at: Option<String>,
    /// Why it failed, was refused, or will be.
    pub reason: Option<String>,
    /// Its result, once it has one.
    pub result: Option<SpoolResult>,
}

/// The files of the spool at `layout`, by state, each state in the order its files
/// are handled (queued and delayed: soonest first; done and failed: newest first).
/// `name` keeps only the files of that name or id. An error names the folder that
/// could not be read.
pub fn list(
    layout: &Layout,
    now: DateTime<Utc>,
    name: Option<&str>,
) -> Result<Vec<Entry>, (PathBuf, io::Error)> {
    let mut entries = Vec::new();
    for (file, meta) in files(&layout.new)? {
        if !meta.is_file() {
            // Refused where it lies: its result in failed/ says so.
            continue;
        }
        entries.push(waiting(&layout.new, file, &meta, now));
    }
    for dir in [&layout.running, &layout.done, &layout.failed] {
        let found = files(dir)?;
        let names: std::collections::HashSet<&str> =
            found.iter().map(|(n, _)| n.as_str()).collect();
        for (file, _) in &found {
            let stem = file.strip_suffix(RESULT_SUFFIX);
            if stem.is_some_and(|stem| names.contains(stem)) {
                continue;
            }
            let stem = stem.unwrap_or(file);
            let result = fs::read(dir.join(format!("{stem}{RESULT_SUFFIX}")))
                .ok()
                .and_then(|bytes| SpoolResult::from_json(&bytes));
            entries.push(of_result(stem, result, dir == &layout.running));
        }
    }
    if let Some(name) = name {
        entries.retain(|e| e.file == name || e.id.as_deref() == Some(name));
    }
    entries.sort_by(|a, b| {
        let newest_first = matches!(a.state, Listed::Done | Listed::Failed);
        a.state.cmp(&b.state).then_with(|| {
            if newest_first {
                b.at.cmp(&a.at)
            } else {
                a.at.cmp(&b.at)
            }
        })
    });
    Ok(entries)
}

/// The names in `dir` with what they are, results included, temporaries left out.
fn files(dir: &Path) -> Result<Vec<(String, fs::Metadata)>, (PathBuf, io::Error)> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err((dir.to_path_buf(), e)),
    };
    Ok(read
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if name.starts_with('.') {
                return None;
            }
            Some((name, entry.metadata().ok()?))
        })
        .collect())
}

/// A file in `new/`: queued, or delayed until its time. It is read as a client reads
/// it, without following a link and no more than a spool file may hold.
fn waiting(dir: &Path, file: String, meta: &fs::Metadata, now: DateTime<Utc>) -> Entry {
    let arrived =
        DateTime::<Utc>::from_timestamp(meta.ctime(), meta.ctime_nsec() as u32).unwrap_or(now);
    let read = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(dir.join(&file))
        .and_then(|f| {
            let mut text = String::new();
            f.take(MAX_FILE_BYTES).read_to_string(&mut text)?;
            Ok(text)
        });
    let mut entry = Entry {
        state: Listed::Queued,
        file,
        id: None,
        task: None,
        at: Some(timestamp::precise(arrived)),
        reason: None,
        result: None,
    };
    match read
        .map_err(|e| format!("cannot read it: {e}"))
        .and_then(|text| request::parse(&text))
    {
        Ok(request) => {
            let due = request.due(arrived);
            if due > now {
                entry.state = Listed::Delayed;
                entry.at = Some(timestamp::precise(due));
            }
            entry.id = request.id;
            entry.task = Some(request.task);
        }
        Err(reason) => entry.reason = Some(format!("jobd will refuse it: {reason}")),
    }
    entry
}

/// A file with a result: its state and time from the result.
fn of_result(file: &str, result: Option<SpoolResult>, in_running: bool) -> Entry {
    let Some(result) = result else {
        return Entry {
            state: if in_running {
                Listed::Running
            } else {
                Listed::Failed
            },
            file: file.to_string(),
            id: None,
            task: None,
            at: None,
            reason: (!in_running).then(|| "it has no result".to_string()),
            result: None,
        };
    };
    let latest = result.attempts.last();
    let (state, at) = match result.state {
        State::Running => (Listed::Running, latest.map(|a| a.started_at.clone())),
        State::Retrying => (Listed::Retrying, result.next_attempt_at.clone()),
        State::Done => (Listed::Done, latest.and_then(|a| a.ended_at.clone())),
        State::Forwarded => (Listed::Forwarded, result.received_at.clone()),
        State::Failed => (
            Listed::Failed,
            latest
                .and_then(|a| a.ended_at.clone())
                .or_else(|| result.received_at.clone()),
        ),
    };
    let reason = result.reason.clone().or_else(|| {
        latest
            .filter(|a| a.outcome.is_some_and(|o| o.is_failure()))
            .map(|a| match &a.error {
                Some(error) => error.clone(),
                None => a.outcome.map(|o| o.word()).unwrap_or_default().to_string(),
            })
    });
    Entry {
        state,
        file: file.to_string(),
        id: result.id.clone(),
        task: result.task.clone(),
        at,
        reason,
        result: Some(result),
    }
}
