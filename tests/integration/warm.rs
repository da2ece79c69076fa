//! Warm runtimes, with the Python server of the repository's own package
//! (`python -m jobd.warm`, standard library only) on the system's python3: a warm run
//! behaves as a cold one but for its cost, a broken preload falls back to cold runs,
//! a reload runs new code, and a dying server loses no run. The Django side is tested
//! in python/tests (python/run-tests).

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::{Daemon, Dir, alive, eventually};

/// The repository's Python package, for the servers' PYTHONPATH.
fn package() -> String {
    format!("{}/python/src", env!("CARGO_MANIFEST_DIR"))
}

/// A jobfile whose runtime `py` preloads `preload`, with `jobs` after it.
fn jobfile(preload: &str, jobs: &str) -> String {
    format!(
        r#"
timezone: UTC
shutdown_grace: 5s
runtimes:
  py:
    command: [python3, -m, jobd.warm]
    env: {{PYTHONPATH: "{}:.", FROM: runtime, KEPT: runtime}}
    preload: [{preload}]
{jobs}"#,
        package()
    )
}

/// The server's pid once it is ready, from `jobctl status --json`.
fn ready_server(dir: &Dir, jobd: &Daemon) -> i64 {
    let mut pid = 0;
    let ready = eventually(Duration::from_secs(30), || {
        let status = dir.jobctl(&["status", "--json"]).stdout();
        let Ok(status) = serde_json::from_str::<serde_json::Value>(&status) else {
            return false;
        };
        let runtime = &status["runtimes"][0];
        pid = runtime["pid"].as_i64().unwrap_or(0);
        runtime["state"] == "ready"
    });
    assert!(ready, "the server never got ready:\n{}", jobd.log());
    pid
}

fn runs(dir: &Dir, job: &str) -> Vec<serde_json::Value> {
    let history = dir
        .jobctl(&["history", job, "-n", "100", "--json"])
        .stdout();
    serde_json::from_str(&history).unwrap_or_default()
}

#[test]
fn a_warm_run_is_a_fork_of_the_server_and_otherwise_a_cold_run() {
    let dir = Dir::new(&jobfile(
        "state",
        r#"
jobs:
  show:
    every: 1h
    runtime: py
    command: [show.py, one, "two words"]
    env: {FROM: job}
  fail:
    every: 1h
    runtime: py
    command: [fail.py]
  slow:
    every: 1h
    runtime: py
    command: [slow.py]
    timeout: 1s
    kill_grace: 1s
"#,
    ));
    fs::write(dir.join("state.py"), "counter = 0\n").unwrap();
    fs::write(
        dir.join("show.py"),
        r#"import os, sys, state
state.counter += 1
print("ppid", os.getppid(), "pgid-is-pid", os.getpgid(0) == os.getpid())
print("args", sys.argv[1:])
print("env", os.environ["FROM"], os.environ["KEPT"], os.environ["JOBD_JOB"], os.environ["JOBD_ATTEMPT"])
print("run", os.environ["JOBD_RUN_ID"])
print("counter", state.counter)
print("cwd", os.getcwd())
print("to stderr", file=sys.stderr)
"#,
    )
    .unwrap();
    fs::write(dir.join("fail.py"), "import sys\nsys.exit(3)\n").unwrap();
    fs::write(dir.join("slow.py"), "import time\ntime.sleep(60)\n").unwrap();
    let mut jobd = dir.start(&[]);
    let server = ready_server(&dir, &jobd);
    for _ in 0..2 {
        dir.jobctl(&["run", "show", "--wait"]).code(0);
    }
    let log = jobd.log();
    assert!(
        log.contains(&format!("ppid {server} pgid-is-pid True")),
        "{log}"
    );
    assert!(log.contains("args ['one', 'two words']"), "{log}");
    assert!(log.contains("env job runtime show 1"), "{log}");
    assert!(
        log.contains(&format!("cwd {}", dir.path().display())),
        "{log}"
    );
    assert!(log.contains("to stderr"), "{log}");
    assert_eq!(
        log.matches("counter 1").count(),
        2,
        "module state is fresh in each run:\n{log}"
    );
    assert!(!log.contains("counter 2"), "{log}");
    let history = runs(&dir, "show");
    let run_id = history[0]["run_id"].as_str().unwrap();
    assert!(log.contains(&format!("run {run_id}")), "{log}");

    dir.jobctl(&["run", "fail", "--wait"]).code(3);
    assert_eq!(runs(&dir, "fail")[0]["outcome"], "failure");
    dir.jobctl(&["run", "slow", "--wait"]).code(143);
    assert_eq!(runs(&dir, "slow")[0]["outcome"], "timeout");
    let status = dir.jobctl(&["status", "--json"]).stdout();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["runtimes"][0]["runs"], 4);
    assert_eq!(jobd.stop(), Some(0));
    assert!(!alive(server as i32), "the server ends with jobd");
}

#[test]
fn a_broken_preload_falls_back_to_cold_runs_and_says_so() {
    let dir = Dir::new(&jobfile(
        "no_such_module",
        r#"
jobs:
  show:
    every: 1h
    runtime: py
    command: [show.py]
"#,
    ));
    fs::write(
        dir.join("show.py"),
        "import os\nprint('ran', os.getppid())\n",
    )
    .unwrap();
    let mut jobd = dir.start(&[]);
    assert!(
        eventually(Duration::from_secs(30), || dir
            .jobctl(&["status"])
            .stdout()
            .contains("no_such_module")),
        "no PROBLEM line:\n{}\n{}",
        dir.jobctl(&["status"]).stdout(),
        jobd.log()
    );
    dir.jobctl(&["run", "show", "--wait"]).code(0);
    let status = dir.jobctl(&["status", "--json"]).stdout();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["runtimes"][0]["state"], "failed", "{status}");
    assert!(
        status["problems"][0]
            .as_str()
            .unwrap()
            .contains("runs start cold"),
        "{status}"
    );
    let log = jobd.log();
    let jobd_pid = jobd.pid().as_raw();
    assert!(
        log.contains(&format!("ran {jobd_pid}")),
        "the cold run is jobd's own child:\n{log}"
    );
    assert_eq!(jobd.stop(), Some(0));
}

#[test]
fn after_a_reload_the_next_run_runs_the_new_code() {
    let dir = Dir::new(&jobfile(
        "lib",
        r#"
jobs:
  show:
    every: 1h
    runtime: py
    command: [show.py]
"#,
    ));
    fs::write(dir.join("lib.py"), "VALUE = 'old'\n").unwrap();
    fs::write(
        dir.join("show.py"),
        "import lib\nprint('value', lib.VALUE)\n",
    )
    .unwrap();
    let mut jobd = dir.start(&[]);
    let old = ready_server(&dir, &jobd);
    dir.jobctl(&["run", "show", "--wait"]).code(0);
    fs::write(dir.join("lib.py"), "VALUE = 'new'\n").unwrap();
    dir.jobctl(&["reload"]).code(0);
    // Whether it runs cold (the new server still importing) or warm, it is new code.
    dir.jobctl(&["run", "show", "--wait"]).code(0);
    let new = ready_server(&dir, &jobd);
    assert_ne!(old, new, "the server was replaced");
    dir.jobctl(&["run", "show", "--wait"]).code(0);
    let log = jobd.log();
    assert_eq!(log.matches("value old").count(), 1, "{log}");
    assert_eq!(log.matches("value new").count(), 2, "{log}");
    assert!(eventually(Duration::from_secs(10), || !alive(old as i32)));
    assert_eq!(jobd.stop(), Some(0));
}

#[test]
fn a_server_killed_mid_run_loses_no_run_and_is_started_again() {
    let dir = Dir::new(&jobfile(
        "json",
        r#"
jobs:
  slow:
    every: 1h
    runtime: py
    command: [slow.py]
"#,
    ));
    fs::write(
        dir.join("slow.py"),
        "import time\nprint('started', flush=True)\ntime.sleep(60)\n",
    )
    .unwrap();
    let mut jobd = dir.start(&[]);
    let server = ready_server(&dir, &jobd);
    dir.jobctl(&["run", "slow"]).code(0);
    jobd.wait_log("started", Duration::from_secs(20));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server as i32), Signal::SIGKILL).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || !runs(&dir, "slow").is_empty()),
        "the run's end was not recorded:\n{}",
        jobd.log()
    );
    assert_eq!(runs(&dir, "slow")[0]["outcome"], "killed");
    let again = ready_server(&dir, &jobd);
    assert_ne!(again, server);
    let status = dir.jobctl(&["status", "--json"]).stdout();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["runtimes"][0]["restarts"], 1, "{status}");
    assert_eq!(jobd.stop(), Some(0));
}

#[test]
fn a_killed_jobd_leaves_no_server_and_no_fork_behind() {
    let dir = Dir::new(&jobfile(
        "json",
        r#"
jobs:
  slow:
    every: 1h
    runtime: py
    command: [slow.py]
"#,
    ));
    fs::write(
        dir.join("slow.py"),
        "import os, time\nprint('fork', os.getpid(), flush=True)\ntime.sleep(60)\n",
    )
    .unwrap();
    let mut jobd = dir.start(&[]);
    let server = ready_server(&dir, &jobd) as i32;
    dir.jobctl(&["run", "slow"]).code(0);
    jobd.wait_log("fork ", Duration::from_secs(20));
    let fork: i32 = jobd
        .log()
        .split("fork ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap();
    jobd.kill9();
    assert!(
        eventually(Duration::from_secs(10), || !alive(server) && !alive(fork)),
        "server {server} or fork {fork} outlived jobd"
    );
    let mut jobd = dir.start(&[]);
    assert!(
        eventually(Duration::from_secs(20), || runs(&dir, "slow")
            .first()
            .is_some_and(|r| r["outcome"] == "interrupted")),
        "{}",
        jobd.log()
    );
    assert_eq!(jobd.stop(), Some(0));
}

#[test]
fn a_server_is_replaced_after_max_runs_between_runs() {
    let dir = Dir::new(
        &jobfile(
            "json",
            "jobs:\n  show:\n    every: 1h\n    runtime: py\n    command: [show.py]\n",
        )
        .replace(
            "    preload: [json]\n",
            "    preload: [json]\n    max_runs: 2\n",
        ),
    );
    fs::write(
        dir.join("show.py"),
        "import os\nprint('parent', os.getppid())\n",
    )
    .unwrap();
    let mut jobd = dir.start(&[]);
    let first = ready_server(&dir, &jobd);
    dir.jobctl(&["run", "show", "--wait"]).code(0);
    dir.jobctl(&["run", "show", "--wait"]).code(0);
    let second = ready_server(&dir, &jobd);
    assert_ne!(
        first,
        second,
        "replaced after its second run:\n{}",
        jobd.log()
    );
    dir.jobctl(&["run", "show", "--wait"]).code(0);
    let log = jobd.log();
    assert_eq!(log.matches(&format!("parent {first}")).count(), 2, "{log}");
    assert!(log.contains(&format!("parent {second}")), "{log}");
    assert!(log.contains("served 2 runs (max_runs)"), "{log}");
    assert!(eventually(Duration::from_secs(10), || !alive(first as i32)));
    assert_eq!(jobd.stop(), Some(0));
}

#[test]
fn a_server_past_max_rss_is_replaced_after_its_run() {
    let dir = Dir::new(
        &jobfile(
            "json",
            "jobs:\n  show:\n    every: 1h\n    runtime: py\n    command: [show.py]\n",
        )
        .replace(
            "    preload: [json]\n",
            "    preload: [json]\n    max_rss: 1M\n",
        ),
    );
    fs::write(dir.join("show.py"), "print('ran')\n").unwrap();
    let mut jobd = dir.start(&[]);
    let first = ready_server(&dir, &jobd);
    dir.jobctl(&["run", "show", "--wait"]).code(0);
    assert!(
        eventually(Duration::from_secs(20), || jobd
            .log()
            .contains("more than max_rss")),
        "{}",
        jobd.log()
    );
    assert_ne!(ready_server(&dir, &jobd), first);
    assert_eq!(jobd.stop(), Some(0));
}
