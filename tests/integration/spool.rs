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
    command: [sh, -c, 'for a in "$@"; do printf "%s|" "$a"; done > "out/$JOBD_SPOOL_NAME"; echo " attempt=$JOBD_ATTEMPT at=$JOBD_SCHEDULED_AT" >> "out/$JOBD_SPOOL_NAME"', record]
    accept:
      args: ['.*', '-x']
      env: [LANG]
  shell:
    command: 'printf "%s|" "$@" > "out/$JOBD_SPOOL_NAME"'
    accept:
      args: ['.*', '-x']
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
        assert_eq!(result["state"], "done");
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
        ("hardlink.json", "2 hard links"),
    ];
    let in_place = [
        ("symlink", "symbolic link"),
        ("fifo", "a FIFO"),
        ("directory", "a directory"),
    ];
    assert!(
        eventually(Duration::from_secs(30), || {
            dir.spool_files("failed").len() == expected.len()
                && dir.spool_files("done") == ["good.json"]
                && in_place.iter().all(|(name, _)| {
                    dir.spool("failed")
                        .join(format!("{name}.result.json"))
                        .exists()
                })
        }),
        "failed: {:?}\ndone: {:?}\n{}",
        dir.spool_files("failed"),
        dir.spool_files("done"),
        jobd.log()
    );
    for (name, reason) in expected.into_iter().chain(in_place) {
        let result = dir.result("failed", name);
        assert_eq!(result["state"], "failed", "{name}");
        let text = result["reason"].as_str().unwrap_or_default();
        assert!(
            text.contains(reason),
            "{name}: `{text}` does not say `{reason}`"
        );
    }
    // Refused where they lie: what is not a regular file never enters jobd's folders.
    assert_eq!(dir.spool_files("new"), ["directory", "fifo", "symlink"]);
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
    let id = name.strip_suffix(".json").unwrap();
    assert_eq!(
        dir.result("done", &name)["id"],
        id,
        "the name is the id, plus .json"
    );
}

#[test]
fn jobd_gives_its_spool_folders_their_modes_back_and_refuses_a_linked_one() {
    let dir = dir();
    dir.jobctl(&["submit", "record"]).code(0);
    fs::set_permissions(dir.spool("new"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(dir.spool("done"), fs::Permissions::from_mode(0o757)).unwrap();
    let mut jobd = dir.start(&[]);
    dir.wait_spool("done", 1, Duration::from_secs(20), &jobd);
    jobd.stop();
    // Nobody but jobd's user and root submits here: the folders are jobd's alone.
    let mode = |sub: &str| fs::metadata(dir.spool(sub)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("new"), 0o700);
    assert_eq!(mode("done"), 0o700);
    assert!(
        jobd.log().contains("had mode 777; giving it mode 700"),
        "{}",
        jobd.log()
    );
    // With submitters, the folders are shared with the spool's group.
    fs::write(
        dir.jobfile(),
        TASKS.replace("  workers: 2", "  workers: 2\n  allow_users: [nobody]"),
    )
    .unwrap();
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    jobd.stop();
    assert_eq!(mode("new"), 0o3770);
    assert_eq!(mode("done"), 0o750);
    assert!(
        jobd.log()
            .contains("allow_users or allow_groups is set, but spool.group is not"),
        "{}",
        jobd.log()
    );

    fs::rename(dir.spool("failed"), dir.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(dir.join("elsewhere"), dir.spool("failed")).unwrap();
    let mut jobd = dir.start(&[]);
    assert_eq!(jobd.wait_exit(Duration::from_secs(10)), Some(1));
    assert!(jobd.log().contains("is a symbolic link"), "{}", jobd.log());
}

#[test]
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
fn done_keeps_at_most_keep_done_files_and_failed_keeps_up_to_10000() {
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
        "failed/ keeps 10,000 files by default"
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
         command: 'echo \"start $1\" >> notes.out; sleep 1; echo \"end $1\" >> notes.out; exit $2'\n    \
         accept:\n      args: ['first|second', '[0-9]']\n",
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
    assert_eq!(dir.result("done", "dup.json")["state"], "done");
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

const VALUES: &str = r#"
timezone: UTC
shutdown_grace: 2s
spool:
  workers: 4
tasks:
  compute:
    command:
      - sh
      - -c
      - |
        cp "$JOBD_SPOOL_FILE" "out/$JOBD_SPOOL_NAME"
        echo "$JOBD_SPOOL_FILE" > "out/$JOBD_SPOOL_NAME.path"
        case "$1" in
          json) printf '{"rows": 12}' > "$JOBD_RESULT_FILE" ;;
          bad) printf 'not json' > "$JOBD_RESULT_FILE" ;;
          big) head -c 1100000 /dev/zero | tr '\0' 7 > "$JOBD_RESULT_FILE" ;;
        esac
      - compute
    accept:
      args: ['json|bad|big|none']
      data: true
  plain:
    command: ["true"]
"#;

#[test]
fn data_reaches_the_child_through_its_file_and_a_value_comes_back() {
    let dir = Dir::new(VALUES);
    fs::create_dir(dir.join("out")).unwrap();
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    let submitted = dir.jobctl(&[
        "submit",
        "compute",
        "--data",
        r#"{"user": 7, "name": "Zoë", "tags": [1, 2]}"#,
        "--",
        "json",
    ]);
    submitted.code(0);
    let name = submitted.stdout().trim().to_string();
    for (file, arg) in [
        ("bad.json", "bad"),
        ("big.json", "big"),
        ("none.json", "none"),
    ] {
        dir.drop_file(
            file,
            format!(r#"{{"task": "compute", "args": ["{arg}"], "data": [1, {{"deep": [null]}}]}}"#)
                .as_bytes(),
        );
    }
    dir.wait_spool("done", 4, Duration::from_secs(30), &jobd);
    jobd.stop();

    let copy: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("out").join(&name)).unwrap()).unwrap();
    assert_eq!(copy["data"]["name"], "Zoë", "{copy}");
    assert_eq!(copy["data"]["tags"][1], 2);
    let path = fs::read_to_string(dir.join("out").join(format!("{name}.path"))).unwrap();
    assert_eq!(
        path.trim(),
        dir.spool("running").join(&name).display().to_string(),
        "JOBD_SPOOL_FILE is the claimed file's full path"
    );
    let result = dir.result("done", &name);
    assert_eq!(result["value"], serde_json::json!({"rows": 12}));
    assert!(result["value_error"].is_null());
    let bad = dir.result("done", "bad.json");
    assert!(bad["value"].is_null());
    let error = bad["value_error"].as_str().unwrap();
    assert!(error.contains("does not hold one JSON value"), "{error}");
    let big = dir.result("done", "big.json");
    let error = big["value_error"].as_str().unwrap();
    assert!(error.contains("more than the 1048576"), "{error}");
    let none = dir.result("done", "none.json");
    assert!(none["value"].is_null() && none["value_error"].is_null());
    assert!(
        fs::read_dir(dir.spool("values")).unwrap().next().is_none(),
        "value files are removed once read"
    );

    let refused = dir.jobctl(&["submit", "plain", "--data", "{}"]);
    refused.code(1);
    assert!(
        refused.stderr().contains("does not accept `data`"),
        "{}",
        refused.stderr()
    );
    dir.jobctl(&["submit", "compute", "--data", "{not json"])
        .code(2);
}

const STEPS: &str = r#"
timezone: UTC
shutdown_grace: 2s
tasks:
  steps:
    command: [sh, -c, 'if [ "$JOBD_ATTEMPT" = 1 ]; then echo "first try fails" >&2; exit 3; fi; touch out/second; while [ ! -e out/go ]; do sleep 0.05; done']
    retries: 1
    retry_delay: 3s
  broken:
    command: [sh, -c, 'echo "cannot go on" >&2; exit 4']
"#;

/// The result of `name` in running/, once it exists.
fn progress(dir: &Dir, name: &str) -> Option<serde_json::Value> {
    let text = fs::read(dir.spool("running").join(format!("{name}.result.json"))).ok()?;
    serde_json::from_slice(&text).ok()
}

#[test]
fn every_state_of_a_file_is_in_its_result() {
    let dir = Dir::new(STEPS);
    fs::create_dir(dir.join("out")).unwrap();
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    dir.drop_file("steps.json", br#"{"task": "steps", "id": "s-1"}"#);
    let retrying = crate::harness::wait_for(Duration::from_secs(20), || {
        progress(&dir, "steps.json").filter(|r| r["state"] == "retrying")
    })
    .unwrap_or_else(|| panic!("no retrying state\n{}", jobd.log()));
    assert_eq!(retrying["id"], "s-1");
    assert_eq!(retrying["attempt"], 1);
    assert_eq!(retrying["outcome"], "failure");
    assert_eq!(retrying["exit_code"], 3);
    assert_eq!(retrying["attempts"][0]["output"][0], "first try fails");
    let ended =
        chrono::DateTime::parse_from_rfc3339(retrying["ended_at"].as_str().unwrap()).unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(retrying["next_attempt_at"].as_str().unwrap())
        .unwrap();
    let wait = (next - ended).num_milliseconds();
    assert!(
        (2900..=3200).contains(&wait),
        "the retry waits retry_delay: {wait} ms"
    );

    assert!(
        eventually(Duration::from_secs(20), || dir.join("out/second").exists()),
        "{}",
        jobd.log()
    );
    let running = progress(&dir, "steps.json").unwrap();
    assert_eq!(running["state"], "running");
    assert_eq!(running["attempt"], 2);
    assert!(running["started_at"].is_string() && running["ended_at"].is_null());
    assert!(running["next_attempt_at"].is_null());
    fs::write(dir.join("out/go"), "").unwrap();
    dir.wait_spool("done", 1, Duration::from_secs(20), &jobd);
    let done = dir.result("done", "steps.json");
    assert_eq!(done["state"], "done");
    assert_eq!(done["outcome"], "success");
    assert_eq!(done["attempts"].as_array().unwrap().len(), 2);

    dir.drop_file("broken.json", br#"{"task": "broken"}"#);
    dir.wait_spool("failed", 1, Duration::from_secs(20), &jobd);
    jobd.stop();
    let failed = dir.result("failed", "broken.json");
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["outcome"], "failure");
    assert_eq!(failed["exit_code"], 4);
    assert_eq!(failed["output"][0], "cannot go on");
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("exit code 4 after 1 attempt"), "{reason}");
}

#[test]
fn jobctl_spool_lists_files_by_state_with_jobd_up_and_down() {
    let dir = Dir::new(STEPS);
    fs::create_dir(dir.join("out")).unwrap();
    let missing = dir.jobctl(&["spool"]);
    missing.code(1);
    assert!(
        missing.stderr().contains("there is no spool"),
        "{}",
        missing.stderr()
    );

    fs::write(dir.join("out/go"), "").unwrap();
    let later = dir.jobctl(&["submit", "steps", "--in", "1h"]);
    later.code(0);
    let later = later.stdout().trim().to_string();
    dir.drop_file("first.json", br#"{"task": "broken", "id": "first"}"#);
    let down = dir.jobctl(&["spool"]);
    down.code(0);
    let text = down.stdout();
    assert!(
        text.contains("queued") && text.contains("first.json") && text.contains("delayed"),
        "{text}"
    );

    let mut jobd = dir.start(&[]);
    dir.wait_spool("failed", 1, Duration::from_secs(20), &jobd);
    let up = dir.jobctl(&["spool", "--json"]);
    up.code(0);
    let entries: serde_json::Value = serde_json::from_str(&up.stdout()).unwrap();
    let states: Vec<(&str, &str)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["state"].as_str().unwrap(), e["file"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("delayed", later.as_str()), ("failed", "first.json")]
    );
    assert_eq!(entries[1]["result"]["exit_code"], 4);
    assert!(
        entries[1]["reason"]
            .as_str()
            .unwrap()
            .contains("exit code 4")
    );
    let one = dir.jobctl(&["spool", "first"]);
    one.code(0);
    assert!(one.stdout().contains("attempt 1 (run"), "{}", one.stdout());
    assert!(one.stdout().contains("| cannot go on"), "{}", one.stdout());
    jobd.stop();

    let after = dir.jobctl(&["spool"]);
    after.code(0);
    assert!(after.stdout().contains("failed") && after.stdout().contains("delayed"));
    let unknown = dir.jobctl(&["spool", "nothing-like-it"]);
    unknown.code(1);
    assert!(unknown.stderr().contains("no file named or with the id"));
}

#[test]
fn tasks_json_is_written_at_start_and_at_each_reload() {
    let dir = dir();
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    let path = dir.spool("tasks.json");
    let read =
        || -> serde_json::Value { serde_json::from_slice(&fs::read(&path).unwrap()).unwrap() };
    let tasks = read();
    assert_eq!(tasks["version"], 1);
    assert_eq!(
        tasks["tasks"]["record"]["accept"]["args"],
        serde_json::json!([".*", "-x"])
    );
    assert_eq!(
        tasks["tasks"]["record"]["accept"]["env"],
        serde_json::json!(["LANG"])
    );
    assert_eq!(tasks["tasks"]["flaky"]["retries"], 3);
    assert_eq!(tasks["tasks"]["slow"]["accept"]["max_args"], 16);
    assert!(
        tasks["forbidden_env"]["names"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("PATH"))
    );
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600,
        "nobody but jobd's user and root submits here"
    );

    fs::write(
        dir.jobfile(),
        TASKS.replace(
            "      env: [LANG]",
            "      env: [LANG, REPORT_LANG]\n      data: true",
        ),
    )
    .unwrap();
    dir.jobctl(&["reload"]).code(0);
    let tasks = read();
    assert_eq!(
        tasks["tasks"]["record"]["accept"]["env"],
        serde_json::json!(["LANG", "REPORT_LANG"])
    );
    assert_eq!(tasks["tasks"]["record"]["accept"]["data"], true);
    jobd.stop();
}

/// The flood of attack 3 (see also trust_spool.rs): 20,000 files arrive at once while a
/// per-second job runs. jobd takes in `spool.max_queued` (10,000) of them, a batch at
/// a time between its looks at the timer, leaves the rest in new/ untouched, and the
/// job keeps every instant.
#[test]
fn a_per_second_job_keeps_every_instant_while_20000_files_arrive() {
    let dir = Dir::new(
        r#"
timezone: UTC
shutdown_grace: 2s
jobs:
  tick:
    every: 1s
    command: ["true"]
tasks:
  later:
    command: ["true"]
"#,
    );
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started", Duration::from_secs(10));
    let state = dir.join(".jobd");
    assert!(eventually(Duration::from_secs(20), || {
        crate::harness::history_runs(&state, "tick").len() >= 2
    }));
    let cpu_before = jobd.sample().cpu_ticks;
    let flood_start = chrono::Utc::now();
    for i in 0..20_000 {
        let name = format!("f{i:05}.json");
        let staged = dir.spool("tmp").join(&name);
        fs::write(&staged, br#"{"task": "later", "delay": "1h"}"#).unwrap();
        fs::rename(&staged, dir.spool("new").join(&name)).unwrap();
    }
    let taken = eventually(Duration::from_secs(240), || {
        let status = dir.jobctl(&["status", "--json"]);
        let status: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap_or_default();
        status["spool"]["delayed"] == 10_000
    });
    assert!(taken, "not 10,000 taken in\n{}", tail(&jobd.log()));
    // A few more instants after the intake.
    std::thread::sleep(Duration::from_secs(3));
    let status = dir.jobctl(&["status"]);
    let cpu = (jobd.sample().cpu_ticks - cpu_before) as f64 / 100.0;
    jobd.stop();
    // The count is the last scan's, plus names inotify reported before that scan which
    // found no room: a file can be counted twice (held names are not kept, so that a
    // flood costs no memory), never missed.
    let waiting = status
        .stdout()
        .split(" files wait in")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|count| count.parse::<usize>().ok());
    assert!(
        waiting.is_some_and(|count| count >= 10_000),
        "{}",
        status.stdout()
    );
    assert_eq!(dir.spool_files("new").len(), 20_000, "all still in new/");

    let runs = crate::harness::history_runs(&state, "tick");
    let at = |run: &serde_json::Value, key: &str| {
        chrono::DateTime::parse_from_rfc3339(run[key].as_str().unwrap())
            .unwrap()
            .to_utc()
    };
    let during: Vec<&serde_json::Value> = runs
        .iter()
        .filter(|run| at(run, "scheduled_at") >= flood_start)
        .collect();
    assert!(during.len() >= 5, "{} runs during the flood", during.len());
    let mut lateness: Vec<f64> = during
        .iter()
        .map(|run| (at(run, "started_at") - at(run, "scheduled_at")).num_milliseconds() as f64)
        .collect();
    for pair in during.windows(2) {
        let gap = at(pair[1], "scheduled_at") - at(pair[0], "scheduled_at");
        assert_eq!(gap.num_seconds(), 1, "an instant was missed: {pair:?}");
    }
    lateness.sort_by(f64::total_cmp);
    let max = *lateness.last().unwrap();
    eprintln!(
        "flood: {} instants during the intake of 10,000 of 20,000 files, lateness p50 {} ms, \
         max {max} ms; jobd used {cpu:.1} s of CPU",
        during.len(),
        crate::harness::percentile(&lateness, 50.0),
    );
    assert!(max < 2000.0, "an instant ran {max} ms late");
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
