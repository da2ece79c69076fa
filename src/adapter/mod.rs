pub mod cluster;
pub mod postgres;
