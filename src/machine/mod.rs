//! The two state machines the loop drives: the supervisor (running processes) and the
//! spool (one-off files). Neither imports the other: the daemon carries data between
//! them.
pub mod cluster;
pub mod spool;
pub mod supervisor;
