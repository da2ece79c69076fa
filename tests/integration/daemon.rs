//! The daemon: instants, children, overlap, timeouts, output, shutdown.

use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;

use crate::harness::{Dir, alive, eventually};

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("`{text}`: {e}"))
        .to_utc()
}

/// The instants a job wrote, sorted; asserts none came twice.
#[track_caller]
fn distinct_instants(lines: &[String]) -> Vec<DateTime<Utc>> {
    let mut instants: Vec<_> = lines
        .iter()
        .map(|l| instant(l.split_whitespace().next().unwrap()))
        .collect();
    instants.sort();
    let before = instants.len();
    instants.dedup();
    assert_eq!(before, instants.len(), "an instant ran twice: {lines:?}");
    instants
}

#[test]
fn fires_every_instant_once_with_sub_second_schedules() {
    let dir = Dir::new(
        r#"
jobs:
  tick:
    every: 200ms
    command: 'echo "$JOBD_SCHEDULED_AT" >> tick.out'
  second:
    schedule: "* * * * * *"
    command: 'echo "$JOBD_SCHEDULED_AT" >> second.out'
"#,
    );
    let mut jobd = dir.start(&[]);
    assert!(eventually(Duration::from_secs(20), || dir
        .lines("second.out")
        .len()
        >= 4));
    assert_eq!(jobd.stop(), Some(0));

    let log = jobd.log();
    for (file, period_ms) in [("tick.out", 200), ("second.out", 1000)] {
        let instants = distinct_instants(&dir.lines(file));
        for at in &instants {
            assert_eq!(
                at.timestamp_subsec_millis() % period_ms,
                0,
                "{file}: {at} is not on the schedule"
            );
            assert_eq!(at.timestamp_subsec_nanos() % 1_000_000, 0, "{at}");
        }
        for pair in instants.windows(2) {
            let gap = (pair[1] - pair[0]).num_milliseconds();
            // A gap is only allowed where jobd said it woke late and collapsed instants.
            if gap != i64::from(period_ms) {
                assert!(
                    log.contains("missed"),
                    "{file}: {} then {} unexplained:\n{log}",
                    pair[0],
                    pair[1]
                );
            }
        }
    }
}

#[test]
fn children_get_their_environment_group_workdir_and_dev_null() {
    let dir = Dir::new(
        r#"
defaults:
  env: { SHARED: from-defaults, OVERRIDDEN: from-defaults }
jobs:
  show:
    every: 300ms
    max_instances: 1
    workdir: sub
    env: { OVERRIDDEN: from-job }
    command: [./bin/show, "two words", "$HOME;|&"]
"#,
    );
    std::fs::create_dir_all(dir.join("sub/bin")).unwrap();
    let script = dir.join("sub/bin/show");
    std::fs::write(
        &script,
        r#"#!/bin/sh
{
  echo "job=$JOBD_JOB attempt=$JOBD_ATTEMPT run=$JOBD_RUN_ID at=$JOBD_SCHEDULED_AT"
  echo "pwd=$(pwd)"
  echo "shared=$SHARED overridden=$OVERRIDDEN"
  echo "args=$#|$1|$2"
  echo "stdin=$(readlink /proc/$$/fd/0)"
  echo "pgid=$(ps -o pgid= -p $$ | tr -d ' ') pid=$$"
} > "../env-$JOBD_RUN_ID.out"
"#,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut jobd = dir.start(&[]);
    let outputs = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("env-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .filter(|text| text.lines().count() == 6)
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(20), || outputs().len() >= 2),
        "{}",
        jobd.log()
    );
    jobd.stop();
    let runs = outputs();
    let mut run_ids = Vec::new();
    for text in &runs {
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("job=show attempt=1 run="), "{text}");
        let at = lines[0].rsplit_once("at=").unwrap().1;
        assert!(
            at.ends_with('Z') && at.len() == "2026-11-27T17:30:05.000000Z".len(),
            "{at}"
        );
        run_ids.push(lines[0].split_whitespace().nth(2).unwrap().to_string());
        assert_eq!(lines[1], format!("pwd={}", dir.join("sub").display()));
        assert_eq!(lines[2], "shared=from-defaults overridden=from-job");
        assert_eq!(
            lines[3], "args=2|two words|$HOME;|&",
            "arguments arrive literally"
        );
        assert_eq!(lines[4], "stdin=/dev/null");
        let (pgid, pid) = lines[5].split_once(' ').unwrap();
        assert_eq!(
            pgid.trim_start_matches("pgid="),
            pid.trim_start_matches("pid="),
            "own process group"
        );
    }
    run_ids.sort();
    run_ids.dedup();
    assert_eq!(run_ids.len(), runs.len(), "run ids are unique");
}

/// Start and end marks a job writes, and the most runs that overlapped.
fn max_concurrency(lines: &[String]) -> usize {
    let (mut now, mut max) = (0usize, 0usize);
    for line in lines {
        if line.starts_with("start") {
            now += 1;
            max = max.max(now);
        } else if line.starts_with("end") {
            now = now.saturating_sub(1);
        }
    }
    max
}

#[test]
fn max_instances_with_skip_and_queue() {
    let dir = Dir::new(
        r#"
shutdown_grace: 2s
jobs:
  skipper:
    every: 200ms
    command: 'echo start >> skip.out; sleep 0.7; echo end >> skip.out'
  pair:
    every: 200ms
    max_instances: 2
    command: 'echo start >> pair.out; sleep 0.9; echo end >> pair.out'
  queued:
    every: 300ms
    on_overlap: queue
    command: 'echo "start $JOBD_SCHEDULED_AT $(date -u +%s.%N)" >> queue.out; sleep 0.8; echo end >> queue.out'
"#,
    );
    let mut jobd = dir.start(&[]);
    assert!(eventually(Duration::from_secs(30), || {
        dir.lines("skip.out").len() >= 6
            && dir.lines("queue.out").len() >= 6
            && dir.lines("pair.out").len() >= 8
    }));
    jobd.stop();
    let log = jobd.log();
    assert_eq!(max_concurrency(&dir.lines("skip.out")), 1, "{log}");
    assert!(
        log.contains("skipper: not starting the instant at"),
        "{log}"
    );
    assert_eq!(max_concurrency(&dir.lines("pair.out")), 2, "{log}");
    assert_eq!(max_concurrency(&dir.lines("queue.out")), 1);
    assert!(
        log.contains("queued: the instant at")
            && log.contains("waits until a running instance ends"),
        "{log}"
    );
    // A queued run starts after its instant, as soon as the previous one ended.
    let starts: Vec<(DateTime<Utc>, f64)> = dir
        .lines("queue.out")
        .iter()
        .filter(|l| l.starts_with("start"))
        .map(|l| {
            let mut parts = l.split_whitespace().skip(1);
            (
                instant(parts.next().unwrap()),
                parts.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert!(starts.len() >= 3);
    let late = starts
        .iter()
        .filter(|(at, started)| *started - at.timestamp_millis() as f64 / 1000.0 > 0.2)
        .count();
    assert!(
        late >= 1,
        "queued runs should start late, when a slot frees: {starts:?}"
    );
}

#[test]
fn replace_stops_the_running_instance_and_starts_the_new_one() {
    let dir = Dir::new(
        r#"
shutdown_grace: 1s
jobs:
  replaced:
    every: 1s
    on_overlap: replace
    kill_grace: 5s
    command: 'trap "echo term >> replace.out; exit 0" TERM; echo "start $JOBD_SCHEDULED_AT" >> replace.out; sleep 30 & wait'
"#,
    );
    let mut jobd = dir.start(&[]);
    assert!(eventually(Duration::from_secs(20), || {
        dir.lines("replace.out")
            .iter()
            .filter(|l| l.starts_with("start"))
            .count()
            >= 3
    }));
    jobd.stop();
    let lines = dir.lines("replace.out");
    assert!(
        lines.iter().filter(|l| *l == "term").count() >= 2,
        "{lines:?}"
    );
    assert!(
        jobd.log().contains("(on_overlap: replace)"),
        "{}",
        jobd.log()
    );
}

#[test]
fn a_timeout_kills_the_whole_group_even_when_sigterm_is_ignored() {
    let dir = Dir::new(
        r#"
shutdown_grace: 1s
jobs:
  stubborn:
    every: 500ms
    timeout: 1s
    kill_grace: 1s
    command: 'trap "" TERM; sleep 300 & echo $! > grandchild.pid; echo $$ > child.pid; wait; wait'
"#,
    );
    let mut jobd = dir.start(&[]);
    // The grandchild's pid is written first: wait for both.
    assert!(eventually(Duration::from_secs(20), || {
        !dir.lines("grandchild.pid").is_empty() && !dir.lines("child.pid").is_empty()
    }));
    let child: i32 = dir.lines("child.pid")[0].parse().unwrap();
    let grandchild: i32 = dir.lines("grandchild.pid")[0].parse().unwrap();
    assert!(
        eventually(Duration::from_secs(20), || !alive(child)
            && !alive(grandchild)),
        "still alive after timeout + grace:\n{}",
        jobd.log()
    );
    jobd.wait_log("timed out; sending SIGTERM", Duration::from_secs(5));
    jobd.wait_log("sending SIGKILL", Duration::from_secs(5));
    jobd.wait_log("timed out (ended by SIGKILL)", Duration::from_secs(5));
    jobd.stop();
}

#[test]
fn a_timeout_also_stops_what_escaped_the_group_with_setsid() {
    let dir = Dir::new(
        r#"
shutdown_grace: 1s
jobs:
  escaping:
    every: 1h
    timeout: 1s
    kill_grace: 1s
    command: 'setsid sh -c "trap \"\" TERM; echo \$\$ > escapee.pid; sleep 300" & sleep 300'
"#,
    );
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(20));
    dir.jobctl(&["run", "escaping"]).code(0);
    assert!(eventually(Duration::from_secs(20), || !dir
        .lines("escapee.pid")
        .is_empty()));
    let escapee: i32 = dir.lines("escapee.pid")[0].parse().unwrap();
    assert!(
        eventually(Duration::from_secs(20), || !alive(escapee)),
        "the escapee outlived its job's timeout + grace:\n{}",
        jobd.log()
    );
    assert!(
        jobd.log()
            .contains("left the job's group; sending it SIGTERM too")
    );
    jobd.stop();
}

#[test]
fn shutdown_leaves_no_process_behind() {
    let dir = Dir::new(
        r#"
shutdown_grace: 1s
jobs:
  lingering:
    every: 300ms
    kill_grace: 1s
    command: 'setsid sleep 300 > /dev/null 2>&1 & echo $! >> escaped.pid; trap "" TERM; sleep 300 & echo $! >> sleeper.pid; wait; wait'
"#,
    );
    let mut jobd = dir.start(&[]);
    assert!(eventually(Duration::from_secs(20), || !dir
        .lines("sleeper.pid")
        .is_empty()));
    std::thread::sleep(Duration::from_millis(300));
    let code = jobd.stop();
    let pids: Vec<i32> = [dir.lines("escaped.pid"), dir.lines("sleeper.pid")]
        .concat()
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let left: Vec<_> = pids.iter().filter(|&&p| alive(p)).collect();
    for &&pid in &left {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(left.is_empty(), "left running: {left:?}\n{}", jobd.log());
    assert_eq!(code, Some(0));
    assert!(
        jobd.log().contains("stopping adopted orphan"),
        "{}",
        jobd.log()
    );
}

#[test]
fn a_flooding_child_neither_slows_other_jobs_nor_grows_jobd() {
    let dir = Dir::new(
        r#"
shutdown_grace: 1s
jobs:
  flooder:
    every: 100ms
    max_instances: 1
    command: 'head -c 300000000 /dev/zero; yes | head -n 2000000'
  steady:
    every: 100ms
    command: 'echo "$JOBD_SCHEDULED_AT $(date -u +%s.%N)" >> steady.out'
"#,
    );
    let mut jobd = dir.start(&[]);
    assert!(eventually(Duration::from_secs(30), || dir
        .lines("steady.out")
        .len()
        >= 40));
    let status = std::fs::read_to_string(format!("/proc/{}/status", jobd.pid())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    jobd.stop();
    assert!(rss_kib < 64 * 1024, "jobd grew to {rss_kib} KiB");
    let lateness: Vec<f64> = dir
        .lines("steady.out")
        .iter()
        .map(|l| {
            let (at, started) = l.split_once(' ').unwrap();
            started.parse::<f64>().unwrap() - instant(at).timestamp_micros() as f64 / 1e6
        })
        .collect();
    let mut sorted = lateness.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    // Generous: this asserts "not starved", the benchmark measures precisely.
    assert!(
        median < 0.1,
        "median lateness {median}s during a flood: {sorted:?}"
    );
    assert!(
        jobd.log().contains("lines of output not logged"),
        "flood output is rate-limited"
    );
}

#[test]
fn jobs_that_cannot_start_are_reported_and_jobd_goes_on() {
    let dir = Dir::new(
        r#"
jobs:
  missing_program:
    every: 500ms
    command: [no-such-program-jobd-test]
  missing_relative:
    every: 500ms
    command: [./bin/nothing]
  missing_workdir:
    every: 500ms
    workdir: /nonexistent/jobd-test
    command: ["true"]
  fine:
    every: 200ms
    command: 'echo ok >> fine.out'
"#,
    );
    let mut jobd = dir.start(&[]);
    jobd.wait_log("missing_program[", Duration::from_secs(20));
    jobd.wait_log(
        "cannot run `no-such-program-jobd-test`",
        Duration::from_secs(5),
    );
    jobd.wait_log("not found in PATH", Duration::from_secs(5));
    jobd.wait_log("cannot run `./bin/nothing`", Duration::from_secs(5));
    jobd.wait_log(
        "workdir /nonexistent/jobd-test does not exist",
        Duration::from_secs(5),
    );
    let before = dir.lines("fine.out").len();
    assert!(eventually(Duration::from_secs(10), || dir
        .lines("fine.out")
        .len()
        > before + 2));
    assert_eq!(jobd.stop(), Some(0));
}

#[test]
fn sighup_reloads_a_valid_jobfile_and_refuses_a_broken_one() {
    let dir = Dir::new("jobs:\n  old:\n    every: 200ms\n    command: 'echo x >> old.out'\n");
    let mut jobd = dir.start(&[]);
    assert!(eventually(Duration::from_secs(20), || !dir
        .lines("old.out")
        .is_empty()));

    std::fs::write(
        dir.jobfile(),
        "jobs:\n  old:\n    every: 200ms\n    command: 'echo x >> old.out'\n  broken: [\n",
    )
    .unwrap();
    jobd.signal(Signal::SIGHUP);
    jobd.wait_log("reload refused", Duration::from_secs(10));
    let before = dir.lines("old.out").len();
    assert!(
        eventually(Duration::from_secs(10), || dir.lines("old.out").len()
            > before + 2),
        "old jobs go on"
    );

    std::fs::write(
        dir.jobfile(),
        "jobs:\n  new:\n    every: 200ms\n    command: 'echo y >> new.out'\n",
    )
    .unwrap();
    jobd.signal(Signal::SIGHUP);
    assert!(
        eventually(Duration::from_secs(10), || !dir.lines("new.out").is_empty()),
        "{}",
        jobd.log()
    );
    assert_eq!(jobd.stop(), Some(0));
}

#[test]
fn an_invalid_jobfile_stops_jobd_from_starting() {
    let dir = Dir::new("jobs:\n  a:\n    every: 1s\n");
    let mut jobd = dir.start(&[]);
    assert_eq!(jobd.wait_exit(Duration::from_secs(10)), Some(1));
    assert!(
        jobd.log().contains("jobs.a: `command:` is missing"),
        "{}",
        jobd.log()
    );
}

#[test]
fn a_shutdown_waiting_for_a_stubborn_job_sleeps() {
    let dir = Dir::new(
        "shutdown_grace: 1s\njobs:\n  stubborn:\n    every: 1h\n    kill_grace: 6s\n    \
         command: 'trap \"\" TERM; sleep 30'\n",
    );
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(20));
    dir.jobctl(&["run", "stubborn"]).code(0);
    jobd.signal(Signal::SIGTERM);
    jobd.wait_log("shutting down", Duration::from_secs(10));
    jobd.signal(Signal::SIGTERM);
    jobd.wait_log("stopping the running jobs now", Duration::from_secs(10));
    let before = jobd.sample().cpu_ticks;
    std::thread::sleep(Duration::from_secs(2));
    let used = jobd.sample().cpu_ticks - before;
    assert!(
        used < 50,
        "jobd used {used} ticks in 2 s waiting for SIGKILL time"
    );
    jobd.stop();
}

#[test]
fn a_child_that_joins_jobds_own_group_cannot_make_jobd_signal_itself() {
    let dir = Dir::new(
        "shutdown_grace: 1s\njobs:\n  sly:\n    every: 1h\n    timeout: 1s\n    kill_grace: 1s\n    \
         command: [python3, -c, 'import os, time; os.setpgid(0, os.getpgid(os.getppid())); time.sleep(30)']\n",
    );
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(20));
    dir.jobctl(&["run", "sly"]).code(0);
    jobd.wait_log("timed out; sending SIGTERM", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    assert!(alive(jobd.pid().as_raw()), "jobd died:\n{}", jobd.log());
    dir.jobctl(&["status"]).code(0);
    assert!(!jobd.log().contains("shutting down"), "{}", jobd.log());
    // Its own group is gone, so the timeout reaches it directly.
    jobd.wait_log("timed out (ended by", Duration::from_secs(10));
    jobd.stop();
}
