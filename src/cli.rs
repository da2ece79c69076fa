//! The command lines of `jobd` and `jobctl`, defined once: the binaries parse them, and
//! the man-page test and shell completions read the same definitions.

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
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

/// Which jobfile, and which environment's jobs.
#[derive(Debug, Clone, Args)]
pub struct JobfileArgs {
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

    /// Enable the jobs whose `environments:` list NAME (jobs without that key always run)
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
    /// FILE:LINE:COLUMN: MESSAGE.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// How many fire times to print per job
    #[arg(long = "next", value_name = "N", default_value_t = 1)]
    pub next: usize,

    /// Print the fire times strictly after TIME (RFC 3339, e.g. 2027-03-28T01:00:00Z) instead of now
    #[arg(long = "from", value_name = "TIME", value_parser = parse_rfc3339)]
    pub from: Option<DateTime<FixedOffset>>,
}

fn parse_rfc3339(text: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(text).map_err(|e| {
        format!("`{text}` is not an RFC 3339 time like 2027-03-28T01:00:00Z or 2027-03-28T03:00:00+02:00 ({e})")
    })
}

/// jobctl: talk to a running jobd.
#[derive(Debug, Parser)]
#[command(
    name = "jobctl",
    version,
    max_term_width = 100,
    arg_required_else_help = true
)]
pub struct JobctlArgs {}
