//! Hostile peers on the control socket: floods of connections, requests never finished,
//! answers never read, oversized requests, garbage, and jobd at its open-file limit.
//! Meanwhile an honest `jobctl status` must be served and a per-second job must fire.
//! (A peer of another user being refused is tested in control.rs.)

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::harness::{Daemon, Dir, Rng, eventually, percentile, scale};

/// A per-second job writing its instant and the moment it started, and `dormant` jobs
/// that never fire but make `status` answers large.
fn jobfile(dormant: usize) -> String {
    let mut text = String::from(
        r#"
timezone: UTC
shutdown_grace: 2s
jobs:
  tick:
    every: 1s
    command: 'echo "$JOBD_SCHEDULED_AT $(date -u +%s.%N)" >> tick.out'
"#,
    );
    for i in 0..dormant {
        text.push_str(&format!(
            "  dormant_job_with_a_long_name_{i:05}:\n    schedule: \"0 0 1 1 *\"\n    command: [\"true\"]\n"
        ));
    }
    text
}

fn socket(dir: &Dir) -> PathBuf {
    dir.join(".jobd/jobd.sock")
}

fn connect(dir: &Dir) -> UnixStream {
    UnixStream::connect(socket(dir)).unwrap()
}

/// Runs of `tick` so far.
fn ticks(dir: &Dir) -> usize {
    dir.lines("tick.out").len()
}

/// `jobctl status`, timed; panics (with the log) when it fails.
#[track_caller]
fn honest_status(dir: &Dir, jobd: &Daemon) -> Duration {
    let asked = Instant::now();
    let status = dir.jobctl(&["status"]);
    let took = asked.elapsed();
    assert!(
        status.output.status.success(),
        "an honest jobctl status failed after {took:?} (exit {:?}): {}\n{}",
        status.output.status.code(),
        status.stderr(),
        tail(&jobd.log(), 20)
    );
    took
}

fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Read one answer line (or what the peer gets instead), within `within`.
fn answer(stream: &mut UnixStream, within: Duration) -> String {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(within)).unwrap();
    let mut line = Vec::new();
    match BufReader::new(stream).read_until(b'\n', &mut line) {
        Ok(0) => "closed without an answer".to_string(),
        Ok(_) => String::from_utf8_lossy(&line).into_owned(),
        Err(e) => format!("error: {e}"),
    }
}

/// (4) Idle connections, requests cut off before their newline, status requests whose
/// large answer is never read, requests over 64 KiB, garbage bytes and a churn of
/// connections opened and closed, all at once (fewer than jobd's 64 client slots):
/// honest `jobctl status` calls are answered within seconds, the per-second job keeps
/// firing, and once the peers are gone jobd holds no more files than before.
#[test]
fn an_honest_jobctl_is_served_among_hostile_peers() {
    let dormant = 1500;
    let window = Duration::from_secs(scale(6, 60));
    let dir = Dir::new(&jobfile(dormant));
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(20));
    assert!(eventually(Duration::from_secs(10), || ticks(&dir) >= 1));
    let answer_bytes = dir.jobctl(&["status", "--json"]).stdout().len();
    let before = jobd.sample();
    let mut rng = Rng::from_env();

    let idle: Vec<UnixStream> = (0..10).map(|_| connect(&dir)).collect();
    let half: Vec<UnixStream> = (0..10)
        .map(|_| {
            let mut stream = connect(&dir);
            stream
                .write_all(br#"{"version": 1, "command": "sta"#)
                .unwrap();
            stream
        })
        .collect();
    let deaf: Vec<UnixStream> = (0..10)
        .map(|_| {
            let mut stream = connect(&dir);
            stream
                .write_all(b"{\"version\": 1, \"command\": \"status\"}\n")
                .unwrap();
            stream
        })
        .collect();
    // Over 64 KiB without a newline, written until jobd stops reading.
    let mut oversized: Vec<(UnixStream, usize)> = (0..5)
        .map(|_| {
            let mut stream = connect(&dir);
            stream.set_nonblocking(true).unwrap();
            let chunk = vec![b'x'; 16 * 1024];
            let (mut sent, mut stalled) = (0, Instant::now());
            while sent < 1 << 20 && stalled.elapsed() < Duration::from_millis(500) {
                match stream.write(&chunk) {
                    Ok(n) => {
                        sent += n;
                        stalled = Instant::now();
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
            (stream, sent)
        })
        .collect();
    let mut garbage: Vec<UnixStream> = (0..5)
        .map(|_| {
            let mut stream = connect(&dir);
            let mut bytes: Vec<u8> = (0..2000).map(|_| rng.next() as u8).collect();
            bytes.push(b'\n');
            stream.write_all(&bytes).unwrap();
            stream
        })
        .collect();
    let held = idle.len() + half.len() + deaf.len() + oversized.len() + garbage.len();
    let during = jobd.sample();

    // Meanwhile: a churn of connections opened and dropped, and the honest client.
    let started = Instant::now();
    let ticks_before = ticks(&dir);
    let stop_churn = std::sync::atomic::AtomicBool::new(false);
    let (mut took, churned) = std::thread::scope(|scope| {
        let churn = scope.spawn(|| {
            let mut n = 0;
            while !stop_churn.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut stream) = UnixStream::connect(socket(&dir)) {
                    let _ = stream.write_all(b"{\"version\": 1, \"comm");
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            n
        });
        let mut took = Vec::new();
        while started.elapsed() < window {
            took.push(honest_status(&dir, &jobd));
            std::thread::sleep(Duration::from_millis(500));
        }
        stop_churn.store(true, std::sync::atomic::Ordering::Relaxed);
        (took, churn.join().unwrap())
    });
    let fired = ticks(&dir) - ticks_before;
    let cpu = jobd.sample().cpu_ticks - during.cpu_ticks;

    let garbage_answer = answer(&mut garbage[0], Duration::from_secs(5));
    let oversized_answer = answer(&mut oversized[0].0, Duration::from_secs(5));
    let oversized_sent = oversized[0].1;
    drop((idle, half, deaf, oversized, garbage));
    assert!(
        eventually(Duration::from_secs(15), || jobd.sample().fds
            <= before.fds + 4),
        "jobd holds {} files after the peers left, {} before",
        jobd.sample().fds,
        before.fds
    );
    let after = jobd.sample();
    honest_status(&dir, &jobd);
    assert_eq!(jobd.stop(), Some(0));

    took.sort();
    let secs: Vec<f64> = took.iter().map(Duration::as_secs_f64).collect();
    eprintln!(
        "hostile peers: {held} held ({} files in jobd while held), {churned} churned connections, status answer {} KiB \
         ({dormant} jobs); {} honest status calls over {:.0}s: p50 {:.0} ms, max {:.0} ms; tick fired {fired} times; \
         jobd CPU {:.2}s; files {} -> {} -> {}, RSS {} -> {} -> {} KiB",
        during.fds,
        answer_bytes / 1024,
        took.len(),
        window.as_secs_f64(),
        percentile(&secs, 50.0) * 1000.0,
        percentile(&secs, 100.0) * 1000.0,
        cpu as f64 / 100.0,
        before.fds,
        during.fds,
        after.fds,
        before.rss_kib,
        during.rss_kib,
        after.rss_kib,
    );
    eprintln!(
        "  garbage got: {}; oversized ({} KiB sent) got: {}",
        garbage_answer.trim().chars().take(120).collect::<String>(),
        oversized_sent / 1024,
        oversized_answer
            .trim()
            .chars()
            .take(120)
            .collect::<String>()
    );
    assert!(
        garbage_answer.contains("bad request"),
        "garbage: {garbage_answer}"
    );
    assert!(
        oversized_answer.contains("longer than 65536")
            || oversized_answer.contains("reset")
            || oversized_answer.contains("closed"),
        "oversized: {oversized_answer}"
    );
    assert!(
        percentile(&secs, 100.0) < 5.0,
        "an honest status took {:?}",
        took.last()
    );
    let expected = window.as_secs() as usize - 2;
    assert!(fired >= expected, "tick fired {fired} times in {window:?}");
}

/// (4b) Hundreds of connections opened at once and held (as a stuck or hostile client
/// of the same user could): jobd serves 64 clients and closes the others at once, but
/// an honest `jobctl status` must still get its answer within a few seconds, and the
/// per-second job must keep firing.
#[test]
fn a_flood_of_held_connections_does_not_lock_out_jobctl() {
    let flood = scale(300, 1000);
    let dir = Dir::new(&jobfile(0));
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(20));
    let held: Vec<UnixStream> = (0..flood)
        .filter_map(|_| UnixStream::connect(socket(&dir)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let ticks_before = ticks(&dir);
    let asked = Instant::now();
    let mut outcome = None;
    while asked.elapsed() < Duration::from_secs(3) {
        let status = dir.jobctl(&["status"]);
        if status.output.status.success() {
            outcome = Some(Ok(asked.elapsed()));
            break;
        }
        outcome = Some(Err(status.stderr()));
        std::thread::sleep(Duration::from_millis(100));
    }
    let fired = {
        std::thread::sleep(Duration::from_secs(3));
        ticks(&dir) - ticks_before
    };
    let sample = jobd.sample();
    drop(held);
    jobd.stop();
    eprintln!(
        "connection flood: {flood} held, jobd held {} files; honest status: {outcome:?}; tick fired {fired} times in ~6s",
        sample.fds
    );
    assert!(fired >= 3, "tick fired {fired} times in ~6s");
    assert!(
        matches!(outcome, Some(Ok(_))),
        "an honest jobctl status was refused for 3s while {flood} connections were held: {outcome:?}"
    );
}

/// (4c) jobd at its limit of open files (a low `LimitNOFILE=`), with peers holding
/// connections: accept() fails with EMFILE. jobd must not spin on the listening
/// socket, must not flood its log, and must fire its jobs again once the peers leave.
#[test]
fn jobd_at_its_open_file_limit_neither_spins_nor_floods_its_log() {
    let dir = Dir::new(&jobfile(0));
    let mut jobd = dir.start_appending(&[], Some(32));
    jobd.wait_log("started:", Duration::from_secs(20));
    assert!(eventually(Duration::from_secs(10), || ticks(&dir) >= 1));
    let held: Vec<UnixStream> = (0..60)
        .filter_map(|_| UnixStream::connect(socket(&dir)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let first = jobd.sample();
    let lines_before = jobd.log().lines().count();
    let window = Duration::from_secs(3);
    std::thread::sleep(window);
    let last = jobd.sample();
    let lines = jobd.log().lines().count() - lines_before;
    let cpu_share = (last.cpu_ticks - first.cpu_ticks) as f64 / 100.0 / window.as_secs_f64();
    let log = jobd.log();
    let accept_failures = log.matches("accept failed").count();
    let not_started = log.matches("Too many open files").count() - accept_failures;
    drop(held);
    let ticks_after = ticks(&dir);
    let recovered = eventually(Duration::from_secs(15), || ticks(&dir) >= ticks_after + 2);
    // Once the peers are gone, jobd sleeps between ticks again (no deadline left behind).
    let calm = jobd.sample();
    std::thread::sleep(Duration::from_secs(2));
    let idle_share = (jobd.sample().cpu_ticks - calm.cpu_ticks) as f64 / 100.0 / 2.0;
    jobd.stop();
    assert!(
        idle_share < 0.2,
        "jobd spins after the peers left: {:.0}% of a CPU",
        idle_share * 100.0
    );
    eprintln!(
        "open-file limit 32 with {} peers: jobd held {} files, used {:.0}% of a CPU, wrote {lines} log lines in {:?} \
         ({accept_failures} `accept failed`, {not_started} other EMFILE errors); tick {} once the peers left",
        60,
        first.fds,
        cpu_share * 100.0,
        window,
        if recovered {
            "fired again"
        } else {
            "did NOT fire again"
        }
    );
    assert!(
        cpu_share < 0.5,
        "jobd spins at its open-file limit: {:.0}% of a CPU",
        cpu_share * 100.0
    );
    assert!(
        lines < 200,
        "{lines} log lines in {window:?}:\n{}",
        tail(&log, 10)
    );
    assert!(recovered, "tick never fired again:\n{}", tail(&log, 20));
}
