//! Integration tests: the real `jobd` binary in temporary directories.

mod alerts;
mod check;
mod cluster;
mod control;
mod daemon;
mod faults;
mod first_use;
mod harness;
mod hostile_input;
mod logs;
mod man;
mod notify;
mod peers;
mod pgserver;
mod postgres;
mod reload;
mod spool;
mod trust_control;
mod trust_spool;
mod users;
mod warm;
