//! What a large jobfile costs: start-up to systemd's READY=1, and `jobctl reload` end to
//! end, against `jobd check` of the same file (reading and validating it in a fresh
//! process: the part of a reload no design can skip).
//!
//! `cargo bench --bench reload`. Settings, from the environment:
//! - `RELOAD_JOBS` (default 10000): jobs in the generated jobfile, half cron, half `every:`;
//! - `RELOAD_ROUNDS` (default 20): reloads timed; start-ups and checks take a quarter.
//!
//! Prints figures and asserts nothing.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const JOBD: &str = env!("CARGO_BIN_EXE_jobd");
const JOBCTL: &str = env!("CARGO_BIN_EXE_jobctl");

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("reload: skipped; run it with `cargo bench --bench reload`");
        return;
    }
    let jobs = setting("RELOAD_JOBS", 10_000);
    let rounds = setting("RELOAD_ROUNDS", 20);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let jobfile = dir.path().join("jobd.yaml");
    std::fs::write(&jobfile, jobfile_text(jobs)).expect("the jobfile is written");
    let size = std::fs::metadata(&jobfile).map(|m| m.len()).unwrap_or(0);
    println!(
        "reload: {jobs} jobs ({} KiB), {rounds} reloads",
        size / 1024
    );

    let check: Vec<Duration> = (0..rounds.div_ceil(4).max(3))
        .map(|_| {
            let start = Instant::now();
            let status = Command::new(JOBD)
                .args(["check", "-c"])
                .arg(&jobfile)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("jobd check runs");
            assert!(status.success(), "the generated jobfile is valid");
            start.elapsed()
        })
        .collect();

    let startups: Vec<Duration> = (0..rounds.div_ceil(4).max(3))
        .map(|_| start_up(dir.path(), &jobfile))
        .collect();

    let mut jobd = Command::new(JOBD)
        .arg("-c")
        .arg(&jobfile)
        .env("JOBD_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("jobd starts");
    let socket = dir.path().join(".jobd/jobd.sock");
    let until = Instant::now() + Duration::from_secs(30);
    while !socket.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let reloads: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            let status = Command::new(JOBCTL)
                .args(["reload", "-c"])
                .arg(&jobfile)
                .stdout(Stdio::null())
                .status()
                .expect("jobctl runs");
            assert!(status.success(), "the reload is applied");
            start.elapsed()
        })
        .collect();
    let _ = kill(Pid::from_raw(jobd.id() as i32), Signal::SIGTERM);
    let _ = jobd.wait();

    let check_p50 = report("jobd check (reference)", &check);
    let startup_p50 = report("start-up to READY=1", &startups);
    let reload_p50 = report("jobctl reload, end to end", &reloads);
    println!(
        "ratios to jobd check at p50: start-up {:.2}, reload {:.2}",
        startup_p50 / check_p50,
        reload_p50 / check_p50
    );
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
fn start_up(dir: &Path, jobfile: &Path) -> Duration {
    let notify = dir.join("notify.sock");
    let _ = std::fs::remove_file(&notify);
    let listener = UnixDatagram::bind(&notify).expect("a datagram socket");
    listener
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    let start = Instant::now();
    let mut jobd = Command::new(JOBD)
        .arg("-c")
        .arg(jobfile)
        .env("NOTIFY_SOCKET", &notify)
        .env("JOBD_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("jobd starts");
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
    let _ = kill(Pid::from_raw(jobd.id() as i32), Signal::SIGTERM);
    let _ = jobd.wait();
    took
}

/// Print p50/p90/max in ms; return p50.
fn report(what: &str, times: &[Duration]) -> f64 {
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    println!(
        "{what:<28} p50 {:>7.1} ms   p90 {:>7.1} ms   max {:>7.1} ms   (n={})",
        at(0.5),
        at(0.9),
        ms[ms.len() - 1],
        ms.len()
    );
    at(0.5)
}
