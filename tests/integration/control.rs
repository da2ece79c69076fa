//! jobctl against a real jobd: status, history, run, reload, next, exit codes.

use std::fs;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::{Dir, JOBCTL, eventually};

const JOBFILE: &str = r#"
timezone: UTC
shutdown_grace: 2s
jobs:
  seven:
    schedule: "0 0 1 1 *"
    command: 'echo "the answer is near"; echo "seven" >&2; exit 7'
  tick:
    every: 300ms
    command: 'echo tick'
  later:
    schedule: "0 0 1 1 *"
    command: [sleep, "30"]
  prod:
    every: 1s
    command: [echo]
    environments: [production]
tasks:
  report:
    command: [echo, report]
"#;

#[test]
fn status_history_and_next_from_a_running_jobd() {
    let dir = Dir::new(JOBFILE);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("tick[", Duration::from_secs(20));
    assert!(eventually(Duration::from_secs(10), || {
        dir.jobctl(&["history", "tick", "-n", "1", "--json"])
            .stdout()
            .contains("\"success\"")
    }));

    let status = dir.jobctl(&["status"]);
    status.code(0);
    let text = status.stdout();
    for expected in [
        "jobd 0.1.0 (pid",
        "JOB",
        "SCHEDULE",
        "NEXT",
        "tick",
        "every 300ms",
        "disabled",
        "one-off jobs",
    ] {
        assert!(text.contains(expected), "`{expected}` missing:\n{text}");
    }
    assert!(
        text.lines().all(|l| l.chars().count() <= 110),
        "too wide:\n{text}"
    );
    assert!(!text.contains('\x1b'), "no colour when not on a terminal");

    let json: serde_json::Value =
        serde_json::from_str(&dir.jobctl(&["status", "--json"]).stdout()).unwrap();
    assert_eq!(json["daemon"]["pid"], jobd.pid().as_raw());
    let tick = json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "tick")
        .unwrap();
    assert_eq!(tick["enabled"], true);
    assert_eq!(tick["last"]["outcome"], "success");
    assert!(tick["next"].as_str().unwrap().ends_with('Z'));
    let prod = json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "prod")
        .unwrap();
    assert_eq!(prod["enabled"], false);

    let next = dir.jobctl(&["next", "tick", "-n", "3"]);
    next.code(0);
    assert_eq!(next.stdout().lines().count(), 3, "{}", next.stdout());
    assert!(next.stdout().lines().all(|l| l.ends_with("tick")));

    dir.jobctl(&["history", "nope"]).code(1);
    dir.jobctl(&["run", "nope"]).code(1);
    let disabled = dir.jobctl(&["run", "prod"]);
    disabled.code(1);
    assert!(
        disabled.stderr().contains("disabled in this environment"),
        "{}",
        disabled.stderr()
    );
    assert_eq!(jobd.stop(), Some(0));
}

#[test]
fn run_wait_returns_the_jobs_exit_code_and_history_keeps_its_output() {
    let dir = Dir::new(JOBFILE);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(10));
    let run = dir.jobctl(&["run", "seven", "--wait"]);
    run.code(7);
    assert!(
        run.stdout().contains("failed with exit code 7"),
        "{}",
        run.stdout()
    );

    let started = dir.jobctl(&["run", "later"]);
    started.code(0);
    assert!(started.stdout().contains("later["), "{}", started.stdout());
    let skipped = dir.jobctl(&["run", "later"]);
    skipped.code(1);
    assert!(
        skipped.stdout().contains("on_overlap: skip"),
        "{}",
        skipped.stdout()
    );

    let history = dir.jobctl(&["history", "seven"]);
    history.code(0);
    let text = history.stdout();
    assert!(
        text.contains("exit 7")
            && text.contains("| the answer is near")
            && text.contains("| seven"),
        "{text}"
    );
    jobd.stop();
}

#[test]
fn history_survives_a_restart_and_a_kill_9_and_status_works_while_down() {
    let dir = Dir::new(JOBFILE);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(10));
    dir.jobctl(&["run", "seven", "--wait"]).code(7);
    jobd.stop();

    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(10));
    dir.jobctl(&["run", "seven", "--wait"]).code(7);
    jobd.signal(Signal::SIGKILL);
    jobd.wait_exit(Duration::from_secs(10));

    let history = dir.jobctl(&["history", "seven", "--json"]);
    history.code(3);
    assert!(
        history.stderr().contains("jobd is not running"),
        "{}",
        history.stderr()
    );
    let runs: Vec<serde_json::Value> = serde_json::from_str(&history.stdout()).unwrap();
    assert_eq!(
        runs.len(),
        2,
        "both runs, across a restart and a kill -9: {runs:?}"
    );
    assert!(runs.iter().all(|r| r["exit_code"] == 7));

    let status = dir.jobctl(&["status"]);
    status.code(3);
    assert!(
        status.stdout().contains("jobd is not running"),
        "{}",
        status.stdout()
    );
    assert!(status.stdout().contains("exit 7"), "{}", status.stdout());
    dir.jobctl(&["run", "seven"]).code(3);
    dir.jobctl(&["reload"]).code(3);
    let socket = dir.jobctl(&["next"]);
    socket.code(3);
    assert!(
        socket.stderr().contains(".jobd/jobd.sock"),
        "names the socket tried: {}",
        socket.stderr()
    );
}

#[test]
fn catch_up_once_runs_one_missed_instant_after_downtime() {
    let dir = Dir::new(
        "timezone: UTC\njobs:\n  catchup:\n    every: 1s\n    catch_up: once\n    command: 'echo \"$JOBD_SCHEDULED_AT\" >> ran.out'\n  plain:\n    every: 1s\n    command: 'echo x >> plain.out'\n",
    );
    let mut jobd = dir.start(&[]);
    assert!(eventually(Duration::from_secs(20), || dir
        .lines("ran.out")
        .len()
        >= 2));
    jobd.stop();
    let before = dir.lines("ran.out").len();
    std::thread::sleep(Duration::from_millis(2500));
    let mut jobd = dir.start(&[]);
    jobd.wait_log("catching up on", Duration::from_secs(10));
    jobd.stop();
    let log = jobd.log();
    assert_eq!(log.matches("catching up on").count(), 1, "{log}");
    assert!(!log.contains("plain: catching up"), "{log}");
    assert!(dir.lines("ran.out").len() > before);
}

#[test]
fn a_broken_reload_is_reported_by_reload_and_status_and_a_good_one_applied() {
    let dir = Dir::new(JOBFILE);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(10));
    fs::write(
        dir.jobfile(),
        JOBFILE.replace("tasks:", "  broken:\n    every: 1s\ntasks:"),
    )
    .unwrap();
    let dry = dir.jobctl(&["reload", "--dry-run"]);
    dry.code(1);
    let reload = dir.jobctl(&["reload"]);
    reload.code(1);
    assert!(
        reload
            .stderr()
            .contains("jobs.broken: `command:` is missing"),
        "{}",
        reload.stderr()
    );
    assert!(
        reload.stderr().contains("jobd.yaml:18:3: "),
        "names the line: {}",
        reload.stderr()
    );
    let status = dir.jobctl(&["status"]);
    assert!(
        status.stdout().contains("last reload FAILED"),
        "{}",
        status.stdout()
    );
    assert!(
        status.stdout().contains("jobs.broken"),
        "{}",
        status.stdout()
    );

    let changed = JOBFILE.replace("every: 300ms", "every: 400ms").replace(
        "tasks:",
        "  added:\n    every: 1s\n    command: [echo]\ntasks:",
    );
    fs::write(dir.jobfile(), changed).unwrap();
    let dry = dir.jobctl(&["reload", "--dry-run"]);
    dry.code(0);
    assert!(
        dry.stdout().contains("added: job added") && dry.stdout().contains("changed: job tick"),
        "{}",
        dry.stdout()
    );
    let reload = dir.jobctl(&["reload"]);
    reload.code(0);
    assert!(
        reload
            .stdout()
            .starts_with("reloaded: 1 was added, 0 removed, 1 changed"),
        "{}",
        reload.stdout()
    );
    assert!(!dir.jobctl(&["status"]).stdout().contains("FAILED"));
    jobd.stop();
}

#[test]
fn another_user_is_refused_by_the_socket() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root to run jobctl as another user");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let dir = Dir::new(JOBFILE);
    // Let `nobody` reach the socket file and read the jobfile: the refusal must come
    // from jobd's peer check, not from file permissions.
    for path in [dir.path().to_path_buf(), dir.join(".jobd")] {
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(
        dir.jobfile(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(10));
    let socket = dir.join(".jobd/jobd.sock");
    fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let output = std::process::Command::new(JOBCTL)
        .args(["-c", dir.jobfile().to_str().unwrap(), "status"])
        .current_dir("/")
        .uid(nobody.uid.as_raw())
        .gid(nobody.gid.as_raw())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(
        jobd.log().contains("control socket: refused uid"),
        "{}",
        jobd.log()
    );
    jobd.stop();
}

#[test]
fn a_second_jobd_on_the_same_socket_refuses_to_start() {
    let dir = Dir::new(JOBFILE);
    let mut first = dir.start(&[]);
    first.wait_log("started:", Duration::from_secs(10));
    let second = dir.jobd(&["-c", dir.jobfile().to_str().unwrap()]);
    second.code(1);
    assert!(
        second.stderr().contains("another jobd is already running"),
        "{}",
        second.stderr()
    );
    first.stop();
}
