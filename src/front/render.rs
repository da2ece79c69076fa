//! jobctl's tables: aligned, readable on 80 columns, in colour only on a terminal.
//! Every string from jobd or its state goes through `shown`: a child's output or a
//! name a submitter chose must not drive the terminal.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;

use crate::adapter::control::protocol::{ClusterStatus, NextInstant, SpoolStatus, Status};
use crate::adapter::runtime::RuntimeStatus;
use crate::leaf::visible;
use crate::machine::spool::listing::{Entry, Listed};
use crate::model::record::{LogLine, RunInfo, Stream, Verdict};

/// `text` with its control characters written out.
fn shown(text: &str) -> String {
    visible::escape(text).into_owned()
}

/// How to show instants and whether to colour.
pub struct Style {
    pub zone: Tz,
    pub colour: bool,
    pub now: DateTime<Utc>,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn red(&self, text: &str) -> String {
        self.paint("31", text)
    }

    fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }
}

fn parse(at: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(at).ok().map(|t| t.to_utc())
}

/// `3s`, `5m`, `2h10m`, `3d`: short, for tables.
pub fn short(seconds: i64) -> String {
    let s = seconds.unsigned_abs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 if s % 3600 >= 60 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        short((ms / 1000) as i64)
    }
}

/// A wall-clock time in the jobfile's zone: the time alone today, the date too
/// otherwise; with its UTC offset, so that it reads the same as the log's UTC times
/// and is never ambiguous in the hour a daylight-saving change repeats.
fn clock(at: DateTime<Utc>, style: &Style) -> String {
    let local = at.with_timezone(&style.zone);
    if local.date_naive() == style.now.with_timezone(&style.zone).date_naive() {
        local.format("%H:%M:%S%:z").to_string()
    } else {
        local.format("%m-%d %H:%M%:z").to_string()
    }
}

/// What a run's outcome looks like in a narrow column.
fn result(run: &RunInfo) -> String {
    match (run.outcome, run.exit_code, &run.signal) {
        (Verdict::Success, _, _) => "ok".to_string(),
        (Verdict::Failure, Some(code), _) => format!("exit {code}"),
        (Verdict::Killed, _, Some(signal)) => shown(signal),
        (Verdict::SpawnError, _, _) => "not started".to_string(),
        (other, _, _) => other.word().to_string(),
    }
}

fn pad(text: &str, width: usize) -> String {
    // Colour codes take no room on screen: pad by the visible length.
    let visible = strip(text).chars().count();
    format!("{text}{}", " ".repeat(width.saturating_sub(visible)))
}

fn strip(text: &str) -> String {
    let mut out = String::new();
    let mut escape = false;
    for c in text.chars() {
        match (escape, c) {
            (false, '\x1b') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|t| strip(t).chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, text)| {
                if c + 1 == row.len() {
                    text.clone()
                } else {
                    pad(text, widths[c])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// `jobctl status`.
pub fn status(status: &Status, style: &Style) -> String {
    let mut out = String::new();
    match &status.daemon {
        Some(d) => {
            let _ = writeln!(
                out,
                "jobd {} (pid {}), up {}, environment {}, time zone {}\njobfile {}",
                shown(&d.version),
                d.pid,
                short(d.uptime_seconds as i64),
                shown(d.environment.as_deref().unwrap_or("none")),
                shown(&d.timezone),
                shown(&d.jobfile)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "{}",
                style.bold("jobd is not running; last known state:")
            );
        }
    }
    if let Some(error) = &status.reload_error {
        let _ = writeln!(
            out,
            "{}",
            style.red("last reload FAILED, the previous jobfile is still in use:")
        );
        for line in error.lines() {
            let _ = writeln!(out, "  {}", shown(line));
        }
    }
    for problem in &status.problems {
        let _ = writeln!(
            out,
            "{}",
            style.red(&format!("PROBLEM: {}", shown(problem)))
        );
    }
    out.push('\n');
    let mut rows = vec![
        ["JOB", "SCHEDULE", "NEXT", "LAST", "RESULT", "RUNNING"]
            .map(|h| style.bold(h))
            .to_vec(),
    ];
    for job in &status.jobs {
        let next = match job.next.as_deref().and_then(parse) {
            _ if !job.enabled => style.dim("disabled"),
            Some(at) => format!(
                "in {} ({})",
                short((at - style.now).num_seconds().max(0)),
                clock(at, style)
            ),
            None => "never".to_string(),
        };
        let (last, outcome) = match &job.last {
            Some(run) => {
                let started = parse(&run.started_at).unwrap_or(style.now);
                let ago = format!(
                    "{} ago, took {}",
                    short((style.now - started).num_seconds().max(0)),
                    millis(run.duration_ms)
                );
                let outcome = result(run);
                let outcome = if run.outcome.is_failure() {
                    style.red(&outcome)
                } else {
                    outcome
                };
                (ago, outcome)
            }
            None => ("-".to_string(), "-".to_string()),
        };
        let outcome = if job.overdue {
            format!("{} {outcome}", style.red("OVERDUE"))
        } else {
            outcome
        };
        rows.push(vec![
            shown(&job.name),
            shown(&job.schedule),
            next,
            last,
            outcome,
            job.running.to_string(),
        ]);
    }
    out.push_str(&table(&rows));
    if !status.runtimes.is_empty() {
        out.push_str(&runtimes(&status.runtimes, style));
    }
    if let Some(cluster) = &status.cluster {
        out.push_str(&cluster_hosts(cluster, style));
    }
    if let Some(spool) = &status.spool {
        let failed = format!("{} failed in the last 24h", spool.failed_recently);
        let _ = writeln!(
            out,
            "\none-off jobs in {}:\n  {} queued, {} delayed, {} running, {} waiting to retry, {}",
            shown(&spool.dir),
            spool.queued,
            spool.delayed,
            spool.running,
            spool.retrying,
            if spool.failed_recently > 0 {
                style.red(&failed)
            } else {
                failed
            }
        );
        if !spool.tasks.is_empty() {
            let _ = writeln!(out, "  {}", task_limits(spool));
        }
    }
    out
}

/// Cluster mode: this host, and every host with its jobfile and lease.
fn cluster_hosts(cluster: &ClusterStatus, style: &Style) -> String {
    let mut out = format!(
        "\ncluster: this host is {}, lease {}, jobfile {}, {}\n",
        cluster.host_id,
        short(cluster.lease_seconds as i64),
        cluster.jobfile_hash,
        if cluster.available {
            "claiming".to_string()
        } else {
            style.red("NOT claiming (see PROBLEM)")
        }
    );
    let mut rows = vec![
        ["  HOST", "JOBFILE", "LEASE", "STARTED", "SEEN", ""]
            .map(|h| style.bold(h))
            .to_vec(),
    ];
    for host in &cluster.hosts {
        let started =
            parse(&host.started_at).map_or_else(|| "-".to_string(), |at| clock(at, style));
        let mut notes = Vec::new();
        if host.host_id == cluster.host_id {
            notes.push("this host".to_string());
        }
        if !host.alive {
            notes.push(style.dim("gone (its lease ran out)"));
        }
        if host.other_jobfile && host.alive {
            notes.push(style.red("OTHER JOBFILE"));
        }
        rows.push(vec![
            format!("  {}", host.host_id),
            host.jobfile_hash.clone(),
            short(host.lease_seconds as i64),
            started,
            format!("{} ago", short((host.seen_ago_ms / 1000) as i64)),
            notes.join(", "),
        ]);
    }
    out.push_str(&table(&rows));
    out
}

/// The warm runtimes' servers, under the jobs.
fn runtimes(runtimes: &[RuntimeStatus], style: &Style) -> String {
    let mut out = String::from("\nwarm runtimes:\n");
    for runtime in runtimes {
        let state = match runtime.state.as_str() {
            "ready" => runtime.state.clone(),
            "failed" => style.red("failed (its runs start cold)"),
            other => format!("{other} (its runs start cold)"),
        };
        let since = runtime
            .since
            .as_deref()
            .and_then(parse)
            .map(|at| clock(at, style))
            .unwrap_or_else(|| "-".to_string());
        let pid = runtime
            .pid
            .map_or_else(|| "-".to_string(), |pid| pid.to_string());
        let _ = writeln!(
            out,
            "  {}: {state}, server pid {pid} since {since}, {} served, {} restart{}",
            runtime.name,
            crate::leaf::words::count(runtime.runs, "run"),
            runtime.restarts,
            crate::leaf::words::plural(runtime.restarts)
        );
        if let Some(error) = &runtime.last_error {
            let first = error.lines().next().unwrap_or_default();
            let _ = writeln!(out, "    last error: {}", shown(first));
        }
    }
    out
}

/// Jobs default to `max_instances: 1`, tasks to none: say which limit holds each task.
fn task_limits(spool: &SpoolStatus) -> String {
    let mut line = format!("at most {} at once (spool.workers)", spool.workers);
    let own: Vec<String> = spool
        .tasks
        .iter()
        .filter_map(|t| Some(format!("{} {}", t.name, t.max_instances?)))
        .collect();
    if !own.is_empty() {
        let _ = write!(line, "; max_instances: {}", own.join(", "));
    }
    let unlimited: Vec<&str> = spool
        .tasks
        .iter()
        .filter(|t| t.max_instances.is_none())
        .map(|t| t.name.as_str())
        .collect();
    if !unlimited.is_empty() {
        let _ = write!(
            line,
            "; no max_instances (the default for tasks): {}",
            unlimited.join(", ")
        );
    }
    line
}

/// `jobctl logs`: one line each, `TIME JOB[RUN_ID] TEXT`, stderr lines marked.
pub fn logs(lines: &[LogLine], style: &Style) -> String {
    let mut out = String::new();
    for line in lines {
        let at = parse(&line.at).map_or_else(
            || shown(&line.at),
            |at| {
                at.with_timezone(&style.zone)
                    .format("%m-%d %H:%M:%S%.3f%:z")
                    .to_string()
            },
        );
        let text = shown(&line.text);
        let text = match line.stream {
            Stream::Stdout => text,
            Stream::Stderr => style.red(&text),
        };
        let _ = writeln!(
            out,
            "{at} {}[{}] {text}",
            shown(&line.job),
            shown(&line.run_id)
        );
    }
    out
}

/// `jobctl history`.
pub fn history(runs: &[RunInfo], style: &Style) -> String {
    let mut out = String::new();
    let mut rows = vec![
        [
            "JOB",
            "RUN",
            "SCHEDULED",
            "STARTED",
            "TOOK",
            "RESULT",
            "TRY",
        ]
        .map(|h| style.bold(h))
        .to_vec(),
    ];
    // Cluster mode says where each run ran.
    let hosts = runs.iter().any(|run| run.host.is_some());
    if hosts {
        rows[0].push(style.bold("HOST"));
    }
    let mut outputs = Vec::new();
    for run in runs {
        let scheduled = parse(&run.scheduled_at).map_or_else(
            || shown(&run.scheduled_at),
            |at| {
                at.with_timezone(&style.zone)
                    .format("%Y-%m-%d %H:%M:%S%.3f%:z")
                    .to_string()
            },
        );
        let delay = match (parse(&run.scheduled_at), parse(&run.started_at)) {
            (Some(due), Some(started)) => format!(
                "+{}",
                millis((started - due).num_milliseconds().max(0) as u64)
            ),
            _ => "-".to_string(),
        };
        let outcome = result(run);
        rows.push(vec![
            shown(&run.job),
            shown(&run.run_id),
            scheduled,
            delay,
            millis(run.duration_ms),
            if run.outcome.is_failure() {
                style.red(&outcome)
            } else {
                outcome
            },
            run.attempt.to_string(),
        ]);
        if hosts && let Some(row) = rows.last_mut() {
            row.push(shown(run.host.as_deref().unwrap_or_default()));
        }
        if run.outcome.is_failure() {
            outputs.push(run);
        }
    }
    out.push_str(&table(&rows));
    for run in outputs {
        let _ = writeln!(
            out,
            "\n{}[{}]: {}",
            shown(&run.job),
            shown(&run.run_id),
            shown(&run.message)
        );
        for line in &run.output {
            let _ = writeln!(out, "  | {}", shown(line));
        }
    }
    out
}

/// `jobctl next`.
pub fn next(instants: &[NextInstant], style: &Style) -> String {
    let rows: Vec<Vec<String>> = instants
        .iter()
        .map(|n| {
            let at = parse(&n.at).map_or_else(
                || shown(&n.at),
                |at| {
                    at.with_timezone(&style.zone)
                        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
                },
            );
            vec![at, shown(&n.job)]
        })
        .collect();
    table(&rows)
}

/// `jobctl spool`: the files by state; with `detail`, each file's attempts too.
pub fn spool(entries: &[Entry], detail: bool, style: &Style) -> String {
    if entries.is_empty() {
        return "the spool is empty\n".to_string();
    }
    let mut rows = vec![
        ["STATE", "FILE", "ID", "TASK", "WHEN", "REASON"]
            .map(|h| style.bold(h))
            .to_vec(),
    ];
    for entry in entries {
        let state = entry.state.word();
        rows.push(vec![
            if entry.state == Listed::Failed {
                style.red(state)
            } else {
                state.to_string()
            },
            shown(&entry.file),
            entry.id.as_deref().map_or_else(|| "-".to_string(), shown),
            entry.task.clone().unwrap_or_else(|| "-".to_string()),
            entry
                .at
                .as_deref()
                .and_then(parse)
                .map_or_else(|| "-".to_string(), |at| clock(at, style)),
            entry.reason.as_deref().map(shown).unwrap_or_default(),
        ]);
    }
    let mut out = table(&rows);
    if !detail {
        return out;
    }
    for entry in entries {
        let Some(result) = &entry.result else {
            continue;
        };
        let _ = writeln!(out, "\n{} ({})", shown(&entry.file), result.state.word());
        for attempt in &result.attempts {
            let outcome = attempt.outcome.map_or("running", |o| o.word());
            let mut line = format!(
                "  attempt {} (run {}): {outcome}",
                attempt.attempt, attempt.run_id
            );
            if let Some(code) = attempt.exit_code {
                let _ = write!(line, ", exit {code}");
            }
            if let Some(signal) = &attempt.signal {
                let _ = write!(line, ", {signal}");
            }
            let _ = write!(line, ", started {}", attempt.started_at);
            if let Some(ended) = &attempt.ended_at {
                let _ = write!(line, ", ended {ended}");
            }
            let _ = writeln!(out, "{line}");
            if let Some(error) = &attempt.error {
                let _ = writeln!(out, "    error: {}", shown(error));
            }
            if let Some(value) = &attempt.value {
                let _ = writeln!(out, "    value: {}", shown(&value.to_string()));
            }
            if let Some(error) = &attempt.value_error {
                let _ = writeln!(out, "    value_error: {}", shown(error));
            }
            for line in &attempt.output {
                let _ = writeln!(out, "    | {}", shown(line));
            }
        }
        if let Some(next) = &result.next_attempt_at {
            let _ = writeln!(out, "  next attempt at {next}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_child_wrote_cannot_drive_the_terminal() {
        let run = RunInfo {
            job: "job\x1b]0;title\x07".into(),
            run_id: "1\r".into(),
            attempt: 1,
            scheduled_at: "2030-01-01T00:00:00Z".into(),
            started_at: "2030-01-01T00:00:00Z".into(),
            ended_at: "2030-01-01T00:00:01Z".into(),
            duration_ms: 1000,
            outcome: Verdict::Killed,
            exit_code: None,
            signal: Some("SIG\x1b[2J".into()),
            message: "killed\x1b[2J".into(),
            output: vec!["\x1b[31mred\rover\u{9b}1m".into()],
            host: None,
        };
        let style = Style {
            zone: chrono_tz::UTC,
            colour: false,
            now: Utc::now(),
        };
        let text = history(&[run], &style);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains(r"| \x1b[31mred\rover\u{9b}1m"), "{text}");
        assert!(
            text.contains(r"job\x1b]0;title\x07[1\r]: killed\x1b[2J"),
            "{text}"
        );
    }
}
