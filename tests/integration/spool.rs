//! One-off jobs through the spool directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{Dir, alive, eventually};

const TASKS: &str = r#"
timezone: UTC
shutdown_grace: 2s
spool:
  workers: 2
tasks:
  record:
    command: [sh, -c, 'for a in "$@"; do printf "%s|" "$a"; done > "out/$JOBD_SPOOL_FILE"; echo " attempt=$JOBD_ATTEMPT at=$JOBD_SCHEDULED_AT" >> "out/$JOBD_SPOOL_FILE"', record]
  shell:
    command: 'printf "%s|" "$@" > "out/$JOBD_SPOOL_FILE"'
  flaky:
    command: 'echo "attempt $JOBD_ATTEMPT" >> out/flaky; test "$JOBD_ATTEMPT" -ge 3'
    retries: 3
    retry_delay: 100ms
  slow:
    command: 'echo $$ > out/slow.pid; echo "attempt $JOBD_ATTEMPT" >> out/slow; echo "$JOBD_SCHEDULED_AT" >> out/slow.at; sleep 2'
"#;

fn dir() -> Dir {
    let dir = Dir::new(TASKS);
    fs::create_dir(dir.join("out")).unwrap();
    dir
}

#[test]
fn many_files_at_once_all_run_once_with_args_arriving_literally() {
    let dir = dir();
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    let tricky = r#"["two words", "$(touch pwned)", "; rm -rf /", "'quoted'", "*", "-x", ""]"#;
    for i in 0..60 {
        let task = if i % 2 == 0 { "record" } else { "shell" };
        dir.drop_file(
            &format!("job-{i:03}.json"),
            format!(r#"{{"task": "{task}", "args": {tricky}}}"#).as_bytes(),
        );
    }
    dir.wait_spool("done", 60, Duration::from_secs(60), &jobd);
    assert_eq!(jobd.stop(), Some(0));
    assert!(dir.spool_files("new").is_empty() && dir.spool_files("running").is_empty());
    assert!(!dir.join("pwned").exists() && !dir.join("out/pwned").exists());
    for i in 0..60 {
        let name = format!("job-{i:03}.json");
        let out = fs::read_to_string(dir.join("out").join(&name)).unwrap();
        assert!(
            out.starts_with("two words|$(touch pwned)|; rm -rf /|'quoted'|*|-x||"),
            "{name}: {out}"
        );
        let result = dir.result("done", &name);
        assert_eq!(result["status"], "done");
        assert_eq!(result["attempts"].as_array().unwrap().len(), 1);
        assert_eq!(result["attempts"][0]["exit_code"], 0);
    }
}

#[test]
fn retries_count_attempts_and_double_the_delay() {
    let dir = dir();
    let mut jobd = dir.start(&[]);
    dir.jobctl(&["submit", "flaky"]).code(0);
    dir.wait_spool("done", 1, Duration::from_secs(30), &jobd);
    jobd.stop();
    assert_eq!(
        dir.lines("out/flaky"),
        ["attempt 1", "attempt 2", "attempt 3"]
    );
    let result = dir.result("done", &dir.spool_files("done")[0]);
    let attempts = result["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0]["exit_code"], 1);
    assert_eq!(attempts[2]["exit_code"], 0);
    let log = jobd.log();
    assert!(
        log.contains("attempt 2 of 4 in 100ms") && log.contains("attempt 3 of 4 in 200ms"),
        "{log}"
    );
}

#[test]
fn delay_and_run_at_hold_a_file_even_across_a_restart() {
    let dir = dir();
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    let submitted = chrono::Utc::now();
    let delayed = dir.jobctl(&["submit", "record", "--in", "3s", "--", "delayed"]);
    delayed.code(0);
    let at = (submitted + chrono::TimeDelta::seconds(4)).to_rfc3339();
    dir.jobctl(&["submit", "record", "--at", &at, "--", "at"])
        .code(0);
    jobd.wait_log("waits until", Duration::from_secs(5));
    assert_eq!(jobd.stop(), Some(0));
    assert_eq!(
        dir.spool_files("new").len(),
        2,
        "delayed files wait in new/"
    );

    let mut jobd = dir.start(&[]);
    dir.wait_spool("done", 2, Duration::from_secs(30), &jobd);
    jobd.stop();
    for name in dir.spool_files("done") {
        let out = fs::read_to_string(dir.join("out").join(&name)).unwrap();
        let at = out.rsplit_once("at=").unwrap().1.trim();
        let scheduled = chrono::DateTime::parse_from_rfc3339(at).unwrap().to_utc();
        let started = chrono::DateTime::parse_from_rfc3339(
            dir.result("done", &name)["attempts"][0]["started_at"]
                .as_str()
                .unwrap(),
        )
        .unwrap()
        .to_utc();
        assert!(
            scheduled >= submitted + chrono::TimeDelta::milliseconds(2900),
            "{name}: due {scheduled}"
        );
        assert!(
            started >= scheduled,
            "{name} started {started} before {scheduled}"
        );
    }
}

#[test]
fn bad_files_go_to_failed_with_a_reason_and_good_ones_still_run() {
    let dir = dir();
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    let new = dir.spool("new");
    dir.drop_file("unknown-task.json", br#"{"task": "nope"}"#);
    dir.drop_file("garbage.yaml", b"task: [unclosed\n");
    dir.drop_file("binary.bin", &[0xff, 0xfe, 0x00, 0x01, 0x80]);
    dir.drop_file(
        "wrong-type.json",
        br#"{"task": "record", "args": "not a list"}"#,
    );
    dir.drop_file(
        "choose-program.json",
        br#"{"task": "record", "command": ["/bin/sh"]}"#,
    );
    dir.drop_file(
        "env-path.json",
        br#"{"task": "record", "env": {"LD_PRELOAD": "/tmp/evil.so"}}"#,
    );
    dir.drop_file("huge.json", &vec![b' '; 2 << 20]);
    std::os::unix::fs::symlink("/etc/passwd", new.join("symlink")).unwrap();
    nix::unistd::mkfifo(&new.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    fs::create_dir(new.join("directory")).unwrap();
    fs::write(dir.join("original.json"), br#"{"task": "record"}"#).unwrap();
    fs::hard_link(dir.join("original.json"), new.join("hardlink.json")).unwrap();
    dir.drop_file("good.json", br#"{"task": "record", "args": ["fine"]}"#);

    let expected = [
        ("unknown-task.json", "unknown task `nope`"),
        ("garbage.yaml", "line 1"),
        ("binary.bin", "not UTF-8"),
        ("wrong-type.json", "expected a list"),
        ("choose-program.json", "unknown key `command`"),
        ("env-path.json", "`LD_PRELOAD` may not be set"),
        ("huge.json", "more than the 1048576"),
        ("symlink", "symbolic link"),
        ("fifo", "a FIFO"),
        ("directory", "a directory"),
        ("hardlink.json", "2 hard links"),
    ];
    assert!(
        eventually(Duration::from_secs(30), || {
            dir.spool_files("failed").len() == expected.len()
                && dir.spool_files("done") == ["good.json"]
        }),
        "failed: {:?}\ndone: {:?}\n{}",
        dir.spool_files("failed"),
        dir.spool_files("done"),
        jobd.log()
    );
    for (name, reason) in expected {
        let result = dir.result("failed", name);
        assert_eq!(result["status"], "failed", "{name}");
        let text = result["reason"].as_str().unwrap_or_default();
        assert!(
            text.contains(reason),
            "{name}: `{text}` does not say `{reason}`"
        );
    }
    assert!(
        fs::symlink_metadata(dir.spool("failed").join("symlink"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(jobd.stop(), Some(0));
}

#[test]
fn files_of_other_users_are_refused_unless_allowed() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root to give a file to another user");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let dir = dir();
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    let staged = dir.spool("tmp").join("theirs.json");
    fs::write(&staged, br#"{"task": "record"}"#).unwrap();
    nix::unistd::chown(&staged, Some(nobody.uid), None).unwrap();
    fs::rename(&staged, dir.spool("new").join("theirs.json")).unwrap();
    assert!(eventually(Duration::from_secs(10), || dir
        .spool_files("failed")
        == ["theirs.json"]));
    let reason = dir.result("failed", "theirs.json")["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains(&format!("owned by uid {}", nobody.uid)),
        "{reason}"
    );
    jobd.stop();

    fs::write(
        dir.jobfile(),
        TASKS.replace("  workers: 2", "  workers: 2\n  allow_users: [nobody]"),
    )
    .unwrap();
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    fs::write(&staged, br#"{"task": "record"}"#).unwrap();
    nix::unistd::chown(&staged, Some(nobody.uid), None).unwrap();
    fs::rename(&staged, dir.spool("new").join("allowed.json")).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || dir.spool_files("done")
            == ["allowed.json"]),
        "{}",
        jobd.log()
    );
    jobd.stop();
}

#[test]
fn a_file_running_when_jobd_is_killed_runs_again_with_the_next_attempt() {
    let dir = dir();
    let mut jobd = dir.start(&[]);
    dir.jobctl(&["submit", "slow"]).code(0);
    // Its last line before it sleeps: the first attempt has written all it writes.
    assert!(eventually(Duration::from_secs(20), || !dir
        .lines("out/slow.at")
        .is_empty()));
    let orphan: i32 = dir.lines("out/slow.pid")[0].parse().unwrap();
    jobd.signal(Signal::SIGKILL);
    jobd.wait_exit(Duration::from_secs(10));
    // jobd died without stopping its child: the test stops it, by its process group.
    let _ = kill(Pid::from_raw(-orphan), Signal::SIGKILL);
    assert!(eventually(Duration::from_secs(10), || !alive(orphan)));
    assert_eq!(
        dir.spool_files("running").len(),
        1,
        "the claimed file stays in running/"
    );

    let mut jobd = dir.start(&[]);
    dir.wait_spool("done", 1, Duration::from_secs(30), &jobd);
    jobd.stop();
    assert_eq!(dir.lines("out/slow"), ["attempt 1", "attempt 2"]);
    let due = dir.lines("out/slow.at");
    assert_eq!(due.len(), 2);
    assert_eq!(due[0], due[1], "a re-run stands for the same arrival");
    let result = dir.result("done", &dir.spool_files("done")[0]);
    let attempts = result["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["error"], "jobd stopped while it ran");
    assert!(
        jobd.log()
            .contains("was running when jobd stopped; running it again (attempt 2)")
    );
}

#[test]
fn submit_works_with_jobd_down_and_checks_the_task() {
    let dir = dir();
    let submitted = dir.jobctl(&["submit", "record", "--env", "LANG=C", "--", "a b", "$HOME"]);
    submitted.code(0);
    let name = submitted.stdout().trim().to_string();
    assert!(
        name.starts_with("record.") && name.ends_with(".json"),
        "{name}"
    );
    assert_eq!(dir.spool_files("new"), std::slice::from_ref(&name));
    let text = fs::read_to_string(dir.spool("new").join(&name)).unwrap();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["args"], serde_json::json!(["a b", "$HOME"]));
    assert_eq!(body["env"]["LANG"], "C");
    assert!(dir.spool_files("tmp").is_empty());

    let unknown = dir.jobctl(&["submit", "nope"]);
    unknown.code(1);
    assert!(
        unknown.stderr().contains("unknown task `nope`") && unknown.stderr().contains("record"),
        "{}",
        unknown.stderr()
    );
    let forbidden = dir.jobctl(&["submit", "record", "--env", "PATH=/tmp"]);
    forbidden.code(1);
    assert!(
        forbidden.stderr().contains("`PATH` may not be set"),
        "{}",
        forbidden.stderr()
    );
    dir.jobctl(&["submit", "record", "--in", "soon"]).code(2);

    let mut jobd = dir.start(&[]);
    assert!(
        eventually(Duration::from_secs(20), || dir.spool_files("done")
            == [name.clone()]),
        "{}",
        jobd.log()
    );
    jobd.stop();
    assert!(
        fs::read_to_string(dir.join("out").join(&name))
            .unwrap()
            .starts_with("a b|$HOME|")
    );
}

#[test]
fn a_spool_directory_writable_by_others_stops_jobd() {
    let dir = dir();
    dir.jobctl(&["submit", "record"]).code(0);
    fs::set_permissions(dir.spool("new"), fs::Permissions::from_mode(0o777)).unwrap();
    let mut jobd = dir.start(&[]);
    assert_eq!(jobd.wait_exit(Duration::from_secs(10)), Some(1));
    assert!(
        jobd.log().contains("writable by every user"),
        "{}",
        jobd.log()
    );
}

#[test]
#[ignore = "needs the spool's tasks.json and accept: (issue 14), merged next"]
fn the_python_package_hands_a_report_to_a_real_jobd() {
    let dir = Dir::new(
        r#"
spool:
  workers: 2
tasks:
  long_report:
    command: [sh, -c, 'printf "%s|" "$@" > "out/$JOBD_SPOOL_NAME"', long_report]
    accept:
      args: ["--month", '\d{4}-\d{2}; rm -rf ~', "--later"]
"#,
    );
    fs::create_dir(dir.join("out")).unwrap();
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    let package = concat!(env!("CARGO_MANIFEST_DIR"), "/python/src");
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, jobd\n\
             print(jobd.submit('long_report', '--month', '2026-10; rm -rf ~', spool_dir=sys.argv[1]) + '.json')\n\
             print(jobd.submit('long_report', '--later', delay=1, spool_dir=sys.argv[1]) + '.json')",
        )
        .arg(dir.spool(""))
        .env("PYTHONPATH", package)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let names: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(names.len(), 2);
    dir.wait_spool("done", 2, Duration::from_secs(20), &jobd);
    jobd.stop();
    assert_eq!(
        fs::read_to_string(dir.join("out").join(&names[0])).unwrap(),
        "--month|2026-10; rm -rf ~|"
    );
    assert_eq!(
        fs::read_to_string(dir.join("out").join(&names[1])).unwrap(),
        "--later|"
    );
}

#[test]
fn done_keeps_at_most_keep_done_files_and_failed_keeps_all() {
    let dir = Dir::new(&TASKS.replace("  workers: 2", "  workers: 2\n  keep_done: 2"));
    fs::create_dir(dir.join("out")).unwrap();
    for i in 0..4 {
        dir.drop_file(&format!("ok-{i}.json"), br#"{"task": "record"}"#);
    }
    for i in 0..3 {
        dir.drop_file(&format!("bad-{i}.json"), br#"{"task": "nope"}"#);
    }
    let mut jobd = dir.start(&[]);
    dir.wait_spool("done", 4, Duration::from_secs(20), &jobd);
    jobd.stop();
    // The clean-up runs at start-up (and every minute).
    let mut jobd = dir.start(&[]);
    dir.wait_spool("done", 2, Duration::from_secs(20), &jobd);
    jobd.stop();
    let kept: Vec<String> = fs::read_dir(dir.spool("done"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept.len(), 4, "each kept file keeps its result: {kept:?}");
    assert_eq!(
        dir.spool_files("failed").len(),
        3,
        "failed/ is kept whole by default"
    );
}

#[test]
fn a_file_that_cannot_start_frees_its_worker_at_once() {
    let dir = Dir::new(
        "timezone: UTC\nshutdown_grace: 2s\nspool:\n  workers: 1\ntasks:\n  \
         broken:\n    command: [\"true\"]\n    workdir: /nonexistent-jobd-dir\n  \
         good:\n    command: 'echo ran >> good.out'\n",
    );
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    for i in 0..5 {
        dir.drop_file(&format!("broken-{i}.json"), br#"{"task": "broken"}"#);
    }
    dir.drop_file("good.json", br#"{"task": "good"}"#);
    // Nothing else wakes jobd: the good file must not wait for the minute's sweep.
    dir.wait_spool("done", 1, Duration::from_secs(10), &jobd);
    dir.wait_spool("failed", 5, Duration::from_secs(10), &jobd);
    let reason = dir.result("failed", "broken-0.json")["reason"].to_string();
    assert!(reason.contains("workdir"), "{reason}");
    jobd.stop();
}

#[test]
fn a_file_named_like_one_still_running_waits_for_it() {
    let dir = Dir::new(
        "timezone: UTC\nshutdown_grace: 2s\ntasks:\n  note:\n    \
         command: 'echo \"start $1\" >> notes.out; sleep 1; echo \"end $1\" >> notes.out; exit $2'\n",
    );
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    dir.drop_file("dup.json", br#"{"task": "note", "args": ["first", "0"]}"#);
    assert!(eventually(Duration::from_secs(10), || !dir
        .lines("notes.out")
        .is_empty()));
    dir.drop_file("dup.json", br#"{"task": "note", "args": ["second", "3"]}"#);
    dir.wait_spool("failed", 1, Duration::from_secs(20), &jobd);
    jobd.stop();
    assert_eq!(
        dir.lines("notes.out"),
        ["start first", "end first", "start second", "end second"],
        "one after the other, both run"
    );
    assert_eq!(dir.spool_files("done"), ["dup.json"]);
    assert_eq!(dir.result("done", "dup.json")["status"], "done");
    assert_eq!(
        dir.result("failed", "dup.json")["attempts"][0]["exit_code"],
        3
    );
}

#[test]
fn a_second_jobd_on_the_same_spool_touches_nothing_that_runs() {
    let dir = dir();
    let mut jobd = dir.start(&[]);
    dir.jobctl(&["submit", "slow"]).code(0);
    assert!(eventually(Duration::from_secs(20), || !dir
        .lines("out/slow.at")
        .is_empty()));
    // A second jobd must give up before its recovery takes the running file for a
    // leftover of a crash: on the same socket, and on another socket with the same
    // spool (the spool's lock). Bounded, in case it does not give up at all.
    let other = dir.join("other.yaml");
    fs::write(
        &other,
        "socket: other.sock\nspool:\n  dir: .jobd/spool\ntasks:\n  slow:\n    command: [\"true\"]\n",
    )
    .unwrap();
    for jobfile in [dir.jobfile(), other] {
        let second = std::process::Command::new("timeout")
            .arg("10")
            .arg(crate::harness::JOBD)
            .arg("-c")
            .arg(&jobfile)
            .output()
            .unwrap();
        assert_eq!(second.status.code(), Some(1), "{second:?}");
        let stderr = String::from_utf8_lossy(&second.stderr);
        assert!(stderr.contains("another jobd"), "{stderr}");
        assert!(!stderr.contains("stopping it"), "{stderr}");
    }
    dir.wait_spool("done", 1, Duration::from_secs(20), &jobd);
    jobd.stop();
    assert_eq!(
        dir.lines("out/slow"),
        ["attempt 1"],
        "the run was not disturbed"
    );
}
