//! Shutting down: wait for running jobs up to `shutdown_grace` (a second signal stops
//! them, a third kills everything), then stop the orphans jobd adopted.

use std::time::{Duration, Instant};

use log::{info, warn};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::Daemon;
use crate::adapter::spawner::Spawner;
use crate::leaf::now::Now;
use crate::leaf::words::count;
use crate::leaf::{duration, procfs, timestamp};
use crate::machine::supervisor::Which;
use crate::model::config::DEFAULT_KILL_GRACE;
use crate::model::record::Stop;
use crate::policy::overdue::Watch;
use crate::policy::scheduler::Plan;

/// Where a shutdown has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
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

impl<S: Spawner> Daemon<S> {
    pub(super) fn on_shutdown_signal(&mut self, now: Now) {
        match self.phase {
            Phase::Running => {
                self.notifier.send("STOPPING=1");
                let grace = self.config.shutdown_grace;
                let running = self.supervisor.running();
                if running == 0 {
                    info!("shutting down: no job is running");
                } else {
                    info!(
                        "shutting down: waiting up to {} for {} to end",
                        duration::format(grace),
                        count(running, "running job")
                    );
                }
                for (job, instant) in self.pending.drain() {
                    info!(
                        "{job}: the pending instant at {} will not run: shutting down",
                        timestamp::short(instant)
                    );
                }
                self.spool.stop();
                if let Some(side) = &mut self.cluster {
                    side.machine.close();
                }
                if let Some(runtimes) = self.supervisor.spawner().runtimes() {
                    runtimes.retire_all();
                }
                self.plan = Plan::default();
                self.watch = Watch::default();
                self.phase = Phase::Draining {
                    until: now.mono + grace,
                    signals: 1,
                };
            }
            Phase::Draining { signals: 1, .. } => {
                info!("second shutdown signal: stopping the running jobs now");
                self.supervisor.stop(Which::All, Stop::Shutdown, now);
                self.phase = Phase::Draining {
                    until: now.mono,
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

    /// The deadline the shutdown phase adds to the poll.
    pub(super) fn shutdown_deadline(&self, now: Instant) -> Option<Instant> {
        match self.phase {
            Phase::Running => None,
            // Once the grace is over (or a second signal cut it short) it is no
            // deadline any more: in the past, it would make poll spin until the jobs end.
            Phase::Draining { until, signals } if signals < 2 && until > now => Some(until),
            Phase::Draining { .. } => None,
            Phase::Orphans { kill_at } => Some(kill_at.min(now + ORPHAN_SCAN)),
        }
    }

    /// Move the shutdown along; true when jobd may exit.
    pub(super) fn advance_shutdown(&mut self, now: Now) -> bool {
        match self.phase {
            Phase::Running => false,
            Phase::Draining { until, signals } => {
                if self.supervisor.running() > 0 {
                    if now.mono >= until && signals < 2 {
                        self.supervisor.stop(Which::All, Stop::Shutdown, now);
                        self.phase = Phase::Draining { until, signals: 2 };
                    }
                    return false;
                }
                self.supervisor.kill_all();
                self.phase = Phase::Orphans {
                    kill_at: now.mono + DEFAULT_KILL_GRACE,
                };
                self.advance_shutdown(now)
            }
            Phase::Orphans { kill_at } => {
                self.reap(now);
                let signal = if now.mono >= kill_at {
                    Signal::SIGKILL
                } else {
                    Signal::SIGTERM
                };
                let orphans_gone =
                    self.kill_orphans(signal) == 0 && !self.supervisor.has_lingering();
                // The ends of the last runs go to the cluster before jobd leaves it.
                let left = match &mut self.cluster {
                    Some(side) => {
                        side.machine.leave(now.mono);
                        side.machine.left(now.mono)
                    }
                    None => true,
                };
                orphans_gone && left
            }
        }
    }

    /// Signal every remaining child of jobd (adopted orphans, by now); SIGTERM goes to
    /// each once. Returns how many children remain.
    fn kill_orphans(&mut self, signal: Signal) -> usize {
        let children = procfs::children_of(std::process::id() as i32);
        for &pid in &children {
            let pid = Pid::from_raw(pid);
            if signal == Signal::SIGTERM && !self.signalled.insert(pid) {
                continue;
            }
            info!("stopping adopted orphan pid {pid} with {signal}");
            let _ = kill(pid, signal);
        }
        children.len()
    }
}
