//! Starting a job's process and signalling its process group.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Std, Stdio};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, User};

use crate::leaf::account;
use crate::model::config::{Command, RunSpec};

/// What to start for one run.
#[derive(Debug, Clone, Copy)]
pub struct SpawnRequest<'a> {
    pub run_id: &'a str,
    pub spec: &'a RunSpec,
    /// Arguments after the spec's argv (a spool file's).
    pub args: &'a [String],
    /// Variables after the spec's env (a spool file's, a hook's).
    pub env: Option<&'a BTreeMap<String, String>>,
    /// jobd's own `JOBD_*`, set last.
    pub vars: &'a [(&'static str, String)],
    /// What the process reads on stdin (else /dev/null).
    pub stdin: Option<&'a [u8]>,
}

/// A started process: the leader of its own process group, with its output pipes
/// (non-blocking).
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Why a job could not start. The message names the cause, for the log and the run record.
#[derive(Debug)]
#[non_exhaustive]
pub enum SpawnError {
    MissingWorkdir(PathBuf),
    UnknownUser(String),
    UnknownGroup(String),
    /// `user:` names another user, and only root may switch users.
    NotRoot(String),
    /// The data for its stdin could not be prepared.
    Stdin(std::io::Error),
    /// A warm runtime's server could not fork it (its workdir is missing, ...).
    Runtime {
        runtime: String,
        error: String,
    },
    /// exec failed: the program is missing, not executable, …
    Exec {
        program: String,
        workdir: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::MissingWorkdir(dir) => {
                write!(
                    f,
                    "workdir {} does not exist or is not a directory",
                    dir.display()
                )
            }
            SpawnError::UnknownUser(user) => write!(f, "user `{user}` does not exist"),
            SpawnError::UnknownGroup(group) => write!(f, "group `{group}` does not exist"),
            SpawnError::NotRoot(user) => {
                write!(
                    f,
                    "cannot run as user `{user}`: jobd is not running as root"
                )
            }
            SpawnError::Stdin(error) => write!(f, "cannot prepare its stdin: {error}"),
            SpawnError::Runtime { runtime, error } => {
                write!(f, "runtime {runtime} could not start it: {error}")
            }
            SpawnError::Exec {
                program,
                workdir,
                error,
            } => {
                let what = match error.kind() {
                    std::io::ErrorKind::NotFound if program.contains('/') => {
                        "no such file".to_string()
                    }
                    std::io::ErrorKind::NotFound => "not found in PATH".to_string(),
                    std::io::ErrorKind::PermissionDenied => {
                        "permission denied (is it executable?)".to_string()
                    }
                    _ => error.to_string(),
                };
                write!(f, "cannot run `{program}` in {}: {what}", workdir.display())
            }
        }
    }
}

impl std::error::Error for SpawnError {}

/// Start a run's process in its own process group: the spec's command with the
/// request's arguments appended, the spec's env, then the request's, then jobd's own
/// variables.
pub fn spawn(request: &SpawnRequest) -> Result<Spawned, SpawnError> {
    let spec = request.spec;
    if !spec.workdir.is_dir() {
        return Err(SpawnError::MissingWorkdir(spec.workdir.clone()));
    }
    let mut command = match &spec.command {
        Command::Argv(argv) => {
            let mut command = Std::new(resolve(&argv[0], &spec.workdir));
            command.args(&argv[1..]);
            command
        }
        Command::Shell(line) => {
            // `sh -c LINE jobd ARG...`: extra arguments are "$1"…, never parsed by the
            // shell, and the shell's messages start with "jobd:".
            let mut command = Std::new("/bin/sh");
            command.arg("-c").arg(line).arg("jobd");
            command
        }
    };
    let stdin = match request.stdin {
        None => Stdio::null(),
        Some(data) => Stdio::from(in_memory(data).map_err(SpawnError::Stdin)?),
    };
    command
        .args(request.args)
        .current_dir(&spec.workdir)
        .envs(&spec.env)
        .envs(request.env.into_iter().flatten())
        .envs(request.vars.iter().map(|(k, v)| (k, v)))
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    as_user(&mut command, spec.user.as_deref(), spec.group.as_deref())?;
    let mut child = command.spawn().map_err(|error| SpawnError::Exec {
        program: match &spec.command {
            Command::Argv(argv) => argv[0].clone(),
            Command::Shell(_) => "/bin/sh".to_string(),
        },
        workdir: spec.workdir.clone(),
        error,
    })?;
    let pid = Pid::from_raw(child.id() as i32);
    let stdout: OwnedFd = child.stdout.take().expect("stdout is piped").into();
    let stderr: OwnedFd = child.stderr.take().expect("stderr is piped").into();
    for fd in [&stdout, &stderr] {
        // The loop reads whatever is there and never waits on one child.
        let _ = fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    }
    // `child` is dropped without waiting: jobd reaps every process with waitpid(-1).
    drop(child);
    Ok(Spawned {
        pid,
        stdout,
        stderr,
    })
}

/// A program named with a relative path is found relative to the job's workdir, not
/// jobd's; a bare name is left for the PATH lookup.
pub fn resolve(program: &str, workdir: &Path) -> OsString {
    let path = Path::new(program);
    if program.contains('/') && path.is_relative() {
        workdir.join(path).into_os_string()
    } else {
        program.into()
    }
}

struct Identity {
    name: String,
    home: PathBuf,
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
}

/// Make `command` run as `user` and `group` (jobd's own when both are None): its
/// `HOME`, `USER` and `LOGNAME`, and the switch between fork and exec. Call it before
/// adding other `pre_exec` steps: a change of user clears some process settings
/// (the parent-death signal among them).
pub fn as_user(
    command: &mut Std,
    user: Option<&str>,
    group: Option<&str>,
) -> Result<(), SpawnError> {
    let Some(identity) = identity(user, group)? else {
        return Ok(());
    };
    command
        .env("HOME", &identity.home)
        .env("USER", &identity.name)
        .env("LOGNAME", &identity.name);
    let Identity {
        uid, gid, groups, ..
    } = identity;
    // SAFETY: the closure runs in the child between fork and exec, and only makes
    // the setgroups/setgid/setuid system calls, which are async-signal-safe; the
    // group list was computed before the fork.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(gid)?;
            nix::unistd::setuid(uid)?;
            Ok(())
        });
    }
    Ok(())
}

/// The user and groups to switch to, or `None` to run as jobd's own user.
fn identity(user: Option<&str>, group: Option<&str>) -> Result<Option<Identity>, SpawnError> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let me = Uid::effective();
    let user = match user {
        Some(name) => lookup_user(name)?,
        None => User::from_uid(me)
            .ok()
            .flatten()
            .ok_or_else(|| SpawnError::UnknownUser(me.to_string()))?,
    };
    let gid = match group {
        Some(name) => lookup_group(name)?,
        None => user.gid,
    };
    if !me.is_root() {
        if user.uid == me && gid == Gid::effective() {
            return Ok(None);
        }
        return Err(SpawnError::NotRoot(user.name));
    }
    let name = std::ffi::CString::new(user.name.clone())
        .map_err(|_| SpawnError::UnknownUser(user.name.clone()))?;
    let groups = nix::unistd::getgrouplist(&name, gid).unwrap_or_else(|_| vec![gid]);
    Ok(Some(Identity {
        name: user.name,
        home: user.dir,
        uid: user.uid,
        gid,
        groups,
    }))
}

fn lookup_user(name: &str) -> Result<User, SpawnError> {
    account::user(name).ok_or_else(|| SpawnError::UnknownUser(name.to_string()))
}

fn lookup_group(name: &str) -> Result<Gid, SpawnError> {
    account::gid(name).ok_or_else(|| SpawnError::UnknownGroup(name.to_string()))
}

/// Send `signal` to every process in the group led by `pgid`. False when the group is
/// gone.
pub fn signal_group(pgid: Pid, signal: Signal) -> bool {
    !matches!(
        kill(Pid::from_raw(-pgid.as_raw()), signal),
        Err(Errno::ESRCH)
    )
}

/// `data` in an anonymous in-memory file, read from its start: a child's stdin that
/// never blocks jobd, however much it holds or however slowly the child reads.
pub fn in_memory(data: &[u8]) -> std::io::Result<OwnedFd> {
    use std::io::{Seek, Write};
    let fd = nix::sys::memfd::memfd_create(c"jobd-stdin", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(data)?;
    file.rewind()?;
    Ok(file.into())
}
