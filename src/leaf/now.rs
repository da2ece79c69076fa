//! The clock, read once per turn of the loop: the wall clock (what instants and records
//! say) and the monotonic one (what deadlines count on), read together.

use std::time::Instant;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub wall: DateTime<Utc>,
    pub mono: Instant,
}

impl Now {
    pub fn read() -> Now {
        Now {
            wall: Utc::now(),
            mono: Instant::now(),
        }
    }
}
