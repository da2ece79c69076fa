//! Whether an instant of a job runs now — the one place that decides it — and starting
//! runs. Cluster mode claims the instant here before it starts.

use chrono::{DateTime, Utc};
use log::{info, warn};

use super::{Daemon, interrupted};
use crate::adapter::journal::Entry;
use crate::adapter::spawner::Spawner;
use crate::leaf::now::Now;
use crate::leaf::words::plural;
use crate::leaf::{duration, timestamp};
use crate::machine::supervisor::{Launch, Which};
use crate::model::config::{CatchUp, Job};
use crate::model::record::Stop;
use crate::policy::hooks::Failure;
use crate::policy::metrics::Skip;
use crate::policy::overlap::{self, Decision};
use crate::policy::scheduler;

/// What became of an instant handed to `fire`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fate {
    pub decision: Decision,
    /// The run started, or why it could not start, when the decision was to start.
    pub started: Option<Result<String, String>>,
}

impl<S: Spawner> Daemon<S> {
    /// Jobs with `catch_up: once` that missed instants while jobd was down run once now.
    pub(super) fn catch_up(&mut self, now: Now) {
        let config = self.config.clone();
        for job in config
            .jobs
            .iter()
            .filter(|j| j.enabled && j.catch_up == CatchUp::Once)
        {
            if self.shared(job) {
                // From the cluster's last run, once the cluster is available.
                continue;
            }
            let last = self.history.last_ran(&job.name, now.wall);
            if let Some(due) = scheduler::catch_up(job, last, now.wall) {
                info!(
                    "{}: catching up on {} instant{} missed while jobd was down (catch_up: once)",
                    job.name,
                    due.missed + 1,
                    plural(due.missed + 1)
                );
                self.fire(job, due.instant, 0, now);
            }
        }
    }

    /// Every instant the plan says is due by now.
    pub(super) fn fire_due(&mut self, now: Now) {
        let config = self.config.clone();
        for due in self.plan.due(now.wall) {
            if let Some(job) = config.job(&due.job) {
                self.fire(job, due.instant, due.missed, now);
            }
        }
    }

    /// Jobs that have gone `alert_after` without success run their `on_failure`. A
    /// shared job may have succeeded on another host: the cluster is asked first.
    pub(super) fn alert_overdue(&mut self, now: Now) {
        for alert in self.watch.due(now.wall) {
            let shared = self
                .config
                .job(&alert.job)
                .is_some_and(|job| self.shared(job));
            if let Some(side) = &mut self.cluster
                && shared
                && side.machine.claiming()
            {
                side.machine.last_success(&alert.job, alert.since, now.mono);
                continue;
            }
            self.overdue(&alert.job, alert.since, now);
        }
    }

    /// `job` has not succeeded since `since`: say so, and run its `on_failure`.
    pub(super) fn overdue(&mut self, job: &str, since: DateTime<Utc>, now: Now) {
        warn!(
            "{job}: overdue: no success for {} (alert_after)",
            duration::format(std::time::Duration::from_secs(
                (now.wall - since).num_seconds().max(0) as u64
            ))
        );
        self.metrics.became_overdue();
        self.failed(Failure::overdue(job, since, now.wall), false, now);
    }

    /// An instant of `job` has come (`missed` earlier ones collapsed into it): the one
    /// place that decides whether it runs now, under `max_instances` and `on_overlap`,
    /// and counts what does not run. In cluster mode a shared job's instant is claimed
    /// instead, and the database decides (the answer comes back to `cluster`): the
    /// fate is then to start, with nothing started yet.
    pub(super) fn fire(
        &mut self,
        job: &Job,
        instant: DateTime<Utc>,
        missed: u64,
        now: Now,
    ) -> Fate {
        if self.shared(job) {
            self.fire_shared(job, instant, None, now);
            self.missed(job, instant, missed);
            return Fate {
                decision: Decision::Start,
                started: None,
            };
        }
        let running = self.supervisor.running_of(&job.name);
        let decision = overlap::decide(job, running);
        let mut started = None;
        match decision {
            Decision::Start => started = Some(self.start_job(job, instant, now)),
            Decision::Skip => {
                info!(
                    "{}: not starting the instant at {}: {running} still running (on_overlap: skip)",
                    job.name,
                    timestamp::short(instant),
                );
                self.metrics.skipped(&job.name, Skip::Overlap, 1);
            }
            Decision::Queue | Decision::Replace => {
                match self.pending.keep(&job.name, instant) {
                    Some(older) => {
                        info!(
                            "{}: the pending instant at {} is replaced by the one at {}",
                            job.name,
                            timestamp::short(older),
                            timestamp::short(instant)
                        );
                        self.metrics.skipped(&job.name, Skip::Overlap, 1);
                    }
                    None => info!(
                        "{}: the instant at {} waits until a running instance ends",
                        job.name,
                        timestamp::short(instant)
                    ),
                }
                if decision == Decision::Replace {
                    self.supervisor
                        .stop(Which::OldestOf(&job.name), Stop::Replaced, now);
                }
            }
        }
        self.missed(job, instant, missed);
        Fate { decision, started }
    }

    /// Told after the decision and the spawn, which a late wake-up must not delay more.
    fn missed(&mut self, job: &Job, instant: DateTime<Utc>, missed: u64) {
        if missed > 0 {
            warn!(
                "{}: woke late, {missed} earlier instant{} missed; running the one at {}",
                job.name,
                plural(missed),
                timestamp::short(instant)
            );
            self.metrics.skipped(&job.name, Skip::Missed, missed);
        }
    }

    /// Start one run of a scheduled job.
    pub(super) fn start_job(
        &mut self,
        job: &Job,
        scheduled_at: DateTime<Utc>,
        now: Now,
    ) -> Result<String, String> {
        let id = self.supervisor.next_id();
        self.launch(id, Launch::of_job(job, scheduled_at, 1), now)
    }

    /// Start run `id`; a run that cannot start has ended, and is handled as any end.
    /// Returns the run id, or why it could not start.
    pub(super) fn launch(
        &mut self,
        id: String,
        launch: Launch,
        now: Now,
    ) -> Result<String, String> {
        self.journal.starting(&Entry {
            run_id: id.clone(),
            name: launch.name.to_string(),
            origin: interrupted::origin_word(&launch.origin),
            attempt: launch.attempt,
            scheduled_at: launch.scheduled_at,
            started_at: now.wall,
            kill_grace_ms: launch.spec.kill_grace.as_millis() as u64,
        });
        match self.supervisor.launch(id.clone(), launch, now) {
            Ok(_) => Ok(id),
            Err(ended) => {
                let why = ended.record.outcome.to_string();
                self.ended(*ended, now);
                Err(why)
            }
        }
    }
}
