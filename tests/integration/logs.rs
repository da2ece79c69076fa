//! `jobctl logs` and `jobctl run --wait`: what a run printed, kept per job in the state
//! directory, shown by job, by run, while jobd runs and while it is down, and followed
//! as it is written.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{Dir, JOBCTL, eventually};

const JOBFILE: &str = r#"
timezone: UTC
shutdown_grace: 2s
jobs:
  talk:
    every: 1h
    command: [sh, -c, 'echo "one $JOBD_RUN_ID"; echo two >&2; sleep 0.3; echo three; exit 4']
  flood:
    every: 1h
    command: [sh, -c, 'i=0; while [ $i -lt 3000 ]; do echo "line $i of a flood, long enough to fill the ring quickly"; i=$((i+1)); done']
"#;

#[test]
fn run_wait_prints_the_runs_lines_as_they_come_and_exits_with_its_status() {
    let dir = Dir::new(JOBFILE);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(20));
    let run = dir.jobctl(&["run", "talk", "--wait"]);
    run.code(4);
    let stdout = run.stdout();
    assert!(stdout.starts_with("one "), "{stdout}");
    assert!(stdout.contains("three\n"), "{stdout}");
    assert!(stdout.contains("failed with exit code 4"), "{stdout}");
    assert_eq!(run.stderr().trim(), "two");
    jobd.stop();
}

#[test]
fn logs_shows_a_jobs_or_a_runs_last_lines_with_jobd_up_or_down() {
    let dir = Dir::new(JOBFILE);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(20));
    dir.jobctl(&["run", "talk", "--wait"]).code(4);
    dir.jobctl(&["run", "talk", "--wait"]).code(4);
    let both = dir.jobctl(&["logs", "talk"]);
    both.code(0);
    assert_eq!(
        both.stdout().matches("three").count(),
        2,
        "{}",
        both.stdout()
    );
    let last = dir.jobctl(&["logs", "talk", "-n", "1"]).stdout();
    assert_eq!(last.lines().count(), 1);
    assert!(last.ends_with("three\n"), "{last}");
    let history = dir.jobctl(&["history", "talk", "--json"]).stdout();
    let runs: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap();
    let first = runs[0]["run_id"].as_str().unwrap().to_string();
    let one = dir.jobctl(&["logs", &first]).stdout();
    assert_eq!(one.lines().count(), 3, "{one}");
    assert!(one.lines().all(|l| l.contains(&first)), "{one}");
    dir.jobctl(&["logs", "nothing-like-this"]).code(1);
    dir.jobctl(&["logs", "talk", "-n", "10001"]).code(1);
    // A flood keeps at most two files' worth.
    dir.jobctl(&["run", "flood", "--wait"]).code(0);
    let ring: u64 = ["flood.log", "flood.log.old"]
        .iter()
        .filter_map(|f| fs::metadata(dir.join(".jobd/logs").join(f)).ok())
        .map(|m| m.len())
        .sum();
    assert!(ring <= 2 * 256 * 1024 + 4096, "{ring} bytes kept");
    jobd.stop();
    // Down: from the state directory, exit 3.
    let down = dir.jobctl(&["logs", &first]);
    down.code(3);
    assert_eq!(down.stdout(), one);
}

#[test]
fn logs_follow_prints_new_lines_as_they_are_written() {
    let dir = Dir::new(JOBFILE);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(20));
    let mut follower = Command::new(JOBCTL)
        .args(["logs", "talk", "-f", "-n", "0"])
        .current_dir(dir.path())
        .env_remove("JOBD_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (sent, received) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sent.send(line).is_err() {
                break;
            }
        }
    });
    // The follower may connect after a run's first line, or after the run: run until
    // it hears one whole, first line to last.
    let mut heard: Vec<String> = Vec::new();
    let whole = eventually(Duration::from_secs(30), || {
        dir.jobctl(&["run", "talk", "--wait"]);
        heard.extend(received.try_iter());
        heard
            .iter()
            .position(|l| l.contains("talk[") && l.contains("one "))
            .is_some_and(|first| heard[first..].iter().any(|l| l.ends_with("three")))
    });
    assert!(whole, "{heard:?}");
    follower.kill().unwrap();
    follower.wait().unwrap();
    reader.join().unwrap();
    jobd.stop();
}
