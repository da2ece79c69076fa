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
        let child = Command::new(JOBD)
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
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon {
            child: Some(child),
            log: self.join("jobd.log"),
        }
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
