//! Integration tests: the real `jobd` binary in temporary directories.

mod check;
mod daemon;
mod harness;
mod spool;
