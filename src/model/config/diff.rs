//! What a reload changes: the difference between two validated jobfiles, in words.

use super::{Cluster, Config, Job, RunSpec, Runtime, Task};

/// Jobs and tasks added, removed and changed (`job a (schedule ... -> ...)`), and
/// changed settings (`setting spool.workers`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// What a reload from `old` to `new` changes, by job and task name.
pub fn diff(old: &Config, new: &Config) -> Diff {
    let mut answer = Diff::default();
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
    for runtime in &new.runtimes {
        match old.runtime(&runtime.name) {
            None => answer.added.push(format!("runtime {}", runtime.name)),
            Some(before) if before != runtime => answer.changed.push(format!(
                "runtime {} ({})",
                runtime.name,
                runtime_changes(before, runtime)
            )),
            Some(_) => {}
        }
    }
    for runtime in old
        .runtimes
        .iter()
        .filter(|r| new.runtime(&r.name).is_none())
    {
        answer.removed.push(format!("runtime {}", runtime.name));
    }
    answer.changed.extend(setting_changes(old, new));
    answer
}

fn runtime_changes(before: &Runtime, after: &Runtime) -> String {
    let Runtime {
        name: _,
        command,
        workdir,
        env,
        preload,
        user,
        group,
        max_runs,
        max_rss,
        pos: _,
    } = before;
    [
        ("command", *command != after.command),
        ("workdir", *workdir != after.workdir),
        ("env", *env != after.env),
        ("preload", *preload != after.preload),
        ("user", *user != after.user),
        ("group", *group != after.group),
        ("max_runs", *max_runs != after.max_runs),
        ("max_rss", *max_rss != after.max_rss),
    ]
    .iter()
    .filter(|(_, changed)| *changed)
    .map(|(key, _)| key.to_string())
    .collect::<Vec<_>>()
    .join("; ")
}

/// Top-level and spool settings that differ; those a running jobd cannot move say so.
fn setting_changes(old: &Config, new: &Config) -> Vec<String> {
    let at_restart = " (takes effect when jobd restarts)";
    let (a, b) = (&old.spool, &new.spool);
    let zone = format!(" ({} -> {})", old.timezone.name(), new.timezone.name());
    [
        ("timezone", old.timezone != new.timezone, zone.as_str()),
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
        ("read_group", old.read_group != new.read_group, at_restart),
        ("spool.dir", a.dir != b.dir, at_restart),
        ("spool.workers", a.workers != b.workers, ""),
        ("spool.group", a.group != b.group, ""),
        ("spool.max_queued", a.max_queued != b.max_queued, ""),
        (
            "spool.allow_users or allow_groups",
            a.allow_users != b.allow_users || a.allow_groups != b.allow_groups,
            "",
        ),
        (
            "cluster",
            !same_cluster(old.cluster.as_ref(), new.cluster.as_ref()),
            at_restart,
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

/// Whether two `cluster:` sections agree on all a running jobd cannot change: the
/// jobfile's hash follows every reload.
fn same_cluster(a: Option<&Cluster>, b: Option<&Cluster>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            let Cluster {
                database_url,
                listen_url,
                host_id,
                lease,
                jobfile_hash: _,
            } = a;
            *database_url == b.database_url
                && *listen_url == b.listen_url
                && *host_id == b.host_id
                && *lease == b.lease
        }
        _ => false,
    }
}

/// Whether two versions of a job are the same but for where the jobfile has them and
/// the zone its schedule is read in: a new `timezone:` is reported once, as a setting,
/// not as a change of every cron job.
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
        placement,
        on_host_loss,
        pos: _,
    } = a;
    *name == b.name
        && schedule.same_rule(&b.schedule)
        && *run == b.run
        && *max_instances == b.max_instances
        && *on_overlap == b.on_overlap
        && *environments == b.environments
        && *enabled == b.enabled
        && *catch_up == b.catch_up
        && *on_failure == b.on_failure
        && *alert_after == b.alert_after
        && *placement == b.placement
        && *on_host_loss == b.on_host_loss
}

fn same_task(a: &Task, b: &Task) -> bool {
    let Task {
        name,
        run,
        retries,
        retry_delay,
        max_instances,
        on_failure,
        accept,
        pos: _,
    } = a;
    *name == b.name
        && *run == b.run
        && *retries == b.retries
        && *retry_delay == b.retry_delay
        && *max_instances == b.max_instances
        && *on_failure == b.on_failure
        && *accept == b.accept
}

/// What differs between two versions of a job, for the deploy log: the schedule
/// before and after, the other settings by name.
fn job_changes(before: &Job, after: &Job) -> String {
    let mut changes = Vec::new();
    if !before.schedule.same_rule(&after.schedule) {
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
        ("cluster", before.placement != after.placement),
        ("on_host_loss", before.on_host_loss != after.on_host_loss),
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
        ("accept", before.accept != after.accept),
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
        ("runtime", before.runtime != after.runtime),
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
        let changes = diff(&old, &new);
        assert_eq!(changes.added, ["job c"]);
        assert_eq!(changes.removed, ["job b"]);
        assert_eq!(
            changes.changed,
            [
                "job a (schedule every 1s -> every 2s; command x -> y; env)",
                "setting spool.dir (takes effect when jobd restarts)",
                "setting spool.workers",
            ]
        );
        assert!(diff(&new, &new).changed.is_empty());
    }

    #[test]
    fn a_new_time_zone_is_one_change_not_one_per_cron_job() {
        let jobs = "jobs:\n  a:\n    schedule: '0 3 * * *'\n    command: [x]\n  \
                    b:\n    schedule: '*/5 * * * * *'\n    command: [x]\n";
        let old = config(&format!("timezone: Europe/Amsterdam\n{jobs}"));
        let new = config(&format!(
            "timezone: UTC\n{}",
            jobs.replace("0 3 * * *", "0 4 * * *")
        ));
        assert_eq!(
            diff(&old, &new).changed,
            [
                "job a (schedule 0 3 * * * -> 0 4 * * *)",
                "setting timezone (Europe/Amsterdam -> UTC)",
            ]
        );
    }
}
