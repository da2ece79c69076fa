//! The one place where a run ends: the history, metrics, the overdue watch, the spool,
//! failure hooks, a waiting instant and `jobctl run --wait` clients all hear of it here,
//! whether the process exited, was stopped, or never started.

use log::{error, info};
use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use super::Daemon;
use super::shutdown::Phase;
use crate::adapter::control::protocol::{Body, RunAnswer};
use crate::adapter::spawner::Spawner;
use crate::leaf::duration;
use crate::leaf::now::Now;
use crate::machine::supervisor::{Ended, Launch, Origin};
use crate::model::record::{ExitStatus, Verdict, signal_name};
use crate::policy::hooks::{self, Alert, Failure};
use crate::policy::overlap::Decision;

impl<S: Spawner> Daemon<S> {
    /// Reap every child that has ended: one SIGCHLD may stand for many.
    pub(super) fn reap(&mut self, now: Now) {
        loop {
            let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Code(code)),
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    (pid, ExitStatus::Signal(signal as i32))
                }
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    error!("waitpid failed: {e}");
                    return;
                }
            };
            if let Some(ended) = self.supervisor.exited(pid, status, now) {
                self.ended(ended, now);
                continue;
            }
            let server = self
                .supervisor
                .spawner()
                .runtimes()
                .is_some_and(|runtimes| runtimes.reaped(pid, status, now));
            if !server {
                info!("reaped adopted orphan pid {pid}: {}", describe(status));
            }
        }
    }

    /// A run has ended.
    pub(super) fn ended(&mut self, ended: Ended, now: Now) {
        let Ended { origin, record } = ended;
        self.journal.ended(&record.run_id);
        // Its last lines, before a `run --wait` client hears of its end.
        self.pass_output();
        self.rings.close(&record.job);
        self.history.push(record.info());
        let verdict = record.outcome.verdict();
        let failed_for_good = match &origin {
            // An attempt a killed jobd left is the spool's recovery's to take up (it
            // runs the file again): here it is only recorded.
            Origin::Spool(_) if verdict == Verdict::Interrupted => false,
            Origin::Spool(file) => self.spool.ended(file, &record, &self.config, now),
            Origin::Oneoff(id) => self.oneoff_ended(*id, &record, now),
            Origin::Job => {
                if let Some(side) = &mut self.cluster {
                    side.machine.run_ended(
                        &record.run_id,
                        verdict.word(),
                        record.outcome.exit_code(),
                        now.mono,
                    );
                }
                verdict.is_failure()
            }
            // A hook's failure is logged, and never runs another hook.
            Origin::Hook(_) => false,
        };
        if !matches!(origin, Origin::Hook(_)) {
            self.metrics.ended(&record);
        }
        if origin == Origin::Job {
            if record.outcome.success() {
                self.watch.succeeded(&record.job, record.ended_at);
            }
            let config = self.config.clone();
            match config.job(&record.job) {
                Some(job) => {
                    let running = self.supervisor.running_of(&job.name);
                    if let Some(instant) = self.pending.next(job, running)
                        && self.phase == Phase::Running
                    {
                        let _ = self.start_job(job, instant, now);
                    }
                }
                None => {
                    self.pending.forget(&record.job);
                }
            }
        }
        if failed_for_good {
            self.failed(Failure::of_run(&record), true, now);
        }
        let (answered, waiting): (Vec<_>, Vec<_>) = self
            .waiters
            .drain(..)
            .partition(|(_, id)| *id == record.run_id);
        self.waiters = waiting;
        for (client, _) in answered {
            let body = Body::Run(RunAnswer {
                decision: Decision::Start.word().to_string(),
                run_id: Some(record.run_id.clone()),
                ended: Some(record.info()),
            });
            self.server.respond(client, body, now.mono);
        }
    }

    /// A run failed for good, or a job is overdue: run its `on_failure`, unless one is
    /// running for it, one ran less than `repeat_after` ago (when `limit`), or jobd is
    /// shutting down.
    pub(super) fn failed(&mut self, failure: Failure, limit: bool, now: Now) {
        if self.phase != Phase::Running {
            return;
        }
        let config = self.config.clone();
        let (hook, run) = match (config.job(&failure.job), config.task(&failure.job)) {
            (Some(job), _) => (job.on_failure.as_ref(), &job.run),
            (None, Some(task)) => (task.on_failure.as_ref(), &task.run),
            (None, None) => return,
        };
        let Some(hook) = hook else { return };
        let name = failure.job.clone();
        // One hook per job at a time, whatever repeat_after says: a job failing
        // every few milliseconds must not start thousands of them.
        let alert = if self.supervisor.hook_running(&name) {
            self.limiter.suppress(&name)
        } else {
            self.limiter
                .failed(&name, hook.repeat_after, limit, failure.at)
        };
        let Alert::Run { suppressed } = alert else {
            info!(
                "{name}: on_failure not run: one is running, or one ran less than {} ago \
                 (repeat_after); counted",
                duration::format(hook.repeat_after)
            );
            self.metrics.hook(&name, false);
            return;
        };
        self.metrics.hook(&name, true);
        let spec = hooks::spec(hook, run, config.dir());
        let vars = failure.vars(suppressed);
        let stdin = failure.stdin();
        let run_name = hooks::run_name(&name);
        let id = self.supervisor.next_id();
        let _ = self.launch(
            id,
            Launch {
                name: &run_name,
                spec: &spec,
                args: &[],
                env: Some(&vars),
                vars: Vec::new(),
                stdin: Some(&stdin),
                scheduled_at: failure.at,
                attempt: 1,
                origin: Origin::Hook(name.clone()),
            },
            now,
        );
    }
}

fn describe(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(code) => format!("exited with code {code}"),
        ExitStatus::Signal(signal) => format!("killed by {}", signal_name(signal)),
    }
}
