//! jobd's edges with the system: processes, the state directory, the control socket.
pub mod control;
pub mod journal;
pub mod orphans;
pub mod process;
pub mod runtime;
pub mod spawner;
pub mod state;
