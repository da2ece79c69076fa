//! What jobd knows, as plain data: the validated jobfile, schedules, ended runs.
pub mod config;
pub mod record;
pub mod schedule;
