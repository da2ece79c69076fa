//! The event loop: one `poll` over the timer, the signal pipe, the spool's inotify, the
//! control socket and the children's output. Everything that blocks or waits is a
//! deadline here; nothing else sleeps. The loop carries data between the machines (the
//! supervisor runs processes, the spool keeps one-off files) and the policies.
//!
//! Each concern has its file: `fire` (whether an instant runs now, and starting runs),
//! `oneoff` (spool files to runs), `ended` (the one place a run ends), `requests`
//! (jobctl), `reload`, `shutdown`, and `cluster` (what cluster mode adds to each).

mod cluster;
mod ended;
mod fire;
mod interrupted;
mod oneoff;
mod output;
mod reload;
mod requests;
mod shutdown;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use log::info;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::Pid;

use crate::adapter::control::server::{ControlError, Server};
use crate::adapter::journal::{Entry, Journal};
use crate::adapter::logs::Rings;
use crate::adapter::runtime::server::Part;
use crate::adapter::spawner::{Spawner, System};
use crate::adapter::state::{self, History, StateDirError};
use crate::leaf::memory;
use crate::leaf::notify::Notifier;
use crate::leaf::now::Now;
use crate::leaf::signals::Signals;
use crate::leaf::timer::{Fired, Timer};
use crate::leaf::words::count;
use crate::machine::cluster::Readiness;
use crate::machine::spool::{Spool, SpoolError};
use crate::machine::supervisor::{Stream, Supervisor};
use crate::model::config::{self, Config, Host};
use crate::policy::hooks::Limiter;
use crate::policy::metrics::{Metrics, MetricsFile, Skip, SpoolCounts};
use crate::policy::overdue::Watch;
use crate::policy::overlap::Pending;
use crate::policy::scheduler::Plan;
use shutdown::Phase;

/// Why jobd could not start or had to stop.
#[derive(Debug)]
pub enum DaemonError {
    Config(config::ConfigError),
    Spool(SpoolError),
    Control(ControlError),
    Journal(crate::adapter::journal::InUse),
    State(StateDirError),
    /// Cluster mode could not start (libpq is missing, …).
    Cluster(crate::machine::cluster::StartError),
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
            DaemonError::Control(err) => write!(f, "{err}"),
            DaemonError::Journal(err) => write!(f, "{err}"),
            DaemonError::State(err) => write!(f, "{err}"),
            DaemonError::Cluster(err) => write!(f, "{err}"),
            DaemonError::System { what, error } => write!(f, "cannot {what}: {error}"),
        }
    }
}

impl std::error::Error for DaemonError {}

fn system(what: &'static str) -> impl FnOnce(std::io::Error) -> DaemonError {
    move |error| DaemonError::System { what, error }
}

pub struct Daemon<S: Spawner = System> {
    jobfile: PathBuf,
    environment: Option<String>,
    host: Host,
    /// Shared with the runs being started from it, so that a start can borrow a job
    /// while the daemon changes.
    config: Rc<Config>,
    plan: Plan,
    /// Instants waiting for a running instance to end (on_overlap queue, replace).
    pending: Pending,
    supervisor: Supervisor<S>,
    history: History,
    /// Runs in flight, on disk, for the next jobd if this one is killed.
    journal: Journal,
    /// Runs a killed jobd left behind, stopped already, to be recorded as the loop
    /// starts.
    left_behind: Vec<Entry>,
    spool: Spool,
    server: Server,
    started_at: DateTime<Utc>,
    /// The last reload's error, shown by `jobctl status` until a reload succeeds.
    reload_error: Option<String>,
    /// `jobctl run --wait` clients, by the run they wait for.
    waiters: Vec<(u64, String)>,
    /// `jobctl logs --follow` clients, by the job they follow (None: every job).
    followers: Vec<(u64, Option<String>)>,
    /// Each job's recent output, on disk.
    rings: Rings,
    timer: Timer,
    armed: Option<DateTime<Utc>>,
    notifier: Notifier,
    /// When to next tell systemd's watchdog jobd is alive.
    next_watchdog: Option<Instant>,
    /// The last STATUS= line sent, and when, to send changes at most once a second.
    last_status: (String, Option<Instant>),
    signals: Signals,
    phase: Phase,
    /// Orphans already sent SIGTERM during shutdown.
    signalled: HashSet<Pid>,
    /// Jobs with `alert_after:`, and when each becomes overdue.
    watch: Watch,
    /// How recently each job's `on_failure` ran.
    limiter: Limiter,
    metrics: Metrics,
    metrics_file: Option<MetricsFile>,
    /// Cluster mode, when the jobfile has `cluster:`.
    cluster: Option<cluster::Side>,
}

/// What one `poll` found ready, by slot.
#[derive(Debug, Default)]
struct Ready {
    timer: bool,
    signals: bool,
    spool: bool,
    listener: bool,
    clients: Vec<u64>,
    pipes: Vec<(u64, Stream)>,
    runtimes: Vec<(u64, Part)>,
    cluster: Readiness,
}

/// What each descriptor handed to `poll` stands for.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Timer,
    Signals,
    Spool,
    Listener,
    Client(u64),
    Pipe(u64, Stream),
    /// A warm runtime server's socket or output.
    Runtime(u64, Part),
    /// A cluster session's socket, or the migration's pipe.
    Cluster(cluster::Part),
}

impl Daemon<System> {
    /// Load the jobfile and set up the loop; nothing runs until `run`.
    pub fn start(
        jobfile: PathBuf,
        environment: Option<String>,
        host: Host,
    ) -> Result<Daemon, DaemonError> {
        // First: jobs must not inherit NOTIFY_SOCKET.
        let notifier = Notifier::from_env();
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
        Daemon::assemble(
            Setup {
                jobfile,
                environment,
                host,
                config,
                notifier,
                signals,
            },
            System::default(),
            Now::read(),
        )
    }
}

/// What `assemble` builds a daemon from.
struct Setup {
    jobfile: PathBuf,
    environment: Option<String>,
    host: Host,
    config: Config,
    notifier: Notifier,
    signals: Signals,
}

impl<S: Spawner> Daemon<S> {
    /// Bind the socket, open the spool and the state, stop what a killed jobd left.
    fn assemble(setup: Setup, spawner: S, now: Now) -> Result<Daemon<S>, DaemonError> {
        let Setup {
            jobfile,
            environment,
            host,
            config,
            notifier,
            signals,
        } = setup;
        let timer = Timer::new().map_err(system("create a timerfd"))?;
        let plan = Plan::new(&config, now.wall);
        // Before anything is made inside it with the umask's mode.
        state::prepare_dir(&config).map_err(DaemonError::State)?;
        // First: a live jobd on this socket must be found before recovery treats the
        // spool's running files as left over from a crash.
        let server = Server::bind(
            &config.socket,
            config.socket_group.as_deref(),
            config.read_group.as_deref(),
        )
        .map_err(DaemonError::Control)?;
        // Before the spool takes up its files and before anything fires: what a killed
        // jobd left running must stop first.
        let journal = Journal::open(&config.state_dir).map_err(DaemonError::Journal)?;
        let left_behind = interrupted::stop_left_behind(&journal);
        let spool = Spool::open(&config, now).map_err(DaemonError::Spool)?;
        let history = History::open(&config.state_dir);
        let mut supervisor = Supervisor::new(spawner, boot_id());
        if let Some(runtimes) = supervisor.spawner().runtimes() {
            runtimes.configure(&config.runtimes, now);
        }
        let watch = Watch::new(&config, |job| history.last_success(job, now.wall), now.wall);
        let cluster = cluster::Side::start(&config, now).map_err(DaemonError::Cluster)?;
        let enabled = config.jobs.iter().filter(|j| j.enabled).count();
        info!(
            "jobd {} started: {} ({} enabled, {}, environment {}, time zone {})",
            env!("CARGO_PKG_VERSION"),
            config.file.display(),
            count(enabled, "job"),
            count(config.tasks.len(), "task"),
            config.environment.as_deref().unwrap_or("(none)"),
            config.timezone.name()
        );
        Ok(Daemon {
            jobfile,
            environment,
            host,
            plan,
            pending: Pending::default(),
            supervisor,
            history,
            journal,
            left_behind,
            spool,
            server,
            started_at: now.wall,
            reload_error: None,
            waiters: Vec::new(),
            followers: Vec::new(),
            rings: Rings::open(&config.state_dir),
            timer,
            armed: None,
            next_watchdog: notifier.watchdog_interval().map(|every| now.mono + every),
            notifier,
            last_status: (String::new(), None),
            signals,
            phase: Phase::Running,
            signalled: HashSet::new(),
            watch,
            limiter: Limiter::default(),
            metrics: Metrics::new(now.wall),
            metrics_file: config.metrics_file.clone().map(MetricsFile::new),
            cluster,
            config: Rc::new(config),
        })
    }

    /// Run until shut down by a signal. Each turn reads the clock once: what was ready
    /// is handled, what is due is done, then `poll` waits for the next thing.
    pub fn run(mut self) -> Result<(), DaemonError> {
        let now = Now::read();
        let left_behind = std::mem::take(&mut self.left_behind);
        self.record_interrupted(left_behind, now);
        self.catch_up(now);
        self.arm()?;
        self.notifier
            .send(&format!("READY=1\nSTATUS={}", self.summary()));
        memory::give_back();
        let mut ready = Ready::default();
        loop {
            let now = Now::read();
            self.handle(ready, now)?;
            self.supervisor.tick(now);
            self.server.expire(now.mono);
            self.server.report(now.mono);
            self.tell_systemd(now.mono);
            self.spool.tick(now, &self.config);
            self.take_in(now);
            self.start_files(now);
            self.warm_exits(now);
            self.pass_output();
            // More files to look at: poll without sleeping, so that the timers are
            // looked at between batches.
            let more = self.spool.busy();
            self.write_metrics(now);
            self.arm()?;
            if self.advance_shutdown(now) {
                // The last runs' ends, whatever the once-a-second limit says.
                if let Some(file) = &mut self.metrics_file {
                    file.allow_now();
                }
                self.write_metrics(now);
                info!("jobd stopped");
                return Ok(());
            }
            ready = self.wait(now.mono, more)?;
        }
    }

    /// Act on what the last `poll` found ready.
    fn handle(&mut self, ready: Ready, now: Now) -> Result<(), DaemonError> {
        if ready.timer {
            self.on_timer(now)?;
        }
        if ready.signals {
            self.on_signals(now)?;
        }
        if ready.spool {
            self.spool.on_events(&self.config);
        }
        if ready.listener {
            self.server.accept(now.mono);
        }
        for client in ready.clients {
            if let Some(incoming) = self.server.ready(client, now.mono) {
                self.on_request(incoming, now)?;
            }
        }
        for (key, stream) in ready.pipes {
            self.supervisor.read_output(key, stream, now);
        }
        if let Some(runtimes) = self.supervisor.spawner().runtimes() {
            for (key, part) in ready.runtimes {
                runtimes.readable(key, part, now);
            }
        }
        self.cluster_turn(ready.cluster, now);
        Ok(())
    }

    /// Warm runs whose process ended, as their servers reported them.
    fn warm_exits(&mut self, now: Now) {
        let exits = match self.supervisor.spawner().runtimes() {
            Some(runtimes) => {
                runtimes.tick(now);
                runtimes.take_exits()
            }
            None => return,
        };
        for (pid, status) in exits {
            if let Some(ended) = self.supervisor.exited(pid, status, now) {
                self.ended(ended, now);
            }
        }
    }

    /// One poll, until the earliest deadline, or at once when the spool has `more`
    /// files to look at. Returns what is ready.
    fn wait(&self, now: Instant, more: bool) -> Result<Ready, DaemonError> {
        let deadline = [
            self.supervisor.next_deadline(),
            self.spool.next_deadline(),
            self.server.next_deadline(),
            self.next_watchdog,
            self.metrics_file
                .as_ref()
                .and_then(MetricsFile::next_deadline),
            self.shutdown_deadline(now),
            self.supervisor
                .spawner_ref()
                .runtimes_ref()
                .and_then(|r| r.next_deadline()),
            self.cluster.as_ref().and_then(cluster::Side::next_deadline),
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = match deadline {
            _ if more => PollTimeout::ZERO,
            None => PollTimeout::NONE,
            // Rounded up: waking a little after a deadline is fine, before it is a spin.
            Some(at) => {
                let wait = at.saturating_duration_since(now);
                let millis = wait.as_nanos().div_ceil(1_000_000);
                PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut slots = Vec::new();
        let mut fds = Vec::new();
        let mut add = |slot, fd, flags| {
            slots.push(slot);
            fds.push(PollFd::new(fd, flags));
        };
        add(Slot::Timer, self.timer.fd(), PollFlags::POLLIN);
        add(Slot::Signals, self.signals.fd(), PollFlags::POLLIN);
        add(Slot::Spool, self.spool.fd(), PollFlags::POLLIN);
        for (client, fd, flags) in self.server.fds(now) {
            add(client.map_or(Slot::Listener, Slot::Client), fd, flags);
        }
        for (key, stream, fd) in self.supervisor.pipes() {
            add(Slot::Pipe(key, stream), fd, PollFlags::POLLIN);
        }
        if let Some(runtimes) = self.supervisor.spawner_ref().runtimes_ref() {
            for (key, part, fd) in runtimes.fds() {
                add(Slot::Runtime(key, part), fd, PollFlags::POLLIN);
            }
        }
        if let Some(cluster) = &self.cluster {
            for (part, fd, flags) in cluster.machine.fds() {
                add(Slot::Cluster(part), fd, flags);
            }
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                return Err(DaemonError::System {
                    what: "poll",
                    error: e.into(),
                });
            }
        }
        let mut ready = Ready::default();
        for (slot, fd) in slots.into_iter().zip(&fds) {
            let revents = fd.revents().unwrap_or(PollFlags::empty());
            if revents.is_empty() {
                continue;
            }
            match slot {
                Slot::Timer => ready.timer = true,
                Slot::Signals => ready.signals = true,
                Slot::Spool => ready.spool = true,
                Slot::Listener => ready.listener = true,
                Slot::Client(id) => ready.clients.push(id),
                Slot::Pipe(key, stream) => ready.pipes.push((key, stream)),
                Slot::Runtime(key, part) => ready.runtimes.push((key, part)),
                Slot::Cluster(part) => ready.cluster.set(part, revents),
            }
        }
        Ok(ready)
    }

    fn on_timer(&mut self, now: Now) -> Result<(), DaemonError> {
        match self.timer.read().map_err(system("read the timerfd"))? {
            Fired::Nothing => return Ok(()),
            Fired::ClockChanged => {
                info!("the system clock was set; re-planning from {}", now.wall);
            }
            Fired::Expired => {}
        }
        // The timer may also wake on a clock change: whatever is due by the new clock
        // runs now, collapsed; instants already run never run again.
        self.armed = None;
        if self.phase == Phase::Running {
            self.fire_due(now);
            self.alert_overdue(now);
        }
        self.arm()
    }

    fn on_signals(&mut self, now: Now) -> Result<(), DaemonError> {
        let pending = self.signals.take();
        if pending.child {
            self.reap(now);
        }
        if pending.reload {
            self.reload_with(false, now)?;
        }
        if pending.shutdown {
            self.on_shutdown_signal(now);
        }
        Ok(())
    }

    /// A one-line summary for systemd's STATUS=.
    fn summary(&self) -> String {
        let spool = self.spool.counts();
        format!(
            "{} enabled, {} running; one-off: {} queued, {} delayed, {} running, {} retrying",
            count(self.config.jobs.iter().filter(|j| j.enabled).count(), "job"),
            self.supervisor.running().saturating_sub(spool.running),
            spool.waiting,
            spool.delayed,
            spool.running,
            spool.retrying
        )
    }

    /// The watchdog ping when due, and STATUS= when it changed (at most once a second).
    fn tell_systemd(&mut self, now: Instant) {
        if !self.notifier.enabled() {
            return;
        }
        if let (Some(at), Some(every)) = (self.next_watchdog, self.notifier.watchdog_interval())
            && now >= at
        {
            self.notifier.send("WATCHDOG=1");
            self.next_watchdog = Some(now + every);
        }
        let recent = self
            .last_status
            .1
            .is_some_and(|at| now < at + Duration::from_secs(1));
        if !recent {
            let summary = self.summary();
            if summary != self.last_status.0 {
                self.notifier.send(&format!("STATUS={summary}"));
                self.last_status = (summary, Some(now));
            }
        }
    }

    /// Rewrite the metrics file if something changed and the last write is old enough.
    fn write_metrics(&mut self, now: Now) {
        let Some(file) = &mut self.metrics_file else {
            return;
        };
        if self.metrics.version() != file.version() {
            file.changed(self.metrics.version());
        }
        if !file.due(now.mono) {
            return;
        }
        // Counted only when the file is written anyway: they never wake jobd.
        for (job, count) in self.plan.passed_disabled(now.wall) {
            self.metrics.skipped(&job, Skip::Disabled, count);
        }
        file.changed(self.metrics.version());
        let spool = self.spool.counts();
        let (done_total, failed_total) = self.spool.finished();
        let counts = SpoolCounts {
            queued: spool.waiting,
            delayed: spool.delayed,
            running: spool.running,
            retrying: spool.retrying,
            done_total,
            failed_total,
        };
        let (metrics, config, watch) = (&self.metrics, &self.config, &self.watch);
        file.flush(now.mono, || {
            metrics.render(config, |job| watch.is_overdue(job, now.wall), counts)
        });
    }

    /// Set the wall-clock timer to the next instant, delayed file or overdue check.
    fn arm(&mut self) -> Result<(), DaemonError> {
        let next = [
            self.plan.next_deadline(),
            self.spool.next_instant(),
            self.watch.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        if self.armed != next || next.is_none() {
            self.timer.arm(next).map_err(system("arm the timerfd"))?;
            self.armed = next;
        }
        Ok(())
    }
}

/// Four random bytes, so that run ids from different starts of jobd differ.
fn boot_id() -> u32 {
    let mut bytes = [0u8; 4];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut urandom, &mut bytes);
    }
    u32::from_ne_bytes(bytes) ^ std::process::id()
}
