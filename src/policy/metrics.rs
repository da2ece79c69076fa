//! `metrics_file:`: counters kept since jobd started, written in the Prometheus text
//! format for node_exporter's textfile collector (atomically: a reader never sees half
//! a file), after runs end and at most once a second.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use log::{error, info};

use crate::leaf::files::{self, Durability};
use crate::model::config::Config;
use crate::model::record::{RunRecord, Verdict};

/// Why an instant did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// A run was still going (on_overlap skip, or a queued instant replaced).
    Overlap,
    /// jobd woke late and collapsed it into a later instant.
    Missed,
    /// The job is not enabled in jobd's environment.
    Disabled,
    /// Cluster mode: the instant could not be claimed (the database was unreachable,
    /// or this host's lease had run out).
    Unclaimed,
}

impl Skip {
    const ALL: [Skip; 4] = [Skip::Overlap, Skip::Missed, Skip::Disabled, Skip::Unclaimed];

    fn label(self) -> &'static str {
        match self {
            Skip::Overlap => "overlap",
            Skip::Missed => "missed",
            Skip::Disabled => "disabled",
            Skip::Unclaimed => "unclaimed",
        }
    }
}

/// One gauge's value for a job, if it has one yet.
type Reading = fn(&JobMetrics) -> Option<f64>;

#[derive(Debug, Default)]
struct JobMetrics {
    runs: [u64; Verdict::ALL.len()],
    last_start: Option<DateTime<Utc>>,
    last_success: Option<DateTime<Utc>>,
    last_duration: Option<Duration>,
    last_lateness: Option<Duration>,
    skipped: BTreeMap<Skip, u64>,
    /// Hooks run, and failures that ran none (rate-limited).
    hooks: (u64, u64),
}

/// What the spool holds, when the file is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpoolCounts {
    pub queued: usize,
    pub delayed: usize,
    pub running: usize,
    pub retrying: usize,
    pub done_total: u64,
    pub failed_total: u64,
}

#[derive(Debug)]
pub struct Metrics {
    started: DateTime<Utc>,
    jobs: BTreeMap<String, JobMetrics>,
    /// Reloads applied, and refused.
    reloads: (u64, u64),
    /// Counts every change, so that the file knows when it is behind.
    version: u64,
}

impl Metrics {
    pub fn new(started: DateTime<Utc>) -> Metrics {
        Metrics {
            started,
            jobs: BTreeMap::new(),
            reloads: (0, 0),
            version: 0,
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// A job became overdue: nothing is counted, but `jobd_job_overdue` changed.
    pub fn became_overdue(&mut self) {
        self.version += 1;
    }

    fn job(&mut self, name: &str) -> &mut JobMetrics {
        self.version += 1;
        if !self.jobs.contains_key(name) {
            self.jobs.insert(name.to_string(), JobMetrics::default());
        }
        self.jobs.get_mut(name).expect("just inserted")
    }

    /// A run of a job or task ended (or could not start).
    pub fn ended(&mut self, record: &RunRecord) {
        let verdict = record.outcome.verdict();
        let job = self.job(&record.job);
        job.runs[verdict as usize] += 1;
        if matches!(
            verdict,
            Verdict::SpawnError | Verdict::Interrupted | Verdict::Lost
        ) {
            // No process of this jobd's ran: nothing to time.
            return;
        }
        job.last_start = Some(record.started_at);
        job.last_duration = (record.ended_at - record.started_at).to_std().ok();
        job.last_lateness = Some(
            (record.started_at - record.scheduled_at)
                .to_std()
                .unwrap_or_default(),
        );
        if verdict == Verdict::Success {
            job.last_success = Some(record.ended_at);
        }
    }

    pub fn skipped(&mut self, job: &str, reason: Skip, count: u64) {
        if count > 0 {
            *self.job(job).skipped.entry(reason).or_default() += count;
        }
    }

    /// A failure of `job` ran its hook (`ran`), or was held back by `repeat_after`.
    pub fn hook(&mut self, job: &str, ran: bool) {
        let hooks = &mut self.job(job).hooks;
        if ran {
            hooks.0 += 1;
        } else {
            hooks.1 += 1;
        }
    }

    pub fn reloaded(&mut self, applied: bool) {
        self.version += 1;
        if applied {
            self.reloads.0 += 1;
        } else {
            self.reloads.1 += 1;
        }
    }

    /// The text format, for every job and task of `config` (zero counters included,
    /// so that a rate over them is defined from the start).
    pub fn render(
        &self,
        config: &Config,
        overdue: impl Fn(&str) -> bool,
        spool: SpoolCounts,
    ) -> String {
        let idle = JobMetrics::default();
        let names: Vec<&str> = config
            .jobs
            .iter()
            .map(|j| j.name.as_str())
            .chain(config.tasks.iter().map(|t| t.name.as_str()))
            .collect();
        let of = |name: &str| self.jobs.get(name).unwrap_or(&idle);
        let mut out = String::with_capacity(256 + names.len() * 1024);

        family(
            &mut out,
            "jobd_job_runs_total",
            "counter",
            "Runs of each job and task that ended, by outcome.",
        );
        for name in &names {
            for verdict in Verdict::ALL {
                sample(
                    &mut out,
                    "jobd_job_runs_total",
                    &[("job", name), ("outcome", verdict.word())],
                    of(name).runs[verdict as usize] as f64,
                );
            }
        }
        let times: [(&str, &str, Reading); 4] = [
            (
                "jobd_job_last_start_timestamp_seconds",
                "When the last run started, as Unix time.",
                |m| m.last_start.map(unix),
            ),
            (
                "jobd_job_last_success_timestamp_seconds",
                "When the last successful run ended, as Unix time.",
                |m| m.last_success.map(unix),
            ),
            (
                "jobd_job_last_duration_seconds",
                "How long the last run took.",
                |m| m.last_duration.map(|d| d.as_secs_f64()),
            ),
            (
                "jobd_job_last_lateness_seconds",
                "How long after its instant the last run started.",
                |m| m.last_lateness.map(|d| d.as_secs_f64()),
            ),
        ];
        for (metric, help, value) in times {
            family(&mut out, metric, "gauge", help);
            for name in &names {
                if let Some(v) = value(of(name)) {
                    sample(&mut out, metric, &[("job", name)], v);
                }
            }
        }
        family(
            &mut out,
            "jobd_job_skipped_total",
            "counter",
            "Instants of each job that did not run, by reason.",
        );
        for job in &config.jobs {
            for reason in Skip::ALL {
                let count = of(&job.name).skipped.get(&reason).copied().unwrap_or(0);
                sample(
                    &mut out,
                    "jobd_job_skipped_total",
                    &[("job", &job.name), ("reason", reason.label())],
                    count as f64,
                );
            }
        }
        family(
            &mut out,
            "jobd_job_overdue",
            "gauge",
            "1 while a job with alert_after has gone that long without success.",
        );
        for job in config.jobs.iter().filter(|j| j.alert_after.is_some()) {
            let value = if overdue(&job.name) { 1.0 } else { 0.0 };
            sample(&mut out, "jobd_job_overdue", &[("job", &job.name)], value);
        }
        family(
            &mut out,
            "jobd_failure_hooks_total",
            "counter",
            "Failures that ran the on_failure hook, or ran none (repeat_after).",
        );
        for name in &names {
            let (ran, suppressed) = of(name).hooks;
            for (result, count) in [("run", ran), ("suppressed", suppressed)] {
                sample(
                    &mut out,
                    "jobd_failure_hooks_total",
                    &[("job", name), ("result", result)],
                    count as f64,
                );
            }
        }
        family(
            &mut out,
            "jobd_spool_files",
            "gauge",
            "One-off files jobd holds, by state.",
        );
        for (state, count) in [
            ("queued", spool.queued),
            ("delayed", spool.delayed),
            ("running", spool.running),
            ("retrying", spool.retrying),
        ] {
            sample(
                &mut out,
                "jobd_spool_files",
                &[("state", state)],
                count as f64,
            );
        }
        family(
            &mut out,
            "jobd_spool_finished_total",
            "counter",
            "One-off files moved to done/ or failed/, by result.",
        );
        for (result, count) in [("done", spool.done_total), ("failed", spool.failed_total)] {
            sample(
                &mut out,
                "jobd_spool_finished_total",
                &[("result", result)],
                count as f64,
            );
        }
        family(
            &mut out,
            "jobd_reloads_total",
            "counter",
            "Reloads of the jobfile, by result.",
        );
        for (result, count) in [("success", self.reloads.0), ("failure", self.reloads.1)] {
            sample(
                &mut out,
                "jobd_reloads_total",
                &[("result", result)],
                count as f64,
            );
        }
        family(
            &mut out,
            "jobd_start_time_seconds",
            "gauge",
            "When jobd started, as Unix time.",
        );
        sample(&mut out, "jobd_start_time_seconds", &[], unix(self.started));
        out
    }
}

fn unix(at: DateTime<Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1e6
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// The file itself: written when something changed, at most once a second.
#[derive(Debug)]
pub struct MetricsFile {
    path: PathBuf,
    changed: bool,
    /// The version of the counters the file holds, or is about to.
    version: u64,
    last_write: Option<Instant>,
    /// Set while writing fails, so the error is logged once.
    failing: bool,
    error: Option<String>,
}

const MIN_INTERVAL: Duration = Duration::from_secs(1);

impl MetricsFile {
    pub fn new(path: PathBuf) -> MetricsFile {
        MetricsFile {
            path,
            changed: true,
            version: 0,
            last_write: None,
            failing: false,
            error: None,
        }
    }

    /// Why the file could not be written the last time, if it could not.
    pub fn problem(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The counters are now at `version`: the file is behind.
    pub fn changed(&mut self, version: u64) {
        self.version = version;
        self.changed = true;
    }

    /// Lift the once-a-second limit for the next write (the last one, at shutdown).
    pub fn allow_now(&mut self) {
        self.last_write = None;
    }

    /// When the loop should wake to write, if something is waiting to be written.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.changed {
            return None;
        }
        Some(
            self.last_write
                .map_or_else(Instant::now, |at| at + MIN_INTERVAL),
        )
    }

    /// Whether something changed and the last write is a second old.
    pub fn due(&self, now: Instant) -> bool {
        self.changed && self.last_write.is_none_or(|at| at + MIN_INTERVAL <= now)
    }

    pub fn flush(&mut self, now: Instant, text: impl FnOnce() -> String) {
        if !self.due(now) {
            return;
        }
        self.changed = false;
        self.last_write = Some(now);
        // Read by node_exporter, whoever it runs as; never half a file (it ignores
        // the hidden temporary).
        let written = files::replace(&self.path, text().as_bytes(), 0o644, Durability::Unsynced);
        self.error = written
            .as_ref()
            .err()
            .map(|e| format!("cannot write the metrics file {}: {e}", self.path.display()));
        match written {
            Ok(()) if self.failing => {
                self.failing = false;
                info!("metrics: writing {} works again", self.path.display());
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                error!(
                    "metrics: cannot write {}: {e} (retrying after each run)",
                    self.path.display()
                );
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{self, Host};
    use crate::model::record::Outcome;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn counts_runs_skips_and_hooks_in_the_text_format() {
        let host = Host {
            local_zone: Some("UTC".into()),
            ..Host::default()
        };
        let config = config::parse(
            "jobs:\n  a:\n    every: 1s\n    command: [x]\n    alert_after: 1m\ntasks:\n  t:\n    command: [x]\n",
            Path::new("/app/jobd.yaml"),
            None,
            &host,
        )
        .unwrap();
        let mut metrics = Metrics::new(at(0));
        let run = RunRecord {
            job: "a".into(),
            run_id: "1".into(),
            attempt: 1,
            scheduled_at: at(10),
            started_at: at(10) + chrono::Duration::milliseconds(2),
            ended_at: at(12),
            outcome: Outcome::Success,
            output: vec![],
        };
        metrics.ended(&run);
        metrics.ended(&RunRecord {
            outcome: Outcome::Failure { code: 1 },
            ..run.clone()
        });
        metrics.skipped("a", Skip::Overlap, 2);
        metrics.hook("a", true);
        metrics.hook("a", false);
        metrics.reloaded(false);
        let text = metrics.render(&config, |_| true, SpoolCounts::default());
        for line in [
            "jobd_job_runs_total{job=\"a\",outcome=\"success\"} 1",
            "jobd_job_runs_total{job=\"a\",outcome=\"failure\"} 1",
            "jobd_job_runs_total{job=\"t\",outcome=\"timeout\"} 0",
            "jobd_job_last_success_timestamp_seconds{job=\"a\"} 1800000012",
            "jobd_job_last_lateness_seconds{job=\"a\"} 0.002",
            "jobd_job_skipped_total{job=\"a\",reason=\"overlap\"} 2",
            "jobd_job_skipped_total{job=\"a\",reason=\"disabled\"} 0",
            "jobd_job_overdue{job=\"a\"} 1",
            "jobd_failure_hooks_total{job=\"a\",result=\"suppressed\"} 1",
            "jobd_reloads_total{result=\"failure\"} 1",
            "jobd_start_time_seconds 1800000000",
            "# TYPE jobd_job_runs_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }

    #[test]
    fn writes_when_changed_at_most_once_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = MetricsFile::new(dir.path().join("jobd.prom"));
        let start = Instant::now();
        file.flush(start, || "one\n".into());
        assert_eq!(std::fs::read_to_string(file.path()).unwrap(), "one\n");
        file.changed(1);
        file.flush(start + Duration::from_millis(500), || "two\n".into());
        assert_eq!(std::fs::read_to_string(file.path()).unwrap(), "one\n");
        assert_eq!(file.next_deadline(), Some(start + MIN_INTERVAL));
        file.flush(start + MIN_INTERVAL, || "two\n".into());
        assert_eq!(std::fs::read_to_string(file.path()).unwrap(), "two\n");
        assert_eq!(file.next_deadline(), None);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
    }
}
