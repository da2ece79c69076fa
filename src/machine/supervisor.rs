//! Running jobs: starting them under their overlap policy, their output, their timeouts,
//! their end. The event loop feeds it events; it never blocks.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use log::{error, info, warn};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::adapter::process::{self, Extra, signal_group};
use crate::adapter::state::History;
use crate::leaf::duration;
use crate::leaf::output::{Lines, LogBudget, Tail};
use crate::model::config::{Job, OnOverlap, RunSpec};
use crate::model::record::{Outcome, RunRecord};

/// Output read from one pipe per wake-up: a flooding child gets its turn, then the
/// loop goes back to the timer and the other children.
const READ_CHUNK: usize = 64 * 1024;
/// Output still read from a run's pipes after its process exited, at most.
const FINAL_DRAIN: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What to do with an instant that has come, given what is already running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Start,
    Skip,
    /// Keep it pending (replacing any older pending instant) until a run ends.
    Queue,
    /// Stop the oldest running instance; start this one when it has ended.
    Replace,
}

/// The one place that decides whether an instant of a job runs now. A later shared
/// (multi-host) mode claims the instant here before it starts.
pub fn decide(job: &Job, running: usize) -> Decision {
    if running < job.max_instances as usize {
        return Decision::Start;
    }
    match job.on_overlap {
        OnOverlap::Skip => Decision::Skip,
        OnOverlap::Queue => Decision::Queue,
        OnOverlap::Replace => Decision::Replace,
    }
}

struct Pipe {
    fd: OwnedFd,
    lines: Lines,
}

/// Where a run came from: what to do when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A scheduled job (or a `jobctl run`).
    Job,
    /// A spool file, by its name.
    Spool(String),
    /// The `on_failure` hook of this job or task.
    Hook(String),
}

/// What became of an instant handed to `fire`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fate {
    pub decision: Decision,
    /// The run started, if one did.
    pub run_id: Option<String>,
    /// Instants that will not run because of an overlap: this one when skipped, or an
    /// older pending one it replaced.
    pub dropped: u64,
}

/// What to start.
pub struct Launch<'a> {
    /// The job's or the task's name.
    pub name: &'a str,
    pub spec: &'a RunSpec,
    pub extra: Extra<'a>,
    /// What the process reads on stdin (else /dev/null).
    pub stdin: Option<&'a [u8]>,
    pub scheduled_at: DateTime<Utc>,
    pub attempt: u32,
    pub origin: Origin,
}

/// A run that has ended, with where it came from.
#[derive(Debug)]
pub struct Ended {
    pub origin: Origin,
    pub record: RunRecord,
    /// jobd stopped it by policy (on_overlap: replace, removed_jobs: stop).
    pub stopped_by_policy: bool,
}

struct Run {
    key: u64,
    id: String,
    origin: Origin,
    job: String,
    pid: Pid,
    attempt: u32,
    scheduled_at: DateTime<Utc>,
    started_at: DateTime<Utc>,
    kill_grace: Duration,
    /// When the timeout sends SIGTERM.
    deadline: Option<Instant>,
    /// When SIGKILL follows a SIGTERM jobd sent.
    kill_at: Option<Instant>,
    timed_out: bool,
    /// jobd stopped it by policy (on_overlap: replace, removed_jobs: stop): its end is
    /// no failure of the job's own.
    stopped_by_policy: bool,
    stdout: Option<Pipe>,
    stderr: Option<Pipe>,
    budget: LogBudget,
    tail: Tail,
}

/// A process group whose leader has ended while other members lived on: they got
/// SIGTERM and get SIGKILL at `kill_at`.
struct Lingering {
    pgid: Pid,
    kill_at: Instant,
}

pub struct Supervisor {
    runs: Vec<Run>,
    /// Per job, the instant waiting for a free slot (on_overlap queue or replace).
    pending: HashMap<String, DateTime<Utc>>,
    lingering: Vec<Lingering>,
    history: History,
    /// Runs that could not start, for the loop to handle as ended runs.
    unstarted: Vec<Ended>,
    /// Run ids are `<boot>-<n>`: unique across restarts without a clock or a counter on disk.
    boot: u32,
    next_key: u64,
}

impl Supervisor {
    pub fn new(boot: u32, history: History) -> Supervisor {
        Supervisor {
            runs: Vec::new(),
            pending: HashMap::new(),
            lingering: Vec::new(),
            history,
            unstarted: Vec::new(),
            boot,
            next_key: 1,
        }
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn running(&self) -> usize {
        self.runs.len()
    }

    /// Runs of a scheduled job (a task's runs are the spool's to count).
    pub fn running_of(&self, job: &str) -> usize {
        self.runs
            .iter()
            .filter(|run| run.job == job && run.origin == Origin::Job)
            .count()
    }

    /// An instant of `job` has come (`missed` earlier ones collapsed into it).
    pub fn fire(&mut self, job: &Job, instant: DateTime<Utc>, missed: u64, now: Instant) -> Fate {
        if missed > 0 {
            warn!(
                "{}: woke late, {missed} earlier instant{} missed; running the one at {}",
                job.name,
                if missed == 1 { "" } else { "s" },
                utc(instant)
            );
        }
        let decision = decide(job, self.running_of(&job.name));
        let mut dropped = 0;
        match decision {
            Decision::Start => {
                return Fate {
                    decision,
                    run_id: self.start_job(job, instant, now),
                    dropped,
                };
            }
            Decision::Skip => {
                dropped = 1;
                info!(
                    "{}: not starting the instant at {}: {} still running (on_overlap: skip)",
                    job.name,
                    utc(instant),
                    self.running_of(&job.name)
                )
            }
            Decision::Queue => dropped = self.queue(job, instant),
            Decision::Replace => {
                dropped = self.queue(job, instant);
                let oldest = self
                    .runs
                    .iter_mut()
                    .find(|r| r.job == job.name && r.origin == Origin::Job && r.kill_at.is_none());
                if let Some(oldest) = oldest {
                    info!(
                        "{}[{}]: stopping it for the instant at {} (on_overlap: replace)",
                        oldest.job,
                        oldest.id,
                        utc(instant)
                    );
                    oldest.stopped_by_policy = true;
                    stop(oldest, now);
                }
            }
        }
        Fate {
            decision,
            run_id: None,
            dropped,
        }
    }

    /// Keep `instant` pending; 1 when it replaced an older pending one, else 0.
    fn queue(&mut self, job: &Job, instant: DateTime<Utc>) -> u64 {
        if let Some(older) = self.pending.insert(job.name.clone(), instant) {
            info!(
                "{}: the pending instant at {} is replaced by the one at {}",
                job.name,
                utc(older),
                utc(instant)
            );
            1
        } else {
            info!(
                "{}: the instant at {} waits until a running instance ends",
                job.name,
                utc(instant)
            );
            0
        }
    }

    fn start_job(
        &mut self,
        job: &Job,
        scheduled_at: DateTime<Utc>,
        now: Instant,
    ) -> Option<String> {
        self.launch(
            Launch {
                name: &job.name,
                spec: &job.run,
                extra: Extra::default(),
                stdin: None,
                scheduled_at,
                attempt: 1,
                origin: Origin::Job,
            },
            now,
        )
    }

    /// The id the next `launch` gives its run, for a record written before the process
    /// exists (a crash in between must not leave a run nobody can name).
    pub fn next_run_id(&self) -> String {
        format!("{:08x}-{}", self.boot, self.next_key)
    }

    /// Start a run and return its id. A run that cannot start is logged, kept in the
    /// history and handed to `take_unstarted` as an ended run.
    pub fn launch(&mut self, launch: Launch, now: Instant) -> Option<String> {
        let key = self.next_key;
        let id = self.next_run_id();
        self.next_key += 1;
        let name = launch.name;
        let mut vars = vec![
            ("JOBD_JOB", name.to_string()),
            ("JOBD_RUN_ID", id.clone()),
            ("JOBD_SCHEDULED_AT", child_time(launch.scheduled_at)),
            ("JOBD_ATTEMPT", launch.attempt.to_string()),
        ];
        if let Origin::Spool(file) = &launch.origin {
            vars.push(("JOBD_SPOOL_FILE", file.clone()));
        }
        let started_at = Utc::now();
        match process::spawn(launch.spec, launch.extra, launch.stdin, &vars) {
            Ok(spawned) => {
                info!(
                    "{name}[{id}]: started pid {} for {}{}",
                    spawned.pid,
                    utc(launch.scheduled_at),
                    match &launch.origin {
                        Origin::Job | Origin::Hook(_) => String::new(),
                        Origin::Spool(file) => format!(
                            " (spool file {}, attempt {})",
                            file.escape_debug(),
                            launch.attempt
                        ),
                    }
                );
                self.runs.push(Run {
                    key,
                    id: id.clone(),
                    origin: launch.origin,
                    job: name.to_string(),
                    pid: spawned.pid,
                    attempt: launch.attempt,
                    scheduled_at: launch.scheduled_at,
                    started_at,
                    kill_grace: launch.spec.kill_grace,
                    deadline: launch.spec.timeout.map(|t| now + t),
                    kill_at: None,
                    timed_out: false,
                    stopped_by_policy: false,
                    stdout: Some(Pipe {
                        fd: spawned.stdout,
                        lines: Lines::default(),
                    }),
                    stderr: Some(Pipe {
                        fd: spawned.stderr,
                        lines: Lines::default(),
                    }),
                    budget: LogBudget::new(now),
                    tail: Tail::default(),
                });
                Some(id)
            }
            Err(err) => {
                error!("{name}[{id}]: {err}");
                let record = RunRecord {
                    job: name.to_string(),
                    run_id: id,
                    attempt: launch.attempt,
                    scheduled_at: launch.scheduled_at,
                    started_at,
                    ended_at: started_at,
                    outcome: Outcome::NotStarted(err.to_string()),
                    output: Vec::new(),
                };
                self.history.push(record.info());
                self.unstarted.push(Ended {
                    origin: launch.origin,
                    record,
                    stopped_by_policy: false,
                });
                None
            }
        }
    }

    /// Whether the `on_failure` hook of `job` is running.
    pub fn hook_running(&self, job: &str) -> bool {
        self.runs
            .iter()
            .any(|run| matches!(&run.origin, Origin::Hook(of) if of == job))
    }

    /// The runs that could not start since the last call.
    pub fn take_unstarted(&mut self) -> Vec<Ended> {
        std::mem::take(&mut self.unstarted)
    }

    /// Every open output pipe, to poll for readability.
    pub fn pipes(&self) -> impl Iterator<Item = (u64, Stream, BorrowedFd<'_>)> {
        self.runs.iter().flat_map(|run| {
            let out = run
                .stdout
                .as_ref()
                .map(|p| (run.key, Stream::Stdout, p.fd.as_fd()));
            let err = run
                .stderr
                .as_ref()
                .map(|p| (run.key, Stream::Stderr, p.fd.as_fd()));
            out.into_iter().chain(err)
        })
    }

    /// A pipe is readable (or closed): read one chunk and log its lines.
    pub fn read_output(&mut self, key: u64, stream: Stream, now: Instant) {
        if let Some(run) = self.runs.iter_mut().find(|run| run.key == key) {
            drain(run, stream, READ_CHUNK, now);
        }
    }

    /// A process ended. `None` when it is not one of the runs (an adopted orphan,
    /// reaped and logged by the caller). A job's pending instant starts here.
    pub fn exited(
        &mut self,
        pid: Pid,
        status: WaitStatus,
        jobs: &[Job],
        now: Instant,
    ) -> Option<Ended> {
        let index = self.runs.iter().position(|run| run.pid == pid)?;
        let mut run = self.runs.swap_remove(index);
        for stream in [Stream::Stdout, Stream::Stderr] {
            drain(&mut run, stream, FINAL_DRAIN, now);
            close(&mut run, stream);
        }
        if let Some(dropped) = run.budget.flush() {
            warn!(
                "{}[{}]: {dropped} lines of output not logged (too many per second)",
                run.job, run.id
            );
        }
        let outcome = match status {
            WaitStatus::Exited(_, code) if !run.timed_out => Outcome::Exited(code),
            WaitStatus::Signaled(_, signal, _) if !run.timed_out => {
                Outcome::Signaled(signal as i32)
            }
            WaitStatus::Signaled(_, signal, _) => Outcome::TimedOut {
                signal: Some(signal as i32),
            },
            _ => Outcome::TimedOut { signal: None },
        };
        let ended_at = Utc::now();
        let took = (ended_at - run.started_at).to_std().unwrap_or_default();
        let message = format!("{}[{}]: {outcome} after {}", run.job, run.id, human(took));
        if outcome.success() {
            info!("{message}");
        } else {
            warn!("{message}");
        }
        // Whatever the leader left in its group is stopped too: a job is its whole group.
        if signal_group(run.pid, Signal::SIGTERM) {
            warn!(
                "{}[{}]: processes were left in its group; sent them SIGTERM",
                run.job, run.id
            );
            self.lingering.push(Lingering {
                pgid: run.pid,
                kill_at: now + run.kill_grace,
            });
        }
        let record = RunRecord {
            job: run.job.clone(),
            run_id: run.id,
            attempt: run.attempt,
            scheduled_at: run.scheduled_at,
            started_at: run.started_at,
            output: if outcome.success() {
                Vec::new()
            } else {
                std::mem::take(&mut run.tail).into_lines()
            },
            ended_at,
            outcome,
        };
        self.history.push(record.info());
        if run.origin == Origin::Job {
            match jobs.iter().find(|job| job.name == run.job) {
                Some(job) => self.start_pending(job, now),
                None => {
                    self.pending.remove(&run.job);
                }
            }
        }
        Some(Ended {
            origin: run.origin,
            record,
            stopped_by_policy: run.stopped_by_policy,
        })
    }

    fn start_pending(&mut self, job: &Job, now: Instant) {
        if !job.enabled || self.running_of(&job.name) >= job.max_instances as usize {
            return;
        }
        if let Some(instant) = self.pending.remove(&job.name) {
            self.start_job(job, instant, now);
        }
    }

    /// The next moment a timeout or a kill is due, for the loop's poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        let runs = self.runs.iter().flat_map(|run| [run.deadline, run.kill_at]);
        let lingering = self.lingering.iter().map(|l| Some(l.kill_at));
        runs.chain(lingering).flatten().min()
    }

    /// Carry out the timeouts and kills that are due.
    pub fn tick(&mut self, now: Instant) {
        let mut escaped = Vec::new();
        for run in &mut self.runs {
            if run.deadline.is_some_and(|d| d <= now) {
                run.deadline = None;
                warn!(
                    "{}[{}]: timed out; sending SIGTERM to its process group",
                    run.job, run.id
                );
                run.timed_out = true;
                stop(run, now);
                escaped.extend(escapees(run, now));
            }
            if run.kill_at.is_some_and(|at| at <= now) {
                run.kill_at = None;
                warn!(
                    "{}[{}]: still running {} after SIGTERM; sending SIGKILL",
                    run.job,
                    run.id,
                    human(run.kill_grace)
                );
                signal_run(run, Signal::SIGKILL);
            }
        }
        self.lingering.extend(escaped);
        self.lingering.retain(|l| {
            if l.kill_at > now {
                return true;
            }
            signal_group(l.pgid, Signal::SIGKILL);
            false
        });
    }

    /// Drop pending instants: jobd is shutting down.
    pub fn forget_pending(&mut self) {
        for (job, instant) in self.pending.drain() {
            info!(
                "{job}: the pending instant at {} will not run: shutting down",
                utc(instant)
            );
        }
    }

    /// Stop the runs of one scheduled job: SIGTERM now, SIGKILL after its kill_grace.
    pub fn stop_job(&mut self, job: &str, why: &str, now: Instant) {
        self.pending.remove(job);
        for run in self
            .runs
            .iter_mut()
            .filter(|run| run.job == job && run.origin == Origin::Job && run.kill_at.is_none())
        {
            info!("{}[{}]: stopping it: {why}", run.job, run.id);
            run.stopped_by_policy = true;
            stop(run, now);
        }
    }

    /// Send SIGTERM to every run not already stopping, SIGKILL after its kill_grace.
    pub fn stop_all(&mut self, now: Instant) {
        for run in self.runs.iter_mut().filter(|run| run.kill_at.is_none()) {
            info!("{}[{}]: stopping it: shutting down", run.job, run.id);
            stop(run, now);
        }
    }

    /// SIGKILL every run and every lingering group now.
    pub fn kill_all(&mut self) {
        for run in &mut self.runs {
            warn!("{}[{}]: killing it: shutting down", run.job, run.id);
            run.kill_at = None;
            signal_run(run, Signal::SIGKILL);
        }
        for lingering in self.lingering.drain(..) {
            signal_group(lingering.pgid, Signal::SIGKILL);
        }
    }

    pub fn has_lingering(&self) -> bool {
        !self.lingering.is_empty()
    }
}

/// The process groups a timed-out run's processes escaped to (`setsid`), found among
/// jobd's descendants by their `JOBD_RUN_ID`: they get SIGTERM now and SIGKILL after
/// the run's kill_grace, like the run's own group. Only groups the run's own processes
/// lead: a process that joined another group (jobd's own, another run's) is left to
/// shutdown, never its group. (Read from /proc only at a timeout, never per run.)
fn escapees(run: &Run, now: Instant) -> Vec<Lingering> {
    let me = Pid::this();
    let own_group = nix::unistd::getpgrp();
    let mut groups: Vec<Pid> = crate::adapter::orphans::of_run(&run.id, Some(me))
        .into_iter()
        .filter(|&pid| nix::unistd::getpgid(Some(pid)) == Ok(pid))
        .filter(|&pgid| pgid != run.pid && pgid != own_group)
        .collect();
    groups.sort();
    groups.dedup();
    groups
        .into_iter()
        .map(|pgid| {
            warn!(
                "{}[{}]: process group {pgid} left the job's group; sending it SIGTERM too",
                run.job, run.id
            );
            signal_group(pgid, Signal::SIGTERM);
            Lingering {
                pgid,
                kill_at: now + run.kill_grace,
            }
        })
        .collect()
}

/// Signal a run's process group; if the group is gone (its leader moved to another
/// group), the leader itself, which jobd has not reaped yet and so cannot be another
/// process.
fn signal_run(run: &Run, signal: Signal) {
    if !signal_group(run.pid, signal) {
        let _ = nix::sys::signal::kill(run.pid, signal);
    }
}

fn stop(run: &mut Run, now: Instant) {
    // Being stopped, it cannot also time out (which would push back its SIGKILL).
    run.deadline = None;
    signal_run(run, Signal::SIGTERM);
    run.kill_at = Some(now + run.kill_grace);
}

fn drain(run: &mut Run, stream: Stream, limit: usize, now: Instant) {
    let pipe = match stream {
        Stream::Stdout => &mut run.stdout,
        Stream::Stderr => &mut run.stderr,
    };
    let Some(open) = pipe else { return };
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    let mut ended = false;
    while total < limit {
        match nix::unistd::read(&open.fd, &mut buf) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(n) => {
                total += n;
                let mut sink = Sink {
                    job: &run.job,
                    id: &run.id,
                    budget: &mut run.budget,
                    tail: &mut run.tail,
                };
                open.lines
                    .push(&buf[..n], |line| sink.line(stream, line, now));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    if ended {
        close(run, stream);
    }
}

fn close(run: &mut Run, stream: Stream) {
    let pipe = match stream {
        Stream::Stdout => run.stdout.take(),
        Stream::Stderr => run.stderr.take(),
    };
    if let Some(mut pipe) = pipe {
        let mut sink = Sink {
            job: &run.job,
            id: &run.id,
            budget: &mut run.budget,
            tail: &mut run.tail,
        };
        pipe.lines
            .finish(|line| sink.line(stream, line, Instant::now()));
    }
}

/// Where a run's output lines go: the log (within its budget) and the kept tail.
struct Sink<'a> {
    job: &'a str,
    id: &'a str,
    budget: &'a mut LogBudget,
    tail: &'a mut Tail,
}

impl Sink<'_> {
    fn line(&mut self, stream: Stream, line: &[u8], now: Instant) {
        self.tail.push(line);
        let (allowed, dropped) = self.budget.take(now);
        let (job, id) = (self.job, self.id);
        if let Some(dropped) = dropped {
            warn!("{job}[{id}]: {dropped} lines of output not logged (too many per second)");
        }
        if !allowed {
            return;
        }
        let text = String::from_utf8_lossy(line);
        match stream {
            Stream::Stdout => info!("{job}[{id}]: {text}"),
            Stream::Stderr => warn!("{job}[{id}]: {text}"),
        }
    }
}

/// `JOBD_SCHEDULED_AT`: UTC with microseconds, one fixed width for every instant.
pub fn child_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn utc(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn human(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        duration::format(Duration::from_millis(d.as_millis() as u64))
    }
}
