//! How late jobd starts a job's process, against the bare minimum (clock_nanosleep to the
//! instant, then fork and execve), and what an idle jobd with 1,000 jobs costs.
//!
//! `cargo bench --bench lateness`. `LATENESS_SECS` (default 30) is the length of each
//! lateness run, `LATENESS_ROUNDS` (default 1) repeats the runs. `JOBD_BASELINE` names
//! another jobd to run beside this one (benches/common). Prints figures and asserts
//! nothing: lateness depends on the machine and its load.
//!
//! The job's process is this binary again: with `LATENESS_BENCH_CHILD` set it reads the
//! clock, appends `<scheduled_at_ns> <lateness_ns>` to the file that variable names and
//! exits. (The variable is not called `JOBD_…` because jobd refuses those in `env:`.)

use std::collections::HashSet;
use std::ffi::{CString, OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{Signal, kill};
use nix::sys::time::TimeSpec;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::time::{ClockId, ClockNanosleepFlags, clock_nanosleep};
use nix::unistd::Pid;
use tempfile::TempDir;

mod common;
use common::{Build, Jobd};

/// Makes this binary the job's process; its value is the results file.
const CHILD_VAR: &str = "LATENESS_BENCH_CHILD";
const SECOND: i64 = 1_000_000_000;
/// At least this long between jobd's "started" line (or the reference's set-up) and the
/// first instant counted, so that start-up never decides whether that instant is missed.
const LEAD_IN: i64 = SECOND / 2;
/// Time after the last instant counted before jobd is stopped: its last child must have
/// written its line.
const TAIL: Duration = Duration::from_millis(500);
const IDLE_JOBS: usize = 1000;
const IDLE_SETTLE: Duration = Duration::from_secs(2);
const IDLE_WINDOW: Duration = Duration::from_secs(10);

fn main() {
    // Before anything else: everything from here to the write is not lateness.
    let woke = common::realtime_ns();
    if let Some(results) = std::env::var_os(CHILD_VAR) {
        child(woke, &results);
    }
    bench();
}

/// The job's process. One `write` with O_APPEND, so that lines from overlapping children
/// never interleave.
fn child(woke: i64, results: &OsStr) -> ! {
    let line = match std::env::var("JOBD_SCHEDULED_AT")
        .ok()
        .and_then(|at| parse_instant(&at))
    {
        Some(due) => format!("{due} {}\n", woke - due),
        None => "unparsable\n".to_string(),
    };
    common::append_and_exit(results, &line)
}

fn parse_instant(rfc3339: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(rfc3339)
        .ok()?
        .timestamp_nanos_opt()
}

/// The same text jobd puts in `JOBD_SCHEDULED_AT`, so that the child parses the same thing.
fn format_instant(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[derive(Debug, Clone, Copy)]
enum Cadence {
    PerSecond,
    Every100ms,
}

impl Cadence {
    fn label(self) -> &'static str {
        match self {
            Cadence::PerSecond => "1s",
            Cadence::Every100ms => "100ms",
        }
    }

    fn period_ns(self) -> i64 {
        match self {
            Cadence::PerSecond => SECOND,
            Cadence::Every100ms => SECOND / 10,
        }
    }

    /// The jobfile line that gives this cadence.
    fn yaml(self) -> &'static str {
        match self {
            Cadence::PerSecond => "schedule: \"* * * * * *\"",
            Cadence::Every100ms => "every: 100ms",
        }
    }
}

/// The instants one run counts: `count` of them from `start`, `period` apart. Both
/// cadences are aligned to the epoch, and `start` is a whole second, so these are exactly
/// the instants jobd fires in the window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    period: i64,
    count: i64,
}

impl Window {
    fn next(cadence: Cadence, secs: u64) -> Window {
        let earliest = common::realtime_ns() + LEAD_IN;
        let period = cadence.period_ns();
        Window {
            start: earliest.div_euclid(SECOND) * SECOND + SECOND,
            period,
            count: i64::try_from(secs).expect("LATENESS_SECS is clamped") * SECOND / period,
        }
    }

    fn end(&self) -> i64 {
        self.start + self.count * self.period
    }

    fn instant(&self, k: i64) -> i64 {
        self.start + k * self.period
    }

    fn holds(&self, due: i64) -> bool {
        (self.start..self.end()).contains(&due) && (due - self.start) % self.period == 0
    }
}

/// Sleep on CLOCK_REALTIME until the absolute instant `ns`, as a wall-clock scheduler must.
fn sleep_until(ns: i64) {
    let at = TimeSpec::new(ns.div_euclid(SECOND), ns.rem_euclid(SECOND));
    while let Err(Errno::EINTR) = clock_nanosleep(
        ClockId::CLOCK_REALTIME,
        ClockNanosleepFlags::TIMER_ABSTIME,
        &at,
    ) {}
}

/// What the children of one or more runs wrote.
#[derive(Debug, Default)]
struct Tally {
    lateness_ns: Vec<i64>,
    expected: u64,
    /// Distinct instants of the windows that a child reported.
    seen: u64,
    /// Lines in a window beyond one per instant, or off its grid.
    extra: u64,
    unparsable: u64,
}

impl Tally {
    fn collect(results: &Path, window: Window) -> Tally {
        let text = fs::read_to_string(results).unwrap_or_default();
        let mut tally = Tally {
            expected: u64::try_from(window.count).unwrap_or(0),
            ..Tally::default()
        };
        let mut seen = HashSet::new();
        for line in text.lines() {
            let mut fields = line.split(' ').map(str::parse::<i64>);
            let (Some(Ok(due)), Some(Ok(lateness))) = (fields.next(), fields.next()) else {
                tally.unparsable += 1;
                continue;
            };
            if !(window.start..window.end()).contains(&due) {
                continue;
            }
            tally.lateness_ns.push(lateness);
            if window.holds(due) && seen.insert(due) {
                tally.seen += 1;
            } else {
                tally.extra += 1;
            }
        }
        tally
    }

    fn add(&mut self, other: Tally) {
        self.lateness_ns.extend(other.lateness_ns);
        self.expected += other.expected;
        self.seen += other.seen;
        self.extra += other.extra;
        self.unparsable += other.unparsable;
    }

    fn missing(&self) -> u64 {
        self.expected.saturating_sub(self.seen)
    }

    fn percentile_us(&self, q: f64) -> Option<f64> {
        percentile_us(&self.lateness_ns, q)
    }
}

/// Nearest-rank percentile of nanoseconds, in µs.
fn percentile_us(ns: &[i64], q: f64) -> Option<f64> {
    let mut sorted = ns.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    Some(sorted[rank - 1] as f64 / 1000.0)
}

/// Children of the reference loop not yet reaped. Dropping kills and reaps what is left,
/// so that a panic leaves no process behind.
#[derive(Default)]
struct Children(Vec<Pid>);

impl Children {
    /// Reap whatever has ended, never blocking: the next instant must not wait on a child.
    fn reap(&mut self) {
        self.0.retain(|&pid| {
            matches!(
                waitpid(pid, Some(WaitPidFlag::WNOHANG)),
                Ok(WaitStatus::StillAlive) | Err(Errno::EINTR)
            )
        });
    }

    fn wait_all(&mut self, timeout: Duration) {
        let until = Instant::now() + timeout;
        self.reap();
        while !self.0.is_empty() && Instant::now() < until {
            thread::sleep(Duration::from_millis(1));
            self.reap();
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

fn cstring(bytes: Vec<u8>) -> CString {
    CString::new(bytes).expect("no NUL in paths and environment")
}

/// The bare reference: what any wall-clock scheduler has to do at the least. Everything
/// the child needs is built before sleeping, so that only fork and execve follow the
/// wake-up; the child's environment is the bench's, as a job's is jobd's. `wakes` gets
/// how late clock_nanosleep returned, to tell the timer's share of the lateness from the
/// spawn's.
fn reference(me: &Path, results: &Path, job: &str, window: Window, wakes: &mut Vec<i64>) -> Tally {
    let program = cstring(me.as_os_str().as_bytes().to_vec());
    let argv = [program.as_ptr(), std::ptr::null()];
    let mut base: Vec<CString> = std::env::vars_os()
        .filter(|(key, _)| key != CHILD_VAR && !key.as_bytes().starts_with(b"JOBD_"))
        .map(|(key, value)| {
            let mut entry = key.into_vec();
            entry.push(b'=');
            entry.extend(value.into_vec());
            cstring(entry)
        })
        .collect();
    let mut child_var = OsString::from(format!("{CHILD_VAR}="));
    child_var.push(results);
    base.push(cstring(child_var.into_vec()));
    base.push(cstring(format!("JOBD_JOB={job}").into_bytes()));

    let mut children = Children::default();
    for k in 0..window.count {
        let due = window.instant(k);
        let scheduled = cstring(format!("JOBD_SCHEDULED_AT={}", format_instant(due)).into_bytes());
        let envp: Vec<*const libc::c_char> = base
            .iter()
            .chain([&scheduled])
            .map(|entry| entry.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        sleep_until(due);
        // A vDSO read of tens of nanoseconds: small against the spawn it delays.
        wakes.push(common::realtime_ns() - due);
        // SAFETY: the child calls only execve and _exit, both async-signal-safe, so it
        // never touches a lock another thread of the bench might have held at the fork.
        // `argv` and `envp` are NUL-terminated arrays of pointers to NUL-terminated
        // strings that outlive the call.
        let pid = unsafe { libc::fork() };
        match pid {
            0 => {
                // SAFETY: see above; _exit skips the parent's atexit handlers and buffers.
                unsafe {
                    libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
                    libc::_exit(127);
                }
            }
            // A failed fork shows as a missing instant.
            -1 => {}
            pid => children.0.push(Pid::from_raw(pid)),
        }
        children.reap();
    }
    children.wait_all(Duration::from_secs(5));
    Tally::collect(results, window)
}

fn yaml_string(text: &OsStr) -> String {
    // A JSON string is a YAML double-quoted scalar.
    serde_json::to_string(&text.to_string_lossy()).expect("a string serializes")
}

fn write_jobfile(path: &Path, jobs: &str) {
    let text = format!("timezone: UTC\nshutdown_grace: 1s\njobs:\n{jobs}");
    fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn jobd_run(
    build: &Build,
    dir: &Path,
    me: &Path,
    results: &Path,
    job: &str,
    cadence: Cadence,
    secs: u64,
) -> Tally {
    let jobfile = dir.join(format!("{job}.yaml"));
    write_jobfile(
        &jobfile,
        &format!(
            "  {job}:\n    {}\n    command: [{}]\n    env: {{{CHILD_VAR}: {}}}\n",
            cadence.yaml(),
            yaml_string(me.as_os_str()),
            yaml_string(results.as_os_str()),
        ),
    );
    let mut daemon = Jobd::start(build, &jobfile, &[]);
    daemon.wait_started();
    let window = Window::next(cadence, secs);
    sleep_until(window.end());
    thread::sleep(TAIL);
    let status = daemon.stop();
    if !status.is_some_and(|s| s.success()) {
        eprintln!("  jobd exited with {status:?}");
    }
    let complaints = daemon.complaints();
    if !complaints.is_empty() {
        eprintln!(
            "  jobd logged {} warning(s)/error(s), e.g.:",
            complaints.len()
        );
        for line in complaints.iter().take(5) {
            eprintln!("    {line}");
        }
    }
    Tally::collect(results, window)
}

/// Counters of one process, from /proc.
#[derive(Debug, Default, Clone, Copy)]
struct ProcSample {
    rss_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    hwm_kib: u64,
    threads: u64,
    voluntary: u64,
    involuntary: u64,
}

fn status_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The context switch counts in /proc/PID/status are the main thread's: every thread's
/// are summed here, should jobd ever have more than one.
fn proc_sample(pid: Pid) -> ProcSample {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mut sample = ProcSample {
        rss_kib: status_field(&status, "VmRSS"),
        anon_kib: status_field(&status, "RssAnon"),
        file_kib: status_field(&status, "RssFile"),
        hwm_kib: status_field(&status, "VmHWM"),
        threads: status_field(&status, "Threads"),
        ..ProcSample::default()
    };
    let tasks = fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for task in tasks.flatten() {
        let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
        sample.voluntary += status_field(&status, "voluntary_ctxt_switches");
        sample.involuntary += status_field(&status, "nonvoluntary_ctxt_switches");
    }
    sample
}

struct Idle {
    startup: Duration,
    before: ProcSample,
    after: ProcSample,
}

/// 1,000 jobs, all on day 1 of the month six months away: nothing is due for months, so
/// an idle jobd has no reason to wake. Seconds, minutes and hours differ between jobs so
/// that the plan is not one repeated instant.
fn idle(build: &Build, dir: &Path, me: &Path) -> Idle {
    let month = (Utc::now().month0() + 6) % 12 + 1;
    let command = yaml_string(me.as_os_str());
    let mut jobs = String::new();
    for i in 0..IDLE_JOBS {
        let (second, minute, hour) = (i % 60, (i / 60) % 60, i % 24);
        let _ = write!(
            jobs,
            "  job{i:04}:\n    schedule: \"{second} {minute} {hour} 1 {month} *\"\n    command: [{command}]\n"
        );
    }
    let jobfile = dir.join("idle.yaml");
    write_jobfile(&jobfile, &jobs);
    let mut daemon = Jobd::start(build, &jobfile, &[]);
    let startup = daemon.wait_started();
    thread::sleep(IDLE_SETTLE.saturating_sub(daemon.spawned().elapsed()));
    let before = proc_sample(daemon.pid());
    thread::sleep(IDLE_WINDOW);
    let after = proc_sample(daemon.pid());
    daemon.stop();
    Idle {
        startup,
        before,
        after,
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
        Err(_) => default,
    }
}

fn us(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"))
}

fn ratio(jobd: Option<f64>, reference: Option<f64>) -> String {
    match (jobd, reference) {
        (Some(j), Some(r)) if r > 0.0 => format!("{:.2}", j / r),
        _ => "n/a".to_string(),
    }
}

fn row(name: &str, tally: &Tally) -> String {
    format!(
        "{name:<16}{:>6} {:>9} {:>9} {:>9} {:>9} {:>8}",
        tally.lateness_ns.len(),
        us(tally.percentile_us(0.50)),
        us(tally.percentile_us(0.90)),
        us(tally.percentile_us(0.99)),
        us(tally.percentile_us(1.0)),
        tally.missing(),
    )
}

fn bench() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not, and should not
    // spend minutes here.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("lateness: skipped; run it with `cargo bench --bench lateness`");
        return;
    }
    // A day at most keeps the instants' arithmetic in nanoseconds far from overflow.
    let secs = env_u64("LATENESS_SECS", 30).clamp(1, 86_400);
    let rounds = env_u64("LATENESS_ROUNDS", 1).max(1);
    let builds = common::builds();
    let me: PathBuf = std::env::current_exe().expect("the bench knows its own path");
    let dir = TempDir::with_prefix("jobd-lateness-").expect("cannot create a temporary dir");
    // jobd does the same: the default 50 µs of slack would be added to every wake-up.
    let _ = nix::sys::prctl::set_timerslack(1);
    let load_before = common::load_average();

    let cadences = [Cadence::PerSecond, Cadence::Every100ms];
    let mut reference_tallies: Vec<Tally> = cadences.iter().map(|_| Tally::default()).collect();
    // By build, then cadence.
    let mut jobd_tallies: Vec<Vec<Tally>> = builds
        .iter()
        .map(|_| cadences.iter().map(|_| Tally::default()).collect())
        .collect();
    let mut wakes: Vec<Vec<i64>> = cadences.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (c, &cadence) in cadences.iter().enumerate() {
            let label = cadence.label();
            eprintln!("round {round}/{rounds}: reference {label}, {secs} s");
            let results = dir.path().join(format!("reference-{label}-{round}.txt"));
            let window = Window::next(cadence, secs);
            reference_tallies[c].add(reference(
                &me,
                &results,
                &format!("ref_{label}"),
                window,
                &mut wakes[c],
            ));

            for (b, build) in builds.iter().enumerate() {
                eprintln!(
                    "round {round}/{rounds}: {} jobd {label}, {secs} s",
                    build.name
                );
                let results = dir
                    .path()
                    .join(format!("{}-{label}-{round}.txt", build.name));
                let job = format!("jobd_{label}");
                jobd_tallies[b][c].add(jobd_run(
                    build,
                    dir.path(),
                    &me,
                    &results,
                    &job,
                    cadence,
                    secs,
                ));
            }
        }
    }
    let idles: Vec<Idle> = builds
        .iter()
        .map(|build| {
            eprintln!(
                "idle: {} jobd, {IDLE_JOBS} jobs, {} s",
                build.name,
                IDLE_WINDOW.as_secs()
            );
            idle(build, dir.path(), &me)
        })
        .collect();

    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    common::print_builds(&builds);
    println!(
        "load average {load_before} before, {} after",
        common::load_average()
    );
    println!(
        "trigger lateness (µs), {secs} s each, {rounds} round(s), {cpus} CPUs, run one after another:"
    );
    println!("  reference, then each jobd, for 1s and then 100ms (per round)");
    println!("  lateness = child's CLOCK_REALTIME at the top of main - JOBD_SCHEDULED_AT;");
    println!("  child = this binary re-executed; percentiles are nearest-rank");
    println!(
        "{:<16}{:>6} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "", "n", "p50", "p90", "p99", "max", "missing"
    );
    let mut notes = Vec::new();
    for (c, &cadence) in cadences.iter().enumerate() {
        let label = cadence.label();
        let reference = &reference_tallies[c];
        println!("{}", row(&format!("reference {label}"), reference));
        for (b, build) in builds.iter().enumerate() {
            let jobd = &jobd_tallies[b][c];
            println!(
                "{}   ratio to reference p50 {}  p99 {}",
                row(&format!("{} {label}", build.name), jobd),
                ratio(jobd.percentile_us(0.50), reference.percentile_us(0.50)),
                ratio(jobd.percentile_us(0.99), reference.percentile_us(0.99)),
            );
        }
        if let [current, baseline] = &jobd_tallies[..] {
            println!(
                "  current / baseline {label}: p50 {}  p99 {}",
                ratio(
                    current[c].percentile_us(0.50),
                    baseline[c].percentile_us(0.50)
                ),
                ratio(
                    current[c].percentile_us(0.99),
                    baseline[c].percentile_us(0.99)
                ),
            );
        }
        let tallies = [("reference", reference)].into_iter().chain(
            builds
                .iter()
                .zip(&jobd_tallies)
                .map(|(b, t)| (b.name, &t[c])),
        );
        for (name, tally) in tallies {
            if tally.extra > 0 || tally.unparsable > 0 {
                notes.push(format!(
                    "  {name} {label}: {} extra line(s) (duplicate or off-grid instants), {} unparsable",
                    tally.extra, tally.unparsable
                ));
            }
        }
    }
    for note in notes {
        println!("{note}");
    }
    for (c, &cadence) in cadences.iter().enumerate() {
        println!(
            "  of which the reference's wake-up alone ({}, clock_nanosleep return - instant): \
             p50 {}  p99 {}  max {}",
            cadence.label(),
            us(percentile_us(&wakes[c], 0.50)),
            us(percentile_us(&wakes[c], 0.99)),
            us(percentile_us(&wakes[c], 1.0)),
        );
    }
    let switches = |s: ProcSample| s.voluntary + s.involuntary;
    println!();
    for (build, idle) in builds.iter().zip(&idles) {
        println!(
            "idle {}, {IDLE_JOBS} jobs: RSS {} KiB ({} anon, {} file; peak {} KiB), context switches in {} s: {} \
             ({} voluntary, {} involuntary, {} thread(s)), start-up {:.1} ms",
            build.name,
            idle.after.rss_kib,
            idle.after.anon_kib,
            idle.after.file_kib,
            idle.after.hwm_kib.max(idle.before.hwm_kib),
            IDLE_WINDOW.as_secs(),
            switches(idle.after).saturating_sub(switches(idle.before)),
            idle.after.voluntary.saturating_sub(idle.before.voluntary),
            idle.after
                .involuntary
                .saturating_sub(idle.before.involuntary),
            idle.after.threads,
            idle.startup.as_secs_f64() * 1000.0,
        );
    }
    if let [current, baseline] = &idles[..] {
        println!(
            "  current / baseline: RSS {}  anon {}  start-up {}",
            common::ratio(current.after.rss_kib as f64, baseline.after.rss_kib as f64),
            common::ratio(
                current.after.anon_kib as f64,
                baseline.after.anon_kib as f64
            ),
            common::ratio(
                current.startup.as_secs_f64(),
                baseline.startup.as_secs_f64()
            ),
        );
    }
}
