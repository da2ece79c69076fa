//! When each job fires next: a pure function of (jobfile, what already fired, now).
//!
//! The event loop asks `due(now)` when its timer fires and arms the timer at
//! `next_deadline()`. Nothing here reads a clock, so tests drive it with chosen instants:
//! late wake-ups, clock steps and reloads are all just other values of `now`.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::model::config::{Config, Job};
use crate::model::schedule::Schedule;

/// One instant of one job that has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub job: String,
    /// The instant the run stands for: the latest one that had come, when several did.
    pub instant: DateTime<Utc>,
    /// Earlier instants that came since the last wake-up and are not run on their own.
    pub missed: u64,
}

/// Counting missed instants one by one is bounded, so that waking after a long suspend
/// with a 1ms job costs milliseconds, not minutes.
const MAX_COUNTED_MISSES: u64 = 100_000;

#[derive(Debug, Clone)]
struct Slot {
    schedule: Schedule,
    /// Always after every instant already handed out, so that an instant is never
    /// handed out twice, even when the wall clock steps back over it.
    next: Option<DateTime<Utc>>,
}

/// The next instant of every enabled job.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    slots: HashMap<String, Slot>,
    /// (next instant, job) for every slot that has one: the earliest is first.
    queue: BTreeSet<(DateTime<Utc>, String)>,
    /// Jobs not enabled in this environment: their instants are only counted, when
    /// asked (`passed_disabled`), and never wake the loop.
    disabled: HashMap<String, Slot>,
}

impl Plan {
    /// Plan every enabled job of `config` from `now`: each first fires strictly after it.
    pub fn new(config: &Config, now: DateTime<Utc>) -> Plan {
        let mut plan = Plan::default();
        plan.reload(config, now);
        plan
    }

    /// Take on a reloaded jobfile: a job whose schedule is unchanged keeps its next
    /// instant (so a reload neither repeats nor skips one); a new or re-scheduled job is
    /// planned from `now`; a removed or disabled job is dropped.
    pub fn reload(&mut self, config: &Config, now: DateTime<Utc>) {
        let mut old = std::mem::take(&mut self.slots);
        let mut old_disabled = std::mem::take(&mut self.disabled);
        self.queue.clear();
        for job in config.jobs.iter().filter(|job| !job.enabled) {
            let slot = match old_disabled.remove(&job.name) {
                Some(slot) if slot.schedule == job.schedule => slot,
                _ => Slot {
                    schedule: job.schedule.clone(),
                    next: job.schedule.next_after(now),
                },
            };
            self.disabled.insert(job.name.clone(), slot);
        }
        for job in config.jobs.iter().filter(|job| job.enabled) {
            match old.remove(&job.name) {
                Some(slot) if slot.schedule == job.schedule => {
                    if let Some(next) = slot.next {
                        self.queue.insert((next, job.name.clone()));
                    }
                    self.slots.insert(job.name.clone(), slot);
                }
                _ => self.insert(job, now),
            }
        }
    }

    fn insert(&mut self, job: &Job, after: DateTime<Utc>) {
        let next = job.schedule.next_after(after);
        if let Some(next) = next {
            self.queue.insert((next, job.name.clone()));
        }
        self.slots.insert(
            job.name.clone(),
            Slot {
                schedule: job.schedule.clone(),
                next,
            },
        );
    }

    /// When the timer should next wake the loop.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// The next instant of one job, for status and `jobctl next`.
    pub fn next_of(&self, job: &str) -> Option<DateTime<Utc>> {
        self.slots.get(job).and_then(|slot| slot.next)
    }

    /// Every job whose next instant is at or before `now`, once each. When the loop wakes
    /// late (suspend, overload, the clock stepping forward), the instants that came in
    /// between collapse into one: the latest, with the others counted as missed.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<Due> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.queue.first() {
            if *at > now {
                break;
            }
            let (first, name) = self.queue.pop_first().expect("queue is not empty");
            let slot = self.slots.get_mut(&name).expect("queued jobs have slots");
            let (instant, missed, next) = collapse(&slot.schedule, first, now);
            slot.next = next;
            if let Some(next) = next {
                self.queue.insert((next, name.clone()));
            }
            due.push(Due {
                job: name,
                instant,
                missed,
            });
        }
        due
    }
}

impl Plan {
    /// How many instants of each disabled job came since the last call, for the
    /// metrics. Jobs with none are left out.
    pub fn passed_disabled(&mut self, now: DateTime<Utc>) -> Vec<(String, u64)> {
        let mut passed = Vec::new();
        for (name, slot) in &mut self.disabled {
            let Some(first) = slot.next.filter(|first| *first <= now) else {
                continue;
            };
            let (_, missed, next) = collapse(&slot.schedule, first, now);
            slot.next = next;
            passed.push((name.clone(), missed + 1));
        }
        passed
    }
}

/// The instants of `schedule` from `first` up to `now` as one: the latest of them, how
/// many earlier ones it stands for, and the next instant after `now`.
fn collapse(
    schedule: &Schedule,
    first: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, u64, Option<DateTime<Utc>>) {
    let mut instant = first;
    let mut missed = 0;
    let mut next = schedule.next_after(instant);
    while let Some(later) = next.filter(|later| *later <= now) {
        missed += 1;
        instant = later;
        next = if missed >= MAX_COUNTED_MISSES {
            schedule.next_after(now)
        } else {
            schedule.next_after(later)
        };
    }
    (instant, missed, next)
}

/// `catch_up: once`: the one run owed for instants missed while jobd was down, given
/// the last instant that ran. None when nothing was missed (or the job never ran:
/// there is nothing to catch up on).
pub fn catch_up(job: &Job, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Due> {
    let first = job.schedule.next_after(last?)?;
    if first > now {
        return None;
    }
    let (instant, missed, _) = collapse(&job.schedule, first, now);
    Some(Due {
        job: job.name.clone(),
        instant,
        missed,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::config::{self, Host};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn config(jobs: &str) -> Config {
        let host = Host {
            local_zone: Some("UTC".into()),
            ..Host::default()
        };
        config::parse(jobs, Path::new("/app/jobd.yaml"), None, &host).unwrap()
    }

    fn instants(due: &[Due]) -> Vec<(String, DateTime<Utc>, u64)> {
        due.iter()
            .map(|d| (d.job.clone(), d.instant, d.missed))
            .collect()
    }

    const TWO_JOBS: &str = "jobs:
  fast:
    every: 250ms
    command: [x]
  slow:
    schedule: \"*/2 * * * * *\"
    command: [x]
  off:
    every: 1s
    command: [x]
    environments: [production]
";

    #[test]
    fn fires_each_instant_once_in_order() {
        let config = config(TWO_JOBS);
        let mut plan = Plan::new(&config, at("2027-01-01T00:00:00.1Z"));
        assert_eq!(plan.next_deadline(), Some(at("2027-01-01T00:00:00.25Z")));
        assert_eq!(plan.next_of("off"), None, "disabled jobs are not planned");
        assert_eq!(plan.passed_disabled(at("2027-01-01T00:00:00.9Z")), vec![]);
        assert_eq!(
            plan.passed_disabled(at("2027-01-01T00:00:03.5Z")),
            vec![("off".to_string(), 3)],
            "but their instants are counted"
        );
        assert_eq!(plan.passed_disabled(at("2027-01-01T00:00:03.9Z")), vec![]);

        let mut fired = Vec::new();
        while let Some(deadline) = plan.next_deadline() {
            if deadline > at("2027-01-01T00:00:02Z") {
                break;
            }
            assert!(
                plan.due(deadline - chrono::TimeDelta::nanoseconds(1))
                    .is_empty()
            );
            fired.extend(instants(&plan.due(deadline)));
            assert!(plan.due(deadline).is_empty(), "an instant fired twice");
        }
        let fast: Vec<_> = fired
            .iter()
            .filter(|f| f.0 == "fast")
            .map(|f| f.1)
            .collect();
        let slow: Vec<_> = fired
            .iter()
            .filter(|f| f.0 == "slow")
            .map(|f| f.1)
            .collect();
        assert_eq!(fast.len(), 8, "{fast:?}");
        assert_eq!(fast[0], at("2027-01-01T00:00:00.25Z"));
        assert_eq!(fast[7], at("2027-01-01T00:00:02Z"));
        assert_eq!(slow, [at("2027-01-01T00:00:02Z")]);
        assert!(fired.iter().all(|f| f.2 == 0));
    }

    #[test]
    fn a_late_wake_collapses_missed_instants_into_one_run() {
        let config = config(TWO_JOBS);
        let mut plan = Plan::new(&config, at("2027-01-01T00:00:00Z"));
        // Woken 10.1 s late, as after a suspend or a forward clock step.
        let due = plan.due(at("2027-01-01T00:00:10.1Z"));
        assert_eq!(
            instants(&due),
            [
                ("fast".into(), at("2027-01-01T00:00:10Z"), 39),
                ("slow".into(), at("2027-01-01T00:00:10Z"), 4),
            ]
        );
        assert_eq!(plan.next_deadline(), Some(at("2027-01-01T00:00:10.25Z")));
    }

    #[test]
    fn a_very_late_wake_is_bounded() {
        let config = config("jobs:\n  j:\n    every: 1ms\n    command: [x]\n");
        let mut plan = Plan::new(&config, at("2027-01-01T00:00:00Z"));
        let (due, cpu) = crate::leaf::cpu::measure(|| plan.due(at("2027-01-02T00:00:00Z")));
        assert!(cpu < std::time::Duration::from_secs(5), "took {cpu:?}");
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].missed, MAX_COUNTED_MISSES);
        assert_eq!(plan.next_deadline(), Some(at("2027-01-02T00:00:00.001Z")));
    }

    #[test]
    fn a_reload_keeps_unchanged_jobs_and_replans_the_rest() {
        let before = config(TWO_JOBS);
        let mut plan = Plan::new(&before, at("2027-01-01T00:00:00Z"));
        assert_eq!(plan.due(at("2027-01-01T00:00:00.25Z")).len(), 1);
        // Reloaded just as `slow` is due at 00:00:02: it must fire once, not zero or twice.
        let after = config(
            "jobs:
  slow:
    schedule: \"*/2 * * * * *\"
    command: [changed]
  fast:
    every: 300ms
    command: [x]
  new:
    every: 1s
    command: [x]
",
        );
        plan.reload(&after, at("2027-01-01T00:00:02Z"));
        assert_eq!(
            plan.next_of("slow"),
            Some(at("2027-01-01T00:00:02Z")),
            "kept"
        );
        assert_eq!(
            plan.next_of("fast"),
            Some(at("2027-01-01T00:00:02.1Z")),
            "re-planned"
        );
        assert_eq!(
            plan.next_of("new"),
            Some(at("2027-01-01T00:00:03Z")),
            "planned from now"
        );
        let due = plan.due(at("2027-01-01T00:00:02Z"));
        assert_eq!(
            instants(&due),
            [("slow".into(), at("2027-01-01T00:00:02Z"), 0)]
        );
        plan.reload(&config("jobs:\n"), at("2027-01-01T00:00:02.5Z"));
        assert_eq!(plan.next_deadline(), None, "removed jobs fire no more");
    }

    #[test]
    fn catch_up_owes_one_run_for_downtime() {
        let config = config(
            "jobs:\n  daily:\n    schedule: \"0 2 * * *\"\n    command: [x]\n    catch_up: once\n",
        );
        let job = &config.jobs[0];
        let now = at("2027-01-05T12:00:00Z");
        let owed = catch_up(job, Some(at("2027-01-02T02:00:00Z")), now).unwrap();
        assert_eq!((owed.instant, owed.missed), (at("2027-01-05T02:00:00Z"), 2));
        assert_eq!(
            catch_up(job, Some(at("2027-01-05T02:00:00Z")), now),
            None,
            "nothing missed"
        );
        assert_eq!(catch_up(job, None, now), None, "never ran");
    }

    #[test]
    fn a_backward_clock_step_does_not_rerun_instants() {
        let config = config("jobs:\n  j:\n    every: 1s\n    command: [x]\n");
        let mut plan = Plan::new(&config, at("2027-01-01T00:00:00Z"));
        assert_eq!(plan.due(at("2027-01-01T00:00:05Z")).len(), 1);
        // The clock steps back 3 s: nothing is due until the clock passes 00:00:05 again.
        assert!(plan.due(at("2027-01-01T00:00:02Z")).is_empty());
        assert!(plan.due(at("2027-01-01T00:00:05Z")).is_empty());
        assert_eq!(plan.next_deadline(), Some(at("2027-01-01T00:00:06Z")));
        assert_eq!(
            instants(&plan.due(at("2027-01-01T00:00:06Z")))[0].1,
            at("2027-01-01T00:00:06Z")
        );
    }
}
