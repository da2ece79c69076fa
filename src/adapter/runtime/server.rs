//! One runtime server process: started with its end of the channel as fd 3, its
//! output logged, its messages read. The protocol is docs/runtimes.md.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use log::{info, warn};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::channel::{Channel, FromServer, Received, ToServer};
use crate::adapter::process::{self, SpawnError, SpawnRequest, Spawned};
use crate::leaf::output::Lines;
use crate::model::config::{Command as JobCommand, Runtime};
use crate::model::record::ExitStatus;

/// The protocol version jobd speaks.
const VERSION: u32 = 1;
/// How long a `run` may wait for the server's `started`: it answers as soon as it has
/// forked, so longer means it is stuck, and it is replaced.
const STARTED_WITHIN: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Started; importing its preload.
    Starting,
    Ready,
    /// Told to quit: no more runs; it exits after its last one.
    Retiring,
}

/// Which of a server's descriptors is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Channel,
    Stdout,
    Stderr,
}

/// What a read from a server found, for the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    Ready,
    Failed(String),
    /// A run's process ended.
    Exited(Pid, ExitStatus),
    /// The channel closed: the server is ending.
    Closed,
}

pub struct Server {
    pub runtime: String,
    pub pid: Pid,
    pub state: State,
    pub started_at: DateTime<Utc>,
    /// Runs handed to it.
    pub runs: u64,
    channel: Channel,
    stdout: Option<(OwnedFd, Lines)>,
    stderr: Option<(OwnedFd, Lines)>,
    /// Runs going on, by run id, with their pid.
    in_flight: HashMap<String, Pid>,
    /// Messages read while waiting for a `started`, handled at the next read.
    backlog: VecDeque<FromServer>,
}

impl Server {
    /// Start the server of `runtime` and say hello.
    pub fn start(runtime: &Runtime, now: DateTime<Utc>) -> Result<Server, String> {
        let (channel, theirs) =
            Channel::pair().map_err(|e| format!("cannot make its socket: {e}"))?;
        let mut command = Command::new(process::resolve(&runtime.command[0], &runtime.workdir));
        command
            .args(&runtime.command[1..])
            .current_dir(&runtime.workdir)
            .envs(&runtime.env)
            .env("JOBD_RUNTIME", &runtime.name)
            .env("JOBD_RUNTIME_FD", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        process::as_user(
            &mut command,
            runtime.user.as_deref(),
            runtime.group.as_deref(),
        )
        .map_err(|e| e.to_string())?;
        let fd = theirs.as_raw_fd();
        let jobd = nix::unistd::getpid();
        // SAFETY: between fork and exec the closure makes only async-signal-safe
        // system calls (dup2, prctl, getppid, _exit) on values computed before the
        // fork. It runs after the change of user, which would clear the signal.
        unsafe {
            command.pre_exec(move || {
                nix::libc::dup2(fd, 3);
                nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL, 0, 0, 0);
                // jobd died before the signal was set: nothing would deliver it.
                if nix::libc::getppid() != jobd.as_raw() {
                    nix::libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| {
            format!(
                "cannot run `{}` in {}: {e}",
                runtime.command[0],
                runtime.workdir.display()
            )
        })?;
        drop(theirs);
        let pid = Pid::from_raw(child.id() as i32);
        let pipe = |fd: Option<OwnedFd>| {
            fd.map(|fd| {
                let _ = fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
                (fd, Lines::default())
            })
        };
        let stdout = pipe(child.stdout.take().map(OwnedFd::from));
        let stderr = pipe(child.stderr.take().map(OwnedFd::from));
        // Reaped with every other child, by waitpid(-1).
        drop(child);
        let server = Server {
            runtime: runtime.name.clone(),
            pid,
            state: State::Starting,
            started_at: now,
            runs: 0,
            channel,
            stdout,
            stderr,
            in_flight: HashMap::new(),
            backlog: VecDeque::new(),
        };
        server
            .channel
            .send(
                &ToServer::Hello {
                    version: VERSION,
                    runtime: &runtime.name,
                    preload: &runtime.preload,
                },
                &[],
            )
            .map_err(|e| format!("cannot greet it: {e}"))?;
        info!(
            "runtime {}: started server pid {pid}, importing {}",
            runtime.name,
            if runtime.preload.is_empty() {
                "nothing".to_string()
            } else {
                runtime.preload.join(", ")
            }
        );
        Ok(server)
    }

    /// Hand a run to the server and wait (briefly) for its fork: the run's process
    /// with its output pipes, or why it could not start. `Err(None)` when the server
    /// failed to answer: it is killed (which kills a fork it may have made) and the
    /// caller runs the command cold.
    pub fn run(&mut self, request: &SpawnRequest) -> Result<Spawned, Option<SpawnError>> {
        let JobCommand::Argv(command) = &request.spec.command else {
            return Err(None);
        };
        let mut argv = command.clone();
        argv.extend(request.args.iter().cloned());
        let mut env: BTreeMap<String, String> = std::env::vars().collect();
        env.extend(request.spec.env.clone());
        env.extend(request.env.cloned().unwrap_or_default());
        env.extend(request.vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let stdin = match request.stdin {
            Some(data) => process::in_memory(data),
            None => std::fs::File::open("/dev/null").map(OwnedFd::from),
        }
        .map_err(|e| Some(SpawnError::Stdin(e)))?;
        let pipes = (|| -> std::io::Result<_> {
            let out = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            let err = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            for fd in [&out.0, &err.0] {
                fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            }
            Ok((out, err))
        })();
        let ((out_r, out_w), (err_r, err_w)) = pipes.map_err(|e| Some(SpawnError::Stdin(e)))?;
        let cwd = request.spec.workdir.to_string_lossy();
        let sent = self.channel.send(
            &ToServer::Run {
                run_id: request.run_id,
                argv: &argv,
                env: &env,
                cwd: &cwd,
            },
            &[stdin.as_fd(), out_w.as_fd(), err_w.as_fd()],
        );
        // Only the server's copies may stay open, or the pipes never reach their end.
        drop((stdin, out_w, err_w));
        if let Err(e) = sent {
            warn!("runtime {}: cannot hand it a run: {e}", self.runtime);
            self.abandon();
            return Err(None);
        }
        self.runs += 1;
        let until = Instant::now() + STARTED_WITHIN;
        loop {
            match self.channel.receive() {
                Received::Message(FromServer::Started { run_id, pid })
                    if run_id == request.run_id =>
                {
                    let pid = Pid::from_raw(pid);
                    self.in_flight.insert(run_id, pid);
                    return Ok(Spawned {
                        pid,
                        stdout: out_r,
                        stderr: err_r,
                    });
                }
                Received::Message(FromServer::SpawnError { run_id, error })
                    if run_id == request.run_id =>
                {
                    return Err(Some(SpawnError::Runtime {
                        runtime: self.runtime.clone(),
                        error,
                    }));
                }
                Received::Message(other) => self.backlog.push_back(other),
                Received::Garbage(text) => {
                    warn!("runtime {}: ignoring a message: {text}", self.runtime)
                }
                Received::Empty => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        warn!(
                            "runtime {}: no answer to a run within {}ms; replacing it",
                            self.runtime,
                            STARTED_WITHIN.as_millis()
                        );
                        self.abandon();
                        return Err(None);
                    }
                    let mut fds = [PollFd::new(self.channel.fd(), PollFlags::POLLIN)];
                    let millis = left.as_millis().max(1) as u16;
                    let _ = poll(&mut fds, PollTimeout::from(millis));
                }
                Received::Closed => {
                    self.abandon();
                    return Err(None);
                }
            }
        }
    }

    /// Read what the server said (or printed), without waiting.
    pub fn readable(&mut self, part: Part) -> Vec<Heard> {
        match part {
            Part::Channel => self.messages(),
            Part::Stdout | Part::Stderr => {
                self.log_output(part);
                Vec::new()
            }
        }
    }

    /// Handle the messages read meanwhile and those waiting on the socket.
    pub fn messages(&mut self) -> Vec<Heard> {
        let mut heard = Vec::new();
        while let Some(message) = self.backlog.pop_front() {
            heard.extend(self.handle(message));
        }
        loop {
            match self.channel.receive() {
                Received::Message(message) => heard.extend(self.handle(message)),
                Received::Garbage(text) => {
                    warn!("runtime {}: ignoring a message: {text}", self.runtime)
                }
                Received::Empty => return heard,
                Received::Closed => {
                    heard.push(Heard::Closed);
                    return heard;
                }
            }
        }
    }

    fn handle(&mut self, message: FromServer) -> Option<Heard> {
        match message {
            FromServer::Ready { pid } => {
                if self.state == State::Starting {
                    self.state = State::Ready;
                }
                info!("runtime {}: server pid {pid} is ready", self.runtime);
                Some(Heard::Ready)
            }
            FromServer::Failed { error } => Some(Heard::Failed(error)),
            FromServer::Exited {
                run_id,
                pid,
                code,
                signal,
            } => {
                self.in_flight.remove(&run_id);
                let status = match (code, signal) {
                    (_, Some(signal)) => ExitStatus::Signal(signal),
                    (Some(code), None) => ExitStatus::Code(code),
                    (None, None) => ExitStatus::Code(1),
                };
                Some(Heard::Exited(Pid::from_raw(pid), status))
            }
            // Late answers to a run already given up on: the server was killed.
            FromServer::Started { .. } | FromServer::SpawnError { .. } => None,
        }
    }

    fn log_output(&mut self, part: Part) {
        let (runtime, pid) = (&self.runtime, self.pid);
        let pipe = match part {
            Part::Stdout => &mut self.stdout,
            _ => &mut self.stderr,
        };
        let Some((fd, lines)) = pipe else { return };
        let mut buf = [0u8; 16 * 1024];
        let mut closed = false;
        let mut read = 0;
        while read < 64 * 1024 {
            match nix::unistd::read(&*fd, &mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    read += n;
                    lines.push(&buf[..n], |line| {
                        let text = String::from_utf8_lossy(line);
                        match part {
                            Part::Stdout => info!("runtime {runtime}[{pid}]: {text}"),
                            _ => warn!("runtime {runtime}[{pid}]: {text}"),
                        }
                    });
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        if closed {
            *pipe = None;
        }
    }

    /// Every descriptor to poll.
    pub fn fds(&self) -> Vec<(Part, BorrowedFd<'_>)> {
        let mut fds = vec![(Part::Channel, self.channel.fd())];
        fds.extend(
            self.stdout
                .as_ref()
                .map(|(fd, _)| (Part::Stdout, fd.as_fd())),
        );
        fds.extend(
            self.stderr
                .as_ref()
                .map(|(fd, _)| (Part::Stderr, fd.as_fd())),
        );
        fds
    }

    /// No more runs: the server exits after its last one.
    pub fn retire(&mut self) {
        if self.state != State::Retiring {
            self.state = State::Retiring;
            if self.channel.send(&ToServer::Quit, &[]).is_err() {
                self.abandon();
            }
        }
    }

    /// Kill the server at once: its forks die with it (their parent-death signal).
    pub fn abandon(&mut self) {
        self.state = State::Retiring;
        let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
    }

    pub fn busy(&self) -> usize {
        self.in_flight.len()
    }

    /// Its resident memory, from /proc.
    pub fn rss(&self) -> Option<u64> {
        crate::leaf::procfs::rss(self.pid.as_raw())
    }
}
