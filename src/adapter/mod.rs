//! jobd's edges with the system: processes, warm runtime servers, the state directory,
//! the control socket, PostgreSQL.
pub mod cluster;
pub mod control;
pub mod journal;
pub mod logs;
pub mod orphans;
pub mod postgres;
pub mod process;
pub mod runtime;
pub mod spawner;
pub mod state;
