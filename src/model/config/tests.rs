use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const FILE: &str = "/srv/app/jobd.yaml";

fn host() -> Host {
    Host {
        local_zone: Some("Europe/Amsterdam".to_string()),
        ..Host::default()
    }
}

fn ok(text: &str) -> Config {
    parse(text, Path::new(FILE), None, &host()).unwrap_or_else(|e| panic!("{e}"))
}

fn ok_in(text: &str, environment: &str) -> Config {
    parse(text, Path::new(FILE), Some(environment), &host()).unwrap_or_else(|e| panic!("{e}"))
}

/// The error text, which must name the one problem at `line`, and contain each of `words`.
#[track_caller]
fn fails_at(text: &str, line: u64, words: &[&str]) {
    let err = match parse(text, Path::new(FILE), None, &host()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(err) => err,
    };
    let shown = err.to_string();
    assert!(
        err.problems
            .iter()
            .any(|p| p.pos.map(|p| p.line) == Some(line)),
        "no problem at line {line}:\n{shown}"
    );
    assert!(
        shown.starts_with(&format!("{FILE}:{line}:")),
        "first problem not at line {line}:\n{shown}"
    );
    for word in words {
        assert!(shown.contains(word), "`{word}` missing from:\n{shown}");
    }
}

const MINIMAL: &str = "jobs:\n  tick:\n    every: 1s\n    command: [x]\n";

#[test]
fn the_spec_example_loads_with_every_key() {
    let config = ok(r#"
timezone: Europe/Amsterdam
shutdown_grace: 30s
state_dir: state
socket: /run/jobd/jobd.sock
defaults:
  workdir: /home/app/api
  env: { DJANGO_SETTINGS_MODULE: app.settings }
  timeout: 10m
  kill_grace: 5s
jobs:
  send_mail:
    schedule: "*/5 * * * * *"
    command: [uv, run, manage.py, send_mail]
    max_instances: 1
    on_overlap: skip
  heartbeat:
    every: 250ms
    offset: 100ms
    command: [./bin/ping]
    on_overlap: queue
    env: { PORT: 8000 }
  import_daily:
    schedule: "0 2 0 * * *"
    command: [uv, run, manage.py, import_xchange_daily]
    environments: [production]
    catch_up: once
    on_overlap: replace
    user: www-data
    group: www-data
    workdir: sub
spool:
  dir: spool
  workers: 3
  allow_users: [www-data]
  allow_groups: []
tasks:
  long_report:
    command: uv run manage.py long_report
    timeout: 5m
    retries: 2
    retry_delay: 30s
    max_instances: 1
"#);
    assert_eq!(config.timezone, chrono_tz::Europe::Amsterdam);
    assert_eq!(config.shutdown_grace, Duration::from_secs(30));
    assert_eq!(config.state_dir, PathBuf::from("/srv/app/state"));
    assert_eq!(config.socket, PathBuf::from("/run/jobd/jobd.sock"));
    assert_eq!(config.spool.dir, PathBuf::from("/srv/app/spool"));
    assert_eq!(config.spool.workers, 3);
    assert_eq!(config.spool.allow_users, ["www-data"]);

    let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["send_mail", "heartbeat", "import_daily"]);

    let send_mail = config.job("send_mail").unwrap();
    assert_eq!(send_mail.schedule.describe(), "*/5 * * * * *");
    assert_eq!(
        send_mail.run.command,
        Command::Argv(vec![
            "uv".into(),
            "run".into(),
            "manage.py".into(),
            "send_mail".into()
        ])
    );
    assert_eq!(send_mail.run.workdir, PathBuf::from("/home/app/api"));
    assert_eq!(send_mail.run.timeout, Some(Duration::from_secs(600)));
    assert_eq!(send_mail.run.kill_grace, Duration::from_secs(5));
    assert_eq!(send_mail.run.env["DJANGO_SETTINGS_MODULE"], "app.settings");
    assert_eq!(send_mail.on_overlap, OnOverlap::Skip);
    assert!(send_mail.enabled);

    let heartbeat = config.job("heartbeat").unwrap();
    assert_eq!(heartbeat.schedule.describe(), "every 250ms offset 100ms");
    assert_eq!(heartbeat.on_overlap, OnOverlap::Queue);
    assert_eq!(heartbeat.run.env["PORT"], "8000");
    assert_eq!(heartbeat.run.env["DJANGO_SETTINGS_MODULE"], "app.settings");

    let import = config.job("import_daily").unwrap();
    assert!(!import.enabled, "production-only job enabled without -e");
    assert_eq!(import.catch_up, CatchUp::Once);
    assert_eq!(import.on_overlap, OnOverlap::Replace);
    assert_eq!(import.run.user.as_deref(), Some("www-data"));
    assert_eq!(import.run.workdir, PathBuf::from("/srv/app/sub"));

    let report = config.task("long_report").unwrap();
    assert_eq!(
        report.run.command,
        Command::Shell("uv run manage.py long_report".into())
    );
    assert_eq!(report.run.timeout, Some(Duration::from_secs(300)));
    assert_eq!(report.retries, 2);
    assert_eq!(report.retry_delay, Duration::from_secs(30));
    assert_eq!(report.max_instances, Some(1));
    assert_eq!(report.run.workdir, PathBuf::from("/home/app/api"));
}

#[test]
fn defaults_without_a_jobfile_setting() {
    let config = ok(MINIMAL);
    assert_eq!(config.timezone, chrono_tz::Europe::Amsterdam, "host zone");
    assert_eq!(config.state_dir, PathBuf::from("/srv/app/.jobd"));
    assert_eq!(config.socket, PathBuf::from("/srv/app/.jobd/jobd.sock"));
    assert_eq!(config.spool.dir, PathBuf::from("/srv/app/.jobd/spool"));
    assert_eq!(config.spool.workers, DEFAULT_WORKERS);
    assert_eq!(config.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    let job = &config.jobs[0];
    assert_eq!(job.run.workdir, PathBuf::from("/srv/app"));
    assert_eq!(job.run.kill_grace, DEFAULT_KILL_GRACE);
    assert_eq!(job.run.timeout, None);
    assert_eq!(job.max_instances, 1);
    assert_eq!(job.on_overlap, OnOverlap::Skip);
    assert_eq!(job.catch_up, CatchUp::None);
}

#[test]
fn systemd_directories_are_the_defaults_under_systemd() {
    let host = Host {
        state_directory: Some("/var/lib/jobd".into()),
        runtime_directory: Some("/run/jobd".into()),
        ..Host::default()
    };
    let config = parse(MINIMAL, Path::new(FILE), None, &host).unwrap();
    assert_eq!(config.state_dir, PathBuf::from("/var/lib/jobd"));
    assert_eq!(config.socket, PathBuf::from("/run/jobd/jobd.sock"));
    assert_eq!(config.spool.dir, PathBuf::from("/var/lib/jobd/spool"));
    assert_eq!(config.timezone, chrono_tz::UTC, "no local zone known");
}

#[test]
fn environments_enable_jobs() {
    let text =
        "jobs:\n  a:\n    every: 1s\n    command: [x]\n    environments: [production, staging]\n";
    assert!(!ok(text).jobs[0].enabled);
    assert!(ok_in(text, "staging").jobs[0].enabled);
    assert!(!ok_in(text, "dev").jobs[0].enabled);
}

#[test]
fn job_env_overrides_defaults_key_by_key() {
    let config = ok(
        "defaults:\n  env: {A: one, B: two}\n  user: app\njobs:\n  j:\n    every: 1s\n    command: [x]\n    env: {B: own}\n",
    );
    let env = &config.jobs[0].run.env;
    assert_eq!(env["A"], "one");
    assert_eq!(env["B"], "own");
    assert_eq!(config.jobs[0].run.user.as_deref(), Some("app"));
}

#[test]
fn empty_sections_are_allowed() {
    let config = ok("jobs:\ntasks:\n");
    assert!(config.jobs.is_empty() && config.tasks.is_empty());
}

#[test]
fn unknown_keys_name_the_key_meant() {
    fails_at(
        "jobs:\n  a:\n    shedule: \"* * * * *\"\n    command: [x]\n",
        3,
        &[
            "jobs.a",
            "unknown key `shedule`",
            "did you mean `schedule`?",
        ],
    );
    fails_at(
        "timezone: UTC\njbos:\n",
        2,
        &["unknown key `jbos`", "`jobs`"],
    );
    fails_at(
        "spool:\n  worker: 2\n",
        2,
        &["spool", "`worker`", "did you mean `workers`?"],
    );
    fails_at(
        "defaults:\n  schedule: \"* * * * *\"\n",
        2,
        &["defaults", "unknown key `schedule`", "known keys"],
    );
    fails_at(
        "tasks:\n  t:\n    command: [x]\n    retry: 2\n",
        4,
        &["tasks.t", "did you mean `retries`?"],
    );
}

#[test]
fn wrong_types_say_what_was_expected() {
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    command: [x]\n    max_instances: two\n",
        5,
        &[
            "jobs.a.max_instances",
            "expected a whole number",
            "found a string",
        ],
    );
    fails_at(
        "jobs:\n  a:\n    every: [1s]\n    command: [x]\n",
        3,
        &["jobs.a.every", "expected a duration", "found a list"],
    );
    fails_at("jobs: [a, b]\n", 1, &["jobs", "expected a mapping"]);
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    command: {program: x}\n",
        4,
        &["jobs.a.command", "expected a list", "found a mapping"],
    );
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    command: [x, 1.10]\n",
        4,
        &["jobs.a.command", "quotes"],
    );
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    command: [x]\n    env: {DEBUG: true}\n",
        5,
        &["jobs.a.env.DEBUG", "found a boolean", "quotes"],
    );
}

#[test]
fn bad_cron_expressions_are_refused() {
    fails_at(
        "jobs:\n  a:\n    schedule: \"61 * * * *\"\n    command: [x]\n",
        3,
        &["jobs.a.schedule", "bad cron expression `61 * * * *`"],
    );
    fails_at(
        "jobs:\n  a:\n    schedule: \"* * *\"\n    command: [x]\n",
        3,
        &["jobs.a.schedule", "bad cron expression"],
    );
    fails_at(
        "jobs:\n  a:\n    schedule: \"@reboot\"\n    command: [x]\n",
        3,
        &["jobs.a.schedule", "@reboot"],
    );
    fails_at(
        "jobs:\n  a:\n    schedule: \"0 0 31 2 *\"\n    command: [x]\n",
        3,
        &["jobs.a.schedule", "never"],
    );
}

#[test]
fn unknown_time_zones_are_refused() {
    fails_at(
        "timezone: Europe/Amsterdm\n",
        1,
        &[
            "timezone",
            "unknown time zone `Europe/Amsterdm`",
            "did you mean `Europe/Amsterdam`?",
        ],
    );
    fails_at(
        "timezone: Mars/Olympus\n",
        1,
        &["unknown time zone `Mars/Olympus`"],
    );
}

#[test]
fn bad_durations_are_refused() {
    fails_at(
        "shutdown_grace: 30\n",
        1,
        &["shutdown_grace", "no unit", "30s"],
    );
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    command: [x]\n    timeout: 5 minutes\n",
        5,
        &["jobs.a.timeout", "`5 minutes` is not a duration"],
    );
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    command: [x]\n    timeout: 0s\n",
        5,
        &["jobs.a.timeout", "longer than 0s"],
    );
    fails_at(
        "tasks:\n  t:\n    command: [x]\n    retry_delay: 1.5s\n",
        4,
        &["tasks.t.retry_delay", "not a duration"],
    );
}

#[test]
fn every_must_be_at_least_a_millisecond() {
    fails_at(
        "jobs:\n  a:\n    every: 0ms\n    command: [x]\n",
        3,
        &["jobs.a.every", "at least 1ms"],
    );
    let config = ok("jobs:\n  a:\n    every: 1ms\n    command: [x]\n");
    assert_eq!(config.jobs[0].schedule.describe(), "every 1ms");
}

#[test]
fn a_job_takes_schedule_or_every_not_both_nor_neither() {
    fails_at(
        "jobs:\n  a:\n    schedule: \"* * * * *\"\n    every: 1s\n    command: [x]\n",
        3,
        &["jobs.a", "both `schedule:` and `every:`"],
    );
    fails_at(
        "jobs:\n  a:\n    command: [x]\n",
        2,
        &["jobs.a", "needs `schedule:`", "`every:`"],
    );
    fails_at(
        "jobs:\n  a:\n    schedule: \"* * * * *\"\n    offset: 1s\n    command: [x]\n",
        4,
        &["`offset:` goes with `every:`"],
    );
}

#[test]
fn a_misspelt_key_is_one_problem_not_two() {
    for text in [
        "jobs:\n  a:\n    shedule: \"* * * * *\"\n    command: [x]\n",
        "jobs:\n  a:\n    every: 1s\n    comand: [x]\n",
    ] {
        let err = parse(text, Path::new(FILE), None, &host()).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
    }
}

#[test]
fn yaml_1_1_booleans_stay_strings() {
    let config =
        ok("jobs:\n  a:\n    every: 1s\n    command: [x, yes, on, 0755]\n    env: {DEBUG: no}\n");
    assert_eq!(
        config.jobs[0].run.command,
        Command::Argv(vec!["x".into(), "yes".into(), "on".into(), "0755".into()])
    );
    assert_eq!(config.jobs[0].run.env["DEBUG"], "no");
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    command: [true]\n",
        4,
        &["found a boolean", "quotes"],
    );
}

#[test]
fn missing_and_empty_commands_are_refused() {
    fails_at(
        "jobs:\n  a:\n    every: 1s\n",
        2,
        &["jobs.a", "`command:` is missing"],
    );
    fails_at(
        "tasks:\n  t:\n    retries: 1\n",
        2,
        &["tasks.t", "`command:` is missing"],
    );
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    command: []\n",
        4,
        &["jobs.a.command", "empty"],
    );
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    command: \"  \"\n",
        4,
        &["jobs.a.command", "empty"],
    );
}

#[test]
fn duplicate_names_are_refused() {
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    command: [x]\n  a:\n    every: 2s\n    command: [y]\n",
        5,
        &["duplicate key `a`"],
    );
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    command: [x]\ntasks:\n  a:\n    command: [y]\n",
        6,
        &["`a` is both a job and a task", "line 2"],
    );
}

#[test]
fn bad_names_and_choices_are_refused() {
    fails_at(
        "jobs:\n  \"../etc\":\n    every: 1s\n    command: [x]\n",
        2,
        &["`../etc` is not a valid name"],
    );
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    command: [x]\n    on_overlap: skpi\n",
        5,
        &[
            "jobs.a.on_overlap",
            "unknown value `skpi`",
            "did you mean `skip`?",
        ],
    );
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    command: [x]\n    catch_up: all\n",
        5,
        &["jobs.a.catch_up", "none, once"],
    );
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    command: [x]\n    max_instances: 0\n",
        5,
        &["jobs.a.max_instances", "out of range"],
    );
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    command: [x]\n    env: {JOBD_JOB: x}\n",
        5,
        &["JOBD_JOB", "set by jobd"],
    );
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let err = parse(
        "tasks:\n  t:\n    retries: x\njobs:\n  a:\n    every: nope\n",
        Path::new(FILE),
        None,
        &host(),
    )
    .unwrap_err();
    let lines: Vec<u64> = err
        .problems
        .iter()
        .filter_map(|p| p.pos)
        .map(|p| p.line)
        .collect();
    assert!(lines.len() >= 4, "{err}");
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{err}");
}

#[test]
fn yaml_errors_have_a_position() {
    fails_at("jobs:\n  a: [1, 2\n  b: 3\n", 3, &["invalid YAML"]);
    fails_at(
        "jobs:\n  a:\n    every: 1s\n    every: 2s\n",
        4,
        &["duplicate key `every`"],
    );
}

#[test]
fn explosive_jobfiles_are_refused_quickly() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let deep = format!("jobs: {}{}\n", "[".repeat(5000), "]".repeat(5000));
    for text in [bomb, deep] {
        let (parsed, cpu) =
            crate::leaf::cpu::measure(|| parse(&text, Path::new(FILE), None, &host()));
        assert!(parsed.is_err());
        assert!(cpu < Duration::from_secs(2), "took {cpu:?}");
    }
}

#[test]
fn a_runtime_is_read_and_its_env_sits_between_defaults_and_the_job() {
    let config = ok(r#"
defaults:
  env: {A: defaults, B: defaults, C: defaults}
runtimes:
  django:
    command: [.venv/bin/python, -m, jobd.warm]
    env: {B: runtime, C: runtime}
    preload: [django, shop.tasks]
    max_runs: 500
    max_rss: 512M
jobs:
  mail:
    every: 5s
    runtime: django
    command: [manage.py, send_mail]
    env: {C: job}
  cold:
    every: 5s
    command: [x]
"#);
    let runtime = config.runtime("django").unwrap();
    assert_eq!(runtime.command, [".venv/bin/python", "-m", "jobd.warm"]);
    assert_eq!(runtime.preload, ["django", "shop.tasks"]);
    assert_eq!(runtime.max_runs, Some(500));
    assert_eq!(runtime.max_rss, Some(512 << 20));
    assert_eq!(runtime.workdir, Path::new("/srv/app"));
    let mail = &config.job("mail").unwrap().run;
    assert_eq!(mail.runtime.as_deref(), Some("django"));
    let env: Vec<_> = mail.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(env, ["A=defaults", "B=runtime", "C=job"]);
    assert_eq!(config.job("cold").unwrap().run.runtime, None);
}

#[test]
fn runtime_mistakes_are_named_where_they_are() {
    let runtime = "runtimes:\n  django:\n    command: [python, -m, jobd.warm]\n";
    fails_at(
        &format!("{runtime}jobs:\n  a:\n    every: 1s\n    runtime: djnago\n    command: [x]\n"),
        7,
        &["no runtime `djnago`", "did you mean `django`"],
    );
    fails_at(
        &format!("{runtime}jobs:\n  a:\n    every: 1s\n    runtime: django\n    command: 'x y'\n"),
        7,
        &["a list"],
    );
    fails_at(
        &format!(
            "{runtime}jobs:\n  a:\n    every: 1s\n    runtime: django\n    user: www\n    command: [x]\n"
        ),
        7,
        &["same `user:`"],
    );
    fails_at(
        "runtimes:\n  django:\n    command: 'python -m jobd.warm'\njobs: {}\n",
        3,
        &["a list"],
    );
    fails_at(
        "runtimes:\n  django:\n    command: [python]\n    max_rss: lots\njobs: {}\n",
        4,
        &["not a size"],
    );
}

#[test]
fn a_task_accepts_what_it_declares_and_nothing_by_default() {
    let config = ok(r#"
defaults:
  env: { DJANGO_SETTINGS_MODULE: app.settings }
tasks:
  plain:
    command: [x]
  long_report:
    command: [x]
    accept:
      args: ["--month", '\d{4}-\d{2}']
      max_args: 4
      env: [REPORT_LANG]
      data: true
spool:
  group: jobd-submit
  max_queued: 50
"#);
    let plain = &config.task("plain").unwrap().accept;
    assert!(plain.args.is_empty() && plain.env.is_empty() && !plain.data);
    assert_eq!(plain.max_args, accept::DEFAULT_MAX_ARGS);
    let report = &config.task("long_report").unwrap().accept;
    let sources: Vec<&str> = report.args.iter().map(|p| p.source()).collect();
    assert_eq!(sources, ["--month", r"\d{4}-\d{2}"]);
    assert_eq!(report.max_args, 4);
    assert_eq!(report.env, ["REPORT_LANG"]);
    assert!(report.data);
    assert_eq!(config.spool.group.as_deref(), Some("jobd-submit"));
    assert_eq!(config.spool.max_queued, 50);
    assert_eq!(config.spool.keep_failed.count, Some(DEFAULT_KEEP_FAILED));
    assert_eq!(config.spool.keep_failed.age, Some(DEFAULT_KEEP_FAILED_FOR));
}

#[test]
fn accept_refuses_what_no_spool_file_could_ever_set() {
    let task = |accept: &str| {
        format!(
            "defaults:\n  env: {{ DJANGO_SETTINGS_MODULE: app.settings }}\ntasks:\n  t:\n    \
             command: [x]\n    env: {{ MODE: fast }}\n    accept:\n{accept}"
        )
    };
    fails_at(
        &task("      env: [MODE]\n"),
        8,
        &["tasks.t.accept.env", "`MODE` is set by the jobfile"],
    );
    fails_at(
        &task("      env: [DJANGO_SETTINGS_MODULE]\n"),
        8,
        &["`DJANGO_SETTINGS_MODULE` is set by the jobfile"],
    );
    fails_at(
        &task("      env: [LANG, LD_PRELOAD]\n"),
        8,
        &["`LD_PRELOAD` is in the fence", "jobd(8)"],
    );
    fails_at(
        &task("      env: [JOBD_ATTEMPT]\n"),
        8,
        &["`JOBD_ATTEMPT` is in the fence"],
    );
    fails_at(
        &task("      env: [A=B]\n"),
        8,
        &["`A=B` is not a variable name"],
    );
    fails_at(
        &task("      args: ['(unclosed']\n"),
        8,
        &["tasks.t.accept.args", "is not a regular expression"],
    );
    fails_at(
        &task("      data: yes\n"),
        8,
        &["accept.data", "true or false"],
    );
    fails_at(&task("      arg: [x]\n"), 8, &["did you mean `args`?"]);
    fails_at(&task("      max_args: -1\n"), 8, &["out of range"]);
}

#[test]
fn spool_group_and_max_queued_are_checked() {
    fails_at("spool:\n  group: ''\n", 2, &["spool.group", "is empty"]);
    fails_at(
        "spool:\n  max_queued: 0\n",
        2,
        &["spool.max_queued", "out of range"],
    );
}
