//! Cluster mode's side of the loop: two PostgreSQL sessions (one for work, one that
//! LISTENs), the operations waiting for the work session, the leases this host holds
//! and the timers that keep them (heartbeat, rescue, pruning, the one-off poll). It
//! never blocks: the daemon puts `fds` in its poll, calls `advance` every turn, and
//! acts on the `Report`s that come back. What to run is the daemon's to decide; which
//! runs and one-offs this host holds in the database is kept here.
//!
//! The database decides ownership: a claim, a start and a heartbeat each say on the
//! database's clock whether this host still holds what it runs. A host whose heartbeat
//! has not succeeded for a whole lease claims nothing more until one does.

mod listener;
mod migration;
mod ops;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::{BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use log::{error, info, warn};
use nix::poll::PollFlags;

use crate::adapter::cluster::STOP_CHANNEL;
use crate::adapter::cluster::history::{LastSuccess, PastRun};
use crate::adapter::cluster::leases::RescuedItem;
use crate::adapter::cluster::oneoff::{ClaimOneoffs, FinishOneoff, Oneoff, Submit, Submitted};
use crate::adapter::cluster::scheduled::{Claim, ClaimInstant, FinishRun, Overlap};
use crate::adapter::cluster::status::Host;
use crate::adapter::postgres::{Event, Libpq, LoadError, Ready, SendError, Session, Settings};
use crate::model::config::{self, OnOverlap};
use listener::Listener;
use migration::{Attempt, Migration};
use ops::Op;

/// How often the one-off table is looked at even without a notification.
const POLL_EVERY: Duration = Duration::from_secs(3);
/// How long history is kept in the database (far beyond any claim window).
const KEEP_HISTORY: Duration = Duration::from_secs(7 * 86_400);
const PRUNE_EVERY: Duration = Duration::from_secs(86_400);
/// The first pruning after start-up, and the next one when a batch was full.
const PRUNE_SOON: Duration = Duration::from_secs(60);
const PRUNE_BATCH: u32 = 10_000;
/// Items a rescue handles per kind and call.
const RESCUE_BATCH: u32 = 100;
/// How old an instant may be, on the database's clock, and still be claimed.
pub const CLAIM_WINDOW: Duration = Duration::from_secs(5);
/// How long leaving the cluster at shutdown may wait for the last records to be sent.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which session a descriptor is, for the loop's poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Work,
    Listen,
    Migration,
}

/// What poll saw for each part.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readiness {
    pub work: Ready,
    pub listen: Ready,
    pub migration: bool,
}

impl Readiness {
    /// Note what poll reported for `part`.
    pub fn set(&mut self, part: Part, revents: PollFlags) {
        match part {
            Part::Work => self.work = Ready::from_revents(revents),
            Part::Listen => self.listen = Ready::from_revents(revents),
            Part::Migration => self.migration = true,
        }
    }
}

/// Who asked for an instant through the control socket (`jobctl run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asker {
    pub client: u64,
    pub wait: bool,
}

/// How a run came to be this host's to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// This host claimed the instant.
    Claimed,
    /// A queued instant handed over when a run of its job ended (on_overlap queue).
    Queued,
    /// Claimed by a host that died before starting it.
    Takeover,
    /// Run again after its host died (`on_host_loss: rerun`).
    Rerun,
    /// A queued instant given the slot of a lost run.
    Promoted,
}

/// A run this host holds in the database and has not started: `start` it, or
/// `give_back` it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub run_id: i64,
    pub job: String,
    pub at: DateTime<Utc>,
    pub attempt: u32,
    pub how: How,
    pub asker: Option<Asker>,
}

/// Why the cluster wants a run of this host stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// Its lease is no longer this host's: another host may run it now.
    Fenced,
    /// on_overlap replace: a newer instant waits for its slot.
    Replaced,
}

/// What the daemon hears from the cluster.
#[derive(Debug)]
pub enum Report {
    /// Cluster-wide work can go on again (or for the first time).
    Available,
    /// Cluster-wide work stops: nothing is claimed until `Available`.
    Unavailable,
    /// This host claimed the instant: start it (`start`) or give it back.
    Claimed(Ticket),
    /// The claim was decided without a run to start here.
    Decided {
        job: String,
        at: DateTime<Utc>,
        claim: Claim,
        asker: Option<Asker>,
    },
    /// The claim failed; the instant does not run here (and may have been claimed: a
    /// rescue hands it to some host later).
    NotClaimed {
        job: String,
        at: DateTime<Utc>,
        why: String,
        asker: Option<Asker>,
    },
    /// The newest instant of `job` any host claimed, for catch_up.
    LastRun {
        job: String,
        last: Option<DateTime<Utc>>,
    },
    /// The database agreed: fork now, then tell `started`.
    Startable(Ticket),
    /// The run is not this host's any more, or the start could not be recorded.
    NotStarted { ticket: Ticket, why: String },
    /// A run handed to this host (after a finish, or by a rescue).
    Handed(Ticket),
    /// A run of another host was recorded lost: run the job's on_failure here.
    Lost(RescuedItem),
    /// Stop this local run.
    Stop { run: String, why: Halt },
    /// One-off jobs now this host's to run.
    Oneoffs(Vec<Oneoff>),
    /// A spool file submitted to the table, or why it could not be.
    Forwarded {
        file: String,
        outcome: Result<Submitted, String>,
    },
    /// A shared job looked overdue here: when it last succeeded on any host (None:
    /// not since `since`, or unknown).
    Overdue {
        job: String,
        since: DateTime<Utc>,
        succeeded: Option<DateTime<Utc>>,
    },
    /// The cluster's history for a `jobctl history`.
    History {
        client: u64,
        job: Option<String>,
        limit: usize,
        runs: Result<Vec<PastRun>, String>,
    },
}

/// The loop's view of cluster mode.
pub struct Cluster {
    settings: config::Cluster,
    work: Session,
    listener: Listener,
    migration: Migration,
    migrated: bool,
    /// Why the schema is not usable, while it is not.
    schema_problem: Option<String>,
    queue: VecDeque<Op>,
    in_flight: Option<Op>,
    /// Runs this host holds (claimed or running), with their local run id once started.
    runs: BTreeMap<i64, Option<String>>,
    by_local: HashMap<String, i64>,
    /// One-offs this host runs, by id, with their local run id.
    oneoffs: BTreeMap<i64, String>,
    /// When the last heartbeat that succeeded was sent.
    renewed_at: Option<Instant>,
    heartbeat_pending: bool,
    /// The first heartbeat of this process is yet to succeed.
    starting: bool,
    fenced: bool,
    /// Last reported availability.
    available: bool,
    hosts: Vec<Host>,
    next_heartbeat: Instant,
    next_rescue: Instant,
    next_prune: Instant,
    next_poll: Instant,
    oneoff_due: Option<Instant>,
    want_oneoffs: bool,
    oneoff_claim_pending: bool,
    /// Shutting down: nothing more is claimed.
    closing: bool,
    leave_by: Option<Instant>,
    /// Reports from an `enqueue` that found the connection broken, for the next
    /// `advance`.
    deferred: Vec<Report>,
    /// The jobs with `on_host_loss: rerun`, for the rescue.
    rerun_jobs: Vec<String>,
    /// The jobfile's tasks, for the next delayed one-off.
    tasks: Vec<String>,
    /// When the heartbeat in flight was sent.
    heartbeat_sent_at: Option<Instant>,
    /// Whether the work session was connected (to log its loss once).
    work_was_up: bool,
    /// Its failure to connect was logged.
    down_logged: bool,
}

impl Cluster {
    /// Cluster mode for `settings`: libpq is loaded (its absence is the error), the
    /// migration thread starts, and the sessions connect at the first `advance`.
    pub fn new(settings: &config::Cluster, now: Instant) -> Result<Cluster, StartError> {
        let lib = Libpq::system().map_err(StartError::Libpq)?;
        let migration =
            Migration::start(lib, settings.database_url.clone()).map_err(StartError::Thread)?;
        let mut work = Settings::new(&settings.database_url);
        // A query stuck for longer would hold the heartbeat back past its lease.
        work.query_timeout = (settings.lease / 2).max(Duration::from_secs(2));
        Ok(Cluster {
            work: Session::new(lib, work),
            listener: Listener::new(lib, settings.listen_url(), now),
            settings: settings.clone(),
            migration,
            migrated: false,
            schema_problem: None,
            queue: VecDeque::new(),
            in_flight: None,
            runs: BTreeMap::new(),
            by_local: HashMap::new(),
            oneoffs: BTreeMap::new(),
            renewed_at: None,
            heartbeat_pending: false,
            starting: true,
            fenced: false,
            available: false,
            hosts: Vec::new(),
            next_heartbeat: now,
            next_rescue: now + settings.lease / 2,
            next_prune: now + PRUNE_SOON,
            next_poll: now + POLL_EVERY,
            oneoff_due: None,
            want_oneoffs: false,
            oneoff_claim_pending: false,
            closing: false,
            leave_by: None,
            deferred: Vec::new(),
            rerun_jobs: Vec::new(),
            tasks: Vec::new(),
            heartbeat_sent_at: None,
            work_was_up: false,
            down_logged: false,
        })
    }

    /// What the jobfile says that the cluster's periodic work needs: the jobs a rescue
    /// runs again, and the tasks whose delayed one-offs to wait for.
    pub fn configure(&mut self, config: &config::Config) {
        self.rerun_jobs = config
            .jobs
            .iter()
            .filter(|job| job.enabled && job.on_host_loss == config::OnHostLoss::Rerun)
            .map(|job| job.name.clone())
            .collect();
        self.tasks = config.tasks.iter().map(|task| task.name.clone()).collect();
        if let Some(settings) = &config.cluster {
            self.settings.jobfile_hash = settings.jobfile_hash.clone();
        }
    }

    pub fn host_id(&self) -> &str {
        &self.settings.host_id
    }

    pub fn lease(&self) -> Duration {
        self.settings.lease
    }

    pub fn jobfile_hash(&self) -> &str {
        &self.settings.jobfile_hash
    }

    /// Whether cluster-wide instants can be claimed now.
    pub fn claiming(&self) -> bool {
        self.usable() && !self.closing
    }

    fn usable(&self) -> bool {
        self.migrated && self.work.is_connected() && self.renewed_at.is_some() && !self.fenced
    }

    /// The hosts as the last heartbeat found them.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// One-off jobs may be waiting: claim some if workers are free.
    pub fn wants_oneoffs(&self) -> bool {
        self.want_oneoffs && !self.oneoff_claim_pending && self.claiming()
    }

    /// One-offs this host runs.
    pub fn oneoffs_running(&self) -> usize {
        self.oneoffs.len()
    }

    /// What keeps cluster mode from working fully, in words.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(problem) = &self.schema_problem {
            problems.push(format!("cluster: the database schema: {problem}"));
        }
        if !self.work.is_connected() {
            problems.push(format!(
                "cluster: the database is unreachable ({}): cluster-wide instants do not run \
                 and one-off jobs wait; `cluster: local` jobs go on",
                self.work.down_reason().unwrap_or("connecting")
            ));
        } else if self.fenced {
            problems.push(format!(
                "cluster: this host could not renew its lease for {}s: it claims nothing \
                 until it does",
                self.settings.lease.as_secs()
            ));
        }
        if self.work.is_connected() && !self.listener.is_up() {
            problems.push(format!(
                "cluster: not listening for one-off jobs ({}): polling every {}s",
                self.listener.down_reason().unwrap_or("connecting"),
                POLL_EVERY.as_secs()
            ));
        }
        for host in &self.hosts {
            if host.alive && host.jobfile_hash != self.settings.jobfile_hash {
                problems.push(format!(
                    "cluster: host {} runs another jobfile (hash {}; this host's is {})",
                    host.host_id, host.jobfile_hash, self.settings.jobfile_hash
                ));
            }
        }
        problems
    }

    /// The descriptors to poll, with their events.
    pub fn fds(&self) -> Vec<(Part, BorrowedFd<'_>, PollFlags)> {
        // SAFETY: each fd is libpq's socket of a session this `Cluster` owns, open until
        // the session next changes state, which only `advance` (needing `&mut self`)
        // does: never while the poll borrows them.
        let borrow = |fd: RawFd| unsafe { BorrowedFd::borrow_raw(fd) };
        let mut fds = Vec::new();
        let work = self.work.interest();
        if let Some(fd) = work.fd {
            fds.push((Part::Work, borrow(fd), work.events));
        }
        let listen = self.listener.interest();
        if let Some(fd) = listen.fd {
            fds.push((Part::Listen, borrow(fd), listen.events));
        }
        if let Some(fd) = self.migration.fd() {
            fds.push((Part::Migration, fd, PollFlags::POLLIN));
        }
        fds
    }

    /// The next moment `advance` has something to do without any descriptor ready.
    pub fn next_deadline(&self) -> Option<Instant> {
        let connected = self.migrated && self.work.is_connected();
        let mut deadlines = vec![
            self.work.interest().deadline,
            self.listener.interest().deadline,
        ];
        if connected {
            deadlines.extend([
                Some(self.next_heartbeat),
                Some(self.next_rescue),
                Some(self.next_prune),
                Some(self.next_poll),
                self.oneoff_due,
            ]);
        }
        if let (Some(renewed), false) = (self.renewed_at, self.fenced) {
            deadlines.push(Some(renewed + self.settings.lease));
        }
        deadlines.push(self.leave_by);
        deadlines.into_iter().flatten().min()
    }

    /// Move both sessions and the timers on; what happened, for the daemon.
    pub fn advance(&mut self, now: Instant, ready: Readiness) -> Vec<Report> {
        let mut reports = std::mem::take(&mut self.deferred);
        if ready.migration || self.migration.fd().is_some() {
            self.migration_news(now);
        }
        let heard = self.listener.advance(now, ready.listen);
        if heard.connected {
            self.want_oneoffs = true;
        }
        for notification in heard.notifications {
            if notification.channel == STOP_CHANNEL {
                let local = notification
                    .payload
                    .parse::<i64>()
                    .ok()
                    .and_then(|id| self.runs.get(&id).cloned().flatten());
                if let Some(run) = local {
                    reports.push(Report::Stop {
                        run,
                        why: Halt::Replaced,
                    });
                }
            } else {
                self.want_oneoffs = true;
            }
        }
        for event in self.work.advance(now, ready.work) {
            match event {
                Event::Connected => {
                    info!(
                        "cluster: connected to the database as host {}",
                        self.settings.host_id
                    );
                    self.next_heartbeat = now;
                    self.work_was_up = true;
                    self.down_logged = false;
                }
                Event::Done(result) => {
                    if let Some(op) = self.in_flight.take() {
                        self.done(op, result, now, &mut reports);
                    }
                }
                Event::Broken { error, in_flight } => {
                    let op = self.in_flight.take();
                    self.broken(&error, op, in_flight, &mut reports);
                }
            }
        }
        self.timers(now, &mut reports);
        self.pump(now, &mut reports);
        self.availability(&mut reports);
        reports
    }

    fn migration_news(&mut self, now: Instant) {
        for attempt in self.migration.take() {
            match attempt {
                Attempt::Done(migrated) => {
                    if migrated.from != migrated.to {
                        info!(
                            "cluster: the database schema was migrated from version {} to {}",
                            migrated.from, migrated.to
                        );
                    }
                    self.migrated = true;
                    self.schema_problem = None;
                    self.next_heartbeat = now;
                }
                Attempt::Failed { error, fatal } => {
                    if fatal {
                        error!("cluster: {error}; cluster mode stays off until jobd is upgraded");
                    } else {
                        warn!("cluster: {error}; trying again");
                    }
                    self.schema_problem = Some(error);
                }
            }
        }
    }

    /// The periodic work that is due.
    fn timers(&mut self, now: Instant, reports: &mut Vec<Report>) {
        if let (Some(renewed), false) = (self.renewed_at, self.fenced)
            && now >= renewed + self.settings.lease
        {
            self.fenced = true;
            warn!(
                "cluster: no heartbeat succeeded for {}s: this host's leases have run out; \
                 it stops its cluster runs and claims nothing until a heartbeat succeeds",
                self.settings.lease.as_secs()
            );
            self.fence(reports);
        }
        let connected = self.migrated && self.work.is_connected();
        if !connected {
            return;
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.settings.lease / 3;
            if !self.heartbeat_pending {
                self.heartbeat_pending = true;
                self.queue.push_front(Op::Heartbeat { leaving: false });
            }
        }
        if self.renewed_at.is_none() {
            return;
        }
        if now >= self.next_rescue {
            self.next_rescue = now + self.settings.lease / 2;
            if !self.queue.iter().any(|op| matches!(op, Op::Rescue)) && !self.closing {
                self.queue.push_back(Op::Rescue);
            }
        }
        if now >= self.next_prune {
            self.next_prune = now + PRUNE_EVERY;
            self.queue.push_back(Op::Prune);
        }
        if now >= self.next_poll {
            self.next_poll = now + POLL_EVERY;
            self.want_oneoffs = true;
        }
        if self.oneoff_due.is_some_and(|due| now >= due) {
            self.oneoff_due = None;
            self.want_oneoffs = true;
        }
    }

    /// Every run and one-off this host holds is no longer its own: stop them.
    fn fence(&mut self, reports: &mut Vec<Report>) {
        for (_, local) in std::mem::take(&mut self.runs) {
            if let Some(run) = local {
                reports.push(Report::Stop {
                    run,
                    why: Halt::Fenced,
                });
            }
        }
        self.by_local.clear();
        for (_, run) in std::mem::take(&mut self.oneoffs) {
            reports.push(Report::Stop {
                run,
                why: Halt::Fenced,
            });
        }
    }

    /// Report a change of availability once.
    fn availability(&mut self, reports: &mut Vec<Report>) {
        let usable = self.usable();
        if usable == self.available {
            return;
        }
        self.available = usable;
        if usable {
            self.want_oneoffs = true;
            reports.push(Report::Available);
        } else {
            reports.push(Report::Unavailable);
        }
    }

    /// Send the next operation if the work session is free.
    fn pump(&mut self, now: Instant, reports: &mut Vec<Report>) {
        while self.in_flight.is_none() && self.migrated && self.work.is_idle() {
            let Some(op) = self.queue.pop_front() else {
                return;
            };
            let query = self.query_of(&op);
            match self.work.send(&query, now) {
                Ok(()) => {
                    if matches!(op, Op::Heartbeat { leaving: false }) {
                        self.heartbeat_sent_at = Some(now);
                    }
                    self.in_flight = Some(op);
                }
                Err(SendError::NotReady) => {
                    self.queue.push_front(op);
                    return;
                }
                Err(SendError::Broken(error)) => {
                    self.broken(&error, Some(op), false, reports);
                    return;
                }
            }
        }
    }

    // ---- What the daemon asks of the cluster -----------------------------------

    /// Claim an instant of `job` (only while `claiming`). `window` reaches back
    /// further than `CLAIM_WINDOW` for catch_up.
    pub fn claim(
        &mut self,
        job: &config::Job,
        at: DateTime<Utc>,
        window: Duration,
        asker: Option<Asker>,
        now: Instant,
    ) {
        let claim = ClaimInstant {
            job: job.name.clone(),
            scheduled_at: at,
            host_id: self.settings.host_id.clone(),
            lease: self.settings.lease,
            max_instances: job.max_instances,
            on_overlap: match job.on_overlap {
                OnOverlap::Skip => Overlap::Skip,
                OnOverlap::Queue => Overlap::Queue,
                OnOverlap::Replace => Overlap::Replace,
            },
            window,
        };
        self.enqueue(Op::Claim { claim, asker }, now);
    }

    /// The newest instant of `job` any host claimed (`Report::LastRun`).
    pub fn last_run(&mut self, job: &str, now: Instant) {
        self.enqueue(Op::LastRun(job.to_string()), now);
    }

    /// Record the start of a run this host holds; `Report::Startable` says when to fork.
    pub fn start(&mut self, ticket: Ticket, now: Instant) {
        self.enqueue(Op::Start(ticket), now);
    }

    /// Give back a run this host holds without starting it, saying why (`too_late`,
    /// `shutting_down`, …).
    pub fn give_back(&mut self, run_id: i64, why: &str, now: Instant) {
        self.runs.remove(&run_id);
        self.finish(run_id, why, None, now);
    }

    /// The run the database agreed to is starting as local run `local`.
    pub fn started(&mut self, run_id: i64, local: &str) {
        self.runs.insert(run_id, Some(local.to_string()));
        self.by_local.insert(local.to_string(), run_id);
    }

    /// Local run `local` ended: when it is a cluster run still this host's, record its
    /// end. True when it was a cluster run.
    pub fn run_ended(
        &mut self,
        local: &str,
        outcome: &str,
        exit_code: Option<i32>,
        now: Instant,
    ) -> bool {
        let Some(run_id) = self.by_local.remove(local) else {
            return false;
        };
        self.runs.remove(&run_id);
        self.finish(run_id, outcome, exit_code, now);
        true
    }

    fn finish(&mut self, run_id: i64, outcome: &str, exit_code: Option<i32>, now: Instant) {
        let finish = FinishRun {
            run_id,
            host_id: self.settings.host_id.clone(),
            outcome: outcome.to_string(),
            exit_code,
            lease: self.settings.lease,
        };
        self.enqueue(
            Op::Finish {
                finish,
                retried: false,
            },
            now,
        );
    }

    /// Claim up to `limit` due one-offs of `tasks`.
    pub fn claim_oneoffs(&mut self, limit: u32, tasks: Vec<String>, now: Instant) {
        self.want_oneoffs = false;
        self.oneoff_claim_pending = true;
        let claim = ClaimOneoffs {
            host_id: self.settings.host_id.clone(),
            lease: self.settings.lease,
            tasks,
            limit,
        };
        self.enqueue(Op::ClaimOneoffs(claim), now);
    }

    /// One-off `id` runs as local run `local`.
    pub fn oneoff_started(&mut self, id: i64, local: &str) {
        self.oneoffs.insert(id, local.to_string());
    }

    /// Whether one-off `id` is still this host's (its lease was not lost).
    pub fn holds_oneoff(&self, id: i64) -> bool {
        self.oneoffs.contains_key(&id)
    }

    /// Record the end of an attempt of one-off `finish.id`, unless it is no longer
    /// this host's.
    pub fn finish_oneoff(&mut self, finish: FinishOneoff, now: Instant) {
        self.oneoffs.remove(&finish.id);
        self.enqueue(
            Op::FinishOneoff {
                finish,
                retried: false,
            },
            now,
        );
    }

    /// Submit a spool file's request to the table (`Report::Forwarded`).
    pub fn forward(&mut self, submit: Submit, file: String, now: Instant) {
        self.enqueue(Op::Submit { submit, file }, now);
    }

    /// Whether `job`, overdue here since `since`, succeeded elsewhere
    /// (`Report::Overdue`).
    pub fn last_success(&mut self, job: &str, since: DateTime<Utc>, now: Instant) {
        let last = LastSuccess {
            job: job.to_string(),
            after: since,
        };
        self.enqueue(Op::LastSuccess(last), now);
    }

    /// Whether this host sends the cluster-wide alerts of shared jobs: the first live
    /// host by id, so that one alert goes out, not one per host.
    pub fn alerts(&self) -> bool {
        self.hosts
            .iter()
            .filter(|host| host.alive)
            .map(|host| host.host_id.as_str())
            .min()
            .is_none_or(|first| first >= self.settings.host_id.as_str())
    }

    /// A one-off this host claimed and will not start (jobd is shutting down): it is
    /// held until the last heartbeat ends its lease, and then runs elsewhere.
    pub fn hold_oneoff(&mut self, id: i64) {
        self.oneoffs.insert(id, String::new());
    }

    /// Look up the cluster's history for a client (`Report::History`).
    pub fn history(&mut self, client: u64, job: Option<String>, limit: usize, now: Instant) {
        self.enqueue(Op::History { client, job, limit }, now);
    }

    /// Shutting down: claim nothing more.
    pub fn close(&mut self) {
        self.closing = true;
        self.want_oneoffs = false;
        self.queue
            .retain(|op| !matches!(op, Op::Rescue | Op::Prune));
    }

    /// The runs have ended: say goodbye (a last heartbeat whose lease ends now, so
    /// that `jobctl status` elsewhere shows this host gone at once).
    pub fn leave(&mut self, now: Instant) {
        if self.leave_by.is_some() {
            return;
        }
        self.leave_by = Some(now + LEAVE_TIMEOUT);
        if self.usable() {
            self.enqueue(Op::Heartbeat { leaving: true }, now);
        }
    }

    /// Whether everything owed to the database has been sent (or cannot be: the
    /// database is gone, or the time to leave is up).
    pub fn left(&self, now: Instant) -> bool {
        let owed = self.in_flight.is_some() || !self.queue.is_empty();
        !owed || !self.work.is_connected() || self.leave_by.is_some_and(|by| now >= by)
    }

    fn enqueue(&mut self, op: Op, now: Instant) {
        self.queue.push_back(op);
        let mut reports = Vec::new();
        self.pump(now, &mut reports);
        self.deferred.extend(reports);
    }
}

/// Why cluster mode could not start.
#[derive(Debug)]
pub enum StartError {
    Libpq(LoadError),
    Thread(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Libpq(e) => e.fmt(f),
            StartError::Thread(e) => write!(f, "cannot start the schema migration: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// What the daemon hears for a claim that decided nothing for this host, in words.
pub fn describe(claim: &Claim) -> &'static str {
    match claim {
        Claim::Start { .. } => "claimed by this host",
        Claim::Queued { .. } => "queued until a running instance ends (on_overlap: queue)",
        Claim::Replace { .. } => {
            "waits while the oldest running instance is stopped (on_overlap: replace)"
        }
        Claim::Skipped { .. } => "skipped: max_instances are running (on_overlap: skip)",
        Claim::Taken => "claimed by another host",
        Claim::TooLate => "too late to claim",
        Claim::TooEarly => "too early to claim (this host's clock is ahead of the database's)",
    }
}
