//! What each command line does: `jobd`, `jobd check`, `jobctl ...`.
pub mod check;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod preflight;
pub mod render;
pub mod submit;
