//! Hearing about failures: on_failure hooks, alert_after, the metrics file.

use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};

use crate::harness::{Dir, eventually};

/// Every hook run leaves one file: its JOBD_FAILED_* variables, then its stdin.
const HOOK_SCRIPT: &str = r#"f=hooks/$(date +%s%N).$$
{ env | grep '^JOBD_FAILED_' | sort; echo '--- stdin'; cat; } > "$f.tmp" && mv "$f.tmp" "$f"
"#;
const HOOK: &str = "[sh, hook.sh]";

/// A jobfile whose hooks are `HOOK`, with the folder they write to.
fn hooked(jobfile: &str) -> Dir {
    let dir = Dir::new(jobfile);
    fs::create_dir(dir.join("hooks")).unwrap();
    fs::write(dir.join("hook.sh"), HOOK_SCRIPT).unwrap();
    dir
}

fn hook_files(dir: &Dir) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join("hooks"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".tmp"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| fs::read_to_string(dir.join("hooks").join(n)).unwrap())
        .collect()
}

fn var<'a>(hook: &'a str, name: &str) -> &'a str {
    hook.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in:\n{hook}"))
}

#[test]
fn a_failing_job_runs_its_hook_once_per_period_with_the_failure_and_its_output() {
    let dir = hooked(&format!(
        r#"
timezone: UTC
shutdown_grace: 2s
defaults:
  on_failure:
    command: {HOOK}
    repeat_after: 1h
jobs:
  flaky:
    every: 100ms
    command: 'echo "first line"; echo "second line" >&2; exit 3'
  fine:
    every: 100ms
    command: ["true"]
  quiet:
    every: 1h
    command: 'exit 1'
    on_failure: null
"#
    ));
    let mut jobd = dir.start(&[]);
    assert!(
        eventually(Duration::from_secs(20), || !hook_files(&dir).is_empty()),
        "no hook ran:\n{}",
        jobd.log()
    );
    // A job failing every 100ms for 2s more: still one hook (repeat_after: 1h).
    let started = Instant::now();
    assert!(eventually(Duration::from_secs(30), || {
        dir.jobctl(&["history", "flaky", "-n", "100", "--json"])
            .stdout()
            .matches("\"failure\"")
            .count()
            >= 20
    }));
    dir.jobctl(&["run", "quiet", "--wait"]).code(1);
    std::thread::sleep(Duration::from_millis(500));
    let hooks = hook_files(&dir);
    assert_eq!(hooks.len(), 1, "{hooks:?}\n{}", jobd.log());
    let hook = &hooks[0];
    assert_eq!(var(hook, "JOBD_FAILED_JOB"), "flaky");
    assert_eq!(var(hook, "JOBD_FAILED_OUTCOME"), "failure");
    assert_eq!(var(hook, "JOBD_FAILED_EXIT_CODE"), "3");
    assert_eq!(var(hook, "JOBD_FAILED_SIGNAL"), "");
    assert_eq!(var(hook, "JOBD_FAILED_SUPPRESSED"), "0");
    assert!(var(hook, "JOBD_FAILED_MESSAGE").contains("exit code 3"));
    assert!(var(hook, "JOBD_FAILED_AT").ends_with('Z'));
    let run_id = var(hook, "JOBD_FAILED_RUN_ID");
    let history = dir.jobctl(&["history", "--json", "-n", "1000"]).stdout();
    assert!(history.contains(run_id), "{run_id} not in the history");
    let stdin = hook.split_once("--- stdin\n").unwrap().1;
    assert!(
        stdin.contains("first line\n") && stdin.contains("second line\n"),
        "{stdin:?}"
    );
    assert!(
        jobd.log().contains("flaky.on_failure["),
        "the hook is a logged run"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    jobd.stop();
}

#[test]
fn suppressed_failures_are_counted_into_the_next_hook() {
    let dir = hooked(&format!(
        r#"
timezone: UTC
shutdown_grace: 2s
jobs:
  flaky:
    every: 100ms
    command: 'exit 1'
    on_failure:
      command: {HOOK}
      repeat_after: 1s
      timeout: 5s
"#
    ));
    let mut jobd = dir.start(&[]);
    assert!(
        eventually(Duration::from_secs(30), || hook_files(&dir).len() >= 3),
        "{}",
        jobd.log()
    );
    jobd.stop();
    let hooks = hook_files(&dir);
    let suppressed: Vec<u64> = hooks
        .iter()
        .map(|h| var(h, "JOBD_FAILED_SUPPRESSED").parse().unwrap())
        .collect();
    assert_eq!(suppressed[0], 0);
    // About ten failures a second, one hook a second: the rest are counted.
    assert!(
        suppressed[1..].iter().all(|&n| n >= 2),
        "suppressed counts: {suppressed:?}"
    );
}

#[test]
fn an_overdue_job_alerts_once_per_period_and_clears_after_a_success() {
    let dir = hooked(&format!(
        r#"
timezone: UTC
shutdown_grace: 2s
jobs:
  nightly:
    schedule: "0 0 1 1 *"
    command: ["true"]
    alert_after: 2s
    on_failure: {HOOK}
"#
    ));
    let mut jobd = dir.start(&[]);
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(20), || !hook_files(&dir).is_empty()),
        "{}",
        jobd.log()
    );
    // Not before its period (counted from jobd's start, a little before `started`).
    assert!(started.elapsed() >= Duration::from_millis(1000));
    let hook = &hook_files(&dir)[0];
    assert_eq!(var(hook, "JOBD_FAILED_OUTCOME"), "overdue");
    assert_eq!(var(hook, "JOBD_FAILED_JOB"), "nightly");
    let status = dir.jobctl(&["status"]).stdout();
    assert!(status.contains("OVERDUE"), "{status}");
    assert!(
        dir.jobctl(&["status", "--json"])
            .stdout()
            .contains("\"overdue\": true")
    );

    // Once per period: after about 5 s, two or three alerts, not one per loop pass.
    std::thread::sleep(Duration::from_secs(5).saturating_sub(started.elapsed()));
    let count = hook_files(&dir).len();
    let periods = started.elapsed().as_secs() / 2;
    assert!(
        (1..=periods as usize + 1).contains(&count),
        "{count} alerts in {:?}",
        started.elapsed()
    );

    dir.jobctl(&["run", "nightly", "--wait"]).code(0);
    let succeeded = chrono::Utc::now();
    let cleared = dir.jobctl(&["status", "--json"]).stdout();
    assert!(cleared.contains("\"overdue\": false"), "{cleared}");
    // The next period ends 2 s after the success: nothing may be raised before. (A
    // hook raised just before the success may still be writing its file.)
    std::thread::sleep(Duration::from_millis(1000));
    let raised_after: Vec<String> = hook_files(&dir)
        .iter()
        .map(|h| var(h, "JOBD_FAILED_AT").to_string())
        .filter(|at| chrono::DateTime::parse_from_rfc3339(at).unwrap().to_utc() > succeeded)
        .collect();
    assert!(
        raised_after.is_empty(),
        "alerts within a period of a success: {raised_after:?}"
    );
    jobd.stop();
}

/// The metrics file, read by a strict parser of the Prometheus text format: each
/// sample as `name{label="value",...}` (labels sorted) and its value.
fn parse_metrics(path: &std::path::Path) -> HashMap<String, f64> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    samples(&text).unwrap_or_else(|e| panic!("the metrics file is malformed: {e}\n{text}"))
}

fn samples(text: &str) -> Result<HashMap<String, f64>, String> {
    use openmetrics_parser::PrometheusValue;
    let exposition =
        openmetrics_parser::prometheus::parse_prometheus(text).map_err(|e| e.to_string())?;
    let mut samples = HashMap::new();
    for family in exposition.families.values() {
        for sample in family.iter_samples() {
            let mut labels: Vec<String> = sample
                .get_labelset()
                .map_err(|e| e.to_string())?
                .iter()
                .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
                .collect();
            labels.sort();
            let value = match &sample.value {
                PrometheusValue::Counter(counter) => counter.value.as_f64(),
                PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
                other => return Err(format!("jobd writes no histograms or summaries: {other:?}")),
            };
            let key = format!("{}{{{}}}", family.family_name, labels.join(","));
            if samples.insert(key.clone(), value).is_some() {
                return Err(format!("{key} twice"));
            }
        }
    }
    Ok(samples)
}

/// A label value as the text format writes it.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[test]
fn the_metrics_parser_refuses_malformed_files() {
    let good = "# HELP jobd_x A counter.\n# TYPE jobd_x counter\njobd_x{job=\"a\\\"b\"} 3\n";
    assert_eq!(
        samples(good).unwrap(),
        HashMap::from([(r#"jobd_x{job="a\"b"}"#.to_string(), 3.0)])
    );
    for malformed in [
        "# TYPE jobd_x counter\njobd_x{job=\"a\" 1\n",
        "# TYPE jobd_x counter\njobd_x{job=\"a\"} one\n",
        "# TYPE jobd_x counter\njobd_x{job=\"a\"} 1\njobd_x{job=\"a\"} 2\n",
        "# TYPE jobd_x countr\njobd_x 1\n",
        "# TYPE jobd_x counter\njobd_x{job=\"a\\q\"} 1\n",
        "# TYPE jobd_x counter\njobd_x{job=a} 1\n",
        "# TYPE jobd_x counter\njobd_x 1 2 3\n",
        "# TYPE jobd_x counter\njobd_x{9job=\"a\"} 1\n",
    ] {
        assert!(
            samples(malformed).is_err(),
            "accepted as valid:\n{malformed}"
        );
    }
}

/// An extra check, run by .ci/run (`cargo test -- --ignored extra_`), which installs its
/// tool: the Prometheus project's own Python parser reads jobd's metrics file as the
/// Rust parser above does.
#[test]
#[ignore = "extra check: needs python3 with prometheus_client, which .ci/run installs"]
fn extra_prometheus_client_reads_the_metrics_file_as_the_tests_do() {
    let dir = Dir::new(
        r#"
timezone: UTC
shutdown_grace: 2s
metrics_file: jobd.prom
jobs:
  tick:
    every: 200ms
    command: ["true"]
  broken:
    every: 300ms
    command: 'exit 2'
    alert_after: 1s
    on_failure: ["true"]
"#,
    );
    let mut jobd = dir.start(&[]);
    let prom = dir.join("jobd.prom");
    let failed = r#"jobd_job_runs_total{job="broken",outcome="failure"}"#;
    assert!(
        eventually(Duration::from_secs(30), || {
            prom.exists() && parse_metrics(&prom).get(failed).is_some_and(|n| *n >= 2.0)
        }),
        "{}",
        jobd.log()
    );
    jobd.stop();
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&prom)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "prometheus_client refused the file (.ci/run installs it with pip): {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        fs::read_to_string(&prom).unwrap_or_default()
    );
    let python: HashMap<String, f64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect();
    assert_eq!(python, parse_metrics(&prom));
}

#[test]
fn the_metrics_file_parses_and_its_counters_match_the_runs() {
    let jobfile = r#"
timezone: UTC
shutdown_grace: 2s
metrics_file: jobd.prom
jobs:
  tick:
    every: 200ms
    command: ["true"]
  broken:
    every: 300ms
    command: 'exit 2'
  slow:
    every: 100ms
    command: [sleep, "0.35"]
  prod_only:
    every: 100ms
    command: ["true"]
    environments: [production]
tasks:
  report:
    command: ["true"]
"#;
    let dir = Dir::new(jobfile);
    let mut jobd = dir.start(&[]);
    let prom = dir.join("jobd.prom");
    assert!(eventually(Duration::from_secs(20), || prom.exists()));
    std::thread::sleep(Duration::from_millis(2500));
    dir.jobctl(&["submit", "report"]).code(0);
    let added = jobfile.replace(
        "tasks:",
        "  added:\n    every: 1h\n    command: [\"true\"]\ntasks:",
    );
    fs::write(dir.jobfile(), added).unwrap();
    dir.jobctl(&["reload"]).code(0);
    fs::write(dir.jobfile(), "jobs: [").unwrap();
    dir.jobctl(&["reload"]).code(1);
    dir.wait_spool("done", 1, Duration::from_secs(20), &jobd);
    jobd.stop();

    let metrics = parse_metrics(&prom);
    let history = dir.jobctl(&["history", "-n", "1000", "--json"]).stdout();
    let runs: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap();
    let count = |job: &str, outcome: &str| {
        runs.iter()
            .filter(|r| r["job"] == job && r["outcome"] == outcome)
            .count() as f64
    };
    let get = |key: &str| {
        *metrics
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in {metrics:#?}"))
    };
    assert!(count("tick", "success") >= 5.0);
    assert_eq!(
        get(r#"jobd_job_runs_total{job="tick",outcome="success"}"#),
        count("tick", "success")
    );
    assert_eq!(
        get(r#"jobd_job_runs_total{job="broken",outcome="failure"}"#),
        count("broken", "failure")
    );
    assert_eq!(
        get(r#"jobd_job_runs_total{job="report",outcome="success"}"#),
        1.0
    );
    assert_eq!(
        get(r#"jobd_job_runs_total{job="tick",outcome="failure"}"#),
        0.0
    );
    assert!(get(r#"jobd_job_skipped_total{job="slow",reason="overlap"}"#) >= 5.0);
    assert!(get(r#"jobd_job_skipped_total{job="prod_only",reason="disabled"}"#) >= 10.0);
    assert_eq!(get(r#"jobd_reloads_total{result="success"}"#), 1.0);
    assert_eq!(get(r#"jobd_reloads_total{result="failure"}"#), 1.0);
    assert_eq!(get(r#"jobd_spool_finished_total{result="done"}"#), 1.0);
    let last_success = get(r#"jobd_job_last_success_timestamp_seconds{job="tick"}"#);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 60.0..=now).contains(&last_success),
        "{last_success} vs {now}"
    );
    assert!(get(r#"jobd_job_last_lateness_seconds{job="tick"}"#) < 5.0);
    assert!(get(r#"jobd_start_time_seconds{}"#) <= now);
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn the_metrics_file_follows_overdue_jobs_and_hooks_while_jobd_runs() {
    let dir = hooked(&format!(
        r#"
timezone: UTC
shutdown_grace: 2s
metrics_file: jobd.prom
jobs:
  watched:
    schedule: "@yearly"
    command: ["true"]
    alert_after: 1s
    on_failure: {HOOK}
"#
    ));
    let mut jobd = dir.start(&[]);
    let prom = dir.join("jobd.prom");
    let overdue = r#"jobd_job_overdue{job="watched"}"#;
    let hooks = r#"jobd_failure_hooks_total{job="watched",result="run"}"#;
    assert!(
        eventually(Duration::from_secs(20), || {
            let metrics = if prom.exists() {
                parse_metrics(&prom)
            } else {
                HashMap::new()
            };
            metrics.get(overdue) == Some(&1.0) && metrics.get(hooks).is_some_and(|n| *n >= 1.0)
        }),
        "{}",
        fs::read_to_string(&prom).unwrap_or_default()
    );
    jobd.stop();
}

#[test]
fn jobs_stopped_by_jobd_run_no_hook_and_a_draining_jobd_with_alert_after_sleeps() {
    let dir = hooked(&format!(
        r#"
timezone: UTC
shutdown_grace: 10s
jobs:
  replaced:
    every: 500ms
    command: [sleep, "5"]
    on_overlap: replace
    kill_grace: 1s
    on_failure: {HOOK}
  watched:
    schedule: "@yearly"
    command: ["true"]
    alert_after: 1s
  long:
    every: 1h
    command: [sleep, "5"]
"#
    ));
    let mut jobd = dir.start(&[]);
    assert!(eventually(Duration::from_secs(20), || {
        jobd.log().matches("(on_overlap: replace)").count() >= 3
    }));
    dir.jobctl(&["run", "long"]).code(0);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        hook_files(&dir).is_empty(),
        "a run jobd replaced ran the hook:\n{}",
        jobd.log()
    );
    // Draining for `long`, well past `watched`'s alert_after: jobd must sleep.
    jobd.signal(nix::sys::signal::Signal::SIGTERM);
    jobd.wait_log("shutting down", Duration::from_secs(10));
    let before = jobd.sample().cpu_ticks;
    std::thread::sleep(Duration::from_secs(2));
    let used = jobd.sample().cpu_ticks - before;
    assert!(used < 50, "jobd used {used} ticks in 2 s while draining");
    jobd.stop();
}
