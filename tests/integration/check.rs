//! `jobd check`: fire times on stdout, problems with file:line:column on stderr.

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
        run.stderr().contains("ok: 5 jobs (1 disabled), 2 tasks"),
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
