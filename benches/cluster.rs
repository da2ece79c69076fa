//! What cluster mode costs on a real PostgreSQL (a throwaway server on this machine,
//! fsync and synchronous_commit on, over TCP on 127.0.0.1, as the tests start it):
//! - the claim of one instant: a winner alone, a loser alone, three hosts racing
//!   (released together by a barrier), and the start and finish that follow a win;
//! - a one-off's submit → claimed on another connection woken by LISTEN/NOTIFY, with one
//!   listening host and with three (all woken, one wins);
//! - one-off throughput, 3 hosts × 2 workers, each worker on its own connection
//!   claiming and finishing one job at a time (the database's part only: no process
//!   is started);
//! - a heartbeat listing 10 runs, and a rescue that finds nothing;
//! - then with real jobd processes (synchronous_commit on, as jobd runs): a one-off's
//!   submit (a commit from this process, the application's stand-in) → its process
//!   started by a jobd (its first instruction reads the clock), with one and with three
//!   jobds listening; and one-off throughput of `/bin/true` jobs with 3 jobds × 2
//!   workers, 1 jobd × 2 workers, and beside them one jobd without cluster mode
//!   running the same jobs from its spool, in the same run.
//!
//! `cargo bench --bench cluster`. Settings, from the environment:
//! `CLUSTER_BENCH_INSTANTS` (default 1000), `CLUSTER_BENCH_WAKES` (default 200),
//! `CLUSTER_BENCH_ONEOFFS` (default 5000), `CLUSTER_BENCH_STARTS` (default 100, the
//! submit → start samples), `CLUSTER_BENCH_JOBS` (default 2000, the jobs of each
//! throughput run with jobd). Prints figures and asserts nothing.
//!
//! The latency's job process is this binary again: with `CLUSTER_BENCH_CHILD` set it
//! reads CLOCK_REALTIME first thing, appends `<JOBD_SPOOL_NAME> <ns>` to the file that
//! variable names, and exits.

mod common;
// The tests' throwaway server, shared rather than copied; the tests use the parts this
// benchmark does not.
#[allow(dead_code)]
#[path = "../tests/integration/pgserver.rs"]
mod pgserver;

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, mpsc};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use jobd::adapter::cluster::leases::{Heartbeat, Rescue};
use jobd::adapter::cluster::oneoff::{ClaimOneoffs, FinishOneoff, Submit};
use jobd::adapter::cluster::scheduled::{Claim, ClaimInstant, FinishRun, Overlap, StartRun};
use jobd::adapter::cluster::schema::migrate;
use jobd::adapter::cluster::{ONEOFF_CHANNEL, Operation, run_blocking};
use jobd::adapter::postgres::{Libpq, Query, Ready, Session, Settings};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde_json::json;

const T: Duration = Duration::from_secs(60);
const LEASE: Duration = Duration::from_secs(30);

fn main() {
    // Before anything else: everything from the submit to this read is the latency.
    let woke = common::realtime_ns();
    if let Some(results) = std::env::var_os(CHILD_VAR) {
        child(woke, &results);
    }
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("cluster: skipped; run it with `cargo bench --bench cluster`");
        return;
    }
    let Some(pg) = pgserver::PgServer::start("cluster bench") else {
        return;
    };
    let uri = pg.uri();
    let mut setup = connect(&uri);
    migrate(&mut setup, T).expect("the schema migrates");
    let version = scalar(&mut setup, "SELECT current_setting('server_version')");
    println!(
        "cluster: PostgreSQL {version}, TCP 127.0.0.1, fsync on; {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    setup
        .exec_blocking(&Query::new("CREATE TABLE bench_commit (x int)"), T)
        .expect("a table for the commit floor");
    let instants = setting("CLUSTER_BENCH_INSTANTS", 1000);
    let wakes = setting("CLUSTER_BENCH_WAKES", 200);
    let oneoffs = setting("CLUSTER_BENCH_ONEOFFS", 5000);
    // First as jobd runs (every commit waits for its WAL flush), then without waiting
    // for the flush, which tells the disk's share from the design's on this machine.
    for (pass, sync) in [("sync", "on"), ("async", "off")] {
        setup
            .exec_blocking(
                &Query::new(format!("ALTER SYSTEM SET synchronous_commit = {sync}")),
                T,
            )
            .expect("synchronous_commit is set");
        setup
            .exec_blocking(&Query::new("SELECT pg_reload_conf()"), T)
            .expect("the configuration reloads");
        std::thread::sleep(Duration::from_millis(200));
        println!(
            "\nsynchronous_commit {sync}; load average before: {}",
            common::load_average()
        );
        println!(
            "{:<52} {:>6} {:>9} {:>9} {:>9}",
            "", "n", "p50 ms", "p99 ms", "max ms"
        );
        commit_floor(&uri);
        claims(&uri, &mut setup, pass, instants);
        submit_to_claim(&uri, 1, wakes);
        submit_to_claim(&uri, 3, wakes);
        throughput(&uri, &mut setup, pass, oneoffs);
        leases(&uri);
        println!("load average after: {}", common::load_average());
    }
    setup
        .exec_blocking(&Query::new("ALTER SYSTEM RESET synchronous_commit"), T)
        .expect("synchronous_commit is reset");
    setup
        .exec_blocking(&Query::new("SELECT pg_reload_conf()"), T)
        .expect("the configuration reloads");
    with_jobd(
        &uri,
        &mut setup,
        setting("CLUSTER_BENCH_STARTS", 100),
        setting("CLUSTER_BENCH_JOBS", 2000),
    );
}

/// The cheapest durable thing: one single-row INSERT, committed. Every cluster
/// operation that writes pays at least this.
fn commit_floor(uri: &str) {
    let mut session = connect(uri);
    let insert = Query::new("INSERT INTO bench_commit VALUES (1)");
    let mut samples: Vec<Duration> = (0..200)
        .map(|_| timed(|| session.exec_blocking(&insert, T).expect("insert")).1)
        .collect();
    report("floor: a one-row INSERT, committed", &mut samples);
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn lib() -> &'static Libpq {
    Libpq::system().expect("libpq loads")
}

fn connect(uri: &str) -> Session {
    Session::connect_blocking(lib(), Settings::new(uri), T).expect("connects")
}

fn run<O: Operation>(session: &mut Session, op: &O) -> O::Output {
    run_blocking(session, op, T).expect("the operation succeeds")
}

fn scalar(session: &mut Session, sql: &str) -> String {
    let rows = session.exec_blocking(&Query::new(sql), T).expect("query");
    rows.first(sql).unwrap().text(&rows.columns()[0]).unwrap()
}

fn report(label: &str, samples: &mut [Duration]) {
    if samples.is_empty() {
        println!("{label:<52} {:>6}", 0);
        return;
    }
    samples.sort();
    let rank =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<52} {:>6} {:>9.3} {:>9.3} {:>9.3}",
        samples.len(),
        ms(rank(0.50)),
        ms(rank(0.99)),
        ms(samples[samples.len() - 1])
    );
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

fn instant(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0).single().unwrap()
}

fn claim(job: &str, host: &str, at: DateTime<Utc>) -> ClaimInstant {
    ClaimInstant {
        job: job.to_string(),
        scheduled_at: at,
        host_id: host.to_string(),
        lease: LEASE,
        max_instances: 1,
        on_overlap: Overlap::Skip,
        window: Duration::from_secs(86_400),
    }
}

fn claims(uri: &str, setup: &mut Session, pass: &str, instants: usize) {
    let (alone, race) = (format!("alone-{pass}"), format!("race-{pass}"));
    let base: i64 = scalar(setup, "SELECT floor(extract(epoch FROM now()))::bigint")
        .parse()
        .unwrap();
    let base = base - 2 * instants as i64;
    let mut session = connect(uri);
    let (mut win, mut lose, mut start, mut finish) = (vec![], vec![], vec![], vec![]);
    for i in 0..instants {
        let at = instant(base + i as i64);
        let (claimed, took) = timed(|| run(&mut session, &claim(&alone, "a", at)));
        let Claim::Start { run_id, .. } = claimed else {
            panic!("not won alone: {claimed:?}");
        };
        win.push(took);
        let op = StartRun {
            run_id,
            host_id: "a".into(),
            lease: LEASE,
        };
        start.push(timed(|| run(&mut session, &op)).1);
        let op = FinishRun {
            run_id,
            host_id: "a".into(),
            outcome: "success".into(),
            exit_code: Some(0),
            lease: LEASE,
        };
        finish.push(timed(|| run(&mut session, &op)).1);
    }
    for i in 0..instants {
        let at = instant(base + i as i64);
        let (claimed, took) = timed(|| run(&mut session, &claim(&alone, "b", at)));
        assert_eq!(claimed, Claim::Taken);
        lose.push(took);
    }
    report("claim, winner alone", &mut win);
    report("claim, loser alone (row exists)", &mut lose);
    report("start_run (claimed -> running) after a win", &mut start);
    report("finish_run (frees the slot)", &mut finish);

    let barrier = Barrier::new(3);
    let results: Vec<Vec<(bool, Duration)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|host| {
                let (barrier, race) = (&barrier, &race);
                scope.spawn(move || {
                    let mut session = connect(uri);
                    (0..instants)
                        .map(|i| {
                            let at = instant(base + (instants + i) as i64);
                            barrier.wait();
                            let (claimed, took) =
                                timed(|| run(&mut session, &claim(race, host, at)));
                            let won = matches!(claimed, Claim::Start { .. });
                            if let Claim::Start { run_id, .. } = claimed {
                                let op = FinishRun {
                                    run_id,
                                    host_id: host.into(),
                                    outcome: "success".into(),
                                    exit_code: Some(0),
                                    lease: LEASE,
                                };
                                run(&mut session, &op);
                            }
                            (won, took)
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut winners: Vec<Duration> = results
        .iter()
        .flatten()
        .filter(|r| r.0)
        .map(|r| r.1)
        .collect();
    let mut losers: Vec<Duration> = results
        .iter()
        .flatten()
        .filter(|r| !r.0)
        .map(|r| r.1)
        .collect();
    let split: Vec<usize> = results
        .iter()
        .map(|r| r.iter().filter(|x| x.0).count())
        .collect();
    report("claim, race of 3: winner", &mut winners);
    report(
        "claim, race of 3: losers (wait for the winner)",
        &mut losers,
    );
    println!(
        "  race of 3: {} instants, won per host {split:?}, each exactly once: {}",
        instants,
        winners.len() == instants
    );
}

/// One "host": a LISTEN connection in a poll loop and a worker connection that claims.
fn host(uri: &str, name: &str, stop: &AtomicBool, done: mpsc::Sender<(i64, Instant, Instant)>) {
    let mut settings = Settings::new(uri);
    settings.listen = vec![ONEOFF_CHANNEL.to_string()];
    let mut listener = Session::connect_blocking(lib(), settings, T).expect("listens");
    let mut worker = connect(uri);
    let claim = ClaimOneoffs {
        host_id: name.to_string(),
        lease: LEASE,
        tasks: vec!["probe".into()],
        limit: 1,
    };
    while !stop.load(Ordering::Relaxed) {
        let interest = listener.interest();
        let Some(fd) = interest.fd else {
            panic!("the listener lost its connection");
        };
        // SAFETY: the listener's socket stays open during this poll.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let mut fds = [PollFd::new(fd, interest.events)];
        let _ = poll(&mut fds, PollTimeout::from(100u16));
        let ready = Ready::from_revents(fds[0].revents().unwrap_or(PollFlags::empty()));
        listener.advance(Instant::now(), ready);
        if listener.take_notifications().is_empty() {
            continue;
        }
        let woke = Instant::now();
        for job in run(&mut worker, &claim) {
            let claimed = Instant::now();
            let _ = done.send((job.id, woke, claimed));
            let finish = FinishOneoff {
                id: job.id,
                host_id: name.to_string(),
                success: true,
                result: json!(null),
                max_attempts: 1,
                retry_delay: Duration::from_secs(1),
            };
            run(&mut worker, &finish);
        }
    }
}

fn submit_to_claim(uri: &str, hosts: usize, samples: usize) {
    let (tx, rx) = mpsc::channel();
    let stop = AtomicBool::new(false);
    let mut wake = Vec::new();
    let mut claimed = Vec::new();
    let mut commit = Vec::new();
    std::thread::scope(|scope| {
        for h in 0..hosts {
            let (tx, stop) = (tx.clone(), &stop);
            scope.spawn(move || host(uri, &format!("h{h}"), stop, tx));
        }
        drop(tx);
        let mut submitter = connect(uri);
        // Let every listener connect and LISTEN first.
        std::thread::sleep(Duration::from_millis(500));
        for _ in 0..samples {
            let sent = Instant::now();
            let submitted = run(&mut submitter, &Submit::task("probe"));
            commit.push(sent.elapsed());
            let id = submitted.id.expect("an id");
            let (got, woke, at) = rx.recv_timeout(T).expect("a host claims the job");
            assert_eq!(got, id, "jobs are claimed one at a time");
            wake.push(woke.saturating_duration_since(sent));
            claimed.push(at.saturating_duration_since(sent));
            // Let the hosts finish the job and go back to waiting.
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let label = |what: &str| {
        format!(
            "{what}, {hosts} listening host{}",
            if hosts == 1 { "" } else { "s" }
        )
    };
    report(
        &label("submit: its round trip (commit + NOTIFY)"),
        &mut commit,
    );
    report(&label("submit -> first host woken"), &mut wake);
    report(
        &label("submit -> claimed on another connection"),
        &mut claimed,
    );
}

fn throughput(uri: &str, setup: &mut Session, pass: &str, jobs: usize) {
    let task = format!("bulk-{pass}");
    setup
        .exec_blocking(
            &Query::new(
                "SELECT count(*) FROM generate_series(1, $1::int) AS n,
                        LATERAL jobd.submit($2::text, jsonb_build_array(n::text))",
            )
            .bind(jobs as i64)
            .bind(task.as_str()),
            T,
        )
        .expect("jobs are queued");
    let barrier = Barrier::new(6);
    let started = Instant::now();
    let mut per_job: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|w| {
                let (barrier, task) = (&barrier, &task);
                scope.spawn(move || {
                    let host = format!("h{}", w / 2);
                    let mut session = connect(uri);
                    let claim = ClaimOneoffs {
                        host_id: host.clone(),
                        lease: LEASE,
                        tasks: vec![task.clone()],
                        limit: 1,
                    };
                    barrier.wait();
                    let mut times = Vec::new();
                    loop {
                        let begin = Instant::now();
                        let Some(job) = run(&mut session, &claim).pop() else {
                            return times;
                        };
                        let finish = FinishOneoff {
                            id: job.id,
                            host_id: host.clone(),
                            success: true,
                            result: json!({"value": job.args}),
                            max_attempts: 1,
                            retry_delay: Duration::from_secs(1),
                        };
                        run(&mut session, &finish);
                        times.push(begin.elapsed());
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed();
    let done: usize = scalar(
        setup,
        &format!("SELECT count(*) FROM jobd.oneoffs WHERE task = '{task}' AND state = 'done'"),
    )
    .parse()
    .unwrap();
    report("one-off claim + finish, 3 hosts x 2 workers", &mut per_job);
    println!(
        "  throughput: {} jobs in {:.2} s = {:.0} jobs/s ({} done, {} claimed twice or missed)",
        per_job.len(),
        elapsed.as_secs_f64(),
        per_job.len() as f64 / elapsed.as_secs_f64(),
        done,
        jobs.abs_diff(done)
    );
}

fn leases(uri: &str) {
    let mut session = connect(uri);
    let runs: Vec<i64> = (1..=10).collect();
    let beat = Heartbeat {
        host_id: "a".into(),
        jobfile_hash: "h".into(),
        lease: LEASE,
        runs,
        oneoffs: vec![],
        starting: false,
    };
    let rescue = Rescue {
        host_id: "a".into(),
        lease: LEASE,
        rerun_jobs: vec![],
        limit: 100,
    };
    let mut beats: Vec<Duration> = (0..200)
        .map(|_| timed(|| run(&mut session, &beat)).1)
        .collect();
    let mut rescues: Vec<Duration> = (0..200)
        .map(|_| timed(|| run(&mut session, &rescue)).1)
        .collect();
    report("heartbeat listing 10 runs", &mut beats);
    report("rescue, nothing expired", &mut rescues);
}

// ---- With real jobd processes ----------------------------------------------------

const JOBD: &str = env!("CARGO_BIN_EXE_jobd");
/// Makes this binary the job's process; its value is the results file.
const CHILD_VAR: &str = "CLUSTER_BENCH_CHILD";

fn child(woke: i64, results: &std::ffi::OsStr) -> ! {
    let name = std::env::var("JOBD_SPOOL_NAME").unwrap_or_else(|_| "?".to_string());
    common::append_and_exit(results, &format!("{name} {woke}\n"))
}

/// A jobd in a folder of its own, stopped (SIGTERM, then waited for) when dropped.
struct Jobd {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Jobd {
    /// A jobd on `jobfile`, as host `host`, once it says it is ready (cluster mode:
    /// once it claims).
    fn start(jobfile: &str, host: &str, ready: &str) -> Jobd {
        let dir = tempfile::Builder::new()
            .prefix("jobd-bench-")
            .tempdir()
            .expect("a folder");
        std::fs::write(dir.path().join("jobd.yaml"), jobfile).unwrap();
        let log = std::fs::File::create(dir.path().join("jobd.log")).unwrap();
        let child = std::process::Command::new(JOBD)
            .arg("-c")
            .arg(dir.path().join("jobd.yaml"))
            .current_dir(dir.path())
            .env("JOBD_HOST_ID", host)
            .env("JOBD_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("jobd starts");
        let jobd = Jobd { dir, child };
        let until = Instant::now() + T;
        while !jobd.log().contains(ready) {
            assert!(Instant::now() < until, "jobd is not ready:\n{}", jobd.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        jobd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("jobd.log")).unwrap_or_default()
    }

    fn spool(&self, sub: &str) -> std::path::PathBuf {
        self.dir.path().join(".jobd/spool").join(sub)
    }
}

impl Drop for Jobd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn cluster_jobfile(uri: &str, tasks: &str) -> String {
    format!(
        "timezone: UTC\ncluster:\n  database_url: \"{uri}\"\n  lease: 30s\n\
         spool:\n  workers: 2\ntasks:\n{tasks}"
    )
}

fn with_jobd(uri: &str, setup: &mut Session, starts: usize, jobs: usize) {
    println!(
        "\nwith jobd processes (synchronous_commit on); load average before: {}",
        common::load_average()
    );
    println!(
        "{:<52} {:>6} {:>9} {:>9} {:>9}",
        "", "n", "p50 ms", "p99 ms", "max ms"
    );
    let results = tempfile::NamedTempFile::new().expect("a results file");
    let me = std::env::current_exe().expect("this binary");
    let probe = format!(
        "  probe:\n    command: [\"{}\"]\n    env: {{{CHILD_VAR}: \"{}\"}}\n",
        me.display(),
        results.path().display()
    );
    for hosts in [1, 3] {
        let jobds: Vec<Jobd> = (0..hosts)
            .map(|h| {
                Jobd::start(
                    &cluster_jobfile(uri, &probe),
                    &format!("probe{h}"),
                    "cluster: available",
                )
            })
            .collect();
        let mut submitter = connect(uri);
        let mut samples = Vec::new();
        for _ in 0..starts {
            let sent = common::realtime_ns();
            let id = run(&mut submitter, &Submit::task("probe"))
                .id
                .expect("an id");
            let name = format!("oneoff-{id}.json ");
            let until = Instant::now() + T;
            let started = loop {
                let text = std::fs::read_to_string(results.path()).unwrap_or_default();
                if let Some(line) = text.lines().find(|l| l.starts_with(&name)) {
                    break line[name.len()..].parse::<i64>().expect("a time");
                }
                assert!(Instant::now() < until, "one-off {id} did not start");
                std::thread::sleep(Duration::from_millis(1));
            };
            samples.push(Duration::from_nanos((started - sent).max(0) as u64));
            // Let the run end and its end be recorded before the next.
            std::thread::sleep(Duration::from_millis(20));
        }
        report(
            &format!(
                "submit -> process started, {hosts} jobd{} listening",
                if hosts == 1 { "" } else { "s" }
            ),
            &mut samples,
        );
        drop(jobds);
    }

    let noop = "  noop:\n    command: [\"/bin/true\"]\n";
    for hosts in [3, 1] {
        // A task of its own per run, so that each run counts its own jobs.
        let task = format!("noop{hosts}");
        let jobfile = cluster_jobfile(uri, &noop.replace("noop", &task));
        let jobds: Vec<Jobd> = (0..hosts)
            .map(|h| Jobd::start(&jobfile, &format!("{task}-{h}"), "cluster: available"))
            .collect();
        let started = Instant::now();
        setup
            .exec_blocking(
                // Each row its own origin: a call that does not depend on `n` would be
                // made once.
                &Query::new(
                    "SELECT count(*) FROM generate_series(1, $1::int) AS n,
                            LATERAL jobd.submit($2::text, p_origin => $2::text || '-' || n)",
                )
                .bind(jobs as i64)
                .bind(task.as_str()),
                T,
            )
            .expect("jobs are queued");
        let count = Query::new(
            "SELECT count(*) FILTER (WHERE state IN ('done', 'failed')) AS ended,
                    count(*) FILTER (WHERE state = 'failed') AS failed,
                    count(*) FILTER (WHERE attempt > 1) AS again
               FROM jobd.oneoffs WHERE task = $1::text",
        )
        .bind(task.as_str());
        let until = Instant::now() + Duration::from_secs(600);
        let (failed, again) = loop {
            let rows = setup.exec_blocking(&count, T).expect("counted");
            let row = rows.first("the counts").unwrap();
            if row.i64("ended").unwrap() as usize >= jobs {
                break (row.i64("failed").unwrap(), row.i64("again").unwrap());
            }
            assert!(Instant::now() < until, "the jobs did not all end");
            std::thread::sleep(Duration::from_millis(50));
        };
        let elapsed = started.elapsed();
        println!(
            "  throughput, {hosts} jobd{} x 2 workers (cluster): {jobs} jobs in {:.2} s = {:.0} \
             jobs/s ({failed} failed, {again} run more than once)",
            if hosts == 1 { "" } else { "s" },
            elapsed.as_secs_f64(),
            jobs as f64 / elapsed.as_secs_f64()
        );
        drop(jobds);
    }

    // The same jobs from one jobd's spool, without cluster mode.
    let spool = Jobd::start(
        &format!("timezone: UTC\nspool:\n  workers: 2\ntasks:\n{noop}"),
        "alone",
        "jobd 0",
    );
    let tmp = spool.spool("tmp");
    for n in 0..jobs {
        std::fs::write(
            tmp.join(format!("noop-{n}.json")),
            b"{\"task\": \"noop\"}\n",
        )
        .unwrap();
    }
    let started = Instant::now();
    for n in 0..jobs {
        let name = format!("noop-{n}.json");
        std::fs::rename(tmp.join(&name), spool.spool("new").join(&name)).unwrap();
    }
    let until = Instant::now() + Duration::from_secs(600);
    let done = spool.spool("done");
    let finished = || {
        std::fs::read_dir(&done).map_or(0, |dir| {
            dir.flatten()
                .filter(|e| !e.file_name().to_string_lossy().ends_with(".result.json"))
                .count()
        })
    };
    while finished() < jobs {
        assert!(Instant::now() < until, "the spool did not run every file");
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed();
    println!(
        "  throughput, 1 jobd x 2 workers (spool, no cluster): {jobs} jobs in {:.2} s = {:.0} jobs/s",
        elapsed.as_secs_f64(),
        jobs as f64 / elapsed.as_secs_f64()
    );
    println!("load average after: {}", common::load_average());
}
