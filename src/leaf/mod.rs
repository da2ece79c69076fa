//! Helpers that know nothing of jobs: durations, YAML, output lines, the timer, signals.
pub mod duration;
pub mod logging;
pub mod notify;
pub mod output;
pub mod signals;
pub mod suggest;
pub mod timer;
pub mod yaml;
