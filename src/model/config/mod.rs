//! The jobfile as a validated model: everything the rest of jobd trusts without checking.

pub mod accept;
pub(crate) mod checker;
mod cluster;
mod diff;
mod error;
mod load;
mod places;
mod read;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cluster::{Cluster, DEFAULT_LEASE, HOST_ID_VARIABLE, OnHostLoss, Placement, valid_host_id};
pub use diff::{Diff, diff};
pub use error::{ConfigError, Problem, ProblemKind};
pub(crate) use load::valid_name;
pub use load::{parse, parse_reusing};
pub use places::Places;

use crate::leaf::yaml::Pos;
use crate::model::schedule::Schedule;

/// Where jobd keeps its files when the jobfile does not say, and the zone it runs in
/// when the jobfile names none: facts about the host, gathered once by the binary so
/// that parsing stays a pure function of its inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    /// systemd's `$STATE_DIRECTORY` (its first entry).
    pub state_directory: Option<PathBuf>,
    /// systemd's `$RUNTIME_DIRECTORY` (its first entry).
    pub runtime_directory: Option<PathBuf>,
    /// The system's IANA zone name, if it can be found.
    pub local_zone: Option<String>,
    /// `$JOBD_HOST_ID`: the host's name in a cluster, when the jobfile gives none.
    pub host_id_variable: Option<String>,
    /// The host name, the cluster's last resort for a host id.
    pub hostname: Option<String>,
}

impl Host {
    pub fn from_env() -> Host {
        let first_dir = |name| {
            std::env::var_os(name)
                .and_then(|v| std::env::split_paths(&v).next())
                .filter(|p| !p.as_os_str().is_empty())
        };
        Host {
            state_directory: first_dir("STATE_DIRECTORY"),
            runtime_directory: first_dir("RUNTIME_DIRECTORY"),
            local_zone: local_zone_name(),
            host_id_variable: std::env::var(cluster::HOST_ID_VARIABLE)
                .ok()
                .filter(|id| !id.is_empty()),
            hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|name| name.into_string().ok()),
        }
    }
}

/// `$TZ` if it names an IANA zone (as `Europe/Paris` or `:Europe/Paris`), else the zone
/// behind /etc/localtime.
fn local_zone_name() -> Option<String> {
    if let Ok(tz) = std::env::var("TZ") {
        let name = tz.trim_start_matches(':');
        if name.parse::<chrono_tz::Tz>().is_ok() {
            return Some(name.to_string());
        }
    }
    iana_time_zone::get_timezone().ok()
}

/// What ends the name of a job's `on_failure` runs (`send_mail.on_failure`): no job or
/// task may be named so.
pub const HOOK_SUFFIX: &str = ".on_failure";

/// A validated jobfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The jobfile, as an absolute path.
    pub file: PathBuf,
    /// The environment jobd runs in (`-e`), which decides which jobs are enabled.
    pub environment: Option<String>,
    pub timezone: chrono_tz::Tz,
    pub shutdown_grace: Duration,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// Members of this group may also run jobs and reload through the control socket.
    pub socket_group: Option<String>,
    /// Members of this group may read through the control socket (status, history,
    /// next), and nothing more.
    pub read_group: Option<String>,
    /// In the order the jobfile lists them.
    pub jobs: Vec<Job>,
    pub spool: Spool,
    pub tasks: Vec<Task>,
    /// What a reload does with the running instances of jobs it removes.
    pub removed_jobs: RemovedJobs,
    /// Where to write the Prometheus text-format metrics, if anywhere.
    pub metrics_file: Option<PathBuf>,
    /// In the order the jobfile lists them.
    pub runtimes: Vec<Runtime>,
    /// Cluster mode, when the jobfile has `cluster:`.
    pub cluster: Option<Cluster>,
    /// Where each job is in `jobs`: a jobfile may hold thousands, looked up by name at
    /// every instant and on every reload.
    job_index: std::collections::HashMap<String, usize>,
}

impl Config {
    /// The folder the jobfile is in: relative paths and the default workdir start here.
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("/"))
    }

    pub fn job(&self, name: &str) -> Option<&Job> {
        self.job_index.get(name).map(|&index| &self.jobs[index])
    }

    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|task| task.name == name)
    }

    pub fn runtime(&self, name: &str) -> Option<&Runtime> {
        self.runtimes.iter().find(|runtime| runtime.name == name)
    }
}

/// A scheduled job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub name: String,
    pub schedule: Schedule,
    pub run: RunSpec,
    pub max_instances: u32,
    pub on_overlap: OnOverlap,
    /// `None`: every environment. Otherwise the job runs only in the ones listed.
    pub environments: Option<Vec<String>>,
    /// Whether the job runs in the environment jobd was started with.
    pub enabled: bool,
    pub catch_up: CatchUp,
    pub on_failure: Option<Hook>,
    /// Alert (run `on_failure` with outcome `overdue`) when the job has not succeeded
    /// for this long.
    pub alert_after: Option<Duration>,
    /// In cluster mode: one host per instant, or every host.
    pub placement: Placement,
    pub on_host_loss: OnHostLoss,
    /// Where the job is defined, for messages.
    pub pos: Pos,
}

/// A kind of one-off job that a spool file may ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub name: String,
    pub run: RunSpec,
    pub retries: u32,
    pub retry_delay: Duration,
    /// `None`: only `spool.workers` limits how many run at once.
    pub max_instances: Option<u32>,
    /// Run when a file fails for good (after its retries).
    pub on_failure: Option<Hook>,
    /// What a spool file may add: by default nothing beyond the task, an id and a time.
    pub accept: accept::Accept,
    pub pos: Pos,
}

/// `on_failure:`: a command run, with the job's workdir, env and user, when a run fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub command: Command,
    pub timeout: Duration,
    /// After a hook has run for a job, its failures within this period run none; they
    /// are counted and passed on to the next hook.
    pub repeat_after: Duration,
}

/// How to start a process: what jobs and tasks share, after `defaults` are merged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    pub command: Command,
    pub workdir: PathBuf,
    /// Added to jobd's own environment; `defaults.env` first, then the job's own.
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
    pub user: Option<String>,
    pub group: Option<String>,
    /// The warm runtime whose server forks this run, if any (`runtime:`); `command`
    /// is then what the server runs, and `env` already holds the runtime's.
    pub runtime: Option<String>,
}

/// A warm runtime (`runtimes:`): a server started once, which imports its preload and
/// forks one fresh process per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    pub name: String,
    /// The server's argv; its first word is the interpreter cold runs fall back to.
    pub command: Vec<String>,
    pub workdir: PathBuf,
    /// `defaults.env`, then the runtime's own: what the server runs with.
    pub env: BTreeMap<String, String>,
    /// What the server imports once (`django`: set up Django and import every app's
    /// commands and task modules).
    pub preload: Vec<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    /// The server is replaced after this many runs.
    pub max_runs: Option<u32>,
    /// The server is replaced, between runs, once its resident memory passes this.
    pub max_rss: Option<u64>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Executed directly, no shell.
    Argv(Vec<String>),
    /// Run by `/bin/sh -c`.
    Shell(String),
}

impl Command {
    /// The command as one line, for status output and logs.
    pub fn display(&self) -> String {
        match self {
            Command::Shell(line) => line.clone(),
            Command::Argv(argv) => argv
                .iter()
                .map(|arg| {
                    if !arg.is_empty()
                        && arg
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
                    {
                        arg.clone()
                    } else {
                        format!("'{}'", arg.replace('\'', r"'\''"))
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// What to do when an instant comes while `max_instances` runs are still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOverlap {
    /// Do not start this instant; log it.
    Skip,
    /// Keep one pending run (coalesced) and start it when a slot frees.
    Queue,
    /// Stop the oldest running instance, then start.
    Replace,
}

/// What a reload does with the running instances of a job it removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovedJobs {
    /// Let them run to their end.
    Finish,
    /// SIGTERM now, SIGKILL after their kill_grace.
    Stop,
}

/// What to do about instants missed while jobd was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    None,
    /// Run one missed instant at start-up.
    Once,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spool {
    pub dir: PathBuf,
    pub workers: u32,
    /// The submitters' group: it may write `tmp/` and `new/` and read what jobd writes
    /// for them. jobd's own user must be a member.
    pub group: Option<String>,
    pub allow_users: Vec<String>,
    pub allow_groups: Vec<String>,
    /// How many files jobd takes in from `new/` at most (waiting, delayed, running or
    /// retrying); more wait in `new/`, untouched.
    pub max_queued: u32,
    /// How many finished files `done/` keeps, and for how long.
    pub keep_done: Retention,
    /// The same for `failed/`.
    pub keep_failed: Retention,
}

/// How much of a result folder is kept; the oldest files go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub count: Option<u32>,
    pub age: Option<Duration>,
}

/// The zone and folders of the jobfile at `path`, even if it has errors (defaults
/// where it cannot be read).
pub fn places(path: &Path, host: &Host) -> Places {
    let (file, text) = read::read_jobfile(path).unwrap_or_else(|err| (err.file, String::new()));
    load::places(&text, &file, host)
}

/// The jobfile at `path`: its absolute path and its text, for `parse`.
pub fn read(path: &Path) -> Result<(PathBuf, String), ConfigError> {
    read::read_jobfile(path)
}

/// Read and validate the jobfile at `path`.
pub fn load(path: &Path, environment: Option<&str>, host: &Host) -> Result<Config, ConfigError> {
    reload(path, environment, host, None)
}

/// `load`, reusing what `previous` (the running jobfile) already parsed.
pub fn reload(
    path: &Path,
    environment: Option<&str>,
    host: &Host,
    previous: Option<&Config>,
) -> Result<Config, ConfigError> {
    let (file, text) = read::read_jobfile(path)?;
    parse_reusing(&text, &file, environment, host, previous)
}

pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_WORKERS: u32 = 2;
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(30);
pub const DEFAULT_KEEP_DONE: u32 = 1000;
pub const DEFAULT_KEEP_FAILED: u32 = 10_000;
pub const DEFAULT_KEEP_FAILED_FOR: Duration = Duration::from_secs(30 * 86_400);
pub const DEFAULT_MAX_QUEUED: u32 = 10_000;
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_HOOK_REPEAT_AFTER: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests;
