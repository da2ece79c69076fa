//! Running processes: starting them through a spawner, their output, their timeouts,
//! stopping them, and what their end was. Which instant runs, and what a run's end
//! means, is for the daemon: the supervisor only runs what it is given.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use log::{error, info, warn};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::adapter::process::SpawnRequest;
use crate::adapter::spawner::Spawner;
use crate::leaf::now::Now;
use crate::leaf::output::{Lines, LogBudget, Tail};
use crate::leaf::{duration, timestamp};
use crate::model::config::{Job, RunSpec};
pub use crate::model::record::Stream;
use crate::model::record::{ExitStatus, LogLine, Outcome, RunRecord, Stop};

/// Output read from one pipe per wake-up: a flooding child gets its turn, then the
/// loop goes back to the timer and the other children.
const READ_CHUNK: usize = 64 * 1024;
/// Output still read from a run's pipes after its process exited, at most.
const FINAL_DRAIN: usize = 256 * 1024;

/// Where a run came from: what its end means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A scheduled job (or a `jobctl run`).
    Job,
    /// A spool file, by its name.
    Spool(String),
    /// The `on_failure` hook of this job or task.
    Hook(String),
    /// A one-off job of the cluster's table (cluster mode), by its id.
    Oneoff(i64),
}

/// What to start.
pub struct Launch<'a> {
    /// The job's or the task's name.
    pub name: &'a str,
    pub spec: &'a RunSpec,
    /// Arguments and variables a spool file or a hook adds.
    pub args: &'a [String],
    pub env: Option<&'a BTreeMap<String, String>>,
    /// jobd's variables besides `JOBD_JOB`, `JOBD_RUN_ID`, `JOBD_SCHEDULED_AT` and
    /// `JOBD_ATTEMPT` (the spool's).
    pub vars: Vec<(&'static str, String)>,
    /// What the process reads on stdin (else /dev/null).
    pub stdin: Option<&'a [u8]>,
    pub scheduled_at: DateTime<Utc>,
    pub attempt: u32,
    pub origin: Origin,
}

impl<'a> Launch<'a> {
    /// An instant of a scheduled job: its own command and environment, nothing added.
    pub fn of_job(job: &'a Job, scheduled_at: DateTime<Utc>, attempt: u32) -> Launch<'a> {
        Launch {
            name: &job.name,
            spec: &job.run,
            args: &[],
            env: None,
            vars: Vec::new(),
            stdin: None,
            scheduled_at,
            attempt,
            origin: Origin::Job,
        }
    }
}

/// A run that has ended (or never started), with where it came from.
#[derive(Debug)]
pub struct Ended {
    pub origin: Origin,
    pub record: RunRecord,
}

/// Where a run is in its life. Each state says what comes next and when; a new state
/// is a compile error until every `match` below handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    /// Running on its own; its timeout (if any) sends SIGTERM at `deadline`.
    Running { deadline: Option<Instant> },
    /// jobd sent SIGTERM for `why`; SIGKILL follows at `kill_at`.
    Stopping { why: Stop, kill_at: Instant },
    /// jobd sent SIGKILL for `why`; only its end is left.
    Killed { why: Stop },
}

impl Life {
    /// Why jobd stopped it, if it did.
    fn stopped(self) -> Option<Stop> {
        match self {
            Life::Running { .. } => None,
            Life::Stopping { why, .. } | Life::Killed { why } => Some(why),
        }
    }

    /// When something is due for this run.
    fn deadline(self) -> Option<Instant> {
        match self {
            Life::Running { deadline } => deadline,
            Life::Stopping { kill_at, .. } => Some(kill_at),
            Life::Killed { .. } => None,
        }
    }
}

struct Pipe {
    fd: OwnedFd,
    lines: Lines,
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
    life: Life,
    stdout: Option<Pipe>,
    stderr: Option<Pipe>,
    budget: LogBudget,
    tail: Tail,
}

/// A process group whose leader has ended (or that escaped its run's group) while
/// processes lived on in it: they got SIGTERM and get SIGKILL at `kill_at`.
struct Lingering {
    pgid: Pid,
    kill_at: Instant,
}

/// Which runs a stop is for.
#[derive(Debug, Clone, Copy)]
pub enum Which<'a> {
    /// Every run of this scheduled job.
    Job(&'a str),
    /// The oldest run of this scheduled job that is not being stopped already.
    OldestOf(&'a str),
    /// The run of this id.
    Run(&'a str),
    All,
}

pub struct Supervisor<S: Spawner> {
    spawner: S,
    runs: Vec<Run>,
    /// Lines read since `take_output`, within each run's log budget.
    output: Vec<LogLine>,
    lingering: Vec<Lingering>,
    /// Run ids are `<boot>-<n>`: unique across restarts without a clock or a counter
    /// on disk.
    boot: u32,
    next_run: u64,
    /// Keys name a run's pipes for the loop's poll.
    next_key: u64,
}

impl<S: Spawner> Supervisor<S> {
    pub fn new(spawner: S, boot: u32) -> Supervisor<S> {
        Supervisor {
            spawner,
            runs: Vec::new(),
            output: Vec::new(),
            lingering: Vec::new(),
            boot,
            next_run: 1,
            next_key: 1,
        }
    }

    /// The id of the next run: the only source of run ids. Taken before the process
    /// exists, so that a record written before the spawn can name it.
    pub fn next_id(&mut self) -> String {
        let id = format!("{:08x}-{}", self.boot, self.next_run);
        self.next_run += 1;
        id
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

    /// The job (or task, or hook run name) of the running run `run_id`.
    pub fn job_of(&self, run_id: &str) -> Option<&str> {
        self.runs
            .iter()
            .find(|run| run.id == run_id)
            .map(|run| run.job.as_str())
    }

    /// The names of the jobs, tasks and hooks running now.
    pub fn running_names(&self) -> impl Iterator<Item = &str> {
        self.runs.iter().map(|run| run.job.as_str())
    }

    /// Whether the `on_failure` hook of `job` is running.
    pub fn hook_running(&self, job: &str) -> bool {
        self.runs
            .iter()
            .any(|run| matches!(&run.origin, Origin::Hook(of) if of == job))
    }

    /// Start run `id`. A run that cannot start is returned as ended, as any run's end.
    pub fn launch(&mut self, id: String, launch: Launch, now: Now) -> Result<Pid, Box<Ended>> {
        let key = self.next_key;
        self.next_key += 1;
        let name = launch.name;
        let mut vars = vec![
            ("JOBD_JOB", name.to_string()),
            ("JOBD_RUN_ID", id.clone()),
            ("JOBD_SCHEDULED_AT", timestamp::precise(launch.scheduled_at)),
            ("JOBD_ATTEMPT", launch.attempt.to_string()),
        ];
        vars.extend(launch.vars);
        let request = SpawnRequest {
            run_id: &id,
            spec: launch.spec,
            args: launch.args,
            env: launch.env,
            vars: &vars,
            stdin: launch.stdin,
        };
        match self.spawner.spawn(&request) {
            Ok(spawned) => {
                info!(
                    "{name}[{id}]: started pid {} for {}{}",
                    spawned.pid,
                    timestamp::short(launch.scheduled_at),
                    match &launch.origin {
                        Origin::Job | Origin::Hook(_) => String::new(),
                        Origin::Oneoff(id) =>
                            format!(" (cluster one-off {id}, attempt {})", launch.attempt),
                        Origin::Spool(file) => format!(
                            " (spool file {}, attempt {})",
                            file.escape_debug(),
                            launch.attempt
                        ),
                    }
                );
                let pid = spawned.pid;
                self.runs.push(Run {
                    key,
                    id,
                    origin: launch.origin,
                    job: name.to_string(),
                    pid,
                    attempt: launch.attempt,
                    scheduled_at: launch.scheduled_at,
                    started_at: now.wall,
                    kill_grace: launch.spec.kill_grace,
                    life: Life::Running {
                        deadline: launch.spec.timeout.map(|t| now.mono + t),
                    },
                    stdout: Some(Pipe {
                        fd: spawned.stdout,
                        lines: Lines::default(),
                    }),
                    stderr: Some(Pipe {
                        fd: spawned.stderr,
                        lines: Lines::default(),
                    }),
                    budget: LogBudget::new(now.mono),
                    tail: Tail::default(),
                });
                Ok(pid)
            }
            Err(err) => {
                error!("{name}[{id}]: {err}");
                Err(Box::new(Ended {
                    origin: launch.origin,
                    record: RunRecord {
                        job: name.to_string(),
                        run_id: id,
                        attempt: launch.attempt,
                        scheduled_at: launch.scheduled_at,
                        started_at: now.wall,
                        ended_at: now.wall,
                        outcome: Outcome::SpawnError {
                            reason: err.to_string(),
                        },
                        output: Vec::new(),
                    },
                }))
            }
        }
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
    pub fn read_output(&mut self, key: u64, stream: Stream, now: Now) {
        if let Some(run) = self.runs.iter_mut().find(|run| run.key == key) {
            drain(run, stream, READ_CHUNK, now, &mut self.output);
        }
    }

    /// The lines runs wrote since the last call (those the log took: a flooding run
    /// is held to its budget here too), for the per-job logs and waiting clients.
    pub fn take_output(&mut self) -> Vec<LogLine> {
        std::mem::take(&mut self.output)
    }

    /// A process ended. `None` when it is not one of the runs (an adopted orphan).
    pub fn exited(&mut self, pid: Pid, status: ExitStatus, now: Now) -> Option<Ended> {
        let index = self.runs.iter().position(|run| run.pid == pid)?;
        let mut run = self.runs.swap_remove(index);
        for stream in [Stream::Stdout, Stream::Stderr] {
            drain(&mut run, stream, FINAL_DRAIN, now, &mut self.output);
            close(&mut run, stream, now, &mut self.output);
        }
        if let Some(dropped) = run.budget.flush() {
            warn!(
                "{}[{}]: {dropped} lines of output not logged (too many per second)",
                run.job, run.id
            );
        }
        let outcome = Outcome::of_exit(status, run.life.stopped());
        let took = (now.wall - run.started_at).to_std().unwrap_or_default();
        let message = format!("{}[{}]: {outcome} after {}", run.job, run.id, human(took));
        if outcome.success() {
            info!("{message}");
        } else {
            warn!("{message}");
        }
        // Whatever the leader left in its group is stopped too: a job is its whole group.
        if self.spawner.signal_group(run.pid, Signal::SIGTERM) {
            warn!(
                "{}[{}]: processes were left in its group; sent them SIGTERM",
                run.job, run.id
            );
            self.lingering.push(Lingering {
                pgid: run.pid,
                kill_at: now.mono + run.kill_grace,
            });
        }
        Some(Ended {
            origin: run.origin,
            record: RunRecord {
                job: run.job,
                run_id: run.id,
                attempt: run.attempt,
                scheduled_at: run.scheduled_at,
                started_at: run.started_at,
                output: if outcome.success() {
                    Vec::new()
                } else {
                    run.tail.into_lines()
                },
                ended_at: now.wall,
                outcome,
            },
        })
    }

    /// The next moment a timeout or a kill is due, for the loop's poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        let runs = self.runs.iter().map(|run| run.life.deadline());
        let lingering = self.lingering.iter().map(|l| Some(l.kill_at));
        runs.chain(lingering).flatten().min()
    }

    /// Carry out the timeouts and kills that are due.
    pub fn tick(&mut self, now: Now) {
        for index in 0..self.runs.len() {
            let run = &self.runs[index];
            match run.life {
                Life::Running {
                    deadline: Some(deadline),
                } if deadline <= now.mono => {
                    warn!(
                        "{}[{}]: timed out; sending SIGTERM to its process group",
                        run.job, run.id
                    );
                    self.stop_run(index, Stop::Timeout, now.mono);
                    self.stop_strays(index, now.mono);
                }
                Life::Stopping { why, kill_at } if kill_at <= now.mono => {
                    warn!(
                        "{}[{}]: still running {} after SIGTERM; sending SIGKILL",
                        run.job,
                        run.id,
                        human(run.kill_grace)
                    );
                    self.kill_run(index, why);
                }
                Life::Running { .. } | Life::Stopping { .. } | Life::Killed { .. } => {}
            }
        }
        let spawner = &mut self.spawner;
        self.lingering.retain(|l| {
            if l.kill_at > now.mono {
                return true;
            }
            spawner.signal_group(l.pgid, Signal::SIGKILL);
            false
        });
    }

    /// Stop runs for `why`: SIGTERM now, SIGKILL after their kill_grace. Runs already
    /// being stopped are left as they are. Returns how many were stopped.
    pub fn stop(&mut self, which: Which, why: Stop, now: Now) -> usize {
        let chosen: Vec<usize> = self
            .runs
            .iter()
            .enumerate()
            .filter(|(_, run)| matches!(run.life, Life::Running { .. }))
            .filter(|(_, run)| match which {
                Which::Job(job) | Which::OldestOf(job) => {
                    run.job == job && run.origin == Origin::Job
                }
                Which::Run(id) => run.id == id,
                Which::All => true,
            })
            .map(|(index, _)| index)
            .collect();
        let chosen = match which {
            // Runs are kept in start order but for swap_remove: the oldest is the
            // one started first.
            Which::OldestOf(_) => chosen
                .into_iter()
                .min_by_key(|&i| (self.runs[i].started_at, self.runs[i].key))
                .into_iter()
                .collect(),
            Which::Job(_) | Which::Run(_) | Which::All => chosen,
        };
        for &index in &chosen {
            let run = &self.runs[index];
            info!("{}[{}]: stopping it: {why}", run.job, run.id);
            self.stop_run(index, why, now.mono);
        }
        chosen.len()
    }

    /// SIGKILL every run and every lingering group now.
    pub fn kill_all(&mut self) {
        for index in 0..self.runs.len() {
            let run = &self.runs[index];
            warn!("{}[{}]: killing it: shutting down", run.job, run.id);
            let why = run.life.stopped().unwrap_or(Stop::Shutdown);
            self.kill_run(index, why);
        }
        for lingering in self.lingering.drain(..) {
            self.spawner.signal_group(lingering.pgid, Signal::SIGKILL);
        }
    }

    pub fn has_lingering(&self) -> bool {
        !self.lingering.is_empty()
    }

    pub fn spawner(&mut self) -> &mut S {
        &mut self.spawner
    }

    pub fn spawner_ref(&self) -> &S {
        &self.spawner
    }

    fn stop_run(&mut self, index: usize, why: Stop, now: Instant) {
        let run = &mut self.runs[index];
        run.life = Life::Stopping {
            why,
            kill_at: now + run.kill_grace,
        };
        let pid = run.pid;
        signal_run(&mut self.spawner, pid, Signal::SIGTERM);
    }

    fn kill_run(&mut self, index: usize, why: Stop) {
        self.runs[index].life = Life::Killed { why };
        let pid = self.runs[index].pid;
        signal_run(&mut self.spawner, pid, Signal::SIGKILL);
    }

    /// The process groups a timed-out run's processes escaped to (`setsid`), found by
    /// their `JOBD_RUN_ID`: they get SIGTERM now and SIGKILL after the run's
    /// kill_grace, like the run's own group. Only groups the run's own processes lead:
    /// a process that joined another group (jobd's own, another run's) is left to
    /// shutdown, never its group.
    fn stop_strays(&mut self, index: usize, now: Instant) {
        let run = &self.runs[index];
        let own_group = nix::unistd::getpgrp();
        let mut groups: Vec<Pid> = self
            .spawner
            .strays(&run.id)
            .into_iter()
            .filter(|&pid| nix::unistd::getpgid(Some(pid)) == Ok(pid))
            .filter(|&pgid| pgid != run.pid && pgid != own_group)
            .collect();
        groups.sort();
        groups.dedup();
        for pgid in groups {
            warn!(
                "{}[{}]: process group {pgid} left the job's group; sending it SIGTERM too",
                run.job, run.id
            );
            self.spawner.signal_group(pgid, Signal::SIGTERM);
            self.lingering.push(Lingering {
                pgid,
                kill_at: now + run.kill_grace,
            });
        }
    }
}

/// Signal a run's process group; if the group is gone (its leader moved to another
/// group), the leader itself, which jobd has not reaped yet and so cannot be another
/// process.
fn signal_run(spawner: &mut impl Spawner, pid: Pid, signal: Signal) {
    if !spawner.signal_group(pid, signal) {
        spawner.signal(pid, signal);
    }
}

fn drain(run: &mut Run, stream: Stream, limit: usize, now: Now, out: &mut Vec<LogLine>) {
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
                    out: &mut *out,
                };
                open.lines
                    .push(&buf[..n], |line| sink.line(stream, line, now));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    if ended {
        close(run, stream, now, out);
    }
}

fn close(run: &mut Run, stream: Stream, now: Now, out: &mut Vec<LogLine>) {
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
            out,
        };
        pipe.lines.finish(|line| sink.line(stream, line, now));
    }
}

/// Where a run's output lines go: the log and the output handed on (within its
/// budget), and the kept tail.
struct Sink<'a> {
    job: &'a str,
    id: &'a str,
    budget: &'a mut LogBudget,
    tail: &'a mut Tail,
    out: &'a mut Vec<LogLine>,
}

impl Sink<'_> {
    fn line(&mut self, stream: Stream, line: &[u8], now: Now) {
        self.tail.push(line);
        let (allowed, dropped) = self.budget.take(now.mono);
        let (job, id) = (self.job, self.id);
        if let Some(dropped) = dropped {
            warn!("{job}[{id}]: {dropped} lines of output not logged (too many per second)");
        }
        if !allowed {
            return;
        }
        // Control characters are escaped where every log line is written
        // (`leaf::logging`), once.
        let text = String::from_utf8_lossy(line);
        match stream {
            Stream::Stdout => info!("{job}[{id}]: {text}"),
            Stream::Stderr => warn!("{job}[{id}]: {text}"),
        }
        self.out.push(LogLine {
            at: timestamp::precise(now.wall),
            job: job.to_string(),
            run_id: id.to_string(),
            stream,
            text: text.into_owned(),
        });
    }
}

fn human(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        duration::format(Duration::from_millis(d.as_millis() as u64))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::adapter::spawner::fake::Fake;
    use crate::model::config::Command;
    use crate::model::record::Verdict;

    fn spec(timeout: Option<u64>) -> RunSpec {
        RunSpec {
            command: Command::Argv(vec!["x".into()]),
            workdir: PathBuf::from("/"),
            env: BTreeMap::new(),
            timeout: timeout.map(Duration::from_secs),
            kill_grace: Duration::from_secs(10),
            user: None,
            group: None,
            runtime: None,
        }
    }

    fn at(start: Now, secs: u64) -> Now {
        Now {
            wall: start.wall + chrono::TimeDelta::seconds(secs as i64),
            mono: start.mono + Duration::from_secs(secs),
        }
    }

    fn launch<'a>(name: &'a str, spec: &'a RunSpec, origin: Origin) -> Launch<'a> {
        Launch {
            name,
            spec,
            args: &[],
            env: None,
            vars: Vec::new(),
            stdin: None,
            scheduled_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            attempt: 1,
            origin,
        }
    }

    fn supervisor() -> Supervisor<Fake> {
        Supervisor::new(Fake::default(), 0xabc)
    }

    #[test]
    fn a_run_gets_its_id_and_variables_and_ends_with_its_exit_status() {
        let mut sup = supervisor();
        let t0 = Now::read();
        let spec = spec(None);
        let id = sup.next_id();
        assert_eq!(id, "00000abc-1");
        let pid = sup.launch(id, launch("a", &spec, Origin::Job), t0).unwrap();
        let spawned = &sup.spawner().spawned[0];
        assert_eq!(spawned.run_id, "00000abc-1");
        assert!(
            spawned
                .vars
                .contains(&("JOBD_SCHEDULED_AT", "2027-01-15T08:00:00.000000Z".into()))
        );
        assert_eq!(sup.running_of("a"), 1);
        let ended = sup.exited(pid, ExitStatus::Code(3), at(t0, 2)).unwrap();
        assert_eq!(ended.origin, Origin::Job);
        assert_eq!(ended.record.outcome, Outcome::Failure { code: 3 });
        assert_eq!(
            ended.record.ended_at - ended.record.started_at,
            chrono::TimeDelta::seconds(2)
        );
        assert_eq!(sup.running(), 0);
        assert!(sup.exited(pid, ExitStatus::Code(0), t0).is_none());
    }

    #[test]
    fn a_run_that_cannot_start_comes_back_as_an_ended_run() {
        let mut sup = supervisor();
        sup.spawner().fail = true;
        let spec = spec(None);
        let id = sup.next_id();
        let ended = sup
            .launch(
                id.clone(),
                launch("t", &spec, Origin::Spool("f".into())),
                Now::read(),
            )
            .unwrap_err();
        assert_eq!(ended.record.run_id, id);
        assert_eq!(ended.record.outcome.verdict(), Verdict::SpawnError);
        assert_eq!(ended.origin, Origin::Spool("f".into()));
        assert_eq!(sup.running(), 0);
        // Ids are never reused, even for a run that did not start.
        assert_ne!(sup.next_id(), id);
    }

    #[test]
    fn a_timeout_sends_sigterm_then_sigkill_after_the_grace_and_ends_as_timeout() {
        let mut sup = supervisor();
        let t0 = Now::read();
        let spec = spec(Some(5));
        let id = sup.next_id();
        let pid = sup.launch(id, launch("a", &spec, Origin::Job), t0).unwrap();
        assert_eq!(sup.next_deadline(), Some(t0.mono + Duration::from_secs(5)));
        sup.tick(at(t0, 4));
        assert!(sup.spawner().signals.is_empty());
        sup.tick(at(t0, 5));
        assert_eq!(sup.spawner().signals, [(pid, Signal::SIGTERM, true)]);
        assert_eq!(sup.next_deadline(), Some(t0.mono + Duration::from_secs(15)));
        // Stopping already: another stop changes nothing.
        assert_eq!(sup.stop(Which::All, Stop::Shutdown, at(t0, 6)), 0);
        sup.tick(at(t0, 15));
        assert_eq!(sup.spawner().signals[1], (pid, Signal::SIGKILL, true));
        assert_eq!(sup.next_deadline(), None);
        let ended = sup.exited(pid, ExitStatus::Signal(9), at(t0, 15)).unwrap();
        assert_eq!(ended.record.outcome, Outcome::Timeout { signal: Some(9) });
    }

    #[test]
    fn a_timed_out_run_that_left_its_group_is_signalled_itself_and_its_strays_too() {
        let mut sup = supervisor();
        let t0 = Now::read();
        let spec = spec(Some(1));
        let id = sup.next_id();
        let pid = sup.launch(id, launch("a", &spec, Origin::Job), t0).unwrap();
        sup.spawner().gone.push(pid);
        sup.tick(at(t0, 1));
        assert_eq!(
            sup.spawner().signals,
            [(pid, Signal::SIGTERM, true), (pid, Signal::SIGTERM, false)]
        );
    }

    #[test]
    fn stopping_for_a_reason_ends_as_stopped_and_replace_takes_the_oldest() {
        let mut sup = supervisor();
        let t0 = Now::read();
        let spec = spec(None);
        let first = sup.next_id();
        let old = sup
            .launch(first, launch("a", &spec, Origin::Job), t0)
            .unwrap();
        let second = sup.next_id();
        let new = sup
            .launch(second, launch("a", &spec, Origin::Job), at(t0, 1))
            .unwrap();
        let other = sup.next_id();
        sup.launch(other, launch("b", &spec, Origin::Job), t0)
            .unwrap();
        assert_eq!(sup.stop(Which::OldestOf("a"), Stop::Replaced, at(t0, 2)), 1);
        assert_eq!(sup.spawner().signals, [(old, Signal::SIGTERM, true)]);
        let ended = sup.exited(old, ExitStatus::Signal(15), at(t0, 3)).unwrap();
        assert_eq!(
            ended.record.outcome,
            Outcome::Stopped {
                why: Stop::Replaced,
                signal: Some(15)
            }
        );
        assert!(!ended.record.outcome.verdict().is_failure());
        assert_eq!(sup.stop(Which::Job("a"), Stop::Removed, at(t0, 3)), 1);
        assert_eq!(
            sup.spawner().signals.last(),
            Some(&(new, Signal::SIGTERM, true))
        );
        // Only job a's runs: b runs on.
        assert_eq!(sup.running_of("b"), 1);
    }

    #[test]
    fn output_lines_are_kept_for_a_failed_run() {
        let mut sup = supervisor();
        let t0 = Now::read();
        let spec = spec(None);
        let id = sup.next_id();
        let pid = sup.launch(id, launch("a", &spec, Origin::Job), t0).unwrap();
        let (out, err) = sup.spawner().writers.remove(&pid.as_raw()).unwrap();
        nix::unistd::write(&out, b"one\ntwo").unwrap();
        nix::unistd::write(&err, b"three\n").unwrap();
        let keys: Vec<_> = sup.pipes().map(|(key, stream, _)| (key, stream)).collect();
        assert_eq!(keys.len(), 2);
        for (key, stream) in keys {
            sup.read_output(key, stream, t0);
        }
        drop((out, err));
        let ended = sup.exited(pid, ExitStatus::Code(1), t0).unwrap();
        let mut lines = ended.record.output;
        lines.sort();
        assert_eq!(lines, ["one", "three", "two"]);
    }

    #[test]
    fn a_leader_that_left_processes_in_its_group_has_them_stopped_after_the_grace() {
        let mut sup = supervisor();
        let t0 = Now::read();
        let spec = spec(None);
        let id = sup.next_id();
        let pid = sup.launch(id, launch("a", &spec, Origin::Job), t0).unwrap();
        sup.exited(pid, ExitStatus::Code(0), t0).unwrap();
        assert!(sup.has_lingering());
        assert_eq!(sup.next_deadline(), Some(t0.mono + Duration::from_secs(10)));
        sup.tick(at(t0, 10));
        assert_eq!(
            sup.spawner().signals,
            [(pid, Signal::SIGTERM, true), (pid, Signal::SIGKILL, true)]
        );
        assert!(!sup.has_lingering());
    }
}
