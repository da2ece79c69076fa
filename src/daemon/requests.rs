//! Requests from jobctl: most are answered at once, `run --wait` when the run ends.
//! The server has checked that the peer may make each (`control::access`), and it
//! caps every answer's size; the counts asked for are bounded here.

use log::info;

use super::shutdown::Phase;
use super::{Daemon, DaemonError};
use crate::adapter::control::answer;
use crate::adapter::control::protocol::{Body, Command, RunAnswer, SpoolStatus, Status, TaskLimit};
use crate::adapter::control::server::Incoming;
use crate::adapter::spawner::Spawner;
use crate::leaf::now::Now;
use crate::model::config::HOOK_SUFFIX;
use crate::policy::metrics::MetricsFile;
use crate::policy::overlap::Decision;

impl<S: Spawner> Daemon<S> {
    pub(super) fn on_request(&mut self, incoming: Incoming, now: Now) -> Result<(), DaemonError> {
        let body = match incoming.request.command {
            Command::Status => Body::Status(self.status(now)),
            Command::History { job, limit } => match (job, answer::history_limit(limit)) {
                (_, Err(message)) => error_body(message),
                (Some(name), _) if !self.knows(&name) => {
                    error_body(answer::unknown_job(&self.config, &name))
                }
                (job, Ok(limit)) if self.cluster.is_some() => {
                    self.cluster_history(incoming.client, job, limit, now);
                    return Ok(());
                }
                (job, Ok(limit)) => Body::History {
                    runs: self.history.recent(job.as_deref(), limit),
                },
            },
            Command::Next { job, count } => {
                match answer::next(&self.config, &self.plan, job.as_deref(), count) {
                    Ok(instants) => Body::Next { instants },
                    Err(message) => error_body(message),
                }
            }
            Command::Reload { dry_run } => Body::Reload(self.reload_with(dry_run, now)?),
            Command::Run { job, wait }
                if self.phase == Phase::Running && self.runs_shared(&job) =>
            {
                let config = self.config.clone();
                if let Some(job) = config.job(&job) {
                    self.run_shared(incoming.client, job, wait, now);
                }
                return Ok(());
            }
            Command::Logs {
                target,
                lines,
                follow,
            } => match self.logs(target.as_deref(), lines) {
                Err(message) => error_body(message),
                Ok(lines) if follow => {
                    let job = target.filter(|t| self.knows(t));
                    self.server.stream(incoming.client, Body::Logs { lines });
                    self.followers.push((incoming.client, job));
                    return Ok(());
                }
                Ok(lines) => Body::Logs { lines },
            },
            Command::Run { job, wait } => match self.run_now(&job, now) {
                Err(message) => error_body(message),
                Ok((_, Some(run_id))) if wait => {
                    self.waiters.push((incoming.client, run_id));
                    return Ok(());
                }
                Ok((decision, run_id)) => Body::Run(RunAnswer {
                    decision: decision.word().to_string(),
                    run_id,
                    ended: None,
                }),
            },
        };
        self.server.respond(incoming.client, body, now.mono);
        Ok(())
    }

    /// Whether `name` is an enabled job whose instants the cluster decides.
    fn runs_shared(&self, name: &str) -> bool {
        self.config
            .job(name)
            .is_some_and(|job| job.enabled && self.shared(job))
    }

    /// Whether `name` is a job's or task's, or their hook's, for `jobctl history`.
    pub(super) fn knows(&self, name: &str) -> bool {
        let known =
            |name: &str| self.config.job(name).is_some() || self.config.task(name).is_some();
        known(name) || name.strip_suffix(HOOK_SUFFIX).is_some_and(known)
    }

    /// `jobctl run JOB`: an instant of the job, now, under its overlap policy.
    fn run_now(&mut self, name: &str, now: Now) -> Result<(Decision, Option<String>), String> {
        if self.phase != Phase::Running {
            return Err("jobd is shutting down".to_string());
        }
        let config = self.config.clone();
        let job = config
            .job(name)
            .ok_or_else(|| answer::unknown_job(&config, name))?;
        if !job.enabled {
            return Err(format!(
                "job `{name}` is disabled in this environment (it runs only in: {})",
                job.environments.as_deref().unwrap_or_default().join(", ")
            ));
        }
        info!("{name}: run requested through the control socket");
        let fate = self.fire(job, now.wall, 0, now);
        match fate.started {
            Some(Err(why)) => Err(format!("job `{name}` {why}")),
            Some(Ok(run_id)) => Ok((fate.decision, Some(run_id))),
            None => Ok((fate.decision, None)),
        }
    }

    fn status(&mut self, now: Now) -> Status {
        let spool = self.spool.counts();
        let failed_recently = self.spool.failed_recently();
        let runtimes = self.supervisor.spawner_ref().runtimes_ref();
        Status {
            runtimes: runtimes.map(|r| r.status()).unwrap_or_default(),
            daemon: Some(answer::daemon_info(&self.config, self.started_at)),
            reload_error: self.reload_error.clone(),
            problems: self
                .history
                .problems()
                .into_iter()
                .chain(self.spool.problems(&self.config))
                .chain(runtimes.map(|r| r.problems()).unwrap_or_default())
                .chain(
                    self.metrics_file
                        .as_ref()
                        .and_then(MetricsFile::problem)
                        .map(str::to_string),
                )
                .chain(self.cluster_problems())
                .collect(),
            cluster: self.cluster_status(),
            jobs: answer::jobs(
                &self.config,
                Some(&self.plan),
                &self.history,
                |job| self.supervisor.running_of(job),
                |job| self.watch.is_overdue(job, now.wall),
            ),
            spool: Some(SpoolStatus {
                dir: self.config.spool.dir.display().to_string(),
                queued: spool.waiting,
                delayed: spool.delayed,
                running: spool.running,
                retrying: spool.retrying,
                failed_recently,
                workers: self.config.spool.workers,
                tasks: self
                    .config
                    .tasks
                    .iter()
                    .map(|task| TaskLimit {
                        name: task.name.clone(),
                        max_instances: task.max_instances,
                    })
                    .collect(),
            }),
        }
    }
}

fn error_body(message: String) -> Body {
    Body::Error { message }
}
