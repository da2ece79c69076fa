//! jobd: a small, dependable job supervisor.
//!
//! The modules are layers that only point down, each folder one layer:
//! `leaf` (helpers that know nothing of jobs) → `model` (the jobfile, schedules, run
//! records) → `policy` (pure decisions: when jobs fire, overlap, alerts, metrics) →
//! `adapter` (processes, files, the control socket) → `machine` (the supervisor and
//! the spool, which never import each other) → `daemon` (the event loop that carries
//! data between them) → `front` (what each command line does). `tests/layers.rs`
//! fails on an import that points up, or a cycle.
pub mod adapter;
pub mod daemon;
pub mod front;
pub mod leaf;
pub mod machine;
pub mod model;
pub mod policy;
