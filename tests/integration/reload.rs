//! Reloads that neither lose, repeat nor delay a run.

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;

use crate::harness::{Dir, eventually};

const EVERY_SECOND: &str = r#"
timezone: UTC
shutdown_grace: 5s
jobs:
  second:
    schedule: "* * * * * *"
    command: 'echo "$JOBD_SCHEDULED_AT" >> seconds.out'
"#;

/// The instants the per-second job ran for, in order.
fn seconds(dir: &Dir) -> Vec<DateTime<Utc>> {
    dir.lines("seconds.out")
        .iter()
        .map(|l| DateTime::parse_from_rfc3339(l).unwrap().to_utc())
        .collect()
}

/// Sleep until `before` ahead of the next whole second.
fn sleep_until_next_second_minus(before: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let to_next = Duration::from_secs(1) - Duration::from_nanos(now.subsec_nanos() as u64);
    std::thread::sleep(to_next.saturating_sub(before));
}

#[test]
fn a_per_second_job_runs_once_per_second_across_reloads_storms_and_due_instants() {
    let dir = Dir::new(EVERY_SECOND);
    let mut jobd = dir.start(&[]);
    assert!(eventually(Duration::from_secs(20), || !seconds(&dir).is_empty()));

    // 20 reloads in 2 s, half through jobctl (which waits), half by SIGHUP, each
    // adding or removing another job, so every reload applies a change.
    for i in 0..20 {
        let text = if i % 2 == 0 {
            format!("{EVERY_SECOND}  other{i}:\n    every: 1h\n    command: [\"true\"]\n")
        } else {
            EVERY_SECOND.to_string()
        };
        fs::write(dir.jobfile(), text).unwrap();
        if i % 4 < 2 {
            dir.jobctl(&["reload"]).code(0);
        } else {
            jobd.signal(Signal::SIGHUP);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Reloads just before, at and just after the instant the job is due.
    for before in [2, 1, 0] {
        sleep_until_next_second_minus(Duration::from_millis(before));
        dir.jobctl(&["reload"]).code(0);
    }
    // A storm: dozens of SIGHUPs in a few milliseconds.
    sleep_until_next_second_minus(Duration::from_millis(5));
    for _ in 0..50 {
        jobd.signal(Signal::SIGHUP);
    }
    std::thread::sleep(Duration::from_millis(2500));
    let log = jobd.log();
    jobd.stop();

    let ran = seconds(&dir);
    assert!(ran.len() >= 6, "{ran:?}");
    for pair in ran.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_milliseconds(),
            1000,
            "instants lost or repeated around {} -> {}:\n{log}",
            pair[0],
            pair[1]
        );
    }
    let reloads = log.matches("reloaded ").count();
    assert!(
        (15..=48).contains(&reloads),
        "{reloads} reloads applied; a SIGHUP storm coalesces"
    );
}

const LONG_RUNNING: &str = r#"
timezone: UTC
shutdown_grace: 10s
jobs:
  long:
    every: 1h
    command: 'sleep 2; echo finished >> long.out'
  stays:
    every: 1h
    command: [sleep, "30"]
"#;

#[test]
fn a_removed_jobs_running_instance_finishes() {
    let dir = Dir::new(LONG_RUNNING);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("jobd 0.1.0 started", Duration::from_secs(20));
    dir.jobctl(&["run", "long"]).code(0);
    let without = LONG_RUNNING.replace(
        "  long:\n    every: 1h\n    command: 'sleep 2; echo finished >> long.out'\n",
        "",
    );
    fs::write(dir.jobfile(), without).unwrap();
    let reload = dir.jobctl(&["reload"]);
    reload.code(0);
    assert!(reload.stdout().contains("removed: job long"));
    assert!(
        eventually(Duration::from_secs(20), || dir.lines("long.out")
            == ["finished"]),
        "{}",
        jobd.log()
    );
    assert!(!jobd.log().contains("removed from the jobfile"));
    jobd.stop();
}

#[test]
fn removed_jobs_stop_stops_a_removed_jobs_instances_and_only_those() {
    let text = format!("removed_jobs: stop\n{LONG_RUNNING}");
    let dir = Dir::new(&text);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("jobd 0.1.0 started", Duration::from_secs(20));
    dir.jobctl(&["run", "long"]).code(0);
    dir.jobctl(&["run", "stays"]).code(0);
    let without = text.replace(
        "  long:\n    every: 1h\n    command: 'sleep 2; echo finished >> long.out'\n",
        "",
    );
    fs::write(dir.jobfile(), without).unwrap();
    dir.jobctl(&["reload"]).code(0);
    jobd.wait_log("removed from the jobfile", Duration::from_secs(10));
    assert!(eventually(Duration::from_secs(10), || {
        dir.jobctl(&["history", "--json"])
            .stdout()
            .contains("\"stopped\"")
    }));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(dir.lines("long.out").is_empty(), "it was stopped");
    let status = dir.jobctl(&["status", "--json"]).stdout();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let stays = status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "stays")
        .unwrap();
    assert_eq!(stays["running"], 1, "other jobs are not touched");
    jobd.signal(Signal::SIGTERM);
    jobd.signal(Signal::SIGTERM);
    jobd.stop();
}

#[test]
fn a_dry_run_and_a_reload_name_what_changed() {
    let dir = Dir::new(LONG_RUNNING);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("jobd 0.1.0 started", Duration::from_secs(20));
    let changed = LONG_RUNNING
        .replace(
            "every: 1h\n    command: [sleep",
            "every: 2h\n    command: [sleep",
        )
        .replace("\"30\"]", "\"31\"]");
    fs::write(dir.jobfile(), changed).unwrap();
    let dry = dir.jobctl(&["reload", "--dry-run"]);
    dry.code(0);
    let text = dry.stdout();
    assert!(
        text.contains(
            "changed: job stays (schedule every 1h -> every 2h; command sleep 30 -> sleep 31)"
        ),
        "{text}"
    );
    // Two instants: every 1h and every 2h share every other one (02:00 is both).
    let status = dir.jobctl(&["next", "stays", "-n", "2"]).stdout();
    let applied = dir.jobctl(&["reload"]);
    applied.code(0);
    assert!(applied.stdout().contains("changed: job stays (schedule"));
    assert_ne!(
        dir.jobctl(&["next", "stays", "-n", "2"]).stdout(),
        status,
        "the changed schedule is planned from now"
    );
    jobd.stop();
}

#[test]
fn a_changed_command_is_used_from_the_next_run_and_an_added_job_runs() {
    let text = "jobs:\n  x:\n    every: 200ms\n    command: 'echo old >> x.out'\n";
    let dir = Dir::new(text);
    let mut jobd = dir.start(&[]);
    assert!(eventually(Duration::from_secs(20), || !dir
        .lines("x.out")
        .is_empty()));
    fs::write(
        dir.jobfile(),
        "jobs:\n  x:\n    every: 200ms\n    command: 'echo new >> x.out'\n    env: {A: b}\n  \
         added:\n    every: 200ms\n    command: 'echo $A >> added.out'\n    env: {A: here}\n",
    )
    .unwrap();
    let reload = dir.jobctl(&["reload"]);
    reload.code(0);
    assert!(reload.stdout().contains("changed: job x (command"));
    assert!(
        eventually(Duration::from_secs(10), || {
            let lines = dir.lines("x.out");
            lines.iter().filter(|l| *l == "new").count() >= 3
        }),
        "{}",
        jobd.log()
    );
    let lines = dir.lines("x.out");
    let first_new = lines.iter().position(|l| l == "new").unwrap();
    assert!(
        lines[first_new..].iter().all(|l| l == "new"),
        "an old command ran after the reload: {lines:?}"
    );
    assert!(eventually(Duration::from_secs(10), || dir
        .lines("added.out")
        .first()
        .is_some_and(|l| l == "here")));
    jobd.stop();
}
