//! What cluster mode adds to the loop: the cluster machine's reports carried to the
//! supervisor, the spool, the history and jobctl. `scheduled` (claimed instants,
//! starts, lost runs, catch-up), `oneoffs` (the table's one-off jobs run here),
//! `ingest` (spool files forwarded to the table), `history` (`jobctl history` across
//! the hosts).

mod history;
mod ingest;
mod oneoffs;
mod scheduled;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use log::warn;

use super::Daemon;
use crate::adapter::control::protocol::{Body, ClusterHost, ClusterStatus, RunAnswer};
use crate::adapter::spawner::Spawner;
use crate::leaf::now::Now;
use crate::leaf::timestamp;
pub(super) use crate::machine::cluster::Part;
use crate::machine::cluster::{Asker, Cluster, Halt, Readiness, Report, StartError};
use crate::machine::supervisor::Which;
use crate::model::config::{Config, Job, Placement};
use crate::model::record::Stop;

/// Cluster mode's state in the daemon.
pub(super) struct Side {
    pub machine: Cluster,
    /// The table's one-offs running here, by id.
    oneoffs: HashMap<i64, oneoffs::Running>,
    /// Instants not claimed while the cluster was unavailable, by job.
    missed: BTreeMap<String, u64>,
    /// The cluster has been available once since jobd started.
    joined: bool,
    /// Where the children of one-offs find their request and write their value.
    files: PathBuf,
    /// Spool files being forwarded that this jobd claimed itself (not taken up from an
    /// earlier jobd's `running/`): for these, a row already holding their origin is an
    /// earlier file of the same name, not their own.
    fresh: HashSet<String>,
}

impl Side {
    /// Cluster mode, if the jobfile asks for it.
    pub fn start(config: &Config, now: Now) -> Result<Option<Side>, StartError> {
        let Some(settings) = &config.cluster else {
            return Ok(None);
        };
        let mut machine = Cluster::new(settings, now.mono)?;
        machine.configure(config);
        let files = config.spool.dir.join(oneoffs::FOLDER);
        oneoffs::prepare(&files);
        log::info!(
            "cluster mode: host {}, lease {}s, jobfile hash {}",
            settings.host_id,
            settings.lease.as_secs(),
            settings.jobfile_hash
        );
        Ok(Some(Side {
            machine,
            oneoffs: HashMap::new(),
            missed: BTreeMap::new(),
            joined: false,
            files,
            fresh: HashSet::new(),
        }))
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.machine.next_deadline()
    }
}

impl<S: Spawner> Daemon<S> {
    /// One turn of cluster mode: the sessions move on, and what they report is acted
    /// on.
    pub(super) fn cluster_turn(&mut self, ready: Readiness, now: Now) {
        let Some(side) = &mut self.cluster else {
            return;
        };
        for report in side.machine.advance(now.mono, ready) {
            self.on_report(report, now);
        }
        self.claim_oneoffs(now);
    }

    /// Whether `job`'s instants are claimed in the cluster rather than run here.
    pub(super) fn shared(&self, job: &Job) -> bool {
        self.cluster.is_some() && job.placement == Placement::Shared
    }

    fn on_report(&mut self, report: Report, now: Now) {
        match report {
            Report::Available => self.cluster_available(now),
            Report::Unavailable => warn!(
                "cluster: cluster-wide instants do not run and one-off jobs wait until the \
                 database answers and this host's lease is renewed; `cluster: local` jobs \
                 go on"
            ),
            Report::Claimed(ticket) | Report::Handed(ticket) => self.take_ticket(ticket, now),
            Report::Decided {
                job,
                at,
                claim,
                asker,
            } => self.decided(&job, at, &claim, asker, now),
            Report::NotClaimed {
                job,
                at,
                why,
                asker,
            } => self.not_claimed(&job, at, &why, asker, now),
            Report::LastRun { job, last } => self.catch_up_shared(&job, last, now),
            Report::Startable(ticket) => self.start_ticket(ticket, now),
            Report::NotStarted { ticket, why } => self.not_started(&ticket, &why, now),
            Report::Lost(item) => self.lost(item, now),
            Report::Stop { run, why } => {
                let why = match why {
                    Halt::Fenced => Stop::Fenced,
                    Halt::Replaced => Stop::Replaced,
                };
                self.supervisor.stop(Which::Run(&run), why, now);
            }
            Report::Oneoffs(oneoffs) => {
                for oneoff in oneoffs {
                    self.run_oneoff(oneoff, now);
                }
            }
            Report::Forwarded { file, outcome } => self.forwarded(&file, outcome),
            Report::Overdue {
                job,
                since,
                succeeded,
            } => self.overdue_in_cluster(&job, since, succeeded, now),
            Report::History {
                client,
                job,
                limit,
                runs,
            } => self.answer_history(client, job.as_deref(), limit, runs, now),
        }
    }

    /// What keeps cluster mode from working fully, for `jobctl status`.
    pub(super) fn cluster_problems(&self) -> Vec<String> {
        self.cluster
            .as_ref()
            .map(|side| side.machine.problems())
            .unwrap_or_default()
    }

    /// This host and the others, for `jobctl status`.
    pub(super) fn cluster_status(&self) -> Option<ClusterStatus> {
        let machine = &self.cluster.as_ref()?.machine;
        Some(ClusterStatus {
            host_id: machine.host_id().to_string(),
            jobfile_hash: machine.jobfile_hash().to_string(),
            lease_seconds: machine.lease().as_secs(),
            available: machine.claiming(),
            hosts: machine
                .hosts()
                .iter()
                .map(|host| ClusterHost {
                    host_id: host.host_id.clone(),
                    jobfile_hash: host.jobfile_hash.clone(),
                    other_jobfile: host.jobfile_hash != machine.jobfile_hash(),
                    lease_seconds: (host.lease_until - host.last_seen).num_seconds().max(0) as u64,
                    alive: host.alive,
                    started_at: timestamp::precise(host.started_at),
                    seen_ago_ms: host.seen_ago.as_millis() as u64,
                })
                .collect(),
        })
    }

    /// Tell a `jobctl run` what became of its instant.
    fn answer(&mut self, asker: Option<Asker>, answer: Result<RunAnswer, String>, now: Now) {
        let Some(asker) = asker else { return };
        let body = match answer {
            Ok(RunAnswer {
                run_id: Some(run_id),
                ..
            }) if asker.wait => {
                self.waiters.push((asker.client, run_id));
                return;
            }
            Ok(answer) => Body::Run(answer),
            Err(message) => Body::Error { message },
        };
        self.server.respond(asker.client, body, now.mono);
    }
}
