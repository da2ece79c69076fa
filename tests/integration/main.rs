//! Integration tests: the real `jobd` binary in temporary directories.

mod alerts;
mod check;
mod control;
mod daemon;
mod faults;
mod harness;
mod hostile_input;
mod man;
mod notify;
mod peers;
mod reload;
mod spool;
mod trust_spool;
mod users;
