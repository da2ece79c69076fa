//! `jobd check`: fire times on stdout, problems with file:line:column on stderr.

use std::fs;

use crate::harness::Dir;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/jobd.yaml");

#[test]
fn prints_the_next_fire_times_of_the_example() {
    let dir = Dir::new("");
    let run = dir.jobd(&[
        "check",
        "-c",
        EXAMPLE,
        "--next",
        "3",
        "--from",
        "2027-03-28T00:59:58Z",
    ]);
    run.code(0);
    let stdout = run.stdout();
    let expect = [
        "hello           2027-03-28T03:00:00+02:00",
        "hello           2027-03-28T03:00:05+02:00",
        "hello           2027-03-28T03:00:10+02:00",
        "heartbeat       2027-03-28T03:00:00+02:00",
        "heartbeat       2027-03-28T03:00:02.500+02:00",
        "heartbeat       2027-03-28T03:00:05+02:00",
        "minutely        2027-03-28T03:00:00+02:00",
        "nightly_report  disabled: runs only in environment production",
    ];
    for line in expect {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
    assert!(
        run.stderr()
            .contains("ok: 6 jobs (5 enabled, 1 disabled), 2 tasks"),
        "{}",
        run.stderr()
    );

    let production = dir.jobd(&[
        "check",
        "-c",
        EXAMPLE,
        "-e",
        "production",
        "--from",
        "2027-03-28T00:00:00Z",
    ]);
    production.code(0);
    assert!(
        production
            .stdout()
            .contains("nightly_report  2027-03-28T03:00:00+02:00"),
        "a 02:30 job on the spring-forward night runs right after the gap:\n{}",
        production.stdout()
    );
}

#[test]
fn the_config_comes_from_jobd_config_or_the_current_directory() {
    let dir = Dir::new("timezone: UTC\njobs:\n  a:\n    every: 1h\n    command: [x]\n");
    let run = dir.jobd(&["check", "--from", "2027-01-01T00:30:00Z"]);
    run.code(0);
    assert_eq!(run.stdout(), "a  2027-01-01T01:00:00+00:00\n");
}

#[test]
fn every_problem_is_reported_with_file_line_and_column() {
    let dir = Dir::new(
        "timezone: Europe/Amsterdm
jobs:
  send_mail:
    shedule: \"*/5 * * * * *\"
    command: [manage.py, send_mail]
  report:
    schedule: \"0 61 * * *\"
    command: [x]
  heartbeat:
    every: 250ms
    schedule: \"* * * * *\"
    command: [x]
  nocommand:
    every: 1s
    timeout: 10
",
    );
    let run = dir.jobd(&["check"]);
    run.code(1);
    let stderr = run.stderr();
    let file = dir.jobfile();
    let file = file.display();
    for expected in [
        format!(
            "{file}:1:11: timezone: unknown time zone `Europe/Amsterdm`; did you mean `Europe/Amsterdam`?"
        ),
        format!("{file}:4:5: jobs.send_mail: unknown key `shedule`; did you mean `schedule`?"),
        format!("{file}:7:15: jobs.report.schedule: bad cron expression `0 61 * * *`"),
        format!("{file}:11:15: jobs.heartbeat: has both `schedule:` and `every:`"),
        format!("{file}:13:3: jobs.nocommand: `command:` is missing"),
        format!("{file}:15:14: jobs.nocommand.timeout: `10` has no unit"),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    assert!(
        run.stdout().is_empty(),
        "nothing on stdout for an invalid file"
    );
}

#[test]
fn unreadable_and_explosive_jobfiles_fail_cleanly() {
    let dir = Dir::new("");
    let missing = dir.jobd(&["check", "-c", "nope.yaml"]);
    missing.code(1);
    assert!(
        missing
            .stderr()
            .contains("nope.yaml: cannot open the jobfile"),
        "{}",
        missing.stderr()
    );

    std::fs::write(dir.jobfile(), b"jobs:\n  a: \xff\xfe\n").unwrap();
    let binary = dir.jobd(&["check"]);
    binary.code(1);
    assert!(
        binary.stderr().contains("not valid UTF-8"),
        "{}",
        binary.stderr()
    );

    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 10].join(", ")
        ));
    }
    std::fs::write(dir.jobfile(), bomb).unwrap();
    let started = std::time::Instant::now();
    dir.jobd(&["check"]).code(1);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    nix::unistd::mkfifo(&dir.join("fifo.yaml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let fifo = dir.jobd(&["check", "-c", "fifo.yaml"]);
    fifo.code(1);
    assert!(
        fifo.stderr().contains("not a regular file"),
        "{}",
        fifo.stderr()
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = Dir::new("jobs:\n");
    let run = dir.jobd(&["check", "--from", "yesterday"]);
    run.code(2);
    assert!(run.stderr().contains("RFC 3339"), "{}", run.stderr());
    dir.jobd(&["--version"]).code(0);
    let help = dir.jobd(&["--help"]);
    help.code(0);
    assert!(help.stdout().contains("--config"));
}

#[test]
fn cron_slips_from_other_tools_get_a_hint() {
    let dir = Dir::new("jobs:\n  unquoted:\n    schedule: */5 * * * * *\n    command: [x]\n");
    let run = dir.jobd(&["check"]);
    run.code(1);
    let file = dir.jobfile();
    let expected = format!(
        "{}:3:15: invalid YAML: `*/5 * * * * *` starts with `*`, which YAML reads as an alias \
         (a reference to an `&anchor`); put the value in quotes: \"*/5 * * * * *\"",
        file.display()
    );
    assert!(run.stderr().contains(&expected), "{}", run.stderr());

    fs::write(
        dir.jobfile(),
        "jobs:\n  croniter:\n    schedule: \"0 3 * * 1-5 30\"\n    command: [x]\n",
    )
    .unwrap();
    let run = dir.jobd(&["check"]);
    run.code(1);
    assert!(
        run.stderr().contains(
            "jobs.croniter.schedule: bad cron expression `0 3 * * 1-5 30`: day-of-week field: \
             30 is out of range 0-7; with 6 fields the seconds come first (second minute hour \
             day-of-month month day-of-week): did you mean `30 0 3 * * 1-5`?"
        ),
        "{}",
        run.stderr()
    );
}

#[test]
fn warnings_name_what_this_host_lacks_and_strict_makes_them_errors() {
    let dir = Dir::new(
        r#"jobs:
  venv:
    every: 1h
    command: [.venv/bin/python, manage.py, send_mail]
  uv:
    every: 1h
    command: [uv-is-not-installed-here, run, manage.py]
  away:
    every: 1h
    command: ["true"]
    workdir: /nonexistent/app
  someone:
    every: 1h
    command: ["true"]
    user: no-such-user-here
  often:
    schedule: "* * * * * *"
    command: ["true"]
"#,
    );
    let file = dir.jobfile();
    let file = file.display();
    let run = dir.jobd(&["check", "--from", "2027-01-01T00:00:00Z"]);
    run.code(0);
    let stderr = run.stderr();
    for expected in [
        format!(
            "{file}:4:15: warning: jobs.venv.command: the program `.venv/bin/python` does not \
             exist ({}/.venv/bin/python)",
            dir.path().display()
        ),
        format!(
            "{file}:7:15: warning: jobs.uv.command: the program `uv-is-not-installed-here` is not in PATH"
        ),
        format!(
            "{file}:11:14: warning: jobs.away.workdir: the workdir /nonexistent/app does not exist"
        ),
        format!(
            "{file}:15:11: warning: jobs.someone.user: there is no user `no-such-user-here` on this host"
        ),
        format!("{file}:17:15: note: jobs.often.schedule: `* * * * * *` fires every second"),
        format!("{file}: ok, with 4 warnings: 5 jobs, 0 tasks"),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    assert!(
        run.stdout()
            .lines()
            .any(|l| l.starts_with("often ") && l.ends_with(" 2027-01-01T00:00:01+00:00")),
        "{}",
        run.stdout()
    );

    let strict = dir.jobd(&["check", "--strict"]);
    strict.code(1);
    assert!(
        strict.stderr().contains(&format!(
            "{file}: 4 warnings (--strict makes warnings errors)"
        )),
        "{}",
        strict.stderr()
    );
    assert!(strict.stdout().is_empty(), "{}", strict.stdout());
}

#[test]
fn the_demo_jobfile_passes_strict() {
    let run = Dir::new("").jobd(&["check", "-c", EXAMPLE, "--strict"]);
    run.code(0);
    assert!(
        !run.stderr().contains("warning"),
        "examples/jobd.yaml: {}",
        run.stderr()
    );
}
