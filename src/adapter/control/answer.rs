//! Building answers from the daemon's state: pure functions of what they are given.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, Utc};

use super::protocol::{
    DaemonInfo, JobStatus, MAX_HISTORY, MAX_NEXT, MAX_NEXT_IN_ALL, NextInstant, Status,
};
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
        problems: history.problems(),
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

/// The next `count` instants (at most `MAX_NEXT`) of each enabled job (or of one job),
/// soonest first, as `jobd check --next` counts them. Each job's instants are merged
/// as they come; the whole answer is bounded by `MAX_NEXT_IN_ALL`.
pub fn next(
    config: &Config,
    plan: &Plan,
    job: Option<&str>,
    count: usize,
) -> Result<Vec<NextInstant>, String> {
    if count > MAX_NEXT {
        return Err(format!(
            "`next` shows at most {MAX_NEXT} instants per job; {count} were asked for"
        ));
    }
    let jobs: Vec<_> = match job {
        Some(name) => {
            let job = config.job(name).ok_or_else(|| unknown_job(config, name))?;
            if !job.enabled {
                return Err(disabled(config, job));
            }
            vec![job]
        }
        None => config.jobs.iter().filter(|j| j.enabled).collect(),
    };
    if jobs.len().saturating_mul(count) > MAX_NEXT_IN_ALL {
        return Err(format!(
            "`next` shows at most {MAX_NEXT_IN_ALL} instants in all; {count} for each of {} \
             jobs is more: ask for fewer, or for one job",
            jobs.len()
        ));
    }
    // (instant, job name, job index, how many of that job's this is), soonest first.
    type Coming<'a> = Reverse<(DateTime<Utc>, &'a str, usize, usize)>;
    let mut coming: BinaryHeap<Coming> = jobs
        .iter()
        .enumerate()
        .filter_map(|(index, job)| {
            let at = plan.next_of(&job.name)?;
            Some(Reverse((at, job.name.as_str(), index, 1)))
        })
        .collect();
    let mut instants = Vec::new();
    while let Some(Reverse((at, name, index, nth))) = coming.pop() {
        instants.push(NextInstant {
            job: name.to_string(),
            at: timestamp::precise(at),
        });
        if nth < count
            && let Some(later) = jobs[index].schedule.next_after(at)
        {
            coming.push(Reverse((later, name, index, nth + 1)));
        }
    }
    Ok(instants)
}

/// `history`: at most `MAX_HISTORY` runs.
pub fn history_limit(limit: usize) -> Result<usize, String> {
    if limit > MAX_HISTORY {
        return Err(format!(
            "`history` shows at most {MAX_HISTORY} runs; {limit} were asked for"
        ));
    }
    Ok(limit)
}

/// Why a job that exists has no instants: its `environments:` leave this one out.
fn disabled(config: &Config, job: &crate::model::config::Job) -> String {
    let listed = job.environments.as_deref().unwrap_or_default().join(", ");
    let running = match &config.environment {
        Some(env) => format!("jobd runs in environment {env}"),
        None => "jobd runs in no environment (started without -e)".to_string(),
    };
    format!(
        "job `{}` is disabled: it runs only in environment {listed}, and {running}",
        job.name
    )
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

    #[test]
    fn next_merges_the_jobs_instants_soonest_first_within_its_bound() {
        let config = config(
            "jobs:\n  slow:\n    every: 3s\n    command: [x]\n  fast:\n    every: 2s\n    command: [x]\n",
        );
        let now = DateTime::parse_from_rfc3339("2030-01-01T00:00:00.5Z")
            .unwrap()
            .to_utc();
        let plan = Plan::new(&config, now);
        // Three of each job's, soonest first.
        let shown: Vec<String> = next(&config, &plan, None, 3)
            .unwrap()
            .into_iter()
            .map(|n| format!("{} {}", &n.at[17..19], n.job))
            .collect();
        assert_eq!(
            shown,
            [
                "02 fast", "03 slow", "04 fast", "06 fast", "06 slow", "09 slow"
            ]
        );
        assert_eq!(
            next(&config, &plan, Some("slow"), MAX_NEXT).unwrap().len(),
            MAX_NEXT
        );
        let refused = next(&config, &plan, None, 30_000_000).unwrap_err();
        assert!(refused.contains("at most 1000 instants"), "{refused}");
        let many: String = (0..200)
            .map(|i| format!("  j{i}:\n    every: 1s\n    command: [x]\n"))
            .collect();
        let config = super::tests::config(&format!("jobs:\n{many}"));
        let plan = Plan::new(&config, now);
        let refused = next(&config, &plan, None, MAX_NEXT).unwrap_err();
        assert!(refused.contains("in all"), "{refused}");
        assert!(history_limit(MAX_HISTORY + 1).is_err());
    }
}
