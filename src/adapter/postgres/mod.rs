//! The PostgreSQL client: libpq loaded at run time (`library`), one connection behind a
//! safe interface (`connection`), a reconnecting state machine for the daemon's poll
//! loop (`session`), blocking helpers for commands and tests (`blocking`), and the
//! queries and rows that travel over it (`rows`).

pub mod blocking;
pub mod connection;
pub mod library;
pub mod rows;
pub mod session;

pub use blocking::Error;
pub use connection::Notification;
pub use library::{LIBPQ_SONAME, Libpq, LoadError};
pub use rows::{DecodeError, Param, Query, QueryError, Row, Rows};
pub use session::{Event, Interest, Ready, SendError, Session, Settings};
