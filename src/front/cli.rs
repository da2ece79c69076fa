//! The command lines of `jobd` and `jobctl`, defined once: the binaries parse them, and
//! the man-page test and shell completions read the same definitions.

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset, NaiveDateTime};
use clap::{Args, Parser, Subcommand};

/// jobd: a small, dependable job supervisor.
///
/// Runs the scheduled jobs of a jobfile (seconds resolution, sub-second intervals) and
/// the one-off jobs dropped into its spool directory. Runs in the foreground and logs
/// to stderr. SIGHUP reloads the jobfile; SIGTERM and SIGINT shut down gracefully.
#[derive(Debug, Parser)]
#[command(name = "jobd", version, max_term_width = 100)]
pub struct JobdArgs {
    #[command(flatten)]
    pub jobfile: JobfileArgs,

    #[command(subcommand)]
    pub command: Option<JobdCommand>,
}

/// Which jobfile: jobd and jobctl find it the same way.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// The jobfile
    #[arg(
        short = 'c',
        long = "config",
        value_name = "PATH",
        env = "JOBD_CONFIG",
        default_value = "jobd.yaml",
        global = true
    )]
    pub config: PathBuf,
}

/// Which jobfile, and which environment's jobs.
#[derive(Debug, Clone, Args)]
pub struct JobfileArgs {
    #[command(flatten)]
    pub file: ConfigArg,

    /// Enable the jobs whose `environments:` list NAME (jobs without that key always run);
    /// jobctl refuses a NAME other than the one a running jobd was started with
    #[arg(
        short = 'e',
        long = "environment",
        value_name = "NAME",
        env = "JOBD_ENVIRONMENT",
        global = true
    )]
    pub environment: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum JobdCommand {
    /// Validate the jobfile and print the next fire times of every enabled job
    ///
    /// Exits 0 if the jobfile is valid, 1 if not; each problem is printed on stderr as
    /// FILE:LINE:COLUMN: MESSAGE. Also warns about what the jobfile asks of this host
    /// that it lacks (a program or workdir that does not exist, an unknown user or
    /// group, a socket_group or read_group whose members cannot reach the socket):
    /// warnings leave the exit code 0 unless --strict.
    Check(CheckArgs),
    /// Create or upgrade cluster mode's schema in the jobfile's `cluster.database_url`
    ///
    /// Safe to run on any host at any time, beside running jobds: each step is applied
    /// once, under a lock. jobd does the same when it starts. Exits 0 when the schema
    /// is up to date, 1 if not.
    Migrate,
    /// Print a shell completion script for jobd on stdout
    Completions(CompletionsArgs),
}

/// Which shell to write completions for.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// How many fire times to print per job
    #[arg(long = "next", value_name = "N", default_value_t = 1)]
    pub next: usize,

    /// Treat warnings as errors: exit 1 if there is any (for deploy scripts)
    #[arg(long = "strict")]
    pub strict: bool,

    /// Print the fire times strictly after TIME (RFC 3339, e.g. 2027-03-28T01:00:00Z) instead of now
    #[arg(long = "from", value_name = "TIME", value_parser = parse_rfc3339)]
    pub from: Option<DateTime<FixedOffset>>,
}

fn parse_rfc3339(text: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(text).map_err(|e| {
        format!("`{text}` is not an RFC 3339 time like 2027-03-28T01:00:00Z or 2027-03-28T03:00:00+02:00 ({e})")
    })
}

/// jobctl: see and steer a running jobd, and submit one-off jobs.
///
/// Finds the daemon's socket and spool from the same jobfile as jobd (-c, $JOBD_CONFIG,
/// ./jobd.yaml), or the socket from --socket. Exit codes: 0 success, 1 the request failed,
/// 2 usage error (also: no jobfile to find jobd by, or -e naming another environment than
/// the running jobd's), 3 jobd is not running (status and history still print what the
/// state directory holds).
#[derive(Debug, Parser)]
#[command(name = "jobctl", version, max_term_width = 100)]
pub struct JobctlArgs {
    #[command(flatten)]
    pub jobfile: JobfileArgs,

    /// The control socket, instead of the one the jobfile names
    #[arg(long = "socket", value_name = "PATH", global = true)]
    pub socket: Option<PathBuf>,

    #[command(subcommand)]
    pub command: JobctlCommand,
}

#[derive(Debug, Subcommand)]
pub enum JobctlCommand {
    /// Show every job (schedule, next run, last run, running count), the one-off queue and the daemon
    Status {
        /// Print the status as one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Show past runs, newest last, with the last output lines of failed ones
    History {
        /// Only this job's (or task's) runs
        #[arg(value_name = "JOB")]
        job: Option<String>,
        /// How many runs (at most 10000)
        #[arg(short = 'n', value_name = "N", default_value_t = 20)]
        count: usize,
        /// Print the runs as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show what runs printed: the last lines of a job (or task), of one run, or of
    /// the latest runs; from jobd, or from its state directory when it is down
    Logs {
        /// A job or task name, or a run id
        #[arg(value_name = "JOB|RUN_ID")]
        target: Option<String>,
        /// How many lines (at most 10000)
        #[arg(short = 'n', value_name = "N", default_value_t = 50)]
        lines: usize,
        /// Go on printing lines as they are written (needs a running jobd)
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Fire a job now, under its max_instances and on_overlap; with --wait, print its
    /// output as it comes and exit with its exit status
    Run {
        #[arg(value_name = "JOB")]
        job: String,
        /// Wait for the run to end and exit with its exit code (128+signal if killed)
        #[arg(long)]
        wait: bool,
    },
    /// Re-read the jobfile and apply it; print what changed, or the error (exit 1)
    Reload {
        /// Only validate the jobfile on disk and print what a reload would change
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// Show the coming fire times of every enabled job, soonest first
    Next {
        /// Only this job's (exit 1 if it is disabled in jobd's environment)
        #[arg(value_name = "JOB")]
        job: Option<String>,
        /// How many per job (at most 1000), as `jobd check --next`
        #[arg(short = 'n', value_name = "N", default_value_t = 1)]
        count: usize,
    },
    /// Queue a one-off run of a task: write a spool file (through tmp/ into new/) and print its name
    ///
    /// Works whether or not jobd is running: a running jobd starts it at once (or at its
    /// time), a stopped one when it starts. In cluster mode the request goes into the
    /// cluster's table instead (any live host runs it), unless --spool.
    Submit(SubmitArgs),
    /// List the spool's files by state (queued, delayed, running, retrying, done, failed; forwarded in cluster mode) with their reasons
    ///
    /// Reads the spool's folders, so it works the same whether or not jobd is running.
    /// With NAME, shows that file (a file name or an id) with its attempts.
    Spool(SpoolArgs),
    /// Print a shell completion script for jobctl on stdout
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The task to run, from the jobfile's `tasks:`
    #[arg(value_name = "TASK")]
    pub task: String,

    /// Run it at TIME: RFC 3339 (2026-11-27T18:00:00Z), or without an offset
    /// (2026-11-27T18:00:00) in the jobfile's time zone; a time past runs now
    #[arg(long = "at", value_name = "TIME", value_parser = parse_at, conflicts_with = "delay")]
    pub at: Option<At>,

    /// Run it after DURATION (e.g. 90s, 5m, 1h30m)
    #[arg(long = "in", value_name = "DURATION", value_parser = parse_duration)]
    pub delay: Option<std::time::Duration>,

    /// Set an environment variable for the run (repeatable); the task must accept it (accept.env)
    #[arg(long = "env", value_name = "K=V", value_parser = parse_assignment)]
    pub env: Vec<(String, String)>,

    /// A JSON value for the run to read from its spool file (the task must set accept.data: true)
    #[arg(long = "data", value_name = "JSON", value_parser = parse_json)]
    pub data: Option<serde_json::Value>,

    /// In cluster mode, write the spool file anyway (this host's jobd forwards it to the cluster)
    #[arg(long = "spool")]
    pub spool: bool,

    /// Arguments appended to the task's command, passed literally (never to a shell); each must match the task's accept.args
    #[arg(last = true, value_name = "ARG")]
    pub args: Vec<String>,
}

/// `--at`: an instant, or a wall-clock time for the jobfile's zone to place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Instant(DateTime<FixedOffset>),
    Local(NaiveDateTime),
}

fn parse_at(text: &str) -> Result<At, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(At::Instant(at));
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
    .map(At::Local)
    .ok_or_else(|| {
        format!(
            "`{text}` is not a time like 2026-11-27T18:00:00Z, 2026-11-27T19:00:00+01:00 \
                 or 2026-11-27T19:00:00 (in the jobfile's time zone)"
        )
    })
}

#[derive(Debug, Args)]
pub struct SpoolArgs {
    /// Only this file: its name in the spool, or its id
    #[arg(value_name = "NAME")]
    pub name: Option<String>,

    /// Print the files as JSON, each with its result
    #[arg(long)]
    pub json: bool,
}

fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not one JSON value: {e}"))
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::leaf::duration::parse(text).map_err(|e| e.to_string())
}

fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}
