//! Processes a previous jobd left running: a jobd killed with SIGKILL cannot stop its
//! children, and the next one must not run a spool file again while the interrupted
//! attempt still runs (at least once, but not twice at the same time).

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The processes whose environment holds `JOBD_RUN_ID=<run_id>`: the run's process and
/// its descendants, wherever they went (setsid included), found by what jobd gave them
/// rather than by a process id that may have been reused. With `under`, only that
/// process's descendants are looked at (and only their environments read).
pub fn of_run(run_id: &str, under: Option<Pid>) -> Vec<Pid> {
    let needle = format!("JOBD_RUN_ID={run_id}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    let pids: Vec<i32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .collect();
    let candidates: Vec<i32> = match under {
        None => pids,
        Some(root) => {
            let parents: std::collections::HashMap<i32, i32> = pids
                .iter()
                .filter_map(|&pid| Some((pid, parent(pid)?)))
                .collect();
            pids.into_iter()
                .filter(|pid| {
                    // Walk up to the root or to init; bounded against cycles.
                    let mut at = *pid;
                    for _ in 0..64 {
                        match parents.get(&at) {
                            Some(&up) if up == root.as_raw() => return true,
                            Some(&up) if up > 1 => at = up,
                            _ => return false,
                        }
                    }
                    false
                })
                .collect()
        }
    };
    candidates
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|&b| b == 0)
                    .any(|var| var == needle.as_bytes())
            })
        })
        .map(Pid::from_raw)
        .collect()
}

/// SIGTERM to each process's group and the process, SIGKILL to what is left after
/// `grace`; wait (at most `grace` again) until they are gone. Blocks: it runs at
/// start-up, before anything is scheduled, and only when such processes exist.
pub fn stop(pids: &[Pid], grace: Duration) {
    let signal_all = |signal: Signal| {
        for &pid in pids {
            let _ = killpg(pid, signal);
            let _ = kill(pid, signal);
        }
    };
    let gone = |until: Instant| {
        while Instant::now() < until {
            if pids.iter().all(|&pid| !alive(pid)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };
    signal_all(Signal::SIGTERM);
    if !gone(Instant::now() + grace) {
        signal_all(Signal::SIGKILL);
        gone(Instant::now() + grace);
    }
}

/// A process's parent, from /proc.
fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name in parentheses may hold spaces: fields count from the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Alive and not a zombie (an orphan's zombie waits for init, not for jobd).
fn alive(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn finds_and_stops_the_processes_of_a_run() {
        let run_id = format!("test-{}-{}", std::process::id(), line!());
        let mut child = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 30 & wait"])
            .env("JOBD_RUN_ID", &run_id)
            .process_group(0)
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        while of_run(&run_id, None).len() < 2 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let found = of_run(&run_id, None);
        let me = Pid::from_raw(std::process::id() as i32);
        assert_eq!(
            of_run(&run_id, Some(me)),
            found,
            "they descend from this process"
        );
        assert_eq!(found.len(), 2, "the shell and its sleep: {found:?}");
        assert!(found.contains(&Pid::from_raw(child.id() as i32)));
        // Reap the shell as it dies, as init would for a real orphan.
        let reaper = std::thread::spawn(move || child.wait());
        stop(&found, Duration::from_millis(300));
        reaper.join().unwrap().unwrap();
        assert!(found.iter().all(|&pid| !alive(pid)));
        assert!(of_run("no-such-run", None).is_empty());
    }
}
