//! Scheduled instants in cluster mode: the claim at the fire decision, the start the
//! database agrees to, runs handed over (a queued instant, a rescue), lost runs, and
//! what was missed while the cluster was unavailable.

use std::time::Duration;

use chrono::{DateTime, Utc};
use log::{debug, info, warn};

use super::Daemon;
use crate::adapter::cluster::leases::RescuedItem;
use crate::adapter::cluster::scheduled::Claim;
use crate::adapter::control::protocol::RunAnswer;
use crate::adapter::spawner::Spawner;
use crate::daemon::shutdown::Phase;
use crate::leaf::now::Now;
use crate::leaf::timestamp;
use crate::leaf::words::plural;
use crate::machine::cluster::{Asker, CLAIM_WINDOW, How, Ticket, describe};
use crate::machine::supervisor::Launch;
use crate::model::config::{CatchUp, Job, Placement};
use crate::model::record::{Outcome, RunRecord};
use crate::policy::hooks::Failure;
use crate::policy::metrics::Skip;
use crate::policy::overlap::Decision;
use crate::policy::scheduler;

impl<S: Spawner> Daemon<S> {
    /// An instant of a shared job has come: claim it, unless the cluster is
    /// unavailable, in which case it does not run anywhere from this host (counted, and
    /// logged once the cluster is back).
    pub(in crate::daemon) fn fire_shared(
        &mut self,
        job: &Job,
        instant: DateTime<Utc>,
        asker: Option<Asker>,
        now: Now,
    ) {
        let Some(side) = &mut self.cluster else {
            return;
        };
        if !side.machine.claiming() {
            *side.missed.entry(job.name.clone()).or_default() += 1;
            self.metrics.skipped(&job.name, Skip::Unclaimed, 1);
            debug!(
                "{}: the instant at {} is not claimed: the cluster is unavailable",
                job.name,
                timestamp::short(instant)
            );
            self.answer(
                asker,
                Err(
                    "the cluster is unavailable (see jobctl status): nothing is claimed"
                        .to_string(),
                ),
                now,
            );
            return;
        }
        side.machine
            .claim(job, instant, CLAIM_WINDOW, asker, now.mono);
    }

    /// `jobctl run JOB` for a shared job: an instant claimed now, answered once the
    /// database has decided.
    pub(in crate::daemon) fn run_shared(&mut self, client: u64, job: &Job, wait: bool, now: Now) {
        info!("{}: run requested through the control socket", job.name);
        self.fire_shared(job, now.wall, Some(Asker { client, wait }), now);
    }

    /// A run this host holds and has not started: start it if it still makes sense,
    /// else give it back.
    pub(super) fn take_ticket(&mut self, ticket: Ticket, now: Now) {
        match self.refusal(&ticket, now) {
            Some(why) => self.give_back(ticket, why, now),
            None => {
                if let Some(side) = &mut self.cluster {
                    side.machine.start(ticket, now.mono);
                }
            }
        }
    }

    /// The database recorded the start: fork.
    pub(super) fn start_ticket(&mut self, ticket: Ticket, now: Now) {
        if let Some(why) = self.refusal(&ticket, now) {
            return self.give_back(ticket, why, now);
        }
        let config = self.config.clone();
        let Some(job) = config.job(&ticket.job) else {
            return;
        };
        if ticket.how != How::Claimed {
            info!(
                "{}: starting the instant at {} here ({})",
                job.name,
                timestamp::short(ticket.at),
                match ticket.how {
                    How::Queued => "it waited for a running instance to end",
                    How::Takeover => "the host that claimed it stopped before starting it",
                    How::Rerun => "its host stopped while it ran (on_host_loss: rerun)",
                    How::Promoted | How::Claimed => "it waited for the slot of a lost run",
                }
            );
        }
        let id = self.supervisor.next_id();
        if let Some(side) = &mut self.cluster {
            side.machine.started(ticket.run_id, &id);
        }
        let started = self.launch(id, Launch::of_job(job, ticket.at, ticket.attempt), now);
        let answer = started
            .map(|run_id| RunAnswer {
                decision: Decision::Start.word().to_string(),
                run_id: Some(run_id),
                ended: None,
            })
            .map_err(|why| format!("job `{}` {why}", job.name));
        self.answer(ticket.asker, answer, now);
    }

    /// Why a held run must not start here now, in the database's words (its
    /// `outcome`), or None.
    fn refusal(&self, ticket: &Ticket, now: Now) -> Option<&'static str> {
        if self.phase != Phase::Running {
            return Some("shutting_down");
        }
        let Some(job) = self.config.job(&ticket.job).filter(|job| job.enabled) else {
            return Some("removed");
        };
        // A claim nobody started is only worth starting while it is still the job's
        // latest instant: the instants after it run anyway.
        let overtaken = job
            .schedule
            .next_after(ticket.at)
            .is_some_and(|next| next <= now.wall);
        (ticket.how == How::Takeover && overtaken).then_some("too_late")
    }

    fn give_back(&mut self, ticket: Ticket, why: &'static str, now: Now) {
        let reason = match why {
            "shutting_down" => "jobd is shutting down",
            "removed" => "the job is no longer in the jobfile, or not enabled here",
            _ => "a later instant of the job has come since",
        };
        info!(
            "{}: not starting the instant at {}: {reason}",
            ticket.job,
            timestamp::short(ticket.at)
        );
        if let Some(side) = &mut self.cluster {
            side.machine.give_back(ticket.run_id, why, now.mono);
        }
        self.answer(ticket.asker, Err(format!("not started: {reason}")), now);
    }

    /// The claim decided that nothing starts here.
    pub(super) fn decided(
        &mut self,
        job: &str,
        at: DateTime<Utc>,
        claim: &Claim,
        asker: Option<Asker>,
        now: Now,
    ) {
        let decision = match claim {
            Claim::Skipped { .. } => {
                info!(
                    "{job}: not starting the instant at {}: max_instances are running in the \
                     cluster (on_overlap: skip)",
                    timestamp::short(at)
                );
                self.metrics.skipped(job, Skip::Overlap, 1);
                Ok(Decision::Skip)
            }
            Claim::Queued { .. } | Claim::Replace { .. } => {
                info!(
                    "{job}: the instant at {} {}",
                    timestamp::short(at),
                    describe(claim)
                );
                Ok(match claim {
                    Claim::Queued { .. } => Decision::Queue,
                    _ => Decision::Replace,
                })
            }
            Claim::Taken => {
                debug!(
                    "{job}: the instant at {} {}",
                    timestamp::short(at),
                    describe(claim)
                );
                Err(format!("job `{job}`: {}", describe(claim)))
            }
            // A won claim comes as `Report::Claimed`.
            Claim::Start { .. } => return,
            Claim::TooLate => {
                warn!(
                    "{job}: the instant at {} is more than {}s old by the database's clock: \
                     not run (is this host's clock behind the database's?)",
                    timestamp::short(at),
                    CLAIM_WINDOW.as_secs()
                );
                self.metrics.skipped(job, Skip::Missed, 1);
                Err(format!("job `{job}`: too late to claim the instant"))
            }
            Claim::TooEarly => {
                warn!(
                    "{job}: the instant at {} is more than 1s ahead of the database's clock: \
                     not run here (this host's clock is ahead; a host whose clock is right \
                     runs it)",
                    timestamp::short(at)
                );
                self.metrics.skipped(job, Skip::Unclaimed, 1);
                Err(format!("job `{job}`: {}", describe(claim)))
            }
        };
        let answer = decision.map(|decision| RunAnswer {
            decision: decision.word().to_string(),
            run_id: None,
            ended: None,
        });
        self.answer(asker, answer, now);
    }

    pub(super) fn not_claimed(
        &mut self,
        job: &str,
        at: DateTime<Utc>,
        why: &str,
        asker: Option<Asker>,
        now: Now,
    ) {
        warn!(
            "{job}: the instant at {} is not run from this host: {why}",
            timestamp::short(at)
        );
        self.metrics.skipped(job, Skip::Unclaimed, 1);
        self.answer(asker, Err(format!("job `{job}`: {why}")), now);
    }

    pub(super) fn not_started(&mut self, ticket: &Ticket, why: &str, now: Now) {
        warn!(
            "{}: not starting the instant at {}: {why}",
            ticket.job,
            timestamp::short(ticket.at)
        );
        self.answer(ticket.asker, Err(format!("not started: {why}")), now);
    }

    /// A run whose host died was recorded lost by this host's rescue: it goes into the
    /// history here, and the job's on_failure runs here.
    pub(super) fn lost(&mut self, item: RescuedItem, now: Now) {
        let host = item.previous_host.clone().unwrap_or_default();
        let record = RunRecord {
            job: item.name.clone(),
            run_id: format!("cluster-{}", item.id),
            attempt: u32::try_from(item.attempt).unwrap_or(1),
            scheduled_at: item.at,
            started_at: item.at,
            ended_at: now.wall,
            outcome: Outcome::Lost,
            output: vec![format!(
                "its host {host} stopped renewing its lease while it ran"
            )],
        };
        let mut info = record.info();
        info.host = Some(host);
        self.history.push(info);
        self.metrics.ended(&record);
        self.failed(Failure::of_run(&record), true, now);
    }

    /// A shared job looked overdue here: overdue it is unless another host ran it with
    /// success; then one host (the first alive by id) alerts.
    pub(super) fn overdue_in_cluster(
        &mut self,
        job: &str,
        since: DateTime<Utc>,
        succeeded: Option<DateTime<Utc>>,
        now: Now,
    ) {
        if let Some(at) = succeeded {
            self.watch.succeeded(job, at);
            return;
        }
        let alerts = self
            .cluster
            .as_ref()
            .is_none_or(|side| side.machine.alerts());
        if alerts {
            self.overdue(job, since, now);
        } else {
            info!("{job}: overdue in the cluster; the first live host by id sends the alert");
        }
    }

    /// The cluster is available again (or for the first time): say what was missed,
    /// and catch up the jobs that ask for it from the cluster's last run.
    pub(super) fn cluster_available(&mut self, now: Now) {
        let Some(side) = &mut self.cluster else {
            return;
        };
        info!(
            "cluster: available: claiming instants as host {}",
            side.machine.host_id()
        );
        let joining = !std::mem::replace(&mut side.joined, true);
        for (job, count) in std::mem::take(&mut side.missed) {
            if joining {
                info!(
                    "{job}: {count} instant{} passed while jobd joined the cluster",
                    plural(count)
                );
            } else {
                warn!(
                    "{job}: {count} instant{} not run while the cluster was unavailable",
                    plural(count)
                );
            }
        }
        let config = self.config.clone();
        for job in config.jobs.iter().filter(|j| {
            j.enabled && j.catch_up == CatchUp::Once && j.placement == Placement::Shared
        }) {
            side.machine.last_run(&job.name, now.mono);
        }
    }

    /// `catch_up: once` from the cluster's last claimed instant of `job`: the newest
    /// instant missed since is claimed, reaching back to it.
    pub(super) fn catch_up_shared(&mut self, job: &str, last: Option<DateTime<Utc>>, now: Now) {
        let config = self.config.clone();
        let Some(job) = config.job(job) else { return };
        let Some(due) = scheduler::catch_up(job, last, now.wall) else {
            return;
        };
        let Some(side) = &mut self.cluster else {
            return;
        };
        if !side.machine.claiming() {
            return;
        }
        info!(
            "{}: catching up on {} instant{} missed by the cluster (catch_up: once)",
            job.name,
            due.missed + 1,
            plural(due.missed + 1)
        );
        let age = (now.wall - due.instant).to_std().unwrap_or_default();
        let window = age + CLAIM_WINDOW + Duration::from_secs(1);
        side.machine.claim(job, due.instant, window, None, now.mono);
    }
}
