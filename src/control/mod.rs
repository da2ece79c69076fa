//! The control socket: jobctl's way in.

pub mod protocol;
