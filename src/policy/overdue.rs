//! `alert_after:`, the dead-man's switch: a job that has not succeeded for that long is
//! overdue, and is reported once per such period until it succeeds. A pure function of
//! (jobfile, last successes, now), like the plan.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Watched {
    after: Duration,
    /// The last success, or when watching began if none is known.
    since: DateTime<Utc>,
    /// Periods already reported since `since`.
    reported: u32,
}

impl Watched {
    fn deadline(&self) -> DateTime<Utc> {
        self.since + periods(self.after, self.reported.saturating_add(1))
    }
}

/// One overdue report that has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub job: String,
    /// Its last success, or when watching began.
    pub since: DateTime<Utc>,
}

/// The enabled jobs with `alert_after:`.
#[derive(Debug, Default)]
pub struct Watch {
    jobs: HashMap<String, Watched>,
}

impl Watch {
    /// Watch the jobs of `config`; `last_success` tells what the history knows, and a
    /// job without one is counted from `now`.
    pub fn new(
        config: &Config,
        last_success: impl Fn(&str) -> Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Watch {
        let mut watch = Watch::default();
        watch.reload(config, last_success, now);
        watch
    }

    /// Take on a reloaded jobfile: a job watched before keeps its count (with its new
    /// `alert_after`); a newly watched one starts from its last success, or `now`.
    pub fn reload(
        &mut self,
        config: &Config,
        last_success: impl Fn(&str) -> Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) {
        let mut old = std::mem::take(&mut self.jobs);
        for job in config.jobs.iter().filter(|job| job.enabled) {
            let Some(after) = job.alert_after else {
                continue;
            };
            let watched = match old.remove(&job.name) {
                Some(before) if before.after == after => before,
                // Periods already reported stay reported, as far as the new length
                // counts them: lengthening it does not re-alert at once.
                Some(before) => Watched {
                    after,
                    reported: before.reported.min(elapsed_periods(&before, after, now)),
                    ..before
                },
                None => Watched {
                    after,
                    since: last_success(&job.name).unwrap_or(now),
                    reported: 0,
                },
            };
            self.jobs.insert(job.name.clone(), watched);
        }
    }

    /// `job` succeeded at `at`: it is no longer overdue.
    pub fn succeeded(&mut self, job: &str, at: DateTime<Utc>) {
        if let Some(watched) = self.jobs.get_mut(job) {
            watched.since = watched.since.max(at);
            watched.reported = 0;
        }
    }

    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.jobs.values().map(Watched::deadline).min()
    }

    /// The jobs that became overdue, or stayed overdue for another period, by `now`:
    /// each once, however many periods passed (a suspended machine reports once).
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<Alert> {
        let mut alerts = Vec::new();
        for (name, watched) in &mut self.jobs {
            if watched.deadline() > now {
                continue;
            }
            watched.reported =
                elapsed_periods(watched, watched.after, now).max(watched.reported + 1);
            alerts.push(Alert {
                job: name.clone(),
                since: watched.since,
            });
        }
        alerts.sort_by(|a, b| a.job.cmp(&b.job));
        alerts
    }

    /// Whether `job` has gone `alert_after` without success.
    pub fn is_overdue(&self, job: &str, now: DateTime<Utc>) -> bool {
        self.jobs
            .get(job)
            .is_some_and(|w| w.since + periods(w.after, 1) <= now)
    }
}

/// How many whole periods of `after` lie between the job's `since` and `now`.
fn elapsed_periods(watched: &Watched, after: Duration, now: DateTime<Utc>) -> u32 {
    let late = (now - watched.since).to_std().unwrap_or_default();
    (late.as_nanos() / after.as_nanos().max(1)).min(u32::MAX as u128) as u32
}

fn periods(after: Duration, n: u32) -> chrono::TimeDelta {
    chrono::Duration::from_std(after.saturating_mul(n)).unwrap_or(chrono::TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::config::{self, Host};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn config(text: &str) -> Config {
        let host = Host {
            local_zone: Some("UTC".into()),
            ..Host::default()
        };
        config::parse(text, Path::new("/app/jobd.yaml"), None, &host).unwrap()
    }

    const JOBS: &str = "jobs:
  import:
    schedule: '@daily'
    command: [x]
    alert_after: 100s
  other:
    every: 1s
    command: [x]
";

    #[test]
    fn reports_once_per_period_until_a_success() {
        let mut watch = Watch::new(&config(JOBS), |_| None, at(0));
        assert_eq!(watch.next_deadline(), Some(at(100)));
        assert!(watch.due(at(99)).is_empty());
        assert!(!watch.is_overdue("import", at(99)));
        let alerts = watch.due(at(100));
        assert_eq!(
            alerts,
            vec![Alert {
                job: "import".into(),
                since: at(0)
            }]
        );
        assert!(watch.is_overdue("import", at(100)));
        assert!(watch.due(at(150)).is_empty(), "once per period");
        assert_eq!(watch.next_deadline(), Some(at(200)));
        assert_eq!(watch.due(at(200)).len(), 1);
        // Waking long after (a suspend) reports once, then per period again.
        assert_eq!(watch.due(at(1050)).len(), 1);
        assert_eq!(watch.next_deadline(), Some(at(1100)));
        watch.succeeded("import", at(1060));
        assert!(!watch.is_overdue("import", at(1100)));
        assert_eq!(watch.next_deadline(), Some(at(1160)));
        assert!(!watch.is_overdue("other", at(5000)), "not watched");
    }

    #[test]
    fn counts_from_the_last_known_success_and_keeps_state_across_reloads() {
        let mut watch = Watch::new(&config(JOBS), |_| Some(at(-500)), at(0));
        // Overdue already at start: one report at once, not five.
        assert_eq!(watch.due(at(0)).len(), 1);
        assert!(watch.due(at(1)).is_empty());
        assert_eq!(watch.next_deadline(), Some(at(100)));
        let longer = JOBS.replace("alert_after: 100s", "alert_after: 1000s");
        watch.reload(&config(&longer), |_| None, at(10));
        assert_eq!(watch.next_deadline(), Some(at(500)));
        watch.reload(
            &config(&JOBS.replace("    alert_after: 100s\n", "")),
            |_| None,
            at(20),
        );
        assert_eq!(watch.next_deadline(), None);
    }
}
