//! The daemon's decisions driven with chosen instants: a fake spawner stands in for
//! processes, and each test calls the parts of the loop (an instant fires, a process
//! exits) directly.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use nix::sys::signal::Signal;

use super::*;
use crate::adapter::spawner::fake::Fake;
use crate::leaf::now::Now;
use crate::model::record::{ExitStatus, Verdict};
use crate::policy::overlap::Decision;

struct Test {
    daemon: Daemon<Fake>,
    t0: Now,
    _dir: tempfile::TempDir,
}

impl Test {
    /// A daemon over `jobs` (the `jobs:` and later sections of a jobfile), with its
    /// state, spool and socket in a folder of its own.
    fn new(jobs: &str) -> Test {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "timezone: UTC\nstate_dir: {0}/state\nsocket: {0}/jobd.sock\nspool:\n  dir: {0}/spool\n{jobs}",
            dir.path().display()
        );
        let file = dir.path().join("jobd.yaml");
        std::fs::write(&file, &text).unwrap();
        let host = Host {
            local_zone: Some("UTC".into()),
            ..Host::default()
        };
        let config = config::parse(&text, &file, None, &host).unwrap();
        let t0 = Now::read();
        let daemon = Daemon::assemble(
            Setup {
                jobfile: file,
                environment: None,
                host,
                config,
                notifier: Notifier::default(),
                signals: Signals::unregistered().unwrap(),
            },
            Fake::default(),
            t0,
        )
        .unwrap();
        Test {
            daemon,
            t0,
            _dir: dir,
        }
    }

    fn at(&self, secs: u64) -> Now {
        Now {
            wall: self.t0.wall + TimeDelta::seconds(secs as i64),
            mono: self.t0.mono + Duration::from_secs(secs),
        }
    }

    fn fire(&mut self, job: &str, secs: u64) -> super::fire::Fate {
        let config = self.daemon.config.clone();
        let job = config.job(job).unwrap();
        let now = self.at(secs);
        self.daemon.fire(job, now.wall, 0, now)
    }

    /// The process of the `n`th spawn ends.
    fn exit(&mut self, n: usize, status: ExitStatus, secs: u64) {
        let pid = self.fake().spawned[n].pid;
        let now = self.at(secs);
        let ended = self.daemon.supervisor.exited(pid, status, now).unwrap();
        self.daemon.ended(ended, now);
    }

    fn fake(&mut self) -> &mut Fake {
        self.daemon.supervisor.spawner()
    }

    fn outcomes(&self, job: &str) -> Vec<Verdict> {
        self.daemon
            .history
            .runs(job)
            .map(|run| run.outcome)
            .collect()
    }

    fn journal(&self) -> Vec<String> {
        self.daemon
            .journal
            .left_behind()
            .into_iter()
            .map(|e| e.run_id)
            .collect()
    }
}

fn instant(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

#[test]
fn an_instant_starts_a_run_and_its_end_is_recorded_once_everywhere() {
    let mut test = Test::new("jobs:\n  a:\n    every: 1s\n    command: [x]\n");
    let fate = test.fire("a", 0);
    let run_id = fate.started.unwrap().unwrap();
    assert_eq!(test.fake().spawned.len(), 1);
    assert_eq!(
        test.journal(),
        std::slice::from_ref(&run_id),
        "journaled before it ends"
    );
    test.exit(0, ExitStatus::Code(0), 2);
    assert_eq!(test.outcomes("a"), [Verdict::Success]);
    assert!(test.journal().is_empty(), "forgotten once it ended");
    assert_eq!(test.daemon.history.last("a").unwrap().run_id, run_id);
    assert_eq!(test.daemon.history.last("a").unwrap().duration_ms, 2000);
}

#[test]
fn an_instant_that_finds_the_job_running_is_skipped_and_counted() {
    let mut test = Test::new("jobs:\n  a:\n    every: 1s\n    command: [x]\n");
    test.fire("a", 0);
    let fate = test.fire("a", 1);
    assert_eq!(fate.decision, Decision::Skip);
    assert!(fate.started.is_none());
    assert_eq!(test.fake().spawned.len(), 1);
    let version = test.daemon.metrics.version();
    test.fire("a", 2);
    assert!(
        test.daemon.metrics.version() > version,
        "the skip is counted"
    );
}

#[test]
fn a_queued_instant_starts_when_the_running_one_ends_and_only_the_newest_waits() {
    let mut test =
        Test::new("jobs:\n  a:\n    every: 1s\n    command: [x]\n    on_overlap: queue\n");
    test.fire("a", 0);
    assert_eq!(test.fire("a", 1).decision, Decision::Queue);
    assert_eq!(test.fire("a", 2).decision, Decision::Queue);
    test.exit(0, ExitStatus::Code(0), 3);
    let spawned = &test.fake().spawned;
    assert_eq!(spawned.len(), 2, "the waiting instant started");
    let scheduled = spawned[1]
        .vars
        .iter()
        .find(|(k, _)| *k == "JOBD_SCHEDULED_AT")
        .unwrap()
        .1
        .clone();
    assert_eq!(scheduled, crate::leaf::timestamp::precise(test.at(2).wall));
}

#[test]
fn replace_stops_the_running_instance_and_starts_the_new_one_after_it() {
    let mut test =
        Test::new("jobs:\n  a:\n    every: 1s\n    command: [x]\n    on_overlap: replace\n");
    test.fire("a", 0);
    let old = test.fake().spawned[0].pid;
    assert_eq!(test.fire("a", 1).decision, Decision::Replace);
    assert_eq!(test.fake().signals, [(old, Signal::SIGTERM, true)]);
    test.exit(0, ExitStatus::Signal(15), 2);
    assert_eq!(test.outcomes("a"), [Verdict::Stopped]);
    assert_eq!(test.fake().spawned.len(), 2);
}

#[test]
fn a_failed_start_is_an_ended_run_that_runs_the_hook() {
    let mut test =
        Test::new("jobs:\n  a:\n    every: 1s\n    command: [x]\n    on_failure: [alert]\n");
    test.fake().fail = true;
    let fate = test.fire("a", 0);
    assert!(
        fate.started
            .unwrap()
            .unwrap_err()
            .contains("could not start")
    );
    assert_eq!(test.outcomes("a"), [Verdict::SpawnError]);
    // The hook was tried, and could not start either (the fake refuses everything);
    // its own failure runs no further hook.
    assert_eq!(test.outcomes("a.on_failure"), [Verdict::SpawnError]);
    assert!(test.outcomes("a.on_failure.on_failure").is_empty());
}

#[test]
fn a_failure_runs_the_hook_with_the_outcome_and_a_stop_by_jobd_does_not() {
    let mut test = Test::new(
        "removed_jobs: stop\njobs:\n  a:\n    every: 1s\n    command: [x]\n    on_failure: [alert]\n",
    );
    test.fire("a", 0);
    test.exit(0, ExitStatus::Code(3), 1);
    let hook = test.fake().spawned[1].clone();
    assert_eq!(hook.program, "alert");
    assert_eq!(hook.env["JOBD_FAILED_OUTCOME"], "failure");
    assert_eq!(hook.env["JOBD_FAILED_EXIT_CODE"], "3");
    test.exit(1, ExitStatus::Code(0), 2);
    assert_eq!(test.outcomes("a.on_failure"), [Verdict::Success]);
    // Stopped by jobd: no failure of the job's own, no hook.
    test.fire("a", 3);
    let stopped = test.daemon.supervisor.stop(
        crate::machine::supervisor::Which::Job("a"),
        crate::model::record::Stop::Removed,
        test.at(4),
    );
    assert_eq!(stopped, 1);
    test.exit(2, ExitStatus::Signal(15), 5);
    assert_eq!(test.fake().spawned.len(), 3, "no hook for a stopped run");
}

#[test]
fn runs_a_killed_jobd_left_are_recorded_as_interrupted_and_not_started_again() {
    let mut test = Test::new("jobs:\n  a:\n    every: 1h\n    command: [x]\n");
    let entry = crate::adapter::journal::Entry {
        run_id: "dead-1".into(),
        name: "a".into(),
        origin: "job".into(),
        attempt: 1,
        scheduled_at: instant(0),
        started_at: instant(0),
        kill_grace_ms: 10,
    };
    test.daemon.journal.starting(&entry);
    let left = test.daemon.journal.left_behind();
    let now = test.at(0);
    test.daemon.record_interrupted(left, now);
    assert_eq!(test.outcomes("a"), [Verdict::Interrupted]);
    assert!(test.journal().is_empty());
    assert!(test.fake().spawned.is_empty(), "nothing was started for it");
}

#[test]
fn a_started_run_is_journaled_with_what_recovery_needs() {
    let mut test = Test::new("jobs:\n  a:\n    every: 1s\n    command: [x]\n    kill_grace: 3s\n");
    test.fire("a", 0);
    let left = test.daemon.journal.left_behind();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].name, "a");
    assert_eq!(left[0].origin, "job");
    assert_eq!(left[0].kill_grace(), Duration::from_secs(3));
}
