//! What a new user meets the first time: jobctl and `jobd check` telling the truth
//! about what they were given and what jobd does with it.

use std::fs;
use std::time::Duration;

use crate::harness::Dir;

const ZONED: &str = r#"
timezone: Europe/Amsterdam
shutdown_grace: 2s
jobs:
  nightly:
    schedule: "0 30 2 * * *"
    command: ["true"]
  often:
    schedule: "*/5 * * * * *"
    command: ["true"]
"#;

#[test]
fn a_new_time_zone_is_reported_once_not_as_a_change_of_every_cron_job() {
    let dir = Dir::new(ZONED);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(20));
    fs::write(
        dir.jobfile(),
        ZONED.replace("Europe/Amsterdam", "America/New_York"),
    )
    .unwrap();
    let dry = dir.jobctl(&["reload", "--dry-run"]);
    dry.code(0);
    assert_eq!(
        dry.stdout(),
        "jobfile is valid: 0 would be added, 0 removed, 1 changed\n  \
         changed: setting timezone (Europe/Amsterdam -> America/New_York)\n"
    );
    jobd.stop();
}

#[test]
fn from_a_folder_without_a_jobfile_jobctl_says_what_it_tried_and_exits_2() {
    let dir = Dir::new("");
    fs::remove_file(dir.jobfile()).unwrap();
    let jobfile = dir.jobfile();
    for command in [
        &["status"][..],
        &["history"],
        &["reload"],
        &["run", "send_mail"],
        &["next"],
    ] {
        let run = dir.jobctl(command);
        run.code(2);
        let stderr = run.stderr();
        for expected in [
            format!("{}: cannot open the jobfile", jobfile.display()),
            format!(
                "nothing answers there ({}: no such file)",
                dir.join(".jobd/jobd.sock").display()
            ),
            "-c PATH or JOBD_CONFIG=PATH".to_string(),
            "--socket PATH".to_string(),
        ] {
            assert!(
                stderr.contains(&expected),
                "jobctl {command:?}: missing `{expected}` in:\n{stderr}"
            );
        }
        assert!(!stderr.contains("jobd is not running"), "{stderr}");
    }
    let submit = dir.jobctl(&["submit", "report"]);
    submit.code(2);
    assert!(
        submit.stderr().contains("JOBD_CONFIG=PATH"),
        "{}",
        submit.stderr()
    );

    // With the jobfile named, a stopped jobd is what it was: exit 3.
    fs::write(&jobfile, ZONED).unwrap();
    dir.jobctl(&["next"]).code(3);
}

const AMSTERDAM: &str = r#"
timezone: Europe/Amsterdam
shutdown_grace: 2s
jobs:
  hourly:
    schedule: "0 0 * * * *"
    command: ["true"]
  tick:
    every: 1h
    command: ["true"]
  prod:
    every: 1h
    command: ["true"]
    environments: [production]
  staging_only:
    every: 1s
    command: ["true"]
    environments: [staging]
tasks:
  report:
    command: ["true"]
  limited:
    command: ["true"]
    max_instances: 1
"#;

/// The UTC offsets Amsterdam uses, as jobctl's tables print them after a time.
fn has_amsterdam_offset(text: &str) -> bool {
    text.contains("+01:00") || text.contains("+02:00")
}

#[test]
fn jobctl_says_what_the_running_jobd_does_with_environments_counts_and_limits() {
    let dir = Dir::new(AMSTERDAM);
    let mut jobd = dir.start(&["-e", "production"]);
    jobd.wait_log("started:", Duration::from_secs(20));

    // -e names the environment jobd was started with, or nothing at all.
    dir.jobctl(&["status"]).code(0);
    dir.jobctl(&["-e", "production", "status"]).code(0);
    for command in [&["status"][..], &["next"], &["run", "tick"], &["reload"]] {
        let args: Vec<&str> = ["-e", "staging"].iter().chain(command).copied().collect();
        let refused = dir.jobctl(&args);
        refused.code(2);
        let pid = jobd.pid();
        assert!(
            refused.stderr().contains(&format!(
                "-e staging: the running jobd (pid {pid}) runs in environment production \
                 (started with -e production)"
            )) && refused.stderr().contains("restart jobd with -e staging"),
            "jobctl {args:?}: {}",
            refused.stderr()
        );
    }

    // `next JOB` for a job this environment leaves out is an error, not silence.
    let disabled = dir.jobctl(&["next", "staging_only"]);
    disabled.code(1);
    assert!(
        disabled.stderr().contains(
            "job `staging_only` is disabled: it runs only in environment staging, and jobd \
             runs in environment production"
        ),
        "{}",
        disabled.stderr()
    );
    // -n counts per job, as `jobd check --next` does; one each by default.
    let next = dir.jobctl(&["next"]).stdout();
    let jobs = |text: &str| {
        let mut names: Vec<String> = text
            .lines()
            .map(|l| l.split_whitespace().last().unwrap_or("").to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(jobs(&next), ["hourly", "prod", "tick"], "{next}");
    assert!(next.lines().all(has_amsterdam_offset), "{next}");
    let three = dir.jobctl(&["next", "-n", "3"]).stdout();
    assert_eq!(
        jobs(&three),
        [
            "hourly", "hourly", "hourly", "prod", "prod", "prod", "tick", "tick", "tick"
        ],
        "{three}"
    );

    // Local times with their offset; tasks' limits, which differ from jobs' default.
    dir.jobctl(&["run", "tick", "--wait"]).code(0);
    let status = dir.jobctl(&["status"]).stdout();
    let hourly = status.lines().find(|l| l.starts_with("hourly")).unwrap();
    assert!(has_amsterdam_offset(hourly), "{status}");
    assert!(
        status.contains(
            "at most 2 at once (spool.workers); max_instances: limited 1; no max_instances \
             (the default for tasks): report"
        ),
        "{status}"
    );
    let history = dir.jobctl(&["history", "tick"]).stdout();
    assert!(has_amsterdam_offset(&history), "{history}");

    // Counts and grammar.
    let reload = dir.jobctl(&["reload"]);
    reload.code(0);
    assert_eq!(
        reload.stdout(),
        "reloaded: nothing was added, removed or changed\n"
    );
    fs::write(
        dir.jobfile(),
        AMSTERDAM.replace(
            "tasks:",
            "  added:\n    every: 1h\n    command: [\"true\"]\ntasks:",
        ),
    )
    .unwrap();
    let reload = dir.jobctl(&["reload"]);
    assert!(
        reload
            .stdout()
            .starts_with("reloaded: 1 was added, 0 removed, 0 changed\n"),
        "{}",
        reload.stdout()
    );
    assert_eq!(jobd.stop(), Some(0));
    let log = jobd.log();
    assert!(log.contains("(3 jobs enabled, 2 tasks,"), "{log}");
    assert!(
        log.contains(": 4 jobs, 2 tasks;") && log.contains(": 5 jobs, 2 tasks;"),
        "{log}"
    );
    assert!(log.contains("shutting down: no job is running"), "{log}");
}

#[test]
fn submit_reads_a_time_without_offset_in_the_jobfiles_zone_and_names_a_refused_variable() {
    let dir = Dir::new(AMSTERDAM);
    let run_at = |dir: &Dir| -> Vec<String> {
        let mut found: Vec<String> = dir
            .spool_files("new")
            .iter()
            .map(|name| {
                let text = fs::read_to_string(dir.spool("new").join(name)).unwrap();
                let request: serde_json::Value = serde_json::from_str(&text).unwrap();
                request["run_at"].as_str().unwrap_or("").to_string()
            })
            .collect();
        found.sort();
        found
    };

    let summer = dir.jobctl(&["submit", "report", "--at", "2030-07-01T12:00:00"]);
    summer.code(0);
    assert!(summer.stderr().is_empty(), "{}", summer.stderr());
    assert_eq!(run_at(&dir), ["2030-07-01T10:00:00Z"]);

    let past = dir.jobctl(&["submit", "report", "--at", "2000-01-01T10:00:00"]);
    past.code(0);
    assert!(
        past.stderr()
            .contains("--at 2000-01-01T10:00:00+01:00 is in the past: the task runs now"),
        "{}",
        past.stderr()
    );
    assert_eq!(
        run_at(&dir),
        ["2000-01-01T09:00:00Z", "2030-07-01T10:00:00Z"]
    );

    let gap = dir.jobctl(&["submit", "report", "--at", "2027-03-28T02:30:00"]);
    gap.code(2);
    assert!(
        gap.stderr().contains("does not exist in Europe/Amsterdam"),
        "{}",
        gap.stderr()
    );
    let twice = dir.jobctl(&["submit", "report", "--at", "2027-10-31T02:30:00"]);
    twice.code(2);
    assert!(
        twice.stderr().contains("add the offset, +02:00 or +01:00"),
        "{}",
        twice.stderr()
    );

    let env = dir.jobctl(&["submit", "report", "--env", "LANG=C", "--env", "PATH=/tmp"]);
    env.code(1);
    assert!(
        env.stderr()
            .contains("--env PATH: `PATH` may not be set by a spool file")
            && !env.stderr().contains("line 1"),
        "{}",
        env.stderr()
    );
    assert_eq!(
        run_at(&dir).len(),
        2,
        "nothing written for refused requests"
    );
}

/// Item 11: a run jobd's own shutdown stopped is `stopped`, not a failure: it runs no
/// hook and does not sort with the failing jobs.
#[test]
fn a_run_stopped_by_shutdown_is_stopped_and_not_failing() {
    let dir = Dir::new(
        r#"
timezone: UTC
shutdown_grace: 1s
jobs:
  fails:
    every: 1h
    command: [sh, -c, 'exit 2']
  long:
    every: 1h
    command: [sleep, "60"]
    on_failure: [sh, -c, 'touch hook-ran']
"#,
    );
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(20));
    dir.jobctl(&["run", "fails", "--wait"]).code(2);
    dir.jobctl(&["run", "long"]).code(0);
    assert_eq!(jobd.stop(), Some(0));
    let status = dir.jobctl(&["status", "--json"]);
    status.code(3);
    let status: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    let jobs = status["jobs"].as_array().unwrap();
    let long = jobs.iter().find(|j| j["name"] == "long").unwrap();
    assert_eq!(long["last"]["outcome"], "stopped", "{long}");
    assert_eq!(jobs[0]["name"], "fails", "only the failing job sorts first");
    let text = dir.jobctl(&["status"]).stdout();
    let long_row = text.lines().find(|l| l.starts_with("long")).unwrap();
    assert!(long_row.contains("stopped"), "{text}");
    assert!(
        !dir.join("hook-ran").exists(),
        "no hook for a run jobd stopped"
    );
}
