//! `jobd check`: what a valid jobfile will do, as text.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::leaf::words::count;
use crate::model::config::Config;

/// The next `count` fire times of every job strictly after `from`, one per line, in the
/// jobfile's zone; disabled jobs are listed with the reason instead.
pub fn fire_times(config: &Config, from: DateTime<Utc>, count: usize) -> String {
    let width = config.jobs.iter().map(|j| j.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for job in &config.jobs {
        if !job.enabled {
            let envs = job.environments.as_deref().unwrap_or_default().join(", ");
            let _ = writeln!(
                out,
                "{:width$}  disabled: runs only in environment {envs}",
                job.name
            );
            continue;
        }
        let mut at = from;
        for _ in 0..count {
            match job.schedule.next_after(at) {
                Some(next) => {
                    let _ = writeln!(out, "{:width$}  {}", job.name, rfc3339(next, config));
                    at = next;
                }
                None => {
                    let _ = writeln!(out, "{:width$}  never fires again", job.name);
                    break;
                }
            }
        }
    }
    out
}

/// An instant in the jobfile's zone, with a fraction only when it has one.
pub fn rfc3339(at: DateTime<Utc>, config: &Config) -> String {
    at.with_timezone(&config.timezone)
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// A one-line summary of the jobfile, for stderr after a successful check.
pub fn summary(config: &Config, warnings: usize) -> String {
    let disabled = config.jobs.iter().filter(|j| !j.enabled).count();
    let mut jobs = count(config.jobs.len(), "job");
    if disabled > 0 {
        let _ = write!(
            jobs,
            " ({} enabled, {disabled} disabled)",
            config.jobs.len() - disabled
        );
    }
    let verdict = match warnings {
        0 => "ok".to_string(),
        n => format!("ok, with {}", count(n, "warning")),
    };
    let env = match &config.environment {
        Some(env) => format!("environment {env}"),
        None => "no environment".to_string(),
    };
    format!(
        "{}: {verdict}: {jobs}, {}; {env}; time zone {}",
        config.file.display(),
        count(config.tasks.len(), "task"),
        config.timezone.name()
    )
}
