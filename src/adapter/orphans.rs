//! Processes a previous jobd left running: a jobd killed with SIGKILL cannot stop its
//! children, and the next one must not run a spool file again while the interrupted
//! attempt still runs (at least once, but not twice at the same time).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::leaf::procfs;

/// The processes whose environment holds `JOBD_RUN_ID=<run_id>`, for each run id:
/// the run's process and its descendants, wherever they went (setsid included), found
/// by what jobd gave them rather than by a process id that may have been reused. /proc
/// is read once for all of them. With `under`, only that process's descendants are
/// looked at (and only their environments read).
pub fn of_runs(run_ids: &[&str], under: Option<Pid>) -> HashMap<String, Vec<Pid>> {
    let mut found: HashMap<String, Vec<Pid>> = HashMap::new();
    if run_ids.is_empty() {
        return found;
    }
    let me = std::process::id() as i32;
    let pids = procfs::pids().into_iter().filter(|&pid| pid != me);
    let candidates: Vec<i32> = match under {
        None => pids.collect(),
        Some(root) => {
            let parents = procfs::parents();
            pids.filter(|&pid| procfs::descends(pid, root.as_raw(), &parents))
                .collect()
        }
    };
    for pid in candidates {
        for var in procfs::environ(pid) {
            let Some(id) = var.strip_prefix(b"JOBD_RUN_ID=") else {
                continue;
            };
            if let Some(id) = run_ids.iter().find(|wanted| wanted.as_bytes() == id) {
                found
                    .entry(id.to_string())
                    .or_default()
                    .push(Pid::from_raw(pid));
            }
        }
    }
    found
}

/// The processes of one run; see `of_runs`.
pub fn of_run(run_id: &str, under: Option<Pid>) -> Vec<Pid> {
    of_runs(&[run_id], under).remove(run_id).unwrap_or_default()
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
            if pids.iter().all(|&pid| !procfs::alive(pid.as_raw())) {
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
        assert!(found.iter().all(|&pid| !procfs::alive(pid.as_raw())));
        assert!(of_run("no-such-run", None).is_empty());
    }
}
