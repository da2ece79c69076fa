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

use crate::adapter::control::answer;
use crate::adapter::control::protocol::{
    Body, Command, ReloadAnswer, RunAnswer, SpoolStatus, Status,
};
use crate::adapter::control::server::{ControlError, Incoming, Server};
use crate::adapter::state::History;
use crate::leaf::notify::Notifier;
use crate::leaf::signals::Signals;
use crate::leaf::timer::{Fired, Timer};
use crate::machine::spool::{Spool, SpoolError};
use crate::machine::supervisor::{Decision, Ended, Fate, Launch, Origin, Stream, Supervisor};
use crate::model::config::{self, CatchUp, Config, DEFAULT_KILL_GRACE, Host, RemovedJobs};
use crate::model::record::signal_name;
use crate::policy::hooks::{self, Failure, Limiter, Verdict};
use crate::policy::metrics::{Metrics, MetricsFile, Skip, SpoolCounts};
use crate::policy::overdue::Watch;
use crate::policy::scheduler::{self, Plan};

/// Why jobd could not start or had to stop.
#[derive(Debug)]
pub enum DaemonError {
    Config(config::ConfigError),
    Spool(SpoolError),
    Control(ControlError),
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
    server: Server,
    started_at: DateTime<Utc>,
    /// The last reload's error, shown by `jobctl status` until a reload succeeds.
    reload_error: Option<String>,
    /// `jobctl run --wait` clients, by the run they wait for.
    waiters: Vec<(u64, String)>,
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
}

impl Daemon {
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
        let timer = Timer::new().map_err(system("create a timerfd"))?;
        let plan = Plan::new(&config, Utc::now());
        // First: a live jobd on this socket must be found before recovery treats the
        // spool's running files as left over from a crash.
        let server = Server::bind(&config.socket, config.socket_group.as_deref())
            .map_err(DaemonError::Control)?;
        let spool = Spool::open(&config, Instant::now()).map_err(DaemonError::Spool)?;
        let supervisor = Supervisor::new(boot_id(), History::open(&config.state_dir));
        let started_at = Utc::now();
        let watch = Watch::new(
            &config,
            |job| supervisor.history().last_success(job),
            started_at,
        );
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
            plan,
            supervisor,
            spool,
            server,
            started_at,
            reload_error: None,
            waiters: Vec::new(),
            timer,
            armed: None,
            next_watchdog: notifier
                .watchdog_interval()
                .map(|every| Instant::now() + every),
            notifier,
            last_status: (String::new(), None),
            signals,
            phase: Phase::Running,
            signalled: HashSet::new(),
            watch,
            limiter: Limiter::default(),
            metrics: Metrics::new(started_at),
            metrics_file: config.metrics_file.clone().map(MetricsFile::new),
            config,
        })
    }

    /// Run until shut down by a signal.
    pub fn run(mut self) -> Result<(), DaemonError> {
        self.catch_up();
        self.arm()?;
        self.notifier
            .send(&format!("READY=1\nSTATUS={}", self.summary()));
        loop {
            let now = Instant::now();
            self.supervisor.tick(now);
            self.server.expire(now);
            self.server.report_evicted(now);
            self.tell_systemd(now);
            self.spool.tick(Utc::now(), now, &self.config);
            // A file that could not start frees its worker at once: dispatch again
            // until every start has been tried.
            loop {
                self.spool.dispatch(&mut self.supervisor, &self.config, now);
                let unstarted = self.supervisor.take_unstarted();
                if unstarted.is_empty() {
                    break;
                }
                for ended in unstarted {
                    self.on_ended(ended);
                }
            }
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
            if ready.listener {
                self.server.accept(now);
            }
            for client in ready.clients {
                if let Some(incoming) = self.server.ready(client, now) {
                    self.on_request(incoming)?;
                }
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
        if let Some(client) = self.server.next_deadline() {
            deadline = earliest(deadline, client);
        }
        if let Some(watchdog) = self.next_watchdog {
            deadline = earliest(deadline, watchdog);
        }
        if let Some(metrics) = self
            .metrics_file
            .as_ref()
            .and_then(MetricsFile::next_deadline)
        {
            deadline = earliest(deadline, metrics);
        }
        match self.phase {
            Phase::Running => {}
            // Once the grace is over (or a second signal cut it short) it is no
            // deadline any more: in the past, it would make poll spin until the jobs end.
            Phase::Draining { until, signals } if signals < 2 && until > now => {
                deadline = earliest(deadline, until)
            }
            Phase::Draining { .. } => {}
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
        let mut fds = Vec::with_capacity(4 + pipes.len());
        fds.push(PollFd::new(self.timer.fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(self.signals.fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(self.spool.fd(), PollFlags::POLLIN));
        let control = self.server.fds(now);
        fds.extend(
            control
                .iter()
                .map(|(_, fd, flags)| PollFd::new(*fd, *flags)),
        );
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
            listener: ready(&fds[3]),
            clients: control[1..]
                .iter()
                .zip(&fds[4..])
                .filter(|(_, fd)| ready(fd))
                .filter_map(|((id, _, _), _)| *id)
                .collect(),
            pipes: pipes
                .iter()
                .zip(&fds[3 + control.len()..])
                .filter(|(_, fd)| ready(fd))
                .map(|((key, stream, _), _)| (*key, *stream))
                .collect(),
        })
    }

    /// Jobs with `catch_up: once` that missed instants while jobd was down run once now.
    fn catch_up(&mut self) {
        let now = Utc::now();
        let mono = Instant::now();
        for job in self
            .config
            .jobs
            .iter()
            .filter(|j| j.enabled && j.catch_up == CatchUp::Once)
        {
            let last = self
                .supervisor
                .history()
                .last(&job.name)
                .and_then(|run| DateTime::parse_from_rfc3339(&run.scheduled_at).ok())
                .map(|at| at.to_utc());
            if let Some(due) = scheduler::catch_up(job, last, now) {
                info!(
                    "{}: catching up on {} instant{} missed while jobd was down (catch_up: once)",
                    job.name,
                    due.missed + 1,
                    plural(due.missed as usize + 1)
                );
                let fired = self.supervisor.fire(job, due.instant, 0, mono);
                self.metrics
                    .skipped(&job.name, Skip::Overlap, fired.dropped);
            }
        }
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
                    let fired = self.supervisor.fire(job, due.instant, due.missed, now);
                    self.metrics.skipped(&job.name, Skip::Missed, due.missed);
                    self.metrics
                        .skipped(&job.name, Skip::Overlap, fired.dropped);
                }
            }
            let wall = Utc::now();
            for alert in self.watch.due(wall) {
                warn!(
                    "{}: overdue: no success for {} (alert_after)",
                    alert.job,
                    crate::leaf::duration::format(Duration::from_secs(
                        (wall - alert.since).num_seconds().max(0) as u64
                    ))
                );
                self.metrics.became_overdue();
                self.failed(Failure::overdue(&alert.job, alert.since, wall), false);
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
        let record = &ended.record;
        let failed_for_good = match &ended.origin {
            Origin::Spool(file) => self.spool.ended(file, record, &self.config, Instant::now()),
            Origin::Job => !record.outcome.success() && !ended.stopped_by_policy,
            // A hook's failure is logged, and never runs another hook.
            Origin::Hook(_) => false,
        };
        if !matches!(ended.origin, Origin::Hook(_)) {
            self.metrics.ended(record);
        }
        if ended.origin == Origin::Job && record.outcome.success() {
            self.watch.succeeded(&record.job, record.ended_at);
        }
        if failed_for_good {
            self.failed(Failure::of_run(record), true);
        }
        let run_id = &ended.record.run_id;
        let now = Instant::now();
        let (answered, waiting): (Vec<_>, Vec<_>) =
            self.waiters.drain(..).partition(|(_, id)| id == run_id);
        self.waiters = waiting;
        for (client, _) in answered {
            let body = Body::Run(RunAnswer {
                decision: "started".to_string(),
                run_id: Some(run_id.clone()),
                ended: Some(ended.record.info()),
            });
            self.server.respond(client, body, now);
        }
    }

    /// A run failed for good, or a job is overdue: run its `on_failure`, unless one is
    /// running for it, one ran less than `repeat_after` ago (when `limit`), or jobd is
    /// shutting down.
    fn failed(&mut self, failure: Failure, limit: bool) {
        if self.phase != Phase::Running {
            return;
        }
        let (hook, run) = match (
            self.config.job(&failure.job),
            self.config.task(&failure.job),
        ) {
            (Some(job), _) => (job.on_failure.as_ref(), &job.run),
            (None, Some(task)) => (task.on_failure.as_ref(), &task.run),
            (None, None) => return,
        };
        let Some(hook) = hook else { return };
        let name = failure.job.clone();
        // One hook per job at a time, whatever repeat_after says: a job failing
        // every few milliseconds must not start thousands of them.
        let verdict = if self.supervisor.hook_running(&name) {
            self.limiter.suppress(&name)
        } else {
            self.limiter
                .failed(&name, hook.repeat_after, limit, failure.at)
        };
        let Verdict::Run { suppressed } = verdict else {
            info!(
                "{name}: on_failure not run: one is running, or one ran less than {} ago \
                 (repeat_after); counted",
                crate::leaf::duration::format(hook.repeat_after)
            );
            self.metrics.hook(&name, false);
            return;
        };
        self.metrics.hook(&name, true);
        let spec = hooks::spec(hook, run, self.config.dir());
        let vars = failure.vars(suppressed);
        let stdin = failure.stdin();
        let run_name = hooks::run_name(&name);
        self.supervisor.launch(
            Launch {
                name: &run_name,
                spec: &spec,
                extra: crate::adapter::process::Extra {
                    args: &[],
                    env: Some(&vars),
                },
                stdin: Some(&stdin),
                scheduled_at: failure.at,
                attempt: 1,
                origin: Origin::Hook(name.clone()),
            },
            Instant::now(),
        );
    }

    /// Rewrite the metrics file if something changed and the last write is old enough.
    fn write_metrics(&mut self, now: Instant) {
        let Some(file) = &mut self.metrics_file else {
            return;
        };
        if self.metrics.version() != file.version() {
            file.changed(self.metrics.version());
        }
        if !file.due(now) {
            return;
        }
        // Counted only when the file is written anyway: they never wake jobd.
        for (job, count) in self.plan.passed_disabled(Utc::now()) {
            self.metrics.skipped(&job, Skip::Disabled, count);
        }
        file.changed(self.metrics.version());
        let (queued, delayed, running, retrying) = self.spool.counts();
        let (done_total, failed_total) = self.spool.finished();
        let counts = SpoolCounts {
            queued,
            delayed,
            running,
            retrying,
            done_total,
            failed_total,
        };
        let wall = Utc::now();
        let (metrics, config, watch) = (&self.metrics, &self.config, &self.watch);
        file.flush(now, || {
            metrics.render(config, |job| watch.is_overdue(job, wall), counts)
        });
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
        self.reload_with(false).map(|_| ())
    }

    /// A one-line summary for systemd's STATUS=.
    fn summary(&self) -> String {
        let (queued, delayed, running, retrying) = self.spool.counts();
        format!(
            "{} jobs, {} running; one-off: {} queued, {} delayed, {} running, {} retrying",
            self.config.jobs.iter().filter(|j| j.enabled).count(),
            self.supervisor.running().saturating_sub(running),
            queued,
            delayed,
            running,
            retrying
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

    /// Re-read the jobfile; apply it unless `dry_run`. A broken jobfile changes nothing.
    fn reload_with(&mut self, dry_run: bool) -> Result<ReloadAnswer, DaemonError> {
        if self.phase != Phase::Running {
            return Ok(refused("jobd is shutting down".to_string()));
        }
        let loaded = config::reload(
            &self.jobfile,
            self.environment.as_deref(),
            &self.host,
            Some(&self.config),
        );
        let config = match loaded {
            Ok(config) => config,
            Err(err) => {
                let error = err.to_string();
                if !dry_run {
                    error!("reload refused, keeping the running configuration:\n{error}");
                    self.reload_error = Some(error.clone());
                    self.metrics.reloaded(false);
                }
                return Ok(refused(error));
            }
        };
        let mut answer = answer::reload_diff(&self.config, &config);
        if dry_run {
            // What `apply` would refuse, a dry run refuses too.
            if let Err(err) = Spool::check(&config) {
                return Ok(refused(err.to_string()));
            }
            return Ok(answer);
        }
        // Between RELOADING=1 and READY=1 systemd holds other reloads back.
        self.notifier.reloading();
        let applied = self.apply(config, &mut answer);
        self.notifier.send("READY=1");
        applied?;
        Ok(answer)
    }

    fn apply(&mut self, config: Config, answer: &mut ReloadAnswer) -> Result<(), DaemonError> {
        if let Err(err) = self.spool.reload(&config) {
            let error = err.to_string();
            error!("reload refused, keeping the running configuration: {error}");
            self.reload_error = Some(error.clone());
            *answer = refused(error);
            self.metrics.reloaded(false);
            return Ok(());
        }
        let now = Utc::now();
        self.plan.reload(&config, now);
        let history = self.supervisor.history();
        self.watch
            .reload(&config, |job| history.last_success(job), now);
        if config.removed_jobs == RemovedJobs::Stop {
            for job in self
                .config
                .jobs
                .iter()
                .filter(|j| config.job(&j.name).is_none())
            {
                self.supervisor.stop_job(
                    &job.name,
                    "removed from the jobfile (removed_jobs: stop)",
                    Instant::now(),
                );
            }
        }
        if config.metrics_file != self.config.metrics_file {
            // node_exporter would go on reading the old file's last values.
            if let Some(old) = &self.metrics_file {
                let _ = std::fs::remove_file(old.path());
            }
            self.metrics_file = config.metrics_file.clone().map(MetricsFile::new);
        }
        info!(
            "reloaded {}: {} jobs, {} tasks; added: [{}], removed: [{}], changed: [{}]",
            config.file.display(),
            config.jobs.len(),
            config.tasks.len(),
            answer.added.join(", "),
            answer.removed.join(", "),
            answer.changed.join(", ")
        );
        self.config = config;
        self.reload_error = None;
        self.metrics.reloaded(true);
        self.armed = None;
        self.arm()?;
        answer.applied = true;
        Ok(())
    }

    /// A request from jobctl. Most are answered at once; `run --wait` when the run ends.
    fn on_request(&mut self, incoming: Incoming) -> Result<(), DaemonError> {
        let now = Instant::now();
        let body = match incoming.request.command {
            Command::Status => Body::Status(self.status()),
            Command::History { job, limit } => match job {
                Some(name) if !self.knows(&name) => {
                    error_body(answer::unknown_job(&self.config, &name))
                }
                job => Body::History {
                    runs: self.supervisor.history().recent(job.as_deref(), limit),
                },
            },
            Command::Next { job, count } => {
                match answer::next(&self.config, &self.plan, job.as_deref(), count) {
                    Ok(instants) => Body::Next { instants },
                    Err(message) => error_body(message),
                }
            }
            Command::Reload { dry_run } => Body::Reload(self.reload_with(dry_run)?),
            Command::Run { job, wait } => match self.run_now(&job, now) {
                Err(message) => error_body(message),
                Ok((_, Some(run_id))) if wait => {
                    self.waiters.push((incoming.client, run_id));
                    return Ok(());
                }
                Ok((decision, run_id)) => Body::Run(RunAnswer {
                    decision,
                    run_id,
                    ended: None,
                }),
            },
        };
        self.server.respond(incoming.client, body, now);
        Ok(())
    }

    /// Whether `name` is a job's or task's, or their hook's, for `jobctl history`.
    fn knows(&self, name: &str) -> bool {
        let known =
            |name: &str| self.config.job(name).is_some() || self.config.task(name).is_some();
        known(name) || name.strip_suffix(hooks::RUN_SUFFIX).is_some_and(known)
    }

    /// `jobctl run JOB`: an instant of the job, now, under its overlap policy.
    fn run_now(&mut self, name: &str, now: Instant) -> Result<(String, Option<String>), String> {
        if self.phase != Phase::Running {
            return Err("jobd is shutting down".to_string());
        }
        let job = self
            .config
            .job(name)
            .ok_or_else(|| answer::unknown_job(&self.config, name))?;
        if !job.enabled {
            return Err(format!(
                "job `{name}` is disabled in this environment (it runs only in: {})",
                job.environments.as_deref().unwrap_or_default().join(", ")
            ));
        }
        info!("{name}: run requested through the control socket");
        let Fate {
            decision,
            run_id,
            dropped,
        } = self.supervisor.fire(job, Utc::now(), 0, now);
        self.metrics.skipped(name, Skip::Overlap, dropped);
        let decision = match decision {
            Decision::Start if run_id.is_none() => {
                let reason = self
                    .supervisor
                    .history()
                    .last(name)
                    .map(|run| run.message.clone())
                    .unwrap_or_default();
                return Err(format!("job `{name}` {reason}"));
            }
            Decision::Start => "started",
            Decision::Skip => "skipped",
            Decision::Queue => "queued",
            Decision::Replace => "replacing",
        };
        Ok((decision.to_string(), run_id))
    }

    fn status(&self) -> Status {
        let (queued, delayed, running, retrying) = self.spool.counts();
        Status {
            daemon: Some(answer::daemon_info(&self.config, self.started_at)),
            reload_error: self.reload_error.clone(),
            problems: self
                .supervisor
                .history()
                .problem()
                .map(str::to_string)
                .into_iter()
                .chain(self.spool.problems())
                .chain(
                    self.metrics_file
                        .as_ref()
                        .and_then(MetricsFile::problem)
                        .map(str::to_string),
                )
                .collect(),
            jobs: answer::jobs(
                &self.config,
                Some(&self.plan),
                self.supervisor.history(),
                |job| self.supervisor.running_of(job),
                |job| self.watch.is_overdue(job, Utc::now()),
            ),
            spool: Some(SpoolStatus {
                dir: self.config.spool.dir.display().to_string(),
                queued,
                delayed,
                running,
                retrying,
                failed_recently: self.spool.failed_recently(),
            }),
        }
    }

    fn on_shutdown_signal(&mut self) {
        let now = Instant::now();
        match self.phase {
            Phase::Running => {
                self.notifier.send("STOPPING=1");
                let grace = self.config.shutdown_grace;
                info!(
                    "shutting down: waiting up to {} for {} running job{}",
                    crate::leaf::duration::format(grace),
                    self.supervisor.running(),
                    plural(self.supervisor.running())
                );
                self.supervisor.forget_pending();
                self.spool.stop();
                self.plan = Plan::default();
                self.watch = Watch::default();
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

struct Ready {
    timer: bool,
    signals: bool,
    spool: bool,
    listener: bool,
    clients: Vec<u64>,
    pipes: Vec<(u64, Stream)>,
}

fn error_body(message: String) -> Body {
    Body::Error { message }
}

fn refused(error: String) -> ReloadAnswer {
    ReloadAnswer {
        applied: false,
        error: Some(error),
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
    }
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
