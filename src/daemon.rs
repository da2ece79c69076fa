//! The event loop: one `poll` over the timer, the signal pipe and the children's output.
//! Everything that blocks or waits is a deadline here; nothing else sleeps.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use log::{error, info, warn};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::config::{self, Config, DEFAULT_KILL_GRACE, Host};
use crate::record::signal_name;
use crate::scheduler::Plan;
use crate::signals::Signals;
use crate::spool::{Spool, SpoolError};
use crate::state::History;
use crate::supervisor::{Ended, Origin, Stream, Supervisor};
use crate::timer::{Fired, Timer};

/// Why jobd could not start or had to stop.
#[derive(Debug)]
pub enum DaemonError {
    Config(config::ConfigError),
    Spool(SpoolError),
    /// A system call the loop cannot do without failed.
    System {
        what: &'static str,
        error: std::io::Error,
    },
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::Config(err) => write!(f, "{err}"),
            DaemonError::Spool(err) => write!(f, "{err}"),
            DaemonError::System { what, error } => write!(f, "cannot {what}: {error}"),
        }
    }
}

impl std::error::Error for DaemonError {}

fn system(what: &'static str) -> impl FnOnce(std::io::Error) -> DaemonError {
    move |error| DaemonError::System { what, error }
}

/// Where a shutdown has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Waiting for running jobs to end on their own until `until`; `signals` counts the
    /// shutdown signals received (a second one stops the jobs, a third kills them).
    Draining {
        until: Instant,
        signals: u8,
    },
    /// The jobs have ended; stopping adopted orphans, killing them at `kill_at`.
    Orphans {
        kill_at: Instant,
    },
}

/// How often the last shutdown phase looks for new orphans: re-parenting sends no
/// signal, and this phase lasts at most a kill grace.
const ORPHAN_SCAN: Duration = Duration::from_millis(100);

pub struct Daemon {
    jobfile: PathBuf,
    environment: Option<String>,
    host: Host,
    config: Config,
    plan: Plan,
    supervisor: Supervisor,
    spool: Spool,
    timer: Timer,
    armed: Option<DateTime<Utc>>,
    signals: Signals,
    phase: Phase,
    /// Orphans already sent SIGTERM during shutdown.
    signalled: HashSet<Pid>,
}

impl Daemon {
    /// Load the jobfile and set up the loop; nothing runs until `run`.
    pub fn start(
        jobfile: PathBuf,
        environment: Option<String>,
        host: Host,
    ) -> Result<Daemon, DaemonError> {
        let config =
            config::load(&jobfile, environment.as_deref(), &host).map_err(DaemonError::Config)?;
        // Orphaned grandchildren are re-parented to jobd, which reaps them and can
        // stop them at shutdown.
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| DaemonError::System {
            what: "become a child subreaper",
            error: e.into(),
        })?;
        // The default 50µs of timer slack would be added to every wake-up.
        let _ = nix::sys::prctl::set_timerslack(1);
        let signals = Signals::install().map_err(system("install signal handlers"))?;
        let timer = Timer::new().map_err(system("create a timerfd"))?;
        let plan = Plan::new(&config, Utc::now());
        let spool = Spool::open(&config, Instant::now()).map_err(DaemonError::Spool)?;
        let supervisor = Supervisor::new(boot_id(), History::open(&config.state_dir));
        let enabled = config.jobs.iter().filter(|j| j.enabled).count();
        info!(
            "jobd {} started: {} ({} job{} enabled, {} task{}, environment {}, time zone {})",
            env!("CARGO_PKG_VERSION"),
            config.file.display(),
            enabled,
            plural(enabled),
            config.tasks.len(),
            plural(config.tasks.len()),
            config.environment.as_deref().unwrap_or("(none)"),
            config.timezone.name()
        );
        Ok(Daemon {
            jobfile,
            environment,
            host,
            config,
            plan,
            supervisor,
            spool,
            timer,
            armed: None,
            signals,
            phase: Phase::Running,
            signalled: HashSet::new(),
        })
    }

    /// Run until shut down by a signal.
    pub fn run(mut self) -> Result<(), DaemonError> {
        self.arm()?;
        loop {
            let now = Instant::now();
            self.supervisor.tick(now);
            self.spool.tick(Utc::now(), now, &self.config);
            self.spool.dispatch(&mut self.supervisor, &self.config, now);
            self.arm()?;
            if self.advance_shutdown(now) {
                info!("jobd stopped");
                return Ok(());
            }
            let ready = self.wait(now)?;
            if ready.timer {
                self.on_timer()?;
            }
            if ready.signals {
                self.on_signals()?;
            }
            if ready.spool {
                self.spool.on_events(&self.config);
            }
            let now = Instant::now();
            for (key, stream) in ready.pipes {
                self.supervisor.read_output(key, stream, now);
            }
        }
    }

    /// One poll. Returns what is ready.
    fn wait(&self, now: Instant) -> Result<Ready, DaemonError> {
        let mut deadline = self.supervisor.next_deadline();
        if let Some(spool) = self.spool.next_deadline() {
            deadline = earliest(deadline, spool);
        }
        match self.phase {
            Phase::Running => {}
            Phase::Draining { until, .. } => deadline = earliest(deadline, until),
            Phase::Orphans { kill_at } => {
                deadline = earliest(deadline, kill_at.min(now + ORPHAN_SCAN))
            }
        }
        let timeout = match deadline {
            None => PollTimeout::NONE,
            // Rounded up: waking a little after a deadline is fine, before it is a spin.
            Some(at) => {
                let wait = at.saturating_duration_since(now);
                let millis = wait.as_nanos().div_ceil(1_000_000);
                PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
            }
        };
        let pipes: Vec<_> = self.supervisor.pipes().collect();
        let mut fds = Vec::with_capacity(2 + pipes.len());
        fds.push(PollFd::new(self.timer.fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(self.signals.fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(self.spool.fd(), PollFlags::POLLIN));
        fds.extend(
            pipes
                .iter()
                .map(|(_, _, fd)| PollFd::new(*fd, PollFlags::POLLIN)),
        );
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                return Err(DaemonError::System {
                    what: "poll",
                    error: e.into(),
                });
            }
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        Ok(Ready {
            timer: ready(&fds[0]),
            signals: ready(&fds[1]),
            spool: ready(&fds[2]),
            pipes: pipes
                .iter()
                .zip(&fds[3..])
                .filter(|(_, fd)| ready(fd))
                .map(|((key, stream, _), _)| (*key, *stream))
                .collect(),
        })
    }

    fn on_timer(&mut self) -> Result<(), DaemonError> {
        match self.timer.read().map_err(system("read the timerfd"))? {
            Fired::Nothing => return Ok(()),
            Fired::ClockChanged => {
                info!("the system clock was set; re-planning from {}", Utc::now());
            }
            Fired::Expired => {}
        }
        // The timer may also wake on a clock change: whatever is due by the new clock
        // runs now, collapsed; instants already run never run again.
        self.armed = None;
        if self.phase == Phase::Running {
            let now = Instant::now();
            for due in self.plan.due(Utc::now()) {
                if let Some(job) = self.config.job(&due.job) {
                    self.supervisor.fire(job, due.instant, due.missed, now);
                }
            }
        }
        self.arm()
    }

    fn on_signals(&mut self) -> Result<(), DaemonError> {
        let pending = self.signals.take();
        if pending.child {
            self.reap();
        }
        if pending.reload {
            self.reload()?;
        }
        if pending.shutdown {
            self.on_shutdown_signal();
        }
        Ok(())
    }

    fn on_ended(&mut self, ended: Ended) {
        if let Origin::Spool(file) = &ended.origin {
            self.spool
                .ended(file, &ended.record, &self.config, Instant::now());
        }
    }

    /// Reap every child that has ended: one SIGCHLD may stand for many.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(status) => {
                    let Some(pid) = status.pid() else { continue };
                    let now = Instant::now();
                    match self.supervisor.exited(pid, status, &self.config.jobs, now) {
                        Some(ended) => self.on_ended(ended),
                        None => info!("reaped adopted orphan pid {pid}: {}", describe(status)),
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    error!("waitpid failed: {e}");
                    return;
                }
            }
        }
    }

    fn reload(&mut self) -> Result<(), DaemonError> {
        if self.phase != Phase::Running {
            return Ok(());
        }
        match config::load(&self.jobfile, self.environment.as_deref(), &self.host) {
            Ok(config) => {
                if let Err(err) = self.spool.reload(&config) {
                    error!("reload refused, keeping the running configuration: {err}");
                    return Ok(());
                }
                self.plan.reload(&config, Utc::now());
                info!(
                    "reloaded {}: {} jobs, {} tasks",
                    config.file.display(),
                    config.jobs.len(),
                    config.tasks.len()
                );
                self.config = config;
                self.armed = None;
                self.arm()
            }
            Err(err) => {
                error!("reload refused, keeping the running configuration:\n{err}");
                Ok(())
            }
        }
    }

    fn on_shutdown_signal(&mut self) {
        let now = Instant::now();
        match self.phase {
            Phase::Running => {
                let grace = self.config.shutdown_grace;
                info!(
                    "shutting down: waiting up to {} for {} running job{}",
                    crate::duration::format(grace),
                    self.supervisor.running(),
                    plural(self.supervisor.running())
                );
                self.supervisor.forget_pending();
                self.spool.stop();
                self.plan = Plan::default();
                self.phase = Phase::Draining {
                    until: now + grace,
                    signals: 1,
                };
            }
            Phase::Draining { signals: 1, .. } => {
                info!("second shutdown signal: stopping the running jobs now");
                self.supervisor.stop_all(now);
                self.phase = Phase::Draining {
                    until: now,
                    signals: 2,
                };
            }
            Phase::Draining { .. } | Phase::Orphans { .. } => {
                warn!("another shutdown signal: killing everything now");
                self.supervisor.kill_all();
                self.kill_orphans(Signal::SIGKILL);
            }
        }
    }

    /// Move the shutdown along; true when jobd may exit.
    fn advance_shutdown(&mut self, now: Instant) -> bool {
        match self.phase {
            Phase::Running => false,
            Phase::Draining { until, signals } => {
                if self.supervisor.running() > 0 {
                    if now >= until && signals < 2 {
                        self.supervisor.stop_all(now);
                        self.phase = Phase::Draining { until, signals: 2 };
                    }
                    return false;
                }
                self.supervisor.kill_all();
                self.phase = Phase::Orphans {
                    kill_at: now + DEFAULT_KILL_GRACE,
                };
                self.advance_shutdown(now)
            }
            Phase::Orphans { kill_at } => {
                self.reap();
                let signal = if now >= kill_at {
                    Signal::SIGKILL
                } else {
                    Signal::SIGTERM
                };
                self.kill_orphans(signal) == 0 && !self.supervisor.has_lingering()
            }
        }
    }

    /// Signal every remaining child of jobd (adopted orphans, by now); SIGTERM goes to
    /// each once. Returns how many children remain.
    fn kill_orphans(&mut self, signal: Signal) -> usize {
        let children = children_of(Pid::this());
        for &pid in &children {
            if signal == Signal::SIGTERM && !self.signalled.insert(pid) {
                continue;
            }
            info!("stopping adopted orphan pid {pid} with {signal}");
            let _ = kill(pid, signal);
        }
        children.len()
    }

    fn arm(&mut self) -> Result<(), DaemonError> {
        let next = match (self.plan.next_deadline(), self.spool.next_instant()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.armed != next || next.is_none() {
            self.timer.arm(next).map_err(system("arm the timerfd"))?;
            self.armed = next;
        }
        Ok(())
    }
}

struct Ready {
    timer: bool,
    signals: bool,
    spool: bool,
    pipes: Vec<(u64, Stream)>,
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with code {code}"),
        WaitStatus::Signaled(_, signal, _) => format!("killed by {}", signal_name(signal as i32)),
        other => format!("{other:?}"),
    }
}

/// The processes whose parent is `parent`, from /proc.
fn children_of(parent: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The name in parentheses may hold spaces: fields count from the last ')'.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                == Some(parent.as_raw())
        })
        .map(Pid::from_raw)
        .collect()
}

/// Four random bytes, so that run ids from different starts of jobd differ.
fn boot_id() -> u32 {
    let mut bytes = [0u8; 4];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut urandom, &mut bytes);
    }
    u32::from_ne_bytes(bytes) ^ std::process::id()
}
