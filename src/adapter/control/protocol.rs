//! The control protocol: one JSON object per line each way, versioned. These types are
//! also what `jobctl ... --json` prints.

use serde::{Deserialize, Serialize};

use crate::adapter::runtime::RuntimeStatus;
use crate::model::record::{LogLine, RunInfo};

/// Raised only for changes an older jobctl could not read.
pub const VERSION: u32 = 1;

/// A request is at most this long; a longer one is refused and the connection closed.
pub const MAX_REQUEST: usize = 64 * 1024;

/// An answer is at most this long: a larger one is replaced by an error saying so, so
/// that no request makes jobd hold or send an unbounded answer.
pub const MAX_ANSWER: usize = 16 << 20;

/// The most instants one `next` request may ask for, per job.
pub const MAX_NEXT: usize = 1000;

/// The most instants one `next` answer may hold, all jobs together: the work of an
/// answer is bounded whatever the jobfile holds.
pub const MAX_NEXT_IN_ALL: usize = 100_000;

/// The most lines one `logs` request may ask for.
pub const MAX_LOG_LINES: usize = 10_000;

/// The most runs one `history` request may ask for.
pub const MAX_HISTORY: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
    #[serde(flatten)]
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Status,
    History {
        #[serde(default)]
        job: Option<String>,
        limit: usize,
    },
    /// Fire a job now, under its max_instances and on_overlap.
    Run {
        job: String,
        /// Answer when the run has ended rather than when it started.
        #[serde(default)]
        wait: bool,
    },
    Reload {
        #[serde(default)]
        dry_run: bool,
    },
    Next {
        #[serde(default)]
        job: Option<String>,
        count: usize,
    },
    /// Recent output of a job (or of the run with this id, or of the latest runs), and
    /// with `follow` what comes after, streamed.
    Logs {
        #[serde(default)]
        target: Option<String>,
        lines: usize,
        #[serde(default)]
        follow: bool,
    },
}

impl Command {
    /// The request's name, as jobctl's command line has it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Status => "status",
            Command::History { .. } => "history",
            Command::Run { .. } => "run",
            Command::Reload { .. } => "reload",
            Command::Next { .. } => "next",
            Command::Logs { .. } => "logs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub version: u32,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    Error {
        message: String,
    },
    /// Lines of output, for `logs`.
    Logs {
        lines: Vec<LogLine>,
    },
    /// One line of output as it is written, streamed to a `run --wait` or a
    /// `logs --follow`; the request's answer follows (or, for `logs`, never does).
    Line(LogLine),
    /// Streamed lines not sent: the client read too slowly.
    Dropped {
        lines: u64,
    },
    Status(Status),
    History {
        runs: Vec<RunInfo>,
    },
    Run(RunAnswer),
    Reload(ReloadAnswer),
    Next {
        instants: Vec<NextInstant>,
    },
}

/// `jobctl status --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub daemon: Option<DaemonInfo>,
    /// The last reload that failed, while its error stands.
    pub reload_error: Option<String>,
    /// What jobd cannot do right now (write its history, file spool results...), in
    /// words; empty when all is well.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    pub jobs: Vec<JobStatus>,
    pub spool: Option<SpoolStatus>,
    /// The warm runtimes, with their servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtimes: Vec<RuntimeStatus>,
    /// Cluster mode: this host and the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatus>,
}

/// Cluster mode as this host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub host_id: String,
    pub jobfile_hash: String,
    pub lease_seconds: u64,
    /// Whether this host claims cluster-wide instants and one-offs now.
    pub available: bool,
    /// The hosts as the last heartbeat found them (this one included), by id.
    pub hosts: Vec<ClusterHost>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterHost {
    pub host_id: String,
    pub jobfile_hash: String,
    /// Its jobfile's hash differs from this host's.
    pub other_jobfile: bool,
    /// Its lease, as its heartbeats renew it.
    pub lease_seconds: u64,
    /// Its lease still runs.
    pub alive: bool,
    pub started_at: String,
    /// Since its last heartbeat, on the database's clock.
    pub seen_ago_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub version: String,
    pub started_at: String,
    pub uptime_seconds: u64,
    pub jobfile: String,
    pub environment: Option<String>,
    pub timezone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub name: String,
    pub schedule: String,
    pub enabled: bool,
    /// The next instant, RFC 3339 in UTC; none when disabled or never again.
    pub next: Option<String>,
    pub running: usize,
    pub last: Option<RunInfo>,
    /// It has `alert_after:` and has gone that long without success.
    #[serde(default)]
    pub overdue: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolStatus {
    pub dir: String,
    pub queued: usize,
    pub delayed: usize,
    pub running: usize,
    pub retrying: usize,
    /// Files in failed/ that failed in the last 24 hours.
    pub failed_recently: usize,
    /// `spool.workers`: how many one-off jobs run at once, all tasks together.
    #[serde(default)]
    pub workers: u32,
    /// Each task's own `max_instances`, if it has one (tasks have none by default).
    #[serde(default)]
    pub tasks: Vec<TaskLimit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLimit {
    pub name: String,
    pub max_instances: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAnswer {
    /// `started`, `skipped`, `queued`, `replacing` (the running instance is being stopped).
    pub decision: String,
    pub run_id: Option<String>,
    /// With `wait`: how the run ended.
    pub ended: Option<RunInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadAnswer {
    pub applied: bool,
    pub error: Option<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextInstant {
    pub job: String,
    pub at: String,
}
