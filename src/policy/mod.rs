//! Pure decisions over the model: when jobs fire, what an overlap does, when to alert,
//! what the metrics say. No I/O but what a caller hands in.
pub mod hooks;
pub mod metrics;
pub mod overdue;
pub mod overlap;
pub mod scheduler;
