//! Warm runtimes: one server per runtime of the jobfile, which imports its preload
//! once and forks one fresh process per run (docs/runtimes.md). A run goes warm only
//! to a ready server; otherwise (starting, failed, restarting after a reload) it runs
//! cold, as the runtime's interpreter with the job's command, so no run ever waits for
//! a server or is lost.

pub mod channel;
pub mod server;

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::adapter::process::{SpawnError, SpawnRequest, Spawned};
use crate::leaf::now::Now;
use crate::leaf::timestamp;
use crate::model::config::{Command, RunSpec, Runtime};
use crate::model::record::{ExitStatus, signal_name};
use server::{Heard, Part, Server, State};

/// The first wait before a failed server is started again; it doubles up to the most.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MOST_BACKOFF: Duration = Duration::from_secs(60);

/// What became of a run handed to the runtimes.
pub enum Warm {
    /// Forked by a server.
    Forked(Spawned),
    /// The server could not start it (its own error, as a cold start would have).
    Refused(SpawnError),
    /// No ready server: run this spec cold instead.
    Cold(RunSpec),
}

/// How one runtime is doing, for `jobctl status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeStatus {
    pub name: String,
    /// `starting`, `ready`, `failed` (runs start cold until it is back) or `stopped`.
    pub state: String,
    pub pid: Option<i32>,
    /// When its current server started, RFC 3339.
    pub since: Option<String>,
    /// Runs its current server has forked.
    pub runs: u64,
    /// Servers started again after one failed or died.
    pub restarts: u32,
    pub last_error: Option<String>,
}

/// Per runtime, what outlives one server.
#[derive(Debug, Default)]
struct Health {
    /// Its server failed, and no server has been ready since.
    failing: bool,
    restarts: u32,
    last_error: Option<String>,
    /// When to start a server again after a failure.
    retry_at: Option<Instant>,
    backoff: Duration,
}

#[derive(Default)]
pub struct Runtimes {
    defs: Vec<Runtime>,
    /// Servers by key: the current one of each runtime, and retiring ones.
    servers: HashMap<u64, Server>,
    next_key: u64,
    health: HashMap<String, Health>,
    /// Runs whose process ended, for the daemon to take.
    exits: Vec<(Pid, ExitStatus)>,
}

impl Runtimes {
    /// Take on the jobfile's runtimes: every running server is retired (a deploy may
    /// have changed the code it imported) and new ones start. Until they are ready,
    /// runs start cold; runs in flight finish under the old servers.
    pub fn configure(&mut self, defs: &[Runtime], now: Now) {
        self.retire_all();
        self.defs = defs.to_vec();
        self.health
            .retain(|name, _| defs.iter().any(|d| d.name == *name));
        for def in defs {
            self.health.entry(def.name.clone()).or_default().retry_at = None;
            self.start(&def.name, now);
        }
    }

    /// Every server takes no more runs (a reload, or shutdown).
    pub fn retire_all(&mut self) {
        for server in self.servers.values_mut() {
            server.retire();
        }
    }

    fn start(&mut self, name: &str, now: Now) {
        let Some(def) = self.defs.iter().find(|d| d.name == name) else {
            return;
        };
        match Server::start(def, now.wall) {
            Ok(server) => {
                self.next_key += 1;
                self.servers.insert(self.next_key, server);
            }
            Err(why) => self.failed(name, why, now.mono),
        }
    }

    /// A server failed: its runs go cold, and it is started again after a backoff.
    fn failed(&mut self, name: &str, why: String, now: Instant) {
        let health = self.health.entry(name.to_string()).or_default();
        health.backoff = if health.backoff.is_zero() {
            FIRST_BACKOFF
        } else {
            (health.backoff * 2).min(MOST_BACKOFF)
        };
        error!(
            "runtime {name}: {why}; its runs start cold; trying again in {}s",
            health.backoff.as_secs()
        );
        health.last_error = Some(why);
        health.failing = true;
        health.retry_at = Some(now + health.backoff);
    }

    /// The current server of `name`, if it is ready for runs.
    fn ready(&mut self, name: &str) -> Option<&mut Server> {
        self.servers
            .values_mut()
            .find(|s| s.runtime == name && s.state == State::Ready)
    }

    /// Start a run with a `runtime:` through its server, or say how to run it cold.
    pub fn spawn(&mut self, request: &SpawnRequest) -> Warm {
        let name = request.spec.runtime.as_deref().unwrap_or_default();
        if let Some(server) = self.ready(name) {
            match server.run(request) {
                Ok(spawned) => {
                    self.after_run(name);
                    return Warm::Forked(spawned);
                }
                Err(Some(refused)) => return Warm::Refused(refused),
                Err(None) => {}
            }
        }
        Warm::Cold(self.cold(request.spec))
    }

    /// A server that has served `max_runs` is replaced (it finishes its runs first).
    fn after_run(&mut self, name: &str) {
        let Some(def) = self.defs.iter().find(|d| d.name == name) else {
            return;
        };
        let max_runs = def.max_runs.map(u64::from);
        let Some(server) = self.ready(name) else {
            return;
        };
        let why = if max_runs.is_some_and(|max| server.runs >= max) {
            Some(format!("served {} runs (max_runs)", server.runs))
        } else {
            None
        };
        if let Some(why) = why {
            info!("runtime {name}: replacing server pid {}: {why}", server.pid);
            server.retire();
            self.start(name, Now::read());
        }
    }

    /// The same command, cold: the runtime's interpreter with the job's command as its
    /// arguments, in the same workdir and environment.
    fn cold(&self, spec: &RunSpec) -> RunSpec {
        let interpreter = spec
            .runtime
            .as_deref()
            .and_then(|name| self.defs.iter().find(|d| d.name == name))
            .map(|def| {
                crate::adapter::process::resolve(&def.command[0], &def.workdir)
                    .to_string_lossy()
                    .into_owned()
            });
        let mut argv: Vec<String> = interpreter.into_iter().collect();
        if let Command::Argv(command) = &spec.command {
            argv.extend(command.iter().cloned());
        }
        RunSpec {
            command: Command::Argv(argv),
            runtime: None,
            ..spec.clone()
        }
    }

    /// Every descriptor of every server, to poll.
    pub fn fds(&self) -> Vec<(u64, Part, BorrowedFd<'_>)> {
        self.servers
            .iter()
            .flat_map(|(&key, server)| {
                server
                    .fds()
                    .into_iter()
                    .map(move |(part, fd)| (key, part, fd))
            })
            .collect()
    }

    /// A server's descriptor is readable.
    pub fn readable(&mut self, key: u64, part: Part, now: Now) {
        let Some(server) = self.servers.get_mut(&key) else {
            return;
        };
        let heard = server.readable(part);
        self.hear(key, heard, now);
    }

    fn hear(&mut self, key: u64, heard: Vec<Heard>, now: Now) {
        for event in heard {
            let Some(server) = self.servers.get_mut(&key) else {
                return;
            };
            let name = server.runtime.clone();
            match event {
                Heard::Ready => {
                    let health = self.health.entry(name).or_default();
                    health.backoff = Duration::ZERO;
                    health.failing = false;
                }
                Heard::Failed(why) => {
                    server.abandon();
                    self.failed(&name, format!("its preload failed: {why}"), now.mono);
                }
                Heard::Exited(pid, status) => {
                    self.exits.push((pid, status));
                    self.check_memory(key);
                }
                Heard::Closed => {
                    if server.state != State::Retiring {
                        server.abandon();
                        self.failed(&name, "its server closed its socket".to_string(), now.mono);
                    }
                }
            }
        }
    }

    /// A server past `max_rss` is replaced, between runs.
    fn check_memory(&mut self, key: u64) {
        let Some(server) = self.servers.get_mut(&key) else {
            return;
        };
        let Some(max) = self
            .defs
            .iter()
            .find(|d| d.name == server.runtime)
            .and_then(|d| d.max_rss)
        else {
            return;
        };
        if server.state == State::Ready
            && let Some(rss) = server.rss()
            && rss > max
        {
            info!(
                "runtime {}: replacing server pid {}: {} MiB resident, more than max_rss",
                server.runtime,
                server.pid,
                rss >> 20
            );
            server.retire();
            let name = server.runtime.clone();
            self.start(&name, Now::read());
        }
    }

    /// Runs whose process ended since the last call.
    pub fn take_exits(&mut self) -> Vec<(Pid, ExitStatus)> {
        for key in self.servers.keys().copied().collect::<Vec<_>>() {
            if let Some(server) = self.servers.get_mut(&key) {
                let heard = server.messages();
                if !heard.is_empty() {
                    // Messages read meanwhile (while waiting for a `started`).
                    let now = Now::read();
                    self.hear(key, heard, now);
                }
            }
        }
        std::mem::take(&mut self.exits)
    }

    /// A child of jobd ended: if it was a server, it is gone (a retired one has done
    /// its work; a current one failed, and is started again later). True when it was.
    pub fn reaped(&mut self, pid: Pid, status: ExitStatus, now: Now) -> bool {
        let Some((&key, _)) = self.servers.iter().find(|(_, s)| s.pid == pid) else {
            return false;
        };
        let mut server = self.servers.remove(&key).expect("just found");
        // What it said before it went: the ends of its last runs.
        let heard = server.messages();
        self.servers.insert(key, server);
        self.hear(key, heard, now);
        let server = self.servers.remove(&key).expect("just put back");
        if server.busy() > 0 {
            warn!(
                "runtime {}: server pid {pid} ended with {} run{} going; they were killed with it",
                server.runtime,
                server.busy(),
                crate::leaf::words::plural(server.busy())
            );
        }
        if server.state == State::Retiring {
            info!(
                "runtime {}: retired server pid {pid} has exited",
                server.runtime
            );
            return true;
        }
        let how = match status {
            ExitStatus::Code(code) => format!("exited with code {code}"),
            ExitStatus::Signal(signal) => format!("was killed by {}", signal_name(signal)),
        };
        let health = self.health.entry(server.runtime.clone()).or_default();
        if health.retry_at.is_none() {
            self.failed(&server.runtime, format!("its server {how}"), now.mono);
        }
        true
    }

    /// Start again the servers whose backoff is over.
    pub fn tick(&mut self, now: Now) {
        let due: Vec<String> = self
            .health
            .iter()
            .filter(|(_, h)| h.retry_at.is_some_and(|at| at <= now.mono))
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let health = self.health.entry(name.clone()).or_default();
            health.retry_at = None;
            health.restarts += 1;
            self.start(&name, now);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.health.values().filter_map(|h| h.retry_at).min()
    }

    /// Each runtime of the jobfile, for `jobctl status`.
    pub fn status(&self) -> Vec<RuntimeStatus> {
        self.defs
            .iter()
            .map(|def| {
                let current = self
                    .servers
                    .values()
                    .find(|s| s.runtime == def.name && s.state != State::Retiring);
                let health = self.health.get(&def.name);
                let failing = health.is_some_and(|h| h.failing);
                let state = match current.map(|s| s.state) {
                    Some(State::Ready) => "ready",
                    _ if failing => "failed",
                    Some(State::Starting) => "starting",
                    _ => "stopped",
                };
                RuntimeStatus {
                    name: def.name.clone(),
                    state: state.to_string(),
                    pid: current.map(|s| s.pid.as_raw()),
                    since: current.map(|s| timestamp::precise(s.started_at)),
                    runs: current.map_or(0, |s| s.runs),
                    restarts: health.map_or(0, |h| h.restarts),
                    last_error: health.and_then(|h| h.last_error.clone()),
                }
            })
            .collect()
    }

    /// What the runtimes cannot do right now, in words.
    pub fn problems(&self) -> Vec<String> {
        self.status()
            .into_iter()
            .filter(|s| s.state == "failed")
            .map(|s| {
                format!(
                    "runtime {}: {}; its runs start cold",
                    s.name,
                    s.last_error.as_deref().unwrap_or("its server failed")
                )
            })
            .collect()
    }

    /// Whether any server still runs (shutdown waits for them).
    pub fn any(&self) -> bool {
        !self.servers.is_empty()
    }
}
