//! The control socket: jobctl's way in.

pub mod access;
pub mod answer;
pub mod client;
pub mod protocol;
pub mod reach;
pub mod server;
