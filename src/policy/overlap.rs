//! What an instant of a job does when it comes while the job runs: its `max_instances`
//! and `on_overlap`, and the one instant a job may keep waiting.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::model::config::{Job, OnOverlap};

/// What to do with an instant that has come, given what is already running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Start,
    Skip,
    /// Keep it pending (replacing any older pending instant) until a run ends.
    Queue,
    /// Stop the oldest running instance; start this one when it has ended.
    Replace,
}

impl Decision {
    /// How `jobctl run` says it.
    pub fn word(self) -> &'static str {
        match self {
            Decision::Start => "started",
            Decision::Skip => "skipped",
            Decision::Queue => "queued",
            Decision::Replace => "replacing",
        }
    }
}

pub fn decide(job: &Job, running: usize) -> Decision {
    if running < job.max_instances as usize {
        return Decision::Start;
    }
    match job.on_overlap {
        OnOverlap::Skip => Decision::Skip,
        OnOverlap::Queue => Decision::Queue,
        OnOverlap::Replace => Decision::Replace,
    }
}

/// Per job, the instant waiting for a free slot (`on_overlap: queue` or `replace`):
/// at most one, the newest.
#[derive(Debug, Default)]
pub struct Pending {
    by_job: HashMap<String, DateTime<Utc>>,
}

impl Pending {
    /// Keep `instant` waiting; returns the older one it replaced, if any.
    pub fn keep(&mut self, job: &str, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.by_job.insert(job.to_string(), instant)
    }

    /// The instant to start now that a run of `job` ended with `running` still going,
    /// if one waits and there is room.
    pub fn next(&mut self, job: &Job, running: usize) -> Option<DateTime<Utc>> {
        if !job.enabled || running >= job.max_instances as usize {
            return None;
        }
        self.by_job.remove(&job.name)
    }

    /// Forget what waits for `job` (removed, or stopped).
    pub fn forget(&mut self, job: &str) -> Option<DateTime<Utc>> {
        self.by_job.remove(job)
    }

    /// Forget everything: jobd is shutting down.
    pub fn drain(&mut self) -> impl Iterator<Item = (String, DateTime<Utc>)> + '_ {
        self.by_job.drain()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::config::{self, Host};

    fn job(extra: &str) -> Job {
        let host = Host {
            local_zone: Some("UTC".into()),
            ..Host::default()
        };
        let text = format!("jobs:\n  a:\n    every: 1s\n    command: [x]\n{extra}");
        let config = config::parse(&text, Path::new("/app/jobd.yaml"), None, &host).unwrap();
        config.jobs[0].clone()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn an_instant_starts_while_there_is_room_else_follows_on_overlap() {
        let skip = job("");
        assert_eq!(decide(&skip, 0), Decision::Start);
        assert_eq!(decide(&skip, 1), Decision::Skip);
        let two = job("    max_instances: 2\n    on_overlap: queue\n");
        assert_eq!(decide(&two, 1), Decision::Start);
        assert_eq!(decide(&two, 2), Decision::Queue);
        assert_eq!(
            decide(&job("    on_overlap: replace\n"), 1),
            Decision::Replace
        );
    }

    #[test]
    fn one_instant_waits_per_job_the_newest_and_only_when_there_is_room() {
        let queue = job("    on_overlap: queue\n");
        let mut pending = Pending::default();
        assert_eq!(pending.keep("a", at(1)), None);
        assert_eq!(pending.keep("a", at(2)), Some(at(1)));
        assert_eq!(pending.next(&queue, 1), None);
        assert_eq!(pending.next(&queue, 0), Some(at(2)));
        assert_eq!(pending.next(&queue, 0), None);
    }
}
