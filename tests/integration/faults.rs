//! Faults and endurance: jobd killed with SIGKILL over and over, run for thousands of
//! runs, abused by its own children, and given a full or read-only state directory.
//!
//! Each test asserts behaviour with generous bounds and prints its figures with
//! `eprintln!` (run with `--nocapture`). `JOBD_LONG_TESTS=1` runs the same tests with
//! bigger counts and, where stated, tighter bounds. `JOBD_TEST_SEED` repeats a storm.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::harness::{
    Daemon, Dir, ProcSample, Rng, alive, eventually, kill_with_groups, long_tests, percentile,
    processes_with_env, scale, stat_fields,
};

/// Every process started by a test's jobd carries this variable (jobd passes its own
/// environment on), set to the test's temporary directory: how leftovers are found.
const MARK: &str = "JOBD_FAULTS_MARK";

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("`{text}`: {e}"))
        .to_utc()
}

fn seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1e6
}

/// The processes of this test still alive (jobd's descendants, wherever they went);
/// waits up to `within` for them to end by themselves, then kills them and their
/// groups. Returns what had to be killed, with its command line.
fn reap_leftovers(mark: &str, within: Duration) -> Vec<String> {
    if eventually(within, || processes_with_env(MARK, mark).is_empty()) {
        return Vec::new();
    }
    let left = processes_with_env(MARK, mark);
    let described = left
        .iter()
        .map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            let parent = stat_fields(*pid)
                .and_then(|f| f.get(1).cloned())
                .unwrap_or_default();
            format!("pid {pid} (parent {parent}): {}", cmdline.trim())
        })
        .collect();
    kill_with_groups(&left);
    described
}

/// Kills, when dropped, whatever processes of the test are left: a failing test
/// leaves nothing running either. Declare it before the `Daemon`, so that it runs last.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        kill_with_groups(&processes_with_env(MARK, &self.0));
    }
}

/// Fails the test if processes of it are still running at its end (after killing them).
#[track_caller]
fn assert_nothing_left(mark: &str, within: Duration) {
    let left = reap_leftovers(mark, within);
    assert!(left.is_empty(), "left running (now killed): {left:#?}");
}

/// Lines of one spool file's marker: `start PID ATTEMPT` and `end PID`.
#[derive(Debug, Default)]
struct Marker {
    starts: Vec<(i32, u32)>,
    ends: Vec<i32>,
    /// Another execution started while one was still going.
    overlapped: bool,
}

fn read_marker(path: &Path) -> Marker {
    let mut marker = Marker::default();
    // For each execution going on: how many starts there had been when it started.
    let mut going = BTreeMap::new();
    for line in fs::read_to_string(path).unwrap_or_default().lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["start", pid, attempt] => {
                let pid: i32 = pid.parse().unwrap();
                going.insert(pid, marker.starts.len());
                marker.starts.push((pid, attempt.parse().unwrap()));
            }
            ["end", pid] => {
                let pid: i32 = pid.parse().unwrap();
                // Another execution started after this one and before its end. (One
                // killed with its jobd never writes an end, and counts for nothing.)
                if going
                    .remove(&pid)
                    .is_some_and(|starts_before| marker.starts.len() > starts_before + 1)
                {
                    marker.overlapped = true;
                }
                marker.ends.push(pid);
            }
            _ => {}
        }
    }
    marker
}

const STORM: &str = r#"
timezone: UTC
shutdown_grace: 5s
spool:
  workers: 4
jobs:
  tick:
    every: 1s
    command: 'echo "$JOBD_SCHEDULED_AT $$" >> tick.out'
tasks:
  mark:
    command: [sh, -c, 'echo "start $$ $JOBD_ATTEMPT" >> "marks/$JOBD_SPOOL_NAME"; sleep "$1"; echo "end $$" >> "marks/$JOBD_SPOOL_NAME"', mark]
    timeout: 60s
    accept:
      args: ['[0-9.]+']
"#;

/// (1) SIGKILL at random moments while files pour into the spool: at the end every file
/// is in done/ (or, for the deliberately bad ones, failed/ with a reason), none lost or
/// stuck, and the per-second job never ran an instant twice.
#[test]
fn kill_9_storm_loses_no_spool_file_and_runs_no_instant_twice() {
    let files: usize = scale(200, 1000);
    let kills: usize = scale(20, 50);
    // jobd lives this long (ms) between kills; files come every PACE.
    let (up_min, up_max) = scale((60, 450), (100, 900));
    const PACE: Duration = Duration::from_millis(25);
    let mut rng = Rng::from_env();
    eprintln!(
        "kill -9 storm: {files} files, {kills} kills, seed {} (JOBD_TEST_SEED repeats it)",
        rng.seed()
    );
    let dir = Dir::new(STORM);
    fs::create_dir(dir.join("marks")).unwrap();
    let mark = dir.path().display().to_string();
    let _leftovers = Leftovers(mark.clone());
    let env = [(MARK, mark.as_str())];
    // Every 25th file names a task that does not exist: it must go to failed/.
    let bad = |i: usize| i % 25 == 7;
    let sleeps: Vec<String> = (0..files)
        .map(|_| match rng.range(0, 10) {
            0 => "0.3".to_string(),
            n => format!("0.0{}", n.min(9)),
        })
        .collect();
    // The first jobd creates the spool's folders before any file is dropped.
    let mut jobd = dir.start_appending(&env, None);
    jobd.wait_log("started:", Duration::from_secs(10));

    let started = Instant::now();
    let (mut leftovers_seen, mut leftovers_left_alive, mut down_ms) = (0usize, 0usize, 0u64);
    let mut starts_before = 0;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for (i, sleep) in sleeps.iter().enumerate() {
                let body = if bad(i) {
                    r#"{"task": "no_such_task"}"#.to_string()
                } else {
                    format!(r#"{{"task": "mark", "args": ["{sleep}"]}}"#)
                };
                dir.drop_file(&format!("f-{i:04}.json"), body.as_bytes());
                std::thread::sleep(PACE);
            }
        });
        for k in 0..kills {
            std::thread::sleep(Duration::from_millis(rng.range(up_min, up_max)));
            jobd.kill9();
            // jobd's children outlive it (re-parented away from it). Half the time the
            // test kills them before the restart; the other half they run on while the
            // next jobd starts, as they would after a real crash.
            let leftovers = processes_with_env(MARK, &mark);
            leftovers_seen += leftovers.len();
            if k % 2 == 0 {
                kill_with_groups(&leftovers);
            } else {
                leftovers_left_alive += leftovers.len();
            }
            if rng.range(0, 4) == 0 {
                let down = rng.range(0, 400);
                down_ms += down;
                std::thread::sleep(Duration::from_millis(down));
            }
            starts_before = jobd.log().matches("started:").count();
            jobd = dir.start_appending(&env, None);
        }
    });
    let storm = started.elapsed();
    // The last jobd must have set up its signal handlers before the test stops it (a
    // SIGTERM in its first milliseconds kills it by the default action).
    assert!(
        eventually(Duration::from_secs(10), || jobd
            .log()
            .matches("started:")
            .count()
            > starts_before),
        "the last jobd did not start:\n{}",
        tail(&jobd.log(), 20)
    );

    let total = |dir: &Dir| dir.spool_files("done").len() + dir.spool_files("failed").len();
    let within = Duration::from_secs(scale(60, 300));
    if !eventually(within, || {
        total(&dir) == files
            && dir.spool_files("new").is_empty()
            && dir.spool_files("running").is_empty()
    }) {
        panic!(
            "not every file finished within {within:?} of the storm's end:\nnew: {:?}\nrunning: {:?}\ndone: {}, failed: {}\n{}",
            dir.spool_files("new"),
            dir.spool_files("running"),
            dir.spool_files("done").len(),
            dir.spool_files("failed").len(),
            tail(&jobd.log(), 60)
        );
    }
    let drained = started.elapsed() - storm;
    assert_eq!(jobd.stop(), Some(0), "{}", tail(&jobd.log(), 40));
    assert_nothing_left(&mark, Duration::from_secs(10));

    // Every file: where it should be, with a result that says why.
    let done: HashSet<String> = dir.spool_files("done").into_iter().collect();
    let failed: HashSet<String> = dir.spool_files("failed").into_iter().collect();
    let (mut reruns, mut overlaps, mut attempt_repeats, mut most) = (0, 0, 0, 0);
    let mut recorded_mismatch = 0;
    for i in 0..files {
        let name = format!("f-{i:04}.json");
        if bad(i) {
            assert!(failed.contains(&name), "{name} should be in failed/");
            let result = dir.result("failed", &name);
            let reason = result["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("unknown task"), "{name}: {result}");
            continue;
        }
        assert!(
            done.contains(&name),
            "{name} should be in done/ (failed/: {}): {}",
            failed.contains(&name),
            if failed.contains(&name) {
                dir.result("failed", &name).to_string()
            } else {
                String::new()
            }
        );
        let result = dir.result("done", &name);
        assert_eq!(result["state"], "done", "{name}: {result}");
        let attempts = result["attempts"].as_array().unwrap();
        assert_eq!(attempts.last().unwrap()["exit_code"], 0, "{name}: {result}");
        let marker = read_marker(&dir.join("marks").join(&name));
        assert!(
            !marker.starts.is_empty(),
            "{name} is in done/ but never ran"
        );
        assert!(!marker.ends.is_empty(), "{name}: no execution ended");
        let runs = marker.starts.len();
        most = most.max(runs);
        if runs > 1 {
            reruns += 1;
        }
        if marker.overlapped {
            overlaps += 1;
        }
        let mut numbers: Vec<u32> = marker.starts.iter().map(|(_, a)| *a).collect();
        numbers.dedup();
        if numbers.len() < runs {
            attempt_repeats += 1;
        }
        if attempts.len() != runs {
            recorded_mismatch += 1;
        }
    }
    assert_eq!(
        done.len() + failed.len(),
        files,
        "files appeared from nowhere"
    );

    // The per-second job: never the same instant twice, across every restart.
    let mut ticks: Vec<String> = dir
        .lines("tick.out")
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .collect();
    let tick_runs = ticks.len();
    ticks.sort();
    ticks.dedup();
    assert_eq!(ticks.len(), tick_runs, "an instant of tick ran twice");

    let litter: Vec<String> = ["tmp", "new", "running", "done", "failed"]
        .iter()
        .flat_map(|sub| {
            fs::read_dir(dir.spool(sub))
                .unwrap()
                .flatten()
                .map(|e| format!("{sub}/{}", e.file_name().to_string_lossy()))
                .filter(|n| n.contains("/."))
                .collect::<Vec<_>>()
        })
        .collect();
    let log = jobd.log();
    eprintln!(
        "kill -9 storm: {files} files ({} bad), {kills} kills over {:.1}s ({:.1}s down), drained {:.1}s later",
        (0..files).filter(|&i| bad(i)).count(),
        storm.as_secs_f64(),
        down_ms as f64 / 1000.0,
        drained.as_secs_f64()
    );
    eprintln!(
        "  lost 0, stuck 0; re-runs (at-least-once cost): {reruns} files ran more than once (most: {most} times); \
         {overlaps} ran twice at the same time (an orphan of a killed jobd and the next attempt); \
         {attempt_repeats} saw the same JOBD_ATTEMPT twice; {recorded_mismatch} results count a different number of attempts than ran"
    );
    eprintln!(
        "  leftover processes after the kills: {leftovers_seen} (of which {leftovers_left_alive} were left running into a restart); \
         re-runs logged: {}; tick ran {tick_runs} instants, none twice; litter (temporary files left): {litter:?}",
        log.matches("was running when jobd stopped").count()
    );
}

/// The log's last `n` lines.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// (1b) After a SIGKILL the running child lives on, re-parented away from jobd. The next
/// jobd must stop it (found by its JOBD_RUN_ID) before it runs the file again (attempt
/// 2), so the two never overlap, and must not take the old child for one of its own.
#[test]
fn a_killed_jobds_child_still_running_does_not_confuse_the_next_jobd() {
    let dir = Dir::new(
        r#"
timezone: UTC
shutdown_grace: 5s
jobs:
  tick:
    every: 500ms
    command: 'echo "$JOBD_SCHEDULED_AT" >> tick.out'
tasks:
  slow:
    command: [sh, -c, 'echo "start $$ $JOBD_ATTEMPT" >> marker; sleep "$1"; echo "end $$" >> marker; echo "to a closed pipe"; echo "after $$" >> marker', slow]
    accept:
      args: ['[0-9]+']
"#,
    );
    let mark = dir.path().display().to_string();
    let _leftovers = Leftovers(mark.clone());
    let env = [(MARK, mark.as_str())];
    let mut jobd = dir.start_appending(&env, None);
    jobd.wait_log("started:", Duration::from_secs(10));
    dir.drop_file("slow.json", br#"{"task": "slow", "args": ["3"]}"#);
    assert!(eventually(Duration::from_secs(20), || !dir
        .lines("marker")
        .is_empty()));
    let old: i32 = dir.lines("marker")[0]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    jobd.kill9();
    assert!(alive(old), "the child dies with jobd?");

    let mut jobd = dir.start_appending(&env, None);
    dir.wait_spool("done", 1, Duration::from_secs(30), &jobd);
    let marker = read_marker(&dir.join("marker"));
    let new = marker
        .starts
        .iter()
        .find(|(pid, _)| *pid != old)
        .copied()
        .expect("a second execution");
    assert_eq!(new.1, 2, "the re-run is attempt 2: {marker:?}");
    let result = dir.result("done", "slow.json");
    let attempts = result["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{result}");
    assert_eq!(attempts[0]["error"], "jobd stopped while it ran");
    assert!(!alive(old), "the old attempt was stopped first");
    assert!(
        !marker.overlapped,
        "the attempts overlapped: {marker:?}\n{}",
        jobd.log()
    );
    assert!(
        jobd.log()
            .contains("still running from before jobd stopped")
    );
    let before_tick = dir.lines("tick.out").len();
    assert!(eventually(Duration::from_secs(10), || dir
        .lines("tick.out")
        .len()
        >= before_tick + 2));
    assert_eq!(jobd.stop(), Some(0));
    let log = jobd.log();
    assert!(
        !log.contains(&format!("pid {old}:")) && !log.contains(&format!("orphan pid {old} ")),
        "the new jobd took the old child for its own:\n{log}"
    );
    assert_nothing_left(&mark, Duration::from_secs(5));
    let lines = dir.lines("marker");
    eprintln!(
        "child of a killed jobd: the next jobd re-ran the file as attempt 2 {} the old child (pid {old}); \
         the old child {} (marker: {lines:?})",
        if marker.overlapped {
            "while it ran beside"
        } else {
            "after stopping"
        },
        if lines.iter().any(|l| l == &format!("after {old}")) {
            "survived writing to its closed stdout"
        } else if lines.iter().any(|l| l == &format!("end {old}")) {
            "died of SIGPIPE at its first write to stdout (jobd's end of the pipe was gone)"
        } else {
            "never finished"
        }
    );
}

/// jobd's figures, the median of three samples taken 100 ms apart (a child starting or
/// ending moves the count of open files by two).
fn steady_sample(jobd: &Daemon) -> ProcSample {
    let mut samples: Vec<ProcSample> = (0..3)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
            jobd.sample()
        })
        .collect();
    samples.sort_by_key(|s| s.fds);
    samples.swap_remove(1)
}

/// Children of jobd that stayed zombies for 300 ms: ended and never reaped.
fn lasting_zombies(jobd: &Daemon) -> Vec<i32> {
    let first = jobd.sample().zombies;
    if first.is_empty() {
        return first;
    }
    std::thread::sleep(Duration::from_millis(300));
    let second = jobd.sample().zombies;
    first.into_iter().filter(|z| second.contains(z)).collect()
}

/// (2) An `every: 10ms` job printing a line, for thousands of runs: jobd's open files,
/// memory and children stay flat, and no child stays a zombie.
#[test]
fn thousands_of_runs_leak_no_file_memory_or_zombie() {
    let runs: usize = scale(1_000, 10_000);
    let dir = Dir::new(
        r#"
timezone: UTC
shutdown_grace: 5s
jobs:
  fast:
    every: 10ms
    command: [echo, a line of output from the fast job]
"#,
    );
    let mark = dir.path().display().to_string();
    let _leftovers = Leftovers(mark.clone());
    let mut jobd = dir.start_appending(&[(MARK, mark.as_str())], None);
    let history = dir.join(".jobd/history.jsonl");
    let ended = || {
        fs::read(&history)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(20), || ended() >= 50),
        "{}",
        jobd.log()
    );
    let started = Instant::now();
    let first_runs = ended();
    let first = steady_sample(&jobd);
    let (mut max_fds, mut max_rss, mut max_children) = (first.fds, first.rss_kib, 0);
    let mut status_calls = 0;
    let within = Duration::from_secs(scale(45, 400));
    while ended() < first_runs + runs {
        assert!(
            started.elapsed() < within,
            "only {} runs in {within:?}",
            ended() - first_runs
        );
        let now = jobd.sample();
        max_fds = max_fds.max(now.fds);
        max_rss = max_rss.max(now.rss_kib);
        max_children = max_children.max(now.children.len());
        // The control path is part of the loop too.
        if status_calls < 1 + started.elapsed().as_secs() / 2 {
            dir.jobctl(&["status", "--json"]).code(0);
            status_calls += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let elapsed = started.elapsed();
    let done = ended() - first_runs;
    let last = steady_sample(&jobd);
    let zombies = lasting_zombies(&jobd);
    let cpu = last.cpu_ticks - first.cpu_ticks;
    assert_eq!(jobd.stop(), Some(0));
    assert_nothing_left(&mark, Duration::from_secs(5));
    eprintln!(
        "endurance: {done} runs of an every-10ms job in {:.1}s ({:.0}/s); open files {} -> {} (max {max_fds}); \
         RSS {} KiB -> {} KiB (max {max_rss}); children at most {max_children}; lasting zombies {zombies:?}; \
         jobd CPU {:.2}s ({:.2} ms per run); {status_calls} jobctl status calls",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64(),
        first.fds,
        last.fds,
        first.rss_kib,
        last.rss_kib,
        cpu as f64 / 100.0,
        cpu as f64 * 10.0 / done as f64
    );
    assert!(
        last.fds.abs_diff(first.fds) <= 4,
        "open files went from {} to {}",
        first.fds,
        last.fds
    );
    assert!(zombies.is_empty(), "children left as zombies: {zombies:?}");
    assert!(
        last.rss_kib < first.rss_kib + 8 * 1024,
        "RSS grew from {} KiB to {} KiB",
        first.rss_kib,
        last.rss_kib
    );
}

/// A fork bomb with a fuse: a binary tree DEPTH levels deep, 2^(DEPTH+1) - 1 processes,
/// each writing `RUN_ID PID` to bomb.pids. Odd levels exit at once, so that their
/// children are orphaned (and adopted by jobd); the others sleep, ignoring SIGTERM.
const BOMB: &str = r#"#!/bin/sh
echo "$JOBD_RUN_ID $$" >> bomb.pids
d=$1
if [ "$d" -gt 0 ]; then
  ./bomb.sh $((d - 1)) &
  ./bomb.sh $((d - 1)) &
fi
[ $((d % 2)) -eq 1 ] && exit 0
exec sleep 300
"#;

/// `escape.sh FILE SECONDS [ignore-term]`: start a grandchild that leaves the job's
/// process group and session (setsid), notes its pid in FILE and lives SECONDS; the job
/// waits until it has left, so that the group's SIGTERM at the job's end cannot catch it.
const ESCAPE: &str = r#"#!/bin/sh
ready="ready.$$"
setsid sh -c '[ "$3" = ignore-term ] && trap "" TERM; echo $$ >> "$1"; : > "$2"; exec sleep "$4"' \
  escape "$1" "$ready" "${3:-}" "$2" < /dev/null > /dev/null 2>&1 &
until [ -e "$ready" ]; do sleep 0.01; done
rm -f "$ready"
"#;

fn hostile_jobfile(depth: u32) -> String {
    format!(
        r#"
timezone: UTC
shutdown_grace: 2s
jobs:
  tick:
    every: 1s
    command: 'echo "$JOBD_SCHEDULED_AT $(date -u +%s.%N)" >> tick.out'
  # The fork storm (at .1) and the exit storm (SIGKILL at .6) fall between tick's
    # instants: at an instant they put hundreds of runnable processes beside jobd on the
    # CPUs, and the kernel, not jobd, decides when it runs (see docs/reliability.md).
  bomb:
    every: 3s
    offset: 100ms
    timeout: 1500ms
    kill_grace: 1s
    # ulimit -u caps a non-root user's processes; root is exempt, the depth is the fuse.
    command: 'ulimit -u 4000 2>/dev/null; trap "" TERM; ./bomb.sh {depth} & exec sleep 300'
  escaper:
    every: 1s
    offset: 250ms
    command: [./escape.sh, escaped.pid, "0.5"]
  flood:
    every: 1s
    command: 'yes "flood flood flood flood flood flood" | head -n 200000'
  outlaw:
    schedule: "0 0 1 1 *"
    command: [./escape.sh, outlaw.pid, "300", ignore-term]
"#
    )
}

/// (3) Children that fork-bomb (with a fuse), ignore SIGTERM, escape with setsid and
/// flood their output, all at once: the per-second job stays on time, every process is
/// killed at its timeout or at shutdown, orphans are reaped and logged.
#[test]
fn hostile_children_do_not_delay_a_per_second_job_and_leave_nothing_behind() {
    let depth = scale(7, 8);
    let window = Duration::from_secs(scale(10, 120));
    let dir = Dir::new(&hostile_jobfile(depth));
    for (name, script) in [("bomb.sh", BOMB), ("escape.sh", ESCAPE)] {
        fs::write(dir.join(name), script).unwrap();
        fs::set_permissions(
            dir.join(name),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let mark = dir.path().display().to_string();
    let _leftovers = Leftovers(mark.clone());
    let mut jobd = dir.start_appending(&[(MARK, mark.as_str())], None);
    jobd.wait_log("started:", Duration::from_secs(10));
    dir.jobctl(&["run", "outlaw"]).code(0);
    let started = Instant::now();
    let first = jobd.sample();
    let (mut most_processes, mut status_ms) = (0usize, Vec::new());
    while started.elapsed() < window {
        most_processes = most_processes.max(processes_with_env(MARK, &mark).len());
        let asked = Instant::now();
        dir.jobctl(&["status"]).code(0);
        status_ms.push(asked.elapsed().as_millis());
        std::thread::sleep(Duration::from_millis(500));
    }
    let last = jobd.sample();

    // Every bomb that timed out is gone, orphans and all.
    let pids = |file: &str| -> Vec<(String, i32)> {
        dir.lines(file)
            .iter()
            .filter_map(|l| {
                let (id, pid) = l.split_once(' ').unwrap_or(("", l));
                Some((id.to_string(), pid.trim().parse().ok()?))
            })
            .collect()
    };
    let log = jobd.log();
    let bombs: BTreeMap<String, Vec<i32>> =
        pids("bomb.pids")
            .into_iter()
            .fold(BTreeMap::new(), |mut runs, (id, pid)| {
                runs.entry(id).or_default().push(pid);
                runs
            });
    let timed_out: Vec<&String> = bombs
        .keys()
        .filter(|id| log.contains(&format!("bomb[{id}]: timed out (ended by SIGKILL)")))
        .collect();
    assert!(
        !timed_out.is_empty(),
        "no bomb timed out within {window:?}:\n{}",
        tail(&log, 40)
    );
    for id in &timed_out {
        let survivors =
            || -> Vec<i32> { bombs[*id].iter().copied().filter(|&p| alive(p)).collect() };
        assert!(
            eventually(Duration::from_secs(5), || survivors().is_empty()),
            "bomb {id} timed out, yet {} of its {} processes live on",
            survivors().len(),
            bombs[*id].len()
        );
    }
    let zombies = lasting_zombies(&jobd);
    assert!(zombies.is_empty(), "unreaped children: {zombies:?}");

    // An escaped grandchild that ended was reaped by jobd and logged as an orphan.
    let escaped: Vec<i32> = pids("escaped.pid").into_iter().map(|(_, p)| p).collect();
    let reaped = || -> Vec<i32> {
        let log = jobd.log();
        escaped
            .iter()
            .copied()
            .filter(|p| log.contains(&format!("reaped adopted orphan pid {p}:")))
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(5), || reaped().len() + 1
            >= escaped.len()),
        "escaped grandchildren {escaped:?}, reaped and logged only {:?}:\n{}",
        reaped(),
        tail(&log, 40)
    );
    let reaped = reaped();
    assert!(
        log.contains("lines of output not logged"),
        "the flood is rate-limited"
    );

    // The per-second job: on time, and firing throughout.
    let mut lateness: Vec<f64> = dir
        .lines("tick.out")
        .iter()
        .filter_map(|l| {
            let (at, started) = l.split_once(' ')?;
            Some(started.parse::<f64>().ok()? - seconds(instant(at)))
        })
        .collect();
    lateness.sort_by(f64::total_cmp);
    let ticks = lateness.len();
    let ms = |p: f64| percentile(&lateness, p) * 1000.0;
    // jobd's own part: from the instant to the moment it forked (the history's started_at).
    let mut forked: Vec<f64> = crate::harness::history_runs(&dir.join(".jobd"), "tick")
        .iter()
        .map(|run| {
            seconds(instant(run["started_at"].as_str().unwrap()))
                - seconds(instant(run["scheduled_at"].as_str().unwrap()))
        })
        .collect();
    forked.sort_by(f64::total_cmp);
    let forked_ms = |p: f64| percentile(&forked, p) * 1000.0;

    // Shutdown: the outlaw ignores SIGTERM in a session of its own; jobd kills it.
    let outlaw: i32 = dir.lines("outlaw.pid")[0].parse().unwrap();
    let outlaw_lived = alive(outlaw);
    let stopping = Instant::now();
    assert_eq!(jobd.stop(), Some(0));
    let stop_took = stopping.elapsed();
    let log = jobd.log();
    let outlaw_alive = alive(outlaw);
    assert_nothing_left(&mark, Duration::from_secs(2));
    assert!(!outlaw_alive, "the outlaw outlived jobd");
    assert!(
        log.contains(&format!(
            "stopping adopted orphan pid {outlaw} with SIGKILL"
        )),
        "{}",
        tail(&log, 30)
    );
    status_ms.sort();
    eprintln!(
        "hostile children over {:.0}s: {} bombs of {} processes (depth {depth}), {} timed out and were killed whole; \
         at most {most_processes} processes at once; {} escaped grandchildren, {} reaped and logged; \
         {} orphans reaped in all",
        window.as_secs_f64(),
        bombs.len(),
        (1u32 << (depth + 1)) - 1,
        timed_out.len(),
        escaped.len(),
        reaped.len(),
        log.matches("reaped adopted orphan").count()
    );
    eprintln!(
        "  tick lateness over {ticks} runs: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         of which jobd's own (instant to fork): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         jobctl status took p50 {} ms, max {} ms; jobd CPU {:.2}s, waited {:.2}s for a CPU; RSS {} -> {} KiB; \
         shutdown with {} took {:.1}s",
        ms(50.0),
        ms(90.0),
        ms(99.0),
        ms(100.0),
        forked_ms(50.0),
        forked_ms(99.0),
        forked_ms(100.0),
        status_ms[status_ms.len() / 2],
        status_ms.last().unwrap(),
        (last.cpu_ticks - first.cpu_ticks) as f64 / 100.0,
        (last.run_wait_ns - first.run_wait_ns) as f64 / 1e9,
        first.rss_kib,
        last.rss_kib,
        if outlaw_lived {
            "a SIGTERM-proof escaped orphan (SIGKILLed after 10 s)"
        } else {
            "no orphan left"
        },
        stop_took.as_secs_f64()
    );
    let expected_ticks = window.as_secs() as usize - 2;
    assert!(
        ticks >= expected_ticks,
        "tick ran {ticks} times in {window:?}"
    );
    let bound = if long_tests() { 20.0 } else { 500.0 };
    assert!(
        ms(99.0) < bound,
        "tick lateness p99 {:.2} ms (bound {bound} ms): {lateness:?}",
        ms(99.0)
    );
}

/// A tmpfs mounted for one test (root only), unmounted when dropped.
struct Mount {
    path: PathBuf,
}

impl Mount {
    /// Mount a tmpfs of `size` at `path`, or say why not (not root, no mount allowed).
    fn tmpfs(path: &Path, size: &str) -> Option<Mount> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root to mount a tmpfs");
            return None;
        }
        fs::create_dir_all(path).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0750"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .unwrap();
        if !mounted.status.success() {
            eprintln!(
                "skipped: cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&mounted.stderr)
            );
            return None;
        }
        Some(Mount {
            path: path.to_path_buf(),
        })
    }

    /// `mount -o remount,OPTIONS`.
    #[track_caller]
    fn remount(&self, options: &str) {
        let output = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "remount,{options}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Fill it: write until the disk refuses. Returns the filler's path.
    fn fill(&self) -> PathBuf {
        let path = self.path.join("filler");
        let mut file = fs::File::create(&path).unwrap();
        let page = [0u8; 4096];
        while file.write_all(&page).is_ok() {}
        // The last page may still have room for a few bytes.
        while file.write_all(&[0]).is_ok() {}
        path
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("mount")
            .args(["-o", "remount,rw"])
            .arg(&self.path)
            .output();
        let unmounted = Command::new("umount").arg(&self.path).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

const DISK: &str = r#"
timezone: UTC
shutdown_grace: 2s
state_dir: state
jobs:
  tick:
    every: 200ms
    command: 'echo "$JOBD_SCHEDULED_AT" >> tick.out'
tasks:
  note:
    command: [sh, -c, 'echo "$JOBD_SPOOL_NAME $JOBD_ATTEMPT" >> notes.out', note]
  slow_note:
    command: [sh, -c, 'sleep 2; echo "$JOBD_SPOOL_NAME $JOBD_ATTEMPT" >> notes.out', note]
"#;

/// The lines of the history file that are not whole JSON objects.
fn torn_history_lines(state: &Path) -> Vec<String> {
    fs::read_to_string(state.join("history.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .map(|l| l.chars().take(200).collect())
        .collect()
}

/// The newest instant of `tick` in the history file.
fn newest_tick(state: &Path) -> Option<DateTime<Utc>> {
    crate::harness::history_runs(state, "tick")
        .iter()
        .filter_map(|run| Some(instant(run["scheduled_at"].as_str()?)))
        .max()
}

/// Waits until `tick.out` has grown by `runs` lines.
#[track_caller]
fn assert_ticks_go_on(dir: &Dir, runs: usize, jobd: &Daemon) {
    let before = dir.lines("tick.out").len();
    assert!(
        eventually(Duration::from_secs(10), || dir.lines("tick.out").len()
            >= before + runs),
        "tick stopped firing:\n{}",
        tail(&jobd.log(), 30)
    );
}

/// What a full state directory did to the history.
struct FullDisk {
    /// `jobctl status` mentioned the history while it could not be written.
    status_says: bool,
    torn: Vec<String>,
    /// The run whose record was the first written once space returned, and whether the
    /// history file still holds it.
    first_after: String,
    first_after_readable: bool,
}

/// Fill the state directory while an every-200ms job runs, check that jobs go on and
/// the error is logged once, free the space, check the history is appended again.
fn fill_and_free_the_state_directory() -> Option<FullDisk> {
    let dir = Dir::new(DISK);
    let state = dir.join("state");
    let mount = Mount::tmpfs(&state, "64k")?;
    let mut jobd = dir.start(&[]);
    assert!(eventually(Duration::from_secs(20), || newest_tick(&state).is_some()));
    let filler = mount.fill();
    jobd.wait_log("cannot write the run history", Duration::from_secs(20));
    assert_ticks_go_on(&dir, 8, &jobd);
    let status = dir.jobctl(&["status"]);
    status.code(0);
    let status_says = status.stdout().to_lowercase().contains("history");
    dir.jobctl(&["history", "tick", "-n", "3"]).code(0);
    let lost_from = Utc::now();

    fs::remove_file(&filler).unwrap();
    jobd.wait_log("is written again", Duration::from_secs(10));
    assert!(
        eventually(Duration::from_secs(10), || newest_tick(&state)
            .is_some_and(|at| at > lost_from)),
        "no run written to the history after space came back:\n{}",
        tail(&jobd.log(), 30)
    );
    assert_ticks_go_on(&dir, 3, &jobd);
    assert_eq!(jobd.stop(), Some(0));
    let log = jobd.log();
    assert_eq!(
        log.matches("cannot write the run history").count(),
        1,
        "logged once while it lasts:\n{log}"
    );
    // The run that ended just before "written again" is the one whose record was written.
    let lines: Vec<&str> = log.lines().collect();
    let again = lines
        .iter()
        .position(|l| l.contains("is written again"))
        .unwrap();
    let first_after = lines[..again]
        .iter()
        .rev()
        .find_map(|l| {
            let rest = l.split_once("tick[")?.1;
            rest.contains("]: succeeded")
                .then(|| rest.split(']').next().unwrap().to_string())
        })
        .expect("a run ended before the history was written again");
    let first_after_readable = crate::harness::history_runs(&state, "tick")
        .iter()
        .any(|run| run["run_id"] == first_after.as_str());
    Some(FullDisk {
        status_says,
        torn: torn_history_lines(&state),
        first_after,
        first_after_readable,
    })
}

/// (5) The state directory fills up, then gets room again: jobs keep firing, the
/// history's write error is logged (once), and the history is appended again.
#[test]
fn a_full_state_directory_is_logged_and_the_history_recovers() {
    let Some(full) = fill_and_free_the_state_directory() else {
        return;
    };
    assert!(
        full.status_says,
        "jobctl status does not say the history cannot be written"
    );
    eprintln!(
        "full state dir: error logged once, jobs went on, history written again; `jobctl status` {} it; \
         damaged history lines: {}; the first record written after space returned ({}) is {}",
        if full.status_says {
            "shows"
        } else {
            "does not show"
        },
        full.torn.len(),
        full.first_after,
        if full.first_after_readable {
            "readable"
        } else {
            "LOST, glued to the torn line of the failed write"
        }
    );
}

/// (5a) The run recorded first after the disk had room again must be readable: a write
/// cut short by the full disk must not swallow it.
#[test]
fn the_first_run_recorded_after_a_full_disk_is_readable() {
    let Some(full) = fill_and_free_the_state_directory() else {
        return;
    };
    assert!(
        full.first_after_readable,
        "run {} was written after space came back, yet the history lost it; damaged lines: {:?}",
        full.first_after, full.torn
    );
}

/// (5b) The state directory turns read-only, then writable again.
#[test]
fn a_read_only_state_directory_is_logged_and_the_history_recovers() {
    let dir = Dir::new(DISK);
    let state = dir.join("state");
    let Some(mount) = Mount::tmpfs(&state, "1m") else {
        return;
    };
    let mut jobd = dir.start(&[]);
    assert!(eventually(Duration::from_secs(20), || newest_tick(&state).is_some()));
    mount.remount("ro");
    jobd.wait_log("cannot write the run history", Duration::from_secs(20));
    assert!(
        jobd.log().contains("Read-only file system"),
        "{}",
        jobd.log()
    );
    assert_ticks_go_on(&dir, 8, &jobd);
    dir.jobctl(&["status"]).code(0);
    let lost_from = Utc::now();
    mount.remount("rw");
    jobd.wait_log("is written again", Duration::from_secs(10));
    assert!(eventually(Duration::from_secs(10), || newest_tick(&state)
        .is_some_and(|at| at > lost_from)));
    assert_eq!(jobd.stop(), Some(0));
    let torn = torn_history_lines(&state);
    assert!(torn.is_empty(), "{torn:?}");
    eprintln!("read-only state dir: error logged, jobs went on, history written again");
}

/// (5c) A spool file that finishes while the state directory (which holds the spool) is
/// full: its result cannot be written. Once space returns it must still end in done/,
/// without waiting for a restart, and must not run again. (The disk fills while it
/// runs: a claim copies the file, so a file due on a full disk waits in new/ instead.)
#[test]
fn a_spool_file_finished_on_a_full_disk_is_filed_once_space_returns() {
    let dir = Dir::new(DISK);
    let state = dir.join("state");
    let Some(mount) = Mount::tmpfs(&state, "64k") else {
        return;
    };
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(10));
    let spool = state.join("spool");
    let drop = |name: &str, body: &str| {
        fs::write(spool.join("tmp").join(name), body).unwrap();
        fs::rename(spool.join("tmp").join(name), spool.join("new").join(name)).unwrap();
    };
    drop("late.json", r#"{"task": "slow_note"}"#);
    jobd.wait_log("(spool file late.json, attempt 1)", Duration::from_secs(10));
    let filler = mount.fill();
    assert!(
        eventually(Duration::from_secs(20), || dir.lines("notes.out").len()
            == 1),
        "{}",
        jobd.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let files = |sub: &str| -> Vec<String> {
        fs::read_dir(spool.join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    eprintln!(
        "full spool: after the run, running/ {:?}, done/ {:?}; log: {:?}",
        files("running"),
        files("done"),
        jobd.log()
            .lines()
            .filter(|l| l.contains("late.json"))
            .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest))
            .collect::<Vec<_>>()
    );
    fs::remove_file(&filler).unwrap();
    let filed = eventually(Duration::from_secs(75), || {
        files("done").contains(&"late.json".to_string())
    });
    let status: serde_json::Value =
        serde_json::from_str(&dir.jobctl(&["status", "--json"]).stdout()).unwrap();
    eprintln!(
        "full spool: {} after space returned; running/ {:?}, done/ {:?}; status says spool {}",
        if filed { "filed" } else { "NOT filed" },
        files("running"),
        files("done"),
        status["spool"]
    );
    assert!(
        filed,
        "late.json stays in running/ after space returned (jobd forgot it):\n{}",
        tail(&jobd.log(), 20)
    );
    jobd.stop();
    // A restart must not run it again.
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    jobd.stop();
    assert_eq!(
        dir.lines("notes.out").len(),
        1,
        "{:?}",
        dir.lines("notes.out")
    );
}

/// (5d) A spool file comes due while the state directory is read-only, so jobd cannot
/// claim it (move it to running/). Once the directory is writable again the file must
/// run, without waiting for a restart.
#[test]
fn a_spool_file_due_on_a_read_only_disk_runs_once_it_is_writable() {
    let dir = Dir::new(DISK);
    let state = dir.join("state");
    let Some(mount) = Mount::tmpfs(&state, "1m") else {
        return;
    };
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(10));
    let spool = state.join("spool");
    fs::write(
        spool.join("tmp/late.json"),
        r#"{"task": "note", "delay": "2s"}"#,
    )
    .unwrap();
    fs::rename(spool.join("tmp/late.json"), spool.join("new/late.json")).unwrap();
    jobd.wait_log("late.json waits until", Duration::from_secs(10));
    mount.remount("ro");
    jobd.wait_log("late.json", Duration::from_secs(1));
    std::thread::sleep(Duration::from_secs(3));
    let log_ro: Vec<String> = jobd
        .log()
        .lines()
        .filter(|l| l.contains("late.json"))
        .map(str::to_string)
        .collect();
    mount.remount("rw");
    let ran = eventually(Duration::from_secs(75), || {
        !dir.lines("notes.out").is_empty()
    });
    eprintln!(
        "read-only spool: the file {} after the disk became writable; log: {log_ro:?}",
        if ran { "ran" } else { "did NOT run" }
    );
    assert!(
        ran,
        "late.json stays in new/ after the disk became writable again (jobd forgot it):\n{}",
        tail(&jobd.log(), 20)
    );
    jobd.stop();
}

/// (1c) A scheduled job's run lives on after jobd is killed with SIGKILL. The next jobd
/// stops it before the job fires again (never two instances of a `max_instances: 1`
/// job at once), and records it in the history as `interrupted`.
#[test]
fn a_killed_jobds_running_job_is_stopped_and_recorded_before_it_fires_again() {
    let dir = Dir::new(
        r#"
timezone: UTC
shutdown_grace: 5s
jobs:
  slow:
    every: 1s
    command: [sh, -c, 'echo "start $$" >> marker; sleep 30; echo "end $$" >> marker']
"#,
    );
    let mark = dir.path().display().to_string();
    let _leftovers = Leftovers(mark.clone());
    let env = [(MARK, mark.as_str())];
    let mut jobd = dir.start_appending(&env, None);
    assert!(eventually(Duration::from_secs(20), || !dir
        .lines("marker")
        .is_empty()));
    let old: i32 = dir.lines("marker")[0]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    jobd.kill9();
    assert!(alive(old), "the run dies with jobd?");

    let mut jobd = dir.start_appending(&env, None);
    // The next run starts only once the old one is gone.
    assert!(
        eventually(Duration::from_secs(30), || dir.lines("marker").len() >= 2),
        "the job did not run again:\n{}",
        jobd.log()
    );
    assert!(!alive(old), "the old run was stopped");
    let starts: Vec<String> = dir.lines("marker");
    assert!(
        starts[1].starts_with("start ") && !starts[1].contains(&old.to_string()),
        "{starts:?}"
    );
    let history = dir.jobctl(&["history", "slow", "--json"]).stdout();
    let runs: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap();
    let interrupted: Vec<_> = runs
        .iter()
        .filter(|r| r["outcome"] == "interrupted")
        .collect();
    assert_eq!(interrupted.len(), 1, "{history}");
    assert!(
        jobd.log()
            .contains("still running from before jobd stopped"),
        "{}",
        jobd.log()
    );
    jobd.signal(nix::sys::signal::Signal::SIGTERM);
    jobd.signal(nix::sys::signal::Signal::SIGTERM);
    jobd.stop();
    assert_nothing_left(&mark, Duration::from_secs(5));
}
