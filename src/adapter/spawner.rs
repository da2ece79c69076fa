//! The seam between the supervisor and the processes it runs: what starts a run's
//! process and signals it. `System` forks and execs; tests put a double in its place,
//! and warm runtimes are another spawner behind the same calls.

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::adapter::orphans;
use crate::adapter::process::{self, SpawnError, SpawnRequest, Spawned};
use crate::adapter::runtime::{Runtimes, Warm};

pub trait Spawner {
    fn spawn(&mut self, request: &SpawnRequest) -> Result<Spawned, SpawnError>;

    /// Send `signal` to the process group led by `pgid`; false when the group is gone.
    fn signal_group(&mut self, pgid: Pid, signal: Signal) -> bool;

    /// Send `signal` to one process.
    fn signal(&mut self, pid: Pid, signal: Signal);

    /// The processes of run `run_id` that are not in its own group (they left it with
    /// `setsid`), among jobd's descendants. Asked only at a timeout.
    fn strays(&mut self, run_id: &str) -> Vec<Pid>;

    /// The warm runtimes' servers, when this spawner has them.
    fn runtimes(&mut self) -> Option<&mut Runtimes> {
        None
    }

    fn runtimes_ref(&self) -> Option<&Runtimes> {
        None
    }
}

/// Processes forked and exec'd by jobd itself, or forked by a warm runtime's server.
#[derive(Default)]
pub struct System {
    pub runtimes: Runtimes,
}

impl Spawner for System {
    fn spawn(&mut self, request: &SpawnRequest) -> Result<Spawned, SpawnError> {
        if request.spec.runtime.is_none() {
            return process::spawn(request);
        }
        match self.runtimes.spawn(request) {
            Warm::Forked(spawned) => Ok(spawned),
            Warm::Refused(error) => Err(error),
            Warm::Cold(spec) => process::spawn(&SpawnRequest {
                spec: &spec,
                ..*request
            }),
        }
    }

    fn runtimes(&mut self) -> Option<&mut Runtimes> {
        Some(&mut self.runtimes)
    }

    fn runtimes_ref(&self) -> Option<&Runtimes> {
        Some(&self.runtimes)
    }

    fn signal_group(&mut self, pgid: Pid, signal: Signal) -> bool {
        process::signal_group(pgid, signal)
    }

    fn signal(&mut self, pid: Pid, signal: Signal) {
        let _ = nix::sys::signal::kill(pid, signal);
    }

    fn strays(&mut self, run_id: &str) -> Vec<Pid> {
        orphans::of_run(run_id, Some(Pid::this()))
    }
}

/// Stands in for real processes in unit tests: each spawn gets the next pid and real
/// pipes whose write ends the test holds, and every spawn and signal is recorded.
#[cfg(test)]
pub mod fake {
    use std::collections::BTreeMap;
    use std::os::fd::OwnedFd;

    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    use super::Spawner;
    use crate::adapter::process::{SpawnError, SpawnRequest, Spawned};

    /// What one spawn was asked.
    #[derive(Debug, Clone)]
    pub struct Spawn {
        pub pid: Pid,
        pub run_id: String,
        pub program: String,
        pub env: BTreeMap<String, String>,
        pub vars: Vec<(&'static str, String)>,
    }

    #[derive(Default)]
    pub struct Fake {
        next_pid: i32,
        pub spawned: Vec<Spawn>,
        /// The write ends of each run's stdout and stderr, by pid.
        pub writers: BTreeMap<i32, (OwnedFd, OwnedFd)>,
        /// (target, signal, to the group rather than the process)
        pub signals: Vec<(Pid, Signal, bool)>,
        /// Groups that no longer exist.
        pub gone: Vec<Pid>,
        /// Every spawn fails.
        pub fail: bool,
        pub strays: Vec<Pid>,
    }

    impl Spawner for Fake {
        fn spawn(&mut self, request: &SpawnRequest) -> Result<Spawned, SpawnError> {
            if self.fail {
                return Err(SpawnError::MissingWorkdir(request.spec.workdir.clone()));
            }
            self.next_pid += 1;
            let pid = Pid::from_raw(1_000_000 + self.next_pid);
            let (out_r, out_w) = nix::unistd::pipe().unwrap();
            let (err_r, err_w) = nix::unistd::pipe().unwrap();
            for fd in [&out_r, &err_r] {
                nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                )
                .unwrap();
            }
            self.writers.insert(pid.as_raw(), (out_w, err_w));
            self.spawned.push(Spawn {
                pid,
                run_id: request.run_id.to_string(),
                program: request.spec.command.display(),
                env: request.env.cloned().unwrap_or_default(),
                vars: request.vars.to_vec(),
            });
            Ok(Spawned {
                pid,
                stdout: out_r,
                stderr: err_r,
            })
        }

        fn signal_group(&mut self, pgid: Pid, signal: Signal) -> bool {
            let alive = !self.gone.contains(&pgid);
            self.signals.push((pgid, signal, true));
            alive
        }

        fn signal(&mut self, pid: Pid, signal: Signal) {
            self.signals.push((pid, signal, false));
        }

        fn strays(&mut self, _run_id: &str) -> Vec<Pid> {
            self.strays.clone()
        }
    }
}
