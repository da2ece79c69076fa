//! The seam between the supervisor and the processes it runs: what starts a run's
//! process and signals it. `System` forks and execs; tests put a double in its place,
//! and warm runtimes are another spawner behind the same calls.

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::adapter::orphans;
use crate::adapter::process::{self, SpawnError, SpawnRequest, Spawned};

pub trait Spawner {
    fn spawn(&mut self, request: &SpawnRequest) -> Result<Spawned, SpawnError>;

    /// Send `signal` to the process group led by `pgid`; false when the group is gone.
    fn signal_group(&mut self, pgid: Pid, signal: Signal) -> bool;

    /// Send `signal` to one process.
    fn signal(&mut self, pid: Pid, signal: Signal);

    /// The processes of run `run_id` that are not in its own group (they left it with
    /// `setsid`), among jobd's descendants. Asked only at a timeout.
    fn strays(&mut self, run_id: &str) -> Vec<Pid>;
}

/// Processes forked and exec'd by jobd itself.
#[derive(Debug, Default)]
pub struct System;

impl Spawner for System {
    fn spawn(&mut self, request: &SpawnRequest) -> Result<Spawned, SpawnError> {
        process::spawn(request)
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
