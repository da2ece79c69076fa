//! The table's one-off jobs, run here: claimed while workers are free, checked as a
//! spool file is, run with the variables a spool run gets, and finished with a result
//! in the spool's own shape (docs/spool-format.md), so that `jobd.result` and
//! `get_result` read it the same.
//!
//! The child's files are in `SPOOL/cluster/` (mode 0711: a child can reach its own
//! files, nobody can list them): `oneoff-ID.json` (the request, `JOBD_SPOOL_FILE`),
//! `oneoff-ID.json.result.json` (the earlier attempts, where a spool child finds
//! them) and `oneoff-ID.value` (`JOBD_RESULT_FILE`), each the child's own.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::warn;
use serde_json::{Value, json};

use super::Daemon;
use crate::adapter::cluster::oneoff::{FinishOneoff, Oneoff};
use crate::adapter::spawner::Spawner;
use crate::daemon::shutdown::Phase;
use crate::leaf::files::{self, Durability};
use crate::leaf::now::Now;
use crate::leaf::{account, timestamp};
use crate::machine::spool::{request, values};
use crate::machine::supervisor::{Launch, Origin};
use crate::model::config::Task;
use crate::model::record::{Outcome, RunRecord, Stop};

/// The folder under the spool's for the children's files.
pub(super) const FOLDER: &str = "cluster";

/// A one-off running here.
pub(super) struct Running {
    oneoff: Oneoff,
    files: Files,
    max_attempts: u32,
    retry_delay: Duration,
}

struct Files {
    request: PathBuf,
    earlier: PathBuf,
    value: PathBuf,
}

impl Files {
    fn of(dir: &Path, id: i64) -> Files {
        let name = name_of(id);
        Files {
            request: dir.join(&name),
            earlier: dir.join(format!("{name}.result.json")),
            value: dir.join(format!("oneoff-{id}.value")),
        }
    }

    fn remove(&self) {
        for path in [&self.request, &self.earlier, &self.value] {
            let _ = fs::remove_file(path);
        }
    }
}

fn name_of(id: i64) -> String {
    format!("oneoff-{id}.json")
}

/// Make the folder (mode 0711) and empty it of what a killed jobd left: those
/// one-offs run again elsewhere once their lease runs out.
pub(super) fn prepare(dir: &Path) {
    let made = DirBuilder::new()
        .mode(0o711)
        .create(dir)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o711)));
    if let Err(e) = made {
        warn!(
            "cluster: cannot make {} for one-off jobs' files: {e}",
            dir.display()
        );
        return;
    }
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let _ = fs::remove_file(entry.path());
    }
}

impl<S: Spawner> Daemon<S> {
    /// Claim one-offs while workers are free and the cluster says some may wait.
    pub(super) fn claim_oneoffs(&mut self, now: Now) {
        let Some(side) = &mut self.cluster else {
            return;
        };
        if !side.machine.wants_oneoffs() || self.phase != Phase::Running {
            return;
        }
        let spool_running = self.spool.counts().running;
        let busy = spool_running + side.machine.oneoffs_running();
        let free = (self.config.spool.workers as usize).saturating_sub(busy);
        if free == 0 {
            return;
        }
        // A task at its max_instances here waits for other hosts (or a free slot).
        let tasks: Vec<String> = self
            .config
            .tasks
            .iter()
            .filter(|task| {
                let running = side.oneoffs.values().filter(|r| r.oneoff.task == task.name);
                task.max_instances
                    .is_none_or(|max| running.count() < max as usize)
            })
            .map(|task| task.name.clone())
            .collect();
        if tasks.is_empty() {
            return;
        }
        side.machine.claim_oneoffs(free as u32, tasks, now.mono);
    }

    /// Run a one-off this host claimed, or refuse it as the spool would refuse its file.
    pub(super) fn run_oneoff(&mut self, oneoff: Oneoff, now: Now) {
        let config = self.config.clone();
        let Some(side) = &mut self.cluster else {
            return;
        };
        if self.phase != Phase::Running {
            side.machine.hold_oneoff(oneoff.id);
            return;
        }
        let Some(task) = config.task(&oneoff.task) else {
            let why = format!("task `{}` is not in this host's jobfile", oneoff.task);
            return self.refuse(&oneoff, &why, now);
        };
        let (args, env) = match admit(&oneoff, task) {
            Ok(admitted) => admitted,
            Err(why) => return self.refuse(&oneoff, &why, now),
        };
        let files = Files::of(&side.files, oneoff.id);
        if let Err(e) = write_files(&files, &oneoff, task) {
            let why = format!(
                "cannot prepare its files in {} on host {}: {e}",
                side.files.display(),
                side.machine.host_id()
            );
            return self.refuse(&oneoff, &why, now);
        }
        let id = self.supervisor.next_id();
        side.machine.oneoff_started(oneoff.id, &id);
        let vars = vec![
            ("JOBD_SPOOL_FILE", files.request.display().to_string()),
            ("JOBD_SPOOL_NAME", name_of(oneoff.id)),
            ("JOBD_RESULT_FILE", files.value.display().to_string()),
        ];
        let (scheduled_at, attempt, origin) = (
            oneoff.run_at,
            u32::try_from(oneoff.attempt).unwrap_or(1),
            Origin::Oneoff(oneoff.id),
        );
        side.oneoffs.insert(
            oneoff.id,
            Running {
                max_attempts: oneoff
                    .max_attempts
                    .and_then(|max| u32::try_from(max).ok())
                    .unwrap_or(task.retries + 1),
                retry_delay: task.retry_delay,
                oneoff,
                files,
            },
        );
        let _ = self.launch(
            id,
            Launch {
                name: &task.name,
                spec: &task.run,
                args: &args,
                env: Some(&env),
                vars,
                stdin: None,
                scheduled_at,
                attempt,
                origin,
            },
            now,
        );
    }

    /// Record a one-off this host will not run as failed, with the reason.
    fn refuse(&mut self, oneoff: &Oneoff, why: &str, now: Now) {
        warn!(
            "cluster: refusing one-off {} (task {}): {why}",
            oneoff.id,
            oneoff.task.escape_debug()
        );
        let Some(side) = &mut self.cluster else {
            return;
        };
        let mut result = base_result(oneoff, "failed", side.machine.host_id());
        result["reason"] = why.into();
        let finish = FinishOneoff {
            id: oneoff.id,
            host_id: side.machine.host_id().to_string(),
            success: false,
            result,
            max_attempts: 1,
            retry_delay: Duration::ZERO,
        };
        side.machine.finish_oneoff(finish, now.mono);
    }

    /// A one-off's run ended: record its attempt in the table. True when it failed for
    /// good (no attempt left), which runs the task's on_failure.
    pub(in crate::daemon) fn oneoff_ended(
        &mut self,
        id: i64,
        record: &RunRecord,
        now: Now,
    ) -> bool {
        let Some(side) = &mut self.cluster else {
            return false;
        };
        let Some(running) = side.oneoffs.remove(&id) else {
            return false;
        };
        let stopped = match &record.outcome {
            Outcome::Stopped { why, .. } => Some(*why),
            _ => None,
        };
        if stopped == Some(Stop::Fenced) || !side.machine.holds_oneoff(id) {
            running.files.remove();
            return false;
        }
        if stopped == Some(Stop::Shutdown) {
            // Not a failure of its own: its lease ends as jobd leaves the cluster, and
            // a live host runs it again.
            log::info!(
                "cluster: one-off {id} was stopped by the shutdown; it runs again on a live host"
            );
            running.files.remove();
            return false;
        }
        let value = values::take(&running.files.value);
        running.files.remove();
        let success = record.outcome.success();
        let retrying = !success && record.attempt < running.max_attempts;
        let state = match (success, retrying) {
            (true, _) => "done",
            (false, true) => "retrying",
            (false, false) => "failed",
        };
        let host = side.machine.host_id().to_string();
        let mut result = base_result(&running.oneoff, state, &host);
        let attempt = attempt_json(record, &host, value);
        let mut attempts = earlier_attempts(&running.oneoff.result);
        attempts.push(attempt.clone());
        for key in [
            "started_at",
            "ended_at",
            "outcome",
            "exit_code",
            "signal",
            "value",
            "value_error",
            "output",
        ] {
            result[key] = attempt[key].clone();
        }
        result["attempts"] = Value::Array(attempts);
        if state == "failed" {
            result["reason"] = format!(
                "{} after {} attempt{}",
                record.outcome,
                record.attempt,
                crate::leaf::words::plural(record.attempt)
            )
            .into();
        }
        let finish = FinishOneoff {
            id,
            host_id: host,
            success,
            result,
            max_attempts: running.max_attempts,
            retry_delay: running.retry_delay,
        };
        side.machine.finish_oneoff(finish, now.mono);
        state == "failed"
    }
}

/// The arguments and variables of a one-off, checked as those of a spool file are: the
/// same parser, the same task's `accept:`, the same refusals, in the same words.
fn admit(oneoff: &Oneoff, task: &Task) -> Result<(Vec<String>, BTreeMap<String, String>), String> {
    let mut fields = json!({"task": oneoff.task, "args": oneoff.args, "env": oneoff.env});
    if !oneoff.data.is_null() {
        fields["data"] = oneoff.data.clone();
    }
    let request = request::parse(&fields.to_string())?;
    request.check(task).map_err(|refusal| refusal.to_string())?;
    Ok((request.args, request.env))
}

/// The name a child knows its request by: the submitter's id (the origin a client
/// chose), or the file name of a forwarded spool file, or the row's.
fn request_id(oneoff: &Oneoff) -> String {
    match oneoff.origin.as_deref() {
        Some(origin) => match origin.rsplit_once('/') {
            Some((_, file)) => file.strip_suffix(".json").unwrap_or(file).to_string(),
            None => origin.to_string(),
        },
        None => format!("oneoff-{}", oneoff.id),
    }
}

/// What every result of `oneoff` says, whatever its state.
fn base_result(oneoff: &Oneoff, state: &str, host: &str) -> Value {
    json!({
        "version": 1,
        "file": name_of(oneoff.id),
        "id": request_id(oneoff),
        "oneoff": oneoff.id,
        "task": oneoff.task,
        "state": state,
        "host": host,
        "received_at": timestamp::precise(oneoff.submitted_at),
        "scheduled_at": timestamp::precise(oneoff.run_at),
        "attempt": oneoff.attempt,
        "started_at": null,
        "ended_at": null,
        "next_attempt_at": null,
        "outcome": null,
        "exit_code": null,
        "signal": null,
        "reason": null,
        "value": null,
        "value_error": null,
        "output": [],
        "attempts": earlier_attempts(&oneoff.result),
    })
}

fn earlier_attempts(result: &Value) -> Vec<Value> {
    result["attempts"].as_array().cloned().unwrap_or_default()
}

fn attempt_json(record: &RunRecord, host: &str, value: values::Value) -> Value {
    let info = record.info();
    json!({
        "attempt": record.attempt,
        "run_id": record.run_id,
        "host": host,
        "started_at": info.started_at,
        "ended_at": info.ended_at,
        "outcome": info.outcome,
        "exit_code": info.exit_code,
        "signal": info.signal,
        "error": match &record.outcome {
            Outcome::SpawnError { reason } => Some(reason.clone()),
            _ => None,
        },
        "value": value.value,
        "value_error": value.error,
        "output": info.output,
    })
}

/// The request, the earlier attempts and an empty value file, each owned by the user
/// the task runs as (when jobd, as root, runs it as another).
fn write_files(files: &Files, oneoff: &Oneoff, task: &Task) -> std::io::Result<()> {
    let request = json!({
        "task": oneoff.task,
        "id": request_id(oneoff),
        "args": oneoff.args,
        "env": oneoff.env,
        "data": oneoff.data,
        "run_at": timestamp::precise(oneoff.run_at),
    });
    let owner = owner_of(task);
    let write = |path: &Path, bytes: &[u8]| -> std::io::Result<()> {
        files::replace(path, bytes, 0o600, Durability::Unsynced)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
        }
        Ok(())
    };
    write(&files.request, request.to_string().as_bytes())?;
    write(&files.value, b"")?;
    if oneoff.result.is_object() {
        write(&files.earlier, oneoff.result.to_string().as_bytes())?;
    } else {
        let _ = fs::remove_file(&files.earlier);
    }
    Ok(())
}

/// The user (and group) the task's process runs as, when jobd, as root, runs it as
/// another user.
fn owner_of(task: &Task) -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let user = account::user(task.run.user.as_deref()?)?;
    let gid = task
        .run
        .group
        .as_deref()
        .and_then(account::gid)
        .unwrap_or(user.gid);
    Some((user.uid.as_raw(), gid.as_raw()))
}
