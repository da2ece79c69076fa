//! CPU time, which counts what a piece of work cost whatever else the machine is doing:
//! bounds in tests ("refused quickly") hold on a loaded machine where wall time would
//! not.

use std::time::Duration;

use nix::time::{ClockId, clock_gettime};

/// CPU time the calling thread has used.
pub fn thread_time() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// CPU time the calling thread spends in `work`, with its result.
pub fn measure<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let before = thread_time();
    let result = work();
    (result, thread_time().saturating_sub(before))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeping_costs_no_cpu_and_spinning_does() {
        let ((), slept) = measure(|| std::thread::sleep(Duration::from_millis(50)));
        assert!(slept < Duration::from_millis(40), "{slept:?}");
        let ((), spun) = measure(|| {
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_millis(20) {}
        });
        assert!(spun > Duration::ZERO);
    }
}
