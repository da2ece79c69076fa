//! Building answers from the daemon's state: pure functions of what they are given.

use chrono::{DateTime, Utc};

use super::protocol::{DaemonInfo, JobStatus, NextInstant, ReloadAnswer, Status};
use crate::config::{Config, Job, Task};
use crate::scheduler::Plan;
use crate::state::History;
use crate::supervisor::child_time;
use crate::yaml::Pos;

/// `jobctl status`: every job with its next and last run.
pub fn jobs(
    config: &Config,
    plan: Option<&Plan>,
    history: &History,
    running: impl Fn(&str) -> usize,
) -> Vec<JobStatus> {
    config
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
            }
        })
        .collect()
}

/// The status of a stopped jobd, from its jobfile and state directory.
pub fn offline_status(config: &Config) -> Status {
    let history = crate::state::load(&config.state_dir);
    Status {
        daemon: None,
        reload_error: None,
        jobs: jobs(config, None, &history, |_| 0),
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
    match crate::suggest::closest(name, names) {
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
    // Where an entry stands in the file is no change to it.
    let unplaced = |job: &Job| Job {
        pos: Pos::default(),
        ..job.clone()
    };
    for job in &new.jobs {
        match old.job(&job.name) {
            None => answer.added.push(format!("job {}", job.name)),
            Some(before) if unplaced(before) != unplaced(job) => {
                answer.changed.push(format!("job {}", job.name))
            }
            Some(_) => {}
        }
    }
    for job in old.jobs.iter().filter(|j| new.job(&j.name).is_none()) {
        answer.removed.push(format!("job {}", job.name));
    }
    let unplaced = |task: &Task| Task {
        pos: Pos::default(),
        ..task.clone()
    };
    for task in &new.tasks {
        match old.task(&task.name) {
            None => answer.added.push(format!("task {}", task.name)),
            Some(before) if unplaced(before) != unplaced(task) => {
                answer.changed.push(format!("task {}", task.name))
            }
            Some(_) => {}
        }
    }
    for task in old.tasks.iter().filter(|t| new.task(&t.name).is_none()) {
        answer.removed.push(format!("task {}", task.name));
    }
    answer
}
