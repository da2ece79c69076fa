//! The operations waiting for the work session, each with what it needs to be sent
//! and what its answer means; and what becomes of them when the connection breaks.

use std::time::Instant;

use log::{info, warn};

use super::{Cluster, Halt, How, Report, Ticket};
use crate::adapter::cluster::Operation;
use crate::adapter::cluster::history::{LastSuccess, RecentRuns};
use crate::adapter::cluster::leases::{Heartbeat, Rescue, Rescued};
use crate::adapter::cluster::oneoff::{
    ClaimOneoffs, FinishOneoff, NextOneoff, OneoffFinished, Submit,
};
use crate::adapter::cluster::scheduled::{
    Claim, ClaimInstant, FinishRun, Handed, LastRun, StartRun,
};
use crate::adapter::cluster::status::{HostList, Prune};
use crate::adapter::postgres::{Query, QueryError, Rows};
use crate::leaf::timestamp;

use super::{Asker, KEEP_HISTORY, PRUNE_BATCH, PRUNE_SOON, RESCUE_BATCH};

/// The shortest wait before looking again for a delayed one-off.
const RECHECK_AT_LEAST: std::time::Duration = std::time::Duration::from_millis(50);

pub(super) enum Op {
    /// Renew this host's leases; `leaving` ends them instead (shutdown).
    Heartbeat {
        leaving: bool,
    },
    Rescue,
    Prune,
    HostList,
    Claim {
        claim: ClaimInstant,
        asker: Option<Asker>,
    },
    LastRun(String),
    Start(Ticket),
    Finish {
        finish: FinishRun,
        /// Sent again after the connection broke with it in flight: it may have been
        /// recorded the first time.
        retried: bool,
    },
    ClaimOneoffs(ClaimOneoffs),
    NextOneoff(NextOneoff),
    FinishOneoff {
        finish: FinishOneoff,
        retried: bool,
    },
    Submit {
        submit: Submit,
        file: String,
    },
    History {
        client: u64,
        job: Option<String>,
        limit: usize,
    },
    LastSuccess(LastSuccess),
}

impl Cluster {
    /// The query of `op`, built now (a heartbeat lists what this host holds now).
    pub(super) fn query_of(&self, op: &Op) -> Query {
        match op {
            Op::Heartbeat { leaving } => Heartbeat {
                host_id: self.settings.host_id.clone(),
                jobfile_hash: self.settings.jobfile_hash.clone(),
                lease: if *leaving {
                    std::time::Duration::ZERO
                } else {
                    self.settings.lease
                },
                runs: self.runs.keys().copied().collect(),
                oneoffs: self.oneoffs.keys().copied().collect(),
                starting: self.starting,
            }
            .query(),
            Op::Rescue => Rescue {
                host_id: self.settings.host_id.clone(),
                lease: self.settings.lease,
                rerun_jobs: self.rerun_jobs.clone(),
                limit: RESCUE_BATCH,
            }
            .query(),
            Op::Prune => Prune {
                keep: KEEP_HISTORY,
                limit: PRUNE_BATCH,
            }
            .query(),
            Op::HostList => HostList.query(),
            Op::Claim { claim, .. } => claim.query(),
            Op::LastRun(job) => LastRun { job: job.clone() }.query(),
            Op::Start(ticket) => StartRun {
                run_id: ticket.run_id,
                host_id: self.settings.host_id.clone(),
                lease: self.settings.lease,
            }
            .query(),
            Op::Finish { finish, .. } => finish.query(),
            Op::ClaimOneoffs(claim) => claim.query(),
            Op::NextOneoff(next) => next.query(),
            Op::FinishOneoff { finish, .. } => finish.query(),
            Op::Submit { submit, .. } => submit.query(),
            Op::History { job, limit, .. } => RecentRuns {
                job: job.clone(),
                limit: u32::try_from(*limit).unwrap_or(u32::MAX),
            }
            .query(),
            Op::LastSuccess(last) => last.query(),
        }
    }

    /// `op` was answered.
    pub(super) fn done(
        &mut self,
        op: Op,
        result: Result<Rows, QueryError>,
        now: Instant,
        reports: &mut Vec<Report>,
    ) {
        let rows = match result {
            Ok(rows) => rows,
            Err(error) => return self.refused(op, error.to_string(), now, reports),
        };
        macro_rules! decode {
            ($operation:ty) => {
                match <$operation>::decode(&rows) {
                    Ok(output) => output,
                    Err(error) => return self.refused(op, error.to_string(), now, reports),
                }
            };
        }
        match &op {
            Op::Heartbeat { leaving } => {
                let reply = decode!(Heartbeat);
                self.heartbeat_pending = false;
                if *leaving {
                    return;
                }
                self.starting = false;
                self.renewed_at = Some(self.heartbeat_sent_at.unwrap_or(now));
                if self.fenced {
                    info!("cluster: a heartbeat succeeded again: claiming again");
                    self.fenced = false;
                }
                for run_id in reply.lost_runs {
                    if let Some(local) = self.runs.remove(&run_id) {
                        warn!(
                            "cluster: run {run_id} is no longer this host's (its lease ran \
                             out); another host may take it over"
                        );
                        if let Some(run) = local {
                            self.by_local.remove(&run);
                            reports.push(Report::Stop {
                                run,
                                why: Halt::Fenced,
                            });
                        }
                    }
                }
                for id in reply.lost_oneoffs {
                    if let Some(run) = self.oneoffs.remove(&id) {
                        warn!(
                            "cluster: one-off {id} is no longer this host's (its lease ran \
                             out); it may run again elsewhere"
                        );
                        reports.push(Report::Stop {
                            run,
                            why: Halt::Fenced,
                        });
                    }
                }
                for run_id in reply.stop {
                    if let Some(Some(run)) = self.runs.get(&run_id) {
                        reports.push(Report::Stop {
                            run: run.clone(),
                            why: Halt::Replaced,
                        });
                    }
                }
                self.queue.push_back(Op::HostList);
            }
            Op::HostList => self.hosts = decode!(HostList),
            Op::Rescue => {
                for item in decode!(Rescue) {
                    let from = item.previous_host.as_deref().unwrap_or("a host");
                    let how = match item.kind {
                        Rescued::Requeued => {
                            info!(
                                "cluster: one-off {} ({}) of {from}, whose lease ran out, is \
                                 queued again",
                                item.id, item.name
                            );
                            continue;
                        }
                        Rescued::Abandoned => {
                            warn!(
                                "cluster: one-off {} ({}) of {from}, whose lease ran out at \
                                 attempt {}, failed: a one-off whose host is lost runs again \
                                 up to its third attempt (or its max_attempts)",
                                item.id, item.name, item.attempt
                            );
                            continue;
                        }
                        Rescued::Lost => {
                            warn!(
                                "{}: the run at {} on {from} is lost: its host stopped \
                                 renewing its lease",
                                item.name,
                                timestamp::short(item.at)
                            );
                            reports.push(Report::Lost(item));
                            continue;
                        }
                        Rescued::Rerun => How::Rerun,
                        Rescued::Takeover => How::Takeover,
                        Rescued::Promoted => How::Promoted,
                    };
                    self.runs.insert(item.id, None);
                    reports.push(Report::Handed(Ticket {
                        run_id: item.id,
                        job: item.name,
                        at: item.at,
                        attempt: u32::try_from(item.attempt).unwrap_or(1),
                        how,
                        asker: None,
                    }));
                }
            }
            Op::Prune => {
                let pruned = decode!(Prune);
                if pruned.runs + pruned.oneoffs + pruned.hosts > 0 {
                    info!(
                        "cluster: pruned history older than {} days: {} runs, {} one-offs, \
                         {} hosts",
                        KEEP_HISTORY.as_secs() / 86_400,
                        pruned.runs,
                        pruned.oneoffs,
                        pruned.hosts
                    );
                }
                let batch = i64::from(PRUNE_BATCH);
                if pruned.runs >= batch || pruned.oneoffs >= batch {
                    self.next_prune = now + PRUNE_SOON;
                }
            }
            Op::Claim { claim, asker } => {
                let decided = decode!(ClaimInstant);
                let (job, at, asker) = (claim.job.clone(), claim.scheduled_at, *asker);
                match decided {
                    Claim::Start { run_id, .. } => {
                        self.runs.insert(run_id, None);
                        reports.push(Report::Claimed(Ticket {
                            run_id,
                            job,
                            at,
                            attempt: 1,
                            how: How::Claimed,
                            asker,
                        }));
                    }
                    claim => {
                        if let Claim::Replace {
                            stop_run,
                            stop_host,
                            ..
                        } = &claim
                            && *stop_host == self.settings.host_id
                            && let Some(Some(run)) = self.runs.get(stop_run)
                        {
                            reports.push(Report::Stop {
                                run: run.clone(),
                                why: Halt::Replaced,
                            });
                        }
                        reports.push(Report::Decided {
                            job,
                            at,
                            claim,
                            asker,
                        });
                    }
                }
            }
            Op::LastRun(job) => {
                let last = decode!(LastRun);
                reports.push(Report::LastRun {
                    job: job.clone(),
                    last: last.map(|l| l.scheduled_at),
                });
            }
            Op::Start(ticket) => {
                if decode!(StartRun) {
                    reports.push(Report::Startable(ticket.clone()));
                } else {
                    self.runs.remove(&ticket.run_id);
                    reports.push(Report::NotStarted {
                        ticket: ticket.clone(),
                        why: "it is no longer this host's: its claim's lease ran out first"
                            .to_string(),
                    });
                }
            }
            Op::Finish { finish, retried } => {
                let finished = decode!(FinishRun);
                if !finished.recorded && !retried && !is_give_back(&finish.outcome) {
                    warn!(
                        "cluster: the end of run {} was not recorded: the run had been \
                         declared lost (its lease ran out)",
                        finish.run_id
                    );
                }
                if let Some(next) = finished.next {
                    self.hand(next, reports);
                }
            }
            Op::ClaimOneoffs(claim) => {
                self.oneoff_claim_pending = false;
                let oneoffs = decode!(ClaimOneoffs);
                if oneoffs.len() as u32 >= claim.limit {
                    // More may be waiting: claim again when workers are free.
                    self.want_oneoffs = true;
                } else {
                    self.queue.push_back(Op::NextOneoff(NextOneoff {
                        tasks: claim.tasks.clone(),
                    }));
                }
                if !oneoffs.is_empty() {
                    reports.push(Report::Oneoffs(oneoffs));
                }
            }
            Op::NextOneoff(_) => {
                // A row due now that the last claim skipped is being claimed by another
                // host: look again in a moment, not at once.
                self.oneoff_due =
                    decode!(NextOneoff).map(|due_in| now + due_in.max(RECHECK_AT_LEAST));
            }
            Op::FinishOneoff { finish, retried } => match decode!(FinishOneoff) {
                OneoffFinished::Stale if !retried => warn!(
                    "cluster: the end of one-off {} was not recorded: it is no longer this \
                     host's (its lease ran out) and may run again elsewhere",
                    finish.id
                ),
                OneoffFinished::Retrying { .. } => {
                    self.queue.push_back(Op::NextOneoff(NextOneoff {
                        tasks: self.tasks.clone(),
                    }));
                }
                _ => {}
            },
            Op::Submit { file, .. } => {
                let submitted = decode!(Submit);
                reports.push(Report::Forwarded {
                    file: file.clone(),
                    outcome: Ok(submitted),
                });
            }
            Op::LastSuccess(last) => {
                let at = decode!(LastSuccess);
                reports.push(Report::Overdue {
                    job: last.job.clone(),
                    since: last.after,
                    succeeded: at,
                });
            }
            Op::History { client, job, limit } => {
                let runs = decode!(RecentRuns);
                reports.push(Report::History {
                    client: *client,
                    job: job.clone(),
                    limit: *limit,
                    runs: Ok(runs),
                });
            }
        }
    }

    fn hand(&mut self, next: Handed, reports: &mut Vec<Report>) {
        self.runs.insert(next.run_id, None);
        reports.push(Report::Handed(Ticket {
            run_id: next.run_id,
            job: next.job,
            at: next.scheduled_at,
            attempt: u32::try_from(next.attempt).unwrap_or(1),
            how: How::Queued,
            asker: None,
        }));
    }

    /// The server refused `op` (or answered in a shape jobd does not know).
    fn refused(&mut self, op: Op, error: String, now: Instant, reports: &mut Vec<Report>) {
        match op {
            Op::Heartbeat { .. } => {
                self.heartbeat_pending = false;
                warn!("cluster: the heartbeat failed: {error}");
            }
            Op::Claim { claim, asker } => reports.push(Report::NotClaimed {
                job: claim.job,
                at: claim.scheduled_at,
                why: format!("the claim failed: {error}"),
                asker,
            }),
            Op::Start(ticket) => {
                // Still claimed: give it back rather than leave it to a takeover.
                self.runs.remove(&ticket.run_id);
                let run_id = ticket.run_id;
                reports.push(Report::NotStarted {
                    ticket,
                    why: format!("recording its start failed: {error}"),
                });
                self.give_back(run_id, "not_started", now);
            }
            Op::ClaimOneoffs(_) => {
                self.oneoff_claim_pending = false;
                warn!("cluster: claiming one-off jobs failed: {error}");
            }
            Op::Submit { file, .. } => reports.push(Report::Forwarded {
                file,
                outcome: Err(format!("the cluster refused it: {error}")),
            }),
            Op::History {
                client, job, limit, ..
            } => reports.push(Report::History {
                client,
                job,
                limit,
                runs: Err(error),
            }),
            Op::LastSuccess(last) => {
                warn!(
                    "cluster: looking up the last success of {} failed: {error}",
                    last.job
                );
                reports.push(Report::Overdue {
                    job: last.job,
                    since: last.after,
                    succeeded: None,
                });
            }
            other => warn!("cluster: {} failed: {error}", other.what()),
        }
    }

    /// The work connection broke; `op` was being sent or waited for (`in_flight`: the
    /// server may have committed it). Operations that record an end are kept for the
    /// next connection; claims and lookups are not.
    pub(super) fn broken(
        &mut self,
        error: &str,
        op: Option<Op>,
        in_flight: bool,
        reports: &mut Vec<Report>,
    ) {
        // Once per outage, and once at start-up when the database does not answer.
        if self.work_was_up || !self.down_logged {
            warn!("cluster: {error}; connecting again");
            self.down_logged = true;
        }
        self.work_was_up = false;
        self.heartbeat_pending = false;
        self.oneoff_claim_pending = false;
        let mut keep = VecDequeOps::default();
        if let Some(op) = op {
            match op {
                Op::Finish { finish, .. } => keep.front.push(Op::Finish {
                    finish,
                    retried: in_flight,
                }),
                Op::FinishOneoff { finish, .. } => keep.front.push(Op::FinishOneoff {
                    finish,
                    retried: in_flight,
                }),
                Op::Submit { .. } => keep.front.push(op),
                Op::Start(ticket) => {
                    // It may have been recorded as started: give it back once the
                    // database answers again rather than start it late.
                    self.runs.remove(&ticket.run_id);
                    let run_id = ticket.run_id;
                    reports.push(Report::NotStarted {
                        ticket,
                        why: "the connection to the database broke while its start was \
                              being recorded"
                            .to_string(),
                    });
                    keep.front.push(Op::Finish {
                        finish: self.finish_of(run_id, "not_started"),
                        retried: true,
                    });
                }
                Op::ClaimOneoffs(_) if in_flight => warn!(
                    "cluster: the connection broke while claiming one-off jobs; any it \
                     claimed run elsewhere once their lease runs out"
                ),
                other => self.dropped(other, in_flight, reports),
            }
        }
        for op in std::mem::take(&mut self.queue) {
            match op {
                Op::Finish { .. } | Op::FinishOneoff { .. } | Op::Submit { .. } | Op::Start(_) => {
                    keep.back.push(op)
                }
                other => self.dropped(other, false, reports),
            }
        }
        self.queue = keep.front.into_iter().chain(keep.back).collect();
    }

    /// An operation the broken connection took with it.
    fn dropped(&mut self, op: Op, in_flight: bool, reports: &mut Vec<Report>) {
        match op {
            Op::Claim { claim, asker } => reports.push(Report::NotClaimed {
                job: claim.job,
                at: claim.scheduled_at,
                why: if in_flight {
                    "the connection to the database broke during the claim; if it was \
                     recorded, a rescue hands the run to a host later"
                        .to_string()
                } else {
                    "the database is unreachable".to_string()
                },
                asker,
            }),
            Op::History { client, job, limit } => reports.push(Report::History {
                client,
                job,
                limit,
                runs: Err("the database is unreachable".to_string()),
            }),
            // Unknown: the job may be overdue everywhere, and this host says so.
            Op::LastSuccess(last) => reports.push(Report::Overdue {
                job: last.job,
                since: last.after,
                succeeded: None,
            }),
            _ => {}
        }
    }

    fn finish_of(&self, run_id: i64, outcome: &str) -> FinishRun {
        FinishRun {
            run_id,
            host_id: self.settings.host_id.clone(),
            outcome: outcome.to_string(),
            exit_code: None,
            lease: self.settings.lease,
        }
    }
}

#[derive(Default)]
struct VecDequeOps {
    front: Vec<Op>,
    back: Vec<Op>,
}

impl Op {
    /// What it is, for a log line.
    fn what(&self) -> &'static str {
        match self {
            Op::Heartbeat { .. } => "the heartbeat",
            Op::Rescue => "the rescue of expired leases",
            Op::Prune => "pruning old history",
            Op::HostList => "listing the hosts",
            Op::Claim { .. } => "a claim",
            Op::LastRun(_) => "looking up a job's last run",
            Op::Start(_) => "recording a start",
            Op::Finish { .. } => "recording the end of a run",
            Op::ClaimOneoffs(_) => "claiming one-off jobs",
            Op::NextOneoff(_) => "looking up the next delayed one-off",
            Op::FinishOneoff { .. } => "recording the end of a one-off",
            Op::Submit { .. } => "submitting a spool file",
            Op::History { .. } => "reading the history",
            Op::LastSuccess(_) => "looking up a job's last success",
        }
    }
}

/// Outcomes of runs given back unstarted: their end being unrecorded says nothing.
fn is_give_back(outcome: &str) -> bool {
    matches!(
        outcome,
        "not_started" | "too_late" | "shutting_down" | "removed"
    )
}
