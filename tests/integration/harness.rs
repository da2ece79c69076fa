//! Running the real binaries in temporary directories, and waiting for conditions.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

pub const JOBD: &str = env!("CARGO_BIN_EXE_jobd");
pub const JOBCTL: &str = env!("CARGO_BIN_EXE_jobctl");

/// A temporary directory with a jobfile in it.
pub struct Dir {
    pub tmp: TempDir,
}

impl Dir {
    pub fn new(jobfile: &str) -> Dir {
        let tmp = tempfile::Builder::new()
            .prefix("jobd-test-")
            .tempdir()
            .unwrap();
        fs::write(tmp.path().join("jobd.yaml"), jobfile).unwrap();
        Dir { tmp }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn jobfile(&self) -> PathBuf {
        self.join("jobd.yaml")
    }

    /// Run `jobd ARGS` in this directory to completion.
    pub fn jobd(&self, args: &[&str]) -> Run {
        self.run(JOBD, args)
    }

    /// Run `jobctl ARGS` in this directory to completion.
    pub fn jobctl(&self, args: &[&str]) -> Run {
        self.run(JOBCTL, args)
    }

    fn run(&self, program: &str, args: &[&str]) -> Run {
        let output = Command::new(program)
            .args(args)
            .current_dir(self.path())
            .env_remove("JOBD_CONFIG")
            .env_remove("JOBD_ENVIRONMENT")
            .env("TZ", "UTC")
            .output()
            .unwrap();
        Run {
            program: program.rsplit('/').next().unwrap_or(program).to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            output,
        }
    }

    /// Start the daemon on this directory's jobfile, its log going to `jobd.log`.
    pub fn start(&self, args: &[&str]) -> Daemon {
        self.start_with(args, &[])
    }

    /// `start`, with variables added to jobd's environment.
    pub fn start_with(&self, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let log = fs::File::create(self.join("jobd.log")).unwrap();
        let child = self.daemon_command(args, env, log).spawn().unwrap();
        Daemon {
            child: Some(child),
            log: self.join("jobd.log"),
        }
    }

    /// `start`, with jobd's umask set to `umask` (the packaged units' 0002, say): what
    /// jobd writes must not take its mode from it.
    pub fn start_with_umask(&self, umask: u32) -> Daemon {
        use std::os::unix::process::CommandExt;
        let log = fs::File::create(self.join("jobd.log")).unwrap();
        let mut command = self.daemon_command(&[], &[], log);
        let mask = nix::sys::stat::Mode::from_bits_truncate(umask);
        // SAFETY: umask is async-signal-safe and cannot fail; the mode was built before
        // the fork.
        unsafe {
            command.pre_exec(move || {
                nix::sys::stat::umask(mask);
                Ok(())
            });
        }
        Daemon {
            child: Some(command.spawn().unwrap()),
            log: self.join("jobd.log"),
        }
    }

    /// jobd on this directory's jobfile, in a clean environment plus `env`, its log
    /// going to `log`.
    fn daemon_command(&self, args: &[&str], env: &[(&str, &str)], log: fs::File) -> Command {
        let mut command = Command::new(JOBD);
        command
            .arg("-c")
            .arg(self.jobfile())
            .args(args)
            .current_dir(self.path())
            .env_remove("JOBD_CONFIG")
            .env_remove("JOBD_ENVIRONMENT")
            .env_remove("NOTIFY_SOCKET")
            .env("JOBD_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        command
    }

    /// The spool's folder `sub` (new, running, done, failed, tmp) under `.jobd/spool`.
    pub fn spool(&self, sub: &str) -> PathBuf {
        self.join(".jobd/spool").join(sub)
    }

    /// The names in a spool folder, results left out, sorted.
    pub fn spool_files(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.spool(sub))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.ends_with(".result.json") && !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Wait until spool folder `sub` holds `count` files; on failure show the spool's
    /// folders and jobd's log.
    #[track_caller]
    pub fn wait_spool(&self, sub: &str, count: usize, within: Duration, jobd: &Daemon) {
        if !eventually(within, || self.spool_files(sub).len() == count) {
            panic!(
                "{sub}/ does not hold {count} files within {within:?}\nnew: {:?}\nrunning: {:?}\ndone: {:?}\nfailed: {:?}\n{}",
                self.spool_files("new"),
                self.spool_files("running"),
                self.spool_files("done"),
                self.spool_files("failed"),
                jobd.log()
            );
        }
    }

    /// The result JSON of a finished spool file in `done` or `failed`.
    pub fn result(&self, sub: &str, name: &str) -> serde_json::Value {
        let path = self.spool(sub).join(format!("{name}.result.json"));
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    /// Drop a spool file the way a writer should: into tmp/, then rename into new/.
    pub fn drop_file(&self, name: &str, contents: &[u8]) {
        fs::create_dir_all(self.spool("tmp")).unwrap();
        fs::create_dir_all(self.spool("new")).unwrap();
        let staged = self.spool("tmp").join(name);
        fs::write(&staged, contents).unwrap();
        fs::rename(&staged, self.spool("new").join(name)).unwrap();
    }

    /// The lines of a file the jobs append to (empty if it does not exist yet).
    pub fn lines(&self, name: &str) -> Vec<String> {
        fs::read_to_string(self.join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// A finished command, with what is needed to understand a failure.
pub struct Run {
    pub program: String,
    pub args: Vec<String>,
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    #[track_caller]
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(
            self.output.status.code(),
            Some(expected),
            "{} {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.program,
            self.args,
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// A running jobd, stopped (by PID) when dropped.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log contains `text`.
    #[track_caller]
    pub fn wait_log(&self, text: &str, within: Duration) {
        if !eventually(within, || self.log().contains(text)) {
            panic!("no `{text}` in the log within {within:?}:\n{}", self.log());
        }
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    /// Wait for jobd to exit; its exit code.
    #[track_caller]
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        let status = wait_for(within, || child.try_wait().unwrap())
            .unwrap_or_else(|| panic!("jobd did not exit within {within:?}:\n{}", self.log()));
        self.child = None;
        status.code()
    }

    /// SIGTERM, and the exit code once it has stopped.
    #[track_caller]
    pub fn stop(&mut self) -> Option<i32> {
        self.signal(Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(60))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        if wait_for(Duration::from_secs(15), || child.try_wait().ok().flatten()).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Poll `check` every 20 ms until it gives a value or `within` has passed.
pub fn wait_for<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process is alive (zombies count as gone).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next()),
            Some("Z") | Some("X")
        ),
        Err(_) => false,
    }
}

/// Wait for a condition on a bool; false if it never held.
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    wait_for(within, || check().then_some(())).is_some()
}

// Helpers of the fault and endurance tests (faults.rs, peers.rs).

/// Whether the long variants run: `JOBD_LONG_TESTS=1`.
pub fn long_tests() -> bool {
    std::env::var("JOBD_LONG_TESTS").is_ok_and(|v| v == "1")
}

/// `default`, or `long` when the long variants run.
pub fn scale<T>(default: T, long: T) -> T {
    if long_tests() { long } else { default }
}

impl Dir {
    /// Start jobd with its log appended to `jobd.log` (kept across restarts), `env`
    /// added to its environment and, when given, its limit on open files set to
    /// `nofile`.
    pub fn start_appending(&self, env: &[(&str, &str)], nofile: Option<u64>) -> Daemon {
        use std::os::unix::process::CommandExt;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.join("jobd.log"))
            .unwrap();
        let mut command = self.daemon_command(&[], env, log);
        if let Some(limit) = nofile {
            let limit = nix::libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: setrlimit is async-signal-safe; the value was built before the fork.
            unsafe {
                command.pre_exec(move || {
                    if nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        Daemon {
            child: Some(command.spawn().unwrap()),
            log: self.join("jobd.log"),
        }
    }
}

impl Daemon {
    /// SIGKILL jobd and reap it; its children live on.
    #[track_caller]
    pub fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        self.wait_exit(Duration::from_secs(10));
    }

    /// Open files, memory, CPU time and children of jobd now.
    pub fn sample(&self) -> ProcSample {
        ProcSample::of(self.pid().as_raw())
    }
}

/// What /proc says about one process.
#[derive(Debug, Clone)]
pub struct ProcSample {
    pub fds: usize,
    pub rss_kib: u64,
    /// User plus system CPU time, in clock ticks (1/100 s).
    pub cpu_ticks: u64,
    /// Time spent runnable but waiting for a CPU, in nanoseconds (/proc/PID/schedstat).
    pub run_wait_ns: u64,
    pub children: Vec<i32>,
    /// Children that have ended and were not reaped.
    pub zombies: Vec<i32>,
}

impl ProcSample {
    pub fn of(pid: i32) -> ProcSample {
        let fds = fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0);
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kib = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let cpu_ticks = stat_fields(pid)
            .map(|f| f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0))
            .unwrap_or(0);
        let run_wait_ns = fs::read_to_string(format!("/proc/{pid}/schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        let children = children_of(pid);
        let zombies = children
            .iter()
            .copied()
            .filter(|&c| process_state(c) == Some('Z'))
            .collect();
        ProcSample {
            fds,
            rss_kib,
            cpu_ticks,
            run_wait_ns,
            children,
            zombies,
        }
    }
}

/// The fields of /proc/PID/stat after the command name: [0] is the state, [1] the
/// parent, [2] the process group, [11] utime, [12] stime.
pub fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// A process's state letter (R, S, D, Z, ...), or `None` when it is gone.
pub fn process_state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// Every process on the system.
pub fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The processes whose parent is `parent` (read from each /proc/PID/stat: this kernel
/// may lack /proc/PID/task/*/children).
pub fn children_of(parent: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| stat_fields(pid).and_then(|f| f.get(1)?.parse::<i32>().ok()) == Some(parent))
        .collect()
}

/// Live processes (zombies left out) whose environment holds `KEY=VALUE`: what jobd
/// and every descendant of it inherit from the environment a test started it with.
pub fn processes_with_env(key: &str, value: &str) -> Vec<i32> {
    let wanted = format!("{key}={value}");
    all_pids()
        .into_iter()
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == wanted.as_bytes()))
                && alive(pid)
        })
        .collect()
}

/// SIGKILL each process and its process group, never the test's own group.
pub fn kill_with_groups(pids: &[i32]) {
    let own = nix::unistd::getpgrp().as_raw();
    for &pid in pids {
        if let Some(pgid) = stat_fields(pid).and_then(|f| f.get(2)?.parse::<i32>().ok())
            && pgid > 1
            && pgid != own
        {
            let _ = kill(Pid::from_raw(-pgid), Signal::SIGKILL);
        }
        if pid > 1 && pid != std::process::id() as i32 {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// The `p`-th percentile (0..=100) of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A small deterministic random source (xorshift64*), seeded and printed by the tests
/// so that a failing run can be repeated.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `JOBD_TEST_SEED`, or else from the clock.
    pub fn from_env() -> Rng {
        let seed = std::env::var("JOBD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        Rng(seed.max(1))
    }

    pub fn seed(&self) -> u64 {
        self.0
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `low..high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low).max(1)
    }
}

/// The runs of `job` in `state_dir/history.jsonl`, as JSON; torn lines left out.
pub fn history_runs(state_dir: &Path, job: &str) -> Vec<serde_json::Value> {
    fs::read_to_string(state_dir.join("history.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|run| run["job"] == job)
        .collect()
}

/// Reap `child` (waiting for it when `block`) and return its exit code and the CPU
/// time it used, user and system, from wait4: a child's own cost, whatever else the
/// machine is doing. None while it runs.
pub fn reap_with_cpu(child: &std::process::Child, block: bool) -> Option<(Option<i32>, Duration)> {
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { 0 } else { nix::libc::WNOHANG };
    // SAFETY: wait4 writes only to the two pointers, both valid for the call.
    let reaped = unsafe { nix::libc::wait4(pid, &mut status, flags, &mut usage) };
    if reaped != pid {
        return None;
    }
    let time = |t: nix::libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let code = nix::libc::WIFEXITED(status).then(|| nix::libc::WEXITSTATUS(status));
    Some((code, time(usage.ru_utime) + time(usage.ru_stime)))
}
