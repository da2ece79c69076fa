//! What a large jobfile costs: start-up to systemd's READY=1, `jobctl reload` end to
//! end and `jobctl status --json` end to end, against `jobd check` of the same file
//! (reading and validating it in a fresh process: the part of a reload no design can
//! skip).
//!
//! `cargo bench --bench reload`. Settings, from the environment:
//! - `RELOAD_JOBS` (default 10000): jobs in the generated jobfile, half cron, half `every:`;
//! - `RELOAD_ROUNDS` (default 20): reloads and status calls timed; start-ups and checks
//!   take a quarter;
//! - `JOBD_BASELINE`: another jobd to run beside this one (benches/common).
//!
//! Prints figures and asserts nothing.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Build, Jobd};

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("reload: skipped; run it with `cargo bench --bench reload`");
        return;
    }
    let jobs = setting("RELOAD_JOBS", 10_000);
    let rounds = setting("RELOAD_ROUNDS", 20);
    let builds = common::builds();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let jobfile = dir.path().join("jobd.yaml");
    std::fs::write(&jobfile, jobfile_text(jobs)).expect("the jobfile is written");
    let size = std::fs::metadata(&jobfile).map(|m| m.len()).unwrap_or(0);
    println!(
        "reload: {jobs} jobs ({} KiB), {rounds} reloads and status calls, load average {}",
        size / 1024,
        common::load_average()
    );
    common::print_builds(&builds);

    let figures: Vec<Figures> = builds
        .iter()
        .map(|build| measure(build, dir.path(), &jobfile, rounds))
        .collect();
    for (build, figures) in builds.iter().zip(&figures) {
        println!("{}:", build.name);
        figures.print();
    }
    if let [current, baseline] = &figures[..] {
        println!(
            "current / baseline at p50: check {}, start-up {}, reload {}, status {}",
            common::ratio(current.check, baseline.check),
            common::ratio(current.startup, baseline.startup),
            common::ratio(current.reload, baseline.reload),
            common::ratio(current.status, baseline.status),
        );
    }
    println!("load average after: {}", common::load_average());
}

/// Each sample's p50 in ms, and the lines that print them all.
struct Figures {
    check: f64,
    startup: f64,
    reload: f64,
    status: f64,
    lines: Vec<String>,
}

impl Figures {
    fn print(&self) {
        for line in &self.lines {
            println!("  {line}");
        }
        println!(
            "  ratios to jobd check at p50: start-up {:.2}, reload {:.2}",
            self.startup / self.check,
            self.reload / self.check
        );
    }
}

fn measure(build: &Build, dir: &Path, jobfile: &Path, rounds: usize) -> Figures {
    let fewer = rounds.div_ceil(4).max(3);
    let check: Vec<Duration> = (0..fewer)
        .map(|_| {
            let start = Instant::now();
            let status = Command::new(&build.jobd)
                .args(["check", "-c"])
                .arg(jobfile)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("jobd check runs");
            assert!(status.success(), "the generated jobfile is valid");
            start.elapsed()
        })
        .collect();

    let startups: Vec<Duration> = (0..fewer).map(|_| start_up(build, dir, jobfile)).collect();

    // At the warning level, as in the start-ups: no line per job to write and read.
    let mut command = Jobd::command(build, jobfile);
    command.env("JOBD_LOG", "warn");
    let mut jobd = Jobd::spawn(command);
    // Ready when it answers.
    let until = Instant::now() + Duration::from_secs(30);
    while !Command::new(&build.jobctl)
        .arg("-c")
        .arg(jobfile)
        .arg("status")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            jobd.alive() && Instant::now() < until,
            "jobd did not answer within 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let jobctl = |args: &[&str]| {
        let start = Instant::now();
        let status = Command::new(&build.jobctl)
            .args(args)
            .arg("-c")
            .arg(jobfile)
            .stdout(Stdio::null())
            .status()
            .expect("jobctl runs");
        assert!(status.success(), "jobctl {args:?} succeeds");
        start.elapsed()
    };
    let reloads: Vec<Duration> = (0..rounds).map(|_| jobctl(&["reload"])).collect();
    let statuses: Vec<Duration> = (0..rounds).map(|_| jobctl(&["status", "--json"])).collect();
    jobd.stop();

    let mut lines = Vec::new();
    let check = report("jobd check (reference)", &check, &mut lines);
    let startup = report("start-up to READY=1", &startups, &mut lines);
    let reload = report("jobctl reload, end to end", &reloads, &mut lines);
    let status = report("jobctl status --json", &statuses, &mut lines);
    Figures {
        check,
        startup,
        reload,
        status,
        lines,
    }
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn jobfile_text(jobs: usize) -> String {
    let mut text = String::from("timezone: UTC\nshutdown_grace: 1s\njobs:\n");
    for i in 0..jobs {
        if i % 2 == 0 {
            text.push_str(&format!(
                "  job{i}:\n    schedule: \"{} {} * * * *\"\n    command: [echo, \"{i}\"]\n",
                i % 60,
                (i / 60) % 60
            ));
        } else {
            text.push_str(&format!(
                "  job{i}:\n    every: {}m\n    command: 'echo {i}'\n",
                i % 50 + 10
            ));
        }
    }
    text
}

/// Start jobd under a NOTIFY_SOCKET listener; the time to READY=1.
fn start_up(build: &Build, dir: &Path, jobfile: &Path) -> Duration {
    let notify = dir.join("notify.sock");
    let _ = std::fs::remove_file(&notify);
    let listener = UnixDatagram::bind(&notify).expect("a datagram socket");
    listener
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    let mut command = Jobd::command(build, jobfile);
    command
        .env("NOTIFY_SOCKET", &notify)
        .env("JOBD_LOG", "warn");
    let start = Instant::now();
    let mut jobd = Jobd::spawn(command);
    let mut buf = [0u8; 4096];
    let took = loop {
        let n = listener.recv(&mut buf).expect("jobd notifies within 30 s");
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "READY=1")
        {
            break start.elapsed();
        }
    };
    jobd.stop();
    took
}

/// Adds a line of p50/p90/max in ms to `lines`; returns p50.
fn report(what: &str, times: &[Duration], lines: &mut Vec<String>) -> f64 {
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    lines.push(format!(
        "{what:<28} p50 {:>7.1} ms   p90 {:>7.1} ms   max {:>7.1} ms   (n={})",
        at(0.5),
        at(0.9),
        ms[ms.len() - 1],
        ms.len()
    ));
    at(0.5)
}
