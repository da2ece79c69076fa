//! Helpers that know nothing of jobs: durations, YAML, output lines, the timer, signals.
pub mod account;
pub mod cpu;
pub mod duration;
pub mod files;
pub mod logging;
pub mod notify;
pub mod now;
pub mod output;
pub mod procfs;
pub mod signals;
pub mod suggest;
pub mod timer;
pub mod timestamp;
pub mod visible;
pub mod words;
pub mod yaml;
