//! What the spool costs: how soon a file renamed into `new/` becomes a running process,
//! and how many one-off jobs per second jobd gets through with every hand-off durable,
//! each against a bare program doing only the unavoidable part of the work; and how late
//! a per-second job runs while a flood of files arrives, beside a quiet baseline.
//!
//! `cargo bench --bench spool`. Settings, from the environment:
//! - `SPOOL_FILES` (default 200): files timed for the pick-up latency, one at a time;
//! - `SPOOL_GAP_MS` (default 20): pause after each of those files, so that none queues
//!   behind the one before;
//! - `SPOOL_JOBS` (default 1000): `/bin/true` jobs for the throughput;
//! - `SPOOL_ROUNDS` (default 2): each pair (reference, then jobd) is run this many times,
//!   so that the machine's noise shows in the figures;
//! - `SPOOL_FLOOD_FILES` (default 20000): files renamed into `new/` at once for the
//!   flood (delayed by an hour: jobd takes in `spool.max_queued` of them, 10,000, and
//!   runs none);
//! - `SPOOL_FLOOD_SECONDS` (default 20): how long the quiet baseline, and the flood,
//!   are watched;
//! - `JOBD_BASELINE`: another jobd to run beside this one, every run (benches/common).
//!
//! Prints figures and asserts nothing: both depend on the machine, its disk and its load.
//! The spools live under the temporary folder (`TMPDIR`), so its filesystem decides what
//! an fsync costs; `TMPDIR=/dev/shm` (tmpfs, where fsync does nothing) shows jobd's cost
//! without the disk's.
//!
//! The latency's job process is this binary again: with `SPOOL_BENCH_CHILD` set it reads
//! CLOCK_REALTIME first thing, appends `<JOBD_SPOOL_NAME> <ns>` to the file that variable
//! names and exits. (Not `JOBD_…`: that prefix is jobd's own.) With `SPOOL_BENCH_WATCH`
//! set it is the latency's reference, the bare inotify-and-fork loop.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use chrono::DateTime;
use nix::libc;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use tempfile::TempDir;

mod common;
use common::{Build, Jobd};

/// Makes this binary the job's process; its value is the results file.
const CHILD_VAR: &str = "SPOOL_BENCH_CHILD";
/// Makes this binary the latency's reference; its value is the folder to watch.
const WATCH_VAR: &str = "SPOOL_BENCH_WATCH";
/// The reference's results file, handed on to its children as `CHILD_VAR`.
const WATCH_RESULTS_VAR: &str = "SPOOL_BENCH_WATCH_RESULTS";
/// How many files the reference waits for before it exits.
const WATCH_COUNT_VAR: &str = "SPOOL_BENCH_WATCH_COUNT";
const SECOND: i64 = 1_000_000_000;
/// Files run before the timed ones and left out of the figures: the first fork of a
/// fresh process and the first fsync of a fresh folder are not what is measured.
const WARM_UP: usize = 3;
const POLL: Duration = Duration::from_millis(10);
const REQUEST: &[u8] = b"{\"task\": \"probe\"}\n";
const NOOP_REQUEST: &[u8] = b"{\"task\": \"noop\"}\n";

fn main() {
    // Before anything else: everything from the rename to this read is the latency.
    let woke = common::realtime_ns();
    if let Some(results) = std::env::var_os(CHILD_VAR) {
        child(woke, &results);
    }
    if let Some(dir) = std::env::var_os(WATCH_VAR) {
        watch(Path::new(&dir));
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without
    // it and should not spend a minute here.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("spool: skipped; run it with `cargo bench --bench spool`");
        return;
    }
    bench();
}

/// The job's process. One `write` with O_APPEND, so that lines of children running at
/// once never interleave.
fn child(woke: i64, results: &OsStr) -> ! {
    // A baseline jobd from before issue 14 called it JOBD_SPOOL_FILE.
    let name = std::env::var("JOBD_SPOOL_NAME")
        .or_else(|_| std::env::var("JOBD_SPOOL_FILE"))
        .unwrap_or_else(|_| "?".to_string());
    let line = format!("{name} {woke}\n");
    common::append_and_exit(results, &line)
}

/// A program and its arguments and environment, turned into the C arrays `execve` takes
/// before any fork, so that the child does nothing between fork and exec but `execve`.
struct Exec {
    program: CString,
    _strings: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    /// Without the closing null: `spawn` may add one variable.
    envp: Vec<*const libc::c_char>,
}

impl Exec {
    fn new(program: &Path, args: &[&str], env: Vec<CString>) -> Exec {
        let program = CString::new(program.as_os_str().as_bytes()).expect("a path has no NUL");
        let mut strings = vec![program.clone()];
        strings.extend(args.iter().map(|a| CString::new(*a).expect("no NUL")));
        let argc = strings.len();
        strings.extend(env);
        // A CString's bytes live on the heap: these pointers stay valid when `strings`
        // moves into the struct.
        let mut argv: Vec<*const libc::c_char> =
            strings[..argc].iter().map(|s| s.as_ptr()).collect();
        argv.push(std::ptr::null());
        let envp = strings[argc..].iter().map(|s| s.as_ptr()).collect();
        Exec {
            program,
            _strings: strings,
            argv,
            envp,
        }
    }

    /// fork, then execve in the child; `extra` is one more `NAME=value`.
    fn spawn(&self, extra: Option<&CStr>) -> nix::Result<Pid> {
        let mut envp = Vec::with_capacity(self.envp.len() + 2);
        envp.extend_from_slice(&self.envp);
        envp.extend(extra.map(CStr::as_ptr));
        envp.push(std::ptr::null());
        // SAFETY: the child calls only execve and _exit, both async-signal-safe, on
        // arrays built before the fork; it touches no lock or allocator the parent's
        // other threads (there are none in the processes that call this) might hold.
        match unsafe { fork() }? {
            ForkResult::Child => {
                // SAFETY: every pointer is to a NUL-terminated string owned by `self`
                // or `extra`, alive until exec replaces this process; both arrays end
                // with a null pointer.
                unsafe {
                    libc::execve(self.program.as_ptr(), self.argv.as_ptr(), envp.as_ptr());
                    libc::_exit(127)
                }
            }
            ForkResult::Parent { child } => Ok(child),
        }
    }
}

/// This process's environment as `NAME=value` strings, without the bench's own
/// variables, plus `add`.
fn environment(add: &[(&str, &OsStr)]) -> Vec<CString> {
    std::env::vars_os()
        .filter(|(name, _)| !name.to_string_lossy().starts_with("SPOOL_BENCH_"))
        .chain(
            add.iter()
                .map(|(n, v)| (OsString::from(n), v.to_os_string())),
        )
        .filter_map(|(name, value)| {
            let mut bytes = name.into_vec();
            bytes.push(b'=');
            bytes.extend(value.into_vec());
            CString::new(bytes).ok()
        })
        .collect()
}

/// The latency's reference: what any spool watcher must do at the least. Wait on inotify
/// for files renamed into `dir`, fork and exec the job's process for each, reap without
/// blocking. No parsing, no renames, no fsync. Exits once it has started the count it
/// was given and reaped them all.
fn watch(dir: &Path) -> ! {
    let results = std::env::var_os(WATCH_RESULTS_VAR).expect("the results file is given");
    let count: usize = std::env::var(WATCH_COUNT_VAR)
        .ok()
        .and_then(|n| n.parse().ok())
        .expect("the count is given");
    let me = std::env::current_exe().expect("the bench knows its own path");
    let exec = Exec::new(&me, &[], environment(&[(CHILD_VAR, &results)]));
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC).expect("inotify_init");
    inotify
        .add_watch(dir, AddWatchFlags::IN_MOVED_TO)
        .expect("inotify_add_watch");
    // The bench submits nothing before this line.
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut live = 0usize;
    let mut started = 0usize;
    while started < count {
        let events = match inotify.read_events() {
            Ok(events) => events,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => panic!("reading inotify events: {e}"),
        };
        for event in events {
            let Some(name) = event.name else { continue };
            let mut var = b"JOBD_SPOOL_NAME=".to_vec();
            var.extend(name.as_bytes());
            let var = CString::new(var).expect("a file name has no NUL");
            match exec.spawn(Some(&var)) {
                Ok(_) => live += 1,
                Err(e) => eprintln!("reference: fork failed: {e}"),
            }
            started += 1;
        }
        while live > 0 {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => live -= 1,
            }
        }
    }
    while live > 0 && waitpid(None, None).is_ok() {
        live -= 1;
    }
    std::process::exit(0)
}

/// The reference watcher, which must not outlive the bench even when it panics: SIGTERM,
/// a few seconds to stop, then SIGKILL. (jobd itself runs as a `common::Jobd`.)
struct Guard {
    what: &'static str,
    child: Option<Child>,
}

impl Guard {
    fn new(what: &'static str, child: Child) -> Guard {
        Guard {
            what,
            child: Some(child),
        }
    }

    fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(_) => break,
            }
        }
        eprintln!("spool: {} did not stop on SIGTERM; killing it", self.what);
        let _ = child.kill();
        child.wait().ok()
    }

    /// For a process that ends by itself: wait for it, at most `limit`.
    fn finish(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self.child.as_mut()?.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status);
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(_) => break,
            }
        }
        self.stop()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Children forked by the throughput reference, reaped whatever happens.
#[derive(Default)]
struct Forked(HashSet<Pid>);

impl Drop for Forked {
    fn drop(&mut self) {
        for pid in self.0.drain() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// The machine's CPU time so far, busy and in all, from /proc/stat: how much else was
/// going on during a run (the bench's own processes count too).
#[derive(Clone, Copy)]
struct Cpu {
    busy: u64,
    total: u64,
}

impl Cpu {
    fn now() -> Cpu {
        let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|t| t.parse().ok())
            .collect();
        let total = ticks.iter().sum();
        // idle and iowait
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        Cpu {
            busy: total - idle,
            total,
        }
    }

    /// Percent of all CPUs busy since `self`.
    fn busy_since(self) -> f64 {
        let now = Cpu::now();
        let total = now.total.saturating_sub(self.total);
        if total == 0 {
            return f64::NAN;
        }
        100.0 * now.busy.saturating_sub(self.busy) as f64 / total as f64
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// `tmp/ new/ running/ done/ failed/ values/`, as jobd makes them.
fn make_spool(root: &Path) {
    for (dir, mode) in [
        ("", 0o750),
        ("tmp", 0o3770),
        ("new", 0o3770),
        ("running", 0o750),
        ("done", 0o750),
        ("failed", 0o750),
        ("values", 0o711),
    ] {
        let path = root.join(dir);
        fs::DirBuilder::new()
            .recursive(true)
            .create(&path)
            .expect("cannot create the spool folders");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .expect("cannot set the spool folders' modes");
    }
}

/// A JSON string is a valid YAML double-quoted scalar.
fn quoted(path: &Path) -> String {
    serde_json::to_string(path.to_str().expect("the temporary paths are UTF-8"))
        .expect("a string serializes")
}

fn jobfile(dir: &Path, command: &Path) -> PathBuf {
    let text = format!(
        "timezone: UTC\n\
         shutdown_grace: 2s\n\
         spool:\n  dir: spool\n  workers: 2\n  keep_done: 100000\n\
         tasks:\n  probe:\n    command: [{}]\n  noop:\n    command: [/bin/true]\n",
        quoted(command)
    );
    let path = dir.join("jobd.yaml");
    fs::write(&path, text).expect("cannot write the jobfile");
    path
}

fn start_jobd(build: &Build, dir: &Path, env: &[(&str, &OsStr)]) -> Jobd {
    let me = std::env::current_exe().expect("the bench knows its own path");
    let jobfile = jobfile(dir, &me);
    let mut jobd = Jobd::start(build, &jobfile, env);
    jobd.wait_started();
    jobd
}

/// Finished files in `dir`: results and hidden temporaries left out.
fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.as_bytes();
                !name.starts_with(b".") && !name.ends_with(b".result.json")
            })
            .count()
    })
}

fn count_lines(path: &Path) -> usize {
    fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// `p50 p90 p99 max` of a sample, nearest rank.
struct Percentiles {
    n: usize,
    p50: i64,
    p90: i64,
    p99: i64,
    max: i64,
}

impl Percentiles {
    fn of(mut sample: Vec<i64>) -> Option<Percentiles> {
        if sample.is_empty() {
            return None;
        }
        sample.sort_unstable();
        let rank =
            |q: f64| sample[((q * sample.len() as f64).ceil() as usize).clamp(1, sample.len()) - 1];
        Some(Percentiles {
            n: sample.len(),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: *sample.last().expect("not empty"),
        })
    }
}

fn us(ns: i64) -> f64 {
    ns as f64 / 1e3
}

/// One latency run: the delays in ns, and what went wrong.
struct LatencyRun {
    sample: Vec<i64>,
    /// Percent of the machine's CPU time busy during the run.
    busy: f64,
    missing: usize,
    failed: usize,
    notes: Vec<String>,
}

/// Drop files into `spool/new/` one at a time through `spool/tmp/`, noting the time
/// right before each rename; wait until `results` has a line for each; match them up.
/// The warm-up files come first and are not counted.
fn submit_paced(spool: &Path, count: usize, gap: Duration, results: &Path) -> LatencyRun {
    let cpu = Cpu::now();
    let mut sent: HashMap<String, i64> = HashMap::with_capacity(count);
    for i in 0..WARM_UP + count {
        let name = if i < WARM_UP {
            format!("warm-{i}.json")
        } else {
            format!("lat-{:05}.json", i - WARM_UP)
        };
        let staged = spool.join("tmp").join(&name);
        fs::write(&staged, REQUEST).expect("cannot write a spool file");
        let at = common::realtime_ns();
        fs::rename(&staged, spool.join("new").join(&name)).expect("cannot rename into new/");
        if i >= WARM_UP {
            sent.insert(name, at);
        }
        thread::sleep(gap);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_lines(results) < WARM_UP + count && Instant::now() < deadline {
        thread::sleep(POLL);
    }
    let busy = cpu.busy_since();
    let mut sample = Vec::with_capacity(count);
    let mut seen = HashSet::new();
    let mut notes = Vec::new();
    let file = fs::File::open(results).ok();
    for line in file
        .into_iter()
        .flat_map(|f| BufReader::new(f).lines().map_while(Result::ok))
    {
        let Some((name, ns)) = line.split_once(' ') else {
            continue;
        };
        let (Some(at), Ok(ns)) = (sent.get(name), ns.parse::<i64>()) else {
            continue;
        };
        if seen.insert(name.to_string()) {
            sample.push(ns - at);
        } else {
            notes.push(format!("{name} ran more than once"));
        }
    }
    LatencyRun {
        missing: count - sample.len(),
        sample,
        busy,
        failed: 0,
        notes,
    }
}

fn latency_reference(count: usize, gap: Duration) -> LatencyRun {
    let dir = TempDir::with_prefix("jobd-spool-ref-").expect("cannot create a temporary dir");
    let spool = dir.path().join("spool");
    make_spool(&spool);
    let results = dir.path().join("results.txt");
    let me = std::env::current_exe().expect("the bench knows its own path");
    let child = Command::new(me)
        .env(WATCH_VAR, spool.join("new"))
        .env(WATCH_RESULTS_VAR, &results)
        .env(WATCH_COUNT_VAR, (WARM_UP + count).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start the reference");
    let mut reference = Guard::new("the reference watcher", child);
    let stdout = reference
        .child
        .as_mut()
        .and_then(|c| c.stdout.take())
        .expect("stdout is piped");
    let mut ready = String::new();
    BufReader::new(stdout)
        .read_line(&mut ready)
        .expect("reading the reference's output");
    assert_eq!(ready.trim(), "ready", "the reference did not start");
    let mut run = submit_paced(&spool, count, gap, &results);
    match reference.finish(Duration::from_secs(10)) {
        Some(status) if status.success() => {}
        other => run
            .notes
            .push(format!("the reference ended with {other:?}")),
    }
    run
}

fn latency_jobd(build: &Build, count: usize, gap: Duration) -> LatencyRun {
    let dir = TempDir::with_prefix("jobd-spool-").expect("cannot create a temporary dir");
    let results = dir.path().join("results.txt");
    let spool = dir.path().join("spool");
    let mut jobd = start_jobd(build, dir.path(), &[(CHILD_VAR, results.as_os_str())]);
    let mut run = submit_paced(&spool, count, gap, &results);
    // The last file's result is written after its process ran: wait for it too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_files(&spool.join("done")) + count_files(&spool.join("failed")) < WARM_UP + count
        && Instant::now() < deadline
    {
        thread::sleep(POLL);
    }
    run.failed = count_files(&spool.join("failed"));
    match jobd.stop() {
        Some(status) if status.success() => {}
        other => run.notes.push(format!("jobd ended with {other:?}")),
    }
    if run.missing > 0 || run.failed > 0 {
        run.notes.push(format!(
            "jobd's last log lines (newest first):\n  {}",
            jobd.tail(10)
        ));
    }
    run
}

/// One throughput run.
struct ThroughputRun {
    jobs: usize,
    /// Jobs that ran and succeeded.
    done: usize,
    failed: usize,
    /// From the start (jobd's spawn, or the first fork) until the last was seen done.
    wall: Duration,
    /// jobd: from spawning it to the first run's start, and the first start to the last
    /// end, from the result files.
    to_first: Option<Duration>,
    span: Option<Duration>,
    busy: f64,
    notes: Vec<String>,
}

impl ThroughputRun {
    fn rate(&self) -> f64 {
        self.done as f64 / self.wall.as_secs_f64()
    }
}

/// Two workers fork, exec and wait `/bin/true` until `jobs` have run: one loop keeping two
/// children alive, as jobd's does.
fn throughput_reference(jobs: usize) -> ThroughputRun {
    let exec = Exec::new(Path::new("/bin/true"), &[], environment(&[]));
    let mut live = Forked::default();
    let mut started = 0;
    let mut done = 0;
    let mut failed = 0;
    let mut notes = Vec::new();
    let cpu = Cpu::now();
    let begun = Instant::now();
    loop {
        while live.0.len() < 2 && started < jobs {
            match exec.spawn(None) {
                Ok(pid) => {
                    live.0.insert(pid);
                }
                Err(e) => {
                    notes.push(format!("fork failed: {e}"));
                    failed += 1;
                }
            }
            started += 1;
        }
        if live.0.is_empty() {
            break;
        }
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if live.0.remove(&pid) => {
                if code == 0 {
                    done += 1
                } else {
                    failed += 1
                }
            }
            Ok(status) => {
                if status.pid().is_some_and(|pid| live.0.remove(&pid)) {
                    failed += 1;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                notes.push(format!("waitpid failed: {e}"));
                break;
            }
        }
    }
    let wall = begun.elapsed();
    ThroughputRun {
        jobs,
        done,
        failed,
        wall,
        to_first: None,
        span: None,
        busy: cpu.busy_since(),
        notes,
    }
}

fn throughput_jobd(build: &Build, jobs: usize) -> ThroughputRun {
    let dir = TempDir::with_prefix("jobd-spool-").expect("cannot create a temporary dir");
    let spool = dir.path().join("spool");
    make_spool(&spool);
    for i in 0..jobs {
        let name = format!("job-{i:05}.json");
        let staged = spool.join("tmp").join(&name);
        fs::write(&staged, NOOP_REQUEST).expect("cannot write a spool file");
        fs::rename(&staged, spool.join("new").join(&name)).expect("cannot rename into new/");
    }
    // The writer's own dirty blocks would otherwise go out with jobd's first fsync.
    nix::unistd::sync();
    let done_dir = spool.join("done");
    let failed_dir = spool.join("failed");
    let mut notes = Vec::new();
    let cpu = Cpu::now();
    let spawned_at = common::realtime_ns();
    let begun = Instant::now();
    let mut jobd = start_jobd(build, dir.path(), &[]);
    let deadline = begun + Duration::from_secs(60).max(Duration::from_millis(100) * jobs as u32);
    let mut done = count_files(&done_dir);
    while done < jobs {
        if Instant::now() > deadline {
            notes.push(format!("gave up waiting after {:?}", begun.elapsed()));
            break;
        }
        if !jobd.alive() {
            notes.push("jobd exited before the end".to_string());
            break;
        }
        thread::sleep(POLL);
        done = count_files(&done_dir);
    }
    let wall = begun.elapsed();
    let busy = cpu.busy_since();
    let failed = count_files(&failed_dir);
    match jobd.stop() {
        Some(status) if status.success() => {}
        other => notes.push(format!("jobd ended with {other:?}")),
    }
    // The runs' own times, from the results jobd wrote.
    let mut first_start: Option<i64> = None;
    let mut last_end: Option<i64> = None;
    for entry in fs::read_dir(&done_dir).into_iter().flatten().flatten() {
        if !entry.file_name().as_bytes().ends_with(b".result.json") {
            continue;
        }
        let Some(result) = fs::read(entry.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        else {
            continue;
        };
        let time = |field: &str| {
            result["attempts"][0][field]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .and_then(|t| t.timestamp_nanos_opt())
        };
        if let Some(start) = time("started_at") {
            first_start = Some(first_start.map_or(start, |f| f.min(start)));
        }
        if let Some(end) = time("ended_at") {
            last_end = Some(last_end.map_or(end, |l| l.max(end)));
        }
    }
    let nanos = |ns: i64| Duration::from_nanos(ns.max(0) as u64);
    if done < jobs || failed > 0 {
        notes.push(format!(
            "jobd's last log lines (newest first):\n  {}",
            jobd.tail(10)
        ));
    }
    ThroughputRun {
        jobs,
        done,
        failed,
        wall,
        to_first: first_start.map(|f| nanos(f - spawned_at)),
        span: first_start.zip(last_end).map(|(f, l)| nanos(l - f)),
        busy,
        notes,
    }
}

/// The type and options of the filesystem holding `path`, from /proc/mounts: what an
/// fsync costs depends on it.
fn filesystem(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_, point, kind, options, ..] = fields[..] else {
                return None;
            };
            path.starts_with(point)
                .then(|| (point.len(), format!("{kind} ({options})")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "an unknown filesystem".to_string(), |(_, what)| what)
}

fn print_latency(round: usize, who: &str, run: &LatencyRun) -> Option<Percentiles> {
    let p = Percentiles::of(run.sample.clone());
    match &p {
        Some(p) => println!(
            "  {round:>5}  {who:<9}  {:>5}  {:>8.1}  {:>8.1}  {:>8.1}  {:>8.1}  {:>7}  {:>6}  {:>6.0}",
            p.n,
            us(p.p50),
            us(p.p90),
            us(p.p99),
            us(p.max),
            run.missing,
            if who == "jobd" {
                run.failed.to_string()
            } else {
                "-".to_string()
            },
            run.busy,
        ),
        None => println!("  {round:>5}  {who:<9}  no sample"),
    }
    for note in &run.notes {
        println!("         {who}: {note}");
    }
    p
}

fn print_throughput(round: usize, who: &str, run: &ThroughputRun) {
    let secs =
        |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.3}", d.as_secs_f64()));
    println!(
        "  {round:>5}  {who:<9}  {:>5}/{:<5}  {:>6}  {:>8.3}  {:>8.0}  {:>10}  {:>10}  {:>6.0}",
        run.done,
        run.jobs,
        run.failed,
        run.wall.as_secs_f64(),
        run.rate(),
        secs(run.to_first),
        secs(run.span),
        run.busy,
    );
    for note in &run.notes {
        println!("         {who}: {note}");
    }
}

fn bench() {
    let files = env_usize("SPOOL_FILES", 200).max(1);
    let gap = Duration::from_millis(env_usize("SPOOL_GAP_MS", 20) as u64);
    let jobs = env_usize("SPOOL_JOBS", 1000).max(1);
    let rounds = env_usize("SPOOL_ROUNDS", 2).max(1);
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let temp = std::env::temp_dir();
    let builds = common::builds();
    println!(
        "spool bench: {cpus} CPUs, load average {}, temporary files (and the spools) in {} \
         on {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        temp.display(),
        filesystem(&temp)
    );
    common::print_builds(&builds);
    println!(
        "busy % = share of all CPUs' time not idle during the run, the bench's own processes \
         included: the machine's noise"
    );

    println!();
    println!(
        "pick-up latency: the writer's rename into new/ -> the job's process reads the clock \
         (CLOCK_REALTIME), in µs;\n{files} files one at a time, {} ms apart, after {WARM_UP} \
         untimed warm-up files",
        gap.as_millis()
    );
    println!(
        "  round  who            n       p50       p90       p99       max  missing  failed  busy %"
    );
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let reference = latency_reference(files, gap);
        let reference = print_latency(round, "reference", &reference);
        for build in &builds {
            let jobd = latency_jobd(build, files, gap);
            let jobd = print_latency(round, build.name, &jobd);
            if let (Some(r), Some(j)) = (&reference, jobd) {
                ratios.push((round, build.name, j.p50 as f64 / r.p50 as f64, j.p99));
            }
        }
    }
    for (round, name, ratio, p99) in &ratios {
        println!(
            "  round {round}: {name} p50 / reference p50 = {ratio:.2} (target <= 1.2); \
             {name} p99 = {:.2} ms (target <= 3 ms)",
            us(*p99) / 1e3
        );
    }

    println!();
    println!(
        "throughput: {jobs} one-off jobs running /bin/true, 2 at a time. jobd: all files \
         written into new/ (and sync(2)) before it starts;\nwall = spawning jobd until done/ \
         holds them all (polled every {} ms), nothing subtracted; to-first = spawn to the first \
         run's start,\nspan = first run's start to the last run's end (both from the result \
         files). reference: fork+execve+waitpid, no files",
        POLL.as_millis()
    );
    println!(
        "  round  who             done  failed    wall s    jobs/s  to-first s      span s  busy %"
    );
    let mut rates = Vec::new();
    for round in 1..=rounds {
        let reference = throughput_reference(jobs);
        print_throughput(round, "reference", &reference);
        for build in &builds {
            let jobd = throughput_jobd(build, jobs);
            print_throughput(round, build.name, &jobd);
            let span_rate = jobd.span.map(|s| jobd.done as f64 / s.as_secs_f64());
            rates.push((round, build.name, jobd.rate(), reference.rate(), span_rate));
        }
    }
    for (round, name, jobd, reference, span_rate) in &rates {
        println!(
            "  round {round}: {name} {jobd:.0} jobs/s (target >= 1000), {:.0} over its span; \
             reference {reference:.0} jobs/s; {name} / reference = {:.2}",
            span_rate.unwrap_or(f64::NAN),
            jobd / reference
        );
    }

    let flood_files = env_usize("SPOOL_FLOOD_FILES", 20_000);
    let flood_seconds = env_usize("SPOOL_FLOOD_SECONDS", 20).max(3) as u64;
    println!();
    println!(
        "flood: lateness of a per-second job (its run's start minus its instant, from the \
         history, in ms),\n{flood_seconds} s quiet, then {flood_seconds} s from the moment \
         {flood_files} files (delayed by an hour) are renamed into new/ at once, in the same \
         jobd; intake = until `jobctl status` shows them all held"
    );
    println!(
        "  round  jobd and phase      n     p50     p99     max  missed  intake s  held   busy %"
    );
    for round in 1..=rounds {
        for build in &builds {
            flood(
                build,
                round,
                flood_files,
                Duration::from_secs(flood_seconds),
            );
        }
    }
}

/// The flood's jobfile: a per-second job, and the task the files ask for.
const FLOOD_JOBFILE: &str = "timezone: UTC\nshutdown_grace: 2s\nstate_dir: state\n\
    spool:\n  dir: spool\njobs:\n  tick:\n    every: 1s\n    command: [/bin/true]\n\
    tasks:\n  later:\n    command: [/bin/true]\n";
const FLOOD_REQUEST: &[u8] = b"{\"task\": \"later\", \"delay\": \"1h\"}\n";

/// The per-second job's runs whose instant is in `from..to` (ns since the epoch):
/// their lateness in ms, and how many instants of the range have no run.
fn tick_lateness(state: &Path, from: i64, to: i64) -> (Vec<i64>, i64) {
    let text = fs::read_to_string(state.join("history.jsonl")).unwrap_or_default();
    let ns = |run: &serde_json::Value, key: &str| {
        run[key]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .and_then(|t| t.timestamp_nanos_opt())
    };
    let mut late = Vec::new();
    let mut instants = HashSet::new();
    for run in text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|run| run["job"] == "tick")
    {
        let (Some(due), Some(started)) = (ns(&run, "scheduled_at"), ns(&run, "started_at")) else {
            continue;
        };
        if due >= from && due < to {
            late.push((started - due) / 1_000);
            instants.insert(due / SECOND);
        }
    }
    let expected = (to / SECOND) - (from + SECOND - 1) / SECOND;
    (late, (expected - instants.len() as i64).max(0))
}

/// How many files jobd holds, by `jobctl status --json`.
fn held(build: &Build, jobfile: &Path) -> Option<u64> {
    let out = Command::new(&build.jobctl)
        .arg("-c")
        .arg(jobfile)
        .args(["status", "--json"])
        .output()
        .ok()?;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let spool = &status["spool"];
    Some(spool["queued"].as_u64()? + spool["delayed"].as_u64()?)
}

fn flood(build: &Build, round: usize, files: usize, watch: Duration) {
    let dir = TempDir::with_prefix("jobd-flood-").expect("cannot create a temporary dir");
    let jobfile = dir.path().join("jobd.yaml");
    fs::write(&jobfile, FLOOD_JOBFILE).expect("cannot write the jobfile");
    let mut jobd = Jobd::start(build, &jobfile, &[]);
    jobd.wait_started();
    let spool = dir.path().join("spool");
    let state = dir.path().join("state");
    // Written beforehand: the flood is the renames alone.
    for i in 0..files {
        fs::write(
            spool.join("tmp").join(format!("f{i:06}.json")),
            FLOOD_REQUEST,
        )
        .expect("cannot write a spool file");
    }
    let quiet_from = common::realtime_ns();
    let cpu = Cpu::now();
    thread::sleep(watch);
    let quiet_busy = cpu.busy_since();
    let flood_from = common::realtime_ns();
    let cpu = Cpu::now();
    let begun = Instant::now();
    for i in 0..files {
        let name = format!("f{i:06}.json");
        fs::rename(spool.join("tmp").join(&name), spool.join("new").join(&name))
            .expect("cannot rename into new/");
    }
    let expected = files.min(10_000) as u64;
    let mut intake = None;
    while begun.elapsed() < watch.max(Duration::from_secs(120)) {
        if intake.is_none() && held(build, &jobfile) == Some(expected) {
            intake = Some(begun.elapsed());
        }
        if intake.is_some() && begun.elapsed() >= watch {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let flood_busy = cpu.busy_since();
    let flood_to = common::realtime_ns();
    let now_held = held(build, &jobfile);
    if jobd.stop().is_none_or(|status| !status.success()) {
        println!("         jobd did not stop cleanly");
    }
    let rows = [
        (
            "quiet",
            tick_lateness(&state, quiet_from, flood_from),
            quiet_busy,
            None,
        ),
        (
            "flood",
            tick_lateness(&state, flood_from, flood_to),
            flood_busy,
            Some((intake, now_held)),
        ),
    ];
    for (phase, (late, missed), busy, flood) in rows {
        let Some(p) = Percentiles::of(late) else {
            println!(
                "  {round:>5}  {:<15}  no run",
                format!("{} {phase}", build.name)
            );
            continue;
        };
        let (intake, held) = match flood {
            Some((intake, held)) => (
                intake.map_or("never".to_string(), |d| format!("{:.2}", d.as_secs_f64())),
                held.map_or("-".to_string(), |n| n.to_string()),
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        println!(
            "  {round:>5}  {:<15}  {:>5}  {:>6.1}  {:>6.1}  {:>6.1}  {missed:>6}  {intake:>8}  {held:>5}  {busy:>6.0}",
            format!("{} {phase}", build.name),
            p.n,
            p.p50 as f64 / 1e3,
            p.p99 as f64 / 1e3,
            p.max as f64 / 1e3,
        );
    }
}
