//! Integration tests: the real `jobd` binary in temporary directories.

mod alerts;
mod check;
mod control;
mod daemon;
mod harness;
mod hostile_input;
mod man;
mod notify;
mod reload;
mod spool;
