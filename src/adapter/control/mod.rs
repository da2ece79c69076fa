//! The control socket: jobctl's way in.

pub mod answer;
pub mod client;
pub mod protocol;
pub mod server;
