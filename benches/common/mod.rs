//! What the benchmarks share: the jobd builds they compare, and the one way they start,
//! watch and stop a jobd.
//!
//! Each benchmark runs the jobd built with it; with `JOBD_BASELINE=/path/to/jobd` (its
//! jobctl beside it) it runs that one too, in the same invocation and on the same inputs,
//! and prints both rows and their ratio: a comparison with an older commit sees the same
//! machine noise as the figures it compares.

// Each benchmark is its own crate and uses its own part of this module.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A jobd binary and the jobctl beside it.
#[derive(Debug, Clone)]
pub struct Build {
    /// `current` (built with this benchmark) or `baseline`.
    pub name: &'static str,
    pub jobd: PathBuf,
    pub jobctl: PathBuf,
}

/// The build under test, then the baseline `JOBD_BASELINE` names, if any. Panics with
/// what to fix when that names no jobd, or no jobctl lies beside it.
pub fn builds() -> Vec<Build> {
    let mut builds = vec![Build {
        name: "current",
        jobd: PathBuf::from(env!("CARGO_BIN_EXE_jobd")),
        jobctl: PathBuf::from(env!("CARGO_BIN_EXE_jobctl")),
    }];
    if let Some(jobd) = std::env::var_os("JOBD_BASELINE").filter(|v| !v.is_empty()) {
        let jobd = PathBuf::from(jobd);
        let jobctl = jobd.with_file_name("jobctl");
        for (what, path) in [("JOBD_BASELINE", &jobd), ("jobctl beside it", &jobctl)] {
            assert!(
                path.is_file(),
                "{what}: {} is not a file; build the baseline with `cargo build --release` \
                 and name its target/release/jobd",
                path.display()
            );
        }
        builds.push(Build {
            name: "baseline",
            jobd,
            jobctl,
        });
    }
    builds
}

/// Prints which binaries run, for the record of a run.
pub fn print_builds(builds: &[Build]) {
    for build in builds {
        println!("{:<8} jobd: {}", build.name, build.jobd.display());
    }
}

/// `current / baseline`, as the comparison lines print it.
pub fn ratio(current: f64, baseline: f64) -> String {
    if baseline > 0.0 && current.is_finite() {
        format!("{:.2}", current / baseline)
    } else {
        "n/a".to_string()
    }
}

/// CLOCK_REALTIME in nanoseconds: what a job's process reads first thing, to compare with
/// a time another process took.
pub fn realtime_ns() -> i64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME)
        .expect("CLOCK_REALTIME is always readable");
    now.tv_sec() * 1_000_000_000 + now.tv_nsec()
}

/// A probe job's end: `line` appended to `results` in one `write` with O_APPEND, so that
/// lines of children running at once never interleave; exit 0 when all of it was written.
pub fn append_and_exit(results: &OsStr, line: &str) -> ! {
    use std::io::Write;
    let written = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(results)
        .and_then(|mut file| file.write(line.as_bytes()));
    std::process::exit(if written.is_ok_and(|n| n == line.len()) {
        0
    } else {
        1
    })
}

/// The load averages, for the record of the noise a run saw.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A running jobd, its stderr read by a thread that stamps each line. Dropping it stops
/// it, so that a panicking benchmark leaves no daemon behind.
pub struct Jobd {
    child: Child,
    spawned: Instant,
    lines: mpsc::Receiver<(Instant, String)>,
    reader: Option<JoinHandle<()>>,
    /// Lines read so far.
    log: Vec<String>,
}

impl Jobd {
    /// The command that starts `build`'s jobd on `jobfile`, logging at the info level to
    /// a pipe, with nothing of the caller's jobd settings: add to it, then [`Jobd::spawn`].
    pub fn command(build: &Build, jobfile: &Path) -> Command {
        let mut command = Command::new(&build.jobd);
        command
            .arg("-c")
            .arg(jobfile)
            .env_remove("JOBD_CONFIG")
            .env_remove("JOBD_ENVIRONMENT")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env("JOBD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// `build`'s jobd on `jobfile`, with `env` added.
    pub fn start(build: &Build, jobfile: &Path, env: &[(&str, &OsStr)]) -> Jobd {
        let mut command = Jobd::command(build, jobfile);
        for (name, value) in env {
            command.env(name, value);
        }
        Jobd::spawn(command)
    }

    pub fn spawn(mut command: Command) -> Jobd {
        let spawned = Instant::now();
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}",
                command.get_program().to_string_lossy()
            )
        });
        let stderr = child.stderr.take().expect("Jobd::command pipes stderr");
        let (send, lines) = mpsc::channel();
        // Keeps reading after the receiver is gone: a full pipe would block jobd's logging.
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = send.send((Instant::now(), line));
            }
        });
        Jobd {
            child,
            spawned,
            lines,
            reader: Some(reader),
            log: Vec::new(),
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pids fit in i32"))
    }

    pub fn spawned(&self) -> Instant {
        self.spawned
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Time from spawning to the log line saying "started"; panics with the log when it
    /// does not come within 30 s.
    pub fn wait_started(&mut self) -> Duration {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    let started = line.contains("started");
                    self.log.push(line);
                    if started {
                        return at - self.spawned;
                    }
                }
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!(
                        "jobd did not say it started (exit status {status:?}); its log:\n{}",
                        self.log.join("\n")
                    );
                }
            }
        }
    }

    /// SIGTERM, then the wait jobd's own shutdown takes; SIGKILL if it hangs.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.join_reader();
            return Some(status);
        }
        let _ = kill(self.pid(), Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < until => thread::sleep(Duration::from_millis(5)),
                _ => {
                    eprintln!("jobd {} did not stop on SIGTERM; killing it", self.pid());
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
            }
        };
        self.join_reader();
        status
    }

    fn join_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// The log lines read so far.
    pub fn log(&mut self) -> &[String] {
        self.log.extend(self.lines.try_iter().map(|(_, line)| line));
        &self.log
    }

    /// The last `count` log lines, newest first, for the report of a failure.
    pub fn tail(&mut self, count: usize) -> String {
        let lines: Vec<&str> = self
            .log()
            .iter()
            .rev()
            .take(count)
            .map(String::as_str)
            .collect();
        lines.join("\n  ")
    }

    /// Log lines at warning or error level.
    pub fn complaints(&mut self) -> Vec<String> {
        self.log()
            .iter()
            .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
            .cloned()
            .collect()
    }
}

impl Drop for Jobd {
    fn drop(&mut self) {
        self.stop();
    }
}
