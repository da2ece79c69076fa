//! Building answers from the daemon's state: pure functions of what they are given.

use chrono::{DateTime, Utc};

use super::protocol::{DaemonInfo, JobStatus, NextInstant, ReloadAnswer, Status};
use crate::adapter::state::History;
use crate::machine::supervisor::child_time;
use crate::model::config::{Config, Job, RunSpec, Task};
use crate::policy::scheduler::Plan;

/// `jobctl status`: every job with its next and last run; the overdue and failing
/// ones first, the rest in jobfile order.
pub fn jobs(
    config: &Config,
    plan: Option<&Plan>,
    history: &History,
    running: impl Fn(&str) -> usize,
    overdue: impl Fn(&str) -> bool,
) -> Vec<JobStatus> {
    let mut jobs: Vec<JobStatus> = config
        .jobs
        .iter()
        .map(|job| {
            let next = match plan {
                Some(plan) => plan.next_of(&job.name),
                // jobd is down: what it would do once started.
                None if job.enabled => job.schedule.next_after(Utc::now()),
                None => None,
            };
            JobStatus {
                name: job.name.clone(),
                schedule: job.schedule.describe(),
                enabled: job.enabled,
                next: next.map(child_time),
                running: running(&job.name),
                last: history.last(&job.name).cloned(),
                overdue: overdue(&job.name),
            }
        })
        .collect();
    let failing = |job: &JobStatus| job.last.as_ref().is_some_and(|r| r.outcome != "succeeded");
    jobs.sort_by_key(|job| (!job.overdue, !failing(job)));
    jobs
}

/// The status of a stopped jobd, from its jobfile and state directory.
pub fn offline_status(config: &Config) -> Status {
    let history = crate::adapter::state::load(&config.state_dir);
    Status {
        daemon: None,
        reload_error: None,
        problems: Vec::new(),
        jobs: jobs(config, None, &history, |_| 0, |_| false),
        spool: None,
    }
}

pub fn daemon_info(config: &Config, started_at: DateTime<Utc>) -> DaemonInfo {
    DaemonInfo {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: child_time(started_at),
        uptime_seconds: (Utc::now() - started_at).num_seconds().max(0) as u64,
        jobfile: config.file.display().to_string(),
        environment: config.environment.clone(),
        timezone: config.timezone.name().to_string(),
    }
}

/// The next `count` instants of one job or every enabled job, soonest first.
pub fn next(
    config: &Config,
    plan: &Plan,
    job: Option<&str>,
    count: usize,
) -> Result<Vec<NextInstant>, String> {
    let jobs: Vec<_> = match job {
        Some(name) => vec![config.job(name).ok_or_else(|| unknown_job(config, name))?],
        None => config.jobs.iter().filter(|j| j.enabled).collect(),
    };
    let mut instants = Vec::new();
    for job in jobs {
        let mut at = plan.next_of(&job.name);
        for _ in 0..count {
            let Some(instant) = at else { break };
            instants.push((instant, job.name.clone()));
            at = job.schedule.next_after(instant);
        }
    }
    instants.sort();
    instants.truncate(count);
    Ok(instants
        .into_iter()
        .map(|(at, job)| NextInstant {
            job,
            at: child_time(at),
        })
        .collect())
}

pub fn unknown_job(config: &Config, name: &str) -> String {
    let names = config.jobs.iter().map(|j| j.name.as_str());
    match crate::leaf::suggest::closest(name, names) {
        Some(near) => format!("unknown job `{name}`; did you mean `{near}`?"),
        None => format!("unknown job `{name}`"),
    }
}

/// What a reload from `old` to `new` changes, by job and task name.
pub fn reload_diff(old: &Config, new: &Config) -> ReloadAnswer {
    let mut answer = ReloadAnswer {
        applied: false,
        error: None,
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
    };
    for job in &new.jobs {
        match old.job(&job.name) {
            None => answer.added.push(format!("job {}", job.name)),
            Some(before) if !same_job(before, job) => {
                answer
                    .changed
                    .push(format!("job {} ({})", job.name, job_changes(before, job)))
            }
            Some(_) => {}
        }
    }
    for job in old.jobs.iter().filter(|j| new.job(&j.name).is_none()) {
        answer.removed.push(format!("job {}", job.name));
    }
    for task in &new.tasks {
        match old.task(&task.name) {
            None => answer.added.push(format!("task {}", task.name)),
            Some(before) if !same_task(before, task) => answer.changed.push(format!(
                "task {} ({})",
                task.name,
                task_changes(before, task)
            )),
            Some(_) => {}
        }
    }
    for task in old.tasks.iter().filter(|t| new.task(&t.name).is_none()) {
        answer.removed.push(format!("task {}", task.name));
    }
    answer.changed.extend(setting_changes(old, new));
    answer
}

/// Top-level and spool settings that differ; those a running jobd cannot move say so.
fn setting_changes(old: &Config, new: &Config) -> Vec<String> {
    let at_restart = " (takes effect when jobd restarts)";
    let (a, b) = (&old.spool, &new.spool);
    [
        ("timezone", old.timezone != new.timezone, ""),
        (
            "shutdown_grace",
            old.shutdown_grace != new.shutdown_grace,
            "",
        ),
        ("removed_jobs", old.removed_jobs != new.removed_jobs, ""),
        ("metrics_file", old.metrics_file != new.metrics_file, ""),
        ("state_dir", old.state_dir != new.state_dir, at_restart),
        ("socket", old.socket != new.socket, at_restart),
        (
            "socket_group",
            old.socket_group != new.socket_group,
            at_restart,
        ),
        ("spool.dir", a.dir != b.dir, at_restart),
        ("spool.workers", a.workers != b.workers, ""),
        (
            "spool.allow_users or allow_groups",
            a.allow_users != b.allow_users || a.allow_groups != b.allow_groups,
            "",
        ),
        (
            "spool retention",
            a.keep_done != b.keep_done || a.keep_failed != b.keep_failed,
            "",
        ),
    ]
    .into_iter()
    .filter(|(_, changed, _)| *changed)
    .map(|(name, _, note)| format!("setting {name}{note}"))
    .collect()
}

/// Whether two versions of a job are the same but for where the jobfile has them.
/// Field by field, without copies (a reload compares thousands); the destructuring
/// makes a new field a compile error here until it is compared.
fn same_job(a: &Job, b: &Job) -> bool {
    let Job {
        name,
        schedule,
        run,
        max_instances,
        on_overlap,
        environments,
        enabled,
        catch_up,
        on_failure,
        alert_after,
        pos: _,
    } = a;
    *name == b.name
        && *schedule == b.schedule
        && *run == b.run
        && *max_instances == b.max_instances
        && *on_overlap == b.on_overlap
        && *environments == b.environments
        && *enabled == b.enabled
        && *catch_up == b.catch_up
        && *on_failure == b.on_failure
        && *alert_after == b.alert_after
}

fn same_task(a: &Task, b: &Task) -> bool {
    let Task {
        name,
        run,
        retries,
        retry_delay,
        max_instances,
        on_failure,
        pos: _,
    } = a;
    *name == b.name
        && *run == b.run
        && *retries == b.retries
        && *retry_delay == b.retry_delay
        && *max_instances == b.max_instances
        && *on_failure == b.on_failure
}

/// What differs between two versions of a job, for the deploy log: the schedule
/// before and after, the other settings by name.
fn job_changes(before: &Job, after: &Job) -> String {
    let mut changes = Vec::new();
    if before.schedule != after.schedule {
        changes.push(format!(
            "schedule {} -> {}",
            before.schedule.describe(),
            after.schedule.describe()
        ));
    }
    changes.extend(run_changes(&before.run, &after.run));
    let settings = [
        ("max_instances", before.max_instances != after.max_instances),
        ("on_overlap", before.on_overlap != after.on_overlap),
        ("environments", before.environments != after.environments),
        ("catch_up", before.catch_up != after.catch_up),
        ("on_failure", before.on_failure != after.on_failure),
        ("alert_after", before.alert_after != after.alert_after),
    ];
    changes.extend(
        settings
            .iter()
            .filter(|(_, c)| *c)
            .map(|(k, _)| k.to_string()),
    );
    changes.join("; ")
}

fn task_changes(before: &Task, after: &Task) -> String {
    let mut changes = run_changes(&before.run, &after.run);
    let settings = [
        ("retries", before.retries != after.retries),
        ("retry_delay", before.retry_delay != after.retry_delay),
        ("max_instances", before.max_instances != after.max_instances),
        ("on_failure", before.on_failure != after.on_failure),
    ];
    changes.extend(
        settings
            .iter()
            .filter(|(_, c)| *c)
            .map(|(k, _)| k.to_string()),
    );
    changes.join("; ")
}

fn run_changes(before: &RunSpec, after: &RunSpec) -> Vec<String> {
    let mut changes = Vec::new();
    if before.command != after.command {
        changes.push(format!(
            "command {} -> {}",
            before.command.display(),
            after.command.display()
        ));
    }
    let settings = [
        ("workdir", before.workdir != after.workdir),
        ("env", before.env != after.env),
        ("timeout", before.timeout != after.timeout),
        ("kill_grace", before.kill_grace != after.kill_grace),
        ("user", before.user != after.user),
        ("group", before.group != after.group),
    ];
    changes.extend(
        settings
            .iter()
            .filter(|(_, c)| *c)
            .map(|(k, _)| k.to_string()),
    );
    changes
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::config::{self, Host};

    fn config(text: &str) -> Config {
        let host = Host {
            local_zone: Some("UTC".into()),
            ..Host::default()
        };
        config::parse(text, Path::new("/app/jobd.yaml"), None, &host).unwrap()
    }

    #[test]
    fn a_reload_names_each_change_and_what_waits_for_a_restart() {
        let old = config(
            "jobs:\n  a:\n    every: 1s\n    command: [x]\n  b:\n    every: 1s\n    command: [x]\n",
        );
        let new = config(
            "spool:\n  dir: elsewhere\n  workers: 4\njobs:\n  a:\n    every: 2s\n    command: [y]\n    env: {K: v}\n  c:\n    every: 1s\n    command: [x]\n",
        );
        let diff = reload_diff(&old, &new);
        assert_eq!(diff.added, ["job c"]);
        assert_eq!(diff.removed, ["job b"]);
        assert_eq!(
            diff.changed,
            [
                "job a (schedule every 1s -> every 2s; command x -> y; env)",
                "setting spool.dir (takes effect when jobd restarts)",
                "setting spool.workers",
            ]
        );
        assert!(reload_diff(&new, &new).changed.is_empty());
    }

    #[test]
    fn status_lists_overdue_then_failing_jobs_first_and_the_rest_in_jobfile_order() {
        let config = config(
            "jobs:\n  a:\n    every: 1s\n    command: [x]\n  b:\n    every: 1s\n    command: [x]\n  \
             c:\n    every: 1s\n    command: [x]\n  d:\n    every: 1s\n    command: [x]\n",
        );
        let mut history = History::default();
        for (job, outcome) in [("a", "succeeded"), ("c", "failed"), ("d", "succeeded")] {
            history.push(crate::adapter::control::protocol::RunInfo {
                job: job.into(),
                run_id: "1".into(),
                attempt: 1,
                scheduled_at: String::new(),
                started_at: String::new(),
                ended_at: String::new(),
                duration_ms: 0,
                outcome: outcome.into(),
                exit_code: None,
                signal: None,
                message: String::new(),
                output: Vec::new(),
            });
        }
        let names: Vec<String> = jobs(&config, None, &history, |_| 0, |job| job == "d")
            .into_iter()
            .map(|j| j.name)
            .collect();
        assert_eq!(names, ["d", "c", "a", "b"]);
    }
}
