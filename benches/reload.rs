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
use std::path::{Path, PathBuf};
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
    // One folder per build, for its own state and socket.
    let jobfiles: Vec<_> = builds
        .iter()
        .map(|build| {
            let folder = dir.path().join(build.name);
            std::fs::create_dir(&folder).expect("a folder per build");
            let jobfile = folder.join("jobd.yaml");
            std::fs::write(&jobfile, jobfile_text(jobs)).expect("the jobfile is written");
            jobfile
        })
        .collect();
    let size = std::fs::metadata(&jobfiles[0])
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "reload: {jobs} jobs ({} KiB), {rounds} reloads and status calls, load average {}",
        size / 1024,
        common::load_average()
    );
    common::print_builds(&builds);
    println!("the builds take turns sample by sample, so that they share the machine's noise");

    let figures = measure(&builds, &jobfiles, rounds);
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

/// `sample(build, jobfile)` `times` times for each build, the builds taking turns.
fn take_turns(
    builds: &[Build],
    jobfiles: &[PathBuf],
    times: usize,
    mut sample: impl FnMut(&Build, &Path) -> Duration,
) -> Vec<Vec<Duration>> {
    let mut samples = vec![Vec::new(); builds.len()];
    for _ in 0..times {
        for (b, (build, jobfile)) in builds.iter().zip(jobfiles).enumerate() {
            samples[b].push(sample(build, jobfile));
        }
    }
    samples
}

fn measure(builds: &[Build], jobfiles: &[PathBuf], rounds: usize) -> Vec<Figures> {
    let fewer = rounds.div_ceil(4).max(3);
    let checks = take_turns(builds, jobfiles, fewer, |build, jobfile| {
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
    });
    let startups = take_turns(builds, jobfiles, fewer, |build, jobfile| {
        start_up(build, jobfile)
    });

    // At the warning level, as in the start-ups: no line per job to write and read.
    let mut daemons: Vec<Jobd> = builds
        .iter()
        .zip(jobfiles)
        .map(|(build, jobfile)| {
            let mut command = Jobd::command(build, jobfile);
            command.env("JOBD_LOG", "warn");
            Jobd::spawn(command)
        })
        .collect();
    for ((build, jobfile), jobd) in builds.iter().zip(jobfiles).zip(&mut daemons) {
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
                "{} jobd did not answer within 30 s",
                build.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let jobctl = |build: &Build, jobfile: &Path, args: &[&str]| {
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
    let reloads = take_turns(builds, jobfiles, rounds, |build, jobfile| {
        jobctl(build, jobfile, &["reload"])
    });
    let statuses = take_turns(builds, jobfiles, rounds, |build, jobfile| {
        jobctl(build, jobfile, &["status", "--json"])
    });
    for jobd in &mut daemons {
        jobd.stop();
    }

    (0..builds.len())
        .map(|b| {
            let mut lines = Vec::new();
            let check = report("jobd check (reference)", &checks[b], &mut lines);
            let startup = report("start-up to READY=1", &startups[b], &mut lines);
            let reload = report("jobctl reload, end to end", &reloads[b], &mut lines);
            let status = report("jobctl status --json", &statuses[b], &mut lines);
            Figures {
                check,
                startup,
                reload,
                status,
                lines,
            }
        })
        .collect()
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
fn start_up(build: &Build, jobfile: &Path) -> Duration {
    let notify = jobfile.with_file_name("notify.sock");
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
