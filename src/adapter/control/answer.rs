//! Building answers from the daemon's state: pure functions of what they are given.

use chrono::{DateTime, Utc};

use super::protocol::{DaemonInfo, JobStatus, NextInstant, Status};
use crate::adapter::state::History;
use crate::leaf::timestamp;
use crate::model::config::Config;
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
                next: next.map(timestamp::precise),
                running: running(&job.name),
                last: history.last(&job.name).cloned(),
                overdue: overdue(&job.name),
            }
        })
        .collect();
    let failing = |job: &JobStatus| job.last.as_ref().is_some_and(|r| r.outcome.is_failure());
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
        runtimes: Vec::new(),
        cluster: None,
    }
}

pub fn daemon_info(config: &Config, started_at: DateTime<Utc>) -> DaemonInfo {
    DaemonInfo {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: timestamp::precise(started_at),
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
            at: timestamp::precise(at),
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::config::{self, Host};
    use crate::model::record::Verdict;

    fn config(text: &str) -> Config {
        let host = Host {
            local_zone: Some("UTC".into()),
            ..Host::default()
        };
        config::parse(text, Path::new("/app/jobd.yaml"), None, &host).unwrap()
    }

    #[test]
    fn status_lists_overdue_then_failing_jobs_first_and_the_rest_in_jobfile_order() {
        let config = config(
            "jobs:\n  a:\n    every: 1s\n    command: [x]\n  b:\n    every: 1s\n    command: [x]\n  \
             c:\n    every: 1s\n    command: [x]\n  d:\n    every: 1s\n    command: [x]\n",
        );
        let mut history = History::default();
        for (job, outcome) in [
            ("a", Verdict::Success),
            ("c", Verdict::Failure),
            ("d", Verdict::Success),
        ] {
            history.push(crate::model::record::RunInfo {
                job: job.into(),
                run_id: "1".into(),
                attempt: 1,
                scheduled_at: String::new(),
                started_at: String::new(),
                ended_at: String::new(),
                duration_ms: 0,
                outcome,
                exit_code: None,
                signal: None,
                message: String::new(),
                output: Vec::new(),
                host: None,
            });
        }
        let names: Vec<String> = jobs(&config, None, &history, |_| 0, |job| job == "d")
            .into_iter()
            .map(|j| j.name)
            .collect();
        assert_eq!(names, ["d", "c", "a", "b"]);
    }
}
