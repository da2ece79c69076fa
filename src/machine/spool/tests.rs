//! The spool driven by hand, with chosen instants: files are dropped into a temporary
//! spool, and what the daemon would do (take in, dispatch, start, end) is called
//! directly. No process runs: the spool only hands out `Start`s.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::model::config::{self, Host};
use crate::model::record::{Outcome, RunRecord};
use layout::RESULT_SUFFIX;

const JOBFILE: &str = r#"
timezone: UTC
spool:
  workers: 2
  max_queued: MAX
tasks:
  report:
    command: [report]
    retries: 1
    retry_delay: 10s
    accept:
      args: ["--month", '\d{4}-\d{2}']
      env: [REPORT_LANG]
      data: true
  plain:
    command: [plain]
"#;

struct Fixture {
    /// Removed when the test ends.
    _dir: tempfile::TempDir,
    config: Config,
}

impl Fixture {
    fn new(max_queued: u32) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let text = JOBFILE.replace("MAX", &max_queued.to_string());
        let config =
            config::parse(&text, &dir.path().join("jobd.yaml"), None, &Host::default()).unwrap();
        Fixture { _dir: dir, config }
    }

    fn spool(&self, now: Now) -> Spool {
        Spool::open(&self.config, now).unwrap()
    }

    fn folder(&self, sub: &str) -> std::path::PathBuf {
        self.config.spool.dir.join(sub)
    }

    /// Drop a file as a writer should: into tmp/, then renamed into new/.
    fn drop_file(&self, name: &str, text: &str) {
        let staged = self.folder("tmp").join(name);
        fs::write(&staged, text).unwrap();
        fs::rename(&staged, self.folder("new").join(name)).unwrap();
    }

    fn names(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.folder(sub))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    fn result(&self, sub: &str, name: &str) -> serde_json::Value {
        let text = fs::read(self.folder(sub).join(format!("{name}{RESULT_SUFFIX}"))).unwrap();
        serde_json::from_slice(&text).unwrap()
    }
}

fn now() -> Now {
    Now::read()
}

fn later(now: Now, seconds: u64) -> Now {
    Now {
        wall: now.wall + TimeDelta::seconds(seconds as i64),
        mono: now.mono + Duration::from_secs(seconds),
    }
}

/// Take in everything that arrived, as the loop would, batch after batch.
fn take_all(spool: &mut Spool, config: &Config, now: Now) -> usize {
    spool.on_events(config);
    let mut batches = 0;
    while spool.intake(config, now, Budget::BATCH) {
        batches += 1;
        assert!(batches < 10_000, "intake never ends");
    }
    batches + 1
}

fn record(start: &Start, run_id: &str, at: DateTime<Utc>, outcome: Outcome) -> RunRecord {
    RunRecord {
        job: start.task.clone(),
        run_id: run_id.to_string(),
        attempt: start.attempt,
        scheduled_at: start.scheduled_at,
        started_at: at,
        ended_at: at,
        outcome,
        output: vec!["last line".to_string()],
    }
}

#[test]
fn a_file_is_claimed_by_copy_run_and_filed_with_its_value() {
    let fixture = Fixture::new(100);
    let start_at = now();
    let mut spool = fixture.spool(start_at);
    fixture.drop_file(
        "r1.json",
        r#"{"task": "report", "id": "r-1", "args": ["--month", "2026-10"],
            "env": {"REPORT_LANG": "nl"}, "data": {"user": 7}}"#,
    );
    take_all(&mut spool, &fixture.config, start_at);
    assert_eq!(spool.counts().waiting, 1);
    let starts = spool.dispatch(&fixture.config, start_at);
    assert_eq!(starts.len(), 1);
    let start = &starts[0];
    assert_eq!(start.args, ["--month", "2026-10"]);
    assert_eq!(start.env["REPORT_LANG"], "nl");
    assert_eq!(start.attempt, 1);
    // jobd's own copy in running/, the writer's file gone from new/.
    assert!(fixture.names("new").is_empty());
    let copy = fs::metadata(fixture.folder("running").join("r1.json")).unwrap();
    assert_eq!(copy.mode() & 0o7777, 0o600, "nobody but jobd submits here");
    assert_eq!(copy.uid(), nix::unistd::geteuid().as_raw());

    let vars = spool.starting("r1.json", "run-1", start_at.wall, &fixture.config);
    let var = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(
        Path::new(&var("JOBD_SPOOL_FILE")),
        fixture.folder("running").join("r1.json")
    );
    assert_eq!(var("JOBD_SPOOL_NAME"), "r1.json");
    let value = var("JOBD_RESULT_FILE");
    assert_eq!(fs::metadata(&value).unwrap().mode() & 0o777, 0o600);
    let running = fixture.result("running", "r1.json");
    assert_eq!(running["state"], "running");
    assert_eq!(running["attempt"], 1);
    assert_eq!(running["id"], "r-1");

    fs::write(&value, r#"{"rows": 12}"#).unwrap();
    let ended = record(start, "run-1", start_at.wall, Outcome::Success);
    assert!(!spool.ended("r1.json", &ended, &fixture.config, start_at));
    assert_eq!(fixture.names("done"), ["r1.json", "r1.json.result.json"]);
    assert!(!Path::new(&value).exists(), "the value file is removed");
    let done = fixture.result("done", "r1.json");
    assert_eq!(done["state"], "done");
    assert_eq!(done["outcome"], "success");
    assert_eq!(done["value"]["rows"], 12);
    assert_eq!(done["attempts"][0]["value"]["rows"], 12);
    assert!(fixture.names("running").is_empty());
    assert_eq!(spool.finished(), (1, 0));
}

#[test]
fn what_a_task_does_not_accept_is_refused_with_the_reason() {
    let fixture = Fixture::new(100);
    let at = now();
    let mut spool = fixture.spool(at);
    for (name, text) in [
        (
            "option.json",
            r#"{"task": "report", "args": ["--settings=evil"]}"#,
        ),
        ("env.json", r#"{"task": "report", "env": {"LANG": "C"}}"#),
        ("data.json", r#"{"task": "plain", "data": 1}"#),
        ("args.json", r#"{"task": "plain", "args": ["x"]}"#),
    ] {
        fixture.drop_file(name, text);
    }
    take_all(&mut spool, &fixture.config, at);
    assert_eq!(spool.counts().waiting, 0);
    for (name, words) in [
        ("option.json", "starts with `-`"),
        ("env.json", "does not accept the variable `LANG`"),
        ("data.json", "does not accept `data`"),
        ("args.json", "accepts no arguments"),
    ] {
        let result = fixture.result("failed", name);
        assert_eq!(result["state"], "failed");
        let reason = result["reason"].as_str().unwrap();
        assert!(reason.contains(words), "{name}: {reason}");
    }
}

#[test]
fn a_delayed_file_is_held_compactly_and_read_again_when_due() {
    let fixture = Fixture::new(100);
    let at = now();
    let mut spool = fixture.spool(at);
    fixture.drop_file("later.json", r#"{"task": "plain", "delay": "1h"}"#);
    take_all(&mut spool, &fixture.config, at);
    assert_eq!(spool.counts().delayed, 1);
    let due = spool.next_instant().unwrap();
    assert!(due > at.wall + TimeDelta::minutes(59), "{due}");
    assert!(spool.dispatch(&fixture.config, at).is_empty());
    // Its writer replaces it meanwhile: what runs is what is there when it is due.
    fixture.drop_file("later.json", r#"{"task": "report", "delay": "1h"}"#);
    // The files arrived a little after `at`.
    let when = later(at, 3700);
    spool.tick(when, &fixture.config);
    take_all(&mut spool, &fixture.config, when);
    spool.tick(when, &fixture.config);
    let starts = spool.dispatch(&fixture.config, when);
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].task, "report");
}

#[test]
fn intake_works_in_bounded_batches_and_holds_at_most_max_queued() {
    let fixture = Fixture::new(150);
    let at = now();
    let mut spool = fixture.spool(at);
    for i in 0..400 {
        fixture.drop_file(
            &format!("f{i:03}.json"),
            r#"{"task": "plain", "delay": "1h"}"#,
        );
    }
    spool.on_events(&fixture.config);
    let budget = Budget {
        files: 64,
        time: Duration::from_secs(60),
    };
    assert!(spool.intake(&fixture.config, at, budget), "more wait");
    assert!(spool.counts().delayed <= 64);
    let batches = take_all(&mut spool, &fixture.config, at);
    assert!(batches >= 2, "{batches}");
    assert_eq!(spool.counts().delayed, 150);
    assert_eq!(
        fixture.names("new").len(),
        400,
        "the rest wait in new/, untouched"
    );
    let problems = spool.problems(&fixture.config).join("\n");
    assert!(
        problems.contains("beyond spool.max_queued (150)"),
        "{problems}"
    );
    assert!(!spool.busy(), "a full spool does not spin");
}

#[test]
fn an_entry_that_is_not_a_file_is_refused_where_it_lies_and_holds_up_nothing() {
    let fixture = Fixture::new(100);
    let at = now();
    let mut spool = fixture.spool(at);
    let new = fixture.folder("new");
    fs::create_dir(new.join("dir.json")).unwrap();
    nix::unistd::mkfifo(&new.join("fifo.json"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", new.join("link.json")).unwrap();
    fixture.drop_file("good.json", r#"{"task": "plain"}"#);
    take_all(&mut spool, &fixture.config, at);
    let starts = spool.dispatch(&fixture.config, at);
    assert_eq!(starts.len(), 1, "the good file runs");
    assert_eq!(fixture.names("new"), ["dir.json", "fifo.json", "link.json"]);
    for (name, words) in [
        ("dir.json", "a directory"),
        ("fifo.json", "a FIFO"),
        ("link.json", "a symbolic link"),
    ] {
        let reason = fixture.result("failed", name)["reason"].to_string();
        assert!(
            reason.contains(words) && reason.contains("where it lies"),
            "{reason}"
        );
    }
    assert!(!fixture.folder("failed").join("dir.json").exists());
    // A rescan does not refuse them again.
    fs::remove_file(fixture.folder("failed").join("dir.json.result.json")).unwrap();
    spool.intake.rescan = true;
    take_all(&mut spool, &fixture.config, at);
    assert!(
        !fixture
            .folder("failed")
            .join("dir.json.result.json")
            .exists()
    );
}

#[test]
fn a_failed_attempt_waits_for_its_retry_then_fails_for_good() {
    let fixture = Fixture::new(100);
    let at = now();
    let mut spool = fixture.spool(at);
    fixture.drop_file("r.json", r#"{"task": "report"}"#);
    take_all(&mut spool, &fixture.config, at);
    let start = spool.dispatch(&fixture.config, at).remove(0);
    spool.starting("r.json", "run-1", at.wall, &fixture.config);
    let failure = Outcome::Failure { code: 3 };
    assert!(!spool.ended(
        "r.json",
        &record(&start, "run-1", at.wall, failure.clone()),
        &fixture.config,
        at
    ));
    let retrying = fixture.result("running", "r.json");
    assert_eq!(retrying["state"], "retrying");
    assert_eq!(retrying["exit_code"], 3);
    assert_eq!(retrying["output"][0], "last line");
    let next = DateTime::parse_from_rfc3339(retrying["next_attempt_at"].as_str().unwrap()).unwrap();
    let expected = at.wall + TimeDelta::seconds(10);
    assert!(
        (next.to_utc() - expected).abs() < TimeDelta::milliseconds(1),
        "{next}"
    );
    assert_eq!(spool.counts().retrying, 1);
    spool.tick(later(at, 9), &fixture.config);
    assert!(spool.dispatch(&fixture.config, later(at, 9)).is_empty());
    let when = later(at, 10);
    spool.tick(when, &fixture.config);
    let again = spool.dispatch(&fixture.config, when).remove(0);
    assert_eq!(again.attempt, 2);
    spool.starting("r.json", "run-2", when.wall, &fixture.config);
    assert!(spool.ended(
        "r.json",
        &record(&again, "run-2", when.wall, failure),
        &fixture.config,
        when
    ));
    let failed = fixture.result("failed", "r.json");
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 2);
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("after 2 attempts")
    );
}

#[test]
fn a_restarted_spool_runs_a_claimed_file_again_with_its_attempt_counted() {
    let fixture = Fixture::new(100);
    let at = now();
    let mut spool = fixture.spool(at);
    fixture.drop_file("r.json", r#"{"task": "plain"}"#);
    take_all(&mut spool, &fixture.config, at);
    spool.dispatch(&fixture.config, at);
    spool.starting("r.json", "gone-run-1", at.wall, &fixture.config);
    drop(spool);
    let when = later(at, 5);
    let mut spool = fixture.spool(when);
    assert_eq!(spool.counts().waiting, 1);
    let start = spool.dispatch(&fixture.config, when).remove(0);
    assert_eq!(start.attempt, 2);
    assert_eq!(start.scheduled_at, fixture_due(&fixture));
    let result = fixture.result("running", "r.json");
    assert_eq!(result["attempts"][0]["outcome"], "interrupted");
    assert_eq!(result["attempts"][0]["error"], "jobd stopped while it ran");
}

/// The due time recorded for `r.json`.
fn fixture_due(fixture: &Fixture) -> DateTime<Utc> {
    let result = fixture.result("running", "r.json");
    DateTime::parse_from_rfc3339(result["scheduled_at"].as_str().unwrap())
        .unwrap()
        .to_utc()
}

#[test]
fn a_file_swapped_after_it_was_read_is_left_to_its_own_event() {
    let fixture = Fixture::new(100);
    let at = now();
    let mut spool = fixture.spool(at);
    fixture.drop_file("s.json", r#"{"task": "plain"}"#);
    take_all(&mut spool, &fixture.config, at);
    // The claim reads it again; between the two, its writer put a folder there.
    fs::remove_file(fixture.folder("new").join("s.json")).unwrap();
    fs::create_dir(fixture.folder("new").join("s.json")).unwrap();
    fixture.drop_file("t.json", r#"{"task": "plain"}"#);
    take_all(&mut spool, &fixture.config, at);
    let starts = spool.dispatch(&fixture.config, at);
    assert_eq!(
        starts.iter().map(|s| s.file.as_str()).collect::<Vec<_>>(),
        ["t.json"]
    );
    assert!(
        fixture.folder("new").join("s.json").is_dir(),
        "left where it lies"
    );
    assert!(!fixture.folder("running").join("s.json").exists());
}

#[test]
fn tasks_json_says_what_each_task_accepts() {
    let fixture = Fixture::new(100);
    let _spool = fixture.spool(now());
    let tasks: serde_json::Value =
        serde_json::from_slice(&fs::read(fixture.folder("tasks.json")).unwrap()).unwrap();
    assert_eq!(tasks["version"], 1);
    let report = &tasks["tasks"]["report"];
    assert_eq!(report["accept"]["args"][1], r"\d{4}-\d{2}");
    assert_eq!(report["accept"]["max_args"], 16);
    assert_eq!(report["accept"]["env"][0], "REPORT_LANG");
    assert_eq!(report["accept"]["data"], true);
    assert_eq!(report["retries"], 1);
    assert!(report["max_instances"].is_null());
    assert_eq!(tasks["tasks"]["plain"]["accept"]["data"], false);
    assert_eq!(tasks["limits"]["max_file_bytes"], 1 << 20);
    assert_eq!(tasks["limits"]["max_args_bytes"], 128 * 1024);
    assert_eq!(tasks["limits"]["max_id_chars"], 128);
    let fence = &tasks["forbidden_env"];
    for list in ["names", "prefixes", "suffixes", "substrings"] {
        assert!(!fence[list].as_array().unwrap().is_empty(), "{list}");
    }
    assert_eq!(
        fs::metadata(fixture.folder("tasks.json")).unwrap().mode() & 0o777,
        0o600
    );
}

#[test]
fn files_whose_task_a_reload_removed_are_refused_a_batch_at_a_time() {
    let fixture = Fixture::new(1000);
    let at = now();
    let mut spool = fixture.spool(at);
    for i in 0..100 {
        fixture.drop_file(
            &format!("p{i:03}.json"),
            r#"{"task": "plain", "delay": "1s"}"#,
        );
    }
    take_all(&mut spool, &fixture.config, at);
    let mut reloaded = fixture.config.clone();
    reloaded.tasks.retain(|task| task.name != "plain");
    spool.reload(&reloaded).unwrap();
    let when = later(at, 5);
    spool.tick(when, &reloaded);
    assert!(spool.dispatch(&reloaded, when).is_empty());
    assert_eq!(
        fixture.names("failed").len(),
        2 * Budget::BATCH.files,
        "files and results"
    );
    assert!(spool.busy(), "the loop comes back for the rest");
    spool.dispatch(&reloaded, when);
    assert_eq!(fixture.names("failed").len(), 200);
    assert!(!spool.busy());
    let reason = fixture.result("failed", "p000.json")["reason"].to_string();
    assert!(
        reason.contains("task `plain` is no longer in the jobfile"),
        "{reason}"
    );
}
