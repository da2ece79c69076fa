//! jobd: a small, dependable job supervisor.
//!
//! The binaries are thin: `commands` holds what each command line does. The daemon is
//! `daemon` (the event loop) over `scheduler` (when jobs fire, pure) and `supervisor`
//! (what runs, under which policy).
pub mod adapter;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod daemon;
pub mod duration;
pub mod hooks;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod orphans;
pub mod output;
pub mod overdue;
pub mod process;
pub mod record;
pub mod render;
pub mod schedule;
pub mod scheduler;
pub mod signals;
pub mod spool;
pub mod state;
pub mod submit;
pub mod suggest;
pub mod supervisor;
pub mod timer;
pub mod yaml;
